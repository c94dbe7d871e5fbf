#!/usr/bin/env python3
"""Checks a report page (evaluator/html.h) as a browser rendered it.

    report_check.py DOM CONSOLE_LOG RUN_DIR [--images N]

DOM: the page's DOM after loading and running its script (chromium --headless
--dump-dom); CONSOLE_LOG: chromium's stderr with --enable-logging=stderr;
RUN_DIR: the run folder (eval.jsonl, metrics.jsonl, run.json).

Fails (exit 1, one line per problem) when: an image did not decode (the page's
own check: data-images-broken on <body>), a script error or any console
message, an image is not an embedded PNG equal to its file, anything would be
fetched (a src or href that is not a data: URI or an anchor), or a table
differs from eval.jsonl (the per-checkpoint table, the newest record against
its baselines, the fine-tuning table or its "not run" note, the class map),
the loss chart's point count from metrics.jsonl, or the settings from
run.json. Every string is compared as text, so markup in a JSON string that
was not escaped shows up as a difference.
"""
import base64
import html.parser
import json
import math
import re
import sys


class Dom(html.parser.HTMLParser):
    """Elements with their attributes and text content (nested text included)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements = []      # [tag, attrs dict, text]
        self.stack = []

    VOID = {"img", "br", "meta", "link", "input", "hr", "source", "wbr", "area", "base", "col", "embed", "track"}

    def handle_starttag(self, tag, attrs):
        el = [tag, dict(attrs), ""]
        self.elements.append(el)
        if tag not in self.VOID:
            self.stack.append(el)

    def handle_startendtag(self, tag, attrs):
        self.elements.append([tag, dict(attrs), ""])

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        for el in self.stack:
            el[2] += data

    def find(self, tag=None, **attrs):
        out = []
        for t, a, txt in self.elements:
            if tag and t != tag:
                continue
            if all(a.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                out.append((t, a, txt))
        return out


problems = []


def problem(msg):
    problems.append(msg)


def get(obj, path):
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def fraction_top1(rep, fr):
    for e in (rep or {}).get("label_fractions", []):
        if abs(e.get("fraction", -1) - fr) < 1e-12:
            return e.get("top1")
    return None


def fmt(kind, v):
    return {"pct": lambda: "%.2f%%" % (100.0 * v), "num3": lambda: "%.3f" % v, "int": lambda: "%.0f" % v,
            "sec": lambda: "%.1f" % v, "g": lambda: "%g" % v}[kind]()


PCT_KEYS = {"probe_top1", "probe_top5", "knn_top1", "probe.top1", "probe.top5", "knn.top1", "knn.top5",
            "scratch_top1", "finetune_top1"}


def kind_of(key):
    if key in PCT_KEYS or key.startswith("fraction:"):
        return "pct"
    if key in ("align", "uniform", "tsne_knn_purity", "pca_knn_purity", "silhouette"):
        return "num3"
    if key in ("step", "feat_dim", "labels"):
        return "int"
    if key == "seconds":
        return "sec"
    return "g"


def check_cells(where, cells, expected):
    """cells: the <td> elements of a row; expected: data-k -> value (None: no number)."""
    seen = {}
    for _, a, txt in cells:
        if "data-k" in a:
            seen[a["data-k"]] = (a.get("data-v"), txt.strip())
    for key, want in expected.items():
        if key not in seen:
            problem("%s: no cell %s" % (where, key))
            continue
        v, txt = seen[key]
        if want is None or (isinstance(want, float) and not math.isfinite(want)):
            if v is not None:
                problem("%s %s: %s on the page, none in eval.jsonl" % (where, key, v))
            continue
        if v is None or not math.isclose(float(v), float(want), rel_tol=1e-12, abs_tol=1e-15):
            problem("%s %s: %s on the page, %r in eval.jsonl" % (where, key, v, want))
            continue
        shown = fmt(kind_of(key), float(want))
        if txt != shown:
            problem("%s %s: shows %r, expected %r" % (where, key, txt, shown))


def rows_of(dom, table_id):
    """The <tr> of a table and their <td> cells, in order."""
    out, current, inside = [], None, False
    for t, a, txt in dom.elements:
        if t == "table":
            inside = a.get("id") == table_id
            continue
        if not inside:
            continue
        if t == "tr":
            current = [a, []]
            out.append(current)
        elif t in ("td", "th") and current is not None:
            current[1].append((t, a, txt))
    return [r for r in out if any(c[0] == "td" for c in r[1])]


def main():
    args = sys.argv[1:]
    images = None
    if "--images" in args:
        i = args.index("--images")
        images = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    dom_path, log_path, run = args
    dom = Dom()
    dom.feed(open(dom_path, encoding="utf-8").read())
    records = [json.loads(line) for line in open(run + "/eval.jsonl") if line.strip()]
    records = sorted((r for r in records if isinstance(r.get("step"), (int, float))), key=lambda r: r["step"])
    last = records[-1]

    # the page's own checks, run by the browser
    body = dom.find("body")
    if not body:
        problem("no <body> in the DOM: the page did not load")
        body = [("body", {}, "")]
    b = body[0][1]
    imgs = dom.find("img")
    if b.get("data-images-ok") is None:
        problem("the page's script did not run (no data-images-ok on <body>)")
    if b.get("data-images-broken") != "0":
        broken = [txt for t, a, txt in dom.find("p") if a.get("class") == "broken"]
        problem("%s image(s) did not decode: %s" % (b.get("data-images-broken"), "; ".join(x.strip() for x in broken)))
    if b.get("data-errors") != "0":
        problem("script errors on the page: %s" % b.get("data-errors"))
    if b.get("data-images-ok") not in (None, str(len(imgs))) and b.get("data-images-broken") == "0":
        problem("%s images decoded of %d" % (b.get("data-images-ok"), len(imgs)))
    if images is not None and len(imgs) != images:
        problem("%d images on the page, expected %d" % (len(imgs), images))
    console = [line.strip() for line in open(log_path, errors="replace") if ":CONSOLE" in line]
    for line in console:
        problem("console: " + line)

    # self-contained: embedded PNGs equal to their files, nothing to fetch
    for _, a, _ in imgs:
        src = a.get("src", "")
        m = re.match(r"data:image/png;base64,([A-Za-z0-9+/=]*)$", src)
        if not m:
            problem("image %s is not an embedded PNG: %.60s" % (a.get("id"), src))
            continue
        try:
            data = base64.b64decode(m.group(1), validate=True)
        except ValueError as e:
            problem("image %s: bad base64: %s" % (a.get("id"), e))
            continue
        with open(a.get("data-file"), "rb") as f:
            if f.read() != data:
                problem("image %s: the embedded bytes differ from %s" % (a.get("id"), a.get("data-file")))
    for t, a, _ in dom.elements:
        for attr in ("src", "href", "xlink:href", "action", "poster", "data"):
            v = a.get(attr)
            if v is not None and not (v.startswith("data:") or v.startswith("#")):
                problem("<%s %s=%.80s> would be fetched" % (t, attr, v))
        if t == "link":
            problem("a <link> element: %s" % a)
    if len(dom.find("script")) != 1:
        problem("%d <script> elements, the page has one" % len(dom.find("script")))

    # per-checkpoint table
    fractions = [e["fraction"] for e in get(last, "encoder.label_fractions") or []]
    rows = rows_of(dom, "evals")
    if len(rows) != len(records):
        problem("per-checkpoint table: %d rows, eval.jsonl has %d records" % (len(rows), len(records)))
    for (a, cells), r in zip(rows, records):
        exp = {k: r.get(k) for k in ("step", "epoch", "probe_top1", "probe_top5", "knn_top1", "align", "uniform",
                                     "seconds")}
        for fr in fractions:
            exp["fraction:%g" % fr] = fraction_top1(r.get("encoder"), fr)
        check_cells("step %s" % r["step"], cells, exp)

    # the newest record against its baselines
    reps = {"encoder": last.get("encoder"), "random_encoder": get(last, "baselines.random_encoder"),
            "raw_pixels": get(last, "baselines.raw_pixels")}
    rows = {a.get("data-rep"): cells for a, cells in rows_of(dom, "latest-table")}
    for name, rep in reps.items():
        if rep is None:
            if name in rows:
                problem("baselines table: a row %s not in eval.jsonl" % name)
            continue
        if name not in rows:
            problem("baselines table: no row %s" % name)
            continue
        exp = {k: get(rep, k) for k in ("feat_dim", "probe.top1", "probe.top5", "knn.top1", "knn.top5", "align",
                                        "uniform")}
        for fr in fractions:
            exp["fraction:%g" % fr] = fraction_top1(rep, fr)
        check_cells("baselines " + name, rows[name], exp)

    # fine-tuning
    ft_rec = next((r for r in reversed(records) if isinstance(r.get("finetune"), list) and r["finetune"]), None)
    if ft_rec is None:
        notes = dom.find(id="finetune-none")
        if not notes or "not run" not in notes[0][2]:
            problem("no fine-tuning in eval.jsonl, and the page does not say 'not run'")
        if rows_of(dom, "finetune-table"):
            problem("a fine-tuning table without a \"finetune\" list in eval.jsonl")
    else:
        rows = rows_of(dom, "finetune-table")
        if len(rows) != len(ft_rec["finetune"]):
            problem("fine-tuning table: %d rows, eval.jsonl has %d" % (len(rows), len(ft_rec["finetune"])))
        for (a, cells), ft in zip(rows, ft_rec["finetune"]):
            exp = {k: ft.get(k) for k in ("labels", "scratch_top1", "probe_top1", "finetune_top1", "epochs", "lr",
                                          "weight_decay", "seconds")}
            where = "fine-tuning row %s" % a.get("data-i")
            check_cells(where, cells, exp)
            sub = [txt for t, ca, txt in cells if ca.get("data-k") == "subset"]
            want = ft.get("subset")
            want = "%g%%" % (100.0 * want) if isinstance(want, (int, float)) else str(want)
            if not sub or sub[0] != want:
                problem("%s: subset shows %r, eval.jsonl has %r" % (where, sub[0] if sub else None, want))

    # class map
    cm = last.get("classmap")
    if isinstance(cm, dict):
        rows = {a.get("data-rep"): cells for a, cells in rows_of(dom, "classmap-table")}
        for name, rep in (("encoder", cm), ("random_encoder", cm.get("random_encoder")),
                          ("raw_pixels", cm.get("raw_pixels"))):
            if rep is None:
                continue
            if name not in rows:
                problem("class map table: no row %s" % name)
                continue
            check_cells("class map " + name, rows[name],
                        {k: rep.get(k) for k in ("tsne_knn_purity", "pca_knn_purity", "silhouette")})

    # loss chart: one point per step of metrics.jsonl
    steps = 0
    for line in open(run + "/metrics.jsonl"):
        r = json.loads(line)
        if "loss" in r and "step" in r and "end" not in r:
            steps += 1
    chart = dom.find("svg", id="loss-chart")
    if not chart or chart[0][1].get("data-points") != str(steps):
        problem("loss chart: %s points, metrics.jsonl has %d steps" % (chart[0][1].get("data-points") if chart
                                                                        else "no chart,", steps))

    # settings from run.json, as text
    try:
        settings = json.load(open(run + "/run.json"))
    except OSError:
        settings = None
    if settings is not None:
        shown = {a.get("data-k"): txt for t, a, txt in dom.find("tr", data_src="run")}
        for k, v in settings.items():
            if k in ("format", "version") or v == "" or isinstance(v, (dict, list)):
                continue
            cell = shown.get(k, "")
            # the row's text is its header (the key) then the value
            value = cell[len(k):] if cell.startswith(k) else cell
            if value != str(v):
                problem("settings %s: shows %r, run.json has %r" % (k, value, v))

    for p in problems:
        print("report_check: " + p)
    if not problems:
        print("report_check: ok: %d images decoded, %d evaluations, %d loss steps, fine-tuning %s"
              % (len(imgs), len(records), steps, "table" if ft_rec else "'not run'"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

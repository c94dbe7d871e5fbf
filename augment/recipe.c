/* recipe: parsing "simclr", "rotnet", "supervised" and custom operation lists (augment.h). */
#include "augment/augment.h"
#include "errmsg/errmsg.h"
#include "augment/vipsstep.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SimCLR's choices: above this output side the crop may shrink to 8% of the
 * area and blur is used; at or below it, 20% and no blur. */
#define SIMCLR_SMALL_SIDE 64u
#define RECIPE_MAX_TEXT 1024u

#define RECIPE_SIMCLR_SMALL \
    "views=2,crop:scale=0.2-1,flip:p=0.5,jitter:s=0.5:p=0.8,gray:p=0.2"
#define RECIPE_SIMCLR_LARGE \
    "views=2,crop:scale=0.08-1,flip:p=0.5,jitter:s=0.5:p=0.8,gray:p=0.2,blur:sigma=0.1-2:p=0.5"
/* Supervised: one view per image, cropped and maybe flipped, colours kept.
 * At small sides the crop keeps at least 35% of the area (a 32 px image
 * keeps 19 px or more of its side): SimCLR's 20% hides too much of the
 * object for a label to stay true. Above, the usual ImageNet 8%. */
#define RECIPE_SUPERVISED_SMALL "views=1,crop:scale=0.35-1,flip:p=0.5"
#define RECIPE_SUPERVISED_LARGE "views=1,crop:scale=0.08-1,flip:p=0.5"
/* RotNet: one lightly cropped, maybe flipped image, rotated four ways. */
#define RECIPE_ROTNET \
    "views=4,crop:scale=0.6-1:per=sample,flip:p=0.5:per=sample,rotate:k=view"

/* Jitter strength s gives brightness, contrast, saturation 0.8 s and hue 0.2 s. */
#define JITTER_BCS_PER_S 0.8f
#define JITTER_HUE_PER_S 0.2f

static const char *op_names[AUG_OP_COUNT] = {
    [AUG_OP_CROP] = "crop",     [AUG_OP_FLIP] = "flip",   [AUG_OP_GRAY] = "gray",
    [AUG_OP_JITTER] = "jitter", [AUG_OP_ROTATE] = "rotate", [AUG_OP_CUTOUT] = "cutout",
    [AUG_OP_NOISE] = "noise",   [AUG_OP_BLUR] = "blur",   [AUG_OP_SOBEL] = "sobel",
    [AUG_OP_ORIGINAL] = "original", [AUG_OP_VIPS] = "vips", [AUG_OP_JPEG] = "jpeg",
};

/* Parameters each operation accepts (besides p and per). */
static const char *op_params[AUG_OP_COUNT] = {
    [AUG_OP_CROP] = "scale, ratio", [AUG_OP_FLIP] = "", [AUG_OP_GRAY] = "",
    [AUG_OP_JITTER] = "s, b, c, sat, h", [AUG_OP_ROTATE] = "k",
    [AUG_OP_CUTOUT] = "size, fill", [AUG_OP_NOISE] = "sigma",
    [AUG_OP_BLUR] = "sigma, kernel", [AUG_OP_SOBEL] = "", [AUG_OP_ORIGINAL] = "",
    [AUG_OP_VIPS] = "the operation's arguments", [AUG_OP_JPEG] = "q",
};

static void op_defaults(aug_op_t *op, aug_op_kind_t kind)
{
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->p = 1.0f;
    switch (kind) {
    case AUG_OP_CROP:
        op->lo = 0.08f; op->hi = 1.0f;
        op->ratio_lo = 3.0f / 4.0f; op->ratio_hi = 4.0f / 3.0f;
        break;
    case AUG_OP_FLIP:   op->p = 0.5f; break;
    case AUG_OP_GRAY:   op->p = 0.2f; break;
    case AUG_OP_JITTER:
        op->p = 0.8f;
        op->jitter[0] = op->jitter[1] = op->jitter[2] = JITTER_BCS_PER_S;
        op->jitter[3] = JITTER_HUE_PER_S;
        break;
    case AUG_OP_ROTATE: op->k = AUG_ROTATE_RANDOM; break;
    case AUG_OP_CUTOUT: op->size = 0.25f; break;
    case AUG_OP_NOISE:  op->sigma = 0.05f; break;
    case AUG_OP_BLUR:
        op->p = 0.5f; op->lo = 0.1f; op->hi = 2.0f; op->kernel = 0.1f;
        break;
    default: break;
    }
}

static int parse_float(const char *v, float *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || d != d) return -1;
    *out = (float)d;
    return 0;
}

/* "a-b" or a single number "a" (meaning a-a). */
static int parse_range(const char *v, float *lo, float *hi)
{
    char buf[64];
    if (strlen(v) >= sizeof(buf)) return -1;
    strcpy(buf, v);
    char *dash = strchr(buf + 1, '-');   /* skip a leading sign */
    if (!dash) {
        if (parse_float(buf, lo)) return -1;
        *hi = *lo;
        return 0;
    }
    *dash = 0;
    if (parse_float(buf, lo) || parse_float(dash + 1, hi)) return -1;
    return 0;
}

#define FAIL(...) do { errmsg_set(err, errlen, __VA_ARGS__); return -1; } while (0)

static int set_param(aug_op_t *op, int item, const char *key, const char *val, char *err, size_t errlen)
{
    const char *name = op_names[op->kind];
    float f;
    if (!strcmp(key, "p")) {
        if (parse_float(val, &f) || f < 0.0f || f > 1.0f)
            FAIL("recipe item %d (%s): p=%s: expected a probability in [0, 1]", item, name, val);
        op->p = f;
        return 0;
    }
    if (!strcmp(key, "per")) {
        if (!strcmp(val, "sample")) op->per_sample = 1;
        else if (!strcmp(val, "view")) op->per_sample = 0;
        else FAIL("recipe item %d (%s): per=%s: expected 'sample' or 'view'", item, name, val);
        return 0;
    }
    switch (op->kind) {
    case AUG_OP_CROP:
        if (!strcmp(key, "scale")) {
            if (parse_range(val, &op->lo, &op->hi) || op->lo <= 0.0f || op->hi > 1.0f || op->lo > op->hi)
                FAIL("recipe item %d (crop): scale=%s: expected a range like 0.2-1 within (0, 1]", item, val);
            return 0;
        }
        if (!strcmp(key, "ratio")) {
            if (parse_range(val, &op->ratio_lo, &op->ratio_hi) || op->ratio_lo <= 0.0f ||
                op->ratio_lo > op->ratio_hi)
                FAIL("recipe item %d (crop): ratio=%s: expected a range like 0.75-1.333 of positive numbers", item, val);
            return 0;
        }
        break;
    case AUG_OP_JITTER: {
        int which = !strcmp(key, "b") ? 0 : !strcmp(key, "c") ? 1 : !strcmp(key, "sat") ? 2
                  : !strcmp(key, "h") ? 3 : !strcmp(key, "s") ? 4 : -1;
        if (which < 0) break;
        if (parse_float(val, &f) || f < 0.0f)
            FAIL("recipe item %d (jitter): %s=%s: expected a number >= 0", item, key, val);
        if (which == 4) {
            op->jitter[0] = op->jitter[1] = op->jitter[2] = JITTER_BCS_PER_S * f;
            op->jitter[3] = JITTER_HUE_PER_S * f;
        } else {
            op->jitter[which] = f;
        }
        if (op->jitter[3] > 0.5f)
            FAIL("recipe item %d (jitter): hue %.3g is more than half a turn (0.5)", item, op->jitter[3]);
        return 0;
    }
    case AUG_OP_ROTATE:
        if (!strcmp(key, "k")) {
            if (!strcmp(val, "view")) op->k = AUG_ROTATE_VIEW;
            else if (!strcmp(val, "random")) op->k = AUG_ROTATE_RANDOM;
            else if (strlen(val) == 1 && val[0] >= '0' && val[0] <= '3') op->k = val[0] - '0';
            else FAIL("recipe item %d (rotate): k=%s: expected 0, 1, 2, 3, 'random' or 'view'", item, val);
            return 0;
        }
        break;
    case AUG_OP_CUTOUT:
        if (!strcmp(key, "size")) {
            if (parse_float(val, &f) || f <= 0.0f || (f > 1.0f && f != (float)(int)f))
                FAIL("recipe item %d (cutout): size=%s: expected whole pixels (8) or a fraction of the side (0.25)", item, val);
            op->size = f;
            return 0;
        }
        if (!strcmp(key, "fill")) {
            if (!strcmp(val, "zero")) op->fill_mean = 0;
            else if (!strcmp(val, "mean")) op->fill_mean = 1;
            else FAIL("recipe item %d (cutout): fill=%s: expected 'zero' or 'mean'", item, val);
            return 0;
        }
        break;
    case AUG_OP_NOISE:
        if (!strcmp(key, "sigma")) {
            if (parse_float(val, &f) || f < 0.0f || f > 1.0f)
                FAIL("recipe item %d (noise): sigma=%s: expected a number in [0, 1] (pixel scale 0..1)", item, val);
            op->sigma = f;
            return 0;
        }
        break;
    case AUG_OP_BLUR:
        if (!strcmp(key, "sigma")) {
            if (parse_range(val, &op->lo, &op->hi) || op->lo <= 0.0f || op->lo > op->hi)
                FAIL("recipe item %d (blur): sigma=%s: expected a range like 0.1-2 of positive numbers", item, val);
            return 0;
        }
        if (!strcmp(key, "kernel")) {
            if (parse_float(val, &f) || f <= 0.0f || f > 1.0f)
                FAIL("recipe item %d (blur): kernel=%s: expected a fraction of the side in (0, 1]", item, val);
            op->kernel = f;
            return 0;
        }
        break;
    default:
        break;
    }
    FAIL("recipe item %d (%s): unknown parameter '%s' (known: %s%sp, per, target)", item, name, key,
         op_params[op->kind], op_params[op->kind][0] ? ", " : "");
}

static int is_geometry(aug_op_kind_t k) { return k == AUG_OP_CROP || k == AUG_OP_FLIP; }

#define TARGET_FLAG "target"

/* The classes an item's choice gives the view's target: k for rotate, else
 * applied or not. */
static uint32_t target_radix(const aug_op_t *op)
{
    return op->kind == AUG_OP_ROTATE ? AUG_ROTATE_CLASSES : 2u;
}

/* Refuses a ":target" whose choice never varies (the class would be constant). */
static int check_target(const aug_op_t *op, int item, const char *name, char *err, size_t errlen)
{
    if (!op->target) return 0;
    if (op->kind == AUG_OP_ORIGINAL)
        FAIL("recipe item %d (%s): nothing is chosen at random, so it cannot be a target", item, name);
    if (op->kind == AUG_OP_ROTATE) {
        if (op->k >= 0)
            FAIL("recipe item %d (rotate): k=%d:target gives every view the same target "
                 "(HINT: rotate:k=random:target, or k=view)", item, op->k);
        return 0;
    }
    if (!(op->p > 0.0f && op->p < 1.0f))
        FAIL("recipe item %d (%s): p=%g with target: the item is %s applied, so the target would "
             "never vary (HINT: give p between 0 and 1, such as %s:p=0.5:target)", item, name, op->p,
             op->p > 0.0f ? "always" : "never", name);
    return 0;
}
static int is_colour(aug_op_kind_t k) { return k == AUG_OP_GRAY || k == AUG_OP_JITTER; }

/* "vips:NAME[:key=value...]" or "jpeg[:key=value...]" after its head: p and
 * per as for every item, the other keys are checked against libvips. */
static int parse_step(aug_recipe_t *r, int item, const char *head, char **save,
                      const char **spatial_seen, char *err, size_t errlen)
{
    int jpeg = !strcmp(head, "jpeg");
    const char *name = "jpeg";
    if (!jpeg) {
        name = strtok_r(NULL, ":", save);
        if (!name || strchr(name, '='))
            FAIL("recipe item %d: vips: needs an operation name, as in vips:sharpen:sigma=1 "
                 "(HINT: `vips -l operation` lists them)", item);
    }
    if (r->n_ops >= AUG_MAX_OPS) FAIL("recipe: more than %u operations", AUG_MAX_OPS);
    if (r->n_steps >= AUG_MAX_STEPS)
        FAIL("recipe item %d: more than %u vips and jpeg steps", item, AUG_MAX_STEPS);
    aug_op_t *op = &r->ops[r->n_ops];
    op_defaults(op, jpeg ? AUG_OP_JPEG : AUG_OP_VIPS);
    op->step = r->n_steps;
    char *keys[AUG_STEP_MAX_ARGS], *vals[AUG_STEP_MAX_ARGS];
    int n = 0;
    char *kv;
    while ((kv = strtok_r(NULL, ":", save))) {
        if (!strcmp(kv, TARGET_FLAG)) {
            op->target = 1;
            continue;
        }
        char *eq = strchr(kv, '=');
        if (!eq || eq == kv || !eq[1])
            FAIL("recipe item %d (%s%s%s): '%s': expected key=value (or target)", item, head, jpeg ? "" : ":",
                 jpeg ? "" : name, kv);
        *eq = 0;
        if (!strcmp(kv, "p") || !strcmp(kv, "per")) {
            if (set_param(op, item, kv, eq + 1, err, errlen)) return -1;
            continue;
        }
        if (n >= (int)AUG_STEP_MAX_ARGS)
            FAIL("recipe item %d (%s%s%s): more than %u arguments", item, head, jpeg ? "" : ":",
                 jpeg ? "" : name, AUG_STEP_MAX_ARGS);
        keys[n] = kv;
        vals[n++] = eq + 1;
    }
    if (aug_vips_parse(&r->steps[r->n_steps], item, name, jpeg, n, keys, vals, err, errlen) ||
        check_target(op, item, jpeg ? "jpeg" : "vips", err, errlen))
        return -1;
    *spatial_seen = jpeg ? "jpeg" : "vips";
    r->n_steps++;
    r->n_ops++;
    return 0;
}

static int parse_item(aug_recipe_t *r, int item, char *text, const char **spatial_seen, char *err, size_t errlen)
{
    char *save = NULL;
    char *head = strtok_r(text, ":", &save);
    if (!head || !*head) FAIL("recipe item %d is empty", item);
    if (!strncmp(head, "views=", 6)) {
        char *end;
        long v = strtol(head + 6, &end, 10);
        if (end == head + 6 || *end || v < 1 || v > (long)AUG_MAX_VIEWS)
            FAIL("recipe item %d: %s: expected views=K with K in 1..%u", item, head, AUG_MAX_VIEWS);
        if (strtok_r(NULL, ":", &save)) FAIL("recipe item %d: views takes no parameters", item);
        r->views = (uint32_t)v;
        return 0;
    }
    if (!strcmp(head, "vips") || !strcmp(head, "jpeg"))
        return parse_step(r, item, head, &save, spatial_seen, err, errlen);
    int kind = -1;
    for (int k = 0; k < AUG_OP_COUNT; k++)
        if (!strcmp(head, op_names[k])) kind = k;
    if (!strcmp(head, "none") || !strcmp(head, "identity")) kind = AUG_OP_ORIGINAL;
    if (!strcmp(head, "grayscale") || !strcmp(head, "grey")) kind = AUG_OP_GRAY;
    if (kind < 0)
        FAIL("recipe item %d: unknown operation '%s' (known: crop, flip, jitter, gray, rotate, "
             "cutout, noise, blur, sobel, original, vips:NAME, jpeg, and views=K)", item, head);
    if (r->n_ops >= AUG_MAX_OPS) FAIL("recipe: more than %u operations", AUG_MAX_OPS);
    if (is_geometry(kind) && *spatial_seen)
        FAIL("recipe item %d: %s after %s: crop and flip act on the source image, so list them "
             "before rotate, cutout, noise, blur, sobel, vips and jpeg", item, head, *spatial_seen);
    if (!is_geometry(kind) && !is_colour(kind) && kind != AUG_OP_ORIGINAL)
        *spatial_seen = op_names[kind];
    aug_op_t *op = &r->ops[r->n_ops];
    op_defaults(op, kind);
    char *kv;
    while ((kv = strtok_r(NULL, ":", &save))) {
        if (!strcmp(kv, TARGET_FLAG)) {
            op->target = 1;
            continue;
        }
        char *eq = strchr(kv, '=');
        if (!eq || eq == kv || !eq[1])
            FAIL("recipe item %d (%s): '%s': expected key=value (or target)", item, head, kv);
        *eq = 0;
        if (set_param(op, item, kv, eq + 1, err, errlen)) return -1;
    }
    if (check_target(op, item, op_names[kind], err, errlen)) return -1;
    r->n_ops++;
    return 0;
}

int aug_recipe_parse(aug_recipe_t *r, const char *text, uint32_t size, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    if (!text) FAIL("recipe: none given");
    const char *name = "custom";
    if (!strcmp(text, "simclr")) {
        name = "simclr";
        text = size <= SIMCLR_SMALL_SIDE ? RECIPE_SIMCLR_SMALL : RECIPE_SIMCLR_LARGE;
    } else if (!strcmp(text, "rotnet")) {
        name = "rotnet";
        text = RECIPE_ROTNET;
    } else if (!strcmp(text, "supervised")) {
        name = "supervised";
        text = size <= SIMCLR_SMALL_SIDE ? RECIPE_SUPERVISED_SMALL : RECIPE_SUPERVISED_LARGE;
    }
    size_t len = strlen(text);
    if (len == 0) FAIL("recipe: empty (HINT: use simclr, rotnet, supervised or a list such as crop,flip:p=0.5)");
    if (len >= RECIPE_MAX_TEXT) FAIL("recipe: %zu characters, at most %u", len, RECIPE_MAX_TEXT - 1);
    char buf[RECIPE_MAX_TEXT];
    memcpy(buf, text, len + 1);
    for (char *p = buf; *p; p++) {
        if (isspace((unsigned char)*p))
            FAIL("recipe: spaces are not allowed (at character %td of \"%s\")", p - buf + 1, text);
    }
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->views = 2;
    const char *spatial_seen = NULL;
    int item = 1;
    char *start = buf;
    for (;;) {
        char *comma = strchr(start, ',');
        if (comma) *comma = 0;
        if (parse_item(r, item, start, &spatial_seen, err, errlen)) return -1;
        if (!comma) break;
        start = comma + 1;
        item++;
    }
    for (uint32_t i = 0; i < r->n_ops; i++) {
        if (!r->ops[i].target) continue;
        uint32_t n = r->target_classes ? r->target_classes : 1u;
        if (n > AUG_MAX_TARGET_CLASSES / target_radix(&r->ops[i]))
            FAIL("recipe: the target items make more than %u classes", AUG_MAX_TARGET_CLASSES);
        r->target_classes = n * target_radix(&r->ops[i]);
    }
    return 0;
}

const char *aug_recipe_format(const aug_recipe_t *r, char *buf, size_t len)
{
    size_t used = 0;
    int n = snprintf(buf, len, "views=%u", r->views);
    used = n > 0 ? (size_t)n : 0;
    for (uint32_t i = 0; i < r->n_ops && used < len; i++) {
        const aug_op_t *op = &r->ops[i];
        char extra[160] = "", step[AUG_STEP_MAX_ARGS * (AUG_STEP_NAME_LEN + AUG_STEP_TEXT_LEN + 2) + 64];
        const char *head = op_names[op->kind];
        switch (op->kind) {
        case AUG_OP_CROP:
            snprintf(extra, sizeof(extra), ":scale=%g-%g:ratio=%g-%g", op->lo, op->hi, op->ratio_lo, op->ratio_hi);
            break;
        case AUG_OP_JITTER:
            snprintf(extra, sizeof(extra), ":b=%g:c=%g:sat=%g:h=%g", op->jitter[0], op->jitter[1],
                     op->jitter[2], op->jitter[3]);
            break;
        case AUG_OP_ROTATE:
            if (op->k == AUG_ROTATE_VIEW) snprintf(extra, sizeof(extra), ":k=view");
            else if (op->k == AUG_ROTATE_RANDOM) snprintf(extra, sizeof(extra), ":k=random");
            else snprintf(extra, sizeof(extra), ":k=%d", op->k);
            break;
        case AUG_OP_CUTOUT:
            snprintf(extra, sizeof(extra), ":size=%g:fill=%s", op->size, op->fill_mean ? "mean" : "zero");
            break;
        case AUG_OP_NOISE: snprintf(extra, sizeof(extra), ":sigma=%g", op->sigma); break;
        case AUG_OP_VIPS:
        case AUG_OP_JPEG:
            if (op->step < r->n_steps) {
                aug_vips_format(&r->steps[op->step], step, sizeof(step));
                head = step;
            }
            break;
        case AUG_OP_BLUR:
            snprintf(extra, sizeof(extra), ":sigma=%g-%g:kernel=%g", op->lo, op->hi, op->kernel);
            break;
        default: break;
        }
        n = snprintf(buf + used, len - used, ",%s%s:p=%g%s%s", head, extra, op->p,
                     op->per_sample ? ":per=sample" : "", op->target ? ":" TARGET_FLAG : "");
        if (n > 0) used += (size_t)n;
    }
    return buf;
}

/* loader_consumer: the test consumer of the loader. PULLs from a running
 * loader and checks everything that arrives against its own, independent
 * reading of the dataset:
 *  - every Sample decodes, belongs to the current epoch, and no index comes
 *    twice in one epoch;
 *  - labels equal the class sub-folder's position in sorted order (folders)
 *    or the labels file (IDX);
 *  - pixels equal a direct libvips decode of the file (vips_image_new_from_file
 *    written to memory), or the IDX image bytes;
 *  - END_OF_EPOCH counts equal what arrived, END_OF_STREAM ends the run with
 *    the total, and the expected counts and epochs arrived;
 *  - consecutive epochs come in different orders.
 * With --control-bind and --stop-after N it also plays the trainer: it binds a
 * PUB socket and sends Control STOP after N samples, then drains what is left.
 * Exits 0 when all holds, 1 with the first problems printed otherwise.
 *
 *   loader_consumer --connect tcp://127.0.0.1:5555 --folder DIR | --idx IMAGES.gz
 *                   [--expect N] [--epochs E] [--order-out FILE] [--no-pixels]
 *                   [--control-bind ENDPOINT --stop-after N]
 */
#include <dirent.h>
#include <stdarg.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <vips/vips.h>
#include <zlib.h>

#include "cli/cli.h"
#include "proto/proto.h"
#include "transport/transport.h"

#define RECV_TIMEOUT_MS   20000
#define MAX_PROBLEMS      10
#define LATER_EPOCH_STEP  7      /* after epoch 0, check the pixels of every 7th sample */
#define IDX_IMAGES_HEADER 16
#define DRAIN_TIMEOUT_MS  5000     /* after sending STOP, wait this long for the stream to end */

typedef struct {
    char **paths;     /* folder: (n) file paths in the loader's index order */
    int *labels;      /* (n) */
    size_t n;
    uint8_t *idx_pixels;   /* IDX: (n, rows, cols) */
    uint32_t rows, cols;
} truth_t;

static int g_problems;

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...)
{
    if (++g_problems > MAX_PROBLEMS)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loader_consumer: FAIL: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted non-hidden names in dir; dirs_only selects sub-folders or files. */
static char **names_in(const char *dir, int dirs_only, size_t *n)
{
    DIR *d = opendir(dir);
    char **v = NULL;
    *n = 0;
    if (!d)
        return NULL;
    struct dirent *e;
    size_t cap = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        struct stat st;
        int is_dir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);   /* a dangling link is a file */
        if (is_dir != dirs_only)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            v = realloc(v, cap * sizeof *v);
        }
        v[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (*n)
        qsort(v, *n, sizeof *v, cmp_str);
    return v;
}

static void add_truth(truth_t *t, const char *path, int label)
{
    t->paths = realloc(t->paths, (t->n + 1) * sizeof *t->paths);
    t->labels = realloc(t->labels, (t->n + 1) * sizeof *t->labels);
    t->paths[t->n] = strdup(path);
    t->labels[t->n] = label;
    t->n++;
}

static void load_folder(truth_t *t, const char *root)
{
    size_t nd;
    char **dirs = names_in(root, 1, &nd);
    char path[4096];
    if (nd == 0) {
        size_t nf;
        char **files = names_in(root, 0, &nf);
        for (size_t i = 0; i < nf; i++) {
            snprintf(path, sizeof path, "%s/%s", root, files[i]);
            add_truth(t, path, PROTO_LABEL_NONE);
            free(files[i]);
        }
        free(files);
    }
    for (size_t c = 0; c < nd; c++) {
        char dir[2048];
        snprintf(dir, sizeof dir, "%s/%s", root, dirs[c]);
        size_t nf;
        char **files = names_in(dir, 0, &nf);
        for (size_t i = 0; i < nf; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            add_truth(t, path, (int)c);
            free(files[i]);
        }
        free(files);
        free(dirs[c]);
    }
    free(dirs);
}

static uint8_t *gz_all(const char *path, size_t *len)
{
    gzFile f = gzopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 20;
    uint8_t *p = malloc(cap);
    *len = 0;
    int got;
    while ((got = gzread(f, p + *len, (unsigned)(cap - *len))) > 0) {
        *len += (size_t)got;
        if (*len == cap)
            p = realloc(p, cap *= 2);
    }
    gzclose(f);
    return p;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int load_idx(truth_t *t, const char *images)
{
    char labels[4096];
    snprintf(labels, sizeof labels, "%s", images);
    char *at = strstr(labels, "images-idx3");
    if (!at)
        return -1;
    memcpy(at, "labels-idx1", 11);
    size_t il, ll;
    uint8_t *im = gz_all(images, &il), *lb = gz_all(labels, &ll);
    if (!im || !lb || il < 16 || ll < 8)
        return -1;
    t->n = be32(im + 4);
    t->rows = be32(im + 8);
    t->cols = be32(im + 12);
    t->idx_pixels = im + IDX_IMAGES_HEADER;   /* kept for the whole run */
    t->labels = malloc(t->n * sizeof *t->labels);
    for (size_t i = 0; i < t->n; i++)
        t->labels[i] = lb[8 + i];
    free(lb);
    return 0;
}

static void check_pixels(const truth_t *t, const proto_sample_t *s)
{
    if (t->idx_pixels) {
        if (s->height != t->rows || s->width != t->cols || s->channels != 1)
            problem("item %llu: %ux%ux%u, expected %ux%ux1", (unsigned long long)s->index, s->height, s->width,
                    s->channels, t->rows, t->cols);
        else if (memcmp(s->pixels, t->idx_pixels + s->index * t->rows * t->cols, (size_t)t->rows * t->cols))
            problem("item %llu: pixels differ from the IDX file", (unsigned long long)s->index);
        return;
    }
    const char *path = t->paths[s->index];
    VipsImage *im = vips_image_new_from_file(path, NULL);
    size_t len = 0;
    uint8_t *ref = im ? vips_image_write_to_memory(im, &len) : NULL;
    if (!ref) {
        problem("item %llu: libvips cannot decode %s: %s", (unsigned long long)s->index, path, vips_error_buffer());
        vips_error_clear();
    } else if ((uint32_t)im->Ysize != s->height || (uint32_t)im->Xsize != s->width ||
               (uint32_t)im->Bands != s->channels || im->BandFmt != VIPS_FORMAT_UCHAR) {
        problem("%s: received %ux%ux%u, libvips decodes %dx%dx%d", path, s->height, s->width, s->channels,
                im->Ysize, im->Xsize, im->Bands);
    } else if (memcmp(ref, s->pixels, len) != 0) {
        problem("%s: pixels differ from libvips' decode", path);
    }
    g_free(ref);
    if (im)
        g_object_unref(im);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loader_consumer [options]\n"
            "Pulls from a running loader and checks what arrives against its own reading of the\n"
            "dataset: each index once per epoch, the labels, the pixels (a direct libvips decode, or\n"
            "the IDX bytes), the END_OF_EPOCH and END_OF_STREAM counts, a new order every epoch.\n"
            "Exit 0 when all holds, 1 with the first problems on stderr, 2 on bad usage.\n"
            "  --connect ENDPOINT       the loader's PUSH socket (required)\n"
            "  --folder DIR             the folder dataset the loader reads (this or --idx)\n"
            "  --idx IMAGES.gz          the IDX images the loader reads (labels: the labels-idx1\n"
            "                           file beside it)\n"
            "  --expect N               samples every epoch must hold\n"
            "  --epochs E               epochs that must end (not checked after a STOP)\n"
            "  --order-out FILE         write epoch 0's indices to FILE, one a line\n"
            "  --no-pixels              check indices, labels and counts only\n"
            "  --control-bind ENDPOINT  bind a PUB socket for Control messages (for --stop-after)\n"
            "  --stop-after N           with --control-bind: send Control STOP after N samples,\n"
            "                           then check what is drained\n"
            "  --help\n");
}

int main(int argc, char **argv)
{
    const char *endpoint = NULL, *folder = NULL, *idx = NULL, *order_out = NULL, *control_bind = NULL;
    long expect = -1, expect_epochs = -1, stop_after = -1;
    int pixels = 1;
    static const struct option longopts[] = {
        {"connect", required_argument, NULL, 'c'}, {"folder", required_argument, NULL, 'f'},
        {"idx", required_argument, NULL, 'i'},     {"expect", required_argument, NULL, 'n'},
        {"epochs", required_argument, NULL, 'e'},  {"order-out", required_argument, NULL, 'o'},
        {"no-pixels", no_argument, NULL, 'p'},     {"control-bind", required_argument, NULL, 'b'},
        {"stop-after", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c, bad = 0;
    char err[256] = "";
    opterr = 0;
    while (!bad && (c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': endpoint = optarg; break;
        case 'f': folder = optarg; break;
        case 'i': idx = optarg; break;
        case 'n': bad = cli_long("--expect", optarg, 0, LONG_MAX, &expect, err, sizeof err); break;
        case 'e': bad = cli_long("--epochs", optarg, 0, LONG_MAX, &expect_epochs, err, sizeof err); break;
        case 'o': order_out = optarg; break;
        case 'p': pixels = 0; break;
        case 'b': control_bind = optarg; break;
        case 's': bad = cli_long("--stop-after", optarg, 0, LONG_MAX, &stop_after, err, sizeof err); break;
        case 'h': usage(stdout); return 0;
        default:
            cli_option_error(c, argv, err, sizeof err);
            bad = 1;
        }
    }
    if (bad)
        return cli_usage_error("loader_consumer", "%s", err);
    if (!endpoint || (!folder && !idx))
        return cli_usage_error("loader_consumer", "--connect and --folder or --idx are required");
    if (VIPS_INIT(argv[0]))
        return 1;
    vips_cache_set_max(0);
    truth_t t = {0};
    if (folder)
        load_folder(&t, folder);
    else if (load_idx(&t, idx)) {
        fprintf(stderr, "loader_consumer: cannot read %s and its labels\n", idx);
        return 1;
    }
    if (t.n == 0) {
        fprintf(stderr, "loader_consumer: no items in the reference dataset\n");
        return 1;
    }

    void *pub = NULL;
    if (control_bind && !(pub = transport_open(ZMQ_PUB, TRANSPORT_BIND, control_bind, 0)))
        return 1;
    int stop_sent = 0;
    void *pull = transport_open(ZMQ_PULL, TRANSPORT_CONNECT, endpoint, 0);
    if (!pull)
        return 1;
    uint8_t *seen = calloc(t.n, 1);
    uint64_t *order = calloc(t.n, sizeof *order), *prev_order = calloc(t.n, sizeof *prev_order);
    uint64_t in_epoch = 0, total = 0, checked = 0, prev_n = 0;
    uint32_t epoch = 0, epochs_ended = 0;
    int same_order_epochs = 0, ended = 0;
    FILE *order_file = order_out ? fopen(order_out, "w") : NULL;

    while (!ended) {
        zmq_msg_t msg;
        if (transport_recv(pull, &msg, stop_sent ? DRAIN_TIMEOUT_MS : RECV_TIMEOUT_MS) <= 0) {
            if (stop_sent)
                break;   /* stopped: the stream may end without END_OF_STREAM */
            problem("nothing received for %d ms (after %llu samples)", RECV_TIMEOUT_MS, (unsigned long long)total);
            break;
        }
        const void *data = zmq_msg_data(&msg);
        size_t len = zmq_msg_size(&msg);
        proto_msg_type_t type;
        proto_sample_t s;
        proto_control_t ctl;
        char perr[PROTO_ERR_MAX];
        if (proto_peek_type(data, len, &type, perr, sizeof perr) != 0) {
            problem("undecodable message: %s", perr);
        } else if (type == PROTO_MSG_SAMPLE) {
            if (proto_sample_decode(&s, data, len, perr, sizeof perr) != 0)
                problem("bad sample: %s", perr);
            else if (s.index >= t.n)
                problem("index %llu beyond the %zu items", (unsigned long long)s.index, t.n);
            else if (s.epoch != epoch)
                problem("sample of epoch %u during epoch %u", s.epoch, epoch);
            else if (seen[s.index])
                problem("index %llu twice in epoch %u", (unsigned long long)s.index, epoch);
            else {
                seen[s.index] = 1;
                order[in_epoch] = s.index;
                if (order_file && epoch == 0)
                    fprintf(order_file, "%llu\n", (unsigned long long)s.index);
                if (s.label != t.labels[s.index])
                    problem("index %llu: label %d, expected %d", (unsigned long long)s.index, s.label,
                            t.labels[s.index]);
                if (pixels && (epoch == 0 || in_epoch % LATER_EPOCH_STEP == 0)) {
                    check_pixels(&t, &s);
                    checked++;
                }
                in_epoch++;
                total++;
            }
        } else if (type == PROTO_MSG_CONTROL) {
            if (proto_control_decode(&ctl, data, len, perr, sizeof perr) != 0)
                problem("bad control: %s", perr);
            else if (ctl.kind == PROTO_CONTROL_END_OF_EPOCH) {
                if (ctl.epoch != epoch || ctl.count != in_epoch)
                    problem("END_OF_EPOCH epoch %u count %llu, received epoch %u count %llu", ctl.epoch,
                            (unsigned long long)ctl.count, epoch, (unsigned long long)in_epoch);
                if (expect >= 0 && in_epoch != (uint64_t)expect)
                    problem("epoch %u: %llu samples, expected %ld", epoch, (unsigned long long)in_epoch, expect);
                if (epoch > 0 && in_epoch == prev_n && in_epoch > 2 &&
                    memcmp(order, prev_order, in_epoch * sizeof *order) == 0)
                    same_order_epochs++;
                memcpy(prev_order, order, in_epoch * sizeof *order);
                prev_n = in_epoch;
                memset(seen, 0, t.n);
                in_epoch = 0;
                epoch++;
                epochs_ended++;
            } else if (ctl.kind == PROTO_CONTROL_END_OF_STREAM) {
                if (ctl.count != total)
                    problem("END_OF_STREAM count %llu, received %llu", (unsigned long long)ctl.count,
                            (unsigned long long)total);
                ended = 1;
            }
        }
        zmq_msg_close(&msg);
        if (pub && !stop_sent && stop_after >= 0 && total >= (uint64_t)stop_after) {
            proto_control_t stop = {.kind = PROTO_CONTROL_STOP};
            snprintf(stop.sender, sizeof stop.sender, "%s", transport_identity("loader_consumer"));
            proto_buf_t b;
            proto_buf_init(&b);
            if (proto_control_encode(&b, &stop, NULL, 0) || transport_send(pub, b.data, b.len))
                problem("cannot send STOP");
            proto_buf_release(&b);
            stop_sent = 1;
        }
    }
    if (stop_sent) {
        /* A stopped run: only what arrived is checked. */
        ended = 1;
        in_epoch = 0;
        expect_epochs = -1;
    }
    if (order_file)
        fclose(order_file);
    if (ended && in_epoch != 0)
        problem("%llu samples after the last END_OF_EPOCH", (unsigned long long)in_epoch);
    if (expect_epochs >= 0 && epochs_ended != (uint32_t)expect_epochs)
        problem("%u epochs ended, expected %ld", epochs_ended, expect_epochs);
    if (same_order_epochs)
        problem("%d epochs came in the same order as the one before", same_order_epochs);
    if (!ended)
        problem("no END_OF_STREAM");
    transport_close(&pull);
    transport_close(&pub);
    transport_shutdown();
    free(seen);
    free(order);
    free(prev_order);
    for (size_t i = 0; t.paths && i < t.n; i++)
        free(t.paths[i]);
    free(t.paths);
    free(t.labels);
    if (t.idx_pixels)
        free(t.idx_pixels - IDX_IMAGES_HEADER);
    if (g_problems) {
        fprintf(stderr, "loader_consumer: %d problems\n", g_problems);
        return 1;
    }
    printf("loader_consumer: ok%s: %u epochs, %llu samples, %llu pixel checks\n", stop_sent ? " (stop sent)" : "",
           epochs_ended, (unsigned long long)total, (unsigned long long)checked);
    return 0;
}

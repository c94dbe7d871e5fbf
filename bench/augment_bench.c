/* augment_bench: microseconds per view of the augmentation library on one core.
 *
 * Decodes the images once (libvips), then times the recipe over them, and
 * prints one JSON line per case on stdout:
 *   {"bench": "augment", "impl": "augment", "dataset": "cifar10", "size": 32,
 *    "recipe": "simclr", "views": 40000, "us_per_view": 3.1}
 * Cases: CIFAR-10 JPEGs at 32, the ImageNet sample at 224 and 96. With
 * --ideas it also times the alternatives that were measured while designing
 * the library (a per-image libvips chain on tiny images, libvips geometry on
 * photos), so their cost can be checked on any machine. With --step-costs
 * it times instead what one libvips step (vips:NAME, jpeg) adds to a view,
 * at 32 and 224, beside the built-in operation that does the same where
 * there is one, both over the cost of `original` (resampling and output),
 * in CPU time per view:
 *   {"bench": "augment_step_cost", "clock": "cpu", "dataset": "cifar10",
 *    "size": 32, "step": "vips:gaussblur:sigma=0.5-2", "step_us": 1300.0,
 *    "original_us_per_view": 3.5, "builtin": "blur:sigma=0.5-2:p=1",
 *    "builtin_us": 5.0, "ratio": 260.0}
 */
#include "augment/augment.h"

#include <dirent.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vips/vips.h>

#include "cli/cli.h"

#define BENCH_MIN_SECONDS 1.0      /* each case runs at least this long */
#define BENCH_MAX_SECONDS 3600.0
#define BENCH_NAIVE_VIEWS 400      /* views of the slow per-image libvips chain */
#define BENCH_SEED 1234

/* Per-channel mean and std of ImageNet photos, the usual normalisation. */
static const float norm_mean[3] = {0.485f, 0.456f, 0.406f};
static const float norm_std[3] = {0.229f, 0.224f, 0.225f};

typedef struct {
    uint8_t *pixels;   /* (H, W, 3) */
    uint32_t h, w;
} image_t;

typedef struct {
    image_t *items;
    size_t n, cap;
} image_set_t;

/* Wall clock, or the process's CPU time (--step-costs: on a busy machine
 * the wall clock says more about the neighbours than about a step). */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now(void)
{
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int has_image_suffix(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

static int decode(image_set_t *set, const char *path)
{
    VipsImage *in = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (!in) goto fail;
    VipsImage *srgb = NULL, *flat = NULL, *u8 = NULL;
    if (vips_colourspace(in, &srgb, VIPS_INTERPRETATION_sRGB, NULL)) goto fail_in;
    if (srgb->Bands > 3) {
        if (vips_extract_band(srgb, &flat, 0, "n", 3, NULL)) goto fail_in;
    } else {
        flat = srgb;
        g_object_ref(flat);
    }
    if (vips_cast_uchar(flat, &u8, NULL)) goto fail_in;
    size_t len;
    void *mem = vips_image_write_to_memory(u8, &len);
    if (!mem) goto fail_in;
    if (set->n == set->cap) {
        set->cap = set->cap ? set->cap * 2 : 256;
        set->items = realloc(set->items, set->cap * sizeof(image_t));
    }
    set->items[set->n++] = (image_t){mem, (uint32_t)u8->Ysize, (uint32_t)u8->Xsize};
    g_object_unref(u8);
    g_object_unref(flat);
    g_object_unref(srgb);
    g_object_unref(in);
    return 0;
fail_in:
    if (u8) g_object_unref(u8);
    if (flat) g_object_unref(flat);
    if (srgb) g_object_unref(srgb);
    g_object_unref(in);
fail:
    fprintf(stderr, "augment_bench: cannot decode %s: %s", path, vips_error_buffer());
    vips_error_clear();
    return -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Up to `limit` images from dir and, one level down, its sub-folders (round
 * robin over the sub-folders so every class is present). */
static int load_dir(image_set_t *set, const char *dir, size_t limit)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "augment_bench: cannot open %s (HINT: --cifar / --imagenet DIR)\n", dir);
        return -1;
    }
    char **files = NULL, **subs = NULL;
    size_t nf = 0, ns = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (e->d_type == DT_DIR) {
            subs = realloc(subs, (ns + 1) * sizeof(char *));
            subs[ns++] = strdup(path);
        } else if (has_image_suffix(e->d_name)) {
            files = realloc(files, (nf + 1) * sizeof(char *));
            files[nf++] = strdup(path);
        }
    }
    closedir(d);
    if (nf) qsort(files, nf, sizeof(char *), cmp_str);
    if (ns) qsort(subs, ns, sizeof(char *), cmp_str);
    for (size_t i = 0; i < nf && set->n < limit; i++) decode(set, files[i]);
    /* sub-folders: the first files of each, in turns */
    DIR **dirs = calloc(ns ? ns : 1, sizeof(DIR *));
    for (size_t s = 0; s < ns; s++) dirs[s] = opendir(subs[s]);
    int progress = 1;
    while (set->n < limit && progress) {
        progress = 0;
        for (size_t s = 0; s < ns && set->n < limit; s++) {
            while (dirs[s] && (e = readdir(dirs[s]))) {
                if (!has_image_suffix(e->d_name)) continue;
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s", subs[s], e->d_name);
                decode(set, path);
                progress = 1;
                break;
            }
        }
    }
    for (size_t s = 0; s < ns; s++) {
        if (dirs[s]) closedir(dirs[s]);
        free(subs[s]);
    }
    for (size_t i = 0; i < nf; i++) free(files[i]);
    free(dirs);
    free(files);
    free(subs);
    if (set->n == 0) {
        fprintf(stderr, "augment_bench: no images decoded from %s\n", dir);
        return -1;
    }
    return 0;
}

static void emit(const char *impl, const char *dataset, uint32_t size, const char *recipe,
                 uint64_t views, double us)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:I, s:f}", "bench", "augment", "impl", impl,
                          "dataset", dataset, "size", (int)size, "recipe", recipe,
                          "views", (json_int_t)views, "us_per_view", us);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(o);
}

/* Times the library: whole passes over the set until min_seconds; the
 * microseconds per view into *us_out when not NULL, else printed. */
static int time_recipe(const image_set_t *set, const char *dataset, uint32_t size,
                       const char *recipe_text, double min_seconds, double *us_out)
{
    aug_recipe_t recipe;
    char aerr[AUG_ERR_MAX];
    if (aug_recipe_parse(&recipe, recipe_text, size, aerr, sizeof aerr)) {
        fprintf(stderr, "augment_bench: %s\n", aerr);
        return -1;
    }
    aug_config_t cfg = {.size = size, .channels = 3, .dtype = AUG_DTYPE_F32, .normalize = 1,
                        .seed = BENCH_SEED};
    memcpy(cfg.mean, norm_mean, sizeof(cfg.mean));
    memcpy(cfg.std, norm_std, sizeof(cfg.std));
    aug_t *a = aug_new(&recipe, &cfg, aerr, sizeof aerr);
    if (!a) {
        fprintf(stderr, "augment_bench: %s\n", aerr);
        return -1;
    }
    void *out = malloc(aug_view_bytes(a) * recipe.views);
    int32_t targets[AUG_MAX_VIEWS];
    uint64_t views = 0;
    uint32_t epoch = 0;
    /* one untimed pass warms caches and scratch buffers */
    for (size_t i = 0; i < set->n && i < 64; i++) {
        aug_image_t im = {set->items[i].pixels, set->items[i].h, set->items[i].w, 3, i, 999};
        aug_sample(a, &im, out, targets, aerr, sizeof aerr);
    }
    double t0 = now(), el;
    do {
        for (size_t i = 0; i < set->n; i++) {
            aug_image_t im = {set->items[i].pixels, set->items[i].h, set->items[i].w, 3, i, epoch};
            if (aug_sample(a, &im, out, targets, aerr, sizeof aerr)) {
                fprintf(stderr, "augment_bench: %s\n", aerr);
                return -1;
            }
            views += recipe.views;
        }
        epoch++;
        el = now() - t0;
    } while (el < min_seconds);
    if (us_out) *us_out = el * 1e6 / views;
    else emit("augment", dataset, size, recipe_text, views, el * 1e6 / views);
    free(out);
    aug_destroy(&a);
    return 0;
}

static int time_library(const image_set_t *set, const char *dataset, uint32_t size,
                        const char *recipe_text, double min_seconds)
{
    return time_recipe(set, dataset, size, recipe_text, min_seconds, NULL);
}

/* ---- what a libvips step costs against the fused built-in operations ---- */

typedef struct {
    const char *step;      /* a vips: or jpeg recipe item, at p = 1 */
    const char *builtin;   /* the built-in item doing the same, or NULL */
} step_case_t;

static const step_case_t step_cases[] = {
    {"vips:flip:direction=horizontal", "flip:p=1"},
    {"vips:linear:a=0.8-1.2:b=-20-20", "jitter:b=0.2:c=0.2:sat=0:h=0:p=1"},
    {"vips:gaussblur:sigma=0.5-2", "blur:sigma=0.5-2:p=1"},
    {"vips:sharpen:sigma=0.5-2", NULL},
    {"jpeg:q=30-90", NULL},
};
#define STEP_BASE_RECIPE "original"   /* resampling and the output pass only */

static double round1(double x) { return floor(x * 10.0 + 0.5) / 10.0; }

static int time_step_costs(const image_set_t *set, const char *dataset, uint32_t size, double seconds)
{
    double base, again, us, bus = 0;
    /* the base before and after the steps, the smaller kept: the first
     * pass pays for cold caches */
    if (time_recipe(set, dataset, size, STEP_BASE_RECIPE, seconds, &base) ||
        time_recipe(set, dataset, size, STEP_BASE_RECIPE, seconds, &again))
        return -1;
    if (again < base) base = again;
    for (size_t i = 0; i < sizeof step_cases / sizeof step_cases[0]; i++) {
        const step_case_t *c = &step_cases[i];
        if (time_recipe(set, dataset, size, c->step, seconds, &us) ||
            (c->builtin && time_recipe(set, dataset, size, c->builtin, seconds, &bus)))
            return -1;
        json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:f, s:f}", "bench", "augment_step_cost",
                              "clock", "cpu", "dataset", dataset, "size", (int)size, "step", c->step,
                              "step_us", round1(us - base), "original_us_per_view", round1(base));
        if (c->builtin) {
            json_object_set_new(o, "builtin", json_string(c->builtin));
            json_object_set_new(o, "builtin_us", json_real(round1(bus - base)));
            /* the built-in's own cost can be within the noise of zero */
            if (bus - base > 0) json_object_set_new(o, "ratio", json_real(round1((us - base) / (bus - base))));
        }
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        if (s) puts(s);
        fflush(stdout);
        free(s);
        json_decref(o);
    }
    return 0;
}

/* ---- ideas measured while designing ---- */

/* The naive per-image libvips chain: crop, resize, flip, brightness, gray,
 * normalise, one call each, on each tiny image. */
static int time_vips_naive(const image_set_t *set, const char *dataset, uint32_t size)
{
    double t0 = now();
    uint64_t views = 0;
    for (size_t i = 0; views < BENCH_NAIVE_VIEWS; i = (i + 1) % set->n) {
        const image_t *im = &set->items[i];
        VipsImage *t[8] = {0};
        int w = (int)im->w * 3 / 4, h = (int)im->h * 3 / 4;
        int ok = (t[0] = vips_image_new_from_memory(im->pixels, (size_t)im->w * im->h * 3, (int)im->w,
                                                    (int)im->h, 3, VIPS_FORMAT_UCHAR)) &&
                 !vips_extract_area(t[0], &t[1], 1, 1, w, h, NULL) &&
                 !vips_resize(t[1], &t[2], (double)size / w, "vscale", (double)size / h, NULL) &&
                 !vips_flip(t[2], &t[3], VIPS_DIRECTION_HORIZONTAL, NULL) &&
                 !vips_linear1(t[3], &t[4], 1.2 / 255.0, 0.0, NULL) &&
                 !vips_colourspace(t[4], &t[5], VIPS_INTERPRETATION_B_W, NULL) &&
                 !vips_linear1(t[5], &t[6], 1.0 / 0.229, -0.485 / 0.229, NULL);
        if (ok) {
            size_t len;
            void *mem = vips_image_write_to_memory(t[6], &len);
            g_free(mem);
        }
        for (int k = 7; k >= 0; k--)
            if (t[k]) g_object_unref(t[k]);
        if (!ok) {
            fprintf(stderr, "augment_bench: libvips chain failed: %s", vips_error_buffer());
            return -1;
        }
        views++;
    }
    emit("vips_naive_chain", dataset, size, "crop,resize,flip,linear,gray,normalize", views,
         (now() - t0) * 1e6 / views);
    return 0;
}

/* libvips geometry on photos: extract the crop, resize (lanczos3), flip,
 * to memory; to compare with the library's own resampling alone. */
static int time_vips_geometry(const image_set_t *set, const char *dataset, uint32_t size)
{
    double t0 = now(), el;
    uint64_t views = 0;
    do {
        for (size_t i = 0; i < set->n; i++) {
            const image_t *im = &set->items[i];
            VipsImage *t[4] = {0};
            int w = (int)im->w * 2 / 3, h = (int)im->h * 2 / 3;
            int ok = (t[0] = vips_image_new_from_memory(im->pixels, (size_t)im->w * im->h * 3,
                                                        (int)im->w, (int)im->h, 3, VIPS_FORMAT_UCHAR)) &&
                     !vips_extract_area(t[0], &t[1], (int)im->w / 6, (int)im->h / 6, w, h, NULL) &&
                     !vips_resize(t[1], &t[2], (double)size / w, "vscale", (double)size / h, NULL) &&
                     !vips_flip(t[2], &t[3], VIPS_DIRECTION_HORIZONTAL, NULL);
            if (ok) {
                size_t len;
                void *mem = vips_image_write_to_memory(t[3], &len);
                g_free(mem);
            }
            for (int k = 3; k >= 0; k--)
                if (t[k]) g_object_unref(t[k]);
            if (!ok) {
                fprintf(stderr, "augment_bench: libvips geometry failed: %s", vips_error_buffer());
                return -1;
            }
            views++;
        }
        el = now() - t0;
    } while (el < BENCH_MIN_SECONDS);
    emit("vips_geometry_only", dataset, size, "extract,resize,flip", views, el * 1e6 / views);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: augment_bench [options]\n"
            "  --cifar DIR      CIFAR-10 JPEG folder (default ../shared/data/cifar10-train)\n"
            "  --imagenet DIR   photo folder (default ../shared/data/imagenet-sample)\n"
            "  --n-cifar N      CIFAR images to decode and cycle over (default 5000)\n"
            "  --seconds S      minimum time per case (default 1)\n"
            "  --recipe R       recipe to time (default simclr)\n"
            "  --ideas          also time the per-image libvips alternatives\n"
            "  --step-costs     time instead what one vips: or jpeg step adds to a view\n"
            "                   at 32 and 224, beside the built-in operation that does\n"
            "                   the same\n"
            "  --help\n");
}

int main(int argc, char **argv)
{
    const char *cifar = "../shared/data/cifar10-train", *imagenet = "../shared/data/imagenet-sample";
    const char *recipe = "simclr";
    size_t n_cifar = 5000;
    double seconds = BENCH_MIN_SECONDS;
    int ideas = 0, step_costs = 0;
    static const struct option opts[] = {
        {"cifar", required_argument, 0, 'c'}, {"imagenet", required_argument, 0, 'i'},
        {"n-cifar", required_argument, 0, 'n'}, {"seconds", required_argument, 0, 's'},
        {"recipe", required_argument, 0, 'r'}, {"ideas", no_argument, 0, 'x'},
        {"step-costs", no_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int ch, bad = 0;
    char err[256];
    opterr = 0;
    while (!bad && (ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': cifar = optarg; break;
        case 'i': imagenet = optarg; break;
        case 'n': bad = cli_size("--n-cifar", optarg, 1, SIZE_MAX, &n_cifar, err, sizeof err); break;
        case 's': bad = cli_double_above("--seconds", optarg, 0, BENCH_MAX_SECONDS, &seconds, err, sizeof err); break;
        case 'r': recipe = optarg; break;
        case 'x': ideas = 1; break;
        case 'p': step_costs = 1; bench_clock = CLOCK_PROCESS_CPUTIME_ID; break;
        case 'h': usage(stdout); return 0;
        default:
            cli_option_error(ch, argv, err, sizeof err);
            bad = 1;
        }
    }
    if (bad)
        return cli_usage_error("augment_bench", "%s", err);
    if (VIPS_INIT(argv[0])) {
        fprintf(stderr, "augment_bench: libvips: %s", vips_error_buffer());
        return 1;
    }
    vips_concurrency_set(1);
    vips_cache_set_max(0);
    image_set_t small = {0}, large = {0};
    if (load_dir(&small, cifar, n_cifar) || load_dir(&large, imagenet, 1000)) return 1;
    int rc = step_costs ? time_step_costs(&small, "cifar10", 32, seconds) ||
                          time_step_costs(&large, "imagenet-sample", 224, seconds)
           : time_library(&small, "cifar10", 32, recipe, seconds) ||
             time_library(&large, "imagenet-sample", 224, recipe, seconds) ||
             time_library(&large, "imagenet-sample", 96, recipe, seconds);
    if (!rc && ideas && !step_costs)
        rc = time_vips_naive(&small, "cifar10", 32) ||
             time_vips_geometry(&large, "imagenet-sample", 224) ||
             time_vips_geometry(&large, "imagenet-sample", 96);
    for (size_t i = 0; i < small.n; i++) g_free(small.items[i].pixels);
    for (size_t i = 0; i < large.n; i++) g_free(large.items[i].pixels);
    free(small.items);
    free(large.items);
    vips_shutdown();
    return rc ? 1 : 0;
}

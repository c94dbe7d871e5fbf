/* make_images: writes a small labeled image folder for the tests, so that no
 * test needs a dataset from outside the repository. One sub-folder per class
 * (class00, class01, ...), each holding --per-class images of --size x --size
 * pixels, RGB or gray, saved by libvips as baseline JPEG or, every
 * --png-every-th image, as PNG.
 *
 * Each class has its own picture: stripes at an angle of its own (180 / classes
 * degrees apart) on a background colour of its own, with a per-image random
 * phase, stripe period, brightness and pixel noise, so that images of one class
 * differ and a network can still learn the classes apart. The same --seed
 * writes the same files.
 *
 *   make_images --out DIR [--classes 10] [--per-class 50] [--size 32]
 *               [--channels 3] [--png-every 4] [--seed 1]
 *
 * Exits 0 when every file was written, 1 on a write error, 2 on bad usage. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <vips/vips.h>

#include "cli/cli.h"

#define MAX_CLASSES   100
#define MAX_PER_CLASS 100000
#define MAX_SIDE      1024
#define JPEG_QUALITY  90
#define NOISE_AMPL    24.0     /* +- grey levels of per-pixel noise */

/* A small deterministic generator (xorshift64*), enough for test pictures. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) / (double)(1ULL << 53);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: make_images --out DIR [--classes N] [--per-class N] [--size S]\n"
               "                   [--channels 1|3] [--png-every K] [--seed N]\n"
               "Writes DIR/classNN/NNNN.jpg|png: a labeled folder of synthetic images for tests.\n");
}

/* The pixels of image `i` of class `c`: (side, side, ch) 8-bit. */
static void draw(uint8_t *px, int side, int ch, int c, int classes, uint64_t *rng)
{
    double angle = M_PI * c / classes;
    double period = 4.0 + 4.0 * rng_unit(rng);
    double phase = 2.0 * M_PI * rng_unit(rng);
    double gain = 0.7 + 0.3 * rng_unit(rng);
    double ca = cos(angle), sa = sin(angle);
    /* background colour of the class: a point on a colour wheel */
    double bg[3];
    for (int k = 0; k < 3; k++)
        bg[k] = 60.0 + 50.0 * cos(2.0 * M_PI * c / classes + 2.0 * M_PI * k / 3.0);
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            double t = (x * ca + y * sa) * 2.0 * M_PI / period + phase;
            double stripe = 0.5 + 0.5 * sin(t);
            for (int k = 0; k < ch; k++) {
                double base = ch == 1 ? 80.0 : bg[k];
                double v = gain * (base + 120.0 * stripe) + NOISE_AMPL * (2.0 * rng_unit(rng) - 1.0);
                px[(y * side + x) * ch + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
}

int main(int argc, char **argv)
{
    const char *out = NULL;
    long classes = 10, per_class = 50, side = 32, ch = 3, png_every = 4, seed = 1;
    static const struct option opts[] = {
        { "out", required_argument, 0, 'o' }, { "classes", required_argument, 0, 'c' },
        { "per-class", required_argument, 0, 'n' }, { "size", required_argument, 0, 's' },
        { "channels", required_argument, 0, 'C' }, { "png-every", required_argument, 0, 'p' },
        { "seed", required_argument, 0, 'S' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
    int o;
    char err[256];
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        int bad = 0;
        switch (o) {
        case 'o': out = optarg; break;
        case 'c': bad = cli_long("--classes", optarg, 1, MAX_CLASSES, &classes, err, sizeof err); break;
        case 'n': bad = cli_long("--per-class", optarg, 1, MAX_PER_CLASS, &per_class, err, sizeof err); break;
        case 's': bad = cli_long("--size", optarg, 4, MAX_SIDE, &side, err, sizeof err); break;
        case 'C':
            bad = cli_long("--channels", optarg, 1, 3, &ch, err, sizeof err) ||
                  (ch == 2 && snprintf(err, sizeof err, "--channels wants 1 or 3, got 2") > 0);
            break;
        case 'p': bad = cli_long("--png-every", optarg, 0, MAX_PER_CLASS, &png_every, err, sizeof err); break;
        case 'S': bad = cli_long("--seed", optarg, 0, INT32_MAX, &seed, err, sizeof err); break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        default:
            cli_option_error(o, argv, err, sizeof err);
            bad = 1;
        }
        if (bad)
            return cli_usage_error("make_images", "%s", err);
    }
    if (!out || optind < argc)
        return cli_usage_error("make_images", "%s", !out ? "--out DIR is required" : "unexpected argument");
    if (VIPS_INIT(argv[0])) {
        fprintf(stderr, "make_images: libvips failed to start: %s\n", vips_error_buffer());
        return 1;
    }
    if (mkdir(out, 0755) && errno != EEXIST) {
        fprintf(stderr, "make_images: cannot make %s: %s\n", out, strerror(errno));
        return 1;
    }
    size_t npx = (size_t)side * side * ch;
    uint8_t *px = malloc(npx);
    if (!px) {
        fprintf(stderr, "make_images: out of memory\n");
        return 1;
    }
    int rc = 0;
    char path[4096];
    for (long c = 0; c < classes && !rc; c++) {
        snprintf(path, sizeof path, "%s/class%02ld", out, c);
        if (mkdir(path, 0755) && errno != EEXIST) {
            fprintf(stderr, "make_images: cannot make %s: %s\n", path, strerror(errno));
            rc = 1;
            break;
        }
        for (long i = 0; i < per_class && !rc; i++) {
            uint64_t rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(seed + 1) ^ (uint64_t)(c * MAX_PER_CLASS + i + 1);
            for (int w = 0; w < 4; w++)
                rng_next(&rng);
            draw(px, (int)side, (int)ch, (int)c, (int)classes, &rng);
            int png = png_every > 0 && i % png_every == png_every - 1;
            snprintf(path, sizeof path, "%s/class%02ld/%04ld.%s", out, c, i, png ? "png" : "jpg");
            VipsImage *im = vips_image_new_from_memory(px, npx, (int)side, (int)side, (int)ch,
                                                       VIPS_FORMAT_UCHAR);
            if (!im) {
                rc = 1;
            } else {
                if (ch == 1)
                    im->Type = VIPS_INTERPRETATION_B_W;
                rc = png ? vips_pngsave(im, path, NULL)
                         : vips_jpegsave(im, path, "Q", JPEG_QUALITY, NULL);
                g_object_unref(im);
            }
            if (rc)
                fprintf(stderr, "make_images: cannot write %s: %s\n", path, vips_error_buffer());
        }
    }
    free(px);
    vips_shutdown();
    return rc;
}

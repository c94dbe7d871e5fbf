/* loader_steps: what each step of the loader's decoding epoch costs per image,
 * on one thread, over the first N files of a class-folder dataset. Prints one
 * JSON line per step:
 *   read_file        open + read + close of the encoded file
 *   dataset_read     the loader's decode (read + libjpeg for small JPEGs)
 *   vips_file        naive libvips: vips_image_new_from_file + write to memory
 *   vips_buffer      best libvips found: jpegload from the bytes in memory,
 *                    sequential, computed through a region (no worker pool)
 *   sample_encode    proto_sample_encode of the decoded image
 *
 *   loader_steps --data ../shared/data/cifar10-train [--limit 5000]
 */
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vips/vips.h>

#include "cli/cli.h"
#include "console/console.h"
#include "dataset/dataset.h"
#include "proto/proto.h"

#define DEFAULT_LIMIT 5000
#define FILE_BUF      (1 << 20)

static void report(const char *step, size_t n, double seconds)
{
    json_t *j = json_pack("{s:s, s:s, s:I, s:f, s:f}", "bench", "loader_step", "step", step, "images",
                          (json_int_t)n, "us_per_image", seconds / (double)n * 1e6, "images_per_s",
                          (double)n / seconds);
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(j);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loader_steps [options]\n"
            "Times each step of the loader's decoding epoch on one thread over the first N files of\n"
            "a class-folder dataset, and prints one JSON line per step (microseconds per image):\n"
            "read_file (open, read, close), dataset_read (the loader's decode), vips_file (naive\n"
            "libvips), vips_buffer (libvips from memory through a region), sample_encode.\n"
            "  --data FOLDER  the class-folder dataset (required)\n"
            "  --limit N      files to time: the first N of the dataset (default %d)\n"
            "  --help\n",
            DEFAULT_LIMIT);
}

int main(int argc, char **argv)
{
    const char *data = NULL;
    size_t limit = DEFAULT_LIMIT;
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'}, {"limit", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
    int c;
    char err[1024];
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        if (c == 'd') {
            data = optarg;
        } else if (c == 'l') {
            if (cli_size("--limit", optarg, 1, SIZE_MAX, &limit, err, sizeof err))
                return cli_usage_error("loader_steps", "%s", err);
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            cli_option_error(c, argv, err, sizeof err);
            return cli_usage_error("loader_steps", "%s", err);
        }
    }
    if (!data)
        return cli_usage_error("loader_steps", "usage: loader_steps --data FOLDER [--limit N]");
    dataset_t *ds = dataset_new(data, DATASET_FORMAT_FOLDER, err, sizeof err);
    if (!ds) {
        fprintf(stderr, "loader_steps: %s\n", err);
        return 2;
    }
    size_t n = dataset_count(ds) < limit ? dataset_count(ds) : limit;
    char **paths = calloc(n, sizeof *paths);
    for (size_t i = 0; i < n; i++) {
        char name[4096];
        paths[i] = strdup(dataset_item_name(ds, i, name, sizeof name));
    }
    uint8_t *buf = malloc(FILE_BUF);
    size_t *lens = calloc(n, sizeof *lens);

    /* read_file */
    double t = console_now();
    for (size_t i = 0; i < n; i++) {
        int fd = open(paths[i], O_RDONLY);
        ssize_t r = fd >= 0 ? read(fd, buf, FILE_BUF) : -1;
        lens[i] = r > 0 ? (size_t)r : 0;
        if (fd >= 0)
            close(fd);
    }
    report("read_file", n, console_now() - t);

    /* dataset_read */
    dataset_image_t img;
    dataset_image_init(&img);
    dataset_error_t derr;
    dataset_decode_opts_t o = {.channels = 0, .max_side = 0, .max_pixels = DATASET_DEFAULT_MAX_PIXELS};
    t = console_now();
    for (size_t i = 0; i < n; i++)
        if (dataset_read(ds, i, &o, &img, &derr))
            fprintf(stderr, "loader_steps: %s\n", derr.message);
    report("dataset_read", n, console_now() - t);

    /* libvips, naive */
    t = console_now();
    for (size_t i = 0; i < n; i++) {
        VipsImage *im = vips_image_new_from_file(paths[i], NULL);
        size_t len;
        void *p = im ? vips_image_write_to_memory(im, &len) : NULL;
        g_free(p);
        if (im)
            g_object_unref(im);
    }
    report("vips_file", n, console_now() - t);

    /* libvips from memory, sequential, through a region */
    uint8_t **files = calloc(n, sizeof *files);
    for (size_t i = 0; i < n; i++) {
        gsize len;
        g_file_get_contents(paths[i], (gchar **)&files[i], &len, NULL);
        lens[i] = len;
    }
    t = console_now();
    for (size_t i = 0; i < n; i++) {
        VipsImage *im = NULL;
        if (vips_jpegload_buffer(files[i], lens[i], &im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                 VIPS_FAIL_ON_TRUNCATED, NULL))
            continue;
        VipsRegion *r = vips_region_new(im);
        VipsRect all = {0, 0, im->Xsize, im->Ysize};
        if (vips_region_prepare(r, &all) == 0) {
            size_t line = VIPS_IMAGE_SIZEOF_LINE(im);
            for (int y = 0; y < im->Ysize; y++)
                memcpy(buf + (size_t)y * line, VIPS_REGION_ADDR(r, 0, y), line);
        }
        g_object_unref(r);
        g_object_unref(im);
    }
    report("vips_buffer", n, console_now() - t);

    /* proto_sample_encode */
    dataset_read(ds, 0, &o, &img, &derr);
    proto_buf_t out;
    proto_buf_init(&out);
    proto_sample_t s = {.index = 0, .epoch = 0, .label = 0, .height = img.height, .width = img.width,
                        .channels = img.channels, .pixels = img.pixels};
    t = console_now();
    for (size_t i = 0; i < n; i++) {
        s.index = i;
        proto_sample_encode(&out, &s, NULL, 0);
    }
    report("sample_encode", n, console_now() - t);

    proto_buf_release(&out);
    for (size_t i = 0; i < n; i++) {
        free(paths[i]);
        g_free(files[i]);
    }
    free(paths);
    free(files);
    free(lens);
    free(buf);
    dataset_image_release(&img);
    dataset_destroy(&ds);
    return 0;
}

/* dataset: decoding image files and raw records into 8-bit HWC pixels.
 *
 * Small baseline JPEGs (the common case: CIFAR-sized photos) are decoded with
 * libjpeg directly: a libvips load costs about 110 us of fixed overhead per
 * call on a 32x32 file and does not scale across threads (its operation
 * machinery takes process-wide locks), where libjpeg takes about 10 us and
 * scales. libjpeg is the library libvips itself decodes JPEG with, set up the
 * same way (RGB or grayscale output, default DCT and upsampling), so the
 * pixels are the same. Everything else (other formats, CMYK, images above
 * max_side, channel conversions) goes through libvips.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <vips/vips.h>

#include "dataset/dataset_internal.h"
#include "errmsg/errmsg.h"

#define MAX_FILE_BYTES   (1ull << 30)  /* larger files are refused as too large */
#define VIPS_DETAIL_MAX  200           /* characters of a libvips message kept */
#define LUMA_R           299           /* Rec. 601 luma weights, per mille */
#define LUMA_G           587
#define LUMA_B           114
#define LUMA_SCALE       1000

/* ---------------------------------------------------------------- libvips */

static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static atomic_int vips_started;                /* set once, inside vips_once */
static char vips_start_error[VIPS_DETAIL_MAX + 1];   /* libvips' reason when it could not start */

static void quiet_log(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data)
{
    (void)domain, (void)level, (void)message, (void)data;
}

static void vips_start(void)
{
    if (VIPS_INIT("dataset")) {
        snprintf(vips_start_error, sizeof vips_start_error, "%s", vips_error_buffer());
        return;
    }
    vips_cache_set_max(0);
    vips_concurrency_set(1);
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING, quiet_log, NULL);
    atomic_store_explicit(&vips_started, 1, memory_order_release);
}

int dataset_decoder_start(char *err, size_t errlen)
{
    pthread_once(&vips_once, vips_start);
    if (atomic_load_explicit(&vips_started, memory_order_acquire))
        return 0;
    errmsg_set(err, errlen, "dataset: cannot start libvips: %s", vips_start_error);
    return -1;
}

void dataset_thread_done(void)
{
    if (atomic_load_explicit(&vips_started, memory_order_acquire))
        vips_thread_shutdown();
}

/* The first line of libvips' error buffer, which it then clears. */
static void vips_detail(char *out, size_t n)
{
    const char *e = vips_error_buffer();
    size_t len = strcspn(e, "\n");
    if (len > VIPS_DETAIL_MAX)
        len = VIPS_DETAIL_MAX;
    if (len == 0)
        snprintf(out, n, "unknown libvips error");
    else
        snprintf(out, n, "%.*s", (int)len, e);
    vips_error_clear();
}

/* Copies a libvips image (uchar, 1 or 3 bands) into img as HWC, computing it
 * in the calling thread (a region, not a worker pool). */
static int vips_to_img(VipsImage *im, const char *name, dataset_image_t *img, dataset_error_t *err)
{
    size_t line = VIPS_IMAGE_SIZEOF_LINE(im);
    size_t need = line * (size_t)im->Ysize;
    if (dataset__reserve(&img->pixels, &img->pixels_cap, need))
        return dataset__fail(err, DATASET_ERR_TOO_LARGE, "%s: out of memory for %zu bytes", name, need);
    VipsRegion *r = vips_region_new(im);
    VipsRect all = {0, 0, im->Xsize, im->Ysize};
    if (!r || vips_region_prepare(r, &all)) {
        char d[VIPS_DETAIL_MAX + 1];
        vips_detail(d, sizeof d);
        if (r)
            g_object_unref(r);
        return dataset__fail(err, DATASET_ERR_CORRUPT, "%s: corrupt or truncated (%s)", name, d);
    }
    for (int y = 0; y < im->Ysize; y++)
        memcpy(img->pixels + (size_t)y * line, VIPS_REGION_ADDR(r, 0, y), line);
    g_object_unref(r);
    img->height = (uint32_t)im->Ysize;
    img->width = (uint32_t)im->Xsize;
    img->channels = (uint32_t)im->Bands;
    return 0;
}

/* Replaces *im by out (consuming the reference to *im). */
static void swap_image(VipsImage **im, VipsImage *out)
{
    g_object_unref(*im);
    *im = out;
}

/* Brings *im to 8-bit sRGB (3 bands) or 8-bit grayscale (1 band): drops
 * alpha, converts CMYK / 16-bit / float / other colour spaces, and applies
 * the requested channel count. Only the operations needed are run. */
static int vips_normalise(VipsImage **im, int want_channels)
{
    VipsImage *t;
    if (vips_image_hasalpha(*im)) {
        if (vips_extract_band(*im, &t, 0, "n", (*im)->Bands - 1, NULL))
            return -1;
        swap_image(im, t);
    }
    VipsInterpretation interp = vips_image_guess_interpretation(*im);
    int gray = (*im)->Bands == 1 || interp == VIPS_INTERPRETATION_B_W || interp == VIPS_INTERPRETATION_GREY16;
    int bands = want_channels ? want_channels : (gray ? 1 : 3);
    VipsInterpretation target = bands == 1 ? VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB;
    int plain = (*im)->BandFmt == VIPS_FORMAT_UCHAR && (*im)->Bands == bands &&
                (bands == 1 ? interp == VIPS_INTERPRETATION_B_W || interp == VIPS_INTERPRETATION_MULTIBAND
                            : interp == VIPS_INTERPRETATION_sRGB || interp == VIPS_INTERPRETATION_RGB);
    if (!plain) {
        if (vips_colourspace(*im, &t, target, NULL))
            return -1;
        swap_image(im, t);
    }
    if ((*im)->BandFmt != VIPS_FORMAT_UCHAR) {
        if (vips_cast_uchar(*im, &t, NULL))
            return -1;
        swap_image(im, t);
    }
    if ((*im)->Bands != bands) {
        vips_error("dataset", "%d bands after conversion, expected %d", (*im)->Bands, bands);
        return -1;
    }
    return 0;
}

/* Appends ", text" (or "text" first) to the note in buf. */
static void note_add(char *buf, size_t n, const char *text)
{
    size_t k = strlen(buf);
    snprintf(buf + k, n - k, "%s%s", k ? ", " : "", text);
}

/* Sets img->note to what bringing `im` to 8-bit gray or sRGB will lose:
 * frames after the first, CMYK, alpha, bits beyond 8. */
static void conversion_note(VipsImage *im, const char *name, dataset_image_t *img)
{
    char what[DATASET_MESSAGE_MAX / 2] = "", part[64];
    int pages = vips_image_get_n_pages(im);
    if (pages > 1) {
        snprintf(part, sizeof part, "first of %d frames kept", pages);
        note_add(what, sizeof what, part);
    }
    if (vips_image_get_interpretation(im) == VIPS_INTERPRETATION_CMYK)
        note_add(what, sizeof what, "CMYK converted to sRGB");
    if (vips_image_hasalpha(im))
        note_add(what, sizeof what, "alpha dropped");
    if (im->BandFmt != VIPS_FORMAT_UCHAR && im->BandFmt != VIPS_FORMAT_CHAR) {
        snprintf(part, sizeof part, "%d-bit %s samples reduced to 8-bit", (int)(8 * vips_format_sizeof(im->BandFmt)),
                 vips_band_format_isfloat(im->BandFmt) ? "float" : "integer");
        note_add(what, sizeof what, part);
    }
    if (what[0])
        snprintf(img->note, sizeof img->note, "%s: %s", name, what);
}

static int decode_vips(const char *name, const uint8_t *buf, size_t len, const dataset_decode_opts_t *o,
                       dataset_image_t *img, dataset_error_t *err)
{
    char d[DATASET_MESSAGE_MAX];
    if (dataset_decoder_start(d, sizeof d))
        return dataset__fail(err, DATASET_ERR_UNREADABLE, "%s: %s", name, d);
    const char *loader = vips_foreign_find_load_buffer(buf, len);
    if (!loader) {
        vips_error_clear();
        return dataset__fail(err, DATASET_ERR_CORRUPT, "%s: not an image (no decoder recognises it)", name);
    }
    VipsImage *im = vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                               VIPS_FAIL_ON_TRUNCATED, NULL);
    if (!im) {
        vips_detail(d, sizeof d);
        return dataset__fail(err, DATASET_ERR_CORRUPT, "%s: corrupt image header (%s)", name, d);
    }
    uint64_t pixels = (uint64_t)im->Xsize * (uint64_t)im->Ysize;
    if (o->max_pixels && pixels > o->max_pixels) {
        int w = im->Xsize, h = im->Ysize;
        g_object_unref(im);
        return dataset__fail(err, DATASET_ERR_TOO_LARGE, "%s: %dx%d is %.1f megapixels, above --max-pixels %.1f",
                             name, w, h, (double)pixels / 1e6, (double)o->max_pixels / 1e6);
    }
    conversion_note(im, name, img);
    if (o->max_side && ((uint32_t)im->Xsize > o->max_side || (uint32_t)im->Ysize > o->max_side)) {
        /* Load again, shrinking while decoding (JPEG DCT scaling, WebP/TIFF
         * pyramids), then resize the rest of the way. */
        g_object_unref(im);
        im = NULL;
        if (vips_thumbnail_buffer((void *)buf, len, &im, (int)o->max_side, "height", (int)o->max_side, "size",
                                  VIPS_SIZE_DOWN, "no_rotate", TRUE, "option_string", "fail_on=truncated",
                                  NULL)) {
            vips_detail(d, sizeof d);
            return dataset__fail(err, DATASET_ERR_CORRUPT, "%s: corrupt or truncated (%s)", name, d);
        }
    }
    if (vips_normalise(&im, o->channels)) {
        vips_detail(d, sizeof d);
        g_object_unref(im);
        return dataset__fail(err, DATASET_ERR_CORRUPT, "%s: unsupported pixel layout (%s)", name, d);
    }
    int rc = vips_to_img(im, name, img, err);
    g_object_unref(im);
    return rc;
}

/* ---------------------------------------------------------------- libjpeg */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;
} jpeg_err_t;

static void jpeg_on_error(j_common_ptr c)
{
    jpeg_err_t *e = (jpeg_err_t *)c->err;
    longjmp(e->jump, 1);
}

static void jpeg_on_message(j_common_ptr c, int level)
{
    /* Warnings are not printed; a premature end of data is a truncated file. */
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF)
        ((jpeg_err_t *)c->err)->truncated = 1;
}

static int is_jpeg(const uint8_t *buf, size_t len)
{
    return len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF;
}

/* Decodes a JPEG that needs no conversion. Returns 0 done, -1 failed (err
 * set), 1 when libvips should handle it (CMYK, 12-bit, shrink, channel change). */
static int decode_jpeg(const char *name, const uint8_t *buf, size_t len, const dataset_decode_opts_t *o,
                       dataset_image_t *img, dataset_error_t *err)
{
    struct jpeg_decompress_struct c;
    jpeg_err_t e;
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jpeg_on_error;
    e.pub.emit_message = jpeg_on_message;
    e.truncated = 0;
    volatile int rc = 1;
    if (setjmp(e.jump)) {
        char msg[JMSG_LENGTH_MAX];
        e.pub.format_message((j_common_ptr)&c, msg);
        jpeg_destroy_decompress(&c);
        return dataset__fail(err, DATASET_ERR_CORRUPT, "%s: corrupt JPEG (%s)", name, msg);
    }
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, buf, (unsigned long)len);
    jpeg_read_header(&c, TRUE);
    uint64_t pixels = (uint64_t)c.image_width * c.image_height;
    if (o->max_pixels && pixels > o->max_pixels) {
        rc = dataset__fail(err, DATASET_ERR_TOO_LARGE, "%s: %ux%u is %.1f megapixels, above --max-pixels %.1f",
                           name, c.image_width, c.image_height, (double)pixels / 1e6,
                           (double)o->max_pixels / 1e6);
        goto done;
    }
    int comps = c.num_components;
    int simple = (c.jpeg_color_space == JCS_GRAYSCALE && comps == 1) ||
                 ((c.jpeg_color_space == JCS_YCbCr || c.jpeg_color_space == JCS_RGB) && comps == 3);
    if (!simple || (o->channels && o->channels != comps) ||
        (o->max_side && (c.image_width > o->max_side || c.image_height > o->max_side)))
        goto done;
    c.out_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&c);
    size_t line = (size_t)c.output_width * (size_t)c.output_components;
    if (dataset__reserve(&img->pixels, &img->pixels_cap, line * c.output_height)) {
        rc = dataset__fail(err, DATASET_ERR_TOO_LARGE, "%s: out of memory", name);
        goto done;
    }
    while (c.output_scanline < c.output_height) {
        JSAMPROW row = img->pixels + (size_t)c.output_scanline * line;
        jpeg_read_scanlines(&c, &row, 1);
    }
    if (e.truncated) {
        rc = dataset__fail(err, DATASET_ERR_CORRUPT, "%s: truncated JPEG (premature end of data)", name);
        goto done;
    }
    jpeg_finish_decompress(&c);
    img->height = c.output_height;
    img->width = c.output_width;
    img->channels = (uint32_t)c.output_components;
    rc = 0;
done:
    jpeg_destroy_decompress(&c);
    return rc;
}

/* ---------------------------------------------------------------- files */

static int read_file(const char *path, dataset_image_t *img, size_t *len, dataset_error_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dataset__fail(err, DATASET_ERR_UNREADABLE, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dataset__fail(err, DATASET_ERR_UNREADABLE, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > MAX_FILE_BYTES) {
        close(fd);
        return dataset__fail(err, DATASET_ERR_TOO_LARGE, "%s: file is %lld bytes, above %llu", path,
                             (long long)st.st_size, MAX_FILE_BYTES);
    }
    size_t size = (size_t)st.st_size;
    if (dataset__reserve(&img->file, &img->file_cap, size + 1)) {
        close(fd);
        return dataset__fail(err, DATASET_ERR_TOO_LARGE, "%s: out of memory for %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, img->file + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return dataset__fail(err, DATASET_ERR_UNREADABLE, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *len = got;
    return 0;
}

int dataset__decode_file(const char *path, const dataset_decode_opts_t *opts, dataset_image_t *img,
                         dataset_error_t *err)
{
    size_t len = 0;
    if (read_file(path, img, &len, err))
        return -1;
    if (len == 0)
        return dataset__fail(err, DATASET_ERR_CORRUPT, "%s: empty file (0 bytes)", path);
    if (is_jpeg(img->file, len)) {
        int rc = decode_jpeg(path, img->file, len, opts, img, err);
        if (rc <= 0)
            return rc;
    }
    return decode_vips(path, img->file, len, opts, img, err);
}

/* ---------------------------------------------------------------- records */

int dataset__from_pixels(const uint8_t *src, uint32_t height, uint32_t width, uint32_t channels, int planar,
                         const char *name, const dataset_decode_opts_t *opts, dataset_image_t *img,
                         dataset_error_t *err)
{
    uint32_t out_c = opts->channels ? (uint32_t)opts->channels : channels;
    size_t plane = (size_t)height * width;
    if (dataset__reserve(&img->pixels, &img->pixels_cap, plane * out_c))
        return dataset__fail(err, DATASET_ERR_TOO_LARGE, "%s: out of memory", name);
    uint8_t *dst = img->pixels;
    /* Channel c of pixel p in the source. */
#define SRC(p, c) (planar ? src[(size_t)(c) * plane + (p)] : src[(p) * channels + (c)])
    if (out_c == channels && !planar) {
        memcpy(dst, src, plane * channels);
    } else if (out_c == channels) {
        for (size_t p = 0; p < plane; p++)
            for (uint32_t c = 0; c < channels; c++)
                dst[p * channels + c] = SRC(p, c);
    } else if (out_c == 3 && channels == 1) {
        for (size_t p = 0; p < plane; p++)
            dst[3 * p] = dst[3 * p + 1] = dst[3 * p + 2] = src[p];
    } else if (out_c == 1 && channels == 3) {
        for (size_t p = 0; p < plane; p++)
            dst[p] = (uint8_t)((LUMA_R * SRC(p, 0) + LUMA_G * SRC(p, 1) + LUMA_B * SRC(p, 2) + LUMA_SCALE / 2) /
                               LUMA_SCALE);
    } else {
        return dataset__fail(err, DATASET_ERR_CORRUPT, "%s: cannot turn %u channels into %u", name, channels,
                             out_c);
    }
#undef SRC
    img->height = height;
    img->width = width;
    img->channels = out_c;
    if (!opts->max_side || (height <= opts->max_side && width <= opts->max_side))
        return 0;

    /* Larger than max_side: shrink with libvips. */
    char d[DATASET_MESSAGE_MAX];
    if (dataset_decoder_start(d, sizeof d))
        return dataset__fail(err, DATASET_ERR_UNREADABLE, "%s: %s", name, d);
    VipsImage *in = vips_image_new_from_memory_copy(img->pixels, plane * out_c, (int)width, (int)height,
                                                    (int)out_c, VIPS_FORMAT_UCHAR);
    VipsImage *small = NULL;
    if (!in || vips_thumbnail_image(in, &small, (int)opts->max_side, "height", (int)opts->max_side, "size",
                                    VIPS_SIZE_DOWN, NULL)) {
        vips_detail(d, sizeof d);
        if (in)
            g_object_unref(in);
        return dataset__fail(err, DATASET_ERR_CORRUPT, "%s: cannot shrink (%s)", name, d);
    }
    g_object_unref(in);
    int rc = vips_to_img(small, name, img, err);
    g_object_unref(small);
    return rc;
}

/* nn/safetensors: validated reader and atomic writer. */
#include "errmsg/errmsg.h"
#include "nn/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "nn/safetensors assumes a little-endian machine (the file format is little-endian F32)"
#endif

static int cmp_begin(const void *a, const void *b)
{
    const nn_st_entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int read_file(const char *path, unsigned char **out, size_t *size, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        errmsg_set(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) || !S_ISREG(st.st_mode)) {
        errmsg_set(err, errlen, "%s: not a regular file", path);
        fclose(fp);
        return -1;
    }
    unsigned char *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!buf || fread(buf, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
        errmsg_set(err, errlen, "%s: cannot read %lld bytes", path, (long long)st.st_size);
        free(buf);
        fclose(fp);
        return -1;
    }
    fclose(fp);
    *out = buf;
    *size = (size_t)st.st_size;
    return 0;
}

static int parse_entry(nn_st_entry *e, const char *name, json_t *v, size_t data_size,
                       const char *path, char *err, size_t errlen)
{
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (strlen(name) >= sizeof e->name) {
        errmsg_set(err, errlen, "%s: tensor name longer than %zu bytes: '%.40s...'", path,
                sizeof e->name - 1, name);
        return -1;
    }
    snprintf(e->name, sizeof e->name, "%s", name);
    if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(sh) || !json_is_array(off) ||
        json_array_size(off) != 2) {
        errmsg_set(err, errlen, "%s: tensor '%s': header entry needs dtype, shape and data_offsets [begin, end]",
                path, name);
        return -1;
    }
    if (strcmp(json_string_value(dt), "F32") != 0) {
        errmsg_set(err, errlen, "%s: tensor '%s' has dtype %s; only F32 is supported", path, name,
                json_string_value(dt));
        return -1;
    }
    if (json_array_size(sh) > NN_MAX_DIMS) {
        errmsg_set(err, errlen, "%s: tensor '%s' has %zu dimensions (at most %d)", path, name,
                json_array_size(sh), NN_MAX_DIMS);
        return -1;
    }
    e->ndim = (int)json_array_size(sh);
    e->numel = 1;
    for (int i = 0; i < e->ndim; i++) {
        json_t *d = json_array_get(sh, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > (1 << 30)) {
            errmsg_set(err, errlen, "%s: tensor '%s': bad shape", path, name);
            return -1;
        }
        e->shape[i] = (int)json_integer_value(d);
        e->numel *= (size_t)e->shape[i];
    }
    json_t *b = json_array_get(off, 0), *en = json_array_get(off, 1);
    if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 ||
        json_integer_value(en) < json_integer_value(b)) {
        errmsg_set(err, errlen, "%s: tensor '%s': bad data_offsets", path, name);
        return -1;
    }
    e->begin = (size_t)json_integer_value(b);
    e->end = (size_t)json_integer_value(en);
    if (e->end - e->begin != e->numel * sizeof(float)) {
        errmsg_set(err, errlen, "%s: tensor '%s': data_offsets span %zu bytes, shape needs %zu",
                path, name, e->end - e->begin, e->numel * sizeof(float));
        return -1;
    }
    if (e->end > data_size) {
        errmsg_set(err, errlen, "%s: tensor '%s' ends at byte %zu of a %zu-byte data section: "
                "the file is truncated", path, name, e->end, data_size);
        return -1;
    }
    return 0;
}

int nn_st_read(nn_st_file *f, const char *path, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    if (read_file(path, &f->blob, &f->size, err, errlen))
        return -1;
    if (f->size < 8) {
        errmsg_set(err, errlen, "%s: %zu bytes, too short for a safetensors file (truncated?)", path, f->size);
        return -1;
    }
    uint64_t hlen;
    memcpy(&hlen, f->blob, 8);
    if (hlen > NN_ST_MAX_HEADER || hlen > f->size - 8) {
        errmsg_set(err, errlen, "%s: header length %llu does not fit in a %zu-byte file: "
                "truncated or not a safetensors file", path, (unsigned long long)hlen, f->size);
        return -1;
    }
    f->data_off = 8 + (size_t)hlen;
    size_t data_size = f->size - f->data_off;
    json_error_t je;
    json_t *root = json_loadb((const char *)f->blob + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
        errmsg_set(err, errlen, "%s: header is not a JSON object (%s at column %d): corrupt file",
                path, root ? "not an object" : je.text, je.column);
        json_decref(root);
        return -1;
    }
    size_t cap = json_object_size(root);
    f->e = calloc(cap ? cap : 1, sizeof *f->e);
    const char *key;
    json_t *v;
    int rc = -1;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) {
                errmsg_set(err, errlen, "%s: __metadata__ is not an object", path);
                goto out;
            }
            size_t m = json_object_size(v);
            f->meta_keys = calloc(m ? m : 1, sizeof(char *));
            f->meta_vals = calloc(m ? m : 1, sizeof(char *));
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv)) {
                    errmsg_set(err, errlen, "%s: __metadata__ value of '%s' is not a string", path, mk);
                    goto out;
                }
                f->meta_keys[f->n_meta] = strdup(mk);
                f->meta_vals[f->n_meta++] = strdup(json_string_value(mv));
            }
            continue;
        }
        if (parse_entry(&f->e[f->n], key, v, data_size, path, err, errlen))
            goto out;
        f->n++;
    }
    qsort(f->e, (size_t)f->n, sizeof *f->e, cmp_begin);
    size_t at = 0;
    for (int i = 0; i < f->n; i++) {
        if (f->e[i].begin != at) {
            errmsg_set(err, errlen, "%s: tensor '%s' starts at byte %zu, expected %zu: tensors must tile "
                    "the data section without gaps or overlaps", path, f->e[i].name, f->e[i].begin, at);
            goto out;
        }
        at = f->e[i].end;
    }
    if (at != data_size) {
        errmsg_set(err, errlen, "%s: tensors cover %zu bytes but the data section has %zu: %s", path, at,
                data_size, at > data_size ? "truncated" : "trailing bytes (corrupt)");
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

void nn_st_close(nn_st_file *f)
{
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->e);
    free(f->blob);
    memset(f, 0, sizeof *f);
}

const nn_st_entry *nn_st_find(const nn_st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->e[i].name, name) == 0)
            return &f->e[i];
    return NULL;
}

void nn_st_copy(const nn_st_file *f, const nn_st_entry *e, float *dst)
{
    memcpy(dst, f->blob + f->data_off + e->begin, e->end - e->begin);
}

const char *nn_st_meta(const nn_st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_vals[i];
    return NULL;
}

static uint32_t crc_bytes(const unsigned char *p, size_t n)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)crc;
}

uint32_t nn_st_data_crc(const nn_st_file *f)
{
    return crc_bytes(f->blob + f->data_off, f->size - f->data_off);
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int nn_st_write(const char *path, const nn_st_item *items, int n,
                const char *const *meta_keys, const char *const *meta_vals, int n_meta,
                const char *crc_key, char *err, size_t errlen)
{
    json_t *root = json_object(), *meta = json_object();
    char *hdr = NULL, *tmp = NULL;
    int fd = -1, rc = -1;
    size_t off = 0;
    uLong crc = crc32(0L, Z_NULL, 0);
    for (int i = 0; i < n; i++) {
        size_t numel = nn_shape_numel(items[i].ndim, items[i].shape), bytes = numel * sizeof(float);
        json_t *shape = json_array();
        for (int d = 0; d < items[i].ndim; d++)
            json_array_append_new(shape, json_integer(items[i].shape[d]));
        json_object_set_new(root, items[i].name,
                            json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape,
                                      "data_offsets", (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
        const unsigned char *p = (const unsigned char *)items[i].data;
        for (size_t done = 0; done < bytes;) {
            uInt chunk = bytes - done > (1u << 30) ? (1u << 30) : (uInt)(bytes - done);
            crc = crc32(crc, p + done, chunk);
            done += chunk;
        }
    }
    for (int i = 0; i < n_meta; i++)
        json_object_set_new(meta, meta_keys[i], json_string(meta_vals[i]));
    if (crc_key) {
        char hex[32];
        snprintf(hex, sizeof hex, "crc32:%08x", (unsigned)crc);
        json_object_set_new(meta, crc_key, json_string(hex));
    }
    json_object_set_new(root, "__metadata__", meta);
    hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!hdr) {
        errmsg_set(err, errlen, "%s: cannot encode the header (invalid UTF-8 in a name or metadata?)", path);
        goto out;
    }
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    size_t plen = strlen(path) + 32;
    tmp = malloc(plen);
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        errmsg_set(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    uint64_t h64 = padded;
    static const char spaces[8] = "        ";
    int bad = write_all(fd, &h64, 8) || write_all(fd, hdr, hlen) || write_all(fd, spaces, padded - hlen);
    for (int i = 0; i < n && !bad; i++)
        bad = write_all(fd, items[i].data, nn_shape_numel(items[i].ndim, items[i].shape) * sizeof(float));
    if (bad || fsync(fd)) {
        errmsg_set(err, errlen, "%s: write failed: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd)) {
        fd = -1;
        errmsg_set(err, errlen, "%s: close failed: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path)) {
        errmsg_set(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto out;
    }
    char *dcopy = strdup(path);
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dcopy);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc && tmp)
        unlink(tmp);
    free(tmp);
    free(hdr);
    json_decref(root);
    return rc;
}

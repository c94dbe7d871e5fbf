/* dataset: format detection, listing of folders, and the binary record
 * formats (IDX, CIFAR-10, CIFAR-100), which are read into memory at open. */
#include "dataset/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "dataset/dataset_internal.h"
#include "errmsg/errmsg.h"

#define IDX_TYPE_UBYTE        0x08
#define IDX_IMAGES_DIMS       3
#define IDX_LABELS_DIMS       1
#define IDX_IMAGES_HEADER     16     /* magic + count + rows + cols */
#define IDX_LABELS_HEADER     8      /* magic + count */
#define IDX_MAX_SIDE          65535u
#define CIFAR_SIDE            32u
#define CIFAR_CHANNELS        3u
#define CIFAR_PIXEL_BYTES     (CIFAR_SIDE * CIFAR_SIDE * CIFAR_CHANNELS)
#define CIFAR10_LABEL_BYTES   1u
#define CIFAR100_LABEL_BYTES  2u     /* coarse, fine */
#define CIFAR10_CLASSES       10
#define CIFAR100_CLASSES      100
#define READ_CHUNK            (1u << 20)
#define MAX_CLASS_NAME        256

struct dataset {
    dataset_format_t format;
    size_t n;                 /* items */
    int32_t *labels;          /* (n) */
    int n_classes;
    char **class_names;       /* (n_classes) */

    /* folder: full path of every item, offsets into one pool */
    char *path_pool;
    size_t path_pool_len, path_pool_cap;
    size_t *path_off;         /* (n) */
    size_t path_cap;

    /* binary formats: all records in memory */
    uint8_t *data;            /* raw bytes of every file, concatenated */
    size_t data_len;
    size_t record_offset;     /* bytes before record 0 (IDX header) */
    size_t record_stride;     /* bytes from one record to the next */
    size_t pixel_offset;      /* bytes from a record's start to its pixels */
    uint32_t height, width, channels;
    int planar;               /* pixels are (C, H, W) */
    char **files;             /* (n_files) source file names, for messages */
    size_t *file_first;       /* (n_files) index of the file's first item */
    size_t n_files;
};

/* ---------------------------------------------------------------- helpers */

int dataset__fail(dataset_error_t *err, dataset_reason_t reason, const char *fmt, ...)
{
    if (err) {
        err->reason = reason;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int dataset__reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    uint8_t *p = realloc(*buf, c);
    if (!p)
        return -1;
    *buf = p;
    *cap = c;
    return 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a == 0 || dir[a - 1] != '/')
        p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_strings(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Lists the non-hidden entries of `dir` in byte order; `want_dirs` selects
 * sub-folders (1) or regular files (0), symbolic links followed. */
static int list_entries(const char *dir, int want_dirs, char ***out, size_t *n_out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        int dir_entry;
        if (e->d_type == DT_DIR)
            dir_entry = 1;
        else if (e->d_type == DT_REG)
            dir_entry = 0;
        else {
            char *full = join_path(dir, e->d_name);
            struct stat st;
            int ok = full && stat(full, &st) == 0;
            free(full);
            if (!ok) {
                /* A dangling link is still an item: reading it reports it unreadable. */
                if (want_dirs)
                    continue;
                dir_entry = 0;
            } else if (S_ISDIR(st.st_mode))
                dir_entry = 1;
            else if (S_ISREG(st.st_mode) || e->d_type == DT_LNK)
                dir_entry = 0;
            else
                continue;
        }
        if (dir_entry != want_dirs)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nv = realloc(v, cap * sizeof *v);
            if (!nv)
                goto oom;
            v = nv;
        }
        if (!(v[n] = strdup(e->d_name)))
            goto oom;
        n++;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, cmp_str);
    *out = v;
    *n_out = n;
    return 0;
oom:
    closedir(d);
    free_strings(v, n);
    errno = ENOMEM;
    return -1;
}

/* Reads a whole file, plain or gzip (zlib reads plain files unchanged),
 * appending to *buf. No size is trusted before the bytes are there. */
static int read_whole(const char *path, uint8_t **buf, size_t *len, size_t *cap, char *err, size_t n)
{
    gzFile f = gzopen(path, "rb");
    if (!f) {
        errmsg_set(err, n, "cannot open %s: %s", path, strerror(errno ? errno : ENOMEM));
        return -1;
    }
    gzbuffer(f, 256 * 1024);
    for (;;) {
        if (dataset__reserve(buf, cap, *len + READ_CHUNK)) {
            errmsg_set(err, n, "out of memory reading %s", path);
            gzclose(f);
            return -1;
        }
        int got = gzread(f, *buf + *len, READ_CHUNK);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            errmsg_set(err, n, "cannot read %s: %s", path, zerr == Z_ERRNO ? strerror(errno) : msg);
            gzclose(f);
            return -1;
        }
        *len += (size_t)got;
        if (got < (int)READ_CHUNK) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            if (zerr != Z_OK && zerr != Z_STREAM_END) {
                errmsg_set(err, n, "cannot read %s: %s (truncated gzip?)", path, msg);
                gzclose(f);
                return -1;
            }
            break;
        }
    }
    gzclose(f);
    return 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int set_numeric_classes(dataset_t *ds, int n_classes)
{
    ds->n_classes = n_classes;
    ds->class_names = calloc((size_t)n_classes ? (size_t)n_classes : 1, sizeof *ds->class_names);
    if (!ds->class_names)
        return -1;
    for (int c = 0; c < n_classes; c++) {
        char name[16];
        snprintf(name, sizeof name, "%d", c);
        if (!(ds->class_names[c] = strdup(name)))
            return -1;
    }
    return 0;
}

/* Replaces numeric class names with the lines of a names file beside the
 * data (CIFAR's batches.meta.txt, fine_label_names.txt), when present. */
static void load_class_names(dataset_t *ds, const char *dir, const char *file)
{
    char *path = join_path(dir, file);
    FILE *f = path ? fopen(path, "r") : NULL;
    free(path);
    if (!f)
        return;
    char line[MAX_CLASS_NAME];
    int c = 0;
    while (c < ds->n_classes && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            continue;
        char *s = strdup(line);
        if (s) {
            free(ds->class_names[c]);
            ds->class_names[c] = s;
        }
        c++;
    }
    fclose(f);
}

static int add_source_file(dataset_t *ds, const char *path, size_t first)
{
    char **f = realloc(ds->files, (ds->n_files + 1) * sizeof *f);
    if (!f)
        return -1;
    ds->files = f;
    size_t *ff = realloc(ds->file_first, (ds->n_files + 1) * sizeof *ff);
    if (!ff)
        return -1;
    ds->file_first = ff;
    if (!(ds->files[ds->n_files] = strdup(path)))
        return -1;
    ds->file_first[ds->n_files++] = first;
    return 0;
}

/* ---------------------------------------------------------------- folder */

static int add_item(dataset_t *ds, const char *path, int32_t label)
{
    size_t len = strlen(path) + 1;
    if (ds->path_pool_len + len > ds->path_pool_cap) {
        size_t c = ds->path_pool_cap ? ds->path_pool_cap : 65536;
        while (c < ds->path_pool_len + len)
            c *= 2;
        char *p = realloc(ds->path_pool, c);
        if (!p)
            return -1;
        ds->path_pool = p;
        ds->path_pool_cap = c;
    }
    if (ds->n == ds->path_cap) {
        size_t c = ds->path_cap ? ds->path_cap * 2 : 1024;
        size_t *o = realloc(ds->path_off, c * sizeof *o);
        if (!o)
            return -1;
        ds->path_off = o;
        int32_t *l = realloc(ds->labels, c * sizeof *l);
        if (!l)
            return -1;
        ds->labels = l;
        ds->path_cap = c;
    }
    memcpy(ds->path_pool + ds->path_pool_len, path, len);
    ds->path_off[ds->n] = ds->path_pool_len;
    ds->labels[ds->n] = label;
    ds->path_pool_len += len;
    ds->n++;
    return 0;
}

/* Adds the files under `dir` (recursively, sorted: files first, then each
 * sub-folder) with `label`. */
static int add_tree(dataset_t *ds, const char *dir, int32_t label, char *err, size_t n)
{
    char **files = NULL, **dirs = NULL;
    size_t nf = 0, nd = 0;
    int rc = -1;
    if (list_entries(dir, 0, &files, &nf) || list_entries(dir, 1, &dirs, &nd)) {
        errmsg_set(err, n, "cannot list %s: %s", dir, strerror(errno));
        goto done;
    }
    for (size_t i = 0; i < nf; i++) {
        char *p = join_path(dir, files[i]);
        if (!p || add_item(ds, p, label)) {
            free(p);
            errmsg_set(err, n, "out of memory listing %s", dir);
            goto done;
        }
        free(p);
    }
    for (size_t i = 0; i < nd; i++) {
        char *p = join_path(dir, dirs[i]);
        int bad = !p || add_tree(ds, p, label, err, n);
        free(p);
        if (bad)
            goto done;
    }
    rc = 0;
done:
    free_strings(files, nf);
    free_strings(dirs, nd);
    return rc;
}

static int open_folder(dataset_t *ds, const char *root, char *err, size_t n)
{
    char **dirs = NULL;
    size_t nd = 0;
    if (list_entries(root, 1, &dirs, &nd)) {
        errmsg_set(err, n, "cannot list %s: %s", root, strerror(errno));
        return -1;
    }
    int rc = 0;
    if (nd == 0) {
        /* A flat folder: unlabeled images. */
        char **files = NULL;
        size_t nf = 0;
        if (list_entries(root, 0, &files, &nf)) {
            errmsg_set(err, n, "cannot list %s: %s", root, strerror(errno));
            return -1;
        }
        for (size_t i = 0; i < nf && rc == 0; i++) {
            char *p = join_path(root, files[i]);
            if (!p || add_item(ds, p, DATASET_LABEL_NONE)) {
                errmsg_set(err, n, "out of memory listing %s", root);
                rc = -1;
            }
            free(p);
        }
        free_strings(files, nf);
        ds->n_classes = 0;
        ds->class_names = calloc(1, sizeof *ds->class_names);
        return rc;
    }
    /* One sub-folder per class; files directly in root are not items. */
    ds->n_classes = (int)nd;
    ds->class_names = dirs;
    for (size_t c = 0; c < nd && rc == 0; c++) {
        char *p = join_path(root, dirs[c]);
        rc = !p ? -1 : add_tree(ds, p, (int32_t)c, err, n);
        free(p);
    }
    return rc;
}

/* ---------------------------------------------------------------- IDX */

/* Finds the images file for an IDX dataset given a folder or either file. */
static char *idx_images_path(const char *path)
{
    if (is_dir(path)) {
        static const char *const names[] = {"train-images-idx3-ubyte.gz", "train-images-idx3-ubyte",
                                            "train-images.idx3-ubyte"};
        for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
            char *p = join_path(path, names[i]);
            if (p && is_file(p))
                return p;
            free(p);
        }
        /* Otherwise the only images file in the folder. */
        char **files = NULL;
        size_t nf = 0;
        char *found = NULL;
        int count = 0;
        if (list_entries(path, 0, &files, &nf) == 0) {
            for (size_t i = 0; i < nf; i++)
                if (strstr(files[i], "images-idx3-ubyte") || strstr(files[i], "images.idx3-ubyte")) {
                    count++;
                    if (!found)
                        found = join_path(path, files[i]);
                }
            free_strings(files, nf);
        }
        if (count == 1)
            return found;
        free(found);
        return NULL;
    }
    char *p = strdup(path);
    char *at = p ? strstr(p, "labels-idx1") : NULL;
    if (at)
        memcpy(at, "images-idx3", 11);
    return p;
}

/* The labels file matching an images file: same name with labels-idx1,
 * with or without .gz. */
static char *idx_labels_path(const char *images)
{
    size_t len = strlen(images);
    char *p = malloc(len + 4);
    if (!p)
        return NULL;
    memcpy(p, images, len + 1);
    char *at = strstr(p + (base_name(p) - p), "images");
    if (!at) {
        free(p);
        return NULL;
    }
    memcpy(at, "labels", 6);
    char *idx3 = strstr(at, "idx3");
    if (idx3)
        idx3[3] = '1';
    if (is_file(p))
        return p;
    if (ends_with(p, ".gz"))
        p[strlen(p) - 3] = '\0';
    else
        strcat(p, ".gz");
    if (is_file(p))
        return p;
    free(p);
    return NULL;
}

static int open_idx(dataset_t *ds, const char *path, char *err, size_t n)
{
    char *images = idx_images_path(path);
    if (!images || !is_file(images)) {
        errmsg_set(err, n, "no IDX images file (*-images-idx3-ubyte[.gz]) found at %s\n"
                        "HINT: give the images file itself, or a folder holding train-images-idx3-ubyte.gz",
                path);
        free(images);
        return -1;
    }
    char *labels = idx_labels_path(images);
    if (!labels) {
        errmsg_set(err, n, "no labels file matching %s (expected *-labels-idx1-ubyte[.gz] beside it)\n"
                        "HINT: IDX images need their labels file in the same folder",
                images);
        free(images);
        return -1;
    }
    uint8_t *lab = NULL;
    size_t lab_len = 0, lab_cap = 0, data_cap = 0;
    int rc = -1;
    if (read_whole(images, &ds->data, &ds->data_len, &data_cap, err, n) ||
        read_whole(labels, &lab, &lab_len, &lab_cap, err, n))
        goto done;

    if (ds->data_len < IDX_IMAGES_HEADER || ds->data[0] || ds->data[1] ||
        ds->data[2] != IDX_TYPE_UBYTE || ds->data[3] != IDX_IMAGES_DIMS) {
        errmsg_set(err, n, "%s is not an IDX ubyte image file (magic 0x00000803 expected)", images);
        goto done;
    }
    uint64_t count = be32(ds->data + 4), rows = be32(ds->data + 8), cols = be32(ds->data + 12);
    if (rows == 0 || cols == 0 || rows > IDX_MAX_SIDE || cols > IDX_MAX_SIDE) {
        errmsg_set(err, n, "%s: invalid image size %llux%llu", images, (unsigned long long)rows,
                (unsigned long long)cols);
        goto done;
    }
    uint64_t expect = IDX_IMAGES_HEADER + count * rows * cols;
    if (expect != ds->data_len) {
        errmsg_set(err, n, "%s: header says %llu images of %llux%llu (%llu bytes), file has %zu bytes\n"
                        "HINT: the file is truncated or damaged; download it again",
                images, (unsigned long long)count, (unsigned long long)rows, (unsigned long long)cols,
                (unsigned long long)expect, ds->data_len);
        goto done;
    }
    if (lab_len < IDX_LABELS_HEADER || lab[0] || lab[1] || lab[2] != IDX_TYPE_UBYTE ||
        lab[3] != IDX_LABELS_DIMS) {
        errmsg_set(err, n, "%s is not an IDX ubyte label file (magic 0x00000801 expected)", labels);
        goto done;
    }
    uint64_t lcount = be32(lab + 4);
    if (lcount != count || IDX_LABELS_HEADER + lcount != lab_len) {
        errmsg_set(err, n, "%s: %llu labels declared, %zu present, for %llu images in %s\n"
                        "HINT: the images and labels files do not belong together, or one is truncated", labels,
                (unsigned long long)lcount, lab_len - IDX_LABELS_HEADER, (unsigned long long)count,
                images);
        goto done;
    }
    ds->n = (size_t)count;
    ds->labels = malloc((ds->n ? ds->n : 1) * sizeof *ds->labels);
    if (!ds->labels)
        goto done;
    int max_label = -1;
    for (size_t i = 0; i < ds->n; i++) {
        ds->labels[i] = lab[IDX_LABELS_HEADER + i];
        if (ds->labels[i] > max_label)
            max_label = ds->labels[i];
    }
    ds->record_offset = IDX_IMAGES_HEADER;
    ds->record_stride = (size_t)(rows * cols);
    ds->pixel_offset = 0;
    ds->height = (uint32_t)rows;
    ds->width = (uint32_t)cols;
    ds->channels = 1;
    ds->planar = 0;
    if (set_numeric_classes(ds, max_label + 1) || add_source_file(ds, images, 0))
        goto done;
    rc = 0;
done:
    free(lab);
    free(images);
    free(labels);
    return rc;
}

/* ---------------------------------------------------------------- CIFAR */

static int is_cifar10_batch(const char *name)
{
    return (strncmp(name, "data_batch", 10) == 0 || strncmp(name, "test_batch", 10) == 0) &&
           ends_with(name, ".bin");
}

static int is_cifar100_batch(const char *name)
{
    return strcmp(name, "train.bin") == 0 || strcmp(name, "test.bin") == 0;
}

static int open_cifar(dataset_t *ds, const char *path, int hundred, char *err, size_t n)
{
    const size_t label_bytes = hundred ? CIFAR100_LABEL_BYTES : CIFAR10_LABEL_BYTES;
    const size_t record = label_bytes + CIFAR_PIXEL_BYTES;
    const int n_classes = hundred ? CIFAR100_CLASSES : CIFAR10_CLASSES;
    char **names = NULL;
    size_t nn = 0;
    char *dir = NULL;
    int rc = -1;

    if (is_dir(path)) {
        char **files = NULL;
        size_t nf = 0;
        if (list_entries(path, 0, &files, &nf)) {
            errmsg_set(err, n, "cannot list %s: %s", path, strerror(errno));
            return -1;
        }
        /* The training batches; the test batch only when it is all there is. */
        names = calloc(nf ? nf : 1, sizeof *names);
        for (size_t i = 0; names && i < nf; i++) {
            int train = hundred ? strcmp(files[i], "train.bin") == 0
                                : strncmp(files[i], "data_batch", 10) == 0 && ends_with(files[i], ".bin");
            if (train)
                names[nn++] = join_path(path, files[i]);
        }
        for (size_t i = 0; names && nn == 0 && i < nf; i++) {
            int test = hundred ? strcmp(files[i], "test.bin") == 0 : strcmp(files[i], "test_batch.bin") == 0;
            if (test)
                names[nn++] = join_path(path, files[i]);
        }
        free_strings(files, nf);
        dir = strdup(path);
    } else {
        names = calloc(1, sizeof *names);
        if (names)
            names[nn++] = strdup(path);
        dir = strdup(path);
        if (dir) {
            char *slash = strrchr(dir, '/');
            if (slash)
                *slash = '\0';
            else
                strcpy(dir, ".");
        }
    }
    if (!names || !dir) {
        errmsg_set(err, n, "out of memory");
        goto done;
    }
    if (nn == 0) {
        errmsg_set(err, n, "no %s batch files in %s\nHINT: expected %s", hundred ? "CIFAR-100" : "CIFAR-10",
                path, hundred ? "train.bin or test.bin" : "data_batch_*.bin or test_batch.bin");
        goto done;
    }
    size_t cap = 0;
    for (size_t f = 0; f < nn; f++) {
        size_t before = ds->data_len;
        if (!names[f] || read_whole(names[f], &ds->data, &ds->data_len, &cap, err, n))
            goto done;
        size_t len = ds->data_len - before;
        if (len == 0 || len % record != 0) {
            errmsg_set(err, n, "%s is %zu bytes, not a whole number of %zu-byte %s records\n"
                            "HINT: the file is truncated, or it is not a %s batch (try --format)",
                    names[f], len, record, hundred ? "CIFAR-100" : "CIFAR-10",
                    hundred ? "CIFAR-100" : "CIFAR-10");
            goto done;
        }
        if (add_source_file(ds, names[f], before / record))
            goto done;
    }
    ds->n = ds->data_len / record;
    ds->labels = malloc(ds->n * sizeof *ds->labels);
    if (!ds->labels) {
        errmsg_set(err, n, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < ds->n; i++) {
        int label = ds->data[i * record + label_bytes - 1];
        if (label >= n_classes) {
            errmsg_set(err, n, "record %zu has label %d, more than %d classes: not a %s batch", i, label,
                    n_classes, hundred ? "CIFAR-100" : "CIFAR-10");
            goto done;
        }
        ds->labels[i] = label;
    }
    ds->record_offset = 0;
    ds->record_stride = record;
    ds->pixel_offset = label_bytes;
    ds->height = ds->width = CIFAR_SIDE;
    ds->channels = CIFAR_CHANNELS;
    ds->planar = 1;
    if (set_numeric_classes(ds, n_classes))
        goto done;
    load_class_names(ds, dir, hundred ? "fine_label_names.txt" : "batches.meta.txt");
    rc = 0;
done:
    free_strings(names, nn);
    free(dir);
    return rc;
}

/* ---------------------------------------------------------------- open */

static dataset_format_t detect(const char *path)
{
    if (!is_dir(path)) {
        const char *b = base_name(path);
        if (strstr(b, "idx3-ubyte") || strstr(b, "idx1-ubyte") || strstr(b, "idx3.ubyte"))
            return DATASET_FORMAT_IDX;
        if (is_cifar10_batch(b))
            return DATASET_FORMAT_CIFAR10;
        if (is_cifar100_batch(b))
            return DATASET_FORMAT_CIFAR100;
        return DATASET_FORMAT_AUTO;
    }
    char **files = NULL;
    size_t nf = 0;
    if (list_entries(path, 0, &files, &nf))
        return DATASET_FORMAT_FOLDER;
    dataset_format_t f = DATASET_FORMAT_FOLDER;
    for (size_t i = 0; i < nf; i++) {
        if (strstr(files[i], "images-idx3-ubyte") || strstr(files[i], "images.idx3-ubyte")) {
            f = DATASET_FORMAT_IDX;
            break;
        }
        if (is_cifar10_batch(files[i])) {
            f = DATASET_FORMAT_CIFAR10;
            break;
        }
        if (is_cifar100_batch(files[i])) {
            f = DATASET_FORMAT_CIFAR100;
            break;
        }
    }
    free_strings(files, nf);
    return f;
}

dataset_t *dataset_new(const char *path, dataset_format_t format, char *err, size_t err_len)
{
    struct stat st;
    if (!path || !*path || stat(path, &st) != 0) {
        errmsg_set(err, err_len, "dataset %s: %s\nHINT: --data takes a folder of class sub-folders, a "
                              "flat folder of images, IDX files or CIFAR batch files",
                path ? path : "(none)", strerror(errno ? errno : ENOENT));
        return NULL;
    }
    if (format == DATASET_FORMAT_AUTO) {
        format = detect(path);
        if (format == DATASET_FORMAT_AUTO) {
            errmsg_set(err, err_len, "cannot tell the format of %s\nHINT: give a folder, an "
                                  "*-images-idx3-ubyte[.gz] file or a CIFAR .bin batch, or use --format",
                    path);
            return NULL;
        }
    }
    if (format == DATASET_FORMAT_FOLDER && !S_ISDIR(st.st_mode)) {
        errmsg_set(err, err_len, "%s is not a folder\nHINT: the folder format needs a directory", path);
        return NULL;
    }
    dataset_t *ds = calloc(1, sizeof *ds);
    if (!ds) {
        errmsg_set(err, err_len, "out of memory");
        return NULL;
    }
    ds->format = format;
    int rc;
    switch (format) {
    case DATASET_FORMAT_FOLDER: rc = open_folder(ds, path, err, err_len); break;
    case DATASET_FORMAT_IDX: rc = open_idx(ds, path, err, err_len); break;
    case DATASET_FORMAT_CIFAR10: rc = open_cifar(ds, path, 0, err, err_len); break;
    case DATASET_FORMAT_CIFAR100: rc = open_cifar(ds, path, 1, err, err_len); break;
    default: rc = -1; errmsg_set(err, err_len, "unknown format"); break;
    }
    if (rc == 0 && ds->n == 0) {
        errmsg_set(err, err_len, "dataset %s holds no items\nHINT: put images in it (one sub-folder per "
                              "class, or directly for an unlabeled set)",
                path);
        rc = -1;
    }
    if (rc) {
        dataset_destroy(&ds);
        return NULL;
    }
    if (format == DATASET_FORMAT_FOLDER)
        (void)dataset_decoder_start(NULL, 0);   /* a failure: the caller asks, or each decode says */
    return ds;
}

void dataset_destroy(dataset_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dataset_t *ds = *self_p;
    free(ds->labels);
    free_strings(ds->class_names, (size_t)ds->n_classes);
    free(ds->path_pool);
    free(ds->path_off);
    free(ds->data);
    free_strings(ds->files, ds->n_files);
    free(ds->file_first);
    free(ds);
    *self_p = NULL;
}

dataset_format_t dataset_format(const dataset_t *ds) { return ds->format; }
size_t dataset_count(const dataset_t *ds) { return ds->n; }
int dataset_n_classes(const dataset_t *ds) { return ds->n_classes; }

const char *dataset_class_name(const dataset_t *ds, int c)
{
    return c >= 0 && c < ds->n_classes ? ds->class_names[c] : "";
}

int dataset_label(const dataset_t *ds, size_t i)
{
    return i < ds->n ? ds->labels[i] : DATASET_LABEL_NONE;
}

/* The source file holding record i (binary formats). */
static size_t file_of(const dataset_t *ds, size_t i)
{
    size_t f = 0;
    while (f + 1 < ds->n_files && ds->file_first[f + 1] <= i)
        f++;
    return f;
}

const char *dataset_item_name(const dataset_t *ds, size_t i, char *buf, size_t n)
{
    if (i >= ds->n)
        snprintf(buf, n, "(item %zu of %zu)", i, ds->n);
    else if (ds->format == DATASET_FORMAT_FOLDER)
        snprintf(buf, n, "%s", ds->path_pool + ds->path_off[i]);
    else {
        size_t f = file_of(ds, i);
        snprintf(buf, n, "%s[%zu]", ds->files[f], i - ds->file_first[f]);
    }
    return buf;
}

int dataset_read(const dataset_t *ds, size_t i, const dataset_decode_opts_t *opts,
                 dataset_image_t *img, dataset_error_t *err)
{
    img->note[0] = '\0';
    if (i >= ds->n)
        return dataset__fail(err, DATASET_ERR_UNREADABLE, "item %zu is past the end (%zu items)", i, ds->n);
    if (ds->format == DATASET_FORMAT_FOLDER)
        return dataset__decode_file(ds->path_pool + ds->path_off[i], opts, img, err);
    const uint8_t *rec = ds->data + ds->record_offset + i * ds->record_stride + ds->pixel_offset;
    char name[DATASET_MESSAGE_MAX / 2];
    return dataset__from_pixels(rec, ds->height, ds->width, ds->channels, ds->planar,
                                dataset_item_name(ds, i, name, sizeof name), opts, img, err);
}

void dataset_image_init(dataset_image_t *img)
{
    memset(img, 0, sizeof *img);
}

void dataset_image_release(dataset_image_t *img)
{
    free(img->pixels);
    free(img->file);
    memset(img, 0, sizeof *img);
}

static const char *const FORMAT_NAMES[] = {"auto", "folder", "idx", "cifar10", "cifar100"};

int dataset_format_parse(const char *s, dataset_format_t *out)
{
    for (size_t i = 0; i < sizeof FORMAT_NAMES / sizeof *FORMAT_NAMES; i++)
        if (strcmp(s, FORMAT_NAMES[i]) == 0) {
            *out = (dataset_format_t)i;
            return 0;
        }
    return -1;
}

const char *dataset_format_name(dataset_format_t f)
{
    return (unsigned)f < sizeof FORMAT_NAMES / sizeof *FORMAT_NAMES ? FORMAT_NAMES[f] : "?";
}

const char *dataset_reason_name(dataset_reason_t r)
{
    switch (r) {
    case DATASET_OK: return "ok";
    case DATASET_ERR_UNREADABLE: return "unreadable";
    case DATASET_ERR_CORRUPT: return "corrupt";
    case DATASET_ERR_TOO_LARGE: return "too_large";
    default: return "?";
    }
}

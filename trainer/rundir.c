/* trainer/rundir: checkpoint files, trainer state, `latest`, metrics file. */
#include "errmsg/errmsg.h"
#include "trainer/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_PREFIX  "ckpt-"
#define CKPT_SUFFIX  ".safetensors"
#define STATE_SUFFIX ".json"
#define EMA_SUFFIX   ".ema.safetensors"

int rundir_make(const char *dir, char *err, size_t errlen)
{
    char buf[RUNDIR_MAX_PATH];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                errmsg_set(err, errlen, "cannot create folder %s: %s", buf, strerror(errno));
                return -1;
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        errmsg_set(err, errlen, "%s is not a folder", dir);
        return -1;
    }
    return 0;
}

void rundir_ckpt_path(char *buf, size_t len, const char *dir, long step)
{
    snprintf(buf, len, "%s/" CKPT_PREFIX "%08ld" CKPT_SUFFIX, dir, step);
}

/* ckpt_path with its ".safetensors" replaced by suffix (appended when it has none). */
static void beside_ckpt(char *buf, size_t len, const char *ckpt_path, const char *suffix)
{
    size_t n = strlen(ckpt_path), s = strlen(CKPT_SUFFIX);
    if (n > s && strcmp(ckpt_path + n - s, CKPT_SUFFIX) == 0)
        n -= s;
    snprintf(buf, len, "%.*s%s", (int)n, ckpt_path, suffix);
}

void rundir_state_path(char *buf, size_t len, const char *ckpt_path)
{
    beside_ckpt(buf, len, ckpt_path, STATE_SUFFIX);
}

void rundir_ema_path(char *buf, size_t len, const char *ckpt_path)
{
    beside_ckpt(buf, len, ckpt_path, EMA_SUFFIX);
}

/* fsync of the folder holding `path`, so that a rename survives a crash. */
static void sync_parent(const char *path)
{
    char buf[RUNDIR_MAX_PATH];
    snprintf(buf, sizeof buf, "%s", path);
    int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Writes text to path atomically: temporary file, fsync, rename. */
static int write_atomic(const char *path, const char *text, char *err, size_t errlen)
{
    char tmp[RUNDIR_MAX_PATH + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        errmsg_set(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            errmsg_set(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        errmsg_set(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    sync_parent(path);
    return 0;
}

int rundir_state_save(const char *path, const train_state_t *s, char *err, size_t errlen)
{
    char rng[32], images[32];
    snprintf(rng, sizeof rng, "%016llx", (unsigned long long)s->rng);
    snprintf(images, sizeof images, "%llu", (unsigned long long)s->images_seen);
    /* 64-bit unsigned values as strings: JSON numbers are not exact beyond 2^53 */
    json_t *j = json_pack("{s:s, s:i}", "format", RUNDIR_STATE_FORMAT, "version", RUNDIR_STATE_VERSION);
    json_t *progress = json_pack("{s:I, s:s, s:s, s:f}", "step", (json_int_t)s->step, "images_seen", images,
                                 "rng", rng, "train_seconds", s->train_seconds);
    if (!j || !progress || trainer_config_to_json(&s->config, j) || json_object_update(j, progress) ||
        (s->epoch_sets && json_object_set(j, "epoch_sets", s->epoch_sets))) {
        json_decref(j);
        json_decref(progress);
        errmsg_set(err, errlen, "%s: cannot build the state JSON", path);
        return -1;
    }
    json_decref(progress);
    char *text = json_dumps(j, JSON_INDENT(1));
    json_decref(j);
    if (!text) {
        errmsg_set(err, errlen, "%s: out of memory", path);
        return -1;
    }
    size_t n = strlen(text);
    char *line = malloc(n + 2);
    int rc = -1;
    if (line) {
        memcpy(line, text, n);
        memcpy(line + n, "\n", 2);
        rc = write_atomic(path, line, err, errlen);
        free(line);
    }
    free(text);
    return rc;
}

/* Fills s from the state JSON j (which it releases); path names it in errors. */
static int state_from_json(json_t *j, const char *path, train_state_t *s, char *err, size_t errlen)
{
    json_error_t je;
    const char *format = NULL, *images = NULL, *rng = NULL;
    int version = 0;
    json_int_t step = 0;
    char why[512];
    memset(s, 0, sizeof *s);
    if (json_unpack_ex(j, &je, 0, "{s:s, s:i}", "format", &format, "version", &version) != 0) {
        errmsg_set(err, errlen, "%s: %s", path, je.text);
        goto fail;
    }
    if (strcmp(format, RUNDIR_STATE_FORMAT) != 0 || version != RUNDIR_STATE_VERSION) {
        errmsg_set(err, errlen, "%s: format %s version %d, this trainer reads %s version %d", path,
                format, version, RUNDIR_STATE_FORMAT, RUNDIR_STATE_VERSION);
        goto fail;
    }
    if (trainer_config_from_json(&s->config, j, why, sizeof why)) {
        errmsg_set(err, errlen, "%s: %s", path, why);
        goto fail;
    }
    if (json_unpack_ex(j, &je, 0, "{s:I, s:s, s:s, s:F}", "step", &step, "images_seen", &images, "rng", &rng,
                       "train_seconds", &s->train_seconds) != 0) {
        errmsg_set(err, errlen, "%s: %s", path, je.text);
        goto fail;
    }
    if (trainer_config_parse_u64(images, 10, &s->images_seen) || trainer_config_parse_u64(rng, 16, &s->rng) ||
        step < 0) {
        errmsg_set(err, errlen, "%s: a value is out of range", path);
        goto fail;
    }
    s->step = (long)step;
    s->epoch_sets = json_incref(json_object_get(j, "epoch_sets"));   /* optional */
    json_decref(j);
    return 0;
fail:
    json_decref(j);
    return -1;
}

int rundir_state_load(const char *path, train_state_t *s, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) {
        errmsg_set(err, errlen, "%s: %s (line %d)", path, je.text, je.line);
        return -1;
    }
    return state_from_json(j, path, s, err, errlen);
}

int rundir_state_parse(const char *text, const char *path, train_state_t *s, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j) {
        errmsg_set(err, errlen, "%s: %s (line %d)", path, je.text, je.line);
        return -1;
    }
    return state_from_json(j, path, s, err, errlen);
}

char *rundir_read_text(const char *path, size_t max, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        errmsg_set(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 16384;
            char *grown = realloc(text, cap);
            if (!grown) {
                errmsg_set(err, errlen, "%s: out of memory", path);
                goto fail;
            }
            text = grown;
        }
        size_t got = fread(text + n, 1, cap - n - 1, f);
        n += got;
        if (n > max) {
            errmsg_set(err, errlen, "%s: larger than %zu bytes", path, max);
            goto fail;
        }
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        errmsg_set(err, errlen, "%s: read error", path);
        goto fail;
    }
    fclose(f);
    text[n] = '\0';
    return text;
fail:
    free(text);
    fclose(f);
    return NULL;
}

void rundir_state_release(train_state_t *s)
{
    json_decref(s->epoch_sets);
    s->epoch_sets = NULL;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int rundir_point_latest(const char *dir, const char *ckpt_path, char *err, size_t errlen)
{
    char link[RUNDIR_MAX_PATH], tmp[RUNDIR_MAX_PATH + 32];
    snprintf(link, sizeof link, "%s/" RUNDIR_LATEST, dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", link, (long)getpid());
    unlink(tmp);
    if (symlink(base_name(ckpt_path), tmp) != 0 || rename(tmp, link) != 0) {
        errmsg_set(err, errlen, "cannot point %s at %s: %s", link, base_name(ckpt_path), strerror(errno));
        unlink(tmp);
        return -1;
    }
    sync_parent(link);
    return 0;
}

/* Step number of a checkpoint file name, or -1 when it is not one. */
static long ckpt_step_of(const char *name)
{
    size_t n = strlen(name), p = strlen(CKPT_PREFIX), s = strlen(CKPT_SUFFIX);
    if (n <= p + s || strncmp(name, CKPT_PREFIX, p) != 0 || strcmp(name + n - s, CKPT_SUFFIX) != 0)
        return -1;
    long v = 0;
    for (size_t i = p; i < n - s; i++) {
        if (name[i] < '0' || name[i] > '9' || v > LONG_MAX / 10 - 10)
            return -1;
        v = v * 10 + (name[i] - '0');
    }
    return v;
}

int rundir_clean_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *tag = strstr(e->d_name, ".tmp.");
        if (!tag || (strncmp(e->d_name, CKPT_PREFIX, strlen(CKPT_PREFIX)) != 0 &&
                     strncmp(e->d_name, RUNDIR_LATEST ".", strlen(RUNDIR_LATEST) + 1) != 0 &&
                     strncmp(e->d_name, RUNDIR_METRICS ".", strlen(RUNDIR_METRICS) + 1) != 0))
            continue;
        char *end;
        long pid = strtol(tag + 5, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;   /* its writer is still running (or not ours to ask) */
        char path[RUNDIR_MAX_PATH + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

static int cmp_long_desc(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

void rundir_prune(const char *dir, int keep, long current)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    long *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long st = ckpt_step_of(e->d_name);
        if (st < 0 || st > current)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            long *grown = realloc(steps, cap * sizeof *steps);
            if (!grown)
                break;
            steps = grown;
        }
        steps[n++] = st;
    }
    closedir(d);
    qsort(steps, n, sizeof *steps, cmp_long_desc);
    for (size_t i = (size_t)(keep > 0 ? keep : 1); i < n; i++) {
        char path[RUNDIR_MAX_PATH], state[RUNDIR_MAX_PATH + 8], ema[RUNDIR_MAX_PATH + 8];
        rundir_ckpt_path(path, sizeof path, dir, steps[i]);
        rundir_state_path(state, sizeof state, path);
        rundir_ema_path(ema, sizeof ema, path);
        unlink(state);
        unlink(ema);
        unlink(path);
    }
    free(steps);
}

int rundir_resolve(const char *dir, const char *arg, char *buf, size_t len, char *err, size_t errlen)
{
    char want[RUNDIR_MAX_PATH];
    if (strcmp(arg, RUNDIR_LATEST) == 0)
        snprintf(want, sizeof want, "%s/" RUNDIR_LATEST, dir);
    else
        snprintf(want, sizeof want, "%s", arg);
    char real[PATH_MAX];
    if (!realpath(want, real)) {
        if (strcmp(arg, RUNDIR_LATEST) == 0)
            errmsg_set(err, errlen, "--resume latest: no checkpoint in %s (%s: %s)\n"
                    "HINT: give the run folder with --out, or a checkpoint file", dir, want, strerror(errno));
        else
            errmsg_set(err, errlen, "--resume %s: %s", arg, strerror(errno));
        return -1;
    }
    snprintf(buf, len, "%s", real);
    return 0;
}

/* Step of a metrics line, or -1 when the line is not a complete object;
 * *epoch is the epoch of an epoch record, -1 for any other line. */
static long metrics_line_step(const char *line, long long *epoch)
{
    json_error_t je;
    json_t *j = json_loads(line, 0, &je);
    if (!j)
        return -1;
    json_t *s = json_object_get(j, "step"), *e = json_object_get(j, "epoch");
    long step = json_is_integer(s) ? (long)json_integer_value(s) : -1;
    const char *record = json_string_value(json_object_get(j, "record"));
    *epoch = record && strcmp(record, "epoch") == 0 && json_is_integer(e) && json_integer_value(e) >= 0 &&
             json_integer_value(e) <= UINT32_MAX ? (long long)json_integer_value(e) : -1;
    json_decref(j);
    return step;
}

FILE *rundir_metrics_open(const char *dir, long keep_upto, rundir_record_kept_fn record_kept, void *arg, char *err,
                          size_t errlen)
{
    char path[RUNDIR_MAX_PATH];
    snprintf(path, sizeof path, "%s/" RUNDIR_METRICS, dir);
    if (keep_upto >= 0) {
        FILE *in = fopen(path, "r");
        if (in) {
            char tmp[RUNDIR_MAX_PATH + 32];
            snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
            FILE *out = fopen(tmp, "w");
            if (!out) {
                errmsg_set(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
                fclose(in);
                return NULL;
            }
            char *line = NULL;
            size_t cap = 0;
            ssize_t n;
            while ((n = getline(&line, &cap, in)) > 0) {
                if (line[n - 1] != '\n')
                    break;   /* torn last line */
                long long epoch;
                long st = metrics_line_step(line, &epoch);
                if (st >= 0 && st <= keep_upto && (epoch < 0 || !record_kept || record_kept((uint32_t)epoch, arg)))
                    fputs(line, out);
            }
            free(line);
            fclose(in);
            if (fclose(out) != 0 || rename(tmp, path) != 0) {
                errmsg_set(err, errlen, "cannot rewrite %s: %s", path, strerror(errno));
                unlink(tmp);
                return NULL;
            }
        }
    }
    FILE *f = fopen(path, keep_upto >= 0 ? "a" : "w");
    if (!f) {
        errmsg_set(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    setvbuf(f, NULL, _IOLBF, 0);
    return f;
}

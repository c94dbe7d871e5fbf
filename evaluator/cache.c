/* evaluator/cache: baselines on disk between runs (cache.h). */
#include "evaluator/cache.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg/errmsg.h"

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME  0x100000001b3ull

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

uint64_t eval_cache_hash(const void *data, size_t n)
{
    return fnv1a(FNV_OFFSET, data, n);
}

/* "size S mtime T" of a file; a folder adds its entries' names, sizes and
 * times (one level: the class folders of a folder dataset), summed so that
 * the order readdir gives does not matter. */
static void put_path(FILE *f, const char *label, const char *path)
{
    if (!path) {
        fprintf(f, "%s held out of the training data\n", label);
        return;
    }
    char real[PATH_MAX];
    const char *p = realpath(path, real) ? real : path;
    struct stat st;
    if (stat(p, &st)) {
        fprintf(f, "%s %s missing\n", label, p);
        return;
    }
    fprintf(f, "%s %s size %lld mtime %lld.%09ld", label, p, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
            st.st_mtim.tv_nsec);
    DIR *dir = S_ISDIR(st.st_mode) ? opendir(p) : NULL;
    if (dir) {
        uint64_t sum = 0;
        size_t count = 0;
        struct dirent *e;
        while ((e = readdir(dir))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[PATH_MAX + 256], line[PATH_MAX + 512];
            struct stat es;
            snprintf(sub, sizeof sub, "%s/%s", p, e->d_name);
            if (stat(sub, &es))
                memset(&es, 0, sizeof es);
            int n = snprintf(line, sizeof line, "%s %lld %lld.%09ld", e->d_name, (long long)es.st_size,
                             (long long)es.st_mtim.tv_sec, es.st_mtim.tv_nsec);
            sum += fnv1a(FNV_OFFSET, line, n > 0 ? (size_t)n : 0);
            count++;
        }
        closedir(dir);
        fprintf(f, " entries %zu sum %016llx", count, (unsigned long long)sum);
    }
    fputc('\n', f);
}

int eval_cache_key_make(eval_cache_key *key, const eval_cache_inputs *in, char *err, size_t errlen)
{
    memset(key, 0, sizeof *key);
    const eval_options *o = in->o;
    const eval_probe_opts *po = in->probe;
    size_t len = 0;
    FILE *f = open_memstream(&key->text, &len);
    if (!f) {
        errmsg_set(err, errlen, "baseline cache key: %s", strerror(errno));
        return -1;
    }
    fprintf(f, "%s %d\nkind %s\n", EVAL_CACHE_FORMAT, EVAL_CACHE_VERSION, in->kind);
    put_path(f, "train_data", in->train_path);
    put_path(f, "test_data", in->test_path);
    fprintf(f, "format %s\ntest_fraction %.17g\n", o->format, o->test_fraction);
    fprintf(f, "n_train %zu\nn_test %zu\nmax_train %zu\nmax_test %zu\n", in->n_train, in->n_test, o->max_train,
            o->max_test);
    fprintf(f, "seed %llu\ninput %dx%dx%d\nlabel_fractions", (unsigned long long)o->seed, in->c, in->h, in->w);
    for (int i = 0; i < o->n_fractions; i++)
        fprintf(f, " %.17g", o->fractions[i]);
    fprintf(f, "\nprobe max_iter %d grad_tol %.17g ftol %.17g val_ftol %.17g val_iter_share %.17g "
            "grid_patience %d history %d val_fraction %.17g seed %llu precondition %d lambdas",
            po->max_iter, po->grad_tol, po->ftol, po->val_ftol, po->val_iter_share, po->grid_patience,
            po->history, po->val_fraction, (unsigned long long)po->seed, po->precondition);
    for (int i = 0; i < po->n_lambdas; i++)
        fprintf(f, " %.17g", po->lambdas[i]);
    fprintf(f, "\nknn k %d t %.17g\nalign items %zu recipe %s\n", o->knn_k, o->knn_t, o->align_items,
            o->align_recipe);
    if (in->desc) {
        char readout[EVAL_READOUT_NAME_MAX];
        eval_readout_name(&o->readout, readout, sizeof readout);
        fprintf(f, "readout %s\nviews %s\ninit_seed %llu params %016llx\nnet\n%s\n", readout, eval_views_name(o->views),
                (unsigned long long)in->init_seed, (unsigned long long)in->params_hash, in->desc);
    }
    if (fclose(f) || !key->text) {
        free(key->text);
        key->text = NULL;
        errmsg_set(err, errlen, "baseline cache key: out of memory");
        return -1;
    }
    key->hash = fnv1a(FNV_OFFSET, key->text, strlen(key->text));
    snprintf(key->name, sizeof key->name, "%.24s-%016llx.json", in->kind, (unsigned long long)key->hash);
    return 0;
}

void eval_cache_key_clear(eval_cache_key *key)
{
    free(key->text);
    memset(key, 0, sizeof *key);
}

int eval_cache_default_dir(char *dir, size_t len)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0] == '/')              /* the XDG spec: relative values are ignored */
        snprintf(dir, len, "%s/%s", xdg, EVAL_CACHE_SUBDIR);
    else if (home && home[0])
        snprintf(dir, len, "%s/.cache/%s", home, EVAL_CACHE_SUBDIR);
    else
        return -1;
    return 0;
}

json_t *eval_cache_load(const char *dir, const eval_cache_key *key, char *why, size_t whylen)
{
    char path[EVAL_MAX_PATH + EVAL_CACHE_NAME_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, key->name);
    errmsg_set(why, whylen, "%s", "");
    if (access(path, F_OK) && errno == ENOENT)
        return NULL;
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc) {
        errmsg_set(why, whylen, "%s: unreadable (%s, line %d)", path, je.text, je.line);
        return NULL;
    }
    const char *fmt = json_string_value(json_object_get(doc, "format"));
    const json_t *ver = json_object_get(doc, "version");
    const char *text = json_string_value(json_object_get(doc, "key"));
    json_t *b = json_object_get(doc, "baseline");
    if (!fmt || strcmp(fmt, EVAL_CACHE_FORMAT))
        errmsg_set(why, whylen, "%s: not a baseline cache file (format %s, expected %s)", path,
                   fmt ? fmt : "missing", EVAL_CACHE_FORMAT);
    else if (!json_is_integer(ver) || json_integer_value(ver) != EVAL_CACHE_VERSION)
        errmsg_set(why, whylen, "%s: cache version %lld, this evaluator writes %d", path,
                   json_is_integer(ver) ? (long long)json_integer_value(ver) : -1LL, EVAL_CACHE_VERSION);
    else if (!text || strcmp(text, key->text))
        errmsg_set(why, whylen, "%s: made for other data or options (same hash, another key)", path);
    else if (!json_is_object(b) || !json_is_object(json_object_get(b, "probe")) ||
             !json_is_object(json_object_get(b, "knn")))
        errmsg_set(why, whylen, "%s: no baseline with probe and kNN results in it", path);
    else {
        json_incref(b);
        json_decref(doc);
        return b;
    }
    json_decref(doc);
    return NULL;
}

int eval_cache_store(const char *dir, const eval_cache_key *key, const json_t *baseline, char *err, size_t errlen)
{
    if (eval_mkdir_p(dir, err, errlen))
        return -1;
    char path[EVAL_MAX_PATH + EVAL_CACHE_NAME_MAX], tmp[EVAL_MAX_PATH + EVAL_CACHE_NAME_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", dir, key->name);
    snprintf(tmp, sizeof tmp, "%s/.%s.%ld.tmp", dir, key->name, (long)getpid());
    json_t *doc = json_pack("{s:s, s:i, s:s, s:O}", "format", EVAL_CACHE_FORMAT, "version", EVAL_CACHE_VERSION,
                            "key", key->text, "baseline", baseline);
    FILE *f = doc ? fopen(tmp, "w") : NULL;
    int rc = -1;
    if (!f)
        errmsg_set(err, errlen, "cannot write %s: %s", tmp, doc ? strerror(errno) : "out of memory");
    else if (json_dumpf(doc, f, JSON_INDENT(1) | JSON_PRESERVE_ORDER) || fputc('\n', f) == EOF || fflush(f) ||
             fsync(fileno(f)))
        errmsg_set(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
    else
        rc = 0;
    if (f && fclose(f) && rc == 0) {
        errmsg_set(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && rename(tmp, path)) {
        errmsg_set(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        rc = -1;
    }
    if (rc && f)
        unlink(tmp);
    json_decref(doc);
    return rc;
}

int eval_mkdir_p(const char *dir, char *err, size_t errlen)
{
    char tmp[EVAL_MAX_PATH];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0777) && errno != EEXIST) {
            errmsg_set(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
            return -1;
        }
        *p = '/';
    }
    if (mkdir(tmp, 0777) && errno != EEXIST) {
        errmsg_set(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    return 0;
}

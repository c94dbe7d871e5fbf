/* vipsstep: libvips operations as recipe steps (see vipsstep.h). */
#include "augment/vipsstep.h"
#include "errmsg/errmsg.h"
#include "augment/ops.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <vips/vips.h>

#define JPEG_Q_MIN        1
#define JPEG_Q_MAX        100
#define JPEG_Q_DEFAULT_LO 30    /* jpeg without q= : a quality in 30..90 */
#define JPEG_Q_DEFAULT_HI 90
/* A result more than this many view sides across is refused: a slip such
 * as resize:scale=100 would otherwise allocate gigabytes for every view. */
#define RESULT_MAX_SIDES  8
#define U8_MAX            255.0
#define U16_TO_U8         (255.0 / 65535.0)
#define ARRAY_SEP         '/'   /* between the elements of an array value */
#define MAX_REQUIRED      16    /* required arguments of one operation we track */
#define MSG_LEN           400

/* ------------------------------------------------------------------ start */

static pthread_once_t start_once = PTHREAD_ONCE_INIT;
static int start_failed;
static char start_msg[MSG_LEN];

static void start_vips(void)
{
    /* VipsImage is registered by vips_init: if it is not, libvips is ours */
    int ours = g_type_from_name("VipsImage") == 0;
    if (VIPS_INIT("augment")) {
        snprintf(start_msg, sizeof(start_msg), "%s", vips_error_buffer());
        vips_error_clear();
        start_failed = 1;
        return;
    }
    if (ours) {
        vips_cache_set_max(0);
        vips_concurrency_set(1);
    }
}

int aug_vips_start(char *err, size_t errlen)
{
    pthread_once(&start_once, start_vips);
    if (start_failed) errmsg_set(err, errlen, "libvips: cannot start: %s", start_msg);
    return start_failed ? -1 : 0;
}

/* Moves libvips's error buffer into err, after `what`. */
static int vips_failed(const char *what, char *err, size_t errlen)
{
    char msg[MSG_LEN];
    snprintf(msg, sizeof(msg), "%s", vips_error_buffer());
    vips_error_clear();
    size_t len = strlen(msg);
    while (len > 0 && msg[len - 1] == '\n') msg[--len] = 0;
    errmsg_set(err, errlen, "%s: %s", what, len ? msg : "failed");
    return -1;
}

/* ------------------------------------------------------------------ shape */

/* What introspection says about an operation's required arguments. */
typedef struct {
    int n_in, n_out;              /* required input and output images */
    const char *in, *out;         /* the first of each */
    const char *image_array;      /* a required array of images */
    const char *other_out;        /* a required output that is not an image */
    int n_required;               /* other required inputs: the user gives them */
    const char *required[MAX_REQUIRED];
} shape_t;

static void *shape_add(VipsObject *object, GParamSpec *pspec, VipsArgumentClass *argument_class,
                       VipsArgumentInstance *argument_instance, void *a, void *b)
{
    shape_t *s = a;
    VipsArgumentFlags f = argument_class->flags;
    if (!(f & VIPS_ARGUMENT_REQUIRED) || (f & VIPS_ARGUMENT_DEPRECATED)) return NULL;
    GType t = G_PARAM_SPEC_VALUE_TYPE(pspec);
    const char *name = g_param_spec_get_name(pspec);
    if (f & VIPS_ARGUMENT_OUTPUT) {
        if (g_type_is_a(t, VIPS_TYPE_IMAGE)) {
            if (!s->n_out++) s->out = name;
        } else if (!s->other_out) {
            s->other_out = name;
        }
    } else if (f & VIPS_ARGUMENT_INPUT) {
        if (g_type_is_a(t, VIPS_TYPE_IMAGE)) {
            if (!s->n_in++) s->in = name;
        } else if (g_type_is_a(t, VIPS_TYPE_ARRAY_IMAGE)) {
            s->image_array = name;
        } else if (s->n_required < MAX_REQUIRED) {
            s->required[s->n_required++] = name;
        }
    }
    return NULL;
}

/* The operation called `name`, instantiated, with its shape checked: one
 * image in, one image out. `label` prefixes messages. NULL on error. */
static VipsOperation *operation_open(const char *name, const char *label, shape_t *s, char *err, size_t errlen)
{
    GType type = vips_type_find("VipsOperation", name);
    if (!type) {
        vips_error_clear();
        errmsg_set(err, errlen, "%s: unknown libvips operation '%s' (HINT: `vips -l operation` lists them; "
                                "the name is the one the vips command uses, such as sharpen or rotate)",
                                label, name);
        return NULL;
    }
    if (G_TYPE_IS_ABSTRACT(type)) {
        errmsg_set(err, errlen, "%s: '%s' is a family of libvips operations, not one you can run "
                                "(HINT: `vips -l %s` lists its members)", label, name, name);
        return NULL;
    }
    VipsOperation *op = VIPS_OPERATION(g_object_new(type, NULL));
    memset(s, 0, sizeof(*s));
    vips_argument_map(VIPS_OBJECT(op), shape_add, s, NULL);
    const char *why = NULL;
    char detail[160] = "";
    if (s->image_array) {
        snprintf(detail, sizeof(detail), "takes an array of images (%s)", s->image_array);
        why = detail;
    } else if (s->n_in != 1) {
        snprintf(detail, sizeof(detail), "takes %d input images", s->n_in);
        why = detail;
    } else if (s->n_out != 1) {
        if (s->other_out)
            snprintf(detail, sizeof(detail), "returns %s, not an image", s->other_out);
        else
            snprintf(detail, sizeof(detail), "returns %d images", s->n_out);
        why = detail;
    } else if (s->other_out) {
        snprintf(detail, sizeof(detail), "also returns %s", s->other_out);
        why = detail;
    }
    if (why) {
        errmsg_set(err, errlen, "%s: libvips operation '%s' %s; a vips step runs an operation that takes "
                                "one image and returns one%s", label, name, why,
                                strstr(name, "jpeg") ? " (HINT: for JPEG re-compression use jpeg:q=30-90)" : "");
        vips_object_unref_outputs(VIPS_OBJECT(op));
        g_object_unref(op);
        return NULL;
    }
    return op;
}

/* ------------------------------------------------------------------ values */

/* A number, or a range "lo-hi" with lo <= hi: "-15-15" is -15..15, "-5--1"
 * is -5..-1, "1e-3-0.1" is 0.001..0.1 (each number is read whole, so the
 * dash that separates them is the one after the first number). */
static int parse_number_range(const char *v, double *lo, double *hi)
{
    char *end;
    errno = 0;
    *lo = strtod(v, &end);
    if (end == v || errno || !isfinite(*lo)) return -1;
    if (!*end) {
        *hi = *lo;
        return 0;
    }
    if (*end != '-') return -1;
    const char *p = end + 1;
    *hi = strtod(p, &end);
    if (end == p || *end || errno || !isfinite(*hi) || *lo > *hi) return -1;
    return 0;
}

static int is_whole(double x) { return x == floor(x); }

static const char *kind_words(aug_arg_kind_t k)
{
    switch (k) {
    case AUG_ARG_INT: return "a whole number or a range such as 2-5";
    case AUG_ARG_DOUBLE: return "a number or a range such as 0.5-2";
    case AUG_ARG_BOOL: return "true or false";
    case AUG_ARG_ENUM: return "a name";
    case AUG_ARG_STRING: return "text";
    case AUG_ARG_INT_ARRAY: return "whole numbers or ranges separated by '/', such as 1/0-2/3";
    case AUG_ARG_DOUBLE_ARRAY: return "numbers or ranges separated by '/', such as 0.9-1.1/1/1";
    }
    return "?";
}

/* The recipe kind of a libvips argument type, or -1 when a recipe cannot
 * write it. */
static int kind_of(GType t)
{
    if (t == G_TYPE_INT) return AUG_ARG_INT;
    if (t == G_TYPE_DOUBLE) return AUG_ARG_DOUBLE;
    if (t == G_TYPE_BOOLEAN) return AUG_ARG_BOOL;
    if (G_TYPE_IS_ENUM(t)) return AUG_ARG_ENUM;
    if (t == G_TYPE_STRING) return AUG_ARG_STRING;
    if (t == VIPS_TYPE_ARRAY_INT) return AUG_ARG_INT_ARRAY;
    if (t == VIPS_TYPE_ARRAY_DOUBLE) return AUG_ARG_DOUBLE_ARRAY;
    return -1;
}

/* "horizontal, vertical": the nicks of an enum, for messages. */
static void enum_nicks(GEnumClass *ec, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (guint i = 0; i < ec->n_values && used < len; i++) {
        const char *nick = ec->values[i].value_nick;
        if (!strcmp(nick, "last")) continue;   /* libvips's count of the values */
        int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", nick);
        if (n > 0) used += (size_t)n;
    }
}

/* The numeric bounds of an int or double argument. */
static void pspec_bounds(GParamSpec *ps, double *min, double *max)
{
    *min = -HUGE_VAL;
    *max = HUGE_VAL;
    if (G_IS_PARAM_SPEC_INT(ps)) {
        *min = G_PARAM_SPEC_INT(ps)->minimum;
        *max = G_PARAM_SPEC_INT(ps)->maximum;
    } else if (G_IS_PARAM_SPEC_DOUBLE(ps)) {
        *min = G_PARAM_SPEC_DOUBLE(ps)->minimum;
        *max = G_PARAM_SPEC_DOUBLE(ps)->maximum;
    }
}

/* Numbers: one, or n separated by ARRAY_SEP for arrays; whole when `whole`,
 * within [min, max]. */
static int parse_numbers(aug_step_arg_t *arg, const char *label, const char *val, int array,
                         int whole, double min, double max, char *err, size_t errlen)
{
    char buf[AUG_STEP_TEXT_LEN];
    snprintf(buf, sizeof(buf), "%s", val);
    arg->n = 0;
    char *save = NULL, sep[2] = {ARRAY_SEP, 0};
    for (char *e = array ? strtok_r(buf, sep, &save) : buf; e; e = array ? strtok_r(NULL, sep, &save) : NULL) {
        if (arg->n >= AUG_STEP_MAX_VALUES) {
            errmsg_set(err, errlen, "%s: %s=%s: at most %u values", label, arg->name, val, AUG_STEP_MAX_VALUES);
            return -1;
        }
        double lo, hi;
        if (parse_number_range(e, &lo, &hi) || (whole && (!is_whole(lo) || !is_whole(hi)))) {
            errmsg_set(err, errlen, "%s: %s=%s: expected %s%s", label, arg->name, val, kind_words(arg->kind),
                                    strchr(e + 1, '-') ? " (a range is lo-hi with lo <= hi)" : "");
            return -1;
        }
        if (lo < min || hi > max) {
            errmsg_set(err, errlen, "%s: %s=%s: outside %g..%g, the range libvips allows for %s", label,
                                    arg->name, val, min, max, arg->name);
            return -1;
        }
        if (whole && hi - lo >= (double)UINT32_MAX) {
            errmsg_set(err, errlen, "%s: %s=%s: the range is too wide to draw from", label, arg->name, val);
            return -1;
        }
        arg->lo[arg->n] = lo;
        arg->hi[arg->n] = hi;
        arg->n++;
    }
    if (arg->n == 0) {
        errmsg_set(err, errlen, "%s: %s=%s: expected %s", label, arg->name, val, kind_words(arg->kind));
        return -1;
    }
    return 0;
}

static int parse_bool(const char *v, double *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (!strcasecmp(v, yes[i])) { *out = 1; return 0; }
        if (!strcasecmp(v, no[i])) { *out = 0; return 0; }
    }
    return -1;
}

/* The argument names a recipe may give for op, for messages. */
typedef struct {
    char *buf;
    size_t len, used;
} names_t;

static void *names_add(VipsObject *object, GParamSpec *pspec, VipsArgumentClass *argument_class,
                       VipsArgumentInstance *argument_instance, void *a, void *b)
{
    names_t *nm = a;
    VipsArgumentFlags f = argument_class->flags;
    if (!(f & VIPS_ARGUMENT_INPUT) || (f & VIPS_ARGUMENT_DEPRECATED) ||
        kind_of(G_PARAM_SPEC_VALUE_TYPE(pspec)) < 0 || nm->used >= nm->len)
        return NULL;
    int n = snprintf(nm->buf + nm->used, nm->len - nm->used, "%s%s", g_param_spec_get_name(pspec),
                     f & VIPS_ARGUMENT_REQUIRED ? " (required), " : ", ");
    if (n > 0) nm->used += (size_t)n;
    return NULL;
}

/* key=val for the operation op into arg. */
static int parse_op_arg(aug_step_arg_t *arg, const char *label, VipsOperation *op,
                        const shape_t *s, const char *key, const char *val, char *err, size_t errlen)
{
    GParamSpec *ps = g_object_class_find_property(G_OBJECT_GET_CLASS(op), key);
    VipsArgumentClass *ac = NULL;
    VipsArgumentInstance *ai = NULL;
    if (ps && vips_object_get_argument(VIPS_OBJECT(op), g_param_spec_get_name(ps), &ps, &ac, &ai)) {
        vips_error_clear();
        ac = NULL;
    }
    if (!ps || !ac || !(ac->flags & VIPS_ARGUMENT_INPUT)) {
        char known[MSG_LEN / 2];
        names_t nm = {known, sizeof(known), 0};
        known[0] = 0;
        vips_argument_map(VIPS_OBJECT(op), names_add, &nm, NULL);
        errmsg_set(err, errlen, "%s: unknown argument '%s' (it takes %sp, per)", label, key, known);
        return -1;
    }
    const char *name = g_param_spec_get_name(ps);
    GType t = G_PARAM_SPEC_VALUE_TYPE(ps);
    if (!strcmp(name, s->in)) {
        errmsg_set(err, errlen, "%s: %s is the input image, which is the view itself", label, name);
        return -1;
    }
    int kind = kind_of(t);
    if (kind < 0) {
        errmsg_set(err, errlen, "%s: argument %s is a %s, which a recipe cannot give (numbers, true/false, "
                                "names, text and arrays of numbers only)", label, name, g_type_name(t));
        return -1;
    }
    if (strlen(name) >= AUG_STEP_NAME_LEN || strlen(val) >= AUG_STEP_TEXT_LEN) {
        errmsg_set(err, errlen, "%s: %s=%s: longer than %u characters", label, name, val, AUG_STEP_TEXT_LEN - 1);
        return -1;
    }
    memset(arg, 0, sizeof(*arg));
    snprintf(arg->name, sizeof(arg->name), "%s", name);
    snprintf(arg->text, sizeof(arg->text), "%s", val);
    arg->kind = (aug_arg_kind_t)kind;
    arg->n = 1;
    double min, max;
    pspec_bounds(ps, &min, &max);
    switch (arg->kind) {
    case AUG_ARG_INT:
    case AUG_ARG_DOUBLE:
    case AUG_ARG_INT_ARRAY:
    case AUG_ARG_DOUBLE_ARRAY:
        return parse_numbers(arg, label, val, arg->kind >= AUG_ARG_INT_ARRAY,
                             arg->kind == AUG_ARG_INT || arg->kind == AUG_ARG_INT_ARRAY, min, max, err, errlen);
    case AUG_ARG_BOOL:
        if (parse_bool(val, &arg->lo[0])) {
            errmsg_set(err, errlen, "%s: %s=%s: expected true or false", label, name, val);
            return -1;
        }
        arg->hi[0] = arg->lo[0];
        return 0;
    case AUG_ARG_ENUM: {
        GEnumClass *ec = G_PARAM_SPEC_ENUM(ps)->enum_class;
        GEnumValue *ev = g_enum_get_value_by_nick(ec, val);
        if (!ev) ev = g_enum_get_value_by_name(ec, val);
        if (!ev || !strcmp(ev->value_nick, "last")) {
            char nicks[MSG_LEN / 2];
            enum_nicks(ec, nicks, sizeof(nicks));
            errmsg_set(err, errlen, "%s: %s=%s: expected one of %s", label, name, val, nicks);
            return -1;
        }
        arg->lo[0] = arg->hi[0] = ev->value;
        return 0;
    }
    case AUG_ARG_STRING:
        return 0;
    }
    return 0;
}

/* The argument of that name given so far, or NULL. */
static aug_step_arg_t *arg_find(aug_step_t *st, const char *name)
{
    for (uint32_t i = 0; i < st->n_args; i++)
        if (!strcmp(st->args[i].name, name)) return &st->args[i];
    return NULL;
}

static int parse_jpeg(aug_step_t *st, const char *label, int n, char *const *keys, char *const *vals,
                      char *err, size_t errlen)
{
    aug_step_arg_t *q = &st->args[0];
    st->n_args = 1;
    snprintf(q->name, sizeof(q->name), "q");
    snprintf(q->text, sizeof(q->text), "%d-%d", JPEG_Q_DEFAULT_LO, JPEG_Q_DEFAULT_HI);
    q->kind = AUG_ARG_INT;
    q->n = 1;
    q->lo[0] = JPEG_Q_DEFAULT_LO;
    q->hi[0] = JPEG_Q_DEFAULT_HI;
    for (int i = 0; i < n; i++) {
        if (strcasecmp(keys[i], "q") && strcmp(keys[i], "quality")) {
            errmsg_set(err, errlen, "%s: unknown argument '%s' (it takes q, p, per)", label, keys[i]);
            return -1;
        }
        if (strlen(vals[i]) >= AUG_STEP_TEXT_LEN ||
            parse_numbers(q, label, vals[i], 0, 1, JPEG_Q_MIN, JPEG_Q_MAX, err, errlen))
            return -1;
        snprintf(q->text, sizeof(q->text), "%s", vals[i]);
    }
    return 0;
}

int aug_vips_parse(aug_step_t *st, int item, const char *name, int jpeg, int n,
                   char *const *keys, char *const *vals, char *err, size_t errlen)
{
    char label[96];
    memset(st, 0, sizeof(*st));
    if (jpeg) {
        snprintf(label, sizeof(label), "recipe item %d (jpeg)", item);
        snprintf(st->name, sizeof(st->name), "jpeg");
        st->jpeg = 1;
        return parse_jpeg(st, label, n, keys, vals, err, errlen);
    }
    snprintf(label, sizeof(label), "recipe item %d (vips:%.40s)", item, name);
    if (strlen(name) >= AUG_STEP_NAME_LEN) {
        errmsg_set(err, errlen, "%s: unknown libvips operation (names are shorter than %u characters)", label,
                                AUG_STEP_NAME_LEN);
        return -1;
    }
    if (aug_vips_start(err, errlen)) return -1;
    snprintf(st->name, sizeof(st->name), "%s", name);
    shape_t s;
    VipsOperation *op = operation_open(name, label, &s, err, errlen);
    if (!op) return -1;
    int rc = -1;
    for (int i = 0; i < n; i++) {
        /* given twice: the last value counts, as for the built-in operations */
        GParamSpec *ps = g_object_class_find_property(G_OBJECT_GET_CLASS(op), keys[i]);
        aug_step_arg_t *slot = ps ? arg_find(st, g_param_spec_get_name(ps)) : NULL;
        int fresh = !slot;
        if (fresh) {
            if (st->n_args >= AUG_STEP_MAX_ARGS) {
                errmsg_set(err, errlen, "%s: more than %u arguments", label, AUG_STEP_MAX_ARGS);
                goto done;
            }
            slot = &st->args[st->n_args];
        }
        if (parse_op_arg(slot, label, op, &s, keys[i], vals[i], err, errlen)) goto done;
        if (fresh) st->n_args++;
    }
    for (int r = 0; r < s.n_required; r++) {
        if (!arg_find(st, s.required[r])) {
            GParamSpec *ps = g_object_class_find_property(G_OBJECT_GET_CLASS(op), s.required[r]);
            int kind = ps ? kind_of(G_PARAM_SPEC_VALUE_TYPE(ps)) : -1;
            if (kind < 0)
                errmsg_set(err, errlen, "%s: libvips operation '%s' needs %s, a %s, which a recipe cannot give",
                                        label, name, s.required[r],
                                        ps ? g_type_name(G_PARAM_SPEC_VALUE_TYPE(ps)) : "?");
            else
                errmsg_set(err, errlen, "%s: missing required argument %s (%s; HINT: vips:%s:%s=...)", label,
                                        s.required[r], kind_words((aug_arg_kind_t)kind), name, s.required[r]);
            goto done;
        }
    }
    rc = 0;
done:
    vips_object_unref_outputs(VIPS_OBJECT(op));
    g_object_unref(op);
    return rc;
}

void aug_vips_format(const aug_step_t *st, char *buf, size_t len)
{
    int n = snprintf(buf, len, st->jpeg ? "jpeg" : "vips:%s", st->name);
    size_t used = n > 0 ? (size_t)n : 0;
    for (uint32_t i = 0; i < st->n_args && used < len; i++) {
        const aug_step_arg_t *a = &st->args[i];
        n = snprintf(buf + used, len - used, ":%s=%s", a->name, a->text);
        if (n > 0) used += (size_t)n;
    }
}

/* -------------------------------------------------------------------- run */

struct aug_vips {
    aug_step_t step;
    GType type;                          /* the operation; 0 for jpeg */
    const char *in, *out;                /* its image arguments */
    GType arg_type[AUG_STEP_MAX_ARGS];   /* the GValue type of each argument */
    int32_t C, S;
    uint8_t *in_px;                      /* (S, S, C) the view as bytes */
    uint8_t *out_px;                     /* (h, w, bands) the result as bytes */
    size_t out_cap;
};

aug_vips_t *aug_vips_new(const aug_step_t *st, int32_t C, int32_t S, char *err, size_t errlen)
{
    if (aug_vips_start(err, errlen)) return NULL;
    aug_vips_t *v = calloc(1, sizeof(*v));
    if (!v || !(v->in_px = malloc((size_t)S * S * C))) {
        free(v);
        errmsg_set(err, errlen, "augment: out of memory for a libvips step");
        return NULL;
    }
    v->step = *st;
    v->C = C;
    v->S = S;
    if (st->jpeg) return v;
    char label[96];
    snprintf(label, sizeof(label), "augment: vips:%.40s", st->name);
    shape_t s;
    VipsOperation *op = operation_open(st->name, label, &s, err, errlen);
    if (!op) {
        aug_vips_destroy(&v);
        return NULL;
    }
    v->type = G_OBJECT_TYPE(op);
    v->in = s.in;
    v->out = s.out;
    int bad = 0;
    for (uint32_t i = 0; i < st->n_args && !bad; i++) {
        GParamSpec *ps = g_object_class_find_property(G_OBJECT_GET_CLASS(op), st->args[i].name);
        if (!ps || kind_of(G_PARAM_SPEC_VALUE_TYPE(ps)) != (int)st->args[i].kind) {
            errmsg_set(err, errlen, "%s: argument %s is not what the recipe says", label, st->args[i].name);
            bad = 1;
        } else {
            v->arg_type[i] = G_PARAM_SPEC_VALUE_TYPE(ps);
        }
    }
    vips_object_unref_outputs(VIPS_OBJECT(op));
    g_object_unref(op);
    if (bad) aug_vips_destroy(&v);
    return v;
}

void aug_vips_destroy(aug_vips_t **self_p)
{
    if (!self_p || !*self_p) return;
    aug_vips_t *v = *self_p;
    free(v->in_px);
    free(v->out_px);
    free(v);
    *self_p = NULL;
}

/* This view's values of argument a: fixed values as given, ranges drawn. */
static void arg_draw(const aug_step_arg_t *a, aug_rng_t *rng, double *x)
{
    int whole = a->kind == AUG_ARG_INT || a->kind == AUG_ARG_INT_ARRAY;
    for (uint32_t k = 0; k < a->n; k++) {
        double lo = a->lo[k], hi = a->hi[k];
        if (!(hi > lo)) x[k] = lo;
        else if (whole) x[k] = lo + (double)aug_rng_below(rng, (uint32_t)(hi - lo) + 1u);
        else x[k] = aug_rng_uniform(rng, lo, hi);
    }
}

static void arg_set(VipsOperation *op, const aug_step_arg_t *a, GType type, const double *x)
{
    GValue gv = G_VALUE_INIT;
    g_value_init(&gv, type);
    switch (a->kind) {
    case AUG_ARG_INT: g_value_set_int(&gv, (int)x[0]); break;
    case AUG_ARG_DOUBLE: g_value_set_double(&gv, x[0]); break;
    case AUG_ARG_BOOL: g_value_set_boolean(&gv, x[0] != 0.0); break;
    case AUG_ARG_ENUM: g_value_set_enum(&gv, (int)x[0]); break;
    case AUG_ARG_STRING: g_value_set_string(&gv, a->text); break;
    case AUG_ARG_INT_ARRAY: {
        int iv[AUG_STEP_MAX_VALUES];
        for (uint32_t k = 0; k < a->n; k++) iv[k] = (int)x[k];
        vips_value_set_array_int(&gv, iv, (int)a->n);
        break;
    }
    case AUG_ARG_DOUBLE_ARRAY:
        vips_value_set_array_double(&gv, x, (int)a->n);
        break;
    }
    g_object_set_property(G_OBJECT(op), a->name, &gv);
    g_value_unset(&gv);
}

/* out = the operation on in, with this view's argument values. */
static int run_operation(aug_vips_t *v, double x[][AUG_STEP_MAX_VALUES], VipsImage *in, VipsImage **out,
                         char *err, size_t errlen)
{
    VipsOperation *op = VIPS_OPERATION(g_object_new(v->type, NULL));
    g_object_set(op, v->in, in, NULL);
    for (uint32_t i = 0; i < v->step.n_args; i++) arg_set(op, &v->step.args[i], v->arg_type[i], x[i]);
    /* built directly: the operation cache would keep every view alive */
    int rc = 0;
    if (vips_object_build(VIPS_OBJECT(op))) {
        char what[64];
        snprintf(what, sizeof(what), "vips:%s", v->step.name);
        rc = vips_failed(what, err, errlen);
    } else {
        g_object_get(op, v->out, out, NULL);
    }
    vips_object_unref_outputs(VIPS_OBJECT(op));
    g_object_unref(op);
    return rc;
}

/* out = in saved as JPEG at quality q and loaded back; *buf holds the file,
 * which out reads from: free it after out. */
static int run_jpeg(int q, VipsImage *in, VipsImage **out, void **buf, char *err, size_t errlen)
{
    size_t len;
    if (vips_jpegsave_buffer(in, buf, &len, "Q", q, NULL)) return vips_failed("jpeg: save", err, errlen);
    if (vips_jpegload_buffer(*buf, len, out, NULL)) return vips_failed("jpeg: load", err, errlen);
    return 0;
}

static inline uint8_t to_u8(double x)
{
    x = x > 0.0 ? x : 0.0;
    x = x < U8_MAX ? x : U8_MAX;
    return (uint8_t)(x + 0.5);
}

#define ROW_TO_U8(T) do { \
        const T *q = (const T *)p; \
        for (size_t i = 0; i < n; i++) o[i] = to_u8((double)q[i] * scale); \
    } while (0)

/* n values of format fmt at p into bytes: rounded, clamped to 0..255 after
 * `scale`. Returns -1 for a format with no byte meaning (complex). */
static int row_to_u8(uint8_t *o, const VipsPel *p, VipsBandFormat fmt, size_t n, double scale)
{
    switch (fmt) {
    case VIPS_FORMAT_UCHAR: memcpy(o, p, n); break;
    case VIPS_FORMAT_CHAR: ROW_TO_U8(signed char); break;
    case VIPS_FORMAT_USHORT: ROW_TO_U8(unsigned short); break;
    case VIPS_FORMAT_SHORT: ROW_TO_U8(short); break;
    case VIPS_FORMAT_UINT: ROW_TO_U8(unsigned int); break;
    case VIPS_FORMAT_INT: ROW_TO_U8(int); break;
    case VIPS_FORMAT_FLOAT: ROW_TO_U8(float); break;
    case VIPS_FORMAT_DOUBLE: ROW_TO_U8(double); break;
    default: return -1;
    }
    return 0;
}

/* The pixels of im, computed in this thread, as bytes in v->out_px. */
static int fetch(aug_vips_t *v, VipsImage *im, aug_vips_result_t *res, char *err, size_t errlen)
{
    const char *what = v->step.jpeg ? "jpeg" : v->step.name;
    int32_t limit = RESULT_MAX_SIDES * v->S;
    if (im->Xsize > limit || im->Ysize > limit) {
        errmsg_set(err, errlen, "vips:%s: a %dx%d result; at most %d (%d times the view) on a side", what,
                                im->Xsize, im->Ysize, limit, RESULT_MAX_SIDES);
        return -1;
    }
    size_t n = (size_t)im->Xsize * im->Bands, need = n * im->Ysize;
    if (need > v->out_cap) {
        uint8_t *p = realloc(v->out_px, need);
        if (!p) {
            errmsg_set(err, errlen, "vips:%s: out of memory for a %dx%d result", what, im->Xsize, im->Ysize);
            return -1;
        }
        v->out_px = p;
        v->out_cap = need;
    }
    double scale = im->BandFmt == VIPS_FORMAT_USHORT && (im->Type == VIPS_INTERPRETATION_RGB16 ||
                                                         im->Type == VIPS_INTERPRETATION_GREY16)
                 ? U16_TO_U8 : 1.0;
    VipsRegion *reg = vips_region_new(im);
    VipsRect all = {0, 0, im->Xsize, im->Ysize};
    if (!reg || vips_region_prepare(reg, &all)) {
        if (reg) g_object_unref(reg);
        char label[64];
        snprintf(label, sizeof(label), "vips:%s", what);
        return vips_failed(label, err, errlen);
    }
    int rc = 0;
    for (int y = 0; y < im->Ysize && !rc; y++)
        rc = row_to_u8(v->out_px + (size_t)y * n, VIPS_REGION_ADDR(reg, 0, y), im->BandFmt, n, scale);
    g_object_unref(reg);
    if (rc) {
        errmsg_set(err, errlen, "vips:%s: returns %s pixels, which have no 8-bit meaning", what,
                                vips_enum_nick(VIPS_TYPE_BAND_FORMAT, im->BandFmt));
        return -1;
    }
    res->pixels = v->out_px;
    res->h = im->Ysize;
    res->w = im->Xsize;
    res->bands = im->Bands;
    return 0;
}

int aug_vips_run(aug_vips_t *v, aug_rng_t *rng, const float *img, aug_vips_result_t *res, char *err, size_t errlen)
{
    double x[AUG_STEP_MAX_ARGS][AUG_STEP_MAX_VALUES];
    for (uint32_t i = 0; i < v->step.n_args; i++) arg_draw(&v->step.args[i], rng, x[i]);
    int32_t C = v->C, S = v->S;
    aug_hwc_u8(v->in_px, img, C, S * S);
    VipsImage *in = vips_image_new_from_memory(v->in_px, (size_t)S * S * C, S, S, C, VIPS_FORMAT_UCHAR);
    if (!in) return vips_failed("libvips image of the view", err, errlen);
    in->Type = C == 3 ? VIPS_INTERPRETATION_sRGB : VIPS_INTERPRETATION_B_W;
    VipsImage *out = NULL;
    void *jpeg = NULL;
    int rc = v->step.jpeg ? run_jpeg((int)x[0][0], in, &out, &jpeg, err, errlen)
                          : run_operation(v, x, in, &out, err, errlen);
    g_object_unref(in);   /* out holds what it needs */
    if (!rc) rc = fetch(v, out, res, err, errlen);
    if (out) g_object_unref(out);
    g_free(jpeg);
    return rc;
}

#include "nn/blas.h"

#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "console/console.h"

#define ENV_CORETYPE   "OPENBLAS_CORETYPE"
#define ENV_OVERRIDE   "NN_BLAS_OVERRIDE"
#define ENV_RESTARTED  "NN_BLAS_RESTARTED"
#define ENV_USER       "NN_BLAS_USER_CORETYPE"
#define SELF_EXE       "/proc/self/exe"
#define CPUINFO        "/proc/cpuinfo"
#define NOTE_MAX       512
#define NAME_MAX_LEN   64
#define FROM_MAX       160
#define CPU_MAX        160

/* What a kernel needs from the CPU, weakest first. */
enum { TIER_UNKNOWN = -1, TIER_OLD = 0, TIER_AVX2 = 1, TIER_AVX512 = 2 };

/* OpenBLAS 0.3.21's kernel names (openblas_get_corename) by the instruction
 * set their matrix products use; a name not listed is left alone. */
static const struct { const char *name; int tier; } KERNELS[] = {
    { "Katmai", TIER_OLD }, { "Coppermine", TIER_OLD }, { "Northwood", TIER_OLD },
    { "Prescott", TIER_OLD }, { "Banias", TIER_OLD }, { "Atom", TIER_OLD }, { "Core2", TIER_OLD },
    { "Penryn", TIER_OLD }, { "Dunnington", TIER_OLD }, { "Nehalem", TIER_OLD },
    { "Athlon", TIER_OLD }, { "Opteron", TIER_OLD }, { "Opteron(SSE3)", TIER_OLD },
    { "Barcelona", TIER_OLD }, { "Nano", TIER_OLD }, { "Sandybridge", TIER_OLD },
    { "Bobcat", TIER_OLD }, { "Bulldozer", TIER_OLD }, { "Piledriver", TIER_OLD },
    { "Steamroller", TIER_OLD }, { "Excavator", TIER_AVX2 }, { "Haswell", TIER_AVX2 },
    { "Zen", TIER_AVX2 }, { "SkylakeX", TIER_AVX512 }, { "Cooperlake", TIER_AVX512 },
    { "SapphireRapids", TIER_AVX512 },
};

/* The best kernel for this CPU: the OPENBLAS_CORETYPE value that selects it
 * (NULL: none worth forcing) and the features that allow it. */
typedef struct {
    const char *coretype;   /* "SKYLAKEX" */
    int tier;
    const char *features;   /* "avx512" */
} cpu_best;

static struct {
    int done;
    int warn;                /* below what the CPU supports, not by the user's choice */
    char note[NOTE_MAX];     /* the part of the log line in parentheses */
} g_blas;

static int kernel_tier(const char *name)
{
    for (size_t i = 0; i < sizeof KERNELS / sizeof KERNELS[0]; i++)
        if (strcasecmp(name, KERNELS[i].name) == 0)
            return KERNELS[i].tier;
    return TIER_UNKNOWN;
}

static cpu_best best_for_cpu(void)
{
    cpu_best b = { NULL, TIER_OLD, "no avx2" };
#if defined(__x86_64__) || defined(__i386__)
    /* libgcc's checks include the OS saving the wide registers (XGETBV) */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        b = (cpu_best){ "SKYLAKEX", TIER_AVX512, "avx512" };
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        b = (cpu_best){ __builtin_cpu_is("amd") ? "ZEN" : "HASWELL", TIER_AVX2, "avx2" };
#endif
    return b;
}

/* Puts OPENBLAS_CORETYPE back as the user had it ("": unset) and removes
 * the restart's own variables. */
static void restore_env(const char *user)
{
    if (*user)
        setenv(ENV_CORETYPE, user, 1);
    else
        unsetenv(ENV_CORETYPE);
    unsetenv(ENV_RESTARTED);
    unsetenv(ENV_USER);
}

/* Where the weaker kernel came from: OpenBLAS, or the user's setting that
 * NN_BLAS_OVERRIDE=1 corrects. */
static void weaker_from(char *out, size_t n, const char *chose, const char *user)
{
    if (*user)
        snprintf(out, n, "%s=%s overridden (%s=1)", ENV_CORETYPE, user, ENV_OVERRIDE);
    else
        snprintf(out, n, "OpenBLAS chose %s", chose);
}

/* The restarted process: no second restart, whatever the kernel now is. */
static void after_restart(const char *kernel, const cpu_best *best)
{
    char chose[NAME_MAX_LEN], user[NAME_MAX_LEN], want[NAME_MAX_LEN], from[FROM_MAX];
    const char *u = getenv(ENV_USER), *forced = getenv(ENV_CORETYPE);
    snprintf(chose, sizeof chose, "%s", getenv(ENV_RESTARTED));
    snprintf(user, sizeof user, "%s", u ? u : "");
    snprintf(want, sizeof want, "%s", forced ? forced : "(unset)");
    restore_env(user);
    weaker_from(from, sizeof from, chose, user);
    if (kernel_tier(kernel) >= best->tier) {
        snprintf(g_blas.note, sizeof g_blas.note, "%s; switched: CPU supports %s", from, best->features);
    } else {
        g_blas.warn = 1;
        snprintf(g_blas.note, sizeof g_blas.note,
                 "%s; restarted with %s=%s but it did not take, matrix products run slower: CPU supports %s",
                 from, ENV_CORETYPE, want, best->features);
    }
}

void nn_blas_init(char **argv)
{
    if (g_blas.done)
        return;
    g_blas.done = 1;
    const char *kernel = openblas_get_corename();
    cpu_best best = best_for_cpu();
    if (getenv(ENV_RESTARTED)) {
        /* exec of /proc/self/exe named the process "exe": give it back its
         * own name, which ps, pgrep and top show */
        if (argv && argv[0]) {
            const char *slash = strrchr(argv[0], '/');
            prctl(PR_SET_NAME, slash ? slash + 1 : argv[0], 0, 0, 0);
        }
        after_restart(kernel, &best);
        return;
    }
    char user[NAME_MAX_LEN], chose[NAME_MAX_LEN], from[FROM_MAX];
    const char *u = getenv(ENV_CORETYPE), *ov = getenv(ENV_OVERRIDE);
    snprintf(user, sizeof user, "%s", u ? u : "");
    snprintf(chose, sizeof chose, "%s", kernel);
    int override = ov && strcmp(ov, "1") == 0;
    int tier = kernel_tier(kernel);
    int weaker = best.coretype && tier != TIER_UNKNOWN && tier < best.tier;
    if (*user && (!override || !weaker)) {
        snprintf(g_blas.note, sizeof g_blas.note, "%s=%s: the user's choice; CPU supports %s", ENV_CORETYPE, user,
                 best.features);
        return;
    }
    if (!weaker) {
        snprintf(g_blas.note, sizeof g_blas.note, "CPU: %s", best.features);
        return;
    }
    weaker_from(from, sizeof from, chose, user);
    g_blas.warn = 1;
    if (!argv || !argv[0]) {
        snprintf(g_blas.note, sizeof g_blas.note, "%s; set %s=%s for faster matrix products: CPU supports %s",
                 from, ENV_CORETYPE, best.coretype, best.features);
        return;
    }
    if (*user)
        setenv(ENV_USER, user, 1);
    setenv(ENV_RESTARTED, chose, 1);
    setenv(ENV_CORETYPE, best.coretype, 1);
    fflush(NULL);
    execv(SELF_EXE, argv);
    int e = errno;   /* still here: carry on with the kernel we have */
    restore_env(user);
    snprintf(g_blas.note, sizeof g_blas.note,
             "%s; cannot restart with %s=%s (%s: %s), matrix products run slower: CPU supports %s", from,
             ENV_CORETYPE, best.coretype, SELF_EXE, strerror(e), best.features);
}

void nn_blas_log(int quiet)
{
    if (!g_blas.done)
        nn_blas_init(NULL);
    if (quiet && !g_blas.warn)
        return;
    console_log("OpenBLAS kernel %s (%s)", nn_blas_kernel(), g_blas.note);
}

const char *nn_blas_kernel(void)
{
    return openblas_get_corename();
}

/* Copies s into out, without the characters JSON would need escaped and
 * with runs of spaces made one. */
static void append_clean(char *out, size_t n, const char *s)
{
    size_t len = strlen(out);
    for (; *s && len + 1 < n; s++) {
        char c = (unsigned char)*s < 0x20 || *s == '"' || *s == '\\' ? ' ' : *s;
        if (c == ' ' && (len == 0 || out[len - 1] == ' '))
            continue;
        out[len++] = c;
    }
    while (len > 0 && out[len - 1] == ' ')
        len--;
    out[len] = '\0';
}

/* The value of "key<tabs>: value" when line holds that key, else NULL. */
static const char *cpuinfo_value(const char *line, const char *key)
{
    size_t k = strlen(key);
    if (strncmp(line, key, k) != 0)
        return NULL;
    const char *p = line + k;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

const char *nn_blas_cpu(void)
{
    static char cpu[CPU_MAX];
    if (*cpu)
        return cpu;
    char name[CPU_MAX] = "", family[16] = "", model[16] = "", line[512];
    FILE *f = fopen(CPUINFO, "r");
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        const char *v;
        if (!*name && (v = cpuinfo_value(line, "model name")))
            snprintf(name, sizeof name, "%s", v);
        else if (!*family && (v = cpuinfo_value(line, "cpu family")))
            snprintf(family, sizeof family, "%s", v);
        else if (!*model && (v = cpuinfo_value(line, "model")))
            snprintf(model, sizeof model, "%s", v);
        else if (!*line && *name)
            break;   /* end of the first processor's block */
    }
    if (f)
        fclose(f);
    char raw[CPU_MAX + 64];
    if (*family && *model)
        snprintf(raw, sizeof raw, "%s family %s model %s", *name ? name : "x86", family, model);
    else
        snprintf(raw, sizeof raw, "%s", *name ? name : "unknown");
    append_clean(cpu, sizeof cpu, raw);
    if (!*cpu)
        snprintf(cpu, sizeof cpu, "unknown");
    return cpu;
}

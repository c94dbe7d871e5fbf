/* transport/curve: CURVE encryption and authentication of every socket, and
 * the ZAP handler that decides which clients a bound socket accepts.
 *
 * The handler is a thread with a REP socket bound to inproc://zeromq.zap.01
 * (ZeroMQ's well-known address, RFC 27), started before the first CURVE
 * server socket binds, so that no handshake can happen without it (without a
 * handler, libzmq would let every client with a valid CURVE handshake in).
 * It accepts a client key when a file in DIR/allowed/ holds it. It rereads
 * the folder at each handshake (they are rare: one per connection), so a key
 * added while the pipeline runs is accepted at the client's next attempt and
 * a key removed is refused from the next connection on. The first
 * acceptance of each key name is logged; refusals are logged with the
 * address and key, at most REFUSED_LOG_BURST per minute.
 */
#include "transport/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "console/console.h"
#include "errmsg/errmsg.h"

#define ZAP_ENDPOINT        "inproc://zeromq.zap.01"
#define ZAP_VERSION         "1.0"
#define ZAP_DOMAIN          "sslpipe"
#define ZAP_TICK_MS         100
#define ZAP_MAX_FRAMES      8
#define ZAP_FRAME_MAX       256
#define CURVE_KEY_BYTES     32
#define KEY_FILE_MAX        4096      /* a key file is a line; anything longer is not one */
#define MAX_ALLOWED_KEYS    100000
#define REFUSED_LOG_BURST   5
#define REFUSED_LOG_WINDOW_S 60.0
#define ALLOWED_DIR         "allowed"
#define MAX_SEEN_NAMES      64
#define CURVE_DIR_MAX       (PATH_MAX - 512)   /* room for the file names inside */

static const char z85_chars[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

static struct {
    int on, roles;
    char dir[CURVE_DIR_MAX];
    char server_public[TRANSPORT_KEY_LEN + 1], server_secret[TRANSPORT_KEY_LEN + 1];
    char client_public[TRANSPORT_KEY_LEN + 1], client_secret[TRANSPORT_KEY_LEN + 1];
} g_curve;

typedef struct {
    char key[TRANSPORT_KEY_LEN + 1];
    char name[TRANSPORT_MAX_PEER_NAME];
} allowed_key_t;

static struct {
    pthread_mutex_t mu;
    pthread_t thread;
    int running;
    atomic_int quit;
    pid_t pid;
    void *rep;                 /* the handler's socket; the thread's once started */
    allowed_key_t *keys;       /* (n_keys) read from DIR/allowed; the thread's */
    int n_keys;
    char seen[MAX_SEEN_NAMES][TRANSPORT_MAX_PEER_NAME];   /* key names accepted so far (logged once) */
    int n_seen;
    log_limit_t refused;
} g_zap = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ------------------------------------------------------------ key files */

int transport_key_read(const char *path, char key[TRANSPORT_KEY_LEN + 1], char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        errmsg_set(err, errlen, "cannot read the key file %s: %s", path, strerror(errno));
        return -1;
    }
    char buf[KEY_FILE_MAX + 1];
    size_t n = fread(buf, 1, KEY_FILE_MAX, f);
    int too_long = n == KEY_FILE_MAX && fgetc(f) != EOF;
    fclose(f);
    buf[n] = '\0';
    if (too_long) {
        errmsg_set(err, errlen, "%s is not a key file (longer than %d bytes)", path, KEY_FILE_MAX);
        return -1;
    }
    for (char *line = buf, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        while (*line == ' ' || *line == '\t' || *line == '\r')
            line++;
        size_t len = strlen(line);
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        uint8_t raw[CURVE_KEY_BYTES];
        if (len != TRANSPORT_KEY_LEN || strspn(line, z85_chars) != len || !zmq_z85_decode(raw, line)) {
            errmsg_set(err, errlen, "%s does not hold a CURVE key (%d Z85 characters on one line)", path,
                       TRANSPORT_KEY_LEN);
            return -1;
        }
        memcpy(key, line, TRANSPORT_KEY_LEN + 1);
        return 0;
    }
    errmsg_set(err, errlen, "%s holds no key", path);
    return -1;
}

int transport_key_write(const char *path, const char *key, int mode, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, (mode_t)mode);
    if (fd < 0) {
        errmsg_set(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    char line[TRANSPORT_KEY_LEN + 2];
    int n = snprintf(line, sizeof line, "%.*s\n", TRANSPORT_KEY_LEN, key);
    int rc = fchmod(fd, (mode_t)mode) == 0 && write(fd, line, (size_t)n) == n ? 0 : -1;
    if (close(fd) != 0)
        rc = -1;
    if (rc)
        errmsg_set(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return rc;
}

/* Reads DIR/NAME into key; `secret` also warns when others may read it. */
static int read_named_key(const char *dir, const char *name, char *key, int secret, char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (transport_key_read(path, key, err, errlen)) {
        size_t used = err ? strlen(err) : 0;
        if (access(path, F_OK) != 0 && used + 1 < errlen)
            snprintf(err + used, errlen - used, "%s",
                     strcmp(name, "server.secret") == 0
                         ? "\nHINT: the stages that bind (loader, trainer, evaluator) need the folder `keygen DIR` "
                           "made, with the server secret; a clients/NAME folder is for augmenters elsewhere"
                         : "\nHINT: make a key folder with `keygen DIR` (build/bin/keygen, or ./run.sh --keygen DIR)");
        return -1;
    }
    struct stat st;
    if (secret && stat(path, &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
        fprintf(stderr, "transport: warning: the secret key %s can be read by other users (chmod 600 it)\n", path);
    return 0;
}

/* The public key of `secret` must be `public`. */
static int check_pair(const char *dir, const char *what, const char *public, const char *secret, char *err,
                      size_t errlen)
{
    char derived[TRANSPORT_KEY_LEN + 1];
    if (zmq_curve_public(derived, secret) != 0) {
        errmsg_set(err, errlen, "cannot derive the public key of %s/%s.secret: %s", dir, what,
                   zmq_strerror(errno));
        return -1;
    }
    if (strcmp(derived, public) != 0) {
        errmsg_set(err, errlen, "%s/%s.public does not belong to %s/%s.secret\n"
                   "HINT: copy both files of one key pair (keygen makes them)", dir, what, dir, what);
        return -1;
    }
    return 0;
}

int transport_use_curve(const char *dir, int roles, char *err, size_t errlen)
{
    if (!dir) {
        memset(&g_curve, 0, sizeof g_curve);
        return 0;
    }
    if (!zmq_has("curve")) {
        errmsg_set(err, errlen, "--curve: this libzmq was built without CURVE (zmq_has(\"curve\") is false)\n"
                   "HINT: use a libzmq built with libsodium, such as Debian's libzmq5");
        return -1;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        errmsg_set(err, errlen, "--curve %s: no such folder\n"
                   "HINT: make one with `keygen %s` (build/bin/keygen, or ./run.sh --keygen %s)", dir, dir, dir);
        return -1;
    }
    if (strlen(dir) >= sizeof g_curve.dir) {
        errmsg_set(err, errlen, "--curve: the folder name is too long");
        return -1;
    }
    memset(&g_curve, 0, sizeof g_curve);
    snprintf(g_curve.dir, sizeof g_curve.dir, "%s", dir);
    if (read_named_key(dir, "server.public", g_curve.server_public, 0, err, errlen))
        return -1;
    if (roles & TRANSPORT_CURVE_SERVER) {
        if (read_named_key(dir, "server.secret", g_curve.server_secret, 1, err, errlen) ||
            check_pair(dir, "server", g_curve.server_public, g_curve.server_secret, err, errlen))
            return -1;
        char allowed[PATH_MAX];
        snprintf(allowed, sizeof allowed, "%s/" ALLOWED_DIR, dir);
        if (stat(allowed, &st) != 0 || !S_ISDIR(st.st_mode)) {
            errmsg_set(err, errlen, "--curve %s: no %s/ folder of accepted client keys\n"
                       "HINT: `keygen %s` makes one; `keygen --client NAME %s` adds a client", dir,
                       ALLOWED_DIR, dir, dir);
            return -1;
        }
    }
    if (roles & TRANSPORT_CURVE_CLIENT) {
        if (read_named_key(dir, "client.public", g_curve.client_public, 0, err, errlen) ||
            read_named_key(dir, "client.secret", g_curve.client_secret, 1, err, errlen) ||
            check_pair(dir, "client", g_curve.client_public, g_curve.client_secret, err, errlen))
            return -1;
    }
    g_curve.roles = roles;
    g_curve.on = 1;
    return 0;
}

int transport_curve_enabled(void)
{
    return g_curve.on;
}

/* ------------------------------------------------------------ ZAP handler */

/* Rereads DIR/allowed into g_zap.keys (the handler thread, or before it starts).
 * A file that holds no key is skipped with a (limited) warning. */
static void load_allowed(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/" ALLOWED_DIR, g_curve.dir);
    DIR *d = opendir(path);
    if (!d) {
        if (log_limit_allow(&g_zap.refused, console_now()))
            console_log("CURVE: cannot read %s: %s; every client is refused", path, strerror(errno));
        g_zap.n_keys = 0;
        return;
    }
    allowed_key_t *keys = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < MAX_ALLOWED_KEYS) {
        if (e->d_name[0] == '.')
            continue;
        char file[PATH_MAX];
        if (snprintf(file, sizeof file, "%s/%s", path, e->d_name) >= (int)sizeof file)
            continue;
        struct stat st;
        if (stat(file, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        char key[TRANSPORT_KEY_LEN + 1], err[PATH_MAX + 128];
        if (transport_key_read(file, key, err, sizeof err)) {
            if (log_limit_allow(&g_zap.refused, console_now()))
                console_log("CURVE: skipping %s", err);
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            allowed_key_t *k = realloc(keys, (size_t)cap * sizeof *k);
            if (!k)
                break;
            keys = k;
        }
        memcpy(keys[n].key, key, sizeof key);
        snprintf(keys[n].name, sizeof keys[n].name, "%.*s", (int)sizeof keys[n].name - 1, e->d_name);
        char *dot = strstr(keys[n].name, ".public");
        if (dot && dot[7] == '\0')
            *dot = '\0';
        n++;
    }
    closedir(d);
    free(g_zap.keys);
    g_zap.keys = keys;
    g_zap.n_keys = n;
}

static const allowed_key_t *find_key(const char *key)
{
    for (int i = 0; i < g_zap.n_keys; i++)
        if (strcmp(g_zap.keys[i].key, key) == 0)
            return &g_zap.keys[i];
    return NULL;
}

/* Logs the first acceptance of each key name (then stays quiet). */
static void note_accepted(const char *name, const char *address)
{
    for (int i = 0; i < g_zap.n_seen; i++)
        if (strcmp(g_zap.seen[i], name) == 0)
            return;
    if (g_zap.n_seen == MAX_SEEN_NAMES)
        return;
    snprintf(g_zap.seen[g_zap.n_seen++], TRANSPORT_MAX_PEER_NAME, "%s", name);
    console_log("CURVE: accepted client key '%s' from %s", name, address);
}

typedef struct {
    int n;
    size_t len[ZAP_MAX_FRAMES];
    uint8_t data[ZAP_MAX_FRAMES][ZAP_FRAME_MAX];
} zap_request_t;

/* Receives every frame of one request (longer frames are cut, extra frames
 * dropped: the request is then refused). 0, or -1 when nothing came. */
static int zap_receive(void *rep, zap_request_t *r)
{
    r->n = 0;
    int more = 1, truncated = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, rep, r->n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(&m);
            return r->n ? 0 : -1;
        }
        more = zmq_msg_more(&m);
        if (r->n < ZAP_MAX_FRAMES) {
            size_t len = zmq_msg_size(&m);
            if (len > ZAP_FRAME_MAX) {
                len = ZAP_FRAME_MAX;
                truncated = 1;
            }
            memcpy(r->data[r->n], zmq_msg_data(&m), len);
            r->len[r->n++] = len;
        } else {
            truncated = 1;
        }
        zmq_msg_close(&m);
    }
    if (truncated)
        r->n = 0;   /* malformed */
    return 0;
}

static void zap_reply(void *rep, const zap_request_t *r, const char *status, const char *text, const char *user)
{
    zmq_send(rep, ZAP_VERSION, strlen(ZAP_VERSION), ZMQ_SNDMORE);
    zmq_send(rep, r->n > 1 ? r->data[1] : (const uint8_t *)"", r->n > 1 ? r->len[1] : 0, ZMQ_SNDMORE);
    zmq_send(rep, status, strlen(status), ZMQ_SNDMORE);
    zmq_send(rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(rep, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(rep, "", 0, 0);
}

/* Frames (RFC 27): version, request id, domain, address, routing id,
 * mechanism, credentials (CURVE: the client's 32-byte public key). */
static void zap_handle(void *rep, const zap_request_t *r)
{
    char address[64] = "?";
    if (r->n > 3)
        snprintf(address, sizeof address, "%.*s", (int)r->len[3], (const char *)r->data[3]);
    int is_curve = r->n >= 7 && r->len[5] == 5 && memcmp(r->data[5], "CURVE", 5) == 0 &&
                   r->len[6] == CURVE_KEY_BYTES;
    if (r->n < 2 || r->len[0] != strlen(ZAP_VERSION) || memcmp(r->data[0], ZAP_VERSION, r->len[0]) != 0) {
        zap_reply(rep, r, "500", "malformed ZAP request", "");
        return;
    }
    double now = console_now();
    if (!is_curve) {
        zap_reply(rep, r, "400", "CURVE required", "");
        if (log_limit_allow(&g_zap.refused, now))
            console_log("refused a connection from %s: it does not use CURVE (--curve)", address);
        return;
    }
    char key[TRANSPORT_KEY_LEN + 1];
    zmq_z85_encode(key, r->data[6], CURVE_KEY_BYTES);
    /* read at each handshake (rare): keys added or removed count at once */
    load_allowed();
    const allowed_key_t *k = find_key(key);
    if (k) {
        zap_reply(rep, r, "200", "OK", k->name);
        note_accepted(k->name, address);
        return;
    }
    zap_reply(rep, r, "400", "unknown client key", "");
    if (log_limit_allow(&g_zap.refused, now))
        console_log("refused a connection from %s: its client key %s is not in %s/" ALLOWED_DIR "/", address, key,
                    g_curve.dir);
}

static void *zap_main(void *arg)
{
    void *rep = arg;
    while (!g_zap.quit) {
        zmq_pollitem_t item = {.socket = rep, .events = ZMQ_POLLIN};
        int rc = zmq_poll(&item, 1, ZAP_TICK_MS);
        if (rc > 0) {
            zap_request_t r;
            while (zap_receive(rep, &r) == 0)
                zap_handle(rep, &r);
        } else if (rc < 0 && errno != EINTR) {
            break;
        }
        long more = log_limit_flush(&g_zap.refused, console_now());
        if (more)
            console_log("refused %ld more connection attempts in the last %.0f s", more, REFUSED_LOG_WINDOW_S);
    }
    zmq_close(rep);
    return NULL;
}

/* Starts the handler once per process (per context). 0 or -1 after a message. */
static int zap_start(void)
{
    pthread_mutex_lock(&g_zap.mu);
    if (g_zap.running && g_zap.pid != getpid())
        g_zap.running = 0;   /* a forked child: the parent's thread is not here */
    int rc = 0;
    if (!g_zap.running) {
        char err[TRANSPORT_ERR_MAX];
        void *ctx = transport_context(err, sizeof err);
        void *rep = ctx ? zmq_socket(ctx, ZMQ_REP) : NULL;
        int linger = 0;
        if (!ctx) {
            fprintf(stderr, "%s\n", err);
            rc = -1;
        } else if (!rep || zmq_setsockopt(rep, ZMQ_LINGER, &linger, sizeof linger) != 0 || zmq_bind(rep, ZAP_ENDPOINT) != 0) {
            fprintf(stderr, "transport: cannot start the CURVE authentication handler (%s): %s\n", ZAP_ENDPOINT,
                    zmq_strerror(errno));
            if (rep)
                zmq_close(rep);
            rc = -1;
        } else {
            g_zap.refused = (log_limit_t){.window_s = REFUSED_LOG_WINDOW_S, .burst = REFUSED_LOG_BURST};
            load_allowed();
            if (g_zap.n_keys == 0)
                console_log("CURVE: no client key in %s/" ALLOWED_DIR "/ yet: clients are refused until one is added",
                            g_curve.dir);
            g_zap.quit = 0;
            g_zap.pid = getpid();
            /* the thread creation hands the socket over to the thread */
            if (pthread_create(&g_zap.thread, NULL, zap_main, rep) != 0) {
                fprintf(stderr, "transport: cannot start the CURVE authentication thread\n");
                zmq_close(rep);
                rc = -1;
            } else {
                g_zap.running = 1;
            }
        }
    }
    pthread_mutex_unlock(&g_zap.mu);
    return rc;
}

void curve_shutdown(void)
{
    pthread_mutex_lock(&g_zap.mu);
    int join = g_zap.running && g_zap.pid == getpid();
    g_zap.running = 0;
    pthread_mutex_unlock(&g_zap.mu);
    if (join) {
        g_zap.quit = 1;
        pthread_join(g_zap.thread, NULL);
        g_zap.quit = 0;
    }
    free(g_zap.keys);
    g_zap.keys = NULL;
    g_zap.n_keys = 0;
    g_zap.n_seen = 0;
}

int curve_configure(void *sock, transport_mode_t mode)
{
    if (!g_curve.on)
        return 0;
    int rc;
    if (mode == TRANSPORT_BIND) {
        if (!(g_curve.roles & TRANSPORT_CURVE_SERVER)) {
            fprintf(stderr, "transport: CURVE was set up for connecting only; cannot serve a bound socket\n");
            return -1;
        }
        if (zap_start())
            return -1;
        int one = 1;
        rc = zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
             zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, g_curve.server_secret, TRANSPORT_KEY_LEN) ||
             zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN));
    } else {
        if (!(g_curve.roles & TRANSPORT_CURVE_CLIENT)) {
            fprintf(stderr, "transport: CURVE was set up for serving only; cannot connect\n");
            return -1;
        }
        rc = zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, g_curve.server_public, TRANSPORT_KEY_LEN) ||
             zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, g_curve.client_public, TRANSPORT_KEY_LEN) ||
             zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, g_curve.client_secret, TRANSPORT_KEY_LEN);
    }
    if (rc) {
        fprintf(stderr, "transport: cannot set the CURVE keys on a socket: %s\n", zmq_strerror(errno));
        return -1;
    }
    return 0;
}

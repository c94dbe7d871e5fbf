/* keygen: makes the CURVE key folder that `--curve DIR` reads (every stage).
 *
 *   keygen DIR                  a new folder: the servers' key pair, this
 *                               machine's client key pair, allowed/ holding
 *                               that client's public key
 *   keygen --client NAME DIR    one more client: DIR/allowed/NAME.public, and
 *                               DIR/clients/NAME/, a complete --curve folder for
 *                               the machine that client runs on (server.public
 *                               and its own key pair, no server secret)
 *
 * No sockets. The layout is described in transport/transport.h.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zmq.h>

#include "transport/transport.h"

#define EXIT_OK        0
#define EXIT_FAILED    1
#define EXIT_USAGE     2
#define DIR_MODE       0700
#define PUBLIC_MODE    0644
#define SECRET_MODE    0600
#define MAX_NAME       (TRANSPORT_MAX_PEER_NAME - 1)

static void usage(FILE *f)
{
    fprintf(f,
"usage: keygen DIR                  make a new key folder for --curve DIR\n"
"       keygen --client NAME DIR    add a client key pair to the folder DIR\n"
"\n"
"Makes the CURVE keys that encrypt and authenticate every socket of the pipeline\n"
"when the stages run with --curve DIR (and ./run.sh --curve DIR).\n"
"\n"
"A new folder DIR holds:\n"
"  server.public, server.secret   the key pair of every bound socket (loader,\n"
"                                 trainer, evaluator)\n"
"  client.public, client.secret   the key pair of every connecting socket on this\n"
"                                 machine\n"
"  allowed/                       the client public keys the servers accept, one\n"
"                                 per file (allowed/client.public to begin with);\n"
"                                 read at each connection: add or remove a file\n"
"                                 while the pipeline runs\n"
"\n"
"--client NAME adds DIR/allowed/NAME.public and DIR/clients/NAME/, a --curve folder\n"
"for another machine (server.public and NAME's key pair, not the server secret):\n"
"copy it there and start augmenters with --curve FOLDER.\n"
"\n"
"Secret files are written with mode 600, folders with 700. Existing keys are\n"
"never overwritten. Exit status: 0 done, 1 a file could not be written, 2 bad\n"
"usage (or DIR already holds keys, or is not a key folder for --client).\n");
}

static void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "keygen: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(status);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void join(char *out, const char *dir, const char *name)
{
    if (snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
        die(EXIT_USAGE, "the path %s/%s is too long", dir, name);
}

static void make_dir(const char *path)
{
    if (mkdir(path, DIR_MODE) != 0 && errno != EEXIST)
        die(EXIT_FAILED, "cannot create the folder %s: %s", path, strerror(errno));
}

static void write_key(const char *dir, const char *name, const char *key, int mode)
{
    char path[PATH_MAX], err[PATH_MAX + 128];
    join(path, dir, name);
    if (transport_key_write(path, key, mode, err, sizeof err))
        die(EXIT_FAILED, "%s", err);
}

/* A key pair into DIR/STEM.public and DIR/STEM.secret; the public key into `public`. */
static void write_pair(const char *dir, const char *stem, char public[TRANSPORT_KEY_LEN + 1])
{
    char secret[TRANSPORT_KEY_LEN + 1], name[PATH_MAX];
    if (zmq_curve_keypair(public, secret) != 0)
        die(EXIT_FAILED, "cannot make a CURVE key pair: %s", zmq_strerror(errno));
    snprintf(name, sizeof name, "%s.public", stem);
    write_key(dir, name, public, PUBLIC_MODE);
    snprintf(name, sizeof name, "%s.secret", stem);
    write_key(dir, name, secret, SECRET_MODE);
    memset(secret, 0, sizeof secret);
}

static int make_folder(const char *dir)
{
    char path[PATH_MAX], public[TRANSPORT_KEY_LEN + 1];
    join(path, dir, "server.secret");
    if (exists(path))
        die(EXIT_USAGE, "%s already holds keys (server.secret); nothing written\n"
                        "HINT: add a client with keygen --client NAME %s, or choose a new folder", dir, dir);
    make_dir(dir);
    write_pair(dir, "server", public);
    write_pair(dir, "client", public);
    join(path, dir, "allowed");
    make_dir(path);
    write_key(path, "client.public", public, PUBLIC_MODE);
    printf("keygen: wrote %s: server and client key pairs, allowed/client.public\n"
           "keygen: run the stages with --curve %s; keygen --client NAME %s adds a client for another machine\n",
           dir, dir, dir);
    return EXIT_OK;
}

static int valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > MAX_NAME || name[0] == '.' || name[0] == '-')
        return 0;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static int add_client(const char *dir, const char *name)
{
    if (!valid_name(name))
        die(EXIT_USAGE, "--client '%s': a name is 1 to %d letters, digits, '.', '_' or '-', not starting "
                        "with '.' or '-'", name, MAX_NAME);
    char path[PATH_MAX], allowed[PATH_MAX], clients[PATH_MAX], folder[PATH_MAX], err[PATH_MAX + 128];
    char server_public[TRANSPORT_KEY_LEN + 1], public[TRANSPORT_KEY_LEN + 1], file[PATH_MAX];
    join(path, dir, "server.public");
    if (transport_key_read(path, server_public, err, sizeof err))
        die(EXIT_USAGE, "%s: %s is not a key folder\nHINT: make one with keygen %s", err, dir, dir);
    join(allowed, dir, "allowed");
    join(clients, dir, "clients");
    join(folder, clients, name);
    snprintf(file, sizeof file, "%s.public", name);
    join(path, allowed, file);
    if (exists(path) || exists(folder))
        die(EXIT_USAGE, "a client named '%s' exists already (%s or %s); nothing written", name, path, folder);
    make_dir(allowed);
    make_dir(clients);
    if (mkdir(folder, DIR_MODE) != 0)
        die(EXIT_FAILED, "cannot create the folder %s: %s", folder, strerror(errno));
    write_key(folder, "server.public", server_public, PUBLIC_MODE);
    write_pair(folder, "client", public);
    /* last: the servers accept the key only once its folder is complete */
    write_key(allowed, file, public, PUBLIC_MODE);
    printf("keygen: client '%s': accepted by the servers (%s); its --curve folder for the other machine: %s\n",
           name, path, folder);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    enum { OPT_CLIENT = 256, OPT_HELP };
    static const struct option opts[] = {
        {"client", required_argument, NULL, OPT_CLIENT},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *client = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_CLIENT: client = optarg; break;
        case 'h':
        case OPT_HELP: usage(stdout); return EXIT_OK;
        default:
            fprintf(stderr, "keygen: unknown option or missing value: %s\n", argv[optind - 1]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "keygen: expected one folder, got %d arguments\n", argc - optind);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!zmq_has("curve"))
        die(EXIT_FAILED, "this libzmq was built without CURVE (zmq_has(\"curve\") is false)");
    const char *dir = argv[optind];
    return client ? add_client(dir, client) : make_folder(dir);
}

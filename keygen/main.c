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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zmq.h>

#include "cli/cli.h"
#include "errmsg/errmsg.h"
#include "transport/transport.h"

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

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The functions below return 0, or the exit status (CLI_EXIT_FAILED: a file
 * could not be written, CLI_EXIT_USAGE: the folder or name is not usable)
 * with err set. */

static int join(char *out, const char *dir, const char *name, char *err, size_t len)
{
    if (snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX) {
        errmsg_set(err, len, "the path %s/%s is too long", dir, name);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

static int make_dir(const char *path, char *err, size_t len)
{
    if (mkdir(path, DIR_MODE) != 0 && errno != EEXIST) {
        errmsg_set(err, len, "cannot create the folder %s: %s", path, strerror(errno));
        return CLI_EXIT_FAILED;
    }
    return 0;
}

static int write_key(const char *dir, const char *name, const char *key, int mode, char *err, size_t len)
{
    char path[PATH_MAX];
    int rc = join(path, dir, name, err, len);
    if (rc)
        return rc;
    return transport_key_write(path, key, mode, err, len) ? CLI_EXIT_FAILED : 0;
}

/* A key pair into DIR/STEM.public and DIR/STEM.secret; the public key into `public`. */
static int write_pair(const char *dir, const char *stem, char public[TRANSPORT_KEY_LEN + 1], char *err, size_t len)
{
    char secret[TRANSPORT_KEY_LEN + 1], name[PATH_MAX];
    if (zmq_curve_keypair(public, secret) != 0) {
        errmsg_set(err, len, "cannot make a CURVE key pair: %s", zmq_strerror(errno));
        return CLI_EXIT_FAILED;
    }
    snprintf(name, sizeof name, "%s.public", stem);
    int rc = write_key(dir, name, public, PUBLIC_MODE, err, len);
    snprintf(name, sizeof name, "%s.secret", stem);
    if (!rc)
        rc = write_key(dir, name, secret, SECRET_MODE, err, len);
    memset(secret, 0, sizeof secret);
    return rc;
}

static int make_folder(const char *dir, char *err, size_t len)
{
    char path[PATH_MAX], public[TRANSPORT_KEY_LEN + 1];
    int rc = join(path, dir, "server.secret", err, len);
    if (rc)
        return rc;
    if (exists(path)) {
        errmsg_set(err, len, "%s already holds keys (server.secret); nothing written\n"
                             "HINT: add a client with keygen --client NAME %s, or choose a new folder", dir, dir);
        return CLI_EXIT_USAGE;
    }
    if ((rc = make_dir(dir, err, len)) || (rc = write_pair(dir, "server", public, err, len)) ||
        (rc = write_pair(dir, "client", public, err, len)) || (rc = join(path, dir, "allowed", err, len)) ||
        (rc = make_dir(path, err, len)) || (rc = write_key(path, "client.public", public, PUBLIC_MODE, err, len)))
        return rc;
    printf("keygen: wrote %s: server and client key pairs, allowed/client.public\n"
           "keygen: run the stages with --curve %s; keygen --client NAME %s adds a client for another machine\n",
           dir, dir, dir);
    return 0;
}

static int valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > MAX_NAME || name[0] == '.' || name[0] == '-')
        return 0;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static int add_client(const char *dir, const char *name, char *err, size_t len)
{
    if (!valid_name(name)) {
        errmsg_set(err, len, "--client '%s': a name is 1 to %d letters, digits, '.', '_' or '-', not starting "
                             "with '.' or '-'", name, MAX_NAME);
        return CLI_EXIT_USAGE;
    }
    char path[PATH_MAX], allowed[PATH_MAX], clients[PATH_MAX], folder[PATH_MAX], why[PATH_MAX + 128];
    char server_public[TRANSPORT_KEY_LEN + 1], public[TRANSPORT_KEY_LEN + 1], file[PATH_MAX];
    int rc;
    if ((rc = join(path, dir, "server.public", err, len)))
        return rc;
    if (transport_key_read(path, server_public, why, sizeof why)) {
        errmsg_set(err, len, "%s: %s is not a key folder\nHINT: make one with keygen %s", why, dir, dir);
        return CLI_EXIT_USAGE;
    }
    snprintf(file, sizeof file, "%s.public", name);
    if ((rc = join(allowed, dir, "allowed", err, len)) || (rc = join(clients, dir, "clients", err, len)) ||
        (rc = join(folder, clients, name, err, len)) || (rc = join(path, allowed, file, err, len)))
        return rc;
    if (exists(path) || exists(folder)) {
        errmsg_set(err, len, "a client named '%s' exists already (%s or %s); nothing written", name, path, folder);
        return CLI_EXIT_USAGE;
    }
    if ((rc = make_dir(allowed, err, len)) || (rc = make_dir(clients, err, len)))
        return rc;
    if (mkdir(folder, DIR_MODE) != 0) {
        errmsg_set(err, len, "cannot create the folder %s: %s", folder, strerror(errno));
        return CLI_EXIT_FAILED;
    }
    /* the allowed key last: the servers accept it only once its folder is complete */
    if ((rc = write_key(folder, "server.public", server_public, PUBLIC_MODE, err, len)) ||
        (rc = write_pair(folder, "client", public, err, len)) ||
        (rc = write_key(allowed, file, public, PUBLIC_MODE, err, len)))
        return rc;
    printf("keygen: client '%s': accepted by the servers (%s); its --curve folder for the other machine: %s\n",
           name, path, folder);
    return 0;
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
    char err[PATH_MAX + 256];
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_CLIENT: client = optarg; break;
        case 'h':
        case OPT_HELP: usage(stdout); return CLI_EXIT_OK;
        default:
            cli_option_error(c, argv, err, sizeof err);
            return cli_usage_error("keygen", "%s", err);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("keygen", "expected one folder, got %d arguments", argc - optind);
    if (!zmq_has("curve")) {
        fprintf(stderr, "keygen: this libzmq was built without CURVE (zmq_has(\"curve\") is false)\n");
        return CLI_EXIT_FAILED;
    }
    const char *dir = argv[optind];
    int rc = client ? add_client(dir, client, err, sizeof err) : make_folder(dir, err, sizeof err);
    if (rc)
        fprintf(stderr, "keygen: %s\n", err);
    return rc;
}

/* vigil-keygen: writes a CURVE keypair for an agent or a central, like
 * libzmq's curve_keygen: DIR/vigil.key (the Z85 secret, mode 0600 from its
 * creation) and DIR/vigil.pub (the Z85 public key, 0644). Never overwrites.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "keys.h"

#define KEY_NAME "vigil.key"
#define PUB_NAME "vigil.pub"

static void usage(FILE *out)
{
    fprintf(out, "usage: vigil-keygen DIR\n"
                 "Writes a new CURVE keypair: DIR/" KEY_NAME " (the secret key, mode 0600) and\n"
                 "DIR/" PUB_NAME " (the public key, mode 0644), each one Z85 key of 40\n"
                 "characters, and prints the public key. Creates DIR (mode 0700) if it is\n"
                 "missing; refuses if either file exists. Give the public key to the other\n"
                 "side (a central lists its agents' keys in authorized_keys).\n");
}

/* Creates path with mode (O_EXCL: never an existing file, no window with wider
 * permissions) holding text and a newline, synced. Returns 0 or -1 (said). */
static int write_new(const char *path, mode_t mode, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        if (errno == EEXIST) {
            fprintf(stderr, "vigil-keygen: %s exists: not overwriting\n", path);
        } else {
            fprintf(stderr, "vigil-keygen: cannot create %s: %s\n", path, strerror(errno));
        }
        return -1;
    }
    char line[64];
    int n = snprintf(line, sizeof line, "%s\n", text);
    /* The umask may only have narrowed the mode; fchmod makes it exactly mode. */
    if (fchmod(fd, mode) != 0 || write(fd, line, (size_t)n) != n || fsync(fd) != 0) {
        fprintf(stderr, "vigil-keygen: cannot write %s: %s\n", path, strerror(errno));
        explicit_bzero(line, sizeof line);
        close(fd);
        unlink(path);
        return -1;
    }
    explicit_bzero(line, sizeof line);
    if (close(fd) != 0) {
        fprintf(stderr, "vigil-keygen: cannot write %s: %s\n", path, strerror(errno));
        unlink(path);
        return -1;
    }
    return 0;
}

static int exists(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        fprintf(stderr, "vigil-keygen: %s exists: not overwriting\n", path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-' || argv[1][0] == '\0') {
        usage(stderr);
        return 1;
    }
    const char *dir = argv[1];
    if (!zmq_has("curve")) {
        fprintf(stderr, "vigil-keygen: this libzmq has no CURVE support (zmq_has(\"curve\") is "
                        "false): install a libzmq built with libsodium\n");
        return 1;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "vigil-keygen: cannot create directory %s: %s\n", dir, strerror(errno));
        return 1;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "vigil-keygen: %s is not a directory\n", dir);
        return 1;
    }
    char key_path[4096], pub_path[4096];
    if (snprintf(key_path, sizeof key_path, "%s/%s", dir, KEY_NAME) >= (int)sizeof key_path ||
        snprintf(pub_path, sizeof pub_path, "%s/%s", dir, PUB_NAME) >= (int)sizeof pub_path) {
        fprintf(stderr, "vigil-keygen: %s: path too long\n", dir);
        return 1;
    }
    /* Both checked first, so that an existing vigil.pub leaves no new vigil.key. */
    int found = exists(key_path);
    found += exists(pub_path);
    if (found) {
        return 1;
    }
    char pub[41], secret[41];
    if (zmq_curve_keypair(pub, secret) != 0) {
        fprintf(stderr, "vigil-keygen: zmq_curve_keypair: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    int rc = write_new(key_path, 0600, secret);
    explicit_bzero(secret, sizeof secret);
    if (rc != 0) {
        return 1;
    }
    if (write_new(pub_path, 0644, pub) != 0) {
        /* Without its public half the secret is of no use to anyone: take it back. */
        unlink(key_path);
        return 1;
    }
    /* Read back as vigild will: the mode rule, the format, the pair matching. */
    char err[512];
    struct vigil_keypair kp;
    if (vigil_key_read_secret(key_path, pub_path, &kp, err, sizeof err) != 0) {
        fprintf(stderr, "vigil-keygen: the keys written do not read back: %s\n", err);
        return 1;
    }
    vigil_keypair_clear(&kp);
    printf("%s\n", pub);
    fprintf(stderr, "vigil-keygen: wrote %s (secret, mode 0600) and %s (public)\n", key_path,
            pub_path);
    return fflush(stdout) == 0 ? 0 : 1;
}

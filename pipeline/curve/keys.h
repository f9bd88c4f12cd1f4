/* CURVE key files: a public key file, a secret key file (refused when group or
 * others may read or write it), and an authorized_keys list that maps client
 * public keys to names for a ZAP handler. Links libzmq only, so vigild, the
 * tools and plugins can all use it without the daemon.
 */
#ifndef VIGIL_CURVE_KEYS_H
#define VIGIL_CURVE_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* A key as Z85 text (40 characters), its buffer size with the NUL, and as
 * binary (32 bytes). libzmq's ZMQ_CURVE_* options take either form. */
#define VIGIL_KEY_Z85_LEN 40
#define VIGIL_KEY_Z85_SIZE 41
#define VIGIL_KEY_BIN_LEN 32

/* Bounds of an authorized_keys file: keys, bytes of a name, bytes of the file. */
#define VIGIL_AUTHKEYS_MAX 100000
#define VIGIL_AUTHKEY_NAME_MAX 64
#define VIGIL_AUTHKEYS_FILE_MAX (32u << 20)

/* A keypair read from files, as NUL-terminated Z85 text. Clear it with
 * vigil_keypair_clear() once the keys are handed to libzmq. */
struct vigil_keypair {
    char public_z85[VIGIL_KEY_Z85_SIZE];
    char secret_z85[VIGIL_KEY_Z85_SIZE];
};

/* Reads a public key file: one Z85 key of 40 characters from the first column,
 * then only whitespace. Writes the key and a NUL into z85. Returns 0,
 * VIGIL_ECONFIG for content that is not such a key (err: "FILE:LINE:COL:
 * message"), or -errno when the file cannot be read (err: "FILE: reason").
 * err may be NULL; otherwise errlen bytes, always NUL-terminated. Any thread. */
int vigil_key_read_public(const char *path, char z85[VIGIL_KEY_Z85_SIZE], char *err, size_t errlen);

/* Reads a secret key file (same format as a public one) into kp->secret_z85 and
 * derives kp->public_z85 from it (zmq_curve_public). The file must be a regular
 * file that neither group nor others may read or write: otherwise VIGIL_ECONFIG
 * and "FILE: permissions 0644 are too open: ...". When pub_path is not NULL,
 * that public key file must hold the derived key (VIGIL_ECONFIG naming both
 * files otherwise). Error text never quotes the secret. Returns 0,
 * VIGIL_ECONFIG, -ENOTSUP when libzmq has no CURVE, or -errno for I/O. On
 * error kp is cleared. Any thread. */
int vigil_key_read_secret(const char *path, const char *pub_path, struct vigil_keypair *kp,
                          char *err, size_t errlen);

/* Wipes kp (explicit_bzero: not optimized away). kp NULL does nothing. */
void vigil_keypair_clear(struct vigil_keypair *kp);

/* Z85 text (exactly 40 characters, no NUL needed) to 32 bytes. Returns 0 or
 * VIGIL_ECONFIG for a bad character or a group over 2^32. */
int vigil_key_z85_decode(const char *z85, uint8_t key[VIGIL_KEY_BIN_LEN]);

/* An authorized_keys list: immutable once loaded, so any number of threads may
 * look keys up at once. */
struct vigil_authkeys;

/* Loads an authorized_keys file: per line a Z85 public key, then optionally
 * whitespace and a name (printable ASCII, no spaces, not starting with '#', at
 * most VIGIL_AUTHKEY_NAME_MAX bytes; default: the key's first 8 characters),
 * then optionally whitespace and a '#' comment. Blank lines and lines whose
 * first non-blank is '#' are ignored. Keys and names must be unique.
 * On success returns 0 and sets *out to a new list the caller owns (free with
 * vigil_authkeys_free). On error *out is left as it was, so a reload (SIGHUP)
 * keeps the old list unless the new one is whole: VIGIL_ECONFIG (err:
 * "FILE:LINE:COL: message"), VIGIL_ETOOBIG (over a bound), -ENOMEM, or -errno
 * for I/O ("FILE: reason"). Any thread. */
int vigil_authkeys_load(const char *path, struct vigil_authkeys **out, char *err, size_t errlen);

/* As vigil_authkeys_load, from len bytes of text (need not be NUL-terminated);
 * name stands for the file in messages. */
int vigil_authkeys_parse(const char *name, const char *text, size_t len,
                         struct vigil_authkeys **out, char *err, size_t errlen);

/* Frees the list and its names. NULL does nothing. */
void vigil_authkeys_free(struct vigil_authkeys *ak);

/* How many keys the list holds (0 for NULL). */
size_t vigil_authkeys_count(const struct vigil_authkeys *ak);

/* The name of a key (32 bytes, e.g. a ZAP request's credential frame), or
 * NULL when the list does not hold it (or ak is NULL). The name belongs to ak
 * and lives as long as it. O(log n). */
const char *vigil_authkeys_find(const struct vigil_authkeys *ak,
                                const uint8_t key[VIGIL_KEY_BIN_LEN]);

/* As vigil_authkeys_find, for a key as Z85 text (a NUL-terminated string):
 * NULL also when the text is not a key. */
const char *vigil_authkeys_find_z85(const struct vigil_authkeys *ak, const char *z85);

#endif

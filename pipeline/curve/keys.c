/* CURVE key files (keys.h): Z85 public and secret key files, the secret's
 * permission rule, and authorized_keys parsed into a sorted array that a ZAP
 * handler searches per connection. Errors name FILE:LINE:COL.
 */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "vigil/plugin.h"

/* A key file holds 40 characters and a newline; anything much larger is not one. */
#define KEY_FILE_MAX 4096
#define DEFAULT_NAME_LEN 8

struct entry {
    uint8_t key[VIGIL_KEY_BIN_LEN];
    uint32_t line, col, name_col;
    bool named;
    char name[VIGIL_AUTHKEY_NAME_MAX + 1];
};

struct vigil_authkeys {
    size_t n;
    struct entry *e; /* sorted by key */
};

__attribute__((format(printf, 3, 4))) static void say(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    if (!err || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The 1-based line and column (in bytes) of offset off of buf. */
static void position(const char *buf, size_t off, uint32_t *line, uint32_t *col)
{
    uint32_t l = 1;
    size_t start = 0;
    for (size_t i = 0; i < off; i++) {
        if (buf[i] == '\n') {
            l++;
            start = i + 1;
        }
    }
    *line = l;
    *col = (uint32_t)(off - start + 1);
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static int z85_digit(unsigned char c)
{
    static const char specials[] = ".-:+=^!/*?&<>()[]{}@%$#";
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'z') {
        return 10 + (c - 'a');
    }
    if (c >= 'A' && c <= 'Z') {
        return 36 + (c - 'A');
    }
    const char *s = c ? strchr(specials, c) : NULL;
    return s ? 62 + (int)(s - specials) : -1;
}

/* Decodes 40 Z85 characters; on error *bad is the offset of the bad character
 * or of the group that overflows, and *overflow says which. */
static int z85_decode(const char *p, uint8_t key[VIGIL_KEY_BIN_LEN], size_t *bad, bool *overflow)
{
    for (size_t g = 0; g < VIGIL_KEY_Z85_LEN / 5; g++) {
        uint64_t v = 0;
        for (size_t i = 0; i < 5; i++) {
            int d = z85_digit((unsigned char)p[g * 5 + i]);
            if (d < 0) {
                *bad = g * 5 + i;
                *overflow = false;
                return VIGIL_ECONFIG;
            }
            v = v * 85 + (uint64_t)d;
        }
        if (v > UINT32_MAX) {
            *bad = g * 5;
            *overflow = true;
            return VIGIL_ECONFIG;
        }
        key[g * 4] = (uint8_t)(v >> 24);
        key[g * 4 + 1] = (uint8_t)(v >> 16);
        key[g * 4 + 2] = (uint8_t)(v >> 8);
        key[g * 4 + 3] = (uint8_t)v;
    }
    return 0;
}

int vigil_key_z85_decode(const char *z85, uint8_t key[VIGIL_KEY_BIN_LEN])
{
    size_t bad;
    bool overflow;
    return z85_decode(z85, key, &bad, &overflow);
}

/* Checks the token of len bytes at buf + off as a key. On error writes
 * "NAME:LINE:COL: message"; quote says whether the message may show the
 * offending character (never for a secret). */
static int parse_key(const char *name, const char *buf, uint32_t line, size_t line_start,
                     size_t off, size_t len, bool quote, uint8_t key[VIGIL_KEY_BIN_LEN], char *err,
                     size_t errlen)
{
    uint32_t col = (uint32_t)(off - line_start + 1);
    if (len != VIGIL_KEY_Z85_LEN) {
        say(err, errlen, "%s:%u:%u: expected a Z85 key of %d characters, found %zu", name, line,
            col, VIGIL_KEY_Z85_LEN, len);
        return VIGIL_ECONFIG;
    }
    size_t bad;
    bool overflow;
    if (z85_decode(buf + off, key, &bad, &overflow) == 0) {
        return 0;
    }
    col += (uint32_t)bad;
    unsigned char c = (unsigned char)buf[off + bad];
    if (overflow) {
        say(err, errlen, "%s:%u:%u: not a Z85 key: characters %zu-%zu of the key are over 2^32",
            name, line, col, bad + 1, bad + 5);
    } else if (!quote) {
        say(err, errlen, "%s:%u:%u: not a Z85 key: a character outside the Z85 alphabet", name,
            line, col);
    } else if (c > 0x20 && c < 0x7f) {
        say(err, errlen, "%s:%u:%u: not a Z85 key: '%c' is not a Z85 character", name, line, col,
            c);
    } else {
        say(err, errlen, "%s:%u:%u: not a Z85 key: byte 0x%02x is not a Z85 character", name, line,
            col, c);
    }
    return VIGIL_ECONFIG;
}

/* Opens path for reading; fills st. Returns the fd or -errno (err written). */
static int open_file(const char *path, struct stat *st, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        say(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    if (fstat(fd, st) != 0) {
        int e = errno;
        say(err, errlen, "%s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    if (!S_ISREG(st->st_mode)) {
        say(err, errlen, "%s: not a regular file", path);
        close(fd);
        return VIGIL_ECONFIG;
    }
    return fd;
}

/* Reads fd whole (at most max bytes) into *out (caller frees, NUL-terminated);
 * closes fd. */
static int read_all(int fd, const char *path, size_t max, char **out, size_t *len, char *err,
                    size_t errlen)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    int rc = 0;
    if (!buf) {
        rc = -ENOMEM;
        say(err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max) {
                /* One byte past max tells a file of exactly max bytes from a larger one. */
                char extra;
                ssize_t r = read(fd, &extra, 1);
                if (r == 0) {
                    break;
                }
                rc = r < 0 ? -errno : VIGIL_ETOOBIG;
                say(err, errlen, "%s: %s", path,
                    r < 0 ? strerror(errno) : "larger than the bound for such a file");
                goto out;
            }
            size_t ncap = cap * 2 > max ? max : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                rc = -ENOMEM;
                say(err, errlen, "%s: out of memory", path);
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = -errno;
            say(err, errlen, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
out:
    close(fd);
    if (rc != 0) {
        if (buf) {
            explicit_bzero(buf, cap);
        }
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* Reads path whole (a regular file of at most max bytes) into *out (caller
 * frees, NUL-terminated). A secret must be closed to group and others: the
 * mode is judged on the open file, so it is that of the bytes read. */
static int read_file(const char *path, size_t max, bool secret, char **out, size_t *len, char *err,
                     size_t errlen)
{
    struct stat st;
    int fd = open_file(path, &st, err, errlen);
    if (fd < 0) {
        return fd;
    }
    if (secret && (st.st_mode & (S_IRWXG | S_IRWXO))) {
        close(fd);
        say(err, errlen,
            "%s: permissions %04o are too open: the secret key must be readable by its owner "
            "only (chmod 600 %s)",
            path, (unsigned)(st.st_mode & 07777), path);
        return VIGIL_ECONFIG;
    }
    return read_all(fd, path, max, out, len, err, errlen);
}

/* A key file's content: the key from the first column, then whitespace only. */
static int parse_key_file(const char *name, const char *buf, size_t len, bool quote,
                          char z85[VIGIL_KEY_Z85_SIZE], char *err, size_t errlen)
{
    size_t end = 0;
    while (end < len && !blank(buf[end]) && buf[end] != '\n') {
        end++;
    }
    if (end == 0) {
        bool empty = true;
        for (size_t i = 0; i < len; i++) {
            empty = empty && (blank(buf[i]) || buf[i] == '\n');
        }
        say(err, errlen, "%s:1:1: %s: expected a Z85 key of %d characters", name,
            empty ? "no key" : "whitespace before the key", VIGIL_KEY_Z85_LEN);
        return VIGIL_ECONFIG;
    }
    uint8_t key[VIGIL_KEY_BIN_LEN];
    int rc = parse_key(name, buf, 1, 0, 0, end, quote, key, err, errlen);
    explicit_bzero(key, sizeof key);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = end; i < len; i++) {
        if (!blank(buf[i]) && buf[i] != '\n') {
            uint32_t line, col;
            position(buf, i, &line, &col);
            say(err, errlen, "%s:%u:%u: unexpected text after the key (a key file holds one key)",
                name, line, col);
            return VIGIL_ECONFIG;
        }
    }
    memcpy(z85, buf, VIGIL_KEY_Z85_LEN);
    z85[VIGIL_KEY_Z85_LEN] = '\0';
    return 0;
}

int vigil_key_read_public(const char *path, char z85[VIGIL_KEY_Z85_SIZE], char *err, size_t errlen)
{
    char *buf;
    size_t len;
    int rc = read_file(path, KEY_FILE_MAX, false, &buf, &len, err, errlen);
    if (rc != 0) {
        return rc == VIGIL_ETOOBIG ? VIGIL_ECONFIG : rc;
    }
    rc = parse_key_file(path, buf, len, true, z85, err, errlen);
    free(buf);
    return rc;
}

void vigil_keypair_clear(struct vigil_keypair *kp)
{
    if (kp) {
        explicit_bzero(kp, sizeof *kp);
    }
}

int vigil_key_read_secret(const char *path, const char *pub_path, struct vigil_keypair *kp,
                          char *err, size_t errlen)
{
    vigil_keypair_clear(kp);
    char *buf;
    size_t len;
    int rc = read_file(path, KEY_FILE_MAX, true, &buf, &len, err, errlen);
    if (rc != 0) {
        return rc == VIGIL_ETOOBIG ? VIGIL_ECONFIG : rc;
    }
    rc = parse_key_file(path, buf, len, false, kp->secret_z85, err, errlen);
    explicit_bzero(buf, len);
    free(buf);
    if (rc != 0) {
        goto fail;
    }
    if (zmq_curve_public(kp->public_z85, kp->secret_z85) != 0) {
        rc = errno == ENOTSUP ? -ENOTSUP : VIGIL_ECONFIG;
        say(err, errlen, "%s: %s", path,
            rc == -ENOTSUP ? "this libzmq has no CURVE support (zmq_has(\"curve\") is false)"
                           : "not a CURVE secret key");
        goto fail;
    }
    if (pub_path) {
        char pub[VIGIL_KEY_Z85_SIZE];
        rc = vigil_key_read_public(pub_path, pub, err, errlen);
        if (rc != 0) {
            goto fail;
        }
        if (strcmp(pub, kp->public_z85) != 0) {
            say(err, errlen, "%s: holds %s, which is not the public key of %s (that is %s)",
                pub_path, pub, path, kp->public_z85);
            rc = VIGIL_ECONFIG;
            goto fail;
        }
    }
    return 0;
fail:
    vigil_keypair_clear(kp);
    return rc;
}

static int cmp_key(const void *a, const void *b)
{
    return memcmp(a, b, VIGIL_KEY_BIN_LEN);
}

static int cmp_name(const void *a, const void *b)
{
    const struct entry *x = *(const struct entry *const *)a;
    const struct entry *y = *(const struct entry *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->line < y->line ? -1 : x->line > y->line);
}

/* After sorting by key: the duplicate (key or name) first in the file, as an
 * error. Returns 0 when there is none. */
static int check_unique(const char *name, struct vigil_authkeys *ak, char *err, size_t errlen)
{
    const struct entry *dup = NULL, *first = NULL;
    for (size_t i = 1; i < ak->n; i++) {
        const struct entry *a = &ak->e[i - 1], *b = &ak->e[i];
        if (memcmp(a->key, b->key, VIGIL_KEY_BIN_LEN) == 0) {
            const struct entry *later = a->line > b->line ? a : b;
            if (!dup || later->line < dup->line) {
                dup = later;
                first = later == a ? b : a;
            }
        }
    }
    if (dup) {
        say(err, errlen, "%s:%u:%u: duplicate key (also at line %u)", name, dup->line, dup->col,
            first->line);
        return VIGIL_ECONFIG;
    }
    const struct entry **by_name = malloc(ak->n * sizeof *by_name + 1);
    if (!by_name) {
        say(err, errlen, "%s: out of memory", name);
        return -ENOMEM;
    }
    for (size_t i = 0; i < ak->n; i++) {
        by_name[i] = &ak->e[i];
    }
    qsort(by_name, ak->n, sizeof *by_name, cmp_name);
    for (size_t i = 1; i < ak->n; i++) {
        /* Sorted by (name, line): b is the later of the two. */
        const struct entry *a = by_name[i - 1], *b = by_name[i];
        if (strcmp(a->name, b->name) == 0 && (!dup || b->line < dup->line)) {
            dup = b;
            first = a;
        }
    }
    free(by_name);
    if (dup) {
        say(err, errlen, "%s:%u:%u: duplicate name '%s' (also at line %u)%s", name, dup->line,
            dup->name_col, dup->name, first->line,
            dup->named && first->named ? ""
                                       : "; a key without a name is named by its first 8 "
                                         "characters: give it a name");
        return VIGIL_ECONFIG;
    }
    return 0;
}

/* Parses one line that holds a key into *e: line number line, starting at
 * offset start of buf, its key at s, its end (the newline or the text's end)
 * at end. Columns count bytes from the line's start. */
static int parse_line(const char *name, const char *buf, uint32_t line, size_t start, size_t s,
                      size_t end, struct entry *e, char *err, size_t errlen)
{
    size_t k = s;
    while (k < end && !blank(buf[k])) {
        k++;
    }
    int rc = parse_key(name, buf, line, start, s, k - s, true, e->key, err, errlen);
    if (rc != 0) {
        return rc;
    }
    e->line = line;
    e->col = (uint32_t)(s - start + 1);
    while (k < end && blank(buf[k])) {
        k++;
    }
    if (k == end || buf[k] == '#') {
        memcpy(e->name, buf + s, DEFAULT_NAME_LEN);
        e->name[DEFAULT_NAME_LEN] = '\0';
        e->name_col = e->col;
        e->named = false;
        return 0;
    }
    size_t n = k;
    while (n < end && !blank(buf[n])) {
        unsigned char c = (unsigned char)buf[n];
        if (c <= 0x20 || c >= 0x7f) {
            say(err, errlen,
                "%s:%u:%zu: byte 0x%02x is not allowed in a name (printable ASCII, no spaces)",
                name, line, n - start + 1, c);
            return VIGIL_ECONFIG;
        }
        n++;
    }
    if (n - k > VIGIL_AUTHKEY_NAME_MAX) {
        say(err, errlen, "%s:%u:%zu: name longer than %d characters", name, line, k - start + 1,
            VIGIL_AUTHKEY_NAME_MAX);
        return VIGIL_ECONFIG;
    }
    memcpy(e->name, buf + k, n - k);
    e->name[n - k] = '\0';
    e->name_col = (uint32_t)(k - start + 1);
    e->named = true;
    while (n < end && blank(buf[n])) {
        n++;
    }
    if (n < end && buf[n] != '#') {
        say(err, errlen,
            "%s:%u:%zu: unexpected text after the name (a name has no spaces; a comment starts "
            "with '#')",
            name, line, n - start + 1);
        return VIGIL_ECONFIG;
    }
    return 0;
}

int vigil_authkeys_parse(const char *name, const char *text, size_t len,
                         struct vigil_authkeys **out, char *err, size_t errlen)
{
    struct vigil_authkeys *ak = calloc(1, sizeof *ak);
    size_t cap = 0;
    int rc = 0;
    if (!ak) {
        say(err, errlen, "%s: out of memory", name);
        return -ENOMEM;
    }
    uint32_t line = 0;
    for (size_t s = 0; s < len;) {
        const char *nl = memchr(text + s, '\n', len - s);
        size_t start = s, end = nl ? (size_t)(nl - text) : len, next = nl ? end + 1 : len;
        line++;
        while (s < end && blank(text[s])) {
            s++;
        }
        if (s == end || text[s] == '#') {
            s = next;
            continue;
        }
        if (ak->n == VIGIL_AUTHKEYS_MAX) {
            say(err, errlen, "%s:%u:%zu: more than %d keys", name, line, s - start + 1,
                VIGIL_AUTHKEYS_MAX);
            rc = VIGIL_ETOOBIG;
            goto fail;
        }
        if (ak->n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct entry *ne = realloc(ak->e, ncap * sizeof *ne);
            if (!ne) {
                say(err, errlen, "%s: out of memory", name);
                rc = -ENOMEM;
                goto fail;
            }
            ak->e = ne;
            cap = ncap;
        }
        rc = parse_line(name, text, line, start, s, end, &ak->e[ak->n], err, errlen);
        if (rc != 0) {
            goto fail;
        }
        ak->n++;
        s = next;
    }
    if (ak->n > 0) {
        qsort(ak->e, ak->n, sizeof *ak->e, cmp_key);
    }
    rc = check_unique(name, ak, err, errlen);
    if (rc != 0) {
        goto fail;
    }
    *out = ak;
    return 0;
fail:
    vigil_authkeys_free(ak);
    return rc;
}

int vigil_authkeys_load(const char *path, struct vigil_authkeys **out, char *err, size_t errlen)
{
    char *buf;
    size_t len;
    int rc = read_file(path, VIGIL_AUTHKEYS_FILE_MAX, false, &buf, &len, err, errlen);
    if (rc != 0) {
        return rc;
    }
    rc = vigil_authkeys_parse(path, buf, len, out, err, errlen);
    free(buf);
    return rc;
}

void vigil_authkeys_free(struct vigil_authkeys *ak)
{
    if (!ak) {
        return;
    }
    free(ak->e);
    free(ak);
}

size_t vigil_authkeys_count(const struct vigil_authkeys *ak)
{
    return ak ? ak->n : 0;
}

const char *vigil_authkeys_find(const struct vigil_authkeys *ak,
                                const uint8_t key[VIGIL_KEY_BIN_LEN])
{
    if (!ak || ak->n == 0) {
        return NULL;
    }
    /* The key is the entry's first member, so an entry compares by it. */
    const struct entry *e = bsearch(key, ak->e, ak->n, sizeof *ak->e, cmp_key);
    return e ? e->name : NULL;
}

const char *vigil_authkeys_find_z85(const struct vigil_authkeys *ak, const char *z85)
{
    uint8_t key[VIGIL_KEY_BIN_LEN];
    if (!z85 || strnlen(z85, VIGIL_KEY_Z85_SIZE) != VIGIL_KEY_Z85_LEN ||
        vigil_key_z85_decode(z85, key) != 0) {
        return NULL;
    }
    return vigil_authkeys_find(ak, key);
}

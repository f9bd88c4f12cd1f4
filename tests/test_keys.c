/* CURVE key files (pipeline/curve/keys.h) and vigil-keygen: the built program
 * end to end, the secret key's mode rule, public/secret mismatch, key file and
 * authorized_keys errors with their FILE:LINE:COL, lookups, the bound, reload
 * semantics, and a real CURVE handshake over loopback with keys from files and
 * a ZAP handler that admits by authorized_keys.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <cmocka.h>

#include "keys.h"
#include "vigil/plugin.h"

#define KEYGEN VIGIL_BUILD_DIR "/vigil-keygen"

struct fixture {
    char dir[64];
    char err[512];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f) {
        return -1;
    }
    strcpy(f->dir, "/tmp/vigil-keys.XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* f->dir/name, in a static buffer of four rotating slots. */
static const char *path(struct fixture *f, const char *name)
{
    static char bufs[4][256];
    static int i;
    char *p = bufs[i++ % 4];
    snprintf(p, 256, "%s/%s", f->dir, name);
    return p;
}

static void write_file(const char *p, mode_t mode, const char *text)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

/* The whole file into buf (NUL-terminated). */
static void read_text(const char *p, char *buf, size_t size)
{
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    size_t n = fread(buf, 1, size - 1, fp);
    buf[n] = '\0';
    fclose(fp);
}

/* Runs vigil-keygen with args; its stdout and stderr go to f->dir/out and
 * f->dir/err. Returns the exit status. */
static int keygen(struct fixture *f, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s/out' 2>'%s/err'", KEYGEN, args, f->dir, f->dir);
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static mode_t mode_of(const char *p)
{
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return st.st_mode & 07777;
}

/* A fresh keypair in f->dir/sub via the built program. */
static void make_pair(struct fixture *f, const char *sub)
{
    char args[256];
    snprintf(args, sizeof args, "'%s'", path(f, sub));
    assert_int_equal(keygen(f, args), 0);
}

static void test_keygen_end_to_end(void **state)
{
    struct fixture *f = *state;
    char args[256], out[256], key1[256], pub1[256], key2[256], pub2[256], err[512];
    snprintf(args, sizeof args, "'%s'", path(f, "k"));
    assert_int_equal(keygen(f, args), 0);
    assert_int_equal(mode_of(path(f, "k")), 0700);
    assert_int_equal(mode_of(path(f, "k/vigil.key")), 0600);
    assert_int_equal(mode_of(path(f, "k/vigil.pub")), 0644);
    read_text(path(f, "out"), out, sizeof out);
    read_text(path(f, "k/vigil.key"), key1, sizeof key1);
    read_text(path(f, "k/vigil.pub"), pub1, sizeof pub1);
    assert_int_equal(strlen(key1), 41);
    assert_string_equal(out, pub1);

    /* The public key derives from the secret (zmq_curve_public). */
    struct vigil_keypair kp;
    assert_int_equal(vigil_key_read_secret(path(f, "k/vigil.key"), path(f, "k/vigil.pub"), &kp,
                                           f->err, sizeof f->err),
                     0);
    char derived[41];
    key1[40] = '\0';
    assert_int_equal(zmq_curve_public(derived, key1), 0);
    assert_memory_equal(derived, pub1, 40);
    assert_memory_equal(kp.public_z85, pub1, 40);
    assert_string_equal(kp.secret_z85, key1);
    key1[40] = '\n';
    vigil_keypair_clear(&kp);

    /* A second run refuses and leaves both files as they were. */
    assert_int_equal(keygen(f, args), 1);
    read_text(path(f, "err"), err, sizeof err);
    assert_non_null(strstr(err, "/k/vigil.key exists: not overwriting"));
    read_text(path(f, "k/vigil.key"), key2, sizeof key2);
    read_text(path(f, "k/vigil.pub"), pub2, sizeof pub2);
    assert_string_equal(key1, key2);
    assert_string_equal(pub1, pub2);
    assert_int_equal(mode_of(path(f, "k/vigil.key")), 0600);

    /* Only a vigil.pub there: refused, and no vigil.key left behind. */
    assert_int_equal(mkdir(path(f, "p"), 0700), 0);
    write_file(path(f, "p/vigil.pub"), 0644, pub1);
    snprintf(args, sizeof args, "'%s'", path(f, "p"));
    assert_int_equal(keygen(f, args), 1);
    read_text(path(f, "err"), err, sizeof err);
    assert_non_null(strstr(err, "/p/vigil.pub exists: not overwriting"));
    assert_int_equal(access(path(f, "p/vigil.key"), F_OK), -1);

    /* Usage. */
    assert_int_equal(keygen(f, "-h"), 0);
    read_text(path(f, "out"), out, sizeof out);
    assert_non_null(strstr(out, "usage: vigil-keygen DIR"));
    assert_int_equal(keygen(f, ""), 1);
    read_text(path(f, "err"), err, sizeof err);
    assert_non_null(strstr(err, "usage: vigil-keygen DIR"));
}

static void test_secret_mode_refused(void **state)
{
    struct fixture *f = *state;
    make_pair(f, "k");
    const char *key = path(f, "k/vigil.key");
    struct vigil_keypair kp;
    static const mode_t bad[] = {0644, 0640, 0604, 0602, 0620, 0660};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(chmod(key, bad[i]), 0);
        assert_int_equal(vigil_key_read_secret(key, NULL, &kp, f->err, sizeof f->err),
                         VIGIL_ECONFIG);
        char want[512];
        snprintf(want, sizeof want,
                 "%s: permissions %04o are too open: the secret key must be readable by its "
                 "owner only (chmod 600 %s)",
                 key, (unsigned)bad[i], key);
        assert_string_equal(f->err, want);
        assert_int_equal(kp.secret_z85[0], '\0');
    }
    static const mode_t good[] = {0600, 0400, 0700};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(chmod(key, good[i]), 0);
        assert_int_equal(vigil_key_read_secret(key, NULL, &kp, f->err, sizeof f->err), 0);
        assert_int_equal(strlen(kp.public_z85), 40);
        vigil_keypair_clear(&kp);
    }
}

static void test_pair_mismatch(void **state)
{
    struct fixture *f = *state;
    make_pair(f, "a");
    make_pair(f, "b");
    char pub_a[64], pub_b[64], want[512];
    assert_int_equal(vigil_key_read_public(path(f, "a/vigil.pub"), pub_a, f->err, sizeof f->err),
                     0);
    assert_int_equal(vigil_key_read_public(path(f, "b/vigil.pub"), pub_b, f->err, sizeof f->err),
                     0);
    struct vigil_keypair kp;
    assert_int_equal(vigil_key_read_secret(path(f, "a/vigil.key"), path(f, "b/vigil.pub"), &kp,
                                           f->err, sizeof f->err),
                     VIGIL_ECONFIG);
    snprintf(want, sizeof want, "%s: holds %s, which is not the public key of %s (that is %s)",
             path(f, "b/vigil.pub"), pub_b, path(f, "a/vigil.key"), pub_a);
    assert_string_equal(f->err, want);
    assert_int_equal(kp.secret_z85[0], '\0');

    /* A missing file is -errno, naming it. */
    assert_int_equal(vigil_key_read_secret(path(f, "none"), NULL, &kp, f->err, sizeof f->err),
                     -ENOENT);
    snprintf(want, sizeof want, "%s: No such file or directory", path(f, "none"));
    assert_string_equal(f->err, want);
}

/* A known valid key (libzmq's test vector), and one with each character changed. */
#define KEY_A "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
#define KEY_B "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"
#define KEY_C "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"

/* err must start with FILE:where: and contain what. */
static void expect_err(struct fixture *f, const char *file, const char *where, const char *what)
{
    char want[512];
    snprintf(want, sizeof want, "%s:%s: ", file, where);
    if (strncmp(f->err, want, strlen(want)) != 0 || !strstr(f->err, what)) {
        fail_msg("got \"%s\", want \"%s...%s\"", f->err, want, what);
    }
}

static void test_public_file(void **state)
{
    struct fixture *f = *state;
    const char *p = path(f, "k.pub");
    char z85[VIGIL_KEY_Z85_SIZE];
    static const char *good[] = {KEY_A, KEY_A "\n", KEY_A "  \t\r\n\n  "};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        write_file(p, 0644, good[i]);
        assert_int_equal(vigil_key_read_public(p, z85, f->err, sizeof f->err), 0);
        assert_string_equal(z85, KEY_A);
    }
    static const struct {
        const char *text, *where, *what;
    } bad[] = {
        {"", "1:1", "no key: expected a Z85 key of 40 characters"},
        {"\n  \n", "1:1", "no key"},
        {" " KEY_A, "1:1", "whitespace before the key"},
        {"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hI\n", "1:1", "found 39"},
        {KEY_A "x\n", "1:1", "found 41"},
        {"Yne@~w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID", "1:5", "'~' is not a Z85 character"},
        {"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{h\"D", "1:39", "'\"' is not a Z85"},
        {"#####w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID", "1:1", "characters 1-5 of the key are over"},
        {KEY_A " " KEY_B, "1:42", "unexpected text after the key"},
        {KEY_A "\n\n  x", "3:3", "unexpected text after the key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(p, 0644, bad[i].text);
        assert_int_equal(vigil_key_read_public(p, z85, f->err, sizeof f->err), VIGIL_ECONFIG);
        expect_err(f, p, bad[i].where, bad[i].what);
    }

    /* A bad secret file says where but does not show the character. */
    const char *k = path(f, "k.key");
    write_file(k, 0600, "Yne@~w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID");
    struct vigil_keypair kp;
    assert_int_equal(vigil_key_read_secret(k, NULL, &kp, f->err, sizeof f->err), VIGIL_ECONFIG);
    expect_err(f, k, "1:5", "a character outside the Z85 alphabet");
    assert_null(strchr(f->err, '~'));
}

static struct vigil_authkeys *parse_ok(struct fixture *f, const char *text)
{
    struct vigil_authkeys *ak = NULL;
    int rc = vigil_authkeys_parse("ak", text, strlen(text), &ak, f->err, sizeof f->err);
    if (rc != 0) {
        fail_msg("parse failed: %s", f->err);
    }
    return ak;
}

static void test_authkeys(void **state)
{
    struct fixture *f = *state;
    struct vigil_authkeys *ak = parse_ok(f, "# agents of rack 1\n"
                                            "\n" KEY_A " web1\n"
                                            "   # indented comment\n"
                                            "\t" KEY_B "\t  # no name: the default\r\n" KEY_C
                                            "  db-2.example.com   # trailing comment\n");
    assert_int_equal(vigil_authkeys_count(ak), 3);
    assert_string_equal(vigil_authkeys_find_z85(ak, KEY_A), "web1");
    assert_string_equal(vigil_authkeys_find_z85(ak, KEY_B), "D:)Q[IlA");
    assert_string_equal(vigil_authkeys_find_z85(ak, KEY_C), "db-2.example.com");
    uint8_t bin[32];
    assert_int_equal(zmq_z85_decode(bin, KEY_C) != NULL, 1);
    assert_string_equal(vigil_authkeys_find(ak, bin), "db-2.example.com");
    uint8_t mine[32];
    assert_int_equal(vigil_key_z85_decode(KEY_C, mine), 0);
    assert_memory_equal(mine, bin, 32);
    bin[31] ^= 1;
    assert_null(vigil_authkeys_find(ak, bin));
    assert_null(vigil_authkeys_find_z85(ak, "short"));
    assert_null(vigil_authkeys_find_z85(ak, "Yne@~w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"));
    assert_null(vigil_authkeys_find_z85(ak, NULL));
    vigil_authkeys_free(ak);
    vigil_authkeys_free(NULL);
    assert_null(vigil_authkeys_find(NULL, bin));
    assert_int_equal(vigil_authkeys_count(NULL), 0);

    /* No keys at all is a valid (empty) list. */
    static const char *empty[] = {"", "\n\n", "# nobody yet\n   \n"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        ak = parse_ok(f, empty[i]);
        assert_int_equal(vigil_authkeys_count(ak), 0);
        assert_null(vigil_authkeys_find_z85(ak, KEY_A));
        vigil_authkeys_free(ak);
    }
    /* No newline at the end. */
    ak = parse_ok(f, KEY_A " last");
    assert_string_equal(vigil_authkeys_find_z85(ak, KEY_A), "last");
    vigil_authkeys_free(ak);
}

static void test_authkeys_errors(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *text, *where, *what;
    } bad[] = {
        {"# c\n" KEY_A "x\n", "2:1", "expected a Z85 key of 40 characters, found 41"},
        {"\n  short name\n", "2:3", "found 5"},
        {KEY_A "\n" KEY_B "\nYne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[Ia V{hID", "3:1", "found 34"},
        {"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{h~D a\n", "1:39", "'~' is not a Z85"},
        {"%####w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID", "1:1", "over 2^32"},
        {KEY_A " web 1\n", "1:46", "unexpected text after the name"},
        {KEY_A " w\x01z\n", "1:43", "byte 0x01 is not allowed in a name"},
        {KEY_A " w\xc3\xa9\n", "1:43", "byte 0xc3 is not allowed in a name"},
        {KEY_A " 12345678901234567890123456789012345678901234567890123456789012345\n", "1:42",
         "name longer than 64 characters"},
        {KEY_A " a\n" KEY_B " b\n\n" KEY_A " c\n", "4:1", "duplicate key (also at line 1)"},
        {KEY_A " a\n" KEY_B " b\n" KEY_C " a\n", "3:42", "duplicate name 'a' (also at line 1)"},
        {KEY_A "\n" KEY_B " Yne@$w-v\n", "2:42", "duplicate name 'Yne@$w-v' (also at line 1)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct vigil_authkeys *ak = (struct vigil_authkeys *)&ak; /* must stay untouched */
        struct vigil_authkeys *before = ak;
        assert_int_equal(vigil_authkeys_parse("ak", bad[i].text, strlen(bad[i].text), &ak, f->err,
                                              sizeof f->err),
                         VIGIL_ECONFIG);
        assert_ptr_equal(ak, before);
        expect_err(f, "ak", bad[i].where, bad[i].what);
    }
    /* The default name collides: the message says to give one. */
    const char *t = KEY_A "\n" KEY_B " Yne@$w-v\n";
    struct vigil_authkeys *ak = NULL;
    assert_int_equal(vigil_authkeys_parse("ak", t, strlen(t), &ak, f->err, sizeof f->err),
                     VIGIL_ECONFIG);
    assert_non_null(strstr(f->err, "give it a name"));
}

/* n distinct keys with names k0, k1, ... into f->dir/big. */
static void write_many(struct fixture *f, size_t n)
{
    FILE *fp = fopen(path(f, "big"), "w");
    assert_non_null(fp);
    for (size_t i = 0; i < n; i++) {
        uint8_t bin[32] = {0};
        char z85[41];
        memcpy(bin, &i, sizeof i);
        assert_non_null(zmq_z85_encode(z85, bin, 32));
        fprintf(fp, "%s k%zu\n", z85, i);
    }
    assert_int_equal(fclose(fp), 0);
}

static void test_authkeys_bound_and_reload(void **state)
{
    struct fixture *f = *state;
    struct vigil_authkeys *ak = NULL;
    write_many(f, VIGIL_AUTHKEYS_MAX);
    assert_int_equal(vigil_authkeys_load(path(f, "big"), &ak, f->err, sizeof f->err), 0);
    assert_int_equal(vigil_authkeys_count(ak), VIGIL_AUTHKEYS_MAX);
    uint8_t bin[32] = {0};
    size_t i = 12345;
    memcpy(bin, &i, sizeof i);
    assert_string_equal(vigil_authkeys_find(ak, bin), "k12345");

    /* One more key is refused at its line; the loaded list stays in use. */
    write_many(f, VIGIL_AUTHKEYS_MAX + 1);
    struct vigil_authkeys *old = ak;
    assert_int_equal(vigil_authkeys_load(path(f, "big"), &ak, f->err, sizeof f->err),
                     VIGIL_ETOOBIG);
    assert_ptr_equal(ak, old);
    expect_err(f, path(f, "big"), "100001:1", "more than 100000 keys");
    assert_string_equal(vigil_authkeys_find(ak, bin), "k12345");

    /* A good file replaces it (the caller frees the old one). */
    write_file(path(f, "ak"), 0644, KEY_A " solo\n");
    struct vigil_authkeys *next = NULL;
    assert_int_equal(vigil_authkeys_load(path(f, "ak"), &next, f->err, sizeof f->err), 0);
    vigil_authkeys_free(ak);
    ak = next;
    assert_int_equal(vigil_authkeys_count(ak), 1);
    assert_string_equal(vigil_authkeys_find_z85(ak, KEY_A), "solo");
    vigil_authkeys_free(ak);

    assert_int_equal(vigil_authkeys_load(path(f, "none"), &ak, f->err, sizeof f->err), -ENOENT);
}

/* Answers one pending ZAP request on zap: 200 with the key's name as User-Id
 * when ak lists the client's key, else 400. Returns the status sent. */
static int zap_answer(void *zap, const struct vigil_authkeys *ak)
{
    /* version, request id, domain, address, identity, mechanism, key */
    zmq_msg_t part[7];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        assert_true(zmq_msg_recv(&m, zap, 0) >= 0);
        more = zmq_msg_more(&m);
        if (n < 7) {
            part[n++] = m;
        } else {
            zmq_msg_close(&m);
        }
    }
    assert_int_equal(n, 7);
    assert_memory_equal(zmq_msg_data(&part[5]), "CURVE", 5);
    assert_int_equal(zmq_msg_size(&part[6]), 32);
    const char *name = vigil_authkeys_find(ak, zmq_msg_data(&part[6]));
    const char *status = name ? "200" : "400";
    zmq_send(zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(zap, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
    zmq_send(zap, status, 3, ZMQ_SNDMORE);
    zmq_send(zap, name ? "OK" : "unknown key", name ? 2 : 11, ZMQ_SNDMORE);
    zmq_send(zap, name ? name : "", name ? strlen(name) : 0, ZMQ_SNDMORE);
    zmq_send(zap, "", 0, 0);
    for (int i = 0; i < n; i++) {
        zmq_msg_close(&part[i]);
    }
    return name ? 200 : 400;
}

/* A client with its keys from dir/vigil.key and the server's from server_pub. */
static void *client(void *ctx, struct fixture *f, const char *dir, const char *server_pub,
                    const char *endpoint)
{
    char key[256], pub[256], spub[VIGIL_KEY_Z85_SIZE];
    snprintf(key, sizeof key, "%s/vigil.key", dir);
    snprintf(pub, sizeof pub, "%s/vigil.pub", dir);
    struct vigil_keypair kp;
    assert_int_equal(vigil_key_read_secret(key, pub, &kp, f->err, sizeof f->err), 0);
    assert_int_equal(vigil_key_read_public(server_pub, spub, f->err, sizeof f->err), 0);
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, spub, 40), 0);
    assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, kp.public_z85, 40), 0);
    assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, kp.secret_z85, 40), 0);
    vigil_keypair_clear(&kp);
    assert_int_equal(zmq_connect(s, endpoint), 0);
    return s;
}

static void test_curve_handshake(void **state)
{
    struct fixture *f = *state;
    if (!zmq_has("curve")) {
        skip();
    }
    make_pair(f, "central");
    make_pair(f, "agent");
    make_pair(f, "stranger");
    char list[256], pub[VIGIL_KEY_Z85_SIZE];
    assert_int_equal(vigil_key_read_public(path(f, "agent/vigil.pub"), pub, f->err, sizeof f->err),
                     0);
    snprintf(list, sizeof list, "# trusted agents\n%s kvm-host-1\n", pub);
    write_file(path(f, "authorized_keys"), 0644, list);
    struct vigil_authkeys *ak = NULL;
    assert_int_equal(vigil_authkeys_load(path(f, "authorized_keys"), &ak, f->err, sizeof f->err),
                     0);

    void *ctx = zmq_ctx_new();
    /* The ZAP handler is bound before the server takes connections. */
    void *zap = zmq_socket(ctx, ZMQ_REP);
    assert_int_equal(zmq_bind(zap, "inproc://zeromq.zap.01"), 0);
    struct vigil_keypair kp;
    assert_int_equal(
        vigil_key_read_secret(path(f, "central/vigil.key"), NULL, &kp, f->err, sizeof f->err), 0);
    void *server = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1, linger = 0;
    zmq_setsockopt(server, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_setsockopt(server, ZMQ_CURVE_SERVER, &one, sizeof one), 0);
    assert_int_equal(zmq_setsockopt(server, ZMQ_CURVE_SECRETKEY, kp.secret_z85, 40), 0);
    vigil_keypair_clear(&kp);
    assert_int_equal(zmq_bind(server, "tcp://127.0.0.1:*"), 0);
    char ep[128];
    size_t eplen = sizeof ep;
    assert_int_equal(zmq_getsockopt(server, ZMQ_LAST_ENDPOINT, ep, &eplen), 0);

    const char *spub = path(f, "central/vigil.pub");
    void *stranger = client(ctx, f, path(f, "stranger"), spub, ep);
    assert_int_equal(zmq_send(stranger, "let me in", 9, 0), 9);
    void *agent = client(ctx, f, path(f, "agent"), spub, ep);
    assert_int_equal(zmq_send(agent, "hello", 5, 0), 5);

    /* One thread serves the ZAP requests and the server until the agent's
     * message is in; the stranger is refused (400) and never gets through. */
    int got = 0, refused = 0, admitted = 0;
    for (int spin = 0; spin < 100 && (!got || !refused); spin++) {
        zmq_pollitem_t items[] = {{.socket = zap, .events = ZMQ_POLLIN},
                                  {.socket = server, .events = ZMQ_POLLIN}};
        assert_true(zmq_poll(items, 2, 100) >= 0);
        if (items[0].revents & ZMQ_POLLIN) {
            if (zap_answer(zap, ak) == 200) {
                admitted++;
            } else {
                refused++;
            }
        }
        if (items[1].revents & ZMQ_POLLIN) {
            zmq_msg_t id, body;
            zmq_msg_init(&id);
            zmq_msg_init(&body);
            assert_true(zmq_msg_recv(&id, server, 0) >= 0);
            assert_true(zmq_msg_recv(&body, server, 0) >= 0);
            assert_int_equal(zmq_msg_size(&body), 5);
            assert_memory_equal(zmq_msg_data(&body), "hello", 5);
            /* The ZAP handler's User-Id names the client on its messages. */
            const char *user = zmq_msg_gets(&body, "User-Id");
            assert_non_null(user);
            assert_string_equal(user, "kvm-host-1");
            assert_int_equal(zmq_msg_send(&id, server, ZMQ_SNDMORE), (int)zmq_msg_size(&id));
            assert_int_equal(zmq_send(server, "welcome", 7, 0), 7);
            zmq_msg_close(&id);
            zmq_msg_close(&body);
            got++;
        }
    }
    assert_int_equal(got, 1);
    assert_int_equal(admitted, 1);
    assert_true(refused >= 1);

    char reply[16];
    int rcvtimeo = 5000;
    zmq_setsockopt(agent, ZMQ_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo);
    assert_int_equal(zmq_recv(agent, reply, sizeof reply, 0), 7);
    assert_memory_equal(reply, "welcome", 7);

    zmq_close(agent);
    zmq_close(stranger);
    zmq_close(server);
    zmq_close(zap);
    zmq_ctx_term(ctx);
    vigil_authkeys_free(ak);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keygen_end_to_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_mode_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pair_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_public_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_authkeys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_authkeys_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_authkeys_bound_and_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_curve_handshake, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

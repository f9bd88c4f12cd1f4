/* The disk spool on a real folder: order, the cursor across reopen (what a
 * restart after kill -9 sees), at-least-once for what was read but not
 * committed, torn tails, damaged records and headers (only what is damaged
 * is lost), max_size, and the lock.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "spool.h"

struct fx {
    char dir[64];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/vigil-spool.XXXXXX");
    if (!mkdtemp(f->dir)) {
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", f->dir);
    }
    free(f);
    return 0;
}

static struct vigil_spool *open_spool(struct fx *f, uint64_t max)
{
    struct vigil_spool *s = NULL;
    char err[512] = "";
    int rc = vigil_spool_open(f->dir, max, "test", &s, err, sizeof err);
    if (rc != 0) {
        fail_msg("open: %s", err);
    }
    return s;
}

/* Event i: topic "t.<i>", body "body-<i>" padded to `pad` bytes. */
static void put(struct vigil_spool *s, unsigned i, size_t pad)
{
    char t[32], b[4096];
    int tl = snprintf(t, sizeof t, "t.%u", i);
    int bl = snprintf(b, sizeof b, "body-%u-", i);
    while ((size_t)bl < pad && (size_t)bl < sizeof b) {
        b[bl++] = 'x';
    }
    assert_int_equal(vigil_spool_append(s, t, (size_t)tl, b, (size_t)bl), 0);
}

/* Reads the next record and checks it is event i. */
static void expect(struct vigil_spool *s, unsigned i)
{
    struct vigil_spool_rec r;
    assert_int_equal(vigil_spool_read(s, &r), 1);
    char t[32], b[32];
    int tl = snprintf(t, sizeof t, "t.%u", i);
    int bl = snprintf(b, sizeof b, "body-%u-", i);
    if (r.topic_len != (size_t)tl || memcmp(r.topic, t, (size_t)tl) != 0) {
        fail_msg("expected %s, read %.*s", t, (int)r.topic_len, r.topic);
    }
    assert_true(r.body_len >= (size_t)bl);
    assert_memory_equal(r.body, b, (size_t)bl);
}

static void expect_end(struct vigil_spool *s)
{
    struct vigil_spool_rec r;
    assert_int_equal(vigil_spool_read(s, &r), 0);
}

static size_t count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        n += l > sl && strcmp(e->d_name + l - sl, suffix) == 0;
    }
    if (d) {
        closedir(d);
    }
    return n;
}

/* The newest segment file's path. */
static void last_segment(const char *dir, char *out, size_t len)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char best[256] = "";
    while ((e = readdir(d))) {
        if (strstr(e->d_name, ".seg") && strcmp(e->d_name, best) > 0) {
            snprintf(best, sizeof best, "%s", e->d_name);
        }
    }
    closedir(d);
    assert_true(best[0] != '\0');
    assert_true((size_t)snprintf(out, len, "%s/%s", dir, best) < len);
}

static void test_order_and_commit(void **state)
{
    struct fx *f = *state;
    struct vigil_spool *s = open_spool(f, 1 << 20);
    assert_true(vigil_spool_empty(s));
    for (unsigned i = 0; i < 100; i++) {
        put(s, i, 0);
    }
    struct vigil_spool_counts c;
    vigil_spool_counts(s, &c);
    assert_int_equal(c.events, 100);
    /* Readable before any flush: buffered records come from memory. */
    for (unsigned i = 0; i < 60; i++) {
        expect(s, i);
    }
    assert_int_equal(vigil_spool_commit(s), 0);
    vigil_spool_counts(s, &c);
    assert_int_equal(c.events, 40);
    put(s, 100, 0);
    for (unsigned i = 60; i <= 100; i++) {
        expect(s, i);
    }
    expect_end(s);
    assert_false(vigil_spool_empty(s)); /* read, not yet delivered */
    assert_int_equal(vigil_spool_commit(s), 0);
    assert_true(vigil_spool_empty(s));
    assert_int_equal(count_files(f->dir, ".seg"), 0); /* all delivered: files gone */
    vigil_spool_close(s);
}

/* What a restart after kill -9 sees: records written (flushed to the
 * kernel), the cursor of the last commit; read-but-uncommitted come again. */
static void test_reopen_resumes_at_cursor(void **state)
{
    struct fx *f = *state;
    struct vigil_spool *s = open_spool(f, 1 << 20);
    for (unsigned i = 0; i < 50; i++) {
        put(s, i, 100);
    }
    for (unsigned i = 0; i < 20; i++) {
        expect(s, i);
    }
    assert_int_equal(vigil_spool_commit(s), 0);
    for (unsigned i = 20; i < 30; i++) {
        expect(s, i); /* in flight when the process dies */
    }
    assert_int_equal(vigil_spool_flush(s, false), 0);
    vigil_spool_close(s);

    s = open_spool(f, 1 << 20);
    struct vigil_spool_counts c;
    vigil_spool_counts(s, &c);
    assert_int_equal(c.events, 30);
    for (unsigned i = 20; i < 50; i++) {
        expect(s, i);
    }
    expect_end(s);
    /* New records go after the old ones. */
    put(s, 50, 0);
    expect(s, 50);
    assert_int_equal(vigil_spool_commit(s), 0);
    assert_true(vigil_spool_empty(s));
    vigil_spool_close(s);
}

/* A power loss cuts the last record short: it is skipped, with a count,
 * and everything before it is delivered. */
static void test_torn_tail(void **state)
{
    struct fx *f = *state;
    struct vigil_spool *s = open_spool(f, 1 << 20);
    for (unsigned i = 0; i < 10; i++) {
        put(s, i, 200);
    }
    vigil_spool_close(s);
    char seg[256];
    last_segment(f->dir, seg, sizeof seg);
    struct stat st;
    assert_int_equal(stat(seg, &st), 0);
    assert_int_equal(truncate(seg, st.st_size - 37), 0);

    s = open_spool(f, 1 << 20);
    struct vigil_spool_counts c;
    vigil_spool_counts(s, &c);
    assert_int_equal(c.events, 9);
    assert_int_equal(c.corrupt_total, 1);
    assert_int_equal(c.skipped_bytes_total, 215 - 37);
    assert_int_equal(c.dropped_total, 0); /* a torn write: not known as an event */
    for (unsigned i = 0; i < 9; i++) {
        expect(s, i);
    }
    expect_end(s);
    /* Appending after a cut tail works: the file was truncated cleanly. */
    put(s, 10, 0);
    expect(s, 10);
    vigil_spool_close(s);
    s = open_spool(f, 1 << 20);
    vigil_spool_counts(s, &c);
    assert_int_equal(c.corrupt_total, 0);
    assert_int_equal(c.events, 10);
    vigil_spool_close(s);
}

/* ---- Damage: only what is damaged is lost ------------------------------------------- */

/* XORs n bytes of file `path` at `at` with 0x5a. */
static void flip(const char *path, off_t at, size_t n)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    char x[64];
    assert_true(n <= sizeof x);
    assert_int_equal(pread(fd, x, n, at), (ssize_t)n);
    for (size_t i = 0; i < n; i++) {
        x[i] ^= 0x5a;
    }
    assert_int_equal(pwrite(fd, x, n, at), (ssize_t)n);
    close(fd);
}

/* stderr goes to a file between capture_start() and capture_count(), which
 * says how many lines hold `needle`. */
static int saved_stderr = -1;
static char capture_path[64];

static void capture_start(void)
{
    snprintf(capture_path, sizeof capture_path, "/tmp/vigil-spool-log.XXXXXX");
    int fd = mkstemp(capture_path);
    assert_true(fd >= 0);
    fflush(stderr);
    saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
}

static unsigned capture_count(const char *needle)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    FILE *f = fopen(capture_path, "r");
    assert_non_null(f);
    char line[1024];
    unsigned n = 0;
    while (fgets(line, sizeof line, f)) {
        fputs(line, stderr); /* still shown */
        n += strstr(line, needle) != NULL;
    }
    fclose(f);
    unlink(capture_path);
    return n;
}

/* Reads everything: returns how many, checks each is a later event than
 * the one before; *missing gets how many of events 0..n-1 were not read. */
static unsigned read_all(struct vigil_spool *s, unsigned *missing, unsigned n)
{
    struct vigil_spool_rec r;
    unsigned got = 0, next = 0;
    *missing = 0;
    while (vigil_spool_read(s, &r) == 1) {
        assert_true(r.topic_len > 2 && memcmp(r.topic, "t.", 2) == 0);
        unsigned i = (unsigned)strtoul(r.topic + 2, NULL, 10);
        assert_true(i >= next && i < n);
        *missing += i - next;
        next = i + 1;
        got++;
    }
    *missing += n - next;
    return got;
}

/* Record i of put(s, i, 100) for i < 10 starts at 8 + i * 115. */
#define REC10(i) (8 + (i) * (12 + 3 + 100))

/* The spool's counts after damage: corrupt_total, skipped_bytes_total,
 * dropped_total, events. */
static void expect_counts(struct vigil_spool *s, uint64_t corrupt, uint64_t bytes, uint64_t dropped,
                          uint64_t events)
{
    struct vigil_spool_counts c;
    vigil_spool_counts(s, &c);
    assert_int_equal(c.corrupt_total, corrupt);
    assert_int_equal(c.skipped_bytes_total, bytes);
    assert_int_equal(c.dropped_total, dropped);
    assert_int_equal(c.events, events);
}

/* Spools events 0..9 (115 bytes each), closes the spool and flips n bytes
 * at `at` of its segment, whose path goes to seg. */
static void spool_ten_and_flip(struct fx *f, char *seg, size_t seglen, off_t at, size_t n)
{
    struct vigil_spool *s = open_spool(f, 1 << 20);
    for (unsigned i = 0; i < 10; i++) {
        put(s, i, 100);
    }
    vigil_spool_close(s);
    last_segment(f->dir, seg, seglen);
    flip(seg, at, n);
}

/* A flipped body in the middle: that record alone is lost (its length is
 * intact, so it is counted as one event), every other one is read. */
static void test_corrupt_record(void **state)
{
    struct fx *f = *state;
    char seg[256];
    spool_ten_and_flip(f, seg, sizeof seg, REC10(4) + 50, 7);
    capture_start();
    struct vigil_spool *s = open_spool(f, 1 << 20);
    assert_int_equal(capture_count("is damaged at offset 468:"), 1);
    expect_counts(s, 1, 115, 1, 9);
    for (unsigned i = 0; i < 10; i++) {
        if (i != 4) {
            expect(s, i);
        }
    }
    expect_end(s);
    vigil_spool_close(s);

    /* Read past the damage and committed: the next start does not count it
     * again (the cursor was moved past it), and resumes where it should. */
    s = open_spool(f, 1 << 20);
    for (unsigned i = 0; i < 4; i++) {
        expect(s, i);
    }
    assert_int_equal(vigil_spool_commit(s), 0);
    vigil_spool_close(s);
    s = open_spool(f, 1 << 20);
    expect_counts(s, 0, 0, 0, 5);
    for (unsigned i = 5; i < 10; i++) {
        expect(s, i);
    }
    expect_end(s);
    vigil_spool_close(s);
}

/* The first record's length is damaged: nobody can say how many events the
 * damage held, so only its bytes are counted; the rest is read. */
static void test_corrupt_first_record(void **state)
{
    struct fx *f = *state;
    char seg[256];
    spool_ten_and_flip(f, seg, sizeof seg, REC10(0) + 1, 2);
    capture_start();
    struct vigil_spool *s = open_spool(f, 1 << 20);
    assert_int_equal(capture_count("an unknown number of events"), 1);
    expect_counts(s, 1, 115, 0, 9);
    for (unsigned i = 1; i < 10; i++) {
        expect(s, i);
    }
    expect_end(s);
    assert_int_equal(vigil_spool_commit(s), 0);
    assert_true(vigil_spool_empty(s));
    vigil_spool_close(s);
}

/* A segment's header (its magic) is damaged: its records are all kept. */
static void test_corrupt_segment_header(void **state)
{
    struct fx *f = *state;
    char seg[256];
    spool_ten_and_flip(f, seg, sizeof seg, 0, 8);
    capture_start();
    struct vigil_spool *s = open_spool(f, 1 << 20);
    assert_int_equal(capture_count("(its header)"), 1);
    expect_counts(s, 1, 8, 0, 10);
    for (unsigned i = 0; i < 10; i++) {
        expect(s, i);
    }
    expect_end(s);
    vigil_spool_close(s);

    /* A header and its first record damaged: one damage, the rest kept. */
    flip(seg, REC10(0) + 20, 1);
    s = open_spool(f, 1 << 20);
    expect_counts(s, 1, 8 + 115, 1, 9);
    for (unsigned i = 1; i < 10; i++) {
        expect(s, i);
    }
    expect_end(s);
    vigil_spool_close(s);

    /* Nothing valid at all: not a segment, removed. */
    int fd = open(seg, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "garbage, not a segment", 22), 22);
    close(fd);
    s = open_spool(f, 1 << 20);
    expect_counts(s, 1, 22, 0, 0);
    assert_int_equal(count_files(f->dir, ".seg"), 0);
    vigil_spool_close(s);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Damage in each of three segments, the first one truncated mid-record
 * (the case: 7 bytes flipped at offset 150,000 of a ~300 KB
 * segment): every undamaged event is read, in order, each damage counted
 * once. */
static void test_damage_across_segments(void **state)
{
    struct fx *f = *state;
    const unsigned n = 9000; /* about 3 segments of 512 KiB at max 4 MiB */
    struct vigil_spool *s = open_spool(f, 4 << 20);
    for (unsigned i = 0; i < n; i++) {
        put(s, i, 150);
    }
    vigil_spool_close(s);
    char segs[3][128];
    DIR *d = opendir(f->dir);
    struct dirent *e;
    unsigned k = 0;
    char names[8][32]; /* <16 hex digits>.seg */
    while ((e = readdir(d))) {
        if (strstr(e->d_name, ".seg") && k < 8) {
            snprintf(names[k++], sizeof names[0], "%.31s", e->d_name);
        }
    }
    closedir(d);
    assert_true(k >= 3);
    qsort(names, k, sizeof names[0], cmp_name);
    for (unsigned i = 0; i < 3; i++) {
        snprintf(segs[i], sizeof segs[i], "%s/%.31s", f->dir, names[i]);
    }
    struct stat st;
    assert_int_equal(stat(segs[0], &st), 0);
    assert_int_equal(truncate(segs[0], st.st_size - 100), 0); /* torn: the last record */
    flip(segs[1], 150000, 7);
    flip(segs[2], 100000, 3);
    flip(segs[2], 200000, 3);

    capture_start();
    s = open_spool(f, 4 << 20);
    assert_int_equal(capture_count("is damaged at offset"), 3);
    struct vigil_spool_counts c;
    vigil_spool_counts(s, &c);
    assert_int_equal(c.corrupt_total, 4);
    /* Records are 12 + 6 + 150 bytes; the torn one keeps 68 of them. */
    assert_true(c.skipped_bytes_total >= 68 + 3 * 168 && c.skipped_bytes_total <= 68 + 6 * 168);
    unsigned missing;
    unsigned got = read_all(s, &missing, n);
    assert_int_equal(got, c.events);
    assert_true(missing >= 4 && missing <= 7); /* 1 torn, 1 or 2 per flip */
    assert_true(c.dropped_total <= missing - 1);
    vigil_spool_close(s);
}

/* Past max_size the oldest segments go, counted; what stays is the newest,
 * in order, and the files stay under the bound. */
static void test_max_size_drops_oldest(void **state)
{
    struct fx *f = *state;
    const uint64_t max = 256 * 1024;
    struct vigil_spool *s = open_spool(f, max);
    const unsigned n = 2000; /* ~1 KiB each: 8 times the bound */
    for (unsigned i = 0; i < n; i++) {
        put(s, i, 1000);
    }
    struct vigil_spool_counts c;
    vigil_spool_counts(s, &c);
    assert_true(c.bytes <= max);
    assert_true(c.dropped_total > 0);
    assert_int_equal(c.events + c.dropped_total, n);
    unsigned first = (unsigned)c.dropped_total;
    for (unsigned i = first; i < n; i++) {
        expect(s, i);
    }
    expect_end(s);
    vigil_spool_close(s);
}

/* An in-flight record whose segment is dropped is not counted twice and
 * the cursor moves on cleanly. */
static void test_drop_under_reader(void **state)
{
    struct fx *f = *state;
    struct vigil_spool *s = open_spool(f, 128 * 1024);
    for (unsigned i = 0; i < 20; i++) {
        put(s, i, 1000);
    }
    for (unsigned i = 0; i < 5; i++) {
        expect(s, i);
    }
    for (unsigned i = 20; i < 400; i++) {
        put(s, i, 1000);
    }
    struct vigil_spool_counts c;
    vigil_spool_counts(s, &c);
    assert_true(c.dropped_total >= 15);
    struct vigil_spool_rec r;
    unsigned prev = 0, got = 0;
    while (vigil_spool_read(s, &r) == 1) {
        unsigned i = (unsigned)strtoul(r.topic + 2, NULL, 10);
        assert_true(i > prev || got == 0);
        assert_true(i >= 20);
        prev = i;
        got++;
    }
    assert_int_equal(prev, 399);
    assert_int_equal(vigil_spool_commit(s), 0);
    assert_true(vigil_spool_empty(s));
    vigil_spool_close(s);
}

static void test_one_owner(void **state)
{
    struct fx *f = *state;
    struct vigil_spool *s = open_spool(f, 1 << 20);
    struct vigil_spool *s2 = NULL;
    char err[512] = "";
    assert_true(vigil_spool_open(f->dir, 1 << 20, "test", &s2, err, sizeof err) < 0);
    assert_null(s2);
    assert_non_null(strstr(err, "in use by another process"));
    vigil_spool_close(s);
    assert_int_equal(vigil_spool_open(f->dir, 1 << 20, "test", &s2, err, sizeof err), 0);
    vigil_spool_close(s2);
}

static void test_too_big_and_bad_folder(void **state)
{
    struct fx *f = *state;
    struct vigil_spool *s = open_spool(f, 64 * 1024);
    static char big[70000];
    assert_int_equal(vigil_spool_append(s, "t", 1, big, sizeof big), -EFBIG);
    vigil_spool_close(s);
    char path[128], err[512] = "";
    snprintf(path, sizeof path, "%s/file", f->dir);
    FILE *x = fopen(path, "w");
    fclose(x);
    snprintf(path, sizeof path, "%s/file/spool", f->dir);
    assert_true(vigil_spool_open(path, 1 << 20, "test", &s, err, sizeof err) < 0);
    assert_non_null(strstr(err, "cannot create the spool folder"));
}

static void test_crc32c_known_value(void **state)
{
    (void)state;
    /* The standard check value of CRC-32C. */
    assert_int_equal(vigil_crc32c(0, "123456789", 9), 0xE3069283u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_resumes_at_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_first_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_segment_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_across_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_size_drops_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_under_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big_and_bad_folder, setup, teardown),
        cmocka_unit_test(test_crc32c_known_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

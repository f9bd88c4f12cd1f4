/* The disk spool on a real folder: order, the cursor across reopen (what a
 * restart after kill -9 sees), at-least-once for what was read but not
 * committed, torn and corrupt tails, max_size, and the lock.
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

/* A flipped byte inside a record: its checksum fails, the segment's rest
 * is skipped; other segments are untouched. */
static void test_corrupt_record(void **state)
{
    struct fx *f = *state;
    struct vigil_spool *s = open_spool(f, 1 << 20);
    for (unsigned i = 0; i < 10; i++) {
        put(s, i, 100);
    }
    vigil_spool_close(s);
    char seg[256];
    last_segment(f->dir, seg, sizeof seg);
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    /* Header 8, each record 12 + 3 + 100 bytes: hit record 4's body. */
    off_t at = 8 + 4 * (12 + 3 + 100) + 50;
    char x;
    assert_int_equal(pread(fd, &x, 1, at), 1);
    x ^= 0x5a;
    assert_int_equal(pwrite(fd, &x, 1, at), 1);
    close(fd);

    s = open_spool(f, 1 << 20);
    struct vigil_spool_counts c;
    vigil_spool_counts(s, &c);
    assert_int_equal(c.corrupt_total, 1);
    assert_int_equal(c.events, 4);
    for (unsigned i = 0; i < 4; i++) {
        expect(s, i);
    }
    expect_end(s);
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
        cmocka_unit_test_setup_teardown(test_max_size_drops_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_under_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big_and_bad_folder, setup, teardown),
        cmocka_unit_test(test_crc32c_known_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

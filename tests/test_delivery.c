/* The host's delivery guarantees, end to end through the real vigild: a
 * failing sink spools and loses nothing, never slows the bus or another
 * sink, survives kill -9, a torn spool tail and a damaged spool record (only
 * the damaged one is lost), gives up nothing on SIGTERM,
 * and counts what its spool's max_size makes it drop.
 *
 * The failing destination is tests/plugins/test_capture.c with `fail_while`:
 * it answers RETRY while a flag file exists, so the test switches an outage
 * on and off; the capture files are what was delivered.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

/* Sum of the sizes of the *.seg files in dir. */
static uint64_t disk_bytes(const char *dir)
{
    uint64_t sum = 0;
    DIR *d = opendir(dir);
    if (!d) {
        return 0;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat st;
        char p[2 * PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (strstr(e->d_name, ".seg") && stat(p, &st) == 0) {
            sum += (uint64_t)st.st_size;
        }
    }
    closedir(d);
    return sum;
}

/* Waits up to timeout_s for the spool's segment files to hold >= want bytes. */
static bool wait_disk_bytes(const char *dir, uint64_t want, int timeout_s)
{
    double end = now_s() + timeout_s;
    do {
        if (disk_bytes(dir) >= want) {
            return true;
        }
        sleep_ms(20);
    } while (now_s() < end);
    fprintf(stderr, "spool %s: %llu bytes on disk, vigil.self says %llu\n", dir,
            (unsigned long long)disk_bytes(dir), (unsigned long long)want);
    return false;
}

static void start(struct vd *v)
{
    if (vd_start(v) != 0) {
        vd_dump_log(v);
        fail_msg("vigild did not start");
    }
}

/* Publishes n events (topic test.d, source `source`, seq 1..n) with
 * vigil-pub; labels carry some padding so the spool has bytes to hold. */
static void publish(const struct vd *v, const char *source, size_t n)
{
    size_t cap = n * 160 + 1, len = 0;
    char *in = malloc(cap);
    assert_non_null(in);
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(
            in + len, cap - len,
            "{\"labels\":{\"i\":\"%zu\",\"pad\":\"%s\"},\"values\":{\"x\":%zu}}\n", i,
            "................................................................", i);
    }
    char src[128];
    snprintf(src, sizeof src, "%s", source);
    char *const argv[] = {
        VIGIL_BUILD_DIR "/vigil-pub", "-c", (char *)v->cfg, "-t", "test.d", "--source", src, NULL};
    char *err = NULL;
    int rc = run(argv, in, len, NULL, &err, 60);
    if (rc != 0) {
        fprintf(stderr, "vigil-pub: %s\n", err ? err : "");
    }
    assert_int_equal(rc, 0);
    free(err);
    free(in);
}

#define SINKS_BODY                                                                                 \
    "sinks:\n"                                                                                     \
    "  - plugin: test_capture\n"                                                                   \
    "    name: flaky\n"                                                                            \
    "    match: test.\n"                                                                           \
    "    path: @DIR@/flaky.jsonl\n"                                                                \
    "    fail_while: @DIR@/down\n"                                                                 \
    "    retry: { max_backoff: 500ms }\n"                                                          \
    "%s"                                                                                           \
    "  - plugin: test_capture\n"                                                                   \
    "    name: steady\n"                                                                           \
    "    match: test.\n"                                                                           \
    "    path: @DIR@/steady.jsonl\n"                                                               \
    "  - plugin: test_capture\n"                                                                   \
    "    name: self\n"                                                                             \
    "    match: vigil.self\n"                                                                      \
    "    path: @DIR@/self.jsonl\n"

static void setup_two_sinks(struct vd *v, const char *extra)
{
    char body[2048];
    snprintf(body, sizeof body, SINKS_BODY, extra ? extra : "");
    assert_int_equal(vd_setup(v, "200ms", body), 0);
}

/* An outage: the failing sink spools (more events than its queue and the
 * bus's HWM together, so without the spool the bus would block), the other
 * sink gets everything meanwhile, and after recovery the failing one gets
 * every event once, in order. */
static void outage(void **state, const char *extra)
{
    struct vd *v = *state;
    setup_two_sinks(v, extra);
    touch(vd_path(v, "down"));
    start(v);
    const size_t n = 30000;
    publish(v, "p1", n);
    /* The healthy sink is not held back by the failing one. */
    assert_true(wait_lines(vd_path(v, "steady.jsonl"), "\"source\":\"p1\"", n, 30));
    assert_true(seqs_complete(vd_path(v, "steady.jsonl"), "p1", n));
    assert_true(wait_self_value(vd_path(v, "self.jsonl"), "flaky", "spool_events", (double)n, 10));
    double x;
    assert_true(self_value(vd_path(v, "self.jsonl"), "flaky", "spooled_total", &x));
    assert_true(x >= (double)n);
    assert_int_equal(count_lines(vd_path(v, "flaky.jsonl"), "\"source\":\"p1\""), 0);

    unlink(vd_path(v, "down"));
    assert_true(wait_lines(vd_path(v, "flaky.jsonl"), "\"source\":\"p1\"", n, 30));
    assert_true(seqs_complete(vd_path(v, "flaky.jsonl"), "p1", n));
    assert_true(wait_self_value(vd_path(v, "self.jsonl"), "flaky", "out_total", (double)n, 10));
    assert_true(self_value(vd_path(v, "self.jsonl"), "flaky", "dropped_total", &x));
    assert_true(x == 0);
    /* Delivered spool segments are removed. */
    sleep(1);
    assert_true(self_value(vd_path(v, "self.jsonl"), "flaky", "spool_events", &x));
    assert_true(x == 0);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

static void test_outage_spools_and_recovers(void **state)
{
    outage(state, NULL);
}

/* The same through the asynchronous write path (write_done later). */
static void test_outage_async_sink(void **state)
{
    outage(state, "    async: true\n");
}

/* Spools n events of `source` with the flaky sink down, kill -9s vigild
 * once the segment files hold them all, and names the newest segment. */
static void spool_then_kill9(struct vd *v, const char *source, size_t n, char *seg, size_t seglen)
{
    setup_two_sinks(v, NULL);
    touch(vd_path(v, "down"));
    start(v);
    publish(v, source, n);
    assert_true(wait_self_value(vd_path(v, "self.jsonl"), "flaky", "spool_events", (double)n, 10));
    /* spool_events counts records still in the spool's write buffer too;
     * the promise is that they reach the disk within a second (the flush
     * period is 200 ms). Kill only once the segment files hold every byte
     * vigil.self reports, so the test checks what kill -9 can lose, not
     * the flush timer. */
    char spool[PATH_MAX + 300];
    snprintf(spool, sizeof spool, "%s/state/spool/flaky", v->dir);
    double bytes = 0;
    assert_true(self_value(vd_path(v, "self.jsonl"), "flaky", "spool_bytes", &bytes));
    assert_true(wait_disk_bytes(spool, (uint64_t)bytes, 10));
    vd_kill9(v);
    /* The newest segment, for the caller to damage. */
    DIR *d = opendir(spool);
    assert_non_null(d);
    struct dirent *e;
    char last[256] = "";
    while ((e = readdir(d))) {
        if (strstr(e->d_name, ".seg") && strcmp(e->d_name, last) > 0) {
            snprintf(last, sizeof last, "%s", e->d_name);
        }
    }
    closedir(d);
    assert_true(last[0] != '\0');
    snprintf(seg, seglen, "%s/%s", spool, last);
}

/* kill -9 with the events in the spool; a restart delivers them all. Then
 * a torn tail (half a record appended, as a power loss leaves it) is cut
 * with a warning and costs nothing else. */
static void test_kill9_then_restart_delivers_spool(void **state)
{
    struct vd *v = *state;
    const size_t n = 5000;
    char seg[2 * PATH_MAX];
    spool_then_kill9(v, "k9", n, seg, sizeof seg);
    FILE *f = fopen(seg, "a");
    assert_non_null(f);
    fwrite("\x40\x00\x00\x00\x12\x34", 1, 6, f); /* a header promising 64 bytes, then nothing */
    fclose(f);

    unlink(vd_path(v, "down"));
    start(v);
    assert_true(wait_lines(vd_path(v, "flaky.jsonl"), "\"source\":\"k9\"", n, 30));
    size_t dups = 0;
    assert_true(seqs_at_least_once(vd_path(v, "flaky.jsonl"), "k9", n, &dups));
    assert_true(wait_self_value(vd_path(v, "self.jsonl"), "flaky", "spool_corrupt_total", 1, 10));
    char *log = slurp(v->log);
    assert_non_null(strstr(log, "torn or corrupt"));
    assert_non_null(strstr(log, "left in the spool"));
    free(log);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* kill -9 while an asynchronous sink drains its spool in small batches
 * (each committed once write_done() says it was delivered): the restart
 * delivers every event at least once, at most the batch of the crash twice. */
static void test_kill9_while_draining_async(void **state)
{
    struct vd *v = *state;
    const size_t n = 20000;
    setup_two_sinks(v, "    async: true\n    batch: { max_events: 64 }\n");
    touch(vd_path(v, "down"));
    start(v);
    publish(v, "dr", n);
    assert_true(wait_self_value(vd_path(v, "self.jsonl"), "flaky", "spool_events", (double)n, 10));
    unlink(vd_path(v, "down"));
    assert_true(wait_lines(vd_path(v, "flaky.jsonl"), "\"source\":\"dr\"", n / 4, 30));
    vd_kill9(v);
    size_t before = count_lines(vd_path(v, "flaky.jsonl"), "\"source\":\"dr\"");
    start(v);
    assert_true(wait_lines(vd_path(v, "flaky.jsonl"), "\"source\":\"dr\"", n, 30));
    size_t dups = 0;
    assert_true(seqs_at_least_once(vd_path(v, "flaky.jsonl"), "dr", n, &dups));
    /* At most what was in the write at the crash comes twice. */
    assert_true(dups <= 64);
    if (before >= n) {
        fprintf(stderr, "note: the drain had ended before the kill (%zu lines)\n", before);
    }
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* How many of seqs 1..n of `source` are not in the capture file. */
static size_t seqs_missing(const char *path, const char *source, size_t n)
{
    char needle[128], *line = NULL;
    snprintf(needle, sizeof needle, "\"source\":\"%s\"", source);
    bool *seen = calloc(n + 1, sizeof *seen);
    FILE *f = fopen(path, "r");
    assert_true(seen && f);
    size_t cap = 0, missing = 0;
    while (getline(&line, &cap, f) != -1) {
        const char *q = strstr(line, needle) ? strstr(line, "\"seq\":") : NULL;
        unsigned long long seq = q ? strtoull(q + 6, NULL, 10) : 0;
        if (seq >= 1 && seq <= n) {
            seen[seq] = true;
        }
    }
    for (size_t i = 1; i <= n; i++) {
        missing += !seen[i];
    }
    free(line);
    free(seen);
    fclose(f);
    return missing;
}

/* kill -9 with the events in the spool, then one byte of a spooled record
 * flipped in the middle of a segment (disk damage): the restart delivers
 * every other event, and logs and counts the damage once. */
static void test_kill9_damaged_spool_loses_only_damage(void **state)
{
    struct vd *v = *state;
    const size_t n = 5000;
    char seg[2 * PATH_MAX];
    spool_then_kill9(v, "dm", n, seg, sizeof seg);
    struct stat st;
    assert_int_equal(stat(seg, &st), 0);
    FILE *f = fopen(seg, "r+");
    assert_non_null(f);
    assert_int_equal(fseek(f, st.st_size / 2, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, st.st_size / 2, SEEK_SET), 0);
    fputc(c ^ 0x20, f);
    fclose(f);

    unlink(vd_path(v, "down"));
    start(v);
    assert_true(wait_lines(vd_path(v, "flaky.jsonl"), "\"source\":\"dm\"", n - 1, 30));
    assert_true(
        wait_self_value(vd_path(v, "self.jsonl"), "flaky", "out_total", (double)(n - 1), 10));
    assert_int_equal(seqs_missing(vd_path(v, "flaky.jsonl"), "dm", n), 1);
    double x = 0;
    assert_true(self_value(vd_path(v, "self.jsonl"), "flaky", "spool_corrupt_total", &x));
    assert_true(x == 1);
    assert_true(self_value(vd_path(v, "self.jsonl"), "flaky", "spool_skipped_bytes_total", &x));
    assert_true(x > 12);
    char *log = slurp(v->log);
    const char *hit = strstr(log, "is damaged at offset");
    assert_non_null(hit);
    assert_null(strstr(hit + 1, "is damaged at offset"));
    free(log);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* SIGTERM while the destination is down: vigild stops at once (no waiting
 * out retries) and the next start delivers what was spooled. */
static void test_sigterm_keeps_spool_for_next_start(void **state)
{
    struct vd *v = *state;
    setup_two_sinks(v, NULL);
    touch(vd_path(v, "down"));
    start(v);
    const size_t n = 2000;
    publish(v, "st", n);
    assert_true(wait_lines(vd_path(v, "steady.jsonl"), "\"source\":\"st\"", n, 30));
    double secs = 0;
    assert_int_equal(vd_stop(v, 10, &secs), 0);
    assert_true(secs < 3.0);
    char *log = slurp(v->log);
    assert_non_null(strstr(log, "undelivered events in the spool"));
    assert_null(strstr(log, "counted as dropped"));
    free(log);

    unlink(vd_path(v, "down"));
    start(v);
    assert_true(wait_lines(vd_path(v, "flaky.jsonl"), "\"source\":\"st\"", n, 30));
    assert_true(seqs_complete(vd_path(v, "flaky.jsonl"), "st", n));
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* Past spool.max_size the oldest events go, counted in vigil.self and said
 * in the log; what stays arrives, in order, after recovery. */
static void test_spool_max_size_drops_counted(void **state)
{
    struct vd *v = *state;
    setup_two_sinks(v, "    spool: { max_size: 64KiB }\n    queue: { max_events: 100 }\n");
    touch(vd_path(v, "down"));
    start(v);
    const size_t n = 5000; /* ~200 bytes each on disk: 1 MB against 64 KiB */
    publish(v, "mx", n);
    assert_true(wait_lines(vd_path(v, "steady.jsonl"), "\"source\":\"mx\"", n, 30));
    assert_true(wait_self_value(vd_path(v, "self.jsonl"), "flaky", "dropped_total", 1, 10));
    double bytes;
    assert_true(self_value(vd_path(v, "self.jsonl"), "flaky", "spool_bytes", &bytes));
    assert_true(bytes <= 64 * 1024);
    unlink(vd_path(v, "down"));
    /* Wait until nothing is held any more, then compare. */
    double held = 1, dropped = 0, out = 0;
    for (int i = 0; i < 200 && held > 0; i++) {
        usleep(100000);
        self_value(vd_path(v, "self.jsonl"), "flaky", "spool_events", &held);
    }
    assert_true(held == 0);
    sleep(1);
    assert_true(self_value(vd_path(v, "self.jsonl"), "flaky", "dropped_total", &dropped));
    assert_true(self_value(vd_path(v, "self.jsonl"), "flaky", "out_total", &out));
    size_t got = count_lines(vd_path(v, "flaky.jsonl"), "\"source\":\"mx\"");
    assert_true(dropped > 0);
    assert_int_equal((size_t)out, got);
    assert_int_equal(got + (size_t)dropped, n);
    char *log = slurp(v->log);
    assert_non_null(strstr(log, "over its max_size"));
    free(log);
    /* What arrived is the newest, in order. */
    FILE *f = fopen(vd_path(v, "flaky.jsonl"), "r");
    char *line = NULL;
    size_t cap = 0;
    unsigned long long prev = 0;
    while (getline(&line, &cap, f) != -1) {
        const char *s = strstr(line, "\"seq\":");
        unsigned long long seq = s ? strtoull(s + 6, NULL, 10) : 0;
        assert_true(seq > prev);
        prev = seq;
    }
    free(line);
    fclose(f);
    assert_int_equal(prev, n);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* Config errors in the delivery keys are reported at their position. */
static void test_delivery_config_errors(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, NULL,
                              "sinks:\n"
                              "  - plugin: test_capture\n"
                              "    path: @DIR@/x\n"
                              "    retry: { min_backoff: 10s, max_backoff: 1s }\n"
                              "    spool: { max_size: lots, pth: /x }\n"
                              "    batch: { max_events: 0 }\n"),
                     0);
    char *const argv[] = {VIGIL_BUILD_DIR "/vigild", "--check", "-c", v->cfg, NULL};
    char *err = NULL;
    assert_int_equal(run(argv, NULL, 0, NULL, &err, 30), 1);
    assert_non_null(strstr(err, "vigil.yaml:10:12: 'retry.min_backoff' is more than"));
    assert_non_null(strstr(err, "vigil.yaml:11:24: 'spool.max_size' must be a size"));
    assert_non_null(strstr(err, "vigil.yaml:11:30: unknown key 'pth' in 'spool' (valid keys: path, "
                                "max_size)"));
    assert_non_null(
        strstr(err, "vigil.yaml:12:26: 'batch.max_events' must be from 1 to 65536, not '0'"));
    free(err);
}

/* A spool folder that cannot be made stops the start with a clear error. */
static void test_unusable_spool_refused(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, NULL,
                              "sinks:\n"
                              "  - plugin: test_capture\n"
                              "    path: @DIR@/x\n"
                              "    spool: { path: @DIR@/afile/spool }\n"),
                     0);
    touch(vd_path(v, "afile"));
    assert_int_not_equal(vd_start(v), 0);
    char *log = slurp(v->log);
    assert_non_null(strstr(log, "cannot create the spool folder"));
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_outage_spools_and_recovers, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_kill9_while_draining_async, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_outage_async_sink, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_kill9_then_restart_delivers_spool, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_kill9_damaged_spool_loses_only_damage,
                                        vd_fixture_setup, vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_keeps_spool_for_next_start, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_spool_max_size_drops_counted, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_delivery_config_errors, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_unusable_spool_refused, vd_fixture_setup,
                                        vd_fixture_teardown),
    };
    return cmocka_run_group_tests_name("delivery", tests, NULL, NULL);
}

/* A fleet of two real vigild processes on loopback: an agent (gen ->
 * forward sink) and a central (bus.ingest -> file sink). What the agent's
 * source published reaches the central's file, every (host, source, seq),
 * through a central restart and a central that is not there yet.
 */
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

struct fleet {
    struct vd agent, central;
    int port;
};

static int setup(void **state)
{
    struct fleet *f = calloc(1, sizeof *f);
    f->port = free_loopback_port();
    char keys[128], body[1024];
    snprintf(keys, sizeof keys, "  ingest: tcp://127.0.0.1:%d\n", f->port);
    if (f->port < 0 || vd_setup_bus(&f->central, "500ms", keys,
                                    "sinks:\n"
                                    "  - plugin: file\n"
                                    "    match: [gen.]\n"
                                    "    path: @DIR@/central.jsonl\n"
                                    "  - plugin: test_capture\n"
                                    "    match: [vigil.self]\n"
                                    "    path: @DIR@/self.jsonl\n") != 0) {
        return -1;
    }
    snprintf(body, sizeof body,
             "sources:\n"
             "  - plugin: gen\n"
             "    name: g1\n"
             "    rate: 1000\n"
             "    count: 8000\n"
             "sinks:\n"
             "  - plugin: forward\n"
             "    match: [gen.]\n"
             "    endpoint: tcp://127.0.0.1:%d\n"
             "    timeout: 1s\n"
             "    retry: { min_backoff: 50ms, max_backoff: 500ms }\n"
             "  - plugin: test_capture\n"
             "    match: [vigil.self]\n"
             "    path: @DIR@/self.jsonl\n",
             f->port);
    if (vd_setup(&f->agent, "500ms", body) != 0) {
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fleet *f = *state;
    if (f) {
        vd_cleanup(&f->agent);
        vd_cleanup(&f->central);
        free(f);
    }
    return 0;
}

/* The agent starts before its central (events wait in the forward sink's
 * spool), the central comes, is stopped halfway and comes back: the
 * central's file has every seq, each at least once, and the duplicates are
 * the ones its ingest recognised or the few of a batch the stop cut. */
static void test_agent_to_central_through_restart(void **state)
{
    struct fleet *f = *state;
    assert_true(vd_started(&f->agent));
    sleep_ms(1500); /* no central yet: the agent spools */
    assert_true(vd_started(&f->central));
    const char *out = vd_path(&f->central, "central.jsonl");
    assert_true(wait_lines(out, "\"source\":\"g1\"", 3000, 20));
    assert_int_equal(vd_stop(&f->central, 10, NULL), 0);
    sleep_ms(1500); /* the agent times out, retries, spools */
    assert_true(vd_started(&f->central));
    assert_true(wait_lines(out, "\"source\":\"g1\"", 8000, 40));
    sleep_ms(1500); /* anything more that would come, comes */
    size_t dups = 0;
    if (!seqs_at_least_once(out, "g1", 8000, &dups)) {
        vd_dump_log(&f->agent);
        vd_dump_log(&f->central);
        fail_msg("the central's file does not hold every seq of the agent's source");
    }
    /* Only a batch cut by the stop can come twice (docs/fleet.md). */
    if (dups > 2000) {
        fail_msg("%zu duplicates: more than one write's worth", dups);
    }
    print_message("fleet: 8000 events through a central restart, %zu duplicates\n", dups);
    /* The agent's sink saw acks, and the central counted the agent. */
    double acked;
    assert_true(self_value(vd_path(&f->agent, "self.jsonl"), "forward", "acked_total", &acked));
    assert_true(acked >= 8000 - 1000);
    assert_true(wait_lines(vd_path(&f->central, "self.jsonl"), "\"stage\":\"agent\"", 1, 10));
    assert_int_equal(vd_stop(&f->agent, 10, NULL), 0);
    assert_int_equal(vd_stop(&f->central, 10, NULL), 0);
}

/* The central is killed with SIGKILL while events stream: an ack means its
 * file sink had the events on disk (the ingest waits for every sink to pass
 * the batch's barrier), so whatever the agent dropped after an ack is in
 * the central's file after the restart. */
static void test_central_killed_loses_nothing(void **state)
{
    struct fleet *f = *state;
    assert_true(vd_started(&f->central));
    assert_true(vd_started(&f->agent));
    const char *out = vd_path(&f->central, "central.jsonl");
    assert_true(wait_lines(out, "\"source\":\"g1\"", 2500, 20));
    vd_kill9(&f->central);
    sleep_ms(1500);
    assert_true(vd_started(&f->central));
    assert_true(wait_lines(out, "\"source\":\"g1\"", 5000, 20));
    vd_kill9(&f->central); /* once more, later in the run */
    sleep_ms(500);
    assert_true(vd_started(&f->central));
    assert_true(wait_lines(out, "\"source\":\"g1\"", 8000, 40));
    sleep_ms(1500);
    size_t dups = 0;
    if (!seqs_at_least_once(out, "g1", 8000, &dups)) {
        vd_dump_log(&f->central);
        fail_msg("events the central acknowledged are missing after its SIGKILL");
    }
    print_message("fleet: 8000 events through two SIGKILLs of the central, %zu duplicates\n", dups);
    assert_int_equal(vd_stop(&f->agent, 10, NULL), 0);
}

/* The central reloads three times while the agent streams, each reload
 * replacing its file sink (another file): the sink's successor goes on with
 * its barrier progress, so the agent's batches keep being acknowledged, and
 * every event reaches one of the two files. */
static void test_central_reload_replaces_sink(void **state)
{
    struct fleet *f = *state;
    assert_true(vd_started(&f->central));
    assert_true(vd_started(&f->agent));
    const char *a = vd_path(&f->central, "central.jsonl");
    assert_true(wait_lines(a, "\"source\":\"g1\"", 1000, 20));
    char keys[128], body[512];
    snprintf(keys, sizeof keys, "  ingest: tcp://127.0.0.1:%d\n", f->port);
    for (int i = 1; i <= 3; i++) {
        snprintf(body, sizeof body,
                 "sinks:\n"
                 "  - plugin: file\n"
                 "    match: [gen.]\n"
                 "    path: @DIR@/central%s.jsonl\n"
                 "  - plugin: test_capture\n"
                 "    match: [vigil.self]\n"
                 "    path: @DIR@/self.jsonl\n",
                 i % 2 ? "2" : "");
        assert_int_equal(vd_rewrite_bus(&f->central, "500ms", keys, body), 0);
        assert_int_equal(kill(f->central.pid, SIGHUP), 0);
        assert_true(wait_lines(f->central.log, "sinks 1 kept, 1 replaced", (size_t)i, 20));
        sleep_ms(1000);
    }
    const char *b = vd_path(&f->central, "central2.jsonl");
    double t0 = now_s();
    while (count_lines(a, "\"source\":\"g1\"") + count_lines(b, "\"source\":\"g1\"") < 8000 &&
           now_s() - t0 < 40) {
        sleep_ms(200);
    }
    sleep_ms(1500);
    const char *both = vd_path(&f->central, "both.jsonl");
    char *x = slurp(a), *y = slurp(b);
    FILE *o = fopen(both, "w");
    assert_non_null(o);
    fputs(x ? x : "", o);
    fputs(y ? y : "", o);
    fclose(o);
    free(x);
    free(y);
    size_t dups = 0;
    if (!seqs_at_least_once(both, "g1", 8000, &dups)) {
        vd_dump_log(&f->central);
        fail_msg("events are missing after the central's reloads");
    }
    print_message("fleet: 8000 events through three reloads of the central, %zu duplicates\n",
                  dups);
    assert_true(dups <= 2000);
    assert_int_equal(vd_stop(&f->agent, 10, NULL), 0);
    assert_int_equal(vd_stop(&f->central, 10, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_agent_to_central_through_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_central_killed_loses_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_central_reload_replaces_sink, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

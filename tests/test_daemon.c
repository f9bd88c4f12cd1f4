/* Integration tests: the real vigild from the build tree, real plugins, the
 * real bus over ipc, and the real tools. Each test gets its own folder and
 * endpoints (harness.c), so nothing leaks between tests.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include <cmocka.h>

#include "event.h"
#include "harness.h"

/* gen (5,000 events at 20,000/s) -> bus -> a sink inside the daemon, the
 * bus having `bus_keys`: every event arrives, in order, once. The daemon is
 * left running for the caller to look at its log, and stopped after. */
static void gen_arrives_gapless(struct vd *v, const char *bus_keys, const char *labels)
{
    char body[1024];
    snprintf(body, sizeof body,
             "sources:\n"
             "  - plugin: gen\n"
             "    name: g1\n"
             "    rate: 20000\n"
             "    count: 5000\n"
             "%s"
             "sinks:\n"
             "  - plugin: test_capture\n"
             "    match: gen.\n"
             "    path: @DIR@/out.jsonl\n",
             labels ? labels : "");
    assert_int_equal(vd_setup_bus(v, NULL, bus_keys, body), 0);
    if (vd_start(v) != 0) {
        vd_dump_log(v);
        fail_msg("vigild did not start");
    }
    const char *out = vd_path(v, "out.jsonl");
    assert_true(wait_lines(out, "\"topic\":\"gen.g1\"", 5000, 30));
    assert_true(seqs_complete(out, "g1", 5000));
    assert_true(json_lines_valid(out));
}

static void test_gen_events_arrive_gapless(void **state)
{
    struct vd *v = *state;
    gen_arrives_gapless(v, NULL,
                        "    labels: { quote: 'a \"b\" \\\\ c', utf8: \"h\\u00e9llo \\u65e5\" }\n");
    /* The default window delays events too: the daemon says so. */
    assert_int_equal(count_lines(v->log, "; bus.coalesce 300 us"), 1);
    double secs;
    assert_int_equal(vd_stop(v, 10, &secs), 0);
}

/* The same with the bus coalescing (bus.coalesce): the daemon says so when
 * it starts, and still every event arrives, in order, once. */
static void test_coalescing_bus_loses_nothing(void **state)
{
    struct vd *v = *state;
    gen_arrives_gapless(v, "  coalesce: 2ms\n", NULL);
    assert_int_equal(count_lines(v->log, "; bus.coalesce 2000 us"), 1);
    double secs;
    assert_int_equal(vd_stop(v, 10, &secs), 0);
}

/* A sink that asks for retries still gets everything, in order. */
static void test_sink_retry_loses_nothing(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, NULL,
                              "sources:\n"
                              "  - { plugin: gen, name: g2, rate: 2000, count: 1000 }\n"
                              "sinks:\n"
                              "  - plugin: test_capture\n"
                              "    match: [gen.g2]\n"
                              "    retry_first: 3\n"
                              "    path: @DIR@/out.jsonl\n"),
                     0);
    assert_int_equal(vd_start(v), 0);
    const char *out = vd_path(v, "out.jsonl");
    assert_true(wait_lines(out, "gen.g2", 1000, 30));
    assert_true(seqs_complete(out, "g2", 1000));
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* vigil-pub: a pipe of 10,000 lines arrives whole, one event per message
 * and in batches; a bad line is reported with its number and makes the exit
 * status 1. */
static void test_vigil_pub_events_arrive(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, NULL,
                              "sinks:\n"
                              "  - plugin: test_capture\n"
                              "    match: test.\n"
                              "    path: @DIR@/out.jsonl\n"),
                     0);
    assert_int_equal(vd_start(v), 0);
    size_t n = 10000, cap = n * 80, len = 0;
    char *in = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(in + len, cap - len,
                                "{\"labels\":{\"i\":\"%zu\"},\"values\":{\"x\":%zu.5}}\n", i, i);
    }
    char *const argv[] = {VIGIL_BUILD_DIR "/vigil-pub", "-c", v->cfg, "-t", "test.pub", NULL};
    char *err = NULL;
    int rc = run(argv, in, len, NULL, &err, 60);
    if (rc != 0) {
        fprintf(stderr, "vigil-pub: %s\n", err);
    }
    assert_int_equal(rc, 0);
    free(err);
    const char *out = vd_path(v, "out.jsonl");
    assert_true(wait_lines(out, "\"topic\":\"test.pub\"", n, 30));
    assert_true(seqs_complete(out, "vigil-pub", n));

    /* The same lines in batches of up to 64 events per message. */
    char *const argvb[] = {VIGIL_BUILD_DIR "/vigil-pub",
                           "-c",
                           v->cfg,
                           "-t",
                           "test.pub",
                           "--batch",
                           "64",
                           "--source",
                           "pubb",
                           NULL};
    rc = run(argvb, in, len, NULL, &err, 60);
    if (rc != 0) {
        fprintf(stderr, "vigil-pub --batch: %s\n", err);
    }
    assert_int_equal(rc, 0);
    free(err);
    assert_true(wait_lines(out, "\"source\":\"pubb\"", n, 30));
    assert_true(seqs_complete(out, "pubb", n));
    assert_int_equal(count_lines(out, "\"source\":\"pubb\""), n);

    const char bad[] = "{\"values\":{\"x\":1}}\nnot json\n[1,2]\n{\"values\":{\"y\":\"str\"}}\n";
    char *const argv2[] = {
        VIGIL_BUILD_DIR "/vigil-pub", "-e", v->pub, "-t", "test.bad", "--source", "pub2", NULL};
    rc = run(argv2, bad, sizeof bad - 1, NULL, &err, 30);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "stdin:2:"));
    assert_non_null(strstr(err, "stdin:3:"));
    assert_non_null(strstr(err, "stdin:4:"));
    assert_null(strstr(err, "stdin:1:"));
    free(err);
    assert_true(wait_lines(out, "\"source\":\"pub2\"", 1, 10));
    assert_int_equal(count_lines(out, "\"source\":\"pub2\""), 1);
    free(in);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* Random bytes on the publish endpoint are counted and dropped; vigild keeps
 * serving. */
static void test_malformed_counted_not_fatal(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, "200ms",
                              "sinks:\n"
                              "  - plugin: test_capture\n"
                              "    match: [test., vigil.self]\n"
                              "    path: @DIR@/out.jsonl\n"),
                     0);
    assert_int_equal(vd_start(v), 0);
    void *zctx = zmq_ctx_new();
    void *push = zmq_socket(zctx, ZMQ_PUSH);
    int linger = 5000;
    zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_connect(push, v->pub), 0);
    unsigned char junk[512];
    srand(42);
    for (size_t i = 0; i < sizeof junk; i++) {
        junk[i] = (unsigned char)rand();
    }
    zmq_send(push, junk, sizeof junk, 0);     /* one frame */
    zmq_send(push, "test.x", 6, ZMQ_SNDMORE); /* random body */
    zmq_send(push, junk, sizeof junk, 0);
    zmq_send(push, "bad topic", 9, ZMQ_SNDMORE); /* space in topic */
    zmq_send(push, "\x80", 1, 0);
    /* Then a good event, built as a source would. */
    struct vigil_event_builder b;
    vigil_event_builder_init(&b);
    vigil_event_begin(&b, "test.ok");
    vigil_event_add_label(&b, "k", "v");
    const char *body;
    size_t len;
    assert_int_equal(vigil_event_finish(&b, "h", "after-junk", 1, &body, &len), 0);
    zmq_send(push, "test.ok", 7, ZMQ_SNDMORE);
    zmq_send(push, body, len, 0);
    vigil_event_builder_fini(&b);
    zmq_close(push);
    zmq_ctx_term(zctx);

    const char *out = vd_path(v, "out.jsonl");
    assert_true(wait_lines(out, "\"source\":\"after-junk\"", 1, 10));
    assert_true(wait_lines(out, "\"malformed_total\":3,", 1, 10));
    assert_int_equal(kill(v->pid, 0), 0);
    char *log = slurp(v->log);
    assert_non_null(strstr(log, "malformed"));
    free(log);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* A plugin's own counters (api->counter_new) reach its instance's
 * vigil.self event beside the host's: the cgroups source's skipped_total. */
static void test_plugin_counters_in_self(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, "200ms",
                              "sources:\n"
                              "  - plugin: cgroups\n"
                              "    interval: 200ms\n"
                              "    max_cgroups: 1\n"
                              "sinks:\n"
                              "  - plugin: test_capture\n"
                              "    match: [vigil.self]\n"
                              "    path: @DIR@/out.jsonl\n"),
                     0);
    assert_int_equal(vd_start(v), 0);
    const char *out = vd_path(v, "out.jsonl");
    assert_true(wait_lines(out, "\"plugin\":\"cgroups\"", 1, 10));
    assert_true(wait_lines(out, "\"skipped_total\":", 1, 10));
    char *lines = slurp(out);
    const char *at = strstr(lines, "\"skipped_total\":");
    /* In the cgroups instance's own event, after the host's values. */
    const char *start = at;
    while (start > lines && start[-1] != '\n') {
        start--;
    }
    const char *end = strchr(at, '\n');
    char line[4096];
    snprintf(line, sizeof line, "%.*s", (int)(end ? end - start : (long)strlen(start)), start);
    if (!strstr(line, "\"plugin\":\"cgroups\"") || !strstr(line, "\"errors_total\":")) {
        fail_msg("skipped_total not in the cgroups instance's vigil.self: %s", line);
    }
    free(lines);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

struct refusal {
    const char *plugin;
    const char *section;
    const char *expect1, *expect2;
};

/* Each broken plugin is refused, by path, and vigild starts nothing. */
static void test_loader_refusals(void **state)
{
    struct vd *v = *state;
    static const struct refusal cases[] = {
        {"test_badabi", "sources", "test_badabi.so has plugin ABI 999", "this vigild has ABI 2"},
        {"test_badname", "sources", "test_badname.so declares the name 'someone_else'", NULL},
        {"test_nosym", "sources", "test_nosym.so does not export the symbol 'vigil_plugin'", NULL},
        {"test_badkind", "sources", "test_badkind.so is a sink plugin", NULL},
        {"test_notelf", "sources", "cannot load %s/test_notelf.so", "ldd"},
        {"no_such_plugin", "sinks", "%s/no_such_plugin.so", "looked in %s"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "%s:\n  - plugin: %s\n", cases[i].section, cases[i].plugin);
        vd_cleanup(v);
        assert_int_equal(vd_setup(v, NULL, body), 0);
        /* A %s in what is expected is the plugin folder, the harness's. */
        char want1[PATH_MAX + 128], want2[PATH_MAX + 128] = "";
        snprintf(want1, sizeof want1, cases[i].expect1, v->plugins);
        if (cases[i].expect2) {
            snprintf(want2, sizeof want2, cases[i].expect2, v->plugins);
        }
        char *const argv[] = {VIGIL_BUILD_DIR "/vigild", "--check", "-c", v->cfg, NULL};
        char *err = NULL;
        assert_int_equal(run(argv, NULL, 0, NULL, &err, 30), 1);
        char where[PATH_MAX + 32];
        snprintf(where, sizeof where, "%s:8:13: ", v->cfg); /* the plugin: value */
        if (!strstr(err, where) || !strstr(err, want1) || !strstr(err, want2)) {
            fail_msg("%s: unexpected message: %s", cases[i].plugin, err);
        }
        free(err);
        /* And the daemon itself refuses to start. */
        char *const argv2[] = {VIGIL_BUILD_DIR "/vigild", "-c", v->cfg, NULL};
        assert_int_equal(run(argv2, NULL, 0, NULL, &err, 30), 1);
        assert_non_null(strstr(err, want1));
        assert_null(strstr(err, "started on host"));
        free(err);
    }
}

/* --check names file:line:col for config errors and the plugin's keys. */
static void test_check_reports_positions(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, "10",
                              "sources:\n"
                              "  - plugin: gen\n"
                              "    rat: 5\n"
                              "  - plugin: gen\n"
                              "    name: g2\n"
                              "    rate: lots\n"),
                     0);
    char *const argv[] = {VIGIL_BUILD_DIR "/vigild", "--check", "-c", v->cfg, NULL};
    char *err = NULL;
    assert_int_equal(run(argv, NULL, 0, NULL, &err, 30), 1);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s:6:13: ", v->cfg); /* self.interval: 10 (no unit) */
    if (!strstr(err, want)) {
        fail_msg("no error at %s in: %s", want, err);
    }
    snprintf(want, sizeof want, "%s:9:", v->cfg); /* rat: unknown key */
    if (!strstr(err, want) || !strstr(err, "rat")) {
        fail_msg("no error at %s about 'rat' in: %s", want, err);
    }
    snprintf(want, sizeof want, "%s:12:11: ", v->cfg); /* rate: lots */
    if (!strstr(err, want)) {
        fail_msg("no error at %s in: %s", want, err);
    }
    free(err);
    /* A valid config checks clean. */
    vd_cleanup(v);
    assert_int_equal(vd_setup(v, NULL, "sources:\n  - plugin: gen\n"), 0);
    char *out = NULL;
    char *const argv2[] = {VIGIL_BUILD_DIR "/vigild", "--check", "-c", v->cfg, NULL};
    assert_int_equal(run(argv2, NULL, 0, &out, &err, 30), 0);
    assert_non_null(strstr(out, "configuration is valid"));
    free(out);
    free(err);
}

/* SIGTERM under load: exit 0 quickly, and every event a source published
 * reached the sink (nothing in flight is lost). */
static void test_sigterm_clean_and_lossless(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, NULL,
                              "sources:\n"
                              "  - { plugin: gen, name: load, rate: 100000 }\n"
                              "sinks:\n"
                              "  - { plugin: test_capture, match: gen., path: @DIR@/out.jsonl }\n"),
                     0);
    assert_int_equal(vd_start(v), 0);
    const char *out = vd_path(v, "out.jsonl");
    assert_true(wait_lines(out, "gen.load", 20000, 30));
    double secs = 0;
    assert_int_equal(vd_stop(v, 10, &secs), 0);
    assert_true(secs < 5.0);
    size_t n = count_lines(out, "\"source\":\"load\"");
    assert_true(n >= 20000);
    assert_true(seqs_complete(out, "load", n));
    char *log = slurp(v->log);
    assert_non_null(strstr(log, "stopped"));
    assert_null(strstr(log, "dropped"));
    free(log);
}

/* vigil-tap prints live JSON lines; -n ends it; --timeout without events
 * is exit 1. */
static void test_vigil_tap(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, NULL, "sources:\n  - { plugin: gen, name: t, rate: 200 }\n"), 0);
    assert_int_equal(vd_start(v), 0);
    char *const argv[] = {VIGIL_BUILD_DIR "/vigil-tap",
                          "-c",
                          v->cfg,
                          "-t",
                          "gen.",
                          "-n",
                          "20",
                          "--timeout",
                          "20s",
                          NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(run(argv, NULL, 0, &out, &err, 30), 0);
    size_t lines = 0;
    for (const char *p = out; (p = strstr(p, "\"topic\":\"gen.t\"")); p++) {
        lines++;
    }
    assert_int_equal(lines, 20);
    free(out);
    free(err);
    char *const argv2[] = {
        VIGIL_BUILD_DIR "/vigil-tap", "-e", v->sub, "-t", "nothing.", "--timeout", "500ms", NULL};
    assert_int_equal(run(argv2, NULL, 0, &out, &err, 30), 1);
    assert_string_equal(out, "");
    free(out);
    free(err);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* A second vigild on the same ipc endpoints is refused instead of silently
 * taking them over. */
static void test_endpoint_in_use_refused(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, NULL, "sources:\n  - { plugin: gen, rate: 1 }\n"), 0);
    assert_int_equal(vd_start(v), 0);
    char *const argv[] = {VIGIL_BUILD_DIR "/vigild", "-c", v->cfg, NULL};
    char *err = NULL;
    assert_int_equal(run(argv, NULL, 0, NULL, &err, 30), 1);
    assert_non_null(strstr(err, "in use by another running process"));
    free(err);
    assert_int_equal(kill(v->pid, 0), 0);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* The rules engine in the daemon: events in through vigil-pub, verdicts
 * out to a sink and to vigil-tap, counters in vigil.self. */
static void test_rules_end_to_end(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, "200ms",
                              "rules:\n"
                              "  - name: hot\n"
                              "    kind: threshold\n"
                              "    match: test.cpu\n"
                              "    expr: values.cpu > 90\n"
                              "    severity: critical\n"
                              "    message: '{labels.box} is hot ({values.cpu})'\n"
                              "  - name: guests\n"
                              "    kind: policy\n"
                              "    match: test.access\n"
                              "    rules:\n"
                              "      - allow: { subject: 'admin:*' }\n"
                              "sinks:\n"
                              "  - plugin: test_capture\n"
                              "    match: [alert., vigil.self]\n"
                              "    path: @DIR@/out.jsonl\n"),
                     0);
    if (vd_start(v) != 0) {
        vd_dump_log(v);
        fail_msg("vigild did not start");
    }
    const char *out = vd_path(v, "out.jsonl");
    char *const tap[] = {VIGIL_BUILD_DIR "/vigil-tap",
                         "-e",
                         v->sub,
                         "-t",
                         "alert.",
                         "-n",
                         "3",
                         "--timeout",
                         "20s",
                         NULL};
    /* The tap runs in the background; give its subscription time to land. */
    char tap_out[PATH_MAX + 320];
    snprintf(tap_out, sizeof tap_out, "%s/tap.jsonl", v->dir);
    pid_t tp = fork();
    if (tp == 0) {
        if (!freopen(tap_out, "w", stdout)) {
            _exit(126);
        }
        execv(tap[0], tap);
        _exit(127);
    }
    struct timespec ts = {0, 500000000};
    nanosleep(&ts, NULL);
    const char in[] = "{\"labels\":{\"box\":\"b1\"},\"values\":{\"cpu\":95}}\n"
                      "{\"labels\":{\"box\":\"b1\"},\"values\":{\"cpu\":97}}\n"
                      "{\"labels\":{\"box\":\"b1\"},\"values\":{\"cpu\":50}}\n";
    char *const pub[] = {VIGIL_BUILD_DIR "/vigil-pub", "-c", v->cfg, "-t", "test.cpu", NULL};
    assert_int_equal(run(pub, in, sizeof in - 1, NULL, NULL, 30), 0);
    const char acc[] = "{\"labels\":{\"subject\":\"admin:al\",\"action\":\"x\"}}\n"
                       "{\"labels\":{\"subject\":\"guest:bo\",\"action\":\"x\"}}\n";
    char *const pub2[] = {
        VIGIL_BUILD_DIR "/vigil-pub", "-c", v->cfg, "-t", "test.access", "--source", "p2", NULL};
    assert_int_equal(run(pub2, acc, sizeof acc - 1, NULL, NULL, 30), 0);
    int st;
    assert_int_equal(waitpid(tp, &st, 0), tp);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(wait_lines(out, "\"topic\":\"alert.", 3, 10));
    assert_int_equal(count_lines(tap_out, "\"topic\":\"alert.fired\""), 1);
    assert_int_equal(count_lines(tap_out, "\"topic\":\"alert.resolved\""), 1);
    assert_int_equal(count_lines(tap_out, "\"topic\":\"alert.violation\""), 1);
    assert_int_equal(count_lines(tap_out, "\"message\":\"b1 is hot (95)\""), 1);
    assert_int_equal(count_lines(tap_out, "guest:bo"), 1);
    assert_int_equal(count_lines(out, "\"topic\":\"alert.fired\""), 1);
    /* vigil.self reports the rules stage and each rule. */
    assert_true(wait_lines(out, "\"stage\":\"rule\",\"rule\":\"hot\"", 1, 10));
    assert_true(wait_lines(out, "\"fired_total\":1,", 1, 10));
    assert_true(json_lines_valid(tap_out));
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* gen at 5,000 events/s for 10 s; one outside subscriber that never reads
 * (a hung script) beside one that does: the reading one misses nothing from
 * its first event on, and the daemon's own sink gets every event. */
static void test_stalled_subscriber_silences_no_one(void **state)
{
    struct vd *v = *state;
    const unsigned n = 50000;
    assert_int_equal(vd_setup(v, NULL,
                              "sources:\n  - plugin: gen\n    name: g1\n    rate: 5000\n"
                              "    count: 50000\n"
                              "sinks:\n  - plugin: test_capture\n    match: gen.\n"
                              "    path: @DIR@/out.jsonl\n"),
                     0);
    assert_true(vd_started(v));
    void *ctx = zmq_ctx_new();
    void *stalled = zmq_socket(ctx, ZMQ_SUB), *reader = zmq_socket(ctx, ZMQ_SUB);
    int ten = 10, linger = 0, timeout = 5000;
    zmq_setsockopt(stalled, ZMQ_RCVHWM, &ten, sizeof ten);
    zmq_setsockopt(stalled, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(reader, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(reader, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    assert_int_equal(zmq_connect(stalled, v->sub), 0);
    assert_int_equal(zmq_connect(reader, v->sub), 0);
    zmq_setsockopt(stalled, ZMQ_SUBSCRIBE, "gen.", 4);
    zmq_setsockopt(reader, ZMQ_SUBSCRIBE, "gen.", 4);

    uint64_t first = 0, last = 0, gaps = 0;
    char topic[256], body[4096];
    while (last < n) {
        int tl = zmq_recv(reader, topic, sizeof topic, 0);
        int bl = tl >= 0 ? zmq_recv(reader, body, sizeof body, 0) : -1;
        if (tl < 0 || bl < 0 || bl > (int)sizeof body) {
            break; /* 5 s without an event */
        }
        struct vigil_event_head h;
        const char *why;
        assert_int_equal(
            vigil_event_check(topic, (size_t)tl, body, (size_t)bl, sizeof body, &h, &why), 0);
        if (!first) {
            first = h.seq;
        } else if (h.seq != last + 1) {
            gaps += h.seq > last ? h.seq - last - 1 : 1;
        }
        last = h.seq;
    }
    zmq_close(stalled);
    zmq_close(reader);
    zmq_ctx_term(ctx);
    if (last != n || gaps) {
        fail_msg("the reading subscriber got seq %llu..%llu with %llu missing",
                 (unsigned long long)first, (unsigned long long)last, (unsigned long long)gaps);
    }
    assert_true(first < n / 2); /* it read for most of the 10 s */
    const char *out = vd_path(v, "out.jsonl");
    assert_true(wait_lines(out, "\"topic\":\"gen.g1\"", n, 30));
    assert_true(seqs_complete(out, "g1", n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stalled_subscriber_silences_no_one, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_gen_events_arrive_gapless, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_coalescing_bus_loses_nothing, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_sink_retry_loses_nothing, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_vigil_pub_events_arrive, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_plugin_counters_in_self, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_counted_not_fatal, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_loader_refusals, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_check_reports_positions, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_clean_and_lossless, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_vigil_tap, vd_fixture_setup, vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_endpoint_in_use_refused, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_rules_end_to_end, vd_fixture_setup,
                                        vd_fixture_teardown),
    };
    return cmocka_run_group_tests_name("daemon", tests, NULL, NULL);
}

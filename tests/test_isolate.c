/* isolate: process, end to end: the real vigild runs sources in plugin
 * hosts (child processes) built to segfault, abort, hang and leak, beside
 * an in-process gen; each is restarted as documented while gen's events
 * keep flowing without a gap. Also --check of the isolation keys and of an
 * isolated plugin's own errors, and a plugin host that dies with vigild.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

/* The pid in the last "plugin host started (pid N)" line of `component`,
 * or 0. */
static pid_t host_pid(const struct vd *v, const char *component)
{
    char *log = slurp(v->log);
    char needle[256];
    snprintf(needle, sizeof needle, "[%s] plugin host started (pid ", component);
    pid_t pid = 0;
    for (const char *p = log ? strstr(log, needle) : NULL; p; p = strstr(p + 1, needle)) {
        pid = (pid_t)atoi(p + strlen(needle));
    }
    free(log);
    return pid;
}

/* Gone, or a zombie nobody reaps (a container's init may not). */
static bool process_gone(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *stat = slurp(path);
    const char *paren = stat ? strrchr(stat, ')') : NULL;
    bool gone = !stat || (paren && paren[1] == ' ' && paren[2] == 'Z');
    free(stat);
    return gone;
}

static bool wait_gone(pid_t pid, int timeout_s)
{
    double deadline = now_s() + timeout_s;
    while (!process_gone(pid)) {
        if (now_s() > deadline) {
            return false;
        }
        sleep_ms(20);
    }
    return true;
}

/* A crash, an abort, a hang and a leak past memory_max, each in a plugin
 * host of its own: each is logged with its signal or cause, counted and
 * restarted after 1 s, then 2 s; meanwhile the in-process gen (g1) and an
 * isolated gen (g2) publish every event, in order, and the bus sees seq
 * resets but no loss. */
static void test_failures_restart_others_flow(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, "500ms",
                              "sources:\n"
                              "  - { plugin: gen, name: g1, rate: 500, count: 3500 }\n"
                              "  - { plugin: gen, name: g2, rate: 500, count: 1500,"
                              " isolate: process }\n"
                              "  - { plugin: test_segv, name: segv, interval: 100ms,"
                              " isolate: process }\n"
                              "  - { plugin: test_abort, name: abrt, interval: 100ms,"
                              " isolate: process }\n"
                              "  - { plugin: test_spin, name: spin, interval: 100ms,"
                              " isolate: process, hang_timeout: 500ms }\n"
                              "  - { plugin: test_leak, name: leak, interval: 50ms,"
                              " isolate: process, memory_max: 64MiB }\n"
                              "sinks:\n"
                              "  - plugin: test_capture\n"
                              "    path: @DIR@/out.jsonl\n"),
                     0);
    assert_true(vd_started(v));
    const char *out = vd_path(v, "out.jsonl");
    /* Two restarts each: 1 s and 2 s of backoff after the first failures. */
    assert_true(wait_self_value(out, "segv", "restarts_total", 2, 20));
    assert_true(wait_self_value(out, "abrt", "restarts_total", 2, 20));
    assert_true(wait_self_value(out, "leak", "restarts_total", 2, 20));
    assert_true(wait_self_value(out, "spin", "restarts_total", 2, 20));
    assert_true(wait_self_value(out, "segv", "crashes_total", 2, 10));
    assert_true(wait_self_value(out, "abrt", "crashes_total", 2, 10));
    assert_true(wait_self_value(out, "leak", "crashes_total", 2, 10));
    assert_true(wait_self_value(out, "spin", "hangs_total", 2, 10));
    double x = -1;
    assert_true(self_value(out, "spin", "crashes_total", &x));
    assert_true(x == 0); /* killed by us for hanging: a hang, not a crash */

    const char *log = v->log;
    assert_true(count_lines(log, "[source:test_segv/segv] plugin host (pid ") >= 2);
    assert_true(count_lines(log, "was killed by signal SIGSEGV") >= 2);
    assert_true(count_lines(log, "was killed by signal SIGABRT") >= 4); /* abort and leak */
    assert_true(count_lines(log, "[source:test_spin/spin] plugin host (pid ") >= 2);
    assert_true(count_lines(log, "collect() did not return within hang_timeout (0.5 s)") >= 2);
    /* The plugin's own log line, from the child, with the instance's prefix. */
    assert_true(count_lines(log, "[source:test_leak/leak] cannot allocate 16 MiB more") >= 2);
    assert_true(count_lines(log, "[source:test_abort/abrt] plugin host (pid ") >= 2);
    assert_true(count_lines(log, "restarting in 1 s") >= 4);
    assert_true(count_lines(log, "restarting in 2 s") >= 4);

    /* The others never noticed. */
    assert_true(wait_lines(out, "\"topic\":\"gen.g1\"", 3500, 30));
    assert_true(wait_lines(out, "\"topic\":\"gen.g2\"", 1500, 10));
    assert_true(seqs_complete(out, "g1", 3500));
    assert_true(seqs_complete(out, "g2", 1500));
    assert_true(wait_self_value(out, "g2", "child_up", 1, 5));
    sleep_ms(1200); /* a self report after the last events */
    assert_true(self_value_of(out, "\"stage\":\"bus\"", "lost_total", &x));
    assert_true(x == 0);
    assert_true(self_value_of(out, "\"stage\":\"bus\"", "seq_resets_total", &x));
    assert_true(x >= 1);

    double secs;
    assert_int_equal(vd_stop(v, 20, &secs), 0);
    /* The private folder of the sockets is gone with them. */
    struct stat st;
    assert_int_not_equal(stat(vd_path(v, "state/isolate"), &st), 0);
}

/* kill -9 vigild: its plugin hosts die too (PR_SET_PDEATHSIG). */
static void test_child_dies_with_vigild(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, NULL,
                              "sources:\n"
                              "  - { plugin: gen, name: g, rate: 10, isolate: process }\n"
                              "sinks:\n"
                              "  - { plugin: test_capture, path: @DIR@/out.jsonl }\n"),
                     0);
    assert_true(vd_started(v));
    assert_true(wait_lines(vd_path(v, "out.jsonl"), "\"topic\":\"gen.g\"", 1, 10));
    pid_t child = host_pid(v, "source:gen/g");
    assert_true(child > 0);
    assert_false(process_gone(child));
    vd_kill9(v);
    assert_true(wait_gone(child, 5));
}

/* The isolation keys' errors at their FILE:LINE:COL (the body starts on
 * line 7), and an isolated plugin's own error found by its init() in the
 * plugin host at the same place as in-process. */
static void test_check_refuses(void **state)
{
    struct vd *v = *state;
    static const struct bad_conf cases[] = {
        {"sources:\n  - plugin: gen\n    isolate: thread\n",
         ":9:14: ", "'isolate' must be one of: process"},
        {"sinks:\n  - plugin: test_capture\n    path: /tmp/x\n    isolate: process\n",
         ":10:5: ", "'isolate' is for sources"},
        {"sources:\n  - plugin: gen\n    hang_timeout: 5s\n",
         ":9:5: ", "'hang_timeout' needs 'isolate: process'"},
        {"sources:\n  - plugin: gen\n    isolate: none\n    memory_max: 1GiB\n",
         ":10:5: ", "'memory_max' needs 'isolate: process'"},
        {"sources:\n  - plugin: gen\n    isolate: process\n    memory_max: lots\n",
         ":10:17: ", "'memory_max' must be a size"},
        {"sources:\n  - plugin: gen\n    isolate: process\n    hang_timeout: 0s\n",
         ":10:19: ", "'hang_timeout' must be more than 0"},
        {"sources:\n  - plugin: gen\n    isolate: process\n    rate: -1\n",
         ":10:11: ", "rate must be above 0"},
    };
    assert_true(vd_check_refuses_all(v, cases, sizeof cases / sizeof cases[0]));

    vd_cleanup(v);
    assert_int_equal(vd_setup(v, NULL,
                              "sources:\n"
                              "  - { plugin: gen, isolate: process, hang_timeout: 3s,"
                              " memory_max: 256MiB }\n"),
                     0);
    char *const argv[] = {VIGIL_BUILD_DIR "/vigild", "--check", "-c", v->cfg, NULL};
    char *out = NULL, *err = NULL;
    int rc = run(argv, NULL, 0, &out, &err, 30);
    if (rc != 0) {
        fprintf(stderr, "vigild --check: %s%s", out, err);
    }
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "configuration is valid"));
    free(out);
    free(err);
}

int main(void)
{
    /* Under the sanitizers, a plugin host's SIGSEGV and SIGABRT must stay
     * signals (not ASan's report and exit 1), and an allocation past
     * memory_max must fail as malloc does, not end the process. */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%shandle_segv=0:handle_abort=0:allocator_may_return_null=1",
             asan ? asan : "", asan && asan[0] ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_failures_restart_others_flow, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_child_dies_with_vigild, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_check_refuses, vd_fixture_setup, vd_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

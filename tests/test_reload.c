/* Reload (SIGHUP, vigild --reload) with the real vigild: unchanged rules
 * keep their state while changed and removed ones resolve, a replaced sink
 * hands its queue and spool to its successor under load with nothing lost
 * or doubled, a refused reload leaves the running pipeline whole, and only
 * the sources whose config changed restart.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* SIGHUP, then waits for the n-th "reloaded"/"refused" line. */
static bool hup(struct vd *v, const char *line, size_t n)
{
    if (kill(v->pid, SIGHUP) != 0) {
        return false;
    }
    if (!wait_lines(v->log, line, n, 20)) {
        vd_dump_log(v);
        return false;
    }
    return true;
}

/* How many lines of `path` hold both needles. */
static size_t count_both(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return 0;
    }
    char *line = NULL;
    size_t cap = 0, n = 0;
    while (getline(&line, &cap, f) != -1) {
        n += strstr(line, a) && strstr(line, b);
    }
    free(line);
    fclose(f);
    return n;
}

/* ---- Rules --------------------------------------------------------------------- */

#define RULES_SINK                                                                                 \
    "sinks:\n  - plugin: test_capture\n    name: cap\n    match: [gen., alert.]\n"                 \
    "    path: @DIR@/out.jsonl\n"
#define RULES_SOURCE "sources:\n  - plugin: gen\n    name: g\n    rate: 200\n"

static void test_rules_keep_state(void **state)
{
    struct vd *v = *state;
    assert_int_equal(
        vd_setup(v, NULL,
                 RULES_SOURCE
                 "rules:\n"
                 "  - {name: keep, kind: threshold, match: gen., expr: values.n >= 0}\n"
                 "  - {name: chg, kind: threshold, match: gen., expr: values.n >= 0}\n"
                 "  - {name: gone, kind: threshold, match: gen., expr: values.n >= 0}\n"
                 "  - {name: hist, kind: policy, match: access, default: deny}\n" RULES_SINK),
        0);
    assert_true(vd_started(v));
    const char *out = vd_path(v, "out.jsonl");
    assert_true(wait_lines(out, "\"topic\":\"alert.fired\"", 3, 10));
    /* keep: the same rule, its keys in another order and its default
     * written out; chg: another expression; gone: removed; new: added.
     * plugin_trust: off in the new file is warned about, as at a start. */
    assert_int_equal(
        vd_rewrite(v, NULL,
                   "plugin_trust: off\n" RULES_SOURCE "rules:\n"
                   "  - {expr: values.n >= 0, match: gen., kind: threshold, name: keep,"
                   " severity: warning}\n"
                   "  - {name: chg, kind: threshold, match: gen., expr: values.n >= 1}\n"
                   "  - {name: new, kind: threshold, match: gen., expr: values.n >= 0}\n"
                   "  - {name: hist, kind: policy, match: access, default: deny}\n" RULES_SINK),
        0);
    assert_true(hup(v, "reloaded", 1));
    assert_int_equal(count_lines(v->log, "rules 2 kept, 1 changed, 1 added, 1 removed"), 1);
    assert_int_equal(count_lines(v->log, "plugin_trust: off: plugins in"), 1);
    assert_true(wait_lines(out, "\"topic\":\"alert.fired\"", 5, 10));
    sleep_ms(500);
    double secs;
    assert_int_equal(vd_stop(v, 20, &secs), 0);

    /* keep fired once, before the reload, and never resolved. */
    assert_int_equal(count_lines(out, "\"rule\":\"keep\""), 1);
    /* chg: fired, resolved as changed, fired again as the new rule. */
    assert_int_equal(count_both(out, "\"rule\":\"chg\"", "alert.fired"), 2);
    assert_int_equal(count_both(out, "\"rule\":\"chg\"", "\"reason\":\"changed\""), 1);
    assert_int_equal(count_both(out, "\"rule\":\"gone\"", "\"reason\":\"removed\""), 1);
    assert_int_equal(count_lines(out, "\"rule\":\"gone\""), 2);
    assert_int_equal(count_lines(out, "\"rule\":\"new\""), 1);
    /* Nothing lost, the verdicts' seq goes on without a gap or a reset. */
    size_t gen = count_lines(out, "\"source\":\"g\"");
    assert_true(gen > 100);
    assert_true(seqs_complete(out, "g", gen));
    assert_true(seqs_complete(out, "rules", count_lines(out, "\"source\":\"rules\"")));
}

/* ---- Sinks under load ------------------------------------------------------------- */

#define LOAD_N 60000

static int write_sinks(struct vd *v, int gen)
{
    char body[2048];
    /* Each reload changes each sink's file: the sink is replaced. */
    snprintf(body, sizeof body,
             "sources:\n  - plugin: gen\n    name: g\n    rate: 20000\n    count: %d\n"
             "sinks:\n"
             "  - plugin: test_capture\n    name: sync\n    match: gen.\n"
             "    path: @DIR@/sync%d.jsonl\n"
             "  - plugin: test_capture\n    name: async\n    match: gen.\n    async: true\n"
             "    path: @DIR@/async%d.jsonl\n"
             "  - plugin: test_capture\n    name: held\n    match: gen.\n"
             "    fail_while: @DIR@/down\n    retry: {max_backoff: 300ms}\n"
             "    path: @DIR@/held%d.jsonl\n",
             LOAD_N, gen % 2, gen % 2, gen % 2);
    return gen == 0 ? vd_setup(v, NULL, body) : vd_rewrite(v, NULL, body);
}

/* Every seq 1..LOAD_N exactly once over name0.jsonl and name1.jsonl. */
static bool exactly_once(struct vd *v, const char *name)
{
    char a[64], b[64];
    snprintf(a, sizeof a, "%s0.jsonl", name);
    snprintf(b, sizeof b, "%s1.jsonl", name);
    char *x = slurp(vd_path(v, a)), *y = slurp(vd_path(v, b));
    const char *both = vd_path(v, "both.jsonl");
    FILE *f = fopen(both, "w");
    if (f) {
        fputs(x ? x : "", f);
        fputs(y ? y : "", f);
        fclose(f);
    }
    free(x);
    free(y);
    size_t dups = 0;
    bool ok = f && seqs_at_least_once(both, "g", LOAD_N, &dups);
    if (dups) {
        fprintf(stderr, "sink %s: %zu events delivered twice\n", name, dups);
    }
    return ok && dups == 0;
}

static size_t delivered(struct vd *v, const char *name)
{
    char a[64], b[64];
    snprintf(a, sizeof a, "%s0.jsonl", name);
    snprintf(b, sizeof b, "%s1.jsonl", name);
    return count_lines(vd_path(v, a), "\"source\":\"g\"") +
           count_lines(vd_path(v, b), "\"source\":\"g\"");
}

static void test_sink_handover_under_load(void **state)
{
    struct vd *v = *state;
    assert_int_equal(write_sinks(v, 0), 0);
    /* held's destination is down from the start: its events are in its
     * queue and spool when each reload replaces it. */
    FILE *down = fopen(vd_path(v, "down"), "w");
    assert_non_null(down);
    fclose(down);
    assert_true(vd_started(v));
    int reloads = 0;
    for (int i = 1; i <= 6; i++) {
        sleep_ms(400);
        assert_int_equal(write_sinks(v, i), 0);
        assert_true(hup(v, "reloaded", (size_t)i));
        reloads++;
    }
    assert_int_equal(count_lines(v->log, "sinks 0 kept, 3 replaced"), (size_t)reloads);
    assert_int_equal(unlink(vd_path(v, "down")), 0);
    double t0 = now_s();
    while ((delivered(v, "sync") < LOAD_N || delivered(v, "async") < LOAD_N ||
            delivered(v, "held") < LOAD_N) &&
           now_s() - t0 < 60) {
        sleep_ms(200);
    }
    double secs;
    assert_int_equal(vd_stop(v, 30, &secs), 0);
    assert_true(exactly_once(v, "sync"));
    assert_true(exactly_once(v, "async"));
    assert_true(exactly_once(v, "held"));
    assert_true(count_lines(v->log, "handing") >= 1); /* held handed its spool over */
}

/* ---- Refused reloads ---------------------------------------------------------------- */

#define KEEP_BODY                                                                                  \
    "sources:\n  - plugin: gen\n    name: g\n    rate: 200\n"                                      \
    "rules:\n  - {name: r, kind: threshold, match: gen., expr: values.n >= 0}\n"                   \
    "sinks:\n  - plugin: test_capture\n    name: cap\n    match: [gen., alert., vigil.self]\n"     \
    "    path: @DIR@/out.jsonl\n"

/* The config with `from` replaced by `to` once. */
static int edit_config(struct vd *v, const char *from, const char *to)
{
    char *s = slurp(v->cfg);
    char *at = s ? strstr(s, from) : NULL;
    if (!at) {
        free(s);
        return -1;
    }
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.new", v->cfg);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        free(s);
        return -1;
    }
    fprintf(f, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    fclose(f);
    free(s);
    return rename(tmp, v->cfg);
}

static void test_refused_reload_keeps_running(void **state)
{
    struct vd *v = *state;
    int port = free_loopback_port();
    assert_true(port > 0);
    /* A port in use: the new prometheus sink's init fails. */
    int lsock = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lsock, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lsock, 1), 0);

    assert_int_equal(vd_setup(v, "1s", KEEP_BODY), 0);
    assert_true(vd_started(v));
    const char *out = vd_path(v, "out.jsonl");
    assert_true(wait_lines(out, "\"topic\":\"alert.fired\"", 1, 10));

    /* 1. Not YAML. */
    assert_int_equal(vd_rewrite(v, "1s", KEEP_BODY "rules: [\n"), 0);
    assert_true(hup(v, "refused", 1));
    /* 2. A bus endpoint. */
    assert_int_equal(vd_rewrite(v, "1s", KEEP_BODY), 0);
    char moved[PATH_MAX + 8];
    snprintf(moved, sizeof moved, "%s2", v->pub);
    assert_int_equal(edit_config(v, v->pub, moved), 0);
    assert_true(hup(v, "refused", 2));
    assert_true(count_lines(v->log, "bus.publish cannot change on reload") == 1);
    /* 3. Half way: the rule changes and a new sink's init fails. */
    char body[2048];
    snprintf(body, sizeof body,
             "sources:\n  - plugin: gen\n    name: g\n    rate: 200\n"
             "rules:\n  - {name: r, kind: threshold, match: gen., expr: values.n >= 5}\n"
             "sinks:\n  - plugin: test_capture\n    name: cap\n"
             "    match: [gen., alert., vigil.self]\n    path: @DIR@/out.jsonl\n"
             "  - plugin: prometheus\n    name: prom\n    listen: 127.0.0.1:%d\n",
             port);
    assert_int_equal(vd_rewrite(v, "1s", body), 0);
    assert_true(hup(v, "refused", 3));
    assert_true(count_lines(v->log, "cannot listen on 127.0.0.1:") == 1);
    /* The old pipeline runs whole: events flow, the rule kept its series. */
    size_t before = count_lines(out, "\"source\":\"g\"");
    assert_true(wait_lines(out, "\"source\":\"g\"", before + 100, 10));
    assert_true(wait_self_equal(out, "\"stage\":\"daemon\"", "reload_failed_total", 3, 10));
    assert_int_equal(count_lines(out, "alert.resolved"), 0);
    /* 4. A good reload after all that. */
    assert_int_equal(vd_rewrite(v, "1s", KEEP_BODY), 0);
    assert_true(hup(v, "reloaded", 1));
    assert_true(wait_self_equal(out, "\"stage\":\"daemon\"", "reloads_total", 1, 10));
    close(lsock);
    double secs;
    assert_int_equal(vd_stop(v, 20, &secs), 0);
    assert_int_equal(count_lines(out, "alert.resolved"), 0);
    assert_int_equal(count_both(out, "\"rule\":\"r\"", "alert.fired"), 1);
    assert_true(seqs_complete(out, "g", count_lines(out, "\"source\":\"g\"")));
}

/* ---- Sources, and vigild --reload ---------------------------------------------------- */

static const char *sources_body(int rate2, bool third)
{
    static char body[1024];
    snprintf(body, sizeof body,
             "sources:\n"
             "  - plugin: gen\n    name: g1\n    rate: 100\n"
             "  - plugin: gen\n    name: g2\n    rate: %d\n%s"
             "sinks:\n  - plugin: test_capture\n    name: cap\n    match: [gen., vigil.self]\n"
             "    path: @DIR@/out.jsonl\n",
             rate2,
             third ? "  - plugin: gen\n    name: g3\n    rate: 100\n    isolate: process\n" : "");
    return body;
}

static int vigild_reload(struct vd *v, char **out, char **err)
{
    char bin[PATH_MAX];
    snprintf(bin, sizeof bin, "%s/vigild", VIGIL_BUILD_DIR);
    char *argv[] = {bin, "--reload", "-c", v->cfg, NULL};
    return run(argv, NULL, 0, out, err, 10);
}

static void test_only_changed_sources_restart(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, "1s", sources_body(100, false)), 0);
    assert_true(vd_started(v));
    const char *out = vd_path(v, "out.jsonl");
    assert_true(wait_lines(out, "\"source\":\"g2\"", 100, 10));
    assert_int_equal(vd_rewrite(v, "1s", sources_body(150, true)), 0);
    char *o = NULL, *e = NULL;
    assert_int_equal(vigild_reload(v, &o, &e), 0);
    assert_non_null(strstr(o, "asked vigild (pid"));
    free(o);
    free(e);
    assert_true(wait_lines(v->log, "reloaded", 1, 10));
    assert_int_equal(count_lines(v->log, "sources 1 kept, 1 restarted, 1 added, 0 removed"), 1);
    /* g3, new, runs in a process of its own (isolate: process). */
    assert_true(wait_lines(out, "\"source\":\"g3\"", 100, 10));
    /* g2 began again at seq 1: the bus counts it a reset, not a loss. */
    assert_true(wait_self_equal(out, "\"stage\":\"bus\"", "seq_resets_total", 1, 10));
    double lost = -1;
    assert_true(self_value_of(out, "\"stage\":\"bus\"", "lost_total", &lost));
    assert_true(lost == 0);
    double secs;
    assert_int_equal(vd_stop(v, 20, &secs), 0);
    /* g1 ran through the reload untouched. */
    assert_true(seqs_complete(out, "g1", count_lines(out, "\"source\":\"g1\"")));
    assert_true(count_both(out, "\"source\":\"g2\"", "\"seq\":1,") == 2);

    /* No daemon (the pid file went with it): --reload says so. */
    o = e = NULL;
    assert_int_equal(vigild_reload(v, &o, &e), 1);
    assert_non_null(strstr(e, "cannot read the pid file"));
    free(o);
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rules_keep_state, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_sink_handover_under_load, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_refused_reload_keeps_running, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_only_changed_sources_restart, vd_fixture_setup,
                                        vd_fixture_teardown),
    };
    return cmocka_run_group_tests_name("reload", tests, NULL, NULL);
}

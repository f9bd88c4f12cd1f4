/* vigild under systemd, without systemd (PID 1 here may be anything): the
 * unit file through `systemd-analyze verify` and `security --offline`, the
 * sd_notify protocol against a datagram socket the test binds as systemd
 * would (READY, WATCHDOG, RELOADING, STOPPING), the watchdog going quiet
 * while a stage is stuck, and the journal's priority prefixes.
 */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

#define UNIT VIGIL_SOURCE_DIR "/conf/systemd/vigild.service"
/* systemd-analyze security's exposure for the unit, times 10: the test
 * fails when a change loosens the sandbox past it (docs/systemd.md). */
#define EXPOSURE_MAX "25"

static const char *systemd_analyze(void)
{
    static const char *const where[] = {"/usr/bin/systemd-analyze", "/bin/systemd-analyze"};
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
        if (access(where[i], X_OK) == 0) {
            return where[i];
        }
    }
    return NULL;
}

/* The unit with ExecStart pointing at the built vigild (verify wants the
 * program to exist), as <dir>/vigild.service. */
static void write_unit(const struct vd *v, char *path, size_t len)
{
    char *unit = slurp(UNIT);
    assert_non_null(unit);
    snprintf(path, len, "%s/vigild.service", v->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    const char *exec = "ExecStart=/usr/bin/vigild ";
    char *at = strstr(unit, exec);
    assert_non_null(at);
    fprintf(f, "%.*sExecStart=%s/vigild %s", (int)(at - unit), unit, VIGIL_BUILD_DIR,
            at + strlen(exec));
    fclose(f);
    free(unit);
}

/* `systemd-analyze verify` passes without a word, and the sandbox's
 * exposure stays at most EXPOSURE_MAX / 10. */
static void test_unit_verifies(void **state)
{
    struct vd *v = *state;
    const char *sa = systemd_analyze();
    if (!sa) {
        fprintf(stderr, "skipped: systemd-analyze is not installed (apt-get install systemd)\n");
        skip();
    }
    assert_int_equal(vd_setup(v, NULL, NULL), 0);
    char unit[PATH_MAX];
    write_unit(v, unit, sizeof unit);
    /* --man=no: Documentation=man:vigild(8) is installed with the package,
     * not in the build tree. */
    char *const verify[] = {(char *)sa, "verify", "--man=no", unit, NULL};
    char *out = NULL, *err = NULL;
    int rc = run(verify, NULL, 0, &out, &err, 60);
    if (rc != 0 || (err && err[0]) || (out && out[0])) {
        fprintf(stderr, "systemd-analyze verify: exit %d\n%s%s", rc, out ? out : "",
                err ? err : "");
    }
    assert_int_equal(rc, 0);
    assert_string_equal(err, "");
    free(out);
    free(err);
    char *const security[] = {(char *)sa, "security", "--offline=yes", "--threshold=" EXPOSURE_MAX,
                              unit,       NULL};
    rc = run(security, NULL, 0, &out, &err, 60);
    const char *overall = out ? strstr(out, "Overall exposure level") : NULL;
    if (overall) {
        fprintf(stderr, "%.*s\n", (int)strcspn(overall, "\n"), overall);
    }
    if (rc != 0) {
        fprintf(stderr, "systemd-analyze security: exit %d\n%s%s", rc, out ? out : "",
                err ? err : "");
    }
    assert_non_null(overall);
    assert_int_equal(rc, 0);
    free(out);
    free(err);
}

/* ---- sd_notify ------------------------------------------------------------ */

#define MSGS_MAX 256

/* What vigild said on the notify socket, and when (seconds, now_s()). */
struct notes {
    int fd;
    char path[PATH_MAX];
    size_t n;
    char *text[MSGS_MAX];
    double at[MSGS_MAX];
};

static void notes_open(struct notes *m, const struct vd *v)
{
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s/notify", v->dir);
    m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(m->fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(m->path) < sizeof sa.sun_path);
    strcpy(sa.sun_path, m->path);
    assert_int_equal(bind(m->fd, (struct sockaddr *)&sa, sizeof sa), 0);
}

static void notes_close(struct notes *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->text[i]);
    }
    if (m->fd >= 0) {
        close(m->fd);
    }
}

/* Receives for up to timeout_s, until a message starting with `want` (NULL:
 * the whole time). Returns its index, or -1. */
static int notes_wait(struct notes *m, const char *want, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0) {
            return -1;
        }
        struct pollfd p = {.fd = m->fd, .events = POLLIN};
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) {
            continue;
        }
        char buf[4096];
        ssize_t r = recv(m->fd, buf, sizeof buf - 1, 0);
        if (r <= 0 || m->n == MSGS_MAX) {
            continue;
        }
        buf[r] = '\0';
        m->text[m->n] = strdup(buf);
        m->at[m->n] = now_s();
        m->n++;
        if (want && strncmp(buf, want, strlen(want)) == 0) {
            return (int)m->n - 1;
        }
    }
}

/* Messages from index `from` on that start with `prefix`. */
static size_t notes_count(const struct notes *m, size_t from, const char *prefix)
{
    size_t c = 0;
    for (size_t i = from; i < m->n; i++) {
        c += strncmp(m->text[i], prefix, strlen(prefix)) == 0;
    }
    return c;
}

static void notes_dump(const struct notes *m)
{
    for (size_t i = 0; i < m->n; i++) {
        fprintf(stderr, "  %.2f %s\n", m->at[i] - m->at[0], m->text[i]);
    }
}

/* Starts vigild -c cfg with stderr to v->log and the environment entries of
 * env ("KEY=VALUE"; a VALUE of "@PID@" becomes vigild's own pid, as systemd
 * sets WATCHDOG_PID). */
static void start_env(struct vd *v, const char *const *env)
{
    int fd = open(v->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        for (size_t i = 0; env && env[i]; i++) {
            char kv[PATH_MAX + 64];
            snprintf(kv, sizeof kv, "%s", env[i]);
            char *eq = strchr(kv, '=');
            if (!eq) {
                _exit(126);
            }
            *eq = '\0';
            char pid_s[32];
            snprintf(pid_s, sizeof pid_s, "%d", (int)getpid());
            setenv(kv, strcmp(eq + 1, "@PID@") == 0 ? pid_s : eq + 1, 1);
        }
        execl(VIGIL_BUILD_DIR "/vigild", "vigild", "-c", v->cfg, (char *)NULL);
        _exit(127);
    }
    close(fd);
    v->pid = pid;
}

static const char notify_config[] = "sources:\n"
                                    "  - { plugin: gen, name: g, rate: 50 }\n"
                                    "rules:\n"
                                    "  - name: high\n"
                                    "    kind: threshold\n"
                                    "    match: gen.g\n"
                                    "    expr: values.wave_pct > 99\n"
                                    "sinks:\n"
                                    "  - plugin: test_capture\n"
                                    "    name: cap\n"
                                    "    match: [gen.g]\n"
                                    "    path: @DIR@/out.jsonl\n"
                                    "    block_while: @DIR@/block\n";

/* vd_setup(notify_config), the notify socket bound, vigild started with
 * WatchdogSec=1s and WATCHDOG_PID=watchdog_pid ("@PID@": its own); waits
 * for READY=1 and returns its index (-1 after printing what happened). */
static int start_notified(struct vd *v, struct notes *m, const char *watchdog_pid)
{
    assert_int_equal(vd_setup(v, NULL, notify_config), 0);
    notes_open(m, v);
    char sock[PATH_MAX + 32], pid[64];
    snprintf(sock, sizeof sock, "NOTIFY_SOCKET=%s", m->path);
    snprintf(pid, sizeof pid, "WATCHDOG_PID=%s", watchdog_pid);
    const char *env[] = {sock, "WATCHDOG_USEC=1000000", pid, NULL};
    start_env(v, env);
    int ready = notes_wait(m, "READY=1", 15);
    if (ready < 0) {
        vd_dump_log(v);
        notes_dump(m);
    }
    return ready;
}

/* READY=1 once the pipeline runs (an event reaches vigil-tap right after),
 * no WATCHDOG=1 before it and one about every half interval after,
 * RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM. */
static void test_notify_protocol(void **state)
{
    struct vd *v = *state;
    struct notes m;
    int ready = start_notified(v, &m, "@PID@");
    assert_true(ready >= 0);
    /* Started, and said so, before READY=1; nothing else before it. */
    assert_int_equal(count_lines(v->log, " started on host "), 1);
    assert_int_equal(ready, 0);
    assert_non_null(strstr(m.text[ready], "\nSTATUS=1 source, 1 rule, 1 sink;"));
    /* Ready means ready: the bus is bound and events flow. */
    char *const tap[] = {VIGIL_BUILD_DIR "/vigil-tap",
                         "-e",
                         v->sub,
                         "-t",
                         "gen.g",
                         "-n",
                         "1",
                         "--timeout",
                         "5s",
                         NULL};
    assert_int_equal(run(tap, NULL, 0, NULL, NULL, 20), 0);

    /* WatchdogSec=1s: a ping about every 0.5 s. */
    notes_wait(&m, NULL, 2.6);
    size_t pings = notes_count(&m, (size_t)ready, "WATCHDOG=1");
    if (pings < 3) {
        notes_dump(&m);
        vd_dump_log(v);
    }
    assert_true(pings >= 3);
    assert_true(pings <= 8);

    size_t before = m.n;
    kill(v->pid, SIGHUP);
    int reloading = notes_wait(&m, "RELOADING=1", 5);
    assert_true(reloading >= 0);
    assert_non_null(strstr(m.text[reloading], "\nMONOTONIC_USEC="));
    assert_true(notes_wait(&m, "READY=1", 5) > reloading);
    assert_int_equal(notes_count(&m, before, "STOPPING=1"), 0);

    kill(v->pid, SIGTERM);
    assert_true(notes_wait(&m, "STOPPING=1", 5) >= 0);
    assert_int_equal(vd_stop(v, 15, NULL), 0);
    notes_close(&m);
}

/* WATCHDOG_PID names another process: READY=1, but no pings (systemd's
 * watchdog is not ours). */
static void test_watchdog_pid_not_ours(void **state)
{
    struct vd *v = *state;
    struct notes m;
    assert_true(start_notified(v, &m, "1") >= 0);
    notes_wait(&m, NULL, 1.5);
    assert_int_equal(notes_count(&m, 0, "WATCHDOG=1"), 0);
    assert_int_equal(vd_stop(v, 15, NULL), 0);
    notes_close(&m);
}

/* A sink stuck in write() stops its thread's loop: the pings stop (systemd
 * would restart vigild) and the log names it; unstuck, they come back. */
static void test_stuck_stage_stops_watchdog(void **state)
{
    struct vd *v = *state;
    struct notes m;
    assert_true(start_notified(v, &m, "@PID@") >= 0);
    notes_wait(&m, NULL, 1.2);
    assert_true(notes_count(&m, 0, "WATCHDOG=1") >= 2);

    /* test_capture blocks in its next write() while the file exists. */
    const char *block = vd_path(v, "block");
    FILE *f = fopen(block, "w");
    assert_non_null(f);
    fclose(f);
    double t0 = now_s();
    /* A thread is stuck after max(WatchdogSec / 2, 5 s): then silence. */
    int stuck = notes_wait(&m, "STATUS=sink:test_capture/cap is stuck", 12);
    if (stuck < 0) {
        notes_dump(&m);
        vd_dump_log(v);
    }
    assert_true(stuck >= 0);
    assert_true(now_s() - t0 >= 4.5);
    assert_true(notes_count(&m, 0, "WATCHDOG=1") >= 4); /* the pings went on till then */
    notes_wait(&m, NULL, 2.5);
    assert_int_equal(notes_count(&m, (size_t)stuck, "WATCHDOG=1"), 0);
    assert_true(count_lines(v->log, "[watchdog] sink:test_capture/cap has not run its loop") == 1);

    unlink(block);
    assert_true(notes_wait(&m, "WATCHDOG=1", 5) >= 0);
    assert_true(wait_lines(v->log, "[watchdog] sink:test_capture/cap runs again", 1, 5));
    assert_int_equal(vd_stop(v, 15, NULL), 0);
    notes_close(&m);
}

/* ---- The journal --------------------------------------------------------------- */

/* True when every line of `log` starts with "<N>" and carries no time stamp. */
static bool all_prefixed(const char *log)
{
    const char *l = log;
    while (*l) {
        size_t len = strcspn(l, "\n");
        if (len < 4 || l[0] != '<' || l[1] < '0' || l[1] > '7' || l[2] != '>' ||
            (l[3] >= '0' && l[3] <= '9')) {
            fprintf(stderr, "not a journal line: %.*s\n", (int)len, l);
            return false;
        }
        l += len + (l[len] == '\n');
    }
    return true;
}

/* stderr is "the journal" when JOURNAL_STREAM names it: priorities instead
 * of time stamps, for vigild's own lines, a plugin's and the config's
 * errors; otherwise the time-stamped format. */
static void test_journal_prefixes(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, NULL,
                              "sources:\n"
                              "  - { plugin: gen, name: g, rate: 1000, count: 10 }\n"),
                     0);
    FILE *f = fopen(v->log, "w");
    assert_non_null(f);
    fclose(f);
    struct stat st;
    assert_int_equal(stat(v->log, &st), 0);
    char js[128];
    snprintf(js, sizeof js, "JOURNAL_STREAM=%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    const char *env[] = {js, NULL};
    start_env(v, env);
    assert_true(wait_lines(v->log, "<6>INFO  [source:gen/g] published 10 events; done", 1, 15));
    assert_int_equal(count_lines(v->log, "<6>INFO  [vigild] vigild "), 1);
    assert_int_equal(vd_stop(v, 15, NULL), 0);
    assert_int_equal(count_lines(v->log, "<6>INFO  [vigild] stopped"), 1);
    char *log = slurp(v->log);
    assert_true(all_prefixed(log));
    free(log);

    /* A config error, at priority err. */
    f = fopen(v->cfg, "a");
    assert_non_null(f);
    fputs("bogus: 1\n", f);
    fclose(f);
    start_env(v, env);
    int st2;
    assert_int_equal(waitpid(v->pid, &st2, 0), v->pid);
    v->pid = 0;
    assert_int_equal(WEXITSTATUS(st2), 1);
    assert_int_equal(count_lines(v->log, "<3>ERROR [config] "), 2);
    log = slurp(v->log);
    assert_true(all_prefixed(log));
    free(log);

    /* Another stream (stderr redirected since systemd set it): as before. */
    assert_int_equal(truncate(v->log, 0), 0);
    snprintf(js, sizeof js, "JOURNAL_STREAM=%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino + 1);
    start_env(v, env);
    assert_int_equal(waitpid(v->pid, &st2, 0), v->pid);
    v->pid = 0;
    log = slurp(v->log);
    assert_null(strstr(log, "<3>"));
    assert_true(strncmp(log, v->cfg, strlen(v->cfg)) == 0); /* FILE:LINE:COL: message */
    assert_non_null(strstr(log, ": unknown top-level key 'bogus'"));
    free(log);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unit_verifies, vd_fixture_setup, vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_notify_protocol, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_watchdog_pid_not_ours, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stuck_stage_stops_watchdog, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_journal_prefixes, vd_fixture_setup,
                                        vd_fixture_teardown),
    };
    return cmocka_run_group_tests_name("systemd", tests, NULL, NULL);
}

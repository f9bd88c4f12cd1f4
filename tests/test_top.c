/* vigil-top against the real vigild: the test publishes kvm.vm,
 * cgroup.stats and tcp.probe events (no real VM needed) and the daemon's
 * rules turn some into alerts; then vigil-top's batch frames, and its screen
 * under tmux (panes, sort keys, resize, q).
 *   test_top          batch mode and errors
 *   test_top tmux     the screen; exits 77 when tmux is not installed
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>
#include <cmocka.h>

#include "event.h"
#include "harness.h"

#define TOP VIGIL_BUILD_DIR "/vigil-top"

struct fx {
    struct vd v;
    pid_t feeder;
    char tmux_sock[PATH_MAX];
};

/* The bound fires for web1 (O = 30 + 50 + 0.2 > 31) and not for db1; the
 * threshold fires for the probe that is down. renotify repeats the fired
 * verdicts, so a vigil-top that connects later still sees them. */
static const char config[] = "rules:\n"
                             "  - name: kvm-overhead\n"
                             "    kind: bound\n"
                             "    match: kvm.vm\n"
                             "    weights: { H: 1.0, C: 0.001, M: 0.000000001 }\n"
                             "    terms: { H: values.host_cpu_pct, C: values.exits_per_s,"
                             " M: values.memory_overhead_bytes }\n"
                             "    max: { H: 20, C: 10000, M: 1000000000 }\n"
                             "    renotify: 1s\n"
                             "    group_by: [pid]\n"
                             "  - name: probe-down\n"
                             "    kind: threshold\n"
                             "    match: tcp.probe\n"
                             "    expr: values.up == 0\n"
                             "    severity: critical\n"
                             "    renotify: 1s\n"
                             "    group_by: [target]\n";

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    *state = f;
    return f ? 0 : -1;
}

static void tmux(struct fx *f, const char *const *args, char **out);

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->tmux_sock[0]) {
        const char *args[] = {"kill-server", NULL};
        tmux(f, args, NULL);
    }
    if (f->feeder > 0) {
        kill(f->feeder, SIGKILL);
        waitpid(f->feeder, NULL, 0);
    }
    vd_cleanup(&f->v);
    free(f);
    return 0;
}

/* ---- The feeder: a child publishing a round of events every 200 ms ---------------- */

static void publish(void *push, struct vigil_event_builder *b, const char *source, uint64_t *seq)
{
    const char *body;
    size_t len;
    if (vigil_event_finish(b, "hv1", source, ++*seq, &body, &len) != 0) {
        _exit(3);
    }
    zmq_send(push, b->topic, b->topic_len, ZMQ_SNDMORE);
    zmq_send(push, body, len, 0);
}

static void vm(void *push, struct vigil_event_builder *b, uint64_t *seq, const char *name,
               const char *pid, double exits, double host_cpu, double overhead_bytes)
{
    vigil_event_begin(b, "kvm.vm");
    vigil_event_add_label(b, "vm", name);
    vigil_event_add_label(b, "pid", pid);
    vigil_event_add_label(b, "vm_fd", "11");
    vigil_event_add_value(b, "vcpus", 2);
    vigil_event_add_value(b, "exits_per_s", exits);
    vigil_event_add_value(b, "io_exits_per_s", exits * 0.6);
    vigil_event_add_value(b, "mmio_exits_per_s", exits * 0.1);
    vigil_event_add_value(b, "halt_exits_per_s", exits * 0.2);
    vigil_event_add_value(b, "irq_exits_per_s", exits * 0.1);
    vigil_event_add_value(b, "host_cpu_pct", host_cpu);
    vigil_event_add_value(b, "guest_cpu_pct", 80);
    vigil_event_add_value(b, "memory_overhead_bytes", overhead_bytes);
    publish(push, b, "kvm", seq);
}

static void cgroup(void *push, struct vigil_event_builder *b, uint64_t *seq, const char *path,
                   double cpu, double mem)
{
    vigil_event_begin(b, "cgroup.stats");
    vigil_event_add_label(b, "cgroup", path);
    vigil_event_add_value(b, "cpu_usage_pct", cpu);
    vigil_event_add_value(b, "memory_usage_pct", mem);
    vigil_event_add_value(b, "memory_current_bytes", mem * 10485760);
    vigil_event_add_value(b, "cpu_pressure_some_pct", cpu / 10);
    vigil_event_add_value(b, "memory_pressure_some_pct", 0);
    vigil_event_add_value(b, "io_pressure_some_pct", 0.5);
    publish(push, b, "cgroups", seq);
}

static void probe(void *push, struct vigil_event_builder *b, uint64_t *seq, const char *target,
                  bool up, double ms)
{
    vigil_event_begin(b, "tcp.probe");
    vigil_event_add_label(b, "target", target);
    vigil_event_add_label(b, "address", up ? "127.0.0.1:8080" : "127.0.0.1:5432");
    vigil_event_add_value(b, "up", up);
    vigil_event_add_value(b, "expected", up);
    if (up) {
        vigil_event_add_value(b, "connect_ms", ms);
    } else {
        vigil_event_add_attr_str(b, "error", "refused");
    }
    publish(push, b, "probes", seq);
}

static void start_feeder(struct fx *f)
{
    f->feeder = fork();
    assert_true(f->feeder >= 0);
    if (f->feeder > 0) {
        return;
    }
    void *ctx = zmq_ctx_new();
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    if (zmq_connect(push, f->v.pub) != 0) {
        _exit(2);
    }
    struct vigil_event_builder b;
    vigil_event_builder_init(&b);
    uint64_t kseq = 0, cseq = 0, pseq = 0;
    pid_t parent = getppid();
    while (getppid() == parent) {
        vm(push, &b, &kseq, "web1", "101", 50000, 30, 200e6);
        vm(push, &b, &kseq, "db1", "202", 1200, 2, 50e6);
        cgroup(push, &b, &cseq, "/docker/aaa", 150, 80);
        cgroup(push, &b, &cseq, "/kubepods/pod1", 40, 20);
        cgroup(push, &b, &cseq, "/system.slice/ssh.service", 3, 1);
        probe(push, &b, &pseq, "api", true, 2.5);
        probe(push, &b, &pseq, "db", false, 0);
        sleep_ms(200);
    }
    _exit(0);
}

static void start(struct fx *f)
{
    assert_int_equal(vd_setup(&f->v, "1s", config), 0);
    assert_true(vd_started(&f->v));
    start_feeder(f);
}

/* ---- Checking text ------------------------------------------------------------- */

/* The line of `text` that contains `needle` after `from`, or NULL. */
static const char *line_with(const char *text, const char *needle)
{
    const char *p = strstr(text, needle);
    if (!p) {
        return NULL;
    }
    while (p > text && p[-1] != '\n') {
        p--;
    }
    return p;
}

/* a appears in text, and before b. */
static void assert_before(const char *text, const char *a, const char *b)
{
    const char *pa = strstr(text, a), *pb = strstr(text, b);
    if (!pa || !pb || pa > pb) {
        fail_msg("expected '%s' before '%s' in:\n%s", a, b, text);
    }
}

/* VIGIL_TOP_CAPTURE=DIR keeps what vigil-top showed in DIR/<name> (the
 * README's screen and frame come from there). */
static void keep(const char *name, const char *text)
{
    const char *dir = getenv("VIGIL_TOP_CAPTURE");
    if (!dir) {
        return;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    if (fp) {
        fputs(text, fp);
        fclose(fp);
    }
}

/* ---- Batch mode ------------------------------------------------------------- */

static void test_batch_frames(void **state)
{
    struct fx *f = *state;
    start(f);
    char *const argv[] = {TOP, "-c", f->v.cfg, "-b", "-n", "2", NULL};
    char *out = NULL, *err = NULL;
    double t0 = now_s();
    int rc = run(argv, NULL, 0, &out, &err, 30);
    double secs = now_s() - t0;
    if (rc != 0) {
        fail_msg("vigil-top -b -n 2 exited %d: %s", rc, err);
    }
    assert_true(secs >= 1.9 && secs < 10);
    /* Nothing on stderr: no skipped messages, and no sanitizer report. */
    if (err[0]) {
        fail_msg("vigil-top -b said on stderr: %s", err);
    }
    assert_null(strchr(out, '\x1b')); /* plain text: no escape codes */
    /* Two frames, each starting with the header line. */
    const char *second = strstr(out, "\nvigil-top  ");
    if (!second || strstr(second + 1, "\nvigil-top  ") || strncmp(out, "vigil-top  ", 11) != 0) {
        fail_msg("expected two frames:\n%s", out);
    }
    const char *last = second + 1;
    assert_non_null(strstr(last, "hosts: hv1"));
    assert_non_null(strstr(last, "VMs (2)"));
    assert_non_null(strstr(last, "Cgroups (3)"));
    assert_non_null(strstr(last, "Probes (2)"));
    /* Each pane by its heaviest first. */
    assert_before(last, "web1", "db1");
    assert_before(last, "/docker/aaa", "/kubepods/pod1");
    assert_before(last, "/kubepods/pod1", "/system.slice/ssh.service");
    assert_before(last, "Probes (2)", "DOWN");
    assert_before(last, "DOWN", " up ");
    const char *web1 = line_with(last, "web1");
    assert_non_null(web1);
    /* exits/s, host CPU, overhead, and the bound's O/O_max, firing. */
    const char *want[] = {" 50.0k", " 30.0k", " 30.0", " 191M", " 80.2/31!"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *eol = strchr(web1, '\n');
        const char *hit = strstr(web1, want[i]);
        if (!hit || (eol && hit > eol)) {
            fail_msg("the web1 row lacks '%s':\n%s", want[i], out);
        }
    }
    assert_non_null(strstr(line_with(last, "/docker/aaa"), "150.0"));
    assert_non_null(strstr(line_with(last, "2.50ms"), "api"));
    /* The alerts firing: the critical probe first, then the bound. */
    assert_before(last, "Alerts (2)", "probe-down");
    assert_before(last, "probe-down", "kvm-overhead");
    assert_non_null(strstr(line_with(last, "probe-down"), "critical"));
    assert_non_null(strstr(line_with(last, "kvm-overhead"), "bound"));
    keep("batch.txt", out);
    free(out);
    free(err);
}

/* Wrong usage exits 2, a config it cannot read or an endpoint it cannot use
 * 1, each saying why. */
static void test_errors(void **state)
{
    (void)state;
    struct {
        const char *argv[8];
        int rc;
        const char *says;
    } cases[] = {
        {{TOP, "-b", "-n", "0", NULL}, 2, "-n wants a positive number"},
        {{TOP, "-b", "-d", "fast", NULL}, 2, "-d wants"},
        {{TOP, "-b", "-c", "a", "-e", "b", NULL}, 2, "exclude each other"},
        {{TOP, "-b", "extra", NULL}, 2, "unexpected argument"},
        {{TOP, "-n", "1", NULL}, 2, "use -b"},
        {{TOP, "-b", "-n", "1", "-e", "bogus://x", NULL}, 1, "cannot connect to bogus://x"},
        {{TOP, "-b", "-n", "1", "-c", "/nonexistent/vigil.yaml", NULL},
         1,
         "cannot read the bus endpoint"},
        {{TOP, "-b", "-n", "1", "--key", "/nonexistent", NULL}, 1, "needs both --server-key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL, *err = NULL;
        int rc = run((char *const *)cases[i].argv, NULL, 0, &out, &err, 30);
        if (rc != cases[i].rc || !strstr(err, cases[i].says)) {
            fail_msg("case %zu: exit %d (want %d), said: %s", i, rc, cases[i].rc, err);
        }
        free(out);
        free(err);
    }
}

/* ---- The screen, under tmux ----------------------------------------------------- */

static const char *tmux_path(void)
{
    static const char *const paths[] = {"/usr/bin/tmux", "/usr/local/bin/tmux", "/bin/tmux"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        if (access(paths[i], X_OK) == 0) {
            return paths[i];
        }
    }
    return NULL;
}

/* tmux -S <the test's socket> args...; fails the test unless it exits 0
 * (kill-server excepted: teardown runs it whatever state things are in). */
static void tmux(struct fx *f, const char *const *args, char **out)
{
    const char *argv[16] = {tmux_path(), "-S", f->tmux_sock, "-f", "/dev/null"};
    size_t n = 5;
    for (size_t i = 0; args[i] && n < 15; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    char *o = NULL, *err = NULL;
    int rc = run((char *const *)argv, NULL, 0, &o, &err, 20);
    if (rc != 0 && strcmp(args[0], "kill-server") != 0) {
        fail_msg("tmux %s exited %d: %s", args[0], rc, err);
    }
    if (out) {
        *out = o;
    } else {
        free(o);
    }
    free(err);
}

/* tmux new-session: not through run(), whose pipes the tmux server it
 * starts would hold open until run's timeout. */
static void tmux_start(struct fx *f, const char *cmd)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(vd_path(&f->v, "tmux.out"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
            _exit(126);
        }
        close(fd);
        execl(tmux_path(), "tmux", "-S", f->tmux_sock, "-f", "/dev/null", "new-session", "-d", "-x",
              "120", "-y", "40", "-s", "top", cmd, (char *)NULL);
        _exit(127);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char *out = slurp(vd_path(&f->v, "tmux.out"));
        fail_msg("tmux new-session failed: %s", out ? out : "");
    }
}

static void keys(struct fx *f, const char *key)
{
    const char *args[] = {"send-keys", "-t", "top", key, NULL};
    tmux(f, args, NULL);
}

/* Waits up to 15 s for the screen to show `want` (and, if given, `a` above
 * `b`); returns the screen (caller frees) or fails showing the last one. */
static char *screen_shows(struct fx *f, const char *want, const char *a, const char *b)
{
    double deadline = now_s() + 15;
    char *scr = NULL;
    for (;;) {
        free(scr);
        const char *args[] = {"capture-pane", "-p", "-t", "top", NULL};
        tmux(f, args, &scr);
        const char *pa = a ? strstr(scr, a) : NULL, *pb = b ? strstr(scr, b) : NULL;
        if (strstr(scr, want) && (!a || (pa && pb && pa < pb))) {
            return scr;
        }
        if (now_s() > deadline) {
            fail_msg("the screen never showed '%s'%s%s%s%s:\n%s", want, a ? " with '" : "",
                     a ? a : "", a ? "' above '" : "", b ? b : "", scr);
        }
        sleep_ms(100);
    }
}

static void test_screen(void **state)
{
    struct fx *f = *state;
    start(f);
    snprintf(f->tmux_sock, sizeof f->tmux_sock, "%s", vd_path(&f->v, "tmux.sock"));
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "%s -c %s 2>%s; echo $? >%s", TOP, f->v.cfg,
             vd_path(&f->v, "top.err"), vd_path(&f->v, "top.rc"));
    tmux_start(f, cmd);

    /* The VM pane first, the heaviest (web1) above db1, its bound firing. */
    free(screen_shows(f, "[1 VMs: 2]", "web1", "db1"));
    free(screen_shows(f, "80.2/31!", NULL, NULL));
    /* Sort by the VM column: db1 goes up; again: reversed. */
    keys(f, "v");
    free(screen_shows(f, "sort: VM asc", "db1", "web1"));
    keys(f, "v");
    free(screen_shows(f, "sort: VM desc", "web1", "db1"));
    /* < and > walk the columns. */
    keys(f, ">");
    free(screen_shows(f, "sort: HOST asc", NULL, NULL));
    /* Tab and 1-4 switch panes. */
    keys(f, "Tab");
    free(screen_shows(f, "[2 Cgroups: 3]", "/docker/aaa", "/system.slice/ssh.service"));
    keys(f, "m");
    free(screen_shows(f, "sort: MEM% desc", "/docker/aaa", "/kubepods/pod1"));
    keys(f, "3");
    free(screen_shows(f, "[3 Probes: 2]", "DOWN", " up "));
    keys(f, "4");
    char *scr = screen_shows(f, "[4 Alerts: 2]", "probe-down", "kvm-overhead");
    keep("alerts.txt", scr);
    free(scr);
    /* Too small a terminal says so; back to size, the pane is back. */
    const char *small[] = {"resize-window", "-t", "top", "-x", "40", "-y", "6", NULL};
    tmux(f, small, NULL);
    free(screen_shows(f, "terminal too small (40x6)", NULL, NULL));
    const char *big[] = {"resize-window", "-t", "top", "-x", "120", "-y", "40", NULL};
    tmux(f, big, NULL);
    keys(f, "1");
    keys(f, "e");
    free(screen_shows(f, "[1 VMs: 2]", NULL, NULL));
    scr = screen_shows(f, "sort: EXITS/s desc", "web1", "db1");
    keep("screen.txt", scr);
    free(scr);
    /* q quits, and the exit status is 0. */
    keys(f, "q");
    double deadline = now_s() + 10;
    char *rc = NULL;
    while (!(rc = slurp(vd_path(&f->v, "top.rc"))) && now_s() < deadline) {
        sleep_ms(100);
    }
    if (!rc || atoi(rc) != 0) {
        char *err = slurp(vd_path(&f->v, "top.err"));
        fail_msg("vigil-top exited %s after q: %s", rc ? rc : "(not at all)", err ? err : "");
    }
    free(rc);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "tmux") == 0) {
        if (!tmux_path()) {
            printf("SKIP: tmux is not installed (tools/dev.sh setup installs it)\n");
            return 77;
        }
        if (!getenv("TERM")) {
            setenv("TERM", "xterm", 1); /* tmux's client wants one, even detached */
        }
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_screen, setup, teardown),
        };
        return cmocka_run_group_tests_name("top_tmux", tests, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batch_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
    };
    return cmocka_run_group_tests_name("top", tests, NULL, NULL);
}

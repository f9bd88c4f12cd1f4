/* The kvm source through the real host and bus, against real KVM guests: the
 * test compiles tests/kvm_guest.c with cc and runs each guest as its own
 * process, so the plugin finds it in /proc like any VMM. Checks discovery,
 * exit rates against the guests' known pacing, per-vCPU events, CPU and
 * memory terms, VMs that come and go, and config errors.
 */
#include <errno.h>
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
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "log.h"
#include "plugin_harness.h"

#define HZ 100           /* guest loops per second: one I/O and one HLT exit each */
#define EXITS (2.0 * HZ) /* exits to user space per second */
#define GUEST_MIB 16
#define MAX_GUESTS 8

static char guest_bin[512];
static char skip_reason[512];
static pid_t guests[MAX_GUESTS];
static char prefix[64]; /* vigil-kvmtest-<our pid>: names of our guests */

struct fixture {
    struct ph *p;
};

static void kill_guest(pid_t pid)
{
    for (int i = 0; i < MAX_GUESTS; i++) {
        if (guests[i] == pid && pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            guests[i] = 0;
        }
    }
}

static void kill_all_guests(void)
{
    for (int i = 0; i < MAX_GUESTS; i++) {
        kill_guest(guests[i]);
    }
}

/* The guest's stdout, read line by line. */
struct lines {
    int fd;
    char acc[256];
    size_t len;
};

/* Reads until a line `word` shows up (true) or EOF or timeout (false). */
static bool wait_line(struct lines *l, const char *word, int timeout_ms)
{
    uint64_t end = vigil_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        l->acc[l->len] = '\0';
        char *nl;
        while ((nl = strchr(l->acc, '\n'))) {
            *nl = '\0';
            bool hit = strcmp(l->acc, word) == 0;
            l->len -= (size_t)(nl + 1 - l->acc);
            memmove(l->acc, nl + 1, l->len + 1);
            if (hit) {
                return true;
            }
        }
        uint64_t now = vigil_mono_ns();
        struct pollfd pf = {.fd = l->fd, .events = POLLIN};
        if (now >= end || poll(&pf, 1, (int)((end - now) / 1000000u) + 1) <= 0) {
            return false;
        }
        ssize_t n = read(l->fd, l->acc + l->len, sizeof l->acc - 1 - l->len);
        if (n <= 0) {
            return false;
        }
        l->len += (size_t)n;
    }
}

/* Starts a guest running `hz` loops a second, each spinning `spin` times
 * in the guest, and waits for its first loop (with vcpu_delay_ms, only for
 * its VM: the vCPU comes that much later). name NULL: no -name (the plugin
 * then names the VM after the process). Returns its pid; -2 when KVM is
 * unusable (reason in skip_reason); -1 on another failure. */
static pid_t start_guest_ex(const char *name, int hz, int spin, bool statsfd, int vcpu_delay_ms,
                            const char *mem_arg)
{
    int out[2], err[2];
    if (pipe(out) != 0 || pipe(err) != 0) {
        return -1;
    }
    char spin_s[16], hz_s[16], mem_s[16], delay_s[16];
    snprintf(spin_s, sizeof spin_s, "%d", spin);
    snprintf(hz_s, sizeof hz_s, "%d", hz);
    snprintf(mem_s, sizeof mem_s, "%d", GUEST_MIB);
    snprintf(delay_s, sizeof delay_s, "%d", vcpu_delay_ms);
    const char *argv[20];
    int n = 0;
    argv[n++] = guest_bin;
    if (name) {
        argv[n++] = "-name";
        argv[n++] = name;
    }
    argv[n++] = "-hz";
    argv[n++] = hz_s;
    argv[n++] = "-spin";
    argv[n++] = spin_s;
    argv[n++] = "-m";
    argv[n++] = mem_arg ? mem_arg : mem_s;
    argv[n++] = "-statsfd";
    argv[n++] = statsfd ? "1" : "0";
    argv[n++] = "-vcpu-delay";
    argv[n++] = delay_s;
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        /* Dies with the test, even if the test crashes. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(err[0]);
        execv(guest_bin, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    for (int i = 0; i < MAX_GUESTS; i++) {
        if (guests[i] == 0) {
            guests[i] = pid;
            break;
        }
    }
    struct lines l = {.fd = out[0]};
    bool ok = wait_line(&l, "vm", 10000) && (vcpu_delay_ms > 0 || wait_line(&l, "ready", 10000));
    close(out[0]);
    if (ok) {
        close(err[0]);
        return pid;
    }
    char buf[512];
    kill_guest(pid); /* before reading its stderr: then the read ends */
    ssize_t e = read(err[0], buf, sizeof buf - 1);
    buf[e > 0 ? e : 0] = '\0';
    close(err[0]);
    snprintf(skip_reason, sizeof skip_reason, "kvm guest did not start: %.400s", buf);
    return strstr(buf, "/dev/kvm") || strstr(buf, "KVM_CREATE") ? -2 : -1;
}

static pid_t start_guest(const char *name, int hz, int spin, bool statsfd)
{
    return start_guest_ex(name, hz, spin, statsfd, 0, NULL);
}

/* Leftovers of an earlier run that crashed: guests of our binary whose parent
 * is gone (PDEATHSIG covers most cases; this covers the rest). */
static void kill_leftovers(void)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd,
             "for p in /proc/[0-9]*; do [ \"$(readlink $p/exe 2>/dev/null)\" = '%s' ] && "
             "kill -9 ${p#/proc/} 2>/dev/null; done; true",
             guest_bin);
    if (system(cmd) != 0) {
        fprintf(stderr, "kvm: could not look for leftover guests\n");
    }
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(prefix, sizeof prefix, "vigil-kvmtest-%d", (int)getpid());
    snprintf(guest_bin, sizeof guest_bin, "%s/tests/kvm_guest", VIGIL_BUILD_DIR);
    kill_leftovers();
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        snprintf(skip_reason, sizeof skip_reason, "/dev/kvm is not usable here: %s",
                 strerror(errno));
        return 0;
    }
    char cmd[2600];
    snprintf(cmd, sizeof cmd,
             "command -v cc >/dev/null && cc -O2 -Wall -o '%s.tmp' '%s' && "
             "mv '%s.tmp' '%s'",
             guest_bin, VIGIL_SOURCE_DIR "/tests/kvm_guest.c", guest_bin, guest_bin);
    int rc = system(cmd);
    if (rc != 0) {
        if (system("command -v cc >/dev/null") != 0) {
            snprintf(skip_reason, sizeof skip_reason, "no C compiler (cc) to build the guest");
            return 0;
        }
        fprintf(stderr, "kvm: building the guest failed: %s\n", cmd);
        return -1;
    }
    pid_t g = start_guest(NULL, HZ, 1, false);
    if (g == -2) {
        return 0; /* skip_reason says why */
    }
    if (g < 0) {
        fprintf(stderr, "kvm: %s\n", skip_reason);
        return -1;
    }
    kill_guest(g);
    skip_reason[0] = '\0';
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kill_all_guests();
    return 0;
}

static int setup(void **state)
{
    *state = calloc(1, sizeof(struct fixture));
    return *state ? 0 : -1;
}

/* Runs after a failed test too: no guest outlives its test. */
static int teardown(void **state)
{
    struct fixture *f = *state;
    kill_all_guests();
    ph_stop(f->p);
    free(f);
    return 0;
}

static void need_kvm(void)
{
    if (skip_reason[0]) {
        fprintf(stderr, "kvm: skipped: %s\n", skip_reason);
        skip();
    }
}

static struct ph *start_plugin(const char *extra)
{
    char y[512];
    snprintf(y, sizeof y, "plugin: kvm\nname: k\ninterval: 300ms\nvms: ['%s-*', kvm_guest]\n%s",
             prefix, extra ? extra : "");
    struct ph *p = ph_start(y, "kvm.");
    assert_non_null(p);
    return p;
}

static bool has(const struct vigil_event_view *v, const char *path, double *out)
{
    double x;
    if (vigil_msgpack_double(vigil_event_get(v, path), &x) != 0) {
        return false;
    }
    if (out) {
        *out = x;
    }
    return true;
}

static bool is_from(const struct vigil_event_view *v, const char *topic, pid_t pid)
{
    char buf[32];
    return v->topic_len == strlen(topic) && memcmp(v->topic, topic, v->topic_len) == 0 &&
           ph_str(v, "labels.pid", buf, sizeof buf) && atoi(buf) == pid;
}

/* The next `topic` event of guest `pid` that has `need` (a value path; NULL
 * for any), within timeout_ms. */
static const struct vigil_event_view *wait_event(struct ph *p, const char *topic, pid_t pid,
                                                 const char *need, int timeout_ms)
{
    uint64_t end = vigil_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (vigil_mono_ns() < end) {
        const struct vigil_event_view *v = ph_next(p, 200);
        if (v && is_from(v, topic, pid) && (!need || has(v, need, NULL))) {
            return v;
        }
    }
    return NULL;
}

static void assert_near(const struct vigil_event_view *v, const char *path, double want,
                        double lo_f, double hi_f, double hi_add)
{
    double x = ph_value(v, path);
    if (x < want * lo_f || x > want * hi_f + hi_add) {
        fail_msg("%s = %.1f, expected about %.1f", path, x, want);
    }
}

static void skip_without_counters(const struct vigil_event_view *v)
{
    char m[32];
    ph_str(v, "attrs.method", m, sizeof m);
    if (strcmp(m, "none") == 0) {
        fprintf(stderr, "kvm: skipped: the plugin has no exit counters on this machine (no "
                        "stats fds, debugfs or perf tracepoints; see its warnings)\n");
        skip();
    }
}

/* A guest that opens no stats fds: found through /proc, with the exit rates
 * its run loop paces, one vCPU, its name, memory and a vCPU event. */
static void test_guest_found_with_rates(void **state)
{
    struct fixture *f = *state;
    need_kvm();
    char name[96];
    snprintf(name, sizeof name, "%s-a", prefix);
    pid_t g = start_guest(name, HZ, 100, false);
    assert_true(g > 0);
    f->p = start_plugin(NULL);
    const struct vigil_event_view *v = wait_event(f->p, "kvm.vm", g, NULL, 5000);
    assert_non_null(v);
    char buf[96];
    assert_string_equal(ph_str(v, "labels.vm", buf, sizeof buf), name);
    assert_non_null(ph_str(v, "labels.vm_fd", buf, sizeof buf));
    assert_true(atoi(buf) >= 3);
    assert_true(ph_value(v, "values.vcpus") == 1.0);
    skip_without_counters(v);
    double total0 = ph_value(v, "values.exits_total");
    /* Rates come from the second reading on; take the third, settled. */
    assert_non_null(wait_event(f->p, "kvm.vm", g, "values.exits_per_s", 5000));
    v = wait_event(f->p, "kvm.vm", g, "values.exits_per_s", 5000);
    assert_non_null(v);
    char method[32];
    ph_str(v, "attrs.method", method, sizeof method);
    fprintf(stderr, "kvm: method %s, exits_per_s %.1f (expected %.0f)\n", method,
            ph_value(v, "values.exits_per_s"), EXITS);
    /* VMX/SVM add exits the VMM never sees (interrupts...): more is fine. */
    assert_near(v, "values.exits_per_s", EXITS, 0.7, 1.5, 50);
    assert_true(ph_value(v, "values.exits_total") > total0);
    if (has(v, "values.userspace_exits_per_s", NULL)) {
        assert_near(v, "values.userspace_exits_per_s", EXITS, 0.7, 1.3, 0);
    }
    if (strcmp(method, "tracepoint") == 0) {
        assert_near(v, "values.io_exits_per_s", HZ, 0.7, 1.3, 0);
        assert_near(v, "values.halt_exits_per_s", HZ, 0.7, 1.3, 0);
        assert_near(v, "values.userspace_exits_per_s", EXITS, 0.7, 1.3, 0);
    }
    if (strcmp(method, "debugfs") == 0) {
        assert_near(v, "values.halt_exits_per_s", HZ, 0.7, 1.5, 0);
    }
    /* Memory: -m 16 on the command line; the guest touched all of it. */
    assert_true(ph_value(v, "values.guest_memory_bytes") == (double)(GUEST_MIB << 20));
    double rss = ph_value(v, "values.rss_bytes");
    double over = ph_value(v, "values.memory_overhead_bytes");
    assert_true(rss >= (double)(GUEST_MIB << 20));
    assert_true(over > 0 && over < 64.0 * (1 << 20));
    assert_true(over == rss - (double)(GUEST_MIB << 20));
    assert_true(has(v, "values.guest_cpu_pct", NULL) && has(v, "values.host_cpu_pct", NULL));
    /* Its one vCPU, with its own rate once the thread is known. */
    v = wait_event(f->p, "kvm.vcpu", g, "values.exits_per_s", 5000);
    assert_non_null(v);
    assert_string_equal(ph_str(v, "labels.vcpu", buf, sizeof buf), "0");
    assert_string_equal(ph_str(v, "labels.vm", buf, sizeof buf), name);
    assert_near(v, "values.exits_per_s", EXITS, 0.7, 1.5, 50);
    if (ph_str(v, "labels.tid", buf, sizeof buf)) {
        assert_true(atoi(buf) == g); /* the guest runs its vCPU on its main thread */
        assert_true(has(v, "values.guest_cpu_pct", NULL));
    }
}

/* A guest that keeps its vCPU stats fd open, as QEMU does: the plugin
 * borrows it (method stats_fd); with tracepoints: always it adds exits to
 * user space and port I/O beside the stats. */
static void test_stats_fd_borrowed(void **state)
{
    struct fixture *f = *state;
    need_kvm();
    char name[96];
    snprintf(name, sizeof name, "%s-s", prefix);
    pid_t g = start_guest(name, HZ, 100, true);
    assert_true(g > 0);
    f->p = start_plugin("tracepoints: always\n");
    assert_non_null(wait_event(f->p, "kvm.vm", g, "values.exits_per_s", 5000));
    const struct vigil_event_view *v = wait_event(f->p, "kvm.vm", g, "values.exits_per_s", 5000);
    assert_non_null(v);
    char buf[32];
    assert_string_equal(ph_str(v, "attrs.method", buf, sizeof buf), "stats_fd");
    assert_string_equal(ph_str(v, "attrs.exits_from", buf, sizeof buf), "exits");
    assert_near(v, "values.exits_per_s", EXITS, 0.7, 1.5, 50);
    assert_near(v, "values.halt_exits_per_s", HZ, 0.7, 1.3, 0);
    assert_true(ph_value(v, "values.exits_total") >= ph_value(v, "values.halt_exits_total"));
    if (has(v, "values.userspace_exits_per_s", NULL)) { /* perf tracepoints work here */
        assert_near(v, "values.userspace_exits_per_s", EXITS, 0.7, 1.3, 0);
        assert_near(v, "values.io_exits_per_s", HZ, 0.7, 1.3, 0);
    } else {
        fprintf(stderr, "kvm: no tracepoints here; stats fd checks only\n");
    }
    v = wait_event(f->p, "kvm.vcpu", g, "values.exits_per_s", 5000);
    assert_non_null(v);
    assert_string_equal(ph_str(v, "attrs.method", buf, sizeof buf), "stats_fd");
    assert_near(v, "values.exits_per_s", EXITS, 0.7, 1.5, 50);
}

/* In auto mode a VM with stats fds costs no perf fds. The guest is named
 * and sized the way libvirt starts QEMU. */
static void test_stats_fd_auto_no_tracepoints(void **state)
{
    struct fixture *f = *state;
    need_kvm();
    char name[96], arg[128];
    snprintf(name, sizeof name, "%s-t", prefix);
    snprintf(arg, sizeof arg, "guest=%s,debug-threads=on", name);
    pid_t g = start_guest_ex(arg, HZ, 100, true, 0, "size=16M,slots=2,maxmem=64M");
    assert_true(g > 0);
    f->p = start_plugin(NULL);
    const struct vigil_event_view *v = wait_event(f->p, "kvm.vm", g, "values.exits_per_s", 5000);
    assert_non_null(v);
    char buf[96];
    assert_string_equal(ph_str(v, "labels.vm", buf, sizeof buf), name);
    assert_true(ph_value(v, "values.guest_memory_bytes") == (double)(16 << 20));
    assert_string_equal(ph_str(v, "attrs.method", buf, sizeof buf), "stats_fd");
    assert_false(has(v, "values.userspace_exits_per_s", NULL));
    assert_false(has(v, "attrs.threads_traced", NULL));
    assert_near(v, "values.exits_per_s", EXITS, 0.7, 1.5, 50);
}

/* With full /proc scans a minute apart, a guest started later is still
 * found at once (new processes are looked at every collection), a guest
 * without -name is named after its process, and a killed one disappears. */
static void test_vms_come_and_go(void **state)
{
    struct fixture *f = *state;
    need_kvm();
    char name[96];
    snprintf(name, sizeof name, "%s-a", prefix);
    pid_t a = start_guest(name, HZ, 100, false);
    assert_true(a > 0);
    f->p = start_plugin("rescan: 60s\n");
    assert_non_null(wait_event(f->p, "kvm.vm", a, NULL, 5000));
    pid_t b = start_guest(NULL, HZ, 100, false);
    assert_true(b > 0);
    const struct vigil_event_view *v = wait_event(f->p, "kvm.vm", b, "values.exits_total", 5000);
    assert_non_null(v);
    char buf[64];
    assert_string_equal(ph_str(v, "labels.vm", buf, sizeof buf), "kvm_guest");
    assert_true(ph_value(v, "values.vcpus") == 1.0);
    assert_non_null(wait_event(f->p, "kvm.vm", a, NULL, 3000)); /* a is still there */
    kill_guest(a);
    /* Let the events collected before the kill drain, then a must be gone
     * while b goes on. */
    uint64_t t0 = vigil_mono_ns();
    while (vigil_mono_ns() - t0 < 1000000000ull) {
        ph_next(f->p, 100);
    }
    int seen_a = 0, seen_b = 0;
    t0 = vigil_mono_ns();
    while (vigil_mono_ns() - t0 < 1500000000ull) {
        const struct vigil_event_view *e = ph_next(f->p, 100);
        seen_a += e && is_from(e, "kvm.vm", a);
        seen_b += e && is_from(e, "kvm.vm", b);
    }
    assert_int_equal(seen_a, 0);
    assert_true(seen_b >= 2);
}

/* A VM found before its vCPU exists, in a process that was there before the
 * plugin started (so not a "new process"): the vCPU still shows up without
 * waiting for the next full scan. debugfs is kept out of it, since it would
 * tell the vCPU on its own. */
static void test_vcpus_added_later(void **state)
{
    struct fixture *f = *state;
    need_kvm();
    char name[96];
    snprintf(name, sizeof name, "%s-late", prefix);
    pid_t g = start_guest_ex(name, HZ, 100, false, 1500, NULL);
    assert_true(g > 0);
    f->p = start_plugin("rescan: 60s\ndebugfs: /nonexistent\nprivate_mounts: false\n");
    const struct vigil_event_view *v = wait_event(f->p, "kvm.vm", g, NULL, 5000);
    assert_non_null(v);
    assert_true(ph_value(v, "values.vcpus") == 0.0);
    uint64_t t0 = vigil_mono_ns();
    double vcpus = 0;
    while (vcpus == 0 && vigil_mono_ns() - t0 < 5000000000ull) {
        v = wait_event(f->p, "kvm.vm", g, NULL, 1000);
        vcpus = v ? ph_value(v, "values.vcpus") : 0;
    }
    assert_true(vcpus == 1.0);
}

/* host_cpu_pct + guest_cpu_pct follow what the VMM burns: a guest spinning
 * flat out against one that idles. (On software-backed KVM the kernel books
 * guest time as system time, so only the sum is compared.) */
static void test_cpu_follows_guest(void **state)
{
    struct fixture *f = *state;
    need_kvm();
    char busy_name[96], idle_name[96];
    snprintf(busy_name, sizeof busy_name, "%s-busy", prefix);
    snprintf(idle_name, sizeof idle_name, "%s-idle", prefix);
    /* Busy: loops due far more often than they can run, so the VMM never
     * sleeps, however fast this host runs the guest's spin. */
    pid_t busy = start_guest(busy_name, 1000000, 1000, false);
    pid_t idle = start_guest(idle_name, HZ, 1, false);
    assert_true(busy > 0 && idle > 0);
    f->p = start_plugin("per_vcpu: false\n");
    double sum_busy = 0, sum_idle = 0;
    for (int i = 0; i < 3; i++) {
        const struct vigil_event_view *v =
            wait_event(f->p, "kvm.vm", busy, "values.host_cpu_pct", 5000);
        assert_non_null(v);
        sum_busy = ph_value(v, "values.host_cpu_pct") + ph_value(v, "values.guest_cpu_pct");
        v = wait_event(f->p, "kvm.vm", idle, "values.host_cpu_pct", 5000);
        assert_non_null(v);
        sum_idle = ph_value(v, "values.host_cpu_pct") + ph_value(v, "values.guest_cpu_pct");
        assert_true(ph_value(v, "values.guest_cpu_pct") >= 0);
    }
    fprintf(stderr, "kvm: busy guest %.1f%% CPU, idle guest %.1f%%\n", sum_busy, sum_idle);
    assert_true(sum_busy > 25.0);
    assert_true(sum_idle < 15.0);
    /* per_vcpu: false: no vCPU events at all. */
    uint64_t t0 = vigil_mono_ns();
    while (vigil_mono_ns() - t0 < 700000000ull) {
        const struct vigil_event_view *v = ph_next(f->p, 100);
        assert_false(v && v->topic_len == 8 && memcmp(v->topic, "kvm.vcpu", 8) == 0);
    }
}

static void expect_errors(const char *instance, size_t n, const char *const *want)
{
    struct vigil_diag d;
    vigil_diag_init(&d);
    size_t got = ph_check(instance, &d);
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < d.n; j++) {
            found |= strncmp(d.msgs[j], want[i], strlen(want[i])) == 0;
        }
        if (!found) {
            vigil_diag_print(&d, stderr);
            fail_msg("missing: %s", want[i]);
        }
    }
    if (got != n) {
        vigil_diag_print(&d, stderr);
        fail_msg("%zu errors, expected %zu", got, n);
    }
    vigil_diag_fini(&d);
}

static void test_bad_config_positions(void **state)
{
    (void)state;
    const char *semantic[] = {"ph.yaml:4:18: tracepoints must be auto, always or never",
                              "ph.yaml:5:14: debugfs must be an absolute path",
                              "ph.yaml:6:19: bad vms pattern: pattern ends with a lone backslash"};
    expect_errors("plugin: kvm\ntracepoints: sometimes\ndebugfs: sys/kernel/debug\n"
                  "vms: ['ok-*', 'x\\']\n",
                  3, semantic);
    /* Types are the host's check, before init. */
    const char *types[] = {"ph.yaml:4:13: key 'rescan'", "ph.yaml:5:15: key 'per_vcpu'"};
    expect_errors("plugin: kvm\nrescan: soon\nper_vcpu: maybe\n", 2, types);
    /* The defaults are a valid config. */
    expect_errors("plugin: kvm\n", 0, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_guest_found_with_rates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_fd_borrowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_fd_auto_no_tracepoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vms_come_and_go, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vcpus_added_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cpu_follows_guest, setup, teardown),
        cmocka_unit_test(test_bad_config_positions),
    };
    return cmocka_run_group_tests_name("kvm", tests, group_setup, group_teardown);
}

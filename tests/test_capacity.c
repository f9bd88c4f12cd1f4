/* kind: capacity with the real vigild: the cgroups, system and kvm sources
 * feed a capacity rule, a capture sink keeps what it publishes. Cgroups the
 * test makes with CPU quotas and memory limits (one unlimited, one nested
 * below a limited one) and the test's own KVM guest move reserved_<r> and
 * ratio_<r> by exactly what they reserve; a quota raised past the host's
 * CPUs fires with the cgroup named first in attrs.top, and resolves when it
 * is lowered. Cgroups are vigil-cap-<pid>/..., removed in teardown also
 * when a test fails (and leftovers of crashed runs first); without a usable
 * /dev/kvm the VM part says it is skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cgroup_rm.h"
#include "harness.h"

#define MIB (1024.0 * 1024.0)

static char cpu_mnt[256], mem_mnt[256]; /* v1 cpu and memory, or both cgroup2 */
static bool v2;
static char top[64]; /* /vigil-cap-<pid> */
static char guest_bin[400];
static pid_t guest;

struct fx {
    struct vd v;
};

/* ---- cgroups ------------------------------------------------------------------- */

static bool has_tok(const char *opts, const char *tok)
{
    size_t n = strlen(tok);
    for (const char *p = opts; p && *p; p = strchr(p, ','), p = p ? p + 1 : NULL) {
        if (strncmp(p, tok, n) == 0 && (p[n] == ',' || p[n] == '\0' || p[n] == '\n')) {
            return true;
        }
    }
    return false;
}

/* The v1 cpu and memory hierarchies; else cgroup2 with both controllers. */
static bool find_mounts(char *why, size_t cap)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[2048], v2mnt[256] = "";
    while (f && fgets(line, sizeof line, f)) {
        char mnt[256], fstype[64], super[1024];
        const char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %*s %255s", mnt) != 1 ||
            sscanf(dash + 3, "%63s %*s %1023s", fstype, super) != 2) {
            continue;
        }
        if (strcmp(fstype, "cgroup") == 0 && has_tok(super, "cpu")) {
            snprintf(cpu_mnt, sizeof cpu_mnt, "%s", mnt);
        } else if (strcmp(fstype, "cgroup") == 0 && has_tok(super, "memory")) {
            snprintf(mem_mnt, sizeof mem_mnt, "%s", mnt);
        } else if (strcmp(fstype, "cgroup2") == 0 && strncmp(mnt, "/sys/fs/cgroup", 14) == 0) {
            snprintf(v2mnt, sizeof v2mnt, "%s", mnt);
        }
    }
    if (f) {
        fclose(f);
    }
    if (cpu_mnt[0] && mem_mnt[0]) {
        return true;
    }
    char p[512], buf[256] = "";
    snprintf(p, sizeof p, "%s/cgroup.controllers", v2mnt);
    FILE *c = v2mnt[0] ? fopen(p, "r") : NULL;
    if (c) {
        if (!fgets(buf, sizeof buf, c)) {
            buf[0] = '\0';
        }
        fclose(c);
    }
    /* "cpuset cpu io memory pids": words, space separated */
    if (v2mnt[0] && (strstr(buf, "cpu ") || strstr(buf, " cpu")) && strstr(buf, "memory")) {
        snprintf(cpu_mnt, sizeof cpu_mnt, "%s", v2mnt);
        snprintf(mem_mnt, sizeof mem_mnt, "%s", v2mnt);
        v2 = true;
        return true;
    }
    snprintf(why, cap, "no cgroup v1 cpu and memory hierarchies and no cgroup2 with both");
    return false;
}

static bool write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "capacity: open %s: %s\n", path, strerror(errno));
        return false;
    }
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    if (n != (ssize_t)strlen(text)) {
        fprintf(stderr, "capacity: write '%s' to %s: %s\n", text, path, strerror(errno));
        return false;
    }
    return true;
}

/* mkdir <mnt><top>/<rel> in each hierarchy (rel "" for the top itself). */
static void make_cgroup(const char *rel)
{
    const char *mnts[2] = {cpu_mnt, mem_mnt};
    for (int i = 0; i < (v2 ? 1 : 2); i++) {
        char p[512];
        snprintf(p, sizeof p, "%s%s%s%s", mnts[i], top, rel[0] ? "/" : "", rel);
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            fail_msg("mkdir %s: %s", p, strerror(errno));
        }
        if (v2) { /* let its children have the controllers */
            char sc[600];
            snprintf(sc, sizeof sc, "%s/cgroup.subtree_control", p);
            write_file(sc, "+cpu +memory");
        }
    }
}

/* A CPU quota of `cpus` (0: none) on <top>/<rel>. */
static void set_cpus(const char *rel, double cpus)
{
    char p[512], text[64];
    if (v2) {
        snprintf(p, sizeof p, "%s%s/%s/cpu.max", cpu_mnt, top, rel);
        if (cpus > 0) {
            snprintf(text, sizeof text, "%lld 100000", (long long)(cpus * 100000));
        } else {
            snprintf(text, sizeof text, "max 100000");
        }
    } else {
        snprintf(p, sizeof p, "%s%s/%s/cpu.cfs_quota_us", cpu_mnt, top, rel);
        snprintf(text, sizeof text, "%lld", cpus > 0 ? (long long)(cpus * 100000) : -1LL);
    }
    assert_true(write_file(p, text));
}

static void set_memory(const char *rel, long long bytes)
{
    char p[512], text[64];
    snprintf(p, sizeof p, "%s%s/%s/%s", mem_mnt, top, rel,
             v2 ? "memory.max" : "memory.limit_in_bytes");
    snprintf(text, sizeof text, "%lld", bytes);
    assert_true(write_file(p, text));
}

static void remove_ours(void)
{
    const char *mnts[2] = {cpu_mnt, mem_mnt};
    for (int i = 0; i < 2; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s%s", mnts[i], top);
        if (mnts[i][0] && top[0]) {
            vigil_cgroup_remove_tree(p);
        }
    }
}

/* vigil-cap-<pid> of runs that crashed (their pid is gone). */
static void remove_leftovers(void)
{
    const char *mnts[2] = {cpu_mnt, mem_mnt};
    for (int i = 0; i < 2; i++) {
        DIR *d = mnts[i][0] ? opendir(mnts[i]) : NULL;
        for (struct dirent *e; d && (e = readdir(d));) {
            int pid;
            if (sscanf(e->d_name, "vigil-cap-%d", &pid) == 1 && kill(pid, 0) != 0 &&
                errno == ESRCH) {
                char p[600];
                snprintf(p, sizeof p, "%s/%s", mnts[i], e->d_name);
                vigil_cgroup_remove_tree(p);
            }
        }
        if (d) {
            closedir(d);
        }
    }
}

/* ---- the guest ----------------------------------------------------------------- */

/* Starts the test's KVM guest (tests/kvm_guest.c, built with cc as
 * test_kvm does): one vCPU, 64 MiB. 0, or -1 with the reason in why. */
static int start_guest(const char *name, char *why, size_t cap)
{
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        snprintf(why, cap, "/dev/kvm is not usable here: %s", strerror(errno));
        return -1;
    }
    snprintf(guest_bin, sizeof guest_bin, "%s/tests/kvm_guest", VIGIL_BUILD_DIR);
    char cmd[2600];
    snprintf(cmd, sizeof cmd,
             "test -x '%s' || { command -v cc >/dev/null && cc -O2 -Wall -o '%s.cap' '%s' && "
             "mv '%s.cap' '%s'; }",
             guest_bin, guest_bin, VIGIL_SOURCE_DIR "/tests/kvm_guest.c", guest_bin, guest_bin);
    if (system(cmd) != 0) {
        snprintf(why, cap, "cannot build the guest with cc from tests/kvm_guest.c");
        return -1;
    }
    int out[2];
    if (pipe(out) != 0) {
        return -1;
    }
    guest = fork();
    if (guest == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(out[1], 1);
        close(out[0]);
        execl(guest_bin, guest_bin, "-name", name, "-hz", "10", "-spin", "0", "-m", "64",
              (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char buf[64] = "";
    size_t len = 0;
    double end = now_s() + 10;
    while (now_s() < end && !strstr(buf, "ready") && len < sizeof buf - 1) {
        ssize_t n = read(out[0], buf + len, sizeof buf - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
    }
    close(out[0]);
    if (!strstr(buf, "ready")) {
        snprintf(why, cap, "the guest did not start (said '%s')", buf);
        kill(guest, SIGKILL);
        waitpid(guest, NULL, 0);
        guest = 0;
        return -1;
    }
    return 0;
}

static void stop_guest(void)
{
    if (guest > 0) {
        kill(guest, SIGKILL);
        waitpid(guest, NULL, 0);
        guest = 0;
    }
}

/* ---- what the rule published --------------------------------------------------- */

/* The number after "key": in line, NAN when absent. */
static double jnum(const char *line, const char *key)
{
    char k[128];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(line, k);
    return p ? strtod(p + strlen(k), NULL) : NAN;
}

/* The last line of out.jsonl holding `needle` (caller frees), or NULL. */
static char *last_line(struct vd *v, const char *needle)
{
    char *all = slurp(vd_path(v, "out.jsonl"));
    char *found = NULL;
    for (char *save, *l = all ? strtok_r(all, "\n", &save) : NULL; l;
         l = strtok_r(NULL, "\n", &save)) {
        if (strstr(l, needle)) {
            found = l;
        }
    }
    char *copy = found ? strdup(found) : NULL;
    free(all);
    return copy;
}

struct want {
    double cpus, memory_bytes, unlimited_cpu, unlimited_memory, contributors;
};

/* Waits (up to 15 s) for a capacity.host that says `w`; prints the last one
 * seen when none does. */
static bool wait_capacity(struct vd *v, const struct want *w, char **line)
{
    double end = now_s() + 15;
    char *l = NULL;
    while (now_s() < end) {
        free(l);
        l = last_line(v, "\"capacity.host\"");
        if (l && fabs(jnum(l, "reserved_cpus") - w->cpus) < 1e-9 &&
            jnum(l, "reserved_memory_bytes") == w->memory_bytes &&
            jnum(l, "unlimited_cpu") == w->unlimited_cpu &&
            jnum(l, "unlimited_memory") == w->unlimited_memory &&
            jnum(l, "contributors") == w->contributors) {
            *line = l;
            return true;
        }
        sleep_ms(100);
    }
    fprintf(stderr,
            "capacity: wanted reserved_cpus %g, reserved_memory_bytes %g, unlimited %g/%g, "
            "contributors %g; last capacity.host: %s\n",
            w->cpus, w->memory_bytes, w->unlimited_cpu, w->unlimited_memory, w->contributors,
            l ? l : "(none)");
    free(l);
    vd_dump_log(v);
    return false;
}

/* ---- the test ------------------------------------------------------------------ */

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    *state = f;
    return f ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    stop_guest();
    vd_cleanup(&f->v);
    remove_ours();
    free(f);
    return 0;
}

static void test_capacity_follows_cgroups_and_vm(void **state)
{
    struct fx *f = *state;
    char why[512];
    if (getuid() != 0) {
        fprintf(stderr, "capacity: skipped: needs root to make cgroups\n");
        skip();
    }
    if (!find_mounts(why, sizeof why)) {
        fprintf(stderr, "capacity: skipped: %s\n", why);
        skip();
    }
    snprintf(top, sizeof top, "/vigil-cap-%d", (int)getpid());
    remove_leftovers();
    make_cgroup("");
    make_cgroup("a");
    make_cgroup("a/inner");
    make_cgroup("b");
    make_cgroup("c");
    set_cpus("a", 0.5);
    set_memory("a", 256 << 20);
    set_cpus("a/inner", 0.25); /* below a: a's limits hold it */
    set_cpus("c", 0.25);
    set_memory("c", 128 << 20);
    char vm[64], body[4096];
    snprintf(vm, sizeof vm, "vigil-captest-%d", (int)getpid());
    snprintf(body, sizeof body,
             "host: caphost\n"
             "sources:\n"
             "  - plugin: cgroups\n"
             "    interval: 300ms\n"
             "    namespaces: false\n"
             "    match: ['%s/*', '%s/*/*']\n"
             "  - plugin: system\n"
             "    interval: 300ms\n"
             "    mounts: []\n"
             "  - plugin: kvm\n"
             "    interval: 300ms\n"
             "    per_vcpu: false\n"
             "    vms: ['%s']\n"
             "rules:\n"
             "  - name: capacity\n"
             "    kind: capacity\n"
             "    match: [system.stats, cgroup.stats, kvm.vm]\n"
             "    cgroups: ['%s/*', '%s/*/*']\n"
             "    overcommit: {cpu: 1.0, memory: 1.0}\n"
             "    stale: 3s\n"
             "    publish_every: 100ms\n"
             "sinks:\n"
             "  - plugin: test_capture\n"
             "    match: [capacity., alert.]\n"
             "    path: @DIR@/out.jsonl\n",
             top, top, vm, top, top);
    assert_int_equal(vd_setup(&f->v, "10s", body), 0);
    assert_true(vd_started(&f->v));

    /* a 0.5 + c 0.25 CPUs, 256 + 128 MiB; b unlimited in both; a/inner
     * nested. */
    char *l = NULL;
    struct want w = {0.75, 384 * MIB, 1, 1, 3};
    assert_true(wait_capacity(&f->v, &w, &l));
    double cpus = jnum(l, "capacity_cpus");
    assert_true(cpus == (double)sysconf(_SC_NPROCESSORS_ONLN));
    assert_true(jnum(l, "capacity_memory_bytes") > 0);
    assert_true(fabs(jnum(l, "ratio_cpu") - 0.75 / cpus) < 1e-9);
    assert_true(fabs(jnum(l, "headroom_cpus") - (cpus - 0.75)) < 1e-9);
    assert_non_null(strstr(l, "\"host\":\"caphost\""));
    fprintf(stderr, "capacity: %s\n", l);
    free(l);

    /* The test's guest: one vCPU and 64 MiB more; gone, it leaves after
     * `stale`. */
    if (start_guest(vm, why, sizeof why) == 0) {
        w = (struct want){1.75, 448 * MIB, 1, 1, 4};
        assert_true(wait_capacity(&f->v, &w, &l));
        fprintf(stderr, "capacity: with the guest: %s\n", l);
        free(l);
        stop_guest();
        w = (struct want){0.75, 384 * MIB, 1, 1, 3};
        assert_true(wait_capacity(&f->v, &w, &l));
        free(l);
    } else {
        fprintf(stderr, "capacity: the VM part skipped: %s\n", why);
    }

    /* c's quota raised to every CPU of the host: over the limit, and c is
     * the largest contributor. b's memory limit set: no unlimited left. */
    set_cpus("c", cpus);
    set_memory("b", 64 << 20);
    w = (struct want){0.5 + cpus, 448 * MIB, 1, 0, 3};
    assert_true(wait_capacity(&f->v, &w, &l));
    free(l);
    char top_c[128];
    snprintf(top_c, sizeof top_c, "\"top\":[{\"kind\":\"cgroup\",\"name\":\"%s/c\"", top);
    assert_true(wait_lines(vd_path(&f->v, "out.jsonl"), "\"alert.fired\"", 1, 10));
    l = last_line(&f->v, "\"alert.fired\"");
    assert_non_null(l);
    assert_non_null(strstr(l, "\"resource\":\"cpu\""));
    assert_non_null(strstr(l, top_c));
    assert_true(fabs(jnum(l, "ratio_cpu") - (0.5 + cpus) / cpus) < 1e-9);
    fprintf(stderr, "capacity: %s\n", l);
    free(l);

    /* Lowered again: resolved. */
    set_cpus("c", 0.25);
    assert_true(wait_lines(vd_path(&f->v, "out.jsonl"), "\"alert.resolved\"", 1, 10));
    l = last_line(&f->v, "\"alert.resolved\"");
    assert_non_null(strstr(l, "\"resource\":\"cpu\""));
    free(l);
    assert_int_equal(count_lines(vd_path(&f->v, "out.jsonl"), "\"alert.fired\""), 1);
    double secs;
    assert_int_equal(vd_stop(&f->v, 10, &secs), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_capacity_follows_cgroups_and_vm, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

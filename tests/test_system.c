/* The system source through the real host and bus, checked against figures
 * this test reads itself (/proc/meminfo, /proc/loadavg, /proc/stat,
 * /proc/self/mounts, statvfs), a busy child pinned to one core, and
 * filesystems it mounts in a private mount namespace of its own.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <mntent.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h> /* after the headers it needs */

#include "plugin_harness.h"

#define MIB (1024.0 * 1024.0)
#define NS_PREFIX "/tmp/vigil_system_mnt."

/* ---- Copies of events (a view lives only until the next ph_next) ---------- */

struct ev_copy {
    char topic[32];
    uint64_t ts;
    int nvals;
    struct {
        char k[48];
        double v;
    } vals[48];
    int nlabels;
    struct {
        char k[16];
        char v[256];
    } labels[4];
    int readonly; /* attrs.readonly: -1 absent, else 0/1 */
};

static void copy_event(const struct vigil_event_view *v, struct ev_copy *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->topic, sizeof e->topic, "%.*s", (int)v->topic_len, v->topic);
    e->ts = v->ts;
    for (uint32_t i = 0; v->values && i < v->values->via.map.size; i++) {
        const msgpack_object_kv *kv = &v->values->via.map.ptr[i];
        assert_true(e->nvals < 48);
        snprintf(e->vals[e->nvals].k, sizeof e->vals[0].k, "%.*s", (int)kv->key.via.str.size,
                 kv->key.via.str.ptr);
        assert_int_equal(vigil_msgpack_double(&kv->val, &e->vals[e->nvals].v), 0);
        e->nvals++;
    }
    for (uint32_t i = 0; v->labels && i < v->labels->via.map.size; i++) {
        const msgpack_object_kv *kv = &v->labels->via.map.ptr[i];
        assert_true(e->nlabels < 4);
        snprintf(e->labels[e->nlabels].k, sizeof e->labels[0].k, "%.*s", (int)kv->key.via.str.size,
                 kv->key.via.str.ptr);
        snprintf(e->labels[e->nlabels].v, sizeof e->labels[0].v, "%.*s", (int)kv->val.via.str.size,
                 kv->val.via.str.ptr);
        e->nlabels++;
    }
    const msgpack_object *ro = vigil_event_get(v, "attrs.readonly");
    e->readonly = ro && ro->type == MSGPACK_OBJECT_BOOLEAN ? ro->via.boolean : -1;
}

static bool has(const struct ev_copy *e, const char *k, double *out)
{
    for (int i = 0; i < e->nvals; i++) {
        if (strcmp(e->vals[i].k, k) == 0) {
            if (out) {
                *out = e->vals[i].v;
            }
            return true;
        }
    }
    return false;
}

static double val(const struct ev_copy *e, const char *k)
{
    double x = 0;
    if (!has(e, k, &x)) {
        fail_msg("%s event has no values.%s", e->topic, k);
    }
    return x;
}

static const char *label(const struct ev_copy *e, const char *k)
{
    for (int i = 0; i < e->nlabels; i++) {
        if (strcmp(e->labels[i].k, k) == 0) {
            return e->labels[i].v;
        }
    }
    fail_msg("%s event has no labels.%s", e->topic, k);
    return NULL;
}

/* ---- Rounds: one collection = system.stats, then the events of its ts ----- */

#define ROUND_MAX 64

struct round {
    struct ev_copy stats;
    struct ev_copy ev[ROUND_MAX]; /* system.cpu and system.disk of the same ts */
    int n;
};

struct reader {
    struct ph *p;
    struct ev_copy held; /* the system.stats that starts the next round */
    bool has_held;
};

/* The next whole collection (subscribed to "system."). A round ends when the
 * next system.stats arrives, so this waits up to one interval more. */
static void read_round(struct reader *rd, struct round *r)
{
    const struct vigil_event_view *v;
    while (!rd->has_held) {
        v = ph_next(rd->p, 5000);
        assert_non_null(v);
        if (v->topic_len == 12 && memcmp(v->topic, "system.stats", 12) == 0) {
            copy_event(v, &rd->held);
            rd->has_held = true;
        }
    }
    r->stats = rd->held;
    r->n = 0;
    for (;;) {
        v = ph_next(rd->p, 5000);
        assert_non_null(v);
        struct ev_copy *e = r->n < ROUND_MAX ? &r->ev[r->n] : &rd->held;
        copy_event(v, e);
        if (strcmp(e->topic, "system.stats") == 0) {
            if (e != &rd->held) {
                rd->held = *e;
            }
            return;
        }
        if (r->n >= ROUND_MAX) {
            fail_msg("more than %d events in one collection", ROUND_MAX);
        }
        if (e->ts != r->stats.ts) {
            fail_msg("%s event with ts %llu inside the collection of ts %llu", e->topic,
                     (unsigned long long)e->ts, (unsigned long long)r->stats.ts);
        }
        r->n++;
    }
}

static struct round *round_new(void)
{
    struct round *r = calloc(1, sizeof *r);
    assert_non_null(r);
    return r;
}

/* ---- What the test reads itself ---------------------------------------------- */

struct meminfo {
    double total, avail, swap_total, swap_free;
};

static void read_meminfo(struct meminfo *m)
{
    FILE *f = fopen("/proc/meminfo", "r");
    assert_non_null(f);
    char key[64];
    unsigned long long kb;
    memset(m, 0, sizeof *m);
    while (fscanf(f, "%63s %llu kB", key, &kb) == 2) {
        double b = (double)kb * 1024.0;
        if (strcmp(key, "MemTotal:") == 0) {
            m->total = b;
        } else if (strcmp(key, "MemAvailable:") == 0) {
            m->avail = b;
        } else if (strcmp(key, "SwapTotal:") == 0) {
            m->swap_total = b;
        } else if (strcmp(key, "SwapFree:") == 0) {
            m->swap_free = b;
        }
    }
    fclose(f);
}

static void read_loadavg(double l[3])
{
    FILE *f = fopen("/proc/loadavg", "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%lf %lf %lf", &l[0], &l[1], &l[2]), 3);
    fclose(f);
}

/* The core numbers listed in /proc/stat ("cpuN" lines). */
static int read_stat_cpus(int *cpus, int cap)
{
    FILE *f = fopen("/proc/stat", "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        int c;
        if (strncmp(line, "cpu", 3) == 0 && line[3] >= '0' && line[3] <= '9' &&
            sscanf(line + 3, "%d ", &c) == 1 && n < cap) {
            cpus[n++] = c;
        }
    }
    fclose(f);
    return n;
}

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool within(double x, double a, double b, double slack)
{
    double lo = a < b ? a : b, hi = a < b ? b : a;
    return x >= lo - slack && x <= hi + slack;
}

/* Each named value of e lies between what the test read before (lo) and
 * after (hi) the collection, give or take slack; says which did not in why. */
static bool all_within(const struct ev_copy *e, const char *const *names, const double *lo,
                       const double *hi, const double *slack, size_t n, int attempt, char *why,
                       size_t why_cap)
{
    for (size_t i = 0; i < n; i++) {
        double x = val(e, names[i]);
        if (!within(x, lo[i], hi[i], slack[i])) {
            snprintf(why, why_cap, "%s = %.3f, the test read %.3f before and %.3f after", names[i],
                     x, lo[i], hi[i]);
            fprintf(stderr, "attempt %d: %s\n", attempt + 1, why);
            return false;
        }
    }
    return true;
}

/* ---- Tests ------------------------------------------------------------------ */

/* Memory and load, bracketed: the test reads /proc itself just before the
 * collection started (its ts) and again after the event arrived, so the
 * plugin's reading lies between the two (plus a little slack for memory that
 * moved up and back within the bracket). Three tries, for a busy machine. */
static void test_memory_and_load_match_proc(void **state)
{
    (void)state;
    struct ph *p = ph_start("plugin: system\ninterval: 200ms\nmounts: []\n", "system.stats");
    assert_non_null(p);
    struct ev_copy *e = calloc(1, sizeof *e);
    assert_non_null(e);

    /* The first collection has no earlier /proc/stat to subtract: no cpu values. */
    const struct vigil_event_view *v = ph_next(p, 5000);
    assert_non_null(v);
    copy_event(v, e);
    assert_int_equal(v->seq, 1);
    assert_false(has(e, "cpu_usage_pct", NULL));
    assert_false(has(e, "context_switches_per_s", NULL));
    assert_true(val(e, "context_switches_total") > 0);
    assert_true(val(e, "memory_total_bytes") > 0);
    (void)val(e, "load1");

    bool ok = false;
    char why[256] = "";
    for (int attempt = 0; attempt < 3 && !ok; attempt++) {
        struct meminfo a, b;
        double la[3], lb[3];
        read_meminfo(&a);
        read_loadavg(la);
        uint64_t t0 = wall_ns();
        do {
            v = ph_next(p, 5000);
            assert_non_null(v);
        } while (v->ts < t0);
        copy_event(v, e);
        read_meminfo(&b);
        read_loadavg(lb);

        /* Internal consistency, exact: the documented formulas. */
        double total = val(e, "memory_total_bytes"), avail = val(e, "memory_available_bytes");
        double used = val(e, "memory_used_bytes");
        assert_true(used == total - avail);
        assert_true(fabs(val(e, "memory_usage_pct") - 100.0 * used / total) < 1e-9);
        assert_true(val(e, "swap_used_bytes") + val(e, "swap_free_bytes") ==
                    val(e, "swap_total_bytes"));
        /* Rates appear from the second collection on. */
        assert_true(val(e, "context_switches_per_s") >= 0);
        assert_true(val(e, "cpu_usage_pct") >= 0);

        /* Against the test's own readings. */
        const char *names[] = {"memory_total_bytes",
                               "memory_available_bytes",
                               "swap_total_bytes",
                               "swap_used_bytes",
                               "load1",
                               "load5",
                               "load15"};
        double lo[] = {a.total, a.avail, a.swap_total, a.swap_total - a.swap_free,
                       la[0],   la[1],   la[2]};
        double hi[] = {b.total, b.avail, b.swap_total, b.swap_total - b.swap_free,
                       lb[0],   lb[1],   lb[2]};
        double slack[] = {0, 32 * MIB, 0, 32 * MIB, 0.005, 0.005, 0.005};
        ok = all_within(e, names, lo, hi, slack, sizeof names / sizeof *names, attempt, why,
                        sizeof why);
    }
    free(e);
    ph_stop(p);
    if (!ok) {
        fail_msg("%s", why);
    }
}

static pid_t busy_pid = -1;

static int kill_busy(void **state)
{
    (void)state;
    if (busy_pid > 0) {
        kill(busy_pid, SIGKILL);
        waitpid(busy_pid, NULL, 0);
        busy_pid = -1;
    }
    return 0;
}

/* A child spinning on one core for the whole time between two collections:
 * the all-core usage is at least 60% of one core's share (30% on 2 cores),
 * that core's own system.cpu event at least 60%, and there is one system.cpu
 * event for every core /proc/stat lists. Generous: not a timing benchmark. */
static void test_cpu_busy_child(void **state)
{
    (void)state;
    int cpus[1024];
    int ncpu = read_stat_cpus(cpus, 1024);
    assert_true(ncpu >= 1);
    cpu_set_t mine;
    assert_int_equal(sched_getaffinity(0, sizeof mine, &mine), 0);
    int target = -1;
    for (int i = 0; i < ncpu && target < 0; i++) {
        if (CPU_ISSET(cpus[i], &mine)) {
            target = cpus[i];
        }
    }
    assert_true(target >= 0);

    busy_pid = fork();
    assert_true(busy_pid >= 0);
    if (busy_pid == 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(target, &one);
        sched_setaffinity(0, sizeof one, &one);
        alarm(60); /* never outlive a crashed test */
        for (volatile unsigned long x = 0;; x++) {
        }
    }
    struct ph *p =
        ph_start("plugin: system\ninterval: 500ms\nper_cpu: true\nmounts: []\n", "system.");
    assert_non_null(p);
    struct reader rd = {.p = p};
    struct round *r = round_new();

    read_round(&rd, r); /* the first collection: no deltas yet */
    assert_false(has(&r->stats, "cpu_usage_pct", NULL));
    assert_int_equal(r->n, 0);

    read_round(&rd, r);
    double usage = val(&r->stats, "cpu_usage_pct");
    double floor_pct = 0.6 * 100.0 / ncpu;
    fprintf(stderr, "busy child on cpu %d of %d: cpu_usage_pct %.1f (at least %.1f)\n", target,
            ncpu, usage, floor_pct);
    assert_true(usage >= floor_pct && usage <= 100.0 + 1e-9);
    assert_true(val(&r->stats, "cpu_count") == ncpu);
    /* usage = user + system + steal; with iowait and idle it makes 100. */
    assert_true(fabs(val(&r->stats, "cpu_user_pct") + val(&r->stats, "cpu_system_pct") +
                     val(&r->stats, "cpu_steal_pct") - usage) < 1e-6);
    assert_true(fabs(usage + val(&r->stats, "cpu_iowait_pct") + val(&r->stats, "cpu_idle_pct") -
                     100.0) < 1e-6);

    assert_int_equal(r->n, ncpu);
    for (int i = 0; i < ncpu; i++) {
        char want[16];
        snprintf(want, sizeof want, "%d", cpus[i]);
        const struct ev_copy *found = NULL;
        for (int j = 0; j < r->n; j++) {
            if (strcmp(r->ev[j].topic, "system.cpu") == 0 &&
                strcmp(label(&r->ev[j], "cpu"), want) == 0) {
                found = &r->ev[j];
            }
        }
        if (!found) {
            fail_msg("no system.cpu event with cpu=%s", want);
        }
        double u = val(found, "cpu_usage_pct");
        assert_true(u >= 0 && u <= 100.0 + 1e-9);
        if (cpus[i] == target) {
            fprintf(stderr, "cpu %d: cpu_usage_pct %.1f (at least 60)\n", target, u);
            assert_true(u >= 60.0);
            assert_true(val(found, "cpu_user_pct") >= 50.0); /* a spin loop is user time */
        }
    }
    free(r);
    ph_stop(p);
    kill_busy(NULL);
}

/* The last /proc/self/mounts entry for a mount point (the one on top). */
static bool find_mount(const char *point, char *dev, size_t dev_cap, char *type, size_t type_cap)
{
    FILE *f = setmntent("/proc/self/mounts", "r");
    assert_non_null(f);
    bool found = false;
    struct mntent *m;
    while ((m = getmntent(f))) {
        if (strcmp(m->mnt_dir, point) == 0) {
            snprintf(dev, dev_cap, "%s", m->mnt_fsname);
            snprintf(type, type_cap, "%s", m->mnt_type);
            found = true;
        }
    }
    endmntent(f);
    return found;
}

/* `mounts: ["/"]` yields exactly the root filesystem, once per collection,
 * with statvfs("/") figures (bracketed like memory) and df's formula. */
static void test_disk_root_only(void **state)
{
    (void)state;
    char dev[256], type[64];
    assert_true(find_mount("/", dev, sizeof dev, type, sizeof type));
    const char *pseudo[] = {"overlay", "tmpfs", "rootfs", "squashfs", "aufs"};
    for (size_t i = 0; i < sizeof pseudo / sizeof *pseudo; i++) {
        if (strcmp(type, pseudo[i]) == 0) {
            fprintf(stderr, "skipped: / is %s here, a type skipped by default\n", type);
            skip();
        }
    }
    struct ph *p = ph_start("plugin: system\ninterval: 200ms\nmounts: [\"/\"]\n", "system.");
    assert_non_null(p);
    struct reader rd = {.p = p};
    struct round *r = round_new();
    read_round(&rd, r);
    bool ok = false;
    char why[256] = "";
    for (int attempt = 0; attempt < 3 && !ok; attempt++) {
        struct statvfs a, b;
        assert_int_equal(statvfs("/", &a), 0);
        uint64_t t0 = wall_ns();
        do {
            read_round(&rd, r);
        } while (r->stats.ts < t0);
        assert_int_equal(statvfs("/", &b), 0);

        assert_int_equal(r->n, 1);
        const struct ev_copy *e = &r->ev[0];
        assert_string_equal(e->topic, "system.disk");
        assert_string_equal(label(e, "mount"), "/");
        assert_string_equal(label(e, "device"), dev);
        assert_string_equal(label(e, "fstype"), type);
        assert_int_equal(e->readonly, 0);

        double used = val(e, "disk_used_bytes"), freeb = val(e, "disk_free_bytes");
        assert_true(fabs(val(e, "disk_usage_pct") - 100.0 * used / (used + freeb)) < 1e-9);
        double ua = (double)(a.f_blocks - a.f_bfree) * a.f_frsize;
        double ub = (double)(b.f_blocks - b.f_bfree) * b.f_frsize;
        double ia = 100.0 * (double)(a.f_files - a.f_ffree) / (double)a.f_files;
        double ib = 100.0 * (double)(b.f_files - b.f_ffree) / (double)b.f_files;
        const char *names[] = {"disk_total_bytes", "disk_used_bytes", "disk_free_bytes",
                               "inodes_usage_pct"};
        double lo[] = {(double)a.f_blocks * a.f_frsize, ua, (double)a.f_bavail * a.f_frsize, ia};
        double hi[] = {(double)b.f_blocks * b.f_frsize, ub, (double)b.f_bavail * b.f_frsize, ib};
        double slack[] = {0, 64 * MIB, 64 * MIB, 0.01};
        ok = all_within(e, names, lo, hi, slack, sizeof names / sizeof *names, attempt, why,
                        sizeof why);
    }
    free(r);
    ph_stop(p);
    if (!ok) {
        fail_msg("%s", why);
    }
}

/* Defaults: every mount, pseudo filesystems skipped, each mount point once. */
static void test_disk_defaults_skip_pseudo(void **state)
{
    (void)state;
    struct ph *p = ph_start("plugin: system\ninterval: 300ms\n", "system.");
    assert_non_null(p);
    struct reader rd = {.p = p};
    struct round *r = round_new();
    read_round(&rd, r);
    read_round(&rd, r);
    char dev[256], type[64];
    assert_true(find_mount("/", dev, sizeof dev, type, sizeof type));
    bool root_pseudo = strcmp(type, "overlay") == 0 || strcmp(type, "tmpfs") == 0;
    bool saw_root = false;
    const char *pseudo[] = {"proc",   "sysfs",   "tmpfs",   "devtmpfs", "devpts",
                            "cgroup", "cgroup2", "overlay", "mqueue",   "autofs"};
    for (int i = 0; i < r->n; i++) {
        const struct ev_copy *e = &r->ev[i];
        assert_string_equal(e->topic, "system.disk");
        const char *t = label(e, "fstype"), *m = label(e, "mount");
        for (size_t k = 0; k < sizeof pseudo / sizeof *pseudo; k++) {
            if (strcmp(t, pseudo[k]) == 0) {
                fail_msg("%s (%s) reported although pseudo filesystems are skipped", m, t);
            }
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(label(&r->ev[j], "mount"), m) == 0) {
                fail_msg("%s reported twice in one collection", m);
            }
        }
        saw_root |= strcmp(m, "/") == 0;
        assert_true(val(e, "disk_total_bytes") > 0);
    }
    assert_true(saw_root || root_pseudo);
    free(r);
    ph_stop(p);
}

/* ---- Filesystems the test mounts, in a private mount namespace ------------
 * The group setup moves this process (before any thread exists) into a
 * mount namespace of its own, so the mounts are invisible to the rest of the
 * machine and vanish with the process even if it crashes. Each test mounts a
 * small tmpfs on ns_dir first and its filesystems inside it, so one lazy
 * unmount of ns_dir removes them all, and the folders with them. */

static bool have_ns;
static char ns_dir[64];

static void ns_cleanup(const char *dir)
{
    while (umount2(dir, MNT_DETACH) == 0) {
        /* until nothing is mounted on it */
    }
    rmdir(dir);
}

static int group_setup(void **state)
{
    (void)state;
    if (unshare(CLONE_NEWNS) != 0) {
        fprintf(stderr, "no private mount namespace (%s): the mount tests will skip\n",
                strerror(errno));
        return 0;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        fprintf(stderr, "cannot make / private (%s): the mount tests will skip\n", strerror(errno));
        return 0;
    }
    /* Folders left by an earlier run that crashed (their mounts died with it). */
    DIR *d = opendir("/tmp");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (strncmp(de->d_name, "vigil_system_mnt.", 17) == 0) {
            char path[300];
            snprintf(path, sizeof path, "/tmp/%s", de->d_name);
            ns_cleanup(path);
        }
    }
    if (d) {
        closedir(d);
    }
    snprintf(ns_dir, sizeof ns_dir, NS_PREFIX "%d", (int)getpid());
    have_ns = true;
    return 0;
}

/* Skips the test without a namespace; else mounts the tmpfs that holds the
 * test's mounts on ns_dir. */
static void ns_begin(void)
{
    if (!have_ns) {
        fprintf(stderr, "skipped: needs a private mount namespace (root, CAP_SYS_ADMIN)\n");
        skip();
    }
    if (mkdir(ns_dir, 0700) != 0 && errno != EEXIST) {
        fail_msg("mkdir %s: %s", ns_dir, strerror(errno));
    }
    if (mount("vigil-base", ns_dir, "tmpfs", 0, "size=1m") != 0) {
        fail_msg("mount tmpfs on %s: %s", ns_dir, strerror(errno));
    }
}

/* Mounts on ns_dir/sub, creating the folder. */
static void ns_mount(const char *src, const char *sub, const char *type, unsigned long flags,
                     const char *data)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", ns_dir, sub);
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        fail_msg("mkdir %s: %s", path, strerror(errno));
    }
    if (mount(src, path, type, flags, data) != 0) {
        fail_msg("mount %s on %s: %s", type ? type : "bind", path, strerror(errno));
    }
}

static int mounts_teardown(void **state)
{
    (void)state;
    if (have_ns) {
        ns_cleanup(ns_dir);
    }
    return 0;
}

/* The disk events of one collection under ns_dir. */
static struct round *ns_round(const char *extra)
{
    char cfg[512];
    snprintf(cfg, sizeof cfg, "plugin: system\ninterval: 200ms\nmounts: [\"%s/**\"]\n%s", ns_dir,
             extra);
    struct ph *p = ph_start(cfg, "system.");
    assert_non_null(p);
    struct reader rd = {.p = p};
    struct round *r = round_new();
    read_round(&rd, r);
    read_round(&rd, r);
    ph_stop(p);
    return r;
}

static const struct ev_copy *disk_at(const struct round *r, const char *sub)
{
    char want[256];
    snprintf(want, sizeof want, "%s/%s", ns_dir, sub);
    const struct ev_copy *found = NULL;
    for (int i = 0; i < r->n; i++) {
        if (strcmp(label(&r->ev[i], "mount"), want) == 0) {
            if (found) {
                fail_msg("%s reported twice in one collection", want);
            }
            found = &r->ev[i];
        }
    }
    return found;
}

/* Over-mounts, a bind mount, a mount point with a space, a read-only mount,
 * a filesystem without blocks or inodes, and skip_fstypes / include_pseudo. */
static void test_disk_mounts_made_here(void **state)
{
    (void)state;
    ns_begin();
    ns_mount("vigil-a1", "a", "tmpfs", 0, "size=1m");
    ns_mount("vigil-a2", "a", "tmpfs", 0, "size=2m"); /* on top of the first */
    char a[256];
    snprintf(a, sizeof a, "%s/a", ns_dir);
    ns_mount(a, "with space", NULL, MS_BIND, NULL); /* the same filesystem again */
    ns_mount("vigil-bc", "b c", "tmpfs", MS_RDONLY, "size=3m");
    ns_mount("vigil-r", "r", "ramfs", 0, NULL);
    /* h/x, then a mount on h above it: the path h/x now leads into the new
     * h, where the test makes an x, so statvfs(h/x) would measure h. */
    char h[256], hx[256];
    snprintf(h, sizeof h, "%s/h", ns_dir);
    snprintf(hx, sizeof hx, "%s/h/x", ns_dir);
    assert_int_equal(mkdir(h, 0700), 0);
    ns_mount("vigil-hx", "h/x", "tmpfs", 0, "size=4m");
    ns_mount("vigil-h", "h", "tmpfs", 0, "size=5m");
    assert_int_equal(mkdir(hx, 0700), 0);

    /* The test's own figures. */
    struct statvfs sa, sbc;
    char bc[256];
    snprintf(bc, sizeof bc, "%s/b c", ns_dir);
    assert_int_equal(statvfs(a, &sa), 0);
    assert_int_equal(statvfs(bc, &sbc), 0);
    assert_true((double)sa.f_blocks * sa.f_frsize == 2 * MIB);

    /* Pseudo filesystems shown: the top of a, b c, r, h; not the bind mount,
     * not the one under a, not the one hidden under h. */
    struct round *r = ns_round("include_pseudo: true\n");
    assert_int_equal(r->n, 4);
    assert_null(disk_at(r, "h/x"));
    assert_non_null(disk_at(r, "h"));
    assert_string_equal(label(disk_at(r, "h"), "device"), "vigil-h");
    const struct ev_copy *ea = disk_at(r, "a"), *ebc = disk_at(r, "b c"), *er = disk_at(r, "r");
    assert_non_null(ea);
    assert_non_null(ebc);
    assert_non_null(er);
    assert_null(disk_at(r, "with space"));
    assert_string_equal(label(ea, "device"), "vigil-a2");
    assert_string_equal(label(ea, "fstype"), "tmpfs");
    assert_true(val(ea, "disk_total_bytes") == (double)sa.f_blocks * sa.f_frsize);
    assert_true(val(ea, "disk_free_bytes") == (double)sa.f_bavail * sa.f_frsize);
    assert_true(val(ea, "inodes_total") == (double)sa.f_files);
    assert_int_equal(ea->readonly, 0);
    assert_string_equal(label(ebc, "device"), "vigil-bc");
    assert_true(val(ebc, "disk_total_bytes") == (double)sbc.f_blocks * sbc.f_frsize);
    assert_true(val(ebc, "disk_total_bytes") == 3 * MIB);
    assert_int_equal(ebc->readonly, 1);
    assert_string_equal(label(er, "fstype"), "ramfs");
    assert_false(has(er, "disk_usage_pct", NULL));   /* no blocks: no percentage */
    assert_false(has(er, "inodes_usage_pct", NULL)); /* reports 0 inodes */
    free(r);

    /* Default: tmpfs and ramfs are pseudo, nothing here is reported. */
    r = ns_round("");
    assert_int_equal(r->n, 0);
    free(r);

    /* skip_fstypes globs, applied even with include_pseudo. */
    r = ns_round("include_pseudo: true\nskip_fstypes: [\"ram*\"]\n");
    assert_int_equal(r->n, 3);
    assert_non_null(disk_at(r, "a"));
    assert_non_null(disk_at(r, "b c"));
    free(r);
}

/* The bind mount alone: selecting only its mount point reports it there. */
static void test_disk_bind_selected_alone(void **state)
{
    (void)state;
    ns_begin();
    ns_mount("vigil-a", "a", "tmpfs", 0, "size=1m");
    char a[256], cfg[512];
    snprintf(a, sizeof a, "%s/a", ns_dir);
    ns_mount(a, "with space", NULL, MS_BIND, NULL);
    snprintf(cfg, sizeof cfg,
             "plugin: system\ninterval: 200ms\ninclude_pseudo: true\nmounts: [\"%s/with space\"]\n",
             ns_dir);
    struct ph *p = ph_start(cfg, "system.");
    assert_non_null(p);
    struct reader rd = {.p = p};
    struct round *r = round_new();
    read_round(&rd, r);
    read_round(&rd, r);
    ph_stop(p);
    assert_int_equal(r->n, 1);
    assert_non_null(disk_at(r, "with space"));
    assert_string_equal(label(&r->ev[0], "device"), "vigil-a");
    free(r);
}

/* One running instance follows the mount table: a new mount appears, a
 * remount read-only shows, an unmount disappears (the plugin re-reads
 * mountinfo only when the kernel flags a change). */
static void test_disk_follows_mount_changes(void **state)
{
    (void)state;
    ns_begin();
    char cfg[512], a[256];
    snprintf(a, sizeof a, "%s/a", ns_dir);
    assert_int_equal(mkdir(a, 0700), 0);
    snprintf(cfg, sizeof cfg,
             "plugin: system\ninterval: 100ms\ninclude_pseudo: true\nmounts: [\"%s/**\"]\n",
             ns_dir);
    struct ph *p = ph_start(cfg, "system.");
    assert_non_null(p);
    struct reader rd = {.p = p};
    struct round *r = round_new();
    read_round(&rd, r);
    read_round(&rd, r);
    assert_int_equal(r->n, 0);

    /* Each step must show within 20 collections (2 s). */
    ns_mount("vigil-new", "a", "tmpfs", 0, "size=1m");
    int i = 0;
    for (read_round(&rd, r); r->n == 0 && i < 20; i++) {
        read_round(&rd, r);
    }
    assert_int_equal(r->n, 1);
    assert_string_equal(label(&r->ev[0], "device"), "vigil-new");
    assert_int_equal(r->ev[0].readonly, 0);

    assert_int_equal(mount(NULL, a, NULL, MS_REMOUNT | MS_RDONLY, "size=1m"), 0);
    for (i = 0, read_round(&rd, r); r->n == 1 && r->ev[0].readonly == 0 && i < 20; i++) {
        read_round(&rd, r);
    }
    assert_int_equal(r->n, 1);
    assert_int_equal(r->ev[0].readonly, 1);

    /* The plugin's statvfs() of the mount, every 100 ms, holds it for an
     * instant: umount says EBUSY if it lands then. */
    int urc, tries = 0;
    while ((urc = umount2(a, 0)) != 0 && errno == EBUSY && tries++ < 200) {
        usleep(10000);
    }
    assert_int_equal(urc, 0);
    for (i = 0, read_round(&rd, r); r->n > 0 && i < 20; i++) {
        read_round(&rd, r);
    }
    assert_int_equal(r->n, 0);
    ph_stop(p);
    free(r);
}

/* Every message in want[] is in d, and d holds no others. */
static void expect_diags(struct vigil_diag *d, size_t n, const char *const *want, size_t nwant)
{
    for (size_t i = 0; i < nwant; i++) {
        bool found = false;
        for (size_t j = 0; j < d->n; j++) {
            found |= strncmp(d->msgs[j], want[i], strlen(want[i])) == 0;
        }
        if (!found) {
            vigil_diag_print(d, stderr);
            fail_msg("missing: %s", want[i]);
        }
    }
    if (n != nwant) {
        vigil_diag_print(d, stderr);
        fail_msg("%zu errors, expected %zu", n, nwant);
    }
}

static void test_bad_config_positions(void **state)
{
    (void)state;
    struct vigil_diag d;
    /* Semantic checks of the plugin, at the offending list item. */
    vigil_diag_init(&d);
    size_t n =
        ph_check("plugin: system\nmounts: [\"/ok\", \"bad\\\\\"]\nskip_fstypes: [[nfs]]\n", &d);
    const char *want[] = {"ph.yaml:4:21: mounts: bad glob 'bad\\'",
                          "ph.yaml:5:20: skip_fstypes: each item must be a string"};
    expect_diags(&d, n, want, 2);
    vigil_diag_fini(&d);

    /* Wrong types, found by the host from the option table. */
    vigil_diag_init(&d);
    n = ph_check("plugin: system\nper_cpu: 3\ninclude_pseudo: maybe\nmounts: {a: b}\n", &d);
    const char *want2[] = {"ph.yaml:4:14: key 'per_cpu'", "ph.yaml:5:21: key 'include_pseudo'",
                           "ph.yaml:6:13: key 'mounts'"};
    expect_diags(&d, n, want2, 3);
    vigil_diag_fini(&d);

    /* And a good one. */
    vigil_diag_init(&d);
    n = ph_check("plugin: system\nmounts: [\"/\", \"/var/**\"]\nper_cpu: true\n"
                 "skip_fstypes: [nfs, \"fuse.*\"]\n",
                 &d);
    expect_diags(&d, n, NULL, 0);
    vigil_diag_fini(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_and_load_match_proc),
        cmocka_unit_test_teardown(test_cpu_busy_child, kill_busy),
        cmocka_unit_test(test_disk_root_only),
        cmocka_unit_test(test_disk_defaults_skip_pseudo),
        cmocka_unit_test_teardown(test_disk_mounts_made_here, mounts_teardown),
        cmocka_unit_test_teardown(test_disk_bind_selected_alone, mounts_teardown),
        cmocka_unit_test_teardown(test_disk_follows_mount_changes, mounts_teardown),
        cmocka_unit_test(test_bad_config_positions),
    };
    return cmocka_run_group_tests_name("system", tests, group_setup, NULL);
}

/* cgroups: reading one cgroup's files, v1 and v2, into a sample. Each file is
 * read with one pread(2) into a reused buffer; descriptors of the files read
 * at every collection stay open while the budget allows (a re-read
 * regenerates the contents), which costs much less than open/read/close. Every
 * cgroupfs read still costs cache misses on a large host, so files whose
 * values change only on a write we are told about (inotify) or on an event the
 * host counts (an OOM kill) are read only when they may have changed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgroups.h"

#define ABSENT_RETRY_NS (300ull * 1000000000ull) /* files that were missing: try again */

static const char *const slot_file[S_COUNT] = {
    [S_PROCS] = "cgroup.procs",
    [S_CPUACCT_ALL] = "cpuacct.usage_all",
    [S_CPUACCT_USER] = "cpuacct.usage_user",
    [S_CPUACCT_SYS] = "cpuacct.usage_sys",
    [S_CPUACCT_USAGE] = "cpuacct.usage",
    [S_CPUACCT_STAT] = "cpuacct.stat",
    [S_CPU_STAT] = "cpu.stat",
    [S_CPU_QUOTA] = "cpu.cfs_quota_us",
    [S_CPU_PERIOD] = "cpu.cfs_period_us",
    [S_MEM_USAGE] = "memory.usage_in_bytes",
    [S_MEM_LIMIT] = "memory.limit_in_bytes",
    [S_MEM_OOM] = "memory.oom_control",
    [S_PIDS] = "pids.current",
    [S_BLKIO] = "blkio.throttle.io_service_bytes_recursive",
    [S_BLKIO_FLAT] = "blkio.throttle.io_service_bytes",
    [S2_CPU_STAT] = "cpu.stat",
    [S2_CPU_MAX] = "cpu.max",
    [S2_MEM_CURRENT] = "memory.current",
    [S2_MEM_MAX] = "memory.max",
    [S2_MEM_EVENTS] = "memory.events",
    [S2_IO_STAT] = "io.stat",
    [S2_PSI_CPU] = "cpu.pressure",
    [S2_PSI_MEM] = "memory.pressure",
    [S2_PSI_IO] = "io.pressure",
};

static int open_slot(struct cgs *s, const struct cg_node *n, int slot, int h)
{
    const struct cg_hier *hi = &s->hier[h];
    const char *rel = n->path + hi->prefix_len; /* "" or "/a/b" */
    if (n->path_len == 1 && hi->prefix_len == 0) {
        rel = "";
    }
    if (*rel == '/') {
        rel++;
    }
    int len = *rel ? snprintf(s->path, sizeof s->path, "%s/%s", rel, slot_file[slot])
                   : snprintf(s->path, sizeof s->path, "%s", slot_file[slot]);
    if (len < 0 || (size_t)len >= sizeof s->path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return openat(hi->dirfd, s->path, O_RDONLY | O_CLOEXEC);
}

/* Reads the whole file from offset 0 into s->buf (NUL-terminated). One
 * pread when it fits, which is the rule for these files. */
static ssize_t pread_all(struct cgs *s, int fd)
{
    size_t len = 0;
    for (;;) {
        ssize_t got = pread(fd, s->buf + len, s->buf_cap - len - 1, (off_t)len);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        len += (size_t)got;
        if (got == 0 || len < s->buf_cap - 1) {
            break;
        }
        if (s->buf_cap >= CG_BUF_MAX) {
            cg_warn(s, "a cgroup file is over %u bytes; reading only that much", CG_BUF_MAX);
            break;
        }
        char *nb = realloc(s->buf, s->buf_cap * 2);
        if (!nb) {
            break;
        }
        s->buf = nb;
        s->buf_cap *= 2;
    }
    s->buf[len] = '\0';
    return (ssize_t)len;
}

static void mark_absent(struct cgs *s, struct cg_node *n, int slot)
{
    if (n->fd[slot] >= 0) {
        close(n->fd[slot]);
        s->open_fds--;
    }
    n->fd[slot] = FD_ABSENT;
}

/* Closes kept descriptors, newest nodes first, until at most `target` are
 * open. */
static void release_fds(struct cgs *s, size_t target)
{
    for (struct cg_node *n = s->tail; n && s->open_fds > target; n = n->prev) {
        for (size_t i = 0; i < S_COUNT && s->open_fds > target; i++) {
            if (n->fd[i] >= 0) {
                close(n->fd[i]);
                n->fd[i] = FD_CLOSED;
                s->open_fds--;
            }
        }
    }
}

/* Out of descriptors (the process's limit, or the system's): keep fewer
 * from now on, three quarters of what is open, so that the files read
 * with open/read/close and the rest of the daemon find some. True when
 * some were released (worth another try). */
static bool shrink_budget(struct cgs *s, int err)
{
    cg_warn(s,
            "out of file descriptors (%s; %zu cgroup files kept open): keeping at most %zu "
            "from now on; lower max_open_files or raise vigild's LimitNOFILE",
            strerror(err), s->open_fds, s->open_fds * 3 / 4);
    if (s->open_fds == 0) {
        return false;
    }
    s->fd_budget = s->open_fds * 3 / 4;
    release_fds(s, s->fd_budget);
    return true;
}

/* Reads one file of node n from hierarchy h into s->buf. Returns its length
 * or a negative errno (-ENOENT: not here). With `keep`, a file that was not
 * open yet stays open for the next collections while the budget allows. */
static ssize_t read_slot(struct cgs *s, struct cg_node *n, int slot, int h, bool keep)
{
    if (h < 0 || n->fd[slot] == FD_ABSENT) {
        return -ENOENT;
    }
    bool retried_open = false;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = n->fd[slot];
        bool kept = fd >= 0;
        if (!kept) {
            fd = open_slot(s, n, slot, h);
            if (fd < 0 && (errno == EMFILE || errno == ENFILE) && !retried_open) {
                retried_open = true;
                if (shrink_budget(s, errno)) {
                    fd = open_slot(s, n, slot, h);
                }
            }
            if (fd < 0) {
                int err = errno;
                if (err == EACCES || err == EPERM) {
                    cg_warn(s,
                            "cannot open %s/%s: %s (vigild needs to run as root to read "
                            "cgroup files)",
                            s->hier[h].mnt, s->path, strerror(err));
                }
                if (err != EMFILE && err != ENFILE && err != ENOMEM) {
                    mark_absent(s, n, slot);
                }
                return -err;
            }
        }
        ssize_t len = pread_all(s, fd);
        if (len < 0 && kept && attempt == 0) {
            /* ENODEV: the cgroup went away behind the kept descriptor (it
             * may have been created again): open it afresh once. */
            close(fd);
            s->open_fds--;
            n->fd[slot] = FD_CLOSED;
            continue;
        }
        if (!kept) {
            /* v1 cgroup.procs caches its pid list per open file for a
             * second: open it anew each time for a fresh list. */
            keep = keep && len >= 0 && s->open_fds < s->fd_budget &&
                   !(slot == S_PROCS && !s->hier[h].v2);
            if (keep) {
                n->fd[slot] = fd;
                s->open_fds++;
            } else {
                close(fd);
            }
        }
        if (len < 0 && len != -ENODEV && len != -EINTR) {
            mark_absent(s, n, slot); /* e.g. EOPNOTSUPP: PSI switched off */
        }
        return len;
    }
    return -ENOENT;
}

/* Closes a kept descriptor that is no longer read at every collection. */
static void drop_slot(struct cgs *s, struct cg_node *n, int slot)
{
    if (n->fd[slot] >= 0) {
        close(n->fd[slot]);
        n->fd[slot] = FD_CLOSED;
        s->open_fds--;
    }
}

static bool parse_u64(const char *p, uint64_t *out)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (strncmp(p, "max", 3) == 0) {
        *out = UINT64_MAX;
        return true;
    }
    if (*p < '0' || *p > '9') {
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno != 0) {
        return false;
    }
    *out = v;
    return true;
}

static bool read_u64(struct cgs *s, struct cg_node *n, int slot, int h, uint64_t *out)
{
    return read_slot(s, n, slot, h, true) > 0 && parse_u64(s->buf, out);
}

/* The value of "key value" lines (cpu.stat, memory.events, cpuacct.stat,
 * memory.oom_control). */
static bool kv_u64(const char *buf, const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    for (const char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, kl) == 0 && p[kl] == ' ') {
            return parse_u64(p + kl + 1, out);
        }
    }
    return false;
}

/* PSI: "some avg10=0.00 avg60=0.00 avg300=0.00 total=123" -> total (us). */
static bool psi_some_total(const char *buf, uint64_t *out)
{
    if (strncmp(buf, "some ", 5) != 0) {
        return false;
    }
    const char *eol = strchr(buf, '\n');
    const char *t = strstr(buf, "total=");
    return t && (!eol || t < eol) && parse_u64(t + 6, out);
}

/* v1 blkio: "8:0 Read 4096" lines, summed over devices. */
static void blkio_sum(const char *buf, uint64_t *rd, uint64_t *wr)
{
    *rd = *wr = 0;
    for (const char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        const char *sp = strchr(p, ' ');
        const char *eol = strchr(p, '\n');
        if (!sp || (eol && sp > eol) || !strchr("0123456789", *p)) {
            continue; /* the "Total N" line */
        }
        uint64_t v;
        if (strncmp(sp + 1, "Read ", 5) == 0 && parse_u64(sp + 6, &v)) {
            *rd += v;
        } else if (strncmp(sp + 1, "Write ", 6) == 0 && parse_u64(sp + 7, &v)) {
            *wr += v;
        }
    }
}

/* v2 io.stat: "8:0 rbytes=1 wbytes=2 rios=..." lines, summed over devices. */
static void iostat_sum(const char *buf, uint64_t *rd, uint64_t *wr)
{
    *rd = *wr = 0;
    for (const char *p = buf; *p; p++) {
        if ((p == buf || p[-1] == ' ') && strncmp(p, "rbytes=", 7) == 0) {
            uint64_t v;
            if (parse_u64(p + 7, &v)) {
                *rd += v;
            }
        } else if ((p == buf || p[-1] == ' ') && strncmp(p, "wbytes=", 7) == 0) {
            uint64_t v;
            if (parse_u64(p + 7, &v)) {
                *wr += v;
            }
        }
    }
}

static int cmp_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

int cg_read_procs(struct cgs *s, struct cg_node *n)
{
    s->npids = 0;
    ssize_t len = read_slot(s, n, S_PROCS, n->src[G_PROCS], true);
    if (len < 0) {
        return (int)len;
    }
    bool sorted = true;
    for (const char *p = s->buf; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) {
            p++;
            continue;
        }
        p = end;
        if (v <= 0) {
            continue;
        }
        if (s->npids == s->cap_pids) {
            size_t cap = s->cap_pids ? s->cap_pids * 2 : 256;
            pid_t *np = realloc(s->pids, cap * sizeof *np);
            if (!np) {
                break;
            }
            s->pids = np;
            s->cap_pids = cap;
        }
        if (s->npids && s->pids[s->npids - 1] >= (pid_t)v) {
            sorted = false;
        }
        s->pids[s->npids++] = (pid_t)v;
    }
    if (!sorted) {
        qsort(s->pids, s->npids, sizeof *s->pids, cmp_pid); /* v2 lists in task order */
        size_t w = 0;
        for (size_t i = 0; i < s->npids; i++) {
            if (w == 0 || s->pids[w - 1] != s->pids[i]) {
                s->pids[w++] = s->pids[i];
            }
        }
        s->npids = w;
    }
    return 0;
}

static void gate_update(struct cg_gate *g, bool ok, uint64_t v);
static bool hier_fresh(struct cgs *s, struct cg_node *n, int k, int h);

/* n's parent node, looked up once per collection (the tree changes only
 * between collections). */
static struct cg_node *parent_of(struct cgs *s, struct cg_node *n)
{
    if (n->parent_gen != s->gen) {
        n->parent = cg_node_parent(s, n);
        n->parent_gen = s->gen;
    }
    return n->parent;
}

/* A cgroup's process list changes only when
 *   - a process in it forks, exits, or a thread of it starts or ends: that
 *     runs in the cgroup, so its CPU usage moves (cgroup2 counts usage_usec
 *     by the task's cgroup2 cgroup, whatever the v1 hierarchies say); also a
 *     child born in it by clone3(CLONE_INTO_CGROUP), which runs there (only
 *     a child that ran less than the microsecond usage_usec counts in before
 *     sleeping would slip by, until the refreshes below);
 *   - a process or thread is moved in or out: a write to the cgroup.procs or
 *     cgroup.threads of the cgroup it moves to. Every directory of the
 *     hierarchy has those two files watched (IN_MODIFY), so any such write
 *     makes every cgroup's list be read again at the next collection.
 * So the list read at an earlier collection stands while the parent's
 * usage_usec stood still since then (hier_fresh: its usage sums the
 * cgroup's, and reading the parent vouches for a whole idle subtree, as for
 * the other hierarchical counters), no watched file was written, every
 * directory of the hierarchy is followed (none beyond max_cgroups or
 * CG_MAX_DEPTH, the mount shows the whole hierarchy, and vigild is in the
 * initial cgroup namespace: a move done elsewhere writes a file we watch),
 * and both of the cgroup's own files are watched. An idle cgroup then costs
 * no cgroup.procs read. Its namespaces (cg_ns.c) change only by setns or
 * unshare, which run in the cgroup too; their periodic refresh still reads
 * the list. cg_read_begin's periodic refresh reads it now and then anyway. */
bool cg_procs_still(struct cgs *s, struct cg_node *n)
{
    int h = n->src[G_PROCS];
    if (!s->procs_watch || h < 0 || h != s->h_v2 || s->procs_reread || s->rescan_refused ||
        s->tree_partial || !(n->cached.valid & V_PROCS) || !n->have_procs || n->fw[W_PROCS] < 0 ||
        n->fw[W_THREADS] < 0) {
        return false;
    }
    if (s->namespaces && n->npids > 0) {
        if (n->nprocs != n->npids) {
            return false; /* some namespaces were unreadable: try them again */
        }
        if (s->ns_refresh_ns > 0 && s->now_ns - n->ns_oldest_ns >= s->ns_refresh_ns) {
            return false; /* some process's namespaces are due for a refresh */
        }
    }
    struct cg_node *p = parent_of(s, n);
    return p && (p->present & (1u << h)) && !hier_fresh(s, p, HG_CPU2, h);
}

/* v1 memory.limit_in_bytes says "unlimited" with the largest page-aligned
 * value (LONG_MAX rounded down to a page); older kernels used ULLONG_MAX. */
static bool v1_unlimited(uint64_t v)
{
    return v >= (uint64_t)INT64_MAX - (1u << 21);
}

/* v1 cpu.stat's nr_periods, nr_throttled and throttled_time only move while
 * the cgroup has a quota of its own (the period timer does not run without
 * one, and a parent's quota throttles the parent): without one, the last
 * reading stands until cpu.cfs_quota_us is written (inotify). */
/* v1 cpu.cfs_quota_us ("-1" without a quota) and cpu.cfs_period_us into
 * n->cached (HAVE_CPU_MAX: the CPUs the quota allows). Returns whether a
 * quota may be in force: set, or the file unreadable. */
static bool read_quota_v1(struct cgs *s, struct cg_node *n, int h)
{
    struct cg_cached *c = &n->cached;
    c->have &= ~(uint32_t)HAVE_CPU_MAX;
    if (read_slot(s, n, S_CPU_QUOTA, h, false) <= 0) {
        return true;
    }
    if (s->buf[0] == '-' || !parse_u64(s->buf, &c->cpu_quota_us)) {
        return false;
    }
    if (read_slot(s, n, S_CPU_PERIOD, h, false) > 0 && parse_u64(s->buf, &c->cpu_period_us) &&
        c->cpu_period_us > 0) {
        c->have |= HAVE_CPU_MAX;
    }
    return true;
}

static void read_throttle_v1(struct cgs *s, struct cg_node *n, int h, struct cg_sample *o)
{
    struct cg_cached *c = &n->cached;
    bool told = s->cache_files && n->fw[W_CPU_QUOTA] >= 0 && n->fw[W_CPU_PERIOD] >= 0;
    if (!told || !(c->valid & V_QUOTA)) {
        /* Without the watches the quota is read at every collection and
         * cpu.stat too (nobody tells us when the quota is set). */
        c->quota = read_quota_v1(s, n, h) || !told;
        c->valid = (uint16_t)((c->valid | V_QUOTA) & ~V_THROTTLE);
        if (!c->quota) {
            drop_slot(s, n, S_CPU_STAT);
        }
    }
    if (c->have & HAVE_CPU_MAX) {
        o->cpu_quota_us = c->cpu_quota_us;
        o->cpu_period_us = c->cpu_period_us;
        o->have |= HAVE_CPU_MAX | HAVE_V1;
    }
    if (c->quota || !(c->valid & V_THROTTLE)) {
        c->have &= ~(uint32_t)HAVE_THROTTLE;
        if (read_slot(s, n, S_CPU_STAT, h, c->quota) > 0 &&
            kv_u64(s->buf, "nr_periods", &c->periods) &&
            kv_u64(s->buf, "nr_throttled", &c->throttled) &&
            kv_u64(s->buf, "throttled_time", &c->throttled_ns)) {
            c->have |= HAVE_THROTTLE;
        }
        c->valid |= V_THROTTLE;
    }
    if (c->have & HAVE_THROTTLE) {
        o->periods = c->periods;
        o->throttled = c->throttled;
        o->throttled_ns = c->throttled_ns;
        o->have |= HAVE_THROTTLE | HAVE_V1;
    }
}

/* v1 cpuacct.usage_all: a "cpu user system" header, then one line per
 * possible CPU; summed. */
static bool usage_all(const char *buf, uint64_t *user, uint64_t *sys)
{
    const char *p = strchr(buf, '\n');
    size_t lines = 0;
    *user = *sys = 0;
    while (p && *++p) {
        char *end;
        strtoull(p, &end, 10); /* the CPU number */
        if (end == p || *end != ' ') {
            return false;
        }
        uint64_t u = strtoull(end + 1, &end, 10);
        if (*end != ' ') {
            return false;
        }
        *sys += strtoull(end + 1, &end, 10);
        *user += u;
        lines++;
        p = strchr(end, '\n');
    }
    return lines > 0;
}

static void read_cpu(struct cgs *s, struct cg_node *n, struct cg_sample *o)
{
    int ha = n->src[G_CPUACCT], hc = n->src[G_CPU];
    bool acct_v2 = ha >= 0 && s->hier[ha].v2, cpu_v2 = hc >= 0 && s->hier[hc].v2;
    if (ha >= 0 && !acct_v2) {
        uint64_t u = 0, sy = 0;
        /* One file read instead of two, where it is short (a line per
         * possible CPU): each read of a cgroup file costs cache misses. And only
         * when the parent's usage moved (hier_fresh). */
        bool all = false;
        if (s->cpuacct_all) {
            hier_fresh(s, n, HG_CPU, ha);
            all = (n->cached.have & HAVE_CPU) != 0;
            u = n->cached.user_ns;
            sy = n->cached.system_ns;
        }
        if (all ||
            (read_u64(s, n, S_CPUACCT_USER, ha, &u) && read_u64(s, n, S_CPUACCT_SYS, ha, &sy))) {
            o->user_ns = u;
            o->system_ns = sy;
            o->usage_ns = u + sy; /* cpuacct.usage is this same sum */
            o->have |= HAVE_CPU | HAVE_CPU_SPLIT | HAVE_V1;
        } else if (read_u64(s, n, S_CPUACCT_USAGE, ha, &o->usage_ns)) {
            o->have |= HAVE_CPU | HAVE_V1;
            if (read_slot(s, n, S_CPUACCT_STAT, ha, true) > 0 && kv_u64(s->buf, "user", &u) &&
                kv_u64(s->buf, "system", &sy) && s->clk_tck > 0) {
                o->user_ns = u * (1000000000ull / (uint64_t)s->clk_tck);
                o->system_ns = sy * (1000000000ull / (uint64_t)s->clk_tck);
                o->have |= HAVE_CPU_SPLIT;
            }
        }
    }
    if (hc >= 0 && !cpu_v2) {
        read_throttle_v1(s, n, hc, o);
    }
    if (!acct_v2 && !cpu_v2) {
        return;
    }
    /* cgroup2 cpu.max: "max 100000" without a quota, else "20000 100000". */
    if (cpu_v2 && read_slot(s, n, S2_CPU_MAX, hc, true) > 0) {
        char *sp = strchr(s->buf, ' ');
        if (sp && parse_u64(s->buf, &o->cpu_quota_us) && o->cpu_quota_us != UINT64_MAX &&
            parse_u64(sp + 1, &o->cpu_period_us) && o->cpu_period_us > 0) {
            o->have |= HAVE_CPU_MAX | HAVE_V2;
        }
    }
    /* cgroup2: one cpu.stat has both (usage is a core file, throttling needs
     * the cpu controller). */
    int h2 = acct_v2 ? ha : hc;
    if (read_slot(s, n, S2_CPU_STAT, h2, true) <= 0) {
        return;
    }
    uint64_t u, us, sy;
    if (acct_v2 && kv_u64(s->buf, "usage_usec", &u)) {
        o->usage_ns = u * 1000;
        o->have |= HAVE_CPU | HAVE_V2;
        if (kv_u64(s->buf, "user_usec", &us) && kv_u64(s->buf, "system_usec", &sy)) {
            o->user_ns = us * 1000;
            o->system_ns = sy * 1000;
            o->have |= HAVE_CPU_SPLIT;
        }
    }
    if (cpu_v2 && kv_u64(s->buf, "nr_periods", &o->periods) &&
        kv_u64(s->buf, "nr_throttled", &o->throttled) && kv_u64(s->buf, "throttled_usec", &u)) {
        o->throttled_ns = u * 1000;
        o->have |= HAVE_THROTTLE | HAVE_V2;
    }
}

/* oom_kill of v1 memory.oom_control or v2 memory.events: the kernel counts
 * an OOM kill in the host's /proc/vmstat oom_kill right before the victim's
 * cgroup's, so while the host's count stands still no cgroup's moved
 * (cg_read_globals sets s->oom). */
static void read_oom(struct cgs *s, struct cg_node *n, int h, struct cg_sample *o)
{
    struct cg_cached *c = &n->cached;
    bool v2 = s->hier[h].v2;
    if (s->oom.reread || !(c->valid & V_OOM)) {
        int slot = v2 ? S2_MEM_EVENTS : S_MEM_OOM;
        c->have &= ~(uint32_t)HAVE_OOM;
        if (read_slot(s, n, slot, h, s->vmstat_fd < 0) > 0 &&
            kv_u64(s->buf, "oom_kill", &c->oom_kills)) {
            c->have |= HAVE_OOM;
        }
        c->valid |= V_OOM;
    }
    if (c->have & HAVE_OOM) {
        o->oom_kills = c->oom_kills;
        o->have |= HAVE_OOM;
    }
}

static void read_memory(struct cgs *s, struct cg_node *n, struct cg_sample *o)
{
    int h = n->src[G_MEMORY];
    if (h < 0) {
        return;
    }
    uint64_t v;
    struct cg_cached *c = &n->cached;
    if (!s->hier[h].v2) {
        if (read_u64(s, n, S_MEM_USAGE, h, &o->mem_bytes)) {
            o->have |= HAVE_MEM | HAVE_V1;
        }
        /* The limit changes only when memory.limit_in_bytes is written,
         * which inotify reports (IN_MODIFY on the file, cg_tree.c). */
        bool told = s->cache_files && n->fw[W_MEM_LIMIT] >= 0;
        if (!told || !(c->valid & V_LIMIT)) {
            c->have &= ~(uint32_t)HAVE_MEM_MAX;
            if (read_slot(s, n, S_MEM_LIMIT, h, !told) > 0 && parse_u64(s->buf, &v) &&
                !v1_unlimited(v)) {
                c->mem_max_bytes = v;
                c->have |= HAVE_MEM_MAX;
            }
            c->valid |= V_LIMIT;
        }
        if (c->have & HAVE_MEM_MAX) {
            o->mem_max_bytes = c->mem_max_bytes;
            o->have |= HAVE_MEM_MAX;
        }
        read_oom(s, n, h, o);
        return;
    }
    if (read_u64(s, n, S2_MEM_CURRENT, h, &o->mem_bytes)) {
        o->have |= HAVE_MEM | HAVE_V2;
    }
    if (read_u64(s, n, S2_MEM_MAX, h, &v) && v != UINT64_MAX) {
        o->mem_max_bytes = v;
        o->have |= HAVE_MEM_MAX;
    }
    read_oom(s, n, h, o);
}

static void read_io(struct cgs *s, struct cg_node *n, struct cg_sample *o)
{
    int h = n->src[G_IO];
    if (h < 0) {
        return;
    }
    if (s->hier[h].v2) {
        if (read_slot(s, n, S2_IO_STAT, h, true) >= 0) {
            iostat_sum(s->buf, &o->read_bytes, &o->write_bytes);
            o->have |= HAVE_IO | HAVE_V2;
        }
        return;
    }
    if (!s->v1_io_active) {
        return; /* the kernel counts nothing: zeros would be a lie */
    }
    /* The parent's recursive totals sum this cgroup's (hier_fresh). */
    struct cg_cached *c = &n->cached;
    hier_fresh(s, n, HG_IO, h);
    if (c->have & HAVE_IO) {
        o->read_bytes = c->read_bytes;
        o->write_bytes = c->write_bytes;
        o->have |= HAVE_IO | HAVE_V1;
    }
}

/* Pressure: a task stalled in a cgroup is stalled in each of its ancestors,
 * so while the parent's some total stands still (to the microsecond), so
 * does the cgroup's (hier_fresh). Memory pressure stands still on most hosts
 * most of the time, and every pressure in an idle subtree. */
static void read_psi(struct cgs *s, struct cg_node *n, int h, struct cg_sample *o)
{
    struct cg_cached *c = &n->cached;
    for (int i = 0; i < 3; i++) {
        uint32_t have = HAVE_PSI_CPU << i;
        hier_fresh(s, n, HG_PSI + i, h);
        if (c->have & have) {
            o->psi_us[i] = c->psi_us[i];
            o->have |= have | HAVE_V2;
        }
    }
}

void cg_read_sample(struct cgs *s, struct cg_node *n, struct cg_sample *o)
{
    memset(o, 0, sizeof *o);
    o->mono_ns = s->api->mono_ns();
    read_cpu(s, n, o);
    read_memory(s, n, o);
    int h = n->src[G_PIDS];
    if (h >= 0 && read_u64(s, n, S_PIDS, h, &o->pids)) {
        o->have |= HAVE_PIDS | (s->hier[h].v2 ? HAVE_V2 : HAVE_V1);
    }
    read_io(s, n, o);
    h = s->psi ? n->src[G_PSI] : -1;
    if (h >= 0) {
        read_psi(s, n, h, o);
    }
}

/* Called before a node's files are read: gives files that were missing
 * another chance now and then (a controller enabled later, a new kernel
 * feature after a remount), and reads the kept values again (a safety net
 * under the inotify and vmstat shortcuts). Nodes take turns: the first
 * time is spread over the period by the path's hash. */
void cg_read_begin(struct cgs *s, struct cg_node *n)
{
    if (n->retry_ns == 0) {
        n->retry_ns = s->now_ns + n->hash % ABSENT_RETRY_NS;
        return;
    }
    if (s->now_ns < n->retry_ns) {
        return;
    }
    for (size_t i = 0; i < S_COUNT; i++) {
        if (n->fd[i] == FD_ABSENT) {
            n->fd[i] = FD_CLOSED;
        }
    }
    n->cached.valid = 0;
    n->retry_ns = s->now_ns + ABSENT_RETRY_NS;
}

/* The host's OOM kill count, from /proc/vmstat (kept open). False when there
 * is none to read (no CONFIG_VM_EVENT_COUNTERS): every cgroup's counter is
 * then read at every collection. */
static bool vmstat_oom(struct cgs *s, uint64_t *out)
{
    if (s->vmstat_fd < 0) {
        return false;
    }
    if (pread_all(s, s->vmstat_fd) <= 0) {
        close(s->vmstat_fd);
        s->vmstat_fd = -1;
        return false;
    }
    const char *p = strstr(s->buf, "\noom_kill ");
    if (!p || !parse_u64(p + 10, out)) {
        close(s->vmstat_fd);
        s->vmstat_fd = -1;
        return false;
    }
    return true;
}

/* A gate's new reading (ok: it could be read). Every cgroup's counter is
 * read when the gate moved since the previous collection, and once more in
 * the collection after that: the kernel counts the two one after the other,
 * not at one instant (an OOM kill counts the host first, then the cgroup). */
static void gate_update(struct cg_gate *g, bool ok, uint64_t v)
{
    bool moved = !ok || !g->known || v != g->value;
    g->reread = moved || g->moved;
    g->moved = moved;
    g->value = v;
    g->known = ok;
}

/* ---- hierarchical gates ------------------------------------------------------ */

/* Reads node n's counter of kind k from hierarchy h into n->cached (with its
 * HAVE_ bit). True, with *gate, when the reading can vouch for the node's
 * children: it sums theirs. */
static bool read_kind(struct cgs *s, struct cg_node *n, int k, int h, uint64_t *gate)
{
    static const int psi_slot[3] = {S2_PSI_CPU, S2_PSI_MEM, S2_PSI_IO};
    struct cg_cached *c = &n->cached;
    if (k < HG_IO) {
        uint32_t have = HAVE_PSI_CPU << k;
        c->have &= ~have;
        if (read_slot(s, n, psi_slot[k], h, true) > 0 && psi_some_total(s->buf, &c->psi_us[k])) {
            c->have |= have;
            *gate = c->psi_us[k];
            return true;
        }
        return false;
    }
    if (k == HG_IO) {
        c->have &= ~(uint32_t)HAVE_IO;
        bool recursive = read_slot(s, n, S_BLKIO, h, true) >= 0;
        if (recursive || read_slot(s, n, S_BLKIO_FLAT, h, true) >= 0) {
            blkio_sum(s->buf, &c->read_bytes, &c->write_bytes);
            c->have |= HAVE_IO;
            *gate = c->read_bytes + c->write_bytes;
        }
        return recursive;
    }
    if (k == HG_CPU2) {
        return read_slot(s, n, S2_CPU_STAT, h, true) > 0 && kv_u64(s->buf, "usage_usec", gate);
    }
    c->have &= ~(uint32_t)HAVE_CPU;
    if (read_slot(s, n, S_CPUACCT_ALL, h, true) > 0 &&
        usage_all(s->buf, &c->user_ns, &c->system_ns)) {
        c->have |= HAVE_CPU;
        *gate = c->user_ns + c->system_ns;
        return true;
    }
    return false;
}

static const uint16_t kind_valid[HG_COUNT] = {V_PSI, V_PSI << 1, V_PSI << 2, V_IO, V_CPU, V_CPU2};

/* The gate above the top-level cgroups: read once per collection by
 * cg_read_globals (pressure and blkio of the mount root); none for CPU. */
static bool root_moved(const struct cgs *s, int k)
{
    if (k < HG_IO) {
        return s->psi_gate[k].reread;
    }
    if (k == HG_IO) {
        return s->io[0].reread || s->io[1].reread;
    }
    return true;
}

/* Brings node n's counter of kind k up to date for this collection, reading
 * its file only when the parent's counter moved: pressure, v1 recursive
 * blkio bytes and v1 cpuacct usage each sum the counters of the cgroup's
 * descendants, so while a parent's stands still none of its descendants'
 * moved, and a subtree of idle cgroups costs one read of each kind at its
 * top. Returns whether n's own counter moved (then its children's are read).
 * Like the root gates it looks back two collections, because parent and
 * child are read one after the other, not at one instant. */
static bool hier_fresh(struct cgs *s, struct cg_node *n, int k, int h)
{
    struct cg_gate *g = &n->hg[k];
    if (n->hg_gen[k] == s->gen) {
        return g->reread;
    }
    n->hg_gen[k] = s->gen;
    struct cg_node *p = parent_of(s, n);
    bool parent_moved = p && (p->present & (1u << h)) ? hier_fresh(s, p, k, h) : root_moved(s, k);
    if (!parent_moved && (n->cached.valid & kind_valid[k])) {
        gate_update(g, g->known, g->value); /* stood still */
        return g->reread;
    }
    uint64_t v = 0;
    bool ok = read_kind(s, n, k, h, &v);
    n->cached.valid |= kind_valid[k];
    gate_update(g, ok, v);
    return g->reread;
}

/* The some total (us) of the cgroup2 mount root's pressure file i. */
static bool psi_root(struct cgs *s, int i, uint64_t *out)
{
    static const char *const file[3] = {"cpu.pressure", "memory.pressure", "io.pressure"};
    int *fd = &s->psi_root_fd[i];
    if (*fd == FD_CLOSED) {
        *fd = openat(s->hier[s->h_v2].dirfd, file[i], O_RDONLY | O_CLOEXEC);
        *fd = *fd >= 0 ? *fd : FD_ABSENT;
    }
    if (*fd < 0 || pread_all(s, *fd) <= 0 || !psi_some_total(s->buf, out)) {
        return false; /* no PSI at the root: every cgroup's is read */
    }
    return true;
}

/* On v1, kernels since 5.x count blkio.throttle bytes only for devices that
 * have a throttle rule in some cgroup: when the root's recursive total is 0,
 * nothing is counted and io_* values are left out. That total sums every
 * cgroup's: the gate of their readings. */
static void io_globals(struct cgs *s)
{
    int h = s->h_ctrl[4];
    bool was = s->v1_io_active, gate = false;
    uint64_t rd = 0, wr = 0;
    s->v1_io_active = false;
    if (h >= 0 && s->hier[h].prefix_len > 0) {
        s->v1_io_active = true; /* a delegated subtree: cannot tell, trust it */
    } else if (h >= 0) {
        int fd = openat(s->hier[h].dirfd, slot_file[S_BLKIO], O_RDONLY | O_CLOEXEC);
        bool recursive = fd >= 0;
        if (fd < 0) {
            fd = openat(s->hier[h].dirfd, slot_file[S_BLKIO_FLAT], O_RDONLY | O_CLOEXEC);
        }
        if (fd >= 0) {
            if (pread_all(s, fd) > 0) {
                blkio_sum(s->buf, &rd, &wr);
                s->v1_io_active = rd + wr > 0;
                gate = recursive;
            }
            close(fd);
            if (!s->v1_io_active && (was || !s->v1_io_noted)) {
                s->v1_io_noted = true;
                s->api->log(s->h, VIGIL_LOG_INFO,
                            "v1 blkio counts no I/O on this kernel (it does only on devices "
                            "with a blkio.throttle rule): io_* values are left out until it "
                            "does");
            }
        }
    }
    gate_update(&s->io[0], gate, rd);
    gate_update(&s->io[1], gate, wr);
}

/* Once per collection, before the nodes: the gates, in this order (a gate
 * is read before the cgroups it vouches for). */
void cg_read_globals(struct cgs *s)
{
    uint64_t v = 0;
    bool ok = vmstat_oom(s, &v);
    gate_update(&s->oom, ok, v);
    for (int i = 0; i < 3; i++) {
        ok = s->psi && s->h_v2 >= 0 && psi_root(s, i, &v);
        gate_update(&s->psi_gate[i], ok, v);
    }
    io_globals(s);
    s->cache_files = s->ino_fd >= 0 && !s->inotify_off;
    s->procs_reread = s->procs_written || !s->cache_files;
    s->procs_written = false;
    if (++s->gen == 0) {
        s->gen = 1; /* 0 marks "never" in a node's hg_gen */
    }
}

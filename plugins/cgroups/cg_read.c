/* cgroups: reading one cgroup's files, v1 and v2, into a sample. Each file is
 * read with one pread(2) into a reused buffer; descriptors stay open between
 * collections while the budget allows (a re-read regenerates the contents),
 * which costs a third of open/read/close.
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
    [S_CPUACCT_USER] = "cpuacct.usage_user",
    [S_CPUACCT_SYS] = "cpuacct.usage_sys",
    [S_CPUACCT_USAGE] = "cpuacct.usage",
    [S_CPUACCT_STAT] = "cpuacct.stat",
    [S_CPU_STAT] = "cpu.stat",
    [S_MEM_USAGE] = "memory.usage_in_bytes",
    [S_MEM_LIMIT] = "memory.limit_in_bytes",
    [S_MEM_OOM] = "memory.oom_control",
    [S_PIDS] = "pids.current",
    [S_BLKIO] = "blkio.throttle.io_service_bytes_recursive",
    [S_BLKIO_FLAT] = "blkio.throttle.io_service_bytes",
    [S2_CPU_STAT] = "cpu.stat",
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
            cg_warn(s, &s->rl_big, "a cgroup file is over %u bytes; reading only that much",
                    CG_BUF_MAX);
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

/* Reads one file of node n from hierarchy h into s->buf. Returns its length
 * or a negative errno (-ENOENT: not here). */
static ssize_t read_slot(struct cgs *s, struct cg_node *n, int slot, int h)
{
    if (h < 0 || n->fd[slot] == FD_ABSENT) {
        return -ENOENT;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = n->fd[slot];
        bool kept = fd >= 0;
        if (!kept) {
            fd = open_slot(s, n, slot, h);
            if (fd < 0) {
                int err = errno;
                if (err == EACCES || err == EPERM) {
                    cg_warn(s, &s->rl_access,
                            "cannot open %s/%s: %s (vigild needs to run as root to read "
                            "cgroup files)",
                            s->hier[h].mnt, s->path, strerror(err));
                }
                if (err == EMFILE || err == ENFILE) {
                    cg_warn(s, &s->rl_access,
                            "out of file descriptors (%zu kept open): lower max_open_files or "
                            "raise vigild's LimitNOFILE",
                            s->open_fds);
                } else if (err != ENOMEM) {
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
            bool keep =
                len >= 0 && s->open_fds < s->fd_budget && !(slot == S_PROCS && !s->hier[h].v2);
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
    return read_slot(s, n, slot, h) > 0 && parse_u64(s->buf, out);
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
    ssize_t len = read_slot(s, n, S_PROCS, n->src[G_PROCS]);
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

/* v1 memory.limit_in_bytes says "unlimited" with the largest page-aligned
 * value (LONG_MAX rounded down to a page); older kernels used ULLONG_MAX. */
static bool v1_unlimited(uint64_t v)
{
    return v >= (uint64_t)INT64_MAX - (1u << 21);
}

static void read_cpu(struct cgs *s, struct cg_node *n, struct cg_sample *o)
{
    int ha = n->src[G_CPUACCT], hc = n->src[G_CPU];
    bool acct_v2 = ha >= 0 && s->hier[ha].v2, cpu_v2 = hc >= 0 && s->hier[hc].v2;
    if (ha >= 0 && !acct_v2) {
        uint64_t u, sy;
        if (read_u64(s, n, S_CPUACCT_USER, ha, &u) && read_u64(s, n, S_CPUACCT_SYS, ha, &sy)) {
            o->user_ns = u;
            o->system_ns = sy;
            o->usage_ns = u + sy; /* cpuacct.usage is this same sum */
            o->have |= HAVE_CPU | HAVE_CPU_SPLIT | HAVE_V1;
        } else if (read_u64(s, n, S_CPUACCT_USAGE, ha, &o->usage_ns)) {
            o->have |= HAVE_CPU | HAVE_V1;
            if (read_slot(s, n, S_CPUACCT_STAT, ha) > 0 && kv_u64(s->buf, "user", &u) &&
                kv_u64(s->buf, "system", &sy) && s->clk_tck > 0) {
                o->user_ns = u * (1000000000ull / (uint64_t)s->clk_tck);
                o->system_ns = sy * (1000000000ull / (uint64_t)s->clk_tck);
                o->have |= HAVE_CPU_SPLIT;
            }
        }
    }
    if (hc >= 0 && !cpu_v2 && read_slot(s, n, S_CPU_STAT, hc) > 0 &&
        kv_u64(s->buf, "nr_periods", &o->periods) &&
        kv_u64(s->buf, "nr_throttled", &o->throttled) &&
        kv_u64(s->buf, "throttled_time", &o->throttled_ns)) {
        o->have |= HAVE_THROTTLE | HAVE_V1;
    }
    if (!acct_v2 && !cpu_v2) {
        return;
    }
    /* cgroup2: one cpu.stat has both (usage is a core file, throttling needs
     * the cpu controller). */
    int h2 = acct_v2 ? ha : hc;
    if (read_slot(s, n, S2_CPU_STAT, h2) <= 0) {
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

static void read_memory(struct cgs *s, struct cg_node *n, struct cg_sample *o)
{
    int h = n->src[G_MEMORY];
    if (h < 0) {
        return;
    }
    uint64_t v;
    if (!s->hier[h].v2) {
        if (read_u64(s, n, S_MEM_USAGE, h, &o->mem_bytes)) {
            o->have |= HAVE_MEM | HAVE_V1;
        }
        if (read_u64(s, n, S_MEM_LIMIT, h, &v) && !v1_unlimited(v)) {
            o->mem_max_bytes = v;
            o->have |= HAVE_MEM_MAX;
        }
        if (read_slot(s, n, S_MEM_OOM, h) > 0 && kv_u64(s->buf, "oom_kill", &o->oom_kills)) {
            o->have |= HAVE_OOM;
        }
        return;
    }
    if (read_u64(s, n, S2_MEM_CURRENT, h, &o->mem_bytes)) {
        o->have |= HAVE_MEM | HAVE_V2;
    }
    if (read_u64(s, n, S2_MEM_MAX, h, &v) && v != UINT64_MAX) {
        o->mem_max_bytes = v;
        o->have |= HAVE_MEM_MAX;
    }
    if (read_slot(s, n, S2_MEM_EVENTS, h) > 0 && kv_u64(s->buf, "oom_kill", &o->oom_kills)) {
        o->have |= HAVE_OOM;
    }
}

static void read_io(struct cgs *s, struct cg_node *n, struct cg_sample *o)
{
    int h = n->src[G_IO];
    if (h < 0) {
        return;
    }
    if (s->hier[h].v2) {
        if (read_slot(s, n, S2_IO_STAT, h) >= 0) {
            iostat_sum(s->buf, &o->read_bytes, &o->write_bytes);
            o->have |= HAVE_IO | HAVE_V2;
        }
        return;
    }
    if (!s->v1_io_active) {
        return; /* the kernel counts nothing: zeros would be a lie */
    }
    if (read_slot(s, n, S_BLKIO, h) >= 0 || read_slot(s, n, S_BLKIO_FLAT, h) >= 0) {
        blkio_sum(s->buf, &o->read_bytes, &o->write_bytes);
        o->have |= HAVE_IO | HAVE_V1;
    }
}

void cg_read_sample(struct cgs *s, struct cg_node *n, struct cg_sample *o)
{
    memset(o, 0, sizeof *o);
    o->mono_ns = cg_mono_ns();
    read_cpu(s, n, o);
    read_memory(s, n, o);
    int h = n->src[G_PIDS];
    if (h >= 0 && read_u64(s, n, S_PIDS, h, &o->pids)) {
        o->have |= HAVE_PIDS | (s->hier[h].v2 ? HAVE_V2 : HAVE_V1);
    }
    read_io(s, n, o);
    h = s->psi ? n->src[G_PSI] : -1;
    static const int psi_slot[3] = {S2_PSI_CPU, S2_PSI_MEM, S2_PSI_IO};
    for (int i = 0; h >= 0 && i < 3; i++) {
        if (read_slot(s, n, psi_slot[i], h) > 0 && psi_some_total(s->buf, &o->psi_us[i])) {
            o->have |= (HAVE_PSI_CPU << i) | HAVE_V2;
        }
    }
}

/* Called before a node's files are read: gives files that were missing
 * another chance now and then (a controller enabled later, a new kernel
 * feature after a remount). */
void cg_read_begin(struct cgs *s, struct cg_node *n)
{
    if (s->now_ns < n->retry_ns) {
        return;
    }
    for (size_t i = 0; i < S_COUNT; i++) {
        if (n->fd[i] == FD_ABSENT) {
            n->fd[i] = FD_CLOSED;
        }
    }
    n->retry_ns = s->now_ns + ABSENT_RETRY_NS;
}

/* Once per collection. On v1, kernels since 5.x count blkio.throttle bytes
 * only for devices that have a throttle rule in some cgroup: when the root's
 * recursive total is 0, nothing is counted and io_* values are left out. */
void cg_read_globals(struct cgs *s)
{
    int h = s->h_ctrl[4];
    bool was = s->v1_io_active;
    s->v1_io_active = false;
    if (h < 0 || s->hier[h].prefix_len > 0) {
        s->v1_io_active = h >= 0; /* a delegated subtree: cannot tell, trust it */
        return;
    }
    int fd = openat(s->hier[h].dirfd, slot_file[S_BLKIO], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fd = openat(s->hier[h].dirfd, slot_file[S_BLKIO_FLAT], O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        return;
    }
    if (pread_all(s, fd) > 0) {
        uint64_t rd, wr;
        blkio_sum(s->buf, &rd, &wr);
        s->v1_io_active = rd + wr > 0;
    }
    close(fd);
    if (!s->v1_io_active && (was || !s->v1_io_noted)) {
        s->v1_io_noted = true;
        s->api->log(s->h, VIGIL_LOG_INFO,
                    "v1 blkio counts no I/O on this kernel (it does only on devices with a "
                    "blkio.throttle rule): io_* values are left out until it does");
    }
}

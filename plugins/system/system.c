/* system: the machine as a whole. Each collection reads /proc/stat,
 * /proc/meminfo and /proc/loadavg (one system.stats event, plus one
 * system.cpu event per core with per_cpu), then /proc/self/mountinfo and
 * statvfs() (one system.disk event per selected filesystem).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "mountinfo.h"
#include "vigil/plugin.h"

#define READ_CAP_MIN 16384u
#define READ_CAP_MAX (64u << 20)       /* a /proc file larger than this is refused */
#define SLOW_STATVFS_NS 1000000000ull  /* a statvfs this slow is worth a warning */
#define WARN_WINDOW_NS 600000000000ull /* disk warnings: at most WARN_BURST per 10 min */
#define WARN_BURST 5

enum { PF_STAT, PF_MEMINFO, PF_LOADAVG, PF_MOUNTINFO, PF_N };

static const char *const pf_paths[PF_N] = {"/proc/stat", "/proc/meminfo", "/proc/loadavg",
                                           "/proc/self/mountinfo"};
static const char *const pf_lost[PF_N] = {"cpu values", "memory values", "load values",
                                          "system.disk events"};

/* The fields of a cpu line of /proc/stat, in file order. guest and
 * guest_nice are already counted in user and nice, so they are not read. */
enum { C_USER, C_NICE, C_SYSTEM, C_IDLE, C_IOWAIT, C_IRQ, C_SOFTIRQ, C_STEAL, C_N };

struct cpu_sample {
    uint64_t f[C_N];
    bool valid;
};

/* Monotonic counters of /proc/stat, published as totals and per-second rates. */
enum { K_CTXT, K_INTR, K_FORKS, K_N };
static const char *const k_prefix[K_N] = {"ctxt ", "intr ", "processes "};
static const char *const k_total[K_N] = {"context_switches_total", "interrupts_total",
                                         "forks_total"};
static const char *const k_rate[K_N] = {"context_switches_per_s", "interrupts_per_s",
                                        "forks_per_s"};

/* /proc/meminfo keys we use, in kB. */
enum { M_TOTAL, M_FREE, M_AVAIL, M_BUFFERS, M_CACHED, M_SRECLAIM, M_SWTOTAL, M_SWFREE, M_N };
static const char *const m_keys[M_N] = {"MemTotal:", "MemFree:",      "MemAvailable:", "Buffers:",
                                        "Cached:",   "SReclaimable:", "SwapTotal:",    "SwapFree:"};

/* One line of mountinfo; the strings point into the read buffer, unescaped. */
struct mnt {
    const char *point, *source, *fstype;
    size_t point_len;
    uint64_t id, parent_id;
    ptrdiff_t parent; /* index of the parent mount; -1: outside this view (the root) */
    uint32_t major, minor;
    bool ro;
    ptrdiff_t covered_by; /* index of the mount on top of this one, same point; -1: none */
    uint8_t warned;       /* WARNED_*: logged once, not again while it lasts */
    bool selected;
};

enum { WARNED_FAIL = 1, WARNED_SLOW = 2 };
#define KEEP_WARNED_MAX 256 /* mounts whose warned flags survive a re-read */

/* Filesystems without a disk of their own (kernel interfaces, memory,
 * overlays of another filesystem, read-only images that are always full),
 * skipped unless include_pseudo. */
/* clang-format off */
static const char *const pseudo_fstypes[] = {
    /* kernel interfaces */
    "proc", "sysfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs",
    "pstore", "bpf", "configfs", "fusectl", "mqueue", "binfmt_misc", "efivarfs", "rpc_pipefs",
    "nsfs", "selinuxfs", "nfsd", "binder", "rootfs", "fuse.lxcfs", "fuse.gvfsd-fuse",
    "fuse.portal",
    /* memory: counted in the memory values already */
    "tmpfs", "devtmpfs", "ramfs", "hugetlbfs",
    /* views of another filesystem (container roots) and images that are always full */
    "overlay", "aufs", "shiftfs", "squashfs",
    NULL,
};
/* clang-format on */

/* A read buffer that only grows, so a warm collection does not allocate. */
struct rbuf {
    char *p;
    size_t cap;
};

struct warn_limit {
    uint64_t window_start_ns;
    unsigned n;
    unsigned long long suppressed;
};

struct sys {
    struct vigil_instance *h;
    const struct vigil_api *api;
    bool per_cpu, include_pseudo;
    bool disks;               /* false with `mounts: []` */
    const char **mount_globs; /* NULL: every mount point */
    size_t nmount_globs;
    const char **skip_globs;
    size_t nskip_globs;

    int fd[PF_N];
    bool failing[PF_N]; /* a warning was logged; recovery is logged once */
    struct rbuf rb;     /* /proc/stat, meminfo and loadavg, one after the other */
    struct rbuf mrb;    /* mountinfo: the mounts point into it between collections */
    bool mounts_ok;     /* mnts holds the current mount table, selected */

    struct cpu_sample all_prev, all_cur;
    struct cpu_sample *cpu_prev, *cpu_cur; /* indexed by cpu number */
    size_t ncpu_cap;
    uint64_t k_prev[K_N], k_cur[K_N];
    bool k_prev_ok[K_N], k_cur_ok[K_N];
    uint64_t prev_mono_ns;

    struct mnt *mnts;
    size_t nmnts, mnt_cap;
    uint32_t *tab; /* open addressing: index+1 into mnts, 0 = empty */
    size_t tab_cap;

    struct warn_limit disk_warn;
    struct {
        uint64_t id;
        uint8_t warned;
    } keep[KEEP_WARNED_MAX];
    char label[32];
};

static const struct vigil_option system_options[] = {
    {"per_cpu", VIGIL_OPT_BOOL, "false", "also publish one system.cpu event per core"},
    {"mounts", VIGIL_OPT_LIST, NULL,
     "globs over mount points to report (absent: all; []: no system.disk events)"},
    {"include_pseudo", VIGIL_OPT_BOOL, "false",
     "also report pseudo and memory filesystems (proc, tmpfs, overlay, squashfs, ...)"},
    {"skip_fstypes", VIGIL_OPT_LIST, NULL,
     "globs over filesystem types never to statvfs (e.g. nfs*, cifs, fuse.*)"},
    {NULL, 0, NULL, NULL},
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* True when a disk warning may be logged now; *skipped gets how many were
 * not logged since the last one. */
static bool warn_ok(struct warn_limit *w, uint64_t now, unsigned long long *skipped)
{
    if (w->window_start_ns == 0 || now - w->window_start_ns >= WARN_WINDOW_NS) {
        w->window_start_ns = now;
        w->n = 0;
    }
    if (w->n >= WARN_BURST) {
        w->suppressed++;
        return false;
    }
    w->n++;
    *skipped = w->suppressed;
    w->suppressed = 0;
    return true;
}

/* ---- Reading ------------------------------------------------------------ */

/* Reads a whole /proc file into b, NUL-terminated, from a descriptor kept
 * open across collections (pread at 0 regenerates the contents). Returns
 * the length or a negative code; the first failure is logged, and so is the
 * recovery. */
static ssize_t read_file(struct sys *s, int which, struct rbuf *b)
{
    const char *path = pf_paths[which];
    int rc = 0;
    if (s->fd[which] < 0) {
        s->fd[which] = open(path, O_RDONLY | O_CLOEXEC);
        if (s->fd[which] < 0) {
            rc = -errno;
            goto fail;
        }
    }
    for (;;) {
        size_t len = 0;
        for (;;) {
            ssize_t n = pread(s->fd[which], b->p + len, b->cap - 1 - len, (off_t)len);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                rc = -errno;
                goto fail;
            }
            if (n == 0) {
                break;
            }
            len += (size_t)n;
            if (len == b->cap - 1) {
                break;
            }
        }
        if (len < b->cap - 1) {
            b->p[len] = '\0';
            if (s->failing[which]) {
                s->failing[which] = false;
                s->api->log(s->h, VIGIL_LOG_INFO, "%s is readable again", path);
            }
            return (ssize_t)len;
        }
        /* Full: the file may be longer. Read it again, whole, into a bigger
         * buffer, so the contents come from one consistent pass. */
        if (b->cap >= READ_CAP_MAX) {
            rc = VIGIL_ETOOBIG;
            goto fail;
        }
        char *bigger = realloc(b->p, b->cap * 2);
        if (!bigger) {
            rc = -ENOMEM;
            goto fail;
        }
        b->p = bigger;
        b->cap *= 2;
    }
fail:
    if (!s->failing[which]) {
        s->failing[which] = true;
        s->api->log(s->h, VIGIL_LOG_WARN, "cannot read %s: %s; publishing without %s until it can",
                    path, s->api->strerror(rc), pf_lost[which]);
    }
    return rc;
}

/* Unsigned decimal at *p, skipping leading blanks; advances *p. */
static uint64_t parse_u64(const char **p)
{
    const char *c = *p;
    uint64_t v = 0;
    while (*c == ' ' || *c == '\t') {
        c++;
    }
    while (*c >= '0' && *c <= '9') {
        v = v * 10 + (uint64_t)(*c - '0');
        c++;
    }
    *p = c;
    return v;
}

/* "12.34" as in /proc/loadavg, without strtod (whose decimal point follows
 * the locale). */
static double parse_decimal(const char **p)
{
    uint64_t ip = parse_u64(p);
    const char *c = *p;
    uint64_t frac = 0, scale = 1;
    if (*c == '.') {
        for (c++; *c >= '0' && *c <= '9' && scale < 1000000ull; c++) {
            frac = frac * 10 + (uint64_t)(*c - '0');
            scale *= 10;
        }
        while (*c >= '0' && *c <= '9') {
            c++;
        }
    }
    *p = c;
    if (ip >= (1ull << 53) / scale) {
        return (double)ip + (double)frac / (double)scale;
    }
    /* One division of exact integers: 1.59, not 1 + 0.59 = 1.5899999999999999. */
    return (double)(ip * scale + frac) / (double)scale;
}

static int ensure_cpus(struct sys *s, size_t n)
{
    if (n <= s->ncpu_cap) {
        return 0;
    }
    size_t cap = s->ncpu_cap ? s->ncpu_cap : 8;
    while (cap < n) {
        cap *= 2;
    }
    struct cpu_sample *p = realloc(s->cpu_prev, cap * sizeof *p);
    if (!p) {
        return -ENOMEM;
    }
    s->cpu_prev = p;
    struct cpu_sample *c = realloc(s->cpu_cur, cap * sizeof *c);
    if (!c) {
        return -ENOMEM;
    }
    s->cpu_cur = c;
    memset(s->cpu_prev + s->ncpu_cap, 0, (cap - s->ncpu_cap) * sizeof *p);
    memset(s->cpu_cur + s->ncpu_cap, 0, (cap - s->ncpu_cap) * sizeof *c);
    s->ncpu_cap = cap;
    return 0;
}

static void parse_cpu_fields(const char *p, struct cpu_sample *out)
{
    for (int i = 0; i < C_N; i++) {
        out->f[i] = parse_u64(&p); /* fields an old kernel lacks stay 0 */
    }
    out->valid = true;
}

/* Fills all_cur, cpu_cur and the counters from /proc/stat in s->rb.
 * Returns the number of cores listed. */
static size_t parse_stat(struct sys *s, uint64_t *procs_running, uint64_t *procs_blocked,
                         bool *have_procs)
{
    size_t ncpu = 0;
    for (size_t i = 0; i < s->ncpu_cap; i++) {
        s->cpu_cur[i].valid = false; /* an offline core has no line */
    }
    s->all_cur.valid = false;
    for (int k = 0; k < K_N; k++) {
        s->k_cur_ok[k] = false;
    }
    have_procs[0] = have_procs[1] = false;
    for (const char *line = s->rb.p; *line;) {
        const char *eol = strchr(line, '\n');
        if (strncmp(line, "cpu", 3) == 0) {
            const char *p = line + 3;
            if (*p == ' ') {
                parse_cpu_fields(p, &s->all_cur);
            } else if (*p >= '0' && *p <= '9') {
                uint64_t n = parse_u64(&p);
                if (n < 65536 && ensure_cpus(s, (size_t)n + 1) == 0) {
                    parse_cpu_fields(p, &s->cpu_cur[n]);
                    ncpu++;
                }
            }
        } else if (strncmp(line, "procs_running ", 14) == 0) {
            const char *p = line + 14;
            *procs_running = parse_u64(&p);
            have_procs[0] = true;
        } else if (strncmp(line, "procs_blocked ", 14) == 0) {
            const char *p = line + 14;
            *procs_blocked = parse_u64(&p);
            have_procs[1] = true;
        } else {
            for (int k = 0; k < K_N; k++) {
                size_t n = strlen(k_prefix[k]);
                if (strncmp(line, k_prefix[k], n) == 0) {
                    const char *p = line + n;
                    s->k_cur[k] = parse_u64(&p); /* intr: the first number is the total */
                    s->k_cur_ok[k] = true;
                }
            }
        }
        line = eol ? eol + 1 : line + strlen(line);
    }
    return ncpu;
}

/* Adds the cpu_*_pct values for the time between a and b. False (nothing
 * added) when there is no such time: no earlier sample, or the same tick. */
static bool add_cpu_values(struct sys *s, struct vigil_event_builder *ev, const struct cpu_sample *a,
                           const struct cpu_sample *b)
{
    if (!a->valid || !b->valid) {
        return false;
    }
    double d[C_N], total = 0;
    for (int i = 0; i < C_N; i++) {
        /* iowait is known to step backwards on some kernels: count 0 then. */
        d[i] = b->f[i] > a->f[i] ? (double)(b->f[i] - a->f[i]) : 0.0;
        total += d[i];
    }
    if (total <= 0) {
        return false;
    }
    const struct vigil_api *api = s->api;
    double user = d[C_USER] + d[C_NICE];
    double system = d[C_SYSTEM] + d[C_IRQ] + d[C_SOFTIRQ];
    api->event_value(ev, "cpu_usage_pct", 100.0 * (user + system + d[C_STEAL]) / total);
    api->event_value(ev, "cpu_user_pct", 100.0 * user / total);
    api->event_value(ev, "cpu_system_pct", 100.0 * system / total);
    api->event_value(ev, "cpu_iowait_pct", 100.0 * d[C_IOWAIT] / total);
    api->event_value(ev, "cpu_steal_pct", 100.0 * d[C_STEAL] / total);
    api->event_value(ev, "cpu_idle_pct", 100.0 * d[C_IDLE] / total);
    return true;
}

static void add_memory_values(struct sys *s, struct vigil_event_builder *ev)
{
    const struct vigil_api *api = s->api;
    uint64_t m[M_N] = {0};
    bool have[M_N] = {false};
    for (const char *line = s->rb.p; *line;) {
        const char *eol = strchr(line, '\n');
        for (int k = 0; k < M_N; k++) {
            size_t n = strlen(m_keys[k]);
            if (!have[k] && strncmp(line, m_keys[k], n) == 0) {
                const char *p = line + n;
                m[k] = parse_u64(&p) * 1024; /* the kernel's "kB" is KiB */
                have[k] = true;
                break;
            }
        }
        line = eol ? eol + 1 : line + strlen(line);
    }
    if (!have[M_TOTAL]) {
        return;
    }
    if (!have[M_AVAIL]) {
        /* Before Linux 3.14: the estimate free(1) used then. */
        m[M_AVAIL] = m[M_FREE] + m[M_BUFFERS] + m[M_CACHED];
    }
    uint64_t avail = m[M_AVAIL] < m[M_TOTAL] ? m[M_AVAIL] : m[M_TOTAL];
    uint64_t used = m[M_TOTAL] - avail;
    api->event_value_u64(ev, "memory_total_bytes", m[M_TOTAL]);
    api->event_value_u64(ev, "memory_available_bytes", avail);
    api->event_value_u64(ev, "memory_used_bytes", used);
    if (m[M_TOTAL] > 0) {
        api->event_value(ev, "memory_usage_pct", 100.0 * (double)used / (double)m[M_TOTAL]);
    }
    api->event_value_u64(ev, "memory_free_bytes", m[M_FREE]);
    api->event_value_u64(ev, "memory_buffers_bytes", m[M_BUFFERS]);
    api->event_value_u64(ev, "memory_cached_bytes", m[M_CACHED] + m[M_SRECLAIM]);
    if (have[M_SWTOTAL] && have[M_SWFREE]) {
        uint64_t sw_free = m[M_SWFREE] < m[M_SWTOTAL] ? m[M_SWFREE] : m[M_SWTOTAL];
        uint64_t sw_used = m[M_SWTOTAL] - sw_free;
        api->event_value_u64(ev, "swap_total_bytes", m[M_SWTOTAL]);
        api->event_value_u64(ev, "swap_used_bytes", sw_used);
        api->event_value_u64(ev, "swap_free_bytes", sw_free);
        if (m[M_SWTOTAL] > 0) {
            api->event_value(ev, "swap_usage_pct", 100.0 * (double)sw_used / (double)m[M_SWTOTAL]);
        }
    }
}

static void add_load_values(struct sys *s, struct vigil_event_builder *ev)
{
    const char *p = s->rb.p;
    double l1 = parse_decimal(&p);
    double l5 = parse_decimal(&p);
    double l15 = parse_decimal(&p);
    s->api->event_value(ev, "load1", l1);
    s->api->event_value(ev, "load5", l5);
    s->api->event_value(ev, "load15", l15);
}

/* ---- CPU, memory, load ---------------------------------------------------- */

static int publish_stats(struct sys *s, uint64_t ts, uint64_t now_mono)
{
    const struct vigil_api *api = s->api;
    uint64_t running = 0, blocked = 0;
    bool have_procs[2] = {false, false};
    bool have_stat = read_file(s, PF_STAT, &s->rb) >= 0;
    size_t ncpu = 0;
    if (have_stat) {
        ncpu = parse_stat(s, &running, &blocked, have_procs);
    }
    double dt_s = s->prev_mono_ns ? (double)(now_mono - s->prev_mono_ns) / 1e9 : 0;

    struct vigil_event_builder *ev = api->event_begin(s->h, "system.stats");
    api->event_ts(ev, ts);
    if (have_stat) {
        add_cpu_values(s, ev, &s->all_prev, &s->all_cur);
        api->event_value_u64(ev, "cpu_count", ncpu);
        for (int k = 0; k < K_N; k++) {
            if (!s->k_cur_ok[k]) {
                continue;
            }
            api->event_value_u64(ev, k_total[k], s->k_cur[k]);
            if (s->k_prev_ok[k] && dt_s > 0 && s->k_cur[k] >= s->k_prev[k]) {
                api->event_value(ev, k_rate[k], (double)(s->k_cur[k] - s->k_prev[k]) / dt_s);
            }
        }
        if (have_procs[0]) {
            api->event_value_u64(ev, "procs_running", running);
        }
        if (have_procs[1]) {
            api->event_value_u64(ev, "procs_blocked", blocked);
        }
    }
    if (read_file(s, PF_MEMINFO, &s->rb) >= 0) {
        add_memory_values(s, ev);
    }
    if (read_file(s, PF_LOADAVG, &s->rb) >= 0) {
        add_load_values(s, ev);
    }
    int rc = api->publish(s->h, ev);

    for (size_t i = 0; rc == 0 && have_stat && s->per_cpu && i < s->ncpu_cap; i++) {
        if (!s->cpu_cur[i].valid || !s->cpu_prev[i].valid) {
            continue;
        }
        ev = api->event_begin(s->h, "system.cpu");
        api->event_ts(ev, ts);
        snprintf(s->label, sizeof s->label, "%zu", i);
        api->event_label(ev, "cpu", s->label);
        if (add_cpu_values(s, ev, &s->cpu_prev[i], &s->cpu_cur[i])) {
            rc = api->publish(s->h, ev);
        }
    }

    /* The current sample becomes the previous one; an unreadable /proc/stat
     * leaves no previous sample, so the next good one publishes no deltas. */
    s->all_prev = s->all_cur;
    s->all_prev.valid = have_stat && s->all_cur.valid;
    struct cpu_sample *t = s->cpu_prev;
    s->cpu_prev = s->cpu_cur;
    s->cpu_cur = t;
    for (size_t i = 0; !have_stat && i < s->ncpu_cap; i++) {
        s->cpu_prev[i].valid = false;
    }
    for (int k = 0; k < K_N; k++) {
        s->k_prev[k] = s->k_cur[k];
        s->k_prev_ok[k] = have_stat && s->k_cur_ok[k];
    }
    s->prev_mono_ns = now_mono;
    return rc;
}

/* ---- Disks ---------------------------------------------------------------- */

/* Parses /proc/self/mountinfo in s->mrb into s->mnts. Malformed lines are
 * skipped. */
static int parse_mountinfo(struct sys *s)
{
    s->nmnts = 0;
    char *cursor = s->mrb.p;
    struct vigil_mountinfo mi;
    while (vigil_mountinfo_next(&cursor, &mi)) {
        if (s->nmnts == s->mnt_cap) {
            size_t cap = s->mnt_cap ? s->mnt_cap * 2 : 64;
            struct mnt *m = realloc(s->mnts, cap * sizeof *m);
            if (!m) {
                return -ENOMEM;
            }
            s->mnts = m;
            s->mnt_cap = cap;
        }
        struct mnt *m = &s->mnts[s->nmnts++];
        m->point_len = mi.point_len;
        m->point = mi.point;
        m->source = mi.source;
        m->fstype = mi.fstype;
        m->id = mi.id;
        m->parent_id = mi.parent_id;
        m->major = mi.major;
        m->minor = mi.minor;
        m->ro = vigil_mountinfo_has_option(mi.opts, "ro");
        m->selected = false;
        m->warned = 0;
    }
    return 0;
}

enum tab_key { KEY_ID, KEY_DEV };

static uint64_t key_of(const struct mnt *m, enum tab_key kind)
{
    return kind == KEY_ID ? m->id : (uint64_t)m->major << 32 | m->minor;
}

/* The slot of `key` (a mount id or a device number) in s->tab: either the
 * slot that holds a mount with that key or an empty one. The table has at
 * least twice as many slots as mounts, so one is always free. */
static size_t tab_slot(const struct sys *s, enum tab_key kind, uint64_t key)
{
    size_t mask = s->tab_cap - 1;
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    for (size_t i = (size_t)(h ^ h >> 29) & mask;; i = (i + 1) & mask) {
        uint32_t v = s->tab[i];
        if (v == 0 || key_of(&s->mnts[v - 1], kind) == key) {
            return i;
        }
    }
}

static int tab_reset(struct sys *s)
{
    size_t want = 16;
    while (want < s->nmnts * 2) {
        want *= 2;
    }
    if (want > s->tab_cap) {
        uint32_t *t = realloc(s->tab, want * sizeof *t);
        if (!t) {
            return -ENOMEM;
        }
        s->tab = t;
        s->tab_cap = want;
    }
    memset(s->tab, 0, s->tab_cap * sizeof *s->tab);
    return 0;
}

static bool is_pseudo(const char *fstype)
{
    for (size_t i = 0; pseudo_fstypes[i]; i++) {
        if (strcmp(pseudo_fstypes[i], fstype) == 0) {
            return true;
        }
    }
    return false;
}

static bool any_glob(const struct sys *s, const char *const *globs, size_t n, const char *str,
                     size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (s->api->glob_match(globs[i], str, len)) {
            return true;
        }
    }
    return false;
}

/* True when a's mount point is b's or a directory above it. */
static bool point_covers(const struct mnt *a, const struct mnt *b)
{
    if (a->point_len == 1 && a->point[0] == '/') {
        return true;
    }
    return a->point_len <= b->point_len && memcmp(a->point, b->point, a->point_len) == 0 &&
           (b->point_len == a->point_len || b->point[a->point_len] == '/');
}

/* True when a path to the mount point of mnts[i] reaches that mount: no
 * mount on the way down to it has another one on top, on its own point or on
 * a directory above (mounted later on the same parent). statvfs() of a hidden
 * mount's point would measure whatever hides it. */
static bool reachable(const struct sys *s, size_t i)
{
    ptrdiff_t from = -1; /* the mount below c on the way up: it may sit on c */
    for (int depth = 0; depth < 64; depth++) {
        const struct mnt *c = &s->mnts[i];
        if (c->covered_by >= 0 && c->covered_by != from) {
            return false;
        }
        if (c->parent < 0 || (size_t)c->parent == i) {
            return true;
        }
        for (size_t j = 0; j < s->nmnts; j++) {
            const struct mnt *x = &s->mnts[j];
            if (j != i && x->parent == c->parent && x->point_len < c->point_len &&
                point_covers(x, c)) {
                return false;
            }
        }
        from = (ptrdiff_t)i;
        i = (size_t)c->parent;
    }
    return true; /* deeper than any real tree: do not judge */
}

/* Marks the mounts to statvfs. Each filesystem is looked at once: a mount
 * that a path cannot reach (another mount on top of it or above it) is
 * skipped, and of several mounts of one device (bind mounts, the same
 * filesystem mounted twice) only the one with the shortest mount point
 * counts. Runs only when the mount table changed. */
static int select_mounts(struct sys *s)
{
    int rc = tab_reset(s);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < s->nmnts; i++) {
        s->tab[tab_slot(s, KEY_ID, s->mnts[i].id)] = (uint32_t)i + 1;
        s->mnts[i].covered_by = -1;
    }
    for (size_t i = 0; i < s->nmnts; i++) {
        struct mnt *m = &s->mnts[i];
        uint32_t v = s->tab[tab_slot(s, KEY_ID, m->parent_id)];
        m->parent = v ? (ptrdiff_t)v - 1 : -1;
    }
    for (size_t i = 0; i < s->nmnts; i++) {
        const struct mnt *m = &s->mnts[i];
        if (m->parent >= 0 && (size_t)m->parent != i &&
            s->mnts[m->parent].point_len == m->point_len &&
            memcmp(s->mnts[m->parent].point, m->point, m->point_len) == 0) {
            s->mnts[m->parent].covered_by = (ptrdiff_t)i;
        }
    }
    for (size_t i = 0; i < s->nmnts; i++) {
        struct mnt *m = &s->mnts[i];
        /* autofs is never looked at: statvfs on it would trigger the mount. */
        m->selected = strcmp(m->fstype, "autofs") != 0 &&
                      (s->include_pseudo || !is_pseudo(m->fstype)) &&
                      !any_glob(s, s->skip_globs, s->nskip_globs, m->fstype, strlen(m->fstype)) &&
                      (!s->mount_globs ||
                       any_glob(s, s->mount_globs, s->nmount_globs, m->point, m->point_len)) &&
                      reachable(s, i);
    }
    rc = tab_reset(s);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < s->nmnts; i++) {
        struct mnt *m = &s->mnts[i];
        if (!m->selected) {
            continue;
        }
        size_t slot = tab_slot(s, KEY_DEV, key_of(m, KEY_DEV));
        if (s->tab[slot] == 0) {
            s->tab[slot] = (uint32_t)i + 1;
            continue;
        }
        struct mnt *o = &s->mnts[s->tab[slot] - 1];
        if (m->point_len < o->point_len) {
            o->selected = false;
            s->tab[slot] = (uint32_t)i + 1;
        } else {
            m->selected = false;
        }
    }
    return 0;
}

/* Logs a problem with one mount once while it lasts (m->warned), and no
 * more than WARN_BURST such lines per window for all mounts together. */
static void disk_warn(struct sys *s, struct mnt *m, uint8_t what, const char *fmt, ...)
    VIGIL_PRINTF(4, 5);

static void disk_warn(struct sys *s, struct mnt *m, uint8_t what, const char *fmt, ...)
{
    unsigned long long skipped;
    if (m->warned & what) {
        return;
    }
    m->warned |= what;
    if (!warn_ok(&s->disk_warn, mono_ns(), &skipped)) {
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (skipped > 0) {
        s->api->log(s->h, VIGIL_LOG_WARN, "%s (%llu similar not logged)", msg, skipped);
    } else {
        s->api->log(s->h, VIGIL_LOG_WARN, "%s", msg);
    }
}

static int publish_disk(struct sys *s, struct mnt *m, uint64_t ts)
{
    const struct vigil_api *api = s->api;
    struct statvfs st;
    uint64_t t0 = mono_ns();
    int rc = statvfs(m->point, &st);
    int err = errno;
    uint64_t took = mono_ns() - t0;
    if (took >= SLOW_STATVFS_NS) {
        disk_warn(s, m, WARNED_SLOW,
                  "statvfs(%s) (%s on %s) took %.1f s: while a filesystem hangs, so does this "
                  "source; exclude it with mounts or skip_fstypes",
                  m->point, m->fstype, m->source, (double)took / 1e9);
    }
    if (rc != 0) {
        disk_warn(s, m, WARNED_FAIL,
                  "cannot statvfs %s (%s on %s): %s; no system.disk event for it", m->point,
                  m->fstype, m->source, api->strerror(-err));
        return 0;
    }
    if (m->warned & WARNED_FAIL) {
        m->warned &= (uint8_t)~WARNED_FAIL;
        api->log(s->h, VIGIL_LOG_INFO, "statvfs %s works again", m->point);
    }
    if (st.f_blocks == 0 && !s->include_pseudo) {
        return 0; /* no blocks at all: a pseudo filesystem by another name (df does the same) */
    }
    uint64_t unit = st.f_frsize ? st.f_frsize : st.f_bsize;
    uint64_t bfree = st.f_bfree < st.f_blocks ? st.f_bfree : st.f_blocks;
    uint64_t used = (st.f_blocks - bfree) * unit;
    uint64_t avail = (uint64_t)st.f_bavail * unit;

    struct vigil_event_builder *ev = api->event_begin(s->h, "system.disk");
    api->event_ts(ev, ts);
    api->event_label(ev, "mount", m->point);
    api->event_label(ev, "device", m->source);
    api->event_label(ev, "fstype", m->fstype);
    api->event_value_u64(ev, "disk_total_bytes", (uint64_t)st.f_blocks * unit);
    api->event_value_u64(ev, "disk_used_bytes", used);
    api->event_value_u64(ev, "disk_free_bytes", avail);
    /* Blocks only root may use (ext4's reserved 5%, ...). */
    uint64_t bavail = st.f_bavail < bfree ? st.f_bavail : bfree;
    api->event_value_u64(ev, "disk_reserved_bytes", (bfree - bavail) * unit);
    if (used + avail > 0) {
        api->event_value(ev, "disk_usage_pct", 100.0 * (double)used / (double)(used + avail));
    }
    if (st.f_files > 0) {
        uint64_t ffree = st.f_ffree < st.f_files ? st.f_ffree : st.f_files;
        api->event_value_u64(ev, "inodes_total", st.f_files);
        api->event_value_u64(ev, "inodes_used", st.f_files - ffree);
        api->event_value_u64(ev, "inodes_free", ffree);
        api->event_value(ev, "inodes_usage_pct",
                         100.0 * (double)(st.f_files - ffree) / (double)st.f_files);
    }
    api->event_attr_bool(ev, "readonly", m->ro);
    return api->publish(s->h, ev);
}

/* True when the mount table may have changed since the last look: the
 * kernel flags a mountinfo descriptor with POLLPRI after every mount and
 * unmount in its namespace. Unchanged, the parsed and selected list is kept,
 * and a host with thousands of mounts is not re-read every interval. */
static bool mounts_changed(struct sys *s)
{
    if (!s->mounts_ok || s->fd[PF_MOUNTINFO] < 0) {
        return true;
    }
    struct pollfd pfd = {.fd = s->fd[PF_MOUNTINFO], .events = POLLPRI};
    int n = poll(&pfd, 1, 0);
    return n != 0; /* an error also means: read it again */
}

static int publish_disks(struct sys *s, uint64_t ts)
{
    if (!s->disks) {
        return 0;
    }
    int rc = 0;
    if (mounts_changed(s)) {
        /* poll() above took note of the change: one after this read flags
         * the descriptor again. */
        s->mounts_ok = false;
        size_t nkeep = 0;
        for (size_t i = 0; i < s->nmnts && nkeep < KEEP_WARNED_MAX; i++) {
            if (s->mnts[i].warned) {
                s->keep[nkeep].id = s->mnts[i].id;
                s->keep[nkeep++].warned = s->mnts[i].warned;
            }
        }
        s->nmnts = 0;
        if (read_file(s, PF_MOUNTINFO, &s->mrb) < 0) {
            return 0;
        }
        rc = parse_mountinfo(s);
        /* A mount that stays keeps its warnings (ids are unique while mounted). */
        for (size_t i = 0; rc == 0 && nkeep > 0 && i < s->nmnts; i++) {
            for (size_t k = 0; k < nkeep; k++) {
                if (s->mnts[i].id == s->keep[k].id) {
                    s->mnts[i].warned = s->keep[k].warned;
                }
            }
        }
        if (rc == 0) {
            rc = select_mounts(s);
        }
        s->mounts_ok = rc == 0;
    }
    for (size_t i = 0; rc == 0 && i < s->nmnts; i++) {
        if (s->mnts[i].selected) {
            rc = publish_disk(s, &s->mnts[i], ts);
        }
    }
    return rc;
}

/* ---- Plugin ---------------------------------------------------------------- */

static int system_collect(void *state)
{
    struct sys *s = state;
    /* One observation time for every event of this collection, so a reader
     * can group them. */
    uint64_t ts = s->api->now_ns();
    /* The events of /proc's files (one per CPU with per_cpu) go to the bus in
     * one burst; not the filesystems', each after a statvfs that a hung
     * network mount can block: what was read before it goes out first. */
    bool batch = VIGIL_API_HAS(s->api, batch_end);
    if (batch) {
        s->api->batch_begin(s->h);
    }
    int rc = publish_stats(s, ts, mono_ns());
    int end = batch ? s->api->batch_end(s->h) : 0;
    rc = rc != 0 ? rc : end;
    if (rc == 0) {
        rc = publish_disks(s, ts);
    }
    return rc;
}

/* Reads a list option of globs into a fresh array; each bad item is
 * reported at its position. Returns the number of errors. */
static int read_globs(struct sys *s, const char *key, const char ***out, size_t *n_out)
{
    const struct vigil_api *api = s->api;
    const struct vigil_conf *list = api->conf_get(api->conf_root(s->h), key);
    *out = NULL;
    *n_out = 0;
    if (!list) {
        return 0;
    }
    size_t n = api->conf_len(list);
    /* calloc(0) may return NULL: keep one slot so "present but empty" stays
     * distinguishable from "absent". */
    const char **globs = calloc(n ? n : 1, sizeof *globs);
    if (!globs) {
        return -ENOMEM;
    }
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const struct vigil_conf *item = api->conf_at(list, i, NULL);
        const char *why = NULL;
        if (api->conf_string(item, &globs[i]) != 0) {
            api->conf_error(s->h, item, "%s: each item must be a string (a glob)", key);
            bad++;
        } else if (!api->glob_valid(globs[i], &why)) {
            api->conf_error(s->h, item, "%s: bad glob '%s': %s", key, globs[i], why);
            bad++;
        }
    }
    *out = globs;
    *n_out = n;
    return bad;
}

static void system_fini(void *state)
{
    struct sys *s = state;
    if (!s) {
        return;
    }
    for (int i = 0; i < PF_N; i++) {
        if (s->fd[i] >= 0) {
            close(s->fd[i]);
        }
    }
    free(s->mount_globs);
    free(s->skip_globs);
    free(s->rb.p);
    free(s->mrb.p);
    free(s->cpu_prev);
    free(s->cpu_cur);
    free(s->mnts);
    free(s->tab);
    free(s);
}

static int system_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    const struct vigil_conf *root = api->conf_root(h);
    struct sys *s = calloc(1, sizeof *s);
    if (!s) {
        return -ENOMEM;
    }
    s->h = h;
    s->api = api;
    for (int i = 0; i < PF_N; i++) {
        s->fd[i] = -1; /* opened at the first collection, on the instance's thread */
    }
    api->conf_bool(api->conf_get(root, "per_cpu"), &s->per_cpu);
    api->conf_bool(api->conf_get(root, "include_pseudo"), &s->include_pseudo);
    int bad = read_globs(s, "mounts", &s->mount_globs, &s->nmount_globs);
    int bad2 = read_globs(s, "skip_fstypes", &s->skip_globs, &s->nskip_globs);
    s->disks = !s->mount_globs || s->nmount_globs > 0;
    s->rb.cap = s->mrb.cap = READ_CAP_MIN;
    s->rb.p = malloc(s->rb.cap);
    s->mrb.p = malloc(s->mrb.cap);
    if (bad < 0 || bad2 < 0 || !s->rb.p || !s->mrb.p) {
        system_fini(s);
        return -ENOMEM;
    }
    if (bad > 0 || bad2 > 0) {
        system_fini(s);
        return VIGIL_ECONFIG;
    }
    *state = s;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SOURCE,
    .name = "system",
    .version = "1.0.0",
    .description = "cpu, memory, load and filesystem usage of the whole machine",
    .options = system_options,
    .init = system_init,
    .collect = system_collect,
    .fini = system_fini,
};

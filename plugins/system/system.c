/* system: the machine as a whole. Each collection reads /proc/stat,
 * /proc/meminfo and /proc/loadavg (one system.stats event, plus one
 * system.cpu event per core with per_cpu), then the filesystems (sys_disk.c:
 * one system.disk event per selected filesystem).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "system.h"

#define READ_CAP_MIN 16384u
#define READ_CAP_MAX (64u << 20) /* a /proc file larger than this is refused */

static const char *const pf_paths[PF_N] = {"/proc/stat", "/proc/meminfo", "/proc/loadavg",
                                           "/proc/self/mountinfo"};
static const char *const pf_lost[PF_N] = {"cpu values", "memory values", "load values",
                                          "system.disk events"};

/* The K_* counters (system.h): their lines in /proc/stat and their names. */
static const char *const k_prefix[K_N] = {"ctxt ", "intr ", "processes "};
static const char *const k_total[K_N] = {"context_switches_total", "interrupts_total",
                                         "forks_total"};
static const char *const k_rate[K_N] = {"context_switches_per_s", "interrupts_per_s",
                                        "forks_per_s"};

/* /proc/meminfo keys we use, in kB. */
enum { M_TOTAL, M_FREE, M_AVAIL, M_BUFFERS, M_CACHED, M_SRECLAIM, M_SWTOTAL, M_SWFREE, M_N };
static const char *const m_keys[M_N] = {"MemTotal:", "MemFree:",      "MemAvailable:", "Buffers:",
                                        "Cached:",   "SReclaimable:", "SwapTotal:",    "SwapFree:"};

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

/* ---- Reading ------------------------------------------------------------ */

/* Reads a whole /proc file into b, NUL-terminated, from a descriptor kept
 * open across collections (pread at 0 regenerates the contents). Returns
 * the length or a negative code; the first failure is logged, and so is the
 * recovery. */
ssize_t sys_read_file(struct sys *s, int which, struct rbuf *b)
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
static bool add_cpu_values(struct sys *s, struct vigil_event_builder *ev,
                           const struct cpu_sample *a, const struct cpu_sample *b)
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
    bool have_stat = sys_read_file(s, PF_STAT, &s->rb) >= 0;
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
    if (sys_read_file(s, PF_MEMINFO, &s->rb) >= 0) {
        add_memory_values(s, ev);
    }
    if (sys_read_file(s, PF_LOADAVG, &s->rb) >= 0) {
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
    s->api->batch_begin(s->h);
    int rc = publish_stats(s, ts, s->api->mono_ns());
    int end = s->api->batch_end(s->h);
    rc = rc != 0 ? rc : end;
    if (rc == 0) {
        rc = sys_publish_disks(s, ts);
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

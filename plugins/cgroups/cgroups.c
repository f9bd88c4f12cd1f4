/* cgroups: a source that publishes, per cgroup and interval, its CPU, memory,
 * pids, I/O and pressure (cgroup.stats) and the namespaces of its processes
 * (cgroup.ns), on cgroup v1, v2 and hybrid hosts. This file holds the options,
 * the collection loop and the events; see cgroups.h for the other parts.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgroups.h"

static const struct vigil_option cg_options[] = {
    {"root", VIGIL_OPT_STRING, "/sys/fs/cgroup",
     "where cgroups are mounted: the cgroup and cgroup2 mounts at or below it are read "
     "(found in /proc/self/mountinfo)"},
    {"match", VIGIL_OPT_LIST, NULL,
     "globs over cgroup paths (* within a level, ** across levels); default: every cgroup "
     "that holds processes, except the root"},
    {"max_cgroups", VIGIL_OPT_INT, "2000",
     "at most this many cgroups are read per interval; the rest are counted and warned about"},
    {"namespaces", VIGIL_OPT_BOOL, "true", "publish cgroup.ns (the namespaces of the processes)"},
    {"psi", VIGIL_OPT_BOOL, "true",
     "read the cgroup2 pressure files (a cgroup's only when the mount root's moved)"},
    {"ns_refresh", VIGIL_OPT_DURATION, "1m",
     "how often the namespaces of a process already seen are read again (new processes at "
     "once); 0s: at every collection"},
    {"max_open_files", VIGIL_OPT_INT, "0",
     "cgroup files kept open between collections; 0: half the soft RLIMIT_NOFILE"},
    {NULL, 0, NULL, NULL},
};

void cg_warn(struct cgs *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s->api->vlog_limited(s->h, VIGIL_LOG_WARN, fmt, ap);
    va_end(ap);
}

/* ---- events ---------------------------------------------------------------- */

static void add_labels(struct cgs *s, struct vigil_event_builder *ev, const struct cg_node *n)
{
    vigil_cgroup_labels_add(s->api, ev, n->path, &n->labels);
}

/* A counter's rate: false on the first reading or when the counter went
 * backwards (the cgroup was created anew under the same path). */
static bool delta(uint64_t cur, uint64_t prev, uint64_t *out)
{
    if (cur < prev) {
        return false;
    }
    *out = cur - prev;
    return true;
}

static int publish_stats(struct cgs *s, const struct cg_node *n, uint64_t ts)
{
    const struct vigil_api *api = s->api;
    const struct cg_sample *c = &n->cur;
    const struct cg_sample *p = n->have_prev ? &n->last : NULL;
    double dt = p && c->mono_ns > p->mono_ns ? (double)(c->mono_ns - p->mono_ns) : 0;
    bool rate = dt > 0;
    uint64_t d, d2;
    struct vigil_event_builder *ev = api->event_begin(s->h, "cgroup.stats");
    api->event_ts(ev, ts);
    add_labels(s, ev, n);
    if (n->have_procs) {
        api->event_value_u64(ev, "processes", n->npids);
    }
    if (c->have & HAVE_CPU) {
        api->event_value_u64(ev, "cpu_usage_ns_total", c->usage_ns);
        if (rate && (p->have & HAVE_CPU) && delta(c->usage_ns, p->usage_ns, &d)) {
            api->event_value(ev, "cpu_usage_pct", 100.0 * (double)d / dt);
        }
    }
    if (c->have & HAVE_CPU_SPLIT) {
        api->event_value_u64(ev, "cpu_user_ns_total", c->user_ns);
        api->event_value_u64(ev, "cpu_system_ns_total", c->system_ns);
        if (rate && (p->have & HAVE_CPU_SPLIT)) {
            if (delta(c->user_ns, p->user_ns, &d)) {
                api->event_value(ev, "cpu_user_pct", 100.0 * (double)d / dt);
            }
            if (delta(c->system_ns, p->system_ns, &d)) {
                api->event_value(ev, "cpu_system_pct", 100.0 * (double)d / dt);
            }
        }
    }
    if (c->have & HAVE_THROTTLE) {
        api->event_value_u64(ev, "cpu_periods_total", c->periods);
        api->event_value_u64(ev, "cpu_throttled_periods_total", c->throttled);
        api->event_value_u64(ev, "cpu_throttled_ns_total", c->throttled_ns);
        /* Periods only count while a quota is set: no periods, no throttling. */
        if (c->periods > 0 && rate && (p->have & HAVE_THROTTLE) &&
            delta(c->periods, p->periods, &d) && delta(c->throttled, p->throttled, &d2)) {
            api->event_value(ev, "cpu_throttled_pct", d ? 100.0 * (double)d2 / (double)d : 0.0);
        }
    }
    if (c->have & HAVE_CPU_MAX) {
        api->event_value(ev, "cpu_max_cpus", (double)c->cpu_quota_us / (double)c->cpu_period_us);
    }
    if (c->have & HAVE_MEM) {
        api->event_value_u64(ev, "memory_current_bytes", c->mem_bytes);
    }
    if (c->have & HAVE_MEM_MAX) {
        api->event_value_u64(ev, "memory_max_bytes", c->mem_max_bytes);
        if ((c->have & HAVE_MEM) && c->mem_max_bytes > 0) {
            api->event_value(ev, "memory_usage_pct",
                             100.0 * (double)c->mem_bytes / (double)c->mem_max_bytes);
        }
    }
    if (c->have & HAVE_OOM) {
        api->event_value_u64(ev, "oom_kills_total", c->oom_kills);
        if (rate && (p->have & HAVE_OOM) && delta(c->oom_kills, p->oom_kills, &d)) {
            api->event_value(ev, "oom_kills_per_s", (double)d * 1e9 / dt);
        }
    }
    if (c->have & HAVE_PIDS) {
        api->event_value_u64(ev, "pids_current", c->pids);
    }
    if (c->have & HAVE_IO) {
        api->event_value_u64(ev, "io_read_bytes_total", c->read_bytes);
        api->event_value_u64(ev, "io_write_bytes_total", c->write_bytes);
        if (rate && (p->have & HAVE_IO)) {
            if (delta(c->read_bytes, p->read_bytes, &d)) {
                api->event_value(ev, "io_read_bytes_per_s", (double)d * 1e9 / dt);
            }
            if (delta(c->write_bytes, p->write_bytes, &d)) {
                api->event_value(ev, "io_write_bytes_per_s", (double)d * 1e9 / dt);
            }
        }
    }
    static const char *const psi_total[3] = {
        "cpu_pressure_some_ns_total", "memory_pressure_some_ns_total", "io_pressure_some_ns_total"};
    static const char *const psi_pct[3] = {"cpu_pressure_some_pct", "memory_pressure_some_pct",
                                           "io_pressure_some_pct"};
    for (int i = 0; i < 3; i++) {
        uint32_t bit = HAVE_PSI_CPU << i;
        if (!(c->have & bit)) {
            continue;
        }
        api->event_value_u64(ev, psi_total[i], c->psi_us[i] * 1000);
        if (rate && (p->have & bit) && delta(c->psi_us[i], p->psi_us[i], &d)) {
            api->event_value(ev, psi_pct[i], 100.0 * (double)d * 1000.0 / dt);
        }
    }
    bool v1 = c->have & HAVE_V1, v2 = c->have & HAVE_V2;
    if (v1 || v2) {
        api->event_attr_str(ev, "cgroup_version", v1 && v2 ? "1+2" : v2 ? "2" : "1");
    }
    return api->publish(s->h, ev);
}

/* The set's namespaces as a map kind -> inode (a kind the kernel lacks is
 * left out). */
static void ns_map(struct cgs *s, struct vigil_event_builder *ev, const char *key,
                   const uint64_t *ino)
{
    s->api->event_attr_map_begin(ev, key);
    for (int k = 0; k < CG_NS_KINDS; k++) {
        if (ino[k]) {
            s->api->event_attr_i64(ev, cg_ns_kinds[k], (int64_t)ino[k]);
        }
    }
    s->api->event_attr_end(ev);
}

/* Whether set i has a kind-k inode that no earlier set has. */
static bool new_inode(const struct cgs *s, size_t i, int k)
{
    uint64_t ino = s->sets[i].ino[k];
    for (size_t j = 0; j < i && ino; j++) {
        if (s->sets[j].ino[k] == ino) {
            return false;
        }
    }
    return ino != 0;
}

/* One event per cgroup. attrs.ns.<kind> is the inode when all processes
 * share it, else the list of distinct inodes (in the order of the sets,
 * lowest pid first): consumers keyed by cgroup (the isolation rule) see every
 * namespace, and attrs.sets tells which processes are in which. */
static int publish_ns(struct cgs *s, const struct cg_node *n, uint64_t ts)
{
    const struct vigil_api *api = s->api;
    if (s->nsets == 0) {
        return 0;
    }
    struct vigil_event_builder *ev = api->event_begin(s->h, "cgroup.ns");
    api->event_ts(ev, ts);
    add_labels(s, ev, n);
    api->event_value_u64(ev, "processes", n->nprocs);
    api->event_value_u64(ev, "ns_sets", s->nsets);
    if (s->nsets == 1) {
        ns_map(s, ev, "ns", s->sets[0].ino);
    } else {
        api->event_attr_map_begin(ev, "ns");
        for (int k = 0; k < CG_NS_KINDS; k++) {
            size_t distinct = 0, first = 0;
            for (size_t i = 0; i < s->nsets; i++) {
                if (new_inode(s, i, k)) {
                    if (distinct == 0) {
                        first = i;
                    }
                    distinct++;
                }
            }
            if (distinct == 1) {
                api->event_attr_i64(ev, cg_ns_kinds[k], (int64_t)s->sets[first].ino[k]);
            } else if (distinct > 1) {
                api->event_attr_list_begin(ev, cg_ns_kinds[k]);
                for (size_t i = 0; i < s->nsets; i++) {
                    if (new_inode(s, i, k)) {
                        api->event_attr_i64(ev, NULL, (int64_t)s->sets[i].ino[k]);
                    }
                }
                api->event_attr_end(ev);
            }
        }
        api->event_attr_end(ev);
        api->event_attr_list_begin(ev, "sets");
        for (size_t i = 0; i < s->nsets && i < CG_SETS_DETAIL; i++) {
            const struct cg_set *set = &s->sets[i];
            api->event_attr_map_begin(ev, NULL);
            ns_map(s, ev, "ns", set->ino);
            api->event_attr_i64(ev, "processes", (int64_t)set->count);
            api->event_attr_list_begin(ev, "pids");
            for (size_t j = 0; j < set->npids; j++) {
                api->event_attr_i64(ev, NULL, set->pids[j]);
            }
            api->event_attr_end(ev);
            api->event_attr_end(ev);
        }
        api->event_attr_end(ev);
    }
    api->event_attr_list_begin(ev, "pids");
    for (size_t j = 0; j < n->nprocs && j < CG_SAMPLE_PIDS; j++) {
        api->event_attr_i64(ev, NULL, n->procs[j].pid);
    }
    api->event_attr_end(ev);
    return api->publish(s->h, ev);
}

/* ---- collection ---------------------------------------------------------- */

/* Whether every move of a process between cgroup2 cgroups is a write to a
 * file we can watch (cg_procs_still): the mount shows the whole hierarchy
 * and vigild is in the initial cgroup namespace, so no directory it cannot
 * see exists. */
static bool procs_watchable(const struct cgs *s)
{
    if (s->h_v2 < 0 || s->hier[s->h_v2].prefix_len != 0) {
        return false;
    }
    char ns[64];
    ssize_t len = readlink("/proc/self/ns/cgroup", ns, sizeof ns - 1);
    if (len <= 0) {
        return false;
    }
    ns[len] = '\0';
    return strcmp(ns, "cgroup:[4026531835]") == 0; /* the kernel's CGROUP_NS_INIT_INO */
}

static bool detect(struct cgs *s)
{
    const char *why;
    int rc = cg_mounts_detect(s, "/proc/self/mountinfo", &why);
    if (rc > 0) {
        s->procs_watch = procs_watchable(s);
        if (s->warned_mounts) {
            s->api->log(s->h, VIGIL_LOG_INFO, "cgroup hierarchies found under %s", s->root);
        }
        s->warned_mounts = false;
        return true;
    }
    cg_warn(s, "nothing to read under %s: %s%s%s; trying again every collection", s->root,
            why ? why : "", rc < 0 ? ": " : "", rc < 0 ? strerror(-rc) : "");
    s->warned_mounts = true;
    return false;
}

/* Reads one node's files into n->cur (and its processes' namespaces).
 * False when the node is not reported this interval; *skipped is set when
 * max_cgroups is why. */
static bool read_node(struct cgs *s, struct cg_node *n, size_t reported, bool *skipped)
{
    *skipped = false;
    n->report = false;
    bool eligible = s->match ? n->matched : n->path_len > 1;
    if (!eligible) {
        n->have_prev = false;
        return false;
    }
    bool over = (int64_t)reported >= s->max_cgroups;
    if (over && s->match) {
        *skipped = true; /* no need to look at its processes to know */
        n->have_prev = false;
        return false;
    }
    cg_read_begin(s, n);
    bool still = cg_procs_still(s, n); /* then npids and procs stand */
    if (!still) {
        n->have_procs = cg_read_procs(s, n) == 0;
        n->npids = n->have_procs ? s->npids : 0;
        n->cached.valid |= V_PROCS;
    }
    if (!s->match && n->npids == 0) {
        n->have_prev = false; /* no processes: not one of the default set */
        return false;
    }
    if (over) {
        *skipped = true;
        n->have_prev = false;
        return false;
    }
    cg_read_sample(s, n, &n->cur);
    if (s->namespaces && n->npids > 0) {
        if (!still) {
            cg_ns_collect(s, n, s->now_ns);
        }
    } else {
        n->nprocs = 0; /* no cgroup.ns event */
    }
    n->report = true;
    return true;
}

/* Publishes the events of one node read in this batch. 0, VIGIL_ESTOPPED or
 * another error of publish; *events counts what went out. */
static int publish_node(struct cgs *s, struct cg_node *n, uint64_t real0, uint64_t mono0,
                        size_t *events)
{
    uint64_t ts = real0 + (n->cur.mono_ns - mono0);
    int r = publish_stats(s, n, ts);
    n->last = n->cur;
    n->have_prev = true;
    n->report = false;
    if (r != 0) {
        return r;
    }
    (*events)++;
    s->nsets = 0;
    if (s->namespaces && n->nprocs > 0) {
        cg_ns_group(s, n);
    }
    r = publish_ns(s, n, ts);
    *events += r == 0 && s->nsets > 0;
    return r;
}

/* Nodes read before their events are published. Publishing in bursts, held
 * by the host and sent back to back (batch_begin/batch_end), keeps the bus
 * thread busy instead of waking it for most events (an eventfd write and a
 * cross-CPU wake-up each, a sizeable share of a collection). Bounded so that events
 * leave soon after they were read. */
#define BATCH 256

/* Asks the CPU for the next node while this one is read: a node's fields
 * (its files, readings, kept values, gates, path and labels) span a dozen
 * cache lines, and after the two seconds between collections they come from
 * memory, a stall each when first touched. The kernel's reads of this
 * node's files leave ample time for them to arrive. */
static void prefetch_node(const struct cg_node *n)
{
    if (!n) {
        return;
    }
    for (size_t off = 0; off < sizeof *n + 128; off += 64) {
        __builtin_prefetch((const char *)n + off);
    }
    if (n->procs) {
        __builtin_prefetch(n->procs);
    }
}

static int cg_collect(void *state)
{
    struct cgs *s = state;
    const struct vigil_api *api = s->api;
    uint64_t cpu0 = s->api->thread_cpu_ns();
    s->now_ns = s->api->mono_ns();
    if (s->nh == 0 && !detect(s)) {
        return 0;
    }
    int rc = cg_tree_update(s);
    if (rc != 0) {
        cg_warn(s, "cannot follow the cgroup tree: %s", strerror(-rc));
    }
    cg_read_globals(s);
    uint64_t real0 = api->now_ns(), mono0 = s->now_ns;
    size_t reported = 0, skipped = 0, events = 0;
    int last_err = 0;
    for (struct cg_node *first = s->head; first;) {
        struct cg_node *n = first;
        for (size_t batch = 0; n && batch < BATCH; n = n->next) {
            bool over;
            prefetch_node(n->next);
            if (read_node(s, n, reported, &over)) {
                reported++;
                batch++;
            }
            skipped += over;
        }
        api->batch_begin(s->h);
        for (struct cg_node *m = first; m != n; m = m->next) {
            prefetch_node(m->next);
            if (!m->report) {
                continue;
            }
            int r = publish_node(s, m, real0, mono0, &events);
            if (r == VIGIL_ESTOPPED) {
                return 0; /* the daemon is stopping: not a failure (the host sends what it kept) */
            }
            if (r != 0) {
                last_err = r;
            }
        }
        if (api->batch_end(s->h) == VIGIL_ESTOPPED) {
            return 0;
        }
        first = n;
    }
    if (skipped) {
        s->skipped_total += skipped;
        api->counter_add(s->h, s->skipped_id, skipped);
        cg_warn(s,
                "%zu cgroups over max_cgroups=%" PRId64 " were not read this interval (%" PRIu64
                " cgroup readings skipped in all): raise max_cgroups or narrow match",
                skipped, s->max_cgroups, s->skipped_total);
    }
    uint64_t cpu = s->api->thread_cpu_ns() - cpu0;
    api->log(s->h, VIGIL_LOG_DEBUG,
             "collected %zu cgroups in %.0f us CPU (%.2f us each, publishing %zu events "
             "included; %zu directories tracked, %zu files kept open)",
             reported, (double)cpu / 1e3, reported ? (double)cpu / 1e3 / (double)reported : 0.0,
             events, s->nnodes, s->open_fds);
    return last_err;
}

/* ---- set-up ---------------------------------------------------------------- */

static int read_options(struct cgs *s)
{
    const struct vigil_api *api = s->api;
    const struct vigil_conf *root = api->conf_root(s->h);
    const struct vigil_conf *n;
    int bad = 0;

    n = api->conf_get(root, "root");
    api->conf_string(n, &s->root);
    struct stat st;
    if (!s->root || s->root[0] != '/') {
        api->conf_error(s->h, n, "root must be an absolute path, like /sys/fs/cgroup");
        bad++;
    } else if (stat(s->root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        api->conf_error(s->h, n, "root %s is not a directory", s->root);
        bad++;
    }

    n = api->conf_get(root, "match");
    if (n) {
        size_t len = api->conf_len(n);
        if (len == 0) {
            api->conf_error(s->h, n,
                            "match is empty: list globs, or leave it out for every "
                            "cgroup that holds processes");
            bad++;
        }
        s->match = calloc(len ? len : 1, sizeof *s->match);
        if (!s->match) {
            return -ENOMEM;
        }
        for (size_t i = 0; i < len; i++) {
            const struct vigil_conf *item = api->conf_at(n, i, NULL);
            const char *g = NULL, *why = NULL;
            if (api->conf_string(item, &g) != 0) {
                api->conf_error(s->h, item, "match entries must be globs (strings)");
                bad++;
            } else if (!api->glob_valid(g, &why)) {
                api->conf_error(s->h, item, "bad glob '%s': %s", g, why);
                bad++;
            } else if (g[0] != '/' && g[0] != '*') {
                api->conf_error(s->h, item,
                                "glob '%s' can never match: cgroup paths start with '/' "
                                "(e.g. /kubepods/**)",
                                g);
                bad++;
            } else {
                s->match[s->nmatch++] = g;
            }
        }
    }

    n = api->conf_get(root, "max_cgroups");
    api->conf_int(n, &s->max_cgroups);
    if (s->max_cgroups < 1 || s->max_cgroups > 1000000) {
        api->conf_error(s->h, n, "max_cgroups must be between 1 and 1000000");
        bad++;
    }
    api->conf_bool(api->conf_get(root, "namespaces"), &s->namespaces);
    api->conf_bool(api->conf_get(root, "psi"), &s->psi);
    api->conf_duration(api->conf_get(root, "ns_refresh"), &s->ns_refresh_ns);
    int64_t max_open = 0;
    n = api->conf_get(root, "max_open_files");
    api->conf_int(n, &max_open);
    if (max_open < 0) {
        api->conf_error(s->h, n, "max_open_files must be 0 (automatic) or more");
        bad++;
    }
    if (max_open > 0) {
        s->fd_budget = (size_t)max_open;
    } else {
        struct rlimit rl;
        s->fd_budget = 512;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            s->fd_budget = rl.rlim_cur == RLIM_INFINITY ? 65536 : (size_t)rl.rlim_cur / 2;
        }
    }
    s->max_nodes = (size_t)(s->max_cgroups > 0 ? s->max_cgroups : 1) * 8 + 1024;
    return bad ? VIGIL_ECONFIG : 0;
}

static void cg_fini(void *state)
{
    struct cgs *s = state;
    if (!s) {
        return;
    }
    cg_tree_free(s);
    cg_mounts_free(s);
    if (s->vmstat_fd >= 0) {
        close(s->vmstat_fd);
    }
    for (int i = 0; i < 3; i++) {
        if (s->psi_root_fd[i] >= 0) {
            close(s->psi_root_fd[i]);
        }
    }
    free(s->match);
    free(s->buf);
    free(s->pids);
    free(s->scratch);
    free(s->sets);
    free(s);
}

static int cg_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    struct cgs *s = calloc(1, sizeof *s);
    if (!s) {
        return -ENOMEM;
    }
    s->h = h;
    s->api = api;
    s->ino_fd = -1;
    s->vmstat_fd = open("/proc/vmstat", O_RDONLY | O_CLOEXEC);
    for (int i = 0; i < 3; i++) {
        s->psi_root_fd[i] = FD_CLOSED;
    }
    s->h_v2 = -1;
    for (size_t i = 0; i < sizeof s->h_ctrl / sizeof s->h_ctrl[0]; i++) {
        s->h_ctrl[i] = -1;
    }
    s->clk_tck = sysconf(_SC_CLK_TCK);
    /* usage_all prints two numbers per possible CPU: past a few CPUs the
     * formatting costs more than the second file it saves. */
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    s->cpuacct_all = cpus > 0 && cpus <= CG_CPUACCT_ALL_MAX_CPUS;
    int rc = read_options(s);
    if (rc == 0) {
        s->skipped_id = api->counter_new(h, "skipped_total");
        rc = s->skipped_id < 0 ? s->skipped_id : 0;
    }
    if (rc == 0) {
        s->buf_cap = 65536;
        s->buf = malloc(s->buf_cap);
        rc = s->buf ? 0 : -ENOMEM;
    }
    if (rc != 0) {
        cg_fini(s);
        return rc;
    }
    detect(s); /* a warning when nothing is mounted yet; collect() retries */
    *state = s;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SOURCE,
    .name = "cgroups",
    .version = "1.0.0",
    .description = "per-cgroup CPU, memory, pids, I/O, pressure and namespaces (v1, v2, hybrid)",
    .options = cg_options,
    .init = cg_init,
    .collect = cg_collect,
    .fini = cg_fini,
};

/* cgroups plugin internals: the state its files share (mounted hierarchies,
 * the tree of cgroup paths, kept file descriptors, namespace caches). One
 * cgroup path is one identity, merged over every hierarchy that has it.
 * Private to plugins/cgroups/; not an API.
 */
#ifndef VIGIL_CGROUPS_H
#define VIGIL_CGROUPS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroup_labels.h"
#include "vigil/plugin.h"

#define CG_MAX_HIER 8             /* cgroup2 plus the v1 hierarchies we read */
#define CG_NS_KINDS 7             /* net pid mnt ipc uts user cgroup */
#define CG_MAX_DEPTH 64           /* deeper directories are not followed */
#define CG_BUF_MAX (8u << 20)     /* largest file we read (a huge cgroup.procs) */
#define CG_MAX_SETS 256           /* namespace sets told apart per cgroup */
#define CG_SETS_DETAIL 32         /* sets detailed in attrs.sets of a cgroup.ns event */
#define CG_SAMPLE_PIDS 16         /* pids listed per cgroup and per set in cgroup.ns */
#define CG_CPUACCT_ALL_MAX_CPUS 8 /* v1: cpuacct.usage_all up to this many possible CPUs */

/* v1 controllers we read; a v1 hierarchy is tracked when it has one. */
enum { C_CPU = 1, C_CPUACCT = 2, C_MEMORY = 4, C_PIDS = 8, C_BLKIO = 16 };

/* Metric groups; each comes from one hierarchy per cgroup: the v1
 * hierarchy with the controller when the path exists there, else cgroup2. */
enum cg_group { G_PROCS, G_CPUACCT, G_CPU, G_MEMORY, G_PIDS, G_IO, G_PSI, G_COUNT };

/* The files we read. A node keeps one descriptor per slot (or a mark). */
enum cg_slot {
    S_PROCS,         /* cgroup.procs of the node's G_PROCS hierarchy */
    S_CPUACCT_ALL,   /* v1 cpuacct.usage_all: user and system per CPU (ns), few CPUs */
    S_CPUACCT_USER,  /* v1 cpuacct.usage_user (ns) */
    S_CPUACCT_SYS,   /* v1 cpuacct.usage_sys (ns) */
    S_CPUACCT_USAGE, /* v1 cpuacct.usage: kernels without usage_user */
    S_CPUACCT_STAT,  /* v1 cpuacct.stat (USER_HZ): with cpuacct.usage */
    S_CPU_STAT,      /* v1 cpu.stat: throttling */
    S_CPU_QUOTA,     /* v1 cpu.cfs_quota_us: the quota, and whether cpu.stat can move at all */
    S_CPU_PERIOD,    /* v1 cpu.cfs_period_us: with the quota, the CPUs it allows */
    S_MEM_USAGE,     /* v1 memory.usage_in_bytes */
    S_MEM_LIMIT,     /* v1 memory.limit_in_bytes */
    S_MEM_OOM,       /* v1 memory.oom_control (oom_kill) */
    S_PIDS,          /* pids.current, v1 or cgroup2 */
    S_BLKIO,         /* v1 blkio.throttle.io_service_bytes_recursive */
    S_BLKIO_FLAT,    /* v1 blkio.throttle.io_service_bytes: older kernels */
    S2_CPU_STAT,     /* cgroup2 cpu.stat: usage (core file) and throttling */
    S2_CPU_MAX,      /* cgroup2 cpu.max: "quota period" or "max period" */
    S2_MEM_CURRENT,
    S2_MEM_MAX,
    S2_MEM_EVENTS,
    S2_IO_STAT,
    S2_PSI_CPU,
    S2_PSI_MEM,
    S2_PSI_IO,
    S_COUNT
};

#define FD_CLOSED (-1) /* not open: open it when read */
#define FD_ABSENT (-2) /* the file does not exist here: retried now and then */

/* One mounted hierarchy under `root`, found in /proc/self/mountinfo. */
struct cg_hier {
    char *mnt;    /* mount point */
    char *prefix; /* the mount's root inside the hierarchy; "" for "/" */
    size_t prefix_len;
    unsigned ctrl; /* C_* of a v1 hierarchy */
    bool v2;
    int dirfd; /* the mount point, O_PATH|O_DIRECTORY */
};

/* One reading of a cgroup's files. Counters are cumulative. */
enum {
    HAVE_CPU = 1u << 0,       /* usage_ns */
    HAVE_CPU_SPLIT = 1u << 1, /* user_ns, system_ns */
    HAVE_THROTTLE = 1u << 2,  /* periods, throttled, throttled_ns */
    HAVE_MEM = 1u << 3,
    HAVE_MEM_MAX = 1u << 4, /* mem_max_bytes is a real limit */
    HAVE_OOM = 1u << 5,
    HAVE_PIDS = 1u << 6,
    HAVE_IO = 1u << 7,
    HAVE_PSI_CPU = 1u << 8,
    HAVE_PSI_MEM = 1u << 9,
    HAVE_PSI_IO = 1u << 10,
    HAVE_CPU_MAX = 1u << 11, /* cpu_quota_us / cpu_period_us is a real limit */
    HAVE_V1 = 1u << 14,      /* some value came from a v1 hierarchy */
    HAVE_V2 = 1u << 15,      /* some value came from cgroup2 */
};

struct cg_sample {
    uint32_t have;
    uint64_t mono_ns;
    uint64_t usage_ns, user_ns, system_ns;
    uint64_t periods, throttled, throttled_ns;
    uint64_t mem_bytes, mem_max_bytes;
    uint64_t cpu_quota_us, cpu_period_us;
    uint64_t oom_kills, pids;
    uint64_t read_bytes, write_bytes;
    uint64_t psi_us[3]; /* some total (us): cpu, memory, io */
};

/* Values of files that change only on a write or an event we are told about,
 * kept between collections (see cg_read.c). `valid` says which are current. */
enum {
    V_LIMIT = 1u << 0,    /* v1 memory.limit_in_bytes: until inotify says it was written */
    V_QUOTA = 1u << 1,    /* v1 cpu.cfs_quota_us and cfs_period_us: likewise */
    V_THROTTLE = 1u << 2, /* v1 cpu.stat: frozen while no quota is in force */
    V_OOM = 1u << 3,      /* oom_kill: until the host's count moves (/proc/vmstat) */
    V_IO = 1u << 4,       /* v1 blkio bytes: until the root's recursive total moves */
    V_PSI = 1u << 5,      /* V_PSI << i, pressure i: until the mount root's moves */
    V_CPU = 1u << 8,      /* v1 cpuacct.usage_all: until the parent's usage moves */
    V_CPU2 = 1u << 9,     /* cgroup2 cpu.stat usage_usec as a gate (HG_CPU2) */
    V_PROCS = 1u << 10,   /* cgroup.procs read since the tree was last forgotten */
};

struct cg_cached {
    uint16_t valid;
    bool quota;    /* a v1 CPU quota is in force: cpu.stat moves */
    uint32_t have; /* HAVE_MEM_MAX, CPU_MAX, OOM, THROTTLE, IO, PSI_* among the values below */
    uint64_t mem_max_bytes, oom_kills;
    uint64_t cpu_quota_us, cpu_period_us;
    uint64_t periods, throttled, throttled_ns;
    uint64_t read_bytes, write_bytes;
    uint64_t psi_us[3];
    uint64_t user_ns, system_ns; /* v1 cpuacct.usage_all, summed */
};

/* A counter of the whole host (or of the hierarchy's root) that moves
 * whenever any cgroup's counter of one kind does, because the kernel counts
 * both or sums one into the other: while it stands still, no cgroup's
 * moved, and the values kept from earlier readings stand. */
struct cg_gate {
    uint64_t value;
    bool known;  /* value was read at the previous collection */
    bool moved;  /* it moved at the previous collection */
    bool reread; /* this collection: read every cgroup's counter */
};

/* Counters that sum their descendants' (hierarchical): a node's own
 * reading is the gate of its children's (cg_read.c). */
enum {
    HG_PSI = 0,  /* HG_PSI + i: pressure i (cgroup2) */
    HG_IO = 3,   /* v1 blkio.throttle.io_service_bytes_recursive, read + write */
    HG_CPU = 4,  /* v1 cpuacct usage */
    HG_CPU2 = 5, /* cgroup2 cpu.stat usage_usec: vouches for cgroup.procs */
    HG_COUNT = 6
};

/* A process of a cgroup and its namespaces, cached between readings. */
struct cg_proc {
    pid_t pid;
    uint64_t ino[CG_NS_KINDS]; /* 0: not available */
    uint64_t checked_ns;       /* monotonic time of the last reading */
};

/* Files of a cgroup watched for writes, each with a watch of its own: a
 * directory watched for its files' events would make every read of every
 * file in it pay fsnotify's look-up of the parent (cg_tree.c). */
enum cg_watched {
    W_PROCS,      /* cgroup2 cgroup.procs: a process moved in (cg_procs_still) */
    W_THREADS,    /* cgroup2 cgroup.threads: a thread moved in */
    W_MEM_LIMIT,  /* v1 memory.limit_in_bytes: V_LIMIT */
    W_CPU_QUOTA,  /* v1 cpu.cfs_quota_us: V_QUOTA */
    W_CPU_PERIOD, /* v1 cpu.cfs_period_us: V_QUOTA */
    W_COUNT
};

/* One cgroup path, present in one or more hierarchies. */
struct cg_node {
    struct cg_node *hnext;       /* hash chain */
    struct cg_node *prev, *next; /* discovery order: max_cgroups keeps the oldest */
    uint64_t hash;
    uint32_t present;    /* bit per hierarchy index */
    uint32_t seen;       /* bits set by the current full scan */
    int wd[CG_MAX_HIER]; /* inotify watch per hierarchy, -1 none */
    int fw[W_COUNT];     /* inotify watch per watched file, -1 none */
    int8_t src[G_COUNT]; /* hierarchy index per group, -1 none */
    bool matched;        /* an explicit `match` glob matches */
    bool have_prev;
    bool report;           /* read in this collection's current batch: publish it */
    bool have_procs;       /* cgroup.procs was readable (npids is valid) */
    size_t npids;          /* processes in cgroup.procs at this reading */
    uint64_t ns_oldest_ns; /* the oldest checked_ns among procs: when a refresh is due */
    int fd[S_COUNT];
    uint64_t retry_ns;     /* when FD_ABSENT marks are tried again and `cached` read anew */
    struct cg_sample cur;  /* this collection's reading, published after its batch */
    struct cg_sample last; /* the previous reading, for rates */
    struct cg_cached cached;
    struct cg_gate hg[HG_COUNT]; /* its hierarchical counters as gates of its children */
    uint32_t hg_gen[HG_COUNT];   /* the collection hg[k] is current for */
    struct cg_node *parent;      /* its parent directory's node, found once per collection */
    uint32_t parent_gen;         /* the collection `parent` was found in */
    struct cg_proc *procs;       /* sorted by pid */
    size_t nprocs, cap_procs;
    struct vigil_cgroup_labels labels; /* strings live in `path`'s allocation */
    size_t path_len;
    char path[]; /* the identity: "/a/b", root "/" */
};

/* A map from inotify watch descriptor to (node, hierarchy). */
struct cg_wd {
    int wd; /* 0: empty slot */
    uint8_t hier;
    uint8_t file; /* 0: the directory; 1 + i: the node's fw[i] file */
    struct cg_node *node;
};

/* A distinct set of namespaces among a cgroup's processes. */
struct cg_set {
    uint64_t ino[CG_NS_KINDS];
    size_t count;
    pid_t pids[CG_SAMPLE_PIDS];
    size_t npids;
};

struct cgs {
    struct vigil_instance *h;
    const struct vigil_api *api;

    /* Options. */
    const char *root;
    const char **match; /* NULL: every cgroup holding processes, but "/" */
    size_t nmatch;
    int64_t max_cgroups;
    size_t max_nodes; /* directories tracked, from max_cgroups */
    uint64_t ns_refresh_ns;
    bool namespaces;
    bool psi;
    size_t fd_budget;

    /* Hierarchies. */
    struct cg_hier hier[CG_MAX_HIER];
    size_t nh;
    int h_v2;      /* index of cgroup2, -1 none */
    int h_ctrl[5]; /* index of the v1 hierarchy per C_* bit, -1 none */

    /* The tree. */
    struct cg_node **buckets;
    size_t nbuckets, nnodes;
    struct cg_node *head, *tail;
    int ino_fd; /* inotify, -1 when unavailable: full scans */
    struct cg_wd *wds;
    size_t nwds, cap_wds;
    bool rescan;         /* a full scan is due */
    bool rescan_refused; /* the node bound turned directories away */
    bool inotify_off;    /* inotify failed: a full scan every collection */
    bool tree_partial;   /* directories below CG_MAX_DEPTH were not followed */
    bool procs_watch;    /* cgroup.procs may stand between moves (cg_procs_still) */
    bool procs_written;  /* a watched cgroup.procs/cgroup.threads was written */
    bool procs_reread;   /* ... before this collection: every cgroup.procs is read */
    size_t nodes_refused;

    /* Reused buffers: no allocation per cgroup once warm. */
    char *buf; /* file contents */
    size_t buf_cap;
    char path[4096 + 256];
    char *dents; /* getdents64 */
    size_t dents_cap;
    char *work; /* scan stack of paths, NUL-separated */
    size_t work_len, work_cap;
    pid_t *pids; /* one cgroup.procs, parsed */
    size_t npids, cap_pids;
    struct cg_proc *scratch; /* the next cache of a node, swapped in */
    size_t cap_scratch;
    struct cg_set *sets;
    size_t nsets, cap_sets;
    size_t open_fds;
    bool cache_files;           /* inotify follows the tree: the V_LIMIT/V_QUOTA shortcuts hold */
    int vmstat_fd;              /* /proc/vmstat, -1 when unreadable */
    int psi_root_fd[3];         /* cpu, memory, io.pressure of the cgroup2 mount's root */
    struct cg_gate oom;         /* /proc/vmstat oom_kill */
    struct cg_gate psi_gate[3]; /* the cgroup2 root's some totals */
    struct cg_gate io[2];       /* the v1 blkio root's recursive read and write bytes */
    long clk_tck;
    bool cpuacct_all;  /* few CPUs: one cpuacct.usage_all instead of usage_user + usage_sys */
    uint64_t now_ns;   /* monotonic, at the start of the collection */
    uint32_t gen;      /* collections so far (from 1): the age of hg[] */
    bool v1_io_active; /* v1 blkio counts I/O at all (see cg_read_globals) */
    bool v1_io_noted;

    /* Warnings. */
    uint64_t skipped_total; /* cgroups not read because of max_cgroups */
    int skipped_id;         /* the same, as a counter in vigil.self */
    bool warned_mounts;
};

/* cgroups.c */
void cg_warn(struct cgs *s, const char *fmt, ...) VIGIL_PRINTF(2, 3);

/* cg_mounts.c: finds the cgroup hierarchies mounted at or below s->root in
 * `mountinfo` (normally /proc/self/mountinfo) and opens them. Returns the
 * number found or a negative errno; *why gets a reason when none is usable. */
int cg_mounts_detect(struct cgs *s, const char *mountinfo, const char **why);
void cg_mounts_free(struct cgs *s);

/* cg_tree.c: brings the tree up to date (inotify events, or a full scan
 * when due). 0 or a negative errno. */
int cg_tree_update(struct cgs *s);
void cg_tree_free(struct cgs *s);
/* The node of n's parent directory; NULL for "/" or when it is not tracked. */
struct cg_node *cg_node_parent(struct cgs *s, const struct cg_node *n);
/* Picks the hierarchy per group for a node after its presence changed. */
void cg_node_route(struct cgs *s, struct cg_node *n);
void cg_node_close_files(struct cgs *s, struct cg_node *n);

/* Drops every node's V_* marks: after a full scan, which may have missed a
 * cgroup removed and made again under the same path. */
void cg_tree_forget(struct cgs *s);

/* cg_read.c: reads the node's cgroup.procs into s->pids / s->npids (sorted).
 * 0, or a negative errno when there is no readable cgroup.procs. */
int cg_read_procs(struct cgs *s, struct cg_node *n);
/* True when n's cgroup.procs cannot have changed since it was last read, so
 * n->npids and n->procs stand (see cg_read.c). */
bool cg_procs_still(struct cgs *s, struct cg_node *n);
/* Once per collection, before the nodes. */
void cg_read_globals(struct cgs *s);
/* Before a node's files are read in a collection. */
void cg_read_begin(struct cgs *s, struct cg_node *n);
/* Reads every value the node's hierarchies have into *out. */
void cg_read_sample(struct cgs *s, struct cg_node *n, struct cg_sample *out);

/* cg_ns.c: refreshes the node's process cache from s->pids. */
void cg_ns_collect(struct cgs *s, struct cg_node *n, uint64_t now_ns);
/* Groups the node's cached processes into distinct namespace sets
 * (s->sets / s->nsets). */
void cg_ns_group(struct cgs *s, const struct cg_node *n);
extern const char *const cg_ns_kinds[CG_NS_KINDS];

#endif

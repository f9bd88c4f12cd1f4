/* kvm source plugin: the state its files share. kvm.c runs the collection and
 * publishes; kvm_proc.c finds VMs in /proc and reads CPU and memory;
 * kvm_stats.c reads KVM's own counters (binary stats fds, debugfs);
 * kvm_trace.c counts KVM tracepoints with perf.
 */
#ifndef VIGIL_PLUGIN_KVM_H
#define VIGIL_PLUGIN_KVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vigil/plugin.h"

/* What the plugin counts per VM and per vCPU. Each has a value name
 * ("<name>_total", "<name>_per_s") and, where KVM keeps one, the name of its
 * statistic in the stats fd and in debugfs. */
enum kv_reason {
    KV_R_EXITS,       /* every VM exit */
    KV_R_USERSPACE,   /* returns of KVM_RUN to the VMM (tracepoints only) */
    KV_R_IO,          /* port I/O */
    KV_R_MMIO,        /* MMIO handed to the VMM */
    KV_R_HALT,        /* HLT */
    KV_R_IRQ,         /* external interrupts */
    KV_R_IRQ_WINDOW,  /* interrupt-window exits */
    KV_R_NMI_WINDOW,  /* NMI-window exits */
    KV_R_SIGNAL,      /* to the VMM because a signal was pending */
    KV_R_REQUEST_IRQ, /* to the VMM to ask for an interrupt window */
    KV_R_HYPERCALL,   /* hypercalls */
    KV_R_COUNT
};

struct kv_reason_info {
    const char *total; /* value names */
    const char *per_s;
    const char *stat; /* KVM statistic, or NULL */
};
extern const struct kv_reason_info kv_reasons[KV_R_COUNT];

/* Where the counters come from; attrs.method names the first layer used. */
enum kv_method { KV_M_NONE, KV_M_STATS_FD, KV_M_DEBUGFS, KV_M_TRACEPOINT };

enum kv_trace_mode { KV_TRACE_AUTO, KV_TRACE_ALWAYS, KV_TRACE_NEVER };

/* One reading of the reasons from one layer: cumulative counts, and a bit
 * per reason the layer can tell. */
struct kv_counts {
    uint64_t v[KV_R_COUNT];
    uint32_t have;
};

/* Running totals and rates of one VM or vCPU, merged from up to two layers
 * (KV_LAYERS): per reason, the larger of the layers' increments. */
#define KV_LAYERS 2
struct kv_tally {
    uint64_t total[KV_R_COUNT];
    double rate[KV_R_COUNT];
    uint32_t ever;  /* reasons read at least once */
    uint32_t known; /* reasons published this reading */
    uint32_t rated; /* reasons with a rate this reading */
    struct kv_counts prev[KV_LAYERS];
    uint64_t prev_ns;
};
void kv_tally_update(struct kv_tally *t, const struct kv_counts *layers[KV_LAYERS],
                     uint64_t now_ns);

/* CPU time of a process or one thread, from a /proc .../stat file kept open. */
struct kv_cpu {
    int fd;                       /* -1: not read */
    uint64_t utime, stime, gtime; /* clock ticks */
    uint64_t prev_ns;
    bool primed, have_pct;
    double guest_pct, host_pct;
};

/* A vCPU's binary stats fd, borrowed from the VMM. */
struct kv_statsfd {
    int fd; /* -1: none */
    uint32_t data_offset;
    size_t nwords;
    uint64_t *data;
    int word[KV_R_COUNT]; /* index into data, -1 when KVM has no such stat */
};

/* Tracepoint counters, in the order kv_trace opens them per thread. */
enum kv_event {
    KV_E_USERSPACE, /* kvm_userspace_exit */
    KV_E_US_HLT,    /* ... reason KVM_EXIT_HLT */
    KV_E_US_MMIO,   /* ... reason KVM_EXIT_MMIO */
    KV_E_US_INTR,   /* ... reason KVM_EXIT_INTR (signal) */
    KV_E_EXIT,      /* kvm_exit */
    KV_E_EXIT_HLT,  /* ... HLT on VMX or SVM */
    KV_E_EXIT_IRQ,  /* ... external interrupt on VMX or SVM */
    KV_E_PIO,       /* kvm_pio */
    KV_E_HYPERCALL, /* kvm_hypercall */
    KV_E_COUNT
};

/* One VMM thread the trace layer counts: a perf group read in one read(). */
struct kv_thread {
    int tid;
    int fd[KV_E_COUNT]; /* -1 where not open; the first open one leads */
    uint64_t ev[KV_E_COUNT];
    bool seen, dead;
};

struct kv_vcpu {
    int index;
    int tid; /* 0: not known */
    char index_str[12], tid_str[12];
    struct kv_statsfd stats;
    struct kv_counts now[KV_LAYERS]; /* this reading: stats, tracepoints */
    struct kv_cpu cpu;
    struct kv_tally tally;
};

struct kv_vm {
    int pid, vm_fd, pidfd;
    uint64_t start_ticks; /* /proc/<pid>/stat starttime: tells pid reuse */
    uint64_t found_ns;    /* when the plugin found it (monotonic) */
    char name[64], pid_str[12], fd_str[12];
    bool primary; /* lowest VM fd of its process: gets the process's vCPUs */
    enum kv_method method;
    bool trace_on; /* trace layer active (as method or beside stats) */
    bool seen;     /* its process was scanned in this collection */
    bool gone;     /* its pid was reused: drop it */
    bool ignored;  /* not matched by `vms` */

    struct kv_vcpu *vcpus;
    size_t nvcpus, vcpu_cap;
    int dbg_fd[KV_R_COUNT]; /* debugfs files of this VM, -1 if not open */

    struct kv_thread *threads;
    size_t nthreads, thread_cap;
    uint64_t retired[KV_E_COUNT]; /* final counts of threads that ended */
    uint64_t trace_seen_exit;     /* kvm_exit ever counted: backend traces it */

    struct kv_cpu cpu;
    int statm_fd;
    uint64_t guest_mem_bytes;
    const char *mem_method;
    struct kv_tally tally;
};

/* What one process's fd table holds of KVM (scratch of the scanner). */
#define KV_MAX_VM_FDS 16     /* VMs per process we follow */
#define KV_MAX_VCPU_FDS 4096 /* KVM_MAX_VCPUS on x86 */
struct kv_fds {
    int vm[KV_MAX_VM_FDS];
    size_t nvm;
    int vcpu_idx[KV_MAX_VCPU_FDS];
    size_t nvcpu;
    int stats_fd[KV_MAX_VCPU_FDS], stats_idx[KV_MAX_VCPU_FDS];
    size_t nstats;
};

/* A process the scanner has seen, for the "only new processes" scan. */
struct kv_seen {
    int pid;
    uint64_t first_ns;
};

struct kv_state {
    struct vigil_instance *h;
    const struct vigil_api *api;
    /* config */
    uint64_t rescan_ns;
    enum kv_trace_mode trace_mode;
    const char *debugfs_path, *tracefs_path;
    bool private_mounts, per_vcpu;
    const struct vigil_conf *vms;

    struct kv_vm **vm;
    size_t nvm, vm_cap;
    struct kv_seen *seen, *seen_next;
    size_t nseen, seen_cap;
    uint64_t last_full_ns;

    /* debugfs: the kvm folder, from the mounted tree or a private mount */
    int dbg_dir, dbg_mnt;
    bool dbg_tried, dbg_denied;
    /* tracepoints: ids, resolved once */
    int64_t tp_id[KV_E_COUNT];
    bool tp_tried, tp_ok, tp_filter_bad[KV_E_COUNT];

    uint32_t warned; /* KV_W_* bits: logged once */

    long clk_tck, page_size;
    struct kv_fds fds;         /* scanner scratch */
    int tids[KV_MAX_VCPU_FDS]; /* thread list scratch */
    char dents_proc[16384];    /* getdents64 buffer of /proc itself */
    char dents[16384];         /* ... of the folders below it */
};

/* What getdents64 fills in (glibc has no declaration of it). */
struct kv_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Warnings logged once per instance. */
enum {
    KV_W_PROC_FD = 1u << 0,
    KV_W_PIDFD = 1u << 1,
    KV_W_DEBUGFS = 1u << 2,
    KV_W_DEBUGFS_DENIED = 1u << 3,
    KV_W_TRACEFS = 1u << 4,
    KV_W_PERF = 1u << 5,
    KV_W_NO_COUNTERS = 1u << 6,
    KV_W_STATS_IOCTL = 1u << 7,
    KV_W_MULTI_VM = 1u << 8,
    KV_W_NO_KVM_EXIT = 1u << 9,
};

void kv_warn_once(struct kv_state *s, uint32_t bit, const char *fmt, ...) VIGIL_PRINTF(3, 4);
void kv_info_once(struct kv_state *s, uint32_t bit, const char *fmt, ...) VIGIL_PRINTF(3, 4);
void kv_warn_rl(struct kv_state *s, const char *fmt, ...) VIGIL_PRINTF(2, 3);

/* kvm_proc.c */
int kv_scan(struct kv_state *s, uint64_t now_ns, bool full);
bool kv_vm_alive(struct kv_state *s, struct kv_vm *vm);
int kv_cpu_open(struct kv_cpu *c, const char *path);
void kv_cpu_read(struct kv_state *s, struct kv_cpu *c, uint64_t now_ns);
void kv_cpu_close(struct kv_cpu *c);
uint64_t kv_rss_bytes(struct kv_state *s, struct kv_vm *vm);
int kv_read_small(int fd, char *buf, size_t cap);
int kv_list_tasks(struct kv_state *s, int pid, int *tids, size_t cap, size_t *n);
void kv_vm_free(struct kv_vm *vm);
struct kv_vcpu *kv_vcpu_get(struct kv_vm *vm, int index);

/* kvm_stats.c */
void kv_stats_setup(struct kv_state *s, struct kv_vm *vm, const int *stats_fds,
                    const int *stats_idx, size_t nstats);
enum kv_method kv_stats_method(struct kv_state *s, struct kv_vm *vm);
void kv_stats_read(struct kv_state *s, struct kv_vm *vm, struct kv_counts *vm_out);
void kv_statsfd_close(struct kv_statsfd *sf);
void kv_debugfs_close(struct kv_vm *vm);
void kv_debugfs_vcpu_tids(struct kv_state *s, struct kv_vm *vm);
void kv_mounts_close(struct kv_state *s);
int kv_private_mount(struct kv_state *s, const char *fstype);

/* kvm_trace.c */
bool kv_trace_available(struct kv_state *s);
void kv_trace_refresh(struct kv_state *s, struct kv_vm *vm);
void kv_trace_read(struct kv_state *s, struct kv_vm *vm, struct kv_counts *vm_out);
void kv_trace_counts(const struct kv_state *s, const uint64_t ev[KV_E_COUNT], bool kvm_exit_traced,
                     struct kv_counts *out);
size_t kv_trace_live(const struct kv_vm *vm); /* threads being counted */
void kv_trace_close(struct kv_vm *vm);

#endif

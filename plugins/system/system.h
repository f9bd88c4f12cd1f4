/* system plugin internals: the state its two halves share. system.c reads
 * CPU, memory and load from /proc and runs the plugin; sys_disk.c finds the
 * filesystems in /proc/self/mountinfo and statvfs()es them.
 */
#ifndef VIGIL_SYSTEM_H
#define VIGIL_SYSTEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vigil/plugin.h"

enum { PF_STAT, PF_MEMINFO, PF_LOADAVG, PF_MOUNTINFO, PF_N };

/* The fields of a cpu line of /proc/stat, in file order. guest and
 * guest_nice are already counted in user and nice, so they are not read. */
enum { C_USER, C_NICE, C_SYSTEM, C_IDLE, C_IOWAIT, C_IRQ, C_SOFTIRQ, C_STEAL, C_N };

struct cpu_sample {
    uint64_t f[C_N];
    bool valid;
};

/* Monotonic counters of /proc/stat, published as totals and per-second rates. */
enum { K_CTXT, K_INTR, K_FORKS, K_N };

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

/* A read buffer that only grows, so a warm collection does not allocate. */
struct rbuf {
    char *p;
    size_t cap;
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

    struct {
        uint64_t id;
        uint8_t warned;
    } keep[KEEP_WARNED_MAX];
    char label[32];
};

/* system.c: reads the /proc file `which` (PF_*) whole into b, NUL-terminated,
 * from a descriptor kept open across collections. Returns the length or a
 * negative code; the first failure is logged, and so is the recovery. */
ssize_t sys_read_file(struct sys *s, int which, struct rbuf *b);

/* sys_disk.c: one system.disk event per selected filesystem, observed at
 * `ts`; the mount table is read again only when it changed. */
int sys_publish_disks(struct sys *s, uint64_t ts);

#endif

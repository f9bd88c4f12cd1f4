/* The ledger of kind: capacity (capacity.c): per host, what it has
 * (system.stats) and what its containers and VMs reserve (cgroup.stats,
 * kvm.vm), summed per resource. rules_capacity.c judges and publishes from
 * it. Not thread-safe: the rules engine's thread owns it.
 */
#ifndef VIGIL_CAPACITY_H
#define VIGIL_CAPACITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rules_internal.h"

enum { CAP_CPU, CAP_MEM, CAP_NRES };

#define CAP_KEY_MAX 4096
#define CAP_HOST_BUCKETS 1024

/* CPUs are counted in millionths, memory in bytes: integer sums stay exact
 * however often contributors come and go. */
static inline double cap_unit(int r)
{
    return r == CAP_CPU ? 1e6 : 1.0;
}

/* One thing that reserves: a cgroup (kind 'c', by path) or a VM (kind 'v',
 * by name: its kvm.vm events and its cgroup's, when the cgroup carries the
 * vm label, meet here, so a VM counts once). */
struct cap_contrib {
    struct cap_contrib *next;                  /* hash chain */
    struct cap_contrib *host_prev, *host_next; /* the host's contributors */
    struct cap_host *host;
    uint64_t hash;
    char kind;
    char *key; /* host \0 kind name */
    size_t key_len;
    const char *name; /* into key */
    char *cg_path;    /* 'v': the VM's top-most cgroup seen; NULL: none fresh */
    int64_t cg[CAP_NRES];
    bool cg_limited[CAP_NRES];
    uint64_t cg_seen; /* 0: no cgroup figures */
    int64_t vm[CAP_NRES];
    bool vm_known[CAP_NRES];
    uint64_t vm_seen;          /* 0: no kvm.vm figures */
    bool nested;               /* below a counted cgroup: that one's limits hold it */
    uint64_t nest_gen;         /* the ledger\'s nest_gen when `nested` was worked out */
    int64_t counted[CAP_NRES]; /* what it adds to its host's reserved */
    bool unlimited[CAP_NRES];
    bool in_total;
};

struct cap_host {
    struct cap_host *next;
    uint64_t hash;
    char *name;
    size_t len;
    struct cap_contrib *first;
    int64_t capacity[CAP_NRES];
    uint64_t capacity_seen; /* 0: not known */
    int64_t reserved[CAP_NRES];
    uint32_t unlimited[CAP_NRES];
    uint32_t counted; /* contributors in the sums */
    /* The rule's: what the last capacity.host said, and when. */
    bool published;
    uint64_t published_at;
    int64_t pub_reserved[CAP_NRES], pub_capacity[CAP_NRES];
    uint32_t pub_unlimited[CAP_NRES], pub_counted;
};

struct cap_ledger {
    /* Set from the config before vigil__cap_init. */
    int64_t unlimited_as[CAP_NRES]; /* what a cgroup without a limit counts */
    char **globs;                   /* NULL: cgroups with a container or vm label */
    size_t nglobs;
    bool vms;
    uint64_t stale_ns;
    size_t max; /* contributors, and hosts */

    struct cap_contrib **buckets;
    size_t nbuckets, n;
    struct cap_host *hbuckets[CAP_HOST_BUCKETS]; /* hosts are few: chains stay short */
    size_t nhosts;
    /* +1 whenever a cgroup joins or leaves the sums: only then can a cgroup
     * below it have become nested or free, so only then is its path walked. */
    uint64_t nest_gen;
    char key[CAP_KEY_MAX];
};

/* 0 or -ENOMEM. fini frees everything, the globs included. */
int vigil__cap_init(struct cap_ledger *c);
void vigil__cap_fini(struct cap_ledger *c);

static inline bool vigil__cap_fresh(uint64_t seen, uint64_t now, uint64_t stale)
{
    return seen != 0 && now - seen < stale;
}

/* The host named so, made when new; NULL past `max` hosts or out of
 * memory. */
struct cap_host *vigil__cap_host(struct cap_ledger *c, const char *name, size_t len);
/* One event of the host into its sums. False when it could not be tracked
 * (past `max`, out of memory, a key over CAP_KEY_MAX): the caller counts
 * it. An event that does not count (a cgroup not selected) is true. */
bool vigil__cap_cgroup(struct cap_ledger *c, struct cap_host *h, const struct vigil_event_view *ev,
                       uint64_t now);
bool vigil__cap_vm(struct cap_ledger *c, struct cap_host *h, const struct vigil_event_view *ev,
                   uint64_t now);
void vigil__cap_system(struct cap_host *h, const struct vigil_event_view *ev, uint64_t now);
/* Forgets what was not reported for `stale`: a side of a contributor, a
 * contributor with neither, a host with nothing left. */
void vigil__cap_sweep(struct cap_ledger *c, uint64_t now);

#endif

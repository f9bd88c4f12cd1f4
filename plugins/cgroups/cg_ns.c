/* cgroups: the namespaces of a cgroup's processes, the input of the
 * isolation rule. Each process's /proc/<pid>/ns links are read when it first
 * appears and again every ns_refresh; processes of one cgroup that sit in
 * different namespaces make separate sets, each reported, never merged.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgroups.h"

const char *const cg_ns_kinds[CG_NS_KINDS] = {"net", "pid", "mnt", "ipc", "uts", "user", "cgroup"};

/* Reads the inode numbers of pid's namespaces ("net:[4026531992]"); a kind
 * the kernel lacks stays 0. 0, -ENOENT (the process is gone) or -EACCES. */
static int read_ns(pid_t pid, uint64_t ino[CG_NS_KINDS])
{
    char p[48];
    snprintf(p, sizeof p, "/proc/%d/ns", (int)pid);
    int d = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) {
        return -errno;
    }
    int rc = -ENOENT;
    for (int k = 0; k < CG_NS_KINDS; k++) {
        char link[64];
        ino[k] = 0;
        ssize_t n = readlinkat(d, cg_ns_kinds[k], link, sizeof link - 1);
        if (n < 0) {
            if (errno == EACCES || errno == EPERM) {
                rc = -EACCES;
            }
            continue;
        }
        link[n] = '\0';
        const char *b = strchr(link, '[');
        if (b) {
            ino[k] = strtoull(b + 1, NULL, 10);
            rc = 0;
        }
    }
    close(d);
    return rc;
}

static int reserve(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) {
        return 0;
    }
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        c *= 2;
    }
    void *a = realloc(*arr, c * size);
    if (!a) {
        return -ENOMEM;
    }
    *arr = a;
    *cap = c;
    return 0;
}

void cg_ns_group(struct cgs *s, const struct cg_node *n)
{
    size_t overflow = 0;
    s->nsets = 0;
    for (size_t i = 0; i < n->nprocs; i++) {
        const struct cg_proc *p = &n->procs[i];
        struct cg_set *set = NULL;
        for (size_t j = 0; j < s->nsets && !set; j++) {
            if (memcmp(s->sets[j].ino, p->ino, sizeof p->ino) == 0) {
                set = &s->sets[j];
            }
        }
        if (!set) {
            if (s->nsets == CG_MAX_SETS ||
                reserve((void **)&s->sets, &s->cap_sets, s->nsets + 1, sizeof *s->sets) != 0) {
                overflow++;
                continue;
            }
            set = &s->sets[s->nsets++];
            memcpy(set->ino, p->ino, sizeof set->ino);
            set->count = 0;
            set->npids = 0;
        }
        set->count++;
        if (set->npids < CG_SAMPLE_PIDS) {
            set->pids[set->npids++] = p->pid;
        }
    }
    if (overflow) {
        cg_warn(s,
                "%s: processes in more than %d distinct namespace sets; %zu processes in "
                "further sets are not reported",
                n->path, CG_MAX_SETS, overflow);
    }
}

void cg_ns_collect(struct cgs *s, struct cg_node *n, uint64_t now_ns)
{
    if (reserve((void **)&s->scratch, &s->cap_scratch, s->npids, sizeof *s->scratch) != 0) {
        n->nprocs = 0; /* nothing known this time: no cgroup.ns event */
        return;
    }
    size_t out = 0, j = 0;
    for (size_t i = 0; i < s->npids; i++) {
        pid_t pid = s->pids[i];
        while (j < n->nprocs && n->procs[j].pid < pid) {
            j++; /* an exited process: dropped from the cache */
        }
        struct cg_proc *dst = &s->scratch[out];
        if (j < n->nprocs && n->procs[j].pid == pid && s->ns_refresh_ns > 0 &&
            now_ns - n->procs[j].checked_ns < s->ns_refresh_ns) {
            *dst = n->procs[j];
            out++;
            continue;
        }
        int rc = read_ns(pid, dst->ino);
        if (rc == -EACCES) {
            cg_warn(
                s,
                "cannot read the namespaces of pid %d in %s: permission denied (vigild "
                "needs root or CAP_SYS_PTRACE); processes it cannot read are left out of cgroup.ns",
                (int)pid, n->path);
            continue;
        }
        if (rc != 0) {
            continue; /* exited since cgroup.procs was read */
        }
        dst->pid = pid;
        dst->checked_ns = now_ns;
        out++;
    }
    uint64_t oldest = now_ns;
    for (size_t i = 0; i < out; i++) {
        oldest = s->scratch[i].checked_ns < oldest ? s->scratch[i].checked_ns : oldest;
    }
    n->ns_oldest_ns = oldest;
    /* The new cache becomes the node's; its old array is the next scratch. */
    struct cg_proc *old = n->procs;
    size_t old_cap = n->cap_procs;
    n->procs = s->scratch;
    n->cap_procs = s->cap_scratch;
    n->nprocs = out;
    s->scratch = old;
    s->cap_scratch = old_cap;
}

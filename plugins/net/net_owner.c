/* net: whose traffic it is. A namespace belongs to the cgroup identity
 * (container, pod, vm, runtime) of the processes inside it; a tap or tun
 * device to the VMM that holds it open (/proc/<pid>/fdinfo/<fd> says
 * "iff:\tNAME"), named as the kvm source names it. Reading every process's
 * fds is costly, so it is done only when such a device appears without a
 * known holder and every `rescan`.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "vmm_name.h"

/* Sets o to the cgroup identity of process pid; its rank (2: a container
 * or pod, 1: a vm, 0: neither), or -1 (o unset) when the process is gone. */
static int owner_of(pid_t pid, struct net_owner *o)
{
    o->set = vigil_proc_cgroup(pid, o->cgroup, sizeof o->cgroup) == 0;
    if (!o->set) {
        return -1;
    }
    vigil_cgroup_labels_derive(o->cgroup, &o->l, o->buf, sizeof o->buf);
    return o->l.container || o->l.pod ? 2 : o->l.vm ? 1 : 0;
}

/* *dst = *src, its labels pointing into dst's own buffer. */
static void owner_copy(struct net_owner *dst, const struct net_owner *src)
{
    memcpy(dst->cgroup, src->cgroup, sizeof dst->cgroup);
    vigil_cgroup_labels_derive(dst->cgroup, &dst->l, dst->buf, sizeof dst->buf);
    dst->set = src->set;
}

void net_owner_namespaces(struct net_state *s, bool rescan)
{
    bool any = false;
    for (size_t i = 0; i < s->nns; i++) {
        struct net_ns *ns = s->ns[i];
        ns->owner_due = !ns->host && (rescan || ns->procs_sig != ns->owner_sig);
        ns->owner_rank = -1;
        any |= ns->owner_due;
    }
    if (!any) {
        return;
    }
    /* s->procs is in /proc's order, increasing pids: of the processes of
     * the best rank, the lowest pid decides, the same one every time. */
    struct net_ns *ns = NULL;
    for (size_t k = 0; k < s->nprocs; k++) {
        if (!ns || ns->ino != s->procs[k].ino) {
            ns = net_ns_find(s, s->procs[k].ino);
        }
        if (!ns || !ns->owner_due || ns->owner_rank == 2) {
            continue;
        }
        struct net_owner o;
        int rank = owner_of(s->procs[k].pid, &o);
        if (rank > ns->owner_rank) {
            ns->owner_rank = rank;
            owner_copy(&ns->owner, &o);
        }
    }
    for (size_t i = 0; i < s->nns; i++) {
        struct net_ns *n = s->ns[i];
        if (n->owner_due) {
            n->owner_sig = n->procs_sig;
            if (n->owner_rank < 0) {
                n->owner.set = false; /* no process inside (only a bind mount) */
            }
        }
    }
}

void net_owner_labels(struct net_state *s, struct vigil_event_builder *ev,
                      const struct net_owner *o, bool skip_vm)
{
    if (!o || !o->set) {
        return;
    }
    struct vigil_cgroup_labels l = o->l;
    if (skip_vm) {
        l.vm = NULL;
    }
    vigil_cgroup_labels_add(s->api, ev, o->cgroup, &l);
}

/* ---- taps held by VMMs ------------------------------------------------------ */

/* The fds of one process that matter here. */
struct proc_fds {
    bool vmm;
    int tun[16];
    size_t ntun;
};

static void visit_fd(struct net_state *s, int dir, const char *name, void *arg)
{
    struct proc_fds *f = arg;
    (void)s;
    char link[32];
    ssize_t l = readlinkat(dir, name, link, sizeof link - 1);
    if (l <= 0) {
        return;
    }
    link[l] = '\0';
    if (strcmp(link, "anon_inode:kvm-vm") == 0) {
        f->vmm = true;
    } else if (strcmp(link, "/dev/net/tun") == 0 && f->ntun < 16) {
        f->tun[f->ntun++] = atoi(name);
    }
}

/* The namespace inode of pid as discovery saw it; 0 when unknown. */
static uint64_t ns_of(const struct net_state *s, pid_t pid)
{
    size_t lo = 0, hi = s->nprocs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->procs[mid].pid == pid) {
            return s->procs[mid].ino;
        }
        if (s->procs[mid].pid < pid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return 0;
}

/* The tun/tap interface called name: in the VMM's own namespace if there
 * is one there, else the first of that name anywhere. */
static struct net_if *tun_named(struct net_state *s, const char *name, uint64_t prefer)
{
    struct net_if *first = NULL;
    for (size_t k = 0; k < s->nns; k++) {
        struct net_ns *ns = s->ns[k];
        for (size_t i = 0; i < ns->nifs; i++) {
            struct net_if *f = &ns->ifs[i];
            if (f->tun && !f->vmm && strcmp(f->name, name) == 0) {
                if (ns->ino == prefer) {
                    return f;
                }
                first = first ? first : f;
            }
        }
    }
    return first;
}

static void claim(struct net_state *s, pid_t pid, const struct proc_fds *f)
{
    for (size_t t = 0; t < f->ntun; t++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", (int)pid, f->tun[t]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        char info[1024];
        ssize_t n = read(fd, info, sizeof info - 1);
        close(fd);
        if (n <= 0) {
            continue;
        }
        info[n] = '\0';
        const char *iff = strstr(info, "iff:\t");
        if (!iff) {
            continue; /* a tun fd not attached to a device yet */
        }
        iff += 5;
        char name[IFNAMSIZ];
        size_t nl = strcspn(iff, "\n");
        if (nl == 0 || nl >= sizeof name) {
            continue;
        }
        memcpy(name, iff, nl);
        name[nl] = '\0';
        struct net_if *i = tun_named(s, name, ns_of(s, pid));
        if (!i) {
            continue;
        }
        struct net_vmm *v = calloc(1, sizeof *v);
        if (!v) {
            continue;
        }
        v->pid = pid;
        snprintf(v->pid_str, sizeof v->pid_str, "%d", (int)pid);
        vigil_vmm_name(pid, v->vm, sizeof v->vm);
        owner_of(pid, &v->owner);
        i->vmm = v;
    }
}

static void visit_proc(struct net_state *s, int proc, const char *name, void *arg)
{
    (void)arg;
    if (name[0] < '1' || name[0] > '9') {
        return;
    }
    char path[64];
    snprintf(path, sizeof path, "%s/fd", name);
    int dir = openat(proc, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        return; /* exited, or not ours to read */
    }
    struct proc_fds f = {0};
    net_each_entry(dir, s->dents_fd, sizeof s->dents_fd, visit_fd, s, &f);
    close(dir);
    if (f.vmm && f.ntun > 0) {
        claim(s, (pid_t)atoi(name), &f);
    }
}

size_t net_owner_taps(struct net_state *s)
{
    size_t want = 0;
    for (size_t k = 0; k < s->nns; k++) {
        struct net_ns *ns = s->ns[k];
        for (size_t i = 0; i < ns->nifs; i++) {
            struct net_if *f = &ns->ifs[i];
            if (f->tun) {
                free(f->vmm); /* found again below if it still holds it */
                f->vmm = NULL;
                want++;
            }
        }
    }
    if (want == 0) {
        return 0;
    }
    s->api->counter_add(s->h, s->c_owner_scans, 1);
    int proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (proc < 0) {
        return want;
    }
    net_each_entry(proc, s->dents, sizeof s->dents, visit_proc, s, NULL);
    close(proc);
    size_t unowned = 0;
    for (size_t k = 0; k < s->nns; k++) {
        for (size_t i = 0; i < s->ns[k]->nifs; i++) {
            unowned += s->ns[k]->ifs[i].tun && !s->ns[k]->ifs[i].vmm;
        }
    }
    return unowned;
}

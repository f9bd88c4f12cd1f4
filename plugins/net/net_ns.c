/* net: network namespaces. Found from /proc/<pid>/ns/net (one readlink per
 * process) and the /run/netns bind mounts; each new one is entered once, on
 * the instance's thread, to open a NETLINK_ROUTE socket and its SNMP files
 * there (a socket and an open /proc/net file keep the namespace they were
 * made in), and let go of when no process and no bind mount holds it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "net.h"

struct net_ns *net_ns_find(struct net_state *s, uint64_t ino)
{
    /* Runs of processes share a namespace (a container's, the host's):
     * the last one found is tried first. */
    if (s->find_hint < s->nns && s->ns[s->find_hint]->ino == ino) {
        return s->ns[s->find_hint];
    }
    for (size_t i = 0; i < s->nns; i++) {
        if (s->ns[i]->ino == ino) {
            s->find_hint = i;
            return s->ns[i];
        }
    }
    return NULL;
}

void net_ns_free(struct net_ns *ns)
{
    if (!ns) {
        return;
    }
    int fds[] = {ns->fd, ns->nl, ns->snmp_fd, ns->netstat_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    for (size_t i = 0; i < ns->nifs; i++) {
        free(ns->ifs[i].vmm);
    }
    free(ns->ifs);
    free(ns->nsids);
    free(ns);
}

/* Opens the namespace's netlink socket and SNMP files from inside it (the
 * calling thread is there). */
static void open_inside(struct net_state *s, struct net_ns *ns)
{
    ns->nl = net_nl_open();
    if (ns->nl < 0) {
        net_warn(s, "netns %s: cannot open a netlink socket: %s", ns->label, strerror(-ns->nl));
    }
    if (s->snmp) {
        ns->snmp_fd = open("/proc/thread-self/net/snmp", O_RDONLY | O_CLOEXEC);
        ns->netstat_fd = open("/proc/thread-self/net/netstat", O_RDONLY | O_CLOEXEC);
    }
}

static struct net_ns *ns_new(struct net_state *s, int fd, uint64_t ino)
{
    if (s->nns == s->cap_ns) {
        size_t cap = s->cap_ns ? s->cap_ns * 2 : 8;
        struct net_ns **a = realloc(s->ns, cap * sizeof *a);
        if (!a) {
            return NULL;
        }
        s->ns = a;
        s->cap_ns = cap;
    }
    struct net_ns *ns = calloc(1, sizeof *ns);
    if (!ns) {
        return NULL;
    }
    ns->fd = fd;
    ns->nl = ns->snmp_fd = ns->netstat_fd = -1;
    ns->ino = ino;
    ns->host = ino == s->home_ino;
    snprintf(ns->ino_str, sizeof ns->ino_str, "%" PRIu64, ino);
    snprintf(ns->label, sizeof ns->label, ns->host ? "host" : "ns-%" PRIu64, ino);
    s->ns[s->nns++] = ns;
    /* A netns id that stood for no namespace of ours may stand for this one. */
    for (size_t k = 0; k < s->nns; k++) {
        struct net_ns *o = s->ns[k];
        size_t out = 0;
        for (size_t i = 0; i < o->nnsids; i++) {
            if (o->nsids[i].ino != 0) {
                o->nsids[out++] = o->nsids[i];
            }
        }
        o->nnsids = out;
    }
    return ns;
}

/* The instance thread's namespace, the host's: opened at the first
 * collection (setns moves only the calling thread, so it must be this one). */
static int open_home(struct net_state *s)
{
    if (s->home_tried) {
        return s->home_fd >= 0 ? 0 : -1;
    }
    s->home_tried = true;
    s->home_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (s->home_fd < 0 || fstat(s->home_fd, &st) != 0) {
        s->api->log(s->h, VIGIL_LOG_ERROR,
                    "cannot open /proc/thread-self/ns/net: %s; no interfaces can be read",
                    strerror(errno));
        return -1;
    }
    s->home_ino = st.st_ino;
    s->nsfs_dev = st.st_dev;
    int fd = dup(s->home_fd);
    struct net_ns *ns = fd >= 0 ? ns_new(s, fd, s->home_ino) : NULL;
    if (!ns) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    open_inside(s, ns);
    return 0;
}

/* A namespace that cannot be entered (rights) is not tried again before the
 * next rescan: else each of its processes would be, at every collection. */
static void refuse(struct net_state *s, uint64_t ino)
{
    if (s->nrefused < sizeof s->refused / sizeof s->refused[0]) {
        s->refused[s->nrefused++] = ino;
    }
}

/* Opens namespace `path` (expected inode ino), enters it to open its
 * sockets and files, and comes back. NULL when it is gone or cannot be
 * entered (warned about). */
static struct net_ns *ns_open(struct net_state *s, const char *path, uint64_t ino)
{
    if (s->broken) {
        return NULL;
    }
    for (size_t i = 0; i < s->nrefused; i++) {
        if (s->refused[i] == ino) {
            return NULL; /* tried again at the next rescan */
        }
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_ino != ino) {
        if (fd < 0 && (errno == EACCES || errno == EPERM)) {
            net_warn(s, "cannot open %s: %s (vigild needs CAP_SYS_PTRACE)", path, strerror(errno));
            refuse(s, ino);
        }
        if (fd >= 0) {
            close(fd); /* the process exited and its pid went to another */
        }
        return NULL;
    }
    if (setns(fd, CLONE_NEWNET) != 0) {
        net_warn(s, "cannot enter the network namespace %s: %s%s", path, strerror(errno),
                 errno == EPERM ? " (vigild needs CAP_SYS_ADMIN)" : "");
        refuse(s, ino);
        close(fd);
        return NULL;
    }
    struct net_ns *ns = ns_new(s, fd, ino);
    if (ns) {
        open_inside(s, ns);
    }
    if (setns(s->home_fd, CLONE_NEWNET) != 0) {
        /* Cannot happen with the rights that let us leave; if it did, every
         * later socket would be made in the wrong namespace. */
        s->api->log(s->h, VIGIL_LOG_ERROR,
                    "cannot return to the daemon's network namespace: %s; no more namespaces "
                    "are opened (restart vigild)",
                    strerror(errno));
        s->broken = true;
    }
    if (!ns) {
        close(fd);
    }
    return ns;
}

static bool parse_pid(const char *d, pid_t *out)
{
    long v = 0;
    if (!*d) {
        return false;
    }
    for (; *d; d++) {
        if (*d < '0' || *d > '9' || v > 0x7fffffffL / 10) {
            return false;
        }
        v = v * 10 + (*d - '0');
    }
    *out = (pid_t)v;
    return v > 0;
}

static int add_proc(struct net_state *s, pid_t pid, uint64_t ino, uint64_t first_ns)
{
    if (s->nprocs == s->cap_procs) {
        size_t cap = s->cap_procs ? s->cap_procs * 2 : 512;
        struct net_proc *a = realloc(s->procs, cap * sizeof *a);
        struct net_proc *b = a ? realloc(s->procs_old, cap * sizeof *b) : NULL;
        if (a) {
            s->procs = a;
        }
        if (!b) {
            return -ENOMEM;
        }
        s->procs_old = b;
        s->cap_procs = cap;
    }
    s->procs[s->nprocs++] = (struct net_proc){pid, ino, first_ns};
    return 0;
}

int net_each_entry(int dir, char *buf, size_t cap,
                   void (*fn)(struct net_state *, int, const char *, void *), struct net_state *s,
                   void *arg)
{
    for (;;) {
        long n = syscall(SYS_getdents64, dir, buf, cap);
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            return 0;
        }
        for (long off = 0; off < n;) {
            const struct net_dirent64 *d = (const struct net_dirent64 *)(buf + off);
            off += d->d_reclen;
            if (d->d_name[0] != '.') {
                fn(s, dir, d->d_name, arg);
            }
        }
    }
}

/* How long a process counts as young: they change namespace within
 * milliseconds of starting; ten seconds covers a collection or two after
 * it was first seen. A process that changes later is seen at the rescan. */
#define NET_YOUNG_NS 10000000000ull

/* Where discovery is in the last listing (both in /proc's order). */
struct walk {
    size_t old;
    uint64_t now_ns;
    bool full, first;
};

/* The namespace of a process: read again while it is young (it may still
 * unshare or setns, as `unshare -n`, `ip netns exec` and container runtimes
 * do right after they start) or at a full scan; else as last time. 0 when
 * it exited, or when it is not ours to read (*keep then: it is listed all
 * the same, so that it is not tried again before the rescan). */
static uint64_t proc_ns(struct net_state *s, int proc, const char *name, pid_t pid, struct walk *w,
                        uint64_t *first_ns, bool *keep)
{
    while (w->old < s->nprocs_old && s->procs_old[w->old].pid < pid) {
        w->old++;
    }
    const struct net_proc *o =
        w->old < s->nprocs_old && s->procs_old[w->old].pid == pid ? &s->procs_old[w->old] : NULL;
    /* first_ns 0: there when the plugin started, as good as old. */
    *first_ns = o ? o->first_ns : w->first ? 0 : w->now_ns;
    *keep = true;
    if (o && !w->full && (o->first_ns == 0 || w->now_ns - o->first_ns >= NET_YOUNG_NS)) {
        return o->ino;
    }
    char path[48], link[64];
    snprintf(path, sizeof path, "%s/ns/net", name);
    ssize_t n = readlinkat(proc, path, link, sizeof link - 1);
    if (n <= 0) {
        *keep = errno == EACCES || errno == EPERM;
        return 0;
    }
    link[n] = '\0';
    const char *b = strchr(link, '[');
    return b ? strtoull(b + 1, NULL, 10) : 0;
}

static void visit_pid(struct net_state *s, int proc, const char *name, void *arg)
{
    pid_t pid;
    uint64_t first_ns;
    bool keep;
    if (!parse_pid(name, &pid)) {
        return;
    }
    uint64_t ino = proc_ns(s, proc, name, pid, arg, &first_ns, &keep);
    if (ino == 0) {
        if (keep) {
            add_proc(s, pid, 0, first_ns);
        }
        return;
    }
    char path[48];
    struct net_ns *ns = net_ns_find(s, ino);
    if (!ns) {
        snprintf(path, sizeof path, "/proc/%s/ns/net", name);
        ns = ns_open(s, path, ino);
    }
    /* A process of a namespace that could not be opened is listed too, so
     * that it is not looked at again before the rescan. */
    if (add_proc(s, pid, ino, first_ns) == 0 && ns) {
        ns->seen = true;
        ns->nprocs++;
        ns->procs_sig = ns->procs_sig * 1000003u + (uint64_t)pid;
    }
}

static void visit_named(struct net_state *s, int dir, const char *name, void *arg)
{
    (void)arg;
    struct stat st;
    if (fstatat(dir, name, &st, 0) != 0 || st.st_dev != s->nsfs_dev) {
        return; /* not (or no longer) a namespace bind mount */
    }
    struct net_ns *ns = net_ns_find(s, st.st_ino);
    if (!ns) {
        char path[300];
        snprintf(path, sizeof path, "/run/netns/%s", name);
        ns = ns_open(s, path, st.st_ino);
    }
    if (ns && !ns->host) {
        ns->seen = true;
        ns->named = true;
        snprintf(ns->label, sizeof ns->label, "%s", name);
    }
}

int net_ns_discover(struct net_state *s, bool full)
{
    if (open_home(s) != 0) {
        return -ENOENT;
    }
    for (size_t i = 0; i < s->nns; i++) {
        struct net_ns *ns = s->ns[i];
        ns->seen = ns->host;
        ns->named = false;
        ns->nprocs = 0;
        ns->procs_sig = 0;
    }
    if (full) {
        s->nrefused = 0;
    }
    /* This listing is made beside the last one, then takes its place. */
    struct net_proc *t = s->procs_old;
    s->procs_old = s->procs;
    s->procs = t;
    s->nprocs_old = s->nprocs;
    s->nprocs = 0;
    int rc = 0;
    if (s->namespaces) {
        struct walk w = {.now_ns = s->api->mono_ns(), .full = full, .first = !s->listed};
        int proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        rc = proc < 0 ? -errno : net_each_entry(proc, s->dents, sizeof s->dents, visit_pid, s, &w);
        s->listed = true;
        if (proc >= 0) {
            close(proc);
        }
        int run = open("/run/netns", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (run >= 0) {
            net_each_entry(run, s->dents, sizeof s->dents, visit_named, s, NULL);
            close(run);
        }
    }
    if (rc != 0) {
        /* Without a full list nothing may be let go of: keep what we had. */
        for (size_t i = 0; i < s->nns; i++) {
            s->ns[i]->seen = true;
        }
        return rc;
    }
    for (size_t i = 0; i < s->nns; i++) {
        if (!s->ns[i]->seen) {
            net_nsid_forget(s, s->ns[i]->ino);
        }
    }
    size_t out = 0;
    for (size_t i = 0; i < s->nns; i++) {
        struct net_ns *ns = s->ns[i];
        if (!ns->seen) {
            net_ns_free(ns); /* no process, no bind mount: gone, or soon */
            continue;
        }
        if (!ns->named && !ns->host) {
            snprintf(ns->label, sizeof ns->label, "ns-%" PRIu64, ns->ino);
        }
        s->ns[out++] = ns;
    }
    s->nns = out;
    return 0;
}

/* ---- SNMP ----------------------------------------------------------------- */

/* Reads a /proc/net file from 0 into s->text. A short read is the end: a
 * seq_file hands over all it made when the buffer holds it, and a read at
 * a later offset would make the whole file again to skip to it. */
static ssize_t read_fd(struct net_state *s, int fd)
{
    size_t len = 0;
    for (;;) {
        size_t want = sizeof s->text - 1 - len;
        ssize_t n = pread(fd, s->text + len, want, (off_t)len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        len += (size_t)n;
        if ((size_t)n < want || len == sizeof s->text - 1) {
            break;
        }
    }
    s->text[len] = '\0';
    return (ssize_t)len;
}

/* In /proc/net/snmp and netstat a group is two lines, "Tcp: Name1 Name2
 * ..." then "Tcp: v1 v2 ...". Copies the values of names[] into out[]
 * (their slots in ns->snmp); false when the group is missing. */
static bool pick(const char *text, const char *group, const char *const *names, const int *slots,
                 size_t n, uint64_t *out)
{
    size_t gl = strlen(group);
    const char *hdr = text;
    while (hdr && strncmp(hdr, group, gl) != 0) {
        hdr = strchr(hdr, '\n');
        hdr = hdr ? hdr + 1 : NULL;
    }
    const char *val = hdr ? strchr(hdr, '\n') : NULL;
    if (!val || strncmp(val + 1, group, gl) != 0) {
        return false;
    }
    hdr += gl;
    val += 1 + gl;
    size_t found = 0;
    while (*hdr && *hdr != '\n' && *val && *val != '\n') {
        while (*hdr == ' ') {
            hdr++;
        }
        while (*val == ' ') {
            val++;
        }
        size_t hl = strcspn(hdr, " \n");
        for (size_t i = 0; i < n; i++) {
            if (strlen(names[i]) == hl && memcmp(names[i], hdr, hl) == 0) {
                out[slots[i]] = strtoull(val, NULL, 10);
                found++;
            }
        }
        hdr += hl;
        val += strcspn(val, " \n");
    }
    return found > 0;
}

int net_ns_snmp(struct net_state *s, struct net_ns *ns)
{
    static const char *const tcp[] = {"OutSegs", "RetransSegs", "InErrs"};
    static const int tcp_slot[] = {NS_TCP_OUT_SEGS, NS_TCP_RETRANS_SEGS, NS_TCP_IN_ERRS};
    static const char *const udp[] = {"RcvbufErrors", "InErrors"};
    static const int udp_slot[] = {NS_UDP_RCVBUF_ERRORS, NS_UDP_IN_ERRORS};
    static const char *const ext[] = {"ListenDrops", "ListenOverflows"};
    static const int ext_slot[] = {NS_TCP_LISTEN_DROPS, NS_TCP_LISTEN_OVERFLOWS};
    if (ns->snmp_fd < 0 || ns->netstat_fd < 0) {
        return -ENOENT;
    }
    uint64_t v[NS_N] = {0};
    ssize_t n = read_fd(s, ns->snmp_fd);
    if (n < 0) {
        return (int)n;
    }
    if (!pick(s->text, "Tcp:", tcp, tcp_slot, 3, v) ||
        !pick(s->text, "Udp:", udp, udp_slot, 2, v)) {
        return -EPROTO;
    }
    n = read_fd(s, ns->netstat_fd);
    if (n < 0) {
        return (int)n;
    }
    if (!pick(s->text, "TcpExt:", ext, ext_slot, 2, v)) {
        return -EPROTO;
    }
    memcpy(ns->snmp_prev, ns->snmp, sizeof v);
    ns->snmp_prev_ns = ns->snmp_ns;
    ns->have_snmp_prev = ns->have_snmp;
    memcpy(ns->snmp, v, sizeof v);
    ns->snmp_ns = s->api->mono_ns();
    ns->have_snmp = true;
    return 0;
}

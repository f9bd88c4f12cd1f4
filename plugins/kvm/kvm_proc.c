/* kvm plugin, /proc side: finds VMs the way an operator would (a process
 * holding an `anon_inode:kvm-vm` fd, whatever the VMM), names them from the
 * VMM's command line, and reads the VMM's CPU time and resident memory.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvm.h"
#include "small_file.h"
#include "vmm_name.h"

#define CMDLINE_MAX (64 * 1024)

static bool parse_uint(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)*s)) {
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) {
        return false;
    }
    *out = v;
    return true;
}

int kv_read_small(int fd, char *buf, size_t cap)
{
    ssize_t n = pread(fd, buf, cap - 1, 0);
    if (n < 0) {
        return -errno;
    }
    buf[n] = '\0';
    return (int)n;
}

/* Field k (0-based, counting from field 3 "state") of a /proc stat line. */
static bool stat_field(const char *line, int k, uint64_t *out)
{
    const char *p = strrchr(line, ')');
    if (!p) {
        return false;
    }
    p++;
    for (int i = 0; i <= k; i++) {
        while (*p == ' ') {
            p++;
        }
        if (!*p) {
            return false;
        }
        if (i == k) {
            *out = strtoull(p, NULL, 10);
            return true;
        }
        while (*p && *p != ' ') {
            p++;
        }
    }
    return false;
}

/* ---- CPU and memory ------------------------------------------------------ */

int kv_cpu_open(struct kv_cpu *c, const char *path)
{
    memset(c, 0, sizeof *c);
    c->fd = open(path, O_RDONLY | O_CLOEXEC);
    return c->fd < 0 ? -errno : 0;
}

void kv_cpu_close(struct kv_cpu *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
}

/* utime and stime of a task already contain its guest_time (the kernel's
 * account_guest_time adds guest ticks to both utime and gtime), so the time
 * outside the guest is utime + stime - guest_time. Percent of one CPU. */
void kv_cpu_read(struct kv_state *s, struct kv_cpu *c, uint64_t now_ns)
{
    char line[1024];
    uint64_t u, st, g;
    c->have_pct = false;
    if (c->fd < 0 || kv_read_small(c->fd, line, sizeof line) <= 0 || !stat_field(line, 11, &u) ||
        !stat_field(line, 12, &st) || !stat_field(line, 40, &g)) {
        return;
    }
    if (c->primed && now_ns > c->prev_ns) {
        double dt_s = (double)(now_ns - c->prev_ns) / 1e9;
        double tick_s = 1.0 / (double)s->clk_tck;
        double dg = g >= c->gtime ? (double)(g - c->gtime) : 0;
        double dall = u + st >= c->utime + c->stime ? (double)(u + st - c->utime - c->stime) : 0;
        double dh = dall > dg ? dall - dg : 0;
        c->guest_pct = dg * tick_s / dt_s * 100.0;
        c->host_pct = dh * tick_s / dt_s * 100.0;
        c->have_pct = true;
    }
    c->utime = u;
    c->stime = st;
    c->gtime = g;
    c->prev_ns = now_ns;
    c->primed = true;
}

uint64_t kv_rss_bytes(struct kv_state *s, struct kv_vm *vm)
{
    char line[256];
    unsigned long long size, resident;
    if (vm->statm_fd < 0 || kv_read_small(vm->statm_fd, line, sizeof line) <= 0 ||
        sscanf(line, "%llu %llu", &size, &resident) != 2) {
        return 0;
    }
    return (uint64_t)resident * (uint64_t)s->page_size;
}

/* ---- names and guest memory from the command line ------------------------ */

/* A size with an optional binary suffix (K M G T); unit is the default. */
static bool parse_size(const char *v, uint64_t unit, uint64_t *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || x <= 0) {
        return false;
    }
    switch (toupper((unsigned char)*end)) {
    case 'K':
        unit = 1ull << 10;
        end++;
        break;
    case 'M':
        unit = 1ull << 20;
        end++;
        break;
    case 'G':
        unit = 1ull << 30;
        end++;
        break;
    case 'T':
        unit = 1ull << 40;
        end++;
        break;
    case 'B':
        unit = 1;
        end++;
        break;
    default:
        break;
    }
    if (toupper((unsigned char)*end) == 'I' || toupper((unsigned char)*end) == 'B') {
        end++; /* "GiB", "GB" */
    }
    if (toupper((unsigned char)*end) == 'B') {
        end++;
    }
    if (*end && *end != ',') {
        return false;
    }
    *out = (uint64_t)(x * (double)unit);
    return true;
}

/* "size=4G,slots=2" or "4G" style values: the size part. */
static bool option_size(const char *v, uint64_t unit, uint64_t *out)
{
    const char *sz = strstr(v, "size=");
    if (sz && (sz == v || sz[-1] == ',')) {
        return parse_size(sz + 5, unit, out);
    }
    if (strchr(v, '=') && !isdigit((unsigned char)*v)) {
        return false;
    }
    return parse_size(v, unit, out);
}

/* Firecracker keeps the size in its JSON config: "mem_size_mib": N. */
static bool firecracker_mem(int pid, const char *path, uint64_t *out)
{
    char full[4096 + 64];
    snprintf(full, sizeof full, "/proc/%d/%s/%s", pid, path[0] == '/' ? "root" : "cwd", path);
    char *buf = malloc(CMDLINE_MAX);
    bool ok = false;
    if (buf && vigil_read_small_file(full, buf, CMDLINE_MAX) > 0) {
        const char *k = strstr(buf, "\"mem_size_mib\"");
        if (k) {
            k = strchr(k + 14, ':');
            uint64_t mib = k ? strtoull(k + 1, NULL, 10) : 0;
            ok = mib > 0;
            *out = mib << 20;
        }
    }
    free(buf);
    return ok;
}

/* Reads the VMM's name (the derivation the net source shares, vmm_name.h)
 * and guest memory size from its command line. */
static void parse_cmdline(struct kv_state *s, struct kv_vm *vm)
{
    char *buf = malloc(CMDLINE_MAX);
    char path[64];
    vigil_vmm_name(vm->pid, vm->name, sizeof vm->name);
    vm->mem_method = "unknown";
    snprintf(path, sizeof path, "/proc/%d/cmdline", vm->pid);
    int len = buf ? vigil_read_small_file(path, buf, CMDLINE_MAX) : -ENOMEM;
    for (int i = 0; len > 0 && i < len;) {
        const char *arg = buf + i;
        i += (int)strlen(arg) + 1;
        const char *val = i < len ? buf + i : NULL;
        if (!val) {
            break;
        }
        if ((strcmp(arg, "-m") == 0 || strcmp(arg, "--m") == 0 || strcmp(arg, "--mem") == 0) &&
            option_size(val, 1ull << 20, &vm->guest_mem_bytes)) {
            vm->mem_method = "cmdline";            /* QEMU, crosvm, kvmtool: MiB by default */
        } else if (strcmp(arg, "--memory") == 0 && /* cloud-hypervisor: bytes */
                   option_size(val, 1, &vm->guest_mem_bytes)) {
            vm->mem_method = "cmdline";
        } else if (strcmp(arg, "--config-file") == 0 &&
                   firecracker_mem(vm->pid, val, &vm->guest_mem_bytes)) {
            vm->mem_method = "config_file";
        }
    }
    free(buf);
    (void)s;
}

/* ---- VM objects ----------------------------------------------------------- */

struct kv_vcpu *kv_vcpu_get(struct kv_vm *vm, int index)
{
    for (size_t i = 0; i < vm->nvcpus; i++) {
        if (vm->vcpus[i].index == index) {
            return &vm->vcpus[i];
        }
    }
    if (vm->nvcpus == vm->vcpu_cap) {
        size_t cap = vm->vcpu_cap ? vm->vcpu_cap * 2 : 4;
        struct kv_vcpu *n = realloc(vm->vcpus, cap * sizeof *n);
        if (!n) {
            return NULL;
        }
        vm->vcpus = n;
        vm->vcpu_cap = cap;
    }
    /* Keep them sorted by index: events come out in vCPU order. */
    size_t at = vm->nvcpus;
    while (at > 0 && vm->vcpus[at - 1].index > index) {
        at--;
    }
    memmove(&vm->vcpus[at + 1], &vm->vcpus[at], (vm->nvcpus - at) * sizeof *vm->vcpus);
    vm->nvcpus++;
    struct kv_vcpu *v = &vm->vcpus[at];
    memset(v, 0, sizeof *v);
    v->index = index;
    v->stats.fd = -1;
    v->cpu.fd = -1;
    snprintf(v->index_str, sizeof v->index_str, "%d", index);
    return v;
}

void kv_vm_free(struct kv_vm *vm)
{
    if (!vm) {
        return;
    }
    kv_trace_close(vm);
    kv_debugfs_close(vm);
    for (size_t i = 0; i < vm->nvcpus; i++) {
        kv_statsfd_close(&vm->vcpus[i].stats);
        kv_cpu_close(&vm->vcpus[i].cpu);
    }
    free(vm->vcpus);
    kv_cpu_close(&vm->cpu);
    if (vm->statm_fd >= 0) {
        close(vm->statm_fd);
    }
    if (vm->pidfd >= 0) {
        close(vm->pidfd);
    }
    free(vm);
}

static struct kv_vm *vm_new(struct kv_state *s, int pid, int fd, uint64_t start)
{
    struct kv_vm *vm = calloc(1, sizeof *vm);
    if (!vm) {
        return NULL;
    }
    vm->pid = pid;
    vm->vm_fd = fd;
    vm->start_ticks = start;
    vm->statm_fd = -1;
    vm->cpu.fd = -1;
    for (int r = 0; r < KV_R_COUNT; r++) {
        vm->dbg_fd[r] = -1;
    }
    snprintf(vm->pid_str, sizeof vm->pid_str, "%d", pid);
    snprintf(vm->fd_str, sizeof vm->fd_str, "%d", fd);
    parse_cmdline(s, vm);
    /* The pidfd pins the process's identity (no pid reuse) and tells when it
     * exits; pidfd_getfd borrows the VMM's stats fds through it. */
    vm->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (vm->pidfd < 0 && errno != ESRCH) {
        kv_warn_once(s, KV_W_PIDFD,
                     "pidfd_open(%d): %s; cannot borrow the VMMs' stats fds (needs Linux 5.6 "
                     "and root)",
                     pid, strerror(errno));
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    kv_cpu_open(&vm->cpu, path);
    snprintf(path, sizeof path, "/proc/%d/statm", pid);
    vm->statm_fd = open(path, O_RDONLY | O_CLOEXEC);
    return vm;
}

static bool vm_wanted(struct kv_state *s, const struct kv_vm *vm)
{
    size_t n = s->vms ? s->api->conf_len(s->vms) : 0;
    if (n == 0) {
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        const char *pat;
        if (s->api->conf_string(s->api->conf_at(s->vms, i, NULL), &pat) == 0 &&
            s->api->glob_match(pat, vm->name, strlen(vm->name))) {
            return true;
        }
    }
    return false;
}

bool kv_vm_alive(struct kv_state *s, struct kv_vm *vm)
{
    if (vm->pidfd >= 0) {
        struct pollfd p = {.fd = vm->pidfd, .events = POLLIN};
        if (poll(&p, 1, 0) > 0) {
            return false; /* the process exited */
        }
    }
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", vm->pid, vm->vm_fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n < 0) {
        return false;
    }
    link[n] = '\0';
    if (strcmp(link, "anon_inode:kvm-vm") != 0) {
        return false;
    }
    if (vm->pidfd < 0) {
        /* No pidfd: make sure the pid was not reused. */
        char line[1024];
        uint64_t start;
        snprintf(path, sizeof path, "/proc/%d/stat", vm->pid);
        if (vigil_read_small_file(path, line, sizeof line) <= 0 || !stat_field(line, 19, &start) ||
            start != vm->start_ticks) {
            return false;
        }
    }
    (void)s;
    return true;
}

/* Calls fn for each numeric entry of an open /proc directory. buf holds the
 * entries meanwhile: fn may list another directory, with another buffer. */
static int each_number(struct kv_state *s, int dirfd, char *buf, size_t cap,
                       void (*fn)(struct kv_state *, int, int, void *), void *arg)
{
    for (;;) {
        long n = syscall(SYS_getdents64, dirfd, buf, cap);
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            return 0;
        }
        for (long off = 0; off < n;) {
            struct kv_dirent64 *d = (struct kv_dirent64 *)(buf + off);
            off += d->d_reclen;
            uint64_t v;
            if (parse_uint(d->d_name, &v) && v <= 0x7fffffff) {
                fn(s, dirfd, (int)v, arg);
            }
        }
    }
}

static void classify_fd(struct kv_state *s, int dirfd, int fd, void *arg)
{
    struct kv_fds *f = arg;
    char name[16], link[64];
    snprintf(name, sizeof name, "%d", fd);
    ssize_t n = readlinkat(dirfd, name, link, sizeof link - 1);
    if (n < 16) {
        return;
    }
    link[n] = '\0';
    if (strncmp(link, "anon_inode:kvm-", 15) != 0) {
        return;
    }
    const char *k = link + 15;
    (void)s;
    if (strcmp(k, "vm") == 0) {
        if (f->nvm < KV_MAX_VM_FDS) {
            f->vm[f->nvm++] = fd;
        }
    } else if (strncmp(k, "vcpu:", 5) == 0) {
        if (f->nvcpu < KV_MAX_VCPU_FDS) {
            f->vcpu_idx[f->nvcpu++] = atoi(k + 5);
        }
    } else if (strncmp(k, "vcpu-stats:", 11) == 0) {
        if (f->nstats < KV_MAX_VCPU_FDS) {
            f->stats_fd[f->nstats] = fd;
            f->stats_idx[f->nstats++] = atoi(k + 11);
        }
    }
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static struct kv_vm *find_vm(struct kv_state *s, int pid, int fd)
{
    for (size_t i = 0; i < s->nvm; i++) {
        if (s->vm[i]->pid == pid && s->vm[i]->vm_fd == fd && !s->vm[i]->gone) {
            return s->vm[i];
        }
    }
    return NULL;
}

static int add_vm(struct kv_state *s, struct kv_vm *vm)
{
    if (s->nvm == s->vm_cap) {
        size_t cap = s->vm_cap ? s->vm_cap * 2 : 8;
        struct kv_vm **n = realloc(s->vm, cap * sizeof *n);
        if (!n) {
            return -ENOMEM;
        }
        s->vm = n;
        s->vm_cap = cap;
    }
    s->vm[s->nvm++] = vm;
    return 0;
}

/* Looks through one process's fds; records the VMs it holds. */
static void scan_process(struct kv_state *s, int pid)
{
    struct kv_fds *fp = &s->fds;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        if (errno == EACCES || errno == EPERM) {
            kv_warn_once(s, KV_W_PROC_FD,
                         "cannot read %s (%s): VMs of other users stay invisible; run vigild "
                         "as root",
                         path, strerror(errno));
        }
        return;
    }
    fp->nvm = fp->nvcpu = fp->nstats = 0;
    each_number(s, dir, s->dents, sizeof s->dents, classify_fd, fp);
    close(dir);
    if (fp->nvm == 0) {
        return;
    }
    qsort(fp->vm, fp->nvm, sizeof fp->vm[0], cmp_int);
    char line[1024];
    uint64_t start = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (vigil_read_small_file(path, line, sizeof line) <= 0 || !stat_field(line, 19, &start)) {
        return; /* exited meanwhile */
    }
    if (fp->nvm > 1) {
        kv_warn_once(s, KV_W_MULTI_VM,
                     "process %d holds %zu VMs: its vCPUs, threads and stats fds are counted on "
                     "the VM with the lowest fd (%d); the others get per-VM debugfs counters "
                     "only",
                     pid, fp->nvm, fp->vm[0]);
    }
    for (size_t i = 0; i < fp->nvm; i++) {
        struct kv_vm *vm = find_vm(s, pid, fp->vm[i]);
        if (vm && vm->start_ticks != start) {
            vm->gone = true; /* the pid was reused */
            vm = NULL;
        }
        if (!vm) {
            vm = vm_new(s, pid, fp->vm[i], start);
            if (!vm) {
                continue;
            }
            vm->found_ns = s->api->mono_ns();
            /* An unwanted VM is kept too, ignored, so that it is not
             * looked at again on every scan. */
            vm->ignored = !vm_wanted(s, vm);
            if (add_vm(s, vm) != 0) {
                kv_vm_free(vm);
                continue;
            }
            if (!vm->ignored) {
                s->api->log(s->h, VIGIL_LOG_INFO, "found VM %s (pid %d, fd %d)", vm->name, pid,
                            fp->vm[i]);
            }
        }
        vm->seen = true;
        vm->primary = i == 0;
        if (!vm->primary || vm->ignored) {
            continue;
        }
        for (size_t j = 0; j < fp->nvcpu; j++) {
            kv_vcpu_get(vm, fp->vcpu_idx[j]);
        }
        kv_stats_setup(s, vm, fp->stats_fd, fp->stats_idx, fp->nstats);
    }
}

struct scan_ctx {
    uint64_t now_ns;
    bool full, first;
    size_t n;
};

static struct kv_seen *seen_find(struct kv_state *s, int pid)
{
    size_t lo = 0, hi = s->nseen;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->seen[mid].pid == pid) {
            return &s->seen[mid];
        }
        if (s->seen[mid].pid < pid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static int cmp_seen(const void *a, const void *b)
{
    const struct kv_seen *x = a, *y = b;
    return (x->pid > y->pid) - (x->pid < y->pid);
}

static void visit_pid(struct kv_state *s, int dirfd, int pid, void *arg)
{
    struct scan_ctx *c = arg;
    (void)dirfd;
    const struct kv_seen *old = seen_find(s, pid);
    /* first_ns: when the process first showed up; 0 for those already there
     * when the plugin started. */
    uint64_t first = old ? old->first_ns : (c->first ? 0 : c->now_ns);
    if (c->n == s->seen_cap) {
        size_t cap = s->seen_cap ? s->seen_cap * 2 : 512;
        struct kv_seen *a = realloc(s->seen, cap * sizeof *a);
        struct kv_seen *b = a ? realloc(s->seen_next, cap * sizeof *b) : NULL;
        if (a) {
            s->seen = a;
        }
        if (!b) {
            return;
        }
        s->seen_next = b;
        s->seen_cap = cap;
    }
    s->seen_next[c->n].pid = pid;
    s->seen_next[c->n].first_ns = first;
    c->n++;
    bool young = first != 0 && c->now_ns - first < s->rescan_ns;
    if (c->full || young) {
        scan_process(s, pid);
    }
}

/* Full scan: every process's fds. Otherwise only the processes that first
 * showed up less than `rescan` ago: a VMM creates its VM soon after it
 * starts, and every other process costs one directory entry. */
int kv_scan(struct kv_state *s, uint64_t now_ns, bool full)
{
    int dir = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        return -errno;
    }
    struct scan_ctx c = {.now_ns = now_ns, .full = full, .first = s->nseen == 0};
    int rc = each_number(s, dir, s->dents_proc, sizeof s->dents_proc, visit_pid, &c);
    close(dir);
    /* /proc lists pids in increasing order; sort in case it ever does not. */
    for (size_t i = 1; i < c.n; i++) {
        if (s->seen_next[i - 1].pid > s->seen_next[i].pid) {
            qsort(s->seen_next, c.n, sizeof *s->seen_next, cmp_seen);
            break;
        }
    }
    struct kv_seen *t = s->seen;
    s->seen = s->seen_next;
    s->seen_next = t;
    s->nseen = c.n;
    /* A VM found less than `rescan` ago (or still without vCPUs) gets its
     * process looked at again: VMMs add vCPUs and stats fds after creating
     * the VM. scan_process may append VMs: index, do not hold pointers. */
    for (size_t i = 0; i < s->nvm; i++) {
        struct kv_vm *vm = s->vm[i];
        if (!vm->seen && !vm->gone && !vm->ignored &&
            (vm->nvcpus == 0 || now_ns - vm->found_ns < s->rescan_ns)) {
            scan_process(s, vm->pid);
        }
    }
    return rc;
}

struct task_ctx {
    int *tids;
    size_t cap, n;
};

static void add_task(struct kv_state *s, int dirfd, int tid, void *arg)
{
    struct task_ctx *c = arg;
    (void)s;
    (void)dirfd;
    if (c->n < c->cap) {
        c->tids[c->n++] = tid;
    }
}

int kv_list_tasks(struct kv_state *s, int pid, int *tids, size_t cap, size_t *n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        return -errno;
    }
    struct task_ctx c = {.tids = tids, .cap = cap};
    int rc = each_number(s, dir, s->dents, sizeof s->dents, add_task, &c);
    close(dir);
    *n = c.n;
    return rc;
}

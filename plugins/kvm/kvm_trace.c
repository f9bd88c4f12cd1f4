/* kvm plugin, tracepoint layer: counts KVM tracepoints per VMM thread with
 * perf_event_open in counting mode, one event per exit reason set apart by a
 * kernel-side filter, as kvm_stat does. A thread's events form one perf
 * group, read with one read() per collection.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvm.h"

/* The kvm_exit filters use VMX exit reasons (isa 1; SDM vol. 3 appendix C:
 * 1 external interrupt, 12 HLT) and SVM exit codes (isa 2; APM vol. 2:
 * 0x60 INTR, 0x78 HLT). The kvm_userspace_exit ones use KVM_EXIT_*. */
static const struct {
    const char *tp;
    const char *filter; /* NULL: every hit */
} ev_def[KV_E_COUNT] = {
    [KV_E_USERSPACE] = {"kvm_userspace_exit", NULL},
    [KV_E_US_HLT] = {"kvm_userspace_exit", "reason == 5"},   /* KVM_EXIT_HLT */
    [KV_E_US_MMIO] = {"kvm_userspace_exit", "reason == 6"},  /* KVM_EXIT_MMIO */
    [KV_E_US_INTR] = {"kvm_userspace_exit", "reason == 10"}, /* KVM_EXIT_INTR */
    [KV_E_EXIT] = {"kvm_exit", NULL},
    [KV_E_EXIT_HLT] = {"kvm_exit", "(isa == 1 && exit_reason == 12) || "
                                   "(isa == 2 && exit_reason == 120)"},
    [KV_E_EXIT_IRQ] = {"kvm_exit", "(isa == 1 && exit_reason == 1) || "
                                   "(isa == 2 && exit_reason == 96)"},
    [KV_E_PIO] = {"kvm_pio", NULL},
    [KV_E_HYPERCALL] = {"kvm_hypercall", NULL},
};

static bool ev_usable(const struct kv_state *s, int e)
{
    return s->tp_id[e] >= 0 && !s->tp_filter_bad[e];
}

/* Tracepoint ids from tracefs (events/kvm/<name>/id): the mounted tree, the
 * old place under debugfs, else a private mount that is closed right after. */
static void resolve_ids(struct kv_state *s)
{
    const char *where[] = {s->tracefs_path, "/sys/kernel/debug/tracing"};
    int root = -1, mnt = -1;
    for (size_t i = 0; i < 2 && root < 0; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/events/kvm", where[i]);
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            close(fd);
            root = open(where[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
    }
    if (root < 0 && s->private_mounts) {
        mnt = kv_private_mount(s, "tracefs");
        if (mnt >= 0) {
            root = mnt;
            s->api->log(s->h, VIGIL_LOG_INFO,
                        "tracefs is not mounted at %s; reading tracepoint ids through a "
                        "private mount",
                        s->tracefs_path);
        } else {
            kv_warn_once(s, KV_W_TRACEFS,
                         "tracefs is not mounted at %s and a private mount failed (%s): no "
                         "tracepoint counters",
                         s->tracefs_path, strerror(-mnt));
        }
    } else if (root < 0) {
        kv_warn_once(s, KV_W_TRACEFS,
                     "tracefs is not mounted at %s (private_mounts is off): no tracepoint "
                     "counters",
                     s->tracefs_path);
    }
    for (int e = 0; e < KV_E_COUNT; e++) {
        s->tp_id[e] = -1;
        char path[128], buf[32];
        snprintf(path, sizeof path, "events/kvm/%s/id", ev_def[e].tp);
        int fd = root >= 0 ? openat(root, path, O_RDONLY | O_CLOEXEC) : -1;
        if (fd >= 0 && kv_read_small(fd, buf, sizeof buf) > 0) {
            s->tp_id[e] = strtoll(buf, NULL, 10);
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    if (root >= 0) {
        close(root);
    }
    s->tp_ok = s->tp_id[KV_E_USERSPACE] >= 0 || s->tp_id[KV_E_EXIT] >= 0;
    if (root >= 0 && !s->tp_ok) {
        kv_warn_once(s, KV_W_TRACEFS,
                     "no kvm:kvm_exit or kvm:kvm_userspace_exit tracepoint in tracefs: no "
                     "tracepoint counters");
    }
}

bool kv_trace_available(struct kv_state *s)
{
    if (!s->tp_tried) {
        s->tp_tried = true;
        resolve_ids(s);
    }
    return s->tp_ok;
}

static void thread_close(struct kv_thread *t)
{
    for (int e = KV_E_COUNT - 1; e >= 0; e--) { /* members before the leader */
        if (t->fd[e] >= 0) {
            close(t->fd[e]);
        }
        t->fd[e] = -1;
    }
}

/* Opens the thread's perf group. 0, or -errno of the failure that matters
 * (ESRCH: the thread is gone; others are logged). */
static int thread_open(struct kv_state *s, struct kv_thread *t)
{
    int leader = -1;
    for (int e = 0; e < KV_E_COUNT; e++) {
        t->fd[e] = -1;
    }
    for (int e = 0; e < KV_E_COUNT; e++) {
        if (!ev_usable(s, e)) {
            continue;
        }
        struct perf_event_attr a;
        memset(&a, 0, sizeof a);
        a.type = PERF_TYPE_TRACEPOINT;
        a.size = sizeof a;
        a.config = (uint64_t)s->tp_id[e];
        a.read_format = PERF_FORMAT_GROUP;
        int fd = (int)syscall(SYS_perf_event_open, &a, t->tid, -1, leader, PERF_FLAG_FD_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            thread_close(t);
            if (err == EACCES || err == EPERM) {
                s->tp_ok = false;
                kv_warn_once(s, KV_W_PERF,
                             "perf_event_open(kvm:%s, tid %d): %s: no tracepoint counters "
                             "(needs root or CAP_PERFMON, and kernel.perf_event_paranoid)",
                             ev_def[e].tp, t->tid, strerror(err));
            } else if (err == EMFILE || err == ENFILE) {
                kv_warn_rl(s,
                           "perf_event_open for thread %d: %s: raise the open-files limit "
                           "(LimitNOFILE); each watched VMM thread takes %d fds",
                           t->tid, strerror(err), KV_E_COUNT);
            }
            return -err;
        }
        if (ev_def[e].filter && ioctl(fd, PERF_EVENT_IOC_SET_FILTER, ev_def[e].filter) != 0) {
            /* The tracepoint lacks the field on this architecture: drop
             * this counter everywhere, keep the others. */
            s->tp_filter_bad[e] = true;
            s->api->log(s->h, VIGIL_LOG_INFO, "kvm:%s filter '%s' not accepted (%s); not counted",
                        ev_def[e].tp, ev_def[e].filter, strerror(errno));
            close(fd);
            continue;
        }
        t->fd[e] = fd;
        if (leader < 0) {
            leader = fd;
        }
    }
    return leader >= 0 ? 0 : -ENOENT;
}

/* Reads the group: values come in the order the events were opened. */
static void thread_read(struct kv_thread *t)
{
    uint64_t buf[1 + KV_E_COUNT];
    int leader = -1;
    for (int e = 0; e < KV_E_COUNT && leader < 0; e++) {
        leader = t->fd[e];
    }
    if (leader < 0) {
        return;
    }
    ssize_t n = read(leader, buf, sizeof buf);
    if (n < (ssize_t)sizeof buf[0]) {
        return;
    }
    size_t nr = buf[0], k = 0;
    for (int e = 0; e < KV_E_COUNT; e++) {
        if (t->fd[e] >= 0 && k < nr && (k + 2) * sizeof buf[0] <= (size_t)n) {
            t->ev[e] = buf[1 + k++];
        }
    }
}

static struct kv_thread *thread_find(struct kv_vm *vm, int tid)
{
    for (size_t i = 0; i < vm->nthreads; i++) {
        if (vm->threads[i].tid == tid) {
            return &vm->threads[i];
        }
    }
    return NULL;
}

static struct kv_thread *thread_add(struct kv_vm *vm, int tid)
{
    if (vm->nthreads == vm->thread_cap) {
        size_t cap = vm->thread_cap ? vm->thread_cap * 2 : 8;
        struct kv_thread *n = realloc(vm->threads, cap * sizeof *n);
        if (!n) {
            return NULL;
        }
        vm->threads = n;
        vm->thread_cap = cap;
    }
    struct kv_thread *t = &vm->threads[vm->nthreads++];
    memset(t, 0, sizeof *t);
    t->tid = tid;
    for (int e = 0; e < KV_E_COUNT; e++) {
        t->fd[e] = -1;
    }
    return t;
}

/* Which threads to count: the vCPU threads when KVM told us all of them
 * (debugfs vcpuN/pid), else every thread of the VMM (other threads never hit
 * KVM tracepoints, they only cost fds). Threads that ended hand their final
 * counts to vm->retired, so totals never step back. */
void kv_trace_refresh(struct kv_state *s, struct kv_vm *vm)
{
    size_t n = 0;
    bool vcpus_known = vm->nvcpus > 0;
    for (size_t i = 0; i < vm->nvcpus; i++) {
        vcpus_known &= vm->vcpus[i].tid > 0;
    }
    if (vcpus_known) {
        for (size_t i = 0; i < vm->nvcpus && n < KV_MAX_VCPU_FDS; i++) {
            s->tids[n++] = vm->vcpus[i].tid;
        }
    } else if (kv_list_tasks(s, vm->pid, s->tids, KV_MAX_VCPU_FDS, &n) != 0) {
        return;
    }
    for (size_t i = 0; i < vm->nthreads; i++) {
        vm->threads[i].seen = false;
    }
    bool nofds = false;
    for (size_t i = 0; i < n; i++) {
        struct kv_thread *t = thread_find(vm, s->tids[i]);
        if (!t && s->tp_ok && !nofds) {
            t = thread_add(vm, s->tids[i]);
            if (!t) {
                nofds = true;
                continue;
            }
            int rc = thread_open(s, t);
            if (rc == -EMFILE || rc == -ENFILE) {
                vm->nthreads--; /* try again next time */
                nofds = true;
                continue;
            }
            /* A thread that cannot be counted (a kernel worker, or one that
             * just ended) stays listed so it is not retried every time. */
            t->dead = rc != 0;
        }
        if (t) {
            t->seen = true;
        }
    }
    size_t keep = 0;
    for (size_t i = 0; i < vm->nthreads; i++) {
        struct kv_thread *t = &vm->threads[i];
        if (!t->seen) {
            thread_read(t);
            for (int e = 0; e < KV_E_COUNT; e++) {
                vm->retired[e] += t->ev[e];
            }
            thread_close(t);
            continue;
        }
        vm->threads[keep++] = *t;
    }
    vm->nthreads = keep;
}

size_t kv_trace_live(const struct kv_vm *vm)
{
    size_t n = 0;
    for (size_t i = 0; i < vm->nthreads; i++) {
        n += !vm->threads[i].dead;
    }
    return n;
}

void kv_trace_close(struct kv_vm *vm)
{
    for (size_t i = 0; i < vm->nthreads; i++) {
        thread_close(&vm->threads[i]);
    }
    free(vm->threads);
    vm->threads = NULL;
    vm->nthreads = vm->thread_cap = 0;
    memset(vm->retired, 0, sizeof vm->retired);
}

static void set_count(struct kv_counts *c, int r, uint64_t v)
{
    c->v[r] = v;
    c->have |= 1u << r;
}

/* Reasons from raw tracepoint counts. kvm_exit fires on every exit on VMX
 * and SVM; on backends that do not trace it, exits to user space are the
 * exits we can see, so exits = the larger of the two. */
void kv_trace_counts(const struct kv_state *s, const uint64_t ev[KV_E_COUNT], bool kvm_exit_traced,
                     struct kv_counts *out)
{
    memset(out, 0, sizeof *out);
    uint64_t ex = ev[KV_E_EXIT] > ev[KV_E_USERSPACE] ? ev[KV_E_EXIT] : ev[KV_E_USERSPACE];
    set_count(out, KV_R_EXITS, ex);
    if (ev_usable(s, KV_E_USERSPACE)) {
        set_count(out, KV_R_USERSPACE, ev[KV_E_USERSPACE]);
    }
    if (ev_usable(s, KV_E_PIO)) {
        set_count(out, KV_R_IO, ev[KV_E_PIO]);
    }
    if (ev_usable(s, KV_E_US_MMIO)) {
        set_count(out, KV_R_MMIO, ev[KV_E_US_MMIO]);
    }
    if (ev_usable(s, KV_E_US_HLT) || (kvm_exit_traced && ev_usable(s, KV_E_EXIT_HLT))) {
        uint64_t h = ev[KV_E_US_HLT] > ev[KV_E_EXIT_HLT] ? ev[KV_E_US_HLT] : ev[KV_E_EXIT_HLT];
        set_count(out, KV_R_HALT, h);
    }
    if (kvm_exit_traced && ev_usable(s, KV_E_EXIT_IRQ)) {
        set_count(out, KV_R_IRQ, ev[KV_E_EXIT_IRQ]);
    }
    if (ev_usable(s, KV_E_US_INTR)) {
        set_count(out, KV_R_SIGNAL, ev[KV_E_US_INTR]);
    }
    if (ev_usable(s, KV_E_HYPERCALL)) {
        set_count(out, KV_R_HYPERCALL, ev[KV_E_HYPERCALL]);
    }
}

/* One reading: the VM's sum (live threads + retired ones) and, for vCPUs
 * whose thread is known, their own counts. */
void kv_trace_read(struct kv_state *s, struct kv_vm *vm, struct kv_counts *out)
{
    uint64_t sum[KV_E_COUNT];
    memcpy(sum, vm->retired, sizeof sum);
    for (size_t i = 0; i < vm->nthreads; i++) {
        thread_read(&vm->threads[i]);
        for (int e = 0; e < KV_E_COUNT; e++) {
            sum[e] += vm->threads[i].ev[e];
        }
    }
    vm->trace_seen_exit = sum[KV_E_EXIT];
    bool traced = sum[KV_E_EXIT] > 0;
    kv_trace_counts(s, sum, traced, out);
    if (!traced && sum[KV_E_USERSPACE] >= 100 && ev_usable(s, KV_E_EXIT)) {
        kv_warn_once(s, KV_W_NO_KVM_EXIT,
                     "kvm:kvm_exit never fired while VM %s (pid %d) returned to user space "
                     "%llu times: this KVM backend does not trace VM exits, so with "
                     "tracepoints exits_per_s counts the exits that reach the VMM (exits "
                     "handled inside the kernel are not seen)",
                     vm->name, vm->pid, (unsigned long long)sum[KV_E_USERSPACE]);
    }
    /* A single vCPU whose thread is not known: the one thread that exited. */
    if (vm->nvcpus == 1 && vm->vcpus[0].tid == 0) {
        struct kv_thread *only = NULL;
        size_t hits = 0;
        for (size_t i = 0; i < vm->nthreads; i++) {
            if (vm->threads[i].ev[KV_E_USERSPACE] + vm->threads[i].ev[KV_E_EXIT] > 0) {
                only = &vm->threads[i];
                hits++;
            }
        }
        if (hits == 1) {
            vm->vcpus[0].tid = only->tid;
            snprintf(vm->vcpus[0].tid_str, sizeof vm->vcpus[0].tid_str, "%d", only->tid);
        }
    }
    for (size_t i = 0; i < vm->nvcpus; i++) {
        struct kv_vcpu *v = &vm->vcpus[i];
        struct kv_thread *t = v->tid ? thread_find(vm, v->tid) : NULL;
        if (t && !t->dead) {
            kv_trace_counts(s, t->ev, traced, &v->now[1]);
        } else {
            memset(&v->now[1], 0, sizeof v->now[1]);
        }
    }
}

/* kvm: a source that watches every KVM virtual machine on the host. Each
 * collection finds VMs in /proc, reads their exit counters (binary stats fds,
 * debugfs or tracepoints, whichever the kernel allows), the VMM's CPU and
 * memory, and publishes one kvm.vm event per VM and one kvm.vcpu per vCPU.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kvm.h"

const struct kv_reason_info kv_reasons[KV_R_COUNT] = {
    [KV_R_EXITS] = {"exits_total", "exits_per_s", "exits"},
    [KV_R_USERSPACE] = {"userspace_exits_total", "userspace_exits_per_s", NULL},
    [KV_R_IO] = {"io_exits_total", "io_exits_per_s", "io_exits"},
    [KV_R_MMIO] = {"mmio_exits_total", "mmio_exits_per_s", "mmio_exits"},
    [KV_R_HALT] = {"halt_exits_total", "halt_exits_per_s", "halt_exits"},
    [KV_R_IRQ] = {"irq_exits_total", "irq_exits_per_s", "irq_exits"},
    [KV_R_IRQ_WINDOW] = {"irq_window_exits_total", "irq_window_exits_per_s", "irq_window_exits"},
    [KV_R_NMI_WINDOW] = {"nmi_window_exits_total", "nmi_window_exits_per_s", "nmi_window_exits"},
    [KV_R_SIGNAL] = {"signal_exits_total", "signal_exits_per_s", "signal_exits"},
    [KV_R_REQUEST_IRQ] = {"request_irq_exits_total", "request_irq_exits_per_s",
                          "request_irq_exits"},
    [KV_R_HYPERCALL] = {"hypercalls_total", "hypercalls_per_s", "hypercalls"},
};

static const char *const method_names[] = {
    [KV_M_NONE] = "none",
    [KV_M_STATS_FD] = "stats_fd",
    [KV_M_DEBUGFS] = "debugfs",
    [KV_M_TRACEPOINT] = "tracepoint",
};

static const struct vigil_option kvm_options[] = {
    {"rescan", VIGIL_OPT_DURATION, "60s",
     "period of the full /proc scan for VMs; in between, only processes that appeared since "
     "the last full scan are looked at (0 = a full scan every collection)"},
    {"tracepoints", VIGIL_OPT_STRING, "auto",
     "auto: count KVM tracepoints for VMs without stats fds or debugfs counters; always: also "
     "beside them (adds exits to user space; fixes counters a backend does not keep); never"},
    {"debugfs", VIGIL_OPT_STRING, "/sys/kernel/debug", "where debugfs is mounted"},
    {"tracefs", VIGIL_OPT_STRING, "/sys/kernel/tracing", "where tracefs is mounted"},
    {"private_mounts", VIGIL_OPT_BOOL, "true",
     "when debugfs or tracefs is not mounted, read it through a private detached mount "
     "(needs CAP_SYS_ADMIN; no other process sees it)"},
    {"per_vcpu", VIGIL_OPT_BOOL, "true", "also publish one kvm.vcpu event per vCPU"},
    {"vms", VIGIL_OPT_LIST, NULL, "only VMs whose vm label matches one of these globs"},
    {NULL, 0, NULL, NULL},
};

void kv_warn_once(struct kv_state *s, uint32_t bit, const char *fmt, ...)
{
    if (s->warned & bit) {
        return;
    }
    s->warned |= bit;
    va_list ap;
    va_start(ap, fmt);
    s->api->vlog(s->h, VIGIL_LOG_WARN, fmt, ap);
    va_end(ap);
}

/* For what is worth knowing once but normal on many hosts. */
void kv_info_once(struct kv_state *s, uint32_t bit, const char *fmt, ...)
{
    if (s->warned & bit) {
        return;
    }
    s->warned |= bit;
    va_list ap;
    va_start(ap, fmt);
    s->api->vlog(s->h, VIGIL_LOG_INFO, fmt, ap);
    va_end(ap);
}

/* Warnings that can recur (per VM, per thread): the host's limiter. */
void kv_warn_rl(struct kv_state *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s->api->vlog_limited(s->h, VIGIL_LOG_WARN, fmt, ap);
    va_end(ap);
}

/* Merges this reading's layers into the running totals: per reason, the
 * larger increment of the layers that had it last time too (they count the
 * same exits; one may miss some, e.g. io_exits on a backend that does not
 * keep it). The first reading of a reason starts its total and has no
 * rate. A counter that went back (a replaced fd) adds nothing. */
void kv_tally_update(struct kv_tally *t, const struct kv_counts *layers[KV_LAYERS], uint64_t now_ns)
{
    double dt_s = t->prev_ns && now_ns > t->prev_ns ? (double)(now_ns - t->prev_ns) / 1e9 : 0;
    t->known = t->rated = 0;
    for (int r = 0; r < KV_R_COUNT; r++) {
        uint32_t bit = 1u << r;
        bool any = false, have_d = false;
        uint64_t d = 0, first = 0;
        for (int l = 0; l < KV_LAYERS; l++) {
            const struct kv_counts *c = layers[l];
            if (!c || !(c->have & bit)) {
                continue;
            }
            any = true;
            if (t->prev[l].have & bit) {
                uint64_t p = t->prev[l].v[r];
                uint64_t inc = c->v[r] >= p ? c->v[r] - p : 0;
                d = inc > d ? inc : d;
                have_d = true;
            } else if (c->v[r] > first) {
                first = c->v[r];
            }
        }
        if (!any) {
            continue;
        }
        t->known |= bit;
        if (!(t->ever & bit)) {
            t->ever |= bit;
            t->total[r] = first > d ? first : d;
            continue;
        }
        t->total[r] += d;
        if (have_d && dt_s > 0) {
            t->rate[r] = (double)d / dt_s;
            t->rated |= bit;
        }
    }
    for (int l = 0; l < KV_LAYERS; l++) {
        if (layers[l]) {
            t->prev[l] = *layers[l];
        } else {
            memset(&t->prev[l], 0, sizeof t->prev[l]);
        }
    }
    t->prev_ns = now_ns;
}

/* ---- config --------------------------------------------------------------- */

static int kvm_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    const struct vigil_conf *root = api->conf_root(h);
    struct kv_state *s = calloc(1, sizeof *s);
    if (!s) {
        return -ENOMEM;
    }
    s->h = h;
    s->api = api;
    s->dbg_dir = s->dbg_mnt = -1;
    s->clk_tck = sysconf(_SC_CLK_TCK);
    s->page_size = sysconf(_SC_PAGESIZE);
    if (s->clk_tck <= 0) {
        s->clk_tck = 100;
    }
    if (s->page_size <= 0) {
        s->page_size = 4096;
    }
    int bad = 0;
    const char *mode = "auto";
    api->conf_duration(api->conf_get(root, "rescan"), &s->rescan_ns);
    api->conf_string(api->conf_get(root, "tracepoints"), &mode);
    api->conf_string(api->conf_get(root, "debugfs"), &s->debugfs_path);
    api->conf_string(api->conf_get(root, "tracefs"), &s->tracefs_path);
    api->conf_bool(api->conf_get(root, "private_mounts"), &s->private_mounts);
    api->conf_bool(api->conf_get(root, "per_vcpu"), &s->per_vcpu);
    if (strcmp(mode, "auto") == 0) {
        s->trace_mode = KV_TRACE_AUTO;
    } else if (strcmp(mode, "always") == 0) {
        s->trace_mode = KV_TRACE_ALWAYS;
    } else if (strcmp(mode, "never") == 0) {
        s->trace_mode = KV_TRACE_NEVER;
    } else {
        api->conf_error(h, api->conf_get(root, "tracepoints"),
                        "tracepoints must be auto, always or never, not '%s'", mode);
        bad++;
    }
    const char *keys[] = {"debugfs", "tracefs"};
    const char *paths[] = {s->debugfs_path, s->tracefs_path};
    for (int i = 0; i < 2; i++) {
        if (!paths[i] || paths[i][0] != '/') {
            api->conf_error(h, api->conf_get(root, keys[i]), "%s must be an absolute path",
                            keys[i]);
            bad++;
        }
    }
    s->vms = api->conf_get(root, "vms");
    for (size_t i = 0; s->vms && i < api->conf_len(s->vms); i++) {
        const struct vigil_conf *n = api->conf_at(s->vms, i, NULL);
        const char *pat, *why = NULL;
        if (api->conf_string(n, &pat) != 0) {
            api->conf_error(h, n, "vms entries must be strings (globs on the vm label)");
            bad++;
        } else if (!api->glob_valid(pat, &why)) {
            api->conf_error(h, n, "bad vms pattern: %s", why);
            bad++;
        }
    }
    if (bad) {
        free(s);
        return VIGIL_ECONFIG;
    }
    *state = s;
    return 0;
}

/* ---- collection ----------------------------------------------------------- */

static void remove_vm(struct kv_state *s, size_t i)
{
    struct kv_vm *vm = s->vm[i];
    if (!vm->ignored) {
        s->api->log(s->h, VIGIL_LOG_INFO, "VM %s (pid %d, fd %d) is gone", vm->name, vm->pid,
                    vm->vm_fd);
    }
    kv_vm_free(vm);
    s->vm[i] = s->vm[--s->nvm];
}

/* Chooses the VM's counter layers for this collection. */
static void prepare(struct kv_state *s, struct kv_vm *vm)
{
    bool tids_missing = false;
    for (size_t i = 0; i < vm->nvcpus; i++) {
        tids_missing |= vm->vcpus[i].tid == 0;
    }
    if (vm->seen || tids_missing || vm->nvcpus == 0) {
        kv_debugfs_vcpu_tids(s, vm);
    }
    vm->method = kv_stats_method(s, vm);
    if (vm->primary && vm->method != KV_M_STATS_FD) {
        kv_info_once(s, KV_W_STATS_IOCTL,
                     "VM %s (pid %d): its VMM holds no KVM stats fds to borrow, and "
                     "KVM_GET_STATS_FD works only inside the VMM's own process; using debugfs "
                     "or tracepoints for such VMs",
                     vm->name, vm->pid);
    }
    bool want_trace = vm->primary && (s->trace_mode == KV_TRACE_ALWAYS ||
                                      (s->trace_mode == KV_TRACE_AUTO && vm->method == KV_M_NONE));
    if (want_trace && kv_trace_available(s)) {
        kv_trace_refresh(s, vm);
    } else if (vm->nthreads) {
        kv_trace_close(vm);
    }
    vm->trace_on = kv_trace_live(vm) > 0;
    if (vm->method == KV_M_NONE && vm->trace_on) {
        vm->method = KV_M_TRACEPOINT;
    }
    if (vm->method == KV_M_NONE && vm->primary) {
        kv_warn_once(s, KV_W_NO_COUNTERS,
                     "no exit counters for VM %s (pid %d): the VMM holds no KVM stats fds "
                     "(KVM_GET_STATS_FD works only inside the VMM's own process), and debugfs "
                     "and tracepoints are unavailable (see above); publishing CPU and memory "
                     "only",
                     vm->name, vm->pid);
    }
}

static void put_reasons(struct kv_state *s, struct vigil_event_builder *ev,
                        const struct kv_tally *t)
{
    for (int r = 0; r < KV_R_COUNT; r++) {
        if (t->known & (1u << r)) {
            s->api->event_value_u64(ev, kv_reasons[r].total, t->total[r]);
        }
        if (t->rated & (1u << r)) {
            s->api->event_value(ev, kv_reasons[r].per_s, t->rate[r]);
        }
    }
}

static void put_labels(struct kv_state *s, struct vigil_event_builder *ev, const struct kv_vm *vm)
{
    s->api->event_label(ev, "pid", vm->pid_str);
    s->api->event_label(ev, "vm", vm->name);
    s->api->event_label(ev, "vm_fd", vm->fd_str);
}

static const char *exits_from(const struct kv_vm *vm)
{
    if (vm->method == KV_M_STATS_FD || vm->method == KV_M_DEBUGFS) {
        return "exits";
    }
    if (vm->method == KV_M_TRACEPOINT) {
        return vm->trace_seen_exit ? "kvm_exit" : "kvm_userspace_exit";
    }
    return "none";
}

static int publish_vm(struct kv_state *s, struct kv_vm *vm)
{
    const struct vigil_api *api = s->api;
    struct vigil_event_builder *ev = api->event_begin(s->h, "kvm.vm");
    put_labels(s, ev, vm);
    api->event_value_u64(ev, "vcpus", vm->nvcpus);
    put_reasons(s, ev, &vm->tally);
    if (vm->cpu.have_pct) {
        api->event_value(ev, "guest_cpu_pct", vm->cpu.guest_pct);
        api->event_value(ev, "host_cpu_pct", vm->cpu.host_pct);
    }
    uint64_t rss = kv_rss_bytes(s, vm);
    if (rss) {
        api->event_value_u64(ev, "rss_bytes", rss);
    }
    if (vm->guest_mem_bytes) {
        api->event_value_u64(ev, "guest_memory_bytes", vm->guest_mem_bytes);
        if (rss) {
            api->event_value_u64(ev, "memory_overhead_bytes",
                                 rss > vm->guest_mem_bytes ? rss - vm->guest_mem_bytes : 0);
        }
    }
    api->event_attr_str(ev, "method", method_names[vm->method]);
    api->event_attr_str(ev, "exits_from", exits_from(vm));
    api->event_attr_bool(ev, "tracepoints", vm->trace_on);
    if (vm->trace_on) {
        api->event_attr_i64(ev, "threads_traced", (int64_t)kv_trace_live(vm));
    }
    api->event_attr_str(ev, "memory_method", vm->mem_method);
    return api->publish(s->h, ev);
}

static int publish_vcpu(struct kv_state *s, struct kv_vm *vm, struct kv_vcpu *v)
{
    const struct vigil_api *api = s->api;
    struct vigil_event_builder *ev = api->event_begin(s->h, "kvm.vcpu");
    put_labels(s, ev, vm);
    api->event_label(ev, "vcpu", v->index_str);
    if (v->tid) {
        api->event_label(ev, "tid", v->tid_str);
    }
    put_reasons(s, ev, &v->tally);
    if (v->cpu.have_pct) {
        api->event_value(ev, "guest_cpu_pct", v->cpu.guest_pct);
        api->event_value(ev, "host_cpu_pct", v->cpu.host_pct);
    }
    api->event_attr_str(ev, "method",
                        v->stats.fd >= 0 ? "stats_fd"
                        : v->now[1].have ? "tracepoint"
                                         : "none");
    return api->publish(s->h, ev);
}

static int collect_vm(struct kv_state *s, struct kv_vm *vm, uint64_t now)
{
    prepare(s, vm);
    struct kv_counts st, tr;
    memset(&tr, 0, sizeof tr);
    kv_stats_read(s, vm, &st);
    if (vm->trace_on) {
        kv_trace_read(s, vm, &tr);
    } else {
        for (size_t i = 0; i < vm->nvcpus; i++) {
            memset(&vm->vcpus[i].now[1], 0, sizeof vm->vcpus[i].now[1]);
        }
    }
    const struct kv_counts *layers[KV_LAYERS] = {st.have ? &st : NULL, tr.have ? &tr : NULL};
    kv_tally_update(&vm->tally, layers, now);
    kv_cpu_read(s, &vm->cpu, now);
    int rc = publish_vm(s, vm);
    for (size_t i = 0; rc != VIGIL_ESTOPPED && s->per_vcpu && i < vm->nvcpus; i++) {
        struct kv_vcpu *v = &vm->vcpus[i];
        if (v->tid && v->cpu.fd < 0) {
            char path[64];
            snprintf(path, sizeof path, "/proc/%d/task/%d/stat", vm->pid, v->tid);
            kv_cpu_open(&v->cpu, path);
        }
        kv_cpu_read(s, &v->cpu, now);
        const struct kv_counts *vl[KV_LAYERS] = {v->now[0].have ? &v->now[0] : NULL,
                                                 v->now[1].have ? &v->now[1] : NULL};
        kv_tally_update(&v->tally, vl, now);
        rc = publish_vcpu(s, vm, v);
    }
    return rc;
}

static int kvm_collect(void *state)
{
    struct kv_state *s = state;
    uint64_t cpu0 = s->api->thread_cpu_ns();
    uint64_t now = s->api->mono_ns();
    bool full = s->nseen == 0 || s->rescan_ns == 0 || now - s->last_full_ns >= s->rescan_ns;
    for (size_t i = 0; i < s->nvm; i++) {
        s->vm[i]->seen = false;
    }
    int rc = kv_scan(s, now, full);
    if (rc != 0) {
        kv_warn_rl(s, "cannot list /proc: %s", strerror(-rc));
    }
    if (full) {
        s->last_full_ns = now;
    }
    for (size_t i = s->nvm; i-- > 0;) {
        struct kv_vm *vm = s->vm[i];
        if (vm->gone || (full && !vm->seen) || !kv_vm_alive(s, vm)) {
            remove_vm(s, i);
        }
    }
    /* A VM whose event is refused (too big) does not stop the others;
     * only shutdown does. */
    size_t vcpus = 0;
    for (size_t i = 0; i < s->nvm; i++) {
        if (!s->vm[i]->ignored && collect_vm(s, s->vm[i], s->api->mono_ns()) == VIGIL_ESTOPPED) {
            return VIGIL_ESTOPPED;
        }
        vcpus += s->vm[i]->nvcpus;
    }
    /* The cost of a collection, for vigil-bench collect (same shape as the
     * cgroups source's line). */
    double us = (double)(s->api->thread_cpu_ns() - cpu0) / 1e3;
    s->api->log(s->h, VIGIL_LOG_DEBUG,
                "collected %zu VMs in %.0f us CPU (%.2f us each, %zu vCPUs; %s /proc scan)", s->nvm,
                us, s->nvm ? us / (double)s->nvm : 0.0, vcpus, full ? "full" : "new-process");
    return 0;
}

static void kvm_fini(void *state)
{
    struct kv_state *s = state;
    for (size_t i = 0; i < s->nvm; i++) {
        kv_vm_free(s->vm[i]);
    }
    free(s->vm);
    free(s->seen);
    free(s->seen_next);
    kv_mounts_close(s);
    free(s);
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SOURCE,
    .name = "kvm",
    .version = "1.0.0",
    .description = "KVM virtual machines: exits, CPU and memory overhead, per VM and vCPU",
    .options = kvm_options,
    .init = kvm_init,
    .collect = kvm_collect,
    .fini = kvm_fini,
};

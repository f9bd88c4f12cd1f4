/* net: a source that publishes every network interface's traffic, drops and
 * errors (net.if) and each network namespace's sums and TCP/UDP counters
 * (net.ns), in the host's namespace and in every other one, labelled with
 * the container, pod or VM they belong to. This file holds the options, the
 * collection and the events; see net.h for the other parts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"

#include <linux/if.h> /* IF_OPER_*; after <net/if.h> (net.h), which it defers to */

const char *const net_ctr_total[NC_N] = {"rx_bytes_total",   "tx_bytes_total",   "rx_packets_total",
                                         "tx_packets_total", "rx_dropped_total", "tx_dropped_total",
                                         "rx_errors_total",  "tx_errors_total"};
const char *const net_ctr_rate[NC_N] = {"rx_bytes_per_s",   "tx_bytes_per_s",   "rx_packets_per_s",
                                        "tx_packets_per_s", "rx_dropped_per_s", "tx_dropped_per_s",
                                        "rx_errors_per_s",  "tx_errors_per_s"};

static const char *const snmp_total[NS_N] = {
    "tcp_out_segs_total",     "tcp_retrans_segs_total",     "tcp_in_errs_total",
    "tcp_listen_drops_total", "tcp_listen_overflows_total", "udp_rcvbuf_errors_total",
    "udp_in_errors_total"};
static const char *const snmp_rate[NS_N] = {"tcp_out_segs_per_s",         "tcp_retrans_segs_per_s",
                                            "tcp_in_errs_per_s",          "tcp_listen_drops_per_s",
                                            "tcp_listen_overflows_per_s", "udp_rcvbuf_errors_per_s",
                                            "udp_in_errors_per_s"};

static const struct vigil_option net_options[] = {
    {"namespaces", VIGIL_OPT_BOOL, "true",
     "read every network namespace (found from /proc/*/ns/net and /run/netns), not only "
     "vigild's own"},
    {"interfaces", VIGIL_OPT_LIST, NULL, "globs over interface names to report; default: all"},
    {"ignore", VIGIL_OPT_LIST, NULL, "globs over interface names never to report"},
    {"snmp", VIGIL_OPT_BOOL, "true",
     "read each namespace's TCP and UDP counters (/proc/net/snmp, /proc/net/netstat)"},
    {"rescan", VIGIL_OPT_DURATION, "60s",
     "how often the owners of namespaces and the VMMs holding tap devices are looked for "
     "again (a new namespace or tap device is looked at when it appears)"},
    {"per_interface", VIGIL_OPT_BOOL, "true", "publish net.if (false: only net.ns)"},
    {NULL, 0, NULL, NULL},
};

void net_warn(struct net_state *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s->api->vlog_limited(s->h, VIGIL_LOG_WARN, fmt, ap);
    va_end(ap);
}

/* ---- events ----------------------------------------------------------------- */

static void ns_labels(struct net_state *s, struct vigil_event_builder *ev, const struct net_ns *ns)
{
    s->api->event_label(ev, "netns", ns->label);
    s->api->event_label(ev, "netns_inode", ns->ino_str);
}

static int publish_if(struct net_state *s, struct net_ns *ns, const struct net_if *i)
{
    const struct vigil_api *api = s->api;
    struct vigil_event_builder *ev = api->event_begin(s->h, "net.if");
    api->event_label(ev, "interface", i->name);
    api->event_label(ev, "kind", i->kind);
    ns_labels(s, ev, ns);
    struct net_ns *peer = NULL;
    if (i->link_nsid >= 0) {
        uint64_t ino = net_nsid_ino(s, ns, i->link_nsid);
        peer = ino ? net_ns_find(s, ino) : NULL;
        if (peer) {
            api->event_label(ev, "peer_netns", peer->label);
        }
    }
    /* Whose: the VMM holding a tap; else the namespace's owner; else, for
     * the host's end of a veth, the owner of the namespace at the other end. */
    if (i->vmm) {
        api->event_label(ev, "vm", i->vmm->vm);
        api->event_label(ev, "vmm_pid", i->vmm->pid_str);
        net_owner_labels(s, ev, &i->vmm->owner, true);
    } else if (!ns->host && ns->owner.set) {
        net_owner_labels(s, ev, &ns->owner, false);
    } else if (peer && !peer->host && peer->owner.set) {
        net_owner_labels(s, ev, &peer->owner, false);
    }
    for (int k = 0; k < NC_N; k++) {
        api->event_value_u64(ev, net_ctr_total[k], i->cur[k]);
    }
    if (i->have_rate) {
        for (int k = 0; k < NC_N; k++) {
            api->event_value(ev, net_ctr_rate[k], i->rate[k]);
        }
        api->event_value(ev, "dropped_per_s", i->rate[NC_RX_DROPPED] + i->rate[NC_TX_DROPPED]);
    }
    /* Loopback and some virtual devices never leave "unknown". */
    bool up =
        (i->flags & IFF_UP) && (i->operstate == IF_OPER_UP || i->operstate == IF_OPER_UNKNOWN);
    api->event_value_u64(ev, "up", up ? 1 : 0);
    api->event_value_u64(ev, "mtu", i->mtu);
    if (i->speed_mbps >= 0) {
        api->event_value_u64(ev, "speed_mbps", (uint64_t)i->speed_mbps);
    }
    return api->publish(s->h, ev);
}

static int publish_ns(struct net_state *s, const struct net_ns *ns)
{
    const struct vigil_api *api = s->api;
    struct vigil_event_builder *ev = api->event_begin(s->h, "net.ns");
    ns_labels(s, ev, ns);
    if (!ns->host) {
        net_owner_labels(s, ev, &ns->owner, false);
    }
    uint64_t total[NC_N] = {0};
    double rate[NC_N] = {0};
    size_t n = 0, rated = 0;
    for (size_t j = 0; j < ns->nifs; j++) {
        const struct net_if *i = &ns->ifs[j];
        if (!i->selected) {
            continue;
        }
        n++;
        rated += i->have_rate;
        for (int k = 0; k < NC_N; k++) {
            total[k] += i->cur[k];
            rate[k] += i->rate[k]; /* 0 without a rate */
        }
    }
    api->event_value_u64(ev, "interfaces", n);
    for (int k = 0; k < NC_N; k++) {
        api->event_value_u64(ev, net_ctr_total[k], total[k]);
    }
    if (rated) {
        for (int k = 0; k < NC_N; k++) {
            api->event_value(ev, net_ctr_rate[k], rate[k]);
        }
    }
    if (ns->have_snmp) {
        for (int k = 0; k < NS_N; k++) {
            api->event_value_u64(ev, snmp_total[k], ns->snmp[k]);
        }
    }
    if (ns->have_snmp && ns->have_snmp_prev && ns->snmp_ns > ns->snmp_prev_ns) {
        double dt = (double)(ns->snmp_ns - ns->snmp_prev_ns) / 1e9;
        uint64_t d[NS_N];
        bool ok = true;
        for (int k = 0; k < NS_N; k++) {
            ok &= ns->snmp[k] >= ns->snmp_prev[k];
            d[k] = ns->snmp[k] - ns->snmp_prev[k];
        }
        for (int k = 0; k < NS_N && ok; k++) {
            api->event_value(ev, snmp_rate[k], (double)d[k] / dt);
        }
        if (ok && d[NS_TCP_OUT_SEGS] > 0) {
            double share = (double)d[NS_TCP_RETRANS_SEGS] / (double)d[NS_TCP_OUT_SEGS];
            api->event_value(ev, "tcp_retrans_share", share < 1 ? share : 1);
        }
    }
    return api->publish(s->h, ev);
}

/* ---- the collection ---------------------------------------------------------- */

static int net_collect(void *state)
{
    struct net_state *s = state;
    const struct vigil_api *api = s->api;
    uint64_t cpu0 = api->thread_cpu_ns();
    uint64_t now = api->mono_ns();
    bool rescan = !s->rescanned || now - s->last_rescan_ns >= s->rescan_ns;
    int rc = net_ns_discover(s, rescan);
    if (rc != 0) {
        net_warn(s, "cannot list the network namespaces: %s", strerror(-rc));
        api->counter_add(s->h, s->c_read_errors, 1);
    }
    if (rescan) {
        s->rescanned = true;
        s->last_rescan_ns = now;
    }
    size_t nifs = 0, nns = 0;
    for (size_t k = 0; k < s->nns; k++) {
        struct net_ns *ns = s->ns[k];
        ns->dumped = false;
        if (ns->nl < 0) {
            continue;
        }
        int n = net_link_dump(s, ns);
        if (n < 0) {
            /* A namespace whose last process just left still answers (its
             * socket keeps it): an error here is the kernel's, or memory. */
            net_warn(s, "netns %s: cannot dump its links: %s", ns->label, strerror(-n));
            api->counter_add(s->h, s->c_read_errors, 1);
            continue;
        }
        ns->dumped = true;
        nifs += (size_t)n;
        nns++;
        if (s->snmp) {
            int e = net_ns_snmp(s, ns);
            if (e != 0) {
                net_warn(s, "netns %s: cannot read its SNMP counters: %s", ns->label, strerror(-e));
                api->counter_add(s->h, s->c_read_errors, 1);
            }
        }
    }
    if (s->namespaces) {
        net_owner_namespaces(s, rescan);
    }
    if (s->tun_scan_due || rescan || (s->tun_next_ns && now >= s->tun_next_ns)) {
        /* A device is often made before its VMM holds it (libvirt opens the
         * tap and hands it to QEMU, which then makes the VM): while some
         * are without a VMM, look again after 1 s, 2 s, 4 s, ... up to
         * rescan. */
        if (s->tun_scan_due) {
            s->tun_wait_ns = 1000000000ull;
        }
        s->tun_scan_due = false;
        s->tun_next_ns = 0;
        if (net_owner_taps(s) > 0 && s->tun_wait_ns > 0 && s->tun_wait_ns < s->rescan_ns) {
            s->tun_next_ns = now + s->tun_wait_ns;
            s->tun_wait_ns *= 2;
        }
    }
    int last_err = 0;
    api->batch_begin(s->h);
    for (size_t k = 0; k < s->nns; k++) {
        struct net_ns *ns = s->ns[k];
        if (!ns->dumped) {
            continue; /* nothing new to say (warned about above) */
        }
        for (size_t j = 0; s->per_interface && j < ns->nifs; j++) {
            if (ns->ifs[j].selected) {
                int r = publish_if(s, ns, &ns->ifs[j]);
                last_err = r ? r : last_err;
            }
        }
        int r = publish_ns(s, ns);
        last_err = r ? r : last_err;
    }
    if (api->batch_end(s->h) == VIGIL_ESTOPPED || last_err == VIGIL_ESTOPPED) {
        return 0; /* the daemon is stopping: not a failure */
    }
    api->counter_set(s->h, s->c_namespaces, s->nns);
    api->counter_set(s->h, s->c_interfaces, nifs);
    uint64_t cpu = api->thread_cpu_ns() - cpu0;
    api->log(s->h, VIGIL_LOG_DEBUG, "collected %zu interfaces in %zu namespaces in %.0f us CPU",
             nifs, nns, (double)cpu / 1e3);
    return last_err;
}

/* ---- set-up -------------------------------------------------------------------- */

/* A list of globs (interfaces, ignore) into *out. */
static int read_globs(struct net_state *s, const char *key, const char ***out, size_t *n)
{
    const struct vigil_api *api = s->api;
    const struct vigil_conf *node = api->conf_get(api->conf_root(s->h), key);
    size_t len = node ? api->conf_len(node) : 0;
    *n = 0;
    *out = calloc(len ? len : 1, sizeof **out);
    if (!*out) {
        return -ENOMEM;
    }
    int bad = 0;
    for (size_t i = 0; i < len; i++) {
        const struct vigil_conf *item = api->conf_at(node, i, NULL);
        const char *g = NULL, *why = NULL;
        if (api->conf_string(item, &g) != 0) {
            api->conf_error(s->h, item, "%s entries must be globs (strings) over interface names",
                            key);
            bad++;
        } else if (!api->glob_valid(g, &why)) {
            api->conf_error(s->h, item, "bad glob '%s': %s", g, why);
            bad++;
        } else {
            (*out)[(*n)++] = g;
        }
    }
    return bad ? VIGIL_ECONFIG : 0;
}

static int read_options(struct net_state *s)
{
    const struct vigil_api *api = s->api;
    const struct vigil_conf *root = api->conf_root(s->h);
    api->conf_bool(api->conf_get(root, "namespaces"), &s->namespaces);
    api->conf_bool(api->conf_get(root, "snmp"), &s->snmp);
    api->conf_bool(api->conf_get(root, "per_interface"), &s->per_interface);
    int rc = read_globs(s, "interfaces", &s->want, &s->nwant);
    int rc2 = read_globs(s, "ignore", &s->ignore, &s->nignore);
    if (rc == -ENOMEM || rc2 == -ENOMEM) {
        return -ENOMEM;
    }
    const struct vigil_conf *n = api->conf_get(root, "rescan");
    api->conf_duration(n, &s->rescan_ns);
    if (s->rescan_ns < 1000000000ull) {
        api->conf_error(s->h, n, "rescan must be at least 1s");
        rc = VIGIL_ECONFIG;
    }
    return rc ? rc : rc2;
}

static void net_fini(void *state)
{
    struct net_state *s = state;
    if (!s) {
        return;
    }
    for (size_t i = 0; i < s->nns; i++) {
        net_ns_free(s->ns[i]);
    }
    free(s->ns);
    if (s->home_fd >= 0) {
        close(s->home_fd);
    }
    free(s->want);
    free(s->ignore);
    free(s->procs);
    free(s->procs_old);
    free(s->buf);
    free(s);
}

static int net_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    struct net_state *s = calloc(1, sizeof *s);
    if (!s) {
        return -ENOMEM;
    }
    s->h = h;
    s->api = api;
    s->home_fd = -1;
    int rc = read_options(s);
    static const char *const names[] = {"namespaces", "interfaces", "read_errors_total",
                                        "owner_scans_total"};
    int *ids[] = {&s->c_namespaces, &s->c_interfaces, &s->c_read_errors, &s->c_owner_scans};
    for (size_t i = 0; i < 4 && rc == 0; i++) {
        *ids[i] = api->counter_new(h, names[i]);
        rc = *ids[i] < 0 ? *ids[i] : 0;
    }
    if (rc == 0) {
        /* A dump's message holds up to 32 KiB of links (the kernel's cap
         * for a dump skb); twice that leaves room. */
        s->buf_cap = 65536;
        s->buf = malloc(s->buf_cap);
        rc = s->buf ? 0 : -ENOMEM;
    }
    if (rc != 0) {
        net_fini(s);
        return rc;
    }
    *state = s;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SOURCE,
    .name = "net",
    .version = "1.0.0",
    .description = "per-interface and per-network-namespace traffic, drops and TCP/UDP "
                   "counters, labelled with their container or VM",
    .options = net_options,
    .init = net_init,
    .collect = net_collect,
    .fini = net_fini,
};

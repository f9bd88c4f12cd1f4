/* tcp_probe: a source that checks TCP reachability. Every interval collect()
 * starts one non-blocking connect per target on the instance's libevent loop
 * (names resolved by evdns, sockets optionally created inside another network
 * namespace) and each target's tcp.probe event is published when its connect
 * completes, fails or times out. Config reading is in tcp_probe_conf.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tcp_probe.h"

#define TP_TOPIC "tcp.probe"
/* fini waits this many loop passes for evdns to confirm cancelled lookups. */
#define TP_CANCEL_PASSES 100
/* Probes started per loop pass; see struct tcp_probe's `next`. */
#define TP_BATCH 16

static const struct vigil_option tp_options[] = {
    {"targets", VIGIL_OPT_LIST, NULL,
     "what to probe: a list of { name, address: host:port, timeout, netns, expect }"},
    {"timeout", VIGIL_OPT_DURATION, "5s", "default per-target timeout (resolving + connecting)"},
    {"resolv_conf", VIGIL_OPT_STRING, NULL,
     "resolver configuration for names (default /etc/resolv.conf; /etc/hosts is read too)"},
    {NULL, 0, NULL, NULL},
};

/* Why a probe did not connect: the `error` attr. */
enum tp_error {
    TP_OK = 0,
    TP_ERR_REFUSED,     /* RST: nothing listens (or a firewall rejects with RST) */
    TP_ERR_TIMEOUT,     /* no answer within the target's timeout */
    TP_ERR_UNREACHABLE, /* no route, network down, no usable local address */
    TP_ERR_DENIED,      /* EACCES/EPERM: a local firewall or policy */
    TP_ERR_RESET,       /* reset during the handshake */
    TP_ERR_CONNECT,     /* any other connect error */
    TP_ERR_DNS,         /* the name did not resolve (or not in time) */
    TP_ERR_NETNS,       /* could not create the socket in the target's netns */
    TP_ERR_SOCKET,      /* socket() failed (e.g. out of file descriptors) */
};

static const char *const tp_error_names[] = {
    [TP_OK] = "",
    [TP_ERR_REFUSED] = "refused",
    [TP_ERR_TIMEOUT] = "timeout",
    [TP_ERR_UNREACHABLE] = "unreachable",
    [TP_ERR_DENIED] = "denied",
    [TP_ERR_RESET] = "reset",
    [TP_ERR_CONNECT] = "connect",
    [TP_ERR_DNS] = "dns",
    [TP_ERR_NETNS] = "netns",
    [TP_ERR_SOCKET] = "socket",
};

static enum tp_error classify_errno(int e)
{
    switch (e) {
    case ECONNREFUSED:
        return TP_ERR_REFUSED;
    case ETIMEDOUT:
        return TP_ERR_TIMEOUT;
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN:
    case EHOSTDOWN:
    case EADDRNOTAVAIL:
        return TP_ERR_UNREACHABLE;
    case EACCES:
    case EPERM:
        return TP_ERR_DENIED;
    case ECONNRESET:
        return TP_ERR_RESET;
    default:
        return TP_ERR_CONNECT;
    }
}

/* Warnings a target can repeat every interval: rate-limited per call site
 * by the host. */
static void tp_warn(struct tcp_probe *tp, const char *fmt, ...) VIGIL_PRINTF(2, 3);
static void tp_warn(struct tcp_probe *tp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tp->api->vlog_limited(tp->h, VIGIL_LOG_WARN, fmt, ap);
    va_end(ap);
}

/* Ends the probe in flight, if any: its socket, its events. */
static void probe_reset(struct tp_target *t)
{
    event_del(t->timer);
    event_del(t->io);
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
    if (t->state != TP_CANCELLING) {
        t->state = TP_IDLE;
    }
}

static void format_ip(const struct tp_target *t, char *buf, size_t cap)
{
    const struct sockaddr *sa = (const struct sockaddr *)&t->addr;
    const void *a = sa->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (!evutil_inet_ntop(sa->sa_family, a, buf, cap)) {
        snprintf(buf, cap, "?");
    }
}

/* Publishes the outcome of one probe and makes the target idle again.
 * `e` is TP_OK when connected (then fd is the connected socket); `detail`
 * says more about a failure. */
static void probe_finish(struct tp_target *t, enum tp_error e, const char *detail)
{
    struct tcp_probe *tp = t->tp;
    const struct vigil_api *api = tp->api;
    uint64_t now = api->mono_ns();
    if (tp->stopping) {
        probe_reset(t);
        return;
    }
    struct vigil_event_builder *ev = api->event_begin(tp->h, TP_TOPIC);
    api->event_label(ev, "target", t->name);
    api->event_label(ev, "address", t->address);
    if (t->netns) {
        api->event_label(ev, "netns", t->netns);
    }
    bool up = e == TP_OK;
    /* expect: closed is a segmentation check: any failed connect attempt is
     * the wanted answer, but a probe that never got to connect (no address,
     * no namespace, no socket) proves nothing either way. */
    bool attempted = e != TP_ERR_DNS && e != TP_ERR_NETNS && e != TP_ERR_SOCKET;
    bool expected = t->expect_closed ? (!up && attempted) : up;
    api->event_value_u64(ev, "up", up);
    api->event_value_u64(ev, "expected", expected);
    if (up) {
        api->event_value(ev, "connect_ms", (double)(now - t->connect_ns) / 1e6);
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        memset(&ti, 0, sizeof ti);
        if (getsockopt(t->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
            len >= offsetof(struct tcp_info, tcpi_rttvar) + sizeof ti.tcpi_rttvar) {
            api->event_value_u64(ev, "rtt_us", ti.tcpi_rtt);
            api->event_value_u64(ev, "rttvar_us", ti.tcpi_rttvar);
        }
    }
    if (t->resolved) {
        api->event_value(ev, "resolve_ms", (double)(t->resolve_ns - t->start_ns) / 1e6);
    }
    api->event_value_u64(ev, "skipped_total", t->skipped_total);
    if (t->published_once && now > t->last_pub_ns) {
        api->event_value(ev, "skipped_per_s",
                         (double)(t->skipped_total - t->skipped_at_last) /
                             ((double)(now - t->last_pub_ns) / 1e9));
    }
    t->published_once = true;
    t->skipped_at_last = t->skipped_total;
    t->last_pub_ns = now;
    if (!up) {
        api->event_attr_str(ev, "error", tp_error_names[e]);
        if (detail) {
            api->event_attr_str(ev, "error_detail", detail);
        }
    }
    if (t->numeric || t->resolved) {
        char ip[INET6_ADDRSTRLEN];
        format_ip(t, ip, sizeof ip);
        api->event_attr_str(ev, "ip", ip);
    }
    probe_reset(t);
    int rc = api->publish(tp->h, ev);
    if (rc != 0 && rc != VIGIL_ESTOPPED) {
        tp_warn(tp, "target '%s': event not published: %s", t->name, api->strerror(rc));
    }
}

static void probe_fail_errno(struct tp_target *t, int e)
{
    probe_finish(t, classify_errno(e), strerror(e));
}

/* The instance thread's own network namespace, to come back to after
 * creating a socket elsewhere. Opened on the instance thread (setns moves
 * only the calling thread), at the first collect. */
static int home_ns(struct tcp_probe *tp)
{
    if (tp->home_ns < 0 && !tp->home_tried) {
        tp->home_tried = true;
        tp->home_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (tp->home_ns < 0) {
            tp->api->log(tp->h, VIGIL_LOG_WARN,
                         "cannot open /proc/thread-self/ns/net (%s): targets with a netns "
                         "will fail with error=netns",
                         strerror(errno));
        }
    }
    return tp->home_ns;
}

/* A non-blocking TCP socket, created inside the target's namespace when it
 * has one. A socket keeps the namespace it was created in, so only this
 * thread moves, and only for the socket() call. Returns the fd or -1 with
 * *err set. */
static int probe_socket(struct tp_target *t, int family, enum tp_error *err, char *why,
                        size_t whycap)
{
    struct tcp_probe *tp = t->tp;
    int type = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;
    if (!t->ns_path[0]) {
        int fd = socket(family, type, IPPROTO_TCP);
        if (fd < 0) {
            *err = TP_ERR_SOCKET;
            snprintf(why, whycap, "socket: %s", strerror(errno));
        }
        return fd;
    }
    int home = home_ns(tp);
    if (home < 0) {
        *err = TP_ERR_NETNS;
        snprintf(why, whycap, "the daemon's own network namespace is unknown");
        return -1;
    }
    int nsfd = open(t->ns_path, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
        *err = TP_ERR_NETNS;
        snprintf(why, whycap, "cannot open %s: %s", t->ns_path, strerror(errno));
        tp_warn(tp, "target '%s': %s", t->name, why);
        return -1;
    }
    if (setns(nsfd, CLONE_NEWNET) != 0) {
        *err = TP_ERR_NETNS;
        snprintf(why, whycap, "cannot enter %s: %s%s", t->ns_path, strerror(errno),
                 errno == EPERM ? " (needs CAP_SYS_ADMIN)" : "");
        tp_warn(tp, "target '%s': %s", t->name, why);
        close(nsfd);
        return -1;
    }
    close(nsfd);
    int fd = socket(family, type, IPPROTO_TCP);
    int socket_errno = errno;
    if (setns(home, CLONE_NEWNET) != 0) {
        /* Cannot happen with the rights that let us leave; if it does, every
         * later socket of this instance would be made in the wrong place. */
        tp->api->log(tp->h, VIGIL_LOG_ERROR,
                     "cannot return to the daemon's network namespace: %s; no more probes "
                     "(restart vigild)",
                     strerror(errno));
        tp->broken = true;
        if (fd >= 0) {
            close(fd);
        }
        *err = TP_ERR_NETNS;
        snprintf(why, whycap, "cannot return from %s", t->ns_path);
        return -1;
    }
    if (fd < 0) {
        *err = TP_ERR_SOCKET;
        snprintf(why, whycap, "socket in %s: %s", t->ns_path, strerror(socket_errno));
    }
    return fd;
}

static void io_cb(evutil_socket_t fd, short what, void *arg);

/* t->addr is known: create the socket and start connecting. */
static void probe_connect(struct tp_target *t)
{
    struct tcp_probe *tp = t->tp;
    char why[TP_PATH_MAX + 128];
    enum tp_error err = TP_OK;
    t->state = TP_CONNECTING;
    t->fd = probe_socket(t, ((struct sockaddr *)&t->addr)->sa_family, &err, why, sizeof why);
    if (t->fd < 0) {
        probe_finish(t, err, why);
        return;
    }
    t->connect_ns = tp->api->mono_ns();
    if (connect(t->fd, (struct sockaddr *)&t->addr, t->addr_len) == 0) {
        probe_finish(t, TP_OK, NULL); /* loopback can complete at once */
        return;
    }
    if (errno != EINPROGRESS) {
        probe_fail_errno(t, errno);
        return;
    }
    if (event_assign(t->io, tp->base, t->fd, EV_WRITE, io_cb, t) != 0 ||
        event_add(t->io, NULL) != 0) {
        probe_finish(t, TP_ERR_SOCKET, "cannot watch the socket (libevent)");
    }
}

/* The socket became writable: the handshake finished one way or the other. */
static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct tp_target *t = arg;
    int e = 0;
    socklen_t len = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) {
        e = errno;
    }
    if (e == 0) {
        probe_finish(t, TP_OK, NULL);
    } else {
        probe_fail_errno(t, e);
    }
}

static void dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct tp_target *t = arg;
    t->req = NULL;
    if (result == EVUTIL_EAI_CANCEL || t->state != TP_RESOLVING) {
        /* Our timeout (already published) or fini cancelled it. */
        if (res) {
            evutil_freeaddrinfo(res);
        }
        t->state = TP_IDLE;
        return;
    }
    if (result != 0 || !res || res->ai_addrlen > sizeof t->addr) {
        char why[300];
        snprintf(why, sizeof why, "%s: %s", t->host,
                 result ? evutil_gai_strerror(result) : "no address");
        if (res) {
            evutil_freeaddrinfo(res);
        }
        probe_finish(t, TP_ERR_DNS, why);
        return;
    }
    /* The first answer: evdns lists IPv4 before IPv6. */
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    t->addr_len = (socklen_t)res->ai_addrlen;
    evutil_freeaddrinfo(res);
    t->resolved = true;
    t->resolve_ns = t->tp->api->mono_ns();
    probe_connect(t);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct tp_target *t = arg;
    char why[TP_HOST_MAX + 64];
    double s = (double)t->timeout_ns / 1e9;
    if (t->state == TP_RESOLVING) {
        snprintf(why, sizeof why, "%s: no answer from the resolver within %gs", t->host, s);
        /* The cancel is confirmed later through dns_cb (EAI_CANCEL); until
         * then the target counts as busy. */
        struct evdns_getaddrinfo_request *req = t->req;
        t->req = NULL;
        t->state = TP_CANCELLING;
        probe_finish(t, TP_ERR_DNS, why);
        if (req) {
            evdns_getaddrinfo_cancel(req);
        } else {
            t->state = TP_IDLE;
        }
    } else if (t->state == TP_CONNECTING) {
        snprintf(why, sizeof why, "no answer within %gs", s);
        probe_finish(t, TP_ERR_TIMEOUT, why);
    }
}

static void probe_start(struct tp_target *t)
{
    struct tcp_probe *tp = t->tp;
    t->start_ns = tp->api->mono_ns();
    t->resolved = false;
    struct timeval tv = {.tv_sec = (time_t)(t->timeout_ns / 1000000000u),
                         .tv_usec = (suseconds_t)(t->timeout_ns % 1000000000u / 1000u)};
    event_add(t->timer, &tv);
    if (t->numeric) {
        probe_connect(t);
        return;
    }
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    t->state = TP_RESOLVING;
    t->req = NULL;
    /* Answers from /etc/hosts come back inside this call (dns_cb runs and
     * returns NULL); only a request still in flight is kept. */
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(tp->dns, t->host, t->port, &hints, dns_cb, t);
    if (t->state == TP_RESOLVING) {
        t->req = req;
    }
}

/* Starts the next TP_BATCH probes of the round, and schedules the rest
 * after the loop has looked at the sockets once more. */
static void start_batch(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct tcp_probe *tp = arg;
    size_t end = tp->next + TP_BATCH < tp->ntargets ? tp->next + TP_BATCH : tp->ntargets;
    for (; tp->next < end && !tp->stopping && !tp->broken; tp->next++) {
        struct tp_target *t = &tp->targets[tp->next];
        if (t->state != TP_IDLE) {
            /* Never stack probes: a target slower than the interval is
             * probed every other round (or less), and the gap is counted. */
            if (t->skipped_total++ == 0) {
                tp_warn(tp,
                        "target '%s': the previous probe is still running, so this round "
                        "skips it (is its timeout, %gs, longer than the interval?); further "
                        "skips are counted in values.skipped_total, not logged",
                        t->name, (double)t->timeout_ns / 1e9);
            }
            continue;
        }
        probe_start(t);
    }
    if (tp->next < tp->ntargets && !tp->stopping && !tp->broken) {
        /* A zero timeout runs after the next poll for I/O: completions of
         * this batch are handled before the next batch starts. */
        struct timeval zero = {0, 0};
        event_add(tp->cont, &zero);
    }
}

static int tp_collect(void *state)
{
    struct tcp_probe *tp = state;
    if (tp->stopping) {
        return 0;
    }
    if (tp->broken) {
        return VIGIL_EPLUGIN; /* counted and logged by the host */
    }
    if (tp->any_netns) {
        home_ns(tp);
    }
    /* A round still being started (an interval shorter than a round's
     * start-up) is simply restarted: its probes in flight count as skipped. */
    event_del(tp->cont);
    tp->next = 0;
    start_batch(-1, 0, tp);
    return 0;
}

static void tp_fini(void *state)
{
    struct tcp_probe *tp = state;
    if (!tp) {
        return;
    }
    tp->stopping = true;
    /* evdns reports cancelled lookups from the loop, later; let it, so that
     * nothing of theirs is left when the resolver is freed. */
    size_t waiting = 0;
    for (size_t i = 0; i < tp->ntargets; i++) {
        struct tp_target *t = &tp->targets[i];
        if (t->req) {
            struct evdns_getaddrinfo_request *req = t->req;
            t->req = NULL;
            t->state = TP_CANCELLING;
            evdns_getaddrinfo_cancel(req);
        }
        waiting += t->state == TP_CANCELLING;
    }
    for (int pass = 0; waiting && pass < TP_CANCEL_PASSES; pass++) {
        event_base_loop(tp->base, EVLOOP_NONBLOCK);
        waiting = 0;
        for (size_t i = 0; i < tp->ntargets; i++) {
            waiting += tp->targets[i].state == TP_CANCELLING;
        }
    }
    if (waiting) {
        tp->api->log(tp->h, VIGIL_LOG_WARN, "%zu name lookups did not stop in time", waiting);
    }
    for (size_t i = 0; i < tp->ntargets; i++) {
        struct tp_target *t = &tp->targets[i];
        if (t->timer) {
            event_del(t->timer);
            event_free(t->timer);
        }
        if (t->io) {
            event_del(t->io);
            event_free(t->io);
        }
        if (t->fd >= 0) {
            close(t->fd);
        }
    }
    if (tp->cont) {
        event_free(tp->cont);
    }
    if (tp->home_ns >= 0) {
        close(tp->home_ns);
    }
    tp_conf_free(tp);
    free(tp);
}

static int tp_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    struct tcp_probe *tp = calloc(1, sizeof *tp);
    if (!tp) {
        return -ENOMEM;
    }
    tp->h = h;
    tp->api = api;
    tp->base = api->event_base(h);
    tp->home_ns = -1;
    int rc = tp_conf_read(tp);
    tp->cont = rc == 0 ? evtimer_new(tp->base, start_batch, tp) : NULL;
    if (rc == 0 && !tp->cont) {
        rc = -ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < tp->ntargets; i++) {
        struct tp_target *t = &tp->targets[i];
        t->timer = evtimer_new(tp->base, timer_cb, t);
        /* Re-assigned to each probe's socket; created here so a probe
         * allocates nothing. */
        t->io = event_new(tp->base, -1, 0, io_cb, t);
        if (!t->timer || !t->io) {
            rc = -ENOMEM;
        }
    }
    if (rc != 0) {
        tp_fini(tp);
        return rc;
    }
    *state = tp;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SOURCE,
    .name = "tcp_probe",
    .version = "1.0.0",
    .description = "TCP reachability of targets, from this or another network namespace",
    .options = tp_options,
    .init = tp_init,
    .collect = tp_collect,
    .fini = tp_fini,
};

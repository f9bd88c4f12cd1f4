/* tcp_probe: a source that checks TCP reachability and loss. Every interval
 * collect() starts `attempts` non-blocking connects per target, together, on
 * the instance's libevent loop (names resolved by evdns, sockets optionally
 * created inside another network namespace) and each target's tcp.probe event
 * is published when all its connects completed, failed or timed out. Config
 * reading is in tcp_probe_conf.c.
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
     "what to probe: a list of { name, address: host:port, timeout, attempts, netns, expect }"},
    {"timeout", VIGIL_OPT_DURATION, "5s", "default per-target timeout (resolving + connecting)"},
    {"attempts", VIGIL_OPT_INT, "1", "default connects per target per interval, 1..100"},
    {"resolv_conf", VIGIL_OPT_STRING, NULL,
     "resolver configuration for names (default /etc/resolv.conf; /etc/hosts is read too)"},
    {NULL, 0, NULL, NULL},
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

/* Ends the probe in flight, if any: its sockets, its events. */
static void probe_reset(struct tp_target *t)
{
    event_del(t->timer);
    for (unsigned i = 0; i < t->attempts; i++) {
        struct tp_attempt *a = &t->att[i];
        event_del(a->io);
        if (a->fd >= 0) {
            close(a->fd);
            a->fd = -1;
        }
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

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The nearest-rank percentile of sorted v[0..n), n > 0: always one of the
 * measured values. */
static double rank(const double *v, unsigned n, unsigned pct)
{
    unsigned r = (pct * n + 99) / 100;
    return v[r > 0 ? r - 1 : 0];
}

/* The most frequent error of the round's failed attempts; a tie goes to the
 * error seen first. */
static enum tp_error main_error(const struct tp_target *t)
{
    enum tp_error best = TP_OK;
    for (unsigned k = 0; k < t->nkinds; k++) {
        enum tp_error e = t->first_err[k];
        if (best == TP_OK || t->nerr[e] > t->nerr[best]) {
            best = e;
        }
    }
    return best;
}

/* Publishes the round of a target whose attempts have all ended, and makes
 * the target idle again. */
static void probe_publish(struct tp_target *t)
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
    bool up = t->connected > 0;
    /* expect: closed is a segmentation check: failed connects are the wanted
     * answer, but attempts that never got to connect (no address, no
     * namespace, no socket) prove nothing either way. */
    unsigned tried = t->connected;
    for (int e = TP_ERR_REFUSED; e <= TP_ERR_CONNECT; e++) {
        tried += t->nerr[e];
    }
    bool expected = t->expect_closed ? (!up && tried > 0) : up;
    api->event_value_u64(ev, "up", up);
    api->event_value_u64(ev, "expected", expected);
    api->event_value_u64(ev, "attempts", t->attempts);
    api->event_value_u64(ev, "connected", t->connected);
    api->event_value(ev, "loss_pct",
                     100.0 * (double)(t->attempts - t->connected) / (double)t->attempts);
    if (up) {
        qsort(t->ms, t->connected, sizeof *t->ms, cmp_double);
        double p50 = rank(t->ms, t->connected, 50);
        api->event_value(ev, "connect_ms", p50);
        api->event_value(ev, "connect_ms_p50", p50);
        api->event_value(ev, "connect_ms_p90", rank(t->ms, t->connected, 90));
        api->event_value(ev, "connect_ms_max", t->ms[t->connected - 1]);
        api->event_value_u64(ev, "retrans_total", t->retrans);
    }
    if (t->has_rtt) {
        api->event_value_u64(ev, "rtt_us", t->rtt_us);
        api->event_value_u64(ev, "rttvar_us", t->rttvar_us);
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
    enum tp_error e = main_error(t);
    if (e != TP_OK) {
        api->event_attr_str(ev, "error", tp_error_names[e]);
        if (t->detail[e][0]) {
            api->event_attr_str(ev, "error_detail", t->detail[e]);
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

/* Records how one attempt ended and closes its socket; publishes the round
 * when it was the last one. `e` is TP_OK when connected (then a->fd is the
 * connected socket); `detail` says more about a failure. */
static void attempt_end(struct tp_attempt *a, enum tp_error e, const char *detail)
{
    struct tp_target *t = a->t;
    if (a->done) {
        return;
    }
    a->done = true;
    if (e == TP_OK) {
        t->ms[t->connected++] = (double)(t->tp->api->mono_ns() - a->connect_ns) / 1e6;
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        memset(&ti, 0, sizeof ti);
        if (getsockopt(a->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) {
            if (!t->has_rtt &&
                len >= offsetof(struct tcp_info, tcpi_rttvar) + sizeof ti.tcpi_rttvar) {
                t->has_rtt = true;
                t->rtt_us = ti.tcpi_rtt;
                t->rttvar_us = ti.tcpi_rttvar;
            }
            /* Right after the handshake these are the SYN's retransmissions. */
            if (len >=
                offsetof(struct tcp_info, tcpi_total_retrans) + sizeof ti.tcpi_total_retrans) {
                t->retrans += ti.tcpi_total_retrans;
            }
        }
    } else {
        if (t->nerr[e]++ == 0) {
            t->first_err[t->nkinds++] = e;
            snprintf(t->detail[e], sizeof t->detail[e], "%s", detail ? detail : "");
        }
    }
    event_del(a->io);
    if (a->fd >= 0) {
        close(a->fd);
        a->fd = -1;
    }
    if (--t->pending == 0 && !t->starting) {
        probe_publish(t);
    }
}

/* Ends every attempt still running with `e` (a timeout, a failed lookup)
 * and publishes the round. */
static void probe_fail_all(struct tp_target *t, enum tp_error e, const char *detail)
{
    t->starting = true;
    for (unsigned i = 0; i < t->attempts; i++) {
        attempt_end(&t->att[i], e, detail);
    }
    t->starting = false;
    probe_publish(t);
}

static void attempt_fail_errno(struct tp_attempt *a, int e)
{
    attempt_end(a, classify_errno(e), strerror(e));
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

/* t->addr is known: create one attempt's socket and start connecting. */
static void attempt_connect(struct tp_attempt *a)
{
    struct tp_target *t = a->t;
    struct tcp_probe *tp = t->tp;
    char why[TP_PATH_MAX + 128];
    enum tp_error err = TP_OK;
    if (tp->broken) {
        attempt_end(a, TP_ERR_NETNS, "cannot return to the daemon's network namespace");
        return;
    }
    a->fd = probe_socket(t, ((struct sockaddr *)&t->addr)->sa_family, &err, why, sizeof why);
    if (a->fd < 0) {
        attempt_end(a, err, why);
        return;
    }
    a->connect_ns = tp->api->mono_ns();
    if (connect(a->fd, (struct sockaddr *)&t->addr, t->addr_len) == 0) {
        attempt_end(a, TP_OK, NULL); /* loopback can complete at once */
        return;
    }
    if (errno != EINPROGRESS) {
        attempt_fail_errno(a, errno);
        return;
    }
    if (event_assign(a->io, tp->base, a->fd, EV_WRITE, io_cb, a) != 0 ||
        event_add(a->io, NULL) != 0) {
        attempt_end(a, TP_ERR_SOCKET, "cannot watch the socket (libevent)");
    }
}

/* Starts all the target's attempts together: they share the round's
 * timeout, so the event comes at most one timeout after the round began, as
 * with one attempt. The round is published after the last one ended, never
 * from inside this loop. */
static void probe_connect(struct tp_target *t)
{
    t->state = TP_CONNECTING;
    t->starting = true;
    for (unsigned i = 0; i < t->attempts; i++) {
        attempt_connect(&t->att[i]);
    }
    t->starting = false;
    if (t->pending == 0) {
        probe_publish(t);
    }
}

/* The socket became writable: the handshake finished one way or the other. */
static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct tp_attempt *a = arg;
    int e = 0;
    socklen_t len = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) {
        e = errno;
    }
    if (e == 0) {
        attempt_end(a, TP_OK, NULL);
    } else {
        attempt_fail_errno(a, e);
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
        probe_fail_all(t, TP_ERR_DNS, why);
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
        probe_fail_all(t, TP_ERR_DNS, why);
        if (req) {
            evdns_getaddrinfo_cancel(req);
        } else {
            t->state = TP_IDLE;
        }
    } else if (t->state == TP_CONNECTING) {
        snprintf(why, sizeof why, "no answer within %gs", s);
        probe_fail_all(t, TP_ERR_TIMEOUT, why);
    }
}

static void probe_start(struct tp_target *t)
{
    struct tcp_probe *tp = t->tp;
    t->start_ns = tp->api->mono_ns();
    t->resolved = false;
    t->pending = t->attempts;
    t->connected = 0;
    t->retrans = 0;
    t->has_rtt = false;
    t->nkinds = 0;
    memset(t->nerr, 0, sizeof t->nerr);
    for (unsigned i = 0; i < t->attempts; i++) {
        t->att[i].done = false;
    }
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
        for (unsigned k = 0; t->att && k < t->attempts; k++) {
            struct tp_attempt *a = &t->att[k];
            if (a->io) {
                event_del(a->io);
                event_free(a->io);
            }
            if (a->fd >= 0) {
                close(a->fd);
            }
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
        if (!t->timer) {
            rc = -ENOMEM;
        }
        /* Re-assigned to each attempt's socket; created here so a probe
         * allocates nothing. */
        for (unsigned k = 0; rc == 0 && k < t->attempts; k++) {
            t->att[k].io = event_new(tp->base, -1, 0, io_cb, &t->att[k]);
            if (!t->att[k].io) {
                rc = -ENOMEM;
            }
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
    .version = "1.1.0",
    .description = "TCP reachability of targets, from this or another network namespace",
    .options = tp_options,
    .init = tp_init,
    .collect = tp_collect,
    .fini = tp_fini,
};

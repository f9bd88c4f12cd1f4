/* forward: the agent's side of a fleet. Sends the events its `match`
 * selects to a central's bus.ingest endpoint over a ZeroMQ DEALER, in the
 * wire format of pipeline/fleet/wire.h, and reports an event delivered only
 * once the central has acknowledged the batch that carried it.
 */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "curve/endpoint.h"
#include "curve/keys.h"
#include "vigil/plugin.h"
#include "wire.h"

#define FWD_INFLIGHT_MAX 64
/* A write() is cut into wire batches of at most this many events, so a
 * large write keeps `inflight` batches on the wire while the central works
 * on them (a batch acked, the next one goes). FWD_WRITE_EVENTS is the
 * write's size when the config leaves batch.max_events alone: the pause
 * between two writes (the last acks come back while nothing new goes out,
 * then the host takes its next batch) comes once per 32 wire batches; at
 * 16384 (8 wire batches) it cost 5-15 % of the hop's rate flat out. The
 * sink host's arena for a write of that size is ~10 MiB, used only while
 * the agent is behind. Measured with vigil-bench --forward
 * (docs/benchmarks.md). */
#define FWD_WIRE_EVENTS 2048
#define FWD_WRITE_EVENTS 65536
#define FWD_RTT_RING 64
#define FWD_RECV_BURST 1024 /* acks read per loop turn, for fairness */
#define NS_PER_MS 1000000ull

static const struct vigil_option forward_options[] = {
    {"server_key", VIGIL_OPT_STRING, NULL,
     "the central's public key file (its vigil.pub): CURVE, with `key`"},
    {"key", VIGIL_OPT_STRING, NULL,
     "this agent's secret key file (vigil.key, mode 0600; from vigil-keygen)"},
    {"plaintext", VIGIL_OPT_BOOL, "false",
     "allow a tcp endpoint off this host without CURVE (anyone on the path reads and "
     "can forge it)"},
    {"endpoint", VIGIL_OPT_STRING, NULL,
     "the central's bus.ingest endpoint, tcp://HOST:PORT or ipc://PATH (required)"},
    {"timeout", VIGIL_OPT_DURATION, "5s",
     "a batch not acknowledged by then answers RETRY for all its events"},
    {"inflight", VIGIL_OPT_INT, "4", "wire batches one write() may have on the wire, 1..64"},
    {"hwm", VIGIL_OPT_INT, NULL, "the socket's send and receive high-water marks (messages)"},
    {NULL, 0, NULL, NULL},
};

/* One wire batch of the write() in flight: events idx[off, off + count). */
struct fwd_batch {
    uint64_t id;
    size_t off, count;
    uint64_t sent_ns; /* monotonic */
    bool open;        /* on the wire, not answered yet */
};

struct forward {
    struct vigil_instance *h;
    const struct vigil_api *api;
    const char *endpoint;
    bool curve; /* server_key and key given */
    char server_z85[VIGIL_KEY_Z85_SIZE];
    struct vigil_keypair kp; /* cleared at fini */
    uint64_t timeout_ns;
    int inflight_max;
    int64_t hwm; /* 0: libzmq's default */

    void *zctx, *sock;
    void *mon; /* the DEALER's handshake failures (socket monitor) */
    struct event *sock_ev, *timer_ev;
    uint64_t connect_ns;
    uint64_t refused_ns, reopen_wait_ns; /* a central refused the handshake */
    struct vigil_wire_batch enc;
    uint64_t next_id;  /* below VIGIL_WIRE_RESEND */
    bool resend;       /* a RETRY came: the next batch carries VIGIL_WIRE_RESEND */
    size_t cap_events; /* per-batch bound, halved on TOO_MANY / TOO_BIG */

    /* The write() in flight. Wire event j of a batch is events[idx[off + j]]. */
    bool busy;
    const struct vigil_event *const *events;
    enum vigil_write_result *results;
    size_t n, next, per; /* next: first event not yet in a batch */
    size_t *idx;
    size_t idx_len, idx_cap;
    bool stop_sending; /* a fault: what is not sent yet answers RETRY */
    struct fwd_batch slots[FWD_INFLIGHT_MAX];
    int open;

    uint64_t rtt_us[FWD_RTT_RING];
    size_t rtt_n, rtt_pos;
    int c_inflight, c_acked, c_refused, c_timeouts, c_late, c_bad, c_rtt;
};

/* ---- Config ----------------------------------------------------------------------- */

static bool endpoint_ok(const char *e, const char **why)
{
    if (strncmp(e, "ipc://", 6) == 0) {
        *why = "ipc:// needs a path";
        return e[6] != '\0';
    }
    if (strncmp(e, "tcp://", 6) != 0) {
        *why = "must be tcp://HOST:PORT or ipc://PATH";
        return false;
    }
    const char *host = e + 6, *colon = strrchr(host, ':');
    if (!colon || colon == host) {
        *why = "tcp:// needs HOST:PORT";
        return false;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535) {
        *why = "tcp://HOST:PORT needs a port of 1..65535";
        return false;
    }
    return true;
}

/* server_key and key, both or neither; a tcp endpoint off this host needs
 * them or plaintext: true. Key files are read here, so --check finds a
 * missing one or a secret key others may read. Returns the errors made. */
static int read_keys(struct forward *w, const struct vigil_conf *root)
{
    const struct vigil_api *api = w->api;
    const struct vigil_conf *sn = api->conf_get(root, "server_key");
    const struct vigil_conf *kn = api->conf_get(root, "key");
    const char *spath = NULL, *kpath = NULL;
    char err[512];
    bool plaintext = false;
    api->conf_bool(api->conf_get(root, "plaintext"), &plaintext);
    api->conf_string(sn, &spath);
    api->conf_string(kn, &kpath);
    if (!spath != !kpath) {
        api->conf_error(w->h, sn ? sn : kn,
                        "CURVE needs both server_key (the central's vigil.pub) and key (this "
                        "agent's vigil.key)");
        return 1;
    }
    if (!spath) {
        if (w->endpoint && !plaintext && vigil_endpoint_is_remote(w->endpoint)) {
            api->conf_error(w->h, api->conf_get(root, "endpoint"),
                            "endpoint %s is off this host: give server_key and key (CURVE), or "
                            "say plaintext: true",
                            w->endpoint);
            return 1;
        }
        return 0;
    }
    int bad = 0;
    if (vigil_key_read_public(spath, w->server_z85, err, sizeof err) != 0) {
        api->conf_error(w->h, sn, "server_key: %s", err);
        bad++;
    }
    if (vigil_key_read_secret(kpath, NULL, &w->kp, err, sizeof err) != 0) {
        api->conf_error(w->h, kn, "key: %s", err);
        bad++;
    }
    w->curve = bad == 0;
    return bad;
}

static int read_config(struct forward *w)
{
    const struct vigil_api *api = w->api;
    const struct vigil_conf *root = api->conf_root(w->h), *n;
    int bad = 0;
    const char *why = NULL;
    n = api->conf_get(root, "endpoint");
    if (api->conf_string(n, &w->endpoint) != 0) {
        api->conf_error(w->h, n ? n : root,
                        "forward needs 'endpoint' (the central's bus.ingest, tcp://HOST:PORT)");
        bad++;
    } else if (!endpoint_ok(w->endpoint, &why)) {
        api->conf_error(w->h, n, "endpoint '%s': %s", w->endpoint, why);
        bad++;
    }
    bad += read_keys(w, root);
    n = api->conf_get(root, "timeout");
    api->conf_duration(n, &w->timeout_ns);
    if (w->timeout_ns < NS_PER_MS) {
        api->conf_error(w->h, n, "timeout must be at least 1ms");
        bad++;
    }
    int64_t v = 4;
    n = api->conf_get(root, "inflight");
    api->conf_int(n, &v);
    if (v < 1 || v > FWD_INFLIGHT_MAX) {
        api->conf_error(w->h, n, "inflight must be 1..%d, not %" PRId64, FWD_INFLIGHT_MAX, v);
        bad++;
    }
    w->inflight_max = (int)v;
    n = api->conf_get(root, "hwm");
    if (n) {
        api->conf_int(n, &w->hwm);
        if (w->hwm < 1 || w->hwm > 1000000) {
            api->conf_error(w->h, n, "hwm must be 1..1000000, not %" PRId64, w->hwm);
            bad++;
        }
    }
    return bad ? VIGIL_ECONFIG : 0;
}

/* ---- Counters --------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void note_rtt(struct forward *w, uint64_t rtt_ns)
{
    w->rtt_us[w->rtt_pos] = rtt_ns / 1000u;
    w->rtt_pos = (w->rtt_pos + 1) % FWD_RTT_RING;
    if (w->rtt_n < FWD_RTT_RING) {
        w->rtt_n++;
    }
    uint64_t sorted[FWD_RTT_RING];
    memcpy(sorted, w->rtt_us, w->rtt_n * sizeof *sorted);
    qsort(sorted, w->rtt_n, sizeof *sorted, cmp_u64);
    w->api->counter_set(w->h, w->c_rtt, sorted[w->rtt_n / 2]);
}

/* ---- The socket ------------------------------------------------------------------- */

static void on_socket(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);

static void close_socket(struct forward *w)
{
    if (w->sock_ev) {
        event_free(w->sock_ev);
        w->sock_ev = NULL;
    }
    if (w->mon) {
        zmq_close(w->mon);
        w->mon = NULL;
    }
    if (w->sock) {
        zmq_close(w->sock);
        w->sock = NULL;
    }
}

static int set_int(void *sock, int opt, int v)
{
    return zmq_setsockopt(sock, opt, &v, sizeof v);
}

/* The DEALER, made in the first write(): init() also runs under --check.
 * IMMEDIATE: nothing queues while no central is connected, so a write that
 * cannot be sent answers RETRY at once and the host's spool keeps it. */
static int open_socket(struct forward *w)
{
    if (!w->zctx && !(w->zctx = zmq_ctx_new())) {
        return -errno;
    }
    w->sock = zmq_socket(w->zctx, ZMQ_DEALER);
    if (!w->sock) {
        return -errno;
    }
    int rc = set_int(w->sock, ZMQ_IMMEDIATE, 1) | set_int(w->sock, ZMQ_LINGER, 0) |
             set_int(w->sock, ZMQ_RECONNECT_IVL, 100) |
             set_int(w->sock, ZMQ_RECONNECT_IVL_MAX, 5000) |
             /* ZMTP heartbeats notice a dead link that tcp alone would not. */
             set_int(w->sock, ZMQ_HEARTBEAT_IVL, 1000) |
             set_int(w->sock, ZMQ_HEARTBEAT_TIMEOUT, 5000) | set_int(w->sock, ZMQ_TCP_KEEPALIVE, 1);
    if (w->hwm) {
        rc |= set_int(w->sock, ZMQ_SNDHWM, (int)w->hwm) | set_int(w->sock, ZMQ_RCVHWM, (int)w->hwm);
    }
    if (w->curve) {
        rc |= zmq_setsockopt(w->sock, ZMQ_CURVE_SERVERKEY, w->server_z85, VIGIL_KEY_Z85_LEN) |
              zmq_setsockopt(w->sock, ZMQ_CURVE_PUBLICKEY, w->kp.public_z85, VIGIL_KEY_Z85_LEN) |
              zmq_setsockopt(w->sock, ZMQ_CURVE_SECRETKEY, w->kp.secret_z85, VIGIL_KEY_Z85_LEN);
    }
    if (rc != 0) {
        rc = -errno;
        close_socket(w);
        return rc;
    }
    /* ZeroMQ gives up on a connection whose handshake the central refused
     * (its ZAP handler did not know our key) and never tries again: watch
     * for that, so the socket can be made anew (reopen_if_refused). */
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://vigil.forward.%p", (void *)w);
    if (zmq_socket_monitor(w->sock, mon,
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) !=
            0 ||
        !(w->mon = zmq_socket(w->zctx, ZMQ_PAIR)) || zmq_connect(w->mon, mon) != 0) {
        rc = -errno;
        close_socket(w);
        return rc;
    }
    if (zmq_connect(w->sock, w->endpoint) != 0) {
        rc = -errno;
        w->api->log_limited(w->h, VIGIL_LOG_ERROR, "cannot connect to %s: %s", w->endpoint,
                            zmq_strerror(-rc));
        close_socket(w);
        return rc;
    }
    int fd;
    size_t len = sizeof fd;
    zmq_getsockopt(w->sock, ZMQ_FD, &fd, &len);
    w->sock_ev = event_new(w->api->event_base(w->h), fd, EV_READ | EV_PERSIST, on_socket, w);
    if (!w->sock_ev || event_add(w->sock_ev, NULL) != 0) {
        close_socket(w);
        return -ENOMEM;
    }
    event_active(w->sock_ev, EV_READ, 0);
    w->connect_ns = w->api->mono_ns();
    w->api->log(w->h, VIGIL_LOG_INFO, "forwarding to %s", w->endpoint);
    return 0;
}

#define REOPEN_FIRST_NS (5ull * 1000000000ull)
#define REOPEN_MAX_NS (300ull * 1000000000ull)

/* Whether the central refused our handshake since the last look (logged:
 * the operator has a key to add). */
static bool handshake_refused(struct forward *w)
{
    bool refused = false;
    unsigned char ev[6];
    while (zmq_recv(w->mon, ev, sizeof ev, ZMQ_DONTWAIT) >= 0) {
        int more;
        size_t len = sizeof more;
        char addr[256] = "";
        if (zmq_getsockopt(w->mon, ZMQ_RCVMORE, &more, &len) == 0 && more) {
            int n = zmq_recv(w->mon, addr, sizeof addr - 1, 0);
            addr[n > 0 ? (size_t)n < sizeof addr ? n : (int)sizeof addr - 1 : 0] = '\0';
        }
        uint16_t what;
        uint32_t code;
        memcpy(&what, ev, sizeof what);
        memcpy(&code, ev + 2, sizeof code);
        refused = true;
        w->api->log_limited(w->h, VIGIL_LOG_ERROR,
                            what == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                                ? "the central at %s refused this agent (status %u): is its key in "
                                  "the central's authorized_keys, and server_key the central's?"
                                : "the handshake with %s failed (protocol error %u): is it a "
                                  "vigild bus.ingest with the same CURVE setting?",
                            *addr ? addr : w->endpoint, (unsigned)code);
    }
    return refused;
}

/* After a refused handshake the socket is dead for good: make it anew,
 * first after REOPEN_FIRST_NS, then backing off to REOPEN_MAX_NS while the
 * central keeps refusing (a key added there and SIGHUP let us in). */
static void reopen_if_refused(struct forward *w)
{
    uint64_t now = w->api->mono_ns();
    if (w->mon && handshake_refused(w)) {
        w->refused_ns = now;
        w->reopen_wait_ns = w->reopen_wait_ns ? w->reopen_wait_ns * 2 : REOPEN_FIRST_NS;
        if (w->reopen_wait_ns > REOPEN_MAX_NS) {
            w->reopen_wait_ns = REOPEN_MAX_NS;
        }
    }
    if (w->refused_ns && now - w->refused_ns >= w->reopen_wait_ns) {
        w->refused_ns = 0;
        close_socket(w);
        if (open_socket(w) == 0) {
            w->api->log(w->h, VIGIL_LOG_INFO, "connecting to %s again after the refused handshake",
                        w->endpoint);
        }
    }
}

static bool can_send(struct forward *w)
{
    int events = 0;
    size_t len = sizeof events;
    return zmq_getsockopt(w->sock, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLOUT);
}

/* ---- Batches ---------------------------------------------------------------------- */

static void set_inflight(struct forward *w)
{
    w->api->counter_set(w->h, w->c_inflight, (uint64_t)w->open);
}

/* The next deadline of the batches on the wire, or none. */
static void arm_timer(struct forward *w)
{
    uint64_t first = UINT64_MAX;
    for (int i = 0; i < w->inflight_max; i++) {
        if (w->slots[i].open && w->slots[i].sent_ns < first) {
            first = w->slots[i].sent_ns;
        }
    }
    if (first == UINT64_MAX) {
        evtimer_del(w->timer_ev);
        return;
    }
    uint64_t now = w->api->mono_ns(), due = first + w->timeout_ns;
    uint64_t wait = due > now ? due - now : 0;
    struct timeval tv = {.tv_sec = (time_t)(wait / 1000000000u),
                         .tv_usec = (suseconds_t)(wait % 1000000000u / 1000u)};
    evtimer_add(w->timer_ev, &tv);
}

/* Fills the encoder with the next events, at most w->per. Events that can
 * never go (a topic outside 1..255 bytes, over 1 MiB) fail here. Returns
 * the events in it, or -ENOMEM. */
static long fill(struct forward *w, struct fwd_batch *b)
{
    const struct vigil_api *api = w->api;
    b->off = w->idx_len;
    b->count = 0;
    while (w->next < w->n && b->count < w->per) {
        const struct vigil_event *ev = w->events[w->next];
        size_t tl, bl;
        const char *topic = api->event_topic(ev, &tl);
        const void *body = api->event_body(ev, &bl);
        int rc = vigil_wire_batch_add(&w->enc, topic, tl, body, bl);
        if (rc == -ENOBUFS) {
            break; /* 1 MiB: the next batch takes it */
        }
        if (rc == -ENOMEM) {
            return rc;
        }
        if (rc != 0) {
            w->results[w->next] = VIGIL_WRITE_FAIL;
            api->log_limited(w->h, VIGIL_LOG_ERROR,
                             "an event on %.*s cannot be forwarded (%s): failed", (int)tl, topic,
                             api->strerror(rc));
            w->next++;
            continue;
        }
        w->idx[w->idx_len++] = w->next++;
        b->count++;
    }
    return (long)b->count;
}

/* Sends batches while fewer than inflight are on the wire and events are
 * left; back to back, so a write's batches share one connection. */
static void send_more(struct forward *w)
{
    bool sent = false;
    while (!w->stop_sending && w->next < w->n && w->open < w->inflight_max) {
        struct fwd_batch *b = NULL;
        for (int i = 0; i < w->inflight_max && !b; i++) {
            b = w->slots[i].open ? NULL : &w->slots[i];
        }
        if (!can_send(w)) {
            w->stop_sending = true;
            if (w->api->mono_ns() - w->connect_ns > 1000000000u) {
                w->api->log_limited(w->h, VIGIL_LOG_WARN,
                                    "no central connected at %s: %zu events to retry", w->endpoint,
                                    w->n - w->next);
            }
            break;
        }
        size_t mark = w->idx_len, from = w->next;
        /* The flag tells the central this batch starts the resend: until
         * then it answers RETRY to the batches behind a RETRY'd one, so
         * that they cannot overtake it (docs/fleet.md, "Batch ids"). */
        uint64_t id = w->next_id | (w->resend ? VIGIL_WIRE_RESEND : 0);
        if (vigil_wire_batch_begin(&w->enc, id) != 0 || fill(w, b) < 0) {
            w->stop_sending = true;
            w->api->log_limited(w->h, VIGIL_LOG_ERROR, "no memory for a batch: retrying");
            w->idx_len = mark;
            w->next = from;
            break;
        }
        if (b->count == 0) {
            continue; /* every event of it failed in fill() */
        }
        if (zmq_send(w->sock, w->enc.head, VIGIL_WIRE_HEAD_LEN, ZMQ_SNDMORE | ZMQ_DONTWAIT) !=
                VIGIL_WIRE_HEAD_LEN ||
            zmq_send(w->sock, w->enc.data, w->enc.len, ZMQ_DONTWAIT) < 0) {
            /* The connection went away: this batch and the rest retry. */
            w->api->log_limited(w->h, VIGIL_LOG_WARN, "cannot send to %s: %s; retrying",
                                w->endpoint, zmq_strerror(errno));
            w->stop_sending = true;
            w->idx_len = mark;
            w->next = from;
            break;
        }
        b->id = id; /* the ack echoes it as sent, flag included */
        w->next_id++;
        w->resend = false;
        b->sent_ns = w->api->mono_ns();
        b->open = true;
        w->open++;
        sent = true;
    }
    if (sent) {
        set_inflight(w);
        arm_timer(w);
        event_active(w->sock_ev, EV_READ, 0); /* a send may have eaten the fd's edge */
    }
}

/* After answers: send what the window now allows; once every batch is
 * answered and nothing is left to send, hand the verdicts back. */
static void progress(struct forward *w)
{
    if (!w->busy) {
        return;
    }
    send_more(w);
    if (w->open > 0) {
        return;
    }
    w->busy = false;
    w->events = NULL;
    w->results = NULL;
    w->api->write_done(w->h); /* last: the host may start the next write */
}

static void close_batch(struct forward *w, struct fwd_batch *b, enum vigil_write_result r)
{
    for (size_t j = 0; j < b->count; j++) {
        w->results[w->idx[b->off + j]] = r;
    }
    if (r == VIGIL_WRITE_RETRY) {
        w->stop_sending = true; /* keep order: the rest goes after these */
    }
    b->open = false;
    w->open--;
    set_inflight(w);
}

/* TOO_MANY / TOO_BIG: batches half the size of this one from now on. */
static void shrink(struct forward *w, const struct fwd_batch *b, const struct vigil_wire_ack *a)
{
    size_t half = b->count / 2 ? b->count / 2 : 1;
    if (half < w->cap_events) {
        w->cap_events = half;
        w->api->log(w->h, VIGIL_LOG_WARN,
                    "%s refused a batch of %zu events (%s, limit %" PRIu32
                    "): batches of at most %zu events from now on",
                    w->endpoint, b->count, vigil_wire_reason_name(a->reason), a->detail, half);
    }
}

static void apply_ack(struct forward *w, struct fwd_batch *b, const struct vigil_wire_ack *a)
{
    w->reopen_wait_ns = 0; /* the central lets us in */
    const struct vigil_api *api = w->api;
    note_rtt(w, api->mono_ns() - b->sent_ns);
    switch (a->status) {
    case VIGIL_WIRE_OK:
        api->counter_add(w->h, w->c_acked, b->count);
        close_batch(w, b, VIGIL_WRITE_OK);
        return;
    case VIGIL_WIRE_REFUSED: {
        close_batch(w, b, VIGIL_WRITE_OK);
        for (uint32_t i = 0; i < a->n_refused; i++) {
            w->results[w->idx[b->off + vigil_wire_ack_refused_at(a, i)]] = VIGIL_WRITE_FAIL;
        }
        api->counter_add(w->h, w->c_acked, b->count - a->n_refused);
        api->counter_add(w->h, w->c_refused, a->n_refused);
        api->log_limited(w->h, VIGIL_LOG_WARN,
                         "%s refused %" PRIu32 " of %zu events as malformed: failed", w->endpoint,
                         a->n_refused, b->count);
        return;
    }
    case VIGIL_WIRE_RETRY:
        w->resend = true;
        if (a->retry_after_ms > 0) {
            api->retry_after(w->h, (uint64_t)a->retry_after_ms * NS_PER_MS);
        }
        api->log_limited(w->h, VIGIL_LOG_WARN,
                         "%s sheds load: %zu events to retry (after %" PRIu32 " ms)", w->endpoint,
                         b->count, a->retry_after_ms);
        close_batch(w, b, VIGIL_WRITE_RETRY);
        return;
    case VIGIL_WIRE_ERROR:
        break;
    }
    switch (a->reason) {
    case VIGIL_WIRE_BAD_FRAMES:
    case VIGIL_WIRE_BAD_RECORD:
        api->log_limited(w->h, VIGIL_LOG_ERROR,
                         "%s could not parse a batch of %zu events (%s at byte %" PRIu32
                         "): a bug in this agent; the events failed",
                         w->endpoint, b->count, vigil_wire_reason_name(a->reason), a->detail);
        close_batch(w, b, VIGIL_WRITE_FAIL);
        return;
    case VIGIL_WIRE_TOO_MANY:
    case VIGIL_WIRE_TOO_BIG:
        shrink(w, b, a);
        close_batch(w, b, VIGIL_WRITE_RETRY);
        return;
    case VIGIL_WIRE_BAD_HEADER:
    default:
        api->log_limited(w->h, VIGIL_LOG_ERROR,
                         "%s does not understand this agent's batches (bad header): it runs "
                         "another protocol version; retrying",
                         w->endpoint);
        close_batch(w, b, VIGIL_WRITE_RETRY);
        return;
    }
}

static struct fwd_batch *find_open(struct forward *w, uint64_t id)
{
    for (int i = 0; i < w->inflight_max; i++) {
        if (w->slots[i].open && w->slots[i].id == id) {
            return &w->slots[i];
        }
    }
    return NULL;
}

/* One ack: two frames (f1, f2). */
static void on_ack(struct forward *w, zmq_msg_t *f1, zmq_msg_t *f2)
{
    const struct vigil_api *api = w->api;
    const void *head = zmq_msg_data(f1), *body = zmq_msg_data(f2);
    size_t head_len = zmq_msg_size(f1), body_len = zmq_msg_size(f2);
    uint64_t id;
    struct vigil_wire_ack a;
    struct vigil_wire_error err = {0};
    if (vigil_wire_ack_id(head, head_len, &id) != 0) {
        api->counter_add(w->h, w->c_bad, 1);
        api->log_limited(w->h, VIGIL_LOG_WARN, "ignored a message from %s that is no ack",
                         w->endpoint);
        return;
    }
    if (id == 0) {
        /* The central could not read a header: it speaks another version.
         * Every batch on the wire would get the same answer. */
        if (vigil_wire_ack_decode(&a, head, head_len, body, body_len, 0, &err) != 0) {
            api->counter_add(w->h, w->c_bad, 1);
            api->log_limited(w->h, VIGIL_LOG_WARN, "ignored a malformed ack from %s: %s",
                             w->endpoint, err.why ? err.why : "?");
            return;
        }
        a.reason = VIGIL_WIRE_BAD_HEADER; /* whatever it says: docs/fleet.md */
        for (int i = 0; i < w->inflight_max; i++) {
            if (w->slots[i].open) {
                apply_ack(w, &w->slots[i], &a);
            }
        }
        return;
    }
    struct fwd_batch *b = find_open(w, id);
    if (!b) {
        api->counter_add(w->h, w->c_late, 1);
        api->log_limited(w->h, VIGIL_LOG_WARN,
                         "ignored an ack from %s for batch %" PRIu64
                         ", not on the wire (timed out or unknown)",
                         w->endpoint, id);
        return;
    }
    if (vigil_wire_ack_decode(&a, head, head_len, body, body_len, b->count, &err) != 0) {
        api->counter_add(w->h, w->c_bad, 1);
        api->log_limited(w->h, VIGIL_LOG_WARN,
                         "ignored a malformed ack from %s for batch %" PRIu64 ": %s", w->endpoint,
                         id, err.why ? err.why : "?");
        return; /* the batch times out and is resent */
    }
    apply_ack(w, b, &a);
}

/* Reads one message; returns 1, or 0 on EAGAIN. Odd frame counts count as
 * malformed acks. */
static int read_one(struct forward *w)
{
    zmq_msg_t f[2];
    zmq_msg_init(&f[0]);
    zmq_msg_init(&f[1]);
    if (zmq_msg_recv(&f[0], w->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&f[0]);
        zmq_msg_close(&f[1]);
        return 0;
    }
    size_t frames = 1;
    bool more = zmq_msg_more(&f[0]);
    while (more) {
        zmq_msg_t *into = frames == 1 ? &f[1] : &f[0];
        if (frames > 1) {
            zmq_msg_close(into);
            zmq_msg_init(into);
        }
        if (zmq_msg_recv(into, w->sock, 0) < 0) { /* the rest of a message is there already */
            break;
        }
        frames++;
        more = zmq_msg_more(into);
    }
    if (frames == 2) {
        on_ack(w, &f[0], &f[1]);
    } else {
        w->api->counter_add(w->h, w->c_bad, 1);
        w->api->log_limited(w->h, VIGIL_LOG_WARN,
                            "ignored a message of %zu frames from %s (an ack has 2)", frames,
                            w->endpoint);
    }
    zmq_msg_close(&f[0]);
    zmq_msg_close(&f[1]);
    return 1;
}

/* ZMQ_FD is edge-triggered: drain to EAGAIN (in bursts, re-arming
 * ourselves), then look at ZMQ_EVENTS once more before sleeping. */
static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct forward *w = arg;
    int got = 0;
    while (got < FWD_RECV_BURST && read_one(w)) {
        got++;
    }
    progress(w);
    if (!w->sock) {
        return;
    }
    int events = 0;
    size_t len = sizeof events;
    if (got == FWD_RECV_BURST ||
        (zmq_getsockopt(w->sock, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN))) {
        event_active(w->sock_ev, EV_READ, 0);
    }
}

/* Batches past their deadline answer RETRY. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct forward *w = arg;
    uint64_t now = w->api->mono_ns();
    size_t events = 0;
    int batches = 0;
    for (int i = 0; i < w->inflight_max; i++) {
        struct fwd_batch *b = &w->slots[i];
        /* A timer may fire a little early: a millisecond's slack. */
        if (b->open && now + NS_PER_MS - b->sent_ns >= w->timeout_ns) {
            events += b->count;
            batches++;
            close_batch(w, b, VIGIL_WRITE_RETRY);
        }
    }
    if (batches) {
        w->api->counter_add(w->h, w->c_timeouts, (uint64_t)batches);
        w->api->log_limited(w->h, VIGIL_LOG_WARN,
                            "%d batches (%zu events) not acknowledged by %s in time: retrying",
                            batches, events, w->endpoint);
    }
    arm_timer(w);
    progress(w);
}

/* ---- The plugin ------------------------------------------------------------------- */

static void forward_fini(void *state)
{
    struct forward *w = state;
    if (!w) {
        return;
    }
    /* A write still in flight is the host's: at stop it waits a grace
     * period for write_done(), then spools the batch's events itself; after
     * that, write_done() would be ignored, so it is not called here. */
    if (w->timer_ev) {
        event_free(w->timer_ev);
    }
    close_socket(w);
    if (w->zctx) {
        zmq_ctx_term(w->zctx);
    }
    vigil_wire_batch_fini(&w->enc);
    vigil_keypair_clear(&w->kp);
    free(w->idx);
    free(w);
}

static int forward_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    struct forward *w = calloc(1, sizeof *w);
    if (!w) {
        return -ENOMEM;
    }
    w->h = h;
    w->api = api;
    vigil_wire_batch_init(&w->enc, 0);
    int rc = read_config(w);
    if (rc != 0) {
        forward_fini(w);
        return rc;
    }
    /* Ids grow for the life of the agent and across its restarts: the wall
     * clock in ns at start is above any id an earlier run used. */
    w->next_id = api->now_ns() % VIGIL_WIRE_RESEND; /* below 2^63 until the year 2262 anyway */
    if (w->next_id == 0) {
        w->next_id = 1;
    }
    w->cap_events = VIGIL_WIRE_MAX_EVENTS;
    static const char *const names[] = {"inflight",       "acked_total",     "refused_total",
                                        "timeouts_total", "late_acks_total", "bad_acks_total",
                                        "rtt_us"};
    int *ids[] = {&w->c_inflight, &w->c_acked, &w->c_refused, &w->c_timeouts,
                  &w->c_late,     &w->c_bad,   &w->c_rtt};
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        *ids[i] = api->counter_new(h, names[i]);
        if (*ids[i] < 0) {
            rc = *ids[i];
            forward_fini(w);
            return rc;
        }
    }
    w->timer_ev = evtimer_new(api->event_base(h), on_timer, w);
    if (!w->timer_ev) {
        forward_fini(w);
        return -ENOMEM;
    }
    *state = w;
    return 0;
}

static int forward_write(void *state, const struct vigil_event *const *events, size_t n,
                         enum vigil_write_result *results)
{
    struct forward *w = state;
    if (w->busy) {
        return -EBUSY; /* the host broke the contract: retry everything */
    }
    for (size_t i = 0; i < n; i++) {
        results[i] = VIGIL_WRITE_RETRY;
    }
    if (n == 0) {
        return 0;
    }
    if (w->sock) {
        reopen_if_refused(w);
    }
    if (!w->sock) {
        int rc = open_socket(w);
        if (rc != 0) {
            return rc;
        }
    }
    if (n > w->idx_cap) {
        size_t *p = realloc(w->idx, n * sizeof *p);
        if (!p) {
            return -ENOMEM;
        }
        w->idx = p;
        w->idx_cap = n;
    }
    w->events = events;
    w->results = results;
    w->n = n;
    w->next = 0;
    w->idx_len = 0;
    w->stop_sending = false;
    size_t k = (size_t)w->inflight_max;
    w->per = (n + k - 1) / k;
    if (w->per > FWD_WIRE_EVENTS) {
        w->per = FWD_WIRE_EVENTS;
    }
    if (w->per > w->cap_events) {
        w->per = w->cap_events;
    }
    send_more(w);
    if (w->open == 0) {
        w->events = NULL;
        w->results = NULL;
        return 0; /* nothing on the wire: every event has its verdict */
    }
    w->busy = true;
    return VIGIL_WRITE_ASYNC;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SINK,
    .name = "forward",
    .version = "1.0.0",
    .description = "forwards events to a central's bus.ingest, acknowledged per batch",
    .options = forward_options,
    .init = forward_init,
    .write = forward_write,
    .fini = forward_fini,
    .batch_max_events = FWD_WRITE_EVENTS,
};

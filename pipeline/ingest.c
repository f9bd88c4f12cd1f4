/* The ingest endpoint (ingest.h): one thread with a ROUTER for the agents
 * and a PUSH into the bus's in-process batch endpoint (VIGIL_BUS_TRUSTED).
 * A batch is decoded, each event checked (vigil_event_check, as the bus
 * does) and looked up by (host, source, seq), the new ones go to the bus in
 * one message, and the ack goes back once the sinks hold them. A batch that cannot be taken soon is
 * answered RETRY (shed), and the ROUTER's monitor tells which agents are connected.
 */
#include "ingest.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "bus.h"
#include "event.h"
#include "fleet/wire.h"
#include "log.h"
#include "seqtab.h"

#define SOURCES_MAX 65536 /* (host, source) pairs remembered for resent events */
#define AGENTS_MAX 4096
#define AGENT_NAME_MAX 127
#define POLL_MS 100     /* how soon a stop request is seen */
#define PENDING_MAX 256 /* batches answered but not yet acked (waiting for the sinks) */
#define BARRIER_POLL_MS 1
#define NS_PER_MS 1000000ull
#define STR_(x) #x
#define STR(x) STR_(x) /* a constant's value in a message */

/* Load shedding (docs/fleet.md, "The central's ingest endpoint"): a batch
 * is answered RETRY, asking the agent to wait SHED_RETRY_AFTER_MS, when
 * PENDING_MAX acks already wait for the sinks or when it waited
 * SHED_BLOCKED_MS in all for room in the bus; its connection's later
 * batches are answered the same until one carries VIGIL_WIRE_RESEND, or
 * for SHED_HOLD_MS at most (an agent that never sets the flag). */
#define SHED_RETRY_AFTER_MS 200
#define SHED_BLOCKED_MS 500
#define SHED_HOLD_MS 10000
#define SHED_CONNS_MAX AGENTS_MAX /* connections held back at once */

/* Connections: ZMTP heartbeats close one behind a dead link within
 * seconds, which the monitor then reports. */
#define HEARTBEAT_IVL_MS 1000
#define HEARTBEAT_TIMEOUT_MS 5000
#define FDS_MAX (1 << 20) /* a connection on a higher fd is not counted in `connected` */
#define FD_CLOSED (-1)    /* fd_agent: the monitor's last word on that fd was DISCONNECTED */

struct agent {
    char name[AGENT_NAME_MAX + 1];
    struct vigil_agent_stats s;
    unsigned conns; /* its live connections that sent a batch (ingest thread only) */
};

/* A connection (its ROUTER routing id) answered RETRY: its later batches
 * are answered RETRY too until one carries VIGIL_WIRE_RESEND. */
struct shed_conn {
    uint64_t since_ns; /* monotonic, of the RETRY that started it */
    size_t id_len;
    unsigned char id[255]; /* a routing id is at most 255 bytes */
};

/* A batch whose events are in the bus, acked once the sinks passed its
 * barrier. */
struct pending_ack {
    uint64_t serial;
    zmq_msg_t id;
    unsigned char *frames; /* the ack's two frames, back to back */
    size_t head_len, body_len;
};

struct vigil_ingest {
    void *router, *push;
    void *monitor; /* PAIR: the ROUTER's ACCEPTED and DISCONNECTED events */
    vigil_counter *const *progress;
    size_t nprogress;
    char host[256];
    uint64_t serial; /* of the last barrier sent */
    struct vigil_event_builder barrier;
    struct pending_ack pending[PENDING_MAX]; /* ring */
    size_t pend_head, pend_len;
    size_t max_event_bytes;
    pthread_t thread;
    bool started;
    _Atomic bool stopping;
    struct vigil_ingest_stats stats;

    pthread_mutex_t lock; /* agents: grown by the thread, read by the self reporter */
    struct agent *agents;
    size_t nagents, agents_cap;

    /* Ingest thread only. */
    struct vigil_seqtab seen;
    struct vigil_wire_ack_buf ack;
    uint32_t *refused; /* VIGIL_WIRE_MAX_EVENTS indices */
    struct vigil_ratelimit log_rl, shed_rl;
    struct vigil_bus_handoff out;   /* the batch's new events, for the bus in one message */
    struct vigil_event_head *heads; /* and their heads, marked published once sent */
    size_t heads_cap;
    int32_t *fd_agent;      /* per fd: its connection's agent index + 1, 0, or FD_CLOSED */
    size_t fd_cap;          /* grown to the highest fd seen */
    struct shed_conn *shed; /* SHED_CONNS_MAX; the first nshed are held back */
    size_t nshed;
};

static int watch_connections(struct vigil_ingest *g);

struct vigil_ingest *vigil_ingest_new(void *zctx, const struct vigil_ingest_opts *o, char *err,
                                      size_t errlen)
{
    struct vigil_ingest *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&g->lock, NULL);
    g->max_event_bytes = o->max_event_bytes;
    g->progress = o->progress;
    g->nprogress = o->nprogress;
    snprintf(g->host, sizeof g->host, "%s", o->host ? o->host : "central");
    vigil_event_builder_init(&g->barrier);
    vigil_seqtab_init(&g->seen, SOURCES_MAX);
    vigil_wire_ack_buf_init(&g->ack);
    vigil_bus_handoff_init(&g->out);
    g->log_rl = (struct vigil_ratelimit){.window_ns = 60000000000ull, .burst = 5};
    g->shed_rl = g->log_rl;
    g->refused = malloc(VIGIL_WIRE_MAX_EVENTS * sizeof *g->refused);
    g->shed = malloc(SHED_CONNS_MAX * sizeof *g->shed);
    g->router = zmq_socket(zctx, ZMQ_ROUTER);
    g->push = zmq_socket(zctx, ZMQ_PUSH);
    g->monitor = zmq_socket(zctx, ZMQ_PAIR);
    if (!g->refused || !g->shed || !g->router || !g->push || !g->monitor) {
        snprintf(err, errlen, "cannot create the ingest sockets: %s",
                 g->refused && g->shed ? zmq_strerror(zmq_errno()) : "out of memory");
        vigil_ingest_free(g);
        return NULL;
    }
    int zero = 0, one = 1, timeout = POLL_MS, hb_ivl = HEARTBEAT_IVL_MS,
        hb_timeout = HEARTBEAT_TIMEOUT_MS;
    /* Acks to an agent that went away are dropped, not queued; a reconnecting
     * agent takes its identity over. */
    zmq_setsockopt(g->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(g->router, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    zmq_setsockopt(g->router, ZMQ_RCVHWM, &o->hwm, sizeof o->hwm);
    zmq_setsockopt(g->router, ZMQ_HEARTBEAT_IVL, &hb_ivl, sizeof hb_ivl);
    zmq_setsockopt(g->router, ZMQ_HEARTBEAT_TIMEOUT, &hb_timeout, sizeof hb_timeout);
    int bhwm = VIGIL_BUS_TRUSTED_HWM;
    zmq_setsockopt(g->push, ZMQ_SNDHWM, &bhwm, sizeof bhwm);
    zmq_setsockopt(g->push, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(g->push, ZMQ_LINGER, &timeout, sizeof timeout);
    if (watch_connections(g) != 0) {
        snprintf(err, errlen, "cannot watch the ingest's connections: %s",
                 zmq_strerror(zmq_errno()));
        vigil_ingest_free(g);
        return NULL;
    }
    if (vigil_bus_curve_server(g->router, o->endpoint, o->curve_secret_z85) != 0) {
        snprintf(err, errlen, "cannot make bus.ingest a CURVE server: %s",
                 zmq_strerror(zmq_errno()));
        vigil_ingest_free(g);
        return NULL;
    }
    if (zmq_bind(g->router, o->endpoint) != 0) {
        snprintf(err, errlen, "cannot bind bus.ingest %s: %s", o->endpoint,
                 zmq_strerror(zmq_errno()));
        vigil_ingest_free(g);
        return NULL;
    }
    if (zmq_connect(g->push, VIGIL_BUS_TRUSTED) != 0) {
        snprintf(err, errlen, "cannot connect the ingest endpoint to the bus: %s",
                 zmq_strerror(zmq_errno()));
        vigil_ingest_free(g);
        return NULL;
    }
    return g;
}

/* ---- Agents ------------------------------------------------------------------ */

/* The agent a batch came from: its CURVE key's name when the bus has CURVE,
 * else the peer's address. NULL past AGENTS_MAX. */
static struct agent *agent_of(struct vigil_ingest *g, zmq_msg_t *m)
{
    const char *name = zmq_msg_gets(m, "User-Id");
    if (!name || !*name) {
        name = zmq_msg_gets(m, "Peer-Address");
    }
    if (!name || !*name) {
        name = "unknown";
    }
    for (size_t i = 0; i < g->nagents; i++) {
        if (strcmp(g->agents[i].name, name) == 0) {
            return &g->agents[i];
        }
    }
    if (g->nagents == AGENTS_MAX) {
        return NULL;
    }
    pthread_mutex_lock(&g->lock);
    if (g->nagents == g->agents_cap) {
        size_t cap = g->agents_cap ? g->agents_cap * 2 : 16;
        struct agent *a = realloc(g->agents, cap * sizeof *a);
        if (!a) {
            pthread_mutex_unlock(&g->lock);
            return NULL;
        }
        g->agents = a;
        g->agents_cap = cap;
    }
    struct agent *a = &g->agents[g->nagents];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    g->nagents++;
    pthread_mutex_unlock(&g->lock);
    vigil_log(VIGIL_LOG_INFO, "ingest", "first batch from agent %s", a->name);
    return a;
}

void vigil_ingest_each_agent(struct vigil_ingest *g,
                             void (*fn)(void *arg, const char *agent, struct vigil_agent_stats *s),
                             void *arg)
{
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->nagents; i++) {
        fn(arg, g->agents[i].name, &g->agents[i].s);
    }
    pthread_mutex_unlock(&g->lock);
}

/* ---- Connections ------------------------------------------------------------- */

/* An agent is connected while a connection that sent one of its batches is
 * open. A batch names its connection by the fd it came in on (ZMQ_SRCFD),
 * and the ROUTER's monitor says when an fd's connection was accepted or
 * closed. libzmq reports DISCONNECTED before it closes the fd, and a new
 * connection takes the lowest free fd, often the one just closed: so the
 * monitor is drained after a batch is read and before its fd is looked at,
 * and an old connection's close is never taken for the new one's. (A batch
 * read only after its connection closed and a new one took the fd counts
 * for the new one until that one sends or closes.) */

/* The ROUTER's connection events on an inproc PAIR, set up before the bind
 * so that no connection is missed. The PAIR's queue is unbounded: libzmq
 * sends monitor events blocking, from its I/O thread, so a full queue would
 * stall every connection. It holds two small messages per connection
 * opened or closed, and the ingest thread drains it every turn. */
static int watch_connections(struct vigil_ingest *g)
{
    char ep[64];
    int unbounded = 0, zero = 0;
    snprintf(ep, sizeof ep, "inproc://vigil.ingest.monitor.%p", (void *)g);
    if (zmq_socket_monitor(g->router, ep, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0) {
        return -1;
    }
    zmq_setsockopt(g->monitor, ZMQ_RCVHWM, &unbounded, sizeof unbounded);
    zmq_setsockopt(g->monitor, ZMQ_LINGER, &zero, sizeof zero);
    return zmq_connect(g->monitor, ep);
}

/* Makes fd_agent[fd] exist; false for an fd that is not tracked. Grows only
 * to the highest fd seen, not per batch. */
static bool fd_room(struct vigil_ingest *g, int fd)
{
    if (fd < 0 || fd >= FDS_MAX) {
        return false;
    }
    if ((size_t)fd < g->fd_cap) {
        return true;
    }
    size_t cap = g->fd_cap ? g->fd_cap : 64;
    while (cap <= (size_t)fd) {
        cap *= 2;
    }
    int32_t *p = realloc(g->fd_agent, cap * sizeof *p);
    if (!p) {
        return false;
    }
    memset(p + g->fd_cap, 0, (cap - g->fd_cap) * sizeof *p);
    g->fd_agent = p;
    g->fd_cap = cap;
    return true;
}

/* The connection on fd closed (mark FD_CLOSED) or a new one took the fd
 * (mark 0): the agent it counted for loses it. */
static void conn_end(struct vigil_ingest *g, int fd, int32_t mark)
{
    if (!fd_room(g, fd)) {
        return;
    }
    int32_t a = g->fd_agent[fd];
    if (a > 0 && --g->agents[a - 1].conns == 0) {
        atomic_store_explicit(&g->agents[a - 1].s.connected, 0, memory_order_relaxed);
    }
    g->fd_agent[fd] = mark;
}

/* A batch of agent a came in on fd: that connection counts for a until the
 * monitor says it closed. */
static void conn_seen(struct vigil_ingest *g, struct agent *a, int fd)
{
    if (!fd_room(g, fd)) {
        return;
    }
    int32_t me = (int32_t)(a - g->agents) + 1, cur = g->fd_agent[fd];
    if (cur == me || cur == FD_CLOSED) {
        return; /* counted already; or closed since it sent this batch */
    }
    if (cur > 0) {
        conn_end(g, fd, 0); /* another agent's before, its close not seen */
    }
    g->fd_agent[fd] = me;
    if (a->conns++ == 0) {
        atomic_store_explicit(&a->s.connected, 1, memory_order_relaxed);
    }
}

/* Applies the monitor's events so far. */
static void drain_monitor(struct vigil_ingest *g)
{
    for (;;) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, g->monitor, ZMQ_DONTWAIT) == -1) {
            zmq_msg_close(&ev);
            return;
        }
        /* Frame 1: the event (u16) and its value, the fd (u32), in host
         * order; frame 2: the endpoint. */
        if (zmq_msg_size(&ev) == 6) {
            uint16_t what;
            uint32_t fd;
            memcpy(&what, zmq_msg_data(&ev), sizeof what);
            memcpy(&fd, (const char *)zmq_msg_data(&ev) + sizeof what, sizeof fd);
            if (what == ZMQ_EVENT_ACCEPTED || what == ZMQ_EVENT_DISCONNECTED) {
                conn_end(g, fd > INT32_MAX ? -1 : (int)fd,
                         what == ZMQ_EVENT_DISCONNECTED ? FD_CLOSED : 0);
            }
        }
        while (zmq_msg_more(&ev) && zmq_msg_recv(&ev, g->monitor, 0) != -1) {
        }
        zmq_msg_close(&ev);
    }
}

/* ---- Shedding ------------------------------------------------------------------- */

/* The held-back state of connection `id`, or NULL. States older than
 * SHED_HOLD_MS end on the way. */
static struct shed_conn *shed_find(struct vigil_ingest *g, zmq_msg_t *id, uint64_t now)
{
    size_t len = zmq_msg_size(id);
    for (size_t i = 0; i < g->nshed;) {
        struct shed_conn *c = &g->shed[i];
        if (now - c->since_ns >= SHED_HOLD_MS * NS_PER_MS) {
            *c = g->shed[--g->nshed];
        } else if (c->id_len == len && memcmp(c->id, zmq_msg_data(id), len) == 0) {
            return c;
        } else {
            i++;
        }
    }
    return NULL;
}

/* Holds connection id's later batches back from now on. With every slot
 * taken, the oldest state gives way, logged: that connection's order is not
 * kept. */
static void shed_hold(struct vigil_ingest *g, zmq_msg_t *id, uint64_t now)
{
    struct shed_conn *c = shed_find(g, id, now);
    if (!c && g->nshed < SHED_CONNS_MAX) {
        c = &g->shed[g->nshed++];
    }
    if (!c) {
        for (size_t i = 0; i < g->nshed; i++) {
            if (!c || g->shed[i].since_ns < c->since_ns) {
                c = &g->shed[i];
            }
        }
        uint64_t suppressed;
        if (vigil_ratelimit_ok(&g->shed_rl, now, &suppressed)) {
            vigil_log(VIGIL_LOG_WARN, "ingest",
                      "shedding load on more than " STR(
                          SHED_CONNS_MAX) " connections at once: the oldest one's later batches "
                                          "are taken again "
                                          "before its resend, which may reorder its events (%llu "
                                          "more like it not "
                                          "logged)",
                      (unsigned long long)suppressed);
        }
    }
    size_t len = zmq_msg_size(id);
    c->since_ns = now;
    c->id_len = len < sizeof c->id ? len : sizeof c->id;
    memcpy(c->id, zmq_msg_data(id), c->id_len);
}

/* ---- One batch --------------------------------------------------------------- */

enum hand { HAND_OK, HAND_FULL, HAND_NOMEM, HAND_STOP };

/* Hands the batch's new events (g->out) to the bus in one message,
 * waiting while it is full for SHED_BLOCKED_MS at most. HAND_FULL: that ran
 * out first, nothing was sent; HAND_STOP: a stop came first. */
static enum hand hand_on(struct vigil_ingest *g)
{
    const uint64_t budget = SHED_BLOCKED_MS * NS_PER_MS;
    uint64_t waited_ns = 0;
    while (vigil_bus_handoff_send(&g->out, g->push, ZMQ_DONTWAIT) != 0) {
        if (zmq_errno() != EAGAIN || atomic_load(&g->stopping)) {
            return HAND_STOP;
        }
        if (waited_ns >= budget) {
            return HAND_FULL;
        }
        uint64_t left_ms = (budget - waited_ns + NS_PER_MS - 1) / NS_PER_MS, t0 = vigil_mono_ns();
        zmq_pollitem_t room = {.socket = g->push, .events = ZMQ_POLLOUT};
        zmq_poll(&room, 1, left_ms < POLL_MS ? (long)left_ms : POLL_MS);
        waited_ns += vigil_mono_ns() - t0;
    }
    return HAND_OK;
}

/* Which of a source's recent seqs were published: a window of WINDOW_SEQS
 * bits ending at its highest seq. Events of one source can reach the
 * central out of order (a batch lost with a broken connection, the next
 * one sent on the new connection, the lost one sent again later), so
 * "not above the highest" does not mean "published". */
#define WINDOW_SEQS 4096
struct seq_window {
    uint64_t bits[WINDOW_SEQS / 64]; /* bit (seq % WINDOW_SEQS) */
};

static bool window_has(const struct seq_window *w, uint64_t seq)
{
    return w->bits[(seq % WINDOW_SEQS) / 64] >> (seq % 64) & 1;
}

static void window_set(struct seq_window *w, uint64_t seq)
{
    w->bits[(seq % WINDOW_SEQS) / 64] |= 1ull << (seq % 64);
}

/* Moves the window's top from `from` up to `to`: the seqs it passes over
 * are not published yet. */
static void window_advance(struct seq_window *w, uint64_t from, uint64_t to)
{
    if (to - from >= WINDOW_SEQS) {
        memset(w->bits, 0, sizeof w->bits);
        return;
    }
    for (uint64_t s = from + 1; s <= to; s++) {
        w->bits[(s % WINDOW_SEQS) / 64] &= ~(1ull << (s % 64));
    }
}

/* True when the event was published before, as when an agent sends again
 * a batch whose ack it did not get; then it is acked, not published again.
 * *entry gets the source's entry for mark_published() (NULL: untracked). */
static bool seen_before(struct vigil_ingest *g, const struct vigil_event_head *h,
                        struct vigil_seq_entry **entry)
{
    int added;
    struct vigil_seq_entry *e =
        vigil_seqtab_get(&g->seen, h->host, h->host_len, h->source, h->source_len, &added);
    if (e && !e->data && !(e->data = calloc(1, sizeof(struct seq_window)))) {
        e = NULL;
    }
    *entry = e;
    if (!e) {
        vigil_count(&g->stats.untracked_total, 1);
        return false;
    }
    if (added || h->seq > e->last_seq) {
        return false;
    }
    /* A producer that restarted starts its seq again, at a later ts; an
     * event below the window is too old to tell: both are published (at
     * least once). */
    return e->last_seq - h->seq < WINDOW_SEQS && window_has(e->data, h->seq) && h->ts <= e->last_ts;
}

static void mark_published(struct vigil_seq_entry *e, const struct vigil_event_head *h)
{
    if (!e) {
        return;
    }
    struct seq_window *w = e->data;
    if (h->seq > e->last_seq) {
        window_advance(w, e->last_seq, h->seq);
        e->last_seq = h->seq;
    } else if (h->ts > e->last_ts) {
        /* The seq went back while time went on: the producer restarted. */
        memset(w->bits, 0, sizeof w->bits);
        e->last_seq = h->seq;
    }
    if (h->ts > e->last_ts) {
        e->last_ts = h->ts;
    }
    if (e->last_seq - h->seq < WINDOW_SEQS) {
        window_set(w, h->seq);
    }
}

static void send_frames(struct vigil_ingest *g, zmq_msg_t *id, const void *head, size_t hl,
                        const void *body, size_t bl)
{
    /* A ROUTER drops what it cannot route (the agent went away): the agent
     * then sends the batch again and the events are recognised. */
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, id);
    if (zmq_msg_send(&copy, g->router, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
        zmq_msg_close(&copy);
        return;
    }
    zmq_send(g->router, head, hl, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(g->router, body, bl, ZMQ_DONTWAIT);
}

/* Answers a batch RETRY at once (it promises nothing about the sinks),
 * counted. */
static void shed(struct vigil_ingest *g, zmq_msg_t *id, uint64_t bid, struct vigil_agent_stats *as)
{
    vigil_count(&g->stats.shed_total, 1);
    if (as) {
        vigil_count(&as->shed_total, 1);
    }
    if (vigil_wire_ack_retry(&g->ack, bid, SHED_RETRY_AFTER_MS) == 0) {
        send_frames(g, id, g->ack.head, VIGIL_WIRE_HEAD_LEN, g->ack.data, g->ack.len);
    }
}

/* Sheds a batch of which `published` events went into the bus: answers it
 * RETRY, holds its connection's later batches back, and says why,
 * rate-limited. */
static void shed_start(struct vigil_ingest *g, zmq_msg_t *id, const struct vigil_wire_batch_view *v,
                       struct vigil_agent_stats *as, const char *agent, const char *why)
{
    uint64_t now = vigil_mono_ns(), suppressed;
    shed_hold(g, id, now);
    shed(g, id, v->id, as);
    if (vigil_ratelimit_ok(&g->shed_rl, now, &suppressed)) {
        vigil_log(VIGIL_LOG_WARN, "ingest",
                  "shedding load: batch %llu from %s (%zu events) answered RETRY (after %d ms): "
                  "%s; none of it was published; its connection's later batches too until the "
                  "agent resends (%llu more like it not logged)",
                  (unsigned long long)v->id, agent, v->count, SHED_RETRY_AFTER_MS, why,
                  (unsigned long long)suppressed);
    }
}

/* The lowest barrier serial every sink has passed. */
static uint64_t sinks_passed(const struct vigil_ingest *g)
{
    uint64_t low = UINT64_MAX;
    for (size_t i = 0; i < g->nprogress; i++) {
        uint64_t p = atomic_load_explicit(g->progress[i], memory_order_acquire);
        low = p < low ? p : low;
    }
    return low;
}

/* Sends the acks whose barrier every sink passed, oldest first. */
static void flush_acks(struct vigil_ingest *g)
{
    uint64_t passed = g->pend_len ? sinks_passed(g) : 0;
    while (g->pend_len && g->pending[g->pend_head].serial <= passed) {
        struct pending_ack *p = &g->pending[g->pend_head];
        send_frames(g, &p->id, p->frames, p->head_len, p->frames + p->head_len, p->body_len);
        zmq_msg_close(&p->id);
        free(p->frames);
        g->pend_head = (g->pend_head + 1) % PENDING_MAX;
        g->pend_len--;
    }
}

/* Follows the batch's events in g->out with the next barrier; 0 or a
 * negative code. */
static int add_barrier(struct vigil_ingest *g)
{
    const char *body;
    size_t len;
    vigil_event_begin(&g->barrier, VIGIL_BARRIER_TOPIC);
    int rc = vigil_event_finish(&g->barrier, g->host, "vigil-ingest", g->serial + 1, &body, &len);
    return rc ? rc
              : vigil_bus_handoff_add(&g->out, VIGIL_BARRIER_TOPIC, VIGIL_BARRIER_TOPIC_LEN, body,
                                      len);
}

/* Acks the batch in g->ack (OK or REFUSED): at once without sinks, else
 * once the sinks passed the last barrier sent (this batch's, or for a batch
 * that published nothing new the one before: acks stay in order). */
static void send_ack(struct vigil_ingest *g, zmq_msg_t *id)
{
    if (g->nprogress == 0) {
        send_frames(g, id, g->ack.head, VIGIL_WIRE_HEAD_LEN, g->ack.data, g->ack.len);
        return;
    }
    if (g->pend_len == PENDING_MAX) {
        return; /* cannot happen: take_batch sheds the batch instead */
    }
    struct pending_ack *p = &g->pending[(g->pend_head + g->pend_len) % PENDING_MAX];
    p->frames = malloc(VIGIL_WIRE_HEAD_LEN + g->ack.len);
    if (!p->frames) {
        return; /* no ack: the agent sends the batch again */
    }
    memcpy(p->frames, g->ack.head, VIGIL_WIRE_HEAD_LEN);
    memcpy(p->frames + VIGIL_WIRE_HEAD_LEN, g->ack.data, g->ack.len);
    p->head_len = VIGIL_WIRE_HEAD_LEN;
    p->body_len = g->ack.len;
    p->serial = g->serial;
    zmq_msg_init(&p->id);
    zmq_msg_copy(&p->id, id);
    g->pend_len++;
    flush_acks(g);
}

/* The batch id of a frame 1 that may be damaged: 0 when unreadable. */
static uint64_t batch_id_of(const unsigned char *p, size_t len)
{
    if (len != VIGIL_WIRE_HEAD_LEN || memcmp(p, VIGIL_WIRE_BATCH_MAGIC, 4) != 0) {
        return 0;
    }
    uint64_t id = 0;
    for (int i = 4; i < 12; i++) {
        id = id << 8 | p[i];
    }
    return id;
}

static void bad_batch(struct vigil_ingest *g, const char *agent, const struct vigil_wire_error *e)
{
    vigil_count(&g->stats.bad_batches_total, 1);
    uint64_t suppressed;
    if (vigil_ratelimit_ok(&g->log_rl, vigil_mono_ns(), &suppressed)) {
        vigil_log(VIGIL_LOG_WARN, "ingest",
                  "a batch from %s cannot be read (%s: %s): none of it was published "
                  "(%llu more like it not logged)",
                  agent, vigil_wire_reason_name(e->reason), e->why, (unsigned long long)suppressed);
    }
}

/* Checks the batch's events and hands the new ones to the bus in one
 * message (VIGIL_BUS_TRUSTED: the bus does not check them again), with a
 * barrier after them. *published gets how many went; they are marked
 * published only once the message is sent, so a batch that is shed or
 * interrupted has handed on nothing and is not taken for a duplicate when
 * it comes again. */
static enum hand hand_on_batch(struct vigil_ingest *g, struct vigil_wire_batch_view *v,
                               size_t *nrefused, size_t *published, size_t *dups)
{
    if (v->count > g->heads_cap) {
        struct vigil_event_head *p = realloc(g->heads, v->count * sizeof *p);
        if (!p) {
            return HAND_NOMEM;
        }
        g->heads = p;
        g->heads_cap = v->count;
    }
    size_t index = 0, n = 0;
    struct vigil_wire_event e;
    vigil_bus_handoff_clear(&g->out);
    while (vigil_wire_batch_next(v, &e)) {
        struct vigil_event_head h;
        struct vigil_seq_entry *src;
        const char *why;
        if (vigil_event_check(e.topic, e.topic_len, e.body, e.body_len, g->max_event_bytes, &h,
                              &why) != 0) {
            g->refused[(*nrefused)++] = (uint32_t)index;
        } else if (seen_before(g, &h, &src)) {
            (*dups)++;
        } else if (vigil_bus_handoff_add(&g->out, e.topic, e.topic_len, e.body, e.body_len) == 0) {
            g->heads[n++] = h;
        } else {
            return HAND_NOMEM;
        }
        index++;
    }
    if (n == 0) {
        return HAND_OK;
    }
    if (g->nprogress && add_barrier(g) != 0) {
        return HAND_NOMEM;
    }
    enum hand r = hand_on(g);
    if (r != HAND_OK) {
        return r;
    }
    g->serial += g->nprogress != 0;
    for (size_t i = 0; i < n; i++) {
        const struct vigil_event_head *h = &g->heads[i];
        int added;
        struct vigil_seq_entry *src =
            vigil_seqtab_get(&g->seen, h->host, h->host_len, h->source, h->source_len, &added);
        if (src && src->data) {
            mark_published(src, h);
        }
    }
    *published = n;
    return HAND_OK;
}

/* Returns false when a stop interrupted the batch (then it is not acked). */
static bool take_batch(struct vigil_ingest *g, zmq_msg_t *id, zmq_msg_t *head, zmq_msg_t *recs,
                       bool extra_frames)
{
    struct agent *ag = agent_of(g, head);
    struct vigil_agent_stats *as = ag ? &ag->s : NULL;
    const char *agent = zmq_msg_gets(head, "Peer-Address");
    agent = agent ? agent : "an agent";
    if (as) {
        /* ZMQ_SRCFD is deprecated, but without the draft ZMQ_ROUTER_NOTIFY
         * it is what ties a message to its connection; libzmq 4.3 sets it
         * over tcp and ipc, with and without CURVE. */
        conn_seen(g, ag, zmq_msg_get(head, ZMQ_SRCFD));
        atomic_store_explicit(&as->last_seen_mono, vigil_mono_ns(), memory_order_relaxed);
    } else {
        vigil_count(&g->stats.agents_untracked_total, 1);
    }
    struct vigil_wire_batch_view v;
    struct vigil_wire_error err;
    int rc;
    if (extra_frames) {
        err = (struct vigil_wire_error){.reason = VIGIL_WIRE_BAD_FRAMES,
                                        .why = "a batch is exactly two frames"};
        rc = VIGIL_EMALFORMED;
    } else {
        rc = vigil_wire_batch_decode(&v, zmq_msg_data(head), zmq_msg_size(head), zmq_msg_data(recs),
                                     zmq_msg_size(recs), 0, &err);
    }
    if (rc != 0) {
        /* Nothing published, nothing to wait for: answered at once. */
        uint64_t bid = batch_id_of(zmq_msg_data(head), zmq_msg_size(head));
        bad_batch(g, agent, &err);
        if (vigil_wire_ack_error(&g->ack, err.reason == VIGIL_WIRE_BAD_HEADER ? 0 : bid, err.reason,
                                 err.detail) == 0) {
            send_frames(g, id, g->ack.head, VIGIL_WIRE_HEAD_LEN, g->ack.data, g->ack.len);
        }
        return true;
    }
    /* After a RETRY, the connection's later batches (sent before the agent
     * saw it) are answered RETRY too, until the agent resends: their
     * events must not overtake the shed batch's. */
    uint64_t now = vigil_mono_ns();
    struct shed_conn *held = shed_find(g, id, now);
    if (held && !(v.id & VIGIL_WIRE_RESEND)) {
        shed(g, id, v.id, as);
        return true;
    }
    if (held) {
        *held = g->shed[--g->nshed];
    }
    flush_acks(g);
    if (g->nprogress && g->pend_len == PENDING_MAX) {
        shed_start(g, id, &v, as, agent,
                   "the " STR(PENDING_MAX) " batches before it still wait for the sinks");
        return true;
    }
    size_t nrefused = 0, published = 0, dups = 0;
    enum hand r = hand_on_batch(g, &v, &nrefused, &published, &dups);
    if (as) {
        vigil_count(&as->events_total, published);
    }
    if (r == HAND_STOP) {
        return false;
    }
    if (r == HAND_FULL || r == HAND_NOMEM) {
        shed_start(g, id, &v, as, agent,
                   r == HAND_NOMEM ? "out of memory"
                                   : "no room in the bus for " STR(SHED_BLOCKED_MS) " ms");
        return true;
    }
    if (as) {
        vigil_count(&as->batches_total, 1);
        vigil_count(&as->refused_total, nrefused);
        vigil_count(&as->duplicates_total, dups);
    }
    rc = nrefused ? vigil_wire_ack_refused(&g->ack, v.id, v.count, g->refused, nrefused)
                  : vigil_wire_ack_ok(&g->ack, v.id);
    if (rc == 0) {
        send_ack(g, id);
    }
    return true;
}

/* ---- The thread ---------------------------------------------------------------- */

/* Reads one message from the ROUTER: the agent's id, then its frames.
 * Returns false when nothing was waiting. */
static bool read_one(struct vigil_ingest *g)
{
    zmq_msg_t part[3];
    size_t n = 0;
    bool more = true, extra = false;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, g->router, n == 0 ? ZMQ_DONTWAIT : 0) == -1) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 3) {
            part[n++] = m;
        } else {
            extra = true; /* drained, and the batch refused */
            zmq_msg_close(&m);
        }
    }
    if (n == 0) {
        return false;
    }
    if (n >= 2) {
        drain_monitor(g); /* before the batch's fd is looked at: see "Connections" */
        zmq_msg_t empty;
        zmq_msg_init(&empty);
        take_batch(g, &part[0], &part[1], n == 3 ? &part[2] : &empty, extra || n == 2);
        zmq_msg_close(&empty);
    }
    for (size_t i = 0; i < n; i++) {
        zmq_msg_close(&part[i]);
    }
    return true;
}

static void *ingest_main(void *arg)
{
    struct vigil_ingest *g = arg;
    zmq_pollitem_t items[] = {{.socket = g->router, .events = ZMQ_POLLIN},
                              {.socket = g->monitor, .events = ZMQ_POLLIN}};
    while (!atomic_load(&g->stopping)) {
        int n = zmq_poll(items, 2, g->pend_len ? BARRIER_POLL_MS : POLL_MS);
        flush_acks(g);
        if (items[1].revents & ZMQ_POLLIN) {
            drain_monitor(g); /* an agent that went away is disconnected now */
        }
        if (n <= 0 || !(items[0].revents & ZMQ_POLLIN)) {
            continue;
        }
        while (!atomic_load(&g->stopping) && read_one(g)) {
            flush_acks(g);
        }
    }
    return NULL;
}

int vigil_ingest_start(struct vigil_ingest *g)
{
    int rc = pthread_create(&g->thread, NULL, ingest_main, g);
    if (rc != 0) {
        return -rc;
    }
    pthread_setname_np(g->thread, "vigil-ingest"); /* what top -H and perf show */
    g->started = true;
    return 0;
}

void vigil_ingest_stop(struct vigil_ingest *g)
{
    if (!g || !g->started) {
        return;
    }
    atomic_store(&g->stopping, true);
    pthread_join(g->thread, NULL);
    g->started = false;
}

void vigil_ingest_free(struct vigil_ingest *g)
{
    if (!g) {
        return;
    }
    vigil_ingest_stop(g);
    if (g->router) {
        zmq_socket_monitor(g->router, NULL, 0);
        zmq_close(g->router);
    }
    if (g->monitor) {
        zmq_close(g->monitor);
    }
    if (g->push) {
        zmq_close(g->push);
    }
    vigil_seqtab_fini(&g->seen);
    vigil_wire_ack_buf_fini(&g->ack);
    for (size_t i = 0; i < g->pend_len; i++) {
        struct pending_ack *p = &g->pending[(g->pend_head + i) % PENDING_MAX];
        zmq_msg_close(&p->id);
        free(p->frames);
    }
    vigil_event_builder_fini(&g->barrier);
    vigil_bus_handoff_fini(&g->out);
    free(g->heads);
    free(g->refused);
    free(g->shed);
    free(g->fd_agent);
    free(g->agents);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

struct vigil_ingest_stats *vigil_ingest_stats(struct vigil_ingest *g)
{
    return &g->stats;
}

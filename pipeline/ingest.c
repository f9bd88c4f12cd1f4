/* The ingest endpoint (ingest.h): one thread with a ROUTER for the agents
 * and a PUSH into the bus, like a source's. A batch is decoded, each event
 * checked (vigil_event_check, as the bus does) and looked up by (host,
 * source, seq), and the ack goes back only after every new event was handed
 * to the bus.
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
#define RETRY_AFTER_MS 200 /* what a batch the central cannot take now asks */

struct agent {
    char name[AGENT_NAME_MAX + 1];
    struct vigil_agent_stats s;
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
    uint32_t *refused;              /* VIGIL_WIRE_MAX_EVENTS indices */
    struct vigil_bus_handoff out;   /* the batch's new events, for the bus */
    struct vigil_event_head *heads; /* and their heads, marked published once sent */
    size_t heads_cap;
    struct vigil_ratelimit log_rl;
};

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
    g->refused = malloc(VIGIL_WIRE_MAX_EVENTS * sizeof *g->refused);
    g->router = zmq_socket(zctx, ZMQ_ROUTER);
    g->push = zmq_socket(zctx, ZMQ_PUSH);
    if (!g->refused || !g->router || !g->push) {
        snprintf(err, errlen, "cannot create the ingest sockets: %s",
                 g->refused ? zmq_strerror(zmq_errno()) : "out of memory");
        vigil_ingest_free(g);
        return NULL;
    }
    int zero = 0, one = 1, timeout = POLL_MS;
    /* Acks to an agent that went away are dropped, not queued; a reconnecting
     * agent takes its identity over. */
    zmq_setsockopt(g->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(g->router, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    zmq_setsockopt(g->router, ZMQ_RCVHWM, &o->hwm, sizeof o->hwm);
    int bhwm = VIGIL_BUS_TRUSTED_HWM;
    zmq_setsockopt(g->push, ZMQ_SNDHWM, &bhwm, sizeof bhwm);
    zmq_setsockopt(g->push, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(g->push, ZMQ_LINGER, &timeout, sizeof timeout);
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
static struct vigil_agent_stats *agent_of(struct vigil_ingest *g, zmq_msg_t *m)
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
            return &g->agents[i].s;
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
    return &a->s;
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

/* ---- One batch --------------------------------------------------------------- */

/* Hands the batch's new events (g->out) to the bus in one message, waiting
 * while it is full; false when a stop came first. */
static bool hand_on(struct vigil_ingest *g)
{
    while (vigil_bus_handoff_send(&g->out, g->push, 0) != 0) {
        if (zmq_errno() != EAGAIN || atomic_load(&g->stopping)) {
            return false;
        }
    }
    return true;
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
    const char *body, *why;
    size_t len;
    struct vigil_event_head h;
    vigil_event_begin(&g->barrier, VIGIL_BARRIER_TOPIC);
    int rc = vigil_event_finish(&g->barrier, g->host, "vigil-ingest", g->serial + 1, &body, &len);
    if (rc == 0 && vigil_event_check(VIGIL_BARRIER_TOPIC, VIGIL_BARRIER_TOPIC_LEN, body, len,
                                     SIZE_MAX, &h, &why) != 0) {
        rc = VIGIL_EMALFORMED;
    }
    return rc ? rc
              : vigil_bus_handoff_add(&g->out, VIGIL_BARRIER_TOPIC, VIGIL_BARRIER_TOPIC_LEN, body,
                                      len, &h);
}

/* Acks the batch in g->ack: at once without sinks, else once the sinks
 * passed the last barrier sent (this batch's, or for a batch that published
 * nothing new the one before: acks stay in order). */
static void send_ack(struct vigil_ingest *g, zmq_msg_t *id)
{
    if (g->nprogress == 0) {
        send_frames(g, id, g->ack.head, VIGIL_WIRE_HEAD_LEN, g->ack.data, g->ack.len);
        return;
    }
    if (g->pend_len == PENDING_MAX) {
        return; /* cannot happen: take_batch waits for room first */
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

/* Answers RETRY for a batch none of whose events was published (the agent
 * sends them again after RETRY_AFTER_MS). Returns true (the batch is
 * answered). */
static bool retry_batch(struct vigil_ingest *g, zmq_msg_t *id, uint64_t batch_id, const char *why)
{
    uint64_t suppressed;
    if (vigil_ratelimit_ok(&g->log_rl, vigil_mono_ns(), &suppressed)) {
        vigil_log(VIGIL_LOG_WARN, "ingest",
                  "a batch answered RETRY (%s) (%llu more like it not logged)", why,
                  (unsigned long long)suppressed);
    }
    if (vigil_wire_ack_retry(&g->ack, batch_id, RETRY_AFTER_MS) == 0) {
        send_ack(g, id);
    }
    return true;
}

/* Returns false when a stop interrupted the batch (then it is not acked). */
static bool take_batch(struct vigil_ingest *g, zmq_msg_t *id, zmq_msg_t *head, zmq_msg_t *recs,
                       bool extra_frames)
{
    /* Room for this batch's ack among those waiting for the sinks. */
    while (g->pend_len == PENDING_MAX) {
        if (atomic_load(&g->stopping)) {
            return false;
        }
        zmq_poll(NULL, 0, BARRIER_POLL_MS);
        flush_acks(g);
    }
    struct vigil_agent_stats *as = agent_of(g, head);
    const char *agent = zmq_msg_gets(head, "Peer-Address");
    agent = agent ? agent : "an agent";
    if (!as) {
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
    uint64_t bid = batch_id_of(zmq_msg_data(head), zmq_msg_size(head));
    if (rc != 0) {
        bad_batch(g, agent, &err);
        if (vigil_wire_ack_error(&g->ack, err.reason == VIGIL_WIRE_BAD_HEADER ? 0 : bid, err.reason,
                                 err.detail) == 0) {
            send_ack(g, id);
        }
        return true;
    }
    if (v.count > g->heads_cap) {
        struct vigil_event_head *p = realloc(g->heads, v.count * sizeof *p);
        if (!p) {
            return retry_batch(g, id, v.id, "no memory");
        }
        g->heads = p;
        g->heads_cap = v.count;
    }
    size_t nrefused = 0, index = 0, published = 0, dups = 0;
    struct vigil_wire_event e;
    vigil_bus_handoff_clear(&g->out);
    while (vigil_wire_batch_next(&v, &e)) {
        struct vigil_event_head h;
        struct vigil_seq_entry *src;
        const char *why;
        if (vigil_event_check(e.topic, e.topic_len, e.body, e.body_len, g->max_event_bytes, &h,
                              &why) != 0) {
            g->refused[nrefused++] = (uint32_t)index;
        } else if (seen_before(g, &h, &src)) {
            dups++;
        } else if (vigil_bus_handoff_add(&g->out, e.topic, e.topic_len, e.body, e.body_len, &h) ==
                   0) {
            g->heads[published++] = h;
        } else {
            return retry_batch(g, id, v.id, "no memory");
        }
        index++;
    }
    /* One message into the bus, then the events count as published: a
     * batch not handed on is not acked and none of it is remembered. */
    if (published) {
        if (g->nprogress && add_barrier(g) != 0) {
            return retry_batch(g, id, v.id, "no memory");
        }
        if (!hand_on(g)) {
            return false;
        }
        g->serial += g->nprogress != 0;
        for (size_t i = 0; i < published; i++) {
            const struct vigil_event_head *h = &g->heads[i];
            int added;
            struct vigil_seq_entry *src =
                vigil_seqtab_get(&g->seen, h->host, h->host_len, h->source, h->source_len, &added);
            if (src && src->data) {
                mark_published(src, h);
            }
        }
    }
    if (as) {
        vigil_count(&as->batches_total, 1);
        vigil_count(&as->events_total, published);
        vigil_count(&as->refused_total, nrefused);
        vigil_count(&as->duplicates_total, dups);
        atomic_store_explicit(&as->last_seen_mono, vigil_mono_ns(), memory_order_relaxed);
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
    zmq_pollitem_t item = {.socket = g->router, .events = ZMQ_POLLIN};
    while (!atomic_load(&g->stopping)) {
        int n = zmq_poll(&item, 1, g->pend_len ? BARRIER_POLL_MS : POLL_MS);
        flush_acks(g);
        if (n <= 0) {
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
        zmq_close(g->router);
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
    free(g->agents);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

struct vigil_ingest_stats *vigil_ingest_stats(struct vigil_ingest *g)
{
    return &g->stats;
}

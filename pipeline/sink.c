/* Sink delivery: what the host does between the bus and a sink plugin's
 * write(), so that a failing destination never slows the bus and never
 * loses what reached the spool.
 *
 * The events of a sink form one ordered stream: the spool (oldest) followed
 * by the memory queue (newest), with at most one batch in the plugin's
 * hands. Arrivals go to the memory queue while the spool has nothing unread
 * (or while the queue holds anything, so order holds), and to the spool's
 * tail otherwise. A batch is taken from the spool when it has unread records, else
 * from the queue.
 *
 * When a write() asks to retry anything, the batch's unresolved events and
 * the whole queue are spilled to the spool at once (a batch taken from the
 * queue is then re-labelled as read from the spool: the spool was empty when
 * it was taken), so from the first failed attempt on, everything undelivered
 * is on disk within the spool's flush period (200 ms). A queue that fills
 * because the destination is slow spills the same way. A batch from the
 * spool is committed (cursor advanced, segments removed) only once every one
 * of its events is delivered or failed for good: a crash before that
 * delivers it again (at least once).
 *
 * Retries back off exponentially with jitter between retry.min_backoff and
 * retry.max_backoff, or wait what the destination asked (retry_after()).
 */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "bus.h"
#include "host_internal.h"
#include "spool.h"

#define SPOOL_FLUSH_MS 200
#define STOP_GRACE_NS (5ull * 1000000000ull)
#define RETRY_AFTER_MAX_NS (600ull * 1000000000ull)
#define READ_BURST 4096 /* messages read per loop turn, for fairness */
#define BATCH_MAX_DEFAULT 512

enum batch_state { B_NONE, B_INFLIGHT, B_WAITING };

struct vigil_sink {
    struct vigil_instance *h;
    const struct vigil_delivery_conf *dc;
    size_t batch_max;          /* batch.max_events, or the plugin's default */
    struct vigil_record_buf q; /* the memory queue: queue.max_events, queue.max_bytes */
    struct vigil_spool *spool;
    struct event *sub_ev, *retry_ev, *flush_ev, *wait_ev, *pump_ev, *stop_ev, *hup_ev, *resume_ev;

    /* The batch in the plugin's hands: copies in arena, decoded views. */
    enum batch_state state;
    bool from_spool;
    struct vigil_record_buf arena;
    msgpack_zone zone;
    struct vigil_bus_reader in; /* batches from the bus (bus.h) */
    size_t n;                   /* unresolved events in batch[] */
    struct vigil_event_view *views;
    const struct vigil_event **batch;
    enum vigil_write_result *results;
    uint64_t first_wait_ns; /* when the queue's oldest event arrived (batch.max_wait) */

    uint64_t backoff_ns, retry_after_ns;
    uint64_t rng;
    bool stopping, done;
    /* Reloads (plugin_host.h): a successor ignores what comes before its
     * handover event; a predecessor stops reading at it. */
    bool awaiting, handing_over;
    bool paused; /* a successor past its handover event, waiting for the spool */
    char handover[VIGIL_TOKEN_LEN + 1];
    _Atomic bool handover_set;
    struct vigil_ratelimit write_rl, spool_rl, drop_rl;
    uint64_t spool_dropped_seen;
};

/* ---- Counters ------------------------------------------------------------------------- */

static void update_gauges(struct vigil_sink *s)
{
    struct vigil_stage_stats *st = &s->h->stats;
    size_t held = vigil_record_count(&s->q) + (s->state != B_NONE && !s->from_spool ? s->n : 0);
    atomic_store_explicit(&st->queue_depth, held, memory_order_relaxed);
    if (!s->spool) {
        return; /* a successor before its start */
    }
    struct vigil_spool_counts c;
    vigil_spool_counts(s->spool, &c);
    atomic_store_explicit(&st->spool_events, c.events, memory_order_relaxed);
    atomic_store_explicit(&st->spool_bytes, c.bytes, memory_order_relaxed);
    atomic_store_explicit(&st->spool_corrupt_total, c.corrupt_total, memory_order_relaxed);
    atomic_store_explicit(&st->spool_skipped_bytes_total, c.skipped_bytes_total,
                          memory_order_relaxed);
    if (c.dropped_total > s->spool_dropped_seen) {
        vigil_count(&st->dropped_total, c.dropped_total - s->spool_dropped_seen);
        s->spool_dropped_seen = c.dropped_total;
    }
}

/* One line at most `rl` allows, saying how many similar ones were not. */
static void log_limited(struct vigil_sink *s, struct vigil_ratelimit *rl, enum vigil_log_level lvl,
                        const char *fmt, ...) VIGIL_PRINTF(4, 5);

static void log_limited(struct vigil_sink *s, struct vigil_ratelimit *rl, enum vigil_log_level lvl,
                        const char *fmt, ...)
{
    uint64_t suppressed;
    if (!vigil_ratelimit_ok(rl, vigil_mono_ns(), &suppressed)) {
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (suppressed) {
        vigil_log(lvl, s->h->component, "%s (%llu similar reports not logged)", msg,
                  (unsigned long long)suppressed);
    } else {
        vigil_log(lvl, s->h->component, "%s", msg);
    }
}

static void warn_limited(struct vigil_sink *s, struct vigil_ratelimit *rl, enum vigil_log_level lvl,
                         const char *what, int err)
{
    log_limited(s, rl, lvl, "%s: %s", what, vigil_strerror(err));
}

static struct timeval tv_of(uint64_t ns)
{
    return (struct timeval){.tv_sec = (time_t)(ns / 1000000000u),
                            .tv_usec = (suseconds_t)(ns % 1000000000u / 1000u)};
}

/* ---- The spool side --------------------------------------------------------------------- */

static void arm_flush(struct vigil_sink *s)
{
    if (vigil_spool_dirty(s->spool) && !evtimer_pending(s->flush_ev, NULL)) {
        struct timeval tv = tv_of(SPOOL_FLUSH_MS * 1000000ull);
        evtimer_add(s->flush_ev, &tv);
    }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_sink *s = arg;
    int rc = vigil_spool_flush(s->spool, true);
    if (rc != 0) {
        vigil_count(&s->h->stats.errors_total, 1);
        warn_limited(s, &s->spool_rl, VIGIL_LOG_ERROR, "cannot write the spool", rc);
    }
    arm_flush(s);
}

static bool spool_put(struct vigil_sink *s, const char *t, size_t tl, const char *b, size_t bl)
{
    int rc = vigil_spool_append(s->spool, t, tl, b, bl);
    if (rc != 0) {
        vigil_count(&s->h->stats.errors_total, 1);
        warn_limited(s, &s->spool_rl, VIGIL_LOG_ERROR, "cannot append to the spool", rc);
        return false;
    }
    vigil_count(&s->h->stats.spooled_total, 1);
    return true;
}

/* ---- Barriers ------------------------------------------------------------------------------ */

static bool is_barrier(const char *t, size_t tl)
{
    return tl == VIGIL_BARRIER_TOPIC_LEN && memcmp(t, VIGIL_BARRIER_TOPIC, tl) == 0;
}

/* Everything that came before this barrier is delivered or on disk. */
static void pass_barrier(struct vigil_sink *s, const char *body, size_t len)
{
    struct vigil_event_head head;
    const char *why;
    if (vigil_event_check(VIGIL_BARRIER_TOPIC, VIGIL_BARRIER_TOPIC_LEN, body, len, SIZE_MAX, &head,
                          &why) == 0 &&
        head.seq > vigil_counter_get(s->h->barrier)) {
        atomic_store_explicit(s->h->barrier, head.seq, memory_order_release);
    }
}

/* Barriers at the front of the queue pass once no batch is in flight: the
 * events before them were delivered (or spilled, which passed them). */
static void pass_front_barriers(struct vigil_sink *s)
{
    struct vigil_record r;
    while (s->state == B_NONE && vigil_record_front(&s->q, &r) &&
           is_barrier(r.topic, r.topic_len)) {
        pass_barrier(s, r.body, r.body_len);
        vigil_record_pop(&s->q);
    }
}

/* Moves the batch (if taken from the queue) and then the queue to the
 * spool, in order, and writes it out. What the spool refuses stays where it
 * was. */
static void spill(struct vigil_sink *s)
{
    if (s->state != B_NONE && !s->from_spool && s->n) {
        size_t ok = 0;
        for (size_t i = 0; i < s->n; i++) {
            const struct vigil_event_view *v = (const struct vigil_event_view *)s->batch[i];
            if (!spool_put(s, v->topic, v->topic_len, v->body, v->body_len)) {
                break;
            }
            ok++;
        }
        if (ok < s->n) {
            /* Keep the order whole: leave the batch in memory, spool nothing. */
            return;
        }
        vigil_spool_mark_read(s->spool);
        s->from_spool = true;
    }
    /* Barriers do not go to the spool: once the events before them are
     * synced there, they pass. */
    struct vigil_record r;
    const char *bar = NULL;
    size_t bar_len = 0;
    char bar_copy[256];
    while (vigil_record_front(&s->q, &r)) {
        if (is_barrier(r.topic, r.topic_len)) {
            if (r.body_len <= sizeof bar_copy) {
                memcpy(bar_copy, r.body, r.body_len);
                bar = bar_copy;
                bar_len = r.body_len;
            }
        } else if (!spool_put(s, r.topic, r.topic_len, r.body, r.body_len)) {
            break;
        }
        vigil_record_pop(&s->q);
    }
    int rc = vigil_spool_flush(s->spool, true);
    if (rc != 0) {
        warn_limited(s, &s->spool_rl, VIGIL_LOG_ERROR, "cannot write the spool", rc);
    } else if (bar) {
        pass_barrier(s, bar, bar_len);
    }
    arm_flush(s);
    update_gauges(s);
}

/* ---- Arrivals ------------------------------------------------------------------------------ */

static bool is_handover(const char *t, size_t tl)
{
    return tl == VIGIL_HANDOVER_TOPIC_LEN && memcmp(t, VIGIL_HANDOVER_TOPIC, tl) == 0;
}

static void begin_handover(struct vigil_sink *s);

/* A handover event: ours to start at (a successor), ours to stop at (the
 * sink it replaces), or another sink's. */
static void handover_event(struct vigil_sink *s, const char *t, size_t tl, const char *b, size_t bl)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    struct vigil_event_view v;
    const char *why, *tok = NULL, *sink = NULL;
    size_t tokl = 0, sinkl = 0;
    if (vigil_event_decode(&v, t, tl, b, bl, SIZE_MAX, &zone, &why) == 0 &&
        vigil_msgpack_str(vigil_event_get(&v, "labels.token"), &tok, &tokl) == 0 &&
        vigil_msgpack_str(vigil_event_get(&v, "labels.sink"), &sink, &sinkl) == 0 &&
        tokl == VIGIL_TOKEN_LEN && sinkl == strlen(s->h->ic->name) &&
        memcmp(sink, s->h->ic->name, sinkl) == 0) {
        if (s->awaiting && memcmp(tok, s->h->takeover, tokl) == 0) {
            /* Ours from here on, once the predecessor let go of the spool
             * (vigil_sink_resume): until then the bus holds the rest. */
            s->awaiting = false;
            s->paused = s->spool == NULL;
        } else if (atomic_load_explicit(&s->handover_set, memory_order_acquire) &&
                   memcmp(tok, s->handover, tokl) == 0) {
            begin_handover(s);
        }
    }
    msgpack_zone_destroy(&zone);
}

/* Returns whether it counts as an event received (not a barrier, a
 * handover, or an event its predecessor takes). */
static bool arrive(struct vigil_sink *s, const char *t, size_t tl, const char *b, size_t bl)
{
    if (is_handover(t, tl)) {
        handover_event(s, t, tl, b, bl);
        return false;
    }
    if (s->awaiting) {
        return false; /* before the handover: the sink we replace has it */
    }
    if (is_barrier(t, tl) && vigil_record_count(&s->q) == 0 && s->state == B_NONE) {
        /* Nothing in memory before it: on disk once the spool is synced. */
        if (!vigil_spool_empty(s->spool) && vigil_spool_flush(s->spool, true) != 0) {
            spill(s); /* cannot sync now: keep it in order, retry with the queue */
        } else {
            pass_barrier(s, b, bl);
            return false;
        }
    }
    /* Behind unread spool records, an arrival goes to the spool too. Records
     * only read (the batch in flight) are older than any arrival: once the
     * spool is read to its end, arrivals queue in memory again, so a spool
     * used once does not carry every later event through the disk. */
    if (vigil_record_count(&s->q) == 0 && vigil_spool_has_unread(s->spool) && !is_barrier(t, tl)) {
        if (spool_put(s, t, tl, b, bl)) {
            arm_flush(s);
            return true;
        }
    }
    if (vigil_record_count(&s->q) == 0) {
        s->first_wait_ns = vigil_mono_ns();
    }
    if (vigil_record_append(&s->q, t, tl, b, bl) == 0) {
        return !is_barrier(t, tl);
    }
    spill(s); /* full: the destination is slow or down */
    if (vigil_record_count(&s->q) == 0 && spool_put(s, t, tl, b, bl)) {
        arm_flush(s);
        return true;
    }
    if (vigil_record_append(&s->q, t, tl, b, bl) == 0) {
        return !is_barrier(t, tl);
    }
    vigil_count(&s->h->stats.dropped_total, 1);
    warn_limited(s, &s->drop_rl, VIGIL_LOG_ERROR,
                 "queue full and the spool refuses events: dropping", -ENOSPC);
    return true;
}

/* Reads up to READ_BURST events; true when the socket ran dry. */
static bool read_bus(struct vigil_sink *s)
{
    size_t n = 0;
    int rc = 1;
    const char *t, *b;
    size_t tl, bl;
    /* Nothing after our handover event: it belongs to the successor. */
    while (n < READ_BURST && !s->handing_over && !s->paused &&
           (rc = vigil_bus_reader_next(&s->in, s->h->sock, &t, &tl, &b, &bl))) {
        if (rc < 0) {
            vigil_count(&s->h->stats.errors_total, 1); /* the bus never sends those */
            continue;
        }
        n += arrive(s, t, tl, b, bl);
    }
    if (s->handing_over || s->paused) {
        rc = 0;
    }
    vigil_count(&s->h->stats.in_total, n);
    return rc == 0;
}

static bool bus_has_input(struct vigil_sink *s)
{
    int events = 0;
    size_t len = sizeof events;
    return zmq_getsockopt(s->h->sock, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN);
}

/* ---- Delivery ------------------------------------------------------------------------------ */

static void finish_stop(struct vigil_sink *s);

static void pump_later(struct vigil_sink *s)
{
    event_active(s->pump_ev, EV_TIMEOUT, 0);
}

/* Fills the batch from the spool or the queue; false when there is none. */
static bool take_batch(struct vigil_sink *s)
{
    size_t max = s->batch_max, n = 0;
    vigil_record_clear(&s->arena);
    s->from_spool = vigil_spool_has_unread(s->spool);
    if (s->from_spool) {
        struct vigil_spool_rec r;
        while (n < max && vigil_spool_read(s->spool, &r) == 1) {
            if (vigil_record_append(&s->arena, r.topic, r.topic_len, r.body, r.body_len) == 0) {
                n++;
            } else {
                vigil_count(&s->h->stats.dropped_total, 1);
            }
        }
    } else {
        pass_front_barriers(s);
        struct vigil_record r;
        while (n < max && vigil_record_front(&s->q, &r) && !is_barrier(r.topic, r.topic_len)) {
            if (vigil_record_append(&s->arena, r.topic, r.topic_len, r.body, r.body_len) != 0) {
                break; /* stays queued */
            }
            vigil_record_pop(&s->q);
            n++;
        }
    }
    /* Views only now: the arena may have moved while it grew. They decode
     * on first use (plugin_host.c), so a sink that never reads fields pays
     * nothing; what the bus forwarded was checked there, what comes from
     * the disk is checked again. */
    struct vigil_record r;
    struct vigil_record_iter it = vigil_record_iter(&s->arena);
    for (size_t i = 0; i < n && vigil_record_next(&it, &r); i++) {
        struct vigil_event_view *v = &s->views[i];
        memset(v, 0, sizeof *v);
        v->topic = r.topic;
        v->topic_len = r.topic_len;
        v->body = r.body;
        v->body_len = r.body_len;
        v->lazy_zone = &s->zone;
        v->lazy_trusted = !s->from_spool;
        s->batch[i] = vigil_event_of(v);
    }
    s->n = n;
    return n > 0;
}

static void deliver(struct vigil_sink *s);

static void schedule_retry(struct vigil_sink *s)
{
    uint64_t delay;
    if (s->retry_after_ns) {
        delay = s->retry_after_ns;
        s->retry_after_ns = 0;
    } else {
        /* Equal jitter: half the step fixed, half random (xorshift). */
        s->rng ^= s->rng << 13;
        s->rng ^= s->rng >> 7;
        s->rng ^= s->rng << 17;
        delay = s->backoff_ns / 2 + s->rng % (s->backoff_ns / 2 + 1);
        s->backoff_ns =
            s->backoff_ns * 2 > s->dc->max_backoff_ns ? s->dc->max_backoff_ns : s->backoff_ns * 2;
    }
    struct timeval tv = tv_of(delay);
    evtimer_add(s->retry_ev, &tv);
}

/* Applies write()'s verdicts; keeps what must be retried. */
static void finish(struct vigil_sink *s, int rc)
{
    struct vigil_stage_stats *st = &s->h->stats;
    size_t n = s->n, keep = 0, retried = 0, failed = 0, ok = 0;
    for (size_t i = 0; i < n; i++) {
        enum vigil_write_result r = rc < 0 ? VIGIL_WRITE_RETRY : s->results[i];
        if (r == VIGIL_WRITE_OK) {
            ok++;
        } else if (r == VIGIL_WRITE_FAIL) {
            failed++;
        } else {
            retried++;
            s->batch[keep++] = s->batch[i];
        }
    }
    vigil_count(&st->out_total, ok);
    vigil_count(&st->failed_total, failed);
    vigil_count(&st->retried_total, retried);
    if (failed || retried) {
        log_limited(s, &s->write_rl, VIGIL_LOG_WARN,
                    "write: %zu delivered, %zu to retry%s, %zu failed for good", ok, retried,
                    rc < 0 ? " (the sink failed)" : "", failed);
    }
    s->n = keep;
    if (keep && vigil_counter_get(&st->failing_since_mono) == 0) {
        atomic_store_explicit(&st->failing_since_mono, vigil_mono_ns(), memory_order_relaxed);
    } else if (!keep) {
        atomic_store_explicit(&st->failing_since_mono, 0, memory_order_relaxed);
    }
    if (keep) {
        s->state = B_WAITING;
        spill(s); /* from now on nothing undelivered lives only in memory */
        if (s->stopping) {
            finish_stop(s);
            return;
        }
        schedule_retry(s);
        return;
    }
    if (s->from_spool) {
        int crc = vigil_spool_commit(s->spool);
        if (crc != 0) {
            warn_limited(s, &s->spool_rl, VIGIL_LOG_ERROR, "cannot save the spool's cursor", crc);
        }
    }
    s->state = B_NONE;
    s->backoff_ns = s->dc->min_backoff_ns;
    msgpack_zone_clear(&s->zone);
    update_gauges(s);
    pump_later(s);
}

static void deliver(struct vigil_sink *s)
{
    for (size_t i = 0; i < s->n; i++) {
        s->results[i] = VIGIL_WRITE_RETRY;
    }
    s->state = B_INFLIGHT;
    int rc = s->h->desc->write(s->h->state, s->batch, s->n, s->results);
    if (rc == VIGIL_WRITE_ASYNC) {
        update_gauges(s);
        return; /* write_done() comes later */
    }
    finish(s, rc);
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_sink *s = arg;
    if (s->done || s->state != B_NONE) {
        return;
    }
    if (s->handing_over) {
        finish_stop(s); /* the queue goes to the spool, for the successor */
        return;
    }
    if (!s->spool) { /* a successor: the spool is not ours yet */
        if (s->stopping) {
            finish_stop(s); /* it goes before it took anything over */
        }
        return;
    }
    bool spooled = vigil_spool_has_unread(s->spool);
    if (!spooled && vigil_record_count(&s->q) == 0) {
        if (s->stopping) {
            finish_stop(s);
        }
        return;
    }
    if (!spooled && !s->stopping && s->dc->batch_wait_ns &&
        vigil_record_count(&s->q) < s->batch_max) {
        uint64_t waited = vigil_mono_ns() - s->first_wait_ns;
        if (waited < s->dc->batch_wait_ns) {
            struct timeval tv = tv_of(s->dc->batch_wait_ns - waited);
            evtimer_add(s->wait_ev, &tv);
            return;
        }
    }
    if (take_batch(s)) {
        deliver(s);
    } else {
        pump_later(s);
    }
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_sink *s = arg;
    if (!s->done && s->state == B_WAITING) {
        deliver(s);
    }
}

void vigil_sink_write_done(struct vigil_instance *h)
{
    struct vigil_sink *s = h->sink;
    if (!s || s->state != B_INFLIGHT || s->done) {
        return;
    }
    finish(s, 0);
}

void vigil_sink_retry_after(struct vigil_instance *h, uint64_t delay_ns)
{
    if (h->sink) {
        h->sink->retry_after_ns = delay_ns > RETRY_AFTER_MAX_NS ? RETRY_AFTER_MAX_NS : delay_ns;
    }
}

/* ZMQ_FD is edge-triggered: read until EAGAIN (in bursts, re-arming
 * ourselves), and check ZMQ_EVENTS before sleeping again. */
static void sub_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_sink *s = arg;
    bool dry = read_bus(s);
    update_gauges(s);
    if (s->state == B_NONE) {
        pump_later(s);
    }
    if (!s->handing_over && !s->paused && (!dry || bus_has_input(s))) {
        event_active(s->sub_ev, EV_READ, 0);
    }
}

/* ---- Stopping ---------------------------------------------------------------------------- */

/* Whatever is not delivered goes to the spool for the next start. */
static void finish_stop(struct vigil_sink *s)
{
    if (s->done) {
        return;
    }
    s->done = true;
    if (!s->spool) { /* a successor stopped before it took over: nothing is its own */
        event_base_loopbreak(s->h->base);
        return;
    }
    spill(s);
    struct vigil_spool_counts c;
    vigil_spool_counts(s->spool, &c);
    size_t left = vigil_record_count(&s->q) + (s->from_spool ? 0 : s->n);
    if (left) {
        vigil_log(VIGIL_LOG_ERROR, s->h->component,
                  "stopping with %zu events the spool refused (counted as dropped)", left);
        vigil_count(&s->h->stats.dropped_total, left);
    }
    if (c.events && s->handing_over) {
        vigil_log(VIGIL_LOG_INFO, s->h->component,
                  "reload: handing %" PRIu64 " undelivered events in the spool to the new "
                  "config's sink",
                  c.events);
    } else if (c.events) {
        vigil_log(VIGIL_LOG_WARN, s->h->component,
                  "stopping with %" PRIu64 " undelivered events in the spool: they are delivered "
                  "first at the next start",
                  c.events);
    }
    update_gauges(s);
    event_base_loopbreak(s->h->base);
}

static void stop_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    finish_stop(arg);
}

void vigil_sink_stop(struct vigil_instance *h)
{
    struct vigil_sink *s = h->sink;
    s->stopping = true;
    /* Everything the bus sent is in the socket by now. */
    while (!read_bus(s)) {
    }
    update_gauges(s);
    if (s->state == B_WAITING) {
        finish_stop(s); /* failing: no point waiting */
        return;
    }
    struct timeval tv = tv_of(STOP_GRACE_NS);
    evtimer_add(s->stop_ev, &tv);
    if (s->state == B_NONE) {
        pump_later(s);
    }
}

/* ---- Reload ------------------------------------------------------------------------------- */

/* Our handover event came: nothing more is read; a write in flight may
 * finish (within the stop grace); then the queue goes to the spool and the
 * thread ends (finish_stop), for the successor to go on from there. */
static void begin_handover(struct vigil_sink *s)
{
    s->handing_over = true;
    s->stopping = true;
    if (s->state == B_INFLIGHT) {
        struct timeval tv = tv_of(STOP_GRACE_NS);
        evtimer_add(s->stop_ev, &tv); /* finish() or this ends it */
        return;
    }
    finish_stop(s);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_sink *s = arg;
    if (!s->spool && vigil_sink_open_spool(s->h) != 0) {
        struct timeval tv = {1, 0}; /* said why; the bus holds our events meanwhile */
        evtimer_add(s->resume_ev, &tv);
        return;
    }
    if (s->paused) {
        s->paused = false;
        event_active(s->sub_ev, EV_READ, 0);
    }
    pump_later(s);
}

void vigil_sink_resume(struct vigil_instance *h)
{
    event_active(h->sink->resume_ev, EV_TIMEOUT, 0);
}

void vigil_sink_handover(struct vigil_instance *h, const char *token)
{
    struct vigil_sink *s = h->sink;
    snprintf(s->handover, sizeof s->handover, "%s", token);
    atomic_store_explicit(&s->handover_set, true, memory_order_release);
}

/* ---- SIGHUP -----------------------------------------------------------------------------------
 */

static void hup_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_sink *s = arg;
    const struct vigil_plugin *d = s->h->desc;
    if (VIGIL_PLUGIN_HAS(d, reopen) && d->reopen) {
        int rc = d->reopen(s->h->state);
        if (rc != 0) {
            vigil_log(VIGIL_LOG_ERROR, s->h->component, "reopen failed: %s", vigil_strerror(rc));
        } else {
            vigil_log(VIGIL_LOG_INFO, s->h->component, "reopened (SIGHUP)");
        }
    }
}

void vigil_sink_reopen(struct vigil_instance *h)
{
    if (h->sink && h->running) {
        event_active(h->sink->hup_ev, EV_TIMEOUT, 0);
    }
}

/* ---- Life cycle
 * ---------------------------------------------------------------------------------- */

int vigil_sink_new(struct vigil_instance *h)
{
    struct vigil_sink *s = calloc(1, sizeof *s);
    if (!s) {
        return -ENOMEM;
    }
    h->sink = s;
    s->h = h;
    s->dc = &h->ic->delivery;
    s->backoff_ns = s->dc->min_backoff_ns;
    s->rng = vigil_mono_ns() | 1;
    s->write_rl = (struct vigil_ratelimit){.window_ns = 60000000000ull, .burst = 3};
    s->spool_rl = s->drop_rl = s->write_rl;
    msgpack_zone_init(&s->zone, 256 * 1024); /* a batch of decoded events, reused */
    vigil_bus_reader_init(&s->in);
    const struct vigil_plugin *d = h->desc;
    s->batch_max = s->dc->batch_max ? s->dc->batch_max
                   : VIGIL_PLUGIN_HAS(d, batch_max_events) && d->batch_max_events
                       ? (d->batch_max_events < 65536 ? d->batch_max_events : 65536)
                       : BATCH_MAX_DEFAULT;
    size_t max = s->batch_max;
    vigil_record_init(&s->q, s->dc->queue_events, s->dc->queue_bytes, 0);
    vigil_record_init(&s->arena, max, SIZE_MAX, 0);
    s->views = calloc(max, sizeof *s->views);
    s->batch = calloc(max, sizeof *s->batch);
    s->results = calloc(max, sizeof *s->results);
    int fd;
    size_t fdlen = sizeof fd;
    zmq_getsockopt(h->sock, ZMQ_FD, &fd, &fdlen);
    s->sub_ev = event_new(h->base, fd, EV_READ | EV_PERSIST, sub_cb, s);
    s->retry_ev = evtimer_new(h->base, retry_cb, s);
    s->flush_ev = evtimer_new(h->base, flush_cb, s);
    s->wait_ev = evtimer_new(h->base, pump_cb, s);
    s->pump_ev = event_new(h->base, -1, 0, pump_cb, s);
    s->stop_ev = evtimer_new(h->base, stop_deadline_cb, s);
    s->hup_ev = event_new(h->base, -1, 0, hup_cb, s);
    s->resume_ev = evtimer_new(h->base, resume_cb, s);
    if (!s->resume_ev || !s->views || !s->batch || !s->results || !s->sub_ev || !s->retry_ev ||
        !s->flush_ev || !s->wait_ev || !s->pump_ev || !s->stop_ev || !s->hup_ev) {
        return -ENOMEM;
    }
    /* A successor opens the spool once its predecessor let go of it
     * (vigil_sink_resume). */
    s->awaiting = h->takeover[0] != '\0';
    return s->awaiting ? 0 : vigil_sink_open_spool(h);
}

int vigil_sink_open_spool(struct vigil_instance *h)
{
    struct vigil_sink *s = h->sink;
    char err[512];
    int rc = vigil_spool_open(s->dc->spool_path, s->dc->spool_max, h->component, &s->spool, err,
                              sizeof err);
    if (rc != 0) {
        vigil_log(VIGIL_LOG_ERROR, h->component, "%s", err);
        return VIGIL_ECONFIG;
    }
    struct vigil_spool_counts c;
    vigil_spool_counts(s->spool, &c);
    if (c.events) {
        vigil_log(VIGIL_LOG_INFO, h->component,
                  "%" PRIu64 " events left in the spool %s by %s: delivering them first", c.events,
                  s->dc->spool_path,
                  h->takeover[0] ? "the sink this reload replaced" : "the last run");
    }
    update_gauges(s);
    return 0;
}

void vigil_sink_start(struct vigil_instance *h)
{
    struct vigil_sink *s = h->sink;
    event_add(s->sub_ev, NULL);
    event_active(s->sub_ev, EV_READ, 0);
}

void vigil_sink_free(struct vigil_instance *h)
{
    struct vigil_sink *s = h->sink;
    if (!s) {
        return;
    }
    struct event *evs[] = {s->sub_ev,  s->retry_ev, s->flush_ev, s->wait_ev,
                           s->pump_ev, s->stop_ev,  s->hup_ev,   s->resume_ev};
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++) {
        if (evs[i]) {
            event_free(evs[i]);
        }
    }
    vigil_spool_close(s->spool);
    msgpack_zone_destroy(&s->zone);
    vigil_bus_reader_fini(&s->in);
    vigil_record_fini(&s->q);
    vigil_record_fini(&s->arena);
    free(s->views);
    free(s->batch);
    free(s->results);
    free(s);
    h->sink = NULL;
}

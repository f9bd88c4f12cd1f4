/* The rules engine on the bus: its own thread and event_base, a SUB socket
 * subscribed to the rules' prefixes, and a PUSH back to the bus for
 * verdicts. The bus may block sending to us while we push to it, so the push
 * never blocks: a verdict the bus has no room for waits in a bounded backlog
 * while we keep reading, which breaks the cycle that would otherwise
 * deadlock the two threads.
 */
#include "rules_stage.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "bus.h"
#include "log.h"
#include "record.h"

#define BATCH_MAX 1024
#define BACKLOG_MAX 65536
#define TICK_MS 1000
#define FLUSH_RETRY_MS 10
#define STOP_GRACE_MS 3000
/* The tick is also the thread's watchdog beat (stats.h). */
_Static_assert(TICK_MS <= VIGIL_BEAT_MS, "the rules' tick must come at least every beat");

struct vigil_rules_stage {
    struct vigil_rules *rules;
    void *sub, *push;
    struct event_base *base;
    struct event *sub_ev, *tick_ev, *flush_ev, *stop_ev;
    pthread_t thread;
    bool running;
    struct vigil_stage_stats stats;
    msgpack_zone zone;
    struct vigil_bus_reader in;      /* batches from the bus (bus.h) */
    struct vigil_record_buf backlog; /* verdicts waiting for room on the bus */
    struct vigil_ratelimit rl;

    /* A reload (vigil_rules_stage_swap): the main thread asks, waits. */
    struct event *swap_ev;
    pthread_mutex_t swap_mu;
    pthread_cond_t swap_cv;
    struct vigil_rules *swap_new; /* the engine to judge with */
    struct vigil_rules_reload swap_counts;
    unsigned swap_subs;
    int swap_rc;
    bool swap_done;
};

/* ---- Verdicts out ------------------------------------------------------------- */

static bool send_now(struct vigil_rules_stage *s, const char *topic, size_t tl, const char *body,
                     size_t bl)
{
    if (zmq_send(s->push, topic, tl, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
        return false;
    }
    /* The first frame went: the second cannot meet the HWM. */
    while (zmq_send(s->push, body, bl, 0) == -1 && zmq_errno() == EINTR) {
    }
    vigil_count(&s->stats.out_total, 1);
    return true;
}

/* Sends what waits, in order; true when nothing is left. */
static bool flush_backlog(struct vigil_rules_stage *s)
{
    struct vigil_record r;
    while (vigil_record_front(&s->backlog, &r)) {
        if (!send_now(s, r.topic, r.topic_len, r.body, r.body_len)) {
            return false;
        }
        vigil_record_pop(&s->backlog);
    }
    atomic_store(&s->stats.queue_depth, 0);
    return true;
}

static void on_verdict(void *arg, const char *topic, const char *body, size_t len)
{
    struct vigil_rules_stage *s = arg;
    size_t tl = strlen(topic);
    if (vigil_record_count(&s->backlog) == 0 && send_now(s, topic, tl, body, len)) {
        return;
    }
    int rc = vigil_record_append(&s->backlog, topic, tl, body, len);
    if (rc == -ENOBUFS) {
        vigil_count(&s->stats.dropped_total, 1);
        uint64_t suppressed;
        if (vigil_ratelimit_ok(&s->rl, vigil_mono_ns(), &suppressed)) {
            vigil_log(VIGIL_LOG_ERROR, "rules",
                      "verdict backlog full (%d): a verdict was dropped (counted in vigil.self; "
                      "%llu more not logged)",
                      BACKLOG_MAX, (unsigned long long)suppressed);
        }
        return;
    }
    if (rc != 0) {
        vigil_count(&s->stats.dropped_total, 1);
        return;
    }
    atomic_store(&s->stats.queue_depth, vigil_record_count(&s->backlog));
    if (!evtimer_pending(s->flush_ev, NULL)) {
        struct timeval tv = {0, FLUSH_RETRY_MS * 1000};
        evtimer_add(s->flush_ev, &tv);
    }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_rules_stage *s = arg;
    if (!flush_backlog(s)) {
        struct timeval tv = {0, FLUSH_RETRY_MS * 1000};
        evtimer_add(s->flush_ev, &tv);
    }
}

/* ---- Events in -------------------------------------------------------------------- */

/* Judges up to BATCH_MAX events; returns false when the socket ran dry. */
static bool judge_batch(struct vigil_rules_stage *s)
{
    uint64_t now = vigil_now_ns(); /* one clock read per batch: rules need ms, not ns */
    unsigned n = 0;
    int rc = 1;
    const char *topic, *body;
    size_t tl, bl;
    while (n < BATCH_MAX && (rc = vigil_bus_reader_next(&s->in, s->sub, &topic, &tl, &body, &bl))) {
        if (rc < 0) {
            vigil_count(&s->stats.errors_total, 1); /* the bus never sends those */
            continue;
        }
        n++;
        struct vigil_event_view v;
        const char *why;
        /* The bus checked it already: no second pre-scan, and the tree
         * only if a rule needs it (most read labels and values through the
         * engine's slots). */
        if (vigil_rules_read(s->rules, &v, topic, tl, body, bl, &s->zone, &why) == 0) {
            vigil_rules_eval(s->rules, &v, now, on_verdict, s);
        } else {
            vigil_count(&s->stats.errors_total, 1);
        }
        msgpack_zone_clear(&s->zone);
    }
    vigil_count_own(&s->stats.in_total, n);
    return rc != 0;
}

/* ZMQ_FD is edge-triggered: drain, check ZMQ_EVENTS, re-arm when stopping
 * early so other events (ticks, flushes) get their turn. */
static void sub_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_rules_stage *s = arg;
    bool more = judge_batch(s);
    int events = 0;
    size_t len = sizeof events;
    if (more || (zmq_getsockopt(s->sub, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN))) {
        event_active(s->sub_ev, EV_READ, 0);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_rules_stage *s = arg;
    vigil_count_own(&s->stats.beats, 1);
    vigil_rules_tick(s->rules, vigil_now_ns(), on_verdict, s);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_rules_stage *s = arg;
    /* Judge what the bus already sent, then hand every verdict over. */
    while (judge_batch(s)) {
    }
    uint64_t deadline = vigil_mono_ns() + (uint64_t)STOP_GRACE_MS * 1000000u;
    while (!flush_backlog(s) && vigil_mono_ns() < deadline) {
        struct timespec ts = {0, FLUSH_RETRY_MS * 1000000};
        nanosleep(&ts, NULL);
    }
    size_t left = vigil_record_count(&s->backlog);
    if (left) {
        vigil_log(VIGIL_LOG_ERROR, "rules", "stopping with %zu verdicts not handed to the bus",
                  left);
        vigil_count(&s->stats.dropped_total, left);
    }
    event_base_loopbreak(s->base);
}

static bool has_prefix(const struct vigil_rules *r, const char *p)
{
    for (size_t i = 0; i < vigil_rules_nprefixes(r); i++) {
        if (strcmp(vigil_rules_prefix(r, i), p) == 0) {
            return true;
        }
    }
    return false;
}

/* Subscriptions for the new engine first, so that no prefix both engines
 * judge is dropped even for a moment; then those only the old one had. */
static unsigned resubscribe(struct vigil_rules_stage *s, const struct vigil_rules *nw,
                            const struct vigil_rules *old)
{
    unsigned added = 0;
    for (size_t i = 0; i < vigil_rules_nprefixes(nw); i++) {
        const char *p = vigil_rules_prefix(nw, i);
        if (!has_prefix(old, p)) {
            zmq_setsockopt(s->sub, ZMQ_SUBSCRIBE, p, strlen(p));
            added++;
        }
    }
    for (size_t i = 0; i < vigil_rules_nprefixes(old); i++) {
        const char *p = vigil_rules_prefix(old, i);
        if (!has_prefix(nw, p)) {
            zmq_setsockopt(s->sub, ZMQ_UNSUBSCRIBE, p, strlen(p));
        }
    }
    return added;
}

static void swap_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_rules_stage *s = arg;
    pthread_mutex_lock(&s->swap_mu);
    struct vigil_rules *nw = s->swap_new, *old = s->rules;
    /* Verdicts of the retired rules leave before any of the new ones. */
    int rc = vigil_rules_adopt(nw, old, vigil_now_ns(), on_verdict, s, &s->swap_counts);
    if (rc == 0) {
        s->swap_subs = resubscribe(s, nw, old);
        s->rules = nw;
        s->swap_new = old; /* handed back, to be freed */
    }
    s->swap_rc = rc;
    s->swap_done = true;
    pthread_cond_signal(&s->swap_cv);
    pthread_mutex_unlock(&s->swap_mu);
}

struct vigil_rules *vigil_rules_stage_swap(struct vigil_rules_stage *s, struct vigil_rules *rules,
                                           unsigned *new_subs, struct vigil_rules_reload *counts)
{
    pthread_mutex_lock(&s->swap_mu);
    s->swap_new = rules;
    s->swap_done = false;
    pthread_mutex_unlock(&s->swap_mu);
    if (s->running) {
        event_active(s->swap_ev, EV_TIMEOUT, 0);
    } else {
        swap_cb(-1, 0, s);
    }
    pthread_mutex_lock(&s->swap_mu);
    while (!s->swap_done) {
        pthread_cond_wait(&s->swap_cv, &s->swap_mu);
    }
    struct vigil_rules *old = s->swap_rc == 0 ? s->swap_new : NULL;
    s->swap_new = NULL;
    *new_subs = s->swap_subs;
    if (counts) {
        *counts = s->swap_counts;
    }
    pthread_mutex_unlock(&s->swap_mu);
    return old;
}

static void *stage_main(void *arg)
{
    struct vigil_rules_stage *s = arg;
    struct timeval tick = {TICK_MS / 1000, (TICK_MS % 1000) * 1000};
    event_add(s->tick_ev, &tick);
    event_add(s->sub_ev, NULL);
    event_add(s->stop_ev, NULL);
    event_active(s->sub_ev, EV_READ, 0);
    vigil_count_own(&s->stats.beats, 1); /* the loop runs: the first beat */
    event_base_dispatch(s->base);
    return NULL;
}

/* ---- Life cycle ------------------------------------------------------------------------ */

struct vigil_rules_stage *vigil_rules_stage_new(void *zctx, struct vigil_rules *rules, int hwm)
{
    struct vigil_rules_stage *s = calloc(1, sizeof *s);
    if (!s) {
        return NULL;
    }
    s->rules = rules;
    pthread_mutex_init(&s->swap_mu, NULL);
    pthread_cond_init(&s->swap_cv, NULL);
    s->rl = (struct vigil_ratelimit){.window_ns = 10000000000ull, .burst = 3};
    msgpack_zone_init(&s->zone, 64 * 1024);
    vigil_bus_reader_init(&s->in);
    /* A bound in verdicts only, as the backlog always had. */
    vigil_record_init(&s->backlog, BACKLOG_MAX, SIZE_MAX, 0);
    s->base = event_base_new();
    s->sub = zmq_socket(zctx, ZMQ_SUB);
    s->push = zmq_socket(zctx, ZMQ_PUSH);
    if (!s->base || !s->sub || !s->push) {
        vigil_rules_stage_free(s);
        return NULL;
    }
    int linger = 2000;
    int sub_hwm = vigil_bus_inproc_hwm(hwm);
    zmq_setsockopt(s->sub, ZMQ_RCVHWM, &sub_hwm, sizeof sub_hwm);
    zmq_setsockopt(s->push, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s->sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s->push, ZMQ_LINGER, &linger, sizeof linger);
    int fd;
    size_t fdlen = sizeof fd;
    if (zmq_connect(s->sub, VIGIL_BUS_OUT) != 0 || zmq_connect(s->push, VIGIL_BUS_IN) != 0 ||
        zmq_getsockopt(s->sub, ZMQ_FD, &fd, &fdlen) != 0) {
        vigil_rules_stage_free(s);
        return NULL;
    }
    for (size_t i = 0; i < vigil_rules_nprefixes(rules); i++) {
        const char *p = vigil_rules_prefix(rules, i);
        zmq_setsockopt(s->sub, ZMQ_SUBSCRIBE, p, strlen(p));
    }
    s->sub_ev = event_new(s->base, fd, EV_READ | EV_PERSIST, sub_cb, s);
    s->tick_ev = event_new(s->base, -1, EV_PERSIST, tick_cb, s);
    s->flush_ev = evtimer_new(s->base, flush_cb, s);
    s->stop_ev = event_new(s->base, -1, 0, stop_cb, s);
    s->swap_ev = event_new(s->base, -1, 0, swap_cb, s);
    if (!s->sub_ev || !s->tick_ev || !s->flush_ev || !s->stop_ev || !s->swap_ev) {
        vigil_rules_stage_free(s);
        return NULL;
    }
    return s;
}

unsigned vigil_rules_stage_subscriptions(const struct vigil_rules_stage *s)
{
    return (unsigned)vigil_rules_nprefixes(s->rules);
}

int vigil_rules_stage_start(struct vigil_rules_stage *s)
{
    int rc = pthread_create(&s->thread, NULL, stage_main, s);
    if (rc == 0) {
        pthread_setname_np(s->thread, "vigil-rules"); /* what top -H and perf show */
    }
    if (rc != 0) {
        return -rc;
    }
    s->running = true;
    return 0;
}

void vigil_rules_stage_stop(struct vigil_rules_stage *s)
{
    if (!s || !s->running) {
        return;
    }
    event_active(s->stop_ev, EV_TIMEOUT, 0);
    pthread_join(s->thread, NULL);
    s->running = false;
}

void vigil_rules_stage_free(struct vigil_rules_stage *s)
{
    if (!s) {
        return;
    }
    vigil_rules_stage_stop(s);
    struct event *evs[] = {s->sub_ev, s->tick_ev, s->flush_ev, s->stop_ev, s->swap_ev};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++) {
        if (evs[i]) {
            event_free(evs[i]);
        }
    }
    if (s->base) {
        event_base_free(s->base);
    }
    vigil_record_fini(&s->backlog);
    if (s->sub) {
        zmq_close(s->sub);
    }
    if (s->push) {
        zmq_close(s->push);
    }
    vigil_bus_reader_fini(&s->in);
    msgpack_zone_destroy(&s->zone);
    pthread_mutex_destroy(&s->swap_mu);
    pthread_cond_destroy(&s->swap_cv);
    free(s);
}

struct vigil_stage_stats *vigil_rules_stage_stats(struct vigil_rules_stage *s)
{
    return &s->stats;
}

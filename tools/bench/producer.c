/* The producers: one thread and one ZeroMQ PUSH socket each, publishing
 * real vigil events (two frames, topic + msgpack body built with the event
 * builder; or, with a batch above 1, that many events per message in the
 * producers' batch format of docs/events.md) at a fixed total rate paced by absolute deadlines, or
 * as fast as the bus takes them. Bodies are built once per template and only ts, seq and four
 * values are rewritten per event, so the bench costs little beside the daemon it measures.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "bench.h"
#include "bus.h"
#include "event.h"
#include "json.h"
#include "log.h"
#include "record.h"

#define SNDHWM 10000
#define BURST_MAX 256 /* events sent before looking at the clock again when behind */

static const char *const value_keys[4] = {"cpu_pct", "exits_per_s", "mem_bytes", "latency_ms"};

/* Offset just after `key` (a msgpack fixstr) followed by marker byte `m`, or
 * 0 when absent. */
static size_t find_field(const char *body, size_t len, const char *key, unsigned char m)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl + 2 <= len; i++) {
        if ((unsigned char)body[i] == (0xa0 | kl) && memcmp(body + i + 1, key, kl) == 0 &&
            (unsigned char)body[i + 1 + kl] == m) {
            return i + 2 + kl;
        }
    }
    return 0;
}

static int build_templates(struct bench_producer *p, const char *host)
{
    struct vigil_event_builder b;
    vigil_event_builder_init(&b);
    int rc = 0;
    for (unsigned t = 0; t < BENCH_TMPLS && rc == 0; t++) {
        unsigned series = t % 8;
        bool violating = t >= 8;
        char buf[64];
        vigil_event_begin(&b, BENCH_TOPIC);
        /* A ts and seq above 2^32 make the builder use the 9-byte uint64
         * encoding, which the producer then overwrites in place. */
        vigil_event_set_ts(&b, UINT64_C(1) << 62);
        snprintf(buf, sizeof buf, "p%ds%u", p->index, series);
        vigil_event_add_label(&b, "series", buf);
        snprintf(buf, sizeof buf, "%s:%c%u", violating ? "guest" : "user", violating ? 'g' : 'u',
                 series);
        vigil_event_add_label(&b, "subject", buf);
        vigil_event_add_label(&b, "action", violating ? "write" : "read");
        snprintf(buf, sizeof buf, "/srv/data/%u", series);
        vigil_event_add_label(&b, "resource", buf);
        vigil_event_add_label(&b, "region", "eu-west-1");
        for (int v = 0; v < 4; v++) {
            vigil_event_add_value(&b, value_keys[v], 1.0);
        }
        const char *body;
        size_t len;
        if (vigil_event_finish(&b, host, p->source, UINT64_C(1) << 40, &body, &len) != 0) {
            rc = -1;
            break;
        }
        struct bench_tmpl *tm = &p->t[t];
        tm->body = malloc(len);
        if (!tm->body) {
            rc = -1;
            break;
        }
        memcpy(tm->body, body, len);
        tm->len = len;
        tm->off_ts = find_field(body, len, "ts", 0xcf);
        tm->off_seq = find_field(body, len, "seq", 0xcf);
        for (int v = 0; v < 4; v++) {
            tm->off_val[v] = find_field(body, len, value_keys[v], 0xcb);
            if (!tm->off_val[v]) {
                rc = -1;
            }
        }
        if (!tm->off_ts || !tm->off_seq) {
            rc = -1;
        }
    }
    vigil_event_builder_fini(&b);
    return rc;
}

static void put_be64(char *at, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        at[i] = (char)(v & 0xff);
        v >>= 8;
    }
}

static void put_double(char *at, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    put_be64(at, v);
}

unsigned bench_producer_fill(struct bench_producer *p, uint64_t seq, uint64_t ts_real)
{
    /* One spike of each kind per BENCH_PERIOD events; the rest stays well
     * inside every rule (see bench_rules_yaml). */
    uint64_t phase = seq % BENCH_PERIOD;
    bool deny = phase == BENCH_PERIOD * 3 / 4;
    unsigned t = (unsigned)(seq % 8) + (deny ? 8u : 0u);
    struct bench_tmpl *tm = &p->t[t];
    double cpu = phase == 1 ? 99.9 : 10.0 + (double)(seq * 37 % 61);
    double exits = phase == BENCH_PERIOD / 2 ? 150000.0 : (double)(seq * 13 % 5000);
    double mem = 1e9 + (double)(seq % 1000) * 1e5;
    double lat = (double)(seq % 100) / 4.0;
    put_be64(tm->body + tm->off_ts, ts_real);
    put_be64(tm->body + tm->off_seq, seq);
    put_double(tm->body + tm->off_val[0], cpu);
    put_double(tm->body + tm->off_val[1], exits);
    put_double(tm->body + tm->off_val[2], mem);
    put_double(tm->body + tm->off_val[3], lat);
    return t;
}

size_t bench_producer_json(const struct bench_producer *p, unsigned tmpl, char *buf, size_t cap)
{
    const struct bench_tmpl *tm = &p->t[tmpl];
    size_t n = vigil_json_event(BENCH_TOPIC, strlen(BENCH_TOPIC), tm->body, tm->len, buf, cap);
    return n == SIZE_MAX ? 0 : n;
}

int bench_producers_init(struct bench_producers *ps, int n, const char *host)
{
    memset(ps, 0, sizeof *ps);
    ps->n = n;
    for (int i = 0; i < n; i++) {
        struct bench_producer *p = &ps->p[i];
        p->index = i;
        p->all = ps;
        snprintf(p->source, sizeof p->source, BENCH_SOURCE_PREFIX "%d", i);
        if (build_templates(p, host) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Sends one two-frame message, waiting while the bus is full
 * (backpressure) but not past a stop request. */
static int send2(void *sock, const char *topic, size_t topic_len, const char *body, size_t len,
                 atomic_bool *stop)
{
    while (zmq_send(sock, topic, topic_len, ZMQ_SNDMORE) == -1) {
        if (zmq_errno() != EINTR && zmq_errno() != EAGAIN) {
            return zmq_errno();
        }
        if (atomic_load(stop)) {
            return ECANCELED;
        }
    }
    /* Only the first frame of a message meets the high-water mark. */
    while (zmq_send(sock, body, len, 0) == -1) {
        if (zmq_errno() != EINTR) {
            return zmq_errno();
        }
    }
    return 0;
}

/* Sends the events held in a batch as one message (an empty topic frame,
 * then the records) and empties it; nothing held: nothing sent. */
static int send_held(void *sock, struct vigil_record_buf *held, atomic_bool *stop)
{
    if (vigil_record_count(held) == 0) {
        return 0;
    }
    int e = send2(sock, "", 0, vigil_record_data(held), vigil_record_bytes(held), stop);
    vigil_record_clear(held);
    return e;
}

static void *producer_main(void *arg)
{
    struct bench_producer *p = arg;
    struct bench_producers *ps = p->all;
    void *sock = zmq_socket(ps->zctx, ZMQ_PUSH);
    if (!sock) {
        p->err = zmq_errno();
        return NULL;
    }
    int hwm = SNDHWM, timeout_ms = 200;
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    if (zmq_connect(sock, ps->endpoint) != 0) {
        p->err = zmq_errno();
        zmq_close(sock);
        return NULL;
    }
    /* Each producer's share of the rate; event k (from 0) is due at
     * t0 + k / per_s: absolute deadlines, so a late wake-up is caught up
     * instead of drifting. */
    double per_s = ps->rate / ps->n;
    uint64_t tick = ps->tick_ns ? ps->tick_ns : BENCH_PACE_TICK_NS;
    struct timespec t0 = {.tv_sec = (time_t)(ps->t0 / 1000000000u),
                          .tv_nsec = (long)(ps->t0 % 1000000000u)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t0, NULL);
    uint64_t seq = 0, sent = 0; /* events made; of them handed to ZeroMQ */
    bool in_window = false;
    /* --batch: events wait here until there are ps->batch of them or the
     * burst ends, so that a paced producer holds none past its tick. */
    struct vigil_record_buf held;
    vigil_record_init(&held, SIZE_MAX, VIGIL_BUS_PUBLISH_BATCH_MAX, 0); /* what the bus takes */
    while (!atomic_load_explicit(&ps->stop, memory_order_relaxed)) {
        uint64_t burst = BURST_MAX;
        if (per_s > 0) {
            uint64_t now = vigil_mono_ns();
            uint64_t due = (uint64_t)((double)(now - ps->t0) * per_s / 1e9) + 1;
            if (due <= seq) {
                /* Wake on a tick grid (bench.h) and send what is due by
                 * then: with --batch, that is a batch per tick. */
                uint64_t rel = (uint64_t)ceil((double)seq * 1e9 / per_s);
                uint64_t at = ps->t0 + (rel + tick - 1) / tick * tick;
                struct timespec ts = {.tv_sec = (time_t)(at / 1000000000u),
                                      .tv_nsec = (long)(at % 1000000000u)};
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
                continue;
            }
            burst = due - seq < BURST_MAX ? due - seq : BURST_MAX;
        }
        bool done = false;
        for (uint64_t i = 0; i < burst; i++) {
            uint64_t ts = vigil_now_ns();
            if (ts >= ps->win_end_real) {
                done = true;
                break;
            }
            if (!in_window && ts >= ps->win_start_real) {
                in_window = true;
                p->warm_last = seq;
            }
            unsigned t = bench_producer_fill(p, seq + 1, ts);
            const struct bench_tmpl *tm = &p->t[t];
            int e;
            if (ps->batch <= 1) {
                e = send2(sock, BENCH_TOPIC, sizeof BENCH_TOPIC - 1, tm->body, tm->len, &ps->stop);
            } else {
                e = vigil_record_append(&held, BENCH_TOPIC, sizeof BENCH_TOPIC - 1, tm->body,
                                        tm->len);
                if (e == -ENOBUFS) { /* at the byte bound: this batch goes, the event starts one */
                    e = send_held(sock, &held, &ps->stop);
                    e = e ? e
                          : vigil_record_append(&held, BENCH_TOPIC, sizeof BENCH_TOPIC - 1,
                                                tm->body, tm->len);
                }
                if (e == 0 && vigil_record_count(&held) >= (size_t)ps->batch) {
                    e = send_held(sock, &held, &ps->stop);
                }
            }
            if (e != 0) {
                p->err = e == ECANCELED ? 0 : e;
                done = true;
                break;
            }
            seq++;
            sent = vigil_record_count(&held) ? sent : seq;
        }
        if (!done) {
            int e = send_held(sock, &held, &ps->stop);
            if (e != 0) {
                p->err = e == ECANCELED ? 0 : e;
                break;
            }
            sent = seq;
        }
        if (done) {
            break;
        }
    }
    /* Events still held when the window ended count once they are sent. */
    if (!p->err && vigil_record_count(&held) && send_held(sock, &held, &ps->stop) == 0) {
        sent = seq;
    }
    vigil_record_fini(&held);
    if (!in_window) {
        p->warm_last = seq;
    }
    p->sent = sent;
    /* The socket stays open until fini, after the drain: libzmq may drop
     * the last message of a PUSH socket closed right after a send that
     * waited at the high-water mark (libzmq issue #1922), even with a
     * linger. The main thread closes it once this thread is joined. */
    p->sock = sock;
    return NULL;
}

int bench_producers_start(struct bench_producers *ps)
{
    if (!ps->zctx) {
        ps->zctx = zmq_ctx_new();
        if (!ps->zctx) {
            return -1;
        }
    }
    for (int i = 0; i < ps->n; i++) {
        if (pthread_create(&ps->p[i].thread, NULL, producer_main, &ps->p[i]) != 0) {
            atomic_store(&ps->stop, true);
            return -1;
        }
        ps->p[i].started = true;
    }
    return 0;
}

void bench_producers_join(struct bench_producers *ps)
{
    for (int i = 0; i < ps->n; i++) {
        if (ps->p[i].started) {
            pthread_join(ps->p[i].thread, NULL);
            ps->p[i].started = false;
        }
    }
}

void bench_producers_fini(struct bench_producers *ps)
{
    atomic_store(&ps->stop, true);
    bench_producers_join(ps);
    for (int i = 0; i < ps->n; i++) {
        if (ps->p[i].sock) {
            /* Everything has arrived by now, or the run reports it lost:
             * no point waiting long. */
            int linger = 1000;
            zmq_setsockopt(ps->p[i].sock, ZMQ_LINGER, &linger, sizeof linger);
            zmq_close(ps->p[i].sock);
            ps->p[i].sock = NULL;
        }
        for (unsigned t = 0; t < BENCH_TMPLS; t++) {
            free(ps->p[i].t[t].body);
            ps->p[i].t[t].body = NULL;
        }
    }
    if (ps->zctx) {
        zmq_ctx_term(ps->zctx);
        ps->zctx = NULL;
    }
}

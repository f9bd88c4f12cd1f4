/* The vigil.self monitor: subscribes to vigild's own reports and keeps the
 * counters the bench reports (the bus's malformed and lost, the rules'
 * verdicts, one sink instance's delivered count) and, for the discard
 * sink, the delivered count over time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "bench.h"
#include "event.h"
#include "log.h"

#define HIST_MAX 1000000 /* samples kept; at 100 ms that is a day */

static uint64_t val(const struct vigil_event_view *v, const char *key)
{
    char path[64];
    snprintf(path, sizeof path, "values.%s", key);
    uint64_t out = 0;
    if (vigil_msgpack_u64(vigil_event_get(v, path), &out) != 0) {
        double d;
        if (vigil_msgpack_double(vigil_event_get(v, path), &d) == 0 && d >= 0) {
            out = (uint64_t)d;
        }
    }
    return out;
}

static bool label_is(const struct vigil_event_view *v, const char *path, const char *want)
{
    const char *s;
    size_t n;
    return vigil_msgpack_str(vigil_event_get(v, path), &s, &n) == 0 && n == strlen(want) &&
           memcmp(s, want, n) == 0;
}

static void account(struct bench_self *s, const struct vigil_event_view *v)
{
    struct bench_self_counters *c = &s->c;
    pthread_mutex_lock(&s->mu);
    if (label_is(v, "labels.stage", "bus")) {
        c->bus_in = val(v, "in_total");
        c->bus_malformed = val(v, "malformed_total");
        c->bus_lost = val(v, "lost_total");
        c->bus_dropped = val(v, "dropped_total");
        c->bus_ext_dropped = val(v, "external_dropped_total");
        c->reports++;
    } else if (label_is(v, "labels.stage", "rules")) {
        c->rules_in = val(v, "in_total");
        c->rules_out = val(v, "out_total");
        c->rules_dropped = val(v, "dropped_total");
    } else if (label_is(v, "labels.stage", "sink") && s->sink_name[0] &&
               label_is(v, "labels.instance", s->sink_name)) {
        c->sink_reports++;
        c->sink_in = val(v, "in_total");
        c->sink_out = val(v, "out_total");
        c->sink_failed = val(v, "failed_total");
        c->sink_dropped = val(v, "dropped_total");
        c->sink_retried = val(v, "retried_total");
        c->sink_errors = val(v, "errors_total");
        c->sink_spooled = val(v, "spooled_total");
        if (s->nhist == s->caphist && s->caphist < HIST_MAX) {
            size_t cap = s->caphist ? s->caphist * 2 : 1024;
            struct bench_self_sample *nh = realloc(s->hist, cap * sizeof *nh);
            if (nh) {
                s->hist = nh;
                s->caphist = cap;
            }
        }
        if (s->nhist < s->caphist) {
            s->hist[s->nhist++] = (struct bench_self_sample){vigil_mono_ns(), c->sink_out};
        }
    }
    pthread_mutex_unlock(&s->mu);
}

struct bench_self_counters bench_self_get(struct bench_self *s)
{
    pthread_mutex_lock(&s->mu);
    struct bench_self_counters c = s->c;
    pthread_mutex_unlock(&s->mu);
    return c;
}

struct bench_self_counters bench_self_since(const struct bench_self_counters *a,
                                            const struct bench_self_counters *b)
{
    /* The struct is all uint64_t: subtract it as an array, saturating (a
     * restarted daemon starts its counters again). */
    enum { N = sizeof(struct bench_self_counters) / sizeof(uint64_t) };
    uint64_t x[N], y[N];
    memcpy(x, a, sizeof x);
    memcpy(y, b, sizeof y);
    for (size_t i = 0; i < N; i++) {
        x[i] = x[i] >= y[i] ? x[i] - y[i] : 0;
    }
    struct bench_self_counters out;
    memcpy(&out, x, sizeof out);
    return out;
}

struct self_thread {
    struct bench_self *s;
    void *sock;
};

static void *self_main(void *arg)
{
    struct self_thread *st = arg;
    struct bench_self *s = st->s;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 8192);
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    while (!atomic_load(&s->stop)) {
        zmq_pollitem_t it = {.socket = st->sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 100) <= 0) {
            continue;
        }
        while (zmq_msg_recv(&topic, st->sock, ZMQ_DONTWAIT) >= 0) {
            if (!zmq_msg_more(&topic)) {
                continue;
            }
            zmq_msg_recv(&body, st->sock, 0);
            struct vigil_event_view v;
            const char *why;
            if (vigil_event_decode(&v, zmq_msg_data(&topic), zmq_msg_size(&topic),
                                   zmq_msg_data(&body), zmq_msg_size(&body), SIZE_MAX, &zone,
                                   &why) == 0) {
                account(s, &v);
            }
            msgpack_zone_clear(&zone);
        }
    }
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    msgpack_zone_destroy(&zone);
    zmq_close(st->sock);
    free(st);
    return NULL;
}

int bench_self_start(struct bench_self *s, void *zctx)
{
    pthread_mutex_init(&s->mu, NULL);
    struct self_thread *st = calloc(1, sizeof *st);
    if (!st) {
        return -1;
    }
    st->s = s;
    st->sock = zmq_socket(zctx, ZMQ_SUB);
    int linger = 0, hwm = 100000;
    zmq_setsockopt(st->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(st->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(st->sock, ZMQ_SUBSCRIBE, "vigil.self", 10);
    if (zmq_connect(st->sock, s->endpoint) != 0) {
        fprintf(stderr, "vigil-bench: cannot subscribe to %s: %s\n", s->endpoint,
                zmq_strerror(zmq_errno()));
        zmq_close(st->sock);
        free(st);
        return -1;
    }
    if (pthread_create(&s->thread, NULL, self_main, st) != 0) {
        zmq_close(st->sock);
        free(st);
        return -1;
    }
    s->started = true;
    return 0;
}

void bench_self_stop(struct bench_self *s)
{
    if (s->started) {
        atomic_store(&s->stop, true);
        pthread_join(s->thread, NULL);
        s->started = false;
    }
}

void bench_self_fini(struct bench_self *s)
{
    bench_self_stop(s);
    free(s->hist);
    s->hist = NULL;
    s->nhist = s->caphist = 0;
}

double bench_self_sink_out_at(struct bench_self *s, uint64_t t)
{
    pthread_mutex_lock(&s->mu);
    double out = 0;
    size_t i = 0;
    while (i < s->nhist && s->hist[i].mono < t) {
        i++;
    }
    if (s->nhist == 0) {
        out = 0;
    } else if (i == 0) {
        out = (double)s->hist[0].sink_out;
    } else if (i == s->nhist) {
        out = (double)s->hist[s->nhist - 1].sink_out;
    } else {
        const struct bench_self_sample *a = &s->hist[i - 1], *b = &s->hist[i];
        double f = (double)(t - a->mono) / (double)(b->mono - a->mono);
        out = (double)a->sink_out + f * ((double)b->sink_out - (double)a->sink_out);
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

uint64_t bench_self_reached(struct bench_self *s, uint64_t n)
{
    pthread_mutex_lock(&s->mu);
    uint64_t at = 0;
    for (size_t i = 0; i < s->nhist; i++) {
        if (s->hist[i].sink_out >= n) {
            at = s->hist[i].mono;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return at;
}

/* vigil-bench --reload-every: reloads the running vigild's config while the
 * producers publish, and measures each reload's pause: from the SIGHUP to
 * the first verdict of the rule that only the new config has (the new rules
 * judging). Lost events are the bench's usual count.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "bench.h"
#include "event.h"
#include "log.h"

#define SEEN_TIMEOUT_NS 5000000000ull

/* Whether the message is alert.fired of rule `want`. */
static bool is_verdict_of(const char *topic, size_t tl, const char *body, size_t bl,
                          const char *want, msgpack_zone *zone)
{
    struct vigil_event_view v;
    const char *why, *rule;
    size_t n;
    bool yes = vigil_event_decode(&v, topic, tl, body, bl, 1u << 20, zone, &why) == 0 &&
               vigil_msgpack_str(vigil_event_get(&v, "labels.rule"), &rule, &n) == 0 &&
               n == strlen(want) && memcmp(rule, want, n) == 0;
    msgpack_zone_clear(zone);
    return yes;
}

/* Waits for rule `want`'s first verdict; its arrival time, or 0. */
static uint64_t wait_verdict(struct bench_reloader *r, void *sub, const char *want,
                             msgpack_zone *zone)
{
    uint64_t deadline = vigil_mono_ns() + SEEN_TIMEOUT_NS;
    char topic[256], *body = malloc(1u << 20);
    uint64_t at = 0;
    while (body && !at && !atomic_load(&r->stop) && vigil_mono_ns() < deadline) {
        zmq_pollitem_t it = {.socket = sub, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 50) <= 0) {
            continue;
        }
        int tl = zmq_recv(sub, topic, sizeof topic, 0);
        int more = 0;
        size_t ml = sizeof more;
        zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ml);
        int bl = more ? zmq_recv(sub, body, 1u << 20, 0) : -1;
        if (tl > 0 && tl <= (int)sizeof topic && bl > 0 && bl <= (1 << 20) &&
            is_verdict_of(topic, (size_t)tl, body, (size_t)bl, want, zone)) {
            at = vigil_mono_ns();
        }
    }
    free(body);
    return at;
}

static void *reloader_main(void *arg)
{
    struct bench_reloader *r = arg;
    void *sub = zmq_socket(r->zctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "alert.fired", 11);
    if (zmq_connect(sub, r->v->subscribe) != 0) {
        snprintf(r->err, sizeof r->err, "cannot subscribe to the bus: %s",
                 zmq_strerror(zmq_errno()));
        zmq_close(sub);
        return NULL;
    }
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    uint64_t next = vigil_mono_ns() + r->every_ns;
    for (unsigned gen = 1; !atomic_load(&r->stop); gen++) {
        while (!atomic_load(&r->stop) && vigil_mono_ns() < next) {
            bench_sleep_ns(5000000);
        }
        if (atomic_load(&r->stop) || next + r->every_ns / 2 > r->until_mono) {
            break;
        }
        next += r->every_ns;
        char *body = r->body(r->arg, gen);
        if (!body || bench_vigild_write(r->v, r->self_interval, body) != 0) {
            free(body);
            snprintf(r->err, sizeof r->err, "cannot write the config for reload %u", gen);
            break;
        }
        free(body);
        uint64_t t0 = vigil_mono_ns();
        if (kill(r->v->pid, SIGHUP) != 0) {
            snprintf(r->err, sizeof r->err, "cannot signal vigild: %s", strerror(errno));
            break;
        }
        r->sent++;
        char want[32];
        snprintf(want, sizeof want, "reload-%u", gen);
        uint64_t at = wait_verdict(r, sub, want, &zone);
        if (!at) {
            r->unseen++;
            continue;
        }
        if (r->n == r->cap) {
            size_t cap = r->cap ? 2 * r->cap : 64;
            uint64_t *p = realloc(r->pause_ns, cap * sizeof *p);
            if (!p) {
                break;
            }
            r->pause_ns = p;
            r->cap = cap;
        }
        r->pause_ns[r->n++] = at - t0;
    }
    msgpack_zone_destroy(&zone);
    zmq_close(sub);
    return NULL;
}

int bench_reloader_start(struct bench_reloader *r)
{
    if (pthread_create(&r->thread, NULL, reloader_main, r) != 0) {
        return -1;
    }
    r->started = true;
    return 0;
}

void bench_reloader_stop(struct bench_reloader *r)
{
    if (r->started) {
        atomic_store(&r->stop, true);
        pthread_join(r->thread, NULL);
        r->started = false;
    }
}

void bench_reloader_fini(struct bench_reloader *r)
{
    bench_reloader_stop(r);
    free(r->pause_ns);
    r->pause_ns = NULL;
}

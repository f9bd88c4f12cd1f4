/* The plugin host's instance, shared by plugin_host.c (loader, services,
 * threads) and sink.c (sink delivery). Not for plugins.
 */
#ifndef VIGIL_HOST_INTERNAL_H
#define VIGIL_HOST_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "event.h"
#include "isolate.h"
#include "log.h"
#include "plugin_host.h"
#include "record.h"

struct vigil_sink;

/* api->log_limited(): one limiter per call site. */
#define VIGIL_LOG_SITES 32
struct vigil_log_site {
    const char *fmt;
    struct vigil_ratelimit rl;
};

/* api->counter_new(): the plugin's own counters in its vigil.self event. */
#define VIGIL_PLUGIN_COUNTERS 16
#define VIGIL_COUNTER_NAME_MAX 63
struct vigil_plugin_counter {
    char name[VIGIL_COUNTER_NAME_MAX + 1];
    vigil_counter value;
};

struct vigil_instance {
    void *dl;
    const struct vigil_plugin *desc;
    const struct vigil_instance_conf *ic;
    enum vigil_plugin_kind kind;
    struct vigil_host_env env;
    char component[160];
    struct event_base *base;
    struct event *stop_ev;
    struct event *beat_ev; /* bumps stats.beats: the watchdog's liveness (notify.h) */
    void *state;
    bool inited, finished;
    struct vigil_diag *diag; /* set during init only */
    pthread_t thread;
    bool running;
    _Atomic bool stopping;
    struct vigil_stage_stats stats;
    struct vigil_log_site log_sites[VIGIL_LOG_SITES];
    struct vigil_plugin_counter counters[VIGIL_PLUGIN_COUNTERS];
    int ncounters; /* set in init() only, read by the self reporter after */
    void *sock;

    /* Sources. */
    struct vigil_event_builder builder;
    uint64_t seq;
    struct event *collect_ev;
    struct vigil_ratelimit collect_rl;
    bool batching;                /* between batch_begin() and batch_end() */
    bool wire_batch;              /* sock is on VIGIL_BUS_SOURCES: held events go as one message */
    struct vigil_record_buf held; /* kept events */

    /* Sinks (sink.c). */
    struct vigil_sink *sink;
    vigil_counter barrier_done; /* see vigil_instance_barrier() */
    vigil_counter *barrier;     /* &barrier_done, or the daemon's (vigil_instance_share_barrier) */
    /* A reload's successor: the handover token it waits for (sink.c). */
    char takeover[VIGIL_TOKEN_LEN + 1];

    /* isolate: process (isolate.h). In vigild: the supervisor, which runs
     * on the instance's thread instead of the plugin. In the plugin host:
     * the page its loop reports progress on, and its beat period. */
    struct vigil_isolate *iso;
    struct vigil_isolate_shm *shm;
    uint64_t beat_ns;
};

/* A plugin host's loop made progress (isolate.h): a beat, a collect() that
 * began or ended, a send waiting on backpressure; its counters go along.
 * Nothing elsewhere. */
static inline void vigil_isolate_progress(struct vigil_instance *h)
{
    if (h->shm) {
        atomic_store_explicit(&h->shm->progress_ns, vigil_mono_ns(), memory_order_relaxed);
        atomic_store_explicit(&h->shm->errors_total, vigil_counter_get(&h->stats.errors_total),
                              memory_order_relaxed);
        atomic_store_explicit(&h->shm->dropped_total, vigil_counter_get(&h->stats.dropped_total),
                              memory_order_relaxed);
    }
}

/* Sink delivery (sink.c), all on the instance's thread but new/free. */
/* Opens the spool (at new(), or at start for a successor). Logs why not. */
int vigil_sink_open_spool(struct vigil_instance *h);
/* A reload: stop at the handover event carrying `token` (vigil_instance_handover). */
void vigil_sink_handover(struct vigil_instance *h, const char *token);
/* A successor: the spool is free now (any thread). */
void vigil_sink_resume(struct vigil_instance *h);
/* After the SUB socket exists: opens the spool, makes the loop's events.
 * Logs what went wrong; 0 or a negative code. */
int vigil_sink_new(struct vigil_instance *h);
/* The thread starts: deliver the spool's leftovers, read the bus. */
void vigil_sink_start(struct vigil_instance *h);
/* Stop asked: read what the bus sent, deliver what can be delivered within
 * the grace period, spool the rest; breaks the loop when done. */
void vigil_sink_stop(struct vigil_instance *h);
/* SIGHUP: the plugin's reopen() on the next loop turn. Any thread. */
void vigil_sink_reopen(struct vigil_instance *h);
void vigil_sink_free(struct vigil_instance *h);

void vigil_sink_write_done(struct vigil_instance *h);
void vigil_sink_retry_after(struct vigil_instance *h, uint64_t delay_ns);

#endif

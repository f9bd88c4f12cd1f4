/* Counters shared between a stage's thread (which writes them) and the
 * daemon's self reporter (which reads them for vigil.self). Relaxed atomics:
 * each counter is exact, the set is not a snapshot.
 */
#ifndef VIGIL_STATS_H
#define VIGIL_STATS_H

#include <stdatomic.h>
#include <stdint.h>

typedef _Atomic uint64_t vigil_counter;

static inline void vigil_count(vigil_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* For a counter only the calling thread ever writes (the per-event ones, one
 * per rule per event in the rules): no locked read-modify-write (it costs
 * several times a plain load and store), and readers still never see a torn
 * value. */
static inline void vigil_count_own(vigil_counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint64_t vigil_counter_get(vigil_counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Liveness for systemd's watchdog (notify.h): every stage thread's loop bumps
 * its `beats` counter when it starts and then at least every VIGIL_BEAT_MS,
 * from a timer of its own (never per event). */
#define VIGIL_BEAT_MS 1000

struct vigil_bus_stats {
    vigil_counter in_total;               /* messages received on the publish side */
    vigil_counter out_total;              /* valid events republished */
    vigil_counter malformed_total;        /* dropped: wrong frames, topic, body, size */
    vigil_counter lost_total;             /* seq gaps seen per (host, source) */
    vigil_counter seq_resets_total;       /* seq went backwards: a producer restarted */
    vigil_counter dropped_total;          /* valid events the daemon's own stages did
                                             not get (shutdown, a full bus) */
    vigil_counter external_dropped_total; /* valid events an outside subscriber
                                      had no room for (its HWM) */
    vigil_counter untracked_total;        /* events of sources past the seq table's bound */
    vigil_counter sources_tracked;        /* (host, source) pairs in the seq table */
    vigil_counter beats;                  /* the bus loop's turns (VIGIL_BEAT_MS) */
};

/* One source or sink instance. */
struct vigil_stage_stats {
    vigil_counter in_total;            /* sinks: events received */
    vigil_counter out_total;           /* sources: events published; sinks: delivered */
    vigil_counter dropped_total;       /* events lost by this stage (e.g. at shutdown) */
    vigil_counter errors_total;        /* collect()/write() errors, malformed input */
    vigil_counter retried_total;       /* sinks: events a write() asked to retry */
    vigil_counter failed_total;        /* sinks: events a write() refused for good */
    vigil_counter queue_depth;         /* sinks: events held in memory, undelivered */
    vigil_counter spooled_total;       /* sinks: events written to the disk spool */
    vigil_counter spool_events;        /* sinks: events in the spool now */
    vigil_counter spool_bytes;         /* sinks: bytes of the spool's files now */
    vigil_counter spool_corrupt_total; /* sinks: damaged spool ranges skipped, torn tails cut */
    vigil_counter beats;               /* the thread's loop is alive (VIGIL_BEAT_MS) */
    vigil_counter failing_since_mono;  /* sinks: CLOCK_MONOTONIC ns of the first write
                                          asked to retry since the last one wholly
                                          delivered; 0 while writes succeed */
    vigil_counter spool_skipped_bytes_total; /* sinks: bytes of those damaged ranges/tails */
};

#endif

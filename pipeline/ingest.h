/* The central's ingest endpoint (bus.ingest): a ROUTER that takes batches
 * of events from agents' forward sinks (docs/fleet.md, the wire protocol),
 * checks every event as the bus does, hands it into the bus, and
 * acknowledges a batch once every sink holds its events delivered or on
 * disk (a barrier follows each batch: bus.h). Under load it sheds: a batch
 * it cannot take soon is answered RETRY. Events an agent sends again are
 * recognised by (host, source, seq) and not published twice.
 */
#ifndef VIGIL_INGEST_H
#define VIGIL_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "stats.h"

struct vigil_ingest_opts {
    const char *endpoint; /* e.g. "tcp://0.0.0.0:7070" */
    int hwm;              /* messages, per socket */
    size_t max_event_bytes;
    const char *curve_secret_z85; /* bus.curve: a tcp endpoint is a CURVE server */
    /* The sinks' barrier progress (vigil_instance_barrier()): a batch is
     * acked once every sink passed the barrier that follows its events,
     * i.e. holds them delivered or on disk. No sinks: acked once in the bus. */
    vigil_counter *const *progress;
    size_t nprogress;
    const char *host; /* the barrier events' host */
};

/* Per agent (the peer's address, or its CURVE key's name), for vigil.self. */
struct vigil_agent_stats {
    vigil_counter batches_total;    /* batches acked (OK or REFUSED) */
    vigil_counter events_total;     /* events published into the bus */
    vigil_counter refused_total;    /* events refused as malformed (REFUSED) */
    vigil_counter duplicates_total; /* events it had sent before: acked, not published again */
    vigil_counter shed_total;       /* batches answered RETRY: the central shed load */
    vigil_counter connected;        /* gauge: 1 while it has a live connection */
    vigil_counter last_seen_mono;   /* CLOCK_MONOTONIC ns of its last batch */
};

struct vigil_ingest_stats {
    vigil_counter bad_batches_total;      /* batches that could not be parsed (ERROR acks) */
    vigil_counter untracked_total;        /* events of sources past the dedupe table's bound */
    vigil_counter agents_untracked_total; /* batches of agents past the agent table's bound */
    vigil_counter shed_total;             /* batches answered RETRY (load shed), all agents */
};

struct vigil_ingest;

/* Binds the ROUTER and connects to the bus's publish side (VIGIL_BUS_IN) on
 * the calling thread, so a bad or busy endpoint is reported before
 * anything starts. NULL with a message in err. */
struct vigil_ingest *vigil_ingest_new(void *zctx, const struct vigil_ingest_opts *o, char *err,
                                      size_t errlen);
/* Starts the thread; 0 or a negative code. */
int vigil_ingest_start(struct vigil_ingest *g);
/* Stops taking batches and joins the thread. A batch being handed on when
 * the stop comes is not acked: the agent sends it again. */
void vigil_ingest_stop(struct vigil_ingest *g);
void vigil_ingest_free(struct vigil_ingest *g); /* NULL is fine */

struct vigil_ingest_stats *vigil_ingest_stats(struct vigil_ingest *g);
/* Calls fn for every agent seen; any thread (the table is locked meanwhile:
 * fn must not block). */
void vigil_ingest_each_agent(struct vigil_ingest *g,
                             void (*fn)(void *arg, const char *agent, struct vigil_agent_stats *s),
                             void *arg);

#endif

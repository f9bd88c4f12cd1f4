/* The bus: one thread that receives every event on a PULL socket (bound to
 * the configured publish endpoint and its inproc twin), checks it, tracks
 * per-source sequence numbers, and republishes it on two XPUB sockets: the
 * inproc one for the daemon's own stages (lossless: it blocks, producers feel
 * backpressure) and the configured subscribe endpoint for outside programs
 * (never blocks: an event an outside subscriber has no room for is counted).
 */
#ifndef VIGIL_BUS_H
#define VIGIL_BUS_H

#include <stddef.h>

#include "stats.h"

#define VIGIL_BUS_IN "inproc://vigil.bus.publish"
#define VIGIL_BUS_OUT "inproc://vigil.bus.subscribe"

struct vigil_bus_opts {
    const char *publish;   /* e.g. "ipc:///run/vigil/publish" */
    const char *subscribe; /* e.g. "tcp://0.0.0.0:7451" */
    int hwm;               /* messages, per socket */
    size_t max_event_bytes;
    uint64_t coalesce_ns;  /* after handing events on, wait this long before the next */
};

struct vigil_bus;

/* Creates the sockets and binds all four endpoints on the calling thread, so
 * that a bad or busy endpoint is reported before anything starts (an ipc
 * endpoint another live process listens on counts as busy; its folder is
 * created if missing). Returns NULL with a message in err. */
struct vigil_bus *vigil_bus_new(void *zctx, const struct vigil_bus_opts *o, char *err,
                                size_t errlen);

/* Starts the bus thread. It reports ready once `expected_subscriptions`
 * subscriptions have arrived on the inproc side, so that no stage misses the
 * first events. Returns 0 or a negative errno. */
int vigil_bus_start(struct vigil_bus *b, unsigned expected_subscriptions);

/* Main thread only. Waits for ready; 0, or -ETIMEDOUT. */
int vigil_bus_wait_ready(struct vigil_bus *b, int timeout_ms);

/* Main thread only. Forwards everything producers have already queued, then
 * returns: 0 once the publish side has been quiet for a moment, -ETIMEDOUT
 * if it did not go quiet within timeout_ms. */
int vigil_bus_drain(struct vigil_bus *b, int timeout_ms);

/* Stops and joins the thread (if started), closes the sockets. NULL is fine. */
void vigil_bus_free(struct vigil_bus *b);

struct vigil_bus_stats *vigil_bus_stats(struct vigil_bus *b);

#endif

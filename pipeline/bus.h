/* The bus: one thread that receives every event on a PULL socket (bound to
 * the configured publish endpoint and its inproc twin), checks it, tracks
 * per-source sequence numbers, and republishes it on two XPUB sockets: the
 * inproc one for the daemon's own stages (lossless: it blocks, producers feel
 * backpressure; events batched by topic, below) and the configured subscribe
 * endpoint for outside programs (one event per message; never blocks: an
 * event an outside subscriber has no room for is counted).
 */
#ifndef VIGIL_BUS_H
#define VIGIL_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <zmq.h>

#include "record.h"
#include "seqtab.h"
#include "stats.h"

#define VIGIL_BUS_IN "inproc://vigil.bus.publish"
/* A central's ingest endpoint follows the events of each batch with an
 * event of this topic (its seq a serial); every sink passes it on to
 * vigil_instance_barrier() once all it received before it is delivered or
 * on disk, so the ingest acks only what survives a crash. The bus sends it
 * only to the daemon's own stages. */
#define VIGIL_BARRIER_TOPIC "vigil.barrier"
#define VIGIL_BARRIER_TOPIC_LEN 13
/* A reload that replaces a sink sends one event of this topic (from
 * "vigild", labels.sink and labels.token: random, known only in-process)
 * once the successor is subscribed: the sink being replaced takes the
 * events before it, its successor those after it (sink.c). Like the
 * barrier, only the daemon's own stages get it. */
#define VIGIL_HANDOVER_TOPIC "vigil.handover"
#define VIGIL_HANDOVER_TOPIC_LEN 14
/* Events already checked in this process (the ingest endpoint checks every
 * event of an agent's batch itself, to refuse the bad ones by index) reach
 * the bus in batches on this endpoint: one message per batch, so the bus
 * neither checks them again nor receives two frames per event. Only
 * in-process code can connect to an inproc endpoint. The message is built
 * with vigil_bus_handoff (below). */
#define VIGIL_BUS_TRUSTED "inproc://vigil.bus.trusted"
/* The bus's and a sender's high-water mark there, in batches. */
#define VIGIL_BUS_TRUSTED_HWM 4

/* In-process sources publish here: every message is one frame holding one
 * or more events back to back, each a record (record.h) with its own
 * topic, as the plugin host keeps a source's events between batch_begin()
 * and batch_end() (one event alone outside a batch). The bus checks each
 * and tracks its seq as for VIGIL_BUS_IN: nothing is trusted, only the
 * hand-off is cheaper (one ZeroMQ message, often one wake-up, per batch
 * instead of two frames per event). The high-water mark is
 * vigil_bus_inproc_hwm() messages. */
#define VIGIL_BUS_SOURCES "inproc://vigil.bus.sources"

/* A producer's batch on the publish endpoints (VIGIL_BUS_IN and
 * bus.publish): a two-frame message whose first frame is empty (a topic is
 * never empty, so no single event looks like one) and whose second holds
 * events back to back, each a record (record.h) with its own topic and
 * lengths in little-endian order (docs/events.md). Each event is checked,
 * seq-tracked and counted as if it came alone; outside subscribers still get
 * one event per message. A second frame larger than bus.max_event_bytes and
 * than VIGIL_BUS_PUBLISH_BATCH_MAX is refused whole, counted as one
 * malformed message: a batch is then never larger than the largest single
 * event the bus takes (or 64 KiB), so the memory a full queue of `hwm`
 * messages can hold is what it was before batches. Producers that do not
 * know the daemon's max_event_bytes keep their batches to
 * VIGIL_BUS_PUBLISH_BATCH_MAX. */
#define VIGIL_BUS_PUBLISH_BATCH_LEN 0
#define VIGIL_BUS_PUBLISH_BATCH_MAX (64u << 10)

#define VIGIL_BUS_OUT "inproc://vigil.bus.subscribe"

/* What the in-process stages receive on VIGIL_BUS_OUT is batched: every
 * message is two frames, the topic, then one or more events of that topic
 * back to back, each a record (record.h) whose own topic is empty (the first
 * frame names it): a 4-byte topic length of 0, a 4-byte body length (host
 * byte order), then the msgpack body. Consecutive events with the same topic share a message (up to
 * VIGIL_BUS_BATCH_EVENTS events or VIGIL_BUS_BATCH_BYTES, or one event of
 * any size), so order is kept and prefix filtering still happens in
 * ZeroMQ, on the topic frame. Handing events from an inproc XPUB to SUB
 * threads one per message costs many times more CPU per event than in
 * batches (docs/benchmarks.md). The outside subscribe endpoint keeps one
 * event per message. */
#define VIGIL_BUS_BATCH_EVENTS 64
#define VIGIL_BUS_BATCH_BYTES (64u * 1024u)

/* The high-water mark, in messages, of an in-process socket on
 * VIGIL_BUS_OUT for a configured bus.hwm in events: a stage then holds
 * about as many events as before batching, not 64 times more. */
static inline int vigil_bus_inproc_hwm(int hwm)
{
    int h = (hwm + VIGIL_BUS_BATCH_EVENTS - 1) / VIGIL_BUS_BATCH_EVENTS;
    return h < 4 ? 4 : h;
}

/* What an in-process subscriber of VIGIL_BUS_OUT reads with: it keeps the
 * message it is in and hands out one event at a time. One per socket, used
 * by that socket's thread. */
struct vigil_bus_reader {
    zmq_msg_t topic, batch;
    struct vigil_record_iter it;
};

void vigil_bus_reader_init(struct vigil_bus_reader *r);
void vigil_bus_reader_fini(struct vigil_bus_reader *r);

/* The next event, without waiting: 1 and the event's topic and body (valid
 * until the next call); 0 when nothing is waiting; -1 for a message that is
 * not a batch, a batch's damaged rest, or a record with a topic of its own,
 * skipped (the bus never sends those: the caller counts an error). */
int vigil_bus_reader_next(struct vigil_bus_reader *r, void *sock, const char **topic,
                          size_t *topic_len, const char **body, size_t *body_len);

/* A batch for VIGIL_BUS_TRUSTED: entries back to back, each a fixed header
 * (topic and body lengths), the topic, the body. Reused batch after batch;
 * one per sender thread. The bus does not track these events' seqs (the
 * ingest does: bus.c take_trusted). */
struct vigil_bus_handoff {
    char *buf;
    size_t len, cap, n;
};
void vigil_bus_handoff_init(struct vigil_bus_handoff *h);
void vigil_bus_handoff_fini(struct vigil_bus_handoff *h);
/* Adds an event that vigil_event_check passed. 0, or -ENOMEM. */
int vigil_bus_handoff_add(struct vigil_bus_handoff *h, const char *topic, size_t topic_len,
                          const char *body, size_t body_len);
/* Sends the batch on sock (a PUSH connected to VIGIL_BUS_TRUSTED) with
 * zmq_send's flags and, once sent, empties it. 0 (also for an empty batch),
 * or -1 with zmq_errno() as zmq_send left it (EAGAIN: the bus is full). */
int vigil_bus_handoff_send(struct vigil_bus_handoff *h, void *sock, int flags);
static inline void vigil_bus_handoff_clear(struct vigil_bus_handoff *h)
{
    h->len = h->n = 0;
}

struct vigil_bus_opts {
    const char *publish;   /* e.g. "ipc:///run/vigil/publish" */
    const char *subscribe; /* e.g. "tcp://0.0.0.0:7451" */
    int hwm;               /* messages, per socket */
    size_t max_event_bytes;
    uint64_t coalesce_ns; /* after handing events on, wait this long before the next */
    /* With bus.curve: this daemon's secret key (Z85). The tcp:// endpoints
     * among publish and subscribe are then CURVE servers whose clients the
     * ZAP handler (zap.h) admits; NULL: none is. */
    const char *curve_secret_z85;
};

/* Makes s a CURVE server with secret_z85 when endpoint is tcp:// (ipc is
 * guarded by the file system, inproc by the process). Before bind. */
int vigil_bus_curve_server(void *s, const char *endpoint, const char *secret_z85);

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

/* A reload: waits until the bus has seen `total` subscriptions from the
 * daemon's stages since it started (those counted at vigil_bus_start()
 * and every one made since). 0, or -ETIMEDOUT. Main thread. */
int vigil_bus_wait_subscriptions(struct vigil_bus *b, unsigned total, int timeout_ms);
/* Main thread only. Forwards everything producers have already queued, then
 * returns: 0 once the publish side has been quiet for a moment, -ETIMEDOUT
 * if it did not go quiet within timeout_ms. */
int vigil_bus_drain(struct vigil_bus *b, int timeout_ms);

/* Stops and joins the thread (if started), closes the sockets. NULL is fine. */
void vigil_bus_free(struct vigil_bus *b);

struct vigil_bus_stats *vigil_bus_stats(struct vigil_bus *b);

#endif

/* The forward protocol's wire codec: a batch of events from an agent up to a
 * central's ingest endpoint, and its ack down (docs/fleet.md, "The forward
 * protocol on the wire"). Pure bytes, libc only: the daemon's ingest and the
 * forward sink plugin both link it. Not thread-safe: one thread per object.
 */
#ifndef VIGIL_WIRE_H
#define VIGIL_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* Frame 1 of both directions: 4 magic bytes, then the batch id as a
 * big-endian u64. */
#define VIGIL_WIRE_HEAD_LEN 12
#define VIGIL_WIRE_BATCH_MAGIC "VGB1"
#define VIGIL_WIRE_ACK_MAGIC "VGA1"
/* Bit 63 of a batch id is the RESEND flag: an agent sets it on the first
 * batch it sends after a RETRY, which ends the central's holding back of
 * that connection's batches (docs/fleet.md, "Batch ids"). Ids themselves
 * stay below it; an ack echoes the id as sent, flag included. */
#define VIGIL_WIRE_RESEND (1ull << 63)

/* Bounds of a batch: frame 2 at most VIGIL_WIRE_MAX_BYTES (record headers
 * included), at most VIGIL_WIRE_MAX_EVENTS events whatever a caller
 * configures, topics of 1..VIGIL_WIRE_MAX_TOPIC bytes. */
#define VIGIL_WIRE_MAX_BYTES (1024u * 1024u)
#define VIGIL_WIRE_MAX_EVENTS 65536u
#define VIGIL_WIRE_MAX_TOPIC 255u
/* An event's header in frame 2: big-endian u32 topic length, u32 body length. */
#define VIGIL_WIRE_RECORD_HEAD 8u

/* Why a batch cannot be parsed at all: the decoder's report, and the reason
 * byte of an ERROR ack (values are on the wire: never renumber). */
enum vigil_wire_reason {
    VIGIL_WIRE_BAD_HEADER = 1, /* frame 1: length, magic/version or id 0 */
    VIGIL_WIRE_BAD_FRAMES = 2, /* not exactly two frames (the caller sees that) */
    VIGIL_WIRE_BAD_RECORD = 3, /* frame 2: an event's lengths; detail = its offset */
    VIGIL_WIRE_TOO_MANY = 4,   /* more events than allowed; detail = the limit */
    VIGIL_WIRE_TOO_BIG = 5,    /* frame 2 over VIGIL_WIRE_MAX_BYTES; detail = the limit */
};

/* Where and why a decoder refused its input. `why` is a static string. */
struct vigil_wire_error {
    enum vigil_wire_reason reason;
    uint32_t detail; /* as in the ERROR ack: a byte offset in frame 2, or a limit */
    size_t index;    /* BAD_RECORD: the index of the damaged event */
    const char *why;
};

/* The name of a reason, for logs ("bad record"); "unknown" for others. */
const char *vigil_wire_reason_name(int reason);

/* ---- Up: the batch -----------------------------------------------------
 * An encoder owns one growing buffer for frame 2 (at most
 * VIGIL_WIRE_MAX_BYTES) and the 12 bytes of frame 1: reuse it batch after
 * batch and nothing is allocated in steady state. */
struct vigil_wire_batch {
    unsigned char head[VIGIL_WIRE_HEAD_LEN]; /* frame 1, valid after _begin() */
    unsigned char *data;                     /* frame 2: data[0, len) */
    size_t len, cap;
    size_t count;      /* events in it */
    size_t max_events; /* the caller's bound, at most VIGIL_WIRE_MAX_EVENTS */
};

/* Sets up an empty encoder for batches of at most max_events events (0 or
 * more than VIGIL_WIRE_MAX_EVENTS: VIGIL_WIRE_MAX_EVENTS). Allocates nothing. */
void vigil_wire_batch_init(struct vigil_wire_batch *b, size_t max_events);

/* Frees the buffer; the encoder may be initialised again. */
void vigil_wire_batch_fini(struct vigil_wire_batch *b);

/* Starts a batch with this id (not 0, optionally with VIGIL_WIRE_RESEND:
 * see docs/fleet.md for the id rules), dropping any events of the previous
 * one and keeping the memory. Returns 0, or VIGIL_EMALFORMED for an id
 * that is 0 without the flag. */
int vigil_wire_batch_begin(struct vigil_wire_batch *b, uint64_t batch_id);

/* Copies one event to the batch. Returns 0; -ENOBUFS when it does not fit
 * (max_events reached or the bytes would pass VIGIL_WIRE_MAX_BYTES: send
 * this batch and add it to the next); VIGIL_EMALFORMED for a topic of 0
 * bytes; VIGIL_ETOOBIG for an event that never fits (topic over
 * VIGIL_WIRE_MAX_TOPIC, or the record alone over VIGIL_WIRE_MAX_BYTES);
 * -ENOMEM. Nothing is added on failure. An empty body is framed: the
 * central refuses it as a malformed event (REFUSED), not the batch. */
int vigil_wire_batch_add(struct vigil_wire_batch *b, const void *topic, size_t topic_len,
                         const void *body, size_t body_len);

/* Adds records in the daemon's in-process form (pipeline/record.h: host
 * byte order), converting them, until they are all in or the batch is full.
 * *taken gets the bytes of `records` consumed (whole records). Returns 0
 * when all were taken, -ENOBUFS when the batch filled first, or the error of
 * vigil_wire_batch_add() for the first record that can never go (*taken
 * stops before it); VIGIL_EMALFORMED also for damaged record bytes. */
int vigil_wire_batch_add_records(struct vigil_wire_batch *b, const void *records, size_t len,
                                 size_t *taken);

/* A decoded batch: points into the caller's frames, which must outlive it. */
struct vigil_wire_batch_view {
    uint64_t id;
    size_t count;                  /* events in frame 2 */
    const unsigned char *at, *end; /* the walk's position in frame 2 */
};

/* One event of a decoded batch, pointing into frame 2 (the same fields as
 * pipeline/record.h's struct vigil_record). */
struct vigil_wire_event {
    const char *topic, *body;
    size_t topic_len, body_len;
};

/* Checks a received batch: frame 1 (head, head_len) and frame 2 (recs,
 * recs_len; NULL is fine when recs_len is 0), with at most max_events
 * events; v->id is the id as sent, VIGIL_WIRE_RESEND included (0 or over VIGIL_WIRE_MAX_EVENTS:
 * VIGIL_WIRE_MAX_EVENTS). Every length is checked before anything is read, and nothing is copied or
 * allocated. Returns 0 (then walk with vigil_wire_batch_next()),
 * VIGIL_EMALFORMED (bad header, a record that runs past the end, a topic
 * outside 1..255 bytes, trailing bytes) or VIGIL_ETOOBIG (too many events,
 * frame 2 too big); *err (may be NULL) then says where and why, ready for
 * vigil_wire_ack_error(). The body of an event is not looked at: that is
 * the event check's job, per event. */
int vigil_wire_batch_decode(struct vigil_wire_batch_view *v, const void *head, size_t head_len,
                            const void *recs, size_t recs_len, size_t max_events,
                            struct vigil_wire_error *err);

/* The next event of a decoded batch, in order: 1, or 0 after the last. */
int vigil_wire_batch_next(struct vigil_wire_batch_view *v, struct vigil_wire_event *e);

/* ---- Down: the ack -----------------------------------------------------
 * Frame 2 of an ack is a status byte and what that status carries. */
enum vigil_wire_status {
    VIGIL_WIRE_OK = 0,      /* every event is in the central's bus */
    VIGIL_WIRE_RETRY = 1,   /* none published: resend the batch after retry_after_ms */
    VIGIL_WIRE_REFUSED = 2, /* the listed events are malformed, the others are in the bus */
    VIGIL_WIRE_ERROR = 3,   /* the batch cannot be parsed: none published; reason, detail */
};

/* The ack encoder: frame 1 and a growing frame 2, reused ack after ack. */
struct vigil_wire_ack_buf {
    unsigned char head[VIGIL_WIRE_HEAD_LEN];
    unsigned char *data; /* frame 2: data[0, len) */
    size_t len, cap;
};

void vigil_wire_ack_buf_init(struct vigil_wire_ack_buf *ab);
void vigil_wire_ack_buf_fini(struct vigil_wire_ack_buf *ab);

/* Each writes one ack into ab (replacing the previous) and returns 0, or
 * -ENOMEM, or VIGIL_EMALFORMED for arguments a decoder would refuse: id 0
 * (allowed only in an ERROR ack for a batch whose header could not be
 * read), no refused index, indices not strictly increasing or not below
 * n_events, n_events over VIGIL_WIRE_MAX_EVENTS, a reason outside the enum. */
int vigil_wire_ack_ok(struct vigil_wire_ack_buf *ab, uint64_t batch_id);
int vigil_wire_ack_retry(struct vigil_wire_ack_buf *ab, uint64_t batch_id, uint32_t retry_after_ms);
int vigil_wire_ack_refused(struct vigil_wire_ack_buf *ab, uint64_t batch_id, size_t n_events,
                           const uint32_t *indices, size_t n);
int vigil_wire_ack_error(struct vigil_wire_ack_buf *ab, uint64_t batch_id,
                         enum vigil_wire_reason reason, uint32_t detail);

/* A decoded ack, pointing into the caller's frame 2 (REFUSED's indices). */
struct vigil_wire_ack {
    uint64_t id;
    enum vigil_wire_status status;
    uint32_t retry_after_ms;       /* RETRY (0: the agent's own backoff) */
    uint32_t n_refused;            /* REFUSED: how many indices */
    const unsigned char *refused;  /* REFUSED: n_refused big-endian u32, read with _refused_at() */
    enum vigil_wire_reason reason; /* ERROR */
    uint32_t detail;               /* ERROR */
};

/* Reads the batch id from an ack's frame 1, to find the batch it answers
 * (and its event count) before decoding frame 2. Returns 0 or
 * VIGIL_EMALFORMED (length or magic). */
int vigil_wire_ack_id(const void *head, size_t head_len, uint64_t *batch_id);

/* Checks an ack for a batch of n_events events: the magic, the status, the
 * exact length of what the status carries, REFUSED indices strictly
 * increasing and below n_events, an ERROR reason in the enum and id 0 only
 * with ERROR. Returns 0 or VIGIL_EMALFORMED (then *err, if not NULL, says
 * why; an agent treats such an ack as no ack). Copies and allocates nothing. */
int vigil_wire_ack_decode(struct vigil_wire_ack *a, const void *head, size_t head_len,
                          const void *body, size_t body_len, size_t n_events,
                          struct vigil_wire_error *err);

/* The i-th refused index of a decoded REFUSED ack (i < a->n_refused). */
uint32_t vigil_wire_ack_refused_at(const struct vigil_wire_ack *a, uint32_t i);

#endif

/* The forward protocol's wire codec (wire.h): encoders into reusable
 * buffers and decoders that walk outside input in place, every length
 * checked against what is left before it is used.
 */
#include "wire.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "vigil/plugin.h"

/* The first block a batch encoder allocates: ordinary batches never regrow. */
#define FIRST_CAP (64u * 1024u)

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_head(unsigned char *h, const char *magic, uint64_t id)
{
    memcpy(h, magic, 4);
    put_u32(h + 4, (uint32_t)(id >> 32));
    put_u32(h + 8, (uint32_t)id);
}

/* Frame 1: exactly VIGIL_WIRE_HEAD_LEN bytes with this magic. */
static bool get_head(const void *head, size_t len, const char *magic, uint64_t *id)
{
    const unsigned char *h = head;
    if (!h || len != VIGIL_WIRE_HEAD_LEN || memcmp(h, magic, 4) != 0) {
        return false;
    }
    *id = (uint64_t)get_u32(h + 4) << 32 | get_u32(h + 8);
    return true;
}

static size_t clamp_events(size_t max_events)
{
    return max_events == 0 || max_events > VIGIL_WIRE_MAX_EVENTS ? VIGIL_WIRE_MAX_EVENTS
                                                                 : max_events;
}

/* Grows buf to hold need bytes (doubling from first), keeping its content. */
static int reserve(unsigned char **buf, size_t *cap, size_t need, size_t first)
{
    if (need <= *cap) {
        return 0;
    }
    size_t c = *cap ? *cap : first;
    while (c < need) {
        c *= 2;
    }
    unsigned char *p = realloc(*buf, c);
    if (!p) {
        return -ENOMEM;
    }
    *buf = p;
    *cap = c;
    return 0;
}

const char *vigil_wire_reason_name(int reason)
{
    switch (reason) {
    case VIGIL_WIRE_BAD_HEADER:
        return "bad header";
    case VIGIL_WIRE_BAD_FRAMES:
        return "bad frames";
    case VIGIL_WIRE_BAD_RECORD:
        return "bad record";
    case VIGIL_WIRE_TOO_MANY:
        return "too many events";
    case VIGIL_WIRE_TOO_BIG:
        return "too big";
    }
    return "unknown";
}

/* ---- Up ---------------------------------------------------------------- */

void vigil_wire_batch_init(struct vigil_wire_batch *b, size_t max_events)
{
    *b = (struct vigil_wire_batch){.max_events = clamp_events(max_events)};
}

void vigil_wire_batch_fini(struct vigil_wire_batch *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = b->count = 0;
}

int vigil_wire_batch_begin(struct vigil_wire_batch *b, uint64_t batch_id)
{
    if ((batch_id & ~VIGIL_WIRE_RESEND) == 0) {
        return VIGIL_EMALFORMED;
    }
    put_head(b->head, VIGIL_WIRE_BATCH_MAGIC, batch_id);
    b->len = 0;
    b->count = 0;
    return 0;
}

int vigil_wire_batch_add(struct vigil_wire_batch *b, const void *topic, size_t topic_len,
                         const void *body, size_t body_len)
{
    if (topic_len == 0) {
        return VIGIL_EMALFORMED;
    }
    if (topic_len > VIGIL_WIRE_MAX_TOPIC ||
        body_len > VIGIL_WIRE_MAX_BYTES - VIGIL_WIRE_RECORD_HEAD - topic_len) {
        return VIGIL_ETOOBIG;
    }
    size_t rec = VIGIL_WIRE_RECORD_HEAD + topic_len + body_len;
    if (b->count >= b->max_events || rec > VIGIL_WIRE_MAX_BYTES - b->len) {
        return -ENOBUFS;
    }
    if (reserve(&b->data, &b->cap, b->len + rec, FIRST_CAP) != 0) {
        return -ENOMEM;
    }
    unsigned char *w = b->data + b->len;
    put_u32(w, (uint32_t)topic_len);
    put_u32(w + 4, (uint32_t)body_len);
    memcpy(w + VIGIL_WIRE_RECORD_HEAD, topic, topic_len);
    if (body_len) {
        memcpy(w + VIGIL_WIRE_RECORD_HEAD + topic_len, body, body_len);
    }
    b->len += rec;
    b->count++;
    return 0;
}

int vigil_wire_batch_add_records(struct vigil_wire_batch *b, const void *records, size_t len,
                                 size_t *taken)
{
    struct vigil_record_iter it = vigil_record_iter_bytes(records, len);
    struct vigil_record r;
    const char *start = records;
    *taken = 0;
    while (vigil_record_next(&it, &r)) {
        int rc = vigil_wire_batch_add(b, r.topic, r.topic_len, r.body, r.body_len);
        if (rc != 0) {
            return rc;
        }
        *taken = (size_t)(it.p - start);
    }
    return vigil_record_iter_damaged(&it) ? VIGIL_EMALFORMED : 0;
}

/* Fills *err (if any) and returns rc. */
static int refuse(struct vigil_wire_error *err, int rc, enum vigil_wire_reason reason,
                  uint32_t detail, size_t index, const char *why)
{
    if (err) {
        *err = (struct vigil_wire_error){reason, detail, index, why};
    }
    return rc;
}

int vigil_wire_batch_decode(struct vigil_wire_batch_view *v, const void *head, size_t head_len,
                            const void *recs, size_t recs_len, size_t max_events,
                            struct vigil_wire_error *err)
{
    max_events = clamp_events(max_events);
    *v = (struct vigil_wire_batch_view){0};
    if (!get_head(head, head_len, VIGIL_WIRE_BATCH_MAGIC, &v->id)) {
        return refuse(err, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_HEADER, 0, 0,
                      "frame 1 is not 12 bytes starting with VGB1");
    }
    if ((v->id & ~VIGIL_WIRE_RESEND) == 0) {
        return refuse(err, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_HEADER, 0, 0, "batch id 0");
    }
    if (recs_len > VIGIL_WIRE_MAX_BYTES) {
        return refuse(err, VIGIL_ETOOBIG, VIGIL_WIRE_TOO_BIG, VIGIL_WIRE_MAX_BYTES, 0,
                      "frame 2 is over 1 MiB");
    }
    if (recs_len > 0 && !recs) {
        return refuse(err, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_RECORD, 0, 0, "no frame 2");
    }
    /* One walk checks everything, so _next() trusts what it walks. recs_len
     * is at most 1 MiB here: offsets fit the u32 detail. */
    const unsigned char *p = recs;
    size_t off = 0, n = 0;
    while (off < recs_len) {
        size_t left = recs_len - off;
        if (left < VIGIL_WIRE_RECORD_HEAD) {
            return refuse(err, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_RECORD, (uint32_t)off, n,
                          "an event's header is cut short");
        }
        uint32_t tl = get_u32(p + off), bl = get_u32(p + off + 4);
        left -= VIGIL_WIRE_RECORD_HEAD;
        if (tl == 0 || tl > VIGIL_WIRE_MAX_TOPIC) {
            return refuse(err, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_RECORD, (uint32_t)off, n,
                          "topic length outside 1..255");
        }
        if (tl > left || bl > left - tl) {
            return refuse(err, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_RECORD, (uint32_t)off, n,
                          "an event runs past the end of frame 2");
        }
        if (n == max_events) {
            return refuse(err, VIGIL_ETOOBIG, VIGIL_WIRE_TOO_MANY, (uint32_t)max_events, n,
                          "more events than allowed");
        }
        off += VIGIL_WIRE_RECORD_HEAD + tl + bl;
        n++;
    }
    v->count = n;
    v->at = p;
    v->end = p ? p + recs_len : NULL;
    return 0;
}

int vigil_wire_batch_next(struct vigil_wire_batch_view *v, struct vigil_wire_event *e)
{
    if (v->at == v->end) {
        return 0;
    }
    uint32_t tl = get_u32(v->at), bl = get_u32(v->at + 4);
    e->topic = (const char *)v->at + VIGIL_WIRE_RECORD_HEAD;
    e->topic_len = tl;
    e->body = e->topic + tl;
    e->body_len = bl;
    v->at = (const unsigned char *)e->body + bl;
    return 1;
}

/* ---- Down -------------------------------------------------------------- */

/* status byte + u32 n + n indices, for the largest batch */
#define ACK_MAX (5u + 4u * VIGIL_WIRE_MAX_EVENTS)

void vigil_wire_ack_buf_init(struct vigil_wire_ack_buf *ab)
{
    *ab = (struct vigil_wire_ack_buf){0};
}

void vigil_wire_ack_buf_fini(struct vigil_wire_ack_buf *ab)
{
    free(ab->data);
    ab->data = NULL;
    ab->len = ab->cap = 0;
}

/* Starts an ack of body_len bytes whose first is the status. */
static int ack_begin(struct vigil_wire_ack_buf *ab, uint64_t id, enum vigil_wire_status s,
                     size_t body_len)
{
    if (reserve(&ab->data, &ab->cap, body_len, 64) != 0) {
        return -ENOMEM;
    }
    put_head(ab->head, VIGIL_WIRE_ACK_MAGIC, id);
    ab->data[0] = (unsigned char)s;
    ab->len = body_len;
    return 0;
}

int vigil_wire_ack_ok(struct vigil_wire_ack_buf *ab, uint64_t batch_id)
{
    if (batch_id == 0) {
        return VIGIL_EMALFORMED;
    }
    return ack_begin(ab, batch_id, VIGIL_WIRE_OK, 1);
}

int vigil_wire_ack_retry(struct vigil_wire_ack_buf *ab, uint64_t batch_id, uint32_t retry_after_ms)
{
    if (batch_id == 0) {
        return VIGIL_EMALFORMED;
    }
    int rc = ack_begin(ab, batch_id, VIGIL_WIRE_RETRY, 5);
    if (rc == 0) {
        put_u32(ab->data + 1, retry_after_ms);
    }
    return rc;
}

int vigil_wire_ack_refused(struct vigil_wire_ack_buf *ab, uint64_t batch_id, size_t n_events,
                           const uint32_t *indices, size_t n)
{
    if (batch_id == 0 || n == 0 || n_events > VIGIL_WIRE_MAX_EVENTS || n > n_events) {
        return VIGIL_EMALFORMED;
    }
    for (size_t i = 0; i < n; i++) {
        if (indices[i] >= n_events || (i > 0 && indices[i] <= indices[i - 1])) {
            return VIGIL_EMALFORMED;
        }
    }
    int rc = ack_begin(ab, batch_id, VIGIL_WIRE_REFUSED, 5 + 4 * n);
    if (rc != 0) {
        return rc;
    }
    put_u32(ab->data + 1, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        put_u32(ab->data + 5 + 4 * i, indices[i]);
    }
    return 0;
}

static bool reason_known(int reason)
{
    return reason >= VIGIL_WIRE_BAD_HEADER && reason <= VIGIL_WIRE_TOO_BIG;
}

int vigil_wire_ack_error(struct vigil_wire_ack_buf *ab, uint64_t batch_id,
                         enum vigil_wire_reason reason, uint32_t detail)
{
    if (!reason_known((int)reason)) {
        return VIGIL_EMALFORMED;
    }
    int rc = ack_begin(ab, batch_id, VIGIL_WIRE_ERROR, 6);
    if (rc == 0) {
        ab->data[1] = (unsigned char)reason;
        put_u32(ab->data + 2, detail);
    }
    return rc;
}

int vigil_wire_ack_id(const void *head, size_t head_len, uint64_t *batch_id)
{
    return get_head(head, head_len, VIGIL_WIRE_ACK_MAGIC, batch_id) ? 0 : VIGIL_EMALFORMED;
}

/* An ack's own problems are all BAD_HEADER or BAD_RECORD (of frame 2). */
static int bad_ack(struct vigil_wire_error *err, bool frame2, size_t off, const char *why)
{
    return refuse(err, VIGIL_EMALFORMED, frame2 ? VIGIL_WIRE_BAD_RECORD : VIGIL_WIRE_BAD_HEADER,
                  (uint32_t)off, 0, why);
}

int vigil_wire_ack_decode(struct vigil_wire_ack *a, const void *head, size_t head_len,
                          const void *body, size_t body_len, size_t n_events,
                          struct vigil_wire_error *err)
{
    const unsigned char *p = body;
    *a = (struct vigil_wire_ack){0};
    if (!get_head(head, head_len, VIGIL_WIRE_ACK_MAGIC, &a->id)) {
        return bad_ack(err, false, 0, "frame 1 is not 12 bytes starting with VGA1");
    }
    if (!p || body_len == 0) {
        return bad_ack(err, true, 0, "no status");
    }
    if (body_len > ACK_MAX) {
        return bad_ack(err, true, 0, "ack too long");
    }
    if (a->id == 0 && p[0] != VIGIL_WIRE_ERROR) {
        return bad_ack(err, false, 0, "batch id 0 outside an ERROR ack");
    }
    switch (p[0]) {
    case VIGIL_WIRE_OK:
        if (body_len != 1) {
            return bad_ack(err, true, 1, "OK carries nothing");
        }
        a->status = VIGIL_WIRE_OK;
        return 0;
    case VIGIL_WIRE_RETRY:
        if (body_len != 5) {
            return bad_ack(err, true, 1, "RETRY carries exactly a u32 delay");
        }
        a->status = VIGIL_WIRE_RETRY;
        a->retry_after_ms = get_u32(p + 1);
        return 0;
    case VIGIL_WIRE_REFUSED: {
        if (body_len < 5) {
            return bad_ack(err, true, 1, "REFUSED without a count");
        }
        uint32_t n = get_u32(p + 1);
        /* body_len <= ACK_MAX, so (body_len - 5) / 4 cannot overflow and n
         * is compared, never multiplied. */
        if (n == 0 || (body_len - 5) % 4 != 0 || n != (body_len - 5) / 4) {
            return bad_ack(err, true, 1, "REFUSED count does not match its length");
        }
        if (n > n_events) {
            return bad_ack(err, true, 1, "more refused indices than events");
        }
        for (uint32_t i = 0; i < n; i++) {
            uint32_t x = get_u32(p + 5 + 4 * (size_t)i);
            if (x >= n_events) {
                return bad_ack(err, true, 5 + 4 * (size_t)i, "refused index past the batch");
            }
            if (i > 0 && x <= get_u32(p + 1 + 4 * (size_t)i)) {
                return bad_ack(err, true, 5 + 4 * (size_t)i,
                               "refused indices not strictly increasing");
            }
        }
        a->status = VIGIL_WIRE_REFUSED;
        a->n_refused = n;
        a->refused = p + 5;
        return 0;
    }
    case VIGIL_WIRE_ERROR:
        if (body_len != 6) {
            return bad_ack(err, true, 1, "ERROR carries exactly a reason and a u32 detail");
        }
        if (!reason_known(p[1])) {
            return bad_ack(err, true, 1, "unknown ERROR reason");
        }
        a->status = VIGIL_WIRE_ERROR;
        a->reason = (enum vigil_wire_reason)p[1];
        a->detail = get_u32(p + 2);
        return 0;
    }
    return bad_ack(err, true, 0, "unknown status");
}

uint32_t vigil_wire_ack_refused_at(const struct vigil_wire_ack *a, uint32_t i)
{
    return get_u32(a->refused + 4 * (size_t)i);
}

/* One in-memory form for a (topic, body) record, used by every queue and
 * batch between the daemon's stages: a source's held events, the bus's
 * batch frames, a sink's memory queue and write() batch, the rules'
 * verdict backlog. One set of bounds checks, one place to test and fuzz.
 */
#ifndef VIGIL_RECORD_H
#define VIGIL_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A record is [u32 topic length][u32 body length][topic][body], lengths in
 * host byte order, records back to back with no padding. */
#define VIGIL_RECORD_HEAD (2 * sizeof(uint32_t))

/* A record's bytes in a buffer, header included. */
static inline size_t vigil_record_size(size_t topic_len, size_t body_len)
{
    return VIGIL_RECORD_HEAD + topic_len + body_len;
}

/* One record, pointing into the buffer that holds it. */
struct vigil_record {
    const char *topic, *body;
    size_t topic_len, body_len;
};

/* vigil_record_init() flags. ONE_ANY_SIZE: an empty buffer takes one record
 * of any size (a batch of one), where otherwise a record over max_bytes is
 * refused with VIGIL_ETOOBIG. */
#define VIGIL_RECORD_ONE_ANY_SIZE 1u

/* An ordered buffer of records: appended at the tail, consumed from the
 * front. Its memory grows when a record does not fit (to at most twice the
 * byte bound, so that moving the live records to the start stays rare) and
 * is kept for reuse: in steady state nothing is allocated. Not thread-safe:
 * one thread owns it. */
struct vigil_record_buf {
    char *buf;
    size_t head, tail, cap; /* live records in buf[head, tail) */
    size_t count;
    size_t max_count, max_bytes; /* bounds; bytes include the headers */
    unsigned flags;
};

/* Sets up an empty buffer holding at most max_count records and max_bytes
 * bytes (SIZE_MAX: no byte bound). Allocates nothing. */
void vigil_record_init(struct vigil_record_buf *rb, size_t max_count, size_t max_bytes,
                       unsigned flags);

/* Frees the memory; the buffer is empty afterwards and may be used again. */
void vigil_record_fini(struct vigil_record_buf *rb);

/* Copies one record to the tail. topic may be NULL when topic_len is 0.
 * Returns 0; -ENOBUFS when a bound is reached (consume or clear, then try
 * again); VIGIL_ETOOBIG for a record that never fits (over max_bytes, or a
 * length over 32 bits); -ENOMEM. Nothing is added on failure: the caller
 * counts what it drops. */
int vigil_record_append(struct vigil_record_buf *rb, const void *topic, size_t topic_len,
                        const void *body, size_t body_len);

/* Drops the oldest record; does nothing when empty. Pointers to it stay
 * valid until the next append. */
void vigil_record_pop(struct vigil_record_buf *rb);

/* Drops every record, keeps the memory. */
static inline void vigil_record_clear(struct vigil_record_buf *rb)
{
    rb->head = rb->tail = 0;
    rb->count = 0;
}

/* Hands the records, back to back from the start of one malloc()ed block,
 * to the caller, who frees it with free(); *len gets their bytes. The
 * buffer is then empty and allocates anew on the next append. A block less
 * than half used is shrunk first, so what the caller keeps holds about what
 * it carries. NULL (and nothing handed over) when empty. */
char *vigil_record_detach(struct vigil_record_buf *rb, size_t *len);

static inline size_t vigil_record_count(const struct vigil_record_buf *rb)
{
    return rb->count;
}

/* Bytes held, headers included: what max_bytes bounds. */
static inline size_t vigil_record_bytes(const struct vigil_record_buf *rb)
{
    return rb->tail - rb->head;
}

/* The records held, back to back as vigil_record_iter_bytes() reads them
 * (vigil_record_bytes() of them); NULL when nothing was ever appended. */
static inline const char *vigil_record_data(const struct vigil_record_buf *rb)
{
    return rb->buf ? rb->buf + rb->head : NULL;
}

/* Walks records in order, in a buffer or in bytes from elsewhere. */
struct vigil_record_iter {
    const char *p, *end;
};

static inline struct vigil_record_iter vigil_record_iter_bytes(const void *data, size_t len)
{
    if (!data) {
        return (struct vigil_record_iter){NULL, NULL};
    }
    return (struct vigil_record_iter){(const char *)data, (const char *)data + len};
}

static inline struct vigil_record_iter vigil_record_iter(const struct vigil_record_buf *rb)
{
    if (!rb->buf) {
        return (struct vigil_record_iter){NULL, NULL};
    }
    return vigil_record_iter_bytes(rb->buf + rb->head, rb->tail - rb->head);
}

/* The next record: true, or false at the end and at a record whose lengths
 * run past the end (then vigil_record_iter_damaged() is true). */
static inline bool vigil_record_next(struct vigil_record_iter *it, struct vigil_record *r)
{
    size_t left = (size_t)(it->end - it->p);
    uint32_t l[2];
    if (left < VIGIL_RECORD_HEAD) {
        return false;
    }
    memcpy(l, it->p, sizeof l);
    left -= VIGIL_RECORD_HEAD;
    if (l[0] > left || l[1] > left - l[0]) {
        return false;
    }
    r->topic = it->p + VIGIL_RECORD_HEAD;
    r->topic_len = l[0];
    r->body = r->topic + l[0];
    r->body_len = l[1];
    it->p = r->body + l[1];
    return true;
}

/* After vigil_record_next() returned false: bytes were left that do not
 * make a whole record. */
static inline bool vigil_record_iter_damaged(const struct vigil_record_iter *it)
{
    return it->p != it->end;
}

/* The oldest record; false when empty. Valid until the next append. */
static inline bool vigil_record_front(const struct vigil_record_buf *rb, struct vigil_record *r)
{
    if (!rb->count) {
        return false;
    }
    struct vigil_record_iter it = vigil_record_iter(rb);
    return vigil_record_next(&it, r);
}

#endif

/* The record buffer (record.h): bounds, growth and compaction, in one place
 * for every queue and batch of (topic, body) records in the daemon.
 */
#include "record.h"

#include <errno.h>
#include <stdlib.h>

#include "vigil/plugin.h"

/* The first block a buffer allocates (or its byte bound, if smaller): big
 * enough that a batch of ordinary events never regrows it. */
#define FIRST_CAP (64u * 1024u)

void vigil_record_init(struct vigil_record_buf *rb, size_t max_count, size_t max_bytes,
                       unsigned flags)
{
    *rb = (struct vigil_record_buf){.max_count = max_count, .max_bytes = max_bytes, .flags = flags};
}

void vigil_record_fini(struct vigil_record_buf *rb)
{
    free(rb->buf);
    rb->buf = NULL;
    rb->cap = 0;
    vigil_record_clear(rb);
}

/* Makes room for `rec` more bytes at the tail. Moving the live records to
 * the start pays only when it frees at least as much as it moves, so a
 * buffer more than half full grows instead (doubling, up to twice its byte
 * bound, or what one record needs): appending stays cheap per byte even
 * when a queue runs near its bound for a long time. */
static int make_room(struct vigil_record_buf *rb, size_t rec)
{
    size_t live = rb->tail - rb->head;
    size_t need = live + rec;
    size_t limit = rb->max_bytes > SIZE_MAX / 2 ? SIZE_MAX : 2 * rb->max_bytes;
    if (need > rb->cap || (need > rb->cap / 2 && rb->cap < limit)) {
        size_t c = rb->cap ? rb->cap : FIRST_CAP;
        while (c < 2 * need && c < limit) {
            c = c > SIZE_MAX / 2 ? SIZE_MAX : c * 2;
        }
        if (c > limit) {
            c = limit;
        }
        if (c < need) {
            c = need;
        }
        char *p = realloc(rb->buf, c);
        if (!p) {
            return -ENOMEM;
        }
        rb->buf = p;
        rb->cap = c;
    }
    if (rb->head > 0) {
        memmove(rb->buf, rb->buf + rb->head, live);
        rb->tail = live;
        rb->head = 0;
    }
    return 0;
}

int vigil_record_append(struct vigil_record_buf *rb, const void *topic, size_t topic_len,
                        const void *body, size_t body_len)
{
    if (topic_len > UINT32_MAX || body_len > UINT32_MAX ||
        body_len > SIZE_MAX - VIGIL_RECORD_HEAD - topic_len) {
        return VIGIL_ETOOBIG;
    }
    size_t rec = vigil_record_size(topic_len, body_len);
    bool any_size = rb->count == 0 && (rb->flags & VIGIL_RECORD_ONE_ANY_SIZE);
    if (rec > rb->max_bytes && !(rb->flags & VIGIL_RECORD_ONE_ANY_SIZE)) {
        return VIGIL_ETOOBIG;
    }
    if (rb->count >= rb->max_count) {
        return -ENOBUFS;
    }
    /* With ONE_ANY_SIZE a lone record may be over the bound: then used >
     * max_bytes, and nothing more fits until it is consumed. */
    size_t used = rb->tail - rb->head;
    if (!any_size && (used > rb->max_bytes || rec > rb->max_bytes - used)) {
        return -ENOBUFS;
    }
    if (rec > rb->cap - rb->tail && make_room(rb, rec) != 0) {
        return -ENOMEM;
    }
    uint32_t l[2] = {(uint32_t)topic_len, (uint32_t)body_len};
    char *w = rb->buf + rb->tail;
    memcpy(w, l, sizeof l);
    if (topic_len) {
        memcpy(w + VIGIL_RECORD_HEAD, topic, topic_len);
    }
    if (body_len) {
        memcpy(w + VIGIL_RECORD_HEAD + topic_len, body, body_len);
    }
    rb->tail += rec;
    rb->count++;
    return 0;
}

void vigil_record_pop(struct vigil_record_buf *rb)
{
    if (!rb->count) {
        return;
    }
    uint32_t l[2];
    memcpy(l, rb->buf + rb->head, sizeof l);
    rb->head += vigil_record_size(l[0], l[1]);
    if (--rb->count == 0) {
        rb->head = rb->tail = 0; /* the next records start at the front: no moving */
    }
}

char *vigil_record_detach(struct vigil_record_buf *rb, size_t *len)
{
    *len = 0;
    if (!rb->count) {
        return NULL;
    }
    size_t used = rb->tail - rb->head;
    if (rb->head > 0) {
        memmove(rb->buf, rb->buf + rb->head, used);
    }
    char *p = rb->buf, *smaller;
    /* Shrinking in place is cheap; a failure keeps the larger block. */
    if (used < rb->cap / 2 && (smaller = realloc(p, used))) {
        p = smaller;
    }
    rb->buf = NULL;
    rb->cap = 0;
    vigil_record_clear(rb);
    *len = used;
    return p;
}

/* replay: ring of recently sent messages (see replay.h). Each entry is a
 * header (length, send time) and the message, wrapping around the end of
 * the buffer byte-wise.
 */
#include "replay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct entry_hdr {
    uint32_t len;
    uint64_t ts_ns;
};

#define HDR sizeof(struct entry_hdr)

int replay_init(struct replay *r, size_t cap, uint64_t window_ns)
{
    memset(r, 0, sizeof *r);
    r->window_ns = window_ns;
    if (cap == 0 || window_ns == 0) {
        return 0;
    }
    r->buf = malloc(cap);
    if (!r->buf) {
        return -ENOMEM;
    }
    r->cap = cap;
    return 0;
}

void replay_fini(struct replay *r)
{
    free(r->buf);
    memset(r, 0, sizeof *r);
}

/* Copies n bytes at ring offset off (from head) out, across the wrap. */
static void ring_get(const struct replay *r, size_t off, void *out, size_t n)
{
    size_t at = (r->head + off) % r->cap;
    size_t first = n < r->cap - at ? n : r->cap - at;
    memcpy(out, r->buf + at, first);
    memcpy((char *)out + first, r->buf, n - first);
}

static void ring_put(struct replay *r, size_t off, const void *in, size_t n)
{
    size_t at = (r->head + off) % r->cap;
    size_t first = n < r->cap - at ? n : r->cap - at;
    memcpy(r->buf + at, in, first);
    memcpy(r->buf, (const char *)in + first, n - first);
}

static void drop_oldest(struct replay *r)
{
    struct entry_hdr h;
    ring_get(r, 0, &h, HDR);
    r->head = (r->head + HDR + h.len) % r->cap;
    r->used -= HDR + h.len;
}

void replay_push(struct replay *r, const char *msg, size_t len, uint64_t now_ns)
{
    if (r->cap == 0 || len + HDR > r->cap) {
        return;
    }
    while (r->cap - r->used < len + HDR) {
        drop_oldest(r);
    }
    struct entry_hdr h = {.len = (uint32_t)len, .ts_ns = now_ns};
    ring_put(r, r->used, &h, HDR);
    ring_put(r, r->used + HDR, msg, len);
    r->used += HDR + len;
}

void replay_clear(struct replay *r)
{
    r->head = 0;
    r->used = 0;
}

size_t replay_arm(struct replay *r, uint64_t now_ns)
{
    r->pend_off = 0;
    r->pend_n = 0;
    while (r->used > 0) {
        struct entry_hdr h;
        ring_get(r, 0, &h, HDR);
        if (now_ns - h.ts_ns <= r->window_ns) {
            break;
        }
        drop_oldest(r);
    }
    for (size_t off = 0; off < r->used; r->pend_n++) {
        struct entry_hdr h;
        ring_get(r, off, &h, HDR);
        off += HDR + h.len;
    }
    return r->pend_n;
}

size_t replay_peek(const struct replay *r, char *out)
{
    if (r->pend_n == 0) {
        return 0;
    }
    struct entry_hdr h;
    ring_get(r, r->pend_off, &h, HDR);
    ring_get(r, r->pend_off + HDR, out, h.len);
    return h.len;
}

void replay_next(struct replay *r)
{
    struct entry_hdr h;
    ring_get(r, r->pend_off, &h, HDR);
    r->pend_off += HDR + h.len;
    r->pend_n--;
}

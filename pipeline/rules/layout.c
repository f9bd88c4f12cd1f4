/* Reading events from their topic's layout (layout.h). An event is read
 * from the offsets only when every structural byte (each header, with its
 * type and length, and each key) equals the learned event's and the length
 * is the same: reading it item by item would then take the same steps,
 * accept it for the same reasons and find everything at the same places.
 * Only the bytes inside strings and numbers may differ.
 */
#include "layout.h"

#include <string.h>

#include "mp_read.h"

void vigil__layout_reset(struct vigil_layout *l)
{
    l->body_len = 0;
}

static void mark(struct vigil_layout *l, const unsigned char *b, const unsigned char *from,
                 const unsigned char *to)
{
    memset(l->mask + (from - b), 0xff, (size_t)(to - from));
}

/* The value at *pp, its structural bytes marked: a string's header, a
 * number's type byte, all of anything else. */
static bool value(struct vigil_layout *l, const unsigned char *b, const unsigned char **pp,
                  const unsigned char *end, struct mp_item *o)
{
    const unsigned char *start = *pp;
    if (!mp_read(pp, end, o)) {
        return false;
    }
    switch (o->kind) {
    case MP_STR:
    case MP_BIN:
        mark(l, b, start, (const unsigned char *)o->s);
        return true;
    case MP_UINT:
    case MP_NEG:
    case MP_F32:
    case MP_F64:
    case MP_NIL:
    case MP_BOOL:
        mark(l, b, start, start + 1);
        /* A fixint's value is in its type byte: only the bits that make it
         * a positive (0xxxxxxx) or negative (111xxxxx) one are structural,
         * so that a counter (seq) keeps its layout. */
        if (*start <= 0x7f) {
            l->mask[start - b] = 0x80;
        } else if (*start >= 0xe0) {
            l->mask[start - b] = 0xe0;
        }
        return true;
    default:
        *pp = start;
        if (!mp_skip(pp, end)) {
            return false;
        }
        mark(l, b, start, *pp);
        return true;
    }
}

/* A key at *pp, all of it structural. */
static bool key(struct vigil_layout *l, const unsigned char *b, const unsigned char **pp,
                const unsigned char *end, struct mp_item *k)
{
    const unsigned char *start = *pp;
    if (!mp_read(pp, end, k) || !mp_is_str(k)) {
        return false;
    }
    mark(l, b, start, *pp);
    return true;
}

static bool is(const struct mp_item *k, const char *name)
{
    size_t n = strlen(name);
    return k->n == n && memcmp(k->s, name, n) == 0;
}

/* Learns the layout of a body vigil_event_read_trusted accepted; leaves
 * nothing learned when it cannot be laid out. */
static void learn(struct vigil_layout *l, const unsigned char *b, size_t len)
{
    l->body_len = 0;
    if (len == 0 || len > VIGIL_LAYOUT_BODY_MAX) {
        return;
    }
    memcpy(l->tmpl, b, len);
    memset(l->mask, 0, len);
    l->map[0] = l->map[1] = 0;
    l->n[0] = l->n[1] = 0;
    const unsigned char *p = b, *end = b + len;
    struct mp_item root, k, v;
    if (!mp_read(&p, end, &root) || root.kind != MP_MAP) {
        return;
    }
    mark(l, b, b, p);
    for (uint64_t i = 0; i < root.u; i++) {
        if (!key(l, b, &p, end, &k)) {
            return;
        }
        uint16_t at = (uint16_t)(p - b);
        int m = is(&k, "labels") ? 0 : is(&k, "values") ? 1 : -1;
        if (m < 0) {
            if (!value(l, b, &p, end, &v)) {
                return;
            }
            l->ts = is(&k, "ts") ? at : l->ts;
            l->seq = is(&k, "seq") ? at : l->seq;
            l->host = is(&k, "host") ? at : l->host;
            l->source = is(&k, "source") ? at : l->source;
            continue;
        }
        struct mp_item hdr;
        if (!mp_read(&p, end, &hdr) || hdr.kind != MP_MAP || hdr.u > VIGIL_LAYOUT_ITEMS) {
            return;
        }
        mark(l, b, b + at, p);
        l->map[m] = at;
        l->n[m] = (uint16_t)hdr.u;
        for (uint64_t j = 0; j < hdr.u; j++) {
            l->key[m][j] = (uint16_t)(p - b);
            if (!key(l, b, &p, end, &k)) {
                return;
            }
            l->value[m][j] = (uint16_t)(p - b);
            if (!value(l, b, &p, end, &v)) {
                return;
            }
        }
    }
    if (p == end) {
        l->body_len = (uint32_t)len;
    }
}

/* The body's structural bytes are the learned ones: eight at a time, no
 * branch per item. */
static bool fits(const struct vigil_layout *l, const unsigned char *b, size_t len)
{
    if (len != l->body_len) {
        return false;
    }
    uint64_t diff = 0;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t x, t, m;
        memcpy(&x, b + i, 8);
        memcpy(&t, l->tmpl + i, 8);
        memcpy(&m, l->mask + i, 8);
        diff |= (x ^ t) & m;
    }
    for (; i < len; i++) {
        diff |= (uint64_t)((b[i] ^ l->tmpl[i]) & l->mask[i]);
    }
    return diff == 0;
}

/* The item at `off` of a body that fits (so it is there, and whole). */
static struct mp_item at(const unsigned char *b, size_t len, uint16_t off)
{
    struct mp_item o = {0};
    const unsigned char *p = b + off;
    mp_read(&p, b + len, &o);
    return o;
}

int vigil__layout_read(struct vigil_layout *l, struct vigil_event_view *v, const char *topic,
                       size_t topic_len, const char *body, size_t body_len, msgpack_zone *zone,
                       const char **reason)
{
    const unsigned char *b = (const unsigned char *)body;
    if (!fits(l, b, body_len)) {
        int rc = vigil_event_read_trusted(v, topic, topic_len, body, body_len, zone, reason);
        if (rc == 0) {
            learn(l, b, body_len);
        }
        return rc;
    }
    /* What vigil_event_read_trusted would fill, from the offsets. */
    memset(v, 0, sizeof *v);
    v->topic = topic;
    v->topic_len = topic_len;
    v->body = body;
    v->body_len = body_len;
    v->ts = at(b, body_len, l->ts).u;
    v->seq = at(b, body_len, l->seq).u;
    struct mp_item s = at(b, body_len, l->host);
    v->host = s.s;
    v->host_len = s.n;
    s = at(b, body_len, l->source);
    v->source = s.s;
    v->source_len = s.n;
    v->tree_zone = zone;
    v->labels_raw = l->map[0] ? body + l->map[0] : NULL;
    v->values_raw = l->map[1] ? body + l->map[1] : NULL;
    v->has_raw = true;
    return 1;
}

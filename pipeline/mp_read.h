/* Reading msgpack bytes in place, one object header at a time, with every
 * read bounds-checked: the bus's checker, the stages' unpacker and the JSON
 * writer share it (pipeline-internal). Values keep msgpack-c's reading: a
 * signed integer that is not negative is MP_UINT; a float32 is widened to
 * double; strings and bins point into the bytes.
 */
#ifndef VIGIL_MP_READ_H
#define VIGIL_MP_READ_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

enum mp_kind {
    MP_NIL,
    MP_BOOL,
    MP_UINT,
    MP_NEG,
    MP_F32,
    MP_F64,
    MP_STR,
    MP_BIN,
    MP_EXT,
    MP_ARRAY,
    MP_MAP
};

struct mp_item {
    enum mp_kind kind;
    uint64_t u;      /* MP_UINT: the value; MP_BOOL: 0/1; MP_ARRAY, MP_MAP: the count */
    int64_t i;       /* MP_NEG */
    double f;        /* MP_F32, MP_F64 */
    const char *s;   /* MP_STR, MP_BIN; MP_EXT: its data */
    uint32_t n;      /* length at s */
    int8_t ext_type; /* MP_EXT */
};

static inline uint64_t mp_be(const unsigned char *p, int n)
{
    uint64_t x = 0;
    for (int k = 0; k < n; k++) {
        x = (x << 8) | p[k];
    }
    return x;
}

/* Reads the header at *pp (and a string's, bin's or ext's bytes) into *o and
 * moves *pp past it. False, *pp unchanged, when the bytes end first or the
 * byte is 0xc1 (never used). */
static inline bool mp_read(const unsigned char **pp, const unsigned char *end, struct mp_item *o)
{
    const unsigned char *p = *pp;
    if (p >= end) {
        return false;
    }
    unsigned c = *p++;
    size_t avail = (size_t)(end - p);
    int h = 0; /* bytes of a length field */
    if (c <= 0x7f) {
        o->kind = MP_UINT;
        o->u = c;
    } else if (c >= 0xe0) {
        o->kind = MP_NEG;
        o->i = (int64_t)c - 256;
    } else if (c <= 0x9f) {
        o->kind = c <= 0x8f ? MP_MAP : MP_ARRAY;
        o->u = c & 0x0f;
    } else if (c <= 0xbf) {
        o->kind = MP_STR;
        o->n = c & 0x1f;
        goto bytes;
    } else if (c == 0xc0) {
        o->kind = MP_NIL;
    } else if (c == 0xc2 || c == 0xc3) {
        o->kind = MP_BOOL;
        o->u = c == 0xc3;
    } else if (c >= 0xc4 && c <= 0xc6) {
        o->kind = MP_BIN;
        h = 1 << (c - 0xc4);
        goto sized;
    } else if (c >= 0xc7 && c <= 0xc9) {
        o->kind = MP_EXT;
        h = 1 << (c - 0xc7);
        goto sized;
    } else if (c == 0xca || c == 0xcb) {
        int w = c == 0xca ? 4 : 8;
        if (avail < (size_t)w) {
            return false;
        }
        uint64_t bits = mp_be(p, w);
        p += w;
        if (w == 4) {
            uint32_t b32 = (uint32_t)bits;
            float fl;
            memcpy(&fl, &b32, sizeof fl);
            o->kind = MP_F32;
            o->f = fl;
        } else {
            memcpy(&o->f, &bits, sizeof o->f);
            o->kind = MP_F64;
        }
    } else if (c >= 0xcc && c <= 0xd3) {
        int w = 1 << ((c - 0xcc) & 3);
        if (avail < (size_t)w) {
            return false;
        }
        uint64_t v = mp_be(p, w);
        p += w;
        if (c >= 0xd0 && (v >> (8 * w - 1)) & 1) {
            o->kind = MP_NEG; /* sign-extended */
            o->i = w == 8 ? (int64_t)v : (int64_t)(v | ~(uint64_t)0 << (8 * w));
        } else {
            o->kind = MP_UINT;
            o->u = v;
        }
    } else if (c >= 0xd4 && c <= 0xd8) {
        o->kind = MP_EXT;
        o->n = 1u << (c - 0xd4);
        goto bytes;
    } else if (c >= 0xd9 && c <= 0xdb) {
        o->kind = MP_STR;
        h = 1 << (c - 0xd9);
        goto sized;
    } else if (c >= 0xdc) {
        int w = (c == 0xdc || c == 0xde) ? 2 : 4;
        if (avail < (size_t)w) {
            return false;
        }
        o->kind = c <= 0xdd ? MP_ARRAY : MP_MAP;
        o->u = mp_be(p, w);
        p += w;
    } else {
        return false; /* 0xc1 */
    }
    *pp = p;
    return true;

sized:
    if (avail < (size_t)h) {
        return false;
    }
    o->n = (uint32_t)mp_be(p, h);
    p += h;
    avail -= (size_t)h;
bytes:
    o->ext_type = 0;
    if (o->kind == MP_EXT) {
        if (avail < 1) {
            return false;
        }
        o->ext_type = (int8_t)*p++;
        avail--;
    }
    if (avail < o->n) {
        return false;
    }
    o->s = (const char *)p;
    *pp = p + o->n;
    return true;
}

/* Skips one object, nested ones included, without recursion. */
static inline bool mp_skip(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp;
    uint64_t pending = 1;
    while (pending) {
        struct mp_item o;
        if (!mp_read(&p, end, &o)) {
            return false;
        }
        pending--;
        if (o.kind == MP_ARRAY || o.kind == MP_MAP) {
            uint64_t add = o.kind == MP_MAP ? 2 * o.u : o.u;
            if (add > (uint64_t)(end - p)) {
                return false; /* each item takes a byte at least */
            }
            pending += add;
        }
    }
    *pp = p;
    return true;
}

static inline bool mp_is_str(const struct mp_item *o)
{
    return o->kind == MP_STR || o->kind == MP_BIN;
}

#endif

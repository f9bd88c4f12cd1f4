/* mpread: bounded msgpack reader (see mpread.h). Format reference:
 * https://github.com/msgpack/msgpack/blob/master/spec.md
 */
#include "mpread.h"

#include <string.h>

/* Big-endian unsigned integer of n (1, 2, 4 or 8) bytes; -1 if cut short. */
static int take_be(struct mpr *r, size_t n, uint64_t *out)
{
    if ((size_t)(r->end - r->p) < n) {
        return -1;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = v << 8 | r->p[i];
    }
    r->p += n;
    *out = v;
    return 0;
}

static int take_bytes(struct mpr *r, uint64_t n, struct mpr_obj *o, enum mpr_type t)
{
    if ((uint64_t)(r->end - r->p) < n) {
        return -1;
    }
    o->type = t;
    o->v.s.p = (const char *)r->p;
    o->v.s.n = (uint32_t)n;
    r->p += n;
    return 0;
}

/* Sign-extends the n-byte two's complement value v. */
static int64_t sign_extend(uint64_t v, size_t n)
{
    if (n < 8 && (v >> (n * 8 - 1)) & 1) {
        v |= ~(uint64_t)0 << (n * 8);
    }
    int64_t s;
    memcpy(&s, &v, sizeof s);
    return s;
}

static int read_int(struct mpr *r, struct mpr_obj *o, size_t n, bool is_signed)
{
    uint64_t v;
    if (take_be(r, n, &v) != 0) {
        return -1;
    }
    int64_t s = is_signed ? sign_extend(v, n) : 0;
    if (is_signed && s < 0) {
        o->type = MPR_INT;
        o->v.i = s;
    } else {
        o->type = MPR_UINT;
        o->v.u = is_signed ? (uint64_t)s : v;
    }
    return 0;
}

static int read_float(struct mpr *r, struct mpr_obj *o, size_t n)
{
    uint64_t v;
    if (take_be(r, n, &v) != 0) {
        return -1;
    }
    o->type = MPR_FLOAT;
    if (n == 4) {
        uint32_t b = (uint32_t)v;
        float f;
        memcpy(&f, &b, sizeof f);
        o->v.f = f;
    } else {
        memcpy(&o->v.f, &v, sizeof o->v.f);
    }
    return 0;
}

/* str/bin/ext with an n-byte length; ext also has a type byte to skip. */
static int read_sized(struct mpr *r, struct mpr_obj *o, size_t n, enum mpr_type t)
{
    uint64_t len;
    if (take_be(r, n, &len) != 0) {
        return -1;
    }
    if (t == MPR_EXT) {
        if (r->p == r->end) {
            return -1;
        }
        r->p++;
    }
    return take_bytes(r, len, o, t);
}

static int read_container(struct mpr *r, struct mpr_obj *o, size_t n, enum mpr_type t)
{
    uint64_t count;
    if (take_be(r, n, &count) != 0) {
        return -1;
    }
    o->type = t;
    o->v.count = (uint32_t)count;
    return 0;
}

int mpr_read(struct mpr *r, struct mpr_obj *o)
{
    if (r->p >= r->end) {
        return -1;
    }
    unsigned char c = *r->p++;
    if (c <= 0x7f) {
        o->type = MPR_UINT;
        o->v.u = c;
        return 0;
    }
    if (c >= 0xe0) {
        o->type = MPR_INT;
        o->v.i = (int8_t)c;
        return 0;
    }
    if (c <= 0x9f) { /* fixmap 0x80.., fixarray 0x90.. */
        o->type = c <= 0x8f ? MPR_MAP : MPR_ARRAY;
        o->v.count = c & 0x0f;
        return 0;
    }
    if (c <= 0xbf) {
        return take_bytes(r, c & 0x1f, o, MPR_STR);
    }
    switch (c) {
    case 0xc0:
        o->type = MPR_NIL;
        return 0;
    case 0xc2:
    case 0xc3:
        o->type = MPR_BOOL;
        o->v.b = c == 0xc3;
        return 0;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return read_sized(r, o, (size_t)1 << (c - 0xc4), MPR_BIN);
    case 0xc7:
    case 0xc8:
    case 0xc9:
        return read_sized(r, o, (size_t)1 << (c - 0xc7), MPR_EXT);
    case 0xca:
        return read_float(r, o, 4);
    case 0xcb:
        return read_float(r, o, 8);
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        return read_int(r, o, (size_t)1 << (c - 0xcc), false);
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
        return read_int(r, o, (size_t)1 << (c - 0xd0), true);
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        /* fixext: a type byte and 1..16 bytes of data */
        if (r->p == r->end) {
            return -1;
        }
        r->p++;
        return take_bytes(r, (uint64_t)1 << (c - 0xd4), o, MPR_EXT);
    case 0xd9:
    case 0xda:
    case 0xdb:
        return read_sized(r, o, (size_t)1 << (c - 0xd9), MPR_STR);
    case 0xdc:
    case 0xdd:
        return read_container(r, o, (size_t)2 << (c - 0xdc), MPR_ARRAY);
    case 0xde:
    case 0xdf:
        return read_container(r, o, (size_t)2 << (c - 0xde), MPR_MAP);
    default: /* 0xc1 */
        return -1;
    }
}

int mpr_skip(struct mpr *r)
{
    /* Items still to read; each takes at least one byte, so more than are
     * left means the bytes lie about a count: stop there, no recursion. */
    uint64_t todo = 1;
    while (todo > 0) {
        struct mpr_obj o;
        if (mpr_read(r, &o) != 0) {
            return -1;
        }
        todo--;
        if (o.type == MPR_ARRAY) {
            todo += o.v.count;
        } else if (o.type == MPR_MAP) {
            todo += 2 * (uint64_t)o.v.count;
        }
        if (todo > (uint64_t)(r->end - r->p)) {
            return -1;
        }
    }
    return 0;
}

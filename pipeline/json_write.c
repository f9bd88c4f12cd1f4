/* JSON writer: renders events and other msgpack values as JSON text into
 * the caller's buffer without allocating (vigil-tap, the file and webhook
 * sinks).
 *
 * Choices the header leaves open:
 *  - EXT values are written as null: JSON has no type for them, and a made-up
 *    string would be mistaken for data.
 *  - Bytes that are not valid UTF-8 become U+FFFD one byte at a time, written
 *    as the raw UTF-8 character (EF BF BD), not as an escape.
 *  - FLOAT32 uses %.6g/%.9g against strtof, so 0.1f reads "0.1" and not
 *    "0.10000000149011612"; integral doubles below 1e15 are written as
 *    integers ("5", "-0") without snprintf.
 *  - A container nested deeper than WRITE_MAX_DEPTH is written as null; a
 *    non-string key inside more than KEY_MAX_QUOTE other non-string keys is
 *    written as "?" (each level doubles the backslashes, so it must stop).
 *  - snprintf/strtod are used for doubles, so LC_NUMERIC must stay "C".
 */
#include "json.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_read.h"
#include "utf8.h"

#define WRITE_MAX_DEPTH 128
#define KEY_MAX_QUOTE 4

struct out {
    char *buf;
    size_t room;    /* bytes we may store: cap - 1 (the NUL), or 0 */
    size_t len;     /* bytes the whole text needs so far */
    unsigned quote; /* how many non-string keys enclose what is being written */
    unsigned depth;
};

/* n bytes that fit: keys, short labels and numbers are mostly under 16
 * bytes, where a call to memcpy costs more than the copy. Two overlapping
 * loads and stores cover any length in [4, 16]. */
static inline void copy_short(char *d, const char *s, size_t n)
{
    if (n >= 8 && n <= 16) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        memcpy(d, &a, 4);
        memcpy(d + n - 4, &b, 4);
    } else if (n < 4) {
        for (size_t i = 0; i < n; i++) {
            d[i] = s[i];
        }
    } else {
        memcpy(d, s, n);
    }
}

static inline void put_plain(struct out *o, const char *p, size_t n)
{
    if (o->len < o->room) {
        size_t k = o->room - o->len;
        memcpy(o->buf + o->len, p, n < k ? n : k);
    }
    o->len += n;
}

/* Inside `quote` levels of key strings every '"' and '\' needs 2^quote - 1
 * backslashes in front of it: each level escapes the previous level's text. */
static void put_quoted(struct out *o, const char *p, size_t n)
{
    static const char bs[] = "\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\"; /* 16 */
    size_t nbs = ((size_t)1 << o->quote) - 1;
    size_t start = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"' || p[i] == '\\') {
            put_plain(o, p + start, i - start);
            put_plain(o, bs, nbs);
            start = i;
        }
    }
    put_plain(o, p + start, n - start);
}

static inline void put(struct out *o, const char *p, size_t n)
{
    if (__builtin_expect(o->quote != 0, 0)) {
        put_quoted(o, p, n);
    } else {
        put_plain(o, p, n);
    }
}

/* One character that is not '"' or '\\' (punctuation): no quoting. */
static inline void put_ch(struct out *o, char c)
{
    if (o->len < o->room) {
        o->buf[o->len] = c;
    }
    o->len++;
}

static inline void put_lit(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static const char digit_pairs[] = "00010203040506070809101112131415161718192021222324"
                                  "25262728293031323334353637383940414243444546474849"
                                  "50515253545556575859606162636465666768697071727374"
                                  "75767778798081828384858687888990919293949596979899";

/* The number of decimal digits of u (1 for 0). */
static inline unsigned digits_u64(uint64_t u)
{
    static const uint64_t pow10[] = {
        1ull,
        10ull,
        100ull,
        1000ull,
        10000ull,
        100000ull,
        1000000ull,
        10000000ull,
        100000000ull,
        1000000000ull,
        10000000000ull,
        100000000000ull,
        1000000000000ull,
        10000000000000ull,
        100000000000000ull,
        1000000000000000ull,
        10000000000000000ull,
        100000000000000000ull,
        1000000000000000000ull,
        10000000000000000000ull,
    };
    /* bits / log2(10) is the count or one less; the table says which. */
    uint64_t v = u | 1; /* 0 has one digit; no power of ten is odd */
    unsigned b = 64 - (unsigned)__builtin_clzll(v);
    unsigned d = (b * 1233) >> 12;
    return d + (v >= pow10[d]);
}

/* Exactly eight digits of v (< 10^8) at w: two halves of four, so that the
 * divisions do not wait on one another. */
static inline void put8(char *w, uint32_t v)
{
    uint32_t hi = v / 10000, lo = v % 10000;
    memcpy(w, digit_pairs + hi / 100 * 2, 2);
    memcpy(w + 2, digit_pairs + hi % 100 * 2, 2);
    memcpy(w + 4, digit_pairs + lo / 100 * 2, 2);
    memcpy(w + 6, digit_pairs + lo % 100 * 2, 2);
}

/* The digits of u, `nd` of them, ending at end. */
static inline void put_digits(char *end, uint64_t u, unsigned nd)
{
    /* Eight digits at a time in 32-bit arithmetic while u needs 64. */
    while (nd > 8) {
        put8(end - 8, (uint32_t)(u % 100000000u));
        u /= 100000000u;
        end -= 8;
        nd -= 8;
    }
    uint32_t v = (uint32_t)u;
    while (nd >= 2) {
        unsigned d = (v % 100) * 2;
        v /= 100;
        end -= 2;
        memcpy(end, digit_pairs + d, 2);
        nd -= 2;
    }
    if (nd) {
        end[-1] = (char)('0' + v);
    }
}

/* Straight into the output when it fits (timestamps have 19 digits). */
static void write_u64(struct out *o, uint64_t u)
{
    unsigned n = digits_u64(u);
    if (o->len + n <= o->room) { /* digits never need quoting */
        put_digits(o->buf + o->len + n, u, n);
        o->len += n;
        return;
    }
    char tmp[20];
    put_digits(tmp + n, u, n);
    put(o, tmp, n);
}

static void write_i64(struct out *o, int64_t v)
{
    if (v < 0) {
        put(o, "-", 1);
        /* -(v + 1) + 1 avoids overflowing on INT64_MIN */
        write_u64(o, (uint64_t)(-(v + 1)) + 1);
    } else {
        write_u64(o, (uint64_t)v);
    }
}

/* Metrics are mostly short decimals (12.345, 0.25), and snprintf + strtod
 * are slow for each of them. If some m / 10^k (k ≤ 15, |m| < 10^15) equals d
 * under IEEE division, which rounds correctly like strtod does, then the
 * text of m with k decimals reads back as d; with |d| in [1e-4, 1e15) and at
 * most 15 significant digits it is also exactly what %.15g would print. The
 * smallest such k gives no trailing zeros, as %g. Returns false otherwise. */
static bool write_short_decimal(struct out *o, double d)
{
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    static const double pow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    double a = d < 0 ? -d : d;

    if (!(a >= 1e-4 && a < 1e15)) {
        return false;
    }
    for (int k = 1; k <= 15; k++) {
        double scaled = a * pow10[k];
        if (scaled >= 1e15) {
            return false;
        }
        uint64_t m = (uint64_t)(scaled + 0.5);
        if ((double)m / pow10[k] != a) {
            continue;
        }
        /* digits of m, with the decimal point k places from the right */
        char tmp[24];
        size_t i = sizeof tmp;
        for (int j = 0; j < k; j++) {
            tmp[--i] = (char)('0' + m % 10);
            m /= 10;
        }
        tmp[--i] = '.';
        do {
            tmp[--i] = (char)('0' + m % 10);
            m /= 10;
        } while (m);
        if (d < 0) {
            tmp[--i] = '-';
        }
        put(o, tmp + i, sizeof tmp - i);
        return true;
    }
#else
    (void)o;
    (void)d;
#endif
    return false;
}

static void write_double(struct out *o, double d, bool f32)
{
    char tmp[40];
    int n;

    if (isnan(d) || isinf(d)) {
        put(o, "null", 4);
        return;
    }
    /* Integral and below 1e15: exact as an integer, and much cheaper than
     * snprintf. The sign of -0.0 is kept so that it reads back as -0.0. */
    if (d > -1e15 && d < 1e15 && (double)(int64_t)d == d) {
        if (signbit(d)) {
            put(o, "-", 1);
            write_u64(o, (uint64_t)-d);
        } else {
            write_u64(o, (uint64_t)d);
        }
        return;
    }
    if (!f32 && write_short_decimal(o, d)) {
        return;
    }
    if (f32) {
        n = snprintf(tmp, sizeof tmp, "%.6g", d);
        if (strtof(tmp, NULL) != (float)d) {
            n = snprintf(tmp, sizeof tmp, "%.9g", d);
        }
    } else {
        n = snprintf(tmp, sizeof tmp, "%.15g", d);
        if (strtod(tmp, NULL) != d) {
            n = snprintf(tmp, sizeof tmp, "%.17g", d);
        }
    }
    put(o, tmp, (size_t)n);
}

/* 1: a byte that ends a run of plain ASCII in a string ('"', '\\',
 * controls, and the first byte of a UTF-8 sequence, checked apart). */
static const unsigned char special[256] = {
    [0 ... 0x1f] = 1,
    ['"'] = 1,
    ['\\'] = 1,
    [0x80 ... 0xff] = 1,
};

/* Whether any byte of x is '"', '\\', a control (< 0x20) or >= 0x80: the
 * bytes that end a run of plain ASCII in a string. Exact for the word as a
 * whole (the usual "has a zero byte" test per class), not per byte. */
static inline bool special8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    return (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) | x) & high;
}

/* Whether the n bytes at s are all plain ASCII (no special[] byte), a word
 * at a time: labels and keys are mostly 4 to 16 bytes, two overlapping
 * loads. Never reads outside s[0, n). */
static inline bool plain_ascii(const unsigned char *s, size_t n)
{
    uint64_t a;
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&a, s + i, 8);
            if (special8(a)) {
                return false;
            }
        }
        memcpy(&a, s + n - 8, 8);
        return !special8(a);
    }
    if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, s, 4);
        memcpy(&y, s + n - 4, 4);
        return !special8((uint64_t)x << 32 | y);
    }
    bool plain = true;
    for (size_t i = 0; i < n; i++) {
        plain &= !special[s[i]];
    }
    return plain;
}

/* A JSON string of n bytes at p, the general way: runs of bytes that need
 * nothing are copied at once; invalid UTF-8 becomes U+FFFD per byte. */
static __attribute__((noinline)) void write_str_escaped(struct out *o, const char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)p;
    size_t start = 0, i = 0;

    put(o, "\"", 1);
    while (i < n) {
        unsigned char c = s[i];
        if (!special[c]) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = vigil_utf8_seq_len(s + i, n - i);
            if (k) {
                i += k;
                continue;
            }
        }
        put(o, p + start, i - start);
        switch (c) {
        case '"':
            put(o, "\\\"", 2);
            break;
        case '\\':
            put(o, "\\\\", 2);
            break;
        case '\b':
            put(o, "\\b", 2);
            break;
        case '\f':
            put(o, "\\f", 2);
            break;
        case '\n':
            put(o, "\\n", 2);
            break;
        case '\r':
            put(o, "\\r", 2);
            break;
        case '\t':
            put(o, "\\t", 2);
            break;
        default:
            if (c < 0x20) {
                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                put(o, e, sizeof e);
            } else {
                put(o, "\xEF\xBF\xBD", 3);
            }
            break;
        }
        i++;
        start = i;
    }
    put(o, p + start, n - start);
    put(o, "\"", 1);
}

/* A JSON string of n bytes at p. The common case inline: plain ASCII, no
 * quoting, room for it all (keys, labels, topics). */
static inline void write_str(struct out *o, const char *p, size_t n)
{
    if (!o->quote && o->len + n + 2 <= o->room && plain_ascii((const unsigned char *)p, n)) {
        char *w = o->buf + o->len;
        w[0] = '"';
        copy_short(w + 1, p, n);
        w[n + 1] = '"';
        o->len += n + 2;
        return;
    }
    write_str_escaped(o, p, n);
}

static void out_init(struct out *o, char *buf, size_t cap)
{
    o->buf = buf;
    o->room = cap ? cap - 1 : 0;
    o->len = 0;
    o->quote = 0;
    o->depth = 0;
}

static size_t out_finish(struct out *o)
{
    if (o->buf) {
        o->buf[o->len < o->room ? o->len : o->room] = '\0';
    }
    return o->len;
}

/* ---- Values, straight from the msgpack bytes --------------------------------------
 *
 * No unpacking: no zone, no object tree (msgpack_unpack was a large share of a
 * file sink's time). Every read is bounds-checked; bytes that are not one
 * well-formed object make the whole rendering return SIZE_MAX. */

struct rd {
    const unsigned char *p, *end;
};

static bool raw_value(struct out *o, struct rd *r);

static inline uint64_t be64(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof x);
    return __builtin_bswap64(x);
}

/* The shapes events are made of (a fixstr key or label, a float64 or
 * unsigned metric, a uint64 ts or seq), written without filling a struct
 * mp_item. 1 when written, 0 when the caller takes the general path (other
 * shapes, and bytes that end early: it says false for those). */
static inline int fast_value(struct out *o, struct rd *r)
{
    const unsigned char *p = r->p;
    if (p >= r->end) {
        return 0;
    }
    unsigned c = *p;
    size_t avail = (size_t)(r->end - p) - 1;
    if ((c & 0xe0) == 0xa0) {
        size_t n = c & 0x1f;
        if (n > avail) {
            return 0;
        }
        r->p = p + 1 + n;
        write_str(o, (const char *)p + 1, n);
        return 1;
    }
    if (c <= 0x7f) {
        r->p = p + 1;
        write_u64(o, c);
        return 1;
    }
    if ((c == 0xcb || c == 0xcf) && avail >= 8) {
        uint64_t bits = be64(p + 1);
        r->p = p + 9;
        if (c == 0xcf) {
            write_u64(o, bits);
        } else {
            double d;
            memcpy(&d, &bits, sizeof d);
            write_double(o, d, false);
        }
        return 1;
    }
    return 0;
}

/* Functions here save only r->p to go back to, never the whole struct rd:
 * copying it back in as one 16-byte load right after the caller's two 8-byte
 * stores stalls on store forwarding at every call (it was the largest cost
 * of raw_value in a profile). */
/* A fixstr key, the usual one, inline in the loops; false for the others. */
static inline bool fast_key(struct out *o, struct rd *r)
{
    const unsigned char *p = r->p;
    if (p < r->end && (*p & 0xe0) == 0xa0 && (size_t)(*p & 0x1f) < (size_t)(r->end - p)) {
        size_t n = *p & 0x1f;
        r->p = p + 1 + n;
        write_str(o, (const char *)p + 1, n);
        return true;
    }
    return false;
}

static bool raw_key(struct out *o, struct rd *r)
{
    if (fast_key(o, r)) {
        return true;
    }
    const unsigned char *p0 = r->p;
    struct mp_item k;
    if (!mp_read(&r->p, r->end, &k)) {
        return false;
    }
    if (mp_is_str(&k)) {
        write_str(o, k.s, k.n);
        return true;
    }
    r->p = p0;
    if (o->quote >= KEY_MAX_QUOTE) {
        put(o, "\"?\"", 3);
        return mp_skip(&r->p, r->end);
    }
    put(o, "\"", 1);
    o->quote++;
    bool ok = raw_value(o, r);
    o->quote--;
    put(o, "\"", 1);
    return ok;
}

static bool raw_value(struct out *o, struct rd *r)
{
    if (fast_value(o, r)) {
        return true;
    }
    const unsigned char *p0 = r->p;
    struct mp_item v;
    if (!mp_read(&r->p, r->end, &v)) {
        return false;
    }
    switch (v.kind) {
    case MP_NIL:
    case MP_EXT:
        put(o, "null", 4);
        return true;
    case MP_BOOL:
        put_lit(o, v.u ? "true" : "false");
        return true;
    case MP_UINT:
        write_u64(o, v.u);
        return true;
    case MP_NEG:
        write_i64(o, v.i);
        return true;
    case MP_F32:
    case MP_F64:
        write_double(o, v.f, v.kind == MP_F32);
        return true;
    case MP_STR:
    case MP_BIN:
        write_str(o, v.s, v.n);
        return true;
    case MP_ARRAY:
    case MP_MAP:
        break;
    }
    if (o->depth >= WRITE_MAX_DEPTH) {
        put(o, "null", 4);
        r->p = p0;
        return mp_skip(&r->p, r->end);
    }
    bool map = v.kind == MP_MAP, ok = true;
    o->depth++;
    put_ch(o, map ? '{' : '[');
    for (uint64_t i = 0; i < v.u && ok; i++) {
        if (i) {
            put_ch(o, ',');
        }
        if (map) {
            ok = fast_key(o, r) || raw_key(o, r);
            put_ch(o, ':');
        }
        ok = ok && (fast_value(o, r) || raw_value(o, r));
    }
    put_ch(o, map ? '}' : ']');
    o->depth--;
    return ok;
}

/* The envelope keys in output order; labels, values and attrs (from
 * FIRST_MAP on) are written as {} when the body lacks them. */
static const struct {
    const char *name;
    size_t len;
    const char *json; /* ,"name": */
} envelope[] = {
    {"ts", 2, ",\"ts\":"},       {"host", 4, ",\"host\":"},     {"source", 6, ",\"source\":"},
    {"seq", 3, ",\"seq\":"},     {"labels", 6, ",\"labels\":"}, {"values", 6, ",\"values\":"},
    {"attrs", 5, ",\"attrs\":"},
};
#define N_ENVELOPE (sizeof envelope / sizeof envelope[0])
#define FIRST_MAP 4

size_t vigil_json_value(const char *data, size_t len, char *buf, size_t cap)
{
    struct out o;
    struct rd r = {(const unsigned char *)data, (const unsigned char *)data + len};
    out_init(&o, cap ? buf : NULL, cap);
    if (!raw_value(&o, &r) || r.p != r.end) {
        return SIZE_MAX;
    }
    return out_finish(&o);
}

/* The index of key k among the envelope keys, or N_ENVELOPE. */
static size_t envelope_index(const struct mp_item *k)
{
    if (!mp_is_str(k)) {
        return N_ENVELOPE;
    }
    for (size_t j = 0; j < N_ENVELOPE; j++) {
        if (k->n == envelope[j].len && memcmp(k->s, envelope[j].name, k->n) == 0) {
            return j;
        }
    }
    return N_ENVELOPE;
}

/* Writes ,"<envelope key j>": */
static void put_envelope_key(struct out *o, size_t j)
{
    put(o, envelope[j].json, envelope[j].len + 4);
}

/* The maps among envelope keys [from, to) that the body lacks, as {}. */
static void put_missing_maps(struct out *o, size_t from, size_t to)
{
    for (size_t j = from < FIRST_MAP ? FIRST_MAP : from; j < to; j++) {
        put_envelope_key(o, j);
        put(o, "{}", 2);
    }
}

/* One key-value pair that is not the envelope's: ,key:value */
static bool put_pair(struct out *o, struct rd *r)
{
    put_ch(o, ',');
    if (!raw_key(o, r)) {
        return false;
    }
    put_ch(o, ':');
    return raw_value(o, r);
}

/* The `count` pairs at r written in one walk, for a body whose envelope keys
 * come first and in output order, as every vigil builder writes them. 1 when
 * done; 0 when the order differs (the caller starts over with two walks); -1
 * when the bytes are malformed. */
static int event_in_order(struct out *o, struct rd *r, uint64_t count)
{
    size_t next = 0; /* the envelope key due next */
    for (uint64_t i = 0; i < count; i++) {
        const unsigned char *k0 = r->p;
        struct mp_item k;
        if (!mp_read(&r->p, r->end, &k)) {
            return -1;
        }
        size_t j = envelope_index(&k);
        if (j < N_ENVELOPE && j < next) {
            return 0; /* out of order, or twice */
        }
        put_missing_maps(o, next, j);
        bool ok;
        if (j < N_ENVELOPE) {
            put_envelope_key(o, j);
            next = j + 1;
            ok = fast_value(o, r) || raw_value(o, r);
        } else {
            next = N_ENVELOPE; /* an envelope key after this one is out of order */
            r->p = k0;
            ok = put_pair(o, r);
        }
        if (!ok) {
            return -1;
        }
    }
    put_missing_maps(o, next, N_ENVELOPE);
    return 1;
}

/* The envelope's values are written first, in the order the header gives,
 * then the other keys: in one walk when the body has them in that order,
 * else the envelope's values are found in a first walk. */
static size_t render_event(const char *topic, size_t topic_len, const char *body, size_t body_len,
                           char *buf, size_t cap, bool one_walk)
{
    struct out o;
    struct rd r = {(const unsigned char *)body, (const unsigned char *)body + body_len};
    struct mp_item m;

    out_init(&o, cap ? buf : NULL, cap);
    put(&o, "{\"topic\":", 9);
    write_str(&o, topic ? topic : "", topic ? topic_len : 0);
    if (!mp_read(&r.p, r.end, &m)) {
        return SIZE_MAX;
    }
    if (m.kind != MP_MAP) {
        put(&o, ",\"body\":", 8);
        r.p = (const unsigned char *)body;
        if (!raw_value(&o, &r) || r.p != r.end) {
            return SIZE_MAX;
        }
        put_ch(&o, '}');
        return out_finish(&o);
    }
    const unsigned char *pairs = r.p;
    size_t head_len = o.len;
    o.depth = 1; /* the event object itself */
    int in_order = one_walk ? event_in_order(&o, &r, m.u) : 0;
    if (in_order < 0 || (in_order > 0 && r.p != r.end)) {
        return SIZE_MAX; /* malformed, or bytes after the object */
    }
    if (in_order > 0) {
        put_ch(&o, '}');
        return out_finish(&o);
    }
    o.len = head_len;
    r.p = pairs;
    const unsigned char *at[N_ENVELOPE];
    uint64_t at_i[N_ENVELOPE];
    for (size_t j = 0; j < N_ENVELOPE; j++) {
        at[j] = NULL;
        at_i[j] = UINT64_MAX;
    }
    for (uint64_t i = 0; i < m.u; i++) {
        const unsigned char *k0 = r.p;
        struct mp_item k;
        if (!mp_read(&r.p, r.end, &k)) {
            return SIZE_MAX;
        }
        if (mp_is_str(&k)) {
            size_t j = envelope_index(&k);
            if (j < N_ENVELOPE && !at[j]) {
                at[j] = r.p;
                at_i[j] = i;
            }
        } else {
            r.p = k0;
            if (!mp_skip(&r.p, r.end)) {
                return SIZE_MAX;
            }
        }
        if (!mp_skip(&r.p, r.end)) {
            return SIZE_MAX;
        }
    }
    if (r.p != r.end) {
        return SIZE_MAX; /* bytes after the object: not what decoding accepts */
    }

    for (size_t j = 0; j < N_ENVELOPE; j++) {
        if (!at[j] && j < FIRST_MAP) {
            continue;
        }
        put_envelope_key(&o, j);
        if (!at[j]) {
            put(&o, "{}", 2);
            continue;
        }
        struct rd v = {at[j], r.end};
        if (!raw_value(&o, &v)) {
            return SIZE_MAX;
        }
    }
    r.p = pairs;
    for (uint64_t i = 0; i < m.u; i++) {
        bool taken = false;
        for (size_t j = 0; j < N_ENVELOPE; j++) {
            taken |= at_i[j] == i;
        }
        if (taken) {
            if (!mp_skip(&r.p, r.end) || !mp_skip(&r.p, r.end)) {
                return SIZE_MAX;
            }
            continue;
        }
        if (!put_pair(&o, &r)) {
            return SIZE_MAX;
        }
    }
    put_ch(&o, '}');
    return out_finish(&o);
}

size_t vigil_json_event(const char *topic, size_t topic_len, const char *body, size_t body_len,
                        char *buf, size_t cap)
{
    return render_event(topic, topic_len, body, body_len, buf, cap, true);
}

size_t vigil_json_event_two_walks(const char *topic, size_t topic_len, const char *body,
                                  size_t body_len, char *buf, size_t cap)
{
    return render_event(topic, topic_len, body, body_len, buf, cap, false);
}

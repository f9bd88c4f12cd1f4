/* JSON for vigil: renders events and other msgpack values as JSON text into
 * the caller's buffer without allocating (vigil-tap, the file and webhook
 * sinks), and parses one strict RFC 8259 text into a msgpack object tree
 * held in a zone (vigil-pub).
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
 *  - The parser is hand-written, not libyaml (the header's first comment is
 *    out of date): libyaml's flow syntax disagrees with JSON on "a":1 without
 *    a space, tabs, \/ , yes/no and duplicate keys, and undoing that costs
 *    more code than parsing JSON. Duplicate keys are kept, in order (msgpack
 *    allows them). "-0" becomes FLOAT64 -0.0, so NEGATIVE_INTEGER is always
 *    < 0. Invalid UTF-8 in the input is an error; a lone \uD800-style
 *    surrogate becomes U+FFFD. Numbers beyond the double range are errors.
 *    Columns in messages count bytes from 1.
 *  - Both directions use snprintf/strtod, so LC_NUMERIC must stay "C".
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

#define WRITE_MAX_DEPTH 128
#define KEY_MAX_QUOTE 4
#define PARSE_MAX_DEPTH 64

/* Length of the well-formed UTF-8 sequence (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF) of 2 to 4 bytes at s, or 0. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;

    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) {
            lo = 0xA0;
        } else if (c == 0xED) {
            hi = 0x9F;
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) {
            lo = 0x90;
        } else if (c == 0xF4) {
            hi = 0x8F;
        }
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return len;
}

/* ---------------------------------------------------------------- writer */

struct out {
    char *buf;
    size_t room;    /* bytes we may store: cap - 1 (the NUL), or 0 */
    size_t len;     /* bytes the whole text needs so far */
    unsigned quote; /* how many non-string keys enclose what is being written */
    unsigned depth;
};

static void put_plain(struct out *o, const char *p, size_t n)
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
    if (o->quote) {
        put_quoted(o, p, n);
    } else {
        put_plain(o, p, n);
    }
}

static inline void put_lit(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Two digits per division: timestamps have 19 of them. */
static void write_u64(struct out *o, uint64_t u)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324"
                                "25262728293031323334353637383940414243444546474849"
                                "50515253545556575859606162636465666768697071727374"
                                "75767778798081828384858687888990919293949596979899";
    char tmp[20];
    size_t i = sizeof tmp;

    while (u >= 100) {
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        tmp[--i] = pairs[d + 1];
        tmp[--i] = pairs[d];
    }
    if (u >= 10) {
        tmp[--i] = pairs[u * 2 + 1];
        tmp[--i] = pairs[u * 2];
    } else {
        tmp[--i] = (char)('0' + u);
    }
    put(o, tmp + i, sizeof tmp - i);
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
 * cost ~300 ns for each. If some m / 10^k (k ≤ 15, |m| < 10^15) equals d
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

/* A JSON string of n bytes at p: runs of bytes that need nothing are copied
 * at once; invalid UTF-8 becomes U+FFFD per byte. */
static void write_str(struct out *o, const char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)p;
    size_t start = 0, i = 0;

    put(o, "\"", 1);
    while (i < n) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_seq_len(s + i, n - i);
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

static void write_value(struct out *o, const msgpack_object *v);

static void write_key(struct out *o, const msgpack_object *k)
{
    if (k->type == MSGPACK_OBJECT_STR || k->type == MSGPACK_OBJECT_BIN) {
        write_str(o, k->via.str.ptr, k->via.str.size);
    } else if (o->quote >= KEY_MAX_QUOTE) {
        put(o, "\"?\"", 3);
    } else {
        put(o, "\"", 1);
        o->quote++;
        write_value(o, k);
        o->quote--;
        put(o, "\"", 1);
    }
}

static void write_value(struct out *o, const msgpack_object *v)
{
    switch (v->type) {
    case MSGPACK_OBJECT_NIL:
        put(o, "null", 4);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        put_lit(o, v->via.boolean ? "true" : "false");
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        write_u64(o, v->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        write_i64(o, v->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
        write_double(o, v->via.f64, true);
        break;
    case MSGPACK_OBJECT_FLOAT64:
        write_double(o, v->via.f64, false);
        break;
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN:
        write_str(o, v->via.str.ptr, v->via.str.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        if (o->depth >= WRITE_MAX_DEPTH) {
            put(o, "null", 4);
            break;
        }
        o->depth++;
        put(o, "[", 1);
        for (uint32_t i = 0; i < v->via.array.size; i++) {
            if (i) {
                put(o, ",", 1);
            }
            write_value(o, &v->via.array.ptr[i]);
        }
        put(o, "]", 1);
        o->depth--;
        break;
    case MSGPACK_OBJECT_MAP:
        if (o->depth >= WRITE_MAX_DEPTH) {
            put(o, "null", 4);
            break;
        }
        o->depth++;
        put(o, "{", 1);
        for (uint32_t i = 0; i < v->via.map.size; i++) {
            if (i) {
                put(o, ",", 1);
            }
            write_key(o, &v->via.map.ptr[i].key);
            put(o, ":", 1);
            write_value(o, &v->via.map.ptr[i].val);
        }
        put(o, "}", 1);
        o->depth--;
        break;
    case MSGPACK_OBJECT_EXT:
    default:
        put(o, "null", 4);
        break;
    }
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

size_t vigil_json_value(const msgpack_object *v, char *buf, size_t cap)
{
    struct out o;

    out_init(&o, cap ? buf : NULL, cap);
    if (v) {
        write_value(&o, v);
    } else {
        put(&o, "null", 4);
    }
    return out_finish(&o);
}

/* The envelope keys in output order; labels, values and attrs (from
 * FIRST_MAP on) are written as {} when the body lacks them. */
static const struct {
    const char *name;
    size_t len;
} envelope[] = {
    {"ts", 2}, {"host", 4}, {"source", 6}, {"seq", 3}, {"labels", 6}, {"values", 6}, {"attrs", 5},
};
#define N_ENVELOPE (sizeof envelope / sizeof envelope[0])
#define FIRST_MAP 4

size_t vigil_json_event(const char *topic, size_t topic_len, const msgpack_object *body, char *buf,
                        size_t cap)
{
    struct out o;

    out_init(&o, cap ? buf : NULL, cap);
    put(&o, "{\"topic\":", 9);
    write_str(&o, topic ? topic : "", topic ? topic_len : 0);

    if (!body || body->type != MSGPACK_OBJECT_MAP) {
        put(&o, ",\"body\":", 8);
        if (body) {
            write_value(&o, body);
        } else {
            put(&o, "null", 4);
        }
        put(&o, "}", 1);
        return out_finish(&o);
    }

    /* The first occurrence of an envelope key is the envelope's; a repeated
     * one is written with the other keys, so nothing in the body is lost. */
    const msgpack_object_map *m = &body->via.map;
    uint32_t at[N_ENVELOPE];
    for (size_t j = 0; j < N_ENVELOPE; j++) {
        at[j] = UINT32_MAX;
    }
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR && k->type != MSGPACK_OBJECT_BIN) {
            continue;
        }
        for (size_t j = 0; j < N_ENVELOPE; j++) {
            if (at[j] == UINT32_MAX && k->via.str.size == envelope[j].len &&
                k->via.str.ptr[0] == envelope[j].name[0] && memcmp(k->via.str.ptr, envelope[j].name, envelope[j].len) == 0) {
                at[j] = i;
                break;
            }
        }
    }

    o.depth = 1; /* the event object itself */
    for (size_t j = 0; j < N_ENVELOPE; j++) {
        if (at[j] == UINT32_MAX && j < FIRST_MAP) {
            continue;
        }
        put(&o, ",\"", 2);
        put(&o, envelope[j].name, envelope[j].len);
        put(&o, "\":", 2);
        if (at[j] == UINT32_MAX) {
            put(&o, "{}", 2);
        } else {
            write_value(&o, &m->ptr[at[j]].val);
        }
    }
    for (uint32_t i = 0; i < m->size; i++) {
        bool taken = false;
        for (size_t j = 0; j < N_ENVELOPE; j++) {
            taken |= at[j] == i;
        }
        if (taken) {
            continue;
        }
        put(&o, ",", 1);
        write_key(&o, &m->ptr[i].key);
        put(&o, ":", 1);
        write_value(&o, &m->ptr[i].val);
    }
    put(&o, "}", 1);
    return out_finish(&o);
}

/* ---------------------------------------------------------------- parser */

struct parser {
    const unsigned char *s;
    size_t len;
    size_t pos;
    unsigned depth;
    msgpack_zone *zone;
    char *err;
    size_t errlen;
};

/* Writes "column C: <message>" (or "line L, column C: …" past the first
 * line) for byte offset `at`, and returns -1. */
static int fail(struct parser *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, size_t at, const char *fmt, ...)
{
    size_t line = 1, col_start = 0;
    int n;
    va_list ap;

    if (!p->err || !p->errlen) {
        return -1;
    }
    for (size_t i = 0; i < at && i < p->len; i++) {
        if (p->s[i] == '\n') {
            line++;
            col_start = i + 1;
        }
    }
    if (line == 1) {
        n = snprintf(p->err, p->errlen, "column %zu: ", at - col_start + 1);
    } else {
        n = snprintf(p->err, p->errlen, "line %zu, column %zu: ", line, at - col_start + 1);
    }
    if (n >= 0 && (size_t)n < p->errlen) {
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int fail_oom(struct parser *p)
{
    if (p->err && p->errlen) {
        snprintf(p->err, p->errlen, "out of memory");
    }
    return -1;
}

/* What is at `at`, for "expected X, found Y". */
static const char *found(const struct parser *p, size_t at, char *buf, size_t size)
{
    if (at >= p->len) {
        return "end of input";
    }
    unsigned char c = p->s[at];
    if (c > 0x20 && c < 0x7F) {
        snprintf(buf, size, "'%c'", c);
    } else {
        snprintf(buf, size, "byte 0x%02x", c);
    }
    return buf;
}

static int fail_expected(struct parser *p, const char *what)
{
    char tmp[16];
    return fail(p, p->pos, "expected %s, found %s", what, found(p, p->pos, tmp, sizeof tmp));
}

static void skip_ws(struct parser *p)
{
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            break;
        }
        p->pos++;
    }
}

static int peek(const struct parser *p)
{
    return p->pos < p->len ? p->s[p->pos] : -1;
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* Grows a zone array of `size`-byte items to hold one more; the old copy is
 * left in the zone (at most as much again as the final array). */
static void *grow(struct parser *p, void *items, uint32_t n, size_t *cap, size_t size)
{
    if (n < *cap) {
        return items;
    }
    if (n == UINT32_MAX) {
        return NULL;
    }
    size_t ncap = *cap ? *cap * 2 : 8;
    void *fresh = msgpack_zone_malloc(p->zone, ncap * size);
    if (!fresh) {
        return NULL;
    }
    if (n) {
        memcpy(fresh, items, n * size);
    }
    *cap = ncap;
    return fresh;
}

static int parse_value(struct parser *p, msgpack_object *out);

static int hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= c - '0';
        } else if (c >= 'a' && c <= 'f') {
            v |= c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            v |= c - 'A' + 10;
        } else {
            return -1;
        }
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *d, unsigned cp)
{
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xC0 | cp >> 6);
        d[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | cp >> 12);
        d[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | cp >> 18);
    d[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    d[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string at p->pos (on the '"'). The decoded text is never longer than
 * its source (an escape of 6 bytes yields at most 3, a pair of 12 yields 4),
 * so one allocation of the source length is enough. */
static int parse_string(struct parser *p, msgpack_object *out)
{
    const unsigned char *s = p->s;
    size_t open = p->pos, begin = open + 1, end = begin;

    for (;;) {
        if (end >= p->len) {
            return fail(p, open, "unterminated string");
        }
        if (s[end] == '"') {
            break;
        }
        end += s[end] == '\\' ? 2 : 1;
    }

    char *dst = NULL;
    size_t n = 0;
    if (end > begin) {
        dst = msgpack_zone_malloc_no_align(p->zone, end - begin);
        if (!dst) {
            return fail_oom(p);
        }
    }
    size_t i = begin;
    while (i < end) {
        unsigned char c = s[i];
        if (c == '\\') {
            /* The scan above stepped over s[i + 1], so it is before end. */
            unsigned char e = s[i + 1];
            unsigned cp, lo;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                dst[n++] = (char)e;
                break;
            case 'b':
                dst[n++] = '\b';
                break;
            case 'f':
                dst[n++] = '\f';
                break;
            case 'n':
                dst[n++] = '\n';
                break;
            case 'r':
                dst[n++] = '\r';
                break;
            case 't':
                dst[n++] = '\t';
                break;
            case 'u':
                if (end - i < 6 || hex4(s + i + 2, &cp) < 0) {
                    return fail(p, i, "expected 4 hex digits after \\u");
                }
                if (cp >= 0xD800 && cp <= 0xDBFF && end - i >= 12 && s[i + 6] == '\\' &&
                    s[i + 7] == 'u' && hex4(s + i + 8, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                    cp = 0xFFFD; /* a lone surrogate has no UTF-8 form */
                }
                n += put_utf8(dst + n, cp);
                i += 4;
                break;
            default:
                return fail(p, i, "invalid escape '\\%c' in string",
                            e > 0x20 && e < 0x7F ? e : '?');
            }
            i += 2;
        } else if (c < 0x20) {
            return fail(p, i, "control character 0x%02x in string (write it as \\u%04x)", c, c);
        } else if (c < 0x80) {
            dst[n++] = (char)c;
            i++;
        } else {
            size_t k = utf8_seq_len(s + i, end - i);
            if (!k) {
                return fail(p, i, "invalid UTF-8 in string");
            }
            memcpy(dst + n, s + i, k);
            n += k;
            i += k;
        }
    }
    if (n > UINT32_MAX) {
        return fail(p, open, "string longer than 4 GiB");
    }
    p->pos = end + 1;
    out->type = MSGPACK_OBJECT_STR;
    out->via.str.ptr = dst ? dst : "";
    out->via.str.size = (uint32_t)n;
    return 0;
}

static int parse_number(struct parser *p, msgpack_object *out)
{
    const unsigned char *s = p->s;
    size_t start = p->pos, i = start;
    bool neg = false, integral = true;

    if (s[i] == '-') {
        neg = true;
        i++;
    }
    p->pos = i;
    if (i >= p->len || !is_digit(s[i])) {
        return fail_expected(p, "a digit after '-'");
    }
    if (s[i] == '0') {
        i++;
        if (i < p->len && is_digit(s[i])) {
            return fail(p, i - 1, "leading zeros are not allowed");
        }
    } else {
        while (i < p->len && is_digit(s[i])) {
            i++;
        }
    }
    size_t int_end = i;
    if (i < p->len && s[i] == '.') {
        integral = false;
        p->pos = ++i;
        if (i >= p->len || !is_digit(s[i])) {
            return fail_expected(p, "a digit after '.'");
        }
        while (i < p->len && is_digit(s[i])) {
            i++;
        }
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        integral = false;
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) {
            i++;
        }
        p->pos = i;
        if (i >= p->len || !is_digit(s[i])) {
            return fail_expected(p, "a digit in the exponent");
        }
        while (i < p->len && is_digit(s[i])) {
            i++;
        }
    }
    p->pos = i;

    if (integral) {
        uint64_t u = 0;
        bool over = false;
        for (size_t k = neg ? start + 1 : start; k < int_end && !over; k++) {
            unsigned d = s[k] - '0';
            if (u > (UINT64_MAX - d) / 10) {
                over = true;
            } else {
                u = u * 10 + d;
            }
        }
        if (!over && !neg) {
            out->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
            out->via.u64 = u;
            return 0;
        }
        if (!over && u != 0 && u <= (uint64_t)INT64_MAX + 1) {
            out->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
            out->via.i64 = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
            return 0;
        }
        /* "-0", and integers beyond 64 bits, are doubles */
    }

    /* strtod wants a NUL-terminated copy; long numbers go to the zone. */
    char tmp[64], *z = tmp, *endp;
    size_t n = i - start;
    if (n >= sizeof tmp) {
        z = msgpack_zone_malloc_no_align(p->zone, n + 1);
        if (!z) {
            return fail_oom(p);
        }
    }
    memcpy(z, s + start, n);
    z[n] = '\0';
    double d = strtod(z, &endp);
    if (endp != z + n) {
        return fail(p, start, "cannot convert number (is LC_NUMERIC not \"C\"?)");
    }
    if (isinf(d)) {
        return fail(p, start, "number out of range");
    }
    out->type = MSGPACK_OBJECT_FLOAT64;
    out->via.f64 = d;
    return 0;
}

static int parse_literal(struct parser *p, const char *word, msgpack_object *out)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) {
        return fail(p, p->pos, "invalid literal (expected '%s')", word);
    }
    p->pos += n;
    if (word[0] == 'n') {
        out->type = MSGPACK_OBJECT_NIL;
    } else {
        out->type = MSGPACK_OBJECT_BOOLEAN;
        out->via.boolean = word[0] == 't';
    }
    return 0;
}

static int parse_array(struct parser *p, msgpack_object *out)
{
    msgpack_object *items = NULL;
    size_t cap = 0;
    uint32_t n = 0;

    p->pos++;
    skip_ws(p);
    if (peek(p) == ']') {
        p->pos++;
    } else {
        for (;;) {
            skip_ws(p);
            if (n && peek(p) == ']') {
                return fail(p, p->pos, "trailing comma before ']'");
            }
            items = grow(p, items, n, &cap, sizeof *items);
            if (!items) {
                return fail_oom(p);
            }
            if (parse_value(p, &items[n]) < 0) {
                return -1;
            }
            n++;
            skip_ws(p);
            if (peek(p) == ',') {
                p->pos++;
            } else if (peek(p) == ']') {
                p->pos++;
                break;
            } else {
                return fail_expected(p, "',' or ']'");
            }
        }
    }
    out->type = MSGPACK_OBJECT_ARRAY;
    out->via.array.size = n;
    out->via.array.ptr = items;
    return 0;
}

static int parse_object(struct parser *p, msgpack_object *out)
{
    msgpack_object_kv *kvs = NULL;
    size_t cap = 0;
    uint32_t n = 0;

    p->pos++;
    skip_ws(p);
    if (peek(p) == '}') {
        p->pos++;
    } else {
        for (;;) {
            skip_ws(p);
            if (peek(p) != '"') {
                if (n && peek(p) == '}') {
                    return fail(p, p->pos, "trailing comma before '}'");
                }
                return fail_expected(p, "a string key");
            }
            kvs = grow(p, kvs, n, &cap, sizeof *kvs);
            if (!kvs) {
                return fail_oom(p);
            }
            if (parse_string(p, &kvs[n].key) < 0) {
                return -1;
            }
            skip_ws(p);
            if (peek(p) != ':') {
                return fail_expected(p, "':' after the key");
            }
            p->pos++;
            if (parse_value(p, &kvs[n].val) < 0) {
                return -1;
            }
            n++;
            skip_ws(p);
            if (peek(p) == ',') {
                p->pos++;
            } else if (peek(p) == '}') {
                p->pos++;
                break;
            } else {
                return fail_expected(p, "',' or '}'");
            }
        }
    }
    out->type = MSGPACK_OBJECT_MAP;
    out->via.map.size = n;
    out->via.map.ptr = kvs;
    return 0;
}

static int parse_value(struct parser *p, msgpack_object *out)
{
    int c, rc;

    skip_ws(p);
    c = peek(p);
    switch (c) {
    case '{':
    case '[':
        /* Bounded so that hostile input cannot exhaust the stack. */
        if (p->depth >= PARSE_MAX_DEPTH) {
            return fail(p, p->pos, "nested deeper than %d levels", PARSE_MAX_DEPTH);
        }
        p->depth++;
        rc = c == '{' ? parse_object(p, out) : parse_array(p, out);
        p->depth--;
        return rc;
    case '"':
        return parse_string(p, out);
    case 't':
        return parse_literal(p, "true", out);
    case 'f':
        return parse_literal(p, "false", out);
    case 'n':
        return parse_literal(p, "null", out);
    default:
        if (c == '-' || is_digit(c)) {
            return parse_number(p, out);
        }
        return fail_expected(p, "a JSON value");
    }
}

int vigil_json_parse(const char *text, size_t len, msgpack_zone *zone, msgpack_object *out,
                     char *err, size_t errlen)
{
    struct parser p = {
        .s = (const unsigned char *)text, .len = text ? len : 0, .zone = zone,
        .err = err, .errlen = errlen,
    };
    msgpack_object v;

    if (err && errlen) {
        err[0] = '\0';
    }
    if (parse_value(&p, &v) < 0) {
        return -1;
    }
    skip_ws(&p);
    if (p.pos < p.len) {
        return fail_expected(&p, "the end of input after the JSON value");
    }
    *out = v;
    return 0;
}

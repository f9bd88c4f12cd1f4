/* JSON parser: one strict RFC 8259 text into a msgpack object tree held in
 * a zone (vigil-pub). Hand-written rather than libyaml: libyaml's flow
 * syntax disagrees with JSON on "a":1 without a space, tabs, \/ , yes/no and
 * duplicate keys, and undoing that costs more code than parsing JSON.
 * Duplicate keys are kept, in order (msgpack allows them). "-0" becomes
 * FLOAT64 -0.0, so NEGATIVE_INTEGER is always < 0. Invalid UTF-8 in the input
 * is an error; a lone surrogate escape becomes U+FFFD. Numbers beyond the
 * double range are errors. Columns in messages count bytes from 1. strtod is
 * used, so LC_NUMERIC must stay "C".
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

#include "utf8.h"

#define PARSE_MAX_DEPTH 64

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
            size_t k = vigil_utf8_seq_len(s + i, end - i);
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
        .s = (const unsigned char *)text,
        .len = text ? len : 0,
        .zone = zone,
        .err = err,
        .errlen = errlen,
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

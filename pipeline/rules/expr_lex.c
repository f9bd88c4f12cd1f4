/* The rule expression language's tokens (see expr.h): string and number
 * literals decoded as they are read, and the compiler's error, growth and
 * token-naming helpers that the parser (expr_parse.c) and the interface
 * (expr.c) both use. It calls neither of them.
 */
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr_internal.h"

/* ---- Errors and tokens -------------------------------------------------- */

bool vigil__expr_fail(struct vx_cc *c, size_t off, const char *fmt, ...)
{
    if (!c->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, sizeof c->err, fmt, ap);
        va_end(ap);
        c->failed = true;
        c->err_off = off;
    }
    return false;
}

/* Room for `need` items in *p (capacity *cap); the new array, or NULL after
 * reporting that memory ran out (*p is then still valid). */
void *vigil__expr_grow(struct vx_cc *c, void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) {
        return p;
    }
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        ncap *= 2;
    }
    void *q = realloc(p, ncap * size);
    if (!q) {
        vigil__expr_fail(c, 0, "out of memory compiling the expression");
        return NULL;
    }
    *cap = ncap;
    return q;
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static bool is_word(char ch)
{
    return is_alpha(ch) || is_digit(ch);
}

/* Length of the token at `off`, for messages only (no checks, no side
 * effects): a whole string literal, number, path or operator. */
static size_t span(const char *t, size_t len, size_t off)
{
    const char *s = t + off, *e = t + len, *p = s + 1;
    if (s >= e) {
        return 0;
    }
    if (*s == '"' || *s == '\'') {
        while (p < e && *p != *s) {
            p += (*p == '\\' && p + 1 < e) ? 2 : 1;
        }
        return (size_t)((p < e ? p + 1 : e) - s);
    }
    if (is_digit(*s) || (*s == '.' && p < e && is_digit(*p))) {
        while (p < e && (is_word(*p) || *p == '.' ||
                         ((*p == '+' || *p == '-') && (p[-1] == 'e' || p[-1] == 'E')))) {
            p++;
        }
        return (size_t)(p - s);
    }
    if (is_alpha(*s)) {
        while (p < e && (is_word(*p) || *p == '.')) {
            p++;
        }
        return (size_t)(p - s);
    }
    if (p < e) {
        static const char *const two[] = {"||", "&&", "==", "!=", "<=", ">="};
        for (size_t i = 0; i < sizeof two / sizeof two[0]; i++) {
            if (s[0] == two[i][0] && s[1] == two[i][1]) {
                return 2;
            }
        }
    }
    if ((unsigned char)*s >= 0x80) { /* a whole UTF-8 sequence */
        while (p < e && p - s < 4 && ((unsigned char)*p & 0xc0) == 0x80) {
            p++;
        }
    }
    return (size_t)(p - s);
}

/* The token at `off` as messages show it: 'x', "a string" as written, or
 * "the end of the expression". Long tokens are cut; control bytes escaped. */
const char *vigil__expr_show(const struct vx_cc *c, size_t off, char *buf, size_t cap)
{
    if (off >= c->len) {
        return "the end of the expression";
    }
    size_t n = span(c->text, c->len, off), o = 0;
    const char *s = c->text + off;
    bool quote = *s != '"' && *s != '\'';
    bool cut = n > 40;
    if (cut) {
        n = 40;
    }
    if (quote) {
        buf[o++] = '\'';
    }
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        } else {
            buf[o++] = (char)ch;
        }
    }
    if (cut) {
        buf[o++] = '.';
        buf[o++] = '.';
        buf[o++] = '.';
    }
    if (quote) {
        buf[o++] = '\'';
    }
    buf[o] = '\0';
    return buf;
}

static bool lex_number(struct vx_cc *c, struct vx_tok *t)
{
    const char *s = c->text;
    size_t p = c->pos;
    while (p < c->len && is_digit(s[p])) {
        p++;
    }
    if (p < c->len && s[p] == '.') {
        p++;
        while (p < c->len && is_digit(s[p])) {
            p++;
        }
    }
    if (p < c->len && (s[p] == 'e' || s[p] == 'E')) {
        size_t e = p++;
        if (p < c->len && (s[p] == '+' || s[p] == '-')) {
            p++;
        }
        if (p >= c->len || !is_digit(s[p])) {
            return vigil__expr_fail(c, e,
                                    "the exponent of a number needs digits, as in 1e9 or 2.5e-3");
        }
        while (p < c->len && is_digit(s[p])) {
            p++;
        }
    }
    char buf[72];
    size_t n = p - c->pos;
    if (n >= sizeof buf) {
        return vigil__expr_fail(c, c->pos, "a number longer than %zu characters", sizeof buf - 1);
    }
    memcpy(buf, s + c->pos, n);
    buf[n] = '\0';
    /* strtod reads the locale's decimal point; the language's is '.'. */
    const char *dp = localeconv()->decimal_point;
    if (dp && dp[0] != '\0' && dp[0] != '.' && dp[1] == '\0') {
        char *dot = strchr(buf, '.');
        if (dot) {
            *dot = dp[0];
        }
    }
    char *end;
    t->num = strtod(buf, &end);
    if (*end != '\0') {
        return vigil__expr_fail(c, c->pos, "cannot read the number '%s'", buf);
    }
    if (isinf(t->num)) {
        return vigil__expr_fail(c, c->pos, "the number %s is too large", buf);
    }
    t->kind = K_NUM;
    c->pos = p;
    return true;
}

static int hex(char ch)
{
    if (is_digit(ch)) {
        return ch - '0';
    }
    if ((ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')) {
        return (ch | 0x20) - 'a' + 10;
    }
    return -1;
}

/* A string literal in ' or ", decoded into the pool. Escapes: \\ \" \'
 * \n \t \r \xHH (not \x00). */
static bool lex_string(struct vx_cc *c, struct vx_tok *t)
{
    const char *s = c->text;
    char quote = s[c->pos];
    size_t start = c->pos, p = c->pos + 1;
    /* Decoding never lengthens the text: reserve the rest of it once. */
    char *pool = vigil__expr_grow(c, c->pool, &c->cappool, c->npool + (c->len - p) + 1, 1);
    if (!pool) {
        return false;
    }
    c->pool = pool;
    size_t o = c->npool;
    for (;;) {
        if (p >= c->len) {
            return vigil__expr_fail(c, start, "this string is never closed: add %c at its end",
                                    quote);
        }
        char ch = s[p];
        if (ch == quote) {
            p++;
            break;
        }
        if ((unsigned char)ch < 0x20 && ch != '\t') {
            return vigil__expr_fail(c, p,
                                    "a string cannot hold a line break or control character: "
                                    "write \\n, \\r or \\t, or close it with %c",
                                    quote);
        }
        if (ch != '\\') {
            pool[o++] = ch;
            p++;
            continue;
        }
        size_t esc = p++;
        char e = p < c->len ? s[p] : '\0';
        int hi, lo;
        switch (e) {
        case '\\':
        case '"':
        case '\'':
            pool[o++] = e;
            break;
        case 'n':
            pool[o++] = '\n';
            break;
        case 't':
            pool[o++] = '\t';
            break;
        case 'r':
            pool[o++] = '\r';
            break;
        case 'x':
            hi = p + 1 < c->len ? hex(s[p + 1]) : -1;
            lo = p + 2 < c->len ? hex(s[p + 2]) : -1;
            if (hi < 0 || lo < 0) {
                return vigil__expr_fail(c, esc, "\\x needs two hex digits, as in \\x41");
            }
            if (hi == 0 && lo == 0) {
                return vigil__expr_fail(c, esc, "a string cannot hold a NUL byte (\\x00)");
            }
            pool[o++] = (char)(hi * 16 + lo);
            p += 2;
            break;
        default:
            return vigil__expr_fail(
                c, esc,
                "unknown escape '\\%c' in a string: the escapes are \\\\ \\\" \\' \\n "
                "\\t \\r \\xHH (a glob's \\* is written \\\\*)",
                e >= 0x20 && e < 0x7f ? e : '?');
        }
        p++;
    }
    pool[o] = '\0';
    t->kind = K_STR;
    t->soff = c->npool;
    t->slen = (uint32_t)(o - c->npool);
    c->npool = o + 1;
    c->pos = p;
    return true;
}

/* A path: a word, then .word segments (a segment may start with a digit).
 * true, false and in are keywords. */
static bool lex_path(struct vx_cc *c, struct vx_tok *t)
{
    const char *s = c->text;
    size_t p = c->pos;
    while (p < c->len && is_word(s[p])) {
        p++;
    }
    while (p < c->len && s[p] == '.') {
        p++;
        if (p >= c->len || !is_word(s[p])) {
            return vigil__expr_fail(
                c, p - 1,
                "a field name must follow '.' in a path (names are letters, digits "
                "and _)");
        }
        while (p < c->len && is_word(s[p])) {
            p++;
        }
    }
    size_t n = p - c->pos;
    const char *w = s + c->pos;
    if (n == 4 && memcmp(w, "true", 4) == 0) {
        t->kind = K_TRUE;
    } else if (n == 5 && memcmp(w, "false", 5) == 0) {
        t->kind = K_FALSE;
    } else if (n == 2 && memcmp(w, "in", 2) == 0) {
        t->kind = K_IN;
    } else {
        t->kind = K_PATH;
    }
    c->pos = p;
    return true;
}

/* Reads the next token into c->tok. */
bool vigil__expr_next(struct vx_cc *c)
{
    const char *s = c->text;
    struct vx_tok *t = &c->tok;
    if (c->started) {
        c->prev_off = c->tok.off;
        c->have_prev = true;
    }
    c->started = true;
    while (c->pos < c->len &&
           (s[c->pos] == ' ' || s[c->pos] == '\t' || s[c->pos] == '\n' || s[c->pos] == '\r')) {
        c->pos++;
    }
    t->off = c->pos;
    if (c->pos >= c->len) {
        t->kind = K_END;
        t->len = 0;
        return true;
    }
    char ch = s[c->pos];
    char ch2 = c->pos + 1 < c->len ? s[c->pos + 1] : '\0';
    size_t n = 1;
    bool ok = true;
    char b[64];
    switch (ch) {
    case '(':
        t->kind = K_LP;
        break;
    case ')':
        t->kind = K_RP;
        break;
    case '[':
        t->kind = K_LB;
        break;
    case ']':
        t->kind = K_RB;
        break;
    case ',':
        t->kind = K_COMMA;
        break;
    case '~':
        t->kind = K_MATCH;
        break;
    case '+':
        t->kind = K_PLUS;
        break;
    case '-':
        t->kind = K_MINUS;
        break;
    case '*':
        t->kind = K_STAR;
        break;
    case '/':
        t->kind = K_SLASH;
        break;
    case '%':
        t->kind = K_PCT;
        break;
    case '|':
        t->kind = K_OR;
        n = 2;
        if (ch2 != '|') {
            return vigil__expr_fail(c, c->pos, "'|' is not an operator: write '||' for or");
        }
        break;
    case '&':
        t->kind = K_AND;
        n = 2;
        if (ch2 != '&') {
            return vigil__expr_fail(c, c->pos, "'&' is not an operator: write '&&' for and");
        }
        break;
    case '=':
        t->kind = K_EQ;
        n = 2;
        if (ch2 != '=') {
            return vigil__expr_fail(c, c->pos, "'=' is not an operator: write '==' to compare");
        }
        break;
    case '!':
        t->kind = ch2 == '=' ? K_NE : K_NOT;
        n = ch2 == '=' ? 2 : 1;
        break;
    case '<':
        t->kind = ch2 == '=' ? K_LE : K_LT;
        n = ch2 == '=' ? 2 : 1;
        break;
    case '>':
        t->kind = ch2 == '=' ? K_GE : K_GT;
        n = ch2 == '=' ? 2 : 1;
        break;
    case '"':
    case '\'':
        ok = lex_string(c, t);
        n = 0;
        break;
    default:
        if (is_digit(ch) || (ch == '.' && is_digit(ch2))) {
            ok = lex_number(c, t);
        } else if (is_alpha(ch)) {
            ok = lex_path(c, t);
        } else {
            return vigil__expr_fail(c, c->pos, "unexpected character %s", VX_SHOW(c, c->pos, b));
        }
        n = 0;
        break;
    }
    c->pos += n;
    t->len = c->pos - t->off;
    return ok;
}

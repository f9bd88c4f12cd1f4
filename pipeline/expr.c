/* The rule expression compiler (language in expr.h): a recursive-descent
 * parser that checks types as it goes and emits the postfix ops of
 * expr_internal.h directly, folding constants and pre-splitting paths, then
 * packs the result into one allocation. Errors name the offending token and
 * point at it in the config file. Evaluation lives in expr_eval.c.
 */
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr_internal.h"
#include "glob.h"

/* ---- Tokens ------------------------------------------------------------- */

enum tok_kind {
    K_END,
    K_NUM,
    K_STR,
    K_PATH,
    K_TRUE,
    K_FALSE,
    K_LP,
    K_RP,
    K_LB,
    K_RB,
    K_COMMA,
    K_OR,
    K_AND,
    K_NOT,
    K_PLUS,
    K_MINUS,
    K_STAR,
    K_SLASH,
    K_PCT,
    /* The comparisons, K_EQ..K_IN, share one precedence level. */
    K_EQ,
    K_NE,
    K_LT,
    K_LE,
    K_GT,
    K_GE,
    K_MATCH,
    K_IN,
};

struct tok {
    enum tok_kind kind;
    size_t off, len; /* where it is in the text */
    double num;      /* K_NUM */
    size_t soff;     /* K_STR: the decoded, NUL-terminated string in the pool */
    uint32_t slen;
};

/* What the compiler knows of a sub-expression's type. Paths are TY_ANY:
 * their type is only known per event. */
enum ty { TY_NUM, TY_STR, TY_BOOL, TY_ANY };

struct val {
    enum ty ty;
    size_t at;    /* offset of its principal token, for messages */
    size_t first; /* index of its first op */
    bool lit;     /* a literal (possibly negated or folded): "is" rather than "gives" */
};

struct sref {
    size_t off; /* into the pool */
    uint32_t len;
};

/* The compiler's state: the text, the current token, and growable copies of
 * what pack() will lay out in the expression's allocation. */
struct cc {
    const char *text;
    size_t len, pos;
    struct tok tok;
    size_t prev_off; /* the token before tok, for "after 'x'" */
    bool have_prev, started;

    struct vx_op *ops;
    size_t nops, capops;
    double *nums;
    size_t nnums, capnums;
    struct sref *strs; /* list strings and path segments */
    size_t nstrs, capstrs;
    struct sref *paths;
    size_t npaths, cappaths;
    char *pool;
    size_t npool, cappool;

    size_t sp;      /* value slots in use after the ops so far */
    size_t barrier; /* a jump lands on this op: ops before it may not be folded */

    bool failed;
    size_t err_off;
    char err[320];
};

static bool fail(struct cc *c, size_t off, const char *fmt, ...) VIGIL_PRINTF(3, 4);

static bool fail(struct cc *c, size_t off, const char *fmt, ...)
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
static void *grow(struct cc *c, void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) {
        return p;
    }
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        ncap *= 2;
    }
    void *q = realloc(p, ncap * size);
    if (q == NULL) {
        fail(c, 0, "out of memory compiling the expression");
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
static const char *show(const struct cc *c, size_t off, char *buf, size_t cap)
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

#define SHOW(c, off, b) show((c), (off), (b), sizeof(b))

static bool lex_number(struct cc *c, struct tok *t)
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
            return fail(c, e, "the exponent of a number needs digits, as in 1e9 or 2.5e-3");
        }
        while (p < c->len && is_digit(s[p])) {
            p++;
        }
    }
    char buf[72];
    size_t n = p - c->pos;
    if (n >= sizeof buf) {
        return fail(c, c->pos, "a number longer than %zu characters", sizeof buf - 1);
    }
    memcpy(buf, s + c->pos, n);
    buf[n] = '\0';
    /* strtod reads the locale's decimal point; the language's is '.'. */
    const char *dp = localeconv()->decimal_point;
    if (dp != NULL && dp[0] != '\0' && dp[0] != '.' && dp[1] == '\0') {
        char *dot = strchr(buf, '.');
        if (dot != NULL) {
            *dot = dp[0];
        }
    }
    char *end;
    t->num = strtod(buf, &end);
    if (*end != '\0') {
        return fail(c, c->pos, "cannot read the number '%s'", buf);
    }
    if (isinf(t->num)) {
        return fail(c, c->pos, "the number %s is too large", buf);
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
static bool lex_string(struct cc *c, struct tok *t)
{
    const char *s = c->text;
    char quote = s[c->pos];
    size_t start = c->pos, p = c->pos + 1;
    /* Decoding never lengthens the text: reserve the rest of it once. */
    char *pool = grow(c, c->pool, &c->cappool, c->npool + (c->len - p) + 1, 1);
    if (pool == NULL) {
        return false;
    }
    c->pool = pool;
    size_t o = c->npool;
    for (;;) {
        if (p >= c->len) {
            return fail(c, start, "this string is never closed: add %c at its end", quote);
        }
        char ch = s[p];
        if (ch == quote) {
            p++;
            break;
        }
        if ((unsigned char)ch < 0x20 && ch != '\t') {
            return fail(c, p,
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
                return fail(c, esc, "\\x needs two hex digits, as in \\x41");
            }
            if (hi == 0 && lo == 0) {
                return fail(c, esc, "a string cannot hold a NUL byte (\\x00)");
            }
            pool[o++] = (char)(hi * 16 + lo);
            p += 2;
            break;
        default:
            return fail(c, esc,
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
static bool lex_path(struct cc *c, struct tok *t)
{
    const char *s = c->text;
    size_t p = c->pos;
    while (p < c->len && is_word(s[p])) {
        p++;
    }
    while (p < c->len && s[p] == '.') {
        p++;
        if (p >= c->len || !is_word(s[p])) {
            return fail(c, p - 1,
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
static bool next(struct cc *c)
{
    const char *s = c->text;
    struct tok *t = &c->tok;
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
            return fail(c, c->pos, "'|' is not an operator: write '||' for or");
        }
        break;
    case '&':
        t->kind = K_AND;
        n = 2;
        if (ch2 != '&') {
            return fail(c, c->pos, "'&' is not an operator: write '&&' for and");
        }
        break;
    case '=':
        t->kind = K_EQ;
        n = 2;
        if (ch2 != '=') {
            return fail(c, c->pos, "'=' is not an operator: write '==' to compare");
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
            return fail(c, c->pos, "unexpected character %s", SHOW(c, c->pos, b));
        }
        n = 0;
        break;
    }
    c->pos += n;
    t->len = c->pos - t->off;
    return ok;
}

/* ---- Emitting ops ------------------------------------------------------- */

/* Appends an op that changes the stack depth by `push`; NULL on error
 * (including needing more than VX_STACK_MAX slots, reported at `at`). The
 * pointer is valid until the next emit. */
static struct vx_op *emit(struct cc *c, enum vx_code code, int push, size_t at)
{
    struct vx_op *ops = grow(c, c->ops, &c->capops, c->nops + 1, sizeof *ops);
    if (ops == NULL) {
        return NULL;
    }
    c->ops = ops;
    if (push > 0 && c->sp + (size_t)push > VX_STACK_MAX) {
        char b[64];
        fail(c, at,
             "the expression needs more than %d values at once at %s: use fewer "
             "arguments or split it",
             VX_STACK_MAX, SHOW(c, at, b));
        return NULL;
    }
    c->sp = (size_t)((long)c->sp + push);
    struct vx_op *op = &ops[c->nops++];
    memset(op, 0, sizeof *op);
    op->code = (uint8_t)code;
    return op;
}

/* The op just emitted, when `v` compiled to exactly that one op and no
 * jump lands on it, so that it may be rewritten. */
static struct vx_op *only_op(struct cc *c, const struct val *v, enum vx_code code)
{
    if (c->nops == 0 || v->first != c->nops - 1 || v->first < c->barrier) {
        return NULL;
    }
    struct vx_op *op = &c->ops[c->nops - 1];
    return op->code == code ? op : NULL;
}

static const char *ty_name(enum ty t, bool lit)
{
    switch (t) {
    case TY_NUM:
        return "a number";
    case TY_STR:
        return "a string";
    case TY_BOOL:
        return lit ? "a boolean" : "true or false";
    default:
        return "a field";
    }
}

/* "'5' is a number", "'>' gives true or false": what v is, for messages. */
static const char *what(const struct cc *c, const struct val *v, char *buf, size_t cap)
{
    char b[64];
    snprintf(buf, cap, "%s %s %s", show(c, v->at, b, sizeof b), v->lit ? "is" : "gives",
             ty_name(v->ty, v->lit));
    return buf;
}

#define WHAT(c, v, b) what((c), (v), (b), sizeof(b))

static bool need_num(struct cc *c, const struct val *v, const char *op)
{
    char b[128];
    if (v->ty == TY_NUM || v->ty == TY_ANY) {
        return true;
    }
    return fail(c, v->at, "%s needs numbers, but %s", op, WHAT(c, v, b));
}

static bool need_cond(struct cc *c, const struct val *v, const char *op)
{
    char b[128];
    if (v->ty == TY_BOOL || v->ty == TY_ANY) {
        return true;
    }
    return fail(c, v->at, "%s needs conditions (comparisons, true/false or fields), but %s", op,
                WHAT(c, v, b));
}

/* ---- Parsing ------------------------------------------------------------
 * Lowest precedence first: || && (comparisons) (+ -) (* / %) (unary ! -).
 * Each function leaves the current token after what it parsed. */

static bool parse_or(struct cc *c, int depth, struct val *out);

static bool parse_primary(struct cc *c, int depth, struct val *out);

/* Opening one more level of ( ), call or unary operator at `at`. */
static bool deeper(struct cc *c, int depth, size_t at)
{
    if (depth >= VX_DEPTH_MAX) {
        return fail(c, at, "the expression nests deeper than %d levels here", VX_DEPTH_MAX);
    }
    return true;
}

static bool parse_unary(struct cc *c, int depth, struct val *out)
{
    enum tok_kind k = c->tok.kind;
    if (k != K_NOT && k != K_MINUS) {
        return parse_primary(c, depth, out);
    }
    size_t at = c->tok.off;
    struct val o;
    if (!deeper(c, depth, at) || !next(c) || !parse_unary(c, depth + 1, &o)) {
        return false;
    }
    if (k == K_NOT) {
        if (!need_cond(c, &o, "'!'") || emit(c, OP_NOT, 0, at) == NULL) {
            return false;
        }
        *out = (struct val){TY_BOOL, at, o.first, false};
        return true;
    }
    if (!need_num(c, &o, "'-'")) {
        return false;
    }
    struct vx_op *op = only_op(c, &o, OP_NUM);
    if (op != NULL) { /* fold: -5 is a literal */
        op->u.num = -op->u.num;
        *out = (struct val){TY_NUM, at, o.first, o.lit};
        return true;
    }
    if (emit(c, OP_NEG, 0, at) == NULL) {
        return false;
    }
    *out = (struct val){TY_NUM, at, o.first, false};
    return true;
}

static double fold(enum tok_kind k, double a, double b)
{
    switch (k) {
    case K_PLUS:
        return a + b;
    case K_MINUS:
        return a - b;
    case K_STAR:
        return a * b;
    case K_SLASH:
        return a / b;
    default:
        return fmod(a, b);
    }
}

/* l op r for + - * / %, with l's and r's ops already emitted. */
static bool arith(struct cc *c, struct val *l, const struct val *r, enum tok_kind k, size_t at)
{
    static const char *const names[] = {"'+'", "'-'", "'*'", "'/'", "'%'"};
    static const enum vx_code codes[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD};
    size_t i = (size_t)(k - K_PLUS);
    if (!need_num(c, l, names[i]) || !need_num(c, r, names[i])) {
        return false;
    }
    struct vx_op *b = only_op(c, r, OP_NUM);
    if (b != NULL && l->first == r->first - 1 && l->first >= c->barrier &&
        c->ops[l->first].code == OP_NUM) {
        if ((k == K_SLASH || k == K_PCT) && b->u.num == 0) {
            return fail(c, at, "division by zero");
        }
        c->ops[l->first].u.num = fold(k, c->ops[l->first].u.num, b->u.num);
        c->nops--;
        c->sp--;
        *l = (struct val){TY_NUM, at, l->first, true};
        return true;
    }
    if (emit(c, codes[i], -1, at) == NULL) {
        return false;
    }
    *l = (struct val){TY_NUM, at, l->first, false};
    return true;
}

static bool parse_mul(struct cc *c, int depth, struct val *out)
{
    if (!parse_unary(c, depth, out)) {
        return false;
    }
    while (c->tok.kind == K_STAR || c->tok.kind == K_SLASH || c->tok.kind == K_PCT) {
        enum tok_kind k = c->tok.kind;
        size_t at = c->tok.off;
        struct val r;
        if (!next(c) || !parse_unary(c, depth, &r) || !arith(c, out, &r, k, at)) {
            return false;
        }
    }
    return true;
}

static bool parse_add(struct cc *c, int depth, struct val *out)
{
    if (!parse_mul(c, depth, out)) {
        return false;
    }
    while (c->tok.kind == K_PLUS || c->tok.kind == K_MINUS) {
        enum tok_kind k = c->tok.kind;
        size_t at = c->tok.off;
        struct val r;
        if (!next(c) || !parse_mul(c, depth, &r) || !arith(c, out, &r, k, at)) {
            return false;
        }
    }
    return true;
}

static const char *const cmp_names[] = {"'=='", "'!='", "'<'", "'<='", "'>'", "'>='"};

/* l == r and the other comparisons; the operator is read, r is next. */
static bool finish_cmp(struct cc *c, int depth, const struct val *l, enum tok_kind k, size_t at)
{
    uint8_t cmp = (uint8_t)(k - K_EQ); /* K_EQ..K_GE are in CMP_EQ..CMP_GE order */
    struct val r;
    char b1[128], b2[128];
    if (!parse_add(c, depth, &r)) {
        return false;
    }
    if (cmp >= CMP_LT) {
        if (l->ty == TY_BOOL) {
            return fail(c, l->at, "%s orders numbers or strings, but %s", cmp_names[cmp],
                        WHAT(c, l, b1));
        }
        if (r.ty == TY_BOOL) {
            return fail(c, r.at, "%s orders numbers or strings, but %s", cmp_names[cmp],
                        WHAT(c, &r, b1));
        }
    }
    if (l->ty != TY_ANY && r.ty != TY_ANY && l->ty != r.ty) {
        return fail(c, at, "%s cannot compare these: %s, and %s", cmp_names[cmp], WHAT(c, l, b1),
                    WHAT(c, &r, b2));
    }
    /* A constant on the right is folded into the comparison. */
    struct vx_op *op = only_op(c, &r, OP_NUM);
    if (op == NULL) {
        op = only_op(c, &r, OP_STR);
    }
    if (op != NULL) {
        op->code = op->code == OP_NUM ? OP_CMPK_NUM : OP_CMPK_STR;
        c->sp--;
    } else if ((op = emit(c, OP_CMP, -1, at)) == NULL) {
        return false;
    }
    op->sub = cmp;
    return true;
}

/* l ~ "glob"; the operator is read. */
static bool finish_glob(struct cc *c, int depth, const struct val *l, size_t at)
{
    struct val r;
    char b[128];
    const char *why;
    (void)at;
    if (l->ty == TY_NUM || l->ty == TY_BOOL) {
        return fail(c, l->at, "'~' matches strings, but %s", WHAT(c, l, b));
    }
    if (!parse_add(c, depth, &r)) {
        return false;
    }
    struct vx_op *op = only_op(c, &r, OP_STR);
    if (op == NULL) {
        return fail(c, r.at,
                    "'~' needs a quoted glob pattern on its right, as in ~ \"web-*\", but %s",
                    WHAT(c, &r, b));
    }
    if (!vigil_glob_valid(c->pool + op->u.off, &why)) {
        return fail(c, r.at, "bad glob pattern %s: %s", SHOW(c, r.at, b), why);
    }
    /* The literal prefix and the shape of the rest, for expr_eval.c. */
    const char *pat = c->pool + op->u.off;
    size_t lit = strcspn(pat, "*?\\"), stars = strspn(pat + lit, "*");
    op->code = OP_GLOB;
    op->n = (uint32_t)lit;
    op->sub = pat[lit] == '\0'                                ? GLOB_END
              : stars == 1 && pat[lit + 1] == '\0'             ? GLOB_STAR
              : stars >= 2 && pat[lit + stars] == '\0'         ? GLOB_ANY
                                                               : GLOB_OTHER;
    c->sp--;
    return true;
}

/* l in [literal, ...]; the operator is read. */
static bool finish_in(struct cc *c, const struct val *l, size_t at)
{
    char b[128], b2[64];
    if (l->ty == TY_BOOL) {
        return fail(c, l->at, "'in' looks for a number or a string, but %s", WHAT(c, l, b));
    }
    if (c->tok.kind != K_LB) {
        return fail(c, c->tok.off,
                    "'in' needs a list of literals, as in [1, 2] or [\"a\", \"b\"], but found %s",
                    SHOW(c, c->tok.off, b));
    }
    size_t lb = c->tok.off;
    if (!next(c)) {
        return false;
    }
    if (c->tok.kind == K_RB) {
        return fail(c, lb, "the list after 'in' is empty");
    }
    enum ty lt = TY_ANY;
    size_t start = 0;
    uint32_t n = 0;
    for (;;) {
        size_t eoff = c->tok.off;
        bool neg = c->tok.kind == K_MINUS;
        if (neg && !next(c)) {
            return false;
        }
        enum ty et;
        if (c->tok.kind == K_NUM) {
            et = TY_NUM;
        } else if (c->tok.kind == K_STR && !neg) {
            et = TY_STR;
        } else if (c->tok.kind == K_END) {
            return fail(c, lb, "this '[' is never closed: add ']'");
        } else {
            return fail(c, c->tok.off,
                        "a list after 'in' holds only literal numbers or strings, but found %s",
                        SHOW(c, c->tok.off, b));
        }
        if (n == 0) {
            lt = et;
            start = et == TY_NUM ? c->nnums : c->nstrs;
        } else if (et != lt) {
            return fail(c, eoff, "the list mixes numbers and strings at %s",
                        SHOW(c, eoff, b));
        }
        if (et == TY_NUM) {
            double *nums = grow(c, c->nums, &c->capnums, c->nnums + 1, sizeof *nums);
            if (nums == NULL) {
                return false;
            }
            c->nums = nums;
            nums[c->nnums++] = neg ? -c->tok.num : c->tok.num;
        } else {
            struct sref *strs = grow(c, c->strs, &c->capstrs, c->nstrs + 1, sizeof *strs);
            if (strs == NULL) {
                return false;
            }
            c->strs = strs;
            strs[c->nstrs++] = (struct sref){c->tok.soff, c->tok.slen};
        }
        n++;
        if (!next(c)) {
            return false;
        }
        if (c->tok.kind == K_COMMA) {
            if (!next(c)) {
                return false;
            }
            continue;
        }
        if (c->tok.kind == K_RB) {
            break;
        }
        if (c->tok.kind == K_END) {
            return fail(c, lb, "this '[' is never closed: add ']'");
        }
        return fail(c, c->tok.off, "expected ',' or ']' in the list after 'in', found %s",
                    SHOW(c, c->tok.off, b));
    }
    if (!next(c)) {
        return false;
    }
    if (l->ty != TY_ANY && l->ty != lt) {
        return fail(c, at, "%s, so 'in' can never find it in a list of %s", WHAT(c, l, b2),
                    lt == TY_NUM ? "numbers" : "strings");
    }
    struct vx_op *op = emit(c, lt == TY_NUM ? OP_IN_NUM : OP_IN_STR, 0, at);
    if (op == NULL) {
        return false;
    }
    op->n = n;
    op->u.off = start;
    return true;
}

static bool is_cmp(enum tok_kind k)
{
    return k >= K_EQ && k <= K_IN;
}

/* Comparisons do not chain: `a < b < c` is an error, not (a < b) < c. */
static bool parse_cmp(struct cc *c, int depth, struct val *out)
{
    if (!parse_add(c, depth, out)) {
        return false;
    }
    enum tok_kind k = c->tok.kind;
    if (!is_cmp(k)) {
        return true;
    }
    size_t at = c->tok.off;
    bool ok;
    if (!next(c)) {
        return false;
    }
    if (k == K_MATCH) {
        ok = finish_glob(c, depth, out, at);
    } else if (k == K_IN) {
        ok = finish_in(c, out, at);
    } else {
        ok = finish_cmp(c, depth, out, k, at);
    }
    if (!ok) {
        return false;
    }
    *out = (struct val){TY_BOOL, at, out->first, false};
    if (is_cmp(c->tok.kind)) {
        char b[64];
        return fail(c, c->tok.off,
                    "comparisons do not chain: %s cannot follow a comparison; write "
                    "'a < b && b < c', or use ( ) around one",
                    SHOW(c, c->tok.off, b));
    }
    return true;
}

/* && and ||: the left side decides when it can (OP_AND/OP_OR jump over the
 * right side), so a cheap test first spares an expensive one. */
static bool parse_logic(struct cc *c, int depth, struct val *out, enum tok_kind k)
{
    const char *name = k == K_OR ? "'||'" : "'&&'";
    bool ok = k == K_OR ? parse_logic(c, depth, out, K_AND) : parse_cmp(c, depth, out);
    if (!ok) {
        return false;
    }
    while (c->tok.kind == k) {
        size_t at = c->tok.off;
        struct val r;
        if (!need_cond(c, out, name)) {
            return false;
        }
        if (out->ty == TY_ANY && emit(c, OP_TRUTHY, 0, out->at) == NULL) {
            return false;
        }
        size_t jump = c->nops;
        if (emit(c, k == K_OR ? OP_OR : OP_AND, -1, at) == NULL || !next(c)) {
            return false;
        }
        ok = k == K_OR ? parse_logic(c, depth, &r, K_AND) : parse_cmp(c, depth, &r);
        if (!ok || !need_cond(c, &r, name)) {
            return false;
        }
        if (r.ty == TY_ANY && emit(c, OP_TRUTHY, 0, r.at) == NULL) {
            return false;
        }
        c->ops[jump].n = (uint32_t)c->nops;
        c->barrier = c->nops;
        *out = (struct val){TY_BOOL, at, out->first, false};
    }
    return true;
}

static bool parse_or(struct cc *c, int depth, struct val *out)
{
    return parse_logic(c, depth, out, K_OR);
}

/* abs(x), min(x, y, ...), max(x, y, ...); `name` is read and the current
 * token is the '('. */
static bool parse_call(struct cc *c, int depth, const struct tok *name, struct val *out)
{
    static const char *const fns[] = {"abs", "min", "max"};
    static const enum vx_code codes[] = {OP_ABS, OP_MIN, OP_MAX};
    char b[128];
    size_t f = 0;
    while (f < 3 && !(name->len == 3 && memcmp(c->text + name->off, fns[f], 3) == 0)) {
        f++;
    }
    if (f == 3) {
        return fail(c, name->off, "unknown function %s: the functions are abs, min and max",
                    SHOW(c, name->off, b));
    }
    size_t lp = c->tok.off, first = c->nops;
    uint32_t n = 0;
    if (!deeper(c, depth, name->off) || !next(c)) {
        return false;
    }
    while (c->tok.kind != K_RP) {
        struct val a;
        char what_fn[8];
        snprintf(what_fn, sizeof what_fn, "'%s'", fns[f]);
        if (!parse_or(c, depth + 1, &a) || !need_num(c, &a, what_fn)) {
            return false;
        }
        n++;
        if (c->tok.kind == K_COMMA) {
            if (!next(c)) {
                return false;
            }
        } else if (c->tok.kind == K_END) {
            return fail(c, lp, "this '(' is never closed: add ')'");
        } else if (c->tok.kind != K_RP) {
            return fail(c, c->tok.off, "expected ',' or ')' in the call of %s, found %s",
                        fns[f], SHOW(c, c->tok.off, b));
        }
    }
    if (!next(c)) {
        return false;
    }
    if (f == 0 && n != 1) {
        return fail(c, name->off, "abs takes one argument, not %u", n);
    }
    if (f > 0 && n < 2) {
        return fail(c, name->off, "%s takes two or more arguments, not %u", fns[f], n);
    }
    /* Constant arguments are folded. */
    bool konst = first >= c->barrier && c->nops - first == n;
    for (size_t i = first; konst && i < c->nops; i++) {
        konst = c->ops[i].code == OP_NUM;
    }
    if (konst) {
        double r = c->ops[first].u.num;
        for (size_t i = first; i < c->nops; i++) {
            double x = c->ops[i].u.num;
            r = f == 0 ? fabs(x) : f == 1 ? fmin(r, x) : fmax(r, x);
        }
        c->ops[first].u.num = r;
        c->nops = first + 1;
        c->sp -= n - 1;
        *out = (struct val){TY_NUM, name->off, first, true};
        return true;
    }
    struct vx_op *op = emit(c, codes[f], 1 - (int)n, name->off);
    if (op == NULL) {
        return false;
    }
    op->n = n;
    *out = (struct val){TY_NUM, name->off, first, false};
    return true;
}

static bool word_is(const char *s, size_t n, const char *w)
{
    return n == strlen(w) && memcmp(s, w, n) == 0;
}

/* A field path: interned (for vigil_expr_path), split into segments once,
 * and compiled to the most direct read. */
static bool parse_path(struct cc *c, const struct tok *t, struct val *out)
{
    const char *s = c->text + t->off;
    uint32_t n = (uint32_t)t->len;
    size_t off = 0, i;
    for (i = 0; i < c->npaths; i++) {
        if (c->paths[i].len == n && memcmp(c->pool + c->paths[i].off, s, n) == 0) {
            off = c->paths[i].off;
            break;
        }
    }
    if (i == c->npaths) {
        struct sref *paths = grow(c, c->paths, &c->cappaths, c->npaths + 1, sizeof *paths);
        if (paths == NULL) {
            return false;
        }
        c->paths = paths;
        char *pool = grow(c, c->pool, &c->cappool, c->npool + n + 1, 1);
        if (pool == NULL) {
            return false;
        }
        c->pool = pool;
        off = c->npool;
        memcpy(pool + off, s, n);
        pool[off + n] = '\0';
        c->npool += n + 1;
        paths[c->npaths++] = (struct sref){off, n};
    }
    *out = (struct val){TY_ANY, t->off, c->nops, false};

    const char *dot = memchr(s, '.', n);
    size_t head = dot ? (size_t)(dot - s) : n;
    static const struct {
        const char *name;
        enum vx_code code;
    } env[] = {{"topic", OP_TOPIC}, {"host", OP_HOST}, {"source", OP_SOURCE},
               {"ts", OP_TS},       {"seq", OP_SEQ}};
    for (size_t k = 0; k < sizeof env / sizeof env[0]; k++) {
        if (word_is(s, head, env[k].name)) {
            /* topic.x and the like: a string or number has no fields. */
            return emit(c, dot ? OP_MISSING : env[k].code, 1, t->off) != NULL;
        }
    }
    uint8_t base = BASE_ROOT;
    size_t from = 0; /* where the segments to walk start */
    if (dot != NULL) {
        if (word_is(s, head, "labels")) {
            base = BASE_LABELS;
        } else if (word_is(s, head, "values")) {
            base = BASE_VALUES;
        } else if (word_is(s, head, "attrs")) {
            base = BASE_ATTRS;
        }
        if (base != BASE_ROOT) {
            from = head + 1;
        }
    }
    size_t nseg = 1;
    for (size_t k = from; k < n; k++) {
        nseg += s[k] == '.';
    }
    if (nseg == 1) {
        struct vx_op *op = emit(c, OP_KEY, 1, t->off);
        if (op == NULL) {
            return false;
        }
        op->sub = base;
        op->u.off = off + from;
        op->n = (uint32_t)(n - from);
        return true;
    }
    struct sref *strs = grow(c, c->strs, &c->capstrs, c->nstrs + nseg, sizeof *strs);
    if (strs == NULL) {
        return false;
    }
    c->strs = strs;
    size_t start = c->nstrs;
    for (size_t k = from; k <= n; k++) {
        if (k == n || s[k] == '.') {
            strs[c->nstrs++] = (struct sref){off + from, (uint32_t)(k - from)};
            from = k + 1;
        }
    }
    struct vx_op *op = emit(c, OP_WALK, 1, t->off);
    if (op == NULL) {
        return false;
    }
    op->sub = base;
    op->n = (uint32_t)nseg;
    op->u.off = start;
    return true;
}

static bool parse_primary(struct cc *c, int depth, struct val *out)
{
    struct tok t = c->tok;
    struct vx_op *op;
    char b[128];
    switch (t.kind) {
    case K_NUM:
    case K_STR:
    case K_TRUE:
    case K_FALSE:
        op = emit(c, t.kind == K_NUM ? OP_NUM : t.kind == K_STR ? OP_STR : OP_BOOL, 1, t.off);
        if (op == NULL) {
            return false;
        }
        if (t.kind == K_NUM) {
            op->u.num = t.num;
        } else if (t.kind == K_STR) {
            op->u.off = t.soff;
            op->n = t.slen;
        } else {
            op->sub = t.kind == K_TRUE;
        }
        *out = (struct val){t.kind == K_NUM   ? TY_NUM
                            : t.kind == K_STR ? TY_STR
                                              : TY_BOOL,
                            t.off, c->nops - 1, true};
        return next(c);
    case K_LP:
        if (!deeper(c, depth, t.off) || !next(c) || !parse_or(c, depth + 1, out)) {
            return false;
        }
        if (c->tok.kind == K_END) {
            return fail(c, t.off, "this '(' is never closed: add ')'");
        }
        if (c->tok.kind != K_RP) {
            return fail(c, c->tok.off, "expected ')' or an operator, found %s",
                        SHOW(c, c->tok.off, b));
        }
        return next(c);
    case K_PATH:
        if (!next(c)) {
            return false;
        }
        if (c->tok.kind == K_LP) {
            return parse_call(c, depth, &t, out);
        }
        return parse_path(c, &t, out);
    case K_END:
        if (c->have_prev) {
            return fail(c, t.off, "expected a value after %s, found the end of the expression",
                        SHOW(c, c->prev_off, b));
        }
        return fail(c, t.off, "the expression is empty");
    default:
        return fail(c, t.off,
                    "expected a value (a number, a string, a field, a function or '('), "
                    "found %s",
                    SHOW(c, t.off, b));
    }
}

/* ---- Packing and reporting ---------------------------------------------- */

/* One allocation: the header, ops, number lists, string entries, path
 * table and characters; the ops' offsets become pointers. */
static struct vigil_expr *pack(struct cc *c)
{
    size_t o_ops = sizeof(struct vigil_expr);
    size_t o_nums = o_ops + c->nops * sizeof(struct vx_op);
    size_t o_strs = o_nums + c->nnums * sizeof(double);
    size_t o_paths = o_strs + c->nstrs * sizeof(struct vx_str);
    size_t o_pool = o_paths + c->npaths * sizeof(char *);
    char *blk = malloc(o_pool + c->npool);
    if (blk == NULL) {
        fail(c, 0, "out of memory compiling the expression");
        return NULL;
    }
    struct vigil_expr *e = (struct vigil_expr *)(void *)blk;
    struct vx_op *ops = (struct vx_op *)(void *)(blk + o_ops);
    double *nums = (double *)(void *)(blk + o_nums);
    struct vx_str *strs = (struct vx_str *)(void *)(blk + o_strs);
    const char **paths = (const char **)(void *)(blk + o_paths);
    char *pool = blk + o_pool;

    if (c->npool) {
        memcpy(pool, c->pool, c->npool);
    }
    if (c->nnums) {
        memcpy(nums, c->nums, c->nnums * sizeof *nums);
    }
    for (size_t i = 0; i < c->nstrs; i++) {
        strs[i] = (struct vx_str){pool + c->strs[i].off, c->strs[i].len};
    }
    for (size_t i = 0; i < c->npaths; i++) {
        paths[i] = pool + c->paths[i].off;
    }
    for (size_t i = 0; i < c->nops; i++) {
        struct vx_op op = c->ops[i];
        switch (op.code) {
        case OP_STR:
        case OP_KEY:
        case OP_CMPK_STR:
        case OP_GLOB:
            op.u.str = pool + op.u.off;
            break;
        case OP_IN_NUM:
            op.u.nums = nums + op.u.off;
            break;
        case OP_IN_STR:
        case OP_WALK:
            op.u.strs = strs + op.u.off;
            break;
        default:
            break;
        }
        ops[i] = op;
    }
    e->nops = (uint32_t)c->nops;
    e->npaths = (uint32_t)c->npaths;
    e->ops = ops;
    e->paths = paths;
    return e;
}

/* Adds the error to d: at the token itself for single-line text, else at
 * the text's start with the token's place inside it in the message. */
static void report(const struct cc *c, const char *file, int line, int col, bool quoted,
                   struct vigil_diag *d)
{
    size_t off = c->err_off < c->len ? c->err_off : c->len;
    int rline = 1, rcol = 1; /* in characters, as YAML counts columns */
    for (size_t i = 0; i < off; i++) {
        unsigned char ch = (unsigned char)c->text[i];
        if (ch == '\n') {
            rline++;
            rcol = 1;
        } else if ((ch & 0xc0) != 0x80 && rcol < 1000000) {
            rcol++;
        }
    }
    bool multiline = c->text != NULL && memchr(c->text, '\n', c->len) != NULL;
    if (multiline || line <= 0 || col <= 0) {
        if (multiline) {
            char b[64];
            vigil_diag_add(d, file, line, col, "%s (at %s, line %d, column %d of the expression)",
                           c->err, SHOW(c, off, b), rline, rcol);
            return;
        }
        vigil_diag_add(d, file, line, col, "%s", c->err);
        return;
    }
    long at = (long)col + (quoted ? 1 : 0) + (rcol - 1);
    vigil_diag_add(d, file, line, at > 1000000000 ? col : (int)at, "%s", c->err);
}

/* ---- Interface ---------------------------------------------------------- */

struct vigil_expr *vigil_expr_compile(const char *text, enum vigil_expr_want want,
                                      const char *file, int line, int col, bool quoted,
                                      struct vigil_diag *d)
{
    struct cc c;
    struct vigil_expr *e = NULL;
    struct val v;
    char b[128];

    memset(&c, 0, sizeof c);
    c.text = text != NULL ? text : "";
    c.len = strlen(c.text);
    if (c.len > VX_TEXT_MAX) {
        fail(&c, 0, "the expression is longer than %d bytes", VX_TEXT_MAX);
    } else if (next(&c) && parse_or(&c, 0, &v)) {
        if (c.tok.kind != K_END) {
            const char *s = c.text + c.tok.off;
            fail(&c, c.tok.off, "expected an operator, found %s%s", SHOW(&c, c.tok.off, b),
                 c.tok.kind == K_RP                                  ? ": there is no '(' for it"
                 : c.tok.kind == K_PATH && word_is(s, c.tok.len, "and") ? ": write '&&' for and"
                 : c.tok.kind == K_PATH && word_is(s, c.tok.len, "or")  ? ": write '||' for or"
                                                                        : "");
        } else if (want == VIGIL_EXPR_BOOL && v.ty != TY_BOOL && v.ty != TY_ANY) {
            fail(&c, v.at, "a condition is needed here, but %s", WHAT(&c, &v, b));
        } else if (want == VIGIL_EXPR_NUMBER && v.ty != TY_NUM && v.ty != TY_ANY) {
            fail(&c, v.at, "a number is needed here, but %s", WHAT(&c, &v, b));
        } else {
            e = pack(&c);
        }
    }
    if (c.failed) {
        report(&c, file, line, col, quoted, d);
    }
    free(c.ops);
    free(c.nums);
    free(c.strs);
    free(c.paths);
    free(c.pool);
    return e;
}

struct vigil_expr *vigil_expr_compile_node(const struct vigil_conf *n, enum vigil_expr_want want,
                                           struct vigil_diag *d)
{
    if (n == NULL) {
        vigil_diag_add(d, NULL, 0, 0, "an expression is missing");
        return NULL;
    }
    if (n->kind != VIGIL_CONF_SCALAR || n->value == NULL) {
        vigil_diag_at(d, n, "an expression must be text, not a %s",
                      n->kind == VIGIL_CONF_MAP ? "map" : "list");
        return NULL;
    }
    return vigil_expr_compile(n->value, want, n->file, n->line, n->col, n->quoted, d);
}

void vigil_expr_free(struct vigil_expr *e)
{
    free(e);
}

size_t vigil_expr_npaths(const struct vigil_expr *e)
{
    return e != NULL ? e->npaths : 0;
}

const char *vigil_expr_path(const struct vigil_expr *e, size_t i)
{
    return e != NULL && i < e->npaths ? e->paths[i] : NULL;
}

/* The grammar of the rule expression language (see expr.h) and its code: a
 * recursive-descent parser over the tokens of expr.c that checks types as it
 * goes and emits the postfix ops of expr_internal.h directly, folding
 * constants, fusing a comparison with a constant, and pre-splitting paths.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr_internal.h"
#include "glob.h"

/* ---- Types ------------------------------------------------------------- */

/* What the compiler knows of a sub-expression's type. Paths are TY_ANY:
 * their type is only known per event. */
enum ty { TY_NUM, TY_STR, TY_BOOL, TY_ANY };

struct val {
    enum ty ty;
    size_t at;    /* offset of its principal token, for messages */
    size_t first; /* index of its first op */
    bool lit;     /* a literal (possibly negated or folded): "is" rather than "gives" */
};

/* ---- Emitting ops ------------------------------------------------------- */

/* Appends an op that changes the stack depth by `push`; NULL on error
 * (including needing more than VX_STACK_MAX slots, reported at `at`). The
 * pointer is valid until the next emit. */
static struct vx_op *emit(struct vx_cc *c, enum vx_code code, int push, size_t at)
{
    struct vx_op *ops = vigil__expr_grow(c, c->ops, &c->capops, c->nops + 1, sizeof *ops);
    if (!ops) {
        return NULL;
    }
    c->ops = ops;
    if (push > 0 && c->sp + (size_t)push > VX_STACK_MAX) {
        char b[64];
        vigil__expr_fail(c, at,
                         "the expression needs more than %d values at once at %s: use fewer "
                         "arguments or split it",
                         VX_STACK_MAX, VX_SHOW(c, at, b));
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
static struct vx_op *only_op(struct vx_cc *c, const struct val *v, enum vx_code code)
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
static const char *what(const struct vx_cc *c, const struct val *v, char *buf, size_t cap)
{
    char b[64];
    snprintf(buf, cap, "%s %s %s", vigil__expr_show(c, v->at, b, sizeof b), v->lit ? "is" : "gives",
             ty_name(v->ty, v->lit));
    return buf;
}

#define WHAT(c, v, b) what((c), (v), (b), sizeof(b))

static bool need_num(struct vx_cc *c, const struct val *v, const char *op)
{
    char b[128];
    if (v->ty == TY_NUM || v->ty == TY_ANY) {
        return true;
    }
    return vigil__expr_fail(c, v->at, "%s needs numbers, but %s", op, WHAT(c, v, b));
}

static bool need_cond(struct vx_cc *c, const struct val *v, const char *op)
{
    char b[128];
    if (v->ty == TY_BOOL || v->ty == TY_ANY) {
        return true;
    }
    return vigil__expr_fail(c, v->at,
                            "%s needs conditions (comparisons, true/false or fields), but %s", op,
                            WHAT(c, v, b));
}

/* ---- Parsing ------------------------------------------------------------
 * Lowest precedence first: || && (comparisons) (+ -) (* / %) (unary ! -).
 * Each function leaves the current token after what it parsed. */

static bool parse_or(struct vx_cc *c, int depth, struct val *out);

static bool parse_primary(struct vx_cc *c, int depth, struct val *out);

/* Opening one more level of ( ), call or unary operator at `at`. */
static bool deeper(struct vx_cc *c, int depth, size_t at)
{
    if (depth >= VX_DEPTH_MAX) {
        return vigil__expr_fail(c, at, "the expression nests deeper than %d levels here",
                                VX_DEPTH_MAX);
    }
    return true;
}

static bool parse_unary(struct vx_cc *c, int depth, struct val *out)
{
    enum vx_tok_kind k = c->tok.kind;
    if (k != K_NOT && k != K_MINUS) {
        return parse_primary(c, depth, out);
    }
    size_t at = c->tok.off;
    struct val o;
    if (!deeper(c, depth, at) || !vigil__expr_next(c) || !parse_unary(c, depth + 1, &o)) {
        return false;
    }
    if (k == K_NOT) {
        if (!need_cond(c, &o, "'!'") || !emit(c, OP_NOT, 0, at)) {
            return false;
        }
        *out = (struct val){TY_BOOL, at, o.first, false};
        return true;
    }
    if (!need_num(c, &o, "'-'")) {
        return false;
    }
    struct vx_op *op = only_op(c, &o, OP_NUM);
    if (op) { /* fold: -5 is a literal */
        op->u.num = -op->u.num;
        *out = (struct val){TY_NUM, at, o.first, o.lit};
        return true;
    }
    if (!emit(c, OP_NEG, 0, at)) {
        return false;
    }
    *out = (struct val){TY_NUM, at, o.first, false};
    return true;
}

static double fold(enum vx_tok_kind k, double a, double b)
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
static bool arith(struct vx_cc *c, struct val *l, const struct val *r, enum vx_tok_kind k,
                  size_t at)
{
    static const char *const names[] = {"'+'", "'-'", "'*'", "'/'", "'%'"};
    static const enum vx_code codes[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD};
    size_t i = (size_t)(k - K_PLUS);
    if (!need_num(c, l, names[i]) || !need_num(c, r, names[i])) {
        return false;
    }
    struct vx_op *b = only_op(c, r, OP_NUM);
    if (b && l->first == r->first - 1 && l->first >= c->barrier &&
        c->ops[l->first].code == OP_NUM) {
        if ((k == K_SLASH || k == K_PCT) && b->u.num == 0) {
            return vigil__expr_fail(c, at, "division by zero");
        }
        c->ops[l->first].u.num = fold(k, c->ops[l->first].u.num, b->u.num);
        c->nops--;
        c->sp--;
        *l = (struct val){TY_NUM, at, l->first, true};
        return true;
    }
    if (!emit(c, codes[i], -1, at)) {
        return false;
    }
    *l = (struct val){TY_NUM, at, l->first, false};
    return true;
}

static bool parse_mul(struct vx_cc *c, int depth, struct val *out)
{
    if (!parse_unary(c, depth, out)) {
        return false;
    }
    while (c->tok.kind == K_STAR || c->tok.kind == K_SLASH || c->tok.kind == K_PCT) {
        enum vx_tok_kind k = c->tok.kind;
        size_t at = c->tok.off;
        struct val r;
        if (!vigil__expr_next(c) || !parse_unary(c, depth, &r) || !arith(c, out, &r, k, at)) {
            return false;
        }
    }
    return true;
}

static bool parse_add(struct vx_cc *c, int depth, struct val *out)
{
    if (!parse_mul(c, depth, out)) {
        return false;
    }
    while (c->tok.kind == K_PLUS || c->tok.kind == K_MINUS) {
        enum vx_tok_kind k = c->tok.kind;
        size_t at = c->tok.off;
        struct val r;
        if (!vigil__expr_next(c) || !parse_mul(c, depth, &r) || !arith(c, out, &r, k, at)) {
            return false;
        }
    }
    return true;
}

static const char *const cmp_names[] = {"'=='", "'!='", "'<'", "'<='", "'>'", "'>='"};

/* l == r and the other comparisons; the operator is read, r is next. */
static bool finish_cmp(struct vx_cc *c, int depth, const struct val *l, enum vx_tok_kind k,
                       size_t at)
{
    uint8_t cmp = (uint8_t)(k - K_EQ); /* K_EQ..K_GE are in CMP_EQ..CMP_GE order */
    struct val r;
    char b1[128], b2[128];
    if (!parse_add(c, depth, &r)) {
        return false;
    }
    if (cmp >= CMP_LT) {
        if (l->ty == TY_BOOL) {
            return vigil__expr_fail(c, l->at, "%s orders numbers or strings, but %s",
                                    cmp_names[cmp], WHAT(c, l, b1));
        }
        if (r.ty == TY_BOOL) {
            return vigil__expr_fail(c, r.at, "%s orders numbers or strings, but %s", cmp_names[cmp],
                                    WHAT(c, &r, b1));
        }
    }
    if (l->ty != TY_ANY && r.ty != TY_ANY && l->ty != r.ty) {
        return vigil__expr_fail(c, at, "%s cannot compare these: %s, and %s", cmp_names[cmp],
                                WHAT(c, l, b1), WHAT(c, &r, b2));
    }
    /* A constant on the right is folded into the comparison. */
    struct vx_op *op = only_op(c, &r, OP_NUM);
    if (!op) {
        op = only_op(c, &r, OP_STR);
    }
    if (op) {
        op->code = op->code == OP_NUM ? OP_CMPK_NUM : OP_CMPK_STR;
        c->sp--;
    } else if (!(op = emit(c, OP_CMP, -1, at))) {
        return false;
    }
    op->sub = cmp;
    return true;
}

/* l ~ "glob"; the operator is read. */
static bool finish_glob(struct vx_cc *c, int depth, const struct val *l)
{
    struct val r;
    char b[128];
    const char *why;
    if (l->ty == TY_NUM || l->ty == TY_BOOL) {
        return vigil__expr_fail(c, l->at, "'~' matches strings, but %s", WHAT(c, l, b));
    }
    if (!parse_add(c, depth, &r)) {
        return false;
    }
    struct vx_op *op = only_op(c, &r, OP_STR);
    if (!op) {
        return vigil__expr_fail(
            c, r.at, "'~' needs a quoted glob pattern on its right, as in ~ \"web-*\", but %s",
            WHAT(c, &r, b));
    }
    if (!vigil_glob_valid(c->pool + op->u.off, &why)) {
        return vigil__expr_fail(c, r.at, "bad glob pattern %s: %s", VX_SHOW(c, r.at, b), why);
    }
    /* The literal prefix and the shape of the rest, for expr_eval.c. */
    size_t lit;
    op->code = OP_GLOB;
    op->sub = (uint8_t)vigil_glob_shape(c->pool + op->u.off, &lit);
    op->n = (uint32_t)lit;
    c->sp--;
    return true;
}

/* l in [literal, ...]; the operator is read. */
static bool finish_in(struct vx_cc *c, const struct val *l, size_t at)
{
    char b[128];
    if (l->ty == TY_BOOL) {
        return vigil__expr_fail(c, l->at, "'in' looks for a number or a string, but %s",
                                WHAT(c, l, b));
    }
    if (c->tok.kind != K_LB) {
        return vigil__expr_fail(
            c, c->tok.off,
            "'in' needs a list of literals, as in [1, 2] or [\"a\", \"b\"], but found %s",
            VX_SHOW(c, c->tok.off, b));
    }
    size_t lb = c->tok.off;
    if (!vigil__expr_next(c)) {
        return false;
    }
    if (c->tok.kind == K_RB) {
        return vigil__expr_fail(c, lb, "the list after 'in' is empty");
    }
    enum ty lt = TY_ANY;
    size_t start = 0;
    uint32_t n = 0;
    for (;;) {
        size_t eoff = c->tok.off;
        bool neg = c->tok.kind == K_MINUS;
        if (neg && !vigil__expr_next(c)) {
            return false;
        }
        enum ty et;
        if (c->tok.kind == K_NUM) {
            et = TY_NUM;
        } else if (c->tok.kind == K_STR && !neg) {
            et = TY_STR;
        } else if (c->tok.kind == K_END) {
            return vigil__expr_fail(c, lb, "this '[' is never closed: add ']'");
        } else {
            return vigil__expr_fail(
                c, c->tok.off,
                "a list after 'in' holds only literal numbers or strings, but found %s",
                VX_SHOW(c, c->tok.off, b));
        }
        if (n == 0) {
            lt = et;
            start = et == TY_NUM ? c->nnums : c->nstrs;
        } else if (et != lt) {
            return vigil__expr_fail(c, eoff, "the list mixes numbers and strings at %s",
                                    VX_SHOW(c, eoff, b));
        }
        if (et == TY_NUM) {
            double *nums = vigil__expr_grow(c, c->nums, &c->capnums, c->nnums + 1, sizeof *nums);
            if (!nums) {
                return false;
            }
            c->nums = nums;
            nums[c->nnums++] = neg ? -c->tok.num : c->tok.num;
        } else {
            struct vx_sref *strs =
                vigil__expr_grow(c, c->strs, &c->capstrs, c->nstrs + 1, sizeof *strs);
            if (!strs) {
                return false;
            }
            c->strs = strs;
            strs[c->nstrs++] = (struct vx_sref){c->tok.soff, c->tok.slen};
        }
        n++;
        if (!vigil__expr_next(c)) {
            return false;
        }
        if (c->tok.kind == K_COMMA) {
            if (!vigil__expr_next(c)) {
                return false;
            }
            continue;
        }
        if (c->tok.kind == K_RB) {
            break;
        }
        if (c->tok.kind == K_END) {
            return vigil__expr_fail(c, lb, "this '[' is never closed: add ']'");
        }
        return vigil__expr_fail(c, c->tok.off,
                                "expected ',' or ']' in the list after 'in', found %s",
                                VX_SHOW(c, c->tok.off, b));
    }
    if (!vigil__expr_next(c)) {
        return false;
    }
    if (l->ty != TY_ANY && l->ty != lt) {
        return vigil__expr_fail(c, at, "%s, so 'in' can never find it in a list of %s",
                                WHAT(c, l, b), lt == TY_NUM ? "numbers" : "strings");
    }
    struct vx_op *op = emit(c, lt == TY_NUM ? OP_IN_NUM : OP_IN_STR, 0, at);
    if (!op) {
        return false;
    }
    op->n = n;
    op->u.off = start;
    return true;
}

static bool is_cmp(enum vx_tok_kind k)
{
    return k >= K_EQ && k <= K_IN;
}

/* Comparisons do not chain: `a < b < c` is an error, not (a < b) < c. */
static bool parse_cmp(struct vx_cc *c, int depth, struct val *out)
{
    if (!parse_add(c, depth, out)) {
        return false;
    }
    enum vx_tok_kind k = c->tok.kind;
    if (!is_cmp(k)) {
        return true;
    }
    size_t at = c->tok.off;
    bool ok;
    if (!vigil__expr_next(c)) {
        return false;
    }
    if (k == K_MATCH) {
        ok = finish_glob(c, depth, out);
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
        return vigil__expr_fail(c, c->tok.off,
                                "comparisons do not chain: %s cannot follow a comparison; write "
                                "'a < b && b < c', or use ( ) around one",
                                VX_SHOW(c, c->tok.off, b));
    }
    return true;
}

/* && and ||: the left side decides when it can (OP_AND/OP_OR jump over the
 * right side), so a cheap test first spares an expensive one. */
static bool parse_logic(struct vx_cc *c, int depth, struct val *out, enum vx_tok_kind k)
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
        if (out->ty == TY_ANY && !emit(c, OP_TRUTHY, 0, out->at)) {
            return false;
        }
        size_t jump = c->nops;
        if (!emit(c, k == K_OR ? OP_OR : OP_AND, -1, at) || !vigil__expr_next(c)) {
            return false;
        }
        ok = k == K_OR ? parse_logic(c, depth, &r, K_AND) : parse_cmp(c, depth, &r);
        if (!ok || !need_cond(c, &r, name)) {
            return false;
        }
        if (r.ty == TY_ANY && !emit(c, OP_TRUTHY, 0, r.at)) {
            return false;
        }
        c->ops[jump].n = (uint32_t)c->nops;
        c->barrier = c->nops;
        *out = (struct val){TY_BOOL, at, out->first, false};
    }
    return true;
}

static bool parse_or(struct vx_cc *c, int depth, struct val *out)
{
    return parse_logic(c, depth, out, K_OR);
}

/* abs(x), min(x, y, ...), max(x, y, ...); `name` is read and the current
 * token is the '('. */
static bool parse_call(struct vx_cc *c, int depth, const struct vx_tok *name, struct val *out)
{
    static const char *const fns[] = {"abs", "min", "max"};
    static const enum vx_code codes[] = {OP_ABS, OP_MIN, OP_MAX};
    char b[128];
    size_t f = 0;
    while (f < 3 && !(name->len == 3 && memcmp(c->text + name->off, fns[f], 3) == 0)) {
        f++;
    }
    if (f == 3) {
        return vigil__expr_fail(c, name->off,
                                "unknown function %s: the functions are abs, min and max",
                                VX_SHOW(c, name->off, b));
    }
    size_t lp = c->tok.off, first = c->nops;
    uint32_t n = 0;
    if (!deeper(c, depth, name->off) || !vigil__expr_next(c)) {
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
            if (!vigil__expr_next(c)) {
                return false;
            }
        } else if (c->tok.kind == K_END) {
            return vigil__expr_fail(c, lp, "this '(' is never closed: add ')'");
        } else if (c->tok.kind != K_RP) {
            return vigil__expr_fail(c, c->tok.off,
                                    "expected ',' or ')' in the call of %s, found %s", fns[f],
                                    VX_SHOW(c, c->tok.off, b));
        }
    }
    if (!vigil__expr_next(c)) {
        return false;
    }
    if (f == 0 && n != 1) {
        return vigil__expr_fail(c, name->off, "abs takes one argument, not %u", n);
    }
    if (f > 0 && n < 2) {
        return vigil__expr_fail(c, name->off, "%s takes two or more arguments, not %u", fns[f], n);
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
    if (!op) {
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
static bool parse_path(struct vx_cc *c, const struct vx_tok *t, struct val *out)
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
        struct vx_sref *paths =
            vigil__expr_grow(c, c->paths, &c->cappaths, c->npaths + 1, sizeof *paths);
        if (!paths) {
            return false;
        }
        c->paths = paths;
        char *pool = vigil__expr_grow(c, c->pool, &c->cappool, c->npool + n + 1, 1);
        if (!pool) {
            return false;
        }
        c->pool = pool;
        off = c->npool;
        memcpy(pool + off, s, n);
        pool[off + n] = '\0';
        c->npool += n + 1;
        paths[c->npaths++] = (struct vx_sref){off, n};
    }
    *out = (struct val){TY_ANY, t->off, c->nops, false};

    const char *dot = memchr(s, '.', n);
    size_t head = dot ? (size_t)(dot - s) : n;
    static const struct {
        const char *name;
        enum vx_code code;
    } env[] = {{"topic", OP_TOPIC},
               {"host", OP_HOST},
               {"source", OP_SOURCE},
               {"ts", OP_TS},
               {"seq", OP_SEQ}};
    for (size_t k = 0; k < sizeof env / sizeof env[0]; k++) {
        if (word_is(s, head, env[k].name)) {
            /* topic.x and the like: a string or number has no fields. */
            return emit(c, dot ? OP_MISSING : env[k].code, 1, t->off) != NULL;
        }
    }
    uint8_t base = BASE_ROOT;
    size_t from = 0; /* where the segments to walk start */
    if (dot) {
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
        if (!op) {
            return false;
        }
        op->sub = base;
        op->u.off = off + from;
        op->n = (uint32_t)(n - from);
        return true;
    }
    struct vx_sref *strs = vigil__expr_grow(c, c->strs, &c->capstrs, c->nstrs + nseg, sizeof *strs);
    if (!strs) {
        return false;
    }
    c->strs = strs;
    size_t start = c->nstrs;
    for (size_t k = from; k <= n; k++) {
        if (k == n || s[k] == '.') {
            strs[c->nstrs++] = (struct vx_sref){off + from, (uint32_t)(k - from)};
            from = k + 1;
        }
    }
    struct vx_op *op = emit(c, OP_WALK, 1, t->off);
    if (!op) {
        return false;
    }
    op->sub = base;
    op->n = (uint32_t)nseg;
    op->u.off = start;
    return true;
}

static bool parse_primary(struct vx_cc *c, int depth, struct val *out)
{
    struct vx_tok t = c->tok;
    struct vx_op *op;
    char b[128];
    switch (t.kind) {
    case K_NUM:
    case K_STR:
    case K_TRUE:
    case K_FALSE:
        op = emit(c, t.kind == K_NUM ? OP_NUM : t.kind == K_STR ? OP_STR : OP_BOOL, 1, t.off);
        if (!op) {
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
        return vigil__expr_next(c);
    case K_LP:
        if (!deeper(c, depth, t.off) || !vigil__expr_next(c) || !parse_or(c, depth + 1, out)) {
            return false;
        }
        if (c->tok.kind == K_END) {
            return vigil__expr_fail(c, t.off, "this '(' is never closed: add ')'");
        }
        if (c->tok.kind != K_RP) {
            return vigil__expr_fail(c, c->tok.off, "expected ')' or an operator, found %s",
                                    VX_SHOW(c, c->tok.off, b));
        }
        return vigil__expr_next(c);
    case K_PATH:
        if (!vigil__expr_next(c)) {
            return false;
        }
        if (c->tok.kind == K_LP) {
            return parse_call(c, depth, &t, out);
        }
        return parse_path(c, &t, out);
    case K_END:
        if (c->have_prev) {
            return vigil__expr_fail(c, t.off,
                                    "expected a value after %s, found the end of the expression",
                                    VX_SHOW(c, c->prev_off, b));
        }
        return vigil__expr_fail(c, t.off, "the expression is empty");
    default:
        return vigil__expr_fail(
            c, t.off,
            "expected a value (a number, a string, a field, a function or '('), "
            "found %s",
            VX_SHOW(c, t.off, b));
    }
}

/* ---- The whole expression ------------------------------------------------ */

bool vigil__expr_parse(struct vx_cc *c, enum vigil_expr_want want)
{
    struct val v;
    char b[128];
    if (!vigil__expr_next(c) || !parse_or(c, 0, &v)) {
        return false;
    }
    if (c->tok.kind != K_END) {
        const char *s = c->text + c->tok.off;
        return vigil__expr_fail(
            c, c->tok.off, "expected an operator, found %s%s", VX_SHOW(c, c->tok.off, b),
            c->tok.kind == K_RP                                      ? ": there is no '(' for it"
            : c->tok.kind == K_PATH && word_is(s, c->tok.len, "and") ? ": write '&&' for and"
            : c->tok.kind == K_PATH && word_is(s, c->tok.len, "or")  ? ": write '||' for or"
                                                                     : "");
    }
    if (want == VIGIL_EXPR_BOOL && v.ty != TY_BOOL && v.ty != TY_ANY) {
        return vigil__expr_fail(c, v.at, "a condition is needed here, but %s", WHAT(c, &v, b));
    }
    if (want == VIGIL_EXPR_NUMBER && v.ty != TY_NUM && v.ty != TY_ANY) {
        return vigil__expr_fail(c, v.at, "a number is needed here, but %s", WHAT(c, &v, b));
    }
    return true;
}

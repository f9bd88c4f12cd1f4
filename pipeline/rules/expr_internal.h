/* The compiled form of a rule expression, shared by the compiler (expr.c,
 * expr_lex.c, expr_parse.c) and the evaluator (expr_eval.c): a flat array of
 * postfix operations over a small value stack, with every constant, list,
 * path segment and string in the same allocation as the header. Then the
 * compiler's own state. Nothing outside expr*.c uses this header.
 */
#ifndef VIGIL_EXPR_INTERNAL_H
#define VIGIL_EXPR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "expr.h"

#define VX_STACK_MAX 64   /* value slots an evaluation may use */
#define VX_DEPTH_MAX 32   /* nesting of ( ), unary operators and calls */
#define VX_TEXT_MAX 65536 /* bytes of expression text */

enum vx_code {
    /* Push a constant: u.num; u.str with n bytes; sub = 0/1; missing. */
    OP_NUM,
    OP_STR,
    OP_BOOL,
    OP_MISSING,
    /* Push an envelope field straight from the view. */
    OP_TOPIC,
    OP_HOST,
    OP_SOURCE,
    OP_TS,
    OP_SEQ,
    /* Push the value under one key (u.str, n bytes) of the map `sub`
     * (enum vx_base), or under the n segments u.strs, walking maps. */
    OP_KEY,
    OP_WALK,
    /* Arithmetic on numbers; anything else gives missing. n = arguments of
     * min/max. */
    OP_NEG,
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_MOD,
    OP_ABS,
    OP_MIN,
    OP_MAX,
    /* Comparisons, sub = enum vx_cmp. OP_CMP pops two; OP_CMPK_NUM and
     * OP_CMPK_STR compare the top with the constant u.num or (u.str, n). */
    OP_CMP,
    OP_CMPK_NUM,
    OP_CMPK_STR,
    /* The top against the NUL-terminated glob u.str, whose first n bytes
     * are literal and whose rest has the shape sub (enum vigil_glob_shape); or
     * against the list of n numbers u.nums / n strings u.strs. */
    OP_GLOB,
    OP_IN_NUM,
    OP_IN_STR,
    /* Conditions: OP_TRUTHY turns the top into a bool, OP_NOT into its
     * negation. OP_AND/OP_OR look at the bool on top: when it decides the
     * result they jump to op n leaving it; otherwise they pop it. */
    OP_TRUTHY,
    OP_NOT,
    OP_AND,
    OP_OR,
};

enum vx_cmp { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE };
enum vx_base { BASE_ROOT, BASE_LABELS, BASE_VALUES, BASE_ATTRS };

struct vx_str {
    const char *p;
    uint32_t len;
};

struct vx_op {
    uint8_t code;  /* enum vx_code */
    uint8_t sub;   /* enum vx_cmp, enum vx_base, or a bool */
    uint16_t slot; /* OP_KEY of labels or values: its field slot (fields.h); 0: search */
    uint32_t n;    /* string length, count, or jump target */
    union {
        double num;
        const char *str;
        const double *nums;
        const struct vx_str *strs;
        size_t off; /* while compiling: an index or a pool offset */
    } u;
};

struct vigil_expr {
    uint32_t nops, npaths;
    const struct vx_op *ops;
    const char *const *paths;
    /* Followed, in the same allocation, by the ops, number lists, string
     * and segment entries, path table and characters they point to. */
};

/* ---- The compiler's state, shared by expr_lex.c (tokens, messages),
 * expr_parse.c (grammar, code) and expr.c (packing, reporting) --------------- */

enum vx_tok_kind {
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

struct vx_tok {
    enum vx_tok_kind kind;
    size_t off, len; /* where it is in the text */
    double num;      /* K_NUM */
    size_t soff;     /* K_STR: the decoded, NUL-terminated string in the pool */
    uint32_t slen;
};

struct vx_sref {
    size_t off; /* into the pool */
    uint32_t len;
};

/* The compiler's state: the text, the current token, and growable copies of
 * what pack() will lay out in the expression's allocation. */
struct vx_cc {
    const char *text;
    size_t len, pos;
    struct vx_tok tok;
    size_t prev_off; /* the token before tok, for "after 'x'" */
    bool have_prev, started;

    struct vx_op *ops;
    size_t nops, capops;
    double *nums;
    size_t nnums, capnums;
    struct vx_sref *strs; /* list strings and path segments */
    size_t nstrs, capstrs;
    struct vx_sref *paths;
    size_t npaths, cappaths;
    char *pool;
    size_t npool, cappool;

    size_t sp;      /* value slots in use after the ops so far */
    size_t barrier; /* a jump lands on this op: ops before it may not be folded */

    bool failed;
    size_t err_off;
    char err[320];
};

/* Records the first error (message and text offset); returns false. */
bool vigil__expr_fail(struct vx_cc *c, size_t off, const char *fmt, ...) VIGIL_PRINTF(3, 4);
/* Room for `need` items in p (capacity *cap): the new array, or NULL after
 * reporting that memory ran out (p is then still valid). */
void *vigil__expr_grow(struct vx_cc *c, void *p, size_t *cap, size_t need, size_t size);
/* The token at `off` as messages show it: 'x', "a string" as written, or
 * "the end of the expression". Long tokens are cut, control bytes escaped. */
const char *vigil__expr_show(const struct vx_cc *c, size_t off, char *buf, size_t cap);
#define VX_SHOW(c, off, b) vigil__expr_show((c), (off), (b), sizeof(b))
/* Reads the next token into c->tok; false after a lexical error. */
bool vigil__expr_next(struct vx_cc *c);
/* Above: expr_lex.c, which calls nothing else of the compiler's. */

/* expr_parse.c: parses the whole text into c's ops, checking that it is
 * what `want` asks for; false after an error (in c). */
bool vigil__expr_parse(struct vx_cc *c, enum vigil_expr_want want);

#endif

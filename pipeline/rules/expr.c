/* The rule expression language (see expr.h): the interface, the message
 * that points at the offending token in the config file, and the packing of
 * the compiled form into one allocation. The tokens are read in expr_lex.c,
 * the grammar and code generation are in expr_parse.c, evaluation in
 * expr_eval.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr_internal.h"
#include "fields.h"

/* ---- Packing and reporting ---------------------------------------------- */

/* One allocation: the header, ops, number lists, string entries, path
 * table and characters; the ops' offsets become pointers. */
static struct vigil_expr *pack(struct vx_cc *c)
{
    size_t o_ops = sizeof(struct vigil_expr);
    size_t o_nums = o_ops + c->nops * sizeof(struct vx_op);
    size_t o_strs = o_nums + c->nnums * sizeof(double);
    size_t o_paths = o_strs + c->nstrs * sizeof(struct vx_str);
    size_t o_pool = o_paths + c->npaths * sizeof(char *);
    char *blk = malloc(o_pool + c->npool);
    if (!blk) {
        vigil__expr_fail(c, 0, "out of memory compiling the expression");
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
static void report(const struct vx_cc *c, const char *file, int line, int col, bool quoted,
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
    bool multiline = c->text && memchr(c->text, '\n', c->len);
    if (multiline || line <= 0 || col <= 0) {
        if (multiline) {
            char b[64];
            vigil_diag_add(d, file, line, col, "%s (at %s, line %d, column %d of the expression)",
                           c->err, VX_SHOW(c, off, b), rline, rcol);
            return;
        }
        vigil_diag_add(d, file, line, col, "%s", c->err);
        return;
    }
    long at = (long)col + (quoted ? 1 : 0) + (rcol - 1);
    vigil_diag_add(d, file, line, at > 1000000000 ? col : (int)at, "%s", c->err);
}

/* ---- Interface ---------------------------------------------------------- */

struct vigil_expr *vigil_expr_compile(const char *text, enum vigil_expr_want want, const char *file,
                                      int line, int col, bool quoted, struct vigil_diag *d)
{
    struct vx_cc c;
    struct vigil_expr *e = NULL;

    memset(&c, 0, sizeof c);
    c.text = text ? text : "";
    c.len = strlen(c.text);
    if (c.len > VX_TEXT_MAX) {
        vigil__expr_fail(&c, 0, "the expression is longer than %d bytes", VX_TEXT_MAX);
    } else if (vigil__expr_parse(&c, want)) {
        e = pack(&c);
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
    if (!n) {
        vigil_diag_add(d, NULL, 0, 0, "an expression is missing");
        return NULL;
    }
    if (n->kind != VIGIL_CONF_SCALAR) {
        vigil_diag_at(d, n, "an expression must be text, not a %s",
                      n->kind == VIGIL_CONF_MAP ? "map" : "list");
        return NULL;
    }
    return vigil_expr_compile(n->value ? n->value : "", want, n->file, n->line, n->col, n->quoted,
                              d);
}

void vigil_expr_free(struct vigil_expr *e)
{
    free(e);
}

size_t vigil_expr_npaths(const struct vigil_expr *e)
{
    return e ? e->npaths : 0;
}

const char *vigil_expr_path(const struct vigil_expr *e, size_t i)
{
    return e && i < e->npaths ? e->paths[i] : NULL;
}

uint16_t vigil_expr_slot(const struct vigil_expr *e)
{
    return e && e->nops == 1 && e->ops[0].code == OP_KEY ? e->ops[0].slot : 0;
}

void vigil_expr_bind(struct vigil_expr *e, struct vigil_fields *f)
{
    if (!e) {
        return;
    }
    /* The ops are in e's own allocation (pack above): writable. */
    struct vx_op *ops = (struct vx_op *)(void *)e->ops;
    for (uint32_t i = 0; i < e->nops; i++) {
        struct vx_op *op = &ops[i];
        if (op->code == OP_KEY && (op->sub == BASE_LABELS || op->sub == BASE_VALUES)) {
            op->slot = vigil__fields_slot(
                f, op->sub == BASE_LABELS ? VIGIL_FIELD_LABELS : VIGIL_FIELD_VALUES, op->u.str,
                op->n);
        }
    }
}

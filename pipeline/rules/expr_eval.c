/* Evaluation of compiled rule expressions (see expr.h, expr_internal.h):
 * one pass over the postfix ops with a fixed stack on the C stack, reading
 * fields straight from the decoded view. No allocation, no state in the
 * expression, safe to call from several threads at once.
 */
#include <math.h>
#include <string.h>

#include "bytes.h"
#include "expr_internal.h"
#include "fields.h"
#include "glob.h"

/* The stack's slots are field slots (struct vigil_field, fields.h), which
 * OP_KEY copies as they are; their kinds: */
enum vx_type {
    T_MISSING = VIGIL_FIELD_K_MISSING,
    T_NUM = VIGIL_FIELD_K_NUM,
    T_STR = VIGIL_FIELD_K_STR,
    T_BOOL = VIGIL_FIELD_K_BOOL
};

static inline void set_obj(struct vigil_field *s, const msgpack_object *o)
{
    if (!o) {
        s->t = T_MISSING;
        return;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        s->t = T_NUM;
        s->u.num = (double)o->via.u64;
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        s->t = T_NUM;
        s->u.num = (double)o->via.i64;
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        s->t = T_NUM;
        s->u.num = o->via.f64;
        break;
    case MSGPACK_OBJECT_STR:
        s->t = T_STR;
        s->u.str = o->via.str.ptr;
        s->len = o->via.str.size;
        break;
    case MSGPACK_OBJECT_BIN:
        s->t = T_STR;
        s->u.str = o->via.bin.ptr;
        s->len = o->via.bin.size;
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        s->t = T_BOOL;
        s->u.b = o->via.boolean;
        break;
    default: /* nil, arrays, maps, ext: not a value an operator can use */
        s->t = T_MISSING;
        break;
    }
}

/* s ~ pattern, with the pattern's literal prefix (n bytes) and the shape of
 * the rest (enum vigil_glob_shape) found at compile time, so that
 * the common "web-*" and "/kubepods/ + **" need no call to the matcher. */
static inline bool glob(const struct vx_op *op, const char *s, uint32_t len)
{
    uint32_t n = op->n;
    if (len < n || !vigil__eq_bytes(s, op->u.str, n)) {
        return false;
    }
    return vigil_glob_rest((enum vigil_glob_shape)op->sub, op->u.str + n, s + n, len - n);
}

/* One linear scan of a map, comparing the length before the bytes. */
static inline const msgpack_object *find(const msgpack_object *m, const char *key, uint32_t n)
{
    if (!m || m->type != MSGPACK_OBJECT_MAP) {
        return NULL;
    }
    const msgpack_object_kv *kv = m->via.map.ptr, *end = kv + m->via.map.size;
    for (; kv < end; kv++) {
        if (kv->key.type == MSGPACK_OBJECT_STR) {
            if (vigil__same_bytes(kv->key.via.str.ptr, kv->key.via.str.size, key, n)) {
                return &kv->val;
            }
        } else if (kv->key.type == MSGPACK_OBJECT_BIN) {
            if (vigil__same_bytes(kv->key.via.bin.ptr, kv->key.via.bin.size, key, n)) {
                return &kv->val;
            }
        }
    }
    return NULL;
}

static inline const msgpack_object *base(const struct vigil_event_view *v, uint8_t which)
{
    if (v->tree_zone) {
        vigil_event_tree(v); /* read lazily, and this op has no slot */
    }
    switch (which) {
    case BASE_LABELS:
        return v->labels;
    case BASE_VALUES:
        return v->values;
    case BASE_ATTRS:
        return v->attrs;
    default:
        return &v->root;
    }
}

static inline bool truthy(const struct vigil_field *s)
{
    switch (s->t) {
    case T_BOOL:
        return s->u.b;
    case T_NUM:
        return s->u.num != 0 && !isnan(s->u.num);
    case T_STR:
        return s->len > 0;
    default:
        return false;
    }
}

static inline bool order(uint8_t cmp, int c)
{
    switch (cmp) {
    case CMP_EQ:
        return c == 0;
    case CMP_NE:
        return c != 0;
    case CMP_LT:
        return c < 0;
    case CMP_LE:
        return c <= 0;
    case CMP_GT:
        return c > 0;
    default:
        return c >= 0;
    }
}

static inline bool cmp_num(uint8_t cmp, double a, double b)
{
    /* Spelled out rather than through order() so NaN compares false (and
     * != true) as IEEE says. */
    switch (cmp) {
    case CMP_EQ:
        return a == b;
    case CMP_NE:
        return a != b;
    case CMP_LT:
        return a < b;
    case CMP_LE:
        return a <= b;
    case CMP_GT:
        return a > b;
    default:
        return a >= b;
    }
}

static inline bool cmp_str(uint8_t cmp, const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    if (cmp == CMP_EQ || cmp == CMP_NE) {
        return vigil__same_bytes(a, alen, b, blen) == (cmp == CMP_EQ);
    }
    uint32_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c == 0) {
        c = (alen > blen) - (alen < blen);
    }
    return order(cmp, c);
}

/* Values of different types (or missing) are never equal, unequal or
 * ordered: every comparison is false. */
static inline bool compare(uint8_t cmp, const struct vigil_field *a, const struct vigil_field *b)
{
    if (a->t != b->t) {
        return false;
    }
    switch (a->t) {
    case T_NUM:
        return cmp_num(cmp, a->u.num, b->u.num);
    case T_STR:
        return cmp_str(cmp, a->u.str, a->len, b->u.str, b->len);
    case T_BOOL:
        if (cmp == CMP_EQ) {
            return a->u.b == b->u.b;
        }
        return cmp == CMP_NE && a->u.b != b->u.b;
    default:
        return false;
    }
}

/* Both numbers, or a becomes missing. */
static inline bool nums(struct vigil_field *a, const struct vigil_field *b)
{
    if (a->t == T_NUM && b->t == T_NUM) {
        return true;
    }
    a->t = T_MISSING;
    return false;
}

static inline void set_bool(struct vigil_field *s, bool b)
{
    s->t = T_BOOL;
    s->u.b = b;
}

/* Runs e on v over the caller's stack `st` (the compiler proved that no
 * expression needs more than VX_STACK_MAX slots); returns the result slot.
 * The caller reads the field it needs: copying the whole slot out would
 * read 16 bytes written as narrower stores, which stalls the CPU. */
static const struct vigil_field *run(const struct vigil_expr *e, const struct vigil_event_view *v,
                                     struct vigil_field *st)
{
    struct vigil_field *top = st; /* the next free slot */
    const struct vx_op *ops = e->ops, *op = ops, *end = ops + e->nops;

    while (op < end) {
        switch ((enum vx_code)op->code) {
        case OP_NUM:
            top->t = T_NUM;
            top->u.num = op->u.num;
            top++;
            break;
        case OP_STR:
            top->t = T_STR;
            top->u.str = op->u.str;
            top->len = op->n;
            top++;
            break;
        case OP_BOOL:
            set_bool(top, op->sub != 0);
            top++;
            break;
        case OP_MISSING:
            top->t = T_MISSING;
            top++;
            break;
        case OP_TOPIC:
            top->t = v->topic ? T_STR : T_MISSING;
            top->u.str = v->topic;
            top->len = (uint32_t)v->topic_len;
            top++;
            break;
        case OP_HOST:
            top->t = v->host ? T_STR : T_MISSING;
            top->u.str = v->host;
            top->len = (uint32_t)v->host_len;
            top++;
            break;
        case OP_SOURCE:
            top->t = v->source ? T_STR : T_MISSING;
            top->u.str = v->source;
            top->len = (uint32_t)v->source_len;
            top++;
            break;
        case OP_TS:
            top->t = T_NUM;
            top->u.num = (double)v->ts;
            top++;
            break;
        case OP_SEQ:
            top->t = T_NUM;
            top->u.num = (double)v->seq;
            top++;
            break;
        case OP_KEY:
            if (op->slot && v->fields) {
                const struct vigil_field *f = &v->fields[op->slot];
                top->t = f->t;
                top->len = f->len;
                memcpy(&top->u, &f->u, sizeof top->u);
            } else {
                set_obj(top, find(base(v, op->sub), op->u.str, op->n));
            }
            top++;
            break;
        case OP_WALK: {
            const msgpack_object *o = base(v, op->sub);
            for (uint32_t i = 0; o && i < op->n; i++) {
                o = find(o, op->u.strs[i].p, op->u.strs[i].len);
            }
            set_obj(top, o);
            top++;
            break;
        }
        case OP_NEG:
            if (top[-1].t == T_NUM) {
                top[-1].u.num = -top[-1].u.num;
            } else {
                top[-1].t = T_MISSING;
            }
            break;
        case OP_ABS:
            if (top[-1].t == T_NUM) {
                top[-1].u.num = fabs(top[-1].u.num);
            } else {
                top[-1].t = T_MISSING;
            }
            break;
        case OP_ADD:
            top--;
            if (nums(top - 1, top)) {
                top[-1].u.num += top->u.num;
            }
            break;
        case OP_SUB:
            top--;
            if (nums(top - 1, top)) {
                top[-1].u.num -= top->u.num;
            }
            break;
        case OP_MUL:
            top--;
            if (nums(top - 1, top)) {
                top[-1].u.num *= top->u.num;
            }
            break;
        case OP_DIV:
            top--;
            if (nums(top - 1, top)) {
                if (top->u.num == 0) {
                    top[-1].t = T_MISSING; /* no inf: a ratio of nothing is missing */
                } else {
                    top[-1].u.num /= top->u.num;
                }
            }
            break;
        case OP_MOD:
            top--;
            if (nums(top - 1, top)) {
                if (top->u.num == 0) {
                    top[-1].t = T_MISSING;
                } else {
                    top[-1].u.num = fmod(top[-1].u.num, top->u.num);
                }
            }
            break;
        case OP_MIN:
        case OP_MAX: {
            struct vigil_field *first = top - op->n;
            double r = first->u.num;
            bool ok = true;
            for (struct vigil_field *s = first; s < top; s++) {
                if (s->t != T_NUM) {
                    ok = false;
                    break;
                }
                r = op->code == OP_MIN ? fmin(r, s->u.num) : fmax(r, s->u.num);
            }
            top = first + 1;
            if (ok) {
                first->t = T_NUM;
                first->u.num = r;
            } else {
                first->t = T_MISSING;
            }
            break;
        }
        case OP_CMP:
            top--;
            set_bool(top - 1, compare(op->sub, top - 1, top));
            break;
        case OP_CMPK_NUM:
            set_bool(top - 1, top[-1].t == T_NUM && cmp_num(op->sub, top[-1].u.num, op->u.num));
            break;
        case OP_CMPK_STR:
            set_bool(top - 1, top[-1].t == T_STR &&
                                  cmp_str(op->sub, top[-1].u.str, top[-1].len, op->u.str, op->n));
            break;
        case OP_GLOB:
            set_bool(top - 1, top[-1].t == T_STR && glob(op, top[-1].u.str, top[-1].len));
            break;
        case OP_IN_NUM: {
            bool hit = false;
            if (top[-1].t == T_NUM) {
                for (uint32_t i = 0; i < op->n && !hit; i++) {
                    hit = op->u.nums[i] == top[-1].u.num;
                }
            }
            set_bool(top - 1, hit);
            break;
        }
        case OP_IN_STR: {
            bool hit = false;
            if (top[-1].t == T_STR) {
                for (uint32_t i = 0; i < op->n && !hit; i++) {
                    hit = vigil__same_bytes(op->u.strs[i].p, op->u.strs[i].len, top[-1].u.str,
                                            top[-1].len);
                }
            }
            set_bool(top - 1, hit);
            break;
        }
        case OP_TRUTHY:
            set_bool(top - 1, truthy(top - 1));
            break;
        case OP_NOT:
            set_bool(top - 1, !truthy(top - 1));
            break;
        case OP_AND:
            if (!top[-1].u.b) {
                op = ops + op->n;
                continue;
            }
            top--;
            break;
        case OP_OR:
            if (top[-1].u.b) {
                op = ops + op->n;
                continue;
            }
            top--;
            break;
        }
        op++;
    }
    return top - 1;
}

bool vigil_expr_true(const struct vigil_expr *e, const struct vigil_event_view *v)
{
    struct vigil_field st[VX_STACK_MAX];
    if (!e || !v) {
        return false;
    }
    return truthy(run(e, v, st));
}

bool vigil_expr_number(const struct vigil_expr *e, const struct vigil_event_view *v, double *out)
{
    struct vigil_field st[VX_STACK_MAX];
    if (!e || !v) {
        return false;
    }
    const struct vigil_field *r = run(e, v, st);
    if (r->t != T_NUM || isnan(r->u.num)) {
        return false;
    }
    *out = r->u.num;
    return true;
}

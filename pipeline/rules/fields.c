/* The slots of the label and value keys the rules read (fields.h): an
 * open-addressing table from (map, key) to slot, made when the rules bind,
 * and the per-event walk over the labels and values maps' bytes that fills
 * the slots.
 */
#include "fields.h"

#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "layout.h"
#include "mp_read.h"

_Static_assert(VIGIL_SHAPE_KEYS >= VIGIL_LAYOUT_ITEMS, "a plan covers a layout's items");

#define SLOTS_MAX 1024 /* keys the rules may read through slots; more are searched */

struct entry {
    char *key;
    uint32_t len;
    uint8_t map;   /* enum vigil_field_map */
    uint16_t slot; /* 0: empty */
};

struct vigil_fields {
    struct entry *table; /* size a power of two, at most half full */
    size_t size;
    uint16_t nslots;
    size_t nkeys[2];           /* per map: a map no rule reads is not walked */
    struct vigil_shape *shape; /* of the event being read */
    struct vigil_field slots[SLOTS_MAX + 1];
};

struct vigil_fields *vigil__fields_new(void)
{
    struct vigil_fields *f = calloc(1, sizeof *f);
    if (!f) {
        return NULL;
    }
    f->size = 16;
    f->table = calloc(f->size, sizeof *f->table);
    if (!f->table) {
        free(f);
        return NULL;
    }
    return f;
}

void vigil__fields_reset(struct vigil_fields *f)
{
    if (!f) {
        return;
    }
    for (size_t i = 0; i < f->size; i++) {
        free(f->table[i].key);
        f->table[i] = (struct entry){0};
    }
    f->nslots = 0;
    f->nkeys[0] = f->nkeys[1] = 0;
}

void vigil__fields_free(struct vigil_fields *f)
{
    if (!f) {
        return;
    }
    vigil__fields_reset(f);
    free(f->table);
    free(f);
}

/* Per event and key: the length and the first and last bytes tell most
 * keys apart without reading the rest. */
static inline size_t hash(unsigned map, const char *key, size_t len)
{
    uint32_t h = (uint32_t)len * 0x9e3779b1u;
    if (len) {
        h ^= (uint32_t)(unsigned char)key[0] * 0x85ebca6bu;
        h ^= (uint32_t)(unsigned char)key[len - 1] * 0xc2b2ae35u;
    }
    h ^= map * 0x27d4eb2fu;
    return (size_t)(h ^ (h >> 15));
}

/* The entry of (map, key), or the empty one where it would go. */
static inline struct entry *probe(const struct vigil_fields *f, unsigned map, const char *key,
                                  size_t len)
{
    size_t mask = f->size - 1;
    for (size_t i = hash(map, key, len) & mask;; i = (i + 1) & mask) {
        struct entry *e = &f->table[i];
        if (!e->slot || (e->map == map && vigil__same_bytes(e->key, e->len, key, (uint32_t)len))) {
            return e;
        }
    }
}

static bool grow(struct vigil_fields *f)
{
    struct vigil_fields old = {.table = f->table, .size = f->size};
    f->size *= 2;
    f->table = calloc(f->size, sizeof *f->table);
    if (!f->table) {
        f->table = old.table;
        f->size = old.size;
        return false;
    }
    for (size_t i = 0; i < old.size; i++) {
        if (old.table[i].slot) {
            *probe(f, old.table[i].map, old.table[i].key, old.table[i].len) = old.table[i];
        }
    }
    free(old.table);
    return true;
}

uint16_t vigil__fields_slot(struct vigil_fields *f, enum vigil_field_map map, const char *key,
                            size_t len)
{
    if (!f || len > UINT32_MAX) {
        return 0;
    }
    struct entry *e = probe(f, map, key, len);
    if (e->slot) {
        return e->slot;
    }
    if (f->nslots == SLOTS_MAX) {
        return 0;
    }
    if (2 * ((size_t)f->nslots + 1) > f->size) {
        if (!grow(f)) {
            return 0;
        }
        e = probe(f, map, key, len);
    }
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        return 0;
    }
    memcpy(copy, key, len);
    *e =
        (struct entry){.key = copy, .len = (uint32_t)len, .map = (uint8_t)map, .slot = ++f->nslots};
    f->nkeys[map]++;
    return e->slot;
}

static inline void set(struct vigil_field *s, const struct mp_item *v)
{
    switch (v->kind) {
    case MP_UINT:
        s->t = VIGIL_FIELD_K_NUM;
        s->u.num = (double)v->u;
        break;
    case MP_NEG:
        s->t = VIGIL_FIELD_K_NUM;
        s->u.num = (double)v->i;
        break;
    case MP_F32:
    case MP_F64:
        s->t = VIGIL_FIELD_K_NUM;
        s->u.num = v->f;
        break;
    case MP_STR:
    case MP_BIN:
        s->t = VIGIL_FIELD_K_STR;
        s->u.str = v->s;
        s->len = v->n;
        break;
    case MP_BOOL:
        s->t = VIGIL_FIELD_K_BOOL;
        s->u.b = v->u != 0;
        break;
    default:
        s->t = VIGIL_FIELD_K_MISSING;
        break;
    }
}

void vigil__shape_unplan(struct vigil_shape *s)
{
    s->planned = false;
}

void vigil__shape_reset(struct vigil_shape *s)
{
    s->planned = false;
    for (int m = 0; m < 2; m++) {
        for (int i = 0; i < VIGIL_SHAPE_KEYS; i++) {
            s->at[m][i].len = VIGIL_SHAPE_KEY_MAX + 1;
        }
    }
}

/* The slot of the i-th key k of `map`: from the shape when it has that key
 * there (a comparison the branch predictor learns), else looked up and
 * remembered. */
static inline uint16_t slot_of(struct vigil_fields *f, struct vigil_shape_key *sk, unsigned map,
                               const struct mp_item *k)
{
    if (sk && sk->len == k->n && vigil__eq_bytes(sk->key, k->s, k->n)) {
        return sk->slot;
    }
    uint16_t slot = probe(f, map, k->s, k->n)->slot;
    if (sk && k->n <= VIGIL_SHAPE_KEY_MAX) {
        sk->len = (uint8_t)k->n;
        sk->slot = slot;
        memcpy(sk->key, k->s, k->n);
    }
    return slot;
}

/* mp_read for the encodings events use most (a fixstr, a float64), which
 * it would read byte by byte through its general cases. */
static inline bool read_item(const unsigned char **pp, const unsigned char *end, struct mp_item *o)
{
    const unsigned char *p = *pp;
    if (p < end && (*p & 0xe0) == 0xa0 && (size_t)(end - p) > (size_t)(*p & 0x1f)) {
        o->kind = MP_STR;
        o->n = *p & 0x1f;
        o->s = (const char *)p + 1;
        *pp = p + 1 + o->n;
        return true;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (end - p >= 9 && *p == 0xcb) {
        uint64_t bits;
        memcpy(&bits, p + 1, 8);
        bits = __builtin_bswap64(bits); /* big-endian on the wire */
        memcpy(&o->f, &bits, sizeof o->f);
        o->kind = MP_F64;
        *pp = p + 9;
        return true;
    }
#endif
    return mp_read(pp, end, o);
}

/* The i-th item of `map` into its key's slot, unless an earlier key filled
 * it: labels and values hold strings or numbers, none of which reads as
 * missing, so a slot still missing has not been filled and the first of
 * repeated keys wins, as a search. */
static inline uint16_t item(struct vigil_fields *f, unsigned map, uint64_t i,
                            const struct mp_item *k, const struct mp_item *v)
{
    struct vigil_shape_key *sk = f->shape && i < VIGIL_SHAPE_KEYS ? &f->shape->at[map][i] : NULL;
    uint16_t slot = slot_of(f, sk, map, k);
    if (slot && f->slots[slot].t == VIGIL_FIELD_K_MISSING) {
        set(&f->slots[slot], v);
        return slot;
    }
    return 0;
}

/* Every slot missing, for a new event of a topic with `shape`. */
static void clear(struct vigil_fields *f, struct vigil_shape *shape)
{
    for (uint16_t i = 1; i <= f->nslots; i++) {
        f->slots[i].t = VIGIL_FIELD_K_MISSING;
    }
    f->shape = shape;
}

/* One map of the event (at: its bytes, NULL when absent), which the read
 * found a map of string keys to strings (labels) or numbers (values). */
static void walk(struct vigil_fields *f, unsigned map, const char *at, const char *end)
{
    const unsigned char *p = (const unsigned char *)at, *e = (const unsigned char *)end;
    struct mp_item m, k, v = {0}; /* (mp_read sets what its kind uses) */
    if (!at || !mp_read(&p, e, &m) || m.kind != MP_MAP) {
        return;
    }
    for (uint64_t i = 0; i < m.u; i++) {
        if (!read_item(&p, e, &k) || !mp_is_str(&k) || !read_item(&p, e, &v) || v.kind == MP_MAP ||
            v.kind == MP_ARRAY) {
            return; /* not what the read accepted: the slots stay missing */
        }
        item(f, map, i, &k, &v);
    }
}

const struct vigil_field *vigil__fields_fill(struct vigil_fields *f, struct vigil_shape *shape,
                                             const struct vigil_event_view *v)
{
    if (!f || !v->has_raw || f->nslots == 0) {
        return NULL;
    }
    clear(f, shape);
    const char *end = v->body + v->body_len;
    if (f->nkeys[VIGIL_FIELD_LABELS]) {
        walk(f, VIGIL_FIELD_LABELS, v->labels_raw, end);
    }
    if (f->nkeys[VIGIL_FIELD_VALUES]) {
        walk(f, VIGIL_FIELD_VALUES, v->values_raw, end);
    }
    return f->slots;
}

const struct vigil_field *vigil__fields_slots(const struct vigil_fields *f)
{
    return f->slots;
}

const struct vigil_field *vigil__fields_fill_at(struct vigil_fields *f, struct vigil_shape *shape,
                                                const struct vigil_layout *l,
                                                const struct vigil_event_view *v)
{
    if (!f || f->nslots == 0) {
        return NULL;
    }
    const unsigned char *b = (const unsigned char *)v->body, *end = b + v->body_len;
    if (shape && shape->planned) {
        /* The keys are the planned event's: only the values are read. */
        for (unsigned m = 0; m < 2; m++) {
            for (uint16_t i = 0; i < l->n[m]; i++) {
                const unsigned char *q = b + l->value[m][i];
                struct mp_item val = {0};
                if (shape->plan[m][i] && read_item(&q, end, &val)) {
                    set(&f->slots[shape->plan[m][i]], &val);
                }
            }
        }
        for (uint16_t j = 0; j < shape->nabsent; j++) {
            f->slots[shape->absent[j]].t = VIGIL_FIELD_K_MISSING;
        }
        return f->slots;
    }
    clear(f, shape);
    for (unsigned m = 0; m < 2; m++) {
        for (uint16_t i = 0; i < l->n[m]; i++) {
            /* Independent reads: each item's place is known. */
            const unsigned char *p = b + l->key[m][i], *q = b + l->value[m][i];
            struct mp_item k = {0}, val = {0};
            uint16_t filled = 0;
            if (f->nkeys[m] && read_item(&p, end, &k) && read_item(&q, end, &val)) {
                filled = item(f, m, i, &k, &val);
            }
            if (shape) {
                shape->plan[m][i] = filled;
            }
        }
    }
    if (shape) { /* the plan for the next events of this layout */
        shape->nabsent = 0;
        bool fits = true;
        for (uint16_t s = 1; s <= f->nslots && fits; s++) {
            if (f->slots[s].t == VIGIL_FIELD_K_MISSING) {
                fits = shape->nabsent < VIGIL_SHAPE_ABSENT;
                shape->absent[shape->nabsent++ % VIGIL_SHAPE_ABSENT] = s;
            }
        }
        shape->planned = fits;
    }
    return f->slots;
}

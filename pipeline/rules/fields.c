/* The slots of the label and value keys the rules read (fields.h): an
 * open-addressing table from (map, key) to slot, made when the rules bind,
 * and the per-event walk over the labels and values maps' bytes that fills
 * the slots.
 */
#include "fields.h"

#include <stdlib.h>
#include <string.h>

#include "mp_read.h"

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
    size_t nkeys[2]; /* per map: a map no rule reads is not walked */
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
        if (!e->slot ||
            (e->len == len && e->map == map && (len == 0 || memcmp(e->key, key, len) == 0))) {
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

/* One map of the event (at: its bytes, NULL when absent). The walk that
 * read the view found it a map of string keys to strings (labels) or
 * numbers (values), none of which reads as missing: a slot still missing
 * has not been filled, so the first of repeated keys wins, as a search. */
static void walk(struct vigil_fields *f, unsigned map, const char *at, const char *end)
{
    const unsigned char *p = (const unsigned char *)at, *e = (const unsigned char *)end;
    struct mp_item m, k, v = {0}; /* (mp_read sets what its kind uses) */
    if (!at || !mp_read(&p, e, &m) || m.kind != MP_MAP) {
        return;
    }
    for (uint64_t i = 0; i < m.u; i++) {
        if (!mp_read(&p, e, &k) || !mp_is_str(&k) || !mp_read(&p, e, &v) || v.kind == MP_MAP ||
            v.kind == MP_ARRAY) {
            return; /* not what the read accepted: the slots stay missing */
        }
        struct entry *en = probe(f, map, k.s, k.n);
        if (en->slot && f->slots[en->slot].t == VIGIL_FIELD_K_MISSING) {
            set(&f->slots[en->slot], &v);
        }
    }
}

const struct vigil_field *vigil__fields_fill(struct vigil_fields *f,
                                             const struct vigil_event_view *v)
{
    if (!f || !v->has_raw || f->nslots == 0) {
        return NULL;
    }
    for (uint16_t i = 1; i <= f->nslots; i++) {
        f->slots[i].t = VIGIL_FIELD_K_MISSING;
    }
    const char *end = v->body + v->body_len;
    if (f->nkeys[VIGIL_FIELD_LABELS]) {
        walk(f, VIGIL_FIELD_LABELS, v->labels_raw, end);
    }
    if (f->nkeys[VIGIL_FIELD_VALUES]) {
        walk(f, VIGIL_FIELD_VALUES, v->values_raw, end);
    }
    return f->slots;
}

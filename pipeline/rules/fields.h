/* The keys of labels and values that an engine's rules read, each given a
 * slot when the rules are compiled, and one walk per event over the two
 * maps' bytes that fills the slots: no rule searches a map or needs the
 * event's msgpack tree to read labels.x or values.y (rules.c, expr_eval.c,
 * rules_policy.c). Rules-internal.
 */
#ifndef VIGIL_FIELDS_H
#define VIGIL_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

/* A value as the expression machine holds it (expr_eval.c's stack is made
 * of these): absent or unusable, a number, a string, a bool. */
enum vigil_field_kind {
    VIGIL_FIELD_K_MISSING,
    VIGIL_FIELD_K_NUM,
    VIGIL_FIELD_K_STR,
    VIGIL_FIELD_K_BOOL
};

struct vigil_field {
    uint8_t t;    /* enum vigil_field_kind */
    uint32_t len; /* VIGIL_FIELD_K_STR */
    union {
        double num;
        const char *str;
        bool b;
    } u;
};

/* Which map a key is in. */
enum vigil_field_map { VIGIL_FIELD_LABELS, VIGIL_FIELD_VALUES };

struct vigil_fields;

/* What the last events of a topic looked like: per map, the key at each
 * position and its slot (0: no rule reads it). Events of a topic from one
 * source have the same keys in the same order; each key is still compared
 * with the event's, and a different one is looked up (and remembered). */
#define VIGIL_SHAPE_KEYS 32    /* positions remembered per map */
#define VIGIL_SHAPE_KEY_MAX 22 /* bytes of a key remembered; longer ones are looked up */
struct vigil_shape_key {
    uint8_t len; /* > VIGIL_SHAPE_KEY_MAX: nothing remembered here */
    uint16_t slot;
    char key[VIGIL_SHAPE_KEY_MAX];
};
#define VIGIL_SHAPE_ABSENT 64 /* slots a plan can leave missing */
struct vigil_shape {
    struct vigil_shape_key at[2][VIGIL_SHAPE_KEYS]; /* [enum vigil_field_map] */
    /* For events read from the topic's layout (layout.h), whose keys are
     * the learned event's: the slot the value at each position fills (0:
     * none, or not the first of its key) and the slots none fills. Valid
     * until the layout or the slots change (vigil__shape_unplan). */
    bool planned;
    uint16_t plan[2][VIGIL_SHAPE_KEYS];
    uint16_t nabsent, absent[VIGIL_SHAPE_ABSENT];
};
/* Forgets what it remembered (the slots were given again). */
void vigil__shape_reset(struct vigil_shape *s);
/* Forgets the plan (the topic's layout changed). */
void vigil__shape_unplan(struct vigil_shape *s);

/* An empty table; NULL when memory ran out. _free(NULL) does nothing. */
struct vigil_fields *vigil__fields_new(void);
void vigil__fields_free(struct vigil_fields *f);
/* Forgets every key (before the rules bind again). */
void vigil__fields_reset(struct vigil_fields *f);
/* The slot of key (len bytes) in `map`, given on first ask; 0 ("search the
 * tree instead") when f is NULL or the table is full or out of memory. */
uint16_t vigil__fields_slot(struct vigil_fields *f, enum vigil_field_map map, const char *key,
                            size_t len);
/* The slots (index 0 unused) the fills below return. */
const struct vigil_field *vigil__fields_slots(const struct vigil_fields *f);
/* Fills the slots from a view read by vigil_event_read_trusted (has_raw):
 * for each slot, the first value of its key in the event, or missing.
 * `shape` (may be NULL) is what earlier events of the view's topic looked
 * like, and learns this one. Returns the slots (index 0 unused), valid until
 * the next fill; NULL when the view has no raw maps or no rule reads a key.
 * Slots are the table's: one thread. */
const struct vigil_field *vigil__fields_fill(struct vigil_fields *f, struct vigil_shape *shape,
                                             const struct vigil_event_view *v);
/* The same for a view vigil__layout_read read from layout l (it answered
 * 1): each label and value read from its place, without a walk. */
struct vigil_layout;
const struct vigil_field *vigil__fields_fill_at(struct vigil_fields *f, struct vigil_shape *shape,
                                                const struct vigil_layout *l,
                                                const struct vigil_event_view *v);

#endif

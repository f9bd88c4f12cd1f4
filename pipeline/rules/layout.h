/* Where the items of a topic's events are: events of a topic from one
 * source are usually laid out alike (the same keys in the same order,
 * values of the same types and lengths). A layout remembers one event's
 * structural bytes (headers, keys) and the offsets of the envelope's values
 * and of each label and value; an event whose structural bytes are the same
 * is read from the offsets, with no walk from item to item. Rules-internal.
 */
#ifndef VIGIL_LAYOUT_H
#define VIGIL_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define VIGIL_LAYOUT_BODY_MAX 512 /* longer bodies are always walked */
#define VIGIL_LAYOUT_ITEMS 32     /* labels and values each; more: always walked */

struct vigil_layout {
    uint32_t body_len;              /* 0: nothing learned */
    uint16_t ts, seq, host, source; /* offsets of their values */
    uint16_t map[2];                /* of labels, values (0: absent) */
    uint16_t n[2];                  /* their items */
    uint16_t key[2][VIGIL_LAYOUT_ITEMS], value[2][VIGIL_LAYOUT_ITEMS];
    /* The structural bytes: where mask is 0xff, the body must equal tmpl. */
    unsigned char tmpl[VIGIL_LAYOUT_BODY_MAX], mask[VIGIL_LAYOUT_BODY_MAX];
};

/* Forgets what it learned. */
void vigil__layout_reset(struct vigil_layout *l);

/* Reads a message the bus has checked into *v, with the answers of
 * vigil_event_read_trusted (which it calls when the layout does not fit,
 * then learning this event's layout). Returns 1 when read from the layout,
 * 0 when walked, or the read's error (*reason set). */
int vigil__layout_read(struct vigil_layout *l, struct vigil_event_view *v, const char *topic,
                       size_t topic_len, const char *body, size_t body_len, msgpack_zone *zone,
                       const char **reason);

#endif

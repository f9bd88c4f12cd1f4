/* The event model: the msgpack body of a bus message, built (by sources and
 * tools) and checked/read (by the bus, the rules engine and sinks).
 *
 * A bus message is two frames: a topic and a body that is one msgpack map
 * with ts (uint), host (str), source (str), seq (uint), and optionally
 * labels (map str->str), values (map str->number), attrs (map str->any).
 * Unknown keys are kept.
 */
#ifndef VIGIL_EVENT_H
#define VIGIL_EVENT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vigil/plugin.h"

struct vigil_field;

#define VIGIL_TOPIC_MAX 255 /* bytes */
#define VIGIL_ATTR_DEPTH_MAX 8

/* ---- Building ----------------------------------------------------------- */

struct vigil_event_builder {
    char topic[VIGIL_TOPIC_MAX + 1];
    size_t topic_len;
    uint64_t ts;
    bool has_ts;
    bool bad;        /* misuse seen (nesting, too long a topic): publish refuses */
    bool oom;        /* a buffer could not grow: publish answers -ENOMEM */
    const char *why; /* what the misuse was */
    uint32_t nlabels, nvalues, nattrs;
    msgpack_sbuffer labels, values, attrs, out;
    msgpack_packer pl, pv, pa, po;
    struct {
        size_t off; /* where the map32/array32 header is in attrs */
        uint32_t n;
        bool is_map;
    } stack[VIGIL_ATTR_DEPTH_MAX];
    int depth;
};

/* Initialises a builder (no allocation until first use); fini frees it. */
void vigil_event_builder_init(struct vigil_event_builder *b);
void vigil_event_builder_fini(struct vigil_event_builder *b);
/* Clears the builder and sets its topic. Buffers are kept for reuse. */
void vigil_event_begin(struct vigil_event_builder *b, const char *topic);
void vigil_event_set_ts(struct vigil_event_builder *b, uint64_t ts_ns);
void vigil_event_add_label(struct vigil_event_builder *b, const char *key, const char *value);
void vigil_event_add_value(struct vigil_event_builder *b, const char *key, double value);
void vigil_event_add_value_u64(struct vigil_event_builder *b, const char *key, uint64_t value);
void vigil_event_add_attr_str(struct vigil_event_builder *b, const char *key, const char *value);
void vigil_event_add_attr_i64(struct vigil_event_builder *b, const char *key, int64_t value);
void vigil_event_add_attr_f64(struct vigil_event_builder *b, const char *key, double value);
void vigil_event_add_attr_bool(struct vigil_event_builder *b, const char *key, bool value);
/* The same for strings that are not NUL-terminated (from msgpack). */
void vigil_event_add_label_n(struct vigil_event_builder *b, const char *key, size_t key_len,
                             const char *value, size_t value_len);
void vigil_event_add_value_n(struct vigil_event_builder *b, const char *key, size_t key_len,
                             double value);
void vigil_event_add_attr_str_n(struct vigil_event_builder *b, const char *key, const char *value,
                                size_t value_len);
void vigil_event_attr_map_begin(struct vigil_event_builder *b, const char *key);
void vigil_event_attr_list_begin(struct vigil_event_builder *b, const char *key);
void vigil_event_attr_end(struct vigil_event_builder *b);
/* Packs the body with the envelope. ts is the builder's (or now). On success
 * body and len point into the builder, valid until the next begin(). Returns
 * 0, VIGIL_EMALFORMED when the builder was misused (b->why says how), or
 * -ENOMEM when a buffer could not grow. */
int vigil_event_finish(struct vigil_event_builder *b, const char *host, const char *source,
                       uint64_t seq, const char **body, size_t *len);

/* ---- Checking and reading -------------------------------------------------- */

struct vigil_event_view {
    const char *topic;
    size_t topic_len;
    const char *body;
    size_t body_len;
    msgpack_object root; /* the body map; strings point into `body` */
    uint64_t ts, seq;
    const char *host, *source;
    size_t host_len, source_len;
    const msgpack_object *labels, *values, *attrs; /* NULL when absent */
    /* Sinks decode on first use (a discard or msgpack sink never needs to):
     * while lazy_zone is set, only topic and body are filled. */
    msgpack_zone *lazy_zone;
    bool lazy_trusted;
    /* The rules stage reads events lazily (vigil_event_read_trusted): the
     * envelope is filled, and root, labels, values and attrs are built on
     * first use by vigil_event_tree, which needs tree_zone set. labels_raw and
     * values_raw point at those maps' bytes (NULL when absent) while
     * has_raw. */
    msgpack_zone *tree_zone;
    const char *labels_raw, *values_raw;
    bool has_raw;
    /* The rules engine's values of the keys its rules read, for this event
     * (rules/fields.h); NULL elsewhere. */
    const struct vigil_field *fields;
};

/* What a sink plugin holds as an opaque const struct vigil_event: a view.
 * The two helpers convert between the host's and the plugin's name. */
struct vigil_event {
    struct vigil_event_view view;
};

static inline const struct vigil_event *vigil_event_of(const struct vigil_event_view *v)
{
    return (const struct vigil_event *)v;
}

/* A view the host handed out (its memory, so writable: sinks decode it on
 * first use). */
static inline struct vigil_event_view *vigil_event_view_of(const struct vigil_event *ev)
{
    return (struct vigil_event_view *)&ev->view;
}

/* True when the topic is 1..VIGIL_TOPIC_MAX bytes of valid UTF-8 without
 * control characters or spaces. */
bool vigil_topic_valid(const char *topic, size_t len);

/* Decodes and checks a message; on success fills *v (pointing into topic,
 * body and zone, which must outlive it). The caller clears the zone between
 * messages (msgpack_zone_clear) so the hot path does not allocate. Returns 0
 * or VIGIL_EMALFORMED / VIGIL_ETOOBIG with *reason set to a static string. */
int vigil_event_decode(struct vigil_event_view *v, const char *topic, size_t topic_len,
                       const char *body, size_t body_len, size_t max_body, msgpack_zone *zone,
                       const char **reason);
/* What the bus needs of an event: checked exactly as vigil_event_decode
 * would (same acceptance, same reasons), in two passes over the bytes with
 * no allocation, and the envelope fields for seq tracking. */
struct vigil_event_head {
    uint64_t ts, seq;
    const char *host, *source;
    size_t host_len, source_len;
};
int vigil_event_check(const char *topic, size_t topic_len, const char *body, size_t body_len,
                      size_t max_body, struct vigil_event_head *out, const char **reason);

/* The same for a message the bus has already checked (the daemon's own
 * stages read only what the bus forwarded): skips the pre-scan that guards
 * msgpack_unpack against hostile bytes. Never for bytes from outside. */
int vigil_event_decode_trusted(struct vigil_event_view *v, const char *topic, size_t topic_len,
                               const char *body, size_t body_len, msgpack_zone *zone,
                               const char **reason);

/* What the rules stage needs first of a message the bus has checked: the
 * envelope (ts, host, source, seq), and where labels and values are, in one
 * walk without building the tree; the tree is built by vigil_event_tree()
 * on first use, in `zone`. Accepts and refuses what
 * vigil_event_decode_trusted would for such messages. Never for bytes from
 * outside. Returns 0 or VIGIL_EMALFORMED with *reason. */
int vigil_event_read_trusted(struct vigil_event_view *v, const char *topic, size_t topic_len,
                             const char *body, size_t body_len, msgpack_zone *zone,
                             const char **reason);
/* Builds root, labels, values and attrs of a view read by
 * vigil_event_read_trusted, once; does nothing for a decoded view. The view
 * is written although const: whoever set tree_zone lends it writable (the
 * rules engine's own copy). Returns 0, or VIGIL_EMALFORMED when the bytes do
 * not unpack (then labels, values and attrs stay NULL). */
int vigil_event_tree(const struct vigil_event_view *v);

/* One pass over msgpack bytes without allocating: false when they are
 * truncated, use the unused type 0xc1, or declare a container with more items
 * than bytes remain (msgpack_unpack would reserve memory for such a count
 * before reading it: a 5-byte message could ask for 100 GB). Bytes after the
 * first object are not looked at. */
bool vigil_msgpack_plausible(const char *data, size_t len);

/* Field by dotted path ("host", "labels.vm", "attrs.ns.net"; "" is the
 * whole body); NULL if absent. Builds a lazily read view's tree first. */
const msgpack_object *vigil_event_get(const struct vigil_event_view *v, const char *path);
/* Value in a map by key (STR or BIN keys); NULL if absent. */
const msgpack_object *vigil_msgpack_map_get(const msgpack_object *map, const char *key,
                                            size_t key_len);
/* Typed readers over an object; 0, VIGIL_ETYPE or VIGIL_ENOTFOUND (o NULL). */
int vigil_msgpack_str(const msgpack_object *o, const char **s, size_t *len);
int vigil_msgpack_double(const msgpack_object *o, double *out);
int vigil_msgpack_u64(const msgpack_object *o, uint64_t *out);
int vigil_msgpack_i64(const msgpack_object *o, int64_t *out); /* any integer that fits */
int vigil_msgpack_bool(const msgpack_object *o, bool *out);
enum vigil_field_type vigil_msgpack_type(const msgpack_object *o); /* ABSENT for NULL */
/* Items of a map or array (0 otherwise, NULL too), and item i of one: for a
 * map its value, with its key in *key and *key_len (NULL/0 when the key is not
 * a string; both may be NULL). NULL past the end. */
size_t vigil_msgpack_len(const msgpack_object *o);
const msgpack_object *vigil_msgpack_at(const msgpack_object *o, size_t i, const char **key,
                                       size_t *key_len);

#endif

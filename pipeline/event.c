/* The event codec: a reusable builder that packs msgpack bodies without
 * allocating once warm, and the checker/reader the bus, the rules engine and
 * sinks run on every message (see event.h).
 */
#include "event.h"

#include <string.h>

#include "log.h"

/* ---- Building -------------------------------------------------------------- */

void vigil_event_builder_init(struct vigil_event_builder *b)
{
    memset(b, 0, sizeof *b);
    b->base.kind = VIGIL_EVENT_BUILDER;
    msgpack_sbuffer_init(&b->labels);
    msgpack_sbuffer_init(&b->values);
    msgpack_sbuffer_init(&b->attrs);
    msgpack_sbuffer_init(&b->out);
    msgpack_packer_init(&b->pl, &b->labels, msgpack_sbuffer_write);
    msgpack_packer_init(&b->pv, &b->values, msgpack_sbuffer_write);
    msgpack_packer_init(&b->pa, &b->attrs, msgpack_sbuffer_write);
    msgpack_packer_init(&b->po, &b->out, msgpack_sbuffer_write);
}

void vigil_event_builder_fini(struct vigil_event_builder *b)
{
    if (!b) {
        return;
    }
    msgpack_sbuffer_destroy(&b->labels);
    msgpack_sbuffer_destroy(&b->values);
    msgpack_sbuffer_destroy(&b->attrs);
    msgpack_sbuffer_destroy(&b->out);
}

static void builder_misuse(struct vigil_event_builder *b, const char *why)
{
    if (!b->bad) {
        b->bad = true;
        b->why = why;
    }
}

void vigil_event_begin(struct vigil_event_builder *b, const char *topic)
{
    size_t n = topic ? strlen(topic) : 0;
    b->bad = false;
    b->why = NULL;
    b->has_ts = false;
    b->nlabels = b->nvalues = b->nattrs = 0;
    b->depth = 0;
    b->labels.size = b->values.size = b->attrs.size = b->out.size = 0;
    if (n == 0 || n > VIGIL_TOPIC_MAX || !vigil_topic_valid(topic, n)) {
        builder_misuse(b, "invalid topic (1-255 bytes of printable UTF-8, no spaces)");
        n = 0;
    }
    memcpy(b->topic, topic ? topic : "", n);
    b->topic[n] = '\0';
    b->topic_len = n;
}

void vigil_event_set_ts(struct vigil_event_builder *b, uint64_t ts_ns)
{
    b->ts = ts_ns;
    b->has_ts = true;
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s ? s : "", n);
}

void vigil_event_add_label(struct vigil_event_builder *b, const char *key, const char *value)
{
    if (!key) {
        builder_misuse(b, "label without a key");
        return;
    }
    pack_cstr(&b->pl, key);
    pack_cstr(&b->pl, value);
    b->nlabels++;
}

void vigil_event_add_value(struct vigil_event_builder *b, const char *key, double value)
{
    if (!key) {
        builder_misuse(b, "value without a key");
        return;
    }
    pack_cstr(&b->pv, key);
    msgpack_pack_double(&b->pv, value);
    b->nvalues++;
}

void vigil_event_add_value_u64(struct vigil_event_builder *b, const char *key, uint64_t value)
{
    if (!key) {
        builder_misuse(b, "value without a key");
        return;
    }
    pack_cstr(&b->pv, key);
    msgpack_pack_uint64(&b->pv, value);
    b->nvalues++;
}

/* Counts one attr item at the current depth and writes its key if the
 * enclosing container is a map. Returns false on misuse. */
static bool attr_item(struct vigil_event_builder *b, const char *key)
{
    bool in_map = b->depth == 0 || b->stack[b->depth - 1].is_map;
    if (in_map && !key) {
        builder_misuse(b, "attr in a map without a key");
        return false;
    }
    if (b->depth == 0) {
        b->nattrs++;
    } else {
        b->stack[b->depth - 1].n++;
    }
    if (in_map) {
        pack_cstr(&b->pa, key);
    }
    return true;
}

void vigil_event_add_attr_str(struct vigil_event_builder *b, const char *key, const char *value)
{
    if (attr_item(b, key)) {
        pack_cstr(&b->pa, value);
    }
}

void vigil_event_add_attr_i64(struct vigil_event_builder *b, const char *key, int64_t value)
{
    if (attr_item(b, key)) {
        msgpack_pack_int64(&b->pa, value);
    }
}

void vigil_event_add_attr_f64(struct vigil_event_builder *b, const char *key, double value)
{
    if (attr_item(b, key)) {
        msgpack_pack_double(&b->pa, value);
    }
}

void vigil_event_add_attr_bool(struct vigil_event_builder *b, const char *key, bool value)
{
    if (attr_item(b, key)) {
        if (value) {
            msgpack_pack_true(&b->pa);
        } else {
            msgpack_pack_false(&b->pa);
        }
    }
}

/* Nested containers get a 32-bit count header patched at attr_end(), since
 * the count is not known when they open. Non-minimal msgpack, but valid. */
static void attr_open(struct vigil_event_builder *b, const char *key, bool is_map)
{
    if (b->depth >= VIGIL_ATTR_DEPTH_MAX) {
        builder_misuse(b, "attrs nested too deep");
        return;
    }
    if (!attr_item(b, key)) {
        return;
    }
    unsigned char hdr[5] = {is_map ? 0xdf : 0xdd, 0, 0, 0, 0};
    b->stack[b->depth].off = b->attrs.size;
    b->stack[b->depth].n = 0;
    b->stack[b->depth].is_map = is_map;
    b->depth++;
    msgpack_sbuffer_write(&b->attrs, (const char *)hdr, sizeof hdr);
}

void vigil_event_attr_map_begin(struct vigil_event_builder *b, const char *key)
{
    attr_open(b, key, true);
}

void vigil_event_attr_list_begin(struct vigil_event_builder *b, const char *key)
{
    attr_open(b, key, false);
}

void vigil_event_attr_end(struct vigil_event_builder *b)
{
    if (b->depth == 0) {
        builder_misuse(b, "attr_end without a begin");
        return;
    }
    b->depth--;
    uint32_t n = b->stack[b->depth].n;
    unsigned char *p = (unsigned char *)b->attrs.data + b->stack[b->depth].off + 1;
    p[0] = (unsigned char)(n >> 24);
    p[1] = (unsigned char)(n >> 16);
    p[2] = (unsigned char)(n >> 8);
    p[3] = (unsigned char)n;
}

static void pack_key(msgpack_packer *pk, const char *k, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, k, n);
}

int vigil_event_finish(struct vigil_event_builder *b, const char *host, const char *source,
                       uint64_t seq, const char **body, size_t *len)
{
    if (b->depth != 0) {
        builder_misuse(b, "attr map or list left open");
    }
    if (b->bad) {
        return VIGIL_EMALFORMED;
    }
    msgpack_packer *pk = &b->po;
    b->out.size = 0;
    msgpack_pack_map(pk, b->nattrs ? 7 : 6);
    pack_key(pk, "ts", 2);
    msgpack_pack_uint64(pk, b->has_ts ? b->ts : vigil_now_ns());
    pack_key(pk, "host", 4);
    pack_cstr(pk, host);
    pack_key(pk, "source", 6);
    pack_cstr(pk, source);
    pack_key(pk, "seq", 3);
    msgpack_pack_uint64(pk, seq);
    pack_key(pk, "labels", 6);
    msgpack_pack_map(pk, b->nlabels);
    msgpack_sbuffer_write(&b->out, b->labels.data, b->labels.size);
    pack_key(pk, "values", 6);
    msgpack_pack_map(pk, b->nvalues);
    msgpack_sbuffer_write(&b->out, b->values.data, b->values.size);
    if (b->nattrs) {
        pack_key(pk, "attrs", 5);
        msgpack_pack_map(pk, b->nattrs);
        msgpack_sbuffer_write(&b->out, b->attrs.data, b->attrs.size);
    }
    *body = b->out.data;
    *len = b->out.size;
    return 0;
}

/* ---- Checking -------------------------------------------------------------- */

bool vigil_topic_valid(const char *t, size_t len)
{
    const unsigned char *s = (const unsigned char *)t;
    if (len == 0 || len > VIGIL_TOPIC_MAX) {
        return false;
    }
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c <= 0x20 || c == 0x7f) {
                return false;
            }
            i++;
            continue;
        }
        /* Multi-byte UTF-8: reject overlongs, surrogates and > U+10FFFF. */
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= len) { /* truncated sequence */
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0x80 && cp <= 0x9f)) {
            return false; /* the last: C1 control characters */
        }
        i += n + 1;
    }
    return true;
}

static bool is_str(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_STR || o->type == MSGPACK_OBJECT_BIN;
}

static bool is_number(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
           o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || o->type == MSGPACK_OBJECT_FLOAT32 ||
           o->type == MSGPACK_OBJECT_FLOAT64;
}

int vigil_msgpack_str(const msgpack_object *o, const char **s, size_t *len)
{
    if (!o) {
        return VIGIL_ENOTFOUND;
    }
    if (o->type == MSGPACK_OBJECT_STR) {
        *s = o->via.str.ptr;
        *len = o->via.str.size;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_BIN) {
        *s = o->via.bin.ptr;
        *len = o->via.bin.size;
        return 0;
    }
    return VIGIL_ETYPE;
}

int vigil_msgpack_double(const msgpack_object *o, double *out)
{
    if (!o) {
        return VIGIL_ENOTFOUND;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *out = (double)o->via.u64;
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *out = (double)o->via.i64;
        return 0;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *out = o->via.f64;
        return 0;
    default:
        return VIGIL_ETYPE;
    }
}

int vigil_msgpack_u64(const msgpack_object *o, uint64_t *out)
{
    if (!o) {
        return VIGIL_ENOTFOUND;
    }
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return VIGIL_ETYPE;
    }
    *out = o->via.u64;
    return 0;
}

static bool key_is(const msgpack_object *k, const char *name, size_t n)
{
    const char *s;
    size_t len;
    return vigil_msgpack_str(k, &s, &len) == 0 && len == n && memcmp(s, name, n) == 0;
}

const msgpack_object *vigil_msgpack_map_get(const msgpack_object *map, const char *key,
                                            size_t key_len)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP) {
        return NULL;
    }
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        if (key_is(&map->via.map.ptr[i].key, key, key_len)) {
            return &map->via.map.ptr[i].val;
        }
    }
    return NULL;
}

/* A map whose keys are strings and whose values pass `ok`. */
static bool map_of(const msgpack_object *m, bool (*ok)(const msgpack_object *))
{
    if (m->type != MSGPACK_OBJECT_MAP) {
        return false;
    }
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        if (!is_str(&m->via.map.ptr[i].key) || (ok && !ok(&m->via.map.ptr[i].val))) {
            return false;
        }
    }
    return true;
}

int vigil_event_decode(struct vigil_event_view *v, const char *topic, size_t topic_len,
                       const char *body, size_t body_len, size_t max_body, msgpack_zone *zone,
                       const char **reason)
{
    memset(v, 0, sizeof *v);
    v->base.kind = VIGIL_EVENT_VIEW;
    if (!vigil_topic_valid(topic, topic_len)) {
        *reason = "topic is not 1-255 bytes of printable UTF-8 without spaces";
        return VIGIL_EMALFORMED;
    }
    if (body_len > max_body) {
        *reason = "body larger than bus.max_event_bytes";
        return VIGIL_ETOOBIG;
    }
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack(body, body_len, &off, zone, &v->root);
    if (r == MSGPACK_UNPACK_EXTRA_BYTES) {
        *reason = "bytes after the msgpack body";
        return VIGIL_EMALFORMED;
    }
    if (r != MSGPACK_UNPACK_SUCCESS) {
        *reason = "body is not valid msgpack";
        return VIGIL_EMALFORMED;
    }
    if (v->root.type != MSGPACK_OBJECT_MAP) {
        *reason = "body is not a msgpack map";
        return VIGIL_EMALFORMED;
    }
    unsigned seen = 0;
    enum { TS = 1, HOST = 2, SOURCE = 4, SEQ = 8, LABELS = 16, VALUES = 32, ATTRS = 64 };
    for (uint32_t i = 0; i < v->root.via.map.size; i++) {
        const msgpack_object *k = &v->root.via.map.ptr[i].key;
        const msgpack_object *o = &v->root.via.map.ptr[i].val;
        const char *ks;
        size_t kn;
        if (vigil_msgpack_str(k, &ks, &kn) != 0) {
            *reason = "body has a key that is not a string";
            return VIGIL_EMALFORMED;
        }
        unsigned bit = 0;
        if (kn == 2 && memcmp(ks, "ts", 2) == 0) {
            bit = TS;
            if (vigil_msgpack_u64(o, &v->ts) != 0) {
                *reason = "ts is not an unsigned integer";
                return VIGIL_EMALFORMED;
            }
        } else if (kn == 4 && memcmp(ks, "host", 4) == 0) {
            bit = HOST;
            if (vigil_msgpack_str(o, &v->host, &v->host_len) != 0) {
                *reason = "host is not a string";
                return VIGIL_EMALFORMED;
            }
        } else if (kn == 6 && memcmp(ks, "source", 6) == 0) {
            bit = SOURCE;
            if (vigil_msgpack_str(o, &v->source, &v->source_len) != 0) {
                *reason = "source is not a string";
                return VIGIL_EMALFORMED;
            }
        } else if (kn == 3 && memcmp(ks, "seq", 3) == 0) {
            bit = SEQ;
            if (vigil_msgpack_u64(o, &v->seq) != 0) {
                *reason = "seq is not an unsigned integer";
                return VIGIL_EMALFORMED;
            }
        } else if (kn == 6 && memcmp(ks, "labels", 6) == 0) {
            bit = LABELS;
            if (!map_of(o, is_str)) {
                *reason = "labels is not a map of strings to strings";
                return VIGIL_EMALFORMED;
            }
            v->labels = o;
        } else if (kn == 6 && memcmp(ks, "values", 6) == 0) {
            bit = VALUES;
            if (!map_of(o, is_number)) {
                *reason = "values is not a map of strings to numbers";
                return VIGIL_EMALFORMED;
            }
            v->values = o;
        } else if (kn == 5 && memcmp(ks, "attrs", 5) == 0) {
            bit = ATTRS;
            if (!map_of(o, NULL)) {
                *reason = "attrs is not a map with string keys";
                return VIGIL_EMALFORMED;
            }
            v->attrs = o;
        }
        if (bit & seen) {
            *reason = "an envelope key appears twice";
            return VIGIL_EMALFORMED;
        }
        seen |= bit;
    }
    if ((seen & (TS | HOST | SOURCE | SEQ)) != (TS | HOST | SOURCE | SEQ)) {
        *reason = "body lacks one of ts, host, source, seq";
        return VIGIL_EMALFORMED;
    }
    v->topic = topic;
    v->topic_len = topic_len;
    v->body = body;
    v->body_len = body_len;
    return 0;
}

const msgpack_object *vigil_event_get(const struct vigil_event_view *v, const char *path)
{
    const msgpack_object *cur = &v->root;
    const char *p = path;
    while (cur) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        cur = vigil_msgpack_map_get(cur, p, n);
        if (!dot) {
            return cur;
        }
        p = dot + 1;
    }
    return NULL;
}

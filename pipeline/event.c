/* The event codec: a reusable builder that packs msgpack bodies without
 * allocating once warm, and the checker/reader the bus, the rules engine and
 * sinks run on every message (see event.h).
 */
#include "event.h"

#include <string.h>

#include "log.h"
#include "utf8.h"

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

static void pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    pack_strn(pk, s ? s : "", s ? strlen(s) : 0);
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

static bool attr_item(struct vigil_event_builder *b, const char *key);

void vigil_event_add_label_n(struct vigil_event_builder *b, const char *key, size_t key_len,
                             const char *value, size_t value_len)
{
    pack_strn(&b->pl, key, key_len);
    pack_strn(&b->pl, value, value_len);
    b->nlabels++;
}

void vigil_event_add_value_n(struct vigil_event_builder *b, const char *key, size_t key_len,
                             double value)
{
    pack_strn(&b->pv, key, key_len);
    msgpack_pack_double(&b->pv, value);
    b->nvalues++;
}

void vigil_event_add_attr_str_n(struct vigil_event_builder *b, const char *key, const char *value,
                                size_t value_len)
{
    if (attr_item(b, key)) {
        pack_strn(&b->pa, value, value_len);
    }
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
    pack_strn(pk, "ts", 2);
    msgpack_pack_uint64(pk, b->has_ts ? b->ts : vigil_now_ns());
    pack_strn(pk, "host", 4);
    pack_cstr(pk, host);
    pack_strn(pk, "source", 6);
    pack_cstr(pk, source);
    pack_strn(pk, "seq", 3);
    msgpack_pack_uint64(pk, seq);
    pack_strn(pk, "labels", 6);
    msgpack_pack_map(pk, b->nlabels);
    msgpack_sbuffer_write(&b->out, b->labels.data, b->labels.size);
    pack_strn(pk, "values", 6);
    msgpack_pack_map(pk, b->nvalues);
    msgpack_sbuffer_write(&b->out, b->values.data, b->values.size);
    if (b->nattrs) {
        pack_strn(pk, "attrs", 5);
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
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x80) {
            if (s[i] <= 0x20 || s[i] == 0x7f) {
                return false; /* control characters and spaces */
            }
            i++;
            continue;
        }
        size_t n = vigil_utf8_seq_len(s + i, len - i);
        if (n == 0 || (s[i] == 0xc2 && s[i + 1] <= 0x9f)) {
            return false; /* not UTF-8, or a C1 control character */
        }
        i += n;
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

static uint32_t be(const unsigned char *p, int n)
{
    uint32_t x = 0;
    for (int i = 0; i < n; i++) {
        x = (x << 8) | p[i];
    }
    return x;
}

static int mp_well_formed(const unsigned char *p, const unsigned char *end);

/* Plausible = not refused for its counts or lengths: nesting too deep and
 * bytes after the object are msgpack_unpack's to refuse. */
bool vigil_msgpack_plausible(const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    return mp_well_formed(p, p + len) != 0;
}

static int decode(struct vigil_event_view *v, const char *topic, size_t topic_len,
                  const char *body, size_t body_len, msgpack_zone *zone, const char **reason);

/* ---- The bus's checker: msgpack_unpack's acceptance without unpacking ---- */

/* msgpack-c refuses to open a container while this many non-empty ones are
 * open (MSGPACK_EMBED_STACK_SIZE in unpack_template.h). */
#define UNPACK_DEPTH 32

/* Pass 1: the bytes are exactly one msgpack object that msgpack_unpack
 * would accept. 1 = yes; 0 = implausible (what vigil_msgpack_plausible
 * refuses); -2 = nested deeper than msgpack-c goes; -1 = extra bytes after
 * one complete object. Plausibility is judged over the whole object first,
 * as vigil_event_decode does, so both give the same reason. */
static int mp_well_formed(const unsigned char *p, const unsigned char *end)
{
    uint64_t left[UNPACK_DEPTH]; /* items still due in each open container */
    int top = 0;
    bool deep = false;
    uint64_t pending = 1;
    while (pending > 0) {
        if (p >= end) {
            return 0;
        }
        unsigned c = *p++;
        uint64_t skip = 0, items = 0;
        int hdr = 0;
        bool container = false;
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
        } else if (c <= 0x8f) {
            items = 2u * (c & 0x0f);
            container = true;
        } else if (c <= 0x9f) {
            items = c & 0x0f;
            container = true;
        } else if (c <= 0xbf) {
            skip = c & 0x1f;
        } else if (c == 0xc1) {
            return 0;
        } else if (c <= 0xc6) {
            hdr = 1 << (c - 0xc4);
        } else if (c <= 0xc9) {
            hdr = 1 << (c - 0xc7);
            skip = 1;
        } else if (c <= 0xd3) {
            static const uint8_t sizes[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
            skip = sizes[c - 0xca];
        } else if (c <= 0xd8) {
            skip = 1 + (1u << (c - 0xd4));
        } else if (c <= 0xdb) {
            hdr = 1 << (c - 0xd9);
        } else {
            hdr = (c == 0xdc || c == 0xde) ? 2 : 4;
            container = true;
        }
        if (hdr) {
            if (end - p < hdr) {
                return 0;
            }
            uint32_t n = be(p, hdr);
            p += hdr;
            if (container) {
                items = c >= 0xde ? 2u * (uint64_t)n : n;
            } else {
                skip += n;
            }
        }
        if (skip > (uint64_t)(end - p) || items > (uint64_t)(end - p)) {
            return 0;
        }
        p += skip;
        pending = pending - 1 + items;
        if (deep) {
            continue;
        }
        if (container && top >= UNPACK_DEPTH) {
            deep = true; /* msgpack-c would stop here; keep judging plausibility */
            continue;
        }
        if (container && items) {
            left[top++] = items;
            continue;
        }
        while (top > 0 && --left[top - 1] == 0) {
            top--; /* the object completes its container, and maybe more */
        }
    }
    return deep ? -2 : p == end ? 1 : -1;
}

/* Pass 2 reads well-formed bytes: one object's header. */
struct mp_obj {
    enum { MP_OTHER, MP_UINT, MP_NEG, MP_FLOAT, MP_STR, MP_MAP, MP_ARRAY } kind;
    uint64_t u;        /* MP_UINT: the value; MP_MAP/MP_ARRAY: the count */
    const char *s;     /* MP_STR (str or bin) */
    size_t n;          /* MP_STR: length */
};

static const unsigned char *mp_head(const unsigned char *p, struct mp_obj *o)
{
    unsigned c = *p++;
    o->kind = MP_OTHER;
    if (c <= 0x7f) {
        o->kind = MP_UINT;
        o->u = c;
    } else if (c >= 0xe0) {
        o->kind = MP_NEG;
    } else if (c <= 0x8f) {
        o->kind = MP_MAP;
        o->u = c & 0x0f;
    } else if (c <= 0x9f) {
        o->kind = MP_ARRAY;
        o->u = c & 0x0f;
    } else if (c <= 0xbf) {
        o->kind = MP_STR;
        o->n = c & 0x1f;
        o->s = (const char *)p;
        p += o->n;
    } else if ((c >= 0xc4 && c <= 0xc6) || (c >= 0xd9 && c <= 0xdb)) {
        int h = c <= 0xc6 ? 1 << (c - 0xc4) : 1 << (c - 0xd9);
        o->kind = MP_STR;
        o->n = be(p, h);
        o->s = (const char *)p + h;
        p += h + o->n;
    } else if (c >= 0xc7 && c <= 0xc9) {
        int h = 1 << (c - 0xc7);
        p += h + 1 + be(p, h);
    } else if (c == 0xca || c == 0xcb) {
        o->kind = MP_FLOAT;
        p += c == 0xca ? 4 : 8;
    } else if (c >= 0xcc && c <= 0xcf) {
        int h = 1 << (c - 0xcc);
        o->kind = MP_UINT;
        o->u = h == 8 ? (uint64_t)be(p, 4) << 32 | be(p + 4, 4) : be(p, h);
        p += h;
    } else if (c >= 0xd0 && c <= 0xd3) {
        /* msgpack-c gives a signed int that is not negative as positive. */
        int h = 1 << (c - 0xd0);
        o->kind = (*p & 0x80) ? MP_NEG : MP_UINT;
        o->u = h == 8 ? (uint64_t)be(p, 4) << 32 | be(p + 4, 4) : be(p, h);
        p += h;
    } else if (c >= 0xd4 && c <= 0xd8) {
        p += 1 + (1u << (c - 0xd4));
    } else if (c == 0xdc || c == 0xdd) {
        int h = c == 0xdc ? 2 : 4;
        o->kind = MP_ARRAY;
        o->u = be(p, h);
        p += h;
    } else if (c == 0xde || c == 0xdf) {
        int h = c == 0xde ? 2 : 4;
        o->kind = MP_MAP;
        o->u = be(p, h);
        p += h;
    }
    return p;
}

/* Skips one well-formed object. */
static const unsigned char *mp_skip(const unsigned char *p)
{
    uint64_t pending = 1;
    while (pending) {
        struct mp_obj o;
        p = mp_head(p, &o);
        pending--;
        if (o.kind == MP_MAP) {
            pending += 2 * o.u;
        } else if (o.kind == MP_ARRAY) {
            pending += o.u;
        }
    }
    return p;
}

enum flat_want { WANT_STR, WANT_NUMBER, WANT_ANY };

/* A map whose keys are strings and whose values are what `want` says. */
static const unsigned char *mp_flat_map(const unsigned char *p, enum flat_want want, bool *ok)
{
    struct mp_obj m, k, v;
    p = mp_head(p, &m);
    if (m.kind != MP_MAP) {
        *ok = false;
        return NULL;
    }
    for (uint64_t i = 0; i < m.u; i++) {
        p = mp_head(p, &k);
        if (k.kind == MP_MAP || k.kind == MP_ARRAY) {
            *ok = false;
            return NULL;
        }
        const unsigned char *val = p;
        p = mp_head(p, &v);
        bool good = k.kind == MP_STR;
        if (want == WANT_STR) {
            good = good && v.kind == MP_STR;
        } else if (want == WANT_NUMBER) {
            good = good && (v.kind == MP_UINT || v.kind == MP_NEG || v.kind == MP_FLOAT);
        }
        if (!good) {
            *ok = false;
            return NULL;
        }
        if (v.kind == MP_MAP || v.kind == MP_ARRAY) {
            p = mp_skip(val);
        }
    }
    *ok = true;
    return p;
}

int vigil_event_check(const char *topic, size_t topic_len, const char *body, size_t body_len,
                      size_t max_body, struct vigil_event_head *out, const char **reason)
{
    if (!vigil_topic_valid(topic, topic_len)) {
        *reason = "topic is not 1-255 bytes of printable UTF-8 without spaces";
        return VIGIL_EMALFORMED;
    }
    if (body_len > max_body) {
        *reason = "body larger than bus.max_event_bytes";
        return VIGIL_ETOOBIG;
    }
    const unsigned char *p = (const unsigned char *)body, *end = p + body_len;
    int wf = mp_well_formed(p, end);
    if (wf == 0) {
        *reason = "body is not valid msgpack (or declares more items than it has bytes)";
        return VIGIL_EMALFORMED;
    }
    if (wf == -2) {
        *reason = "body is not valid msgpack";
        return VIGIL_EMALFORMED;
    }
    if (wf < 0) {
        *reason = "bytes after the msgpack body";
        return VIGIL_EMALFORMED;
    }
    struct mp_obj root;
    p = mp_head(p, &root);
    if (root.kind != MP_MAP) {
        *reason = "body is not a msgpack map";
        return VIGIL_EMALFORMED;
    }
    enum { TS = 1, HOST = 2, SOURCE = 4, SEQ = 8, LABELS = 16, VALUES = 32, ATTRS = 64 };
    unsigned seen = 0;
    for (uint64_t i = 0; i < root.u; i++) {
        struct mp_obj k, v;
        p = mp_head(p, &k);
        if (k.kind != MP_STR) {
            *reason = "body has a key that is not a string";
            return VIGIL_EMALFORMED;
        }
        const unsigned char *val = p;
        unsigned bit = 0;
        bool ok = true;
        const char *ks = k.s;
        size_t kn = k.n;
        if (kn == 2 && memcmp(ks, "ts", 2) == 0) {
            bit = TS;
            p = mp_head(val, &v);
            out->ts = v.u;
            ok = v.kind == MP_UINT;
            *reason = "ts is not an unsigned integer";
        } else if (kn == 4 && memcmp(ks, "host", 4) == 0) {
            bit = HOST;
            p = mp_head(val, &v);
            out->host = v.s;
            out->host_len = v.n;
            ok = v.kind == MP_STR;
            *reason = "host is not a string";
        } else if (kn == 6 && memcmp(ks, "source", 6) == 0) {
            bit = SOURCE;
            p = mp_head(val, &v);
            out->source = v.s;
            out->source_len = v.n;
            ok = v.kind == MP_STR;
            *reason = "source is not a string";
        } else if (kn == 3 && memcmp(ks, "seq", 3) == 0) {
            bit = SEQ;
            p = mp_head(val, &v);
            out->seq = v.u;
            ok = v.kind == MP_UINT;
            *reason = "seq is not an unsigned integer";
        } else if (kn == 6 && memcmp(ks, "labels", 6) == 0) {
            bit = LABELS;
            p = mp_flat_map(val, WANT_STR, &ok);
            *reason = "labels is not a map of strings to strings";
        } else if (kn == 6 && memcmp(ks, "values", 6) == 0) {
            bit = VALUES;
            p = mp_flat_map(val, WANT_NUMBER, &ok);
            *reason = "values is not a map of strings to numbers";
        } else if (kn == 5 && memcmp(ks, "attrs", 5) == 0) {
            bit = ATTRS;
            p = mp_flat_map(val, WANT_ANY, &ok);
            *reason = "attrs is not a map with string keys";
        } else {
            p = mp_skip(val);
        }
        if (!ok) {
            return VIGIL_EMALFORMED;
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
    *reason = NULL;
    return 0;
}

int vigil_event_decode(struct vigil_event_view *v, const char *topic, size_t topic_len,
                       const char *body, size_t body_len, size_t max_body, msgpack_zone *zone,
                       const char **reason)
{
    if (!vigil_topic_valid(topic, topic_len)) {
        memset(v, 0, sizeof *v);
        v->base.kind = VIGIL_EVENT_VIEW;
        *reason = "topic is not 1-255 bytes of printable UTF-8 without spaces";
        return VIGIL_EMALFORMED;
    }
    if (body_len > max_body) {
        memset(v, 0, sizeof *v);
        v->base.kind = VIGIL_EVENT_VIEW;
        *reason = "body larger than bus.max_event_bytes";
        return VIGIL_ETOOBIG;
    }
    if (!vigil_msgpack_plausible(body, body_len)) {
        memset(v, 0, sizeof *v);
        v->base.kind = VIGIL_EVENT_VIEW;
        *reason = "body is not valid msgpack (or declares more items than it has bytes)";
        return VIGIL_EMALFORMED;
    }
    return decode(v, topic, topic_len, body, body_len, zone, reason);
}

int vigil_event_decode_trusted(struct vigil_event_view *v, const char *topic, size_t topic_len,
                               const char *body, size_t body_len, msgpack_zone *zone,
                               const char **reason)
{
    return decode(v, topic, topic_len, body, body_len, zone, reason);
}

static int decode(struct vigil_event_view *v, const char *topic, size_t topic_len,
                  const char *body, size_t body_len, msgpack_zone *zone, const char **reason)
{
    memset(v, 0, sizeof *v);
    v->base.kind = VIGIL_EVENT_VIEW;
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

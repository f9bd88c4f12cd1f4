/* The event codec: a reusable builder that packs msgpack bodies without
 * allocating once warm, and the checker/reader the bus, the rules engine and
 * sinks run on every message (see event.h).
 */
#include "event.h"
#include "mp_read.h"

#include <errno.h>
#include <string.h>

#include "log.h"
#include "utf8.h"

/* ---- Building -------------------------------------------------------------- */

/* msgpack_sbuffer_write() answers -1 when it cannot grow, and the packers'
 * callers ignore answers: remember the failure so finish() refuses the
 * event instead of publishing a cut body. */
static int write_to(struct vigil_event_builder *b, msgpack_sbuffer *sb, const char *buf, size_t len)
{
    if (msgpack_sbuffer_write(sb, buf, len) != 0) {
        b->oom = true;
        return -1;
    }
    return 0;
}

static int write_labels(void *b, const char *buf, size_t len)
{
    return write_to(b, &((struct vigil_event_builder *)b)->labels, buf, len);
}

static int write_values(void *b, const char *buf, size_t len)
{
    return write_to(b, &((struct vigil_event_builder *)b)->values, buf, len);
}

static int write_attrs(void *b, const char *buf, size_t len)
{
    return write_to(b, &((struct vigil_event_builder *)b)->attrs, buf, len);
}

static int write_out(void *b, const char *buf, size_t len)
{
    return write_to(b, &((struct vigil_event_builder *)b)->out, buf, len);
}

void vigil_event_builder_init(struct vigil_event_builder *b)
{
    memset(b, 0, sizeof *b);
    msgpack_sbuffer_init(&b->labels);
    msgpack_sbuffer_init(&b->values);
    msgpack_sbuffer_init(&b->attrs);
    msgpack_sbuffer_init(&b->out);
    msgpack_packer_init(&b->pl, b, write_labels);
    msgpack_packer_init(&b->pv, b, write_values);
    msgpack_packer_init(&b->pa, b, write_attrs);
    msgpack_packer_init(&b->po, b, write_out);
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
    b->oom = false;
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
    if (b->oom) {
        return; /* the header to patch may not have been written */
    }
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
    write_out(b, b->labels.data, b->labels.size);
    pack_strn(pk, "values", 6);
    msgpack_pack_map(pk, b->nvalues);
    write_out(b, b->values.data, b->values.size);
    if (b->nattrs) {
        pack_strn(pk, "attrs", 5);
        msgpack_pack_map(pk, b->nattrs);
        write_out(b, b->attrs.data, b->attrs.size);
    }
    if (b->oom) {
        return -ENOMEM;
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

int vigil_msgpack_i64(const msgpack_object *o, int64_t *out)
{
    if (!o) {
        return VIGIL_ENOTFOUND;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > INT64_MAX) {
        return VIGIL_ETYPE;
    }
    *out = (int64_t)o->via.u64;
    return 0;
}

int vigil_msgpack_bool(const msgpack_object *o, bool *out)
{
    if (!o) {
        return VIGIL_ENOTFOUND;
    }
    if (o->type != MSGPACK_OBJECT_BOOLEAN) {
        return VIGIL_ETYPE;
    }
    *out = o->via.boolean;
    return 0;
}

enum vigil_field_type vigil_msgpack_type(const msgpack_object *o)
{
    if (!o) {
        return VIGIL_FIELD_ABSENT;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return VIGIL_FIELD_NIL;
    case MSGPACK_OBJECT_BOOLEAN:
        return VIGIL_FIELD_BOOL;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return VIGIL_FIELD_UINT;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return VIGIL_FIELD_INT;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return VIGIL_FIELD_DOUBLE;
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN:
        return VIGIL_FIELD_STR;
    case MSGPACK_OBJECT_ARRAY:
        return VIGIL_FIELD_LIST;
    case MSGPACK_OBJECT_MAP:
        return VIGIL_FIELD_MAP;
    default:
        return VIGIL_FIELD_OTHER;
    }
}

size_t vigil_msgpack_len(const msgpack_object *o)
{
    if (!o) {
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_MAP) {
        return o->via.map.size;
    }
    return o->type == MSGPACK_OBJECT_ARRAY ? o->via.array.size : 0;
}

const msgpack_object *vigil_msgpack_at(const msgpack_object *o, size_t i, const char **key,
                                       size_t *key_len)
{
    const char *k = NULL;
    size_t kl = 0;
    const msgpack_object *item = NULL;
    if (i < vigil_msgpack_len(o)) {
        if (o->type == MSGPACK_OBJECT_MAP) {
            if (vigil_msgpack_str(&o->via.map.ptr[i].key, &k, &kl) != 0) {
                k = NULL;
                kl = 0;
            }
            item = &o->via.map.ptr[i].val;
        } else {
            item = &o->via.array.ptr[i];
        }
    }
    if (key) {
        *key = k;
    }
    if (key_len) {
        *key_len = kl;
    }
    return item;
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

static int mp_well_formed(const unsigned char *p, const unsigned char *end);
static int mp_object_ok(const unsigned char **pp, const unsigned char *end, int outer);

/* Plausible = not refused for its counts or lengths: nesting too deep and
 * bytes after the object are msgpack_unpack's to refuse. */
bool vigil_msgpack_plausible(const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    return mp_well_formed(p, p + len) != 0;
}

static int decode(struct vigil_event_view *v, const char *topic, size_t topic_len, const char *body,
                  size_t body_len, msgpack_zone *zone, bool checked, const char **reason);

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
    int wf = mp_object_ok(&p, end, 0);
    return wf == 1 && p != end ? -1 : wf;
}

/* The same judgement of the one object at *pp, which sits inside `outer`
 * open non-empty containers: 1, 0 or -2 as above, and *pp moved past it
 * when 1 (bytes after it are the caller's). */
static int mp_object_ok(const unsigned char **pp, const unsigned char *end, int outer)
{
    uint64_t left[UNPACK_DEPTH]; /* items still due in each open container */
    int top = outer;
    bool deep = false;
    uint64_t pending = 1;
    const unsigned char *p = *pp;
    while (pending > 0) {
        struct mp_item o;
        if (!mp_read(&p, end, &o)) {
            return 0; /* cut short, or the unused byte 0xc1 */
        }
        bool container = o.kind == MP_ARRAY || o.kind == MP_MAP;
        uint64_t items = o.kind == MP_MAP ? 2 * o.u : container ? o.u : 0;
        if (items > (uint64_t)(end - p)) {
            return 0; /* each item takes a byte at least */
        }
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
        while (top > outer && --left[top - 1] == 0) {
            top--; /* the object completes its container, and maybe more */
        }
    }
    if (deep) {
        return -2;
    }
    *pp = p;
    return 1;
}

enum flat_want { WANT_STR, WANT_NUMBER, WANT_ANY };

/* The envelope walk reads the bytes object by object. After pass 1
 * (`checked`) it trusts them to be well formed; alone, it judges nesting and
 * declared counts itself as pass 1 would. */

/* A map whose keys are strings and whose values are what `want` says. */
static bool mp_flat_map(const unsigned char **pp, const unsigned char *end, enum flat_want want,
                        bool checked)
{
    struct mp_item m, k, v;
    if (!mp_read(pp, end, &m) || m.kind != MP_MAP) {
        return false;
    }
    for (uint64_t i = 0; i < m.u; i++) {
        if (!mp_read(pp, end, &k) || !mp_is_str(&k)) {
            return false;
        }
        const unsigned char *val = *pp;
        if (!mp_read(pp, end, &v)) {
            return false;
        }
        if (want == WANT_STR && !mp_is_str(&v)) {
            return false;
        }
        if (want == WANT_NUMBER && v.kind != MP_UINT && v.kind != MP_NEG && v.kind != MP_F32 &&
            v.kind != MP_F64) {
            return false;
        }
        if (v.kind == MP_MAP || v.kind == MP_ARRAY) {
            *pp = val; /* inside the body and this map: two open containers */
            if (checked ? !mp_skip(pp, end) : mp_object_ok(pp, end, 2) != 1) {
                return false;
            }
        }
    }
    return true;
}

/* Where the walk found labels and values (NULL: absent). */
struct envelope_at {
    const unsigned char *labels, *values;
};

/* The body's map and its envelope: 0, or VIGIL_EMALFORMED with *reason. Not
 * `checked`, a failure's reason may not be the one the two passes give (a
 * later byte may make the body implausible first): the caller then asks
 * them. `at` (may be NULL) learns where labels and values are. */
static int check_envelope(const unsigned char *p, const unsigned char *end, bool checked,
                          struct vigil_event_head *out, struct envelope_at *at, const char **reason)
{
    struct mp_item root;
    if (!mp_read(&p, end, &root) || root.kind != MP_MAP ||
        (!checked && 2 * root.u > (uint64_t)(end - p))) {
        *reason = "body is not a msgpack map";
        return VIGIL_EMALFORMED;
    }
    enum { TS = 1, HOST = 2, SOURCE = 4, SEQ = 8, LABELS = 16, VALUES = 32, ATTRS = 64 };
    unsigned seen = 0;
    for (uint64_t i = 0; i < root.u; i++) {
        struct mp_item k, v;
        if (!mp_read(&p, end, &k) || !mp_is_str(&k)) {
            *reason = "body has a key that is not a string";
            return VIGIL_EMALFORMED;
        }
        unsigned bit = 0;
        bool ok = true;
        const char *ks = k.s;
        size_t kn = k.n;
        if (kn == 2 && memcmp(ks, "ts", 2) == 0) {
            bit = TS;
            ok = mp_read(&p, end, &v) && v.kind == MP_UINT;
            out->ts = ok ? v.u : 0;
            *reason = "ts is not an unsigned integer";
        } else if (kn == 4 && memcmp(ks, "host", 4) == 0) {
            bit = HOST;
            ok = mp_read(&p, end, &v) && mp_is_str(&v);
            out->host = ok ? v.s : NULL;
            out->host_len = ok ? v.n : 0;
            *reason = "host is not a string";
        } else if (kn == 6 && memcmp(ks, "source", 6) == 0) {
            bit = SOURCE;
            ok = mp_read(&p, end, &v) && mp_is_str(&v);
            out->source = ok ? v.s : NULL;
            out->source_len = ok ? v.n : 0;
            *reason = "source is not a string";
        } else if (kn == 3 && memcmp(ks, "seq", 3) == 0) {
            bit = SEQ;
            ok = mp_read(&p, end, &v) && v.kind == MP_UINT;
            out->seq = ok ? v.u : 0;
            *reason = "seq is not an unsigned integer";
        } else if (kn == 6 && memcmp(ks, "labels", 6) == 0) {
            bit = LABELS;
            if (at) {
                at->labels = p;
            }
            ok = mp_flat_map(&p, end, WANT_STR, checked);
            *reason = "labels is not a map of strings to strings";
        } else if (kn == 6 && memcmp(ks, "values", 6) == 0) {
            bit = VALUES;
            if (at) {
                at->values = p;
            }
            ok = mp_flat_map(&p, end, WANT_NUMBER, checked);
            *reason = "values is not a map of strings to numbers";
        } else if (kn == 5 && memcmp(ks, "attrs", 5) == 0) {
            bit = ATTRS;
            ok = mp_flat_map(&p, end, WANT_ANY, checked);
            *reason = "attrs is not a map with string keys";
        } else {
            /* inside the body's map: one open container */
            ok = checked ? mp_skip(&p, end) : mp_object_ok(&p, end, 1) == 1;
            *reason = "body is not valid msgpack";
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
    if (p != end) {
        *reason = "bytes after the msgpack body";
        return VIGIL_EMALFORMED;
    }
    *reason = NULL;
    return 0;
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
    /* An event that passes is judged in one walk; one that fails is judged
     * again in the two passes, which give the reason decoding would. */
    if (check_envelope(p, end, false, out, NULL, reason) == 0) {
        return 0;
    }
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
    return check_envelope(p, end, true, out, NULL, reason);
}

int vigil_event_decode(struct vigil_event_view *v, const char *topic, size_t topic_len,
                       const char *body, size_t body_len, size_t max_body, msgpack_zone *zone,
                       const char **reason)
{
    if (!vigil_topic_valid(topic, topic_len)) {
        memset(v, 0, sizeof *v);
        *reason = "topic is not 1-255 bytes of printable UTF-8 without spaces";
        return VIGIL_EMALFORMED;
    }
    if (body_len > max_body) {
        memset(v, 0, sizeof *v);
        *reason = "body larger than bus.max_event_bytes";
        return VIGIL_ETOOBIG;
    }
    if (!vigil_msgpack_plausible(body, body_len)) {
        memset(v, 0, sizeof *v);
        *reason = "body is not valid msgpack (or declares more items than it has bytes)";
        return VIGIL_EMALFORMED;
    }
    return decode(v, topic, topic_len, body, body_len, zone, false, reason);
}

int vigil_event_decode_trusted(struct vigil_event_view *v, const char *topic, size_t topic_len,
                               const char *body, size_t body_len, msgpack_zone *zone,
                               const char **reason)
{
    return decode(v, topic, topic_len, body, body_len, zone, true, reason);
}

int vigil_event_read_trusted(struct vigil_event_view *v, const char *topic, size_t topic_len,
                             const char *body, size_t body_len, msgpack_zone *zone,
                             const char **reason)
{
    memset(v, 0, sizeof *v);
    const unsigned char *p = (const unsigned char *)body;
    struct vigil_event_head h;
    struct envelope_at at = {NULL, NULL};
    /* `checked`: the bus judged these bytes; the walk still bounds every
     * read, so bytes it did not judge cost an error, not a crash. */
    int rc = check_envelope(p, p + body_len, true, &h, &at, reason);
    if (rc != 0) {
        return rc;
    }
    v->topic = topic;
    v->topic_len = topic_len;
    v->body = body;
    v->body_len = body_len;
    v->ts = h.ts;
    v->seq = h.seq;
    v->host = h.host;
    v->host_len = h.host_len;
    v->source = h.source;
    v->source_len = h.source_len;
    v->tree_zone = zone;
    v->labels_raw = (const char *)at.labels;
    v->values_raw = (const char *)at.values;
    v->has_raw = true;
    return 0;
}

int vigil_event_tree(const struct vigil_event_view *cv)
{
    /* Writable: see event.h (whoever set tree_zone lent the view). */
    struct vigil_event_view *v = (struct vigil_event_view *)cv;
    if (!v->tree_zone) {
        return 0;
    }
    struct vigil_event_view d;
    const char *why;
    int rc = decode(&d, v->topic, v->topic_len, v->body, v->body_len, v->tree_zone, true, &why);
    v->tree_zone = NULL;
    if (rc == 0) {
        v->root = d.root;
        v->labels = d.labels;
        v->values = d.values;
        v->attrs = d.attrs;
    }
    return rc;
}

/* ---- Unpacking what the checker passed ------------------------------------- *
 *
 * msgpack_unpack's objects for bytes vigil_event_check accepted: the same
 * tree (types, values, strings pointing into the bytes, arrays in the zone),
 * built by a plain descent instead of msgpack-c's general state machine,
 * which was a large share of the rules thread. Reads stay bounds-checked and the
 * nesting bounded, so bytes that were not checked cost an error, not a
 * crash. */

/* One object at *pp into *o; false when the bytes are not one. */
static bool tu_obj(const unsigned char **pp, const unsigned char *end, msgpack_zone *z,
                   msgpack_object *o, int depth)
{
    struct mp_item m;
    if (!mp_read(pp, end, &m)) {
        return false;
    }
    switch (m.kind) {
    case MP_NIL:
        o->type = MSGPACK_OBJECT_NIL;
        return true;
    case MP_BOOL:
        o->type = MSGPACK_OBJECT_BOOLEAN;
        o->via.boolean = m.u != 0;
        return true;
    case MP_UINT:
        o->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
        o->via.u64 = m.u;
        return true;
    case MP_NEG:
        o->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
        o->via.i64 = m.i;
        return true;
    case MP_F32:
    case MP_F64:
        o->type = m.kind == MP_F32 ? MSGPACK_OBJECT_FLOAT32 : MSGPACK_OBJECT_FLOAT64;
        o->via.f64 = m.f;
        return true;
    case MP_STR:
    case MP_BIN:
        o->type = m.kind == MP_STR ? MSGPACK_OBJECT_STR : MSGPACK_OBJECT_BIN;
        o->via.str.size = m.n; /* bin has the same layout */
        o->via.str.ptr = m.s;
        return true;
    case MP_EXT:
        o->type = MSGPACK_OBJECT_EXT;
        o->via.ext.type = m.ext_type;
        o->via.ext.size = m.n;
        o->via.ext.ptr = m.s;
        return true;
    case MP_ARRAY:
    case MP_MAP:
        break;
    }
    /* As msgpack-c: no container, empty or not, inside UNPACK_DEPTH others;
     * and each item takes a byte at least. */
    if (depth >= UNPACK_DEPTH || m.u > (uint64_t)(end - *pp)) {
        return false;
    }
    uint32_t n = (uint32_t)m.u;
    if (m.kind == MP_MAP) {
        o->type = MSGPACK_OBJECT_MAP;
        o->via.map.size = n;
        o->via.map.ptr = msgpack_zone_malloc(z, (size_t)n * sizeof(msgpack_object_kv));
        if (!o->via.map.ptr && n) {
            return false;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (!tu_obj(pp, end, z, &o->via.map.ptr[i].key, depth + 1) ||
                !tu_obj(pp, end, z, &o->via.map.ptr[i].val, depth + 1)) {
                return false;
            }
        }
        return true;
    }
    o->type = MSGPACK_OBJECT_ARRAY;
    o->via.array.size = n;
    o->via.array.ptr = msgpack_zone_malloc(z, (size_t)n * sizeof(msgpack_object));
    if (!o->via.array.ptr && n) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!tu_obj(pp, end, z, &o->via.array.ptr[i], depth + 1)) {
            return false;
        }
    }
    return true;
}

static int decode(struct vigil_event_view *v, const char *topic, size_t topic_len, const char *body,
                  size_t body_len, msgpack_zone *zone, bool checked, const char **reason)
{
    memset(v, 0, sizeof *v);
    msgpack_unpack_return r;
    if (checked) {
        const unsigned char *b = (const unsigned char *)body, *e = b + body_len;
        r = !tu_obj(&b, e, zone, &v->root, 0) ? MSGPACK_UNPACK_PARSE_ERROR
            : b != e                          ? MSGPACK_UNPACK_EXTRA_BYTES
                                              : MSGPACK_UNPACK_SUCCESS;
    } else {
        size_t off = 0;
        r = msgpack_unpack(body, body_len, &off, zone, &v->root);
    }
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
    vigil_event_tree(v);
    const msgpack_object *cur = &v->root;
    const char *p = path;
    if (!*p) {
        return cur;
    }
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

/* libFuzzer target for pipeline/event.c, the checker every bus message goes
 * through, and pipeline/record.c, the records the bus batches events in. The
 * input is tried five ways: split into topic and body (first byte = topic
 * length), whole as a body under topic "t", as extra keys after a valid
 * envelope, as a script of builder calls whose finished body the checker
 * must accept (and read lazily as the rules stage does, from its topic's
 * layout too), and as a batch frame of records (a
 * producer's batch on the publish endpoint, a source's, the bus's to its stages), each checked. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "fuzz.h"
#include "layout.h"
#include "record.h"

#define MAX_BODY (64 * 1024)

static msgpack_zone *zone(void)
{
    static msgpack_zone z;
    static bool ready;
    if (!ready) {
        CHECK(msgpack_zone_init(&z, 64 * 1024));
        ready = true;
    }
    return &z;
}

static void check_str(const msgpack_object *o, const char *s, size_t n)
{
    const char *got;
    size_t len;
    CHECK(vigil_msgpack_str(o, &got, &len) == 0);
    CHECK(got == s && len == n);
}

/* What an accepted view promises to its readers. */
static void check_view(const struct vigil_event_view *v, const char *topic, size_t topic_len,
                       const char *body, size_t body_len, const uint8_t *path_src, size_t path_n)
{
    uint64_t u;
    double d;
    CHECK(vigil_topic_valid(topic, topic_len));
    CHECK(v->topic == topic && v->topic_len == topic_len);
    CHECK(v->body == body && v->body_len == body_len && body_len <= MAX_BODY);
    CHECK(v->root.type == MSGPACK_OBJECT_MAP);
    check_str(vigil_event_get(v, "host"), v->host, v->host_len);
    check_str(vigil_event_get(v, "source"), v->source, v->source_len);
    CHECK(vigil_msgpack_u64(vigil_event_get(v, "ts"), &u) == 0 && u == v->ts);
    CHECK(vigil_msgpack_u64(vigil_event_get(v, "seq"), &u) == 0 && u == v->seq);
    CHECK(vigil_event_get(v, "labels") == v->labels);
    CHECK(vigil_event_get(v, "values") == v->values);
    CHECK(vigil_event_get(v, "attrs") == v->attrs);
    if (v->labels) {
        for (uint32_t i = 0; i < v->labels->via.map.size; i++) {
            const char *k;
            size_t kn;
            const char *s;
            size_t sn;
            CHECK(vigil_msgpack_str(&v->labels->via.map.ptr[i].key, &k, &kn) == 0);
            CHECK(vigil_msgpack_str(&v->labels->via.map.ptr[i].val, &s, &sn) == 0);
            CHECK(vigil_msgpack_map_get(v->labels, k, kn));
        }
    }
    if (v->values) {
        for (uint32_t i = 0; i < v->values->via.map.size; i++) {
            CHECK(vigil_msgpack_double(&v->values->via.map.ptr[i].val, &d) == 0);
        }
    }
    if (v->attrs) {
        CHECK(v->attrs->type == MSGPACK_OBJECT_MAP);
    }
    static const char *const paths[] = {"labels.vm",
                                        "values.cpu_usage_pct",
                                        "attrs.ns.net",
                                        "attrs.a.b.c.d.e.f.g.h.i",
                                        "",
                                        ".",
                                        "..",
                                        "host.x",
                                        "labels.",
                                        ".labels",
                                        "a..b",
                                        "ts.x.y"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        const msgpack_object *o = vigil_event_get(v, paths[i]);
        if (o) {
            const char *s;
            size_t sn;
            (void)vigil_msgpack_str(o, &s, &sn);
            (void)vigil_msgpack_double(o, &d);
            (void)vigil_msgpack_u64(o, &u);
        }
    }
    /* And a path made of input bytes. */
    char path[64];
    size_t n = path_n < sizeof path - 1 ? path_n : sizeof path - 1;
    memcpy(path, path_src, n);
    path[n] = '\0';
    (void)vigil_event_get(v, path);
}

/* The same tree: types, values (doubles by their bits), strings at the
 * same addresses. */
static bool same_tree(const msgpack_object *a, const msgpack_object *b)
{
    if (a->type != b->type) {
        return false;
    }
    switch (a->type) {
    case MSGPACK_OBJECT_NIL:
        return true;
    case MSGPACK_OBJECT_BOOLEAN:
        return a->via.boolean == b->via.boolean;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return a->via.u64 == b->via.u64;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return memcmp(&a->via.f64, &b->via.f64, sizeof a->via.f64) == 0;
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN:
        /* (msgpack-c leaves an earlier pointer in an empty string) */
        return a->via.str.size == b->via.str.size &&
               (a->via.str.size == 0 || a->via.str.ptr == b->via.str.ptr);
    case MSGPACK_OBJECT_EXT:
        return a->via.ext.type == b->via.ext.type && a->via.ext.size == b->via.ext.size &&
               (a->via.ext.size == 0 || a->via.ext.ptr == b->via.ext.ptr);
    case MSGPACK_OBJECT_ARRAY:
        if (a->via.array.size != b->via.array.size) {
            return false;
        }
        for (uint32_t i = 0; i < a->via.array.size; i++) {
            if (!same_tree(&a->via.array.ptr[i], &b->via.array.ptr[i])) {
                return false;
            }
        }
        return true;
    case MSGPACK_OBJECT_MAP:
        if (a->via.map.size != b->via.map.size) {
            return false;
        }
        for (uint32_t i = 0; i < a->via.map.size; i++) {
            if (!same_tree(&a->via.map.ptr[i].key, &b->via.map.ptr[i].key) ||
                !same_tree(&a->via.map.ptr[i].val, &b->via.map.ptr[i].val)) {
                return false;
            }
        }
        return true;
    }
    return false;
}

static void decode_one(const char *topic, size_t topic_len, const char *body, size_t body_len)
{
    struct vigil_event_view v;
    const char *reason = NULL;
    msgpack_zone_clear(zone());
    int rc = vigil_event_decode(&v, topic, topic_len, body, body_len, MAX_BODY, zone(), &reason);
    /* The bus's allocation-free checker must agree with the decoder. */
    struct vigil_event_head head;
    const char *why = NULL;
    int crc = vigil_event_check(topic, topic_len, body, body_len, MAX_BODY, &head, &why);
    if (crc != rc || (rc != 0 && strcmp(why, reason) != 0)) {
        fprintf(stderr, "decode: %d (%s), check: %d (%s)\n", rc, rc ? reason : "", crc,
                crc ? why : "");
        abort();
    }
    if (rc == 0) {
        CHECK(head.ts == v.ts && head.seq == v.seq);
        CHECK(head.host == v.host && head.host_len == v.host_len);
        CHECK(head.source == v.source && head.source_len == v.source_len);
        check_view(&v, topic, topic_len, body, body_len, (const uint8_t *)body, body_len);
        /* The stages after the bus decode with their own unpacker: the
         * very tree msgpack_unpack made. */
        struct vigil_event_view t;
        CHECK(vigil_event_decode_trusted(&t, topic, topic_len, body, body_len, zone(), &why) == 0);
        CHECK(same_tree(&t.root, &v.root));
        CHECK(!t.labels ? !v.labels : same_tree(t.labels, v.labels));
        CHECK(t.ts == v.ts && t.seq == v.seq && t.host == v.host && t.source == v.source);
        /* The rules stage reads the envelope first and the tree on demand:
         * the same envelope, then the same tree. */
        struct vigil_event_view l;
        CHECK(vigil_event_read_trusted(&l, topic, topic_len, body, body_len, zone(), &why) == 0);
        CHECK(l.ts == v.ts && l.seq == v.seq && l.host == v.host && l.source == v.source);
        CHECK(l.host_len == v.host_len && l.source_len == v.source_len);
        CHECK(!l.labels && !l.values && !l.attrs && l.has_raw);
        CHECK(!l.labels_raw == !v.labels && !l.values_raw == !v.values);
        CHECK(vigil_event_tree(&l) == 0);
        CHECK(same_tree(&l.root, &v.root));
        CHECK(!l.labels ? !v.labels : same_tree(l.labels, v.labels));
        CHECK(!l.values ? !v.values : same_tree(l.values, v.values));
        CHECK(!l.attrs ? !v.attrs : same_tree(l.attrs, v.attrs));
        /* The rules read events laid out as their topic's last ones from
         * the offsets learned (one layout over all inputs: the fuzzer's
         * next input often differs only inside strings and numbers). */
        static struct vigil_layout lay;
        for (int twice = 0; twice < 2; twice++) {
            struct vigil_event_view o;
            int lrc = vigil__layout_read(&lay, &o, topic, topic_len, body, body_len, zone(), &why);
            CHECK(lrc == 0 || lrc == 1);
            CHECK(o.ts == v.ts && o.seq == v.seq && o.host == v.host && o.source == v.source);
            CHECK(o.host_len == v.host_len && o.source_len == v.source_len && o.has_raw);
            CHECK(o.labels_raw == l.labels_raw && o.values_raw == l.values_raw);
            CHECK(o.body == body && o.body_len == body_len && o.topic == topic);
        }
    } else {
        CHECK(rc == VIGIL_EMALFORMED || rc == VIGIL_ETOOBIG);
        CHECK(reason && reason[0] != '\0');
    }
    msgpack_zone_clear(zone());
}

/* A valid envelope followed by (first byte % 8) more key/value pairs taken
 * from the input: the fuzzer seldom spells four envelope keys by itself, and
 * the accepted path deserves as much attention as the refusals. */
static void decode_enveloped(const uint8_t *d, size_t n)
{
    static const char env[] = "\xa2ts\x01\xa4host\xa1h\xa6source\xa1s\xa3seq\x02";
    static char body[MAX_BODY];
    if (n == 0 || n - 1 > sizeof body - sizeof env) {
        return;
    }
    body[0] = (char)(0x80 | (4 + d[0] % 8)); /* fixmap */
    memcpy(body + 1, env, sizeof env - 1);
    memcpy(body + sizeof env, d + 1, n - 1);
    decode_one("t", 1, body, sizeof env + n - 1);
}

/* The input as a script of builder calls. Whatever finish() accepts, the
 * checker must accept, with the counts the script implies. */
static void build_one(const uint8_t *d, size_t n)
{
    static struct vigil_event_builder b;
    static bool ready;
    if (!ready) {
        vigil_event_builder_init(&b);
        ready = true;
    }
    static const char *const topics[] = {"kvm.vm", "a", "x y", "", "caf\xc3\xa9", "\xc3"};
    static const char *const keys[] = {"vm", "pid", "ns", "net", "", "k\xc3\xa9", "a.b"};
    size_t i = 0;
    vigil_event_begin(&b, topics[n ? d[i++] % 6 : 0]);
    uint32_t nlabels = 0, nvalues = 0, top_attrs = 0;
    int depth = 0;
    while (i + 1 < n && i < 512) {
        uint8_t op = d[i++];
        uint8_t arg = d[i++];
        const char *key = arg % 17 == 0 ? NULL : keys[arg % 7];
        switch (op % 12) {
        case 0:
            vigil_event_add_label(&b, key, keys[(arg >> 3) % 7]);
            nlabels++;
            break;
        case 1:
            vigil_event_add_value(&b, key, (double)arg / 3.0);
            nvalues++;
            break;
        case 2:
            vigil_event_add_value_u64(&b, key, (uint64_t)arg << 40);
            nvalues++;
            break;
        case 3:
            vigil_event_add_attr_str(&b, key, keys[(arg >> 2) % 7]);
            break;
        case 4:
            vigil_event_add_attr_i64(&b, key, -(int64_t)arg * 1000003);
            break;
        case 5:
            vigil_event_add_attr_f64(&b, key, arg * 0.5);
            break;
        case 6:
            vigil_event_add_attr_bool(&b, key, arg & 1);
            break;
        case 7:
            vigil_event_attr_map_begin(&b, key);
            break;
        case 8:
            vigil_event_attr_list_begin(&b, key);
            break;
        case 9:
            vigil_event_attr_end(&b);
            break;
        case 10:
            vigil_event_set_ts(&b, (uint64_t)arg * 1000000007u);
            break;
        default:
            break;
        }
        if (op % 12 >= 3 && op % 12 <= 8 && depth == 0) {
            top_attrs++;
        }
        if (op % 12 == 7 || op % 12 == 8) {
            depth++;
        } else if (op % 12 == 9) {
            depth--;
        }
    }
    const char *body;
    size_t len;
    int rc = vigil_event_finish(&b, "host", "fuzz/f", n, &body, &len);
    if (rc != 0) {
        CHECK(rc == VIGIL_EMALFORMED && b.bad && b.why);
        return;
    }
    CHECK(!b.bad && !b.why && depth == 0);
    struct vigil_event_view v;
    const char *reason = NULL;
    msgpack_zone_clear(zone());
    rc = vigil_event_decode(&v, b.topic, b.topic_len, body, len, SIZE_MAX, zone(), &reason);
    if (rc != 0) {
        fprintf(stderr, "the checker refused what the builder made: %s\n", reason);
        abort();
    }
    check_view(&v, b.topic, b.topic_len, body, len, d, n);
    CHECK(v.seq == n);
    CHECK(v.labels && v.labels->via.map.size == nlabels);
    CHECK(v.values && v.values->via.map.size == nvalues);
    CHECK(top_attrs ? v.attrs && v.attrs->via.map.size == top_attrs : !v.attrs);
    msgpack_zone_clear(zone());
}

/* Takes the oldest record of rb, which must be the next one `want` walks. */
static void pop_same(struct vigil_record_buf *rb, struct vigil_record_iter *want)
{
    struct vigil_record got, w;
    CHECK(vigil_record_front(rb, &got));
    CHECK(vigil_record_next(want, &w));
    CHECK(got.topic_len == w.topic_len && got.body_len == w.body_len);
    CHECK(memcmp(got.topic, w.topic, w.topic_len) == 0);
    CHECK(memcmp(got.body, w.body, w.body_len) == 0);
    vigil_record_pop(rb);
}

/* The input as a batch frame, walked as the bus walks a producer's or a
 * source's batch and as a stage's reader walks the bus's: every record lies
 * inside the input, a walk that stops short says so, and the records,
 * appended to a small bounded buffer that is consumed from the front
 * whenever a bound says no, come back whole and in order. An empty record
 * topic is the frame's topic, "t". */
static void walk_batch(const uint8_t *d, size_t n)
{
    static struct vigil_record_buf rb;
    static bool ready;
    if (!ready) {
        vigil_record_init(&rb, 8, 512, VIGIL_RECORD_ONE_ANY_SIZE);
        ready = true;
    }
    vigil_record_clear(&rb);
    const char *at = (const char *)d, *end = (const char *)d + n;
    struct vigil_record_iter it = vigil_record_iter_bytes(d, n);
    struct vigil_record_iter want = it;
    struct vigil_record r;
    while (vigil_record_next(&it, &r)) {
        CHECK(r.topic == at + VIGIL_RECORD_HEAD && r.body == r.topic + r.topic_len);
        CHECK(r.body_len <= (size_t)(end - r.body));
        at = r.body + r.body_len;
        int rc = vigil_record_append(&rb, r.topic, r.topic_len, r.body, r.body_len);
        while (rc == -ENOBUFS) {
            CHECK(vigil_record_count(&rb) > 0);
            pop_same(&rb, &want);
            rc = vigil_record_append(&rb, r.topic, r.topic_len, r.body, r.body_len);
        }
        CHECK(rc == 0);
        CHECK(vigil_record_count(&rb) <= 8);
        CHECK(vigil_record_count(&rb) == 1 || vigil_record_bytes(&rb) <= 512);
        /* As the bus takes a producer's batch (bus.c take_records): each
         * record with its own topic is checked as an event that came
         * alone. */
        decode_one(r.topic_len ? r.topic : "t", r.topic_len ? r.topic_len : 1, r.body, r.body_len);
    }
    CHECK(vigil_record_iter_damaged(&it) == (at != end));
    while (vigil_record_count(&rb)) {
        pop_same(&rb, &want);
    }
    CHECK(!vigil_record_next(&want, &r));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0) {
        size_t l = data[0];
        if (l > size - 1) {
            l = size - 1;
        }
        decode_one((const char *)data + 1, l, (const char *)data + 1 + l, size - 1 - l);
    }
    decode_one("t", 1, (const char *)data, size);
    decode_enveloped(data, size);
    build_one(data, size);
    walk_batch(data, size);
    return 0;
}

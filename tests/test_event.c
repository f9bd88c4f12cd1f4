/* Unit tests for pipeline/event.c: builder -> finish -> decode round trips
 * (envelope, labels, values, nested attrs, dotted paths, builder reuse and
 * misuse), vigil_topic_valid's UTF-8 rules, and every reason the checker
 * gives for refusing a hand-packed body, plus the odd bodies it must accept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "event.h"
#include "log.h"

#define MAX_BODY (64 * 1024)

struct fx {
    struct vigil_event_builder b;
    msgpack_zone zone;
    msgpack_sbuffer sb; /* hand-packed bodies */
    msgpack_packer pk;
    struct vigil_event_view v;
    const char *reason;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f) {
        return -1;
    }
    vigil_event_builder_init(&f->b);
    if (!msgpack_zone_init(&f->zone, 4096)) {
        free(f);
        return -1;
    }
    msgpack_sbuffer_init(&f->sb);
    msgpack_packer_init(&f->pk, &f->sb, msgpack_sbuffer_write);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    vigil_event_builder_fini(&f->b);
    msgpack_zone_destroy(&f->zone);
    msgpack_sbuffer_destroy(&f->sb);
    free(f);
    return 0;
}

/* ------------------------------------------------------------- helpers */

static void pk_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void assert_str(const msgpack_object *o, const char *want)
{
    const char *s = NULL;
    size_t n = 0;
    assert_non_null(o);
    assert_int_equal(vigil_msgpack_str(o, &s, &n), 0);
    assert_int_equal(n, strlen(want));
    if (n) {
        assert_memory_equal(s, want, n);
    }
}

static void assert_sized(const char *s, size_t n, const char *want)
{
    assert_int_equal(n, strlen(want));
    assert_memory_equal(s, want, n);
}

static uint64_t get_u64(const struct vigil_event_view *v, const char *path)
{
    uint64_t u = 0;
    assert_int_equal(vigil_msgpack_u64(vigil_event_get(v, path), &u), 0);
    return u;
}

static double get_double(const struct vigil_event_view *v, const char *path)
{
    double d = 0;
    assert_int_equal(vigil_msgpack_double(vigil_event_get(v, path), &d), 0);
    return d;
}

/* Decodes a body (from the builder or hand-packed); the zone is cleared first. */
static int decode_topic(struct fx *f, const char *topic, const char *body, size_t len, size_t max)
{
    msgpack_zone_clear(&f->zone);
    f->reason = NULL;
    return vigil_event_decode(&f->v, topic, strlen(topic), body, len, max, &f->zone, &f->reason);
}

static int decode_sb(struct fx *f)
{
    return decode_topic(f, "t", f->sb.data, f->sb.size, MAX_BODY);
}

/* Finishes the builder and decodes the body; both must succeed. */
static void finish_decode(struct fx *f, const char *host, const char *source, uint64_t seq)
{
    const char *body = NULL;
    size_t len = 0;
    assert_int_equal(vigil_event_finish(&f->b, host, source, seq, &body, &len), 0);
    assert_non_null(body);
    assert_true(len > 0);
    int rc = decode_topic(f, f->b.topic, body, len, MAX_BODY);
    if (rc != 0) {
        fail_msg("decode refused a built event: %s", f->reason);
    }
}

/* Expects the hand-packed body to be refused with `rc` and a reason naming `why`. */
static void expect_refused(struct fx *f, int rc, const char *why)
{
    int got = decode_sb(f);
    assert_int_equal(got, rc);
    assert_non_null(f->reason);
    if (!strstr(f->reason, why)) {
        fail_msg("reason \"%s\" does not mention \"%s\"", f->reason, why);
    }
}

static void expect_accepted(struct fx *f)
{
    int rc = decode_sb(f);
    if (rc != 0) {
        fail_msg("refused (%d): %s", rc, f->reason ? f->reason : "(no reason)");
    }
}

enum { NO_TS = 1, NO_HOST = 2, NO_SOURCE = 4, NO_SEQ = 8 };

/* Starts a body map: the envelope keys not in `omit`, and room for `extra`
 * more key/value pairs that the caller packs next. */
static void env(struct fx *f, unsigned omit, uint32_t extra)
{
    msgpack_packer *pk = &f->pk;
    uint32_t n = extra;
    for (unsigned bit = 1; bit <= NO_SEQ; bit <<= 1) {
        n += !(omit & bit);
    }
    msgpack_pack_map(pk, n);
    if (!(omit & NO_TS)) {
        pk_str(pk, "ts");
        msgpack_pack_uint64(pk, 1000);
    }
    if (!(omit & NO_HOST)) {
        pk_str(pk, "host");
        pk_str(pk, "h");
    }
    if (!(omit & NO_SOURCE)) {
        pk_str(pk, "source");
        pk_str(pk, "s");
    }
    if (!(omit & NO_SEQ)) {
        pk_str(pk, "seq");
        msgpack_pack_uint64(pk, 7);
    }
}

/* ------------------------------------------------- builder round trips */

static void test_envelope_round_trip(void **state)
{
    struct fx *f = *state;
    vigil_event_begin(&f->b, "kvm.vm");
    vigil_event_set_ts(&f->b, 1700000000123456789ull);
    finish_decode(f, "host-1", "kvm/kvm1", 42);

    assert_sized(f->v.topic, f->v.topic_len, "kvm.vm");
    assert_int_equal(f->v.ts, 1700000000123456789ull);
    assert_int_equal(f->v.seq, 42);
    assert_sized(f->v.host, f->v.host_len, "host-1");
    assert_sized(f->v.source, f->v.source_len, "kvm/kvm1");
    assert_int_equal(f->v.root.type, MSGPACK_OBJECT_MAP);
    /* labels and values are always written (empty), attrs only when used. */
    assert_non_null(f->v.labels);
    assert_int_equal(f->v.labels->via.map.size, 0);
    assert_non_null(f->v.values);
    assert_int_equal(f->v.values->via.map.size, 0);
    assert_null(f->v.attrs);
    assert_int_equal(f->v.root.via.map.size, 6);

    assert_str(vigil_event_get(&f->v, "host"), "host-1");
    assert_str(vigil_event_get(&f->v, "source"), "kvm/kvm1");
    assert_int_equal(get_u64(&f->v, "ts"), 1700000000123456789ull);
    assert_int_equal(get_u64(&f->v, "seq"), 42);
}

static void test_envelope_extremes(void **state)
{
    struct fx *f = *state;
    vigil_event_begin(&f->b, "a");
    vigil_event_set_ts(&f->b, 0); /* an explicit 0 is kept, not replaced by now */
    finish_decode(f, "", "", UINT64_MAX);
    assert_int_equal(f->v.ts, 0);
    assert_int_equal(f->v.seq, UINT64_MAX);
    assert_int_equal(f->v.host_len, 0);
    assert_int_equal(f->v.source_len, 0);

    /* NULL host/source are written as empty strings, not refused. */
    vigil_event_begin(&f->b, "a");
    finish_decode(f, NULL, NULL, 0);
    assert_int_equal(f->v.host_len, 0);
    assert_int_equal(f->v.source_len, 0);
    assert_int_equal(f->v.seq, 0);
}

static void test_ts_defaults_to_now(void **state)
{
    struct fx *f = *state;
    vigil_event_begin(&f->b, "system.stats");
    uint64_t before = vigil_now_ns();
    finish_decode(f, "h", "s", 1);
    uint64_t after = vigil_now_ns();
    assert_in_range(f->v.ts, before, after);
}

static void test_labels_and_values(void **state)
{
    struct fx *f = *state;
    vigil_event_begin(&f->b, "cgroup.stats");
    vigil_event_add_label(&f->b, "vm", "web1");
    vigil_event_add_label(&f->b, "cgroup", "/sys/fs/cgroup/machine.slice/x");
    vigil_event_add_label(&f->b, "empty", "");
    vigil_event_add_label(&f->b, "null", NULL);
    vigil_event_add_value(&f->b, "cpu_usage_pct", 12.5);
    vigil_event_add_value(&f->b, "neg", -3.25);
    vigil_event_add_value(&f->b, "zero", 0.0);
    vigil_event_add_value_u64(&f->b, "exits_total", UINT64_MAX);
    vigil_event_add_value_u64(&f->b, "small", 3);
    finish_decode(f, "h", "cgroups/c1", 9);

    assert_int_equal(f->v.labels->via.map.size, 4);
    assert_int_equal(f->v.values->via.map.size, 5);
    assert_str(vigil_event_get(&f->v, "labels.vm"), "web1");
    assert_str(vigil_event_get(&f->v, "labels.cgroup"), "/sys/fs/cgroup/machine.slice/x");
    assert_str(vigil_event_get(&f->v, "labels.empty"), "");
    assert_str(vigil_event_get(&f->v, "labels.null"), "");
    assert_null(vigil_event_get(&f->v, "labels.absent"));

    assert_true(get_double(&f->v, "values.cpu_usage_pct") == 12.5);
    assert_true(get_double(&f->v, "values.neg") == -3.25);
    assert_true(get_double(&f->v, "values.zero") == 0.0);
    assert_int_equal(vigil_event_get(&f->v, "values.cpu_usage_pct")->type, MSGPACK_OBJECT_FLOAT64);
    /* u64 values stay exact integers. */
    assert_int_equal(get_u64(&f->v, "values.exits_total"), UINT64_MAX);
    assert_int_equal(get_u64(&f->v, "values.small"), 3);
    assert_true(get_double(&f->v, "values.small") == 3.0);
    uint64_t u;
    assert_int_equal(vigil_msgpack_u64(vigil_event_get(&f->v, "values.neg"), &u), VIGIL_ETYPE);
    assert_int_equal(vigil_msgpack_u64(vigil_event_get(&f->v, "values.nope"), &u), VIGIL_ENOTFOUND);
}

/* attrs: every scalar kind, and map-in-list-in-map. */
static void test_attrs_every_kind(void **state)
{
    struct fx *f = *state;
    struct vigil_event_builder *b = &f->b;
    vigil_event_begin(b, "cgroup.ns");
    vigil_event_add_attr_str(b, "comm", "qemu-system-x86");
    vigil_event_add_attr_i64(b, "neg", -42);
    vigil_event_add_attr_i64(b, "min", INT64_MIN);
    vigil_event_add_attr_i64(b, "max", INT64_MAX);
    vigil_event_add_attr_f64(b, "ratio", 0.125);
    vigil_event_add_attr_bool(b, "yes", true);
    vigil_event_add_attr_bool(b, "no", false);
    vigil_event_attr_map_begin(b, "ns");
    vigil_event_add_attr_str(b, "net", "net:[4026531840]");
    vigil_event_add_attr_i64(b, "pid", 4026531836);
    vigil_event_attr_list_begin(b, "ids");
    vigil_event_add_attr_i64(b, NULL, 1);
    vigil_event_add_attr_str(b, NULL, "two");
    vigil_event_attr_map_begin(b, NULL); /* map in list in map */
    vigil_event_add_attr_bool(b, "deep", true);
    vigil_event_add_attr_f64(b, "f", -1.5);
    vigil_event_attr_end(b);
    vigil_event_attr_list_begin(b, NULL); /* empty list in a list */
    vigil_event_attr_end(b);
    vigil_event_attr_end(b); /* ids */
    vigil_event_attr_map_begin(b, "empty");
    vigil_event_attr_end(b);
    vigil_event_attr_end(b); /* ns */
    vigil_event_add_attr_str(b, "after", "x");
    finish_decode(f, "h", "s", 1);

    assert_non_null(f->v.attrs);
    assert_int_equal(f->v.attrs->via.map.size, 9);
    assert_int_equal(f->v.root.via.map.size, 7);
    assert_str(vigil_event_get(&f->v, "attrs.comm"), "qemu-system-x86");
    const msgpack_object *o = vigil_event_get(&f->v, "attrs.neg");
    assert_non_null(o);
    assert_int_equal(o->type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    assert_int_equal(o->via.i64, -42);
    o = vigil_event_get(&f->v, "attrs.min");
    assert_non_null(o);
    assert_true(o->via.i64 == INT64_MIN);
    assert_int_equal(get_u64(&f->v, "attrs.max"), (uint64_t)INT64_MAX);
    assert_true(get_double(&f->v, "attrs.ratio") == 0.125);
    o = vigil_event_get(&f->v, "attrs.yes");
    assert_non_null(o);
    assert_int_equal(o->type, MSGPACK_OBJECT_BOOLEAN);
    assert_true(o->via.boolean);
    o = vigil_event_get(&f->v, "attrs.no");
    assert_non_null(o);
    assert_int_equal(o->type, MSGPACK_OBJECT_BOOLEAN);
    assert_false(o->via.boolean);

    const msgpack_object *ns = vigil_event_get(&f->v, "attrs.ns");
    assert_non_null(ns);
    assert_int_equal(ns->type, MSGPACK_OBJECT_MAP);
    assert_int_equal(ns->via.map.size, 4);
    assert_str(vigil_event_get(&f->v, "attrs.ns.net"), "net:[4026531840]");
    assert_int_equal(get_u64(&f->v, "attrs.ns.pid"), 4026531836u);
    const msgpack_object *ids = vigil_event_get(&f->v, "attrs.ns.ids");
    assert_non_null(ids);
    assert_int_equal(ids->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(ids->via.array.size, 4);
    assert_int_equal(ids->via.array.ptr[0].via.u64, 1);
    assert_str(&ids->via.array.ptr[1], "two");
    const msgpack_object *inner = &ids->via.array.ptr[2];
    assert_int_equal(inner->type, MSGPACK_OBJECT_MAP);
    assert_int_equal(inner->via.map.size, 2);
    const msgpack_object *deep = vigil_msgpack_map_get(inner, "deep", 4);
    assert_non_null(deep);
    assert_true(deep->type == MSGPACK_OBJECT_BOOLEAN && deep->via.boolean);
    double d = 0;
    assert_int_equal(vigil_msgpack_double(vigil_msgpack_map_get(inner, "f", 1), &d), 0);
    assert_true(d == -1.5);
    assert_int_equal(ids->via.array.ptr[3].type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(ids->via.array.ptr[3].via.array.size, 0);
    o = vigil_event_get(&f->v, "attrs.ns.empty");
    assert_non_null(o);
    assert_int_equal(o->type, MSGPACK_OBJECT_MAP);
    assert_int_equal(o->via.map.size, 0);
    assert_str(vigil_event_get(&f->v, "attrs.after"), "x");
}

/* VIGIL_ATTR_DEPTH_MAX levels are allowed; the path reader walks them all. */
static void test_attrs_max_depth(void **state)
{
    struct fx *f = *state;
    vigil_event_begin(&f->b, "t");
    for (int i = 0; i < VIGIL_ATTR_DEPTH_MAX; i++) {
        vigil_event_attr_map_begin(&f->b, "m");
    }
    vigil_event_add_attr_str(&f->b, "leaf", "bottom");
    for (int i = 0; i < VIGIL_ATTR_DEPTH_MAX; i++) {
        vigil_event_attr_end(&f->b);
    }
    finish_decode(f, "h", "s", 1);
    char path[128] = "attrs";
    for (int i = 0; i < VIGIL_ATTR_DEPTH_MAX; i++) {
        strcat(path, ".m");
    }
    strcat(path, ".leaf");
    assert_str(vigil_event_get(&f->v, path), "bottom");
}

static void test_paths(void **state)
{
    struct fx *f = *state;
    vigil_event_begin(&f->b, "t");
    vigil_event_add_label(&f->b, "x", "lx");
    vigil_event_add_value(&f->b, "y", 2.5);
    vigil_event_attr_map_begin(&f->b, "ns");
    vigil_event_add_attr_str(&f->b, "net", "n1");
    vigil_event_attr_end(&f->b);
    finish_decode(f, "hh", "ss", 3);

    assert_str(vigil_event_get(&f->v, "labels.x"), "lx");
    assert_true(get_double(&f->v, "values.y") == 2.5);
    assert_str(vigil_event_get(&f->v, "attrs.ns.net"), "n1");
    assert_str(vigil_event_get(&f->v, "host"), "hh");
    assert_ptr_equal(vigil_event_get(&f->v, "labels"), f->v.labels);
    assert_ptr_equal(vigil_event_get(&f->v, "attrs"), f->v.attrs);

    assert_null(vigil_event_get(&f->v, "labels.y")); /* wrong map */
    assert_null(vigil_event_get(&f->v, "host.x"));   /* through a string */
    assert_null(vigil_event_get(&f->v, "attrs.ns.net.more"));
    assert_null(vigil_event_get(&f->v, "attrs.ns.ne"));
    assert_null(vigil_event_get(&f->v, "hos")); /* prefix is not a match */
    assert_null(vigil_event_get(&f->v, "hostx"));
    assert_ptr_equal(vigil_event_get(&f->v, ""), &f->v.root); /* the whole body */
    assert_null(vigil_event_get(&f->v, "labels."));
    assert_null(vigil_event_get(&f->v, ".labels"));
    assert_null(vigil_event_get(&f->v, "nope"));
}

/* One builder for many events: begin() forgets everything of the last one. */
static void test_builder_reuse(void **state)
{
    struct fx *f = *state;
    for (uint64_t i = 0; i < 2000; i++) {
        char topic[32];
        snprintf(topic, sizeof topic, "gen.t%u", (unsigned)(i % 7));
        vigil_event_begin(&f->b, topic);
        if (i % 2) {
            vigil_event_set_ts(&f->b, 1000 + i);
        }
        unsigned nl = (unsigned)(i % 4), nv = (unsigned)(i % 3);
        for (unsigned k = 0; k < nl; k++) {
            char key[16];
            snprintf(key, sizeof key, "l%u", k);
            vigil_event_add_label(&f->b, key, topic);
        }
        for (unsigned k = 0; k < nv; k++) {
            char key[16];
            snprintf(key, sizeof key, "v%u", k);
            vigil_event_add_value_u64(&f->b, key, i * 10 + k);
        }
        bool with_attrs = i % 5 == 0;
        if (with_attrs) {
            vigil_event_attr_list_begin(&f->b, "l");
            for (uint64_t k = 0; k < i % 11; k++) {
                vigil_event_add_attr_i64(&f->b, NULL, (int64_t)k);
            }
            vigil_event_attr_end(&f->b);
        }
        if (i % 97 == 0) {
            /* A misused event in between must not spoil the next. */
            vigil_event_attr_end(&f->b);
            const char *body;
            size_t len;
            assert_int_equal(vigil_event_finish(&f->b, "h", "s", i, &body, &len), VIGIL_EMALFORMED);
            continue;
        }
        uint64_t before = vigil_now_ns();
        finish_decode(f, "host", "gen/g", i);
        assert_sized(f->v.topic, f->v.topic_len, topic);
        assert_int_equal(f->v.seq, i);
        if (i % 2) {
            assert_int_equal(f->v.ts, 1000 + i);
        } else {
            assert_true(f->v.ts >= before); /* has_ts was cleared by begin */
        }
        assert_int_equal(f->v.labels->via.map.size, nl);
        assert_int_equal(f->v.values->via.map.size, nv);
        if (nv) {
            assert_int_equal(get_u64(&f->v, "values.v0"), i * 10);
        }
        if (with_attrs) {
            const msgpack_object *l = vigil_event_get(&f->v, "attrs.l");
            assert_non_null(l);
            assert_int_equal(l->via.array.size, i % 11);
        } else {
            assert_null(f->v.attrs);
        }
    }
}

/* ------------------------------------------------------ builder misuse */

static void expect_misuse(struct fx *f, const char *why)
{
    const char *body = NULL;
    size_t len = 0;
    assert_int_equal(vigil_event_finish(&f->b, "h", "s", 1, &body, &len), VIGIL_EMALFORMED);
    assert_true(f->b.bad);
    assert_non_null(f->b.why);
    if (!strstr(f->b.why, why)) {
        fail_msg("why \"%s\" does not mention \"%s\"", f->b.why, why);
    }
    /* The next begin() starts clean. */
    vigil_event_begin(&f->b, "ok");
    assert_false(f->b.bad);
    assert_null(f->b.why);
    finish_decode(f, "h", "s", 2);
}

static void test_misuse_unclosed_map(void **state)
{
    struct fx *f = *state;
    vigil_event_begin(&f->b, "t");
    vigil_event_attr_map_begin(&f->b, "m");
    vigil_event_add_attr_str(&f->b, "k", "v");
    expect_misuse(f, "left open");

    vigil_event_begin(&f->b, "t");
    vigil_event_attr_map_begin(&f->b, "m");
    vigil_event_attr_list_begin(&f->b, "l");
    vigil_event_attr_end(&f->b);
    expect_misuse(f, "left open");
}

static void test_misuse_end_without_begin(void **state)
{
    struct fx *f = *state;
    vigil_event_begin(&f->b, "t");
    vigil_event_attr_end(&f->b);
    expect_misuse(f, "without a begin");

    vigil_event_begin(&f->b, "t");
    vigil_event_attr_list_begin(&f->b, "l");
    vigil_event_attr_end(&f->b);
    vigil_event_attr_end(&f->b);
    expect_misuse(f, "without a begin");
}

static void test_misuse_too_deep(void **state)
{
    struct fx *f = *state;
    vigil_event_begin(&f->b, "t");
    for (int i = 0; i < VIGIL_ATTR_DEPTH_MAX + 1; i++) {
        vigil_event_attr_map_begin(&f->b, "m");
    }
    vigil_event_add_attr_i64(&f->b, "x", 1);
    for (int i = 0; i < VIGIL_ATTR_DEPTH_MAX + 1; i++) {
        vigil_event_attr_end(&f->b);
    }
    /* The first misuse is the one reported. */
    expect_misuse(f, "too deep");

    vigil_event_begin(&f->b, "t");
    for (int i = 0; i < 50; i++) {
        vigil_event_attr_list_begin(&f->b, i == 0 ? "l" : NULL);
    }
    expect_misuse(f, "too deep");
}

static void test_misuse_null_keys(void **state)
{
    struct fx *f = *state;
    vigil_event_begin(&f->b, "t");
    vigil_event_add_attr_str(&f->b, NULL, "v"); /* attrs itself is a map */
    expect_misuse(f, "without a key");

    vigil_event_begin(&f->b, "t");
    vigil_event_attr_list_begin(&f->b, "l");
    vigil_event_attr_map_begin(&f->b, NULL);  /* fine: a list item */
    vigil_event_add_attr_i64(&f->b, NULL, 1); /* not fine: in the map */
    vigil_event_attr_end(&f->b);
    vigil_event_attr_end(&f->b);
    expect_misuse(f, "without a key");

    vigil_event_begin(&f->b, "t");
    vigil_event_attr_map_begin(&f->b, NULL);
    vigil_event_attr_end(&f->b);
    expect_misuse(f, "without a key");

    vigil_event_begin(&f->b, "t");
    vigil_event_add_label(&f->b, NULL, "v");
    expect_misuse(f, "label without a key");

    vigil_event_begin(&f->b, "t");
    vigil_event_add_value(&f->b, NULL, 1.0);
    expect_misuse(f, "value without a key");

    vigil_event_begin(&f->b, "t");
    vigil_event_add_value_u64(&f->b, NULL, 1);
    expect_misuse(f, "value without a key");
}

static void test_misuse_invalid_topic(void **state)
{
    struct fx *f = *state;
    char long_topic[VIGIL_TOPIC_MAX + 2];
    memset(long_topic, 'a', sizeof long_topic - 1);
    long_topic[sizeof long_topic - 1] = '\0'; /* 256 bytes */
    const char *bad[] = {"", "a b", "tab\there", "\xc3", long_topic};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vigil_event_begin(&f->b, bad[i]);
        assert_int_equal(f->b.topic_len, 0);
        expect_misuse(f, "invalid topic");
    }
    vigil_event_begin(&f->b, NULL);
    expect_misuse(f, "invalid topic");

    long_topic[VIGIL_TOPIC_MAX] = '\0'; /* 255 bytes is fine */
    vigil_event_begin(&f->b, long_topic);
    assert_int_equal(f->b.topic_len, VIGIL_TOPIC_MAX);
    finish_decode(f, "h", "s", 1);
    assert_int_equal(f->v.topic_len, VIGIL_TOPIC_MAX);
}

/* --------------------------------------------------------------- topics */

static bool tv(const char *s)
{
    return vigil_topic_valid(s, strlen(s));
}

static void test_topic_valid(void **state)
{
    (void)state;
    char buf[VIGIL_TOPIC_MAX + 1];
    memset(buf, 'x', sizeof buf);

    assert_true(tv("kvm.vm"));
    assert_true(tv("a"));
    assert_true(tv("alert.fired"));
    assert_true(tv("!~/-_:"));
    assert_false(vigil_topic_valid("", 0));
    assert_false(vigil_topic_valid("abc", 0));
    assert_true(vigil_topic_valid(buf, VIGIL_TOPIC_MAX));
    assert_false(vigil_topic_valid(buf, VIGIL_TOPIC_MAX + 1));
    /* Only `len` bytes count: no NUL terminator needed. */
    assert_true(vigil_topic_valid("ab cd", 2));

    assert_false(tv(" "));
    assert_false(tv("kvm vm"));
    assert_false(tv("kvm.vm "));
    assert_false(tv("a\tb"));
    assert_false(tv("a\nb"));
    assert_false(tv("\x01"));
    assert_false(tv("a\x1f"));
    assert_false(tv("a\x7f"));
    assert_false(vigil_topic_valid("a\0b", 3)); /* NUL inside */
}

static void test_topic_utf8(void **state)
{
    (void)state;
    assert_true(tv("caf\xc3\xa9"));                 /* é */
    assert_true(tv("\xe6\x97\xa5\xe6\x9c\xac.vm")); /* 日本 */
    assert_true(tv("x.\xf0\x9f\x98\x80"));          /* U+1F600 */
    assert_true(tv("\xc2\xa0"));                    /* U+00A0, first after C1 */
    assert_true(tv("\xdf\xbf"));                    /* U+07FF */
    assert_true(tv("\xe0\xa0\x80"));                /* U+0800 */
    assert_true(tv("\xed\x9f\xbf"));                /* U+D7FF */
    assert_true(tv("\xee\x80\x80"));                /* U+E000 */
    assert_true(tv("\xef\xbf\xbf"));                /* U+FFFF */
    assert_true(tv("\xf0\x90\x80\x80"));            /* U+10000 */
    assert_true(tv("\xf4\x8f\xbf\xbf"));            /* U+10FFFF */

    assert_false(tv("\x80")); /* lone continuation */
    assert_false(tv("a\xbf"
                    "b"));
    assert_false(tv("caf\xc3")); /* truncated at the end */
    assert_false(tv("\xe6\x97"));
    assert_false(tv("\xf0\x9f\x98"));
    assert_false(tv("\xe6\x97"
                    "a")); /* truncated mid-string */
    assert_false(tv("\xc3"
                    "a"));
    assert_false(tv("\xc0\x80"));         /* overlong NUL */
    assert_false(tv("\xc1\xbf"));         /* overlong */
    assert_false(tv("\xe0\x80\x80"));     /* overlong */
    assert_false(tv("\xe0\x9f\xbf"));     /* overlong U+07FF */
    assert_false(tv("\xf0\x80\x80\x80")); /* overlong */
    assert_false(tv("\xf0\x8f\xbf\xbf")); /* overlong U+FFFF */
    assert_false(tv("\xed\xa0\x80"));     /* surrogate U+D800 */
    assert_false(tv("\xed\xbf\xbf"));     /* surrogate U+DFFF */
    assert_false(tv("\xf4\x90\x80\x80")); /* > U+10FFFF */
    assert_false(tv("\xf5\x80\x80\x80"));
    assert_false(tv("\xf8\x88\x80\x80\x80")); /* 5-byte form */
    assert_false(tv("\xfe"));
    assert_false(tv("\xff"));
    assert_false(tv("\xc2\x80")); /* C1 controls U+0080 */
    assert_false(tv("\xc2\x85")); /* NEL */
    assert_false(tv("\xc2\x9f")); /* U+009F */

    /* A multi-byte character that ends exactly at byte 255 is fine; one
     * that would run past `len` is not. */
    char buf[VIGIL_TOPIC_MAX + 4];
    memset(buf, 'x', sizeof buf);
    memcpy(buf + VIGIL_TOPIC_MAX - 3, "\xe6\x97\xa5", 3);
    assert_true(vigil_topic_valid(buf, VIGIL_TOPIC_MAX));
    assert_false(vigil_topic_valid(buf, VIGIL_TOPIC_MAX - 1));
}

/* ------------------------------------------------------ decode: refused */

static void test_refuse_not_a_map(void **state)
{
    struct fx *f = *state;
    msgpack_pack_array(&f->pk, 2);
    msgpack_pack_int(&f->pk, 1);
    msgpack_pack_int(&f->pk, 2);
    expect_refused(f, VIGIL_EMALFORMED, "not a msgpack map");

    f->sb.size = 0;
    pk_str(&f->pk, "ts");
    expect_refused(f, VIGIL_EMALFORMED, "not a msgpack map");

    f->sb.size = 0;
    msgpack_pack_nil(&f->pk);
    expect_refused(f, VIGIL_EMALFORMED, "not a msgpack map");

    f->sb.size = 0;
    msgpack_pack_uint64(&f->pk, 5);
    expect_refused(f, VIGIL_EMALFORMED, "not a msgpack map");
}

static void test_refuse_invalid_msgpack(void **state)
{
    struct fx *f = *state;
    const char never_used[] = {(char)0xc1};
    assert_int_equal(decode_topic(f, "t", never_used, 1, MAX_BODY), VIGIL_EMALFORMED);
    assert_non_null(strstr(f->reason, "not valid msgpack"));

    /* Truncated: a map of 4 with one key. */
    const char cut[] = {(char)0x84, (char)0xa2, 't', 's'};
    assert_int_equal(decode_topic(f, "t", cut, sizeof cut, MAX_BODY), VIGIL_EMALFORMED);
    assert_non_null(strstr(f->reason, "not valid msgpack"));

    /* Empty body. */
    assert_int_equal(decode_topic(f, "t", "", 0, MAX_BODY), VIGIL_EMALFORMED);
    assert_non_null(f->reason);

    /* A whole valid event cut at every length is refused, never accepted. */
    env(f, 0, 0);
    char whole[256];
    size_t n = f->sb.size;
    assert_true(n < sizeof whole);
    memcpy(whole, f->sb.data, n);
    expect_accepted(f);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(decode_topic(f, "t", whole, k, MAX_BODY), VIGIL_EMALFORMED);
    }
}

static void test_refuse_trailing_bytes(void **state)
{
    struct fx *f = *state;
    env(f, 0, 0);
    msgpack_pack_nil(&f->pk);
    expect_refused(f, VIGIL_EMALFORMED, "bytes after");

    f->sb.size = 0;
    env(f, 0, 0);
    env(f, 0, 0); /* two events in one frame */
    expect_refused(f, VIGIL_EMALFORMED, "bytes after");
}

static void test_refuse_too_big(void **state)
{
    struct fx *f = *state;
    env(f, 0, 1);
    pk_str(&f->pk, "pad");
    char pad[1000];
    memset(pad, 'p', sizeof pad);
    msgpack_pack_str(&f->pk, sizeof pad);
    msgpack_pack_str_body(&f->pk, pad, sizeof pad);
    size_t n = f->sb.size;

    assert_int_equal(decode_topic(f, "t", f->sb.data, n, n), 0); /* exactly max */
    assert_int_equal(decode_topic(f, "t", f->sb.data, n, n - 1), VIGIL_ETOOBIG);
    assert_non_null(strstr(f->reason, "larger than"));
    /* Checked before parsing: garbage that is too big is "too big". */
    assert_int_equal(decode_topic(f, "t", pad, sizeof pad, 10), VIGIL_ETOOBIG);
}

static void test_refuse_bad_topic(void **state)
{
    struct fx *f = *state;
    env(f, 0, 0);
    const char *topics[] = {"", "a b", "\xc3(", "\x7f"};
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        assert_int_equal(decode_topic(f, topics[i], f->sb.data, f->sb.size, MAX_BODY),
                         VIGIL_EMALFORMED);
        assert_non_null(strstr(f->reason, "topic"));
    }
    char long_topic[VIGIL_TOPIC_MAX + 2];
    memset(long_topic, 'a', sizeof long_topic - 1);
    long_topic[sizeof long_topic - 1] = '\0';
    assert_int_equal(decode_topic(f, long_topic, f->sb.data, f->sb.size, MAX_BODY),
                     VIGIL_EMALFORMED);
    assert_non_null(strstr(f->reason, "topic"));
}

static void test_refuse_missing_envelope(void **state)
{
    struct fx *f = *state;
    unsigned omit[] = {NO_TS, NO_HOST, NO_SOURCE, NO_SEQ, NO_TS | NO_HOST | NO_SOURCE | NO_SEQ};
    for (size_t i = 0; i < sizeof omit / sizeof omit[0]; i++) {
        f->sb.size = 0;
        env(f, omit[i], 1);
        pk_str(&f->pk, "labels"); /* other keys do not stand in for them */
        msgpack_pack_map(&f->pk, 0);
        expect_refused(f, VIGIL_EMALFORMED, "lacks one of ts, host, source, seq");
    }
    f->sb.size = 0;
    msgpack_pack_map(&f->pk, 0);
    expect_refused(f, VIGIL_EMALFORMED, "lacks one of");
}

static void test_refuse_ts_seq_types(void **state)
{
    struct fx *f = *state;
    for (int k = 0; k < 4; k++) {
        f->sb.size = 0;
        env(f, NO_TS, 1);
        pk_str(&f->pk, "ts");
        switch (k) {
        case 0:
            msgpack_pack_int64(&f->pk, -1);
            break;
        case 1:
            msgpack_pack_double(&f->pk, 1.0);
            break;
        case 2:
            pk_str(&f->pk, "1700000000");
            break;
        default:
            msgpack_pack_nil(&f->pk);
            break;
        }
        expect_refused(f, VIGIL_EMALFORMED, "ts is not an unsigned integer");
    }
    for (int k = 0; k < 3; k++) {
        f->sb.size = 0;
        env(f, NO_SEQ, 1);
        pk_str(&f->pk, "seq");
        switch (k) {
        case 0:
            msgpack_pack_int64(&f->pk, -5);
            break;
        case 1:
            msgpack_pack_float(&f->pk, 2.0f);
            break;
        default:
            msgpack_pack_true(&f->pk);
            break;
        }
        expect_refused(f, VIGIL_EMALFORMED, "seq is not an unsigned integer");
    }
}

static void test_refuse_host_source_types(void **state)
{
    struct fx *f = *state;
    env(f, NO_HOST, 1);
    pk_str(&f->pk, "host");
    msgpack_pack_int(&f->pk, 17);
    expect_refused(f, VIGIL_EMALFORMED, "host is not a string");

    f->sb.size = 0;
    env(f, NO_HOST, 1);
    pk_str(&f->pk, "host");
    msgpack_pack_nil(&f->pk);
    expect_refused(f, VIGIL_EMALFORMED, "host is not a string");

    f->sb.size = 0;
    env(f, NO_SOURCE, 1);
    pk_str(&f->pk, "source");
    msgpack_pack_array(&f->pk, 1);
    pk_str(&f->pk, "s");
    expect_refused(f, VIGIL_EMALFORMED, "source is not a string");
}

static void test_refuse_labels(void **state)
{
    struct fx *f = *state;
    env(f, 0, 1);
    pk_str(&f->pk, "labels");
    msgpack_pack_array(&f->pk, 0);
    expect_refused(f, VIGIL_EMALFORMED, "labels");

    f->sb.size = 0;
    env(f, 0, 1);
    pk_str(&f->pk, "labels");
    msgpack_pack_map(&f->pk, 2);
    pk_str(&f->pk, "vm");
    pk_str(&f->pk, "web1");
    pk_str(&f->pk, "pid");
    msgpack_pack_uint64(&f->pk, 1234); /* a number is not a label */
    expect_refused(f, VIGIL_EMALFORMED, "labels is not a map of strings to strings");

    f->sb.size = 0;
    env(f, 0, 1);
    pk_str(&f->pk, "labels");
    msgpack_pack_map(&f->pk, 1);
    msgpack_pack_uint64(&f->pk, 1); /* a number is not a key */
    pk_str(&f->pk, "x");
    expect_refused(f, VIGIL_EMALFORMED, "labels is not a map of strings to strings");
}

static void test_refuse_values(void **state)
{
    struct fx *f = *state;
    env(f, 0, 1);
    pk_str(&f->pk, "values");
    msgpack_pack_map(&f->pk, 2);
    pk_str(&f->pk, "ok");
    msgpack_pack_double(&f->pk, 1.5);
    pk_str(&f->pk, "bad");
    pk_str(&f->pk, "12");
    expect_refused(f, VIGIL_EMALFORMED, "values is not a map of strings to numbers");

    f->sb.size = 0;
    env(f, 0, 1);
    pk_str(&f->pk, "values");
    msgpack_pack_map(&f->pk, 1);
    pk_str(&f->pk, "b");
    msgpack_pack_true(&f->pk);
    expect_refused(f, VIGIL_EMALFORMED, "values is not a map of strings to numbers");

    f->sb.size = 0;
    env(f, 0, 1);
    pk_str(&f->pk, "values");
    msgpack_pack_double(&f->pk, 1.0);
    expect_refused(f, VIGIL_EMALFORMED, "values is not a map of strings to numbers");
}

static void test_refuse_attrs(void **state)
{
    struct fx *f = *state;
    env(f, 0, 1);
    pk_str(&f->pk, "attrs");
    msgpack_pack_array(&f->pk, 1);
    msgpack_pack_nil(&f->pk);
    expect_refused(f, VIGIL_EMALFORMED, "attrs is not a map");

    f->sb.size = 0;
    env(f, 0, 1);
    pk_str(&f->pk, "attrs");
    pk_str(&f->pk, "x");
    expect_refused(f, VIGIL_EMALFORMED, "attrs is not a map");

    f->sb.size = 0;
    env(f, 0, 1);
    pk_str(&f->pk, "attrs");
    msgpack_pack_map(&f->pk, 1);
    msgpack_pack_int(&f->pk, -1);
    pk_str(&f->pk, "v");
    expect_refused(f, VIGIL_EMALFORMED, "attrs is not a map with string keys");
}

static void test_refuse_duplicate_envelope_key(void **state)
{
    struct fx *f = *state;
    const char *keys[] = {"ts", "host", "source", "seq", "labels", "values", "attrs"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        f->sb.size = 0;
        bool in_env = i < 4;
        env(f, 0, in_env ? 1 : 2);
        for (int twice = 0; twice < (in_env ? 1 : 2); twice++) {
            pk_str(&f->pk, keys[i]);
            if (i == 0 || i == 3) {
                msgpack_pack_uint64(&f->pk, 1);
            } else if (i < 4) {
                pk_str(&f->pk, "x");
            } else {
                msgpack_pack_map(&f->pk, 0);
            }
        }
        expect_refused(f, VIGIL_EMALFORMED, "appears twice");
    }
}

static void test_refuse_non_string_key(void **state)
{
    struct fx *f = *state;
    env(f, 0, 1);
    msgpack_pack_uint64(&f->pk, 1);
    pk_str(&f->pk, "x");
    expect_refused(f, VIGIL_EMALFORMED, "key that is not a string");

    f->sb.size = 0;
    env(f, 0, 1);
    msgpack_pack_nil(&f->pk);
    msgpack_pack_nil(&f->pk);
    expect_refused(f, VIGIL_EMALFORMED, "key that is not a string");
}

/* Virtual memory of this process, or -1 where /proc cannot tell. */
static long vm_size_kb(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp) {
        return -1;
    }
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, fp)) {
        if (strncmp(line, "VmSize:", 7) == 0) {
            kb = atol(line + 7);
        }
    }
    fclose(fp);
    return kb;
}

/* msgpack_unpack reserves a container's slots from its declared count before
 * reading any of them. The checker sees input from anyone who can reach the
 * publish endpoint: a 20-byte body must not make it reserve gigabytes. */
static void test_refuse_huge_declared_counts_cheaply(void **state)
{
    struct fx *f = *state;
    unsigned char body[20];
    for (int i = 0; i < 4; i++) {
        /* A map, then arrays as its first key, each "of 16,777,216 items". */
        body[5 * i] = i == 0 ? 0xdf : 0xdd;
        body[5 * i + 1] = 0x01;
        body[5 * i + 2] = body[5 * i + 3] = body[5 * i + 4] = 0;
    }
    long before = vm_size_kb();
    if (before < 0) {
        skip();
    }
    msgpack_zone_clear(&f->zone);
    int rc = vigil_event_decode(&f->v, "t", 1, (const char *)body, sizeof body, MAX_BODY, &f->zone,
                                &f->reason);
    long grew_kb = vm_size_kb() - before; /* measured while the zone still holds it */
    msgpack_zone_clear(&f->zone);
    assert_int_equal(rc, VIGIL_EMALFORMED);
    if (grew_kb > 64 * 1024) {
        fail_msg("decoding a %zu-byte body reserved %ld MiB", sizeof body, grew_kb / 1024);
    }
}

/* ----------------------------------------------------- decode: accepted */

static void test_accept_bin_strings(void **state)
{
    struct fx *f = *state;
    msgpack_packer *pk = &f->pk;
    msgpack_pack_map(pk, 5);
    pk_str(pk, "ts");
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_bin(pk, 4); /* a BIN key is a key */
    msgpack_pack_bin_body(pk, "host", 4);
    msgpack_pack_bin(pk, 5);
    msgpack_pack_bin_body(pk, "h-bin", 5);
    pk_str(pk, "source");
    msgpack_pack_bin(pk, 3);
    msgpack_pack_bin_body(pk, "s/b", 3);
    pk_str(pk, "seq");
    msgpack_pack_uint64(pk, 2);
    pk_str(pk, "labels");
    msgpack_pack_map(pk, 1);
    msgpack_pack_bin(pk, 2);
    msgpack_pack_bin_body(pk, "vm", 2);
    msgpack_pack_bin(pk, 4);
    msgpack_pack_bin_body(pk, "web1", 4);
    expect_accepted(f);
    assert_sized(f->v.host, f->v.host_len, "h-bin");
    assert_sized(f->v.source, f->v.source_len, "s/b");
    assert_str(vigil_event_get(&f->v, "host"), "h-bin");
    assert_str(vigil_event_get(&f->v, "labels.vm"), "web1");
}

static void test_accept_unknown_keys_kept(void **state)
{
    struct fx *f = *state;
    env(f, 0, 3);
    pk_str(&f->pk, "extra");
    msgpack_pack_array(&f->pk, 2);
    msgpack_pack_int(&f->pk, 1);
    msgpack_pack_nil(&f->pk);
    pk_str(&f->pk, "zzz");
    msgpack_pack_map(&f->pk, 1);
    pk_str(&f->pk, "a");
    msgpack_pack_int(&f->pk, -2);
    pk_str(&f->pk, "extra2");
    pk_str(&f->pk, "v");
    expect_accepted(f);
    assert_int_equal(f->v.root.via.map.size, 7);
    const msgpack_object *o = vigil_event_get(&f->v, "extra");
    assert_non_null(o);
    assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(o->via.array.size, 2);
    o = vigil_event_get(&f->v, "zzz.a");
    assert_non_null(o);
    assert_int_equal(o->via.i64, -2);
    assert_str(vigil_event_get(&f->v, "extra2"), "v");
    /* The body is passed on as it came. */
    assert_ptr_equal(f->v.body, f->sb.data);
    assert_int_equal(f->v.body_len, f->sb.size);
}

static void test_accept_numbers(void **state)
{
    struct fx *f = *state;
    env(f, NO_TS, 2);
    pk_str(&f->pk, "ts");
    msgpack_pack_int64(&f->pk, 5); /* signed packing of a positive value */
    pk_str(&f->pk, "values");
    msgpack_pack_map(&f->pk, 5);
    pk_str(&f->pk, "neg");
    msgpack_pack_int64(&f->pk, -5);
    pk_str(&f->pk, "min");
    msgpack_pack_int64(&f->pk, INT64_MIN);
    pk_str(&f->pk, "f32");
    msgpack_pack_float(&f->pk, 1.5f);
    pk_str(&f->pk, "f64");
    msgpack_pack_double(&f->pk, -0.001);
    pk_str(&f->pk, "u");
    msgpack_pack_uint8(&f->pk, 200);
    expect_accepted(f);
    assert_int_equal(f->v.ts, 5);
    assert_true(get_double(&f->v, "values.neg") == -5.0);
    assert_true(get_double(&f->v, "values.min") == (double)INT64_MIN);
    assert_true(get_double(&f->v, "values.f32") == 1.5);
    assert_true(get_double(&f->v, "values.f64") == -0.001);
    assert_true(get_double(&f->v, "values.u") == 200.0);
    uint64_t u;
    assert_int_equal(vigil_msgpack_u64(vigil_event_get(&f->v, "values.neg"), &u), VIGIL_ETYPE);
}

static void test_accept_bare_envelope(void **state)
{
    struct fx *f = *state;
    env(f, 0, 0);
    expect_accepted(f);
    assert_null(f->v.labels);
    assert_null(f->v.values);
    assert_null(f->v.attrs);
    assert_null(vigil_event_get(&f->v, "labels.x"));
    assert_int_equal(f->v.ts, 1000);
    assert_int_equal(f->v.seq, 7);
    assert_sized(f->v.host, f->v.host_len, "h");
    assert_sized(f->v.source, f->v.source_len, "s");

    /* Empty label, value and attr maps, in any order of keys. */
    f->sb.size = 0;
    msgpack_pack_map(&f->pk, 7);
    pk_str(&f->pk, "attrs");
    msgpack_pack_map(&f->pk, 0);
    pk_str(&f->pk, "seq");
    msgpack_pack_uint64(&f->pk, 0);
    pk_str(&f->pk, "values");
    msgpack_pack_map(&f->pk, 0);
    pk_str(&f->pk, "source");
    pk_str(&f->pk, "");
    pk_str(&f->pk, "labels");
    msgpack_pack_map(&f->pk, 0);
    pk_str(&f->pk, "host");
    pk_str(&f->pk, "");
    pk_str(&f->pk, "ts");
    msgpack_pack_uint64(&f->pk, UINT64_MAX);
    expect_accepted(f);
    assert_non_null(f->v.labels);
    assert_non_null(f->v.values);
    assert_non_null(f->v.attrs);
    assert_int_equal(f->v.ts, UINT64_MAX);
}

/* ------------------------------------------------------- typed readers */

static void test_typed_readers(void **state)
{
    (void)state;
    const char *s;
    size_t n;
    double d;
    uint64_t u;
    assert_int_equal(vigil_msgpack_str(NULL, &s, &n), VIGIL_ENOTFOUND);
    assert_int_equal(vigil_msgpack_double(NULL, &d), VIGIL_ENOTFOUND);
    assert_int_equal(vigil_msgpack_u64(NULL, &u), VIGIL_ENOTFOUND);
    msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    assert_int_equal(vigil_msgpack_str(&nil, &s, &n), VIGIL_ETYPE);
    assert_int_equal(vigil_msgpack_double(&nil, &d), VIGIL_ETYPE);
    assert_int_equal(vigil_msgpack_u64(&nil, &u), VIGIL_ETYPE);
    msgpack_object neg = {.type = MSGPACK_OBJECT_NEGATIVE_INTEGER, .via.i64 = -3};
    assert_int_equal(vigil_msgpack_double(&neg, &d), 0);
    assert_true(d == -3.0);
    assert_null(vigil_msgpack_map_get(NULL, "x", 1));
    assert_null(vigil_msgpack_map_get(&neg, "x", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_envelope_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_envelope_extremes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ts_defaults_to_now, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labels_and_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attrs_every_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attrs_max_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_builder_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misuse_unclosed_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misuse_end_without_begin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misuse_too_deep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misuse_null_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misuse_invalid_topic, setup, teardown),
        cmocka_unit_test(test_topic_valid),
        cmocka_unit_test(test_topic_utf8),
        cmocka_unit_test_setup_teardown(test_refuse_not_a_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_invalid_msgpack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_trailing_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_bad_topic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_missing_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_ts_seq_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_host_source_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_attrs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_duplicate_envelope_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_non_string_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_huge_declared_counts_cheaply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_bin_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_unknown_keys_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_bare_envelope, setup, teardown),
        cmocka_unit_test(test_typed_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

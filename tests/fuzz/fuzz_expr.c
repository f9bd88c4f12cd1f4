/* libFuzzer target for the rule expression compiler (pipeline/expr*.c):
 * arbitrary bytes compiled as a condition and as a number, at a plain and a
 * quoted position; whatever compiles is evaluated against a few fixed
 * events (built once) and its path list walked. ASan/UBSan judge memory;
 * the target itself aborts when the compiler's contract breaks (no message
 * on failure, a message on success, a different answer the second time).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "fields.h"

#define NEVENTS 3

struct fixed {
    struct vigil_event_builder b[NEVENTS];
    msgpack_zone zone[NEVENTS];
    msgpack_sbuffer sb;
    struct vigil_event_view v[NEVENTS];
    /* The same events read as the rules stage reads them (lazily, labels
     * and values through slots), which must give the same answers. */
    const char *topic[NEVENTS], *body[NEVENTS];
    size_t len[NEVENTS];
    msgpack_zone lzone[NEVENTS];
};

static struct fixed *fx;

static void pk_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pk_bin(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, s, n);
}

static void decode(int i, const char *topic, const char *body, size_t len)
{
    const char *reason = NULL;
    fx->topic[i] = topic;
    fx->body[i] = body;
    fx->len[i] = len;
    if (vigil_event_decode(&fx->v[i], topic, strlen(topic), body, len, 65536, &fx->zone[i],
                           &reason) != 0) {
        fprintf(stderr, "fuzz_expr: fixed event %d: %s\n", i, reason);
        abort();
    }
}

/* A few fixed events to evaluate compiled expressions against. */
static void build(void)
{
    const char *body;
    size_t len;
    fx = calloc(1, sizeof *fx);
    if (!fx) {
        abort();
    }
    for (int i = 0; i < NEVENTS; i++) {
        vigil_event_builder_init(&fx->b[i]);
        msgpack_zone_init(&fx->zone[i], 4096);
        msgpack_zone_init(&fx->lzone[i], 4096);
    }
    /* 0: the usual kinds of field. */
    struct vigil_event_builder *b = &fx->b[0];
    vigil_event_begin(b, "cgroup.stats");
    vigil_event_set_ts(b, 1700000000000000000ull);
    vigil_event_add_label(b, "container", "web-1");
    vigil_event_add_label(b, "cgroup", "/kubepods/burstable/pod1/abc");
    vigil_event_add_label(b, "a", "");
    vigil_event_add_value(b, "cpu_usage_pct", 95.5);
    vigil_event_add_value(b, "a", 0);
    vigil_event_add_value(b, "b", -2);
    vigil_event_add_value_u64(b, "x", 18446744073709551615ull);
    vigil_event_attr_map_begin(b, "ns");
    vigil_event_add_attr_str(b, "net", "net:[4026531993]");
    vigil_event_add_attr_bool(b, "a", true);
    vigil_event_attr_end(b);
    vigil_event_add_attr_f64(b, "f", 1e308);
    vigil_event_add_attr_i64(b, "i", INT64_MIN);
    if (vigil_event_finish(b, "node1", "gen/g1", 7, &body, &len) != 0) {
        abort();
    }
    decode(0, "cgroup.stats", body, len);

    /* 1: nothing but the envelope. */
    b = &fx->b[1];
    vigil_event_begin(b, "a");
    if (vigil_event_finish(b, "", "", 0, &body, &len) != 0) {
        abort();
    }
    decode(1, "a", body, len);

    /* 2: BIN strings and keys, booleans, nil and a list at the root. */
    msgpack_sbuffer_init(&fx->sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fx->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 8);
    pk_str(&pk, "ts");
    msgpack_pack_uint64(&pk, 1);
    pk_str(&pk, "host");
    pk_bin(&pk, "h");
    pk_str(&pk, "source");
    pk_str(&pk, "s");
    pk_str(&pk, "seq");
    msgpack_pack_uint64(&pk, 2);
    pk_str(&pk, "labels");
    msgpack_pack_map(&pk, 1);
    pk_bin(&pk, "a");
    pk_bin(&pk, "b*c?d\\");
    pk_str(&pk, "a");
    msgpack_pack_true(&pk);
    pk_str(&pk, "b");
    msgpack_pack_nil(&pk);
    pk_str(&pk, "c");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_false(&pk);
    decode(2, "t", fx->sb.data, fx->sb.size);
}

/* A broken contract is a crash, so libFuzzer keeps the input. */
static void check(bool ok)
{
    if (!ok) {
        abort();
    }
}

static void run(const char *text, enum vigil_expr_want want, int line, int col, bool quoted,
                bool evaluate)
{
    struct vigil_diag d;
    vigil_diag_init(&d);
    struct vigil_expr *e = vigil_expr_compile(text, want, "f.yaml", line, col, quoted, &d);
    check((!e) == (d.count == 1) && d.count <= 1);
    if (d.n == 1) {
        check(strncmp(d.msgs[0], "f.yaml:", 7) == 0);
    }
    if (e) {
        size_t n = vigil_expr_npaths(e);
        for (size_t i = 0; i < n; i++) {
            const char *p = vigil_expr_path(e, i);
            check(p && strstr(text, p));
        }
        check(!vigil_expr_path(e, n));
        for (int i = 0; evaluate && i < NEVENTS; i++) {
            double x = 0, y = 0;
            bool t = vigil_expr_true(e, &fx->v[i]);
            bool has = vigil_expr_number(e, &fx->v[i], &x);
            check(t == vigil_expr_true(e, &fx->v[i]));
            check(has == vigil_expr_number(e, &fx->v[i], &y));
            check(!has || memcmp(&x, &y, sizeof x) == 0);
        }
        struct vigil_fields *f = evaluate ? vigil__fields_new() : NULL;
        vigil_expr_bind(e, f);
        for (int i = 0; f && i < NEVENTS; i++) {
            struct vigil_event_view l;
            const char *why;
            double x = 0, y = 0;
            msgpack_zone_clear(&fx->lzone[i]);
            check(vigil_event_read_trusted(&l, fx->topic[i], strlen(fx->topic[i]), fx->body[i],
                                           fx->len[i], &fx->lzone[i], &why) == 0);
            l.fields = vigil__fields_fill(f, NULL, &l);
            check(vigil_expr_true(e, &l) == vigil_expr_true(e, &fx->v[i]));
            bool has = vigil_expr_number(e, &l, &x);
            check(has == vigil_expr_number(e, &fx->v[i], &y));
            check(!has || memcmp(&x, &y, sizeof x) == 0);
        }
        vigil__fields_free(f);
    }
    vigil_expr_free(e);
    vigil_diag_fini(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fx) {
        build();
    }
    if (size > 4096) {
        return 0;
    }
    char *text = malloc(size + 1);
    if (!text) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    /* Everything that compiles is evaluated: glob matching is polynomial
     * (glob.c aborts star retries that cannot succeed), so a hostile pattern
     * against a long string literal of the input must stay fast too. */
    bool evaluate = true;
    run(text, VIGIL_EXPR_BOOL, 7, 11, false, evaluate);
    run(text, VIGIL_EXPR_NUMBER, 1, 1, true, evaluate);
    run(text, VIGIL_EXPR_BOOL, 0, 0, false, false);
    free(text);
    return 0;
}

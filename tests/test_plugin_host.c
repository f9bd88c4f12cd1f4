/* Unit tests of the plugin host: every loader refusal and its message, the
 * checking of a plugin's own keys with positions, and a real gen instance
 * run on its thread, publishing through a real in-process bus.
 */
#include <event2/thread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include <cmocka.h>

#include "bus.h"
#include "config.h"
#include "event.h"
#include "log.h"
#include "plugin_host.h"

/* The real plugins are in VIGIL_PLUGIN_DIR, the tests' (test_*) in
 * VIGIL_TEST_PLUGIN_DIR. */
static void expect_refusal(const char *dir, const char *name, enum vigil_plugin_kind kind,
                           const char *needle)
{
    char err[2048] = "";
    const struct vigil_plugin *desc = NULL;
    void *dl = vigil_plugin_open(dir, name, kind, true, &desc, err, sizeof err);
    assert_null(dl);
    if (!strstr(err, needle)) {
        fail_msg("%s: expected '%s' in: %s", name, needle, err);
    }
}

static void test_loader_refusals(void **state)
{
    (void)state;
    expect_refusal(VIGIL_PLUGIN_DIR, "missing_plugin", VIGIL_SOURCE,
                   VIGIL_PLUGIN_DIR
                   "/missing_plugin.so: No such file or directory (looked in " VIGIL_PLUGIN_DIR);
    expect_refusal(VIGIL_TEST_PLUGIN_DIR, "test_notelf", VIGIL_SOURCE,
                   "cannot load " VIGIL_TEST_PLUGIN_DIR "/test_notelf.so: ");
    expect_refusal(VIGIL_TEST_PLUGIN_DIR, "test_nosym", VIGIL_SOURCE,
                   "does not export the symbol 'vigil_plugin'");
    expect_refusal(VIGIL_TEST_PLUGIN_DIR, "test_badabi", VIGIL_SOURCE,
                   "has plugin ABI 999, but this vigild has ABI 2");
    /* A plugin built against ABI 1's header (struct vigil_host, one event
     * type) must be rebuilt, and the message says so with both numbers. */
    expect_refusal(VIGIL_TEST_PLUGIN_DIR, "test_abi1", VIGIL_SOURCE,
                   VIGIL_TEST_PLUGIN_DIR "/test_abi1.so has plugin ABI 1, but this vigild has "
                                         "ABI 2: rebuild the plugin");
    expect_refusal(VIGIL_TEST_PLUGIN_DIR, "test_badname", VIGIL_SOURCE,
                   "declares the name 'someone_else'");
    expect_refusal(VIGIL_TEST_PLUGIN_DIR, "test_badkind", VIGIL_SOURCE,
                   "is a sink plugin, but is listed under sources");
    expect_refusal(VIGIL_PLUGIN_DIR, "gen", VIGIL_SINK,
                   "is a source plugin, but is listed under sinks");
}

static void test_loader_accepts_gen(void **state)
{
    (void)state;
    char err[1024] = "";
    const struct vigil_plugin *desc = NULL;
    void *dl =
        vigil_plugin_open(VIGIL_PLUGIN_DIR, "gen", VIGIL_SOURCE, true, &desc, err, sizeof err);
    assert_non_null(dl);
    assert_string_equal(desc->name, "gen");
    assert_int_equal(desc->abi, VIGIL_PLUGIN_ABI);
    assert_non_null(desc->options);
    vigil_plugin_close(dl);
}

/* Builds a config from text with plugin_dir `dir`; the caller frees it. */
static struct vigil_config *config_in(const char *dir, const char *text, struct vigil_diag *d)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "plugin_dir: %s\n%s", dir, text);
    return vigil_config_parse(buf, strlen(buf), "/tmp/t.yaml", d);
}

/* The same with the real plugins. */
static struct vigil_config *config_from(const char *text, struct vigil_diag *d)
{
    return config_in(VIGIL_PLUGIN_DIR, text, d);
}

static void test_options_checked_with_positions(void **state)
{
    (void)state;
    struct vigil_diag d;
    vigil_diag_init(&d);
    struct vigil_config *c = config_from("sources:\n"
                                         "  - plugin: gen\n"
                                         "    rate: fast\n"
                                         "    bogus: 1\n",
                                         &d);
    assert_non_null(c);
    assert_int_equal(d.count, 0);
    struct vigil_host_env env = {
        .host_name = "h", .plugin_dir = c->plugin_dir, .hwm = 100, .max_event_bytes = 65536};
    struct vigil_instance *h = vigil_instance_new(&c->sources[0], VIGIL_SOURCE, &env, &d);
    assert_null(h);
    assert_int_equal(d.count, 2);
    bool saw_rate = false, saw_bogus = false;
    for (size_t i = 0; i < d.n; i++) {
        saw_rate |= strncmp(d.msgs[i], "/tmp/t.yaml:4:11: ", 18) == 0;
        saw_bogus |= strstr(d.msgs[i], "/tmp/t.yaml:5:") == d.msgs[i] && strstr(d.msgs[i], "bogus");
    }
    if (!saw_rate || !saw_bogus) {
        vigil_diag_print(&d, stderr);
        fail_msg("positions missing");
    }
    vigil_config_free(c);
    vigil_diag_fini(&d);
}

/* gen's own semantic checks (conf_error) land at the key's position. */
static void test_plugin_conf_error_positions(void **state)
{
    (void)state;
    struct vigil_diag d;
    vigil_diag_init(&d);
    struct vigil_config *c = config_from("sources:\n"
                                         "  - plugin: gen\n"
                                         "    rate: -5\n",
                                         &d);
    struct vigil_host_env env = {
        .host_name = "h", .plugin_dir = c->plugin_dir, .hwm = 100, .max_event_bytes = 65536};
    struct vigil_instance *h = vigil_instance_new(&c->sources[0], VIGIL_SOURCE, &env, &d);
    assert_non_null(h);
    assert_int_not_equal(vigil_instance_init(h, &d), 0);
    assert_int_equal(d.count, 1);
    assert_non_null(strstr(d.msgs[0], "/tmp/t.yaml:4:11: rate must be above 0"));
    vigil_instance_free(h);
    vigil_config_free(c);
    vigil_diag_fini(&d);
}

/* What a plugin can still get wrong through the API answers VIGIL_EPLUGIN
 * (not VIGIL_ESTOPPED, which a source takes for shutdown), and the host's
 * rate-limited log keeps one budget per call site. */
static void test_api_misuse_and_log_limited(void **state)
{
    (void)state;
    struct vigil_diag d;
    vigil_diag_init(&d);
    char path[] = "/tmp/vigil-test-capture-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char text[512];
    snprintf(text, sizeof text, "sinks:\n  - plugin: test_capture\n    path: %s\n", path);
    struct vigil_config *c = config_in(VIGIL_TEST_PLUGIN_DIR, text, &d);
    assert_non_null(c);
    struct vigil_host_env env = {
        .host_name = "h", .plugin_dir = c->plugin_dir, .hwm = 100, .max_event_bytes = 65536};
    struct vigil_instance *h = vigil_instance_new(&c->sinks[0], VIGIL_SINK, &env, &d);
    assert_non_null(h);
    assert_int_equal(vigil_instance_init(h, &d), 0);
    const struct vigil_api *api = &vigil_host_api;

    struct vigil_event_builder *b = api->event_begin(h, "x.y");
    assert_non_null(b);
    assert_int_equal(api->publish(h, b), VIGIL_EPLUGIN); /* a sink publishing */
    assert_int_equal(api->publish(h, NULL), VIGIL_EPLUGIN);
    assert_string_equal(api->strerror(VIGIL_EPLUGIN), "plugin misused the host API or failed");

    uint64_t t0 = api->mono_ns();
    assert_true(t0 > 0 && api->mono_ns() >= t0);

    /* Two call sites, 10 calls each: 3 lines each get through. */
    char logpath[] = "/tmp/vigil-test-log-XXXXXX";
    int lfd = mkstemp(logpath);
    assert_true(lfd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(lfd, STDERR_FILENO);
    for (int i = 0; i < 10; i++) {
        api->log_limited(h, VIGIL_LOG_WARN, "site one %d", i);
        api->log_limited(h, VIGIL_LOG_WARN, "site two %d", i);
    }
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[8192] = "";
    ssize_t n = pread(lfd, buf, sizeof buf - 1, 0);
    close(lfd);
    unlink(logpath);
    assert_true(n > 0);
    int one = 0, two = 0;
    for (const char *p = buf; (p = strstr(p, "site ")); p++) {
        one += strncmp(p, "site one ", 9) == 0;
        two += strncmp(p, "site two ", 9) == 0;
    }
    if (one != 3 || two != 3 || !strstr(buf, "[sink:test_capture/test_capture] site one 2")) {
        fail_msg("expected 3 lines per site, got %d and %d:\n%s", one, two, buf);
    }
    assert_null(strstr(buf, "site one 3"));

    vigil_instance_free(h);
    vigil_config_free(c);
    vigil_diag_fini(&d);
    unlink(path);
}

/* A sink walks an event's maps through the API alone: the same items, keys
 * and types a msgpack reader would see, in the body's order. */
static void test_api_walks_events(void **state)
{
    (void)state;
    const struct vigil_api *api = &vigil_host_api;
    struct vigil_event_builder b;
    vigil_event_builder_init(&b);
    vigil_event_begin(&b, "walk.me");
    vigil_event_add_label(&b, "vm", "web-1");
    vigil_event_add_label(&b, "pid", "42");
    vigil_event_add_value(&b, "cpu_pct", 12.5);
    vigil_event_add_value_u64(&b, "exits_total", 7);
    vigil_event_add_attr_i64(&b, "delta", -3);
    vigil_event_add_attr_bool(&b, "up", true);
    vigil_event_attr_list_begin(&b, "ns");
    vigil_event_add_attr_str(&b, NULL, "net");
    vigil_event_attr_end(&b);
    const char *body;
    size_t len;
    assert_int_equal(vigil_event_finish(&b, "h1", "src", 9, &body, &len), 0);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    struct vigil_event_view v;
    const char *why;
    assert_int_equal(vigil_event_decode(&v, "walk.me", 7, body, len, 65536, &zone, &why), 0);
    const struct vigil_event *ev = vigil_event_of(&v);

    const struct vigil_field *top = api->event_field(ev, "");
    assert_int_equal(api->field_type(top), VIGIL_FIELD_MAP);
    assert_int_equal(api->event_len(top), 7); /* ts host source seq labels values attrs */
    const char *k;
    size_t kn;
    assert_non_null(api->event_at(top, 6, &k, &kn));
    assert_true(kn == 5 && memcmp(k, "attrs", 5) == 0);
    assert_null(api->event_at(top, 7, &k, &kn));
    assert_null(k);

    const struct vigil_field *labels = api->event_field(ev, "labels");
    assert_int_equal(api->event_len(labels), 2);
    const char *sv;
    size_t sn;
    const struct vigil_field *f = api->event_at(labels, 1, &k, &kn);
    assert_true(kn == 3 && memcmp(k, "pid", 3) == 0);
    assert_int_equal(api->field_str(f, &sv, &sn), 0);
    assert_true(sn == 2 && memcmp(sv, "42", 2) == 0);
    double d;
    assert_int_equal(api->field_double(f, &d), VIGIL_ETYPE);

    const struct vigil_field *values = api->event_field(ev, "values");
    uint64_t u;
    int64_t i;
    assert_int_equal(api->field_double(api->event_at(values, 0, NULL, NULL), &d), 0);
    assert_true(d == 12.5);
    f = api->event_at(values, 1, NULL, NULL);
    assert_int_equal(api->field_type(f), VIGIL_FIELD_UINT);
    assert_int_equal(api->field_u64(f, &u), 0);
    assert_int_equal(u, 7);
    assert_int_equal(api->field_i64(f, &i), 0);
    assert_int_equal(i, 7);

    f = api->event_field(ev, "attrs.delta");
    assert_int_equal(api->field_type(f), VIGIL_FIELD_INT);
    assert_int_equal(api->field_i64(f, &i), 0);
    assert_int_equal(i, -3);
    assert_int_equal(api->field_u64(f, &u), VIGIL_ETYPE);
    bool bv = false;
    assert_int_equal(api->field_bool(api->event_field(ev, "attrs.up"), &bv), 0);
    assert_true(bv);
    const struct vigil_field *ns = api->event_field(ev, "attrs.ns");
    assert_int_equal(api->field_type(ns), VIGIL_FIELD_LIST);
    assert_int_equal(api->event_len(ns), 1);
    f = api->event_at(ns, 0, &k, &kn); /* a list item has no key */
    assert_null(k);
    assert_int_equal(kn, 0);
    assert_int_equal(api->field_str(f, &sv, &sn), 0);
    assert_true(sn == 3 && memcmp(sv, "net", 3) == 0);

    /* Absent fields: NULL, counted as nothing, read as VIGIL_ENOTFOUND. */
    f = api->event_field(ev, "labels.nope");
    assert_null(f);
    assert_int_equal(api->field_type(f), VIGIL_FIELD_ABSENT);
    assert_int_equal(api->event_len(f), 0);
    assert_null(api->event_at(f, 0, NULL, NULL));
    assert_int_equal(api->field_str(f, &sv, &sn), VIGIL_ENOTFOUND);
    assert_int_equal(api->event_len(api->event_field(ev, "host")), 0); /* a scalar */

    msgpack_zone_destroy(&zone);
    vigil_event_builder_fini(&b);
}

/* A plugin's own counters: names checked, ids stable, values added and set;
 * what the self reporter reads is what the plugin counted. */
static void count_into(void *arg, const char *name, vigil_counter *value)
{
    char *out = arg;
    size_t len = strlen(out);
    snprintf(out + len, 512 - len, "%s=%llu;", name, (unsigned long long)vigil_counter_get(value));
}

static void test_api_counters(void **state)
{
    (void)state;
    struct vigil_diag d;
    vigil_diag_init(&d);
    struct vigil_config *c = config_from("sources:\n  - plugin: gen\n", &d);
    assert_non_null(c);
    struct vigil_host_env env = {
        .host_name = "h", .plugin_dir = c->plugin_dir, .hwm = 100, .max_event_bytes = 65536};
    struct vigil_instance *h = vigil_instance_new(&c->sources[0], VIGIL_SOURCE, &env, &d);
    assert_non_null(h);
    const struct vigil_api *api = &vigil_host_api;
    int a = api->counter_new(h, "skipped_total");
    int b = api->counter_new(h, "tracked");
    assert_int_equal(a, 0);
    assert_int_equal(b, 1);
    assert_int_equal(api->counter_new(h, "skipped_total"), VIGIL_ECONFIG); /* twice */
    assert_int_equal(api->counter_new(h, "dropped_total"), VIGIL_ECONFIG); /* the host's */
    assert_int_equal(api->counter_new(h, "Bad-Name"), VIGIL_ECONFIG);
    assert_int_equal(api->counter_new(h, ""), VIGIL_ECONFIG);
    assert_int_equal(api->counter_new(h, NULL), VIGIL_ECONFIG);
    for (int i = 2; i < 16; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%d", i);
        assert_int_equal(api->counter_new(h, name), i);
    }
    assert_int_equal(api->counter_new(h, "one_too_many"), VIGIL_ETOOBIG);
    api->counter_add(h, a, 3);
    api->counter_add(h, a, 4);
    api->counter_set(h, b, 9);
    api->counter_set(h, b, 5);
    api->counter_add(h, 99, 1); /* unknown ids do nothing */
    api->counter_add(h, -1, 1);
    char seen[512] = "";
    vigil_instance_each_counter(h, count_into, seen);
    assert_non_null(strstr(seen, "skipped_total=7;tracked=5;c2=0;"));
    vigil_instance_free(h);
    vigil_config_free(c);
    vigil_diag_fini(&d);
}

/* A gen instance on its own thread, through a real bus to an inproc SUB:
 * every event, in seq order, with its labels and values. At `rate` 5000 a tick publishes a few
 * events; at 2,000,000 one tick publishes hundreds in one batch (batch_begin/end), which the host
 * sends in pieces of at most 256. */
static void gen_through_bus(const char *rate, uint64_t count)
{
    struct vigil_diag d;
    vigil_diag_init(&d);
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "sources:\n"
             "  - plugin: gen\n"
             "    name: unit\n"
             "    rate: %s\n"
             "    count: %llu\n"
             "    series: 3\n"
             "    labels: { a: b }\n"
             "    values: { k: 2.5 }\n",
             rate, (unsigned long long)count);
    struct vigil_config *c = config_from(yaml, &d);
    assert_int_equal(d.count, 0);
    char dir[] = "/tmp/vigil-ph.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char pub[64], sub[64];
    snprintf(pub, sizeof pub, "ipc://%s/p", dir);
    snprintf(sub, sizeof sub, "ipc://%s/s", dir);
    void *zctx = zmq_ctx_new();
    char err[512];
    struct vigil_bus_opts bo = {
        .publish = pub, .subscribe = sub, .hwm = 1000, .max_event_bytes = 65536};
    struct vigil_bus *bus = vigil_bus_new(zctx, &bo, err, sizeof err);
    assert_non_null(bus);
    void *s = zmq_socket(zctx, ZMQ_SUB);
    zmq_connect(s, VIGIL_BUS_OUT);
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, "gen.unit", 8);
    assert_int_equal(vigil_bus_start(bus, 1), 0);
    assert_int_equal(vigil_bus_wait_ready(bus, 5000), 0);

    struct vigil_host_env env = {.host_name = "h1",
                                 .plugin_dir = c->plugin_dir,
                                 .zctx = zctx,
                                 .hwm = 1000,
                                 .max_event_bytes = 65536};
    struct vigil_instance *h = vigil_instance_new(&c->sources[0], VIGIL_SOURCE, &env, &d);
    assert_non_null(h);
    assert_int_equal(vigil_instance_init(h, &d), 0);
    assert_int_equal(vigil_instance_connect(h), 0);
    assert_int_equal(vigil_instance_start(h), 0);

    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    /* The bus hands its in-process subscribers batches of events (bus.h). */
    struct vigil_bus_reader in;
    vigil_bus_reader_init(&in);
    for (uint64_t i = 1; i <= count; i++) {
        const char *topic, *body;
        size_t tl, bl;
        int rc;
        while ((rc = vigil_bus_reader_next(&in, s, &topic, &tl, &body, &bl)) == 0) {
            zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
            if (zmq_poll(&it, 1, 10000) <= 0) {
                fail_msg("event %llu of %llu never came", (unsigned long long)i,
                         (unsigned long long)count);
            }
        }
        assert_int_equal(rc, 1);
        struct vigil_event_view v;
        const char *why;
        assert_int_equal(vigil_event_decode(&v, topic, tl, body, bl, 65536, &zone, &why), 0);
        assert_int_equal(v.seq, i);
        assert_true(v.source_len == 4 && memcmp(v.source, "unit", 4) == 0);
        assert_true(v.host_len == 2 && memcmp(v.host, "h1", 2) == 0);
        const char *str;
        size_t len;
        assert_int_equal(vigil_msgpack_str(vigil_event_get(&v, "labels.a"), &str, &len), 0);
        assert_true(len == 1 && str[0] == 'b');
        assert_int_equal(vigil_msgpack_str(vigil_event_get(&v, "labels.series"), &str, &len), 0);
        assert_int_equal(str[0] - '0', (int)((i - 1) % 3));
        double k;
        assert_int_equal(vigil_msgpack_double(vigil_event_get(&v, "values.k"), &k), 0);
        assert_true(k == 2.5);
        uint64_t n;
        assert_int_equal(vigil_msgpack_u64(vigil_event_get(&v, "values.n"), &n), 0);
        assert_int_equal(n, i - 1);
        msgpack_zone_clear(&zone);
    }
    /* The source counts a batch once ZeroMQ took it, which may be after the
     * bus has already handed its events on: wait for the count a moment. */
    for (int tries = 0;
         tries < 500 && vigil_counter_get(&vigil_instance_stats(h)->out_total) < count; tries++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(vigil_counter_get(&vigil_instance_stats(h)->out_total), count);
    assert_int_equal(vigil_counter_get(&vigil_instance_stats(h)->dropped_total), 0);
    const char *t, *b;
    size_t tl, bl;
    assert_int_equal(vigil_bus_reader_next(&in, s, &t, &tl, &b, &bl), 0); /* nothing twice */
    vigil_bus_reader_fini(&in);
    vigil_instance_free(h);
    assert_int_equal(vigil_bus_drain(bus, 2000), 0);
    assert_int_equal(vigil_counter_get(&vigil_bus_stats(bus)->lost_total), 0);
    zmq_close(s);
    vigil_bus_free(bus);
    zmq_ctx_term(zctx);
    msgpack_zone_destroy(&zone);
    vigil_config_free(c);
    vigil_diag_fini(&d);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_gen_through_bus(void **state)
{
    (void)state;
    gen_through_bus("5000", 2000);
}

static void test_gen_batches_through_bus(void **state)
{
    (void)state;
    gen_through_bus("2000000", 20000);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loader_refusals),
        cmocka_unit_test(test_loader_accepts_gen),
        cmocka_unit_test(test_options_checked_with_positions),
        cmocka_unit_test(test_plugin_conf_error_positions),
        cmocka_unit_test(test_api_misuse_and_log_limited),
        cmocka_unit_test(test_api_walks_events),
        cmocka_unit_test(test_api_counters),
        cmocka_unit_test(test_gen_through_bus),
        cmocka_unit_test(test_gen_batches_through_bus),
    };
    return cmocka_run_group_tests_name("plugin_host", tests, NULL, NULL);
}

/* The rules engine with crafted events and injected time: each rule kind's
 * verdicts, state machine and config errors. No threads, no sleeping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "event.h"
#include "layout.h"
#include "rules.h"

#define S 1000000000ull
#define MAXV 256

/* Verdicts the engine emitted, kept as bytes and decoded on demand. */
struct verdict {
    char topic[64];
    char body[4096];
    size_t len;
};

struct fx {
    struct vigil_conf *root;
    struct vigil_rules *rules;
    struct vigil_diag d;
    struct vigil_event_builder b;
    msgpack_zone zone, vzone;
    struct verdict v[MAXV];
    size_t nv;
    char body[8192];
    size_t body_len;
    uint64_t seq;
};

static void collect(void *arg, const char *topic, const char *body, size_t len)
{
    struct fx *f = arg;
    assert_true(f->nv < MAXV);
    assert_true(len <= sizeof f->v[0].body);
    snprintf(f->v[f->nv].topic, sizeof f->v[0].topic, "%s", topic);
    memcpy(f->v[f->nv].body, body, len);
    f->v[f->nv].len = len;
    f->nv++;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    vigil_diag_init(&f->d);
    vigil_event_builder_init(&f->b);
    msgpack_zone_init(&f->zone, 4096);
    msgpack_zone_init(&f->vzone, 4096);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    vigil_rules_free(f->rules);
    vigil_conf_free(f->root);
    vigil_diag_fini(&f->d);
    vigil_event_builder_fini(&f->b);
    msgpack_zone_destroy(&f->zone);
    msgpack_zone_destroy(&f->vzone);
    free(f);
    return 0;
}

/* Compiles `rules:` text; returns the number of errors. */
static size_t load(struct fx *f, const char *yaml)
{
    f->root = vigil_conf_parse(yaml, strlen(yaml), "r.yaml", &f->d);
    assert_non_null(f->root);
    f->rules = vigil_rules_new(vigil_conf_get(f->root, "rules"), "rules", &f->d);
    if (f->d.count == 0) {
        assert_non_null(f->rules);
    }
    return f->d.count;
}

static void expect_error(struct fx *f, const char *prefix)
{
    for (size_t i = 0; i < f->d.n; i++) {
        if (strncmp(f->d.msgs[i], prefix, strlen(prefix)) == 0) {
            return;
        }
    }
    vigil_diag_print(&f->d, stderr);
    fail_msg("no error starting with: %s", prefix);
}

/* Every test runs twice: with events decoded, and read as the rules stage
 * reads them (lazily, the rules reading labels and values through the
 * engine's slots), which must judge alike. */
static bool lazy_read;

static int group_lazy(void **state)
{
    (void)state;
    lazy_read = true;
    return 0;
}

static void read_event(struct fx *f, struct vigil_event_view *v, const char *topic, size_t len)
{
    const char *why;
    msgpack_zone_clear(&f->zone);
    int rc =
        lazy_read
            ? vigil_rules_read(f->rules, v, topic, strlen(topic), f->body, len, &f->zone, &why)
            : vigil_event_decode(v, topic, strlen(topic), f->body, len, SIZE_MAX, &f->zone, &why);
    assert_int_equal(rc, 0);
}

/* An event's body into f->body: labels as "k=v,k=v", values as
 * "k=1.5,k=2". */
static void feed_body(struct fx *f, const char *topic, const char *host, const char *labels,
                      const char *values)
{
    vigil_event_begin(&f->b, topic);
    char buf[512];
    snprintf(buf, sizeof buf, "%s", labels ? labels : "");
    for (char *save, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        *eq = '\0';
        vigil_event_add_label(&f->b, kv, eq + 1);
    }
    snprintf(buf, sizeof buf, "%s", values ? values : "");
    for (char *save, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        *eq = '\0';
        vigil_event_add_value(&f->b, kv, atof(eq + 1));
    }
    const char *body;
    size_t len;
    assert_int_equal(vigil_event_finish(&f->b, host, "src", ++f->seq, &body, &len), 0);
    memcpy(f->body, body, len);
    f->body_len = len;
}

static void feed(struct fx *f, const char *topic, const char *host, const char *labels,
                 const char *values, uint64_t now)
{
    feed_body(f, topic, host, labels, values);
    struct vigil_event_view v;
    read_event(f, &v, topic, f->body_len);
    vigil_rules_eval(f->rules, &v, now, collect, f);
}

/* Decodes verdict i. */
static struct vigil_event_view view(struct fx *f, size_t i)
{
    struct vigil_event_view v;
    const char *why;
    assert_true(i < f->nv);
    assert_int_equal(vigil_event_decode(&v, f->v[i].topic, strlen(f->v[i].topic), f->v[i].body,
                                        f->v[i].len, SIZE_MAX, &f->vzone, &why),
                     0);
    return v;
}

static const char *str_at(struct fx *f, size_t i, const char *path)
{
    static char out[512];
    struct vigil_event_view v = view(f, i);
    const char *s;
    size_t n;
    if (vigil_msgpack_str(vigil_event_get(&v, path), &s, &n) != 0) {
        return NULL;
    }
    snprintf(out, sizeof out, "%.*s", (int)n, s);
    return out;
}

static double num_at(struct fx *f, size_t i, const char *path)
{
    struct vigil_event_view v = view(f, i);
    double x;
    if (vigil_msgpack_double(vigil_event_get(&v, path), &x) != 0) {
        fail_msg("verdict %zu has no number at %s", i, path);
    }
    return x;
}

/* ---- threshold ------------------------------------------------------------------ */

static const char *threshold_yaml =
    "rules:\n"
    "  - name: hot\n"
    "    kind: threshold\n"
    "    match: cgroup.stats\n"
    "    expr: values.cpu_usage_pct > 90\n"
    "    clear: values.cpu_usage_pct < 70\n"
    "    for: 30s\n"
    "    severity: critical\n"
    "    message: '{labels.container} at {values.cpu_usage_pct}%'\n";

static void test_threshold_for_and_hysteresis(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, threshold_yaml), 0);
    uint64_t t = 1000 * S;
    feed(f, "cgroup.stats", "h1", "container=web", "cpu_usage_pct=95", t);
    feed(f, "cgroup.stats", "h1", "container=web", "cpu_usage_pct=96", t + 10 * S);
    assert_int_equal(f->nv, 0); /* pending: `for` not yet held */
    feed(f, "cgroup.stats", "h1", "container=web", "cpu_usage_pct=97", t + 30 * S);
    assert_int_equal(f->nv, 1);
    assert_string_equal(f->v[0].topic, "alert.fired");
    assert_string_equal(str_at(f, 0, "labels.rule"), "hot");
    assert_string_equal(str_at(f, 0, "labels.severity"), "critical");
    assert_string_equal(str_at(f, 0, "labels.kind"), "threshold");
    assert_string_equal(str_at(f, 0, "labels.container"), "web");
    assert_string_equal(str_at(f, 0, "attrs.message"), "web at 97%");
    assert_string_equal(str_at(f, 0, "attrs.source_topic"), "cgroup.stats");
    assert_true(num_at(f, 0, "values.cpu_usage_pct") == 97);
    assert_true(num_at(f, 0, "attrs.since") == (double)t);
    char fp[64];
    snprintf(fp, sizeof fp, "%s", str_at(f, 0, "attrs.fingerprint"));
    assert_int_equal(strlen(fp), 16);
    /* Still firing: no second alert.fired. Between 70 and 90: hysteresis. */
    feed(f, "cgroup.stats", "h1", "container=web", "cpu_usage_pct=99", t + 40 * S);
    feed(f, "cgroup.stats", "h1", "container=web", "cpu_usage_pct=80", t + 50 * S);
    assert_int_equal(f->nv, 1);
    feed(f, "cgroup.stats", "h1", "container=web", "cpu_usage_pct=60", t + 60 * S);
    assert_int_equal(f->nv, 2);
    assert_string_equal(f->v[1].topic, "alert.resolved");
    assert_string_equal(str_at(f, 1, "attrs.fingerprint"), fp);
    /* A new episode fires again, with the same fingerprint. */
    feed(f, "cgroup.stats", "h1", "container=web", "cpu_usage_pct=95", t + 70 * S);
    feed(f, "cgroup.stats", "h1", "container=web", "cpu_usage_pct=95", t + 100 * S);
    assert_int_equal(f->nv, 3);
    assert_string_equal(str_at(f, 2, "attrs.fingerprint"), fp);
}

static void test_threshold_pending_cancelled_and_series(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, threshold_yaml), 0);
    uint64_t t = 1000 * S;
    feed(f, "cgroup.stats", "h1", "container=a", "cpu_usage_pct=95", t);
    feed(f, "cgroup.stats", "h1", "container=a", "cpu_usage_pct=50", t + 20 * S); /* cancelled */
    feed(f, "cgroup.stats", "h1", "container=a", "cpu_usage_pct=95", t + 40 * S);
    assert_int_equal(f->nv, 0); /* `for` restarted */
    /* Another container and another host are other series. */
    feed(f, "cgroup.stats", "h1", "container=b", "cpu_usage_pct=95", t);
    feed(f, "cgroup.stats", "h2", "container=a", "cpu_usage_pct=95", t);
    feed(f, "cgroup.stats", "h1", "container=b", "cpu_usage_pct=95", t + 30 * S);
    feed(f, "cgroup.stats", "h2", "container=a", "cpu_usage_pct=95", t + 30 * S);
    assert_int_equal(f->nv, 2);
    assert_string_not_equal(str_at(f, 0, "attrs.fingerprint"), "");
    char a[32];
    snprintf(a, sizeof a, "%s", str_at(f, 0, "attrs.fingerprint"));
    assert_string_not_equal(a, str_at(f, 1, "attrs.fingerprint"));
    /* A missing value is "not above": no alert, no error. */
    feed(f, "cgroup.stats", "h1", "container=c", "memory=5", t);
    feed(f, "cgroup.stats", "h1", "container=c", "memory=5", t + 60 * S);
    assert_int_equal(f->nv, 2);
    /* Topics the rule does not match are ignored. */
    feed(f, "kvm.vm", "h1", "container=d", "cpu_usage_pct=99", t + 60 * S);
    assert_int_equal(f->nv, 2);
}

static void test_threshold_renotify_and_stale(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, "rules:\n"
                             "  - name: r\n"
                             "    kind: threshold\n"
                             "    match: [x.]\n"
                             "    expr: values.v >= 1\n"
                             "    renotify: 1m\n"
                             "    group_by: [vm]\n"),
                     0);
    uint64_t t = 5000 * S;
    feed(f, "x.y", "h", "vm=a,pid=1", "v=1", t); /* fires at once: no `for` */
    assert_int_equal(f->nv, 1);
    feed(f, "x.y", "h", "vm=a,pid=2", "v=1", t + 10 * S); /* same series: group_by vm */
    assert_int_equal(f->nv, 1);
    feed(f, "x.y", "h", "vm=a,pid=2", "v=1", t + 61 * S);
    assert_int_equal(f->nv, 2);
    assert_string_equal(f->v[1].topic, "alert.fired");
    struct vigil_event_view v = view(f, 1);
    assert_non_null(vigil_event_get(&v, "attrs.renotify"));
    /* The series goes silent: resolved after 5 x its gap (gap ~ 10..51 s). */
    vigil_rules_tick(f->rules, t + 100 * S, collect, f);
    assert_int_equal(f->nv, 2);
    vigil_rules_tick(f->rules, t + 1000 * S, collect, f);
    assert_int_equal(f->nv, 3);
    assert_string_equal(f->v[2].topic, "alert.resolved");
    assert_string_equal(str_at(f, 2, "attrs.reason"), "stale");
    assert_string_equal(str_at(f, 2, "labels.vm"), "a");
    assert_string_equal(str_at(f, 2, "host"), "h");
    vigil_rules_tick(f->rules, t + 2000 * S, collect, f);
    assert_int_equal(f->nv, 3); /* forgotten: resolved once */
}

static void test_threshold_config_errors(void **state)
{
    struct fx *f = *state;
    assert_true(load(f, "rules:\n"
                        "  - name: a\n"
                        "    kind: threshold\n"
                        "    match: x\n"
                        "    expr: values.v >\n"
                        "    fore: 5s\n"
                        "  - name: a\n"
                        "    kind: thresh\n"
                        "    match: y\n") >= 3);
    expect_error(f, "r.yaml:5:"); /* the bad expression */
    expect_error(f, "r.yaml:6:5: unknown key 'fore' for threshold rule 'a'");
    expect_error(f, "r.yaml:7:11: duplicate rule name 'a'");
}

/* ---- capacity -------------------------------------------------------------------- */

#define GIB (1024.0 * 1024.0 * 1024.0)

static const char *capacity_yaml = "rules:\n"
                                   "  - name: cap\n"
                                   "    kind: capacity\n"
                                   "    match: [system.stats, cgroup.stats, kvm.vm]\n"
                                   "    overcommit: {cpu: 1.0, memory: 1.0}\n"
                                   "    top: 2\n"
                                   "    publish_every: 10s\n"
                                   "    republish: 0s\n";

/* The index of the n-th (from 0) verdict or event on `topic`, or -1. */
static int nth(struct fx *f, const char *topic, int n)
{
    for (size_t i = 0; i < f->nv; i++) {
        if (strcmp(f->v[i].topic, topic) == 0 && n-- == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int count_of(struct fx *f, const char *topic)
{
    int n = 0;
    while (nth(f, topic, n) >= 0) {
        n++;
    }
    return n;
}

/* attrs.top[k].<key> of verdict i, as text ("" when absent). */
static const char *top_at(struct fx *f, size_t i, size_t k, const char *key)
{
    static char out[256];
    struct vigil_event_view v = view(f, i);
    const msgpack_object *item = vigil_msgpack_at(vigil_event_get(&v, "attrs.top"), k, NULL, NULL);
    const msgpack_object *o = vigil_msgpack_map_get(item, key, strlen(key));
    const char *s;
    size_t n;
    double x;
    out[0] = '\0';
    if (vigil_msgpack_str(o, &s, &n) == 0) {
        snprintf(out, sizeof out, "%.*s", (int)n, s);
    } else if (vigil_msgpack_double(o, &x) == 0) {
        snprintf(out, sizeof out, "%g", x);
    }
    return out;
}

static void host_stats(struct fx *f, const char *host, int cpus, double mem, uint64_t t)
{
    char v[128];
    snprintf(v, sizeof v, "cpu_count=%d,memory_total_bytes=%.0f", cpus, mem);
    feed(f, "system.stats", host, NULL, v, t);
}

static void test_capacity_ratios_fire_and_top(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, capacity_yaml), 0);
    uint64_t t = 1000 * S;
    /* Reservations before the capacity is known are kept, not judged. */
    feed(f, "cgroup.stats", "h1", "cgroup=/docker/a,container=a",
         "cpu_max_cpus=1.5,memory_max_bytes=2147483648", t);
    assert_int_equal(f->nv, 0);
    host_stats(f, "h1", 4, 8 * GIB, t + 1 * S);
    assert_int_equal(f->nv, 1); /* capacity.host, nothing firing */
    assert_string_equal(f->v[0].topic, "capacity.host");
    assert_string_equal(str_at(f, 0, "labels.rule"), "cap");
    assert_string_equal(str_at(f, 0, "host"), "h1");
    assert_true(num_at(f, 0, "values.reserved_cpus") == 1.5);
    assert_true(num_at(f, 0, "values.capacity_cpus") == 4);
    assert_true(num_at(f, 0, "values.ratio_cpu") == 1.5 / 4);
    assert_true(num_at(f, 0, "values.headroom_cpus") == 2.5);
    assert_true(num_at(f, 0, "values.reserved_memory_bytes") == 2 * GIB);
    assert_true(num_at(f, 0, "values.headroom_memory_bytes") == 6 * GIB);
    assert_true(num_at(f, 0, "values.overcommit_cpu") == 1);
    assert_true(num_at(f, 0, "values.unlimited_memory") == 0);
    assert_true(num_at(f, 0, "values.contributors") == 1);
    /* An unlimited container counts 0 and in unlimited_<r>; a cgroup that is
     * no container or VM does not count. */
    feed(f, "cgroup.stats", "h1", "cgroup=/docker/b,container=b", "cpu_max_cpus=3", t + 2 * S);
    feed(f, "cgroup.stats", "h1", "cgroup=/system.slice/sshd.service", "cpu_max_cpus=8", t + 2 * S);
    int fired = nth(f, "alert.fired", 0);
    assert_true(fired >= 0); /* 4.5 of 4 CPUs */
    assert_string_equal(str_at(f, fired, "labels.resource"), "cpu");
    assert_string_equal(str_at(f, fired, "labels.kind"), "capacity");
    assert_true(num_at(f, fired, "values.ratio_cpu") == 4.5 / 4);
    assert_true(num_at(f, fired, "values.ratio") == 4.5 / 4);
    assert_true(num_at(f, fired, "values.headroom_cpus") == -0.5);
    assert_true(num_at(f, fired, "values.unlimited_memory") == 1);
    assert_string_equal(top_at(f, fired, 0, "name"), "/docker/b");
    assert_string_equal(top_at(f, fired, 0, "reserved"), "3");
    assert_string_equal(top_at(f, fired, 1, "name"), "/docker/a");
    assert_string_equal(top_at(f, fired, 0, "kind"), "cgroup");
    assert_string_equal(str_at(f, fired, "attrs.message"),
                        "h1: cpu reserved 4.5 of capacity 4 (ratio 1.125, overcommit limit 1)");
    assert_int_equal(count_of(f, "alert.fired"), 1);
    /* Within publish_every the change waits; the tick publishes it. */
    assert_int_equal(count_of(f, "capacity.host"), 1);
    vigil_rules_tick(f->rules, t + 5 * S, collect, f);
    assert_int_equal(count_of(f, "capacity.host"), 1);
    vigil_rules_tick(f->rules, t + 11 * S, collect, f);
    assert_int_equal(count_of(f, "capacity.host"), 2);
    int ch = nth(f, "capacity.host", 1);
    assert_true(num_at(f, ch, "values.reserved_cpus") == 4.5);
    assert_true(num_at(f, ch, "values.unlimited_memory") == 1);
    assert_true(num_at(f, ch, "values.contributors") == 2);
    /* Unchanged: nothing more (republish: 0s). Still firing: no repeat. */
    vigil_rules_tick(f->rules, t + 100 * S, collect, f);
    assert_int_equal(count_of(f, "capacity.host"), 2);
    assert_int_equal(count_of(f, "alert.fired"), 1);
    /* b's quota lowered: below the limit, resolved. */
    feed(f, "cgroup.stats", "h1", "cgroup=/docker/b,container=b", "cpu_max_cpus=2", t + 101 * S);
    int res = nth(f, "alert.resolved", 0);
    assert_true(res >= 0);
    assert_string_equal(str_at(f, res, "labels.resource"), "cpu");
    assert_string_equal(str_at(f, res, "attrs.fingerprint"), str_at(f, fired, "attrs.fingerprint"));
    assert_true(num_at(f, res, "values.ratio_cpu") == 3.5 / 4);
    /* Another host is judged on its own. */
    host_stats(f, "h2", 1, GIB, t + 102 * S);
    feed(f, "kvm.vm", "h2", "vm=big,pid=7", "vcpus=2,guest_memory_bytes=536870912", t + 102 * S);
    assert_int_equal(count_of(f, "alert.fired"), 2);
    int f2 = nth(f, "alert.fired", 1);
    assert_string_equal(str_at(f, f2, "host"), "h2");
    assert_string_equal(top_at(f, f2, 0, "kind"), "vm");
    assert_string_equal(top_at(f, f2, 0, "name"), "big");
}

/* Nested cgroups count once (the top-most counted one); a VM seen by kvm
 * and through its libvirt cgroup counts once, the larger of the two per
 * resource. */
static void test_capacity_nested_and_vm_once(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, capacity_yaml), 0);
    uint64_t t = 1000 * S;
    host_stats(f, "h", 64, 256 * GIB, t);
    /* The child first, then its parent: the child stops counting. */
    feed(f, "cgroup.stats", "h", "cgroup=/docker/a/inner,container=a", "cpu_max_cpus=1", t);
    feed(f, "cgroup.stats", "h", "cgroup=/docker/a,container=a", "cpu_max_cpus=2", t);
    feed(f, "cgroup.stats", "h", "cgroup=/docker/a/inner,container=a", "cpu_max_cpus=1", t);
    feed(f, "cgroup.stats", "h", "cgroup=/docker/ab,container=ab", "cpu_max_cpus=4", t);
    /* A libvirt VM: its scope, the emulator cgroup below, and kvm.vm. */
    const char *scope = "cgroup=/machine.slice/machine-qemu\\x2d1\\x2dweb.scope,vm=web";
    feed(f, "cgroup.stats", "h", scope, "memory_max_bytes=3221225472", t);
    feed(f, "cgroup.stats", "h",
         "cgroup=/machine.slice/machine-qemu\\x2d1\\x2dweb.scope/libvirt/emulator,vm=web",
         "memory_max_bytes=1073741824,cpu_max_cpus=0.5", t);
    feed(f, "kvm.vm", "h", "vm=web,pid=9", "vcpus=8,guest_memory_bytes=2147483648", t);
    vigil_rules_tick(f->rules, t + 20 * S, collect, f);
    int ch = nth(f, "capacity.host", count_of(f, "capacity.host") - 1);
    assert_true(ch >= 0);
    /* docker/a 2 + docker/ab 4 + web max(8 vCPUs, no quota at its scope) */
    assert_true(num_at(f, ch, "values.reserved_cpus") == 14);
    /* web: max(2 GiB guest, 3 GiB scope limit); the containers: unlimited */
    assert_true(num_at(f, ch, "values.reserved_memory_bytes") == 3 * GIB);
    assert_true(num_at(f, ch, "values.unlimited_memory") == 2);
    assert_true(num_at(f, ch, "values.unlimited_cpu") == 0);
    assert_true(num_at(f, ch, "values.contributors") == 3);
}

/* for, hysteresis (clear), renotify; configured unlimited; stale
 * contributors leave the sums. */
static void test_capacity_for_clear_renotify_stale(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, "rules:\n"
                             "  - name: mem\n"
                             "    kind: capacity\n"
                             "    match: [system.stats, cgroup.stats, kvm.vm]\n"
                             "    overcommit: {memory: 1.0}\n"
                             "    clear: {memory: 0.8}\n"
                             "    unlimited: {memory: 1GiB, cpu: 0.5}\n"
                             "    for: 30s\n"
                             "    renotify: 10m\n"
                             "    stale: 2m\n"
                             "    publish: false\n"),
                     0);
    uint64_t t = 1000 * S;
    host_stats(f, "h", 2, 4 * GIB, t);
    feed(f, "cgroup.stats", "h", "cgroup=/docker/a,container=a", "memory_max_bytes=3221225472", t);
    feed(f, "cgroup.stats", "h", "cgroup=/docker/b,container=b", NULL, t); /* 1 GiB: unlimited */
    feed(f, "cgroup.stats", "h", "cgroup=/docker/c,container=c", "memory_max_bytes=536870912", t);
    assert_int_equal(f->nv, 0); /* 4.5 of 4 GiB: pending */
    vigil_rules_tick(f->rules, t + 29 * S, collect, f);
    assert_int_equal(f->nv, 0);
    vigil_rules_tick(f->rules, t + 30 * S, collect, f);
    assert_int_equal(f->nv, 1);
    assert_string_equal(f->v[0].topic, "alert.fired");
    assert_string_equal(str_at(f, 0, "labels.resource"), "memory");
    assert_true(num_at(f, 0, "values.ratio_memory") == 4.5 / 4);
    assert_true(num_at(f, 0, "values.unlimited_memory") == 1);
    assert_true(num_at(f, 0, "values.reserved_cpus") == 1.5); /* 3 x 0.5 */
    struct vigil_event_view v = view(f, 0);
    assert_non_null(vigil_event_get(&v, "values.ratio_cpu")); /* computed, not judged: */
    assert_null(vigil_event_get(&v, "values.overcommit_cpu"));
    /* Below the limit but above clear: still firing. */
    feed(f, "cgroup.stats", "h", "cgroup=/docker/c,container=c", "memory_max_bytes=0", t + 40 * S);
    assert_int_equal(f->nv, 1);
    /* Renotify. */
    for (uint64_t s = 41; s <= 650; s += 30) {
        feed(f, "system.stats", "h", NULL, "cpu_count=2,memory_total_bytes=4294967296", t + s * S);
        feed(f, "cgroup.stats", "h", "cgroup=/docker/a,container=a", "memory_max_bytes=3221225472",
             t + s * S);
        feed(f, "cgroup.stats", "h", "cgroup=/docker/b,container=b", NULL, t + s * S);
        vigil_rules_tick(f->rules, t + s * S, collect, f);
    }
    assert_int_equal(count_of(f, "alert.fired"), 2);
    v = view(f, (size_t)nth(f, "alert.fired", 1));
    assert_non_null(vigil_event_get(&v, "attrs.renotify"));
    assert_int_equal(count_of(f, "alert.resolved"), 0);
    /* b stops reporting: after `stale` it leaves the sum (3 of 4 GiB: 0.75
     * is at or below clear). */
    for (uint64_t s = 660; s <= 800; s += 20) {
        feed(f, "system.stats", "h", NULL, "cpu_count=2,memory_total_bytes=4294967296", t + s * S);
        feed(f, "cgroup.stats", "h", "cgroup=/docker/a,container=a", "memory_max_bytes=3221225472",
             t + s * S);
        vigil_rules_tick(f->rules, t + s * S, collect, f);
    }
    assert_int_equal(count_of(f, "alert.resolved"), 1);
    int r = nth(f, "alert.resolved", 0);
    assert_true(num_at(f, r, "values.ratio_memory") == 0.75);
    assert_true(num_at(f, r, "values.contributors") == 1);
    /* The host itself goes silent: forgotten, nothing fires or resolves. */
    size_t before = f->nv;
    vigil_rules_tick(f->rules, t + 2000 * S, collect, f);
    vigil_rules_tick(f->rules, t + 3000 * S, collect, f);
    assert_int_equal(f->nv, before);
}

/* `cgroups` globs choose exactly; `vms: false` leaves kvm.vm out and a VM's
 * cgroup counts as any other; a counted parent that goes stale lets the
 * cgroup below it count again. */
static void test_capacity_globs_vms_off_and_unnesting(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, "rules:\n"
                             "  - name: cap\n"
                             "    kind: capacity\n"
                             "    match: [system.stats, cgroup.stats, kvm.vm]\n"
                             "    overcommit: {cpu: 8}\n"
                             "    cgroups: ['/svc/**', '/machine.slice/*']\n"
                             "    vms: false\n"
                             "    stale: 1m\n"
                             "    publish_every: 0s\n"),
                     0);
    uint64_t t = 1000 * S;
    host_stats(f, "h", 4, GIB, t);
    feed(f, "cgroup.stats", "h", "cgroup=/svc/a", "cpu_max_cpus=1", t);
    feed(f, "cgroup.stats", "h", "cgroup=/svc/a/b", "cpu_max_cpus=0.5", t);
    feed(f, "cgroup.stats", "h", "cgroup=/docker/x,container=x", "cpu_max_cpus=2", t);
    feed(f, "cgroup.stats", "h", "cgroup=/machine.slice/vm1.scope,vm=vm1", "cpu_max_cpus=3", t);
    feed(f, "kvm.vm", "h", "vm=vm1,pid=3", "vcpus=16", t);
    int ch = nth(f, "capacity.host", count_of(f, "capacity.host") - 1);
    /* /svc/a 1 (b nested) + vm1's scope 3; /docker/x not selected, kvm.vm off */
    assert_true(num_at(f, ch, "values.reserved_cpus") == 4);
    assert_true(num_at(f, ch, "values.contributors") == 2);
    /* /svc/a goes silent: once forgotten, b counts at its next event. */
    for (uint64_t s = 20; s <= 80; s += 20) {
        feed(f, "system.stats", "h", NULL, "cpu_count=4,memory_total_bytes=1073741824", t + s * S);
        feed(f, "cgroup.stats", "h", "cgroup=/svc/a/b", "cpu_max_cpus=0.5", t + s * S);
        feed(f, "cgroup.stats", "h", "cgroup=/machine.slice/vm1.scope,vm=vm1", "cpu_max_cpus=3",
             t + s * S);
        vigil_rules_tick(f->rules, t + s * S, collect, f);
    }
    feed(f, "cgroup.stats", "h", "cgroup=/svc/a/b", "cpu_max_cpus=0.5", t + 81 * S);
    ch = nth(f, "capacity.host", count_of(f, "capacity.host") - 1);
    assert_true(num_at(f, ch, "values.reserved_cpus") == 3.5);
    assert_true(num_at(f, ch, "values.contributors") == 2);
}

/* A reload that changes the rule resolves what it has firing; an unchanged
 * one keeps it firing without a word. */
static void test_capacity_reload(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, capacity_yaml), 0);
    uint64_t t = 1000 * S;
    host_stats(f, "h", 1, GIB, t);
    feed(f, "kvm.vm", "h", "vm=x,pid=1", "vcpus=2", t);
    assert_int_equal(count_of(f, "alert.fired"), 1);
    struct vigil_diag d;
    vigil_diag_init(&d);
    struct vigil_conf *same = vigil_conf_parse(capacity_yaml, strlen(capacity_yaml), "r.yaml", &d);
    struct vigil_rules *nw = vigil_rules_new(vigil_conf_get(same, "rules"), "rules", &d);
    struct vigil_rules_reload counts;
    assert_int_equal(vigil_rules_adopt(nw, f->rules, t + S, collect, f, &counts), 0);
    assert_int_equal(counts.kept, 1);
    vigil_rules_free(f->rules);
    f->rules = nw;
    assert_int_equal(count_of(f, "alert.resolved"), 0);
    const char *changed = "rules:\n"
                          "  - name: cap\n"
                          "    kind: capacity\n"
                          "    match: [system.stats, cgroup.stats, kvm.vm]\n"
                          "    overcommit: {cpu: 4.0}\n";
    struct vigil_conf *c2 = vigil_conf_parse(changed, strlen(changed), "r.yaml", &d);
    nw = vigil_rules_new(vigil_conf_get(c2, "rules"), "rules", &d);
    assert_int_equal(vigil_rules_adopt(nw, f->rules, t + 2 * S, collect, f, &counts), 0);
    assert_int_equal(counts.changed, 1);
    vigil_rules_free(f->rules);
    f->rules = nw;
    int r = nth(f, "alert.resolved", 0);
    assert_true(r >= 0);
    assert_string_equal(str_at(f, r, "attrs.reason"), "changed");
    assert_string_equal(str_at(f, r, "labels.resource"), "cpu");
    assert_int_equal(d.count, 0);
    vigil_conf_free(same);
    vigil_conf_free(c2);
    vigil_diag_fini(&d);
}

/* Many contributors on many hosts: sums stay exact as they come and go. */
static void test_capacity_many_exact(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, "rules:\n"
                             "  - name: cap\n"
                             "    kind: capacity\n"
                             "    match: [system.stats, cgroup.stats]\n"
                             "    overcommit: {cpu: 1000}\n"
                             "    stale: 1m\n"
                             "    publish_every: 0s\n"),
                     0);
    uint64_t t = 1000 * S;
    char host[32], labels[128];
    for (int h = 0; h < 20; h++) {
        snprintf(host, sizeof host, "h%d", h);
        host_stats(f, host, 8, GIB, t);
        for (int i = 0; i < 150; i++) {
            snprintf(labels, sizeof labels, "cgroup=/kubepods/pod%d/c%d,container=c%d", i / 3, i,
                     i);
            feed(f, "cgroup.stats", host, labels, "cpu_max_cpus=0.1", t);
        }
        f->nv = 0;
    }
    /* Half of h0's stop reporting. */
    for (int i = 0; i < 150; i += 2) {
        snprintf(labels, sizeof labels, "cgroup=/kubepods/pod%d/c%d,container=c%d", i / 3, i, i);
        feed(f, "cgroup.stats", "h0", labels, "cpu_max_cpus=0.1", t + 50 * S);
    }
    feed(f, "system.stats", "h0", NULL, "cpu_count=8,memory_total_bytes=1073741824", t + 90 * S);
    vigil_rules_tick(f->rules, t + 90 * S, collect, f);
    int ch = nth(f, "capacity.host", count_of(f, "capacity.host") - 1);
    assert_true(ch >= 0);
    assert_string_equal(str_at(f, ch, "host"), "h0");
    assert_true(num_at(f, ch, "values.reserved_cpus") == 7.5); /* 75 x 0.1, exactly */
    assert_true(num_at(f, ch, "values.contributors") == 75);
}

static void test_capacity_config_errors(void **state)
{
    struct fx *f = *state;
    assert_true(load(f, "rules:\n"
                        "  - name: a\n"
                        "    kind: capacity\n"
                        "    match: cgroup.stats\n"
                        "  - name: b\n"
                        "    kind: capacity\n"
                        "    match: cgroup.stats\n"
                        "    overcommit: {cpu: 2, disk: 1}\n"
                        "    clear: {cpu: 3}\n"
                        "    top: 99\n"
                        "    cgroups: ['/a/[']\n"
                        "    group_by: [x]\n") >= 5);
    expect_error(f, "r.yaml:2:5: capacity rule 'a' needs 'overcommit'");
    expect_error(f, "r.yaml:8:");  /* disk */
    expect_error(f, "r.yaml:9:");  /* clear above overcommit */
    expect_error(f, "r.yaml:10:"); /* top */
    expect_error(f, "r.yaml:12:5: unknown key 'group_by' for capacity rule 'b'");
    expect_error(f, "r.yaml:7:12: capacity rule 'b': match must cover system.stats");
}

/* ---- bound ------------------------------------------------------------------------ */

static void test_bound(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, "rules:\n"
                             "  - name: kvm-overhead\n"
                             "    kind: bound\n"
                             "    match: kvm.vm\n"
                             "    weights: { H: 1.0, C: 0.001, M: 0.000000001 }\n"
                             "    terms: { H: values.host_cpu_pct, C: values.exits_per_s,\n"
                             "             M: values.memory_overhead_bytes }\n"
                             "    max: { H: 20, C: 10000, M: 1000000000 }\n"),
                     0);
    /* O_max = 20 + 10 + 1 = 31. */
    uint64_t t = 100 * S;
    feed(f, "kvm.vm", "h", "vm=a", "host_cpu_pct=10,exits_per_s=5000,memory_overhead_bytes=1e8", t);
    assert_int_equal(f->nv, 0); /* 10 + 5 + 0.1 */
    feed(f, "kvm.vm", "h", "vm=a", "host_cpu_pct=10,exits_per_s=30000,memory_overhead_bytes=1e8",
         t + S);
    assert_int_equal(f->nv, 1); /* 10 + 30 + 0.1 = 40.1 > 31 */
    assert_string_equal(f->v[0].topic, "alert.fired");
    assert_true(num_at(f, 0, "values.overhead") > 40.09 && num_at(f, 0, "values.overhead") < 40.11);
    assert_true(num_at(f, 0, "values.overhead_max") == 31.0);
    assert_true(num_at(f, 0, "values.term_C") == 30000.0);
    assert_string_equal(str_at(f, 0, "labels.dominant"), "C");
    /* A missing term: not judged, nothing changes. */
    feed(f, "kvm.vm", "h", "vm=a", "host_cpu_pct=1", t + 2 * S);
    assert_int_equal(f->nv, 1);
    feed(f, "kvm.vm", "h", "vm=a", "host_cpu_pct=1,exits_per_s=1,memory_overhead_bytes=1",
         t + 3 * S);
    assert_int_equal(f->nv, 2);
    assert_string_equal(f->v[1].topic, "alert.resolved");
}

/* A key given twice: the first value counts, for expressions and policy
 * labels alike (a search finds the first). */
static void test_repeated_keys_first_wins(void **state)
{
    struct fx *f = *state;
    assert_int_equal(
        load(f, "rules:\n"
                "  - name: t\n"
                "    kind: threshold\n"
                "    match: m\n"
                "    expr: labels.k == \"a\" && values.x > 1 && !(labels.nope == \"z\") &&\n"
                "      values.a_value_named_longer_than_a_shape_keeps > 0\n"
                "  - name: p\n"
                "    kind: policy\n"
                "    match: m\n"
                "    rules:\n"
                "      - allow: { subject: 'user:*' }\n"),
        0);
    feed(f, "m", "h", "k=a,k=b,subject=user:x,subject=guest:y",
         "x=2,x=0,a_value_named_longer_than_a_shape_keeps=1", 1 * S);
    assert_int_equal(f->nv, 1);
    assert_string_equal(f->v[0].topic, "alert.fired");
    feed(f, "m", "h", "k=b,k=a,subject=guest:y,subject=user:x",
         "x=0,x=2,a_value_named_longer_than_a_shape_keeps=1", 2 * S);
    /* (Another series: the labels' order differs. It does not fire.) */
    assert_int_equal(f->nv, 2);
    assert_string_equal(f->v[1].topic, "alert.violation");
    assert_string_equal(str_at(f, 1, "attrs.subject"), "guest:y");
}

/* Reads `labels`/`values` ("k=v,...") as body i of the layout test. */
static const char *layout_body(struct fx *f, const char *labels, const char *values, size_t *len)
{
    feed_body(f, "m", "h", labels, values);
    *len = f->body_len;
    return f->body;
}

/* An event laid out as the last one is read from its offsets, with the
 * walk's answers; one whose keys or types differ (even at equal lengths) is
 * walked. */
static void test_layout_reads_like_a_walk(void **state)
{
    struct fx *f = *state;
    struct vigil_layout *lay = calloc(1, sizeof *lay);
    static const char *const ev[][3] = {
        /* labels, values, 1 when read from the layout */
        {"ab=xy,cd=uv", "p=1.5,q=2", "0"},
        {"ab=zz,cd=ww", "p=7.25,q=-3", "1"}, /* other bytes inside strings and floats */
        {"ac=zz,cd=ww", "p=7.25,q=-3", "0"}, /* a key differs */
        {"ac=zz,cd=ww", "p=7.25,q=-3", "1"},
        {"ac=zzz,cd=w", "p=7.25,q=-3", "0"}, /* lengths differ */
        {"ac=zzz,cd=w", "p=7.25", "0"},      /* an item less */
    };
    for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++) {
        size_t len;
        const char *body = layout_body(f, ev[i][0], ev[i][1], &len);
        struct vigil_event_view a, b;
        const char *why;
        msgpack_zone_clear(&f->zone);
        assert_int_equal(vigil_event_read_trusted(&a, "m", 1, body, len, &f->zone, &why), 0);
        assert_int_equal(vigil__layout_read(lay, &b, "m", 1, body, len, &f->zone, &why),
                         ev[i][2][0] - '0');
        assert_true(a.ts == b.ts && a.seq == b.seq && a.host == b.host && a.source == b.source);
        assert_true(a.host_len == b.host_len && a.source_len == b.source_len);
        assert_true(a.labels_raw == b.labels_raw && a.values_raw == b.values_raw && b.has_raw);
        assert_true(b.tree_zone == &f->zone && b.body == body && b.body_len == len);
    }
    free(lay);
}

/* Events of a layout read by plan (the third on): the first of repeated
 * keys still wins, and a key the layout lacks reads missing even when
 * another topic's event just had it. */
static void test_layout_plans(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, "rules:\n"
                             "  - name: t\n"
                             "    kind: threshold\n"
                             "    match: [m, n]\n"
                             "    expr: labels.nope != \"\"\n"
                             "  - name: p\n"
                             "    kind: policy\n"
                             "    match: n\n"
                             "    rules:\n"
                             "      - allow: { subject: 'user:*' }\n"),
                     0);
    for (int i = 0; i < 4; i++) {
        feed(f, "m", "h", "nope=z,subject=user:aa", NULL, (uint64_t)(2 * i + 1) * S);
        feed(f, "n", "h",
             i % 2 ? "subject=user:aa,subject=guest:a" : "subject=guest:a,subject=user:aa", NULL,
             (uint64_t)(2 * i + 2) * S);
    }
    assert_int_equal(count_of(f, "alert.fired"), 1); /* m's series, once */
    assert_int_equal(count_of(f, "alert.violation"), 2);
    for (size_t i = 0; i < f->nv; i++) {
        if (strcmp(f->v[i].topic, "alert.violation") == 0) {
            assert_string_equal(str_at(f, i, "attrs.subject"), "guest:a");
        }
    }
}

static void test_bound_config_errors(void **state)
{
    struct fx *f = *state;
    assert_true(load(f, "rules:\n"
                        "  - name: b\n"
                        "    kind: bound\n"
                        "    match: kvm.vm\n"
                        "    weights: { H: 1, X: 2 }\n"
                        "    terms: { H: values.h > 1 }\n"
                        "    max: { H: 20 }\n") >= 2);
    expect_error(f, "r.yaml:5:25: bound rule 'b': 'X' is not one of its terms");
    expect_error(f, "r.yaml:6:");
}

/* ---- policy ------------------------------------------------------------------------ */

static const char *policy_yaml =
    "rules:\n"
    "  - name: access\n"
    "    kind: policy\n"
    "    match: access\n"
    "    history: 2\n"
    "    rules:\n"
    "      - deny: { subject: 'guest:*', action: [write, delete] }\n"
    "        id: no-guest-writes\n"
    "      - allow: { subject: '*', action: read, resource: '/srv/**' }\n"
    "      - allow: { subject: 'admin:*' }\n"
    "        when: values.mfa == 1\n";

static void test_policy(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, policy_yaml), 0);
    feed(f, "access", "h", "subject=guest:bob,action=write,resource=/srv/a", NULL, S);
    assert_int_equal(f->nv, 1);
    assert_string_equal(f->v[0].topic, "alert.violation");
    assert_true(num_at(f, 0, "attrs.entry") == 0);
    assert_string_equal(str_at(f, 0, "attrs.entry_id"), "no-guest-writes");
    assert_string_equal(str_at(f, 0, "attrs.subject"), "guest:bob");
    struct vigil_event_view v = view(f, 0);
    const msgpack_object *enforced = vigil_event_get(&v, "attrs.enforced");
    assert_true(enforced && enforced->type == MSGPACK_OBJECT_BOOLEAN && enforced->via.boolean);
    feed(f, "access", "h", "subject=guest:bob,action=read,resource=/srv/a/b", NULL, 2 * S);
    assert_int_equal(f->nv, 1); /* allowed by entry 1: counted, not published */
    feed(f, "access", "h", "subject=admin:al,action=delete,resource=/etc", "mfa=1", 3 * S);
    assert_int_equal(f->nv, 1);
    feed(f, "access", "h", "subject=admin:al,action=delete,resource=/etc", "mfa=0", 4 * S);
    assert_int_equal(f->nv, 2); /* `when` false: default deny */
    assert_string_equal(str_at(f, 1, "attrs.entry"), "default");
    /* No subject label: the subject is "", which '*' matches: allowed. */
    feed(f, "access", "h", "action=read,resource=/srv/x", NULL, 5 * S);
    assert_int_equal(f->nv, 2);
    feed(f, "access", "h", "action=write,resource=/srv/x", NULL, 6 * S);
    assert_int_equal(f->nv, 3);
}

static void test_policy_audit_and_errors(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, "rules:\n"
                             "  - name: p\n"
                             "    kind: policy\n"
                             "    match: access\n"
                             "    mode: audit\n"
                             "    default: deny\n"),
                     0);
    feed(f, "access", "h", "subject=a,action=b,resource=c", NULL, S);
    assert_int_equal(f->nv, 1);
    struct vigil_event_view v = view(f, 0);
    const msgpack_object *enforced = vigil_event_get(&v, "attrs.enforced");
    assert_true(enforced && enforced->type == MSGPACK_OBJECT_BOOLEAN && !enforced->via.boolean);
    vigil_rules_free(f->rules);
    f->rules = NULL;
    vigil_conf_free(f->root);
    f->root = NULL;
    assert_true(load(f, "rules:\n"
                        "  - name: p\n"
                        "    kind: policy\n"
                        "    match: access\n"
                        "    default: maybe\n"
                        "    rules:\n"
                        "      - permit: { subject: x }\n"
                        "      - allow: { subject: 'a\\' }\n") >= 3);
    expect_error(f, "r.yaml:5:14: policy rule 'p': default is deny or allow");
    expect_error(f, "r.yaml:7:9: policy rule 'p': entry 0 needs exactly one of allow: or deny:");
    expect_error(f, "r.yaml:8:27: policy rule 'p': bad glob");
}

/* ---- isolation ------------------------------------------------------------------------ */

static void feed_ns(struct fx *f, const char *cgroup, const char *pod, uint64_t net, uint64_t pid,
                    uint64_t now)
{
    vigil_event_begin(&f->b, "cgroup.ns");
    vigil_event_add_label(&f->b, "cgroup", cgroup);
    if (pod) {
        vigil_event_add_label(&f->b, "pod", pod);
    }
    vigil_event_attr_map_begin(&f->b, "ns");
    vigil_event_add_attr_i64(&f->b, "net", (int64_t)net);
    vigil_event_add_attr_i64(&f->b, "pid", (int64_t)pid);
    vigil_event_attr_end(&f->b);
    const char *body;
    size_t len;
    assert_int_equal(vigil_event_finish(&f->b, "h", "cgroups", ++f->seq, &body, &len), 0);
    memcpy(f->body, body, len);
    struct vigil_event_view v;
    read_event(f, &v, "cgroup.ns", len);
    vigil_rules_eval(f->rules, &v, now, collect, f);
}

static void test_isolation(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, "rules:\n"
                             "  - name: iso\n"
                             "    kind: isolation\n"
                             "    match: cgroup.ns\n"
                             "    distinct: [net, pid]\n"
                             "    exempt_same: [pod]\n"
                             "    ignore: ['/system.slice/**']\n"),
                     0);
    feed_ns(f, "/c1", "p1", 100, 200, S);
    feed_ns(f, "/c2", "p2", 101, 201, S);
    assert_int_equal(f->nv, 0);
    feed_ns(f, "/c3", "p3", 100, 202, S); /* shares net with /c1 */
    assert_int_equal(f->nv, 1);
    assert_string_equal(f->v[0].topic, "alert.violation");
    assert_string_equal(str_at(f, 0, "attrs.namespace"), "net");
    assert_string_equal(str_at(f, 0, "labels.other_cgroup"), "/c1");
    assert_true(num_at(f, 0, "attrs.inode") == 100);
    feed_ns(f, "/c3", "p3", 100, 202, 2 * S); /* the same: not again */
    feed_ns(f, "/c1", "p1", 100, 200, 2 * S);
    assert_int_equal(f->nv, 1);
    feed_ns(f, "/c4", "p1", 100, 200, 2 * S); /* same pod as /c1: exempt; shares with /c3 */
    assert_int_equal(f->nv, 2);
    assert_string_equal(str_at(f, 1, "labels.other_cgroup"), "/c3");
    feed_ns(f, "/system.slice/sshd", NULL, 100, 200, 2 * S); /* ignored */
    assert_int_equal(f->nv, 2);
    /* /c3 moves to its own net namespace, then back: reported anew. */
    feed_ns(f, "/c3", "p3", 103, 202, 3 * S);
    assert_int_equal(f->nv, 2);
    feed_ns(f, "/c3", "p3", 100, 202, 4 * S);
    assert_int_equal(f->nv, 4); /* with /c1 and /c4 */
}

static void test_isolation_many_cgroups_cheap(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, "rules:\n"
                             "  - name: iso\n"
                             "    kind: isolation\n"
                             "    match: cgroup.ns\n"
                             "    distinct: [net]\n"),
                     0);
    char name[32];
    for (int i = 0; i < 5000; i++) { /* each in its own namespaces */
        snprintf(name, sizeof name, "/c%d", i);
        feed_ns(f, name, NULL, 1000 + (uint64_t)i, 9000 + (uint64_t)i, S);
    }
    assert_int_equal(f->nv, 0);
    feed_ns(f, "/intruder", NULL, 1000 + 4321, 1, S);
    assert_int_equal(f->nv, 1);
    assert_string_equal(str_at(f, 0, "labels.other_cgroup"), "/c4321");
}

/* `when` picks what is judged: here, only cgroups a runtime owns. */
static void test_isolation_when(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f, "rules:\n"
                             "  - name: iso\n"
                             "    kind: isolation\n"
                             "    match: cgroup.ns\n"
                             "    distinct: [net]\n"
                             "    when: labels.pod ~ \"*\"\n"),
                     0);
    feed_ns(f, "/host-a", NULL, 1, 2, S);
    feed_ns(f, "/host-b", NULL, 1, 2, S);
    assert_int_equal(f->nv, 0); /* no pod label: not judged */
    feed_ns(f, "/k/c1", "p1", 1, 3, S);
    assert_int_equal(f->nv, 0); /* the host cgroups were never indexed */
    feed_ns(f, "/k/c2", "p2", 1, 4, S);
    assert_int_equal(f->nv, 1);
}

static void test_isolation_errors(void **state)
{
    struct fx *f = *state;
    assert_true(load(f, "rules:\n"
                        "  - name: iso\n"
                        "    kind: isolation\n"
                        "    match: cgroup.ns\n"
                        "    distinct: [net, network]\n") >= 1);
    expect_error(f, "r.yaml:5:21: isolation rule 'iso': 'network' is not a namespace kind");
}

/* ---- matching by topic ------------------------------------------------------------ */

struct evaluated {
    const char *names[8];
    uint64_t n[8];
};

static void count_evaluated(void *arg, const char *name, const char *kind, const char *const *keys,
                            const uint64_t *v, size_t n)
{
    (void)kind;
    (void)n;
    struct evaluated *e = arg;
    assert_string_equal(keys[0], "evaluated_total");
    for (size_t i = 0; i < 8 && e->names[i]; i++) {
        if (strcmp(e->names[i], name) == 0) {
            e->n[i] = v[0];
        }
    }
}

/* Each rule sees exactly the events whose topic starts with one of its
 * match prefixes, also when more topics pass than the engine remembers the
 * rule lists of (it keeps them per topic) and topics come interleaved. */
static void test_match_by_topic_prefix(void **state)
{
    struct fx *f = *state;
    static const char *const match[5][2] = {{"cgroup.", NULL},
                                            {"cgroup.stats", NULL},
                                            {"kvm.", "tcp."},
                                            {"t", NULL},
                                            {"nothing.", NULL}};
    char yaml[2048] = "rules:\n";
    for (int i = 0; i < 5; i++) {
        size_t len = strlen(yaml);
        snprintf(yaml + len, sizeof yaml - len,
                 "  - name: r%d\n    kind: threshold\n    match: [%s%s%s]\n"
                 "    expr: values.x > 100\n",
                 i, match[i][0], match[i][1] ? ", " : "", match[i][1] ? match[i][1] : "");
    }
    assert_int_equal(load(f, yaml), 0);
    uint64_t want[5] = {0};
    char topic[64];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 60; i++) {
            static const char *const stems[] = {"cgroup.stats", "cgroup.ns", "kvm.vm",
                                                "tcp.probe",    "top.x",     "other"};
            snprintf(topic, sizeof topic, "%s.%d", stems[i % 6], i);
            feed(f, topic, "h", NULL, "x=1", S);
            for (int r = 0; r < 5; r++) {
                for (int m = 0; m < 2 && match[r][m]; m++) {
                    if (strncmp(topic, match[r][m], strlen(match[r][m])) == 0) {
                        want[r]++;
                        break;
                    }
                }
            }
        }
    }
    struct evaluated e = {.names = {"r0", "r1", "r2", "r3", "r4"}};
    vigil_rules_stats(f->rules, count_evaluated, &e);
    for (int r = 0; r < 5; r++) {
        if (e.n[r] != want[r]) {
            fail_msg("r%d evaluated %llu events, not %llu", r, (unsigned long long)e.n[r],
                     (unsigned long long)want[r]);
        }
    }
    assert_int_equal(want[4], 0);
    assert_true(want[0] > 0 && want[1] > 0 && want[2] > 0 && want[3] > 0);
}

/* ---- reload ------------------------------------------------------------------------- */

/* A reload's engine takes over the state of the rules that did not change
 * (keys in another order and a default written out are no change), and the
 * old engine resolves what its changed and removed rules had firing. */
static void test_reload_adopt(void **state)
{
    struct fx *f = *state;
    assert_int_equal(load(f,
                          "rules:\n"
                          "  - {name: keep, kind: threshold, match: m, expr: values.x > 1}\n"
                          "  - {name: chg, kind: threshold, match: m, expr: values.x > 1}\n"
                          "  - {name: gone, kind: threshold, match: m, expr: values.x > 1}\n"
                          "  - {name: iso, kind: isolation, match: cgroup.ns, distinct: [net]}\n"),
                     0);
    feed(f, "m", "h", "k=a", "x=2", S);
    assert_int_equal(f->nv, 3); /* keep, chg and gone fire */
    feed_ns(f, "/c1", NULL, 100, 200, S);
    feed_ns(f, "/c2", NULL, 100, 201, S);
    assert_int_equal(f->nv, 4); /* iso: /c2 shares /c1's net */

    const char *after = "rules:\n"
                        "  - {expr: values.x > 1, match: m, name: keep, kind: threshold,"
                        " severity: warning}\n"
                        "  - {name: iso, kind: isolation, match: cgroup.ns, distinct: [net]}\n"
                        "  - {name: chg, kind: threshold, match: m, expr: values.x > 5}\n"
                        "  - {name: new, kind: threshold, match: m, expr: values.x > 1}\n";
    struct vigil_conf *root = vigil_conf_parse(after, strlen(after), "r2.yaml", &f->d);
    assert_non_null(root);
    struct vigil_rules *nw = vigil_rules_new(vigil_conf_get(root, "rules"), "rules", &f->d);
    assert_non_null(nw);
    struct vigil_rules_reload c;
    assert_int_equal(vigil_rules_adopt(nw, f->rules, 2 * S, collect, f, &c), 0);
    assert_int_equal(c.kept, 2);
    assert_int_equal(c.changed, 1);
    assert_int_equal(c.removed, 1);
    assert_int_equal(c.added, 1);
    assert_int_equal(f->nv, 6);
    assert_string_equal(f->v[4].topic, "alert.resolved");
    assert_string_equal(str_at(f, 4, "labels.rule"), "chg");
    assert_string_equal(str_at(f, 4, "attrs.reason"), "changed");
    assert_string_equal(str_at(f, 4, "labels.k"), "a");
    assert_string_equal(f->v[5].topic, "alert.resolved");
    assert_string_equal(str_at(f, 5, "labels.rule"), "gone");
    assert_string_equal(str_at(f, 5, "attrs.reason"), "removed");
    vigil_rules_free(f->rules);
    vigil_conf_free(f->root);
    f->rules = nw;
    f->root = root;

    /* keep is still firing: no second alert.fired; chg (x > 5) holds no
     * series; new fires; iso remembers the pair it reported. */
    feed(f, "m", "h", "k=a", "x=2", 3 * S);
    assert_int_equal(f->nv, 7);
    assert_string_equal(f->v[6].topic, "alert.fired");
    assert_string_equal(str_at(f, 6, "labels.rule"), "new");
    feed_ns(f, "/c2", NULL, 100, 201, 3 * S);
    assert_int_equal(f->nv, 7);
    /* keep resolves as the same series it fired as. */
    feed(f, "m", "h", "k=a", "x=0", 4 * S);
    assert_int_equal(f->nv, 9);
    assert_string_equal(str_at(f, 7, "labels.rule"), "keep");
    assert_string_equal(f->v[7].topic, "alert.resolved");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_threshold_for_and_hysteresis, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threshold_pending_cancelled_and_series, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_threshold_renotify_and_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threshold_config_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_config_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeated_keys_first_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout_reads_like_a_walk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout_plans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_audit_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_isolation_many_cgroups_cheap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_isolation_when, setup, teardown),
        cmocka_unit_test_setup_teardown(test_isolation_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_match_by_topic_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_adopt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity_ratios_fire_and_top, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity_nested_and_vm_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity_for_clear_renotify_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity_globs_vms_off_and_unnesting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity_many_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity_config_errors, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("rules", tests, NULL, NULL);
    return failed + cmocka_run_group_tests_name("rules, read lazily", tests, group_lazy, NULL);
}

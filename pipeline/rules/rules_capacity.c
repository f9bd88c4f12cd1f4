/* kind: capacity — per host, what containers and VMs reserve (cgroup
 * memory.max and CPU quota, a VM's guest memory and vCPUs) against what the
 * host has (system.stats), per resource. Fires through the alert machine
 * (alert.c) when a ratio passes its overcommit limit, naming the top
 * contributors, and publishes capacity.host with the headroom when the
 * figures change (at most once per publish_every). docs/rules.md says what
 * counts and why.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "capacity.h"
#include "glob.h"

static const char *const res_name[CAP_NRES] = {"cpu", "memory"};

/* The values of one resource, as published (docs/rules.md). */
enum { V_RESERVED, V_CAPACITY, V_RATIO, V_HEADROOM, V_OVERCOMMIT, V_UNLIMITED, V_PER_RES };
static const char *const value_name[CAP_NRES][V_PER_RES] = {
    {"reserved_cpus", "capacity_cpus", "ratio_cpu", "headroom_cpus", "overcommit_cpu",
     "unlimited_cpu"},
    {"reserved_memory_bytes", "capacity_memory_bytes", "ratio_memory", "headroom_memory_bytes",
     "overcommit_memory", "unlimited_memory"},
};
/* The same for the resource a verdict is about, so one message template
 * serves both. */
static const char *const generic_name[V_PER_RES] = {"reserved", "capacity",   "ratio",
                                                    "headroom", "overcommit", "unlimited"};
#define NVALUES (CAP_NRES * V_PER_RES + V_PER_RES + 1) /* + contributors */

#define TOP_MAX 32
#define SWEEP_MIN_NS 1000000000ull

static const char default_message[] =
    "m: '{host}: {labels.resource} reserved {values.reserved} of capacity {values.capacity} "
    "(ratio {values.ratio}, overcommit limit {values.overcommit})'";

struct capacity {
    double overcommit[CAP_NRES], clear[CAP_NRES];
    bool judged[CAP_NRES];
    size_t top;
    uint64_t publish_every_ns, republish_ns;
    bool publish;
    struct vigil_alerts *alerts;
    struct cap_ledger l;
    uint64_t last_sweep;

    /* The event a verdict is judged on: host, labels.resource, values. */
    struct vigil_event_view ev;
    msgpack_object_kv root_kv[3], label_kv[1], value_kv[NVALUES];
    double values[NVALUES];
    const char *value_keys[NVALUES];
    size_t nvalues;
    struct cap_host *cur_host;
    int cur_res;
};

static const struct vigil_option capacity_options[] = {
    {"overcommit", VIGIL_OPT_MAP, NULL,
     "resource -> ratio reserved/capacity allowed (cpu, memory)"},
    {"clear", VIGIL_OPT_MAP, NULL,
     "resource -> ratio at or below which it resolves (default: overcommit)"},
    {"cgroups", VIGIL_OPT_LIST, NULL,
     "globs over labels.cgroup that count (default: containers, VMs)"},
    {"vms", VIGIL_OPT_BOOL, "true", "count kvm.vm: guest memory and vCPUs"},
    {"unlimited", VIGIL_OPT_MAP, NULL,
     "resource -> what a cgroup without a limit counts (default 0)"},
    {"top", VIGIL_OPT_INT, "5", "contributors named in attrs.top (0 to 32)"},
    {"stale", VIGIL_OPT_DURATION, "5m",
     "forget a contributor or a host's capacity not reported this long"},
    {"publish", VIGIL_OPT_BOOL, "true", "publish capacity.host when the figures change"},
    {"publish_every", VIGIL_OPT_DURATION, "10s", "at most one capacity.host per host this often"},
    {"republish", VIGIL_OPT_DURATION, "1m",
     "publish capacity.host this often even unchanged; 0s: never"},
    {"for", VIGIL_OPT_DURATION, "0s", "the ratio must stay over this long before firing"},
    {"renotify", VIGIL_OPT_DURATION, "0s", "repeat alert.fired this often while firing"},
    {"max_contributors", VIGIL_OPT_INT, "100000",
     "cgroups and VMs tracked at most; more are counted"},
    {NULL, 0, NULL, NULL},
};

/* ---- Compiling ------------------------------------------------------------------ */

static void capacity_free(struct vigil_rule *rule)
{
    struct capacity *c = rule->impl;
    if (!c) {
        return;
    }
    vigil__cap_fini(&c->l);
    vigil__alerts_free(c->alerts);
    free(c);
    rule->impl = NULL;
}

static int resource_of(const char *k)
{
    for (int r = 0; r < CAP_NRES; r++) {
        if (strcmp(k, res_name[r]) == 0) {
            return r;
        }
    }
    return -1;
}

/* A map resource -> number; `size` reads memory as a size (256MiB). */
static bool read_map(const struct vigil_conf *m, const char *what, const char *rule, double *out,
                     bool *set, bool size, struct vigil_diag *d)
{
    bool ok = true;
    for (size_t i = 0; m && i < vigil_conf_len(m); i++) {
        const char *k;
        const struct vigil_conf *v = vigil_conf_at(m, i, &k);
        int r = resource_of(k);
        uint64_t bytes;
        if (r < 0) {
            vigil_diag_at(d, v, "capacity rule '%s': %s: '%s' is not a resource (cpu, memory)",
                          rule, what, k);
            ok = false;
        } else if (size && r == CAP_MEM && vigil_conf_size(v, &bytes) == 0) {
            out[r] = (double)bytes;
            set[r] = true;
        } else if (vigil_conf_double(v, &out[r]) != 0 || !(out[r] >= 0) || isinf(out[r])) {
            vigil_diag_at(d, v, "capacity rule '%s': %s.%s must be a number, 0 or more", rule, what,
                          k);
            ok = false;
        } else {
            set[r] = true;
        }
    }
    return ok;
}

/* Whether the rule's match covers `topic`. */
static bool matches(const struct vigil_rule *rule, const char *topic)
{
    for (size_t i = 0; i < rule->nmatch; i++) {
        if (rule->match[i] && strncmp(topic, rule->match[i], rule->match_len[i]) == 0) {
            return true;
        }
    }
    return false;
}

static int capacity_compile(struct vigil_rule *rule, const struct vigil_conf *node,
                            struct vigil_diag *d)
{
    /* Without the host's capacity nothing is ever judged, and without
     * reservations nothing is counted: a silent rule. */
    bool match_ok = rule->nmatch == 0 || /* the engine reports a missing match */
                    (matches(rule, "system.stats") &&
                     (matches(rule, "cgroup.stats") || matches(rule, "kvm.vm")));
    if (!match_ok) {
        vigil_diag_at(d, vigil_conf_get(node, "match"),
                      "capacity rule '%s': match must cover system.stats (what the host has) "
                      "and cgroup.stats or kvm.vm (what is reserved)",
                      rule->name);
    }

    struct capacity *c = calloc(1, sizeof *c);
    if (!c) {
        return -ENOMEM;
    }
    rule->impl = c;
    const struct vigil_conf *oc = vigil_conf_get(node, "overcommit");
    if (!oc || vigil_conf_len(oc) == 0) {
        vigil_diag_at(d, oc ? oc : node,
                      "capacity rule '%s' needs 'overcommit': the ratio of reserved to capacity "
                      "allowed per resource, e.g. {cpu: 4.0, memory: 1.0}",
                      rule->name);
        capacity_free(rule);
        return VIGIL_ECONFIG;
    }
    bool ok =
        read_map(oc, "overcommit", rule->name, c->overcommit, c->judged, false, d) && match_ok;
    for (int r = 0; r < CAP_NRES; r++) {
        c->clear[r] = c->overcommit[r];
        if (c->judged[r] && c->overcommit[r] <= 0) {
            vigil_diag_at(d, vigil_conf_get(oc, res_name[r]),
                          "capacity rule '%s': overcommit.%s must be above 0", rule->name,
                          res_name[r]);
            ok = false;
        }
    }
    const struct vigil_conf *cl = vigil_conf_get(node, "clear");
    bool clear_set[CAP_NRES] = {false, false};
    ok &= read_map(cl, "clear", rule->name, c->clear, clear_set, false, d);
    for (int r = 0; r < CAP_NRES; r++) {
        if (clear_set[r] && (!c->judged[r] || c->clear[r] > c->overcommit[r])) {
            vigil_diag_at(d, vigil_conf_get(cl, res_name[r]),
                          "capacity rule '%s': clear.%s must be at most overcommit.%s", rule->name,
                          res_name[r], res_name[r]);
            ok = false;
        }
    }
    double unl[CAP_NRES] = {0, 0};
    bool unl_set[CAP_NRES];
    ok &=
        read_map(vigil_conf_get(node, "unlimited"), "unlimited", rule->name, unl, unl_set, true, d);
    for (int r = 0; r < CAP_NRES; r++) {
        c->l.unlimited_as[r] = (int64_t)llround(unl[r] * cap_unit(r));
    }
    const struct vigil_conf *g = vigil_conf_get(node, "cgroups");
    if (g) {
        c->l.nglobs = vigil_conf_len(g);
        c->l.globs = calloc(c->l.nglobs ? c->l.nglobs : 1, sizeof *c->l.globs);
        for (size_t i = 0; c->l.globs && i < c->l.nglobs; i++) {
            const struct vigil_conf *item = vigil_conf_at(g, i, NULL);
            const char *s, *why;
            if (vigil_conf_string(item, &s) != 0 || item->kind != VIGIL_CONF_SCALAR) {
                vigil_diag_at(d, item, "capacity rule '%s': cgroups lists globs", rule->name);
                ok = false;
            } else if (!vigil_glob_valid(s, &why)) {
                vigil_diag_at(d, item, "capacity rule '%s': bad glob '%s': %s", rule->name, s, why);
                ok = false;
            } else {
                c->l.globs[i] = strdup(s);
                ok &= c->l.globs[i] != NULL;
            }
        }
        ok &= c->l.globs != NULL;
    }
    c->l.vms = true;
    vigil_conf_bool(vigil_conf_get(node, "vms"), &c->l.vms);
    c->publish = true;
    vigil_conf_bool(vigil_conf_get(node, "publish"), &c->publish);
    int64_t top = 5, maxc = 100000;
    const struct vigil_conf *tn = vigil_conf_get(node, "top"), *mn;
    vigil_conf_int(tn, &top);
    if (top < 0 || top > TOP_MAX) {
        vigil_diag_at(d, tn, "capacity rule '%s': top must be 0 to %d", rule->name, TOP_MAX);
        ok = false;
    }
    c->top = top < 0 ? 0 : (size_t)top;
    mn = vigil_conf_get(node, "max_contributors");
    vigil_conf_int(mn, &maxc);
    if (maxc < 1) {
        vigil_diag_at(d, mn, "capacity rule '%s': max_contributors must be 1 or more", rule->name);
        ok = false;
    }
    c->l.max = maxc < 1 ? 1 : (size_t)maxc;
    c->l.stale_ns = 300ull * 1000000000ull;
    c->publish_every_ns = 10ull * 1000000000ull;
    c->republish_ns = 60ull * 1000000000ull;
    vigil_conf_duration(vigil_conf_get(node, "stale"), &c->l.stale_ns);
    vigil_conf_duration(vigil_conf_get(node, "publish_every"), &c->publish_every_ns);
    vigil_conf_duration(vigil_conf_get(node, "republish"), &c->republish_ns);
    if (c->l.stale_ns == 0) {
        vigil_diag_at(d, vigil_conf_get(node, "stale"), "capacity rule '%s': stale must be above 0",
                      rule->name);
        ok = false;
    }
    /* The series (one per host and resource) are observed at least once a
     * second while their host is known, so the machine's own staleness (5
     * gaps) resolves them only once the host is forgotten. */
    struct vigil_alert_params p = {.max_series = 2 * c->l.max};
    vigil_conf_duration(vigil_conf_get(node, "for"), &p.for_ns);
    vigil_conf_duration(vigil_conf_get(node, "renotify"), &p.renotify_ns);
    c->alerts = ok ? vigil__alerts_new(&p) : NULL;
    if (!ok || !c->alerts || vigil__cap_init(&c->l) != 0) {
        capacity_free(rule);
        return ok ? -ENOMEM : VIGIL_ECONFIG;
    }
    if (!rule->message) {
        /* A message that says which resource and by how much; one template
         * for both, through the generic values. */
        struct vigil_diag dd;
        vigil_diag_init(&dd);
        struct vigil_conf *m =
            vigil_conf_parse(default_message, sizeof default_message - 1, "capacity", &dd);
        rule->message = m ? vigil__template_compile(vigil_conf_get(m, "m"), &dd) : NULL;
        vigil_conf_free(m);
        vigil_diag_fini(&dd);
    }
    return 0;
}

/* ---- Verdicts and capacity.host ------------------------------------------------- */

static double as_value(int r, int64_t v)
{
    return (double)v / cap_unit(r);
}

static void host_value(const struct capacity *c, const struct cap_host *h, int r, int which,
                       double *out)
{
    double cap = as_value(r, h->capacity[r]), res = as_value(r, h->reserved[r]);
    switch (which) {
    case V_RESERVED:
        *out = res;
        break;
    case V_CAPACITY:
        *out = cap;
        break;
    case V_RATIO:
        *out = cap > 0 ? res / cap : 0;
        break;
    case V_HEADROOM: /* what still fits under the limit (capacity with none) */
        *out = (c->judged[r] ? c->overcommit[r] : 1.0) * cap - res;
        break;
    case V_OVERCOMMIT:
        *out = c->judged[r] ? c->overcommit[r] : NAN;
        break;
    default:
        *out = (double)h->unlimited[r];
        break;
    }
}

/* Every value of the host into c->values (NaN: leave out); with `res` >= 0
 * also that resource's under the generic names. */
static void fill_values(struct capacity *c, const struct cap_host *h, int res)
{
    c->nvalues = 0;
    for (int r = 0; r < CAP_NRES; r++) {
        for (int w = 0; w < V_PER_RES; w++) {
            c->value_keys[c->nvalues] = value_name[r][w];
            host_value(c, h, r, w, &c->values[c->nvalues++]);
        }
    }
    for (int w = 0; res >= 0 && w < V_PER_RES; w++) {
        c->value_keys[c->nvalues] = generic_name[w];
        host_value(c, h, res, w, &c->values[c->nvalues++]);
    }
    c->value_keys[c->nvalues] = "contributors";
    c->values[c->nvalues++] = (double)h->counted;
}

static msgpack_object str_obj(const char *s, size_t n)
{
    msgpack_object o = {.type = MSGPACK_OBJECT_STR};
    o.via.str.ptr = s;
    o.via.str.size = (uint32_t)n;
    return o;
}

/* The event the alert machine judges for (host, resource): it makes the
 * series key (host + labels.resource) and feeds the message template. */
static const struct vigil_event_view *judged_event(struct capacity *c, struct cap_host *h, int r)
{
    fill_values(c, h, r);
    size_t nv = 0;
    for (size_t i = 0; i < c->nvalues; i++) {
        if (isnan(c->values[i])) {
            continue;
        }
        c->value_kv[nv].key = str_obj(c->value_keys[i], strlen(c->value_keys[i]));
        c->value_kv[nv].val.type = MSGPACK_OBJECT_FLOAT64;
        c->value_kv[nv].val.via.f64 = c->values[i];
        nv++;
    }
    c->label_kv[0].key = str_obj("resource", 8);
    c->label_kv[0].val = str_obj(res_name[r], strlen(res_name[r]));
    c->root_kv[0].key = str_obj("host", 4);
    c->root_kv[0].val = str_obj(h->name, h->len);
    c->root_kv[1].key = str_obj("labels", 6);
    c->root_kv[1].val.type = MSGPACK_OBJECT_MAP;
    c->root_kv[1].val.via.map.size = 1;
    c->root_kv[1].val.via.map.ptr = c->label_kv;
    c->root_kv[2].key = str_obj("values", 6);
    c->root_kv[2].val.type = MSGPACK_OBJECT_MAP;
    c->root_kv[2].val.via.map.size = (uint32_t)nv;
    c->root_kv[2].val.via.map.ptr = c->value_kv;
    struct vigil_event_view *ev = &c->ev;
    memset(ev, 0, sizeof *ev);
    ev->topic = "capacity.host";
    ev->topic_len = 13;
    ev->root.type = MSGPACK_OBJECT_MAP;
    ev->root.via.map.size = 3;
    ev->root.via.map.ptr = c->root_kv;
    ev->host = h->name;
    ev->host_len = h->len;
    ev->labels = &c->root_kv[1].val;
    ev->values = &c->root_kv[2].val;
    return ev;
}

/* attrs.top: the host's largest reservations of resource r, largest first. */
static void add_top(struct capacity *c, struct vigil_event_builder *b, const struct cap_host *h,
                    int r)
{
    const struct cap_contrib *top[TOP_MAX];
    size_t n = 0;
    for (const struct cap_contrib *x = h->first; x && c->top; x = x->host_next) {
        if (!x->in_total || x->counted[r] <= 0) {
            continue;
        }
        size_t i;
        if (n < c->top) {
            i = n++;
        } else if (x->counted[r] > top[n - 1]->counted[r]) {
            i = n - 1; /* the smallest kept makes room */
        } else {
            continue;
        }
        while (i > 0 && top[i - 1]->counted[r] < x->counted[r]) {
            top[i] = top[i - 1];
            i--;
        }
        top[i] = x;
    }
    vigil_event_attr_list_begin(b, "top");
    for (size_t i = 0; i < n; i++) {
        vigil_event_attr_map_begin(b, NULL);
        vigil_event_add_attr_str(b, "kind", top[i]->kind == 'v' ? "vm" : "cgroup");
        vigil_event_add_attr_str(b, "name", top[i]->name);
        if (top[i]->kind == 'v' && top[i]->cg_path && top[i]->cg_seen) {
            vigil_event_add_attr_str(b, "cgroup", top[i]->cg_path);
        }
        vigil_event_add_attr_f64(b, "reserved", as_value(r, top[i]->counted[r]));
        vigil_event_attr_end(b);
    }
    vigil_event_attr_end(b);
}

static void capacity_values(void *ctx, struct vigil_emit *out, const struct vigil_event_view *ev)
{
    (void)ev;
    struct capacity *c = ctx;
    struct vigil_event_builder *b = vigil__verdict_builder(out);
    for (size_t i = 0; i < c->nvalues; i++) {
        if (!isnan(c->values[i])) {
            vigil_event_add_value(b, c->value_keys[i], c->values[i]);
        }
    }
    add_top(c, b, c->cur_host, c->cur_res);
}

static void judge(struct vigil_rule *rule, struct capacity *c, struct cap_host *h, uint64_t now,
                  struct vigil_emit *out)
{
    if (!vigil__cap_fresh(h->capacity_seen, now, c->l.stale_ns)) {
        return; /* no capacity, no ratio */
    }
    for (int r = 0; r < CAP_NRES; r++) {
        if (!c->judged[r] || h->capacity[r] <= 0) {
            continue;
        }
        double ratio = (double)h->reserved[r] / (double)h->capacity[r];
        bool active = ratio > c->overcommit[r];
        if (!active && vigil_counter_get(&rule->stats.series) == 0) {
            continue; /* nothing pending or firing anywhere: nothing to do */
        }
        c->cur_host = h;
        c->cur_res = r;
        vigil__alerts_observe(c->alerts, rule, judged_event(c, h, r), active, ratio <= c->clear[r],
                              now, out, capacity_values, c);
    }
}

static bool changed_since_published(const struct cap_host *h)
{
    for (int r = 0; r < CAP_NRES; r++) {
        if (h->pub_reserved[r] != h->reserved[r] || h->pub_capacity[r] != h->capacity[r] ||
            h->pub_unlimited[r] != h->unlimited[r]) {
            return true;
        }
    }
    return h->pub_counted != h->counted;
}

/* capacity.host: when the figures changed, at most once per publish_every;
 * unchanged, every republish. */
static void maybe_publish(struct vigil_rule *rule, struct capacity *c, struct cap_host *h,
                          uint64_t now, struct vigil_emit *out)
{
    if (!c->publish || !vigil__cap_fresh(h->capacity_seen, now, c->l.stale_ns)) {
        return;
    }
    uint64_t since = now - h->published_at;
    bool due =
        !h->published || (changed_since_published(h) ? since >= c->publish_every_ns
                                                     : c->republish_ns && since >= c->republish_ns);
    if (!due) {
        return;
    }
    struct vigil_event_builder *b =
        vigil__publish_begin(out, rule, "capacity.host", h->name, h->len);
    fill_values(c, h, -1);
    for (size_t i = 0; i < c->nvalues; i++) {
        if (!isnan(c->values[i])) {
            vigil_event_add_value(b, c->value_keys[i], c->values[i]);
        }
    }
    vigil__verdict_emit(out);
    h->published = true;
    h->published_at = now;
    memcpy(h->pub_reserved, h->reserved, sizeof h->reserved);
    memcpy(h->pub_capacity, h->capacity, sizeof h->capacity);
    memcpy(h->pub_unlimited, h->unlimited, sizeof h->unlimited);
    h->pub_counted = h->counted;
}

/* ---- The kind ------------------------------------------------------------------ */

static void capacity_eval(struct vigil_rule *rule, const struct vigil_event_view *ev, uint64_t now,
                          struct vigil_emit *out)
{
    struct capacity *c = rule->impl;
    enum { T_OTHER, T_CGROUP, T_VM, T_SYSTEM } t = T_OTHER;
    if (ev->topic_len == 12 && memcmp(ev->topic, "cgroup.stats", 12) == 0) {
        t = T_CGROUP;
    } else if (ev->topic_len == 6 && memcmp(ev->topic, "kvm.vm", 6) == 0) {
        t = T_VM;
    } else if (ev->topic_len == 12 && memcmp(ev->topic, "system.stats", 12) == 0) {
        t = T_SYSTEM;
    }
    if (t == T_OTHER || ev->host_len == 0) {
        return;
    }
    struct cap_host *h = vigil__cap_host(&c->l, ev->host, ev->host_len);
    if (!h) {
        vigil_count(&rule->stats.dropped_total, 1);
        return;
    }
    int64_t res[CAP_NRES], cap[CAP_NRES];
    memcpy(res, h->reserved, sizeof res);
    memcpy(cap, h->capacity, sizeof cap);
    bool known = vigil__cap_fresh(h->capacity_seen, now, c->l.stale_ns);
    bool tracked = true;
    if (t == T_CGROUP) {
        tracked = vigil__cap_cgroup(&c->l, h, ev, now);
    } else if (t == T_VM) {
        tracked = vigil__cap_vm(&c->l, h, ev, now);
    } else {
        vigil__cap_system(h, ev, now);
    }
    if (!tracked) {
        vigil_count(&rule->stats.dropped_total, 1);
    }
    /* Judged when a ratio moved; the tick judges the rest of the time. */
    if (memcmp(res, h->reserved, sizeof res) != 0 || memcmp(cap, h->capacity, sizeof cap) != 0 ||
        known != vigil__cap_fresh(h->capacity_seen, now, c->l.stale_ns)) {
        judge(rule, c, h, now, out);
    }
    maybe_publish(rule, c, h, now, out);
}

static void capacity_tick(struct vigil_rule *rule, uint64_t now, struct vigil_emit *out)
{
    struct capacity *c = rule->impl;
    uint64_t every = c->l.stale_ns / 10 > SWEEP_MIN_NS ? c->l.stale_ns / 10 : SWEEP_MIN_NS;
    if (now - c->last_sweep >= every) {
        vigil__cap_sweep(&c->l, now);
        c->last_sweep = now;
    }
    for (size_t i = 0; i < CAP_HOST_BUCKETS; i++) {
        for (struct cap_host *h = c->l.hbuckets[i]; h; h = h->next) {
            judge(rule, c, h, now, out);
            maybe_publish(rule, c, h, now, out);
        }
    }
    vigil__alerts_tick(c->alerts, rule, now, out);
}

static void capacity_retire(struct vigil_rule *rule, uint64_t now, const char *reason,
                            struct vigil_emit *out)
{
    struct capacity *c = rule->impl;
    vigil__alerts_retire(c->alerts, rule, now, reason, out);
}

const struct vigil_rule_kind vigil__rule_capacity = {
    .name = "capacity",
    .options = capacity_options,
    .compile = capacity_compile,
    .eval = capacity_eval,
    .tick = capacity_tick,
    .retire = capacity_retire,
    .free = capacity_free,
};
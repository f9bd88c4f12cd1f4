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
#include "glob.h"

enum { R_CPU, R_MEM, R_COUNT };

/* CPUs are counted in millionths, memory in bytes: integer sums stay exact
 * however often contributors come and go. */
static const double unit[R_COUNT] = {1e6, 1.0};
static const char *const res_name[R_COUNT] = {"cpu", "memory"};

/* The values of one resource, as published (docs/rules.md). */
enum { V_RESERVED, V_CAPACITY, V_RATIO, V_HEADROOM, V_OVERCOMMIT, V_UNLIMITED, V_PER_RES };
static const char *const value_name[R_COUNT][V_PER_RES] = {
    {"reserved_cpus", "capacity_cpus", "ratio_cpu", "headroom_cpus", "overcommit_cpu",
     "unlimited_cpu"},
    {"reserved_memory_bytes", "capacity_memory_bytes", "ratio_memory", "headroom_memory_bytes",
     "overcommit_memory", "unlimited_memory"},
};
/* The same for the resource a verdict is about, so one message template
 * serves both. */
static const char *const generic_name[V_PER_RES] = {"reserved", "capacity",   "ratio",
                                                    "headroom", "overcommit", "unlimited"};
#define NVALUES (R_COUNT * V_PER_RES + V_PER_RES + 1) /* + contributors */

#define KEY_MAX 4096
#define TOP_MAX 32
#define HOST_BUCKETS 1024
#define SWEEP_MIN_NS 1000000000ull

static const char default_message[] =
    "m: '{host}: {labels.resource} reserved {values.reserved} of capacity {values.capacity} "
    "(ratio {values.ratio}, overcommit limit {values.overcommit})'";

/* One thing that reserves: a cgroup (kind 'c', by path) or a VM (kind 'v',
 * by name: its kvm.vm events and its cgroup's, when the cgroup carries the
 * vm label, meet here, so a VM counts once). */
struct contrib {
    struct contrib *next;                  /* hash chain */
    struct contrib *host_prev, *host_next; /* the host's contributors */
    struct host *host;
    uint64_t hash;
    char kind;
    char *key; /* host \0 kind name */
    size_t key_len;
    const char *name; /* into key */
    char *cg_path;    /* 'v': the VM's top-most cgroup seen; NULL: none fresh */
    int64_t cg[R_COUNT];
    bool cg_limited[R_COUNT];
    uint64_t cg_seen; /* 0: no cgroup figures */
    int64_t vm[R_COUNT];
    bool vm_known[R_COUNT];
    uint64_t vm_seen; /* 0: no kvm.vm figures */
    bool nested;      /* below a counted cgroup: that one's limits hold it */
    int64_t counted[R_COUNT];
    bool unlimited[R_COUNT];
    bool in_total;
};

struct host {
    struct host *next;
    uint64_t hash;
    char *name;
    size_t len;
    struct contrib *first;
    int64_t capacity[R_COUNT];
    uint64_t capacity_seen; /* 0: not known */
    int64_t reserved[R_COUNT];
    uint32_t unlimited[R_COUNT];
    uint32_t counted; /* contributors in the totals */
    /* What the last capacity.host said, and when. */
    bool published;
    uint64_t published_at;
    int64_t pub_reserved[R_COUNT], pub_capacity[R_COUNT];
    uint32_t pub_unlimited[R_COUNT], pub_counted;
};

struct capacity {
    double overcommit[R_COUNT], clear[R_COUNT];
    bool judged[R_COUNT];
    int64_t unlimited_as[R_COUNT];
    char **globs; /* NULL: cgroups with a container or vm label */
    size_t nglobs;
    bool vms;
    size_t top;
    uint64_t stale_ns, publish_every_ns, republish_ns;
    bool publish;
    size_t max_contributors;
    struct vigil_alerts *alerts;

    struct contrib **buckets;
    size_t nbuckets, n;
    struct host *hbuckets[HOST_BUCKETS]; /* hosts are few: chains stay short */
    size_t nhosts;
    uint64_t last_sweep;
    char key[KEY_MAX];

    /* The event a verdict is judged on: host, labels.resource, values. */
    struct vigil_event_view ev;
    msgpack_object_kv root_kv[3], label_kv[1], value_kv[NVALUES];
    double values[NVALUES];
    const char *value_keys[NVALUES];
    size_t nvalues;
    struct host *cur_host;
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
    {"republish", VIGIL_OPT_DURATION, "5m",
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
    for (size_t i = 0; c->buckets && i < c->nbuckets; i++) {
        for (struct contrib *x = c->buckets[i], *next; x; x = next) {
            next = x->next;
            free(x->key);
            free(x->cg_path);
            free(x);
        }
    }
    free(c->buckets);
    for (size_t i = 0; i < HOST_BUCKETS; i++) {
        for (struct host *h = c->hbuckets[i], *next; h; h = next) {
            next = h->next;
            free(h->name);
            free(h);
        }
    }
    for (size_t i = 0; c->globs && i < c->nglobs; i++) {
        free(c->globs[i]);
    }
    free(c->globs);
    vigil__alerts_free(c->alerts);
    free(c);
    rule->impl = NULL;
}

static int resource_of(const char *k)
{
    for (int r = 0; r < R_COUNT; r++) {
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
        } else if (size && r == R_MEM && vigil_conf_size(v, &bytes) == 0) {
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

static int capacity_compile(struct vigil_rule *rule, const struct vigil_conf *node,
                            struct vigil_diag *d)
{
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
    bool ok = read_map(oc, "overcommit", rule->name, c->overcommit, c->judged, false, d);
    for (int r = 0; r < R_COUNT; r++) {
        c->clear[r] = c->overcommit[r];
        if (c->judged[r] && c->overcommit[r] <= 0) {
            vigil_diag_at(d, vigil_conf_get(oc, res_name[r]),
                          "capacity rule '%s': overcommit.%s must be above 0", rule->name,
                          res_name[r]);
            ok = false;
        }
    }
    const struct vigil_conf *cl = vigil_conf_get(node, "clear");
    bool clear_set[R_COUNT] = {false, false};
    ok &= read_map(cl, "clear", rule->name, c->clear, clear_set, false, d);
    for (int r = 0; r < R_COUNT; r++) {
        if (clear_set[r] && (!c->judged[r] || c->clear[r] > c->overcommit[r])) {
            vigil_diag_at(d, vigil_conf_get(cl, res_name[r]),
                          "capacity rule '%s': clear.%s must be at most overcommit.%s", rule->name,
                          res_name[r], res_name[r]);
            ok = false;
        }
    }
    double unl[R_COUNT] = {0, 0};
    bool unl_set[R_COUNT];
    ok &=
        read_map(vigil_conf_get(node, "unlimited"), "unlimited", rule->name, unl, unl_set, true, d);
    for (int r = 0; r < R_COUNT; r++) {
        c->unlimited_as[r] = (int64_t)llround(unl[r] * unit[r]);
    }
    const struct vigil_conf *g = vigil_conf_get(node, "cgroups");
    if (g) {
        c->nglobs = vigil_conf_len(g);
        c->globs = calloc(c->nglobs ? c->nglobs : 1, sizeof *c->globs);
        for (size_t i = 0; c->globs && i < c->nglobs; i++) {
            const struct vigil_conf *item = vigil_conf_at(g, i, NULL);
            const char *s, *why;
            if (vigil_conf_string(item, &s) != 0 || item->kind != VIGIL_CONF_SCALAR) {
                vigil_diag_at(d, item, "capacity rule '%s': cgroups lists globs", rule->name);
                ok = false;
            } else if (!vigil_glob_valid(s, &why)) {
                vigil_diag_at(d, item, "capacity rule '%s': bad glob '%s': %s", rule->name, s, why);
                ok = false;
            } else {
                c->globs[i] = strdup(s);
                ok &= c->globs[i] != NULL;
            }
        }
        ok &= c->globs != NULL;
    }
    c->vms = true;
    vigil_conf_bool(vigil_conf_get(node, "vms"), &c->vms);
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
    c->max_contributors = maxc < 1 ? 1 : (size_t)maxc;
    c->stale_ns = 300ull * 1000000000ull;
    c->publish_every_ns = 10ull * 1000000000ull;
    c->republish_ns = 300ull * 1000000000ull;
    vigil_conf_duration(vigil_conf_get(node, "stale"), &c->stale_ns);
    vigil_conf_duration(vigil_conf_get(node, "publish_every"), &c->publish_every_ns);
    vigil_conf_duration(vigil_conf_get(node, "republish"), &c->republish_ns);
    if (c->stale_ns == 0) {
        vigil_diag_at(d, vigil_conf_get(node, "stale"), "capacity rule '%s': stale must be above 0",
                      rule->name);
        ok = false;
    }
    /* The series (one per host and resource) are observed at least once a
     * second while their host is known, so the machine's own staleness (5
     * gaps) resolves them only once the host is forgotten. */
    struct vigil_alert_params p = {.max_series = 2 * c->max_contributors};
    vigil_conf_duration(vigil_conf_get(node, "for"), &p.for_ns);
    vigil_conf_duration(vigil_conf_get(node, "renotify"), &p.renotify_ns);
    c->nbuckets = 1024; /* sized at load: grows only past a contributor per bucket */
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    c->alerts = ok ? vigil__alerts_new(&p) : NULL;
    if (!ok || !c->buckets || !c->alerts) {
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

/* ---- Tables -------------------------------------------------------------------- */

static struct host *host_get(struct vigil_rule *rule, struct capacity *c, const char *name,
                             size_t len)
{
    uint64_t h = vigil__hash(VIGIL_HASH_INIT, name, len);
    for (struct host *x = c->hbuckets[h & (HOST_BUCKETS - 1)]; x; x = x->next) {
        if (x->hash == h && x->len == len && memcmp(x->name, name, len) == 0) {
            return x;
        }
    }
    if (c->nhosts >= c->max_contributors) {
        vigil_count(&rule->stats.dropped_total, 1);
        return NULL;
    }
    struct host *x = calloc(1, sizeof *x);
    if (!x || !(x->name = malloc(len + 1))) {
        free(x);
        vigil_count(&rule->stats.dropped_total, 1);
        return NULL;
    }
    memcpy(x->name, name, len);
    x->name[len] = '\0';
    x->len = len;
    x->hash = h;
    x->next = c->hbuckets[h & (HOST_BUCKETS - 1)];
    c->hbuckets[h & (HOST_BUCKETS - 1)] = x;
    c->nhosts++;
    return x;
}

static void host_remove(struct capacity *c, struct host *h)
{
    struct host **pp = &c->hbuckets[h->hash & (HOST_BUCKETS - 1)];
    while (*pp && *pp != h) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = h->next;
        c->nhosts--;
    }
    free(h->name);
    free(h);
}

/* c->key = host \0 kind name; returns its length, 0 when too long. */
static size_t make_key(struct capacity *c, const struct host *h, char kind, const char *name,
                       size_t len)
{
    if (h->len + 2 + len > KEY_MAX) {
        return 0;
    }
    memcpy(c->key, h->name, h->len);
    c->key[h->len] = '\0';
    c->key[h->len + 1] = kind;
    memcpy(c->key + h->len + 2, name, len);
    return h->len + 2 + len;
}

static struct contrib *lookup(struct capacity *c, size_t len, uint64_t hash)
{
    for (struct contrib *x = c->buckets[hash & (c->nbuckets - 1)]; x; x = x->next) {
        if (x->hash == hash && x->key_len == len && memcmp(x->key, c->key, len) == 0) {
            return x;
        }
    }
    return NULL;
}

static void grow(struct capacity *c)
{
    size_t nb = c->nbuckets * 2;
    struct contrib **b = calloc(nb, sizeof *b);
    if (!b) {
        return; /* longer chains */
    }
    for (size_t i = 0; i < c->nbuckets; i++) {
        for (struct contrib *x = c->buckets[i], *next; x; x = next) {
            next = x->next;
            x->next = b[x->hash & (nb - 1)];
            b[x->hash & (nb - 1)] = x;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = nb;
}

static struct contrib *insert(struct vigil_rule *rule, struct capacity *c, struct host *h,
                              size_t len, uint64_t hash)
{
    if (c->n >= c->max_contributors) {
        vigil_count(&rule->stats.dropped_total, 1);
        return NULL;
    }
    struct contrib *x = calloc(1, sizeof *x);
    if (!x || !(x->key = malloc(len + 1))) {
        free(x);
        vigil_count(&rule->stats.dropped_total, 1);
        return NULL;
    }
    memcpy(x->key, c->key, len);
    x->key[len] = '\0';
    x->key_len = len;
    x->kind = c->key[h->len + 1];
    x->name = x->key + h->len + 2;
    x->hash = hash;
    x->host = h;
    if (c->n + 1 > c->nbuckets) {
        grow(c);
    }
    x->next = c->buckets[hash & (c->nbuckets - 1)];
    c->buckets[hash & (c->nbuckets - 1)] = x;
    x->host_next = h->first;
    if (h->first) {
        h->first->host_prev = x;
    }
    h->first = x;
    c->n++;
    return x;
}

/* Takes x's share out of its host's totals. */
static void untotal(struct contrib *x)
{
    if (!x->in_total) {
        return;
    }
    for (int r = 0; r < R_COUNT; r++) {
        x->host->reserved[r] -= x->counted[r];
        x->host->unlimited[r] -= x->unlimited[r];
    }
    x->host->counted--;
    x->in_total = false;
}

static void contrib_remove(struct capacity *c, struct contrib *x)
{
    untotal(x);
    struct contrib **pp = &c->buckets[x->hash & (c->nbuckets - 1)];
    while (*pp && *pp != x) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = x->next;
        c->n--;
    }
    if (x->host_prev) {
        x->host_prev->host_next = x->host_next;
    } else {
        x->host->first = x->host_next;
    }
    if (x->host_next) {
        x->host_next->host_prev = x->host_prev;
    }
    free(x->key);
    free(x->cg_path);
    free(x);
}

/* ---- Counting ------------------------------------------------------------------ */

/* What x reserves now, into its host's totals: per resource the larger of
 * its cgroup's limit and its VM's size (a VM's cgroup also holds the VMM);
 * neither known: unlimited, counted as `unlimited` says. Nested: nothing. */
static void settle(struct capacity *c, struct contrib *x)
{
    untotal(x);
    if (x->nested || (x->cg_seen == 0 && x->vm_seen == 0)) {
        return;
    }
    for (int r = 0; r < R_COUNT; r++) {
        bool known = false;
        int64_t v = 0;
        if (x->cg_seen && x->cg_limited[r]) {
            v = x->cg[r];
            known = true;
        }
        if (x->vm_seen && x->vm_known[r] && (!known || x->vm[r] > v)) {
            v = x->vm[r];
            known = true;
        }
        x->counted[r] = known ? v : c->unlimited_as[r];
        x->unlimited[r] = !known;
        x->host->reserved[r] += x->counted[r];
        x->host->unlimited[r] += x->unlimited[r];
    }
    x->host->counted++;
    x->in_total = true;
}

static bool fresh(uint64_t seen, uint64_t now, uint64_t stale)
{
    return seen != 0 && now - seen < stale;
}

/* True when `anc` is a strict ancestor of `path` ("/a" of "/a/b"; "/" of
 * every other path). */
static bool below(const char *anc, size_t alen, const char *path, size_t plen)
{
    if (alen == 1 && anc[0] == '/') {
        return plen > 1;
    }
    return plen > alen && path[alen] == '/' && memcmp(anc, path, alen) == 0;
}

/* Whether a counted cgroup ('c') of the host holds `path`: its ancestors are
 * looked up one by one (a hash lookup per level). */
static bool has_counted_ancestor(struct capacity *c, struct host *h, const char *path, size_t len,
                                 uint64_t now)
{
    for (size_t n = len; n > 1;) {
        while (n > 0 && path[n - 1] != '/') {
            n--;
        }
        size_t alen = n > 1 ? n - 1 : 1; /* "/a/" -> "/a"; "/" stays */
        size_t kl = make_key(c, h, 'c', path, alen);
        if (kl) {
            struct contrib *a = lookup(c, kl, vigil__hash(VIGIL_HASH_INIT, c->key, kl));
            if (a && !a->nested && fresh(a->cg_seen, now, c->stale_ns)) {
                return true;
            }
        }
        n = alen == 1 ? 0 : alen;
    }
    return false;
}

/* A newly counted cgroup: what the host already has below it is nested. */
static void nest_below(struct capacity *c, struct contrib *top)
{
    size_t tl = strlen(top->name);
    for (struct contrib *x = top->host->first; x; x = x->host_next) {
        const char *p = x->kind == 'c' ? x->name : x->cg_path;
        if (x != top && p && !x->nested && below(top->name, tl, p, strlen(p))) {
            x->nested = true;
            settle(c, x);
        }
    }
}

static bool selected(const struct capacity *c, const struct vigil_event_view *ev, const char *path,
                     size_t len)
{
    if (c->globs) {
        for (size_t i = 0; i < c->nglobs; i++) {
            if (vigil_glob_match(c->globs[i], path, len)) {
                return true;
            }
        }
        return false;
    }
    return vigil_msgpack_map_get(ev->labels, "container", 9) ||
           vigil_msgpack_map_get(ev->labels, "vm", 2);
}

static bool value_of(const struct vigil_event_view *ev, const char *k, double *out)
{
    return vigil_msgpack_double(vigil_msgpack_map_get(ev->values, k, strlen(k)), out) == 0 &&
           *out >= 0 && isfinite(*out);
}

static void on_cgroup(struct vigil_rule *rule, struct capacity *c, struct host *h,
                      const struct vigil_event_view *ev, uint64_t now)
{
    const char *path, *vm;
    size_t len, vlen;
    if (vigil_msgpack_str(vigil_msgpack_map_get(ev->labels, "cgroup", 6), &path, &len) != 0 ||
        len == 0 || !selected(c, ev, path, len)) {
        return;
    }
    bool is_vm =
        c->vms && vigil_msgpack_str(vigil_msgpack_map_get(ev->labels, "vm", 2), &vm, &vlen) == 0;
    size_t kl = is_vm ? make_key(c, h, 'v', vm, vlen) : make_key(c, h, 'c', path, len);
    if (!kl) {
        vigil_count(&rule->stats.dropped_total, 1);
        return;
    }
    uint64_t hash = vigil__hash(VIGIL_HASH_INIT, c->key, kl);
    struct contrib *x = lookup(c, kl, hash);
    bool fresh_top = false;
    if (!x) {
        if (!(x = insert(rule, c, h, kl, hash))) {
            return;
        }
        fresh_top = !is_vm;
    }
    if (is_vm) {
        /* A VM's scope and the cgroups below it (emulator, vcpuN) all carry
         * its name: the top-most one speaks for it. */
        size_t pl = x->cg_path ? strlen(x->cg_path) : 0;
        if (x->cg_path && fresh(x->cg_seen, now, c->stale_ns) && below(x->cg_path, pl, path, len)) {
            return;
        }
        if (!x->cg_path || pl != len || memcmp(x->cg_path, path, len) != 0) {
            char *np = malloc(len + 1); /* a VM's cgroup changes rarely */
            if (!np) {
                return;
            }
            memcpy(np, path, len);
            np[len] = '\0';
            free(x->cg_path);
            x->cg_path = np;
        }
    }
    double v;
    x->cg_limited[R_MEM] = value_of(ev, "memory_max_bytes", &v);
    x->cg[R_MEM] = x->cg_limited[R_MEM] ? (int64_t)llround(v) : 0;
    x->cg_limited[R_CPU] = value_of(ev, "cpu_max_cpus", &v);
    x->cg[R_CPU] = x->cg_limited[R_CPU] ? (int64_t)llround(v * unit[R_CPU]) : 0;
    bool was_counted = x->in_total;
    x->cg_seen = now;
    x->nested = has_counted_ancestor(c, h, is_vm ? x->cg_path : path, len, now);
    settle(c, x);
    if (!is_vm && x->in_total && (fresh_top || !was_counted)) {
        nest_below(c, x);
    }
}

static void on_vm(struct vigil_rule *rule, struct capacity *c, struct host *h,
                  const struct vigil_event_view *ev, uint64_t now)
{
    const char *vm;
    size_t vlen;
    if (!c->vms ||
        (vigil_msgpack_str(vigil_msgpack_map_get(ev->labels, "vm", 2), &vm, &vlen) != 0 &&
         vigil_msgpack_str(vigil_msgpack_map_get(ev->labels, "pid", 3), &vm, &vlen) != 0)) {
        return;
    }
    size_t kl = make_key(c, h, 'v', vm, vlen);
    if (!kl) {
        vigil_count(&rule->stats.dropped_total, 1);
        return;
    }
    uint64_t hash = vigil__hash(VIGIL_HASH_INIT, c->key, kl);
    struct contrib *x = lookup(c, kl, hash);
    if (!x && !(x = insert(rule, c, h, kl, hash))) {
        return;
    }
    double v;
    x->vm_known[R_CPU] = value_of(ev, "vcpus", &v) && v > 0;
    x->vm[R_CPU] = x->vm_known[R_CPU] ? (int64_t)llround(v * unit[R_CPU]) : 0;
    x->vm_known[R_MEM] = value_of(ev, "guest_memory_bytes", &v) && v > 0;
    x->vm[R_MEM] = x->vm_known[R_MEM] ? (int64_t)llround(v) : 0;
    x->vm_seen = now;
    settle(c, x);
}

static void on_system(struct host *h, const struct vigil_event_view *ev, uint64_t now)
{
    double cpus, mem;
    if (!value_of(ev, "cpu_count", &cpus) || !value_of(ev, "memory_total_bytes", &mem)) {
        return;
    }
    h->capacity[R_CPU] = (int64_t)llround(cpus * unit[R_CPU]);
    h->capacity[R_MEM] = (int64_t)llround(mem);
    h->capacity_seen = now;
}

/* ---- Verdicts and capacity.host ------------------------------------------------- */

static double as_value(int r, int64_t v)
{
    return (double)v / unit[r];
}

static void host_value(const struct capacity *c, const struct host *h, int r, int which,
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
static void fill_values(struct capacity *c, const struct host *h, int res)
{
    c->nvalues = 0;
    for (int r = 0; r < R_COUNT; r++) {
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
static const struct vigil_event_view *judged_event(struct capacity *c, struct host *h, int r)
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
static void add_top(struct capacity *c, struct vigil_event_builder *b, const struct host *h, int r)
{
    const struct contrib *top[TOP_MAX];
    size_t n = 0;
    for (const struct contrib *x = h->first; x && c->top; x = x->host_next) {
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

static void judge(struct vigil_rule *rule, struct capacity *c, struct host *h, uint64_t now,
                  struct vigil_emit *out)
{
    if (!fresh(h->capacity_seen, now, c->stale_ns)) {
        return; /* no capacity, no ratio */
    }
    for (int r = 0; r < R_COUNT; r++) {
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

static bool changed_since_published(const struct host *h)
{
    for (int r = 0; r < R_COUNT; r++) {
        if (h->pub_reserved[r] != h->reserved[r] || h->pub_capacity[r] != h->capacity[r] ||
            h->pub_unlimited[r] != h->unlimited[r]) {
            return true;
        }
    }
    return h->pub_counted != h->counted;
}

/* capacity.host: when the figures changed, at most once per publish_every;
 * unchanged, every republish. */
static void maybe_publish(struct vigil_rule *rule, struct capacity *c, struct host *h, uint64_t now,
                          struct vigil_emit *out)
{
    if (!c->publish || !fresh(h->capacity_seen, now, c->stale_ns)) {
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
    struct host *h = host_get(rule, c, ev->host, ev->host_len);
    if (!h) {
        return;
    }
    int64_t res[R_COUNT], cap[R_COUNT];
    memcpy(res, h->reserved, sizeof res);
    memcpy(cap, h->capacity, sizeof cap);
    bool known = fresh(h->capacity_seen, now, c->stale_ns);
    if (t == T_CGROUP) {
        on_cgroup(rule, c, h, ev, now);
    } else if (t == T_VM) {
        on_vm(rule, c, h, ev, now);
    } else {
        on_system(h, ev, now);
    }
    /* Judged when a ratio moved; the tick judges the rest of the time. */
    if (memcmp(res, h->reserved, sizeof res) != 0 || memcmp(cap, h->capacity, sizeof cap) != 0 ||
        known != fresh(h->capacity_seen, now, c->stale_ns)) {
        judge(rule, c, h, now, out);
    }
    maybe_publish(rule, c, h, now, out);
}

/* Forgets what was not reported for `stale`: a side of a contributor, a
 * contributor with neither, a host with nothing left. */
static void sweep(struct capacity *c, uint64_t now)
{
    for (size_t i = 0; i < HOST_BUCKETS; i++) {
        for (struct host *h = c->hbuckets[i], *hnext; h; h = hnext) {
            hnext = h->next;
            for (struct contrib *x = h->first, *next; x; x = next) {
                next = x->host_next;
                bool cg = fresh(x->cg_seen, now, c->stale_ns);
                bool vm = fresh(x->vm_seen, now, c->stale_ns);
                if (!cg && !vm) {
                    contrib_remove(c, x);
                    continue;
                }
                if (!cg && x->cg_seen) {
                    x->cg_seen = 0;
                    free(x->cg_path);
                    x->cg_path = NULL;
                    x->nested = false; /* a VM left with its kvm.vm figures */
                    settle(c, x);
                } else if (!vm && x->vm_seen) {
                    x->vm_seen = 0;
                    settle(c, x);
                }
            }
            if (!h->first && !fresh(h->capacity_seen, now, c->stale_ns)) {
                host_remove(c, h);
            }
        }
    }
}

static void capacity_tick(struct vigil_rule *rule, uint64_t now, struct vigil_emit *out)
{
    struct capacity *c = rule->impl;
    uint64_t every = c->stale_ns / 10 > SWEEP_MIN_NS ? c->stale_ns / 10 : SWEEP_MIN_NS;
    if (now - c->last_sweep >= every) {
        sweep(c, now);
        c->last_sweep = now;
    }
    for (size_t i = 0; i < HOST_BUCKETS; i++) {
        for (struct host *h = c->hbuckets[i]; h; h = h->next) {
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

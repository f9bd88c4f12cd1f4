/* kind: isolation — containers and VMs must not share the namespaces named
 * in `distinct`. From cgroup.ns events it keeps, per cgroup, the latest
 * namespace inodes, indexed by (kind, inode) so that an event costs the
 * number of cgroups sharing its namespaces, not n. Each offending pair is
 * reported once (alert.violation) until what they share changes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glob.h"
#include "rules_internal.h"

#define KINDS_MAX 8
#define INODES_MAX 8 /* per cgroup and kind: processes in several namespaces */

struct member {
    char *name; /* the key label's value, e.g. the cgroup path */
    uint64_t name_hash;
    size_t next_same_bucket; /* name index chain; SIZE_MAX ends it */
    char **exempt;           /* values of the exempt_same labels ("" when absent) */
    uint64_t inode[KINDS_MAX][INODES_MAX];
    size_t ninode[KINDS_MAX];
    uint64_t last_seen;
    bool used;
};

struct slot { /* inode index: (kind, inode) -> member indices */
    struct slot *next;
    uint64_t inode;
    int kind;
    size_t *members;
    size_t n, cap;
};

struct pair { /* reported pairs: (lo, hi, kind) -> the inode reported */
    struct pair *next;
    size_t lo, hi;
    int kind;
    uint64_t inode;
};

struct isolation {
    char *key;       /* label naming the cgroup, default "cgroup" */
    char **distinct; /* namespace kinds, e.g. net, pid */
    size_t ndistinct;
    char **exempt_same; /* labels: pairs that agree on all of them are fine */
    size_t nexempt;
    char **ignore; /* globs over the key: cgroups never judged */
    size_t nignore;
    struct vigil_expr *when; /* only events for which it holds are judged */
    uint64_t stale_ns;
    size_t max_members;
    struct member *members;
    size_t nmembers, capmembers;
    size_t by_name[1024]; /* name hash -> first member; SIZE_MAX: none */
    struct slot *slots[1024];
    struct pair *pairs[4096];
};

static const struct vigil_option isolation_options[] = {
    {"distinct", VIGIL_OPT_LIST, NULL, "namespace kinds no two cgroups may share (net, pid, ...)"},
    {"exempt_same", VIGIL_OPT_LIST, NULL, "labels: pairs that agree on these are exempt (pod)"},
    {"ignore", VIGIL_OPT_LIST, NULL, "globs over the cgroup: never judged (host cgroups)"},
    {"when", VIGIL_OPT_STRING, NULL, "judge only cgroups whose events satisfy this expression"},
    {"key", VIGIL_OPT_STRING, "cgroup", "the label that names a cgroup"},
    {"stale", VIGIL_OPT_DURATION, "10m", "forget a cgroup not reported for this long"},
    {"max_cgroups", VIGIL_OPT_INT, "100000", "cgroups tracked at most; more are counted"},
    {NULL, 0, NULL, NULL},
};

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i]);
    }
    free(v);
}

static void isolation_free(struct vigil_rule *rule)
{
    struct isolation *s = rule->impl;
    if (!s) {
        return;
    }
    for (size_t i = 0; i < s->nmembers; i++) {
        free(s->members[i].name);
        free_strings(s->members[i].exempt, s->nexempt);
    }
    free(s->members);
    for (size_t i = 0; i < sizeof s->slots / sizeof s->slots[0]; i++) {
        for (struct slot *x = s->slots[i], *next; x; x = next) {
            next = x->next;
            free(x->members);
            free(x);
        }
    }
    for (size_t i = 0; i < sizeof s->pairs / sizeof s->pairs[0]; i++) {
        for (struct pair *x = s->pairs[i], *next; x; x = next) {
            next = x->next;
            free(x);
        }
    }
    free_strings(s->distinct, s->ndistinct);
    free_strings(s->exempt_same, s->nexempt);
    free_strings(s->ignore, s->nignore);
    vigil_expr_free(s->when);
    free(s->key);
    free(s);
    rule->impl = NULL;
}

/* A list of strings from config; globs are checked when `globs`. */
static char **read_list(const struct vigil_conf *n, size_t *count, bool globs, const char *rule,
                        struct vigil_diag *d)
{
    *count = n ? vigil_conf_len(n) : 0;
    char **v = calloc(*count ? *count : 1, sizeof *v);
    for (size_t i = 0; v && i < *count; i++) {
        const struct vigil_conf *item = vigil_conf_at(n, i, NULL);
        const char *s, *why;
        if (vigil_conf_string(item, &s) != 0 || item->kind != VIGIL_CONF_SCALAR) {
            vigil_diag_at(d, item, "isolation rule '%s': expected a string", rule);
            free_strings(v, i);
            return NULL;
        }
        if (globs && !vigil_glob_valid(s, &why)) {
            vigil_diag_at(d, item, "isolation rule '%s': bad glob '%s': %s", rule, s, why);
            free_strings(v, i);
            return NULL;
        }
        v[i] = strdup(s);
    }
    return v;
}

static int isolation_compile(struct vigil_rule *rule, const struct vigil_conf *node,
                             struct vigil_diag *d)
{
    struct isolation *s = calloc(1, sizeof *s);
    if (!s) {
        return -ENOMEM;
    }
    rule->impl = s;
    for (size_t i = 0; i < sizeof s->by_name / sizeof s->by_name[0]; i++) {
        s->by_name[i] = SIZE_MAX;
    }
    const struct vigil_conf *dn = vigil_conf_get(node, "distinct");
    if (!dn || vigil_conf_len(dn) == 0 || vigil_conf_len(dn) > KINDS_MAX) {
        vigil_diag_at(d, dn ? dn : node,
                      "isolation rule '%s' needs 'distinct': 1 to %d namespace kinds (net, pid, "
                      "mnt, ipc, uts, user, cgroup)",
                      rule->name, KINDS_MAX);
        isolation_free(rule);
        return VIGIL_ECONFIG;
    }
    s->distinct = read_list(dn, &s->ndistinct, false, rule->name, d);
    s->exempt_same =
        read_list(vigil_conf_get(node, "exempt_same"), &s->nexempt, false, rule->name, d);
    s->ignore = read_list(vigil_conf_get(node, "ignore"), &s->nignore, true, rule->name, d);
    const char *key = "cgroup";
    vigil_conf_string(vigil_conf_get(node, "key"), &key);
    s->key = strdup(key);
    const struct vigil_conf *wn = vigil_conf_get(node, "when");
    if (wn && !(s->when = vigil_expr_compile_node(wn, VIGIL_EXPR_BOOL, d))) {
        isolation_free(rule);
        return VIGIL_ECONFIG;
    }
    vigil_conf_duration(vigil_conf_get(node, "stale"), &s->stale_ns);
    int64_t max = 100000;
    vigil_conf_int(vigil_conf_get(node, "max_cgroups"), &max);
    s->max_members = max > 0 ? (size_t)max : 1;
    static const char *const known[] = {"net", "pid",  "mnt",    "ipc",
                                        "uts", "user", "cgroup", "time"};
    bool ok = s->distinct && s->exempt_same && s->ignore && s->key;
    for (size_t i = 0; ok && i < s->ndistinct; i++) {
        bool found = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
            found |= strcmp(s->distinct[i], known[k]) == 0;
        }
        if (!found) {
            vigil_diag_at(d, vigil_conf_at(dn, i, NULL),
                          "isolation rule '%s': '%s' is not a namespace kind (net, pid, mnt, ipc, "
                          "uts, user, cgroup, time)",
                          rule->name, s->distinct[i]);
            ok = false;
        }
    }
    if (!ok) {
        isolation_free(rule);
        return VIGIL_ECONFIG;
    }
    return 0;
}

/* ---- Indexes ------------------------------------------------------------------- */

static size_t slot_bucket(const struct isolation *s, int kind, uint64_t inode)
{
    return (size_t)((inode * 31 + (uint64_t)kind) % (sizeof s->slots / sizeof s->slots[0]));
}

static struct slot *slot_get(struct isolation *s, int kind, uint64_t inode, bool create)
{
    size_t b = slot_bucket(s, kind, inode);
    for (struct slot *x = s->slots[b]; x; x = x->next) {
        if (x->inode == inode && x->kind == kind) {
            return x;
        }
    }
    if (!create) {
        return NULL;
    }
    struct slot *x = calloc(1, sizeof *x);
    if (x) {
        x->inode = inode;
        x->kind = kind;
        x->next = s->slots[b];
        s->slots[b] = x;
    }
    return x;
}

static void slot_remove(struct isolation *s, int kind, uint64_t inode, size_t m)
{
    struct slot **pp = &s->slots[slot_bucket(s, kind, inode)];
    while (*pp && !((*pp)->inode == inode && (*pp)->kind == kind)) {
        pp = &(*pp)->next;
    }
    struct slot *x = *pp;
    for (size_t i = 0; x && i < x->n; i++) {
        if (x->members[i] == m) {
            x->members[i] = x->members[--x->n];
            break;
        }
    }
    if (x && x->n == 0) { /* namespaces come and go with containers */
        *pp = x->next;
        free(x->members);
        free(x);
    }
}

static bool slot_add(struct slot *x, size_t m)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 4;
        size_t *v = realloc(x->members, cap * sizeof *v);
        if (!v) {
            return false;
        }
        x->members = v;
        x->cap = cap;
    }
    x->members[x->n++] = m;
    return true;
}

static struct pair **pair_ref(struct isolation *s, size_t a, size_t b, int kind)
{
    size_t lo = a < b ? a : b, hi = a < b ? b : a;
    size_t bucket =
        (lo * 2654435761u + hi * 40503u + (size_t)kind) % (sizeof s->pairs / sizeof s->pairs[0]);
    struct pair **pp = &s->pairs[bucket];
    while (*pp && !((*pp)->lo == lo && (*pp)->hi == hi && (*pp)->kind == kind)) {
        pp = &(*pp)->next;
    }
    return pp;
}

/* Forgets m's reported pairs (of one kind, or of all when kind < 0): what
 * they shared has changed, so a pair that forms again is news. */
static void pairs_forget(struct isolation *s, size_t m, int kind)
{
    for (size_t i = 0; i < sizeof s->pairs / sizeof s->pairs[0]; i++) {
        for (struct pair **pp = &s->pairs[i]; *pp;) {
            if (((*pp)->lo == m || (*pp)->hi == m) && (kind < 0 || (*pp)->kind == kind)) {
                struct pair *dead = *pp;
                *pp = dead->next;
                free(dead);
            } else {
                pp = &(*pp)->next;
            }
        }
    }
}

/* ---- Judging ------------------------------------------------------------------- */

static size_t name_bucket(const struct isolation *s, uint64_t h)
{
    return (size_t)(h % (sizeof s->by_name / sizeof s->by_name[0]));
}

static size_t member_find(struct isolation *s, const char *name, size_t len, uint64_t h)
{
    for (size_t i = s->by_name[name_bucket(s, h)]; i != SIZE_MAX;
         i = s->members[i].next_same_bucket) {
        const struct member *mb = &s->members[i];
        if (mb->name_hash == h && strlen(mb->name) == len && memcmp(mb->name, name, len) == 0) {
            return i;
        }
    }
    return SIZE_MAX;
}

static size_t member_add(struct isolation *s, const char *name, size_t len, uint64_t h)
{
    size_t m = SIZE_MAX;
    for (size_t i = 0; i < s->nmembers && m == SIZE_MAX; i++) {
        if (!s->members[i].used) {
            m = i; /* reuse a slot a stale member left */
        }
    }
    if (m == SIZE_MAX) {
        if (s->nmembers == s->capmembers) {
            size_t cap = s->capmembers ? s->capmembers * 2 : 16;
            struct member *v = realloc(s->members, cap * sizeof *v);
            if (!v) {
                return SIZE_MAX;
            }
            s->members = v;
            s->capmembers = cap;
        }
        m = s->nmembers++;
    }
    struct member *mb = &s->members[m];
    memset(mb, 0, sizeof *mb);
    mb->name = strndup(name, len);
    mb->exempt = calloc(s->nexempt ? s->nexempt : 1, sizeof *mb->exempt);
    mb->used = mb->name && mb->exempt;
    if (!mb->used) {
        free(mb->name);
        free(mb->exempt);
        memset(mb, 0, sizeof *mb);
        return SIZE_MAX;
    }
    mb->name_hash = h;
    mb->next_same_bucket = s->by_name[name_bucket(s, h)];
    s->by_name[name_bucket(s, h)] = m;
    return m;
}

static void member_unindex(struct isolation *s, size_t m)
{
    size_t *p = &s->by_name[name_bucket(s, s->members[m].name_hash)];
    while (*p != SIZE_MAX && *p != m) {
        p = &s->members[*p].next_same_bucket;
    }
    if (*p == m) {
        *p = s->members[m].next_same_bucket;
    }
}

static bool exempt(const struct isolation *s, const struct member *a, const struct member *b)
{
    if (s->nexempt == 0) {
        return false;
    }
    for (size_t i = 0; i < s->nexempt; i++) {
        if (!a->exempt[i] || !b->exempt[i] || !a->exempt[i][0] ||
            strcmp(a->exempt[i], b->exempt[i]) != 0) {
            return false;
        }
    }
    return true;
}

/* The inodes of one namespace kind: a number, or a list of numbers. */
static size_t read_inodes(const struct vigil_event_view *ev, const char *kind, uint64_t *out)
{
    const msgpack_object *ns = vigil_msgpack_map_get(ev->attrs, "ns", 2);
    const msgpack_object *o = vigil_msgpack_map_get(ns, kind, strlen(kind));
    double x;
    if (!o) {
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        size_t n = 0;
        for (uint32_t i = 0; i < o->via.array.size && n < INODES_MAX; i++) {
            if (vigil_msgpack_double(&o->via.array.ptr[i], &x) == 0) {
                out[n++] = (uint64_t)x;
            }
        }
        return n;
    }
    if (vigil_msgpack_u64(o, out) == 0) {
        return 1;
    }
    if (vigil_msgpack_double(o, &x) == 0) {
        out[0] = (uint64_t)x;
        return 1;
    }
    return 0;
}

static void report(struct vigil_rule *rule, struct isolation *s, size_t m, size_t o, int k,
                   uint64_t inode, const struct vigil_event_view *ev, struct vigil_emit *out)
{
    struct vigil_event_builder *b = vigil__verdict_begin(out, rule, "alert.violation", ev);
    vigil_event_add_label(b, "shared", s->distinct[k]);
    vigil_event_add_label(b, "other_cgroup", s->members[o].name);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s: %s and %s share the %s namespace (inode %llu)", rule->name,
             s->members[m].name, s->members[o].name, s->distinct[k], (unsigned long long)inode);
    vigil__verdict_message(out, rule, ev, msg);
    vigil_event_add_attr_str(b, "namespace", s->distinct[k]);
    vigil_event_add_attr_i64(b, "inode", (int64_t)inode);
    vigil_event_add_attr_str(b, "cgroup", s->members[m].name);
    vigil_event_add_attr_str(b, "other_cgroup", s->members[o].name);
    /* The same pair gives the same fingerprint whichever side reported. */
    const char *lo = s->members[m].name, *hi = s->members[o].name;
    if (strcmp(lo, hi) > 0) {
        const char *t = lo;
        lo = hi;
        hi = t;
    }
    uint64_t fp = vigil__hash(VIGIL_HASH_INIT, rule->name, strlen(rule->name) + 1);
    fp = vigil__hash(fp, lo, strlen(lo) + 1);
    fp = vigil__hash(fp, hi, strlen(hi) + 1);
    fp = vigil__hash(fp, s->distinct[k], strlen(s->distinct[k]));
    char fps[17];
    snprintf(fps, sizeof fps, "%016llx", (unsigned long long)fp);
    vigil_event_add_attr_str(b, "fingerprint", fps);
    vigil__verdict_emit(out);
    vigil_count(&rule->stats.violations_total, 1);
}

static bool same_set(const uint64_t *a, size_t na, const uint64_t *b, size_t nb)
{
    if (na != nb) {
        return false;
    }
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        for (size_t j = 0; j < nb && !found; j++) {
            found = a[i] == b[j];
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

static void isolation_eval(struct vigil_rule *rule, const struct vigil_event_view *ev, uint64_t now,
                           struct vigil_emit *out)
{
    struct isolation *s = rule->impl;
    const char *name;
    size_t len;
    if (vigil_msgpack_str(vigil_msgpack_map_get(ev->labels, s->key, strlen(s->key)), &name, &len) !=
        0) {
        return; /* not about a cgroup */
    }
    for (size_t i = 0; i < s->nignore; i++) {
        if (vigil_glob_match(s->ignore[i], name, len)) {
            return;
        }
    }
    if (s->when && !vigil_expr_true(s->when, ev)) {
        return; /* e.g. a host cgroup: sharing the host's namespaces is its job */
    }
    uint64_t h = vigil__hash(VIGIL_HASH_INIT, name, len);
    size_t m = member_find(s, name, len, h);
    if (m == SIZE_MAX) {
        if (vigil_counter_get(&rule->stats.series) >= s->max_members ||
            (m = member_add(s, name, len, h)) == SIZE_MAX) {
            vigil_count(&rule->stats.dropped_total, 1);
            return;
        }
        vigil_count(&rule->stats.series, 1);
    }
    struct member *mb = &s->members[m];
    mb->last_seen = now;
    for (size_t i = 0; i < s->nexempt; i++) {
        const char *v = "";
        size_t vn = 0;
        vigil_msgpack_str(
            vigil_msgpack_map_get(ev->labels, s->exempt_same[i], strlen(s->exempt_same[i])), &v,
            &vn);
        if (!mb->exempt[i] || strlen(mb->exempt[i]) != vn || memcmp(mb->exempt[i], v, vn) != 0) {
            free(mb->exempt[i]);
            mb->exempt[i] = strndup(v, vn);
        }
    }
    for (size_t k = 0; k < s->ndistinct; k++) {
        uint64_t now_inodes[INODES_MAX];
        size_t n = read_inodes(ev, s->distinct[k], now_inodes);
        if (!same_set(now_inodes, n, mb->inode[k], mb->ninode[k])) {
            for (size_t i = 0; i < mb->ninode[k]; i++) {
                slot_remove(s, (int)k, mb->inode[k][i], m);
            }
            if (mb->ninode[k] > 0) {
                pairs_forget(s, m, (int)k);
            }
            memcpy(mb->inode[k], now_inodes, n * sizeof *now_inodes);
            mb->ninode[k] = n;
            for (size_t i = 0; i < n; i++) {
                struct slot *x = slot_get(s, (int)k, now_inodes[i], true);
                if (!x || !slot_add(x, m)) {
                    vigil_count(&rule->stats.dropped_total, 1);
                }
            }
        }
        for (size_t i = 0; i < mb->ninode[k]; i++) {
            struct slot *x = slot_get(s, (int)k, mb->inode[k][i], false);
            for (size_t j = 0; x && j < x->n; j++) {
                size_t o = x->members[j];
                if (o == m || exempt(s, mb, &s->members[o])) {
                    continue;
                }
                struct pair **pp = pair_ref(s, m, o, (int)k);
                if (*pp && (*pp)->inode == mb->inode[k][i]) {
                    continue; /* reported already, and nothing changed */
                }
                if (!*pp) {
                    *pp = calloc(1, sizeof **pp);
                    if (!*pp) {
                        continue;
                    }
                    (*pp)->lo = m < o ? m : o;
                    (*pp)->hi = m < o ? o : m;
                    (*pp)->kind = (int)k;
                }
                (*pp)->inode = mb->inode[k][i];
                report(rule, s, m, o, (int)k, mb->inode[k][i], ev, out);
            }
        }
    }
}

/* Cgroups that stopped reporting (removed) leave the indexes. */
static void isolation_tick(struct vigil_rule *rule, uint64_t now, struct vigil_emit *out)
{
    (void)out;
    struct isolation *s = rule->impl;
    for (size_t m = 0; m < s->nmembers; m++) {
        struct member *mb = &s->members[m];
        if (!mb->used || now - mb->last_seen < s->stale_ns) {
            continue;
        }
        for (size_t k = 0; k < s->ndistinct; k++) {
            for (size_t i = 0; i < mb->ninode[k]; i++) {
                slot_remove(s, (int)k, mb->inode[k][i], m);
            }
        }
        pairs_forget(s, m, -1);
        member_unindex(s, m);
        free(mb->name);
        free_strings(mb->exempt, s->nexempt);
        memset(mb, 0, sizeof *mb);
        atomic_fetch_sub(&rule->stats.series, 1);
    }
}

const struct vigil_rule_kind vigil__rule_isolation = {
    .name = "isolation",
    .options = isolation_options,
    .compile = isolation_compile,
    .eval = isolation_eval,
    .tick = isolation_tick,
    .free = isolation_free,
};

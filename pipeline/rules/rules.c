/* The rules engine (see rules.h): compiles the `rules:` list, routes each
 * event to the rules whose topic prefixes cover it, and builds verdict
 * events with one reusable builder (no allocation per event once warm).
 */
#include "rules.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "fields.h"
#include "glob.h"
#include "layout.h"
#include "rules_internal.h"

static const struct vigil_rule_kind *const kinds[] = {
    &vigil__rule_threshold, &vigil__rule_bound,    &vigil__rule_policy,
    &vigil__rule_isolation, &vigil__rule_capacity,
};

struct host_seq {
    char *host;
    size_t len;
    uint64_t seq;
};

/* Which rules a topic's events go to, remembered per topic: matching every
 * rule's prefixes against every event cost a memcmp per rule per event
 * (with many rules, more than evaluating the few that match: docs/rules.md,
 * Cost). */
#define TOPIC_CACHE 16 /* direct-mapped by the topic's hash */
struct topic_rules {
    size_t len; /* 0: empty */
    char topic[VIGIL_TOPIC_MAX];
    size_t n;
    uint32_t *idx;              /* ascending rule indices, in topic_idx: room for every rule */
    struct vigil_shape shape;   /* where its events' keys were (fields.h) */
    struct vigil_layout layout; /* and all their items (layout.h) */
};

struct vigil_rules {
    struct vigil_rule *rules;
    size_t n;
    struct topic_rules topics[TOPIC_CACHE];
    uint32_t *topic_idx; /* the slots' idx, made with the rules */
    char **prefixes;
    size_t nprefixes;
    char *source;
    size_t source_len;
    struct vigil_event_builder b;
    struct host_seq *hosts; /* seq is per (host, source): one counter per host */
    size_t nhosts, caphosts;
    struct vigil_fields *fields; /* the label and value keys the rules read */
};

struct vigil_emit {
    struct vigil_rules *r;
    vigil_verdict_fn fn;
    void *arg;
    const char *host;
    size_t host_len;
    char host_buf[256]; /* for stored (stale) series */
};

/* Eight bytes per step (multiply, fold), the tail byte by byte: keys are
 * hashed per event, so FNV's byte loop showed in profiles. Deterministic, so
 * fingerprints stay stable across restarts. */
uint64_t vigil__hash(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
        p += 8;
        len -= 8;
    }
    while (len--) {
        h = (h ^ *p++) * 1099511628211ull;
    }
    return h;
}

/* ---- Templates --------------------------------------------------------------- */

struct tseg {
    char *text; /* a literal, or a path when is_path */
    bool is_path;
};

struct vigil_template {
    struct tseg *segs;
    size_t n;
};

void vigil__template_free(struct vigil_template *t)
{
    if (!t) {
        return;
    }
    for (size_t i = 0; i < t->n; i++) {
        free(t->segs[i].text);
    }
    free(t->segs);
    free(t);
}

struct vigil_template *vigil__template_compile(const struct vigil_conf *n, struct vigil_diag *d)
{
    const char *s;
    if (vigil_conf_string(n, &s) != 0) {
        return NULL;
    }
    struct vigil_template *t = calloc(1, sizeof *t);
    size_t cap = strlen(s) + 1; /* never more segments than characters */
    t->segs = calloc(cap, sizeof *t->segs);
    if (!t->segs) {
        vigil__template_free(t);
        return NULL;
    }
    const char *p = s;
    while (*p) {
        const char *open = strchr(p, '{');
        if (!open) {
            t->segs[t->n++] = (struct tseg){.text = strdup(p)};
            break;
        }
        if (open > p) {
            t->segs[t->n++] = (struct tseg){.text = strndup(p, (size_t)(open - p))};
        }
        const char *close = strchr(open, '}');
        if (!close || close == open + 1) {
            vigil_diag_at(d, n,
                          "message: '{' at offset %zu has no field name and closing '}' "
                          "(write {labels.name} or {values.name})",
                          (size_t)(open - s));
            vigil__template_free(t);
            return NULL;
        }
        t->segs[t->n++] =
            (struct tseg){.text = strndup(open + 1, (size_t)(close - open - 1)), .is_path = true};
        p = close + 1;
    }
    return t;
}

/* Renders into buf (always NUL-terminated); missing fields read "?". */
static void template_render(const struct vigil_template *t, const struct vigil_event_view *ev,
                            char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < t->n && len + 1 < cap; i++) {
        const char *s = t->segs[i].text;
        size_t n = strlen(s);
        char num[64];
        if (t->segs[i].is_path) {
            const msgpack_object *o = ev ? vigil_event_get(ev, s) : NULL;
            double x;
            if (o && vigil_msgpack_str(o, &s, &n) == 0) {
                /* s, n set */
            } else if (o && vigil_msgpack_double(o, &x) == 0) {
                n = (size_t)snprintf(num, sizeof num, "%.6g", x);
                s = num;
            } else if (ev && strcmp(t->segs[i].text, "topic") == 0) {
                s = ev->topic;
                n = ev->topic_len;
            } else {
                s = "?";
                n = 1;
            }
        }
        if (n > cap - 1 - len) {
            n = cap - 1 - len;
        }
        memcpy(buf + len, s, n);
        len += n;
        buf[len] = '\0';
    }
}

/* ---- Verdicts ------------------------------------------------------------------ */

struct vigil_event_builder *vigil__verdict_builder(struct vigil_emit *out)
{
    return &out->r->b;
}

static bool reserved_label(const char *k, size_t n)
{
    return (n == 4 && memcmp(k, "rule", 4) == 0) || (n == 8 && memcmp(k, "severity", 8) == 0) ||
           (n == 4 && memcmp(k, "kind", 4) == 0);
}

static void add_labels_from(struct vigil_event_builder *b, const msgpack_object *labels)
{
    for (uint32_t i = 0; labels && labels->type == MSGPACK_OBJECT_MAP && i < labels->via.map.size;
         i++) {
        const char *k, *v;
        size_t kn, vn;
        if (vigil_msgpack_str(&labels->via.map.ptr[i].key, &k, &kn) == 0 &&
            vigil_msgpack_str(&labels->via.map.ptr[i].val, &v, &vn) == 0 &&
            !reserved_label(k, kn)) {
            vigil_event_add_label_n(b, k, kn, v, vn);
        }
    }
}

static void add_rule_labels(struct vigil_event_builder *b, const struct vigil_rule *rule)
{
    vigil_event_add_label(b, "rule", rule->name);
    vigil_event_add_label(b, "severity", rule->severity);
    vigil_event_add_label(b, "kind", rule->kind->name);
}

struct vigil_event_builder *vigil__verdict_begin(struct vigil_emit *out,
                                                 const struct vigil_rule *rule, const char *topic,
                                                 const struct vigil_event_view *ev)
{
    struct vigil_event_builder *b = &out->r->b;
    vigil_event_begin(b, topic);
    vigil_event_tree(ev);
    add_labels_from(b, ev->labels);
    add_rule_labels(b, rule);
    vigil_event_add_attr_str_n(b, "source_topic", ev->topic, ev->topic_len);
    out->host = ev->host;
    out->host_len = ev->host_len;
    return b;
}

struct vigil_event_builder *vigil__verdict_begin_stored(struct vigil_emit *out,
                                                        const struct vigil_rule *rule,
                                                        const char *topic, const char *host,
                                                        size_t host_len, const char *labels,
                                                        size_t labels_len)
{
    struct vigil_event_builder *b = &out->r->b;
    vigil_event_begin(b, topic);
    /* The stored labels are a msgpack map we packed ourselves. */
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object o;
    size_t off = 0;
    if (labels && msgpack_unpack(labels, labels_len, &off, &zone, &o) == MSGPACK_UNPACK_SUCCESS) {
        add_labels_from(b, &o);
    }
    msgpack_zone_destroy(&zone);
    add_rule_labels(b, rule);
    size_t n = host_len < sizeof out->host_buf ? host_len : sizeof out->host_buf;
    memcpy(out->host_buf, host, n);
    out->host = out->host_buf;
    out->host_len = n;
    return b;
}

struct vigil_event_builder *vigil__publish_begin(struct vigil_emit *out,
                                                 const struct vigil_rule *rule, const char *topic,
                                                 const char *host, size_t host_len)
{
    struct vigil_event_builder *b = &out->r->b;
    vigil_event_begin(b, topic);
    vigil_event_add_label(b, "rule", rule->name);
    out->host = host;
    out->host_len = host_len;
    return b;
}

void vigil__verdict_message(struct vigil_emit *out, const struct vigil_rule *rule,
                            const struct vigil_event_view *ev, const char *fallback)
{
    char msg[1024];
    if (rule->message && ev) {
        template_render(rule->message, ev, msg, sizeof msg);
    } else {
        snprintf(msg, sizeof msg, "%s", fallback);
    }
    vigil_event_add_attr_str(&out->r->b, "message", msg);
}

/* True when an earlier expression (or an earlier path of the same one)
 * already reads `p`. */
static bool path_seen(const struct vigil_expr *const *exprs, size_t upto_e, size_t upto_i,
                      const char *p)
{
    for (size_t e = 0; e <= upto_e; e++) {
        size_t n = exprs[e] ? vigil_expr_npaths(exprs[e]) : 0;
        for (size_t i = 0; i < n && (e < upto_e || i < upto_i); i++) {
            if (strcmp(vigil_expr_path(exprs[e], i), p) == 0) {
                return true;
            }
        }
    }
    return false;
}

void vigil__verdict_values_of(struct vigil_emit *out, const struct vigil_expr *const *exprs,
                              size_t n, const struct vigil_event_view *ev)
{
    for (size_t e = 0; e < n; e++) {
        for (size_t i = 0; exprs[e] && i < vigil_expr_npaths(exprs[e]); i++) {
            const char *p = vigil_expr_path(exprs[e], i);
            double x;
            if (strncmp(p, "values.", 7) == 0 && !path_seen(exprs, e, i, p) &&
                vigil_msgpack_double(vigil_event_get(ev, p), &x) == 0) {
                vigil_event_add_value(&out->r->b, p + 7, x);
            }
        }
    }
}

static uint64_t next_seq(struct vigil_rules *r, const char *host, size_t len)
{
    for (size_t i = 0; i < r->nhosts; i++) {
        if (r->hosts[i].len == len && memcmp(r->hosts[i].host, host, len) == 0) {
            return ++r->hosts[i].seq;
        }
    }
    if (r->nhosts == r->caphosts) {
        size_t cap = r->caphosts ? r->caphosts * 2 : 8;
        struct host_seq *h = realloc(r->hosts, cap * sizeof *h);
        if (!h) {
            return 0;
        }
        r->hosts = h;
        r->caphosts = cap;
    }
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        return 0;
    }
    memcpy(copy, host, len);
    r->hosts[r->nhosts++] = (struct host_seq){.host = copy, .len = len, .seq = 1};
    return 1;
}

void vigil__verdict_emit(struct vigil_emit *out)
{
    struct vigil_rules *r = out->r;
    char host[256];
    size_t n = out->host_len < sizeof host - 1 ? out->host_len : sizeof host - 1;
    memcpy(host, out->host, n);
    host[n] = '\0';
    const char *body;
    size_t len;
    uint64_t seq = next_seq(r, out->host, out->host_len);
    if (seq && vigil_event_finish(&r->b, host, r->source, seq, &body, &len) == 0) {
        out->fn(out->arg, r->b.topic, body, len);
    }
}

/* ---- Compiling ----------------------------------------------------------------- */

static const struct vigil_option common_options[] = {
    {"name", VIGIL_OPT_STRING, NULL, "unique rule name"},
    {"kind", VIGIL_OPT_STRING, NULL, "threshold, bound, policy, isolation or capacity"},
    {"match", VIGIL_OPT_LIST, NULL, "topic prefixes the rule judges"},
    {"severity", VIGIL_OPT_STRING, "warning", "labels.severity of its verdicts"},
    {"message", VIGIL_OPT_STRING, NULL, "template: {labels.x} {values.y} {host} {topic}"},
};

static struct vigil_option *options_for(const struct vigil_rule_kind *k)
{
    size_t nk = 0;
    while (k->options && k->options[nk].key) {
        nk++;
    }
    size_t nc = sizeof common_options / sizeof common_options[0];
    struct vigil_option *o = calloc(nc + nk + 1, sizeof *o);
    if (o) {
        memcpy(o, common_options, sizeof common_options);
        if (nk) {
            memcpy(o + nc, k->options, nk * sizeof *o);
        }
    }
    return o;
}

static bool add_prefix(struct vigil_rules *r, const char *p)
{
    for (size_t i = 0; i < r->nprefixes; i++) {
        if (strcmp(r->prefixes[i], p) == 0) {
            return true;
        }
    }
    char **np = realloc(r->prefixes, (r->nprefixes + 1) * sizeof *np);
    if (!np) {
        return false;
    }
    r->prefixes = np;
    r->prefixes[r->nprefixes] = strdup(p);
    return r->prefixes[r->nprefixes++] != NULL;
}

/* Compiles rule `index` of `list` into r->rules[r->n]; false on any error.
 * It goes as far as it can, so that one run reports every problem. */
static bool compile_rule(struct vigil_rules *r, const struct vigil_conf *list, size_t index,
                         struct vigil_diag *d)
{
    struct vigil_conf *node = (struct vigil_conf *)vigil_conf_at(list, index, NULL);
    if (node->kind != VIGIL_CONF_MAP) {
        vigil_diag_at(d, node, "a rule is a map with name, kind, match and the kind's keys");
        return false;
    }
    const char *name = NULL, *kind = NULL;
    const struct vigil_conf *nn = vigil_conf_get(node, "name"), *kn = vigil_conf_get(node, "kind");
    if (vigil_conf_string(nn, &name) != 0 || !name[0]) {
        vigil_diag_at(d, node, "a rule needs a 'name'");
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < index; i++) { /* against every earlier rule, even broken ones */
        const char *other;
        if (vigil_conf_string(vigil_conf_get(vigil_conf_at(list, i, NULL), "name"), &other) == 0 &&
            strcmp(other, name) == 0) {
            vigil_diag_at(d, nn, "duplicate rule name '%s' (first at line %d)", name,
                          vigil_conf_at(list, i, NULL)->line);
            ok = false;
            break;
        }
    }
    const struct vigil_rule_kind *k = NULL;
    if (vigil_conf_string(kn, &kind) == 0) {
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
            if (strcmp(kinds[i]->name, kind) == 0) {
                k = kinds[i];
            }
        }
    }
    if (!k) {
        vigil_diag_at(d, kn ? kn : node,
                      "rule '%s': kind must be threshold, bound, policy, isolation or capacity",
                      name);
        return false;
    }
    char what[300];
    snprintf(what, sizeof what, "%s rule '%s'", k->name, name);
    struct vigil_option *opts = options_for(k);
    if (!opts) {
        return false;
    }
    ok &= vigil_conf_check_options(node, opts, what, d) == 0;
    free(opts);
    const struct vigil_conf *m = vigil_conf_get(node, "match");
    if (!m) {
        vigil_diag_at(d, node, "%s needs 'match': the topic prefix(es) it judges", what);
        ok = false;
    }
    struct vigil_rule *rule = &r->rules[r->n++]; /* counted now, so free() releases it */
    memset(rule, 0, sizeof *rule);
    rule->name = strdup(name);
    const char *sev = "warning";
    vigil_conf_string(vigil_conf_get(node, "severity"), &sev);
    rule->severity = strdup(sev);
    rule->nmatch = m ? vigil_conf_len(m) : 0;
    rule->match = calloc(rule->nmatch ? rule->nmatch : 1, sizeof *rule->match);
    rule->match_len = calloc(rule->nmatch ? rule->nmatch : 1, sizeof *rule->match_len);
    if (!rule->name || !rule->severity || !rule->match || !rule->match_len) {
        return false;
    }
    for (size_t i = 0; i < rule->nmatch; i++) {
        const char *p;
        const struct vigil_conf *pn = vigil_conf_at(m, i, NULL);
        if (vigil_conf_string(pn, &p) != 0) {
            vigil_diag_at(d, pn, "%s: match entries are topic prefixes (strings)", what);
            ok = false;
            break;
        }
        rule->match[i] = strdup(p);
        rule->match_len[i] = strlen(p);
        if (!rule->match[i] || !add_prefix(r, p)) {
            return false;
        }
    }
    const struct vigil_conf *msg = vigil_conf_get(node, "message");
    if (msg && !(rule->message = vigil__template_compile(msg, d))) {
        ok = false;
    }
    /* The kind's own keys are checked even when the rest was wrong. */
    if (k->compile(rule, node, d) == 0) {
        rule->kind = k;
    } else {
        ok = false;
    }
    /* After the checks filled in the defaults: writing out a default or
     * leaving it out is no change. */
    rule->def = ok ? vigil_conf_canonical(node) : NULL;
    return ok && rule->def;
}

/* Gives the rules' reads of labels and values their slots, afresh: a
 * reload moves kept rules between engines. */
static void bind_fields(struct vigil_rules *r)
{
    vigil__fields_reset(r->fields);
    for (size_t i = 0; i < TOPIC_CACHE; i++) {
        vigil__shape_reset(&r->topics[i].shape);
    }
    for (size_t i = 0; i < r->n; i++) {
        if (r->rules[i].kind && r->rules[i].kind->bind) {
            r->rules[i].kind->bind(&r->rules[i], r->fields);
        }
    }
}

static void rule_fini(struct vigil_rule *rule)
{
    if (rule->kind && rule->kind->free) {
        rule->kind->free(rule);
    }
    for (size_t i = 0; rule->match && i < rule->nmatch; i++) {
        free(rule->match[i]);
    }
    free(rule->match);
    free(rule->match_len);
    free(rule->name);
    free(rule->severity);
    free(rule->def);
    vigil__template_free(rule->message);
}

struct vigil_rules *vigil_rules_new(const struct vigil_conf *list, const char *source,
                                    struct vigil_diag *d)
{
    struct vigil_rules *r = calloc(1, sizeof *r);
    if (!r) {
        return NULL;
    }
    vigil_event_builder_init(&r->b);
    r->source = strdup(source);
    r->source_len = strlen(source);
    size_t n = list ? vigil_conf_len(list) : 0;
    r->rules = calloc(n ? n : 1, sizeof *r->rules);
    r->fields = vigil__fields_new();
    if (!r->source || !r->rules || !r->fields) {
        vigil_rules_free(r);
        return NULL;
    }
    size_t before = d->count;
    if (list && list->kind != VIGIL_CONF_LIST && n > 0) {
        vigil_diag_at(d, list, "'rules' must be a list of rules");
    }
    for (size_t i = 0; i < n && list->kind == VIGIL_CONF_LIST; i++) {
        /* The tree is the config's; checking a rule fills in its defaults. */
        compile_rule(r, list, i, d);
    }
    size_t room = r->n ? r->n : 1;
    r->topic_idx = d->count > before ? NULL : malloc(TOPIC_CACHE * room * sizeof *r->topic_idx);
    if (!r->topic_idx) {
        vigil_rules_free(r);
        return NULL;
    }
    for (size_t i = 0; i < TOPIC_CACHE; i++) {
        r->topics[i].idx = r->topic_idx + i * room;
    }
    bind_fields(r);
    return r;
}

void vigil_rules_free(struct vigil_rules *r)
{
    if (!r) {
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        rule_fini(&r->rules[i]);
    }
    free(r->rules);
    free(r->topic_idx);
    for (size_t i = 0; i < r->nprefixes; i++) {
        free(r->prefixes[i]);
    }
    free(r->prefixes);
    for (size_t i = 0; i < r->nhosts; i++) {
        free(r->hosts[i].host);
    }
    free(r->hosts);
    free(r->source);
    vigil_event_builder_fini(&r->b);
    vigil__fields_free(r->fields);
    free(r);
}

size_t vigil_rules_nprefixes(const struct vigil_rules *r)
{
    return r->nprefixes;
}

const char *vigil_rules_prefix(const struct vigil_rules *r, size_t i)
{
    return r->prefixes[i];
}

size_t vigil_rules_count(const struct vigil_rules *r)
{
    return r->n;
}

/* ---- Reloading ----------------------------------------------------------------- */

static struct vigil_rule *rule_named(struct vigil_rules *r, const char *name, size_t *index)
{
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->rules[i].name, name) == 0) {
            *index = i;
            return &r->rules[i];
        }
    }
    return NULL;
}

int vigil_rules_adopt(struct vigil_rules *nw, struct vigil_rules *old, uint64_t now_ns,
                      vigil_verdict_fn emit, void *arg, struct vigil_rules_reload *counts)
{
    struct vigil_rules_reload c = {0};
    bool *kept = calloc(old->n ? old->n : 1, sizeof *kept);
    if (!kept) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < nw->n; i++) {
        size_t j;
        struct vigil_rule *was = rule_named(old, nw->rules[i].name, &j);
        if (was && was->def && nw->rules[i].def && strcmp(was->def, nw->rules[i].def) == 0) {
            /* The same rule: its state (series, index, history) and its
             * counters move over; the fresh copy goes with the old engine. */
            struct vigil_rule fresh = nw->rules[i];
            nw->rules[i] = *was;
            *was = fresh;
            kept[j] = true;
            c.kept++;
        } else if (was) {
            c.changed++;
        } else {
            c.added++;
        }
    }
    bind_fields(nw);
    bind_fields(old);
    struct vigil_emit out = {.r = old, .fn = emit, .arg = arg};
    for (size_t j = 0; j < old->n; j++) {
        size_t i;
        if (kept[j]) {
            continue;
        }
        bool changed = rule_named(nw, old->rules[j].name, &i) != NULL;
        c.removed += !changed;
        if (old->rules[j].kind->retire) {
            old->rules[j].kind->retire(&old->rules[j], now_ns, changed ? "changed" : "removed",
                                       &out);
        }
    }
    free(kept);
    /* Verdicts go on with the same seq per host: a reload is no gap. */
    struct host_seq *hosts = nw->hosts;
    size_t nhosts = nw->nhosts, caphosts = nw->caphosts;
    nw->hosts = old->hosts;
    nw->nhosts = old->nhosts;
    nw->caphosts = old->caphosts;
    old->hosts = hosts;
    old->nhosts = nhosts;
    old->caphosts = caphosts;
    if (counts) {
        *counts = c;
    }
    return 0;
}

/* ---- Running ------------------------------------------------------------------- */

static bool rule_matches(const struct vigil_rule *rule, const char *topic, size_t len)
{
    for (size_t i = 0; i < rule->nmatch; i++) {
        size_t n = rule->match_len[i];
        if (n <= len && memcmp(rule->match[i], topic, n) == 0) {
            return true;
        }
    }
    return false;
}

/* The slot of the topic, its list made on a miss; NULL for a topic no slot
 * can hold (the bus refuses those). */
static struct topic_rules *topic_rules(struct vigil_rules *r, const char *topic, size_t len)
{
    if (len == 0 || len > VIGIL_TOPIC_MAX) {
        return NULL;
    }
    struct topic_rules *t = &r->topics[vigil__hash(0, topic, len) % TOPIC_CACHE];
    if (vigil__same_bytes(t->topic, (uint32_t)t->len, topic, (uint32_t)len)) {
        return t;
    }
    t->n = 0;
    vigil__shape_reset(&t->shape);
    vigil__layout_reset(&t->layout);
    for (size_t i = 0; i < r->n; i++) {
        if (rule_matches(&r->rules[i], topic, len)) {
            t->idx[t->n++] = (uint32_t)i;
        }
    }
    memcpy(t->topic, topic, len);
    t->len = len;
    return t;
}

static void eval_rule(struct vigil_rule *rule, const struct vigil_event_view *ev, uint64_t now_ns,
                      struct vigil_emit *out)
{
    vigil_count_own(&rule->stats.evaluated_total, 1);
    if (!rule->kind->bind) {
        vigil_event_tree(ev); /* a kind that reads the tree as it pleases */
    }
    rule->kind->eval(rule, ev, now_ns, out);
}

int vigil_rules_read(struct vigil_rules *r, struct vigil_event_view *v, const char *topic,
                     size_t topic_len, const char *body, size_t body_len, msgpack_zone *zone,
                     const char **reason)
{
    struct topic_rules *t = topic_rules(r, topic, topic_len);
    if (!t || t->n == 0) {
        return vigil_event_read_trusted(v, topic, topic_len, body, body_len, zone, reason);
    }
    int rc = vigil__layout_read(&t->layout, v, topic, topic_len, body, body_len, zone, reason);
    if (rc < 0) {
        return rc;
    }
    if (rc == 0) {
        vigil__shape_unplan(&t->shape); /* walked: the layout is another one now */
    }
    v->fields = rc == 1 ? vigil__fields_fill_at(r->fields, &t->shape, &t->layout, v)
                        : vigil__fields_fill(r->fields, &t->shape, v);
    return 0;
}

void vigil_rules_eval(struct vigil_rules *r, const struct vigil_event_view *ev, uint64_t now_ns,
                      vigil_verdict_fn emit, void *arg)
{
    /* Field by field: an initializer would clear host_buf for every event
     * (only a stored series' verdict uses it, and writes it first). */
    struct vigil_emit out;
    out.r = r;
    out.fn = emit;
    out.arg = arg;
    out.host = NULL;
    out.host_len = 0;
    /* Verdicts are events too: a rule never judges the verdicts of its own
     * kind of stage, or an alert storm would feed itself. */
    if (ev->topic_len >= 6 && memcmp(ev->topic, "alert.", 6) == 0 &&
        ev->source_len == r->source_len && memcmp(ev->source, r->source, ev->source_len) == 0) {
        return;
    }
    struct topic_rules *t = topic_rules(r, ev->topic, ev->topic_len);
    /* Our own copy, which the kinds read through slots and which builds its
     * tree in the caller's zone if a rule needs it (vigil_event_tree). */
    struct vigil_event_view own;
    if ((ev->has_raw || ev->tree_zone) && (!t || t->n) &&
        (!ev->fields ||
         ev->fields != vigil__fields_slots(r->fields))) { /* not vigil_rules_read's */
        own = *ev;
        own.fields = vigil__fields_fill(r->fields, t ? &t->shape : NULL, &own);
        ev = &own;
    }
    if (!t) { /* not a topic the bus lets through: match as we go */
        for (size_t i = 0; i < r->n; i++) {
            if (rule_matches(&r->rules[i], ev->topic, ev->topic_len)) {
                eval_rule(&r->rules[i], ev, now_ns, &out);
            }
        }
        return;
    }
    for (size_t k = 0; k < t->n; k++) {
        eval_rule(&r->rules[t->idx[k]], ev, now_ns, &out);
    }
}

void vigil_rules_tick(struct vigil_rules *r, uint64_t now_ns, vigil_verdict_fn emit, void *arg)
{
    struct vigil_emit out = {.r = r, .fn = emit, .arg = arg};
    for (size_t i = 0; i < r->n; i++) {
        if (r->rules[i].kind->tick) {
            r->rules[i].kind->tick(&r->rules[i], now_ns, &out);
        }
    }
}

void vigil_rules_stats(struct vigil_rules *r, vigil_rule_stats_fn fn, void *arg)
{
    static const char *const keys[] = {"evaluated_total",  "fired_total",   "resolved_total",
                                       "violations_total", "allowed_total", "series",
                                       "dropped_total",    "history"};
    for (size_t i = 0; i < r->n; i++) {
        struct vigil_rule_stats *s = &r->rules[i].stats;
        uint64_t v[] = {
            vigil_counter_get(&s->evaluated_total), vigil_counter_get(&s->fired_total),
            vigil_counter_get(&s->resolved_total),  vigil_counter_get(&s->violations_total),
            vigil_counter_get(&s->allowed_total),   vigil_counter_get(&s->series),
            vigil_counter_get(&s->dropped_total),   vigil_counter_get(&s->history),
        };
        fn(arg, r->rules[i].name, r->rules[i].kind->name, keys, v, sizeof v / sizeof v[0]);
    }
}

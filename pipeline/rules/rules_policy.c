/* kind: policy — access control. Each event names a subject, an action and
 * a resource (labels, configurable); an ordered list of allow/deny entries
 * (globs or lists of globs, and an optional `when` expression) decides, the
 * first match wins, and `default` decides when none matches. Every denial
 * is an alert.violation naming the deciding entry; allowed decisions are
 * counted. A bounded ring keeps the most recent violations.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "fields.h"
#include "glob.h"
#include "rules_internal.h"

enum { SUBJECT, ACTION, RESOURCE, ROLES };
static const char *const role_names[ROLES] = {"subject", "action", "resource"};

struct entry {
    bool allow;
    char *id;                         /* optional */
    char **globs[ROLES];              /* NULL: any */
    struct vigil_glob *shaped[ROLES]; /* the same, with their shapes */
    size_t nglobs[ROLES];
    struct vigil_expr *when;
};

struct violation { /* the history's records: fixed size, no allocation */
    uint64_t ts;
    char subject[64], action[32], resource[128];
    int entry; /* -1: default */
};

struct policy {
    char *label[ROLES]; /* which label plays each role */
    size_t label_len[ROLES];
    uint16_t slot[ROLES]; /* its field slot (fields.h); 0: search */
    struct entry *entries;
    size_t n;
    bool default_allow, audit;
    struct violation *history;
    size_t history_cap, history_next, history_len;
};

static const struct vigil_option policy_options[] = {
    {"rules", VIGIL_OPT_LIST, NULL, "ordered allow:/deny: entries; the first match decides"},
    {"default", VIGIL_OPT_STRING, "deny", "the decision when no entry matches: deny or allow"},
    {"mode", VIGIL_OPT_STRING, "enforce", "enforce, or audit (report with enforced: false)"},
    {"subject_label", VIGIL_OPT_STRING, "subject", "label naming the subject"},
    {"action_label", VIGIL_OPT_STRING, "action", "label naming the action"},
    {"resource_label", VIGIL_OPT_STRING, "resource", "label naming the resource"},
    {"history", VIGIL_OPT_INT, "1000", "recent violations kept in memory"},
    {NULL, 0, NULL, NULL},
};

static void policy_free(struct vigil_rule *rule)
{
    struct policy *p = rule->impl;
    if (!p) {
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        struct entry *e = &p->entries[i];
        free(e->id);
        for (int r = 0; r < ROLES; r++) {
            for (size_t g = 0; e->globs[r] && g < e->nglobs[r]; g++) {
                free(e->globs[r][g]);
            }
            free(e->globs[r]);
            free(e->shaped[r]);
        }
        vigil_expr_free(e->when);
    }
    free(p->entries);
    for (int r = 0; r < ROLES; r++) {
        free(p->label[r]);
    }
    free(p->history);
    free(p);
    rule->impl = NULL;
}

/* One role of an entry: a glob or a list of globs. */
static bool read_globs(struct entry *e, int role, const struct vigil_conf *n, const char *rule,
                       struct vigil_diag *d)
{
    size_t cnt = vigil_conf_len(n);
    if (n->kind == VIGIL_CONF_MAP || cnt == 0) {
        vigil_diag_at(d, n, "policy rule '%s': %s is a glob or a list of globs", rule,
                      role_names[role]);
        return false;
    }
    e->globs[role] = calloc(cnt, sizeof *e->globs[role]);
    e->shaped[role] = calloc(cnt, sizeof *e->shaped[role]);
    if (!e->globs[role] || !e->shaped[role]) {
        return false;
    }
    for (size_t i = 0; i < cnt; i++) {
        const struct vigil_conf *g = vigil_conf_at(n, i, NULL);
        const char *s, *why;
        if (vigil_conf_string(g, &s) != 0 || g->kind != VIGIL_CONF_SCALAR) {
            vigil_diag_at(d, g, "policy rule '%s': %s globs are strings", rule, role_names[role]);
            return false;
        }
        if (!vigil_glob_valid(s, &why)) {
            vigil_diag_at(d, g, "policy rule '%s': bad glob '%s': %s", rule, s, why);
            return false;
        }
        char *copy = strdup(s);
        if (!copy) {
            return false;
        }
        vigil_glob_prepare(&e->shaped[role][e->nglobs[role]], copy);
        e->globs[role][e->nglobs[role]++] = copy;
    }
    return true;
}

static bool read_entry(struct entry *e, const struct vigil_conf *n, size_t index, const char *rule,
                       struct vigil_diag *d)
{
    if (n->kind != VIGIL_CONF_MAP) {
        vigil_diag_at(d, n, "policy rule '%s': entry %zu must be a map with allow: or deny:", rule,
                      index);
        return false;
    }
    const struct vigil_conf *allow = vigil_conf_get(n, "allow"), *deny = vigil_conf_get(n, "deny");
    if (!allow == !deny) {
        vigil_diag_at(
            d, n, "policy rule '%s': entry %zu needs exactly one of allow: or deny:", rule, index);
        return false;
    }
    e->allow = allow != NULL;
    const struct vigil_conf *who = allow ? allow : deny;
    bool ok = true;
    for (size_t i = 0; i < vigil_conf_len(n); i++) {
        const char *k;
        const struct vigil_conf *v = vigil_conf_at(n, i, &k);
        if (strcmp(k, "allow") && strcmp(k, "deny") && strcmp(k, "when") && strcmp(k, "id")) {
            vigil_diag_at(d, v,
                          "policy rule '%s': unknown key '%s' in entry %zu (allow, deny, "
                          "when, id)",
                          rule, k, index);
            ok = false;
        }
    }
    if (who->kind != VIGIL_CONF_MAP && !(who->kind == VIGIL_CONF_SCALAR && who->value[0] == '\0')) {
        vigil_diag_at(d, who, "policy rule '%s': %s: takes a map of subject, action, resource",
                      rule, allow ? "allow" : "deny");
        return false;
    }
    for (size_t i = 0; who->kind == VIGIL_CONF_MAP && i < vigil_conf_len(who); i++) {
        const char *k;
        const struct vigil_conf *v = vigil_conf_at(who, i, &k);
        int role = -1;
        for (int r = 0; r < ROLES; r++) {
            if (strcmp(k, role_names[r]) == 0) {
                role = r;
            }
        }
        if (role < 0) {
            vigil_diag_at(d, v, "policy rule '%s': '%s' is not subject, action or resource", rule,
                          k);
            ok = false;
            continue;
        }
        ok &= read_globs(e, role, v, rule, d);
    }
    const struct vigil_conf *when = vigil_conf_get(n, "when"), *id = vigil_conf_get(n, "id");
    if (when) {
        e->when = vigil_expr_compile_node(when, VIGIL_EXPR_BOOL, d);
        ok &= e->when != NULL;
    }
    const char *ids;
    if (id && vigil_conf_string(id, &ids) == 0) {
        e->id = strdup(ids);
    }
    return ok;
}

static int policy_compile(struct vigil_rule *rule, const struct vigil_conf *node,
                          struct vigil_diag *d)
{
    struct policy *p = calloc(1, sizeof *p);
    if (!p) {
        return -ENOMEM;
    }
    rule->impl = p;
    const char *s;
    static const char *const label_keys[ROLES] = {"subject_label", "action_label",
                                                  "resource_label"};
    for (int r = 0; r < ROLES; r++) {
        vigil_conf_string(vigil_conf_get(node, label_keys[r]), &s);
        p->label[r] = strdup(s);
        p->label_len[r] = strlen(s);
    }
    bool ok = true;
    const struct vigil_conf *dn = vigil_conf_get(node, "default");
    vigil_conf_string(dn, &s);
    if (strcmp(s, "allow") && strcmp(s, "deny")) {
        vigil_diag_at(d, dn, "policy rule '%s': default is deny or allow, not '%s'", rule->name, s);
        ok = false;
    }
    p->default_allow = strcmp(s, "allow") == 0;
    const struct vigil_conf *mn = vigil_conf_get(node, "mode");
    vigil_conf_string(mn, &s);
    if (strcmp(s, "enforce") && strcmp(s, "audit")) {
        vigil_diag_at(d, mn, "policy rule '%s': mode is enforce or audit, not '%s'", rule->name, s);
        ok = false;
    }
    p->audit = strcmp(s, "audit") == 0;
    int64_t hist = 1000;
    const struct vigil_conf *hn = vigil_conf_get(node, "history");
    vigil_conf_int(hn, &hist);
    if (hist < 0 || hist > 1000000) {
        vigil_diag_at(d, hn, "policy rule '%s': history is 0 to 1000000", rule->name);
        ok = false;
    }
    p->history_cap = hist > 0 ? (size_t)hist : 0;
    p->history = p->history_cap ? calloc(p->history_cap, sizeof *p->history) : NULL;
    const struct vigil_conf *list = vigil_conf_get(node, "rules");
    size_t n = list ? vigil_conf_len(list) : 0;
    p->entries = calloc(n ? n : 1, sizeof *p->entries);
    if (!p->entries || (p->history_cap && !p->history)) {
        policy_free(rule);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ok &= read_entry(&p->entries[p->n++], vigil_conf_at(list, i, NULL), i, rule->name, d);
    }
    if (!ok) {
        policy_free(rule);
        return VIGIL_ECONFIG;
    }
    return 0;
}

static bool role_matches(const struct entry *e, int role, const char *s, size_t n)
{
    if (!e->globs[role]) {
        return true;
    }
    for (size_t i = 0; i < e->nglobs[role]; i++) {
        /* vigil_glob_test, with the literal prefix compared inline */
        const struct vigil_glob *g = &e->shaped[role][i];
        if (n >= g->lit && vigil__eq_bytes(s, g->pattern, (uint32_t)g->lit) &&
            vigil_glob_rest(g->shape, g->pattern + g->lit, s + g->lit, n - g->lit)) {
            return true;
        }
    }
    return false;
}

static void copy_trunc(char *dst, size_t cap, const char *s, size_t n)
{
    n = n < cap - 1 ? n : cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static void policy_eval(struct vigil_rule *rule, const struct vigil_event_view *ev, uint64_t now,
                        struct vigil_emit *out)
{
    struct policy *p = rule->impl;
    const char *val[ROLES];
    size_t len[ROLES];
    for (int r = 0; r < ROLES; r++) {
        if (ev->fields && p->slot[r]) {
            const struct vigil_field *f = &ev->fields[p->slot[r]];
            bool str = f->t == VIGIL_FIELD_K_STR;
            val[r] = str ? f->u.str : "";
            len[r] = str ? f->len : 0;
            continue;
        }
        vigil_event_tree(ev);
        if (vigil_msgpack_str(vigil_msgpack_map_get(ev->labels, p->label[r], p->label_len[r]),
                              &val[r], &len[r]) != 0) {
            val[r] = "";
            len[r] = 0;
        }
    }
    int decided = -1;
    bool allow = p->default_allow;
    for (size_t i = 0; i < p->n && decided < 0; i++) {
        const struct entry *e = &p->entries[i];
        if (role_matches(e, SUBJECT, val[SUBJECT], len[SUBJECT]) &&
            role_matches(e, ACTION, val[ACTION], len[ACTION]) &&
            role_matches(e, RESOURCE, val[RESOURCE], len[RESOURCE]) &&
            (!e->when || vigil_expr_true(e->when, ev))) {
            decided = (int)i;
            allow = e->allow;
        }
    }
    if (allow) {
        vigil_count(&rule->stats.allowed_total, 1);
        return;
    }
    if (p->history_cap) {
        struct violation *h = &p->history[p->history_next];
        h->ts = now;
        h->entry = decided;
        copy_trunc(h->subject, sizeof h->subject, val[SUBJECT], len[SUBJECT]);
        copy_trunc(h->action, sizeof h->action, val[ACTION], len[ACTION]);
        copy_trunc(h->resource, sizeof h->resource, val[RESOURCE], len[RESOURCE]);
        p->history_next = (p->history_next + 1) % p->history_cap;
        if (p->history_len < p->history_cap) {
            p->history_len++;
            vigil_count(&rule->stats.history, 1);
        }
    }
    struct vigil_event_builder *b = vigil__verdict_begin(out, rule, "alert.violation", ev);
    const struct entry *e = decided >= 0 ? &p->entries[decided] : NULL;
    char why[160], msg[512];
    if (!e) {
        snprintf(why, sizeof why, "no entry allows it (default deny)");
    } else if (e->id) {
        snprintf(why, sizeof why, "denied by entry %d (%s)", decided, e->id);
    } else {
        snprintf(why, sizeof why, "denied by entry %d", decided);
    }
    snprintf(msg, sizeof msg, "%s: '%.*s' may not %.*s '%.*s': %s", rule->name, (int)len[SUBJECT],
             val[SUBJECT], (int)len[ACTION], val[ACTION], (int)len[RESOURCE], val[RESOURCE], why);
    vigil__verdict_message(out, rule, ev, msg);
    vigil_event_add_attr_str(b, "decision", "deny");
    if (e) {
        vigil_event_add_attr_i64(b, "entry", decided);
        if (e->id) {
            vigil_event_add_attr_str(b, "entry_id", e->id);
        }
    } else {
        vigil_event_add_attr_str(b, "entry", "default");
    }
    vigil_event_add_attr_bool(b, "enforced", !p->audit);
    for (int r = 0; r < ROLES; r++) {
        vigil_event_add_attr_str_n(b, role_names[r], val[r], len[r]);
    }
    uint64_t fp = vigil__hash(VIGIL_HASH_INIT, rule->name, strlen(rule->name) + 1);
    for (int r = 0; r < ROLES; r++) {
        fp = vigil__hash(vigil__hash(fp, val[r], len[r]), "", 1);
    }
    char fps[17];
    snprintf(fps, sizeof fps, "%016llx", (unsigned long long)fp);
    vigil_event_add_attr_str(b, "fingerprint", fps);
    vigil__verdict_emit(out);
    vigil_count(&rule->stats.violations_total, 1);
}

static void policy_bind(struct vigil_rule *rule, struct vigil_fields *f)
{
    struct policy *p = rule->impl;
    for (int r = 0; r < ROLES; r++) {
        p->slot[r] = vigil__fields_slot(f, VIGIL_FIELD_LABELS, p->label[r], p->label_len[r]);
    }
    for (size_t i = 0; i < p->n; i++) {
        vigil_expr_bind(p->entries[i].when, f);
    }
}

const struct vigil_rule_kind vigil__rule_policy = {
    .name = "policy",
    .options = policy_options,
    .compile = policy_compile,
    .eval = policy_eval,
    .free = policy_free,
    .bind = policy_bind,
};

/* kind: bound — the overhead bound. O(t) = a*H(t) + b*C(t) + c*M(t) must stay
 * at or below O_max = a*H_max + b*C_max + c*M_max, with the terms computed
 * by expressions over the event (e.g. H = values.host_cpu_pct). Stateful like
 * threshold (for, renotify, stale); verdicts carry overhead, overhead_max,
 * every term and its weighted share, and labels.dominant names the term
 * that contributes most. An event on which a term is missing is not judged.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "fields.h"

#define MAX_TERMS 8

struct term {
    char *name;
    struct vigil_expr *expr;
    uint16_t slot; /* the expression is this field slot's value (fields.h); 0: evaluate it */
    double weight, max;
};

struct bound {
    struct term terms[MAX_TERMS];
    size_t n;
    double overhead_max;
    struct vigil_alerts *alerts;
    /* Of the event being judged, for the verdict. */
    double value[MAX_TERMS];
    double overhead;
};

static const struct vigil_option bound_options[] = {
    {"terms", VIGIL_OPT_MAP, NULL, "term name -> expression (e.g. H: values.host_cpu_pct)"},
    {"weights", VIGIL_OPT_MAP, NULL, "term name -> weight (alpha, beta, gamma)"},
    {"max", VIGIL_OPT_MAP, NULL, "term name -> its maximum; O_max = sum of weight x max"},
    VIGIL_ALERT_OPTIONS,
    {NULL, 0, NULL, NULL},
};

static void bound_free(struct vigil_rule *rule)
{
    struct bound *b = rule->impl;
    if (!b) {
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        free(b->terms[i].name);
        vigil_expr_free(b->terms[i].expr);
    }
    vigil__alerts_free(b->alerts);
    free(b);
    rule->impl = NULL;
}

/* A number from map[key], reported at the map when missing. */
static bool number_for(const struct vigil_conf *map, const char *what, const char *key,
                       const char *rule, double *out, struct vigil_diag *d)
{
    const struct vigil_conf *n = vigil_conf_get(map, key);
    if (!n) {
        vigil_diag_at(d, map, "bound rule '%s': %s has no entry for term '%s'", rule, what, key);
        return false;
    }
    if (vigil_conf_double(n, out) != 0) {
        vigil_diag_at(d, n, "bound rule '%s': %s.%s must be a number", rule, what, key);
        return false;
    }
    return true;
}

static int bound_compile(struct vigil_rule *rule, const struct vigil_conf *node,
                         struct vigil_diag *d)
{
    struct bound *b = calloc(1, sizeof *b);
    if (!b) {
        return -ENOMEM;
    }
    rule->impl = b;
    const struct vigil_conf *terms = vigil_conf_get(node, "terms");
    const struct vigil_conf *weights = vigil_conf_get(node, "weights");
    const struct vigil_conf *max = vigil_conf_get(node, "max");
    if (!terms || !weights || !max) {
        vigil_diag_at(d, node, "bound rule '%s' needs terms, weights and max", rule->name);
        bound_free(rule);
        return VIGIL_ECONFIG;
    }
    size_t nt = vigil_conf_len(terms);
    if (nt == 0 || nt > MAX_TERMS) {
        vigil_diag_at(d, terms, "bound rule '%s': 1 to %d terms", rule->name, MAX_TERMS);
        bound_free(rule);
        return VIGIL_ECONFIG;
    }
    bool ok = true;
    for (size_t i = 0; i < nt; i++) {
        const char *name;
        const struct vigil_conf *e = vigil_conf_at(terms, i, &name);
        struct term *t = &b->terms[b->n++];
        t->name = strdup(name);
        t->expr = vigil_expr_compile_node(e, VIGIL_EXPR_NUMBER, d);
        ok &= t->name && t->expr &&
              number_for(weights, "weights", name, rule->name, &t->weight, d) &&
              number_for(max, "max", name, rule->name, &t->max, d);
        b->overhead_max += t->weight * t->max;
    }
    /* A weight or max for a term that does not exist is a typo. */
    const struct vigil_conf *maps[] = {weights, max};
    for (size_t m = 0; m < 2; m++) {
        for (size_t i = 0; i < vigil_conf_len(maps[m]); i++) {
            const char *k;
            const struct vigil_conf *v = vigil_conf_at(maps[m], i, &k);
            if (!vigil_conf_get(terms, k)) {
                vigil_diag_at(d, v, "bound rule '%s': '%s' is not one of its terms", rule->name, k);
                ok = false;
            }
        }
    }
    struct vigil_alert_params p;
    if (!ok || vigil__alert_params_read(node, &p, d) != 0) {
        bound_free(rule);
        return VIGIL_ECONFIG;
    }
    b->alerts = vigil__alerts_new(&p);
    if (!b->alerts) {
        vigil__alert_params_fini(&p);
        bound_free(rule);
        return -ENOMEM;
    }
    return 0;
}

static void bound_values(void *ctx, struct vigil_emit *out, const struct vigil_event_view *ev)
{
    (void)ev;
    struct bound *b = ctx;
    struct vigil_event_builder *eb = vigil__verdict_builder(out);
    vigil_event_add_value(eb, "overhead", b->overhead);
    vigil_event_add_value(eb, "overhead_max", b->overhead_max);
    size_t dom = 0;
    for (size_t i = 0; i < b->n; i++) {
        char key[96];
        snprintf(key, sizeof key, "term_%s", b->terms[i].name);
        vigil_event_add_value(eb, key, b->value[i]);
        snprintf(key, sizeof key, "weighted_%s", b->terms[i].name);
        vigil_event_add_value(eb, key, b->terms[i].weight * b->value[i]);
        if (b->terms[i].weight * b->value[i] > b->terms[dom].weight * b->value[dom]) {
            dom = i;
        }
    }
    vigil_event_add_label(eb, "dominant", b->terms[dom].name);
}

static void bound_eval(struct vigil_rule *rule, const struct vigil_event_view *ev, uint64_t now,
                       struct vigil_emit *out)
{
    struct bound *b = rule->impl;
    /* Summed in a register: through b->overhead, each term's add waited
     * for the previous one's store. */
    double overhead = 0;
    for (size_t i = 0; i < b->n; i++) {
        double x;
        const struct vigil_field *f =
            ev->fields && b->terms[i].slot ? &ev->fields[b->terms[i].slot] : NULL;
        if (f && f->t == VIGIL_FIELD_K_NUM && !isnan(f->u.num)) {
            x = f->u.num; /* vigil_expr_number's answer, without the call */
        } else if (f || !vigil_expr_number(b->terms[i].expr, ev, &x)) {
            /* A term is missing: this event cannot be judged, and changes
             * nothing (a firing series stays firing until judged below the
             * bound, or until it goes stale). */
            return;
        }
        b->value[i] = x;
        overhead += b->terms[i].weight * x;
    }
    b->overhead = overhead;
    bool above = b->overhead > b->overhead_max;
    vigil__alerts_observe(b->alerts, rule, ev, above, !above, now, out, bound_values, b);
}

static void bound_bind(struct vigil_rule *rule, struct vigil_fields *f)
{
    struct bound *b = rule->impl;
    for (size_t i = 0; i < b->n; i++) {
        vigil_expr_bind(b->terms[i].expr, f);
        b->terms[i].slot = vigil_expr_slot(b->terms[i].expr);
    }
}

static void bound_tick(struct vigil_rule *rule, uint64_t now, struct vigil_emit *out)
{
    struct bound *b = rule->impl;
    vigil__alerts_tick(b->alerts, rule, now, out);
}

static void bound_retire(struct vigil_rule *rule, uint64_t now, const char *reason,
                         struct vigil_emit *out)
{
    struct bound *b = rule->impl;
    vigil__alerts_retire(b->alerts, rule, now, reason, out);
}

const struct vigil_rule_kind vigil__rule_bound = {
    .name = "bound",
    .options = bound_options,
    .compile = bound_compile,
    .eval = bound_eval,
    .tick = bound_tick,
    .retire = bound_retire,
    .free = bound_free,
    .bind = bound_bind,
};

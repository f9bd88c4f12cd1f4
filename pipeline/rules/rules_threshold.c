/* kind: threshold: `expr` fires, `clear` (or expr turning false) resolves;
 * the series, `for`, renotify and staleness are the alert machine's
 * (alert.c).
 */
#include <errno.h>
#include <stdlib.h>

#include "alert.h"

struct threshold {
    struct vigil_expr *expr, *clear;
    struct vigil_alerts *alerts;
};

static const struct vigil_option threshold_options[] = {
    {"expr", VIGIL_OPT_STRING, NULL, "fires while true"},
    {"clear", VIGIL_OPT_STRING, NULL, "resolves only when true (default: when expr is false)"},
    VIGIL_ALERT_OPTIONS,
    {NULL, 0, NULL, NULL},
};

static void threshold_free(struct vigil_rule *rule)
{
    struct threshold *t = rule->impl;
    if (t) {
        vigil_expr_free(t->expr);
        vigil_expr_free(t->clear);
        vigil__alerts_free(t->alerts);
        free(t);
        rule->impl = NULL;
    }
}

static int threshold_compile(struct vigil_rule *rule, const struct vigil_conf *node,
                             struct vigil_diag *d)
{
    struct threshold *t = calloc(1, sizeof *t);
    if (!t) {
        return -ENOMEM;
    }
    rule->impl = t;
    const struct vigil_conf *e = vigil_conf_get(node, "expr");
    if (!e) {
        vigil_diag_at(d, node, "threshold rule '%s' needs 'expr'", rule->name);
        threshold_free(rule);
        return VIGIL_ECONFIG;
    }
    t->expr = vigil_expr_compile_node(e, VIGIL_EXPR_BOOL, d);
    const struct vigil_conf *c = vigil_conf_get(node, "clear");
    if (c) {
        t->clear = vigil_expr_compile_node(c, VIGIL_EXPR_BOOL, d);
    }
    struct vigil_alert_params p;
    if (!t->expr || (c && !t->clear) || vigil__alert_params_read(node, &p, d) != 0) {
        threshold_free(rule);
        return VIGIL_ECONFIG;
    }
    t->alerts = vigil__alerts_new(&p);
    if (!t->alerts) {
        vigil__alert_params_fini(&p);
        threshold_free(rule);
        return -ENOMEM;
    }
    return 0;
}

static void threshold_values(void *ctx, struct vigil_emit *out, const struct vigil_event_view *ev)
{
    struct threshold *t = ctx;
    const struct vigil_expr *used[] = {t->expr, t->clear};
    vigil__verdict_values_of(out, used, 2, ev);
}

static void threshold_eval(struct vigil_rule *rule, const struct vigil_event_view *ev, uint64_t now,
                           struct vigil_emit *out)
{
    struct threshold *t = rule->impl;
    bool active = vigil_expr_true(t->expr, ev);
    bool clear = t->clear ? vigil_expr_true(t->clear, ev) : !active;
    vigil__alerts_observe(t->alerts, rule, ev, active, clear, now, out, threshold_values, t);
}

static void threshold_bind(struct vigil_rule *rule, struct vigil_fields *f)
{
    struct threshold *t = rule->impl;
    vigil_expr_bind(t->expr, f);
    vigil_expr_bind(t->clear, f);
}

static void threshold_tick(struct vigil_rule *rule, uint64_t now, struct vigil_emit *out)
{
    struct threshold *t = rule->impl;
    vigil__alerts_tick(t->alerts, rule, now, out);
}

static void threshold_retire(struct vigil_rule *rule, uint64_t now, const char *reason,
                             struct vigil_emit *out)
{
    struct threshold *t = rule->impl;
    vigil__alerts_retire(t->alerts, rule, now, reason, out);
}

const struct vigil_rule_kind vigil__rule_threshold = {
    .name = "threshold",
    .options = threshold_options,
    .compile = threshold_compile,
    .eval = threshold_eval,
    .tick = threshold_tick,
    .retire = threshold_retire,
    .free = threshold_free,
    .bind = threshold_bind,
};

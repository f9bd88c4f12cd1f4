/* The stateful alert machine that kind: threshold and kind: bound share
 * (alert.c): per series, inactive -> pending (`for`) -> firing -> resolved,
 * with a stable fingerprint, renotify while firing and resolution of series
 * gone silent. A rule kind says when its condition holds; this does the rest.
 */
#ifndef VIGIL_ALERT_H
#define VIGIL_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rules_internal.h"

struct vigil_alerts; /* the series of one rule */

struct vigil_alert_params {
    uint64_t for_ns;      /* must hold this long before firing; 0 = at once */
    uint64_t renotify_ns; /* repeat alert.fired while firing; 0 = never */
    uint64_t stale_ns;    /* resolve a silent series after this; 0 = 5 x gap */
    char **group_by;      /* labels that make a series; NULL = all labels */
    size_t *group_len;    /* their lengths, so keys are built without strlen */
    size_t ngroup;
    size_t max_series;
};

/* Adds the rule's values to a verdict being built (threshold: the values its
 * expressions read; bound: the computed terms). */
typedef void (*vigil_alert_values_fn)(void *ctx, struct vigil_emit *out,
                                      const struct vigil_event_view *ev);

struct vigil_alerts *vigil__alerts_new(const struct vigil_alert_params *p);
void vigil__alerts_free(struct vigil_alerts *a);
/* One observation of a series: `active` = the firing condition holds,
 * `clear` = the resolving condition holds (the engine passes !active when
 * the rule has no clear expression). */
void vigil__alerts_observe(struct vigil_alerts *a, struct vigil_rule *rule,
                           const struct vigil_event_view *ev, bool active, bool clear, uint64_t now,
                           struct vigil_emit *out, vigil_alert_values_fn values, void *ctx);
void vigil__alerts_tick(struct vigil_alerts *a, struct vigil_rule *rule, uint64_t now,
                        struct vigil_emit *out);
/* Resolves every firing series (attrs.reason `reason`) and forgets every
 * series: a reload changed or removed the rule. */
void vigil__alerts_retire(struct vigil_alerts *a, struct vigil_rule *rule, uint64_t now,
                          const char *reason, struct vigil_emit *out);
/* Reads the common alert keys (for, renotify, stale, group_by, max_series)
 * from a rule's node. */
int vigil__alert_params_read(const struct vigil_conf *node, struct vigil_alert_params *p,
                             struct vigil_diag *d);
void vigil__alert_params_fini(struct vigil_alert_params *p);

/* Option table entries every stateful kind accepts. */
#define VIGIL_ALERT_OPTIONS                                                                        \
    {"for", VIGIL_OPT_DURATION, "0s", "condition must hold this long before firing"},              \
        {"renotify", VIGIL_OPT_DURATION, "0s", "repeat alert.fired this often while firing"},      \
        {"stale", VIGIL_OPT_DURATION, NULL, "resolve a series silent this long (default 5x gap)"}, \
        {"group_by", VIGIL_OPT_LIST, NULL, "labels that make a series (default: all)"},            \
    {                                                                                              \
        "max_series", VIGIL_OPT_INT, "100000", "series tracked at most; more are counted"          \
    }

#endif

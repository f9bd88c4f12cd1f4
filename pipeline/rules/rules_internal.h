/* Shared by the rules engine (rules.c) and its rule kinds (rules_threshold.c,
 * rules_bound.c, rules_policy.c, rules_isolation.c, rules_capacity.c): the rule object, the
 * kind table and verdict building. The stateful alert machine that
 * threshold and bound share is in alert.h.
 */
#ifndef VIGIL_RULES_INTERNAL_H
#define VIGIL_RULES_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "event.h"
#include "expr.h"
#include "rules.h"
#include "stats.h"

struct vigil_rule;
struct vigil_emit;   /* where verdicts go, with the engine's builder */
struct vigil_fields; /* the slots of the keys rules read (fields.h) */

/* A compiled message template: "{labels.vm} exits at {values.exits_per_s}/s". */
struct vigil_template;
struct vigil_template *vigil__template_compile(const struct vigil_conf *n, struct vigil_diag *d);
void vigil__template_free(struct vigil_template *t);

/* Per-rule counters reported in vigil.self. */
struct vigil_rule_stats {
    vigil_counter evaluated_total;  /* events judged */
    vigil_counter fired_total;      /* alert.fired published (renotify included) */
    vigil_counter resolved_total;   /* alert.resolved published */
    vigil_counter violations_total; /* alert.violation published */
    vigil_counter allowed_total;    /* policy: allowed decisions (not published) */
    vigil_counter series;           /* stateful: series pending or firing now */
    vigil_counter dropped_total;    /* series or pairs not tracked: past a bound */
    vigil_counter history;          /* policy: violations held in its history */
};

struct vigil_rule_kind {
    const char *name;
    /* Kind-specific keys; the engine adds name, kind, match, severity and
     * message, checks the rule's map against both, and fills defaults. */
    const struct vigil_option *options;
    /* Reads the kind's keys from `node` (already type-checked) into
     * rule->impl; semantic errors go to d. Returns 0 or negative. */
    int (*compile)(struct vigil_rule *rule, const struct vigil_conf *node, struct vigil_diag *d);
    void (*eval)(struct vigil_rule *rule, const struct vigil_event_view *ev, uint64_t now,
                 struct vigil_emit *out);
    void (*tick)(struct vigil_rule *rule, uint64_t now, struct vigil_emit *out); /* may be NULL */
    /* A reload changed or removed the rule: resolve what it has firing, with
     * attrs.reason `reason`. NULL for kinds that keep nothing firing. */
    void (*retire)(struct vigil_rule *rule, uint64_t now, const char *reason,
                   struct vigil_emit *out);
    void (*free)(struct vigil_rule *rule);
    /* Gives the rule's reads of labels and values their slots in f
     * (fields.h, vigil_expr_bind). A kind with bind reads the event only
     * through slots and what builds a lazily read view's tree itself (the
     * expression machine, vigil_event_get, verdicts, the alert machine, or
     * vigil_event_tree); one without gets the tree built before its eval. */
    void (*bind)(struct vigil_rule *rule, struct vigil_fields *f);
};

struct vigil_rule {
    char *name;
    const struct vigil_rule_kind *kind;
    char **match;
    size_t *match_len;
    size_t nmatch;
    char *severity;
    struct vigil_template *message; /* NULL: a default message */
    void *impl;
    struct vigil_rule_stats stats;
    char *def; /* the definition as canonical text: a reload keeps the rule if equal */
};

extern const struct vigil_rule_kind vigil__rule_threshold;
extern const struct vigil_rule_kind vigil__rule_bound;
extern const struct vigil_rule_kind vigil__rule_policy;
extern const struct vigil_rule_kind vigil__rule_isolation;
extern const struct vigil_rule_kind vigil__rule_capacity;

/* ---- Verdicts ------------------------------------------------------------ */

/* Starts a verdict of `rule` on `topic` ("alert.fired", ...), caused by
 * `ev`: labels = ev's labels + rule, severity, kind; attrs.source_topic =
 * ev's topic. Returns the builder to add values and attrs to; finish with
 * vigil__verdict_emit(). ev may be NULL (a series gone stale): then
 * `labels`, a msgpack map kept from an earlier event, gives the labels and
 * `host` the host. */
struct vigil_event_builder *vigil__verdict_begin(struct vigil_emit *out,
                                                 const struct vigil_rule *rule, const char *topic,
                                                 const struct vigil_event_view *ev);
struct vigil_event_builder *vigil__verdict_begin_stored(struct vigil_emit *out,
                                                        const struct vigil_rule *rule,
                                                        const char *topic, const char *host,
                                                        size_t host_len, const char *labels,
                                                        size_t labels_len);
/* Starts an event of the rule's own that is not a verdict (capacity.host):
 * labels.rule only, about `host` (which must outlive the emit). Finish with
 * vigil__verdict_emit(). */
struct vigil_event_builder *vigil__publish_begin(struct vigil_emit *out,
                                                 const struct vigil_rule *rule, const char *topic,
                                                 const char *host, size_t host_len);
/* Adds attrs.message rendered from the rule's template against ev (or
 * `fallback` when the rule has none or ev is NULL). */
void vigil__verdict_message(struct vigil_emit *out, const struct vigil_rule *rule,
                            const struct vigil_event_view *ev, const char *fallback);
/* Copies ev's values named by the "values.*" paths of the expressions
 * (NULL entries skipped), each once. */
void vigil__verdict_values_of(struct vigil_emit *out, const struct vigil_expr *const *exprs,
                              size_t n, const struct vigil_event_view *ev);
/* Packs and hands the verdict to the engine's callback. */
void vigil__verdict_emit(struct vigil_emit *out);
struct vigil_event_builder *vigil__verdict_builder(struct vigil_emit *out);

/* A 64-bit hash for fingerprints and hash tables (rules.c). */
uint64_t vigil__hash(uint64_t h, const void *data, size_t len);
#define VIGIL_HASH_INIT 1469598103934665603ull

#endif

/* The rules engine: the `rules:` list compiled at load time, then events in
 * and verdicts (alert.fired, alert.resolved, alert.violation) out. The
 * engine itself knows nothing of threads or sockets: time is passed in and
 * verdicts leave through a callback, so every rule kind can be tested
 * deterministically. rules_stage.c runs it on its own thread on the bus.
 */
#ifndef VIGIL_RULES_H
#define VIGIL_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "event.h"
#include "stats.h"

struct vigil_rules;

/* Receives one verdict: topic and msgpack body (valid during the call). */
typedef void (*vigil_verdict_fn)(void *arg, const char *topic, const char *body, size_t len);

/* Compiles the `rules:` list (NULL or empty: an engine with no rules). Every
 * problem goes to d at its file:line:col; returns NULL if there was any.
 * `source` is the envelope source of verdicts (e.g. "rules"). */
struct vigil_rules *vigil_rules_new(const struct vigil_conf *list, const char *source,
                                    struct vigil_diag *d);
void vigil_rules_free(struct vigil_rules *r);

/* The topic prefixes the rules match (their union, without duplicates), for
 * the engine's subscriptions. */
size_t vigil_rules_nprefixes(const struct vigil_rules *r);
const char *vigil_rules_prefix(const struct vigil_rules *r, size_t i);
size_t vigil_rules_count(const struct vigil_rules *r);

/* Reads a message the bus has checked for vigil_rules_eval, with the
 * answers of vigil_event_read_trusted, and fills the engine's slots of the
 * label and value keys its rules read; an event laid out as its topic's
 * last ones is read from their offsets (layout.h). Then judge it with the
 * same engine, on the same thread. Never for bytes from outside. */
int vigil_rules_read(struct vigil_rules *r, struct vigil_event_view *v, const char *topic,
                     size_t topic_len, const char *body, size_t body_len, msgpack_zone *zone,
                     const char **reason);

/* Judges one event with every rule whose match covers its topic. */
void vigil_rules_eval(struct vigil_rules *r, const struct vigil_event_view *ev, uint64_t now_ns,
                      vigil_verdict_fn emit, void *arg);

/* Time-driven work: stale series, renotify, `for` that elapsed without a new
 * event. Call about once a second. */
void vigil_rules_tick(struct vigil_rules *r, uint64_t now_ns, vigil_verdict_fn emit, void *arg);

/* A reload: `nw` (compiled from the new config, not yet judging) takes
 * over from `old`, by name, every rule whose definition did not change,
 * with its state (pending and firing series, isolation index, policy
 * history) and counters, and the verdicts' seq per host. old's rules that
 * changed or went are retired: what they have firing is resolved with
 * attrs.reason "changed" or "removed" (through emit). Afterwards old holds
 * only what is to be freed. Call on the thread that runs old. 0 or -ENOMEM
 * (then nothing moved). */
struct vigil_rules_reload {
    size_t kept, changed, removed, added;
};
int vigil_rules_adopt(struct vigil_rules *nw, struct vigil_rules *old, uint64_t now_ns,
                      vigil_verdict_fn emit, void *arg, struct vigil_rules_reload *counts);

/* Per-rule counters for vigil.self: calls fn once per rule with its name,
 * kind and a list of (key, value) pairs. */
typedef void (*vigil_rule_stats_fn)(void *arg, const char *rule, const char *kind,
                                    const char *const *keys, const uint64_t *values, size_t n);
void vigil_rules_stats(struct vigil_rules *r, vigil_rule_stats_fn fn, void *arg);

#endif

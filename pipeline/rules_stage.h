/* The rules engine as a stage of the daemon: its own thread, subscribed to
 * the rules' topic prefixes on the bus, pushing verdicts back onto it.
 */
#ifndef VIGIL_RULES_STAGE_H
#define VIGIL_RULES_STAGE_H

#include "rules.h"
#include "stats.h"

struct vigil_rules_stage;

/* Creates the sockets (connected to the bus's inproc endpoints) and loop;
 * does not take ownership of `rules`. NULL on failure. Main thread. */
struct vigil_rules_stage *vigil_rules_stage_new(void *zctx, struct vigil_rules *rules, int hwm);
/* Subscriptions it made: the bus waits for them before sources start. */
unsigned vigil_rules_stage_subscriptions(const struct vigil_rules_stage *s);
int vigil_rules_stage_start(struct vigil_rules_stage *s);
/* Judges what the bus already sent, hands every verdict to the bus (for up
 * to a few seconds), then joins the thread. */
void vigil_rules_stage_stop(struct vigil_rules_stage *s);
/* A reload: the stage's thread hands the state of every unchanged rule
 * over to `rules` (vigil_rules_adopt: changed and removed rules resolve what
 * they had firing), subscribes to the prefixes only the new rules judge,
 * unsubscribes from those only the old ones did, and judges with `rules`
 * from its next event on. Blocks until that is done (a loop turn). Returns
 * the old engine, for the caller to free, with the new subscriptions in
 * *new_subs; NULL when out of memory (the old engine stays in use). Main
 * thread; the stage keeps `rules` but does not own it. */
struct vigil_rules *vigil_rules_stage_swap(struct vigil_rules_stage *s, struct vigil_rules *rules,
                                           unsigned *new_subs, struct vigil_rules_reload *counts);
void vigil_rules_stage_free(struct vigil_rules_stage *s);
/* in_total: events judged; out_total: verdicts published; dropped_total:
 * verdicts lost (backlog full, or at stop); queue_depth: backlog. */
struct vigil_stage_stats *vigil_rules_stage_stats(struct vigil_rules_stage *s);

#endif

/* vigild and its service manager, through sd_notify(3): READY=1 once every
 * stage's loop runs, RELOADING=1 / READY=1 around SIGHUP, STOPPING=1, and
 * systemd's watchdog: a thread that sends WATCHDOG=1 only while every
 * watched thread's loop keeps turning (its beats counter, stats.h). Without
 * NOTIFY_SOCKET (not started by systemd) nothing is sent.
 */
#ifndef VIGIL_NOTIFY_H
#define VIGIL_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "stats.h"

struct vigil_notify;

/* Reads the watchdog's interval (WATCHDOG_USEC, for this process only:
 * WATCHDOG_PID). NULL when out of memory. Main thread. Caller frees. */
struct vigil_notify *vigil_notify_new(void);

/* Watches a thread: `beats` is the counter its loop bumps when it starts and
 * then at least every VIGIL_BEAT_MS; `name` is said in the logs. Both must
 * stay valid until vigil_notify_free(). Main thread, before the first
 * vigil_notify_tick(). 0, or -ENOMEM. */
int vigil_notify_watch(struct vigil_notify *n, const char *name, vigil_counter *beats);

/* A reload: forget every watched thread but the main one, before the
 * instances they belong to go; then watch the new set. */
void vigil_notify_unwatch_all(struct vigil_notify *n);

/* The main thread's loop calls this on every turn, at least every
 * VIGIL_BEAT_MS (it is watched too). Once every watched thread has beaten:
 * READY=1 with STATUS=status, and, when systemd's watchdog is on, the
 * watchdog thread starts. Returns true once READY=1 was sent. */
bool vigil_notify_tick(struct vigil_notify *n, const char *status);

/* Calls vigil_notify_tick() until it is ready or timeout_ms passed. 0, or
 * -ETIMEDOUT (the threads that never beat are logged; READY=1 then waits for
 * them, sent by a later vigil_notify_tick()). */
int vigil_notify_wait_ready(struct vigil_notify *n, const char *status, int timeout_ms);

/* SIGHUP: RELOADING=1 (with MONOTONIC_USEC, as systemd 253 wants it) before
 * the reload, READY=1 with STATUS=status after. Main thread. */
void vigil_notify_reloading(struct vigil_notify *n);
void vigil_notify_reloaded(struct vigil_notify *n, const char *status);

/* STOPPING=1. From now on the watchdog thread pings without looking at the
 * stages, which stop one by one (TimeoutStopSec bounds the stop). */
void vigil_notify_stopping(struct vigil_notify *n);

/* The watchdog's settings, for tests and logs: the interval systemd gave
 * (0: off), how long a thread may go without a beat before the pings stop. */
uint64_t vigil_notify_watchdog_ns(const struct vigil_notify *n);
uint64_t vigil_notify_stall_ns(const struct vigil_notify *n);

/* Stops and joins the watchdog thread. NULL is fine. Before the watched
 * threads' counters go away. */
void vigil_notify_free(struct vigil_notify *n);

#endif

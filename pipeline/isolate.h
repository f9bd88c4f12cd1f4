/* `isolate: process`: a source instance run in a plugin host, a child
 * process of its own (vigild re-executed in a hidden mode), supervised by
 * the instance's thread in vigild: its events relayed into the bus with the
 * same backpressure, its crashes, exits and hangs logged, counted and
 * restarted with backoff, without the rest of the daemon noticing.
 */
#ifndef VIGIL_ISOLATE_H
#define VIGIL_ISOLATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct vigil_instance;
struct vigil_isolate;

/* The page a plugin host and its supervisor share (a memfd, the child's
 * fd 3): the child writes, the parent reads. CLOCK_MONOTONIC is one clock
 * for both processes. */
struct vigil_isolate_shm {
    _Atomic uint64_t progress_ns;   /* the child's loop last turned: a beat, a
                                       collect() that began or ended, a send
                                       waiting on backpressure */
    _Atomic uint32_t ready;         /* init() succeeded; the loop runs */
    _Atomic uint64_t errors_total;  /* the instance's counters in the child, */
    _Atomic uint64_t dropped_total; /* for its vigil.self in vigild */
};

/* The hidden command line of a plugin host, after the program name:
 *   --plugin-host NAME -c CONFIG --ppid PID --endpoint ipc://... [-l LEVEL] [--check]
 * with the config's text on fd 4 and (not with --check) the shared page on fd 3. */
#define VIGIL_PLUGIN_HOST_FLAG "--plugin-host"

/* ---- Parent (plugin_host.c's hooks; the instance's own thread but new/free) ---- */

/* For an instance whose conf says isolate: process, after its plugin's keys
 * are checked. Problems go to d at the entry. NULL on failure. Main thread. */
struct vigil_isolate *vigil_isolate_new(struct vigil_instance *h, struct vigil_diag *d);
/* Runs the instance's init() in a plugin host with --check (the plugin sees
 * checking() true) and waits for it: its errors appear on stderr at their
 * FILE:LINE:COL; a failure adds one message to d. 0 or a negative code.
 * Main thread. */
int vigil_isolate_check(struct vigil_isolate *iso, struct vigil_diag *d);
/* Makes the private folder (mode 0700) and binds the PULL the child pushes
 * to; the PUSH to the bus is the instance's (plugin_host.c). 0 or negative. */
int vigil_isolate_connect(struct vigil_isolate *iso);
/* The instance thread's body: supervises children until a stop request
 * (the instance's stop_ev breaks its loop), then stops the child (SIGTERM,
 * SIGKILL after a grace), relays what it still sent, and returns. */
void vigil_isolate_run(struct vigil_isolate *iso);
/* Kills a child still running, closes the PULL, removes the folder. NULL
 * is fine. */
void vigil_isolate_free(struct vigil_isolate *iso);

/* ---- Child (isolate_child.c) ---------------------------------------------------- */

/* main() of vigild started with VIGIL_PLUGIN_HOST_FLAG as its first
 * argument. Returns the exit status. */
int vigil_plugin_host_main(int argc, char **argv);

/* Exit statuses of a plugin host that tell the supervisor why. */
#define VIGIL_HOST_EXIT_CONFIG 78 /* EX_CONFIG: the config or init() refused */
#define VIGIL_HOST_EXIT_USAGE 64  /* EX_USAGE: a wrong hidden command line */

#endif

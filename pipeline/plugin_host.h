/* The plugin host: loads a plugin (dlopen, with every refusal explained),
 * checks its config keys, gives it the host services table, and runs each
 * instance on its own thread with its own event_base and ZeroMQ socket:
 * a PUSH to the bus for sources, a SUB from the bus for sinks.
 */
#ifndef VIGIL_PLUGIN_HOST_H
#define VIGIL_PLUGIN_HOST_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "stats.h"
#include "vigil/plugin.h"

struct vigil_instance;

/* Loads <dir>/<name>.so and checks its descriptor: the file exists, dlopen
 * works, it exports `vigil_plugin`, its abi and size match this host, its
 * name is `name`, its kind is `kind`, it has the callbacks its kind needs.
 * With `trust`, first the file and every folder on its real path must be
 * owned by root or vigild's user and writable by nobody else (see
 * docs/plugins.md); the message then names the path, its mode, its owner and
 * what to run. Main thread (getpwuid_r, realpath). On success returns the dlopen handle and sets
 * *desc; on failure NULL with a message naming the .so path in err. Close with
 * vigil_plugin_close(). */
void *vigil_plugin_open(const char *dir, const char *name, enum vigil_plugin_kind kind, bool trust,
                        const struct vigil_plugin **desc, char *err, size_t errlen);
void vigil_plugin_close(void *handle);

/* Daemon-wide facts an instance needs. */
struct vigil_host_env {
    const char *host_name;
    const char *plugin_dir;
    /* plugin_trust: off: load plugins without checking who can write them
     * (vigil_plugin_open's trust). Zero, the default, checks. */
    bool plugin_trust_off;
    void *zctx; /* NULL under --check: publish() is refused */
    int hwm;
    size_t max_event_bytes;
    bool barriers; /* sinks also take the ingest's barriers (bus.h) */
    /* Where sources push: NULL for the bus (VIGIL_BUS_IN); in a plugin host
     * (isolate.h), its supervisor's ipc:// endpoint. */
    const char *bus_in;
    bool plugin_host; /* in a plugin host: run the instance here, never isolate it again */
};

/* Loads the instance's plugin and checks its own keys against the plugin's
 * option table; every problem goes to d at its file:line:col. Returns NULL
 * when the instance can't be set up. Main thread. */
struct vigil_instance *vigil_instance_new(const struct vigil_instance_conf *ic,
                                          enum vigil_plugin_kind kind,
                                          const struct vigil_host_env *env, struct vigil_diag *d);

/* Runs the plugin's init(); conf_error() reports go to d. 0 or negative. */
int vigil_instance_init(struct vigil_instance *h, struct vigil_diag *d);

/* Creates the instance's socket (needs env->zctx): a PUSH connected to the
 * bus for sources; a SUB subscribed to every `match` prefix for sinks.
 * Returns the number of subscriptions made (sinks), 0 (sources), or a
 * negative code. */
int vigil_instance_connect(struct vigil_instance *h);

/* Starts the instance's thread. */
int vigil_instance_start(struct vigil_instance *h);

/* Asks the instance to stop and joins its thread. Sources stop collecting;
 * sinks first read everything already sent to them, deliver what they can
 * within a few seconds (at once if the destination is failing), and leave
 * the rest in their spool for the next start. */
void vigil_instance_stop(struct vigil_instance *h);
/* Only asks (any thread); vigil_instance_stop() then joins. */
void vigil_instance_stop_request(struct vigil_instance *h);
/* Reload of a sink whose config changed, its name kept (daemon.c): the
 * successor, before vigil_instance_connect(), learns the token it is to
 * wait for; it runs, ignoring every event before the vigil.handover event
 * that carries it (bus.h), and stops reading there (the bus holds what
 * follows). The predecessor, once the successor's subscriptions reached the
 * bus, is told the token; reading the handover event it stops reading, lets
 * a write in flight finish, puts its queue into its spool and ends its
 * thread (vigil_instance_join()). Once it is freed (the spool closed),
 * vigil_instance_resume() has the successor open the spool and go on:
 * the predecessor's undelivered events first, then its own. */
#define VIGIL_TOKEN_LEN 16
void vigil_instance_takeover(struct vigil_instance *h, const char *token);
void vigil_instance_handover(struct vigil_instance *h, const char *token);
void vigil_instance_resume(struct vigil_instance *h);
/* Waits for the thread to end by itself (after a handover). */
void vigil_instance_join(struct vigil_instance *h);
/* The counter the sink passes barriers on (vigil_instance_barrier) is the
 * daemon's `c`, which a successor shares, so the ingest's view of it
 * survives a reload. Before start. */
void vigil_instance_share_barrier(struct vigil_instance *h, vigil_counter *c);

/* SIGHUP: a sink's plugin reopens its files (its reopen(), if it has one). */
void vigil_instance_reopen(struct vigil_instance *h);

/* Runs fini() if init succeeded and it has not run, closes the socket and
 * the plugin. NULL is fine. */
void vigil_instance_free(struct vigil_instance *h);

const char *vigil_instance_component(const struct vigil_instance *h); /* "source:gen/gen" */
const char *vigil_instance_plugin_name(const struct vigil_instance *h);
const char *vigil_instance_name(const struct vigil_instance *h);
/* The config entry it was made from (in the config that made it). */
const struct vigil_instance_conf *vigil_instance_conf(const struct vigil_instance *h);
struct vigil_stage_stats *vigil_instance_stats(struct vigil_instance *h);
/* A sink's barrier progress: the highest barrier serial all of whose
 * earlier events it delivered or put on disk. Any thread. */
vigil_counter *vigil_instance_barrier(struct vigil_instance *h);
/* The plugin's own counters (api->counter_new), in the order it made them.
 * Any thread once the instance runs. */
void vigil_instance_each_counter(struct vigil_instance *h,
                                 void (*fn)(void *arg, const char *name, vigil_counter *value),
                                 void *arg);

/* The services table the host gives to plugins (for tests that drive a
 * plugin directly). */
extern const struct vigil_api vigil_host_api;

#endif

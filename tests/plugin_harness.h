/* Runs one source plugin instance the way vigild does (the real host, its
 * own thread, a real in-process bus) and hands the test the events it
 * publishes, decoded. For plugin tests: tests/test_<plugin>.c.
 */
#ifndef VIGIL_TEST_PLUGIN_HARNESS_H
#define VIGIL_TEST_PLUGIN_HARNESS_H

#include <stddef.h>

#include "config.h"
#include "event.h"

struct ph;

/* `instance` is the YAML of one entry under sources:, e.g.
 *   "plugin: system\ninterval: 200ms\nper_cpu: true\n"
 * (unindented; the harness indents it). Subscribes to `prefix` (NULL: all).
 * Returns NULL and prints the diagnostics if the instance does not start. */
struct ph *ph_start(const char *instance, const char *prefix);

/* The next event, decoded; valid until the next call. NULL after timeout_ms
 * without one. */
const struct vigil_event_view *ph_next(struct ph *p, int timeout_ms);

/* Stops the instance and the bus, frees everything. NULL is fine. */
void ph_stop(struct ph *p);
/* The value of the plugin's own counter `name` (api->counter_new), as the
 * vigil.self reporter reads it; UINT64_MAX when it has none of that name. */
uint64_t ph_counter(struct ph *p, const char *name);

/* Checks an instance as `vigild --check` would (config, plugin load, option
 * check, init, fini). Returns the number of errors; their messages, each
 * "ph.yaml:LINE:COL: ...", go to d (initialised by the caller). The entry
 * starts on line 3 of ph.yaml, its first key at column 5. */
size_t ph_check(const char *instance, struct vigil_diag *d);

/* Runs a shell command made from fmt; its exit status, -1 when it did not
 * exit normally. For tests that make namespaces, links, nft rules. */
int ph_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Fails the test, printing every message of d, unless one of them starts
 * with `want` (e.g. "ph.yaml:4:13: key 'x' of plugin 'y' must be"). */
void ph_expect_msg(const struct vigil_diag *d, const char *want);

/* Typed readers of a decoded event by path; they fail the test when absent. */
double ph_value(const struct vigil_event_view *v, const char *path);
/* Copies a string field into buf (NUL-terminated); NULL when absent. */
const char *ph_str(const struct vigil_event_view *v, const char *path, char *buf, size_t cap);

#endif

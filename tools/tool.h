/* What vigil-tap and vigil-pub share: finding the bus endpoint from -e or
 * from a vigil config (-c), and the process's signal-driven stop flag.
 */
#ifndef VIGIL_TOOL_H
#define VIGIL_TOOL_H

#include <signal.h>
#include <stdbool.h>

/* Resolves the endpoint: `endpoint` if given, else the config's
 * bus.subscribe (want_subscribe) or bus.publish, else the default. Returns a
 * malloc'd string, or NULL after printing why (prog names the tool). */
char *vigil_tool_endpoint(const char *prog, const char *config, const char *endpoint,
                          bool want_subscribe);

/* --server-key FILE --key FILE: makes sock a CURVE client of the central
 * whose public key is in server_key, with this side's secret key file (its
 * public key derived). Both NULL: nothing to do. Returns 0, or -1 after
 * printing why (a missing file, a secret key others may read). */
int vigil_tool_curve(const char *prog, void *sock, const char *server_key, const char *key);

/* Set by SIGINT/SIGTERM once vigil_tool_catch_signals() ran. */
extern volatile sig_atomic_t vigil_tool_stop;
void vigil_tool_catch_signals(void);

#endif

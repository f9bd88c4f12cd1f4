/* Shared by the command-line tools (see tool.h). */
#include "tool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

volatile sig_atomic_t vigil_tool_stop;

static void on_signal(int sig)
{
    (void)sig;
    vigil_tool_stop = 1;
}

void vigil_tool_catch_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

char *vigil_tool_endpoint(const char *prog, const char *config, const char *endpoint,
                          bool want_subscribe)
{
    if (endpoint) {
        return strdup(endpoint);
    }
    if (!config) {
        return strdup(want_subscribe ? VIGIL_DEFAULT_SUBSCRIBE : VIGIL_DEFAULT_PUBLISH);
    }
    struct vigil_diag d;
    vigil_diag_init(&d);
    struct vigil_config *c = vigil_config_load(config, &d);
    char *out = NULL;
    if (c && d.count == 0) {
        out = strdup(want_subscribe ? c->bus.subscribe : c->bus.publish);
    } else {
        vigil_diag_print(&d, stderr);
        fprintf(stderr, "%s: cannot read the bus endpoint from %s\n", prog, config);
    }
    vigil_config_free(c);
    vigil_diag_fini(&d);
    return out;
}

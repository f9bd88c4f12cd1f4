/* Shared by the command-line tools (see tool.h). */
#include "tool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "config.h"
#include "curve/keys.h"

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

int vigil_tool_curve(const char *prog, void *sock, const char *server_key, const char *key)
{
    if (!server_key && !key) {
        return 0;
    }
    if (!server_key || !key) {
        fprintf(stderr,
                "%s: CURVE needs both --server-key (the central's vigil.pub) and --key "
                "(your vigil.key)\n",
                prog);
        return -1;
    }
    char server[VIGIL_KEY_Z85_SIZE], err[512];
    struct vigil_keypair kp;
    if (vigil_key_read_public(server_key, server, err, sizeof err) != 0 ||
        vigil_key_read_secret(key, NULL, &kp, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return -1;
    }
    int rc = zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server, VIGIL_KEY_Z85_LEN) |
             zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, kp.public_z85, VIGIL_KEY_Z85_LEN) |
             zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp.secret_z85, VIGIL_KEY_Z85_LEN);
    vigil_keypair_clear(&kp);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot use CURVE: %s\n", prog, zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

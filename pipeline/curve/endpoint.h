/* Whether a ZeroMQ endpoint is reachable from the network, the question
 * behind "no plaintext by accident": header-only, so the config checker,
 * the daemon and plugins (which never link the daemon) ask it the same way.
 */
#ifndef VIGIL_CURVE_ENDPOINT_H
#define VIGIL_CURVE_ENDPOINT_H

#include <stdbool.h>
#include <string.h>

/* True for tcp://HOST:PORT whose HOST is not a loopback address (127.*,
 * localhost, [::1], the lo interface). */
static inline bool vigil_endpoint_is_remote(const char *endpoint)
{
    if (strncmp(endpoint, "tcp://", 6) != 0) {
        return false;
    }
    const char *h = endpoint + 6;
    static const char *const loopback[] = {"127.", "localhost:", "[::1]:", "lo:", NULL};
    for (size_t i = 0; loopback[i]; i++) {
        if (strncmp(h, loopback[i], strlen(loopback[i])) == 0) {
            return false;
        }
    }
    return true;
}

#endif

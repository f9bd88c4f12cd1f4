/* The ZAP handler of a daemon whose bus has CURVE (bus.curve): libzmq asks
 * it, once per incoming CURVE connection on any socket of the context,
 * whether the client's public key may come in. It answers from the
 * authorized_keys file, names the client by its key's name (the messages'
 * User-Id, which the ingest endpoint uses as the agent's name), and logs and
 * counts whom it refuses.
 */
#ifndef VIGIL_ZAP_H
#define VIGIL_ZAP_H

#include <stddef.h>

#include "stats.h"

struct vigil_zap_stats {
    vigil_counter accepted_total;     /* CURVE handshakes let in */
    vigil_counter auth_refused_total; /* refused: a key not in authorized_keys */
};

struct vigil_zap;

/* Loads authorized_keys and binds the handler (inproc://zeromq.zap.01) in
 * zctx; call it before any CURVE socket binds, so no connection arrives
 * before it. NULL with a message (FILE:LINE:COL for a bad line) in err. */
struct vigil_zap *vigil_zap_new(void *zctx, const char *authorized_keys, char *err, size_t errlen);
/* Starts the handler's thread; 0 or a negative code. */
int vigil_zap_start(struct vigil_zap *z);
/* Re-reads authorized_keys (SIGHUP). On an error the keys in use stay and
 * err says why; 0 or a negative code. Any thread. */
int vigil_zap_reload(struct vigil_zap *z, char *err, size_t errlen);
/* The number of keys in use. Any thread. */
size_t vigil_zap_keys(struct vigil_zap *z);
void vigil_zap_stop(struct vigil_zap *z);
void vigil_zap_free(struct vigil_zap *z); /* NULL is fine */
struct vigil_zap_stats *vigil_zap_stats(struct vigil_zap *z);

#endif

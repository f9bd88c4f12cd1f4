/* The ZAP handler (zap.h): a REP socket on inproc://zeromq.zap.01 in its own
 * thread, answering ZAP 1.0 requests (RFC 27) from the authorized_keys in
 * use, which a reload swaps under a lock.
 */
#include "zap.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "curve/keys.h"
#include "log.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define POLL_MS 100
#define FRAMES 7 /* version, request id, domain, address, identity, mechanism, key */

struct vigil_zap {
    void *rep;
    char *path;
    pthread_t thread;
    bool started;
    _Atomic bool stopping;
    struct vigil_zap_stats stats;
    pthread_mutex_t lock;
    struct vigil_authkeys *keys; /* under lock */
    struct vigil_ratelimit refused_rl;
};

struct vigil_zap *vigil_zap_new(void *zctx, const char *authorized_keys, char *err, size_t errlen)
{
    struct vigil_zap *z = calloc(1, sizeof *z);
    if (!z || !(z->path = strdup(authorized_keys))) {
        free(z);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&z->lock, NULL);
    z->refused_rl = (struct vigil_ratelimit){.window_ns = 60000000000ull, .burst = 10};
    if (vigil_authkeys_load(z->path, &z->keys, err, errlen) != 0) {
        vigil_zap_free(z);
        return NULL;
    }
    z->rep = zmq_socket(zctx, ZMQ_REP);
    int linger = 0;
    if (!z->rep || zmq_setsockopt(z->rep, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(z->rep, ZAP_ENDPOINT) != 0) {
        snprintf(err, errlen, "cannot start the CURVE authenticator (%s): %s", ZAP_ENDPOINT,
                 zmq_strerror(zmq_errno()));
        vigil_zap_free(z);
        return NULL;
    }
    return z;
}

/* Answers one request: 200 with the key's name as User-Id, or 400. */
static void answer(struct vigil_zap *z)
{
    zmq_msg_t part[FRAMES];
    size_t n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->rep, 0) == -1) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < FRAMES) {
            part[n++] = m;
        } else {
            zmq_msg_close(&m);
        }
    }
    if (n < 2) {
        for (size_t i = 0; i < n; i++) {
            zmq_msg_close(&part[i]);
        }
        return; /* not a ZAP request: a REP must still answer, but cannot */
    }
    char name[VIGIL_AUTHKEY_NAME_MAX + 1] = "";
    bool ok = false;
    if (n == FRAMES && zmq_msg_size(&part[5]) == 5 &&
        memcmp(zmq_msg_data(&part[5]), "CURVE", 5) == 0 &&
        zmq_msg_size(&part[6]) == VIGIL_KEY_BIN_LEN) {
        pthread_mutex_lock(&z->lock);
        const char *found = vigil_authkeys_find(z->keys, zmq_msg_data(&part[6]));
        if (found) {
            snprintf(name, sizeof name, "%s", found);
            ok = true;
        }
        pthread_mutex_unlock(&z->lock);
    }
    if (ok) {
        vigil_count(&z->stats.accepted_total, 1);
    } else {
        vigil_count(&z->stats.auth_refused_total, 1);
        char key[VIGIL_KEY_Z85_SIZE] = "(none)";
        if (n == FRAMES && zmq_msg_size(&part[6]) == VIGIL_KEY_BIN_LEN) {
            zmq_z85_encode(key, zmq_msg_data(&part[6]), VIGIL_KEY_BIN_LEN);
        }
        char addr[64] = "?";
        if (n > 3) {
            snprintf(addr, sizeof addr, "%.*s", (int)zmq_msg_size(&part[3]),
                     (const char *)zmq_msg_data(&part[3]));
        }
        uint64_t suppressed;
        if (vigil_ratelimit_ok(&z->refused_rl, vigil_mono_ns(), &suppressed)) {
            vigil_log(VIGIL_LOG_WARN, "curve",
                      "refused a client from %s with public key %s: not in %s (%llu more "
                      "refusals not logged)",
                      addr, key, z->path, (unsigned long long)suppressed);
        }
    }
    /* Reply: version, request id, status code, status text, user id,
     * metadata. */
    zmq_send(z->rep, "1.0", 3, ZMQ_SNDMORE);
    zmq_msg_send(&part[1], z->rep, ZMQ_SNDMORE); /* hands the request id over */
    zmq_send(z->rep, ok ? "200" : "400", 3, ZMQ_SNDMORE);
    const char *text = ok ? "OK" : "key not authorized";
    zmq_send(z->rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(z->rep, name, strlen(name), ZMQ_SNDMORE);
    zmq_send(z->rep, "", 0, 0);
    for (size_t i = 0; i < n; i++) {
        if (i != 1) {
            zmq_msg_close(&part[i]);
        }
    }
}

static void *zap_main(void *arg)
{
    struct vigil_zap *z = arg;
    zmq_pollitem_t item = {.socket = z->rep, .events = ZMQ_POLLIN};
    while (!atomic_load(&z->stopping)) {
        if (zmq_poll(&item, 1, POLL_MS) > 0) {
            answer(z);
        }
    }
    return NULL;
}

int vigil_zap_start(struct vigil_zap *z)
{
    int rc = pthread_create(&z->thread, NULL, zap_main, z);
    if (rc != 0) {
        return -rc;
    }
    pthread_setname_np(z->thread, "vigil-zap");
    z->started = true;
    return 0;
}

int vigil_zap_reload(struct vigil_zap *z, char *err, size_t errlen)
{
    struct vigil_authkeys *keys;
    int rc = vigil_authkeys_load(z->path, &keys, err, errlen);
    if (rc != 0) {
        return rc;
    }
    pthread_mutex_lock(&z->lock);
    struct vigil_authkeys *old = z->keys;
    z->keys = keys;
    pthread_mutex_unlock(&z->lock);
    vigil_authkeys_free(old);
    return 0;
}

size_t vigil_zap_keys(struct vigil_zap *z)
{
    pthread_mutex_lock(&z->lock);
    size_t n = vigil_authkeys_count(z->keys);
    pthread_mutex_unlock(&z->lock);
    return n;
}

void vigil_zap_stop(struct vigil_zap *z)
{
    if (z && z->started) {
        atomic_store(&z->stopping, true);
        pthread_join(z->thread, NULL);
        z->started = false;
    }
}

void vigil_zap_free(struct vigil_zap *z)
{
    if (!z) {
        return;
    }
    vigil_zap_stop(z);
    if (z->rep) {
        zmq_close(z->rep);
    }
    vigil_authkeys_free(z->keys);
    pthread_mutex_destroy(&z->lock);
    free(z->path);
    free(z);
}

struct vigil_zap_stats *vigil_zap_stats(struct vigil_zap *z)
{
    return &z->stats;
}

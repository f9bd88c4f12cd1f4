/* The bus probe (--probe): a SUB socket on the bus's subscribe endpoint that
 * times the bench's events as the bus republishes them (receive time - ts),
 * so an end-to-end latency can be split into "up to the bus" and "after it"
 * (rules, the sink, its file, the reader). An outside subscriber that falls
 * behind loses events (counted by the bus as external_dropped_total), so
 * the probe samples rather than counts.
 */
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "bench.h"
#include "log.h"

static void *probe_main(void *arg)
{
    struct bench_probe *p = arg;
    static const char key_ts[] = "\xa2ts\xcf";
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    while (!atomic_load(&p->stop)) {
        if (zmq_msg_recv(&topic, p->sock, 0) < 0) {
            continue; /* the receive timeout: look at stop */
        }
        if (!zmq_msg_more(&topic) || zmq_msg_recv(&body, p->sock, 0) < 0) {
            continue;
        }
        uint64_t now = vigil_now_ns();
        const unsigned char *b = zmq_msg_data(&body);
        size_t n = zmq_msg_size(&body);
        /* The builder packs ts first: look only at the first bytes. */
        const unsigned char *k = memmem(b, n < 24 ? n : 24, key_ts, sizeof key_ts - 1);
        if (!k || k + sizeof key_ts - 1 + 8 > b + n) {
            continue;
        }
        uint64_t ts = 0;
        for (int i = 0; i < 8; i++) {
            ts = ts << 8 | k[sizeof key_ts - 1 + i];
        }
        if (ts >= p->win_start_real && ts < p->win_end_real) {
            bench_hist_add(&p->lat, now > ts ? now - ts : 0);
        }
    }
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    return NULL;
}

int bench_probe_start(struct bench_probe *p, void *zctx, const char *endpoint)
{
    bench_hist_init(&p->lat);
    p->sock = zmq_socket(zctx, ZMQ_SUB);
    if (!p->sock) {
        return -1;
    }
    int linger = 0, hwm = 100000, timeout = 100;
    zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(p->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(p->sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(p->sock, ZMQ_SUBSCRIBE, BENCH_TOPIC, sizeof BENCH_TOPIC - 1);
    if (zmq_connect(p->sock, endpoint) != 0 ||
        pthread_create(&p->thread, NULL, probe_main, p) != 0) {
        zmq_close(p->sock);
        p->sock = NULL;
        return -1;
    }
    p->started = true;
    return 0;
}

void bench_probe_stop(struct bench_probe *p)
{
    if (p->started) {
        atomic_store(&p->stop, true);
        pthread_join(p->thread, NULL);
        p->started = false;
    }
    if (p->sock) {
        zmq_close(p->sock);
        p->sock = NULL;
    }
}

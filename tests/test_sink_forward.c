/* The forward sink inside a real vigild agent (a `gen` source) against a
 * small real central: a ROUTER thread in this process on 127.0.0.1 that
 * speaks pipeline/fleet/wire.h and acks as each test says (OK, REFUSED,
 * RETRY with a delay, never, garbage), publishing like the central does:
 * in arrival order, dropping events it already has by (host, source, seq).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <unistd.h>
#include <zmq.h>
#include <cmocka.h> /* after setjmp.h, stdarg.h and stddef.h, which it needs */

#include "harness.h"
#include "vigil/plugin.h"
#include "wire.h"

enum peer_mode { P_OK, P_REFUSE, P_RETRY, P_SILENT, P_GARBAGE };

#define REFUSE_EVERY 10 /* P_REFUSE refuses the events whose seq is a multiple */
#define RETRY_AFTER_MS 300

struct peer {
    pthread_t th;
    bool running;
    void *ctx, *sock;
    int port;
    atomic_int mode;
    atomic_bool stop;
    int retry_left; /* P_RETRY: batches answered RETRY before it answers OK */
    bool holding;   /* P_RETRY: RETRY every batch until one has VIGIL_WIRE_RESEND */

    pthread_mutex_t mu; /* the record below */
    char source[256], host[256];
    uint64_t last_seq;    /* the newest published (or refused) seq */
    size_t published;     /* events published, each once, in order */
    size_t dups, refused; /* dropped as already had; refused as malformed */
    size_t gaps;          /* an event arrived past a missing one: loss or reorder */
    size_t batches, retried, garbage;
    size_t held, resends; /* RETRY'd as later than a RETRY'd one; with VIGIL_WIRE_RESEND */
    uint64_t last_id;
    size_t id_regressions; /* a batch id (without the flag) not above the one before */
};

struct fx {
    struct vd v;
    struct peer peer;
};

/* ---- The central ------------------------------------------------------------------- */

/* host, source and seq of one event body. */
static bool event_key(const char *body, size_t len, char *host, char *source, uint64_t *seq)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 2048);
    msgpack_object o;
    bool ok = msgpack_unpack(body, len, NULL, &zone, &o) == MSGPACK_UNPACK_SUCCESS &&
              o.type == MSGPACK_OBJECT_MAP;
    int found = 0;
    for (uint32_t i = 0; ok && i < o.via.map.size; i++) {
        msgpack_object k = o.via.map.ptr[i].key, v = o.via.map.ptr[i].val;
        if (k.type != MSGPACK_OBJECT_STR) {
            continue;
        }
        if (k.via.str.size == 3 && !memcmp(k.via.str.ptr, "seq", 3) &&
            v.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            *seq = v.via.u64;
            found |= 1;
        } else if (v.type == MSGPACK_OBJECT_STR && v.via.str.size < 255 &&
                   ((k.via.str.size == 4 && !memcmp(k.via.str.ptr, "host", 4)) ||
                    (k.via.str.size == 6 && !memcmp(k.via.str.ptr, "source", 6)))) {
            char *to = k.via.str.size == 4 ? host : source;
            memcpy(to, v.via.str.ptr, v.via.str.size);
            to[v.via.str.size] = '\0';
            found |= k.via.str.size == 4 ? 2 : 4;
        }
    }
    msgpack_zone_destroy(&zone);
    return ok && found == 7;
}

static void send_ack(struct peer *p, zmq_msg_t *rid, const struct vigil_wire_ack_buf *ab)
{
    zmq_send(p->sock, zmq_msg_data(rid), zmq_msg_size(rid), ZMQ_SNDMORE);
    zmq_send(p->sock, ab->head, VIGIL_WIRE_HEAD_LEN, ZMQ_SNDMORE);
    zmq_send(p->sock, ab->data, ab->len, 0);
}

/* One batch: [routing id][head][events]. */
static void handle_batch(struct peer *p, struct vigil_wire_ack_buf *ab)
{
    zmq_msg_t f[3];
    int n = 0;
    for (bool more = true; more; n++) {
        zmq_msg_t tmp;
        zmq_msg_init(n < 3 ? &f[n] : &tmp);
        zmq_msg_recv(n < 3 ? &f[n] : &tmp, p->sock, 0);
        more = zmq_msg_more(n < 3 ? &f[n] : &tmp);
        if (n >= 3) {
            zmq_msg_close(&tmp);
        }
    }
    assert_int_equal(n, 3); /* routing id and the two frames of docs/fleet.md */
    struct vigil_wire_batch_view v;
    struct vigil_wire_error err;
    int rc = vigil_wire_batch_decode(&v, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]),
                                     zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), 0, &err);
    assert_int_equal(rc, 0);
    int mode = atomic_load(&p->mode);
    pthread_mutex_lock(&p->mu);
    p->batches++;
    uint64_t id = v.id & ~VIGIL_WIRE_RESEND;
    if (id <= p->last_id) {
        p->id_regressions++;
    }
    p->last_id = id;
    if (v.id & VIGIL_WIRE_RESEND) {
        p->resends++;
        p->holding = false;
    }
    /* As a central that sheds: after a RETRY, the batches already on the
     * wire behind it are answered RETRY too, until the agent resends. */
    if (mode == P_RETRY && (p->holding || p->retry_left > 0)) {
        if (p->holding) {
            p->held++;
        } else {
            p->retry_left--;
            p->retried++;
            p->holding = true;
        }
        pthread_mutex_unlock(&p->mu);
        vigil_wire_ack_retry(ab, v.id, RETRY_AFTER_MS);
        send_ack(p, &f[0], ab);
        goto out;
    }
    uint32_t refused[VIGIL_WIRE_MAX_EVENTS / 64];
    size_t n_refused = 0, i = 0;
    struct vigil_wire_event e;
    while (vigil_wire_batch_next(&v, &e)) {
        char host[256], source[256];
        uint64_t seq = 0;
        assert_true(event_key(e.body, e.body_len, host, source, &seq));
        if (!p->source[0]) {
            snprintf(p->source, sizeof p->source, "%s", source);
            snprintf(p->host, sizeof p->host, "%s", host);
        }
        assert_string_equal(source, p->source);
        assert_string_equal(host, p->host);
        if (seq <= p->last_seq) {
            p->dups++;
        } else {
            if (seq != p->last_seq + 1) {
                fprintf(stderr, "peer: seq %llu after %llu\n", (unsigned long long)seq,
                        (unsigned long long)p->last_seq);
                p->gaps++;
            }
            p->last_seq = seq;
            if (mode == P_REFUSE && seq % REFUSE_EVERY == 0) {
                refused[n_refused++] = (uint32_t)i;
                p->refused++;
            } else {
                p->published++;
            }
        }
        i++;
    }
    pthread_mutex_unlock(&p->mu);
    if (mode == P_GARBAGE) {
        /* Three kinds in turn: a bad magic, an id not on the wire, 3 frames. */
        size_t k = p->garbage++ % 3;
        vigil_wire_ack_ok(ab, k == 1 ? v.id + 1000000 : v.id);
        if (k == 0) {
            memcpy(ab->head, "XXXX", 4);
        }
        if (k == 2) {
            zmq_send(p->sock, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), ZMQ_SNDMORE);
            zmq_send(p->sock, ab->head, VIGIL_WIRE_HEAD_LEN, ZMQ_SNDMORE);
            zmq_send(p->sock, ab->data, ab->len, ZMQ_SNDMORE);
            zmq_send(p->sock, "", 0, 0);
        } else {
            send_ack(p, &f[0], ab);
        }
    } else {
        if (n_refused) {
            vigil_wire_ack_refused(ab, v.id, v.count, refused, n_refused);
        } else {
            vigil_wire_ack_ok(ab, v.id);
        }
        send_ack(p, &f[0], ab);
    }
out:
    for (int j = 0; j < 3; j++) {
        zmq_msg_close(&f[j]);
    }
}

static void *peer_main(void *arg)
{
    struct peer *p = arg;
    struct vigil_wire_ack_buf ab;
    vigil_wire_ack_buf_init(&ab);
    while (!atomic_load(&p->stop)) {
        if (atomic_load(&p->mode) == P_SILENT) {
            usleep(10000); /* a hung central: batches wait in its socket */
            continue;
        }
        zmq_pollitem_t it = {.socket = p->sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 20) == 1) {
            handle_batch(p, &ab);
        }
    }
    vigil_wire_ack_buf_fini(&ab);
    return NULL;
}

/* Binds the ROUTER on 127.0.0.1:port (0: any free port) and starts it. */
static void peer_start(struct peer *p, int port, enum peer_mode mode)
{
    if (!p->ctx) {
        p->ctx = zmq_ctx_new();
        pthread_mutex_init(&p->mu, NULL);
    }
    p->sock = zmq_socket(p->ctx, ZMQ_ROUTER);
    assert_non_null(p->sock);
    int zero = 0;
    zmq_setsockopt(p->sock, ZMQ_LINGER, &zero, sizeof zero);
    char ep[64];
    snprintf(ep, sizeof ep, port ? "tcp://127.0.0.1:%d" : "tcp://127.0.0.1:*", port);
    assert_int_equal(zmq_bind(p->sock, ep), 0);
    char last[64];
    size_t len = sizeof last;
    zmq_getsockopt(p->sock, ZMQ_LAST_ENDPOINT, last, &len);
    p->port = atoi(strrchr(last, ':') + 1);
    atomic_store(&p->mode, mode);
    atomic_store(&p->stop, false);
    assert_int_equal(pthread_create(&p->th, NULL, peer_main, p), 0);
    p->running = true;
}

static void peer_stop(struct peer *p)
{
    if (p->running) {
        atomic_store(&p->stop, true);
        pthread_join(p->th, NULL);
        p->running = false;
    }
    if (p->sock) {
        zmq_close(p->sock);
        p->sock = NULL;
    }
}

/* A free port for a peer that starts later. */
static int free_port(struct peer *p)
{
    peer_start(p, 0, P_OK);
    int port = p->port;
    peer_stop(p);
    return port;
}

static size_t peer_get(struct peer *p, const size_t *field)
{
    pthread_mutex_lock(&p->mu);
    size_t v = *field;
    pthread_mutex_unlock(&p->mu);
    return v;
}

/* Waits until the peer has published (or refused) every seq up to n. */
static bool peer_wait(struct peer *p, uint64_t n, int timeout_s)
{
    double deadline = now_s() + timeout_s;
    while (now_s() < deadline) {
        pthread_mutex_lock(&p->mu);
        bool done = p->last_seq >= n;
        pthread_mutex_unlock(&p->mu);
        if (done) {
            return true;
        }
        sleep_ms(20);
    }
    fprintf(stderr, "peer: last seq %llu of %llu\n", (unsigned long long)p->last_seq,
            (unsigned long long)n);
    return false;
}

/* ---- Fixture and vigild -------------------------------------------------------------- */

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    *state = f;
    return f ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    vd_cleanup(&f->v);
    peer_stop(&f->peer);
    if (f->peer.ctx) {
        zmq_ctx_term(f->peer.ctx);
        pthread_mutex_destroy(&f->peer.mu);
    }
    free(f);
    return 0;
}

static const char *self_path(const struct fx *f)
{
    static char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/self.jsonl", f->v.dir);
    return p;
}

static double self_now(const struct fx *f, const char *key)
{
    double x;
    return self_value(self_path(f), "fw", key, &x) ? x : -1;
}

/* An agent: gen at `rate` for `count` events, forwarded to the peer's port;
 * `extra` goes into the forward sink's mapping (indented 4). */
static void agent_start(struct fx *f, int rate, int count, int port, const char *extra)
{
    char body[4096];
    snprintf(
        body, sizeof body,
        "sources:\n"
        "  - { plugin: gen, name: g, rate: %d, count: %d }\n"
        "sinks:\n"
        "  - plugin: forward\n"
        "    name: fw\n"
        "    match: gen.\n"
        "    endpoint: tcp://127.0.0.1:%d\n"
        "    timeout: 300ms\n"
        "    retry: { min_backoff: 50ms, max_backoff: 300ms }\n"
        "%s"
        "  - { plugin: test_capture, name: self, match: vigil.self, path: @DIR@/self.jsonl }\n",
        rate, count, port, extra ? extra : "");
    assert_int_equal(vd_setup(&f->v, "100ms", body), 0);
    if (vd_start(&f->v) != 0) {
        vd_dump_log(&f->v);
        fail_msg("vigild did not start");
    }
}

static void agent_stop(struct fx *f)
{
    int rc = vd_stop(&f->v, 10, NULL);
    if (rc != 0) {
        vd_dump_log(&f->v);
    }
    assert_int_equal(rc, 0);
}

/* Every seq once, in order, under strictly increasing batch ids. */
static void assert_in_order(struct fx *f)
{
    struct peer *p = &f->peer;
    assert_int_equal(peer_get(p, &p->gaps), 0);
    assert_int_equal(peer_get(p, &p->id_regressions), 0);
    assert_string_equal(p->source, "g");
}

/* ---- Tests ----------------------------------------------------------------------------- */

/* A central that acks everything: all events once, in order, counted. */
static void test_ok_in_order(void **state)
{
    struct fx *f = *state;
    struct peer *p = &f->peer;
    peer_start(p, 0, P_OK);
    agent_start(f, 5000, 5000, p->port, NULL);
    assert_true(peer_wait(p, 5000, 20));
    assert_in_order(f);
    assert_int_equal(peer_get(p, &p->published), 5000);
    assert_true(wait_self_value(self_path(f), "fw", "out_total", 5000, 10));
    assert_true(wait_self_value(self_path(f), "fw", "acked_total", 5000, 5));
    assert_true(self_now(f, "failed_total") == 0);
    assert_true(self_now(f, "rtt_us") > 0);
    assert_true(self_now(f, "inflight") >= 0);
    /* Several batches per write(): more batches than the 512-event writes. */
    assert_true(peer_get(p, &p->batches) > 5000 / 512);
    agent_stop(f);
}

/* REFUSED indices fail for good (counted), the rest is delivered. */
static void test_refused_counted_failed(void **state)
{
    struct fx *f = *state;
    struct peer *p = &f->peer;
    peer_start(p, 0, P_REFUSE);
    agent_start(f, 3000, 3000, p->port, NULL);
    assert_true(peer_wait(p, 3000, 20));
    assert_in_order(f);
    assert_int_equal(peer_get(p, &p->refused), 3000 / REFUSE_EVERY);
    assert_int_equal(peer_get(p, &p->published), 3000 - 3000 / REFUSE_EVERY);
    assert_true(wait_self_value(self_path(f), "fw", "failed_total", 300, 10));
    assert_true(wait_self_value(self_path(f), "fw", "out_total", 2700, 10));
    assert_true(self_now(f, "failed_total") == 300);
    assert_true(self_now(f, "refused_total") == 300);
    assert_true(self_now(f, "dropped_total") == 0);
    agent_stop(f);
}

/* RETRY five times with a delay: nothing published, all retried, then
 * delivered, in order. The sink sets the RESEND flag on its first batch
 * after each RETRY, and the peer, as a central that sheds, answers RETRY to
 * the batches behind a RETRY'd one until then: so order holds with several
 * batches on the wire too. */
static void retry_then_ok(struct fx *f, int inflight, int count)
{
    struct peer *p = &f->peer;
    char extra[64];
    snprintf(extra, sizeof extra, "    inflight: %d\n", inflight);
    p->retry_left = 5;
    peer_start(p, 0, P_RETRY);
    agent_start(f, count, count, p->port, extra);
    assert_true(peer_wait(p, (uint64_t)count, 20));
    assert_in_order(f);
    assert_int_equal(peer_get(p, &p->retried), 5);
    assert_int_equal(peer_get(p, &p->resends), 5); /* the first batch after each RETRY */
    if (inflight == 1) {
        assert_int_equal(peer_get(p, &p->held), 0);
    }
    assert_int_equal(peer_get(p, &p->published), count);
    assert_true(wait_self_value(self_path(f), "fw", "out_total", count, 10));
    assert_true(self_now(f, "retried_total") >= 5);
    agent_stop(f);
}

static void test_retry_after(void **state)
{
    retry_then_ok(*state, 1, 2000);
}

static void test_retry_inflight_in_order(void **state)
{
    retry_then_ok(*state, 4, 4000);
}

/* A central that never answers: batches time out, the events are retried,
 * and all arrive in order once it answers again. */
static void test_silent_then_answers(void **state)
{
    struct fx *f = *state;
    struct peer *p = &f->peer;
    peer_start(p, 0, P_SILENT);
    agent_start(f, 1000, 2000, p->port, NULL);
    assert_true(wait_self_value(self_path(f), "fw", "timeouts_total", 3, 10));
    assert_true(self_now(f, "out_total") <= 0);
    atomic_store(&p->mode, P_OK);
    assert_true(peer_wait(p, 2000, 20));
    assert_in_order(f);
    assert_int_equal(peer_get(p, &p->published), 2000);
    assert_true(wait_self_value(self_path(f), "fw", "out_total", 2000, 10));
    assert_true(wait_self_value(self_path(f), "fw", "spool_events", 0, 5));
    /* The stale batches it read late were acked late. */
    assert_true(wait_self_value(self_path(f), "fw", "late_acks_total", 1, 5));
    agent_stop(f);
}

/* Acks that are garbage or answer no batch on the wire are ignored and
 * counted; the batches time out and go again; nothing is lost. */
static void test_garbage_acks(void **state)
{
    struct fx *f = *state;
    struct peer *p = &f->peer;
    peer_start(p, 0, P_GARBAGE);
    agent_start(f, 1000, 1000, p->port, NULL);
    assert_true(wait_self_value(self_path(f), "fw", "bad_acks_total", 2, 10));
    assert_true(wait_self_value(self_path(f), "fw", "late_acks_total", 1, 10));
    assert_true(wait_self_value(self_path(f), "fw", "timeouts_total", 1, 10));
    atomic_store(&p->mode, P_OK);
    assert_true(peer_wait(p, 1000, 20));
    assert_in_order(f);
    assert_true(wait_self_value(self_path(f), "fw", "out_total", 1000, 10));
    agent_stop(f);
}

/* No central at all: the spool grows; it drains in order once one listens. */
static void test_no_peer_spool_drains(void **state)
{
    struct fx *f = *state;
    struct peer *p = &f->peer;
    int port = free_port(p);
    agent_start(f, 1000, 1500, port, NULL);
    assert_true(wait_self_value(self_path(f), "fw", "spool_events", 500, 10));
    assert_true(self_now(f, "out_total") <= 0);
    peer_start(p, port, P_OK);
    assert_true(peer_wait(p, 1500, 20));
    assert_in_order(f);
    assert_int_equal(peer_get(p, &p->published), 1500);
    assert_true(wait_self_value(self_path(f), "fw", "out_total", 1500, 10));
    double deadline = now_s() + 5;
    while (self_now(f, "spool_events") != 0 && now_s() < deadline) {
        sleep_ms(50);
    }
    assert_true(self_now(f, "spool_events") == 0);
    agent_stop(f);
}

/* Config errors name the file, line and column (vigild --check). */
static void test_config_errors(void **state)
{
    struct fx *f = *state;
    static const struct bad_conf cases[] = {
        /* Line 7 is the first of the body (the harness writes six). */
        {"sinks:\n  - plugin: forward\n    timeout: 1s\n", ":8:5: ", "needs 'endpoint'"},
        {"sinks:\n  - plugin: forward\n    endpoint: udp://127.0.0.1:7070\n",
         ":9:15: ", "tcp://HOST:PORT or ipc://PATH"},
        {"sinks:\n  - plugin: forward\n    endpoint: tcp://127.0.0.1\n", ":9:15: ", "HOST:PORT"},
        {"sinks:\n  - plugin: forward\n    endpoint: tcp://127.0.0.1:7070\n    inflight: 0\n",
         ":10:15: ", "inflight must be 1..64"},
        {"sinks:\n  - plugin: forward\n    endpoint: tcp://127.0.0.1:7070\n    timeout: 0s\n",
         ":10:14: ", "at least 1ms"},
        /* CURVE wants both keys; a missing key file is named. */
        {"sinks:\n  - plugin: forward\n    endpoint: tcp://127.0.0.1:7070\n"
         "    server_key: /etc/vigil/central.pub\n",
         ":10:17: ", "CURVE needs both server_key"},
        {"sinks:\n  - plugin: forward\n    endpoint: tcp://127.0.0.1:7070\n"
         "    server_key: /nonexistent/central.pub\n    key: /nonexistent/vigil.key\n",
         ":10:17: ", "server_key: /nonexistent/central.pub"},
        /* Off this host without keys: refused unless it says plaintext. */
        {"sinks:\n  - plugin: forward\n    endpoint: tcp://192.0.2.1:7070\n",
         ":9:15: ", "is off this host: give server_key and key"},
    };
    assert_true(vd_check_refuses_all(&f->v, cases, sizeof cases / sizeof cases[0]));
    /* A good one passes --check without connecting anywhere. */
    vd_cleanup(&f->v);
    assert_int_equal(vd_setup(&f->v, NULL,
                              "sinks:\n  - plugin: forward\n    endpoint: tcp://127.0.0.1:9\n"
                              "    inflight: 64\n    hwm: 100\n"),
                     0);
    char *const argv[] = {VIGIL_BUILD_DIR "/vigild", "--check", "-c", f->v.cfg, NULL};
    char *err = NULL;
    int rc = run(argv, NULL, 0, NULL, &err, 30);
    if (rc != 0) {
        fail_msg("--check: %s", err);
    }
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ok_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_counted_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_inflight_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_then_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_peer_spool_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    /* FORWARD_TEST=test_garbage_acks runs one test (a cmocka glob). */
    if (getenv("FORWARD_TEST")) {
        cmocka_set_test_filter(getenv("FORWARD_TEST"));
    }
    return cmocka_run_group_tests_name("sink_forward", tests, NULL, NULL);
}

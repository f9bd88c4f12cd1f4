/* The central's ingest endpoint (bus.ingest) in the real vigild: a DEALER
 * in the test speaks the forward protocol (pipeline/fleet/wire.h) to it,
 * and a capture sink shows what reached the central's bus. A sink that is
 * stuck on purpose makes the central shed load.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>
#include <cmocka.h>

#include "event.h"
#include "fleet/wire.h"
#include "harness.h"

struct fx {
    struct vd v;
    char ingest[128];
    void *zctx, *dealer;
    struct vigil_wire_batch batch;
    uint64_t next_id;
};

/* An agent's socket, connected to the central's ingest endpoint. */
static void *dealer_new(struct fx *f)
{
    void *d = zmq_socket(f->zctx, ZMQ_DEALER);
    int linger = 0, timeout = 10000;
    zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(d, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    if (zmq_connect(d, f->ingest) != 0) {
        zmq_close(d);
        return NULL;
    }
    return d;
}

/* A central with these bus keys (besides ingest) and sinks. */
static int setup_with(void **state, const char *bus_extra, const char *sinks)
{
    struct fx *f = calloc(1, sizeof *f);
    *state = f;
    static int n;
    snprintf(f->ingest, sizeof f->ingest, "ipc:///tmp/vigil-ingest-%d-%d", (int)getpid(), n++);
    char bus_keys[256];
    snprintf(bus_keys, sizeof bus_keys, "  ingest: %s\n%s", f->ingest, bus_extra);
    if (vd_setup_bus(&f->v, "200ms", bus_keys, sinks) != 0 || vd_start(&f->v) != 0) {
        vd_dump_log(&f->v);
        return -1;
    }
    f->zctx = zmq_ctx_new();
    f->dealer = dealer_new(f);
    vigil_wire_batch_init(&f->batch, 0);
    f->next_id = 1000;
    return f->dealer ? 0 : -1;
}

static int setup(void **state)
{
    return setup_with(state, "",
                      "sinks:\n"
                      "  - plugin: test_capture\n"
                      "    match: [fleet., vigil.self]\n"
                      "    path: @DIR@/out.jsonl\n");
}

/* The events go to a sink that is stuck while @DIR@/block exists (the
 * barriers behind them wait, and then the bus fills up); vigil.self goes
 * to a sink of its own. */
#define STUCK_SINKS                                                                                \
    "sinks:\n"                                                                                     \
    "  - plugin: test_capture\n"                                                                   \
    "    name: stuck\n"                                                                            \
    "    match: fleet.\n"                                                                          \
    "    path: @DIR@/out.jsonl\n"                                                                  \
    "    block_while: @DIR@/block\n"                                                               \
    "  - { plugin: test_capture, name: self, match: vigil.self, path: @DIR@/self.jsonl }\n"

/* With a small bus (100 events per socket): a stuck sink fills it after
 * a few hundred events. */
static int setup_stuck_small_bus(void **state)
{
    return setup_with(state, "  hwm: 100\n", STUCK_SINKS);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (!f) {
        return 0;
    }
    unlink(vd_path(&f->v, "block"));
    if (f->dealer) {
        zmq_close(f->dealer);
    }
    if (f->zctx) {
        zmq_ctx_term(f->zctx);
    }
    vigil_wire_batch_fini(&f->batch);
    vd_cleanup(&f->v);
    unlink(f->ingest + strlen("ipc://"));
    free(f);
    return 0;
}

/* Adds one event of source `src` with this seq and ts to the batch. */
static void add_event(struct fx *f, const char *src, uint64_t seq, uint64_t ts)
{
    struct vigil_event_builder b;
    vigil_event_builder_init(&b);
    vigil_event_begin(&b, "fleet.test");
    vigil_event_set_ts(&b, ts);
    vigil_event_add_label(&b, "k", "v");
    const char *body;
    size_t len;
    assert_int_equal(vigil_event_finish(&b, "agent-host", src, seq, &body, &len), 0);
    assert_int_equal(vigil_wire_batch_add(&f->batch, "fleet.test", 10, body, len), 0);
    vigil_event_builder_fini(&b);
}

static void send_frames(struct fx *f, const void *head, size_t hl, const void *body, size_t bl)
{
    assert_int_equal(zmq_send(f->dealer, head, hl, ZMQ_SNDMORE), (int)hl);
    assert_int_equal(zmq_send(f->dealer, body, bl, 0), (int)bl);
}

/* Receives one ack; returns its status and fills *a (pointing into buf). */
static void recv_ack(struct fx *f, struct vigil_wire_ack *a, unsigned char *buf, size_t cap,
                     size_t n_events)
{
    unsigned char head[64];
    int hl = zmq_recv(f->dealer, head, sizeof head, 0);
    assert_true(hl > 0);
    int more;
    size_t ms = sizeof more;
    zmq_getsockopt(f->dealer, ZMQ_RCVMORE, &more, &ms);
    assert_true(more);
    int bl = zmq_recv(f->dealer, buf, cap, 0);
    assert_true(bl >= 0);
    struct vigil_wire_error err;
    if (vigil_wire_ack_decode(a, head, (size_t)hl, buf, (size_t)bl, n_events, &err) != 0) {
        fail_msg("the ack does not decode: %s", err.why);
    }
}

static uint64_t send_batch(struct fx *f)
{
    uint64_t id = f->next_id;
    send_frames(f, f->batch.head, VIGIL_WIRE_HEAD_LEN, f->batch.data, f->batch.len);
    return id;
}

static void begin(struct fx *f)
{
    assert_int_equal(vigil_wire_batch_begin(&f->batch, ++f->next_id), 0);
}

/* A batch that says the agent resends after a RETRY. */
static void begin_resend(struct fx *f)
{
    assert_int_equal(vigil_wire_batch_begin(&f->batch, ++f->next_id | VIGIL_WIRE_RESEND), 0);
}

/* Receives the ack of batch `id` and checks its status (RETRY: and that it
 * asks for the central's 200 ms). */
static void expect_ack(struct fx *f, uint64_t id, enum vigil_wire_status status)
{
    struct vigil_wire_ack a;
    unsigned char buf[1024];
    recv_ack(f, &a, buf, sizeof buf, VIGIL_WIRE_MAX_EVENTS);
    if (a.id != id || a.status != status) {
        fail_msg("ack for batch %llx status %d, expected batch %llx status %d",
                 (unsigned long long)a.id, (int)a.status, (unsigned long long)id, (int)status);
    }
    if (status == VIGIL_WIRE_RETRY) {
        assert_int_equal(a.retry_after_ms, 200);
    }
}

static void touch(const char *path)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
}

/* A batch is acked once its events are in the bus; the same events sent
 * again (the ack was lost) are acked and not published twice; a producer
 * that restarted (seq again from 1, a later ts) is published. */
static void test_acked_once_and_resends_recognised(void **state)
{
    struct fx *f = *state;
    const uint64_t t0 = 1700000000000000000ull;
    begin(f);
    for (uint64_t s = 1; s <= 3; s++) {
        add_event(f, "g", s, t0 + s);
    }
    uint64_t id = send_batch(f);
    struct vigil_wire_ack a;
    unsigned char buf[1024];
    recv_ack(f, &a, buf, sizeof buf, 3);
    assert_int_equal(a.id, id);
    assert_int_equal(a.status, VIGIL_WIRE_OK);
    const char *out = vd_path(&f->v, "out.jsonl");
    assert_true(wait_lines(out, "\"topic\":\"fleet.test\"", 3, 10));

    /* Resent under a new id, with one new event after them. */
    begin(f);
    for (uint64_t s = 1; s <= 4; s++) {
        add_event(f, "g", s, t0 + s);
    }
    id = send_batch(f);
    recv_ack(f, &a, buf, sizeof buf, 4);
    assert_int_equal(a.id, id);
    assert_int_equal(a.status, VIGIL_WIRE_OK);
    assert_true(wait_lines(out, "\"topic\":\"fleet.test\"", 4, 10));

    /* The producer restarted: seq 1 again, observed later. */
    begin(f);
    add_event(f, "g", 1, t0 + 100);
    send_batch(f);
    recv_ack(f, &a, buf, sizeof buf, 1);
    assert_int_equal(a.status, VIGIL_WIRE_OK);
    assert_true(wait_lines(out, "\"topic\":\"fleet.test\"", 5, 10));

    /* Counted per agent in vigil.self: 3 duplicates, 5 published. */
    assert_true(wait_lines(out, "\"duplicates_total\":3,", 1, 10));
    assert_true(wait_lines(out, "\"stage\":\"agent\"", 1, 10));
    sleep_ms(500);
    assert_int_equal(count_lines(out, "\"topic\":\"fleet.test\""), 5);
    char *all = slurp(out);
    assert_non_null(strstr(all, "\"events_total\":5,"));
    free(all);
}

/* Events of one source may come out of order (a batch lost with a broken
 * connection, the next one already through): the late ones are published,
 * not taken for duplicates; sent again, all of them are recognised. */
static void test_late_events_published_once(void **state)
{
    struct fx *f = *state;
    const uint64_t t0 = 1700000000000000000ull;
    static const uint64_t order[][2] = {{1, 2}, {5, 6}, {3, 4}, {3, 6}};
    struct vigil_wire_ack a;
    unsigned char buf[1024];
    for (size_t i = 0; i < 4; i++) {
        begin(f);
        for (uint64_t s = order[i][0]; s <= order[i][1]; s++) {
            add_event(f, "o", s, t0 + s);
        }
        send_batch(f);
        recv_ack(f, &a, buf, sizeof buf, order[i][1] - order[i][0] + 1);
        assert_int_equal(a.status, VIGIL_WIRE_OK);
    }
    const char *out = vd_path(&f->v, "out.jsonl");
    assert_true(wait_lines(out, "\"source\":\"o\"", 6, 10));
    assert_true(wait_lines(out, "\"duplicates_total\":4,", 1, 10));
    sleep_ms(300);
    assert_int_equal(count_lines(out, "\"source\":\"o\""), 6);
    for (int s = 1; s <= 6; s++) {
        char needle[64];
        snprintf(needle, sizeof needle, "\"source\":\"o\",\"seq\":%d,", s);
        if (count_lines(out, needle) != 1) {
            fail_msg("seq %d of source o is there %zu times", s, count_lines(out, needle));
        }
    }
    /* Nothing was lost or restarted: the bus does not count the jump and the
     * late events of an ingested source as such. */
    double x = -1;
    assert_true(self_value_of(out, "\"stage\":\"bus\"", "lost_total", &x));
    assert_true(x == 0);
    assert_true(self_value_of(out, "\"stage\":\"bus\"", "seq_resets_total", &x));
    assert_true(x == 0);
}

/* A malformed event is refused by index, the others published; a batch
 * that cannot be read is refused whole, saying why. */
static void test_refusals(void **state)
{
    struct fx *f = *state;
    begin(f);
    add_event(f, "r", 1, 1700000000000000001ull);
    assert_int_equal(vigil_wire_batch_add(&f->batch, "fleet.test", 10, "\xc1\xc1", 2), 0);
    add_event(f, "r", 2, 1700000000000000002ull);
    uint64_t id = send_batch(f);
    struct vigil_wire_ack a;
    unsigned char buf[1024];
    recv_ack(f, &a, buf, sizeof buf, 3);
    assert_int_equal(a.id, id);
    assert_int_equal(a.status, VIGIL_WIRE_REFUSED);
    assert_int_equal(a.n_refused, 1);
    assert_int_equal(vigil_wire_ack_refused_at(&a, 0), 1);
    const char *out = vd_path(&f->v, "out.jsonl");
    assert_true(wait_lines(out, "\"source\":\"r\"", 2, 10));
    assert_true(wait_lines(out, "\"refused_total\":1,", 1, 10));

    /* A header that is not the protocol's: ERROR, bad header, id 0. */
    send_frames(f, "HELLO", 5, "x", 1);
    recv_ack(f, &a, buf, sizeof buf, 0);
    assert_int_equal(a.status, VIGIL_WIRE_ERROR);
    assert_int_equal(a.reason, VIGIL_WIRE_BAD_HEADER);
    assert_int_equal(a.id, 0);

    /* A damaged record: ERROR, bad record, the batch's own id. */
    begin(f);
    add_event(f, "r", 3, 1700000000000000003ull);
    id = f->next_id;
    send_frames(f, f->batch.head, VIGIL_WIRE_HEAD_LEN, f->batch.data, f->batch.len - 1);
    recv_ack(f, &a, buf, sizeof buf, 0);
    assert_int_equal(a.status, VIGIL_WIRE_ERROR);
    assert_int_equal(a.reason, VIGIL_WIRE_BAD_RECORD);
    assert_int_equal(a.id, id);

    /* Three frames: ERROR, bad frames. */
    begin(f);
    id = f->next_id;
    assert_int_equal(zmq_send(f->dealer, f->batch.head, VIGIL_WIRE_HEAD_LEN, ZMQ_SNDMORE),
                     VIGIL_WIRE_HEAD_LEN);
    assert_int_equal(zmq_send(f->dealer, "", 0, ZMQ_SNDMORE), 0);
    assert_int_equal(zmq_send(f->dealer, "", 0, 0), 0);
    recv_ack(f, &a, buf, sizeof buf, 0);
    assert_int_equal(a.status, VIGIL_WIRE_ERROR);
    assert_int_equal(a.reason, VIGIL_WIRE_BAD_FRAMES);
    assert_int_equal(a.id, id);

    /* None of those published anything, and the daemon is still there. */
    sleep_ms(300);
    assert_int_equal(count_lines(out, "\"source\":\"r\""), 2);
    assert_true(wait_lines(out, "\"bad_batches_total\":3,", 1, 10));
    assert_int_equal(vd_stop(&f->v, 10, NULL), 0);
}

/* The last vigil.self line of an agent, and of the ingest. */
#define AGENT "\"stage\":\"agent\""
#define INGEST "\"stage\":\"ingest\""

/* `connected` is 1 while the agent holds a connection that sent a batch:
 * 0 soon after it closes, 1 again when it comes back; with two
 * connections, 0 only once both are closed. */
static void test_connected(void **state)
{
    struct fx *f = *state;
    const char *out = vd_path(&f->v, "out.jsonl");
    const uint64_t t0 = 1700000000000000000ull;
    begin(f);
    add_event(f, "c", 1, t0 + 1);
    expect_ack(f, send_batch(f), VIGIL_WIRE_OK);
    assert_true(wait_self_equal(out, AGENT, "connected", 1, 10));

    zmq_close(f->dealer);
    f->dealer = NULL;
    assert_true(wait_self_equal(out, AGENT, "connected", 0, 10));

    f->dealer = dealer_new(f);
    assert_non_null(f->dealer);
    begin(f);
    add_event(f, "c", 2, t0 + 2);
    expect_ack(f, send_batch(f), VIGIL_WIRE_OK);
    assert_true(wait_self_equal(out, AGENT, "connected", 1, 10));

    /* A second connection of the same agent; the first one closes. */
    void *first = f->dealer;
    f->dealer = dealer_new(f);
    assert_non_null(f->dealer);
    begin(f);
    add_event(f, "c", 3, t0 + 3);
    expect_ack(f, send_batch(f), VIGIL_WIRE_OK);
    zmq_close(first);
    sleep_ms(600); /* a few reports */
    double x = -1;
    assert_true(self_value_of(out, AGENT, "connected", &x));
    assert_true(x == 1);
    zmq_close(f->dealer);
    f->dealer = NULL;
    assert_true(wait_self_equal(out, AGENT, "connected", 0, 10));
    assert_int_equal(count_lines(out, "\"source\":\"c\""), 3);
}

/* The sink stuck: the bus fills (it holds a few batches), and a batch that
 * waited 500 ms for room is answered RETRY, none of it published; every
 * later batch of the connection (already on the wire) is answered RETRY
 * too, so none overtakes it. Once the sink moves, the batches before are
 * acked, and the flagged resend of the shed ones is taken: every event
 * once, in order. (With more than 256 acks waiting the central sheds the
 * same way; here the bus fills first.) */
static void test_shed_when_sinks_stuck(void **state)
{
    struct fx *f = *state;
    const char *out = vd_path(&f->v, "out.jsonl"), *self = vd_path(&f->v, "self.jsonl");
    const uint64_t t0 = 1700000000000000000ull;
    enum { BATCHES = 24, PER = 100 };
    touch(vd_path(&f->v, "block"));
    begin(f);
    add_event(f, "b", 1, t0);
    uint64_t stuck = send_batch(f);
    assert_true(wait_lines(out, "\"source\":\"b\"", 1, 10)); /* the sink is stuck now */

    uint64_t ids[BATCHES];
    for (int i = 0; i < BATCHES; i++) {
        begin(f);
        for (uint64_t s = 1; s <= PER; s++) {
            uint64_t seq = (uint64_t)i * PER + s;
            add_event(f, "s", seq, t0 + seq);
        }
        ids[i] = send_batch(f);
    }
    /* RETRYs go out at once, OKs wait for the sink: the first ack read is
     * the first shed batch's, and every one after it is shed too. */
    struct vigil_wire_ack a;
    unsigned char buf[1024];
    recv_ack(f, &a, buf, sizeof buf, VIGIL_WIRE_MAX_EVENTS);
    assert_int_equal(a.status, VIGIL_WIRE_RETRY);
    assert_int_equal(a.retry_after_ms, 200);
    int k = 0;
    while (k < BATCHES && ids[k] != a.id) {
        k++;
    }
    if (k == 0 || k == BATCHES) {
        fail_msg("the RETRY answers batch %llx, not one after the bus filled",
                 (unsigned long long)a.id);
    }
    for (int i = k + 1; i < BATCHES; i++) {
        expect_ack(f, ids[i], VIGIL_WIRE_RETRY);
    }

    unlink(vd_path(&f->v, "block"));
    expect_ack(f, stuck, VIGIL_WIRE_OK);
    for (int i = 0; i < k; i++) {
        expect_ack(f, ids[i], VIGIL_WIRE_OK);
    }
    begin(f); /* no flag: still held back */
    add_event(f, "s", (uint64_t)k * PER + 1, t0 + (uint64_t)k * PER + 1);
    expect_ack(f, send_batch(f), VIGIL_WIRE_RETRY);
    begin_resend(f);
    for (uint64_t seq = (uint64_t)k * PER + 1; seq <= BATCHES * PER; seq++) {
        add_event(f, "s", seq, t0 + seq);
    }
    expect_ack(f, send_batch(f) | VIGIL_WIRE_RESEND, VIGIL_WIRE_OK);

    assert_true(wait_lines(out, "\"source\":\"s\"", BATCHES * PER, 10));
    assert_true(seqs_complete(out, "s", BATCHES * PER));
    assert_int_equal(count_lines(out, "\"source\":\"s\""), BATCHES * PER);
    double shed = (double)(BATCHES - k + 1);
    assert_true(wait_self_equal(self, INGEST, "shed_total", shed, 10));
    assert_true(wait_self_equal(self, AGENT, "shed_total", shed, 10));
    assert_true(wait_self_equal(self, AGENT, "events_total", 1 + BATCHES * PER, 10));
    assert_true(wait_self_equal(self, AGENT, "duplicates_total", 0, 10));
    assert_int_equal(vd_stop(&f->v, 10, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_acked_once_and_resends_recognised, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_events_published_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shed_when_sinks_stuck, setup_stuck_small_bus,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

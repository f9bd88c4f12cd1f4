/* The forward protocol's wire codec (pipeline/fleet/wire.h): batches that
 * round-trip at every size bound, every refusal of the batch decoder, the ack
 * codec for each status, and one batch and its ack over a real ZeroMQ
 * DEALER -> ROUTER pair on loopback tcp.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <zmq.h>

#include "vigil/plugin.h"
#include "wire.h"

#define ID 0x0123456789abcdefULL

static int setup(void **state)
{
    struct vigil_wire_batch *b = calloc(1, sizeof *b);
    if (!b) {
        return -1;
    }
    vigil_wire_batch_init(b, 0);
    *state = b;
    return 0;
}

static int teardown(void **state)
{
    struct vigil_wire_batch *b = *state;
    vigil_wire_batch_fini(b);
    free(b);
    return 0;
}

/* Adds event i: topic "t.<i>", body "body <i>". */
static int put(struct vigil_wire_batch *b, unsigned i)
{
    char topic[16], body[32];
    int tl = snprintf(topic, sizeof topic, "t.%u", i);
    int bl = snprintf(body, sizeof body, "body %u", i);
    return vigil_wire_batch_add(b, topic, (size_t)tl, body, (size_t)bl);
}

static void check(const struct vigil_wire_event *e, unsigned i)
{
    char topic[16], body[32];
    int tl = snprintf(topic, sizeof topic, "t.%u", i);
    int bl = snprintf(body, sizeof body, "body %u", i);
    assert_int_equal(e->topic_len, (size_t)tl);
    assert_memory_equal(e->topic, topic, (size_t)tl);
    assert_int_equal(e->body_len, (size_t)bl);
    assert_memory_equal(e->body, body, (size_t)bl);
}

static void round_trip(struct vigil_wire_batch *b, unsigned n)
{
    assert_int_equal(vigil_wire_batch_begin(b, ID), 0);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(put(b, i), 0);
    }
    assert_int_equal(b->count, n);
    struct vigil_wire_batch_view v;
    struct vigil_wire_error err;
    assert_int_equal(vigil_wire_batch_decode(&v, b->head, sizeof b->head, b->data, b->len, n, &err),
                     0);
    assert_true(v.id == ID);
    assert_int_equal(v.count, n);
    struct vigil_wire_event e;
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(vigil_wire_batch_next(&v, &e), 1);
        check(&e, i);
    }
    assert_int_equal(vigil_wire_batch_next(&v, &e), 0);
}

static void test_round_trip(void **state)
{
    struct vigil_wire_batch *b = *state;
    round_trip(b, 0);
    round_trip(b, 1);
    round_trip(b, 1000);
    round_trip(b, 3); /* reuse after a big one */
}

/* The header: magic, then the id big-endian. */
static void test_header_bytes(void **state)
{
    struct vigil_wire_batch *b = *state;
    assert_int_equal(vigil_wire_batch_begin(b, ID), 0);
    assert_memory_equal(b->head, "VGB1\x01\x23\x45\x67\x89\xab\xcd\xef", 12);
    assert_int_equal(vigil_wire_batch_add(b, "ab", 2, "\x80", 1), 0);
    assert_int_equal(b->len, 11);
    assert_memory_equal(b->data,
                        "\0\0\0\x02\0\0\0\x01"
                        "ab\x80",
                        11);
    assert_int_equal(vigil_wire_batch_begin(b, 0), VIGIL_EMALFORMED);
}

static void test_bounds(void **state)
{
    struct vigil_wire_batch *b = *state;
    static char big[VIGIL_WIRE_MAX_BYTES];
    char topic[256];
    memset(topic, 'x', sizeof topic);
    memset(big, 'b', sizeof big);
    assert_int_equal(vigil_wire_batch_begin(b, 7), 0);
    /* topic 1..255 */
    assert_int_equal(vigil_wire_batch_add(b, topic, 0, "b", 1), VIGIL_EMALFORMED);
    assert_int_equal(vigil_wire_batch_add(b, topic, 256, "b", 1), VIGIL_ETOOBIG);
    assert_int_equal(vigil_wire_batch_add(b, topic, 255, "b", 1), 0);
    /* an empty body is framed (the central refuses it per event) */
    assert_int_equal(vigil_wire_batch_add(b, topic, 1, NULL, 0), 0);
    /* one record of exactly 1 MiB fits an empty batch, one byte more never */
    size_t body = VIGIL_WIRE_MAX_BYTES - VIGIL_WIRE_RECORD_HEAD - 255;
    assert_int_equal(vigil_wire_batch_add(b, topic, 255, big, body + 1), VIGIL_ETOOBIG);
    assert_int_equal(vigil_wire_batch_add(b, topic, 255, big, body), -ENOBUFS);
    assert_int_equal(b->count, 2);
    assert_int_equal(vigil_wire_batch_begin(b, 8), 0);
    assert_int_equal(vigil_wire_batch_add(b, topic, 255, big, body), 0);
    assert_int_equal(b->len, VIGIL_WIRE_MAX_BYTES);
    assert_int_equal(vigil_wire_batch_add(b, "t", 1, "", 0), -ENOBUFS);
    struct vigil_wire_batch_view v;
    struct vigil_wire_event e;
    assert_int_equal(vigil_wire_batch_decode(&v, b->head, 12, b->data, b->len, 1, NULL), 0);
    assert_int_equal(vigil_wire_batch_next(&v, &e), 1);
    assert_int_equal(e.topic_len, 255);
    assert_int_equal(e.body_len, body);
    /* the caller's event bound */
    struct vigil_wire_batch small;
    vigil_wire_batch_init(&small, 3);
    assert_int_equal(vigil_wire_batch_begin(&small, 9), 0);
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(put(&small, i), 0);
    }
    assert_int_equal(put(&small, 3), -ENOBUFS);
    assert_int_equal(small.count, 3);
    vigil_wire_batch_fini(&small);
}

/* The in-process records of pipeline/record.h (host order) convert. */
static void test_add_records(void **state)
{
    struct vigil_wire_batch *b = *state;
    unsigned char recs[64];
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        uint32_t l[2] = {3, 2};
        memcpy(recs + n, l, sizeof l);
        memcpy(recs + n + 8, "top", 3);
        recs[n + 11] = 'b';
        recs[n + 12] = (unsigned char)('0' + i);
        n += 13;
    }
    size_t taken;
    vigil_wire_batch_init(b, 2);
    assert_int_equal(vigil_wire_batch_begin(b, 1), 0);
    assert_int_equal(vigil_wire_batch_add_records(b, recs, n, &taken), -ENOBUFS);
    assert_int_equal(taken, 26);
    assert_int_equal(vigil_wire_batch_begin(b, 2), 0);
    assert_int_equal(vigil_wire_batch_add_records(b, recs + taken, n - taken, &taken), 0);
    assert_int_equal(taken, 13);
    assert_memory_equal(b->data, "\0\0\0\x03\0\0\0\x02topb2", 13);
    /* damaged bytes: the whole records before them are taken */
    assert_int_equal(vigil_wire_batch_begin(b, 3), 0);
    assert_int_equal(vigil_wire_batch_add_records(b, recs, 13 + 5, &taken), VIGIL_EMALFORMED);
    assert_int_equal(taken, 13);
}

/* Decodes (head, recs) and expects refusal rc with this reason and detail. */
static void refused(const void *head, size_t hl, const void *recs, size_t rl, size_t max, int rc,
                    enum vigil_wire_reason reason, uint32_t detail)
{
    struct vigil_wire_batch_view v;
    struct vigil_wire_error err = {0};
    assert_int_equal(vigil_wire_batch_decode(&v, head, hl, recs, rl, max, &err), rc);
    assert_int_equal(err.reason, reason);
    assert_int_equal(err.detail, detail);
    assert_non_null(err.why);
}

static void test_decode_header(void **state)
{
    struct vigil_wire_batch *b = *state;
    assert_int_equal(vigil_wire_batch_begin(b, ID), 0);
    unsigned char h[13];
    memcpy(h, b->head, 12);
    h[12] = 0;
    refused(h, 11, NULL, 0, 0, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_HEADER, 0);
    refused(h, 13, NULL, 0, 0, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_HEADER, 0);
    refused(NULL, 12, NULL, 0, 0, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_HEADER, 0);
    h[3] = '2'; /* another version */
    refused(h, 12, NULL, 0, 0, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_HEADER, 0);
    memcpy(h, "VGA1", 4); /* an ack is not a batch */
    refused(h, 12, NULL, 0, 0, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_HEADER, 0);
    memcpy(h, "VGB1\0\0\0\0\0\0\0\0", 12);
    refused(h, 12, NULL, 0, 0, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_HEADER, 0);
    /* The RESEND flag alone is id 0 too. */
    h[4] = 0x80;
    refused(h, 12, NULL, 0, 0, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_HEADER, 0);
    assert_int_equal(vigil_wire_batch_begin(b, VIGIL_WIRE_RESEND), VIGIL_EMALFORMED);
}

/* A batch with the RESEND flag decodes with its id as sent, and its ack
 * echoes that id: the flag is part of the id on the wire. */
static void test_resend_flag(void **state)
{
    struct vigil_wire_batch *b = *state;
    assert_int_equal(vigil_wire_batch_begin(b, ID | VIGIL_WIRE_RESEND), 0);
    assert_int_equal(b->head[4], 0x81);
    struct vigil_wire_batch_view v;
    assert_int_equal(vigil_wire_batch_decode(&v, b->head, 12, NULL, 0, 0, NULL), 0);
    assert_true(v.id == (ID | VIGIL_WIRE_RESEND));
    struct vigil_wire_ack_buf ab;
    vigil_wire_ack_buf_init(&ab);
    assert_int_equal(vigil_wire_ack_retry(&ab, v.id, 200), 0);
    struct vigil_wire_ack a;
    assert_int_equal(vigil_wire_ack_decode(&a, ab.head, 12, ab.data, ab.len, 0, NULL), 0);
    assert_true(a.id == (ID | VIGIL_WIRE_RESEND));
    assert_int_equal(a.status, VIGIL_WIRE_RETRY);
    assert_int_equal(a.retry_after_ms, 200);
    vigil_wire_ack_buf_fini(&ab);
}

/* Two events; every cut of frame 2 short of a record boundary is refused
 * at the damaged record's offset, and every cut at a boundary decodes. */
static void test_decode_truncated(void **state)
{
    struct vigil_wire_batch *b = *state;
    assert_int_equal(vigil_wire_batch_begin(b, 5), 0);
    assert_int_equal(put(b, 1), 0);
    size_t first = b->len;
    assert_int_equal(put(b, 2), 0);
    for (size_t cut = 0; cut <= b->len; cut++) {
        /* a copy of exactly cut bytes, so ASan sees any read past it */
        unsigned char *frame = malloc(cut ? cut : 1);
        assert_non_null(frame);
        memcpy(frame, b->data, cut);
        struct vigil_wire_batch_view v;
        struct vigil_wire_error err;
        int rc = vigil_wire_batch_decode(&v, b->head, 12, frame, cut, 0, &err);
        if (cut == 0 || cut == first || cut == b->len) {
            assert_int_equal(rc, 0);
            assert_int_equal(v.count, cut == 0 ? 0 : cut == first ? 1 : 2);
        } else {
            assert_int_equal(rc, VIGIL_EMALFORMED);
            assert_int_equal(err.reason, VIGIL_WIRE_BAD_RECORD);
            assert_int_equal(err.detail, cut < first ? 0 : first);
            assert_int_equal(err.index, cut < first ? 0 : 1);
        }
        free(frame);
    }
}

static void test_decode_records(void **state)
{
    (void)state;
    unsigned char h[12] = "VGB1\0\0\0\0\0\0\0\x01";
    /* lengths that overflow 32 bits when added */
    refused(h, 12,
            "\0\0\0\x01\xff\xff\xff\xff"
            "t",
            9, 0, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_RECORD, 0);
    refused(h, 12,
            "\xff\xff\xff\xff\xff\xff\xff\xff"
            "t",
            9, 0, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_RECORD, 0);
    /* topic 0 and 256 bytes */
    refused(h, 12,
            "\0\0\0\0\0\0\0\x01"
            "b",
            9, 0, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_RECORD, 0);
    static unsigned char t256[8 + 256 + 1] = {0, 0, 1, 0, 0, 0, 0, 1};
    refused(h, 12, t256, sizeof t256, 0, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_RECORD, 0);
    /* trailing bytes after a whole record */
    refused(h, 12,
            "\0\0\0\x01\0\0\0\x01"
            "tb"
            "\0",
            11, 0, VIGIL_EMALFORMED, VIGIL_WIRE_BAD_RECORD, 10);
    /* frame 2 over 1 MiB, whatever it holds */
    unsigned char *big = calloc(1, VIGIL_WIRE_MAX_BYTES + 1);
    assert_non_null(big);
    refused(h, 12, big, VIGIL_WIRE_MAX_BYTES + 1, 0, VIGIL_ETOOBIG, VIGIL_WIRE_TOO_BIG,
            VIGIL_WIRE_MAX_BYTES);
    free(big);
}

static void test_decode_too_many(void **state)
{
    struct vigil_wire_batch *b = *state;
    assert_int_equal(vigil_wire_batch_begin(b, 5), 0);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(put(b, i), 0);
    }
    struct vigil_wire_batch_view v;
    assert_int_equal(vigil_wire_batch_decode(&v, b->head, 12, b->data, b->len, 4, NULL), 0);
    refused(b->head, 12, b->data, b->len, 3, VIGIL_ETOOBIG, VIGIL_WIRE_TOO_MANY, 3);
    /* the protocol's ceiling holds whatever the caller asks */
    struct vigil_wire_batch many;
    vigil_wire_batch_init(&many, SIZE_MAX);
    assert_int_equal(many.max_events, VIGIL_WIRE_MAX_EVENTS);
    assert_int_equal(vigil_wire_batch_begin(&many, 1), 0);
    for (unsigned i = 0; i < VIGIL_WIRE_MAX_EVENTS; i++) {
        assert_int_equal(vigil_wire_batch_add(&many, "t", 1, "", 0), 0);
    }
    assert_int_equal(vigil_wire_batch_add(&many, "t", 1, "", 0), -ENOBUFS);
    assert_int_equal(
        vigil_wire_batch_decode(&v, many.head, 12, many.data, many.len, SIZE_MAX, NULL), 0);
    assert_int_equal(v.count, VIGIL_WIRE_MAX_EVENTS);
    /* one more record by hand */
    unsigned char *more = malloc(many.len + 9);
    assert_non_null(more);
    memcpy(more, many.data, many.len);
    memcpy(more + many.len, "\0\0\0\x01\0\0\0\0t", 9);
    refused(many.head, 12, more, many.len + 9, 0, VIGIL_ETOOBIG, VIGIL_WIRE_TOO_MANY,
            VIGIL_WIRE_MAX_EVENTS);
    free(more);
    vigil_wire_batch_fini(&many);
}

/* ---- acks ---- */

static void ack_decodes(const struct vigil_wire_ack_buf *ab, size_t n_events,
                        struct vigil_wire_ack *a)
{
    uint64_t id;
    assert_int_equal(vigil_wire_ack_id(ab->head, 12, &id), 0);
    assert_int_equal(vigil_wire_ack_decode(a, ab->head, 12, ab->data, ab->len, n_events, NULL), 0);
    assert_true(a->id == id);
}

static void ack_refused(const void *body, size_t len, size_t n_events)
{
    struct vigil_wire_ack a;
    struct vigil_wire_error err = {0};
    assert_int_equal(
        vigil_wire_ack_decode(&a, "VGA1\0\0\0\0\0\0\0\x09", 12, body, len, n_events, &err),
        VIGIL_EMALFORMED);
    assert_non_null(err.why);
}

static void test_ack_statuses(void **state)
{
    (void)state;
    struct vigil_wire_ack_buf ab;
    struct vigil_wire_ack a;
    vigil_wire_ack_buf_init(&ab);

    assert_int_equal(vigil_wire_ack_ok(&ab, ID), 0);
    assert_memory_equal(ab.head, "VGA1\x01\x23\x45\x67\x89\xab\xcd\xef", 12);
    assert_int_equal(ab.len, 1);
    ack_decodes(&ab, 10, &a);
    assert_true(a.id == ID);
    assert_int_equal(a.status, VIGIL_WIRE_OK);

    assert_int_equal(vigil_wire_ack_retry(&ab, 2, 1500), 0);
    assert_memory_equal(ab.data, "\x01\0\0\x05\xdc", 5);
    ack_decodes(&ab, 10, &a);
    assert_int_equal(a.status, VIGIL_WIRE_RETRY);
    assert_int_equal(a.retry_after_ms, 1500);

    uint32_t idx[] = {0, 3, 9};
    assert_int_equal(vigil_wire_ack_refused(&ab, 3, 10, idx, 3), 0);
    assert_int_equal(ab.len, 17);
    assert_memory_equal(ab.data, "\x02\0\0\0\x03\0\0\0\0\0\0\0\x03\0\0\0\x09", 17);
    ack_decodes(&ab, 10, &a);
    assert_int_equal(a.status, VIGIL_WIRE_REFUSED);
    assert_int_equal(a.n_refused, 3);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(vigil_wire_ack_refused_at(&a, i), idx[i]);
    }
    /* the index bound is the agent's batch: 10 events, index 9 is the last */
    ack_refused(ab.data, ab.len, 9);

    assert_int_equal(vigil_wire_ack_error(&ab, 4, VIGIL_WIRE_BAD_RECORD, 42), 0);
    assert_memory_equal(ab.data, "\x03\x03\0\0\0\x2a", 6);
    ack_decodes(&ab, 10, &a);
    assert_int_equal(a.status, VIGIL_WIRE_ERROR);
    assert_int_equal(a.reason, VIGIL_WIRE_BAD_RECORD);
    assert_int_equal(a.detail, 42);
    /* an unreadable header has no id: ERROR with id 0 */
    assert_int_equal(vigil_wire_ack_error(&ab, 0, VIGIL_WIRE_BAD_HEADER, 0), 0);
    ack_decodes(&ab, 0, &a);
    assert_true(a.id == 0);

    vigil_wire_ack_buf_fini(&ab);
}

static void test_ack_encoder_refuses(void **state)
{
    (void)state;
    struct vigil_wire_ack_buf ab;
    vigil_wire_ack_buf_init(&ab);
    uint32_t dup[] = {1, 1}, unsorted[] = {2, 1}, past[] = {0, 5}, one[] = {0};
    assert_int_equal(vigil_wire_ack_ok(&ab, 0), VIGIL_EMALFORMED);
    assert_int_equal(vigil_wire_ack_retry(&ab, 0, 1), VIGIL_EMALFORMED);
    assert_int_equal(vigil_wire_ack_refused(&ab, 1, 5, dup, 2), VIGIL_EMALFORMED);
    assert_int_equal(vigil_wire_ack_refused(&ab, 1, 5, unsorted, 2), VIGIL_EMALFORMED);
    assert_int_equal(vigil_wire_ack_refused(&ab, 1, 5, past, 2), VIGIL_EMALFORMED);
    assert_int_equal(vigil_wire_ack_refused(&ab, 1, 5, one, 0), VIGIL_EMALFORMED);
    assert_int_equal(vigil_wire_ack_refused(&ab, 1, VIGIL_WIRE_MAX_EVENTS + 1, one, 1),
                     VIGIL_EMALFORMED);
    assert_int_equal(vigil_wire_ack_error(&ab, 1, 0, 0), VIGIL_EMALFORMED);
    assert_int_equal(vigil_wire_ack_error(&ab, 1, 6, 0), VIGIL_EMALFORMED);
    vigil_wire_ack_buf_fini(&ab);
}

static void test_ack_decoder_refuses(void **state)
{
    (void)state;
    struct vigil_wire_ack a;
    uint64_t id;
    /* header */
    assert_int_equal(vigil_wire_ack_id("VGA1\0\0\0\0\0\0\0", 11, &id), VIGIL_EMALFORMED);
    assert_int_equal(vigil_wire_ack_id("VGB1\0\0\0\0\0\0\0\x01", 12, &id), VIGIL_EMALFORMED);
    assert_int_equal(vigil_wire_ack_decode(&a, "VGB1\0\0\0\0\0\0\0\x01", 12, "\0", 1, 1, NULL),
                     VIGIL_EMALFORMED);
    /* id 0 outside ERROR */
    assert_int_equal(vigil_wire_ack_decode(&a, "VGA1\0\0\0\0\0\0\0\0", 12, "\0", 1, 1, NULL),
                     VIGIL_EMALFORMED);
    /* no status, unknown status, wrong lengths */
    ack_refused(NULL, 0, 5);
    ack_refused("\x04", 1, 5);
    ack_refused("\0\0", 2, 5);
    ack_refused("\x01\0\0\0", 4, 5);
    ack_refused("\x01\0\0\0\0\0", 6, 5);
    ack_refused("\x03\x01\0\0\0", 5, 5);
    ack_refused("\x03\x00\0\0\0\0", 6, 5); /* reason 0 */
    ack_refused("\x03\x06\0\0\0\0", 6, 5); /* reason 6 */
    /* REFUSED: no count, count 0, count against length, duplicates, unsorted, past the end */
    ack_refused("\x02\0\0\0", 4, 5);
    ack_refused("\x02\0\0\0\0", 5, 5);
    ack_refused("\x02\0\0\0\x02\0\0\0\x01", 9, 5);
    ack_refused("\x02\0\0\0\x01\0\0\0\x01\0", 10, 5);
    ack_refused("\x02\xff\xff\xff\xff\0\0\0\x01", 9, 5);
    ack_refused("\x02\0\0\0\x02\0\0\0\x01\0\0\0\x01", 13, 5);
    ack_refused("\x02\0\0\0\x02\0\0\0\x02\0\0\0\x01", 13, 5);
    ack_refused("\x02\0\0\0\x01\0\0\0\x05", 9, 5);
    ack_refused("\x02\0\0\0\x02\0\0\0\x00\0\0\0\x01", 13, 1); /* more than the batch */
    /* and what decodes */
    assert_int_equal(vigil_wire_ack_decode(&a, "VGA1\0\0\0\0\0\0\0\x09", 12,
                                           "\x02\0\0\0\x02\0\0\0\x00\0\0\0\x04", 13, 5, NULL),
                     0);
}

/* ---- over ZeroMQ ---- */

static void send_frames(void *s, const void *a, size_t al, const void *b, size_t bl)
{
    assert_int_equal(zmq_send(s, a, al, ZMQ_SNDMORE), (int)al);
    assert_int_equal(zmq_send(s, b, bl, 0), (int)bl);
}

/* Receives one frame into m; returns whether more follow. */
static int recv_frame(void *s, zmq_msg_t *m)
{
    assert_true(zmq_msg_recv(m, s, 0) >= 0);
    return zmq_msg_more(m);
}

static void test_zmq_dealer_router(void **state)
{
    struct vigil_wire_batch *b = *state;
    void *ctx = zmq_ctx_new();
    assert_non_null(ctx);
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    int timeout_ms = 5000, linger = 0;
    assert_int_equal(zmq_setsockopt(router, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms), 0);
    assert_int_equal(zmq_setsockopt(dealer, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms), 0);
    assert_int_equal(zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof linger), 0);
    assert_int_equal(zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger), 0);
    assert_int_equal(zmq_bind(router, "tcp://127.0.0.1:*"), 0);
    char ep[256];
    size_t epl = sizeof ep;
    assert_int_equal(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, ep, &epl), 0);
    assert_int_equal(zmq_connect(dealer, ep), 0);

    /* agent: a batch of 100 events up */
    assert_int_equal(vigil_wire_batch_begin(b, ID), 0);
    for (unsigned i = 0; i < 100; i++) {
        assert_int_equal(put(b, i), 0);
    }
    send_frames(dealer, b->head, sizeof b->head, b->data, b->len);

    /* central: [peer][frame 1][frame 2] */
    zmq_msg_t peer, head, recs;
    zmq_msg_init(&peer);
    zmq_msg_init(&head);
    zmq_msg_init(&recs);
    assert_true(recv_frame(router, &peer));
    assert_true(recv_frame(router, &head));
    assert_false(recv_frame(router, &recs));
    struct vigil_wire_batch_view v;
    assert_int_equal(vigil_wire_batch_decode(&v, zmq_msg_data(&head), zmq_msg_size(&head),
                                             zmq_msg_data(&recs), zmq_msg_size(&recs), 100, NULL),
                     0);
    assert_int_equal(v.count, 100);
    struct vigil_wire_event e;
    uint32_t bad[] = {7, 42};
    for (unsigned i = 0; vigil_wire_batch_next(&v, &e); i++) {
        check(&e, i);
    }
    struct vigil_wire_ack_buf ab;
    vigil_wire_ack_buf_init(&ab);
    assert_int_equal(vigil_wire_ack_refused(&ab, v.id, v.count, bad, 2), 0);
    assert_int_equal(zmq_send(router, zmq_msg_data(&peer), zmq_msg_size(&peer), ZMQ_SNDMORE),
                     (int)zmq_msg_size(&peer));
    send_frames(router, ab.head, sizeof ab.head, ab.data, ab.len);
    zmq_msg_close(&peer);
    zmq_msg_close(&head);
    zmq_msg_close(&recs);

    /* agent: the ack, matched by id */
    zmq_msg_t ah, as;
    zmq_msg_init(&ah);
    zmq_msg_init(&as);
    assert_true(recv_frame(dealer, &ah));
    assert_false(recv_frame(dealer, &as));
    uint64_t id;
    assert_int_equal(vigil_wire_ack_id(zmq_msg_data(&ah), zmq_msg_size(&ah), &id), 0);
    assert_true(id == ID);
    struct vigil_wire_ack a;
    assert_int_equal(vigil_wire_ack_decode(&a, zmq_msg_data(&ah), zmq_msg_size(&ah),
                                           zmq_msg_data(&as), zmq_msg_size(&as), b->count, NULL),
                     0);
    assert_int_equal(a.status, VIGIL_WIRE_REFUSED);
    assert_int_equal(a.n_refused, 2);
    assert_int_equal(vigil_wire_ack_refused_at(&a, 0), 7);
    assert_int_equal(vigil_wire_ack_refused_at(&a, 1), 42);
    zmq_msg_close(&ah);
    zmq_msg_close(&as);
    vigil_wire_ack_buf_fini(&ab);
    zmq_close(dealer);
    zmq_close(router);
    zmq_ctx_term(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resend_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_too_many, setup, teardown),
        cmocka_unit_test(test_ack_statuses),
        cmocka_unit_test(test_ack_encoder_refuses),
        cmocka_unit_test(test_ack_decoder_refuses),
        cmocka_unit_test_setup_teardown(test_zmq_dealer_router, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

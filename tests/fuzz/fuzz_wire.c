/* libFuzzer target for pipeline/fleet/wire.c, what a central's ingest
 * endpoint parses from its peers (and an agent from its central). The input,
 * after one byte that picks the event bound, is frame 1 (12 bytes) and frame
 * 2 of a batch; the same bytes are also decoded as an ack. What a decoder
 * accepts must re-encode to the very same bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "vigil/plugin.h"
#include "wire.h"

/* Decodes a batch; an accepted one re-encodes byte for byte. */
static void batch(const uint8_t *head, size_t hl, const uint8_t *recs, size_t rl, size_t max)
{
    static struct vigil_wire_batch b;
    static int ready;
    if (!ready) {
        vigil_wire_batch_init(&b, 0);
        ready = 1;
    }
    struct vigil_wire_batch_view v;
    struct vigil_wire_error err = {0};
    int rc = vigil_wire_batch_decode(&v, head, hl, recs, rl, max, &err);
    if (rc != 0) {
        CHECK(rc == VIGIL_EMALFORMED || rc == VIGIL_ETOOBIG);
        CHECK(err.why && err.reason >= VIGIL_WIRE_BAD_HEADER && err.reason <= VIGIL_WIRE_TOO_BIG);
        CHECK(err.reason != VIGIL_WIRE_BAD_RECORD || err.detail < rl);
        return;
    }
    CHECK(v.id != 0 && v.count <= (max ? max : VIGIL_WIRE_MAX_EVENTS));
    CHECK(vigil_wire_batch_begin(&b, v.id) == 0);
    struct vigil_wire_event e;
    size_t n = 0;
    while (vigil_wire_batch_next(&v, &e)) {
        CHECK((const uint8_t *)e.topic >= recs &&
              (const uint8_t *)e.body + e.body_len <= recs + rl);
        CHECK(vigil_wire_batch_add(&b, e.topic, e.topic_len, e.body, e.body_len) == 0);
        n++;
    }
    CHECK(n == v.count && b.count == n && b.len == rl);
    CHECK(memcmp(b.head, head, hl) == 0);
    CHECK(rl == 0 || memcmp(b.data, recs, rl) == 0);
}

/* Decodes an ack for a batch of n_events; an accepted one re-encodes. */
static void ack(const uint8_t *head, size_t hl, const uint8_t *body, size_t bl, size_t n_events)
{
    static struct vigil_wire_ack_buf ab;
    static uint32_t idx[VIGIL_WIRE_MAX_EVENTS];
    struct vigil_wire_ack a;
    struct vigil_wire_error err = {0};
    if (vigil_wire_ack_decode(&a, head, hl, body, bl, n_events, &err) != 0) {
        CHECK(err.why);
        return;
    }
    uint64_t id;
    CHECK(vigil_wire_ack_id(head, hl, &id) == 0 && id == a.id);
    int rc = -1;
    switch (a.status) {
    case VIGIL_WIRE_OK:
        rc = vigil_wire_ack_ok(&ab, a.id);
        break;
    case VIGIL_WIRE_RETRY:
        rc = vigil_wire_ack_retry(&ab, a.id, a.retry_after_ms);
        break;
    case VIGIL_WIRE_REFUSED:
        CHECK(a.n_refused >= 1 && a.n_refused <= n_events);
        for (uint32_t i = 0; i < a.n_refused; i++) {
            idx[i] = vigil_wire_ack_refused_at(&a, i);
            CHECK(idx[i] < n_events && (i == 0 || idx[i] > idx[i - 1]));
        }
        rc = vigil_wire_ack_refused(&ab, a.id, n_events, idx, a.n_refused);
        break;
    case VIGIL_WIRE_ERROR:
        rc = vigil_wire_ack_error(&ab, a.id, a.reason, a.detail);
        break;
    }
    CHECK(rc == 0);
    CHECK(ab.len == bl && memcmp(ab.data, body, bl) == 0 && memcmp(ab.head, head, hl) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t max = data[0] % 8; /* 0: the protocol's ceiling */
    data++;
    size--;
    /* frame 1 as given (also when short), frame 2 the rest, each in a block
     * of its own size so a read past either is caught */
    size_t hl = size < VIGIL_WIRE_HEAD_LEN ? size : VIGIL_WIRE_HEAD_LEN;
    uint8_t *head = malloc(hl ? hl : 1);
    uint8_t *rest = malloc(size - hl ? size - hl : 1);
    CHECK(head && rest);
    memcpy(head, data, hl);
    memcpy(rest, data + hl, size - hl);
    batch(head, hl, rest, size - hl, max);
    ack(head, hl, rest, size - hl, max ? max : VIGIL_WIRE_MAX_EVENTS);
    free(head);
    free(rest);
    return 0;
}

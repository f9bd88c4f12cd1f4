/* The record buffer (pipeline/record.h): its bounds in records and bytes,
 * oversized records, consuming from the front while appending (compaction),
 * growth, empty topics and bodies, walking after partial consumption,
 * handing a batch away, and walking damaged bytes from elsewhere.
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

#include "record.h"
#include "vigil/plugin.h"

static int setup(void **state)
{
    struct vigil_record_buf *rb = calloc(1, sizeof *rb);
    if (!rb) {
        return -1;
    }
    *state = rb;
    return 0;
}

static int teardown(void **state)
{
    struct vigil_record_buf *rb = *state;
    vigil_record_fini(rb);
    free(rb);
    return 0;
}

/* Appends record i: topic "t<i % 10>", body "body <i>" padded to pad bytes. */
static int put(struct vigil_record_buf *rb, unsigned i, size_t pad)
{
    char topic[8], body[4096];
    int tl = snprintf(topic, sizeof topic, "t%u", i % 10);
    int bl = snprintf(body, sizeof body, "body %u", i);
    assert_true(pad < sizeof body);
    size_t len = (size_t)bl;
    if (pad > len) {
        memset(body + len, '.', pad - len);
        len = pad;
    }
    return vigil_record_append(rb, topic, (size_t)tl, body, len);
}

/* Checks that r is what put(i, pad) appended. */
static void check(const struct vigil_record *r, unsigned i, size_t pad)
{
    char topic[8], body[32];
    int tl = snprintf(topic, sizeof topic, "t%u", i % 10);
    int bl = snprintf(body, sizeof body, "body %u", i);
    assert_int_equal(r->topic_len, (size_t)tl);
    assert_memory_equal(r->topic, topic, (size_t)tl);
    assert_int_equal(r->body_len, pad > (size_t)bl ? pad : (size_t)bl);
    assert_memory_equal(r->body, body, (size_t)bl);
    for (size_t k = (size_t)bl; k < r->body_len; k++) {
        assert_int_equal(r->body[k], '.');
    }
}

static size_t size_of(unsigned i, size_t pad)
{
    char s[32];
    size_t bl = (size_t)snprintf(s, sizeof s, "body %u", i);
    return vigil_record_size(2, pad > bl ? pad : bl);
}

/* ---- Bounds ------------------------------------------------------------------- */

static void test_count_bound(void **state)
{
    struct vigil_record_buf *rb = *state;
    vigil_record_init(rb, 3, SIZE_MAX, 0);
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(put(rb, i, 0), 0);
    }
    size_t bytes = vigil_record_bytes(rb);
    assert_int_equal(put(rb, 3, 0), -ENOBUFS);
    assert_int_equal(vigil_record_count(rb), 3); /* nothing was added */
    assert_int_equal(vigil_record_bytes(rb), bytes);
    vigil_record_pop(rb);
    assert_int_equal(put(rb, 3, 0), 0);
    struct vigil_record r;
    struct vigil_record_iter it = vigil_record_iter(rb);
    for (unsigned i = 1; i <= 3; i++) {
        assert_true(vigil_record_next(&it, &r));
        check(&r, i, 0);
    }
    assert_false(vigil_record_next(&it, &r));
}

static void test_no_room_at_all(void **state)
{
    struct vigil_record_buf *rb = *state;
    vigil_record_init(rb, 0, SIZE_MAX, 0);
    assert_int_equal(put(rb, 0, 0), -ENOBUFS);
    assert_int_equal(vigil_record_count(rb), 0);
    assert_null(rb->buf); /* nothing allocated for nothing */
}

/* The byte bound counts the headers: two records of exactly the bound's
 * half fit, a third byte does not. */
static void test_byte_bound(void **state)
{
    struct vigil_record_buf *rb = *state;
    size_t one = size_of(0, 100);
    vigil_record_init(rb, 1000, 2 * one, 0);
    assert_int_equal(put(rb, 0, 100), 0);
    assert_int_equal(vigil_record_bytes(rb), one);
    assert_int_equal(put(rb, 1, 100), 0);
    assert_int_equal(vigil_record_bytes(rb), 2 * one);
    /* Full, it keeps as much room again as is live: moving the live records
     * to the front happens once per that many bytes, not on every append. */
    assert_true(rb->cap >= 2 * vigil_record_bytes(rb));
    assert_int_equal(vigil_record_append(rb, NULL, 0, NULL, 0), -ENOBUFS);
    assert_int_equal(vigil_record_count(rb), 2);
    vigil_record_pop(rb);
    assert_int_equal(vigil_record_bytes(rb), one);
    assert_int_equal(put(rb, 2, 100), 0);
    /* Growth stops at twice the bound: room to compact rarely, not on
     * every append, when the buffer runs full. */
    assert_true(rb->cap <= 4 * one);
}

/* Without ONE_ANY_SIZE a record over the byte bound never fits. */
static void test_oversized_refused(void **state)
{
    struct vigil_record_buf *rb = *state;
    vigil_record_init(rb, 10, 64, 0);
    assert_int_equal(put(rb, 0, 200), VIGIL_ETOOBIG);
    assert_int_equal(vigil_record_count(rb), 0);
    assert_int_equal(put(rb, 1, 0), 0);
    assert_int_equal(put(rb, 2, 200), VIGIL_ETOOBIG);
    assert_int_equal(vigil_record_count(rb), 1);
    /* The format's own limit: lengths are 32 bits. */
    vigil_record_fini(rb);
    vigil_record_init(rb, 10, SIZE_MAX, 0);
    assert_int_equal(vigil_record_append(rb, "t", (size_t)UINT32_MAX + 1, "", 0), VIGIL_ETOOBIG);
    assert_int_equal(vigil_record_append(rb, "t", 1, "", (size_t)UINT32_MAX + 1), VIGIL_ETOOBIG);
}

/* With ONE_ANY_SIZE an empty buffer takes one record of any size (a batch
 * of one), and nothing more until it is consumed. */
static void test_oversized_alone(void **state)
{
    struct vigil_record_buf *rb = *state;
    vigil_record_init(rb, 10, 64, VIGIL_RECORD_ONE_ANY_SIZE);
    assert_int_equal(put(rb, 0, 0), 0);
    assert_int_equal(put(rb, 1, 300), -ENOBUFS); /* not beside another */
    vigil_record_clear(rb);
    assert_int_equal(put(rb, 1, 300), 0);
    assert_true(vigil_record_bytes(rb) > 64);
    assert_int_equal(vigil_record_append(rb, NULL, 0, NULL, 0), -ENOBUFS);
    struct vigil_record r;
    assert_true(vigil_record_front(rb, &r));
    check(&r, 1, 300);
    vigil_record_pop(rb);
    assert_int_equal(put(rb, 2, 0), 0);
    assert_int_equal(put(rb, 3, 0), 0);
    assert_int_equal(vigil_record_count(rb), 2);
}

/* ---- Consuming and growing ------------------------------------------------------- */

/* A queue in steady use: appends and pops interleaved many times over the
 * buffer's size. Order holds, the bounds hold, and once the buffer has its
 * size nothing is allocated again (the block stays the same). */
static void test_wrap_and_consume(void **state)
{
    struct vigil_record_buf *rb = *state;
    size_t bound = 10 * size_of(999, 40);
    vigil_record_init(rb, 1000, bound, 0);
    unsigned next_in = 0, next_out = 0;
    const char *block = NULL;
    size_t cap = 0;
    for (unsigned round = 0; round < 2000; round++) {
        /* Fill until a bound says no, then take a varying number out. */
        int rc;
        while ((rc = put(rb, next_in, 40 + next_in % 7)) == 0) {
            next_in++;
        }
        assert_int_equal(rc, -ENOBUFS);
        assert_true(vigil_record_bytes(rb) <= bound);
        unsigned take = 1 + round % 9;
        for (unsigned k = 0; k < take && vigil_record_count(rb); k++) {
            struct vigil_record r;
            assert_true(vigil_record_front(rb, &r));
            check(&r, next_out, 40 + next_out % 7);
            vigil_record_pop(rb);
            next_out++;
        }
        assert_int_equal(vigil_record_count(rb), next_in - next_out);
        if (round == 10) {
            block = rb->buf;
            cap = rb->cap;
        } else if (round > 10) {
            assert_ptr_equal(rb->buf, block);
            assert_int_equal(rb->cap, cap);
        }
    }
    assert_true(cap <= 2 * bound);
    while (vigil_record_count(rb)) {
        struct vigil_record r;
        assert_true(vigil_record_front(rb, &r));
        check(&r, next_out, 40 + next_out % 7);
        vigil_record_pop(rb);
        next_out++;
    }
    assert_int_equal(next_out, next_in);
    assert_int_equal(vigil_record_bytes(rb), 0);
    vigil_record_pop(rb); /* empty: nothing happens */
    assert_int_equal(vigil_record_count(rb), 0);
}

/* Unbounded in bytes: the buffer grows past its first block, also right
 * after consuming from the front, and keeps every record intact. */
static void test_growth(void **state)
{
    struct vigil_record_buf *rb = *state;
    vigil_record_init(rb, 100000, SIZE_MAX, 0);
    unsigned n = 0;
    while (vigil_record_bytes(rb) < 300 * 1024) {
        assert_int_equal(put(rb, n, n % 3000), 0);
        n++;
    }
    size_t cap = rb->cap;
    assert_true(cap >= vigil_record_bytes(rb));
    for (unsigned i = 0; i < n / 2; i++) {
        vigil_record_pop(rb);
    }
    /* Fill what the pops freed and then some: moves, then grows. */
    unsigned m = n;
    while (vigil_record_bytes(rb) < cap + 1) {
        assert_int_equal(put(rb, m, m % 3000), 0);
        m++;
    }
    assert_true(rb->cap > cap);
    struct vigil_record r;
    struct vigil_record_iter it = vigil_record_iter(rb);
    for (unsigned i = n / 2; i < m; i++) {
        assert_true(vigil_record_next(&it, &r));
        check(&r, i, i % 3000);
    }
    assert_false(vigil_record_next(&it, &r));
    assert_false(vigil_record_iter_damaged(&it));
    /* Clearing keeps the memory for the next batch. */
    const char *block = rb->buf;
    vigil_record_clear(rb);
    assert_int_equal(vigil_record_count(rb), 0);
    assert_int_equal(put(rb, 0, 0), 0);
    assert_ptr_equal(rb->buf, block);
}

/* ---- Shapes of records --------------------------------------------------------------- */

static void test_empty_topic_and_body(void **state)
{
    struct vigil_record_buf *rb = *state;
    vigil_record_init(rb, 10, SIZE_MAX, 0);
    assert_int_equal(vigil_record_append(rb, NULL, 0, "\x81\xa1k\x01", 4), 0);
    assert_int_equal(vigil_record_append(rb, "kvm.vm", 6, NULL, 0), 0);
    assert_int_equal(vigil_record_append(rb, "", 0, "", 0), 0);
    assert_int_equal(vigil_record_bytes(rb), 3 * VIGIL_RECORD_HEAD + 4 + 6);
    struct vigil_record r;
    struct vigil_record_iter it = vigil_record_iter(rb);
    assert_true(vigil_record_next(&it, &r));
    assert_int_equal(r.topic_len, 0);
    assert_int_equal(r.body_len, 4);
    assert_memory_equal(r.body, "\x81\xa1k\x01", 4);
    assert_true(vigil_record_next(&it, &r));
    assert_int_equal(r.topic_len, 6);
    assert_memory_equal(r.topic, "kvm.vm", 6);
    assert_int_equal(r.body_len, 0);
    assert_true(vigil_record_next(&it, &r));
    assert_int_equal(r.topic_len, 0);
    assert_int_equal(r.body_len, 0);
    assert_false(vigil_record_next(&it, &r));
    assert_false(vigil_record_iter_damaged(&it));
}

/* Walking starts at the front, wherever consumption left it, and sees
 * records appended since. */
static void test_iterate_after_partial_consumption(void **state)
{
    struct vigil_record_buf *rb = *state;
    vigil_record_init(rb, 100, SIZE_MAX, 0);
    for (unsigned i = 0; i < 10; i++) {
        assert_int_equal(put(rb, i, i * 10), 0);
    }
    for (unsigned i = 0; i < 4; i++) {
        vigil_record_pop(rb);
    }
    struct vigil_record r;
    assert_true(vigil_record_front(rb, &r));
    check(&r, 4, 40);
    struct vigil_record_iter it = vigil_record_iter(rb);
    for (unsigned i = 4; i < 10; i++) {
        assert_true(vigil_record_next(&it, &r));
        check(&r, i, i * 10);
    }
    assert_false(vigil_record_next(&it, &r));
    for (unsigned i = 10; i < 13; i++) {
        assert_int_equal(put(rb, i, i * 10), 0);
    }
    it = vigil_record_iter(rb);
    unsigned seen = 4;
    while (vigil_record_next(&it, &r)) {
        check(&r, seen, seen * 10);
        seen++;
    }
    assert_int_equal(seen, 13);
    assert_int_equal(vigil_record_count(rb), 9);
    /* All consumed: the next record starts at the front again. */
    while (vigil_record_count(rb)) {
        vigil_record_pop(rb);
    }
    assert_int_equal(rb->head, 0);
    assert_int_equal(rb->tail, 0);
    assert_false(vigil_record_front(rb, &r));
    it = vigil_record_iter(rb);
    assert_false(vigil_record_next(&it, &r));
}

/* ---- Handing a batch away -------------------------------------------------------------- */

static void test_detach(void **state)
{
    struct vigil_record_buf *rb = *state;
    vigil_record_init(rb, 64, 64 * 1024, VIGIL_RECORD_ONE_ANY_SIZE);
    size_t len;
    assert_null(vigil_record_detach(rb, &len));
    assert_int_equal(len, 0);
    for (unsigned i = 0; i < 5; i++) {
        assert_int_equal(put(rb, i, 0), 0);
    }
    vigil_record_pop(rb); /* detach hands over what is live, from the start */
    size_t bytes = vigil_record_bytes(rb);
    char *block = vigil_record_detach(rb, &len);
    assert_non_null(block);
    assert_int_equal(len, bytes);
    assert_int_equal(vigil_record_count(rb), 0);
    assert_null(rb->buf);
    struct vigil_record r;
    struct vigil_record_iter it = vigil_record_iter_bytes(block, len);
    for (unsigned i = 1; i < 5; i++) {
        assert_true(vigil_record_next(&it, &r));
        check(&r, i, 0);
    }
    assert_false(vigil_record_next(&it, &r));
    assert_false(vigil_record_iter_damaged(&it));
    free(block);
    /* And the buffer starts a new batch. */
    assert_int_equal(put(rb, 7, 0), 0);
    assert_true(vigil_record_front(rb, &r));
    check(&r, 7, 0);
}

/* ---- Bytes from elsewhere ------------------------------------------------------------------ */

static void test_damaged_bytes(void **state)
{
    (void)state;
    struct vigil_record r;
    struct vigil_record_iter it = vigil_record_iter_bytes(NULL, 0);
    assert_false(vigil_record_next(&it, &r));
    assert_false(vigil_record_iter_damaged(&it));

    char bytes[64];
    uint32_t l[2] = {1, 3};
    memcpy(bytes, l, sizeof l);
    memcpy(bytes + 8, "tbod", 4);
    /* Whole. */
    it = vigil_record_iter_bytes(bytes, 12);
    assert_true(vigil_record_next(&it, &r));
    assert_memory_equal(r.topic, "t", 1);
    assert_memory_equal(r.body, "bod", 3);
    assert_false(vigil_record_next(&it, &r));
    assert_false(vigil_record_iter_damaged(&it));
    /* Cut anywhere inside: no record, and said so. */
    for (size_t cut = 1; cut < 12; cut++) {
        it = vigil_record_iter_bytes(bytes, cut);
        assert_false(vigil_record_next(&it, &r));
        assert_true(vigil_record_iter_damaged(&it));
    }
    /* Lengths whose sum wraps around 32 bits. */
    uint32_t huge[2] = {UINT32_MAX, 2};
    memcpy(bytes, huge, sizeof huge);
    it = vigil_record_iter_bytes(bytes, sizeof bytes);
    assert_false(vigil_record_next(&it, &r));
    assert_true(vigil_record_iter_damaged(&it));
    uint32_t wrap[2] = {4, UINT32_MAX - 2};
    memcpy(bytes, wrap, sizeof wrap);
    it = vigil_record_iter_bytes(bytes, sizeof bytes);
    assert_false(vigil_record_next(&it, &r));
    assert_true(vigil_record_iter_damaged(&it));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_count_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_room_at_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrap_and_consume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_growth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_topic_and_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iterate_after_partial_consumption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach, setup, teardown),
        cmocka_unit_test(test_damaged_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

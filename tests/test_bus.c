/* Tests for pipeline/bus.c: the real bus thread over real ZeroMQ sockets (a
 * fresh context and ipc folder per test): pass-through and prefix filtering
 * on both sides, malformed input counted and dropped, seq gap/reset
 * counting, the lossless inproc side under load, counted drops for a stalled
 * outside subscriber, refused endpoints, drain and shutdown. */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>
#include <cmocka.h>

#include "bus.h"
#include "event.h"
#include "log.h"

#define MAX_SOCKS 16
#define MAX_PRODUCERS 4
#define WAIT_MS 2000 /* bounded wait for counters the bus thread updates */
#define RECV_MS 5000 /* a subscriber that gets nothing for this long fails */
#define BODY_MAX 8192

struct producer {
    pthread_t thread;
    bool started;
    void *zctx;
    const char *endpoint;
    const char *topic;
    uint64_t first_seq;
    unsigned n;
    int sndhwm;
    size_t pad; /* bytes of attrs.pad per event */
    _Atomic unsigned sent;
    int err; /* zmq errno if a send failed */
};

struct fx {
    void *zctx;
    char dir[64];
    char pub[160], sub[160]; /* ipc endpoints */
    struct vigil_bus *bus;
    struct vigil_bus_stats *st;
    void *socks[MAX_SOCKS];
    int nsocks;
    struct producer prod[MAX_PRODUCERS];
    int nprod;
    struct vigil_event_builder b;
    msgpack_zone zone;
    char err[512];
    /* A thread that reads reader_sock once reader_go is set. */
    pthread_t reader;
    bool reader_started;
    _Atomic bool reader_go;
    _Atomic unsigned reader_got;
    void *reader_sock;
};

/* The bus batches what it hands in-process subscribers (bus.h): recv_msg
 * reads those sockets with a reader each, as the stages do. One slot per
 * in-process socket; closed at teardown. */
static struct pending {
    void *sock;
    struct vigil_bus_reader in;
} pend[MAX_SOCKS];

static struct pending *pending_of(void *sock)
{
    for (int i = 0; i < MAX_SOCKS; i++) {
        if (pend[i].sock == sock) {
            return &pend[i];
        }
    }
    return NULL;
}

/* One received two-frame message. */
struct msg {
    char topic[512];
    size_t topic_len;
    char body[BODY_MAX];
    size_t body_len;
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f) {
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "/tmp/vigil-bus-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->pub, sizeof f->pub, "ipc://%s/pub", f->dir);
    snprintf(f->sub, sizeof f->sub, "ipc://%s/sub", f->dir);
    f->zctx = zmq_ctx_new();
    if (!f->zctx) {
        rmdir(f->dir);
        free(f);
        return -1;
    }
    vigil_event_builder_init(&f->b);
    msgpack_zone_init(&f->zone, 4096);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    vigil_bus_free(f->bus);
    /* Unblocks producers stuck in a send to a bus that is gone. */
    zmq_ctx_shutdown(f->zctx);
    for (int i = 0; i < f->nprod; i++) {
        if (f->prod[i].started) {
            pthread_join(f->prod[i].thread, NULL);
        }
    }
    if (f->reader_started) {
        atomic_store(&f->reader_go, true);
        pthread_join(f->reader, NULL);
    }
    for (int i = 0; i < f->nsocks; i++) {
        zmq_close(f->socks[i]);
    }
    for (int i = 0; i < MAX_SOCKS; i++) {
        if (pend[i].sock) {
            vigil_bus_reader_fini(&pend[i].in);
        }
    }
    memset(pend, 0, sizeof pend);
    zmq_ctx_term(f->zctx);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    vigil_event_builder_fini(&f->b);
    msgpack_zone_destroy(&f->zone);
    free(f);
    return 0;
}

/* ------------------------------------------------------------- helpers */

static uint64_t now_ms(void)
{
    return vigil_mono_ns() / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls a counter until it reaches `want` or WAIT_MS pass; returns its value. */
static uint64_t wait_count(vigil_counter *c, uint64_t want)
{
    uint64_t deadline = now_ms() + WAIT_MS;
    uint64_t v;
    while ((v = vigil_counter_get(c)) < want && now_ms() < deadline) {
        sleep_ms(1);
    }
    return v;
}

static void *track(struct fx *f, void *s)
{
    assert_non_null(s);
    assert_true(f->nsocks < MAX_SOCKS);
    f->socks[f->nsocks++] = s;
    return s;
}

static uint64_t coalesce_ns; /* for the next new_bus: 0, as the tests' buses are */

static struct vigil_bus *new_bus(struct fx *f, const char *pub, const char *sub, int hwm,
                                 size_t max)
{
    struct vigil_bus_opts o = {.publish = pub,
                               .subscribe = sub,
                               .hwm = hwm,
                               .max_event_bytes = max,
                               .coalesce_ns = coalesce_ns};
    coalesce_ns = 0;
    f->err[0] = '\0';
    return vigil_bus_new(f->zctx, &o, f->err, sizeof f->err);
}

static void bus_new(struct fx *f, int hwm, size_t max)
{
    f->bus = new_bus(f, f->pub, f->sub, hwm, max);
    if (!f->bus) {
        fail_msg("vigil_bus_new: %s", f->err);
    }
    f->st = vigil_bus_stats(f->bus);
}

static void bus_start(struct fx *f, unsigned subscriptions)
{
    assert_int_equal(vigil_bus_start(f->bus, subscriptions), 0);
    assert_int_equal(vigil_bus_wait_ready(f->bus, 5000), 0);
}

static void *sub_socket(struct fx *f, const char *endpoint, const char *prefix, int rcvhwm)
{
    void *s = track(f, zmq_socket(f->zctx, ZMQ_SUB));
    int linger = 0, timeout = RECV_MS;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    bool inproc = strcmp(endpoint, VIGIL_BUS_OUT) == 0;
    if (inproc) {
        struct pending *slot = pending_of(NULL);
        assert_non_null(slot);
        slot->sock = s;
        vigil_bus_reader_init(&slot->in);
        /* As the stages do: a mark in events becomes one in batches. */
        rcvhwm = rcvhwm > 0 ? vigil_bus_inproc_hwm(rcvhwm) : rcvhwm;
    }
    if (rcvhwm >= 0) {
        zmq_setsockopt(s, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    }
    assert_int_equal(zmq_connect(s, endpoint), 0);
    if (prefix) {
        assert_int_equal(zmq_setsockopt(s, ZMQ_SUBSCRIBE, prefix, strlen(prefix)), 0);
    }
    return s;
}

static void *push_socket(struct fx *f, const char *endpoint)
{
    void *s = track(f, zmq_socket(f->zctx, ZMQ_PUSH));
    /* ipc: give queued messages a moment to leave when the test closes. */
    int linger = 1000, timeout = RECV_MS;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    assert_int_equal(zmq_connect(s, endpoint), 0);
    return s;
}

static void send_frames(void *s, const void *const *frames, const size_t *lens, int n)
{
    for (int i = 0; i < n; i++) {
        int rc = zmq_send(s, frames[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0);
        if (rc < 0) {
            fail_msg("zmq_send: %s", zmq_strerror(zmq_errno()));
        }
    }
}

static void send2(void *s, const char *topic, size_t topic_len, const char *body, size_t len)
{
    const void *frames[2] = {topic, body};
    size_t lens[2] = {topic_len, len};
    send_frames(s, frames, lens, 2);
}

/* Builds an event into b; the body lives until the next begin(). */
static void build(struct vigil_event_builder *b, const char *topic, const char *host,
                  const char *source, uint64_t seq, size_t pad, const char **body, size_t *len)
{
    vigil_event_begin(b, topic);
    vigil_event_add_label(b, "who", source);
    vigil_event_add_value_u64(b, "n", seq);
    if (pad) {
        char *p = malloc(pad + 1);
        assert_non_null(p);
        memset(p, 'p', pad);
        p[pad] = '\0';
        vigil_event_add_attr_str(b, "pad", p);
        free(p);
    }
    assert_int_equal(vigil_event_finish(b, host, source, seq, body, len), 0);
}

static void send_event(struct fx *f, void *s, const char *topic, const char *host,
                       const char *source, uint64_t seq, size_t pad)
{
    const char *body;
    size_t len;
    build(&f->b, topic, host, source, seq, pad, &body, &len);
    send2(s, topic, strlen(topic), body, len);
}

/* Receives one event within timeout_ms; false if none came. */
static bool recv_msg(void *s, struct msg *m, int timeout_ms)
{
    struct pending *pd = pending_of(s);
    if (pd) {
        const char *t, *b;
        size_t tl, bl;
        int rc = vigil_bus_reader_next(&pd->in, s, &t, &tl, &b, &bl);
        if (rc == 0) {
            zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
            if (zmq_poll(&it, 1, timeout_ms) <= 0) {
                return false;
            }
            rc = vigil_bus_reader_next(&pd->in, s, &t, &tl, &b, &bl);
        }
        assert_int_equal(rc, 1); /* the bus only passes on well-made batches */
        assert_true(tl <= sizeof m->topic && bl <= sizeof m->body);
        memcpy(m->topic, t, tl);
        m->topic_len = tl;
        memcpy(m->body, b, bl);
        m->body_len = bl;
        return true;
    }
    /* Outside: one event per two-frame message. */
    zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, timeout_ms) <= 0) {
        return false;
    }
    int n = zmq_recv(s, m->topic, sizeof m->topic, 0);
    assert_true(n >= 0 && (size_t)n <= sizeof m->topic);
    m->topic_len = (size_t)n;
    int more = 0;
    size_t ml = sizeof more;
    zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
    assert_true(more); /* the bus only passes on two-frame messages */
    n = zmq_recv(s, m->body, sizeof m->body, 0);
    assert_true(n >= 0 && (size_t)n <= sizeof m->body);
    m->body_len = (size_t)n;
    zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
    assert_false(more);
    return true;
}

static bool topic_is(const struct msg *m, const char *t)
{
    return m->topic_len == strlen(t) && memcmp(m->topic, t, m->topic_len) == 0;
}

/* Receives the next message that is not a join probe. */
static void recv_real(void *s, struct msg *m)
{
    do {
        if (!recv_msg(s, m, RECV_MS)) {
            fail_msg("no message within %d ms", RECV_MS);
        }
    } while (topic_is(m, "probe"));
}

/* Decodes a received body and returns its seq. */
static uint64_t seq_of(struct fx *f, const struct msg *m)
{
    struct vigil_event_view v;
    const char *reason = NULL;
    msgpack_zone_clear(&f->zone);
    int rc = vigil_event_decode(&v, m->topic, m->topic_len, m->body, m->body_len, BODY_MAX,
                                &f->zone, &reason);
    if (rc != 0) {
        fail_msg("subscriber got an event that does not decode: %s", reason);
    }
    return v.seq;
}

/* An outside subscriber misses everything published before its subscription
 * reached the bus: publish probes until one arrives. Returns how many were
 * published (the bus counts them in in_total/out_total). */
static unsigned join_external(struct fx *f, void *push, void *ext)
{
    assert_int_equal(zmq_setsockopt(ext, ZMQ_SUBSCRIBE, "probe", 5), 0);
    struct msg m;
    for (unsigned i = 1; i <= 500; i++) {
        send_event(f, push, "probe", "test", "probe", i, 0);
        if (recv_msg(ext, &m, 10)) {
            assert_true(topic_is(&m, "probe"));
            return i;
        }
    }
    fail_msg("the outside subscriber never got a probe");
    return 0;
}

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    struct vigil_event_builder b;
    vigil_event_builder_init(&b);
    void *s = zmq_socket(p->zctx, ZMQ_PUSH);
    if (!s) {
        p->err = zmq_errno();
        vigil_event_builder_fini(&b);
        return NULL;
    }
    int linger = 1000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_SNDHWM, &p->sndhwm, sizeof p->sndhwm);
    zmq_connect(s, p->endpoint);
    char *pad = NULL;
    if (p->pad) {
        pad = malloc(p->pad + 1);
        memset(pad, 'p', p->pad);
        pad[p->pad] = '\0';
    }
    for (unsigned i = 0; i < p->n; i++) {
        uint64_t seq = p->first_seq + i;
        const char *body;
        size_t len;
        vigil_event_begin(&b, p->topic);
        vigil_event_add_value_u64(&b, "n", seq);
        if (pad) {
            vigil_event_add_attr_str(&b, "pad", pad);
        }
        if (vigil_event_finish(&b, "load", "producer", seq, &body, &len) != 0 ||
            zmq_send(s, p->topic, strlen(p->topic), ZMQ_SNDMORE) < 0 ||
            zmq_send(s, body, len, 0) < 0) {
            p->err = zmq_errno();
            break;
        }
        atomic_store(&p->sent, i + 1);
    }
    free(pad);
    zmq_close(s);
    vigil_event_builder_fini(&b);
    return NULL;
}

/* Starts a thread that pushes n events (seq first_seq..) into the bus. */
static struct producer *producer_start(struct fx *f, const char *endpoint, const char *topic,
                                       uint64_t first_seq, unsigned n, int sndhwm, size_t pad)
{
    assert_true(f->nprod < MAX_PRODUCERS);
    struct producer *p = &f->prod[f->nprod++];
    p->zctx = f->zctx;
    p->endpoint = endpoint;
    p->topic = topic;
    p->first_seq = first_seq;
    p->n = n;
    p->sndhwm = sndhwm;
    p->pad = pad;
    assert_int_equal(pthread_create(&p->thread, NULL, producer_main, p), 0);
    p->started = true;
    return p;
}

static void producer_join(struct producer *p)
{
    pthread_join(p->thread, NULL);
    p->started = false;
    assert_int_equal(p->err, 0);
    assert_int_equal(atomic_load(&p->sent), p->n);
}

/* --------------------------------------------------------- pass-through */

/* Valid events reach both sides byte for byte; subscribers get only their
 * prefixes; producers may use the inproc twin or the outside endpoint. */
static void test_pass_through(void **state)
{
    struct fx *f = *state;
    bus_new(f, 1000, 64 * 1024);
    void *in_sub = sub_socket(f, VIGIL_BUS_OUT, "gen.", -1);
    void *ext_sub = sub_socket(f, f->sub, "gen.", -1);
    bus_start(f, 1);
    void *push_ipc = push_socket(f, f->pub);
    void *push_in = push_socket(f, VIGIL_BUS_IN);
    unsigned probes = join_external(f, push_ipc, ext_sub);

    const char *topics[] = {"gen.a",  "kvm.vm", "gen", "gen.b", "xgen.c", "gen.\xc3\xa9t\xc3\xa9",
                            "gen.end"};
    const size_t ntopics = sizeof topics / sizeof topics[0];
    const char *want[] = {"gen.a", "gen.b", "gen.\xc3\xa9t\xc3\xa9", "gen.end"};
    const size_t nwant = sizeof want / sizeof want[0];
    char bodies[4][BODY_MAX];
    size_t lens[4];

    for (int round = 0; round < 2; round++) {
        void *push = round == 0 ? push_ipc : push_in;
        size_t k = 0;
        for (size_t i = 0; i < ntopics; i++) {
            const char *body;
            size_t len;
            vigil_event_begin(&f->b, topics[i]);
            vigil_event_add_label(&f->b, "i", topics[i]);
            vigil_event_add_value(&f->b, "x", 0.5 * (double)i);
            vigil_event_attr_map_begin(&f->b, "m");
            vigil_event_add_attr_bool(&f->b, "round", round);
            vigil_event_attr_end(&f->b);
            assert_int_equal(
                vigil_event_finish(&f->b, "h", round ? "in" : "ipc", i + 1, &body, &len), 0);
            if (strncmp(topics[i], "gen.", 4) == 0) {
                assert_true(k < nwant && len <= BODY_MAX);
                memcpy(bodies[k], body, len);
                lens[k++] = len;
            }
            send2(push, topics[i], strlen(topics[i]), body, len);
        }
        void *subs[2] = {in_sub, ext_sub};
        for (int s = 0; s < 2; s++) {
            for (size_t i = 0; i < nwant; i++) {
                struct msg m;
                recv_real(subs[s], &m);
                if (!topic_is(&m, want[i])) {
                    fail_msg("round %d sub %d: got topic %.*s, want %s", round, s, (int)m.topic_len,
                             m.topic, want[i]);
                }
                assert_int_equal(m.body_len, lens[i]);
                assert_memory_equal(m.body, bodies[i], lens[i]);
            }
            struct msg extra;
            assert_false(recv_msg(subs[s], &extra, 0) && !topic_is(&extra, "probe"));
        }
    }
    uint64_t total = probes + 2 * ntopics;
    assert_int_equal(wait_count(&f->st->out_total, total), total);
    assert_int_equal(vigil_counter_get(&f->st->in_total), total);
    assert_int_equal(vigil_counter_get(&f->st->malformed_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->dropped_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->external_dropped_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->lost_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->seq_resets_total), 0);
    /* (test, probe), (h, ipc), (h, in) */
    assert_int_equal(vigil_counter_get(&f->st->sources_tracked), 3);
}

/* The bus skips the outside XPUB while nobody outside subscribes: a
 * subscriber that comes, goes and is followed by another must still get
 * events, and so must one whose prefix another subscriber also held. */
static void test_outside_subscribers_come_and_go(void **state)
{
    struct fx *f = *state;
    bus_new(f, 1000, 64 * 1024);
    bus_start(f, 0);
    void *push = push_socket(f, f->pub);
    for (int round = 0; round < 3; round++) {
        void *a = zmq_socket(f->zctx, ZMQ_SUB);
        void *b = zmq_socket(f->zctx, ZMQ_SUB);
        int linger = 0, timeout = RECV_MS;
        zmq_setsockopt(a, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(b, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(b, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
        assert_int_equal(zmq_connect(a, f->sub), 0);
        assert_int_equal(zmq_connect(b, f->sub), 0);
        assert_int_equal(zmq_setsockopt(b, ZMQ_SUBSCRIBE, "x.", 2), 0);
        join_external(f, push, a); /* a holds "probe" */
        zmq_close(a);              /* ... and drops it: b must still get "probe" */
        struct msg m;
        bool got = false;
        for (unsigned i = 0; i < 500 && !got; i++) {
            send_event(f, push, "x.after", "test", "after", (uint64_t)(round * 1000 + i + 1), 0);
            got = recv_msg(b, &m, 10) && topic_is(&m, "x.after");
        }
        assert_true(got);
        zmq_close(b);
    }
}

/* ready waits for the inproc subscriptions it was told to expect. */
static void test_ready_waits_for_subscriptions(void **state)
{
    struct fx *f = *state;
    bus_new(f, 1000, 64 * 1024);
    sub_socket(f, VIGIL_BUS_OUT, "a", -1);
    assert_int_equal(vigil_bus_start(f->bus, 2), 0);
    assert_int_equal(vigil_bus_wait_ready(f->bus, 200), -ETIMEDOUT);
    void *second = sub_socket(f, VIGIL_BUS_OUT, "b", -1);
    assert_int_equal(vigil_bus_wait_ready(f->bus, 5000), 0);
    /* And the one that arrived last is served from the first event on. */
    void *push = push_socket(f, VIGIL_BUS_IN);
    send_event(f, push, "b.x", "h", "s", 1, 0);
    struct msg m;
    assert_true(recv_msg(second, &m, RECV_MS));
    assert_true(topic_is(&m, "b.x"));
}

/* ----------------------------------------------------------- malformed */

#define MAX_EVENT 1024

struct bad_case {
    const char *name;
    int nframes;
    const void *frames[3];
    size_t lens[3];
};

/* After every kind of garbage the bus still passes the next valid event,
 * and nothing of the garbage. */
static void test_malformed_counted_and_dropped(void **state)
{
    struct fx *f = *state;
    bus_new(f, 1000, MAX_EVENT);
    void *sub = sub_socket(f, VIGIL_BUS_OUT, "", -1);
    bus_start(f, 1);
    void *push = push_socket(f, VIGIL_BUS_IN);

    /* A valid body to pair with bad topics and extra frames. */
    static char good[BODY_MAX];
    const char *body;
    size_t good_len;
    build(&f->b, "ok", "h", "bad", 1, 0, &body, &good_len);
    memcpy(good, body, good_len);

    static char random_body[200];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof random_body; i++) {
        x = x * 1103515245u + 12345u;
        random_body[i] = (char)(x >> 16);
    }
    random_body[0] = (char)0xc1; /* never valid msgpack, whatever follows */

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 1); /* not a map */
    msgpack_pack_int(&pk, 1);
    size_t array_len = sb.size;
    msgpack_pack_map(&pk, 3); /* no seq */
    msgpack_pack_str(&pk, 2);
    msgpack_pack_str_body(&pk, "ts", 2);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "host", 4);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "h", 1);
    msgpack_pack_str(&pk, 6);
    msgpack_pack_str_body(&pk, "source", 6);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "s", 1);
    const char *array_body = sb.data, *noseq_body = sb.data + array_len;
    size_t noseq_len = sb.size - array_len;

    static char long_topic[300];
    memset(long_topic, 'a', sizeof long_topic);

    static char big[2 * MAX_EVENT];
    size_t big_len;
    build(&f->b, "ok", "h", "big", 1, MAX_EVENT, &body, &big_len);
    assert_true(big_len > MAX_EVENT && big_len <= sizeof big);
    memcpy(big, body, big_len);

    const struct bad_case cases[] = {
        {"one frame", 1, {"ok"}, {2}},
        {"one empty frame", 1, {""}, {0}},
        {"three frames", 3, {"ok", good, "x"}, {2, good_len, 1}},
        {"random body", 2, {"ok", random_body}, {2, sizeof random_body}},
        {"empty body", 2, {"ok", ""}, {2, 0}},
        {"not a map", 2, {"ok", array_body}, {2, array_len}},
        {"no seq", 2, {"ok", noseq_body}, {2, noseq_len}},
        {"topic with space", 2, {"o k", good}, {3, good_len}},
        {"empty topic", 2, {"", good}, {0, good_len}},
        {"300-byte topic", 2, {long_topic, good}, {sizeof long_topic, good_len}},
        {"invalid UTF-8 topic", 2, {"ok\xc3(", good}, {4, good_len}},
        {"overlong UTF-8 topic", 2, {"\xc0\xae", good}, {2, good_len}},
        {"body > max_event_bytes", 2, {"ok", big}, {2, big_len}},
    };
    const size_t ncases = sizeof cases / sizeof cases[0];

    for (size_t i = 0; i < ncases; i++) {
        send_frames(push, cases[i].frames, cases[i].lens, cases[i].nframes);
        send_event(f, push, "ok", "h", "good", i + 1, 0);
        struct msg m;
        if (!recv_msg(sub, &m, RECV_MS)) {
            fail_msg("after \"%s\" the bus passed nothing on", cases[i].name);
        }
        if (!topic_is(&m, "ok") || seq_of(f, &m) != i + 1) {
            fail_msg("after \"%s\" the subscriber got something else (topic %.*s)", cases[i].name,
                     (int)m.topic_len, m.topic);
        }
        if (wait_count(&f->st->malformed_total, i + 1) != i + 1) {
            fail_msg("\"%s\" was not counted as malformed", cases[i].name);
        }
    }
    struct msg extra;
    assert_false(recv_msg(sub, &extra, 50));
    assert_int_equal(wait_count(&f->st->in_total, 2 * ncases), 2 * ncases);
    assert_int_equal(vigil_counter_get(&f->st->malformed_total), ncases);
    assert_int_equal(vigil_counter_get(&f->st->out_total), ncases);
    assert_int_equal(vigil_counter_get(&f->st->lost_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->seq_resets_total), 0);
    /* Only valid events are tracked: (h, good). */
    assert_int_equal(vigil_counter_get(&f->st->sources_tracked), 1);
    msgpack_sbuffer_destroy(&sb);
}

/* --------------------------------------------------------- seq tracking */

static void expect_passed(struct fx *f, void *sub, unsigned n)
{
    struct msg m;
    for (unsigned i = 0; i < n; i++) {
        if (!recv_msg(sub, &m, RECV_MS)) {
            fail_msg("only %u of %u events arrived", i, n);
        }
    }
    (void)f;
}

static void test_seq_gaps_and_resets(void **state)
{
    struct fx *f = *state;
    bus_new(f, 1000, 64 * 1024);
    void *sub = sub_socket(f, VIGIL_BUS_OUT, "", -1);
    bus_start(f, 1);
    void *push = push_socket(f, VIGIL_BUS_IN);
    unsigned sent = 0;

    /* (h, s): 1 2 3 6 -> two lost; (h, t) and (h2, s) interleaved, in order. */
    const struct {
        const char *host, *source;
        uint64_t seq;
    } steps[] = {
        {"h", "s", 1}, {"h", "t", 100}, {"h", "s", 2},   {"h2", "s", 7}, {"h", "t", 101},
        {"h", "s", 3}, {"h2", "s", 8},  {"h", "t", 102}, {"h", "s", 6},  {"h2", "s", 9},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        send_event(f, push, "t", steps[i].host, steps[i].source, steps[i].seq, 0);
        sent++;
    }
    expect_passed(f, sub, sent);
    assert_int_equal(wait_count(&f->st->out_total, sent), sent);
    assert_int_equal(vigil_counter_get(&f->st->lost_total), 2);
    assert_int_equal(vigil_counter_get(&f->st->seq_resets_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->sources_tracked), 3);

    /* (h, s) restarts at 1: a reset, no loss; then it counts on from 1. */
    send_event(f, push, "t", "h", "s", 1, 0);
    send_event(f, push, "t", "h", "s", 2, 0);
    send_event(f, push, "t", "h", "s", 3, 0);
    sent += 3;
    expect_passed(f, sub, 3);
    assert_int_equal(wait_count(&f->st->out_total, sent), sent);
    assert_int_equal(vigil_counter_get(&f->st->seq_resets_total), 1);
    assert_int_equal(vigil_counter_get(&f->st->lost_total), 2);

    /* A big jump in another source counts its gap only. */
    send_event(f, push, "t", "h", "t", 1102, 0);
    sent++;
    expect_passed(f, sub, 1);
    assert_int_equal(wait_count(&f->st->out_total, sent), sent);
    assert_int_equal(vigil_counter_get(&f->st->lost_total), 2 + 999);
    assert_int_equal(vigil_counter_get(&f->st->seq_resets_total), 1);
    assert_int_equal(vigil_counter_get(&f->st->sources_tracked), 3);
}

/* What the ingest endpoint hands on (VIGIL_BUS_TRUSTED): a batch of
 * checked events in one message reaches the stages like any event, seqs
 * not tracked (gaps there are an agent's match, counted on the agent); a
 * damaged batch (a bug in this process) is counted malformed, and what came
 * before it in the batch still passes. */
static void test_trusted_batches(void **state)
{
    struct fx *f = *state;
    bus_new(f, 1000, 64 * 1024);
    void *sub = sub_socket(f, VIGIL_BUS_OUT, "", -1);
    bus_start(f, 1);
    void *push = push_socket(f, VIGIL_BUS_TRUSTED);
    struct vigil_bus_handoff h;
    vigil_bus_handoff_init(&h);
    const uint64_t seqs[] = {1, 5, 2}; /* a gap, then a late one: neither counted */
    for (size_t i = 0; i < 3; i++) {
        const char *body, *why;
        size_t len;
        struct vigil_event_head head;
        build(&f->b, "gen.x", "h", "s", seqs[i], 0, &body, &len);
        assert_int_equal(vigil_event_check("gen.x", 5, body, len, 1 << 20, &head, &why), 0);
        assert_int_equal(vigil_bus_handoff_add(&h, "gen.x", 5, body, len), 0);
    }
    assert_int_equal(h.n, 3);
    assert_int_equal(vigil_bus_handoff_send(&h, push, 0), 0);
    assert_int_equal(h.n, 0);
    struct msg m;
    for (size_t i = 0; i < 3; i++) {
        assert_true(recv_msg(sub, &m, RECV_MS));
        assert_int_equal(m.topic_len, 5);
        assert_memory_equal(m.topic, "gen.x", 5);
    }
    assert_int_equal(wait_count(&f->st->out_total, 3), 3);
    assert_int_equal(vigil_counter_get(&f->st->lost_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->seq_resets_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->malformed_total), 0);

    /* One good entry, then 7 bytes that are no entry header. */
    const char *body, *why;
    size_t len;
    struct vigil_event_head head;
    build(&f->b, "gen.x", "h", "s", 6, 0, &body, &len);
    assert_int_equal(vigil_event_check("gen.x", 5, body, len, 1 << 20, &head, &why), 0);
    assert_int_equal(vigil_bus_handoff_add(&h, "gen.x", 5, body, len), 0);
    char damaged[1 << 12];
    assert_true(h.len + 7 <= sizeof damaged);
    memcpy(damaged, h.buf, h.len);
    memset(damaged + h.len, 0xff, 7);
    assert_int_equal(zmq_send(push, damaged, h.len + 7, 0), (int)(h.len + 7));
    assert_true(recv_msg(sub, &m, RECV_MS));
    assert_int_equal(wait_count(&f->st->malformed_total, 1), 1);
    /* A header whose lengths run past the message. */
    uint32_t bogus[4] = {5, 1000000};
    assert_int_equal(zmq_send(push, bogus, sizeof bogus, 0), (int)sizeof bogus);
    assert_int_equal(wait_count(&f->st->malformed_total, 2), 2);
    assert_int_equal(vigil_counter_get(&f->st->out_total), 4);
    vigil_bus_handoff_fini(&h);
}

/* What in-process sources send (VIGIL_BUS_SOURCES): one message holds many
 * events, each a record with its own topic. Unlike the trusted batches,
 * every event is checked and its seq tracked: a malformed one is counted
 * and dropped while the rest of its batch passes, in order; a gap is lost;
 * a damaged tail is counted and what came before it passes. */
static void test_source_batches(void **state)
{
    struct fx *f = *state;
    bus_new(f, 1000, 64 * 1024);
    void *sub = sub_socket(f, VIGIL_BUS_OUT, "", -1);
    bus_start(f, 1);
    void *push = push_socket(f, VIGIL_BUS_SOURCES);
    struct vigil_record_buf rb;
    vigil_record_init(&rb, 256, 256u << 10, VIGIL_RECORD_ONE_ANY_SIZE);
    const char *topics[] = {"gen.a", "kvm.vm", "gen.a", "gen.b", "gen.a"};
    const uint64_t seqs[] = {1, 2, 3, 5, 6}; /* 4 is missing: one lost */
    for (size_t i = 0; i < 5; i++) {
        const char *body;
        size_t len;
        build(&f->b, topics[i], "h", "src", seqs[i], 0, &body, &len);
        assert_int_equal(vigil_record_append(&rb, topics[i], strlen(topics[i]), body, len), 0);
        if (i == 1) { /* not msgpack at all, between two good ones */
            assert_int_equal(vigil_record_append(&rb, "gen.bad", 7, "\xc1\xc1", 2), 0);
        }
    }
    assert_int_equal(zmq_send(push, vigil_record_data(&rb), vigil_record_bytes(&rb), 0),
                     (int)vigil_record_bytes(&rb));
    struct msg m;
    for (size_t i = 0; i < 5; i++) {
        assert_true(recv_msg(sub, &m, RECV_MS));
        if (!topic_is(&m, topics[i])) {
            fail_msg("event %zu: topic %.*s, want %s", i, (int)m.topic_len, m.topic, topics[i]);
        }
        assert_int_equal(seq_of(f, &m), seqs[i]);
    }
    assert_int_equal(wait_count(&f->st->out_total, 5), 5);
    assert_int_equal(vigil_counter_get(&f->st->malformed_total), 1);
    assert_int_equal(vigil_counter_get(&f->st->lost_total), 1);
    assert_int_equal(vigil_counter_get(&f->st->sources_tracked), 1);

    /* One event alone (a source outside a batch), then one followed by 7
     * bytes that are no record header. */
    vigil_record_clear(&rb);
    const char *body;
    size_t len;
    build(&f->b, "gen.a", "h", "src", 7, 0, &body, &len);
    assert_int_equal(vigil_record_append(&rb, "gen.a", 5, body, len), 0);
    assert_int_equal(zmq_send(push, vigil_record_data(&rb), vigil_record_bytes(&rb), 0),
                     (int)vigil_record_bytes(&rb));
    assert_true(recv_msg(sub, &m, RECV_MS));
    assert_int_equal(seq_of(f, &m), 7);
    vigil_record_clear(&rb);
    build(&f->b, "gen.a", "h", "src", 8, 0, &body, &len);
    assert_int_equal(vigil_record_append(&rb, "gen.a", 5, body, len), 0);
    char damaged[1 << 12];
    size_t n = vigil_record_bytes(&rb);
    assert_true(n + 7 <= sizeof damaged);
    memcpy(damaged, vigil_record_data(&rb), n);
    memset(damaged + n, 0xff, 7);
    assert_int_equal(zmq_send(push, damaged, n + 7, 0), (int)(n + 7));
    assert_true(recv_msg(sub, &m, RECV_MS));
    assert_int_equal(seq_of(f, &m), 8);
    assert_int_equal(wait_count(&f->st->malformed_total, 2), 2);
    /* The bus counts a batch out once it is sent: a subscriber may have it
     * first. */
    assert_int_equal(wait_count(&f->st->out_total, 7), 7);
    assert_int_equal(vigil_counter_get(&f->st->lost_total), 1);
    assert_int_equal(vigil_counter_get(&f->st->seq_resets_total), 0);
    vigil_record_fini(&rb);
}

/* Appends an event of (topic, host "h", source) to a producer's batch. */
static void batch_add(struct fx *f, struct vigil_record_buf *rb, const char *topic,
                      const char *source, uint64_t seq)
{
    const char *body;
    size_t len;
    build(&f->b, topic, "h", source, seq, 0, &body, &len);
    assert_int_equal(vigil_record_append(rb, topic, strlen(topic), body, len), 0);
}

static void send_batch(void *push, const struct vigil_record_buf *rb)
{
    send2(push, "", VIGIL_BUS_PUBLISH_BATCH_LEN, vigil_record_data(rb), vigil_record_bytes(rb));
}

/* Producers' batches (an empty first frame, then records: bus.h) on the
 * outside endpoint and on VIGIL_BUS_IN: every event is checked, tracked and
 * passed on in order as if sent alone (outside subscribers get one per
 * message); a bad record, a damaged tail, an oversized batch and a batch
 * with a third frame are counted, an empty batch is nothing. */
static void test_producer_batches(void **state)
{
    struct fx *f = *state;
    bus_new(f, 1000, 64 * 1024);
    void *in_sub = sub_socket(f, VIGIL_BUS_OUT, "", -1);
    void *ext_sub = sub_socket(f, f->sub, "gen.", -1);
    assert_int_equal(zmq_setsockopt(ext_sub, ZMQ_SUBSCRIBE, "kvm.", 4), 0);
    bus_start(f, 1);
    void *push_ipc = push_socket(f, f->pub);
    void *push_in = push_socket(f, VIGIL_BUS_IN);
    unsigned probes = join_external(f, push_ipc, ext_sub);
    struct vigil_record_buf rb;
    vigil_record_init(&rb, SIZE_MAX, SIZE_MAX, 0);
    const char *topics[] = {"gen.a", "kvm.vm", "gen.a", "gen.b", "gen.a", "gen.a", "gen.a"};
    const uint64_t seqs[] = {1, 2, 3, 5, 6, 7, 8}; /* 4 is missing: one lost */
    size_t big_len = VIGIL_BUS_PUBLISH_BATCH_MAX + 1;
    char *big = calloc(1, big_len);
    assert_non_null(big);

    for (int round = 0; round < 2; round++) {
        void *push = round == 0 ? push_ipc : push_in;
        const char *src = round == 0 ? "ipc" : "in";
        /* Five good events and one that is not msgpack at all. */
        vigil_record_clear(&rb);
        for (size_t i = 0; i < 5; i++) {
            batch_add(f, &rb, topics[i], src, seqs[i]);
            if (i == 1) {
                assert_int_equal(vigil_record_append(&rb, "gen.bad", 7, "\xc1\xc1", 2), 0);
            }
        }
        send_batch(push, &rb);
        vigil_record_clear(&rb);
        send_batch(push, &rb); /* empty */
        /* One event, then 7 bytes that are no record header. */
        batch_add(f, &rb, topics[5], src, seqs[5]);
        char damaged[1 << 12];
        size_t n = vigil_record_bytes(&rb);
        assert_true(n + 7 <= sizeof damaged);
        memcpy(damaged, vigil_record_data(&rb), n);
        memset(damaged + n, 0xff, 7);
        send2(push, "", 0, damaged, n + 7);
        /* seq 8 in a batch over the bound, then in one with a third
         * frame: both refused whole, so seq 8 alone is no reset. */
        vigil_record_clear(&rb);
        batch_add(f, &rb, topics[6], src, seqs[6]);
        memcpy(big, vigil_record_data(&rb), vigil_record_bytes(&rb));
        send2(push, "", 0, big, big_len);
        const void *frames[3] = {"", vigil_record_data(&rb), "x"};
        size_t lens[3] = {0, vigil_record_bytes(&rb), 1};
        send_frames(push, frames, lens, 3);
        send_event(f, push, topics[6], "h", src, seqs[6], 0);

        void *subs[2] = {in_sub, ext_sub};
        for (int s = 0; s < 2; s++) {
            for (size_t i = 0; i < 7; i++) {
                struct msg m;
                recv_real(subs[s], &m);
                if (!topic_is(&m, topics[i])) {
                    fail_msg("round %d sub %d event %zu: topic %.*s, want %s", round, s, i,
                             (int)m.topic_len, m.topic, topics[i]);
                }
                assert_int_equal(seq_of(f, &m), seqs[i]);
            }
            struct msg extra;
            assert_false(recv_msg(subs[s], &extra, 0) && !topic_is(&extra, "probe"));
        }
        /* Per round: 7 events passed, 4 malformed (the bad record, the
         * tail, the two refused batches), 11 in. */
        uint64_t out = probes + 7 * (round + 1), bad = 4 * (round + 1);
        assert_int_equal(wait_count(&f->st->out_total, out), out);
        assert_int_equal(wait_count(&f->st->malformed_total, bad), bad);
        assert_int_equal(vigil_counter_get(&f->st->in_total), out + bad);
        assert_int_equal(vigil_counter_get(&f->st->lost_total), round + 1);
        assert_int_equal(vigil_counter_get(&f->st->seq_resets_total), 0);
    }
    assert_int_equal(vigil_counter_get(&f->st->external_dropped_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->dropped_total), 0);
    /* (test, probe), (h, ipc), (h, in) */
    assert_int_equal(vigil_counter_get(&f->st->sources_tracked), 3);
    free(big);
    vigil_record_fini(&rb);
}

/* Packs a minimal event whose host and source may hold NUL bytes. */
static size_t pack_raw(msgpack_sbuffer *sb, const char *host, size_t hn, const char *source,
                       size_t sn, uint64_t seq)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    sb->size = 0;
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str(&pk, 2);
    msgpack_pack_str_body(&pk, "ts", 2);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "host", 4);
    msgpack_pack_str(&pk, hn);
    msgpack_pack_str_body(&pk, host, hn);
    msgpack_pack_str(&pk, 6);
    msgpack_pack_str_body(&pk, "source", 6);
    msgpack_pack_str(&pk, sn);
    msgpack_pack_str_body(&pk, source, sn);
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "seq", 3);
    msgpack_pack_uint64(&pk, seq);
    return sb->size;
}

/* (host "a\0b", source "c") and (host "a", source "b\0c") are two sources.
 * The bus may refuse NUL bytes in host/source altogether; what it must not
 * do is mistake one for the other and count resets that did not happen. */
static void test_seq_sources_with_nul_bytes_are_distinct(void **state)
{
    struct fx *f = *state;
    bus_new(f, 1000, 64 * 1024);
    bus_start(f, 0);
    void *push = push_socket(f, VIGIL_BUS_IN);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (uint64_t seq = 1; seq <= 3; seq++) {
        pack_raw(&sb, "a\0b", 3, "c", 1, seq);
        send2(push, "t", 1, sb.data, sb.size);
        pack_raw(&sb, "a", 1, "b\0c", 3, seq);
        send2(push, "t", 1, sb.data, sb.size);
    }
    msgpack_sbuffer_destroy(&sb);
    uint64_t deadline = now_ms() + WAIT_MS, out, malformed;
    while ((out = vigil_counter_get(&f->st->out_total)) +
                   (malformed = vigil_counter_get(&f->st->malformed_total)) <
               6 &&
           now_ms() < deadline) {
        sleep_ms(1);
    }
    if (malformed == 6) {
        return; /* refused: fine */
    }
    assert_int_equal(malformed, 0);
    assert_int_equal(out, 6);
    assert_int_equal(vigil_counter_get(&f->st->seq_resets_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->lost_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->sources_tracked), 2);
}

/* ------------------------------------------------------------- lossless */

#define LOAD_N 200000u

/* A small HWM everywhere and a subscriber that reads in bursts and pauses:
 * the producer is held back, nothing is dropped, order is kept. */
static void test_lossless_inproc_under_load(void **state)
{
    struct fx *f = *state;
    bus_new(f, 100, 64 * 1024);
    void *sub = sub_socket(f, VIGIL_BUS_OUT, "gen.", 100);
    bus_start(f, 1);
    struct producer *p = producer_start(f, VIGIL_BUS_IN, "gen.load", 1, LOAD_N, 100, 0);

    struct msg m;
    for (unsigned i = 0; i < LOAD_N; i++) {
        if (i % 2000 == 0) {
            sleep_ms(1); /* the producer runs ahead and fills every queue */
        }
        if (!recv_msg(sub, &m, RECV_MS)) {
            fail_msg("event %u of %u never arrived (producer sent %u)", i + 1, LOAD_N,
                     atomic_load(&p->sent));
        }
        uint64_t seq = seq_of(f, &m);
        if (seq != i + 1) {
            fail_msg("event %u arrived as seq %llu", i + 1, (unsigned long long)seq);
        }
    }
    producer_join(p);
    assert_false(recv_msg(sub, &m, 50));
    assert_int_equal(wait_count(&f->st->out_total, LOAD_N), LOAD_N);
    assert_int_equal(vigil_counter_get(&f->st->in_total), LOAD_N);
    assert_int_equal(vigil_counter_get(&f->st->dropped_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->lost_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->malformed_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->seq_resets_total), 0);
}

/* bus.coalesce: after handing events on, the bus waits the window before
 * the next. A subscriber that sends each event only after the previous one
 * came back therefore sees one per window; nothing is lost or reordered.
 * (Only the lower bound is checked: a slow machine cannot make it fail.) */
static void test_coalesce_window(void **state)
{
    struct fx *f = *state;
    enum { N = 20, WINDOW_MS = 10 };
    coalesce_ns = WINDOW_MS * 1000000ull;
    bus_new(f, 1000, 64 * 1024);
    void *sub = sub_socket(f, VIGIL_BUS_OUT, "gen.", -1);
    bus_start(f, 1);
    void *push = push_socket(f, VIGIL_BUS_IN);
    uint64_t start = vigil_mono_ns();
    for (unsigned i = 1; i <= N; i++) {
        const char *body;
        size_t len;
        vigil_event_begin(&f->b, "gen.window");
        assert_int_equal(vigil_event_finish(&f->b, "h", "w", i, &body, &len), 0);
        send2(push, "gen.window", 10, body, len);
        struct msg m;
        recv_real(sub, &m);
        uint64_t seq = seq_of(f, &m);
        if (seq != i) {
            fail_msg("event %u arrived as seq %llu", i, (unsigned long long)seq);
        }
    }
    uint64_t ms = (vigil_mono_ns() - start) / 1000000u;
    /* Each event needs a drain of its own unless it slipped into the
     * previous one (it is sent only after that one was received): at least
     * half of the N - 1 waits happen, whatever the machine's load. */
    if (ms < (N / 2) * WINDOW_MS) {
        fail_msg("%d events one after another took %llu ms: the bus did not wait %d ms "
                 "between hand-ons",
                 N, (unsigned long long)ms, WINDOW_MS);
    }
    assert_int_equal(vigil_counter_get(&f->st->dropped_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->lost_total), 0);
}

/* Reads one batch message from an in-process subscriber and checks every
 * event in it: published under this message's topic (the test puts the
 * topic in `host`), the next seq it expects after *seq (skipping what
 * `want` does not match), at most VIGIL_BUS_BATCH_EVENTS, and an event
 * over VIGIL_BUS_BATCH_BYTES alone. Returns the events in the message. */
static unsigned check_batch(struct fx *f, void *s, const char *want, uint64_t *seq,
                            const char *(*topic_of)(uint64_t))
{
    zmq_msg_t t, b;
    zmq_msg_init(&t);
    zmq_msg_init(&b);
    assert_true(zmq_msg_recv(&t, s, 0) >= 0);
    assert_true(zmq_msg_more(&t));
    assert_true(zmq_msg_recv(&b, s, 0) >= 0);
    assert_false(zmq_msg_more(&b));
    struct vigil_record_iter it = vigil_record_iter_bytes(zmq_msg_data(&b), zmq_msg_size(&b));
    struct vigil_record r;
    unsigned n = 0;
    bool big = false;
    while (vigil_record_next(&it, &r)) {
        const char *body = r.body;
        size_t bl = r.body_len;
        n++;
        assert_int_equal(r.topic_len, 0); /* the topic is the first frame */
        big |= bl > VIGIL_BUS_BATCH_BYTES;
        struct vigil_event_view v;
        const char *why = NULL;
        msgpack_zone_clear(&f->zone);
        if (vigil_event_decode(&v, zmq_msg_data(&t), zmq_msg_size(&t), body, bl, 1 << 20, &f->zone,
                               &why) != 0) {
            fail_msg("event %u of a batch does not decode: %s", n, why);
        }
        do {
            ++*seq;
        } while (strncmp(topic_of(*seq), want, strlen(want)) != 0);
        if (v.seq != *seq) {
            fail_msg("seq %llu arrived where %llu was due", (unsigned long long)v.seq,
                     (unsigned long long)*seq);
        }
        if (zmq_msg_size(&t) != v.host_len || memcmp(zmq_msg_data(&t), v.host, v.host_len) != 0 ||
            strlen(topic_of(v.seq)) != v.host_len) {
            fail_msg("seq %llu (published as %s) came in a batch of topic %.*s",
                     (unsigned long long)v.seq, topic_of(v.seq), (int)zmq_msg_size(&t),
                     (const char *)zmq_msg_data(&t));
        }
    }
    assert_false(vigil_record_iter_damaged(&it));
    assert_true(n >= 1 && n <= VIGIL_BUS_BATCH_EVENTS);
    if (big && n != 1) {
        fail_msg("an event over %u bytes shared a batch with %u others", VIGIL_BUS_BATCH_BYTES,
                 n - 1);
    }
    zmq_msg_close(&t);
    zmq_msg_close(&b);
    return n;
}

/* Runs of 7 events per topic, cycling over three topics, and one run of
 * 300 (longer than a batch). */
static const char *batch_topic(uint64_t seq)
{
    static const char *const t[] = {"gen.a", "gen.b", "x.c"};
    return seq > 1000 && seq <= 1300 ? "gen.b" : t[((seq - 1) / 7) % 3];
}

/* In-process subscribers get events batched (bus.h): every message holds
 * events of its topic only, in publishing order, at most 64, a big event
 * alone; a prefix subscriber gets exactly its topics' events; nothing is
 * lost. The bus coalesces (50 ms) so that batches form whatever the
 * machine's speed. */
static void test_inproc_batches(void **state)
{
    struct fx *f = *state;
    enum { N = 2000, BIG_EVERY = 250 };
    coalesce_ns = 50 * 1000000ull;
    bus_new(f, 100000, 256 * 1024);
    void *all = sub_socket(f, VIGIL_BUS_OUT, "", 0);
    void *gen = sub_socket(f, VIGIL_BUS_OUT, "gen.", 0);
    bus_start(f, 2);
    void *push = push_socket(f, VIGIL_BUS_IN);
    unsigned want_gen = 0;
    for (uint64_t i = 1; i <= N; i++) {
        const char *body;
        size_t len;
        const char *topic = batch_topic(i);
        size_t pad = i % BIG_EVERY == 0 ? VIGIL_BUS_BATCH_BYTES + 100 : 0;
        build(&f->b, topic, topic, "s", i, pad, &body, &len);
        send2(push, topic, strlen(topic), body, len);
        want_gen += strncmp(topic, "gen.", 4) == 0;
    }
    uint64_t seq = 0;
    unsigned got = 0, msgs = 0, most = 0;
    while (got < N) {
        unsigned n = check_batch(f, all, "", &seq, batch_topic);
        got += n;
        msgs++;
        most = n > most ? n : most;
    }
    assert_int_equal(got, N);
    seq = 0;
    got = 0;
    while (got < want_gen) {
        got += check_batch(f, gen, "gen.", &seq, batch_topic);
    }
    assert_int_equal(got, want_gen);
    /* Runs of 7 sent within one 50 ms window: batches did form. */
    if (most < 2) {
        fail_msg("%u events came in %u messages: nothing was batched", N, msgs);
    }
    assert_int_equal(wait_count(&f->st->out_total, N), N);
    /* (lost_total counts here: each topic's host sees the shared seq jump.) */
    assert_int_equal(vigil_counter_get(&f->st->dropped_total), 0);
    zmq_pollitem_t it[2] = {{.socket = all, .events = ZMQ_POLLIN},
                            {.socket = gen, .events = ZMQ_POLLIN}};
    assert_int_equal(zmq_poll(it, 2, 50), 0); /* nothing twice */
}

/* A batch frame of the given bodies (bus.h): records with an empty topic,
 * written by hand; `cut` bytes short of the last. */
static size_t make_batch(char *out, const char *const *bodies, int n, size_t cut)
{
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        uint32_t l[2] = {0, (uint32_t)strlen(bodies[i])};
        memcpy(out + len, l, sizeof l);
        memcpy(out + len + sizeof l, bodies[i], l[1]);
        len += sizeof l + l[1];
    }
    return len - cut;
}

/* The stages' reader hands out a batch's events one by one and skips, one
 * error each, what is not a batch: a one-frame message, one of three
 * frames, a batch's damaged rest (after its good events), and a record with
 * a topic of its own (before the good one after it). */
static void test_reader_skips_what_is_not_a_batch(void **state)
{
    struct fx *f = *state;
    void *pub = track(f, zmq_socket(f->zctx, ZMQ_XPUB));
    assert_int_equal(zmq_bind(pub, "inproc://test-reader"), 0);
    void *sub = sub_socket(f, "inproc://test-reader", "", -1);
    char sub_msg[8];
    assert_true(zmq_recv(pub, sub_msg, sizeof sub_msg, 0) >= 1); /* it has joined */

    char frame[256];
    static const char *const one_bad[] = {"first", "cut"};
    static const char *const two[] = {"second", "third"};
    assert_int_equal(zmq_send(pub, "x", 1, 0), 1);
    assert_int_equal(zmq_send(pub, "t", 1, ZMQ_SNDMORE), 1);
    assert_true(zmq_send(pub, frame, make_batch(frame, two, 2, 0), ZMQ_SNDMORE) > 0);
    assert_int_equal(zmq_send(pub, "extra", 5, 0), 5);
    send2(pub, "t", 1, frame, make_batch(frame, one_bad, 2, 1));
    send2(pub, "u", 1, frame, make_batch(frame, two, 2, 0));
    static const char *const fourth[] = {"fourth"};
    uint32_t own[2] = {1, 3};
    memcpy(frame, own, sizeof own);
    memcpy(frame + sizeof own, "zown", 4);
    size_t len = sizeof own + 4;
    len += make_batch(frame + len, fourth, 1, 0);
    send2(pub, "v", 1, frame, len);

    struct vigil_bus_reader r;
    vigil_bus_reader_init(&r);
    static const char *const want[] = {"-1",       "-1",      "t:first", "-1",
                                       "u:second", "u:third", "-1",      "v:fourth"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const char *t, *b;
        size_t tl, bl;
        int rc;
        for (int tries = 0; (rc = vigil_bus_reader_next(&r, sub, &t, &tl, &b, &bl)) == 0; tries++) {
            assert_true(tries < RECV_MS);
            sleep_ms(1);
        }
        char got[64];
        if (rc == 1) {
            snprintf(got, sizeof got, "%.*s:%.*s", (int)tl, t, (int)bl, b);
        } else {
            snprintf(got, sizeof got, "%d", rc);
        }
        if (strcmp(got, want[i]) != 0) {
            fail_msg("read %zu gave %s, not %s", i + 1, got, want[i]);
        }
    }
    const char *t, *b;
    size_t tl, bl;
    sleep_ms(20);
    assert_int_equal(vigil_bus_reader_next(&r, sub, &t, &tl, &b, &bl), 0);
    vigil_bus_reader_fini(&r);
}

/* An outside subscriber that stops reading loses events, counted; the inside
 * still gets every one. */
static void test_external_drops_counted(void **state)
{
    struct fx *f = *state;
    const unsigned n = 5000;
    bus_new(f, 10, 64 * 1024);
    void *in_sub = sub_socket(f, VIGIL_BUS_OUT, "gen.", 10);
    void *ext_sub = sub_socket(f, f->sub, "gen.", 10);
    bus_start(f, 1);
    void *push = push_socket(f, VIGIL_BUS_IN);
    unsigned probes = join_external(f, push, ext_sub);

    /* From here on ext_sub is never read. */
    struct producer *p = producer_start(f, VIGIL_BUS_IN, "gen.x", 1, n, 10, 1000);
    struct msg m;
    for (unsigned i = 0; i < n; i++) {
        if (!recv_msg(in_sub, &m, RECV_MS)) {
            fail_msg("inproc event %u of %u never arrived", i + 1, n);
        }
        assert_int_equal(seq_of(f, &m), i + 1);
    }
    producer_join(p);
    uint64_t total = probes + n;
    assert_int_equal(wait_count(&f->st->out_total, total), total);
    assert_int_equal(vigil_counter_get(&f->st->in_total), total);
    uint64_t ext_dropped = vigil_counter_get(&f->st->external_dropped_total);
    assert_true(ext_dropped > 0);
    assert_true(ext_dropped <= n);
    assert_int_equal(vigil_counter_get(&f->st->dropped_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->lost_total), 0);
    assert_int_equal(vigil_counter_get(&f->st->malformed_total), 0);

    /* What the outsider did get is the events that were not dropped, in
     * order (after any late probes). */
    uint64_t last = 0, got = 0;
    while (recv_msg(ext_sub, &m, 100)) {
        if (topic_is(&m, "probe")) {
            continue;
        }
        uint64_t seq = seq_of(f, &m);
        assert_true(seq > last);
        last = seq;
        got++;
    }
    /* ZeroMQ reports a full subscriber once per overflow (its pipe is then
     * passed over until it reads again): at least one, no more than the
     * events it missed. */
    assert_true(got < n);
    assert_true(ext_dropped <= n - got);
}

/* One outside subscriber that stops reading must not silence the others:
 * it loses its own events (each counted once in external_dropped_total), a
 * reading one beside it on the same topics gets every event, in order, and
 * so do the daemon's own stages. */
static void test_stalled_outsider_does_not_silence_others(void **state)
{
    struct fx *f = *state;
    const unsigned n = 20000;
    bus_new(f, 100, 64 * 1024);
    void *in_sub = sub_socket(f, VIGIL_BUS_OUT, "gen.", 10);
    void *stalled = sub_socket(f, f->sub, "gen.", 10);
    void *reader = sub_socket(f, f->sub, "gen.", 1000);
    bus_start(f, 1);
    void *push = push_socket(f, VIGIL_BUS_IN);
    join_external(f, push, stalled); /* from here on never read */
    join_external(f, push, reader);

    /* One event at a time, each read by the stages and the reader before the
     * next: the reader is never behind; the stalled one's queue fills. */
    struct msg m;
    for (unsigned i = 1; i <= n; i++) {
        send_event(f, push, "gen.x", "test", "gen", i, 100);
        if (!recv_msg(in_sub, &m, RECV_MS)) {
            fail_msg("inproc event %u of %u never arrived", i, n);
        }
        assert_int_equal(seq_of(f, &m), i);
        do {
            if (!recv_msg(reader, &m, RECV_MS)) {
                fail_msg("the reading subscriber never got event %u of %u (%llu overflows of "
                         "the stalled one)",
                         i, n,
                         (unsigned long long)vigil_counter_get(&f->st->external_dropped_total));
            }
        } while (topic_is(&m, "probe"));
        assert_int_equal(seq_of(f, &m), i);
    }
    assert_true(vigil_counter_get(&f->st->external_dropped_total) > 0); /* it did fill */
    assert_int_equal(vigil_counter_get(&f->st->dropped_total), 0);
}

/* ----------------------------------------------------------- endpoints */

static void test_new_refuses_bogus_publish(void **state)
{
    struct fx *f = *state;
    assert_null(new_bus(f, "bogus://x", f->sub, 1000, 1024));
    assert_true(strlen(f->err) > 0);
    assert_non_null(strstr(f->err, "bogus://x"));
}

static void test_new_refuses_bogus_subscribe(void **state)
{
    struct fx *f = *state;
    assert_null(new_bus(f, f->pub, "bogus://x", 1000, 1024));
    assert_non_null(strstr(f->err, "bogus://x"));
}

static int listen_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof sa.sun_path);
    strcpy(sa.sun_path, path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 1), 0);
    return fd;
}

/* An ipc endpoint someone is listening on is not taken over. */
static void test_new_refuses_ipc_in_use(void **state)
{
    struct fx *f = *state;
    const char *path = f->pub + strlen("ipc://");
    int fd = listen_unix(path);
    struct vigil_bus *b = new_bus(f, f->pub, f->sub, 1000, 1024);
    close(fd);
    if (b) {
        f->bus = b;
        fail_msg("vigil_bus_new took over a listening socket");
    }
    assert_non_null(strstr(f->err, "in use"));
    assert_non_null(strstr(f->err, f->pub));
}

static void test_new_refuses_ipc_in_use_subscribe(void **state)
{
    struct fx *f = *state;
    const char *path = f->sub + strlen("ipc://");
    int fd = listen_unix(path);
    struct vigil_bus *b = new_bus(f, f->pub, f->sub, 1000, 1024);
    close(fd);
    if (b) {
        f->bus = b;
        fail_msg("vigil_bus_new took over a listening socket");
    }
    assert_non_null(strstr(f->err, "in use"));
    assert_non_null(strstr(f->err, f->sub));
}

/* A socket file nobody listens on (a crashed daemon's) is not "in use". */
static void test_new_reuses_stale_ipc_file(void **state)
{
    struct fx *f = *state;
    close(listen_unix(f->pub + strlen("ipc://")));
    bus_new(f, 1000, 1024);
    void *sub = sub_socket(f, VIGIL_BUS_OUT, "", -1);
    bus_start(f, 1);
    void *push = push_socket(f, f->pub);
    send_event(f, push, "t", "h", "s", 1, 0);
    struct msg m;
    assert_true(recv_msg(sub, &m, RECV_MS));
    assert_true(topic_is(&m, "t"));
}

/* Missing folders of an ipc endpoint are created. */
static void test_new_creates_folders(void **state)
{
    struct fx *f = *state;
    char pub[200], sub[200], path[200];
    snprintf(pub, sizeof pub, "ipc://%s/run/vigil/pub", f->dir);
    snprintf(sub, sizeof sub, "ipc://%s/other/sub", f->dir);
    f->bus = new_bus(f, pub, sub, 1000, 1024);
    if (!f->bus) {
        fail_msg("vigil_bus_new: %s", f->err);
    }
    f->st = vigil_bus_stats(f->bus);
    struct stat st;
    snprintf(path, sizeof path, "%s/run/vigil", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(stat(pub + 6, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(stat(sub + 6, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));

    /* And the endpoint works. */
    void *in_sub = sub_socket(f, VIGIL_BUS_OUT, "", -1);
    bus_start(f, 1);
    void *push = push_socket(f, pub);
    send_event(f, push, "t", "h", "s", 1, 0);
    struct msg m;
    assert_true(recv_msg(in_sub, &m, RECV_MS));
    assert_true(topic_is(&m, "t"));
}

/* ------------------------------------------------------ drain and stop */

static void test_drain_after_producers_stop(void **state)
{
    struct fx *f = *state;
    const unsigned n = 20000;
    bus_new(f, 1000, 64 * 1024);
    void *sub = sub_socket(f, VIGIL_BUS_OUT, "", 0); /* unbounded: never holds the bus */
    bus_start(f, 1);
    struct producer *p = producer_start(f, VIGIL_BUS_IN, "gen.d", 1, n, 0, 0);
    producer_join(p);
    /* Everything pushed is queued at the bus: drain must forward it all. */
    assert_int_equal(vigil_bus_drain(f->bus, 5000), 0);
    assert_int_equal(vigil_counter_get(&f->st->in_total), n);
    assert_int_equal(vigil_counter_get(&f->st->out_total), n);
    struct msg m;
    for (unsigned i = 0; i < n; i++) {
        assert_true(recv_msg(sub, &m, RECV_MS));
    }
    /* Nothing more to forward: a second drain is quick and also 0. */
    assert_int_equal(vigil_bus_drain(f->bus, 5000), 0);
}

static void *reader_main(void *arg)
{
    struct fx *f = arg;
    while (!atomic_load(&f->reader_go)) {
        sleep_ms(1);
    }
    char buf[BODY_MAX];
    while (zmq_recv(f->reader_sock, buf, sizeof buf, 0) >= 0) {
        int more = 0;
        size_t ml = sizeof more;
        zmq_getsockopt(f->reader_sock, ZMQ_RCVMORE, &more, &ml);
        if (!more) {
            atomic_fetch_add(&f->reader_got, 1);
        }
    }
    return NULL; /* RCVTIMEO, or the context is shutting down */
}

/* A drain that timed out must not make the next drain return early: its late
 * answer is not the answer to the next one. */
static void test_drain_after_timed_out_drain(void **state)
{
    struct fx *f = *state;
    const unsigned n = 5000; /* well over what the subscriber's queue holds */
    bus_new(f, 10, 64 * 1024);
    f->reader_sock = sub_socket(f, VIGIL_BUS_OUT, "", 10);
    int timeout = 1000;
    zmq_setsockopt(f->reader_sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    bus_start(f, 1);
    /* Shorter than the bus's quiet period: times out... */
    assert_int_equal(vigil_bus_drain(f->bus, 1), -ETIMEDOUT);
    /* ...and the bus finishes that drain in the background. */
    sleep_ms(200);

    /* The subscriber is not read yet: the bus forwards a few and waits with
     * the rest queued. */
    struct producer *p = producer_start(f, VIGIL_BUS_IN, "gen.d", 1, n, 0, 0);
    producer_join(p);
    assert_true(vigil_counter_get(&f->st->out_total) < n);

    /* Reading starts now; drain must wait until all of them went out. */
    assert_int_equal(pthread_create(&f->reader, NULL, reader_main, f), 0);
    f->reader_started = true;
    atomic_store(&f->reader_go, true);
    assert_int_equal(vigil_bus_drain(f->bus, 5000), 0);
    assert_int_equal(vigil_counter_get(&f->st->in_total), n);
    assert_int_equal(vigil_counter_get(&f->st->out_total), n);
}

/* Freeing the bus while an inproc subscriber is stalled (and producers have
 * queued more) must not take one send timeout per queued event. */
static void test_free_with_stalled_subscriber_is_prompt(void **state)
{
    struct fx *f = *state;
    bus_new(f, 10, 64 * 1024);
    sub_socket(f, VIGIL_BUS_OUT, "", 10); /* never read */
    bus_start(f, 1);
    void *push = push_socket(f, VIGIL_BUS_IN);
    /* More than the subscriber's queue holds (batches of up to 64 events,
     * bus.h), until the producer's own queue is full too. */
    unsigned sent = 0;
    for (; sent < 20000; sent++) {
        const char *body;
        size_t len;
        build(&f->b, "t", "h", "s", sent + 1, 0, &body, &len);
        if (zmq_send(push, "t", 1, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            break;
        }
        assert_true(zmq_send(push, body, len, 0) >= 0);
    }
    assert_true(sent >= 1000);
    /* The bus is now blocked on the full subscriber with events queued. */
    uint64_t out = 0;
    for (int i = 0; i < 20; i++) {
        sleep_ms(10);
        out = vigil_counter_get(&f->st->out_total);
    }
    assert_true(vigil_counter_get(&f->st->in_total) < sent);
    assert_true(out < sent);

    uint64_t t0 = now_ms();
    vigil_bus_free(f->bus);
    f->bus = NULL;
    uint64_t took = now_ms() - t0;
    if (took > 1000) {
        fail_msg("vigil_bus_free took %llu ms with %u events queued behind a stalled "
                 "subscriber",
                 (unsigned long long)took, sent - (unsigned)out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pass_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outside_subscribers_come_and_go, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_waits_for_subscriptions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_counted_and_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seq_gaps_and_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trusted_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seq_sources_with_nul_bytes_are_distinct, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lossless_inproc_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_external_drops_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_outsider_does_not_silence_others, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_coalesce_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inproc_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_skips_what_is_not_a_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_refuses_bogus_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_refuses_bogus_subscribe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_refuses_ipc_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_refuses_ipc_in_use_subscribe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_source_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_reuses_stale_ipc_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_creates_folders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_after_producers_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_after_timed_out_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_stalled_subscriber_is_prompt, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

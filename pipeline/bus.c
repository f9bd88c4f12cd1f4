/* The bus thread: PULL -> check -> XPUB (inproc, lossless) + XPUB (outside,
 * counted drops). See bus.h for the contract. The socket options below are
 * chosen so that no event is lost unseen: ZeroMQ drops silently at a full
 * high-water mark unless told otherwise.
 */
#include "bus.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "event.h"
#include "log.h"

#define BUS_CTL "inproc://vigil.bus.ctl"
#define BATCH_MAX 4096      /* messages per wake-up before looking at ctl */
#define SEQ_TABLE_MAX 65536 /* (host, source) pairs tracked */
#define QUIET_MS 50         /* drain: this long without input means empty */
/* Wake-up coalescing (bus.coalesce): a drain that handed events on waits
 * coalesce_ns before looking again, instead of sleeping in poll until the
 * very next message. Every event crosses the bus, so this sets the rhythm
 * of every stage after it: each rules and sink thread wakes at most once
 * per window, for everything that came meanwhile, rather than once per
 * producer's burst. A thread waking one on another CPU is expensive, more so
 * on a VM (vigil-bench selftest measures it), so at moderate rates a short
 * window saves a large share of the daemon's CPU (docs/benchmarks.md), for a
 * delay of about the window at most. 300us by default (docs/configuration.md
 * says why).
 * The first event after a
 * quiet window is handed on at once. A drain that found a busy queue (at
 * least COALESCE_MIN events) waits at least COALESCE_NS even with
 * coalescing off: under load the wake-ups are what the threads would
 * otherwise spend their time on. */
#define COALESCE_MIN 32
#define COALESCE_NS 50000

struct vigil_bus {
    void *zctx;
    void *pull, *sources, *trusted, *xin, *xout, *ctl_main, *ctl_bus;
    unsigned xout_prefixes; /* prefixes outside subscribers hold (bus thread) */
    size_t max_event_bytes;
    uint64_t coalesce_ns;
    pthread_t thread;
    bool started;
    unsigned expected_subs;
    _Atomic bool stopping;
    struct vigil_bus_stats stats;

    /* Bus thread only. */
    struct {
        char topic[VIGIL_TOPIC_MAX];
        size_t topic_len;
        struct vigil_record_buf recs; /* handed to ZeroMQ when sent */
    } batch;
    struct vigil_seqtab seq;
    struct vigil_ratelimit malformed_rl;
};

static void *zsock(void *zctx, int type, int hwm_snd, int hwm_rcv)
{
    void *s = zmq_socket(zctx, type);
    if (s) {
        int linger = 0;
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
        if (hwm_snd >= 0) {
            zmq_setsockopt(s, ZMQ_SNDHWM, &hwm_snd, sizeof hwm_snd);
        }
        if (hwm_rcv >= 0) {
            zmq_setsockopt(s, ZMQ_RCVHWM, &hwm_rcv, sizeof hwm_rcv);
        }
    }
    return s;
}

/* libzmq replaces an existing ipc socket file on bind, so a second daemon
 * would silently take the endpoint from a running one. Refuse instead, and
 * create the folder an operator would otherwise have to make by hand. */
static int prepare_ipc(const char *endpoint, char *err, size_t errlen)
{
    const char *path = endpoint + strlen("ipc://");
    if (path[0] == '@') {
        return 0; /* abstract namespace: no file, no folder */
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        for (char *p = dir + 1; *p; p++) {
            if (*p == '/') {
                *p = '\0';
                mkdir(dir, 0755);
                *p = '/';
            }
        }
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create folder %s for endpoint %s: %s", dir, endpoint,
                     strerror(errno));
            return -1;
        }
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "endpoint %s: path longer than %zu bytes", endpoint,
                 sizeof sa.sun_path - 1);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return 0;
    }
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    close(fd);
    if (rc == 0) {
        snprintf(err, errlen,
                 "endpoint %s is in use by another running process (another vigild?); stop it "
                 "or choose another endpoint",
                 endpoint);
        return -1;
    }
    return 0;
}

int vigil_bus_curve_server(void *s, const char *endpoint, const char *secret_z85)
{
    if (!secret_z85 || strncmp(endpoint, "tcp://", 6) != 0) {
        return 0;
    }
    int one = 1;
    if (zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, secret_z85, strlen(secret_z85)) != 0 ||
        zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, "vigil", 5) != 0) {
        return -zmq_errno();
    }
    return 0;
}

static int bind_endpoint(void *s, const char *endpoint, const char *what, char *err, size_t errlen)
{
    if (strncmp(endpoint, "ipc://", 6) == 0 && prepare_ipc(endpoint, err, errlen) != 0) {
        return -1;
    }
    if (zmq_bind(s, endpoint) != 0) {
        snprintf(err, errlen, "cannot bind %s endpoint %s: %s", what, endpoint,
                 zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

struct vigil_bus *vigil_bus_new(void *zctx, const struct vigil_bus_opts *o, char *err,
                                size_t errlen)
{
    struct vigil_bus *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->zctx = zctx;
    b->max_event_bytes = o->max_event_bytes;
    vigil_seqtab_init(&b->seq, SEQ_TABLE_MAX);
    b->coalesce_ns = o->coalesce_ns;
    b->malformed_rl = (struct vigil_ratelimit){.window_ns = 10000000000ull, .burst = 5};
    vigil_record_init(&b->batch.recs, VIGIL_BUS_BATCH_EVENTS, VIGIL_BUS_BATCH_BYTES,
                      VIGIL_RECORD_ONE_ANY_SIZE);
    int one = 1;

    b->pull = zsock(zctx, ZMQ_PULL, -1, o->hwm);
    b->sources = zsock(zctx, ZMQ_PULL, -1, vigil_bus_inproc_hwm(o->hwm));
    b->trusted = zsock(zctx, ZMQ_PULL, -1, VIGIL_BUS_TRUSTED_HWM);
    b->xin = zsock(zctx, ZMQ_XPUB, vigil_bus_inproc_hwm(o->hwm), -1);
    b->xout = zsock(zctx, ZMQ_XPUB, o->hwm, -1);
    b->ctl_bus = zsock(zctx, ZMQ_PAIR, -1, -1);
    b->ctl_main = zsock(zctx, ZMQ_PAIR, -1, -1);
    if (!b->pull || !b->sources || !b->trusted || !b->xin || !b->xout || !b->ctl_bus ||
        !b->ctl_main) {
        snprintf(err, errlen, "cannot create bus sockets: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    /* Inproc side: lossless. NODROP makes a full subscriber block the send
     * (with a timeout so the thread still sees a stop request); VERBOSE
     * passes every subscription up so start-up can count them. */
    int timeout_ms = 100;
    zmq_setsockopt(b->xin, ZMQ_XPUB_NODROP, &one, sizeof one);
    zmq_setsockopt(b->xin, ZMQ_XPUB_VERBOSE, &one, sizeof one);
    zmq_setsockopt(b->xin, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    /* Outside side: NODROP + DONTWAIT turns ZeroMQ's silent HWM drop into
     * EAGAIN, which we count; the event then goes again without NODROP to
     * every subscriber that has room (send_outside). */
    zmq_setsockopt(b->xout, ZMQ_XPUB_NODROP, &one, sizeof one);

    if (vigil_bus_curve_server(b->pull, o->publish, o->curve_secret_z85) != 0 ||
        vigil_bus_curve_server(b->xout, o->subscribe, o->curve_secret_z85) != 0) {
        snprintf(err, errlen, "cannot make the bus's tcp endpoints CURVE servers: %s",
                 zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (bind_endpoint(b->pull, VIGIL_BUS_IN, "publish", err, errlen) != 0 ||
        bind_endpoint(b->pull, o->publish, "publish", err, errlen) != 0 ||
        bind_endpoint(b->sources, VIGIL_BUS_SOURCES, "publish", err, errlen) != 0 ||
        bind_endpoint(b->trusted, VIGIL_BUS_TRUSTED, "publish", err, errlen) != 0 ||
        bind_endpoint(b->xin, VIGIL_BUS_OUT, "subscribe", err, errlen) != 0 ||
        bind_endpoint(b->xout, o->subscribe, "subscribe", err, errlen) != 0 ||
        bind_endpoint(b->ctl_bus, BUS_CTL, "control", err, errlen) != 0) {
        goto fail;
    }
    if (zmq_connect(b->ctl_main, BUS_CTL) != 0) {
        snprintf(err, errlen, "cannot connect bus control: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    return b;

fail:
    zmq_close(b->pull);
    zmq_close(b->sources);
    zmq_close(b->trusted);
    zmq_close(b->xin);
    zmq_close(b->xout);
    zmq_close(b->ctl_bus);
    zmq_close(b->ctl_main);
    free(b);
    return NULL;
}

struct vigil_bus_stats *vigil_bus_stats(struct vigil_bus *b)
{
    return &b->stats;
}

/* ---- Sequence tracking ----------------------------------------------------- */

/* Counts gaps in a source's seq. The first event of a source sets the base;
 * a seq that does not advance means the producer restarted (or repeats). */
static void seq_track(struct vigil_bus *b, const struct vigil_event_head *v)
{
    int added;
    struct vigil_seq_entry *e =
        vigil_seqtab_get(&b->seq, v->host, v->host_len, v->source, v->source_len, &added);
    if (!e) {
        vigil_count(&b->stats.untracked_total, 1);
        return;
    }
    if (added) {
        vigil_count(&b->stats.sources_tracked, 1);
    } else if (v->seq > e->last_seq + 1) {
        vigil_count(&b->stats.lost_total, v->seq - e->last_seq - 1);
    } else if (v->seq <= e->last_seq) {
        vigil_count(&b->stats.seq_resets_total, 1);
    }
    e->last_seq = v->seq;
}

/* ---- The loop ------------------------------------------------------------ */

static void report_malformed(struct vigil_bus *b, zmq_msg_t *first, const char *reason)
{
    vigil_count(&b->stats.malformed_total, 1);
    uint64_t suppressed = 0;
    if (!vigil_ratelimit_ok(&b->malformed_rl, vigil_mono_ns(), &suppressed)) {
        return;
    }
    const char *peer = first ? zmq_msg_gets(first, "Peer-Address") : NULL;
    vigil_log(VIGIL_LOG_WARN, "bus",
              "dropped a malformed message%s%s: %s (counted in vigil.self malformed_total; "
              "%llu similar messages not logged)",
              peer ? " from " : "", peer ? peer : "", reason, (unsigned long long)suppressed);
}

/* Sends one two-frame message to the inproc XPUB, waiting while a stage is
 * full. Returns false if the bus is stopping and the message was dropped. */
static bool send_inproc(struct vigil_bus *b, zmq_msg_t *topic, zmq_msg_t *body)
{
    if (atomic_load(&b->stopping)) {
        return false; /* do not wait a send timeout per queued event */
    }
    while (zmq_msg_send(topic, b->xin, ZMQ_SNDMORE) == -1) {
        if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) {
            return false;
        }
        if (atomic_load(&b->stopping)) {
            return false;
        }
    }
    /* Only the first frame of a message can meet the HWM. */
    while (zmq_msg_send(body, b->xin, 0) == -1) {
        if (zmq_errno() != EINTR) {
            return false;
        }
    }
    return true;
}

static void free_batch(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Hands the batch being built to the in-process stages (bus.h). */
static void flush_batch(struct vigil_bus *b)
{
    size_t n = vigil_record_count(&b->batch.recs), len;
    if (n == 0) {
        return;
    }
    char *buf = vigil_record_detach(&b->batch.recs, &len);
    zmq_msg_t topic, body;
    bool sent = false;
    if (zmq_msg_init_data(&body, buf, len, free_batch, NULL) != 0) {
        free(buf);
    } else { /* ZeroMQ's now, freed by the last stage done with it */
        if (zmq_msg_init_size(&topic, b->batch.topic_len) == 0) {
            memcpy(zmq_msg_data(&topic), b->batch.topic, b->batch.topic_len);
            sent = send_inproc(b, &topic, &body);
            if (!sent) {
                zmq_msg_close(&topic);
            }
        }
        if (!sent) {
            zmq_msg_close(&body);
        }
    }
    if (!sent) {
        vigil_count(&b->stats.dropped_total, n);
    }
    vigil_count_own(&b->stats.out_total, n);
}

/* Adds an event to the batch for the in-process stages, sending the batch
 * first when the topic changes or the event does not fit. The topic travels
 * once, in the message's first frame: the records' own topics are empty. */
static void batch_event(struct vigil_bus *b, const char *topic, size_t tl, const char *body,
                        size_t bl)
{
    struct vigil_record_buf *recs = &b->batch.recs;
    if (vigil_record_count(recs) &&
        (tl != b->batch.topic_len || memcmp(topic, b->batch.topic, tl) != 0)) {
        flush_batch(b);
    }
    int rc = vigil_record_append(recs, NULL, 0, body, bl);
    if (rc == -ENOBUFS) {
        flush_batch(b);
        rc = vigil_record_append(recs, NULL, 0, body, bl);
    }
    if (rc != 0) {
        vigil_count(&b->stats.dropped_total, 1);
        vigil_count_own(&b->stats.out_total, 1);
        return;
    }
    if (vigil_record_count(recs) == 1) {
        b->batch.topic_len = tl; /* checked: 1..VIGIL_TOPIC_MAX */
        memcpy(b->batch.topic, topic, tl);
    }
}

/* Whether outside subscribers get this event at all. */
static bool goes_outside(const struct vigil_bus *b, const char *topic, size_t tl)
{
    /* No prefix held: skip the XPUB's matching. The barrier and the
     * handover are the daemon's own. */
    return b->xout_prefixes != 0 &&
           !(tl == VIGIL_BARRIER_TOPIC_LEN && memcmp(topic, VIGIL_BARRIER_TOPIC, tl) == 0) &&
           !(tl == VIGIL_HANDOVER_TOPIC_LEN && memcmp(topic, VIGIL_HANDOVER_TOPIC, tl) == 0);
}

/* Sends an event to the outside subscribers. With NODROP a send that one
 * subscriber has no room for fails for all of them (EAGAIN, nothing sent):
 * that is how ZeroMQ lets us count it, once per event whatever the number
 * of full subscribers. Then the event goes again without NODROP, so every
 * subscriber with room gets it and only the full ones miss it (a stalled
 * one must not silence the others); they see the gap in seq. */
static void send_outside(struct vigil_bus *b, zmq_msg_t *topic, zmq_msg_t *body)
{
    if (zmq_msg_send(topic, b->xout, ZMQ_SNDMORE | ZMQ_DONTWAIT) != -1) {
        zmq_msg_send(body, b->xout, ZMQ_DONTWAIT);
        return;
    }
    vigil_count(&b->stats.external_dropped_total, 1);
    int off = 0, on = 1;
    zmq_setsockopt(b->xout, ZMQ_XPUB_NODROP, &off, sizeof off);
    if (zmq_msg_send(topic, b->xout, ZMQ_SNDMORE | ZMQ_DONTWAIT) != -1) {
        zmq_msg_send(body, b->xout, ZMQ_DONTWAIT);
    }
    zmq_setsockopt(b->xout, ZMQ_XPUB_NODROP, &on, sizeof on);
}

static void forward(struct vigil_bus *b, zmq_msg_t *topic, zmq_msg_t *body)
{
    batch_event(b, zmq_msg_data(topic), zmq_msg_size(topic), zmq_msg_data(body),
                zmq_msg_size(body));
    if (goes_outside(b, zmq_msg_data(topic), zmq_msg_size(topic))) {
        send_outside(b, topic, body);
    }
}

/* forward() for an event that is not in messages of its own: the outside
 * subscribers get copies. */
static void forward_bytes(struct vigil_bus *b, const char *topic, size_t tl, const char *body,
                          size_t bl)
{
    batch_event(b, topic, tl, body, bl);
    zmq_msg_t t, bd;
    if (goes_outside(b, topic, tl) && zmq_msg_init_size(&t, tl) == 0) {
        if (zmq_msg_init_size(&bd, bl) == 0) {
            memcpy(zmq_msg_data(&t), topic, tl);
            memcpy(zmq_msg_data(&bd), body, bl);
            send_outside(b, &t, &bd);
            zmq_msg_close(&bd);
        }
        zmq_msg_close(&t);
    }
}

/* ---- Trusted batches (VIGIL_BUS_TRUSTED) ------------------------------------ */

/* An entry's header; topic and body follow it. */
struct handoff_head {
    uint32_t topic_len, body_len;
};

void vigil_bus_handoff_init(struct vigil_bus_handoff *h)
{
    *h = (struct vigil_bus_handoff){0};
}

void vigil_bus_handoff_fini(struct vigil_bus_handoff *h)
{
    free(h->buf);
    vigil_bus_handoff_init(h);
}

int vigil_bus_handoff_add(struct vigil_bus_handoff *h, const char *topic, size_t topic_len,
                          const char *body, size_t body_len)
{
    size_t need = sizeof(struct handoff_head) + topic_len + body_len;
    if (h->cap - h->len < need) {
        size_t cap = h->cap ? h->cap : 64 * 1024;
        while (cap - h->len < need) {
            cap *= 2;
        }
        char *p = realloc(h->buf, cap);
        if (!p) {
            return -ENOMEM;
        }
        h->buf = p;
        h->cap = cap;
    }
    struct handoff_head e = {.topic_len = (uint32_t)topic_len, .body_len = (uint32_t)body_len};
    char *p = h->buf + h->len;
    memcpy(p, &e, sizeof e);
    memcpy(p + sizeof e, topic, topic_len);
    memcpy(p + sizeof e + topic_len, body, body_len);
    h->len += need;
    h->n++;
    return 0;
}

int vigil_bus_handoff_send(struct vigil_bus_handoff *h, void *sock, int flags)
{
    if (h->n == 0) {
        return 0;
    }
    if (zmq_send(sock, h->buf, h->len, flags) == -1) {
        return -1;
    }
    vigil_bus_handoff_clear(h);
    return 0;
}

/* Hands on the events of one trusted batch; a damaged entry (a bug in
 * this process, never outside input) ends it, counted as malformed. Their
 * seqs are not tracked here: the agent's bus counted gaps where the events
 * were published, the hop to here is acknowledged, and an agent forwards
 * only the events its sink's match selects, so gaps seen here would be
 * false; the ingest tracks (host, source, seq) itself to publish each event
 * once. */
static void take_trusted(struct vigil_bus *b, const char *p, size_t len)
{
    while (len) {
        struct handoff_head e;
        if (len < sizeof e) {
            report_malformed(b, NULL, "a damaged in-process batch");
            return;
        }
        memcpy(&e, p, sizeof e);
        size_t need = sizeof e + (size_t)e.topic_len + e.body_len;
        if (need > len || e.topic_len == 0 || e.topic_len > VIGIL_TOPIC_MAX) {
            report_malformed(b, NULL, "a damaged in-process batch");
            return;
        }
        const char *topic = p + sizeof e, *body = topic + e.topic_len;
        vigil_count_own(&b->stats.in_total, 1);
        forward_bytes(b, topic, e.topic_len, body, e.body_len);
        p += need;
        len -= need;
    }
}

/* Takes the trusted batches waiting (at most VIGIL_BUS_TRUSTED_HWM, for
 * fairness with the producers); how many. */
static int pump_trusted(struct vigil_bus *b, bool *empty)
{
    int n = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);
    *empty = false;
    while (n < VIGIL_BUS_TRUSTED_HWM && !atomic_load(&b->stopping) &&
           !(*empty = zmq_msg_recv(&m, b->trusted, ZMQ_DONTWAIT) == -1)) {
        n++;
        if (zmq_msg_more(&m)) {
            report_malformed(b, NULL, "an in-process batch of more than one frame");
            do {
                zmq_msg_recv(&m, b->trusted, 0);
            } while (zmq_msg_more(&m));
            continue;
        }
        take_trusted(b, zmq_msg_data(&m), zmq_msg_size(&m));
    }
    zmq_msg_close(&m);
    return n;
}

/* Checks, tracks and hands on every event of a frame of records
 * (record.h): a source's batch (VIGIL_BUS_SOURCES) or a producer's (bus.h,
 * VIGIL_BUS_PUBLISH_BATCH_LEN). Each event is judged as a message of its own:
 * a bad one is counted in malformed_total and skipped, the rest pass; bytes
 * left over that make no whole record are counted once more, in in_total
 * too, so that in_total stays out_total plus malformed_total. first (may
 * be NULL) names the peer in the log. Returns the events the frame held,
 * the damaged tail counted as one. */
static int take_records(struct vigil_bus *b, zmq_msg_t *first, const char *data, size_t len)
{
    int n = 0;
    struct vigil_record_iter it = vigil_record_iter_bytes(data, len);
    struct vigil_record r;
    while (vigil_record_next(&it, &r)) {
        n++;
        vigil_count_own(&b->stats.in_total, 1);
        struct vigil_event_head v;
        const char *reason = NULL;
        if (vigil_event_check(r.topic, r.topic_len, r.body, r.body_len, b->max_event_bytes, &v,
                              &reason) != 0) {
            report_malformed(b, first, reason);
            continue;
        }
        seq_track(b, &v);
        forward_bytes(b, r.topic, r.topic_len, r.body, r.body_len);
    }
    if (vigil_record_iter_damaged(&it)) {
        n++;
        vigil_count_own(&b->stats.in_total, 1);
        report_malformed(b, first, "a batch whose last bytes make no whole record");
    }
    return n;
}

/* Takes the in-process sources' messages waiting (VIGIL_BUS_SOURCES), at
 * most SOURCES_PER_TURN for fairness with the other producers, and checks
 * and hands on each of their events as pump_some does; how many events. */
#define SOURCES_PER_TURN 16
static int pump_sources(struct vigil_bus *b, bool *empty)
{
    int n = 0, msgs = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);
    *empty = false;
    while (msgs < SOURCES_PER_TURN && !atomic_load(&b->stopping) &&
           !(*empty = zmq_msg_recv(&m, b->sources, ZMQ_DONTWAIT) == -1)) {
        msgs++;
        if (zmq_msg_more(&m)) {
            report_malformed(b, NULL, "a source's batch of more than one frame");
            do {
                zmq_msg_recv(&m, b->sources, 0);
            } while (zmq_msg_more(&m));
            continue;
        }
        n += take_records(b, NULL, zmq_msg_data(&m), zmq_msg_size(&m));
    }
    zmq_msg_close(&m);
    return n;
}

/* A producer's batch (docs/events.md): its records' lengths are
 * little-endian on the wire and in host order in record.h, the same bytes
 * only on a little-endian host. A big-endian port would have to swap a
 * producer's lengths before take_records; until then it does not build. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the bus reads producers' batches (little-endian lengths) as record.h's host-order records"
#endif

/* Takes a producer's batch: refused whole (one malformed message) when
 * larger than bus.max_event_bytes and VIGIL_BUS_PUBLISH_BATCH_MAX (bus.h
 * says why), else every record as an event. The number of events, for
 * pump_some's budget: an empty batch counts as the message it is. */
static int take_batch(struct vigil_bus *b, zmq_msg_t *first, zmq_msg_t *body)
{
    size_t max = b->max_event_bytes > VIGIL_BUS_PUBLISH_BATCH_MAX ? b->max_event_bytes
                                                                  : VIGIL_BUS_PUBLISH_BATCH_MAX;
    if (zmq_msg_size(body) > max) {
        vigil_count_own(&b->stats.in_total, 1);
        report_malformed(b, first,
                         "a batch larger than bus.max_event_bytes and 64 KiB: send smaller ones");
        return 1;
    }
    int n = take_records(b, first, zmq_msg_data(body), zmq_msg_size(body));
    return n ? n : 1;
}

/* Receives and handles messages until about BATCH_MAX events (a
 * producer's batch counts as its events); returns how many, or -1 when
 * the PULL socket was empty at once. *empty: the socket said EAGAIN (its
 * ZMQ_FD signals again when more comes). */
static int pump_some(struct vigil_bus *b, zmq_msg_t *topic, zmq_msg_t *body, bool *empty)
{
    int n = 0;
    *empty = false;
    for (; n < BATCH_MAX && !atomic_load(&b->stopping); n++) {
        if (zmq_msg_recv(topic, b->pull, ZMQ_DONTWAIT) == -1) {
            *empty = true;
            return n == 0 ? -1 : n;
        }
        if (!zmq_msg_more(topic)) {
            vigil_count_own(&b->stats.in_total, 1);
            report_malformed(b, topic, "one frame (expected topic + body)");
            continue;
        }
        zmq_msg_recv(body, b->pull, 0);
        if (zmq_msg_more(body)) {
            zmq_msg_t rest;
            zmq_msg_init(&rest);
            do {
                zmq_msg_recv(&rest, b->pull, 0);
            } while (zmq_msg_more(&rest));
            zmq_msg_close(&rest);
            vigil_count_own(&b->stats.in_total, 1);
            report_malformed(b, topic, "more than two frames");
            continue;
        }
        if (zmq_msg_size(topic) == VIGIL_BUS_PUBLISH_BATCH_LEN) {
            n += take_batch(b, topic, body) - 1;
            continue;
        }
        vigil_count_own(&b->stats.in_total, 1);
        /* Checked in place: no unpacking, no allocation. */
        struct vigil_event_head v;
        const char *reason = NULL;
        int rc = vigil_event_check(zmq_msg_data(topic), zmq_msg_size(topic), zmq_msg_data(body),
                                   zmq_msg_size(body), b->max_event_bytes, &v, &reason);
        if (rc == 0) {
            seq_track(b, &v);
        } else {
            report_malformed(b, topic, reason);
            continue;
        }
        forward(b, topic, body);
    }
    return n;
}

/* The bus thread's sockets, in the order of its poll set. */
enum { S_CTL, S_PULL, S_XIN, S_XOUT, S_TRUSTED, S_SOURCES, S_N };

/* What the bus thread reads in a turn: the sockets whose ZMQ_FD fired or
 * that still held messages when it last stopped reading them (look). */
struct bus_turn {
    struct pollfd pfd[S_N];
    bool look[S_N];
};

/* pump_some and the in-process batches, for the sockets there is a reason
 * to look at; then what they took is handed on: no event waits for a batch
 * to fill. A socket read to EAGAIN needs no look until its fd fires. */
static int pump(struct vigil_bus *b, struct bus_turn *t, zmq_msg_t *topic, zmq_msg_t *body)
{
    int n = -1, e = 0, tr = 0;
    bool empty;
    if (t->look[S_PULL]) {
        n = pump_some(b, topic, body, &empty);
        t->look[S_PULL] = !empty;
    }
    if (t->look[S_SOURCES]) {
        e = pump_sources(b, &empty);
        t->look[S_SOURCES] = !empty;
    }
    if (t->look[S_TRUSTED]) {
        tr = pump_trusted(b, &empty);
        t->look[S_TRUSTED] = !empty;
    }
    flush_batch(b);
    /* A trusted batch is many events: a busy drain (COALESCE_MIN). */
    int got = (n < 0 ? 0 : n) + e + tr * COALESCE_MIN;
    return got == 0 ? n : got;
}

/* Subscription messages: byte 1 = subscribe, 0 = unsubscribe. Returns the
 * subscribes; *unsubs (if not NULL) gets the unsubscribes. */
static unsigned read_subscriptions(void *xpub, unsigned *unsubs)
{
    unsigned subs = 0, gone = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, xpub, ZMQ_DONTWAIT) != -1) {
        if (zmq_msg_size(&m) > 0) {
            unsigned char c = ((unsigned char *)zmq_msg_data(&m))[0];
            subs += c == 1;
            gone += c == 0;
        }
    }
    zmq_msg_close(&m);
    if (unsubs) {
        *unsubs = gone;
    }
    return subs;
}

static void ctl_reply(struct vigil_bus *b, const char *what)
{
    zmq_send(b->ctl_bus, what, strlen(what), 0);
}

/* Reads the commands waiting on the control socket; false on "stop". */
static bool read_ctl(struct vigil_bus *b, bool *draining, uint64_t *drain_deadline,
                     unsigned *want_subs, bool *waiting_subs)
{
    char cmd[32];
    int len;
    while ((len = zmq_recv(b->ctl_bus, cmd, sizeof cmd - 1, ZMQ_DONTWAIT)) >= 0) {
        cmd[len < (int)sizeof cmd - 1 ? len : (int)sizeof cmd - 1] = '\0';
        if (strcmp(cmd, "stop") == 0) {
            return false;
        }
        if (strncmp(cmd, "drain ", 6) == 0) {
            *draining = true;
            *drain_deadline = vigil_mono_ns() + strtoull(cmd + 6, NULL, 10) * 1000000u;
        }
        if (strncmp(cmd, "subs ", 5) == 0) {
            *want_subs = (unsigned)strtoul(cmd + 5, NULL, 10);
            *waiting_subs = true;
        }
    }
    return true;
}

/* The loop waits in poll(2) on the sockets' ZMQ_FDs itself. zmq_poll asks
 * every socket for ZMQ_EVENTS before and after each sleep, two system
 * calls per socket in libzmq's command mailbox: ~26 per turn for six
 * sockets, most of the bus's cost per wake-up at paced rates. A ZMQ_FD is
 * readable while commands wait for its socket (ZEROMQ.md), and a socket
 * read to EAGAIN has none left: it fires again when a message comes, so
 * the loop looks only at sockets that fired or that it left messages in.
 * A send on a socket may process its commands (libzmq throttles that to
 * about once a millisecond) and so take the signal of a subscription
 * meant for the XPUBs: after sends they are read again before the loop
 * sleeps, and at least every SEND_RECHECK_NS while it does not. */
#define SEND_RECHECK_NS 1000000u
static void *bus_main(void *arg)
{
    struct vigil_bus *b = arg;
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    unsigned subs = 0, want_subs = 0;
    bool ready = false, draining = false, waiting_subs = false, sent = false;
    uint64_t drain_deadline = 0, recheck_ns = 0;
    if (b->expected_subs == 0) {
        ctl_reply(b, "ready");
        ready = true;
    }
    struct bus_turn t;
    void *const socks[S_N] = {
        [S_CTL] = b->ctl_bus, [S_PULL] = b->pull,       [S_XIN] = b->xin,
        [S_XOUT] = b->xout,   [S_TRUSTED] = b->trusted, [S_SOURCES] = b->sources};
    for (int i = 0; i < S_N; i++) {
        size_t sz = sizeof t.pfd[i].fd;
        if (zmq_getsockopt(socks[i], ZMQ_FD, &t.pfd[i].fd, &sz) != 0) {
            vigil_log(VIGIL_LOG_ERROR, "bus", "cannot get a socket's ZMQ_FD: %s",
                      zmq_strerror(zmq_errno()));
            goto out;
        }
        t.pfd[i].events = POLLIN;
        t.look[i] = true; /* whatever came before the first poll */
    }
    for (;;) {
        /* Liveness for the watchdog (notify.h): a turn at least every
         * VIGIL_BEAT_MS, idle or not; one relaxed store per turn. */
        vigil_count_own(&b->stats.beats, 1);
        bool pending = false;
        for (int i = 0; i < S_N; i++) {
            pending |= t.look[i];
        }
        /* Before sleeping after sends, one look without waiting: if
         * nothing came, the XPUBs are read (their signal may have gone to
         * a send) and the sleep waits for the next turn. */
        int timeout_ms = pending || sent ? 0 : draining ? QUIET_MS : VIGIL_BEAT_MS;
        int rc = poll(t.pfd, S_N, timeout_ms);
        if (rc < 0 && errno != EINTR) {
            vigil_log(VIGIL_LOG_ERROR, "bus", "poll failed: %s", strerror(errno));
            break;
        }
        for (int i = 0; rc > 0 && i < S_N; i++) {
            t.look[i] |= t.pfd[i].revents != 0;
        }
        if (sent) {
            uint64_t now = vigil_mono_ns();
            if ((rc == 0 && !pending) || now >= recheck_ns) {
                t.look[S_XIN] = t.look[S_XOUT] = true;
                sent = false;
                recheck_ns = now + SEND_RECHECK_NS;
            }
        }
        if (t.look[S_CTL]) {
            t.look[S_CTL] = false;
            if (!read_ctl(b, &draining, &drain_deadline, &want_subs, &waiting_subs)) {
                break;
            }
        }
        if (t.look[S_XIN]) {
            t.look[S_XIN] = false;
            subs += read_subscriptions(b->xin, NULL);
            if (!ready && subs >= b->expected_subs) {
                ctl_reply(b, "ready");
                ready = true;
                t.look[S_CTL] = true; /* the send may have taken a command's signal */
            }
        }
        if (waiting_subs && subs >= want_subs) {
            ctl_reply(b, "subs");
            waiting_subs = false;
            t.look[S_CTL] = true;
        }
        if (t.look[S_XOUT]) {
            t.look[S_XOUT] = false;
            /* Without XPUB_VERBOSE: the first subscribe and the last
             * unsubscribe of each prefix, so this counts live prefixes. */
            unsigned gone, added = read_subscriptions(b->xout, &gone);
            b->xout_prefixes += added;
            b->xout_prefixes -= gone < b->xout_prefixes ? gone : b->xout_prefixes;
        }
        int got = pump(b, &t, &topic, &body);
        sent |= got > 0;
        uint64_t wait = got <= 0 ? 0 : b->coalesce_ns;
        if (got >= COALESCE_MIN && wait < COALESCE_NS) {
            wait = COALESCE_NS;
        }
        /* A full batch means more is waiting; a drain for shutdown waits
         * for nothing. */
        if (wait && got < BATCH_MAX && !draining) {
            struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
            nanosleep(&ts, NULL);
        }
        if (draining) {
            /* Quiet: poll waited QUIET_MS with nothing to read. */
            if ((rc == 0 && timeout_ms > 0 && got < 0) || vigil_mono_ns() > drain_deadline) {
                ctl_reply(b, got < 0 ? "drained" : "busy");
                draining = false;
                t.look[S_CTL] = true;
            }
        }
    }
out:
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    return NULL;
}

int vigil_bus_start(struct vigil_bus *b, unsigned expected_subscriptions)
{
    b->expected_subs = expected_subscriptions;
    int rc = pthread_create(&b->thread, NULL, bus_main, b);
    if (rc == 0) {
        pthread_setname_np(b->thread, "vigil-bus"); /* what top -H and perf show */
    }
    if (rc != 0) {
        return -rc;
    }
    b->started = true;
    return 0;
}

/* Waits for a reply from the bus thread; 0, or -ETIMEDOUT. */
static int ctl_wait(struct vigil_bus *b, const char *want, int timeout_ms)
{
    uint64_t deadline = vigil_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        zmq_pollitem_t it = {.socket = b->ctl_main, .events = ZMQ_POLLIN};
        uint64_t now = vigil_mono_ns();
        if (now >= deadline) {
            return -ETIMEDOUT;
        }
        if (zmq_poll(&it, 1, (long)((deadline - now) / 1000000u) + 1) > 0) {
            char r[16] = {0};
            if (zmq_recv(b->ctl_main, r, sizeof r - 1, 0) >= 0) {
                if (strcmp(r, want) == 0) {
                    return 0;
                }
                if (strcmp(r, "busy") == 0) {
                    return -ETIMEDOUT;
                }
            }
        }
    }
}

int vigil_bus_wait_ready(struct vigil_bus *b, int timeout_ms)
{
    return ctl_wait(b, "ready", timeout_ms);
}

/* Sends a command and waits for its reply. A reply to an earlier command
 * that timed out must not answer this one: those are dropped first. */
static int ctl_ask(struct vigil_bus *b, const char *cmd, const char *want, int timeout_ms)
{
    char stale[16];
    while (zmq_recv(b->ctl_main, stale, sizeof stale, ZMQ_DONTWAIT) >= 0) {
    }
    zmq_send(b->ctl_main, cmd, strlen(cmd), 0);
    return ctl_wait(b, want, timeout_ms);
}

int vigil_bus_wait_subscriptions(struct vigil_bus *b, unsigned total, int timeout_ms)
{
    char cmd[32];
    snprintf(cmd, sizeof cmd, "subs %u", total);
    return ctl_ask(b, cmd, "subs", timeout_ms);
}

int vigil_bus_drain(struct vigil_bus *b, int timeout_ms)
{
    if (!b->started) {
        return 0;
    }
    char cmd[32];
    snprintf(cmd, sizeof cmd, "drain %d", timeout_ms);
    return ctl_ask(b, cmd, "drained", timeout_ms);
}

void vigil_bus_free(struct vigil_bus *b)
{
    if (!b) {
        return;
    }
    if (b->started) {
        atomic_store(&b->stopping, true);
        zmq_send(b->ctl_main, "stop", 4, 0);
        pthread_join(b->thread, NULL);
    }
    zmq_close(b->pull);
    zmq_close(b->sources);
    zmq_close(b->trusted);
    zmq_close(b->xin);
    zmq_close(b->xout);
    zmq_close(b->ctl_bus);
    zmq_close(b->ctl_main);
    vigil_seqtab_fini(&b->seq);
    vigil_record_fini(&b->batch.recs);
    free(b);
}

/* ---- Reading batches (the stages' side) ------------------------------------ */

void vigil_bus_reader_init(struct vigil_bus_reader *r)
{
    zmq_msg_init(&r->topic);
    zmq_msg_init(&r->batch);
    r->it = vigil_record_iter_bytes(NULL, 0);
}

void vigil_bus_reader_fini(struct vigil_bus_reader *r)
{
    zmq_msg_close(&r->topic);
    zmq_msg_close(&r->batch);
}

int vigil_bus_reader_next(struct vigil_bus_reader *r, void *sock, const char **topic,
                          size_t *topic_len, const char **body, size_t *body_len)
{
    struct vigil_record rec;
    while (!vigil_record_next(&r->it, &rec)) {
        bool damaged = vigil_record_iter_damaged(&r->it);
        r->it = vigil_record_iter_bytes(NULL, 0);
        if (damaged) {
            return -1;
        }
        if (zmq_msg_recv(&r->topic, sock, ZMQ_DONTWAIT) == -1) {
            return 0;
        }
        bool two = zmq_msg_more(&r->topic) && zmq_msg_recv(&r->batch, sock, 0) != -1 &&
                   !zmq_msg_more(&r->batch);
        if (!two) {
            while (zmq_msg_more(&r->batch) && zmq_msg_recv(&r->batch, sock, 0) != -1) {
            }
            return -1;
        }
        r->it = vigil_record_iter_bytes(zmq_msg_data(&r->batch), zmq_msg_size(&r->batch));
    }
    if (rec.topic_len) {
        return -1;
    }
    *topic = zmq_msg_data(&r->topic);
    *topic_len = zmq_msg_size(&r->topic);
    *body = rec.body;
    *body_len = rec.body_len;
    return 1;
}

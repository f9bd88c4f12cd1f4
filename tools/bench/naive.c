/* vigil-bench-naive: the baseline of issue 20's "1.5x the naive program".
 * Two threads in one process, written the obvious way and not tuned: one
 * packs vigil-bench's events with msgpack-c and pushes them over ZeroMQ
 * inproc, the other pulls, unpacks, compares one value and writes one JSON
 * line per event with stdio (built in memory, one fwrite each).
 * docs/benchmarks.md says how run.sh uses it.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define ENDPOINT "inproc://naive"
#define TOPIC "bench.metric"
#define SOURCE "bench-0"
#define PERIOD 2048u /* vigil-bench's spike schedule (tools/bench/bench.h) */
#define RECV_TIMEOUT_MS 10000
#define CPU_LIMIT 90.0

struct run {
    void *zctx;
    void *push;     /* the producer's socket, closed by main once the consumer is done */
    uint64_t count; /* events to send, or 0: until end_real_ns */
    uint64_t end_real_ns;
    uint64_t sent;
    int err;
    char host[256];
};

static uint64_t now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_label(msgpack_packer *pk, const char *key, const char *value)
{
    pack_str(pk, key);
    pack_str(pk, value);
}

static void pack_value(msgpack_packer *pk, const char *key, double value)
{
    pack_str(pk, key);
    msgpack_pack_double(pk, value);
}

/* One event as vigil-bench's producer 0 sends it (tools/bench/producer.c):
 * the same keys, labels and values, ts and seq as 9-byte uint64s. */
static void pack_event(msgpack_packer *pk, const char *host, uint64_t seq, uint64_t ts)
{
    uint64_t phase = seq % PERIOD;
    bool deny = phase == PERIOD * 3 / 4;
    unsigned series = (unsigned)(seq % 8);
    char series_s[32], subject[32], resource[32];
    snprintf(series_s, sizeof series_s, "p0s%u", series);
    snprintf(subject, sizeof subject, "%s:%c%u", deny ? "guest" : "user", deny ? 'g' : 'u', series);
    snprintf(resource, sizeof resource, "/srv/data/%u", series);

    msgpack_pack_map(pk, 6);
    pack_str(pk, "ts");
    msgpack_pack_fix_uint64(pk, ts);
    pack_label(pk, "host", host);
    pack_label(pk, "source", SOURCE);
    pack_str(pk, "seq");
    msgpack_pack_fix_uint64(pk, seq);
    pack_str(pk, "labels");
    msgpack_pack_map(pk, 5);
    pack_label(pk, "series", series_s);
    pack_label(pk, "subject", subject);
    pack_label(pk, "action", deny ? "write" : "read");
    pack_label(pk, "resource", resource);
    pack_label(pk, "region", "eu-west-1");
    pack_str(pk, "values");
    msgpack_pack_map(pk, 4);
    pack_value(pk, "cpu_pct", phase == 1 ? 99.9 : 10.0 + (double)(seq * 37 % 61));
    pack_value(pk, "exits_per_s", phase == PERIOD / 2 ? 150000.0 : (double)(seq * 13 % 5000));
    pack_value(pk, "mem_bytes", 1e9 + (double)(seq % 1000) * 1e5);
    pack_value(pk, "latency_ms", (double)(seq % 100) / 4.0);
}

/* Thread 1: packs and sends every event, then one empty frame as the end. */
static void *producer_main(void *arg)
{
    struct run *r = arg;
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    uint64_t seq = 0;
    for (;;) {
        if (r->count && seq == r->count) {
            break;
        }
        uint64_t ts = now_ns(CLOCK_REALTIME);
        if (!r->count && ts >= r->end_real_ns) {
            break;
        }
        msgpack_sbuffer_clear(&sbuf);
        pack_event(&pk, r->host, seq + 1, ts);
        if (zmq_send(r->push, TOPIC, strlen(TOPIC), ZMQ_SNDMORE) < 0 ||
            zmq_send(r->push, sbuf.data, sbuf.size, 0) < 0) {
            r->err = zmq_errno();
            break;
        }
        seq++;
    }
    r->sent = seq;
    if (zmq_send(r->push, "", 0, 0) < 0 && !r->err) {
        r->err = zmq_errno();
    }
    msgpack_sbuffer_destroy(&sbuf);
    return NULL;
}

/* One JSON line, built in memory and handed to stdio with one fwrite. */
struct line {
    char *p;
    size_t len, cap;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (l->len + n > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        while (cap < l->len + n) {
            cap *= 2;
        }
        char *p = realloc(l->p, cap);
        if (!p) {
            fprintf(stderr, "vigil-bench-naive: out of memory for a %zu-byte line\n", cap);
            exit(3);
        }
        l->p = p;
        l->cap = cap;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void put_str(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

static void put_char(struct line *l, char c)
{
    put(l, &c, 1);
}

/* A JSON string (RFC 8259 escapes; the bytes are assumed to be UTF-8, as
 * this program's own labels are). */
static void json_string(struct line *l, const char *s, size_t n)
{
    size_t run = 0;
    put_char(l, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '"' && c != '\\' && c >= 0x20) {
            continue;
        }
        put(l, s + run, i - run);
        if (c == '"' || c == '\\') {
            put_char(l, '\\');
            put_char(l, (char)c);
        } else {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put_str(l, esc);
        }
        run = i + 1;
    }
    put(l, s + run, n - run);
    put_char(l, '"');
}

static void json_value(struct line *l, const msgpack_object *o)
{
    char num[32];
    switch (o->type) {
    case MSGPACK_OBJECT_BOOLEAN:
        put_str(l, o->via.boolean ? "true" : "false");
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        snprintf(num, sizeof num, "%" PRIu64, o->via.u64);
        put_str(l, num);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        snprintf(num, sizeof num, "%" PRId64, o->via.i64);
        put_str(l, num);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (isfinite(o->via.f64)) {
            snprintf(num, sizeof num, "%.17g", o->via.f64);
            put_str(l, num);
        } else {
            put_str(l, "null");
        }
        break;
    case MSGPACK_OBJECT_STR:
        json_string(l, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        json_string(l, o->via.bin.ptr, o->via.bin.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        put_char(l, '[');
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i > 0) {
                put_char(l, ',');
            }
            json_value(l, &o->via.array.ptr[i]);
        }
        put_char(l, ']');
        break;
    case MSGPACK_OBJECT_MAP:
        put_char(l, '{');
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (i > 0) {
                put_char(l, ',');
            }
            if (kv->key.type == MSGPACK_OBJECT_STR) {
                json_string(l, kv->key.via.str.ptr, kv->key.via.str.size);
            } else {
                put_str(l, "\"?\""); /* JSON keys are strings; ours always are */
            }
            put_char(l, ':');
            json_value(l, &kv->val);
        }
        put_char(l, '}');
        break;
    default: /* nil, ext */
        put_str(l, "null");
        break;
    }
}

static bool key_is(const msgpack_object *key, const char *name)
{
    size_t n = strlen(name);
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == n &&
           memcmp(key->via.str.ptr, name, n) == 0;
}

static const msgpack_object *map_get(const msgpack_object *map, const char *name)
{
    if (map->type != MSGPACK_OBJECT_MAP) {
        return NULL;
    }
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        if (key_is(&map->via.map.ptr[i].key, name)) {
            return &map->via.map.ptr[i].val;
        }
    }
    return NULL;
}

/* The file sink's line: topic first, the body's keys in order, attrs {}
 * when the body has none. */
static void write_line(FILE *f, struct line *l, const char *topic, size_t topic_len,
                       const msgpack_object *body)
{
    bool attrs = false;
    l->len = 0;
    put_str(l, "{\"topic\":");
    json_string(l, topic, topic_len);
    for (uint32_t i = 0; i < body->via.map.size; i++) {
        const msgpack_object_kv *kv = &body->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR) {
            continue;
        }
        put_char(l, ',');
        json_string(l, kv->key.via.str.ptr, kv->key.via.str.size);
        put_char(l, ':');
        json_value(l, &kv->val);
        attrs = attrs || key_is(&kv->key, "attrs");
    }
    put_str(l, attrs ? "}\n" : ",\"attrs\":{}}\n");
    fwrite(l->p, 1, l->len, f);
}

/* Thread 2 (main): receives, unpacks, judges and writes until the end
 * frame. Returns 0 or -1 (said on stderr). */
static int consume(void *pull, FILE *f, uint64_t *events, uint64_t *alerts)
{
    zmq_msg_t topic, body;
    msgpack_unpacked up;
    struct line line = {0};
    int rc = 0;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    msgpack_unpacked_init(&up);
    for (;;) {
        if (zmq_msg_recv(&topic, pull, 0) < 0) {
            fprintf(stderr, "vigil-bench-naive: receive: %s\n", zmq_strerror(zmq_errno()));
            rc = -1;
            break;
        }
        if (zmq_msg_size(&topic) == 0) {
            break;
        }
        if (!zmq_msg_more(&topic) || zmq_msg_recv(&body, pull, 0) < 0) {
            fprintf(stderr, "vigil-bench-naive: a message without its body\n");
            rc = -1;
            break;
        }
        size_t off = 0;
        if (msgpack_unpack_next(&up, zmq_msg_data(&body), zmq_msg_size(&body), &off) !=
                MSGPACK_UNPACK_SUCCESS ||
            up.data.type != MSGPACK_OBJECT_MAP) {
            fprintf(stderr, "vigil-bench-naive: a body that is not a msgpack map\n");
            rc = -1;
            break;
        }
        const msgpack_object *values = map_get(&up.data, "values");
        const msgpack_object *cpu = values ? map_get(values, "cpu_pct") : NULL;
        if (cpu && cpu->type == MSGPACK_OBJECT_FLOAT64 && cpu->via.f64 > CPU_LIMIT) {
            (*alerts)++;
        }
        write_line(f, &line, zmq_msg_data(&topic), zmq_msg_size(&topic), &up.data);
        (*events)++;
    }
    free(line.p);
    msgpack_unpacked_destroy(&up);
    zmq_msg_close(&body);
    zmq_msg_close(&topic);
    return rc;
}

/* Lines in the file (newlines), or -1. */
static int64_t count_lines(const char *path, uint64_t *bytes)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    static char buf[1 << 20];
    int64_t lines = 0;
    size_t n;
    *bytes = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        *bytes += n;
        for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + n - p))); p++) {
            lines++;
        }
    }
    bool err = ferror(f);
    fclose(f);
    return err ? -1 : lines;
}

/* "15s", "500ms" or plain seconds; -1 when it is none of those. */
static double parse_seconds(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v <= 0) {
        return -1;
    }
    if (strcmp(end, "ms") == 0) {
        return v / 1000;
    }
    return strcmp(end, "s") == 0 || *end == '\0' ? v : -1;
}

static void usage(FILE *f)
{
    fputs("usage: vigil-bench-naive [-n COUNT | -d DURATION] [-o FILE]\n"
          "  -n, --count N      send N events (default 1000000)\n"
          "  -d, --duration D   send flat out for D (15s, 500ms) instead\n"
          "  -o, --output FILE  write the JSON lines there and keep them (default: a\n"
          "                     temporary file in $TMPDIR, removed at the end)\n"
          "Prints one JSON object; exits 0 when every event sent is a line in the file.\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"count", required_argument, NULL, 'n'},
                                             {"duration", required_argument, NULL, 'd'},
                                             {"output", required_argument, NULL, 'o'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    struct run r = {.count = 1000000};
    double duration_s = 0;
    const char *output = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "n:d:o:h", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'n':
            errno = 0;
            r.count = strtoull(optarg, &end, 10);
            if (errno || *end || r.count == 0) {
                fprintf(stderr, "vigil-bench-naive: -n wants a count above 0\n");
                return 2;
            }
            break;
        case 'd':
            duration_s = parse_seconds(optarg);
            if (duration_s <= 0) {
                fprintf(stderr, "vigil-bench-naive: -d wants a duration such as 15s or 500ms\n");
                return 2;
            }
            break;
        case 'o':
            output = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (duration_s > 0) {
        r.count = 0;
    }
    if (gethostname(r.host, sizeof r.host - 1) != 0) {
        snprintf(r.host, sizeof r.host, "localhost");
    }

    char path[4096];
    FILE *f;
    if (output) {
        snprintf(path, sizeof path, "%s", output);
        f = fopen(path, "w");
    } else {
        const char *tmpdir = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/vigil-bench-naive.XXXXXX",
                 tmpdir && *tmpdir ? tmpdir : "/tmp");
        int fd = mkstemp(path);
        f = fd < 0 ? NULL : fdopen(fd, "w");
    }
    if (!f) {
        fprintf(stderr, "vigil-bench-naive: cannot write %s: %s\n", path, strerror(errno));
        return 3;
    }

    int status = 3;
    void *pull = NULL;
    r.zctx = zmq_ctx_new();
    int timeout_ms = RECV_TIMEOUT_MS;
    if (!r.zctx || !(pull = zmq_socket(r.zctx, ZMQ_PULL)) ||
        zmq_setsockopt(pull, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms) != 0 ||
        zmq_bind(pull, ENDPOINT) != 0 || !(r.push = zmq_socket(r.zctx, ZMQ_PUSH)) ||
        zmq_connect(r.push, ENDPOINT) != 0) {
        fprintf(stderr, "vigil-bench-naive: ZeroMQ: %s\n", zmq_strerror(zmq_errno()));
        fclose(f);
        goto out;
    }

    uint64_t t0 = now_ns(CLOCK_MONOTONIC), cpu0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
    r.end_real_ns = now_ns(CLOCK_REALTIME) + (uint64_t)(duration_s * 1e9);
    pthread_t producer;
    if (pthread_create(&producer, NULL, producer_main, &r) != 0) {
        fprintf(stderr, "vigil-bench-naive: cannot start the producer thread\n");
        fclose(f);
        goto out;
    }
    uint64_t events = 0, alerts = 0;
    int crc = consume(pull, f, &events, &alerts);
    if (crc != 0) {
        zmq_ctx_shutdown(r.zctx); /* the producer may wait at the high-water mark */
    }
    pthread_join(producer, NULL);
    bool write_err = fflush(f) != 0 || ferror(f);
    write_err = fclose(f) != 0 || write_err;
    uint64_t t1 = now_ns(CLOCK_MONOTONIC), cpu1 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
    if (write_err) {
        fprintf(stderr, "vigil-bench-naive: writing %s failed: %s\n", path, strerror(errno));
        goto out;
    }
    if (crc != 0 || r.err) {
        if (r.err) {
            fprintf(stderr, "vigil-bench-naive: send: %s\n", zmq_strerror(r.err));
        }
        goto out;
    }

    uint64_t bytes = 0;
    int64_t lines = count_lines(path, &bytes);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double seconds = (double)(t1 - t0) / 1e9;
    printf("{\"events\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"lines\":%" PRId64 ",\"bytes\":%" PRIu64
           ",\"alerts\":%" PRIu64 ",\"seconds\":%.3f,\"events_per_s\":%.0f"
           ",\"cpu_s_per_million\":%.3f,\"rss_peak_bytes\":%ld}\n",
           events, r.sent, lines, bytes, alerts, seconds, events ? (double)events / seconds : 0.0,
           events ? (double)(cpu1 - cpu0) / 1e9 / ((double)events / 1e6) : 0.0,
           ru.ru_maxrss * 1024L);
    if (lines < 0) {
        fprintf(stderr, "vigil-bench-naive: cannot read %s back\n", path);
    } else if (events != r.sent || (uint64_t)lines != events) {
        fprintf(stderr,
                "vigil-bench-naive: sent %" PRIu64 ", received %" PRIu64 ", %" PRId64
                " lines in the file\n",
                r.sent, events, lines);
        status = 1;
    } else {
        status = 0;
    }
out:
    if (r.push) {
        /* Closed here, not by the producer: libzmq may drop a PUSH socket's
         * last message when it is closed right after a send that waited at
         * the high-water mark (libzmq issue #1922). */
        zmq_close(r.push);
    }
    if (pull) {
        zmq_close(pull);
    }
    if (r.zctx) {
        zmq_ctx_term(r.zctx);
    }
    if (!output) {
        unlink(path);
    }
    return status;
}

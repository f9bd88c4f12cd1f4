/* vigil-pub: reads JSON objects, one per line, from stdin and publishes each
 * as an event on the bus (PUSH: queued, never dropped). It fills ts, host,
 * source and seq where a line lacks them, checks each event as the bus will,
 * and exits only when ZeroMQ has handed everything to the bus. With
 * --batch, lines read back to back go as one message (docs/events.md).
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bus.h"
#include "config.h"
#include "event.h"
#include "json.h"
#include "log.h"
#include "tool.h"

#define CONNECT_TIMEOUT_MS 5000
#define LINGER_MS 30000

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vigil-pub [-c FILE | -e ENDPOINT] [-t TOPIC] [--interval DURATION]\n"
            "                 [-b N] [--source NAME] [--host NAME] < events.jsonl\n"
            "  -c, --config FILE    read the publish endpoint from a vigil config\n"
            "  -e, --endpoint EP    the bus's publish endpoint (default %s)\n"
            "  -t, --topic TOPIC    topic of every event (a line's own \"topic\" key wins)\n"
            "      --interval D     pause D (e.g. 100ms) between events\n"
            "  -b, --batch N        up to N events per message, from lines read back to back\n"
            "                       (default 1: one message per event)\n"
            "      --source NAME    source of events that lack one (default vigil-pub)\n"
            "      --host NAME      host of events that lack one (default this host)\n"
            "      --server-key FILE  the central's public key (vigil.pub): CURVE, with --key\n"
            "      --key FILE       your secret key (vigil.key, mode 0600; from vigil-keygen)\n"
            "Each line is a JSON object: {\"labels\": {...}, \"values\": {...}, ...}.\n"
            "Lines that are not are reported and skipped; the exit status is then 1.\n",
            VIGIL_DEFAULT_PUBLISH);
}

static bool key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

struct pub {
    const char *topic, *source, *host;
    uint64_t seq;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char topic_buf[VIGIL_TOPIC_MAX + 1];
};

/* Turns one parsed line into topic + body in p; returns NULL or a reason. */
static const char *build(struct pub *p, const msgpack_object *o, const char **topic)
{
    if (o->type != MSGPACK_OBJECT_MAP) {
        return "not a JSON object";
    }
    const msgpack_object *t = NULL;
    bool has_ts = false, has_host = false, has_source = false, has_seq = false;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (key_is(k, "topic")) {
            t = &o->via.map.ptr[i].val;
            continue;
        }
        has_ts |= key_is(k, "ts");
        has_host |= key_is(k, "host");
        has_source |= key_is(k, "source");
        has_seq |= key_is(k, "seq");
        keep++;
    }
    if (t) {
        if (t->type != MSGPACK_OBJECT_STR || t->via.str.size > VIGIL_TOPIC_MAX) {
            return "\"topic\" is not a string of at most 255 bytes";
        }
        memcpy(p->topic_buf, t->via.str.ptr, t->via.str.size);
        p->topic_buf[t->via.str.size] = '\0';
        *topic = p->topic_buf;
    } else if (p->topic) {
        *topic = p->topic;
    } else {
        return "no topic: give -t TOPIC or a \"topic\" key";
    }
    p->sb.size = 0;
    msgpack_pack_map(&p->pk, keep + !has_ts + !has_host + !has_source + !has_seq);
    if (!has_ts) {
        pack_cstr(&p->pk, "ts");
        msgpack_pack_uint64(&p->pk, vigil_now_ns());
    }
    if (!has_host) {
        pack_cstr(&p->pk, "host");
        pack_cstr(&p->pk, p->host);
    }
    if (!has_source) {
        pack_cstr(&p->pk, "source");
        pack_cstr(&p->pk, p->source);
    }
    if (!has_seq) {
        pack_cstr(&p->pk, "seq");
        msgpack_pack_uint64(&p->pk, p->seq + 1);
    }
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        if (!key_is(&o->via.map.ptr[i].key, "topic")) {
            msgpack_pack_object(&p->pk, o->via.map.ptr[i].key);
            msgpack_pack_object(&p->pk, o->via.map.ptr[i].val);
        }
    }
    if (!has_seq) {
        p->seq++;
    }
    return NULL;
}

/* PUSH queues while unconnected, so without this a wrong endpoint would make
 * us wait forever at exit. Wait for the connection, with a deadline. */
static bool wait_connected(void *zctx, void *push, const char *endpoint)
{
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://vigil-pub.monitor.%d", (int)getpid());
    if (zmq_socket_monitor(push, mon_ep, ZMQ_EVENT_CONNECTED) != 0) {
        return true; /* cannot tell: carry on */
    }
    void *mon = zmq_socket(zctx, ZMQ_PAIR);
    zmq_connect(mon, mon_ep);
    if (zmq_connect(push, endpoint) != 0) {
        fprintf(stderr, "vigil-pub: cannot connect to %s: %s\n", endpoint,
                zmq_strerror(zmq_errno()));
        zmq_close(mon);
        return false;
    }
    bool ok = strncmp(endpoint, "inproc://", 9) == 0;
    uint64_t deadline = vigil_mono_ns() + (uint64_t)CONNECT_TIMEOUT_MS * 1000000u;
    while (!ok && vigil_mono_ns() < deadline && !vigil_tool_stop) {
        zmq_pollitem_t it = {.socket = mon, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 100) > 0) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, mon, 0) >= 0 && zmq_msg_size(&m) >= 2) {
                uint16_t ev;
                memcpy(&ev, zmq_msg_data(&m), 2);
                ok = ev == ZMQ_EVENT_CONNECTED;
            }
            while (zmq_msg_more(&m)) {
                zmq_msg_recv(&m, mon, 0);
            }
            zmq_msg_close(&m);
        }
    }
    zmq_socket_monitor(push, NULL, 0);
    zmq_close(mon);
    if (!ok) {
        fprintf(stderr, "vigil-pub: cannot reach the bus at %s within %d s (is vigild running?)\n",
                endpoint, CONNECT_TIMEOUT_MS / 1000);
    }
    return ok;
}

/* Sends the events held as one batch (bus.h) and empties it. 0 (also when
 * none is held), or -1 with zmq_errno(). */
static int send_held(void *push, struct vigil_record_buf *held)
{
    if (vigil_record_count(held) == 0) {
        return 0;
    }
    int rc = zmq_send(push, "", VIGIL_BUS_PUBLISH_BATCH_LEN, ZMQ_SNDMORE) == -1 ||
                     zmq_send(push, vigil_record_data(held), vigil_record_bytes(held), 0) == -1
                 ? -1
                 : 0;
    vigil_record_clear(held);
    return rc;
}

/* Publishes one event: alone, or into the batch being held, which goes
 * once it holds `batch` events or no more input is waiting (a batch never
 * holds an event while vigil-pub waits for the next line). 0 or -1. */
static int publish(void *push, struct vigil_record_buf *held, unsigned batch, const char *topic,
                   const char *body, size_t len)
{
    if (batch > 1) {
        int rc = vigil_record_append(held, topic, strlen(topic), body, len);
        if (rc == -ENOBUFS) {
            if (send_held(push, held) != 0) {
                return -1;
            }
            rc = vigil_record_append(held, topic, strlen(topic), body, len);
        }
        if (rc == 0) {
            struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
            if (vigil_record_count(held) < batch && poll(&in, 1, 0) == 1) {
                return 0;
            }
            return send_held(push, held);
        }
        /* Over the batch bound alone: it goes alone (the bus judges it). */
        if (send_held(push, held) != 0) {
            return -1;
        }
    }
    return zmq_send(push, topic, strlen(topic), ZMQ_SNDMORE) == -1 ||
                   zmq_send(push, body, len, 0) == -1
               ? -1
               : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"endpoint", required_argument, NULL, 'e'},
        {"topic", required_argument, NULL, 't'},
        {"interval", required_argument, NULL, 'i'},
        {"batch", required_argument, NULL, 'b'},
        {"source", required_argument, NULL, 's'},
        {"host", required_argument, NULL, 'H'},
        {"server-key", required_argument, NULL, 'S'},
        {"key", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *endpoint_arg = NULL, *server_key = NULL, *key = NULL;
    uint64_t interval_ns = 0;
    unsigned batch = 1;
    char hostname[256] = "localhost";
    gethostname(hostname, sizeof hostname - 1);
    struct pub p = {.source = "vigil-pub", .host = hostname};
    int c;
    while ((c = getopt_long(argc, argv, "c:e:t:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'e':
            endpoint_arg = optarg;
            break;
        case 't':
            if (!vigil_topic_valid(optarg, strlen(optarg))) {
                fprintf(stderr,
                        "vigil-pub: topic '%s' is not 1-255 bytes of printable UTF-8 without "
                        "spaces\n",
                        optarg);
                return 2;
            }
            p.topic = optarg;
            break;
        case 'i':
            if (vigil_parse_duration(optarg, &interval_ns) != 0) {
                fprintf(stderr, "vigil-pub: --interval wants a duration such as 100ms, not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'b': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 4096) {
                fprintf(stderr, "vigil-pub: --batch wants a number from 1 to 4096\n");
                return 2;
            }
            batch = (unsigned)v;
            break;
        }
        case 's':
            p.source = optarg;
            break;
        case 'H':
            p.host = optarg;
            break;
        case 'S':
            server_key = optarg;
            break;
        case 'K':
            key = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || (config && endpoint_arg)) {
        usage(stderr);
        return 2;
    }
    char *endpoint = vigil_tool_endpoint("vigil-pub", config, endpoint_arg, false);
    if (!endpoint) {
        return 2;
    }
    vigil_tool_catch_signals();

    void *zctx = zmq_ctx_new();
    void *push = zmq_socket(zctx, ZMQ_PUSH);
    int linger = LINGER_MS;
    zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
    if (vigil_tool_curve("vigil-pub", push, server_key, key) != 0 ||
        !wait_connected(zctx, push, endpoint)) {
        zmq_close(push);
        zmq_ctx_term(zctx);
        free(endpoint);
        return 2;
    }
    msgpack_sbuffer_init(&p.sb);
    msgpack_packer_init(&p.pk, &p.sb, msgpack_sbuffer_write);
    msgpack_zone zone, check_zone;
    msgpack_zone_init(&zone, 8192);
    msgpack_zone_init(&check_zone, 8192);
    struct vigil_record_buf held;
    vigil_record_init(&held, batch, VIGIL_BUS_PUBLISH_BATCH_MAX, 0);

    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long long lineno = 0, sent = 0, skipped = 0;
    while (!vigil_tool_stop && (len = getline(&line, &cap, stdin)) != -1) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)len) {
            continue; /* blank lines are not events */
        }
        char err[256];
        msgpack_object o;
        const char *topic = NULL;
        const char *why = NULL;
        struct vigil_event_view v;
        if (vigil_json_parse(line, (size_t)len, &zone, &o, err, sizeof err) != 0) {
            why = err;
        } else if (!(why = build(&p, &o, &topic)) &&
                   vigil_event_decode(&v, topic, strlen(topic), p.sb.data, p.sb.size, SIZE_MAX,
                                      &check_zone, &why) != 0) {
            /* The bus would drop it: say so here, with the line number. */
        }
        msgpack_zone_clear(&zone);
        msgpack_zone_clear(&check_zone);
        if (why) {
            fprintf(stderr, "vigil-pub: stdin:%llu: %s; line skipped\n", lineno, why);
            skipped++;
            continue;
        }
        if (sent && interval_ns) {
            if (send_held(push, &held) != 0) {
                fprintf(stderr, "vigil-pub: stdin:%llu: send failed: %s\n", lineno,
                        zmq_strerror(zmq_errno()));
                break;
            }
            struct timespec ts = {.tv_sec = (time_t)(interval_ns / 1000000000u),
                                  .tv_nsec = (long)(interval_ns % 1000000000u)};
            nanosleep(&ts, NULL);
        }
        if (publish(push, &held, batch, topic, p.sb.data, p.sb.size) != 0) {
            fprintf(stderr, "vigil-pub: stdin:%llu: send failed: %s\n", lineno,
                    zmq_strerror(zmq_errno()));
            break;
        }
        sent++;
    }
    if (send_held(push, &held) != 0) {
        fprintf(stderr, "vigil-pub: send failed: %s\n", zmq_strerror(zmq_errno()));
    }
    vigil_record_fini(&held);
    free(line);
    msgpack_zone_destroy(&zone);
    msgpack_zone_destroy(&check_zone);
    msgpack_sbuffer_destroy(&p.sb);
    /* zmq_ctx_term waits (up to the linger) until every queued event is
     * written to the bus. */
    zmq_close(push);
    zmq_ctx_term(zctx);
    free(endpoint);
    if (skipped) {
        fprintf(stderr, "vigil-pub: %llu events published, %llu lines skipped\n", sent, skipped);
    }
    return skipped ? 1 : 0;
}

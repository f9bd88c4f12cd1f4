/* vigil-tap: subscribes to the bus and prints each event as one JSON object
 * per line, live. Output is flushed whenever the socket runs dry, so a
 * reader sees events at once without a write(2) per event under load.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "config.h"
#include "event.h"
#include "json.h"
#include "log.h"
#include "tool.h"

#define MAX_PREFIXES 64

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: vigil-tap [-c FILE | -e ENDPOINT] [-t PREFIX]... [-n COUNT] [--timeout DURATION]\n"
        "  -c, --config FILE     read the subscribe endpoint from a vigil config\n"
        "  -e, --endpoint EP     the bus's subscribe endpoint (default %s)\n"
        "  -t, --topic PREFIX    only topics starting with PREFIX (repeatable; default all)\n"
        "  -n, --count N         exit 0 after N events\n"
        "      --timeout D       give up after D (e.g. 5s): exit 0 if anything was printed\n"
        "                        and no COUNT was given, else 1\n"
        "      --server-key FILE the central's public key (vigil.pub): CURVE, with --key\n"
        "      --key FILE        your secret key (vigil.key, mode 0600; from vigil-keygen)\n",
        VIGIL_DEFAULT_SUBSCRIBE);
}

/* Prints one message; returns false if its body is not one msgpack object. */
static bool print_event(zmq_msg_t *topic, zmq_msg_t *body, char **buf, size_t *cap)
{
    size_t need = vigil_json_event(zmq_msg_data(topic), zmq_msg_size(topic), zmq_msg_data(body),
                                   zmq_msg_size(body), *buf, *cap);
    if (need == SIZE_MAX) {
        return false;
    }
    if (need >= *cap) {
        char *nb = realloc(*buf, need + 1);
        if (!nb) {
            return false;
        }
        *buf = nb;
        *cap = need + 1;
        vigil_json_event(zmq_msg_data(topic), zmq_msg_size(topic), zmq_msg_data(body),
                         zmq_msg_size(body), *buf, *cap);
    }
    (*buf)[need] = '\n';
    fwrite(*buf, 1, need + 1, stdout);
    (*buf)[need] = '\0';
    return true;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"endpoint", required_argument, NULL, 'e'},
        {"topic", required_argument, NULL, 't'},
        {"count", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 'T'},
        {"server-key", required_argument, NULL, 'S'},
        {"key", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *endpoint_arg = NULL, *server_key = NULL, *key = NULL;
    const char *prefixes[MAX_PREFIXES];
    size_t nprefixes = 0;
    unsigned long long count = 0;
    uint64_t timeout_ns = 0;
    int c;
    while ((c = getopt_long(argc, argv, "c:e:t:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'e':
            endpoint_arg = optarg;
            break;
        case 't':
            if (nprefixes == MAX_PREFIXES) {
                fprintf(stderr, "vigil-tap: at most %d -t prefixes\n", MAX_PREFIXES);
                return 2;
            }
            prefixes[nprefixes++] = optarg;
            break;
        case 'n': {
            char *end;
            errno = 0;
            count = strtoull(optarg, &end, 10);
            if (errno || *end || count == 0 || optarg[0] == '-') {
                fprintf(stderr, "vigil-tap: -n wants a positive number, not '%s'\n", optarg);
                return 2;
            }
            break;
        }
        case 'T':
            if (vigil_parse_duration(optarg, &timeout_ns) != 0) {
                fprintf(stderr, "vigil-tap: --timeout wants a duration such as 5s, not '%s'\n",
                        optarg);
                return 2;
            }
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
    char *endpoint = vigil_tool_endpoint("vigil-tap", config, endpoint_arg, true);
    if (!endpoint) {
        return 2;
    }
    vigil_tool_catch_signals();

    void *zctx = zmq_ctx_new();
    void *sub = zmq_socket(zctx, ZMQ_SUB);
    int hwm = 100000, linger = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    if (vigil_tool_curve("vigil-tap", sub, server_key, key) != 0) {
        zmq_close(sub);
        zmq_ctx_term(zctx);
        free(endpoint);
        return 2;
    }
    if (zmq_connect(sub, endpoint) != 0) {
        fprintf(stderr, "vigil-tap: cannot connect to %s: %s\n", endpoint,
                zmq_strerror(zmq_errno()));
        zmq_close(sub);
        zmq_ctx_term(zctx);
        free(endpoint);
        return 2;
    }
    if (nprefixes == 0) {
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    }
    for (size_t i = 0; i < nprefixes; i++) {
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, prefixes[i], strlen(prefixes[i]));
    }

    size_t cap = 64 * 1024;
    char *buf = malloc(cap);
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    unsigned long long printed = 0, bad = 0;
    uint64_t deadline = timeout_ns ? vigil_mono_ns() + timeout_ns : 0;
    int status = -1;
    while (status < 0 && !vigil_tool_stop && buf) {
        long wait_ms = 200;
        if (deadline) {
            uint64_t now = vigil_mono_ns();
            if (now >= deadline) {
                break;
            }
            uint64_t left = (deadline - now) / 1000000u + 1;
            wait_ms = left < 200 ? (long)left : 200;
        }
        zmq_pollitem_t it = {.socket = sub, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, wait_ms) <= 0) {
            continue;
        }
        /* Drain what is there, then flush once. */
        while (zmq_msg_recv(&topic, sub, ZMQ_DONTWAIT) != -1) {
            bool ok = zmq_msg_more(&topic) && zmq_msg_recv(&body, sub, 0) != -1 &&
                      !zmq_msg_more(&body) && print_event(&topic, &body, &buf, &cap);
            if (!ok) {
                bad++;
                while (zmq_msg_more(&topic) && zmq_msg_recv(&topic, sub, 0) != -1) {
                }
                continue;
            }
            if (++printed == count) {
                status = 0;
                break;
            }
        }
        fflush(stdout);
        if (ferror(stdout)) {
            status = 1; /* the reader went away */
        }
    }
    fflush(stdout);
    if (bad) {
        fprintf(stderr, "vigil-tap: %llu messages were not events and were skipped\n", bad);
    }
    if (status < 0) {
        /* Timeout or signal: success only if we printed and no count was set. */
        status = (count == 0 && printed > 0) ? 0 : 1;
        if (count && printed < count) {
            fprintf(stderr, "vigil-tap: %llu of %llu events arrived\n", printed, count);
        }
    }
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    free(buf);
    zmq_close(sub);
    zmq_ctx_term(zctx);
    free(endpoint);
    return status;
}

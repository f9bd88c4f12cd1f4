/* tcp_probe: state shared by the config reader (tcp_probe_conf.c) and the
 * prober (tcp_probe.c). Private to the plugin; nothing here is ABI.
 */
#ifndef VIGIL_TCP_PROBE_H
#define VIGIL_TCP_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "vigil/plugin.h"

#define TP_HOST_MAX 256 /* a DNS name is at most 253 characters */
#define TP_PATH_MAX 4096

struct event;
struct evdns_base;
struct evdns_getaddrinfo_request;

enum tp_state {
    TP_IDLE = 0,
    TP_RESOLVING,  /* evdns_getaddrinfo in flight */
    TP_CONNECTING, /* non-blocking connect in flight */
    TP_CANCELLING, /* result published; waiting for evdns to confirm a cancel */
};

struct tp_target {
    struct tcp_probe *tp;
    /* From the config (strings owned by the host, valid until fini). */
    const char *name, *address, *netns;
    char host[TP_HOST_MAX];
    char port[8];
    char ns_path[TP_PATH_MAX]; /* "" when the daemon's own namespace */
    uint64_t timeout_ns;
    bool expect_closed;
    bool numeric;                 /* host is an IP literal: no resolver involved */
    struct sockaddr_storage addr; /* the numeric address, or the resolved one */
    socklen_t addr_len;

    /* One probe at a time. */
    enum tp_state state;
    struct evdns_getaddrinfo_request *req;
    int fd;
    struct event *io, *timer;                  /* created in init, reused by every probe */
    uint64_t start_ns, connect_ns, resolve_ns; /* CLOCK_MONOTONIC */
    bool resolved;

    /* Rounds skipped because the previous probe was still in flight. */
    uint64_t skipped_total, skipped_at_last, last_pub_ns;
    bool published_once;
};

struct tcp_probe {
    struct vigil_instance *h;
    const struct vigil_api *api;
    struct event_base *base;
    struct evdns_base *dns; /* NULL when every target is an IP literal */
    struct tp_target *targets;
    size_t ntargets;
    /* A round starts its probes TP_BATCH at a time, so that completions are
     * seen (and timed) between batches, not only after the whole round was
     * started: `next` is the first target not started yet, `cont` the
     * zero-delay timer that starts the next batch. */
    size_t next;
    struct event *cont;
    bool any_netns;
    int home_ns;     /* the instance thread's own netns; -1 until first collect */
    bool home_tried; /* opening it failed once: do not retry every round */
    bool stopping;   /* fini has begun: publish nothing more */
    bool broken;     /* could not return to the home netns: start no probe */
};

/* Reads and checks the instance's config into tp (targets, resolver).
 * Reports every problem with api->conf_error and returns VIGIL_ECONFIG, or
 * -ENOMEM; on failure what it allocated is left for tp_conf_free(). Runs on
 * the main thread, in init. */
int tp_conf_read(struct tcp_probe *tp);
/* Frees what tp_conf_read() allocated (targets, resolver). NULL-safe fields. */
void tp_conf_free(struct tcp_probe *tp);

#endif

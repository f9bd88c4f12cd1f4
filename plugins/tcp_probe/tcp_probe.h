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
#define TP_ATTEMPTS_MAX 100
/* Why an attempt did not connect: the `error` attr (names in tcp_probe.c). */
enum tp_error {
    TP_OK = 0,
    TP_ERR_REFUSED,     /* RST: nothing listens (or a firewall rejects with RST) */
    TP_ERR_TIMEOUT,     /* no answer within the target's timeout */
    TP_ERR_UNREACHABLE, /* no route, network down, no usable local address */
    TP_ERR_DENIED,      /* EACCES/EPERM: a local firewall or policy */
    TP_ERR_RESET,       /* reset during the handshake */
    TP_ERR_CONNECT,     /* any other connect error */
    TP_ERR_DNS,         /* the name did not resolve (or not in time) */
    TP_ERR_NETNS,       /* could not create the socket in the target's netns */
    TP_ERR_SOCKET,      /* socket() failed (e.g. out of file descriptors) */
    TP_ERR_KINDS,
};

struct event;
struct evdns_base;
struct evdns_getaddrinfo_request;

enum tp_state {
    TP_IDLE = 0,
    TP_RESOLVING,  /* evdns_getaddrinfo in flight */
    TP_CONNECTING, /* non-blocking connect in flight */
    TP_CANCELLING, /* result published; waiting for evdns to confirm a cancel */
};

/* One of a target's `attempts` connects in a round. */
struct tp_attempt {
    struct tp_target *t;
    int fd;
    struct event *io; /* created in init, re-assigned to each connect's socket */
    uint64_t connect_ns;
    bool done;
};

struct tp_target {
    struct tcp_probe *tp;
    /* From the config (strings owned by the host, valid until fini). */
    const char *name, *address, *netns;
    char host[TP_HOST_MAX];
    char port[8];
    char ns_path[TP_PATH_MAX]; /* "" when the daemon's own namespace */
    uint64_t timeout_ns;
    unsigned attempts; /* connects per round, 1..TP_ATTEMPTS_MAX */
    bool expect_closed;
    bool numeric;                 /* host is an IP literal: no resolver involved */
    struct sockaddr_storage addr; /* the numeric address, or the resolved one */
    socklen_t addr_len;

    /* One probe (a round's `attempts` connects) at a time. */
    enum tp_state state;
    struct evdns_getaddrinfo_request *req;
    struct event *timer;           /* created in init, reused by every probe */
    uint64_t start_ns, resolve_ns; /* CLOCK_MONOTONIC */
    bool resolved;
    bool starting; /* the attempts are being started: publish only after */

    /* The round's attempts and what they found; sized in init so that a
     * probe allocates nothing. */
    struct tp_attempt *att;
    double *ms;                 /* connect times of the successful attempts */
    unsigned pending;           /* attempts not ended yet */
    unsigned connected;         /* attempts that connected */
    uint64_t retrans;           /* sum of their tcpi_total_retrans */
    uint32_t rtt_us, rttvar_us; /* of the first attempt that connected */
    bool has_rtt;
    unsigned nerr[TP_ERR_KINDS];           /* failed attempts per error */
    enum tp_error first_err[TP_ERR_KINDS]; /* errors in the order first seen */
    unsigned nkinds;
    char detail[TP_ERR_KINDS][512]; /* the first error_detail of each error */

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

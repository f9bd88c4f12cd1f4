/* syslog: a sink that delivers events as RFC 5424 messages to the local
 * syslog daemon (unix:///dev/log), or to a server over UDP (RFC 5426) or
 * TCP (RFC 6587 octet counting). Formatting is in rfc5424.c, transports in
 * net.c; this file holds the options and the write loop.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "rfc5424.h"
#include "vigil/plugin.h"

#define MAX_MESSAGE_DGRAM 65507u /* the largest UDP payload over IPv4 */
#define MAX_MESSAGE_STREAM (1024u * 1024u)

struct syslog_sink {
    struct vigil_instance *h;
    const struct vigil_api *api;
    struct rfc5424_fmt fmt;
    struct net net;
    char *buf;        /* NET_HEADROOM + max_len + 1: the one message buffer */
    bool down;        /* an outage was logged; log the recovery */
    uint64_t losses;  /* net.losses already logged */
    int truncated_id; /* counter: messages whose parameters did not all fit */
};

static const struct vigil_option syslog_options[] = {
    {"address", VIGIL_OPT_STRING, "unix:///dev/log",
     "unix:///path (a datagram socket), udp://host:port or tcp://host:port (port 514 if "
     "omitted; IPv6 as [addr]:port)"},
    {"facility", VIGIL_OPT_STRING, "daemon",
     "kern user mail daemon auth syslog lpr news uucp cron authpriv ftp local0..local7"},
    {"severity", VIGIL_OPT_STRING, "notice",
     "severity of events without a known labels.severity (emerg alert crit err warning "
     "notice info debug)"},
    {"app_name", VIGIL_OPT_STRING, "vigil", "APP-NAME: 1 to 48 printable ASCII characters"},
    {"sd_id", VIGIL_OPT_STRING, "vigil@32473",
     "SD-ID of the structured data: name@your-enterprise-number (32473 is for examples)"},
    {"timeout", VIGIL_OPT_DURATION, "5s", "how long a connect or a send may block"},
    {"replay", VIGIL_OPT_DURATION, "1s",
     "tcp, unix: after the server dropped a connection with messages unread, send the "
     "messages of this last stretch again (0s: never)"},
    {"max_message", VIGIL_OPT_SIZE, "8KiB",
     "longest message (without the TCP length prefix): 480 to 65507 bytes for udp and unix, "
     "to 1MiB for tcp; longer ones lose SD parameters and have MSG cut"},
    {NULL, 0, NULL, NULL},
};

/* One string option (the host checked its type against the table). */
static const char *conf_str(struct vigil_instance *h, const struct vigil_api *api,
                            const struct vigil_conf *root, const char *key, int *bad)
{
    const char *s = "";
    if (api->conf_string(api->conf_get(root, key), &s) != 0) {
        api->conf_error(h, api->conf_get(root, key), "%s must be a string", key);
        (*bad)++;
    }
    return s;
}

static int parse_options(struct syslog_sink *s, const struct vigil_conf *root)
{
    struct vigil_instance *h = s->h;
    const struct vigil_api *api = s->api;
    int bad = 0;
    const char *why;

    uint64_t timeout_ns = 0, max_len = 0;
    api->conf_duration(api->conf_get(root, "timeout"), &timeout_ns);
    if (timeout_ns < 1000000u || timeout_ns > 3600ull * 1000000000u) {
        api->conf_error(h, api->conf_get(root, "timeout"), "timeout must be 1ms to 1h");
        bad++;
    }
    const char *address = conf_str(h, api, root, "address", &bad);
    if ((why = net_parse(&s->net, address, timeout_ns))) {
        api->conf_error(h, api->conf_get(root, "address"), "address '%s': %s", address, why);
        bad++;
    }
    api->conf_size(api->conf_get(root, "max_message"), &max_len);
    uint64_t max_max = s->net.kind == NET_TCP ? MAX_MESSAGE_STREAM : MAX_MESSAGE_DGRAM;
    if (max_len < RFC5424_MIN_LEN || max_len > max_max) {
        api->conf_error(h, api->conf_get(root, "max_message"),
                        "max_message must be %u to %llu bytes for this address", RFC5424_MIN_LEN,
                        (unsigned long long)max_max);
        bad++;
    }
    s->fmt.max_len = (size_t)max_len;

    const char *facility = conf_str(h, api, root, "facility", &bad);
    if ((s->fmt.facility = rfc5424_facility(facility)) < 0) {
        api->conf_error(h, api->conf_get(root, "facility"),
                        "unknown facility '%s': use kern, user, mail, daemon, auth, syslog, lpr, "
                        "news, uucp, cron, authpriv, ftp or local0 to local7",
                        facility);
        bad++;
    }
    const char *sev = conf_str(h, api, root, "severity", &bad);
    if ((s->fmt.default_severity = rfc5424_severity(sev, strlen(sev))) < 0) {
        api->conf_error(h, api->conf_get(root, "severity"),
                        "unknown severity '%s': use emerg, alert, crit, err, warning, notice, "
                        "info or debug",
                        sev);
        bad++;
    }
    const char *app = conf_str(h, api, root, "app_name", &bad);
    if ((why = rfc5424_check_ascii(app, RFC5424_APP_NAME_MAX))) {
        api->conf_error(h, api->conf_get(root, "app_name"), "app_name '%s' %s (1 to 48)", app, why);
        bad++;
    } else {
        snprintf(s->fmt.app_name, sizeof s->fmt.app_name, "%s", app);
    }
    const char *sd_id = conf_str(h, api, root, "sd_id", &bad);
    if ((why = rfc5424_check_sd_name(sd_id, 1))) {
        api->conf_error(h, api->conf_get(root, "sd_id"), "sd_id '%s' %s", sd_id, why);
        bad++;
    } else {
        snprintf(s->fmt.sd_id, sizeof s->fmt.sd_id, "%s", sd_id);
    }
    snprintf(s->fmt.procid, sizeof s->fmt.procid, "%ld", (long)getpid());
    if (bad == 0) {
        /* Names are looked up now; one that does not exist is a config
         * error, a lookup that may work later (no DNS yet) is retried. */
        int rc = net_resolve(&s->net);
        if (rc == EAI_AGAIN) {
            api->log(h, VIGIL_LOG_WARN, "cannot resolve %s now (%s); retrying when sending",
                     s->net.host, gai_strerror(rc));
        } else if (rc != 0) {
            api->conf_error(h, api->conf_get(root, "address"), "cannot resolve '%s': %s",
                            s->net.host, gai_strerror(rc));
            bad++;
        }
    }
    return bad ? VIGIL_ECONFIG : 0;
}

static void syslog_fini(void *state)
{
    struct syslog_sink *s = state;
    net_fini(&s->net);
    free(s->buf);
    free(s);
}

static int syslog_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    struct syslog_sink *s = calloc(1, sizeof *s);
    if (!s) {
        return -ENOMEM;
    }
    s->h = h;
    s->api = api;
    s->net.fd = -1;
    int rc = parse_options(s, api->conf_root(h));
    uint64_t replay_ns = 0;
    api->conf_duration(api->conf_get(api->conf_root(h), "replay"), &replay_ns);
    if (rc == 0) {
        s->net.mono_ns = api->mono_ns; /* after net_parse(), which clears it */
        s->buf = malloc(NET_HEADROOM + s->fmt.max_len + 1);
        rc = s->buf ? net_replay_init(&s->net, replay_ns, s->fmt.max_len) : -ENOMEM;
    }
    if (rc == 0) {
        s->truncated_id = api->counter_new(h, "truncated_total");
        rc = s->truncated_id < 0 ? s->truncated_id : 0;
    }
    if (rc != 0) {
        syslog_fini(s);
        return rc;
    }
    /* Nothing connects here: `vigild --check` runs init too. The first
     * write connects. */
    *state = s;
    return 0;
}

/* The server dropped a connection with messages perhaps unread. */
static void log_loss(struct syslog_sink *s)
{
    if (s->net.replay.cap == 0) {
        s->api->log(s->h, VIGIL_LOG_WARN,
                    "%s closed the connection and may have dropped messages it had not read "
                    "(replay is off)",
                    s->net.url);
    } else {
        s->api->log(s->h, VIGIL_LOG_WARN,
                    "%s closed the connection with messages it may not have read; %zu sent "
                    "within the replay window are sent again",
                    s->net.url, s->net.last_armed);
    }
}

static int syslog_write(void *state, const struct vigil_event *const *events, size_t n,
                        enum vigil_write_result *results)
{
    struct syslog_sink *s = state;
    char why[512];
    size_t i;
    for (i = 0; i < n; i++) {
        char *msg = s->buf + NET_HEADROOM;
        size_t dropped;
        size_t len = rfc5424_format(&s->fmt, s->api, events[i], msg, &dropped);
        if (dropped) {
            s->api->counter_add(s->h, s->truncated_id, 1);
            s->api->log_limited(s->h, VIGIL_LOG_WARN,
                                "message too long: %zu structured-data parameters left out "
                                "(max_message %zu; counted in truncated_total)",
                                dropped, s->fmt.max_len);
        }
        results[i] = net_send(&s->net, msg, len, why, sizeof why);
        if (s->net.losses != s->losses) {
            s->losses = s->net.losses;
            log_loss(s);
        }
        if (results[i] == VIGIL_WRITE_OK) {
            if (s->down) {
                s->api->log(s->h, VIGIL_LOG_INFO, "delivering to %s again", s->net.url);
                s->down = false;
            }
        } else if (results[i] == VIGIL_WRITE_FAIL) {
            s->api->log_limited(s->h, VIGIL_LOG_WARN, "event dropped: %s", why);
        } else {
            if (!s->down) {
                s->api->log(s->h, VIGIL_LOG_WARN, "%s; events wait for a retry", why);
                s->down = true;
            }
            break;
        }
    }
    /* After a retry the rest waits too, so events stay in order. */
    for (i++; i < n; i++) {
        results[i] = VIGIL_WRITE_RETRY;
    }
    return 0;
}

/* SIGHUP: drop the connection and look the name up again on the next
 * write, so a server that moved is followed. */
static int syslog_reopen(void *state)
{
    struct syslog_sink *s = state;
    net_forget(&s->net);
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SINK,
    .name = "syslog",
    .version = "1.0.0",
    .description = "RFC 5424 messages to /dev/log, or over UDP or TCP",
    .options = syslog_options,
    .init = syslog_init,
    .write = syslog_write,
    .fini = syslog_fini,
    .reopen = syslog_reopen,
};

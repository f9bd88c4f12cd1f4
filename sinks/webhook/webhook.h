/* webhook sink, internal: the state shared by its three files: webhook.c
 * (config and the plugin descriptor), http.c (libcurl's multi interface on
 * the instance's libevent loop) and format.c (the request bodies).
 */
#ifndef VIGIL_SINK_WEBHOOK_H
#define VIGIL_SINK_WEBHOOK_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vigil/plugin.h"

/* How much of a response body is kept to be logged. */
#define WH_RESPONSE_KEEP 200

enum wh_format { WH_FORMAT_JSON, WH_FORMAT_ALERTMANAGER };

/* A growable byte buffer, reused across requests. After a failed
 * allocation `oom` is set and appends do nothing until it is cleared. */
struct wh_buf {
    char *p;
    size_t len, cap;
    bool oom;
};

struct wh_sock; /* one socket libcurl asked us to watch (http.c) */

struct webhook {
    struct vigil_instance *h;
    const struct vigil_api *api;
    enum wh_format format;
    char origin[256]; /* scheme://host:port, the only part of the URL we log */

    bool curl_inited; /* curl_global_init() done: fini undoes it */
    CURL *easy;       /* one handle for every request: its connection is kept alive */
    CURLM *multi;
    struct curl_slist *headers; /* hold secrets: zeroed before they are freed */
    struct event *timer;        /* libcurl's timeout */
    struct wh_sock *socks;
    char errbuf[CURL_ERROR_SIZE];

    struct wh_buf body;
    char response[WH_RESPONSE_KEEP + 1];
    size_t response_len;

    /* The write() in flight (async): its results[] and size. */
    bool in_flight;
    enum vigil_write_result *results;
    size_t n;
};

/* format.c. Both fill w->body and set results[i] = VIGIL_WRITE_RETRY for
 * the events they put in it and VIGIL_WRITE_FAIL for those they cannot
 * (alertmanager: events that are not alerts). Return the number of events
 * put in the body, or -ENOMEM. */
long wh_format_json(struct webhook *w, const struct vigil_event *const *events, size_t n,
                    enum vigil_write_result *results);
long wh_format_alertmanager(struct webhook *w, const struct vigil_event *const *events, size_t n,
                            enum vigil_write_result *results);

/* http.c */
struct wh_http_conf {
    const char *url;
    const char *ca_file; /* NULL: the system's CA bundle */
    bool insecure;       /* no certificate or host name checks */
    uint64_t timeout_ns; /* the whole request */
};
/* Sets up libcurl for w (w->headers already built). Returns 0 or -ENOMEM;
 * on failure wh_http_fini() frees what was made. */
int wh_http_init(struct webhook *w, const struct wh_http_conf *c);
void wh_http_fini(struct webhook *w);
/* Sends w->body. Async: returns VIGIL_WRITE_ASYNC and completes later
 * through api->write_done; otherwise blocks and returns 0. Either way the
 * results[] entries that are VIGIL_WRITE_RETRY get the request's verdict. */
int wh_http_post(struct webhook *w, enum vigil_write_result *results, size_t n);

/* webhook.c: a warning, rate-limited (the hot path must not flood the log). */
void wh_warn(struct webhook *w, const char *fmt, ...) VIGIL_PRINTF(2, 3);

#endif

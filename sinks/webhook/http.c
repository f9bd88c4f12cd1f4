/* webhook sink: HTTP. libcurl's multi interface driven by the instance's
 * libevent loop (its socket and timer callbacks map onto events), with one
 * easy handle reused for every request so the connection stays alive. The
 * verdict of a request becomes the verdict of every event in its body.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "webhook.h"

struct wh_sock {
    struct event *ev;
    struct wh_sock *next;
};

/* ---- The verdict -------------------------------------------------------------- */

/* Printable for a log line: the response is the peer's text, not ours. */
static void printable(char *out, const char *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = c == '\n' || c == '\r' || c == '\t' ? ' ' : c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    out[n] = '\0';
}

/* Applies the outcome of the request to results[] (the entries that went
 * into the body are VIGIL_WRITE_RETRY) and says why in the log. */
static void finish(struct webhook *w, CURLcode rc)
{
    long status = 0;
    curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status);
    size_t sent = 0;
    for (size_t i = 0; i < w->n; i++) {
        sent += w->results[i] == VIGIL_WRITE_RETRY;
    }
    enum vigil_write_result verdict;
    if (rc != CURLE_OK) {
        /* Refused, reset, timed out, TLS verification failed: try again. */
        verdict = VIGIL_WRITE_RETRY;
        wh_warn(w, "POST to %s failed: %s; %zu events to retry", w->origin,
                w->errbuf[0] ? w->errbuf : curl_easy_strerror(rc), sent);
    } else if (status >= 200 && status < 300) {
        verdict = VIGIL_WRITE_OK;
    } else if (status == 429 || status == 408 || status >= 500) {
        verdict = VIGIL_WRITE_RETRY;
        curl_off_t after_s = -1;
        curl_easy_getinfo(w->easy, CURLINFO_RETRY_AFTER, &after_s);
        if (after_s > 0) {
            w->api->retry_after(w->h, (uint64_t)after_s * 1000000000u);
        }
        char after[48] = "";
        if (after_s > 0) {
            snprintf(after, sizeof after, " (Retry-After: %lld s)", (long long)after_s);
        }
        wh_warn(w, "POST to %s: HTTP %ld; %zu events to retry%s", w->origin, status, sent, after);
    } else {
        /* Any other answer (4xx, or a redirect we do not follow) will not
         * change on a retry: the request itself is wrong. */
        verdict = VIGIL_WRITE_FAIL;
        char text[WH_RESPONSE_KEEP + 1];
        printable(text, w->response, w->response_len);
        wh_warn(w, "POST to %s: HTTP %ld; %zu events failed for good; the response began: %s",
                w->origin, status, sent, w->response_len ? text : "(empty)");
    }
    for (size_t i = 0; i < w->n; i++) {
        if (w->results[i] == VIGIL_WRITE_RETRY) {
            w->results[i] = verdict;
        }
    }
}

/* ---- libcurl on the event loop ---------------------------------------------------- */

/* A finished transfer completes the write() that started it. */
static void check_done(struct webhook *w)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left))) {
        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        CURLcode rc = m->data.result;
        curl_multi_remove_handle(w->multi, w->easy);
        finish(w, rc);
        w->in_flight = false;
        /* Last: the host may call write() again from inside write_done. */
        w->api->write_done(w->h);
        return;
    }
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct webhook *w = arg;
    int flags =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(w->multi, fd, flags, &running);
    check_done(w);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct webhook *w = arg;
    int running;
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(w);
}

static void sock_free(struct webhook *w, struct wh_sock *k)
{
    for (struct wh_sock **p = &w->socks; *p; p = &(*p)->next) {
        if (*p == k) {
            *p = k->next;
            break;
        }
    }
    event_free(k->ev);
    free(k);
}

/* libcurl says which sockets to watch for what. */
static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    struct webhook *w = userp;
    struct wh_sock *k = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            curl_multi_assign(w->multi, s, NULL);
            sock_free(w, k);
        }
        return 0;
    }
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                 ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (!k) {
        k = calloc(1, sizeof *k);
        if (!k || !(k->ev = event_new(w->api->event_base(w->h), s, kind, on_socket, w))) {
            free(k);
            return -1; /* libcurl fails the transfer: retried */
        }
        k->next = w->socks;
        w->socks = k;
        curl_multi_assign(w->multi, s, k);
    } else {
        event_del(k->ev);
        event_assign(k->ev, w->api->event_base(w->h), s, kind, on_socket, w);
    }
    event_add(k->ev, NULL);
    return 0;
}

/* libcurl wants to be called back after timeout_ms (-1: never). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct webhook *w = userp;
    if (timeout_ms < 0) {
        evtimer_del(w->timer);
        return 0;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    evtimer_add(w->timer, &tv);
    return 0;
}

static size_t on_response(char *p, size_t size, size_t nmemb, void *arg)
{
    struct webhook *w = arg;
    size_t n = size * nmemb, room = WH_RESPONSE_KEEP - w->response_len;
    size_t take = n < room ? n : room;
    memcpy(w->response + w->response_len, p, take);
    w->response_len += take;
    return n; /* the rest is read and dropped */
}

/* ---- Set-up and requests -------------------------------------------------------- */

int wh_http_init(struct webhook *w, const struct wh_http_conf *c)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return -ENOMEM;
    }
    w->curl_inited = true;
    w->easy = curl_easy_init();
    w->multi = curl_multi_init();
    w->timer = evtimer_new(w->api->event_base(w->h), on_timer, w);
    if (!w->easy || !w->multi || !w->timer) {
        return -ENOMEM;
    }
    CURL *e = w->easy;
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, w->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "vigil-webhook/1.0");
    /* ms, at least 1: libcurl takes 0 as "no timeout". */
    long timeout_ms = (long)(c->timeout_ns / 1000000u);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L); /* we are one thread of many */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, w->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_response);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, w);
    if (c->ca_file) {
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    }
    if (c->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    return 0;
}

void wh_http_fini(struct webhook *w)
{
    if (w->multi && w->easy) {
        curl_multi_remove_handle(w->multi, w->easy); /* a request still in flight */
    }
    if (w->easy) {
        curl_easy_cleanup(w->easy);
    }
    if (w->multi) {
        curl_multi_cleanup(w->multi);
    }
    while (w->socks) {
        sock_free(w, w->socks);
    }
    if (w->timer) {
        event_free(w->timer);
    }
    if (w->curl_inited) {
        curl_global_cleanup();
    }
}

int wh_http_post(struct webhook *w, enum vigil_write_result *results, size_t n)
{
    w->results = results;
    w->n = n;
    w->response_len = 0;
    w->errbuf[0] = '\0';
    curl_easy_setopt(w->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)w->body.len);
    curl_easy_setopt(w->easy, CURLOPT_POSTFIELDS, w->body.p);
    CURLMcode mc = curl_multi_add_handle(w->multi, w->easy);
    if (mc != CURLM_OK) {
        wh_warn(w, "cannot start a request: %s", curl_multi_strerror(mc));
        return VIGIL_EPLUGIN;
    }
    w->in_flight = true;
    return VIGIL_WRITE_ASYNC;
}

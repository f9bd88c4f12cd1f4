/* prometheus: a sink that keeps the latest value of every series its events
 * carry and serves them on GET /metrics, in the Prometheus text format 0.0.4
 * or OpenMetrics 1.0 when the scraper's Accept asks for it, with libevent's
 * evhttp on the sink's own thread. A scrape renders from a snapshot in
 * slices (series.h), so even a large one never holds back the sink's
 * reading of the bus for long.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netdb.h>

#include "series.h"
#include "vigil/plugin.h"

#define SLICE_SERIES 4096 /* rendered per turn of the sink's loop */
#define SCRAPES_MAX 8     /* at once; more are answered 503 */
#define STAGES_MAX 512    /* this host's stages /healthz keeps track of */
#define NS_PER_S 1000000000ull

static const struct vigil_option prom_options[] = {
    {"listen", VIGIL_OPT_STRING, "127.0.0.1:9464",
     "HOST:PORT (or [IPv6]:PORT) to serve /metrics on"},
    {"expire", VIGIL_OPT_DURATION, "5m", "a series not updated for this long disappears"},
    {"max_series", VIGIL_OPT_INT, "100000",
     "series kept at most; new ones past it are counted (dropped_series_total) and logged"},
    {"unhealthy_after_failing", VIGIL_OPT_DURATION, "5m",
     "/healthz answers 503 once a sink of this vigild has been failing this long"},
    {"unhealthy_after_silence", VIGIL_OPT_DURATION, "1m",
     "/healthz answers 503 when this vigild's vigil.self has not come for this long"},
    {NULL, 0, NULL, NULL},
};

/* What /healthz knows of one stage of this vigild, from its vigil.self. */
struct stage {
    char name[192]; /* "sink file/out", "bus" */
    bool running, has_running;
    double failing_s;
    uint64_t seen_ns;
};

struct scrape;

struct prom {
    const struct vigil_api *api;
    struct vigil_instance *h;
    struct prom_table *t;
    struct prom_labels l;
    struct evhttp *http;
    struct event *expire_ev;
    uint64_t expire_ns;
    size_t max_series;
    uint64_t dropped_seen; /* prom_table_dropped() when last counted */
    int c_series, c_dropped, c_scrapes;
    struct scrape *scrapes; /* in progress */
    unsigned nscrapes;
    char where[300];  /* the listen address, for the log */
    const char *host; /* this vigild's: whose vigil.self /healthz reads */
    uint64_t failing_ns, silence_ns, started_ns, last_self_ns;
    struct stage *stages;
    size_t nstages;
};

struct scrape {
    struct prom *p;
    struct evhttp_request *req; /* NULL once the scraper went away */
    struct evhttp_connection *conn;
    struct prom_snapshot *snap;
    struct evbuffer *out;
    struct event *slice_ev;
    bool openmetrics;
    struct scrape *next;
};

/* ---- Events in ------------------------------------------------------------------------------ */

/* A label's value as text: strings as they are, numbers and booleans
 * written out; other types have none. */
static bool label_text(struct prom *p, const struct vigil_field *f, const char **s, size_t *n,
                       char *buf, size_t cap)
{
    const struct vigil_api *api = p->api;
    double d;
    bool b;
    if (api->field_str(f, s, n) == 0) {
        return true;
    }
    if (api->field_bool(f, &b) == 0) {
        *s = b ? "true" : "false";
        *n = strlen(*s);
        return true;
    }
    if (api->field_double(f, &d) == 0) {
        int k = snprintf(buf, cap, "%.17g", d);
        *s = buf;
        *n = (size_t)k;
        return true;
    }
    return false;
}

/* A vigil.self of this vigild: what /healthz needs of its stage. */
static void note_self(struct prom *p, const struct vigil_event *ev, uint64_t now)
{
    const struct vigil_api *api = p->api;
    const char *stage = "", *inst = NULL;
    size_t sl = 0, il = 0;
    double running, failing = 0;
    api->event_get_str(ev, "labels.stage", &stage, &sl);
    if (api->event_get_str(ev, "labels.instance", &inst, &il) != 0 &&
        api->event_get_str(ev, "labels.rule", &inst, &il) != 0 &&
        api->event_get_str(ev, "labels.agent", &inst, &il) != 0) {
        inst = NULL;
    }
    const char *plugin = NULL;
    size_t pl = 0;
    if (api->event_get_str(ev, "labels.plugin", &plugin, &pl) != 0) {
        plugin = NULL;
    }
    char name[192]; /* "bus", "sink file/out", "rule cpu-high" */
    snprintf(name, sizeof name, "%.*s%s%.*s%s%.*s", (int)(sl < 32 ? sl : 32), stage,
             inst ? " " : "", plugin ? (int)(pl < 32 ? pl : 32) : 0, plugin ? plugin : "",
             plugin && inst ? "/" : "", inst ? (int)(il < 100 ? il : 100) : 0, inst ? inst : "");
    p->last_self_ns = now;
    struct stage *s = NULL;
    for (size_t i = 0; i < p->nstages && !s; i++) {
        s = strcmp(p->stages[i].name, name) == 0 ? &p->stages[i] : NULL;
    }
    if (!s && p->nstages < STAGES_MAX) {
        s = &p->stages[p->nstages++];
        snprintf(s->name, sizeof s->name, "%s", name);
    }
    if (!s) {
        return;
    }
    s->has_running = api->event_get_double(ev, "values.running", &running) == 0;
    s->running = s->has_running && running != 0;
    s->failing_s = api->event_get_double(ev, "values.failing_s", &failing) == 0 ? failing : 0;
    s->seen_ns = now;
}

/* One event: its label set once, then a series per numeric value. */
static int take_event(struct prom *p, const struct vigil_event *ev, uint64_t now)
{
    const struct vigil_api *api = p->api;
    const struct vigil_field *values = api->event_field(ev, "values");
    size_t nv = api->event_len(values);
    if (nv == 0) {
        return 0;
    }
    size_t tl, hl = 0;
    const char *topic = api->event_topic(ev, &tl), *host = "";
    api->event_get_str(ev, "host", &host, &hl);
    if (tl == 10 && memcmp(topic, "vigil.self", 10) == 0 && hl == strlen(p->host) &&
        memcmp(host, p->host, hl) == 0) {
        note_self(p, ev, now);
    }
    int rc = prom_labels_begin(&p->l, host, hl);
    const struct vigil_field *labels = api->event_field(ev, "labels");
    size_t nl = api->event_len(labels);
    for (size_t i = 0; rc == 0 && i < nl; i++) {
        const char *k, *s;
        size_t kl, sl;
        char num[40];
        const struct vigil_field *f = api->event_at(labels, i, &k, &kl);
        if (k && label_text(p, f, &s, &sl, num, sizeof num)) {
            rc = prom_labels_add(&p->l, k, kl, s, sl);
        }
    }
    if (rc == 0) {
        rc = prom_labels_end(&p->l);
    }
    for (size_t i = 0; rc == 0 && i < nv; i++) {
        const char *k;
        size_t kl;
        double d;
        bool b;
        const struct vigil_field *f = api->event_at(values, i, &k, &kl);
        if (!k) {
            continue;
        }
        if (api->field_double(f, &d) != 0) {
            if (api->field_bool(f, &b) != 0) {
                continue; /* not a number: no series */
            }
            d = b;
        }
        int r = prom_table_set(p->t, topic, tl, k, kl, &p->l, d, now);
        rc = r < 0 ? r : 0;
    }
    return rc;
}

static void count(struct prom *p)
{
    const struct vigil_api *api = p->api;
    api->counter_set(p->h, p->c_series, prom_table_series(p->t));
    uint64_t dropped = prom_table_dropped(p->t);
    if (dropped != p->dropped_seen) {
        api->counter_add(p->h, p->c_dropped, dropped - p->dropped_seen);
        api->log_limited(p->h, VIGIL_LOG_WARN,
                         "max_series (%zu) reached: %" PRIu64
                         " new series not kept so far (dropped_series_total); raise max_series "
                         "or narrow match",
                         p->max_series, dropped);
        p->dropped_seen = dropped;
    }
}

static int prom_write(void *state, const struct vigil_event *const *events, size_t n,
                      enum vigil_write_result *results)
{
    struct prom *p = state;
    uint64_t now = p->api->mono_ns();
    for (size_t i = 0; i < n; i++) {
        /* Only memory can fail here: the event comes again later. */
        results[i] = take_event(p, events[i], now) == 0 ? VIGIL_WRITE_OK : VIGIL_WRITE_RETRY;
    }
    count(p);
    return 0;
}

static void expire_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct prom *p = arg;
    uint64_t now = p->api->mono_ns();
    if (now > p->expire_ns) {
        prom_table_expire(p->t, now - p->expire_ns);
    }
    count(p);
}

/* ---- Scrapes ------------------------------------------------------------------------------ */

static void scrape_free(struct scrape *sc)
{
    struct prom *p = sc->p;
    for (struct scrape **pp = &p->scrapes; *pp; pp = &(*pp)->next) {
        if (*pp == sc) {
            *pp = sc->next;
            break;
        }
    }
    p->nscrapes--;
    if (sc->req) {
        evhttp_connection_set_closecb(sc->conn, NULL, NULL);
    }
    if (sc->slice_ev) {
        event_free(sc->slice_ev);
    }
    if (sc->out) {
        evbuffer_free(sc->out);
    }
    prom_snapshot_free(sc->snap);
    free(sc);
}

/* The scraper closed its connection: evhttp frees the request. */
static void closed_cb(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    struct scrape *sc = arg;
    sc->req = NULL;
}

static void slice_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct scrape *sc = arg;
    if (!sc->req) {
        scrape_free(sc);
        return;
    }
    if (!prom_snapshot_render(sc->snap, sc->out, SLICE_SERIES)) {
        event_active(sc->slice_ev, EV_TIMEOUT, 0); /* the rest after the bus had a turn */
        return;
    }
    struct evkeyvalq *hd = evhttp_request_get_output_headers(sc->req);
    evhttp_add_header(hd, "Content-Type",
                      sc->openmetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                      : "text/plain; version=0.0.4; charset=utf-8");
    evhttp_connection_set_closecb(sc->conn, NULL, NULL);
    evhttp_send_reply(sc->req, HTTP_OK, "OK", sc->out);
    sc->req = NULL;
    scrape_free(sc);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *ctype,
                       const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
        return;
    }
    evbuffer_add(b, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

static bool wants_openmetrics(struct evhttp_request *req)
{
    const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    return a && strstr(a, "application/openmetrics-text");
}

static void metrics(struct prom *p, struct evhttp_request *req)
{
    p->api->counter_add(p->h, p->c_scrapes, 1);
    if (p->nscrapes >= SCRAPES_MAX) {
        reply_text(req, 503, "Service Unavailable", "text/plain; charset=utf-8",
                   "too many scrapes at once\n");
        return;
    }
    struct scrape *sc = calloc(1, sizeof *sc);
    if (sc) {
        sc->p = p;
        sc->req = req;
        sc->conn = evhttp_request_get_connection(req);
        sc->openmetrics = wants_openmetrics(req);
        sc->next = p->scrapes;
        p->scrapes = sc;
        p->nscrapes++;
        sc->snap = prom_snapshot_take(p->t, sc->openmetrics);
        sc->out = evbuffer_new();
        sc->slice_ev = event_new(p->api->event_base(p->h), -1, 0, slice_cb, sc);
    }
    if (!sc || !sc->snap || !sc->out || !sc->slice_ev) {
        if (sc) {
            sc->req = NULL;
            scrape_free(sc);
        }
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
        return;
    }
    evhttp_connection_set_closecb(sc->conn, closed_cb, sc);
    event_active(sc->slice_ev, EV_TIMEOUT, 0);
}

/* Why this vigild is not healthy, into why; false when it is. */
static bool unhealthy(struct prom *p, char *why, size_t cap)
{
    uint64_t now = p->api->mono_ns();
    if (!p->last_self_ns) {
        if (now - p->started_ns < p->silence_ns) {
            snprintf(why, cap, "starting: no vigil.self of host %s yet", p->host);
        } else {
            snprintf(why, cap,
                     "no vigil.self of host %s in %.0f s: is vigil.self in this sink's match?",
                     p->host, (double)(now - p->started_ns) / 1e9);
        }
        return true;
    }
    if (now - p->last_self_ns > p->silence_ns) {
        snprintf(why, cap, "no vigil.self of host %s for %.0f s: the bus or vigild is stuck",
                 p->host, (double)(now - p->last_self_ns) / 1e9);
        return true;
    }
    for (size_t i = 0; i < p->nstages; i++) {
        const struct stage *s = &p->stages[i];
        if (now - s->seen_ns > p->silence_ns) {
            continue; /* gone from the reports */
        }
        if (s->has_running && !s->running) {
            snprintf(why, cap, "%s is not running: its thread has not turned its loop", s->name);
            return true;
        }
        if (s->failing_s * 1e9 > (double)p->failing_ns) {
            snprintf(why, cap, "%s has been failing for %.0f s", s->name, s->failing_s);
            return true;
        }
    }
    return false;
}

static void healthz(struct prom *p, struct evhttp_request *req)
{
    char why[512], body[1200];
    if (!unhealthy(p, why, sizeof why)) {
        reply_text(req, HTTP_OK, "OK", "application/json", "{\"status\":\"ok\"}\n");
        return;
    }
    /* One line of JSON: the reason escaped (names come from config). */
    size_t k = (size_t)snprintf(body, sizeof body, "{\"status\":\"unhealthy\",\"reason\":\"");
    for (const char *c = why; *c && k < sizeof body - 8; c++) {
        if (*c == '"' || *c == '\\') {
            body[k++] = '\\';
            body[k++] = *c;
        } else if ((unsigned char)*c < 0x20) {
            k += (size_t)snprintf(body + k, sizeof body - k, "\\u%04x", (unsigned char)*c);
        } else {
            body[k++] = *c;
        }
    }
    snprintf(body + k, sizeof body - k, "\"}\n");
    reply_text(req, 503, "Service Unavailable", "application/json", body);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
    struct prom *p = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (path && strcmp(path, "/healthz") == 0) {
        healthz(p, req);
    } else if (path && strcmp(path, "/metrics") == 0) {
        metrics(p, req);
    } else if (path && strcmp(path, "/") == 0) {
        reply_text(req, HTTP_OK, "OK", "text/html; charset=utf-8",
                   "<html><head><title>vigil</title></head><body><h1>vigil</h1>"
                   "<p><a href=\"/metrics\">/metrics</a> <a href=\"/healthz\">/healthz</a></p>"
                   "</body></html>\n");
    } else {
        reply_text(req, HTTP_NOTFOUND, "Not Found", "text/plain; charset=utf-8",
                   "not found: try /metrics\n");
    }
}

/* ---- Set-up -----------------------------------------------------------------------------------
 */

/* "host:port", "[v6]:port": host into buf, the port; false if malformed. */
/* SO_REUSEPORT: when a reload replaces this sink, the new one listens
 * beside the old one until that one goes, so a scrape is never refused. Only
 * a socket of the same user with the same option can share the port. */
static struct evconnlistener *listen_on(struct event_base *base, const char *host, int port,
                                        int *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host[0] ? host : NULL, ps, &hints, &ai) != 0 || !ai) {
        *err = EADDRNOTAVAIL;
        return NULL;
    }
    errno = 0;
    struct evconnlistener *l = evconnlistener_new_bind(
        base, NULL, NULL,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT,
        128, ai->ai_addr, (int)ai->ai_addrlen);
    *err = errno;
    freeaddrinfo(ai);
    return l;
}

static bool parse_listen(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) {
        return false;
    }
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']') {
            return false;
        }
        h++;
        hl -= 2;
    } else if (memchr(h, ':', hl)) {
        return false; /* an IPv6 address goes in brackets */
    }
    char *end;
    errno = 0;
    long v = strtol(colon + 1, &end, 10);
    if (hl >= cap || !colon[1] || *end || errno || v < 0 || v > 65535) {
        return false;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)v;
    return true;
}

static void prom_fini(void *state)
{
    struct prom *p = state;
    if (!p) {
        return;
    }
    while (p->scrapes) {
        scrape_free(p->scrapes);
    }
    if (p->http) {
        evhttp_free(p->http);
    }
    if (p->expire_ev) {
        event_free(p->expire_ev);
    }
    prom_table_free(p->t);
    prom_labels_fini(&p->l);
    free(p->stages);
    free(p);
}

static int prom_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    const struct vigil_conf *root = api->conf_root(h);
    const struct vigil_conf *listen_n = api->conf_get(root, "listen");
    const char *listen;
    int64_t max_series;
    char host[256];
    int port;
    struct prom *p = calloc(1, sizeof *p);
    if (!p) {
        return -ENOMEM;
    }
    p->api = api;
    p->h = h;
    api->conf_string(listen_n, &listen);
    api->conf_duration(api->conf_get(root, "expire"), &p->expire_ns);
    api->conf_int(api->conf_get(root, "max_series"), &max_series);
    api->conf_duration(api->conf_get(root, "unhealthy_after_failing"), &p->failing_ns);
    api->conf_duration(api->conf_get(root, "unhealthy_after_silence"), &p->silence_ns);
    p->host = api->host_name(h);
    p->started_ns = api->mono_ns();
    int rc = -EINVAL;
    if (!parse_listen(listen, host, sizeof host, &port)) {
        api->conf_error(h, listen_n, "listen must be HOST:PORT or [IPv6]:PORT, not '%s'", listen);
    } else if (max_series < 1) {
        api->conf_error(h, api->conf_get(root, "max_series"), "max_series must be at least 1");
    } else if (p->expire_ns < NS_PER_S) {
        api->conf_error(h, api->conf_get(root, "expire"), "expire must be at least 1s");
    } else {
        rc = 0;
    }
    snprintf(p->where, sizeof p->where, "%s", listen);
    p->max_series = (size_t)max_series;
    if (rc == 0 && (!(p->t = prom_table_new(p->max_series)) ||
                    !(p->stages = calloc(STAGES_MAX, sizeof *p->stages)))) {
        rc = -ENOMEM;
    }
    if (rc == 0) {
        p->c_series = api->counter_new(h, "series");
        p->c_dropped = api->counter_new(h, "dropped_series_total");
        p->c_scrapes = api->counter_new(h, "scrapes_total");
    }
    bool checking = VIGIL_API_HAS(api, checking) && api->checking(h);
    if (rc == 0 && !checking) {
        /* Not under --check: the running daemon may hold the port. */
        struct event_base *base = api->event_base(h);
        uint64_t every = p->expire_ns / 4 < 15 * NS_PER_S ? p->expire_ns / 4 : 15 * NS_PER_S;
        struct timeval tv = {.tv_sec = (time_t)(every / NS_PER_S),
                             .tv_usec = (suseconds_t)(every % NS_PER_S / 1000)};
        p->http = evhttp_new(base);
        p->expire_ev = event_new(base, -1, EV_PERSIST, expire_cb, p);
        if (!p->http || !p->expire_ev || event_add(p->expire_ev, &tv) != 0) {
            rc = -ENOMEM;
        } else {
            evhttp_set_allowed_methods(p->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
            evhttp_set_gencb(p->http, request_cb, p);
            int e = 0;
            struct evconnlistener *l = listen_on(base, host, port, &e);
            if (!l || !evhttp_bind_listener(p->http, l)) {
                if (l) {
                    evconnlistener_free(l);
                }
                e = e ? e : EADDRNOTAVAIL;
                api->conf_error(h, listen_n, "cannot listen on %s: %s", listen, api->strerror(-e));
                rc = -e;
            }
        }
    }
    if (rc != 0) {
        prom_fini(p);
        return rc;
    }
    if (!checking) {
        api->log(h, VIGIL_LOG_INFO, "serving /metrics on http://%s", p->where);
    }
    *state = p;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SINK,
    .name = "prometheus",
    .version = "1.0.0",
    .description = "serves the latest value of every series on /metrics for Prometheus",
    .options = prom_options,
    .init = prom_init,
    .write = prom_write,
    .fini = prom_fini,
};

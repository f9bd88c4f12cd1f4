/* gen: a synthetic source. Publishes `rate` events per second under topic
 * gen.<instance>, paced by a timer on the host's event_base and batched per
 * tick; the demo source and the load generator for benchmarks.
 */
#include <errno.h>
#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vigil/plugin.h"

#define TICK_MIN_NS 1000000ull   /* 1 ms */
#define TICK_MAX_NS 100000000ull /* 100 ms */

struct gen {
    struct vigil_instance *h;
    const struct vigil_api *api;
    char topic[256];
    double rate;
    int64_t count;  /* 0 = no end */
    int64_t series; /* labels.series cycles 0..series-1 */
    uint64_t period_ns;
    const struct vigil_conf *labels, *values;
    char series_buf[32];
    struct event *tick;
    uint64_t start_ns;
    uint64_t published;
    bool done;
};

static const struct vigil_option gen_options[] = {
    {"rate", VIGIL_OPT_DOUBLE, "10", "events per second (up to 10000000)"},
    {"count", VIGIL_OPT_INT, "0", "stop after this many events; 0 = never"},
    {"series", VIGIL_OPT_INT, "1", "number of distinct series: labels.series cycles 0..N-1"},
    {"period", VIGIL_OPT_DURATION, "60s", "period of the wave_pct sine wave"},
    {"labels", VIGIL_OPT_MAP, NULL, "extra labels (string to string) on every event"},
    {"values", VIGIL_OPT_MAP, NULL, "extra constant values (string to number) on every event"},
    {NULL, 0, NULL, NULL},
};

static int publish_one(struct gen *g, uint64_t now_ns)
{
    const struct vigil_api *api = g->api;
    struct vigil_event_builder *ev = api->event_begin(g->h, g->topic);
    uint64_t n = g->published;
    snprintf(g->series_buf, sizeof g->series_buf, "%llu",
             (unsigned long long)(n % (uint64_t)g->series));
    api->event_label(ev, "series", g->series_buf);
    for (size_t i = 0; g->labels && i < api->conf_len(g->labels); i++) {
        const char *k, *v;
        if (api->conf_string(api->conf_at(g->labels, i, &k), &v) == 0) {
            api->event_label(ev, k, v);
        }
    }
    double phase = (double)((now_ns - g->start_ns) % g->period_ns) / (double)g->period_ns;
    api->event_value(ev, "wave_pct", 50.0 + 50.0 * sin(2.0 * M_PI * phase));
    api->event_value_u64(ev, "n", n);
    for (size_t i = 0; g->values && i < api->conf_len(g->values); i++) {
        const char *k;
        double v;
        if (api->conf_double(api->conf_at(g->values, i, &k), &v) == 0) {
            api->event_value(ev, k, v);
        }
    }
    int rc = api->publish(g->h, ev);
    if (rc == 0) {
        g->published++;
    }
    return rc;
}

static void gen_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gen *g = arg;
    uint64_t now = g->api->now_ns();
    double elapsed_s = (double)(now - g->start_ns) / 1e9;
    uint64_t due = (uint64_t)(elapsed_s * g->rate) + 1; /* the first event at once */
    if (g->count > 0 && due > (uint64_t)g->count) {
        due = (uint64_t)g->count;
    }
    /* A tick's events go to the bus back to back (one wake-up of the bus
     * thread per burst, not per event). */
    bool batch = due - g->published > 1;
    if (batch) {
        g->api->batch_begin(g->h);
    }
    int rc = 0;
    while (g->published < due && rc == 0) {
        rc = publish_one(g, now);
    }
    if (batch && g->api->batch_end(g->h) != 0) {
        rc = VIGIL_ESTOPPED;
    }
    if (rc != 0) {
        event_del(g->tick); /* stopping: the host is shutting down */
        return;
    }
    if (g->count > 0 && g->published >= (uint64_t)g->count && !g->done) {
        g->done = true;
        event_del(g->tick);
        g->api->log(g->h, VIGIL_LOG_INFO, "published %llu events; done",
                    (unsigned long long)g->published);
    }
}

static int gen_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    const struct vigil_conf *root = api->conf_root(h);
    struct gen *g = calloc(1, sizeof *g);
    if (!g) {
        return -ENOMEM;
    }
    g->h = h;
    g->api = api;
    int bad = 0;
    api->conf_double(api->conf_get(root, "rate"), &g->rate);
    api->conf_int(api->conf_get(root, "count"), &g->count);
    api->conf_int(api->conf_get(root, "series"), &g->series);
    api->conf_duration(api->conf_get(root, "period"), &g->period_ns);
    if (!(g->rate > 0 && g->rate <= 1e7)) {
        api->conf_error(h, api->conf_get(root, "rate"),
                        "rate must be above 0 and at most 10000000");
        bad++;
    }
    if (g->count < 0) {
        api->conf_error(h, api->conf_get(root, "count"), "count must be 0 (no end) or more");
        bad++;
    }
    if (g->series < 1) {
        api->conf_error(h, api->conf_get(root, "series"), "series must be 1 or more");
        bad++;
    }
    if (g->period_ns == 0) {
        api->conf_error(h, api->conf_get(root, "period"), "period must be above 0");
        bad++;
    }
    g->labels = api->conf_get(root, "labels");
    g->values = api->conf_get(root, "values");
    for (size_t i = 0; g->labels && i < api->conf_len(g->labels); i++) {
        const char *k, *v;
        const struct vigil_conf *n = api->conf_at(g->labels, i, &k);
        if (api->conf_string(n, &v) != 0) {
            api->conf_error(h, n, "label '%s' must be a string", k);
            bad++;
        }
    }
    for (size_t i = 0; g->values && i < api->conf_len(g->values); i++) {
        const char *k;
        double v;
        const struct vigil_conf *n = api->conf_at(g->values, i, &k);
        if (api->conf_double(n, &v) != 0) {
            api->conf_error(h, n, "value '%s' must be a number", k);
            bad++;
        }
    }
    snprintf(g->topic, sizeof g->topic, "gen.%s", api->instance_name(h));
    /* Tick at half the event interval, so timer jitter does not bunch events. */
    uint64_t tick_ns = (uint64_t)(0.5e9 / (g->rate > 0 ? g->rate : 1));
    tick_ns = tick_ns < TICK_MIN_NS ? TICK_MIN_NS : tick_ns > TICK_MAX_NS ? TICK_MAX_NS : tick_ns;
    g->tick = event_new(api->event_base(h), -1, EV_PERSIST, gen_tick, g);
    if (bad || !g->tick) {
        if (g->tick) {
            event_free(g->tick);
        }
        free(g);
        return VIGIL_ECONFIG;
    }
    struct timeval tv = {.tv_sec = (time_t)(tick_ns / 1000000000u),
                         .tv_usec = (suseconds_t)(tick_ns % 1000000000u / 1000u)};
    event_add(g->tick, &tv);
    g->start_ns = api->now_ns();
    *state = g;
    return 0;
}

static void gen_fini(void *state)
{
    struct gen *g = state;
    event_free(g->tick);
    free(g);
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SOURCE,
    .name = "gen",
    .version = "1.0.0",
    .description = "synthetic events at a fixed rate",
    .options = gen_options,
    .init = gen_init,
    .fini = gen_fini,
};

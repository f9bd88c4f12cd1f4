/* Plugin harness (see plugin_harness.h). */
#include "plugin_harness.h"

#include <event2/thread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <zmq.h>
#include <cmocka.h>

#include "bus.h"
#include "plugin_host.h"

struct ph {
    char dir[64];
    bool dir_made; /* mkdtemp made dir: ph_stop removes it */
    void *zctx, *sub;
    struct vigil_bus *bus;
    struct vigil_config *cfg;
    struct vigil_instance *host;
    struct vigil_diag d;
    msgpack_zone zone;
    struct vigil_bus_reader in; /* batches from the bus (bus.h) */
    struct vigil_event_view view;
};

/* plugin_dir + the entry, indented under sources:. */
static char *yaml_for(const char *instance)
{
    size_t cap = strlen(instance) * 2 + 512, len = 0;
    char *y = malloc(cap);
    if (!y) {
        return NULL;
    }
    len += (size_t)snprintf(y, cap, "plugin_dir: %s\nsources:\n  - ", VIGIL_PLUGIN_DIR);
    for (const char *p = instance; *p; p++) {
        y[len++] = *p;
        if (*p == '\n' && p[1]) {
            memcpy(y + len, "    ", 4);
            len += 4;
        }
    }
    y[len] = '\0';
    return y;
}

size_t ph_check(const char *instance, struct vigil_diag *d)
{
    evthread_use_pthreads();
    char *y = yaml_for(instance);
    struct vigil_config *c = vigil_config_parse(y, strlen(y), "ph.yaml", d);
    free(y);
    if (!c || d->count) {
        vigil_config_free(c);
        return d->count ? d->count : 1;
    }
    struct vigil_host_env env = {.host_name = "test-host",
                                 .plugin_dir = c->plugin_dir,
                                 .hwm = 1000,
                                 .max_event_bytes = 65536};
    for (size_t i = 0; i < c->nsources; i++) {
        struct vigil_instance *h = vigil_instance_new(&c->sources[i], VIGIL_SOURCE, &env, d);
        if (h) {
            vigil_instance_init(h, d);
        }
        vigil_instance_free(h);
    }
    vigil_config_free(c);
    return d->count;
}

struct ph *ph_start(const char *instance, const char *prefix)
{
    evthread_use_pthreads();
    struct ph *p = calloc(1, sizeof *p);
    if (!p) {
        return NULL;
    }
    vigil_diag_init(&p->d);
    msgpack_zone_init(&p->zone, 64 * 1024);
    vigil_bus_reader_init(&p->in);
    snprintf(p->dir, sizeof p->dir, "/tmp/vigil-ph.XXXXXX");
    char *y = yaml_for(instance);
    p->dir_made = mkdtemp(p->dir) != NULL;
    if (!p->dir_made || !y) {
        free(y);
        ph_stop(p);
        return NULL;
    }
    p->cfg = vigil_config_parse(y, strlen(y), "ph.yaml", &p->d);
    free(y);
    if (!p->cfg || p->d.count || p->cfg->nsources != 1) {
        goto fail;
    }
    char pub[128], sub[128], err[512];
    snprintf(pub, sizeof pub, "ipc://%s/p", p->dir);
    snprintf(sub, sizeof sub, "ipc://%s/s", p->dir);
    p->zctx = zmq_ctx_new();
    struct vigil_bus_opts bo = {
        .publish = pub, .subscribe = sub, .hwm = 10000, .max_event_bytes = 65536};
    p->bus = vigil_bus_new(p->zctx, &bo, err, sizeof err);
    if (!p->bus) {
        fprintf(stderr, "ph_start: %s\n", err);
        goto fail;
    }
    p->sub = zmq_socket(p->zctx, ZMQ_SUB);
    zmq_connect(p->sub, VIGIL_BUS_OUT);
    zmq_setsockopt(p->sub, ZMQ_SUBSCRIBE, prefix ? prefix : "", prefix ? strlen(prefix) : 0);
    if (vigil_bus_start(p->bus, 1) != 0 || vigil_bus_wait_ready(p->bus, 5000) != 0) {
        goto fail;
    }
    struct vigil_host_env env = {.host_name = "test-host",
                                 .plugin_dir = p->cfg->plugin_dir,
                                 .zctx = p->zctx,
                                 .hwm = 10000,
                                 .max_event_bytes = 65536};
    p->host = vigil_instance_new(&p->cfg->sources[0], VIGIL_SOURCE, &env, &p->d);
    if (!p->host || vigil_instance_init(p->host, &p->d) != 0 ||
        vigil_instance_connect(p->host) != 0 || vigil_instance_start(p->host) != 0) {
        goto fail;
    }
    return p;
fail:
    vigil_diag_print(&p->d, stderr);
    ph_stop(p);
    return NULL;
}

const struct vigil_event_view *ph_next(struct ph *p, int timeout_ms)
{
    const char *topic, *body, *why;
    size_t tl, bl;
    int rc = vigil_bus_reader_next(&p->in, p->sub, &topic, &tl, &body, &bl);
    if (rc == 0) {
        zmq_pollitem_t it = {.socket = p->sub, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, timeout_ms) <= 0) {
            return NULL;
        }
        rc = vigil_bus_reader_next(&p->in, p->sub, &topic, &tl, &body, &bl);
    }
    if (rc != 1) {
        fprintf(stderr, "ph_next: %s\n",
                rc < 0 ? "a message from the bus that is not a batch"
                       : "woken with nothing to read");
        return NULL;
    }
    msgpack_zone_clear(&p->zone);
    if (vigil_event_decode(&p->view, topic, tl, body, bl, SIZE_MAX, &p->zone, &why) != 0) {
        fprintf(stderr, "ph_next: malformed event: %s\n", why);
        return NULL;
    }
    return &p->view;
}

struct counter_find {
    const char *name;
    uint64_t value;
};

static void find_counter(void *arg, const char *name, vigil_counter *value)
{
    struct counter_find *f = arg;
    if (strcmp(name, f->name) == 0) {
        f->value = vigil_counter_get(value);
    }
}

uint64_t ph_counter(struct ph *p, const char *name)
{
    struct counter_find f = {.name = name, .value = UINT64_MAX};
    vigil_instance_each_counter(p->host, find_counter, &f);
    return f.value;
}

void ph_stop(struct ph *p)
{
    if (!p) {
        return;
    }
    vigil_instance_free(p->host);
    if (p->sub) {
        zmq_close(p->sub);
    }
    vigil_bus_free(p->bus);
    vigil_bus_reader_fini(&p->in);
    if (p->zctx) {
        zmq_ctx_term(p->zctx);
    }
    vigil_config_free(p->cfg);
    vigil_diag_fini(&p->d);
    msgpack_zone_destroy(&p->zone);
    /* Not "no X in the name": mkdtemp's six letters may hold an X. */
    if (p->dir_made) {
        char cmd[96];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", p->dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "ph_stop: could not remove %s\n", p->dir);
        }
    }
    free(p);
}

double ph_value(const struct vigil_event_view *v, const char *path)
{
    double x = 0;
    if (vigil_msgpack_double(vigil_event_get(v, path), &x) != 0) {
        fail_msg("event %.*s has no number at %s", (int)v->topic_len, v->topic, path);
    }
    return x;
}

const char *ph_str(const struct vigil_event_view *v, const char *path, char *buf, size_t cap)
{
    const char *s;
    size_t n;
    if (vigil_msgpack_str(vigil_event_get(v, path), &s, &n) != 0 || cap == 0) {
        return NULL;
    }
    n = n < cap - 1 ? n : cap - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return buf;
}

void ph_expect_msg(const struct vigil_diag *d, const char *want)
{
    for (size_t j = 0; j < d->n; j++) {
        if (strncmp(d->msgs[j], want, strlen(want)) == 0) {
            return;
        }
    }
    vigil_diag_print(d, stderr);
    fail_msg("missing: %s", want);
}

int ph_run(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

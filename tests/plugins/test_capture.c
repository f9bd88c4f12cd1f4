/* test_capture: a sink for the integration tests. Writes every event it is
 * given as one JSON line to `path` (flushed per batch) and can answer RETRY
 * to its first `retry_first` write() calls, or to every call while the file
 * `fail_while` exists (an outage the test switches on and off), to exercise
 * the host's retries and spool. With `async: true` it completes each write
 * on a later loop turn through api->write_done(), as a network sink does.
 * With `block_while`, a write returns only once that file is gone: a stuck
 * destination, behind which the daemon's bus fills up.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "vigil/plugin.h"

struct capture {
    struct vigil_instance *h;
    const struct vigil_api *api;
    FILE *f;
    int64_t retry_left;
    const char *fail_while, *block_while;
    bool async;
    struct event *done_ev;
    const struct vigil_event *const *events;
    size_t n;
    enum vigil_write_result *results;
    char *buf;
    size_t cap;
};

static const struct vigil_option capture_options[] = {
    {"path", VIGIL_OPT_STRING, NULL, "file to append JSON lines to"},
    {"retry_first", VIGIL_OPT_INT, "0", "answer RETRY to this many write() calls first"},
    {"fail_while", VIGIL_OPT_STRING, NULL, "answer RETRY while this file exists"},
    {"async", VIGIL_OPT_BOOL, "false", "complete writes later, through write_done()"},
    {"block_while", VIGIL_OPT_STRING, NULL,
     "after writing a batch, return only once this file is gone (a stuck sink)"},
    {NULL, 0, NULL, NULL},
};

static int capture_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    const struct vigil_conf *root = api->conf_root(h);
    const char *path;
    if (api->conf_string(api->conf_get(root, "path"), &path) != 0) {
        api->conf_error(h, root, "test_capture needs 'path'");
        return VIGIL_ECONFIG;
    }
    struct capture *c = calloc(1, sizeof *c);
    if (!c) {
        return -ENOMEM;
    }
    c->api = api;
    c->h = h;
    api->conf_int(api->conf_get(root, "retry_first"), &c->retry_left);
    api->conf_string(api->conf_get(root, "fail_while"), &c->fail_while);
    api->conf_string(api->conf_get(root, "block_while"), &c->block_while);
    api->conf_bool(api->conf_get(root, "async"), &c->async);
    c->f = fopen(path, "a");
    if (!c->f) {
        int e = errno;
        api->conf_error(h, api->conf_get(root, "path"), "cannot open %s", path);
        free(c);
        return -e;
    }
    *state = c;
    return 0;
}

static void write_now(struct capture *c, const struct vigil_event *const *events, size_t n,
                      enum vigil_write_result *results)
{
    if (c->retry_left > 0 || (c->fail_while && access(c->fail_while, F_OK) == 0)) {
        c->retry_left -= c->retry_left > 0;
        for (size_t i = 0; i < n; i++) {
            results[i] = VIGIL_WRITE_RETRY;
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t need = c->api->event_json(events[i], c->buf, c->cap);
        if (need >= c->cap) {
            char *nb = realloc(c->buf, need + 1);
            if (!nb) {
                results[i] = VIGIL_WRITE_RETRY;
                continue;
            }
            c->buf = nb;
            c->cap = need + 1;
            c->api->event_json(events[i], c->buf, c->cap);
        }
        fwrite(c->buf, 1, need, c->f);
        fputc('\n', c->f);
        results[i] = VIGIL_WRITE_OK;
    }
    fflush(c->f);
    while (c->block_while && access(c->block_while, F_OK) == 0) {
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    }
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct capture *c = arg;
    write_now(c, c->events, c->n, c->results);
    c->api->write_done(c->h);
}

static int capture_write(void *state, const struct vigil_event *const *events, size_t n,
                         enum vigil_write_result *results)
{
    struct capture *c = state;
    if (!c->async) {
        write_now(c, events, n, results);
        return 0;
    }
    if (!c->done_ev) {
        c->done_ev = event_new(c->api->event_base(c->h), -1, 0, done_cb, c);
        if (!c->done_ev) {
            return -ENOMEM;
        }
    }
    c->events = events;
    c->n = n;
    c->results = results;
    struct timeval tv = {0, 1000};
    event_add(c->done_ev, &tv);
    return VIGIL_WRITE_ASYNC;
}

static void capture_fini(void *state)
{
    struct capture *c = state;
    if (c->done_ev) {
        event_free(c->done_ev);
    }
    fclose(c->f);
    free(c->buf);
    free(c);
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SINK,
    .name = "test_capture",
    .version = "1.0.0",
    .description = "writes events as JSON lines, for tests",
    .options = capture_options,
    .init = capture_init,
    .write = capture_write,
    .fini = capture_fini,
};

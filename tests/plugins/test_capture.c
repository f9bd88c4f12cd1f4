/* test_capture: a sink for the integration tests. Writes every event it is
 * given as one JSON line to `path` (flushed per batch) and can answer RETRY
 * to its first `retry_first` write() calls, to exercise the host's retries.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "vigil/plugin.h"

struct capture {
    const struct vigil_api *api;
    FILE *f;
    int64_t retry_left;
    char *buf;
    size_t cap;
};

static const struct vigil_option capture_options[] = {
    {"path", VIGIL_OPT_STRING, NULL, "file to append JSON lines to"},
    {"retry_first", VIGIL_OPT_INT, "0", "answer RETRY to this many write() calls first"},
    {NULL, 0, NULL, NULL},
};

static int capture_init(struct vigil_host *h, const struct vigil_api *api, void **state)
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
    api->conf_int(api->conf_get(root, "retry_first"), &c->retry_left);
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

static int capture_write(void *state, const struct vigil_event *const *events, size_t n,
                         enum vigil_write_result *results)
{
    struct capture *c = state;
    if (c->retry_left > 0) {
        c->retry_left--;
        for (size_t i = 0; i < n; i++) {
            results[i] = VIGIL_WRITE_RETRY;
        }
        return 0;
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
    return 0;
}

static void capture_fini(void *state)
{
    struct capture *c = state;
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

/* discard: a sink that delivers every event to nowhere, at once. It makes
 * vigil-bench measure the pipeline (bus, rules, the sink host) without a
 * sink's I/O; its delivered count is in vigil.self (stage sink, out_total).
 */
#include <stddef.h>

#include "vigil/plugin.h"

static const struct vigil_option discard_options[] = {
    {NULL, 0, NULL, NULL},
};

static int discard_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    (void)h;
    (void)api;
    *state = NULL;
    return 0;
}

static int discard_write(void *state, const struct vigil_event *const *events, size_t n,
                         enum vigil_write_result *results)
{
    (void)state;
    (void)events;
    for (size_t i = 0; i < n; i++) {
        results[i] = VIGIL_WRITE_OK;
    }
    return 0;
}

static void discard_fini(void *state)
{
    (void)state;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SINK,
    .name = "discard",
    .version = "1.0.0",
    .description = "delivers every event to nowhere (benchmarks)",
    .options = discard_options,
    .init = discard_init,
    .write = discard_write,
    .fini = discard_fini,
};

/* One source built several ways, each wrong in one respect the loader must
 * refuse with a clear message: TEST_BROKEN selects which (see CMakeLists). */
#include <stddef.h>

#include "vigil/plugin.h"

static int broken_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    (void)h;
    (void)api;
    *state = NULL;
    return 0;
}

static void broken_fini(void *state)
{
    (void)state;
}

#if TEST_BROKEN == 1 /* test_badabi: an ABI from the future */
VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {.abi = 999,
                                                       .size = sizeof(struct vigil_plugin),
                                                       .kind = VIGIL_SOURCE,
                                                       .name = "test_badabi",
                                                       .init = broken_init,
                                                       .fini = broken_fini};
#elif TEST_BROKEN == 5 /* test_abi1: built against ABI 1's header */
VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {.abi = 1,
                                                       .size =
                                                           offsetof(struct vigil_plugin, reopen),
                                                       .kind = VIGIL_SOURCE,
                                                       .name = "test_abi1",
                                                       .init = broken_init,
                                                       .fini = broken_fini};
#elif TEST_BROKEN == 2 /* test_badname: declares another name than its file */
VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
                                                       .kind = VIGIL_SOURCE, .name = "someone_else",
                                                       .init = broken_init, .fini = broken_fini};
#elif TEST_BROKEN == 3 /* test_nosym: the descriptor is not exported */
const struct vigil_plugin vigil_plugin = {VIGIL_PLUGIN_DESCRIPTOR_FIELDS, .kind = VIGIL_SOURCE,
                                          .name = "test_nosym", .init = broken_init,
                                          .fini = broken_fini};
#elif TEST_BROKEN == 4 /* test_badkind: a sink that will be listed as a source */
static int broken_write(void *s, const struct vigil_event *const *e, size_t n,
                        enum vigil_write_result *r)
{
    (void)s;
    (void)e;
    for (size_t i = 0; i < n; i++) {
        r[i] = VIGIL_WRITE_OK;
    }
    return 0;
}
VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS, .kind = VIGIL_SINK, .name = "test_badkind", .init = broken_init,
    .write = broken_write,          .fini = broken_fini};
#endif

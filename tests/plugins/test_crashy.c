/* One source built four ways, each failing as an isolated source must
 * survive (tests/test_isolate.c); TEST_CRASHY selects how (see
 * CMakeLists): test_segv segfaults on its 3rd collect(), test_abort
 * aborts on its 3rd, test_spin spins forever in its 3rd, test_leak keeps
 * 16 MiB more on every collect() and aborts, saying so, when it gets none.
 * Each publishes one event per collect() before that.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vigil/plugin.h"

#if TEST_CRASHY == 1
#define NAME "test_segv"
#elif TEST_CRASHY == 2
#define NAME "test_abort"
#elif TEST_CRASHY == 3
#define NAME "test_spin"
#else
#define NAME "test_leak"
#endif

#define LEAK_BYTES (16u << 20)

struct crashy {
    struct vigil_instance *h;
    const struct vigil_api *api;
    unsigned collects;
    void *kept; /* test_leak: a chain of blocks, never freed until fini */
};

static int crashy_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    struct crashy *c = calloc(1, sizeof *c);
    if (!c) {
        return -ENOMEM;
    }
    c->h = h;
    c->api = api;
    *state = c;
    return 0;
}

static void fail_now(struct crashy *c)
{
#if TEST_CRASHY == 1
    /* Not NULL itself: UBSan would report a null store and exit 1 before
     * the fault; an unmapped page just above it faults as a real bug does. */
    volatile int *volatile nowhere = (volatile int *)(uintptr_t)64;
    (void)c;
    *nowhere = 1;
#elif TEST_CRASHY == 2
    (void)c;
    abort();
#elif TEST_CRASHY == 3
    (void)c;
    for (volatile unsigned long i = 0;; i++) {
    }
#else
    void **block = malloc(LEAK_BYTES);
    if (!block) {
        c->api->log(c->h, VIGIL_LOG_ERROR, "cannot allocate %u MiB more after %u: aborting",
                    LEAK_BYTES >> 20, c->collects - 1);
        abort();
    }
    memset(block, 0xa5, LEAK_BYTES); /* touched: really in use */
    *block = c->kept;
    c->kept = block;
#endif
}

static int crashy_collect(void *state)
{
    struct crashy *c = state;
    c->collects++;
    if (TEST_CRASHY == 4 || c->collects >= 3) {
        fail_now(c);
    }
    struct vigil_event_builder *ev = c->api->event_begin(c->h, "crashy." NAME);
    c->api->event_value_u64(ev, "collects", c->collects);
    return c->api->publish(c->h, ev);
}

static void crashy_fini(void *state)
{
    struct crashy *c = state;
    while (c && c->kept) {
        void **block = c->kept;
        c->kept = *block;
        free(block);
    }
    free(c);
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
                                                       .kind = VIGIL_SOURCE,
                                                       .name = NAME,
                                                       .version = "1.0.0",
                                                       .init = crashy_init,
                                                       .collect = crashy_collect,
                                                       .fini = crashy_fini};

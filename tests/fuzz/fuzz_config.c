/* libFuzzer target for pipeline/config.c: arbitrary bytes through the YAML
 * parser and the daemon's schema, then the option checker on the first
 * source and every reader on every node, so that any tree the parser can
 * build is also walked. ASan/UBSan do the judging.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static const struct vigil_option fuzz_opts[] = {
    {"s", VIGIL_OPT_STRING, "text", NULL},
    {"i", VIGIL_OPT_INT, "-0x10", NULL},
    {"f", VIGIL_OPT_DOUBLE, "1.5e3", NULL},
    {"b", VIGIL_OPT_BOOL, "on", NULL},
    {"d", VIGIL_OPT_DURATION, "1.5s", NULL},
    {"z", VIGIL_OPT_SIZE, "64KiB", NULL},
    {"l", VIGIL_OPT_LIST, "[a, {b: c}]", NULL},
    {"m", VIGIL_OPT_MAP, "{x: [1, 2]}", NULL},
    {"nodefault", VIGIL_OPT_INT, NULL, NULL},
    {"bad", VIGIL_OPT_INT, "[", NULL},
    {NULL, 0, NULL, NULL},
};

/* Every reader on every node; results are ignored, only crashes count. */
static void walk(const struct vigil_conf *n)
{
    const char *s;
    int64_t i;
    double f;
    bool b;
    uint64_t u;

    (void)vigil_conf_string(n, &s);
    (void)vigil_conf_int(n, &i);
    (void)vigil_conf_double(n, &f);
    (void)vigil_conf_bool(n, &b);
    (void)vigil_conf_duration(n, &u);
    (void)vigil_conf_size(n, &u);
    (void)vigil_conf_get(n, "s");
    size_t len = vigil_conf_len(n);
    for (size_t k = 0; k <= len; k++) { /* one past the end on purpose */
        const char *key = NULL;
        const struct vigil_conf *item = vigil_conf_at(n, k, &key);
        if (item && item != n) {
            walk(item);
        }
        if (key && k < 4) { /* a lookup per key would be quadratic */
            (void)vigil_conf_get(n, key);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vigil_diag d;
    vigil_diag_init(&d);

    struct vigil_config *c = vigil_config_parse((const char *)data, size, "fuzz.yaml", &d);
    if (c) {
        if (c->nsources > 0) {
            (void)vigil_conf_check_options(c->sources[0].own, fuzz_opts, "fuzz", &d);
            walk(c->sources[0].own);
        }
        if (c->nsinks > 0) {
            (void)vigil_conf_check_options(c->sinks[0].own, NULL, "fuzz", &d);
        }
        walk(c->root);
    }
    vigil_config_free(c);

    /* The command-line parsers take C strings. */
    char *text = malloc(size + 1);
    if (text) {
        memcpy(text, data, size);
        text[size] = '\0';
        uint64_t u;
        (void)vigil_parse_duration(text, &u);
        (void)vigil_parse_size(text, &u);
        free(text);
    }

    FILE *null = fopen("/dev/null", "w");
    if (null) {
        vigil_diag_print(&d, null);
        fclose(null);
    }
    vigil_diag_fini(&d);
    return 0;
}

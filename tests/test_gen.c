/* The gen source through the real host and bus: its rate, count, labels and
 * values, and its config errors at their positions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "log.h"
#include "plugin_harness.h"

static void test_count_labels_values(void **state)
{
    (void)state;
    struct ph *p = ph_start("plugin: gen\nname: t\nrate: 1000\ncount: 300\nseries: 2\n"
                            "labels: { zone: a }\nvalues: { limit: 80 }\n",
                            "gen.t");
    assert_non_null(p);
    char buf[64];
    for (int i = 0; i < 300; i++) {
        const struct vigil_event_view *v = ph_next(p, 5000);
        assert_non_null(v);
        assert_int_equal(v->seq, (uint64_t)i + 1);
        assert_string_equal(ph_str(v, "labels.zone", buf, sizeof buf), "a");
        assert_int_equal(atoi(ph_str(v, "labels.series", buf, sizeof buf)), i % 2);
        assert_true(ph_value(v, "values.limit") == 80.0);
        assert_true(ph_value(v, "values.n") == (double)i);
        double w = ph_value(v, "values.wave_pct");
        assert_true(w >= 0.0 && w <= 100.0);
    }
    assert_null(ph_next(p, 300)); /* count reached: nothing more */
    ph_stop(p);
}

/* 200 events/s for ~1 s: paced, not a burst. Generous bounds: this is a
 * check of pacing, not a benchmark. */
static void test_rate_is_paced(void **state)
{
    (void)state;
    struct ph *p = ph_start("plugin: gen\nname: r\nrate: 200\n", "gen.r");
    assert_non_null(p);
    uint64_t t0 = vigil_mono_ns();
    int n = 0;
    while (vigil_mono_ns() - t0 < 1000000000ull) {
        if (ph_next(p, 100)) {
            n++;
        }
    }
    ph_stop(p);
    assert_in_range(n, 120, 280);
}

static void test_bad_config_positions(void **state)
{
    (void)state;
    struct vigil_diag d;
    vigil_diag_init(&d);
    assert_int_equal(ph_check("plugin: gen\nrate: 0\nseries: -1\nlabels: { a: [1] }\n", &d), 3);
    const char *want[] = {"ph.yaml:4:11: rate must be above 0", "ph.yaml:5:13: series must be",
                          "ph.yaml:6:18: label 'a' must be a string"};
    for (size_t i = 0; i < 3; i++) {
        bool found = false;
        for (size_t j = 0; j < d.n; j++) {
            found |= strncmp(d.msgs[j], want[i], strlen(want[i])) == 0;
        }
        if (!found) {
            vigil_diag_print(&d, stderr);
            fail_msg("missing: %s", want[i]);
        }
    }
    vigil_diag_fini(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count_labels_values),
        cmocka_unit_test(test_rate_is_paced),
        cmocka_unit_test(test_bad_config_positions),
    };
    return cmocka_run_group_tests_name("gen", tests, NULL, NULL);
}

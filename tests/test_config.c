/* Unit tests for pipeline/config.c: the YAML tree and its positions, the
 * typed readers, plugin option checking and the daemon's schema. Messages
 * are checked down to their "FILE:LINE:COL:" prefix, since pointing at the
 * right place is most of what a config error is worth.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

struct fx {
    struct vigil_diag d;
    struct vigil_conf *root;
    struct vigil_config *c;
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f) {
        return -1;
    }
    vigil_diag_init(&f->d);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    vigil_config_free(f->c);
    vigil_conf_free(f->root);
    vigil_diag_fini(&f->d);
    free(f);
    return 0;
}

static void dump(const struct vigil_diag *d)
{
    for (size_t i = 0; i < d->n; i++) {
        print_message("  diag: %s\n", d->msgs[i]);
    }
}

/* Fails unless some message starts with `prefix`. */
static void expect_msg(const struct vigil_diag *d, const char *prefix)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strncmp(d->msgs[i], prefix, strlen(prefix)) == 0) {
            return;
        }
    }
    dump(d);
    fail_msg("no message starts with \"%s\"", prefix);
}

static void expect_no_errors(const struct vigil_diag *d)
{
    if (d->count != 0) {
        dump(d);
        fail_msg("expected no errors, got %zu", d->count);
    }
}

static struct vigil_conf *tree(struct fx *f, const char *yaml)
{
    vigil_conf_free(f->root);
    f->root = vigil_conf_parse(yaml, strlen(yaml), "t.yaml", &f->d);
    return f->root;
}

static struct vigil_config *config(struct fx *f, const char *yaml)
{
    vigil_config_free(f->c);
    f->c = vigil_config_parse(yaml, strlen(yaml), "t.yaml", &f->d);
    return f->c;
}

/* A one-scalar tree "v: TEXT", returning the scalar. */
static const struct vigil_conf *scalar(struct fx *f, const char *text)
{
    char buf[256];
    snprintf(buf, sizeof buf, "v: %s\n", text);
    assert_non_null(tree(f, buf));
    const struct vigil_conf *v = vigil_conf_get(f->root, "v");
    assert_non_null(v);
    return v;
}

/* ---- Diagnostics --------------------------------------------------------- */

static void test_diag_format(void **state)
{
    struct fx *f = *state;
    vigil_diag_add(&f->d, "a.yaml", 3, 7, "bad %s", "thing");
    vigil_diag_add(&f->d, "a.yaml", 0, 0, "cannot open: %s", "nope");
    vigil_diag_add(&f->d, "a.yaml", 4, 0, "line only");
    assert_int_equal(f->d.count, 3);
    assert_string_equal(f->d.msgs[0], "a.yaml:3:7: bad thing");
    assert_string_equal(f->d.msgs[1], "a.yaml: cannot open: nope");
    assert_string_equal(f->d.msgs[2], "a.yaml:4: line only");

    assert_non_null(tree(f, "a:\n  b: 1\n"));
    vigil_diag_at(&f->d, vigil_conf_get(vigil_conf_get(f->root, "a"), "b"), "b is %d", 1);
    assert_string_equal(f->d.msgs[3], "t.yaml:2:6: b is 1");
}

static void test_diag_bounded(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 1005; i++) {
        vigil_diag_add(&f->d, "x", i + 1, 1, "error %d", i);
    }
    assert_int_equal(f->d.count, 1005);
    assert_int_equal(f->d.n, 1000);
    assert_string_equal(f->d.msgs[999], "x:1000:1: error 999");

    char *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);
    assert_non_null(mem);
    vigil_diag_print(&f->d, mem);
    fclose(mem);
    assert_non_null(strstr(out, "x:1:1: error 0\n"));
    assert_non_null(strstr(out, "(5 more errors not shown)\n"));
    free(out);
}

/* ---- The tree ------------------------------------------------------------------ */

static void test_tree_positions_and_order(void **state)
{
    struct fx *f = *state;
    const char *y = "zeta: 1\n"
                    "alpha:\n"
                    "  - 'q'\n"
                    "  - \"d\"\n"
                    "  - plain\n"
                    "  - |\n"
                    "    block\n"
                    "mid: {x: 1, y: [a, b]}\n";
    assert_non_null(tree(f, y));
    expect_no_errors(&f->d);
    assert_int_equal(f->root->kind, VIGIL_CONF_MAP);
    assert_int_equal(f->root->n, 3);
    assert_string_equal(f->root->keys[0], "zeta");
    assert_string_equal(f->root->keys[1], "alpha");
    assert_string_equal(f->root->keys[2], "mid");
    assert_int_equal(f->root->key_lines[2], 8);
    assert_int_equal(f->root->key_cols[2], 1);

    const struct vigil_conf *zeta = vigil_conf_get(f->root, "zeta");
    assert_int_equal(zeta->line, 1);
    assert_int_equal(zeta->col, 7);

    const struct vigil_conf *alpha = vigil_conf_get(f->root, "alpha");
    assert_int_equal(alpha->kind, VIGIL_CONF_LIST);
    assert_int_equal(alpha->n, 4);
    assert_int_equal(alpha->line, 3);
    assert_int_equal(alpha->col, 3);
    assert_true(alpha->items[0]->quoted);
    assert_true(alpha->items[1]->quoted);
    assert_false(alpha->items[2]->quoted);
    assert_true(alpha->items[3]->quoted);
    assert_string_equal(alpha->items[3]->value, "block\n");
    assert_int_equal(alpha->items[2]->line, 5);
    assert_int_equal(alpha->items[2]->col, 5);

    const struct vigil_conf *y2 = vigil_conf_get(vigil_conf_get(f->root, "mid"), "y");
    assert_int_equal(y2->line, 8);
    assert_int_equal(y2->col, 16);
    assert_string_equal(y2->items[1]->value, "b");
    assert_int_equal(y2->items[1]->col, 20);
    assert_string_equal(y2->file, "t.yaml");
}

static void test_tree_empty(void **state)
{
    struct fx *f = *state;
    const char *empties[] = {"", "# only a comment\n", "---\n", "--- ~\n", "\n\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        assert_non_null(tree(f, empties[i]));
        assert_int_equal(f->root->kind, VIGIL_CONF_MAP);
        assert_int_equal(f->root->n, 0);
    }
    expect_no_errors(&f->d);
}

static void test_tree_not_a_map(void **state)
{
    struct fx *f = *state;
    assert_null(tree(f, "# list\n- a\n- b\n"));
    expect_msg(&f->d, "t.yaml:2:1: the top level must be a map of keys, not a list");
}

static void test_tree_syntax_error(void **state)
{
    struct fx *f = *state;
    assert_null(tree(f, "a: 1\nb: [1, 2\nc: 3\n"));
    assert_int_equal(f->d.count, 1);
    expect_msg(&f->d, "t.yaml:3:2: did not find expected ',' or ']'");
    assert_non_null(strstr(f->d.msgs[0], "while parsing a flow sequence at line 2"));
}

static void test_tree_syntax_error_indent(void **state)
{
    struct fx *f = *state;
    assert_null(tree(f, "a: 1\n  b: 2\n"));
    expect_msg(&f->d, "t.yaml:2:4: mapping values are not allowed in this context");
}

static void test_tree_bad_utf8(void **state)
{
    struct fx *f = *state;
    assert_null(tree(f, "a: 1\nb: \xff\n"));
    expect_msg(&f->d, "t.yaml:2:4: invalid leading UTF-8 octet");
}

static void test_tree_duplicate_key(void **state)
{
    struct fx *f = *state;
    assert_non_null(tree(f, "a: 1\nb: 2\n  # x\na: 3\n"));
    assert_int_equal(f->d.count, 1);
    assert_string_equal(f->d.msgs[0], "t.yaml:4:1: duplicate key 'a' (first at line 1)");
    /* The first one stays. */
    assert_int_equal(f->root->n, 2);
    assert_string_equal(vigil_conf_get(f->root, "a")->value, "1");

    /* A dropped duplicate may still be an alias's target, and so may an
     * anchored key. */
    assert_non_null(tree(f, "a: 1\na: &x [1, 2]\nb: *x\n&k c: 3\n*k : 4\n"));
    assert_int_equal(f->d.count, 3);
    assert_string_equal(f->d.msgs[2], "t.yaml:5:1: duplicate key 'c' (first at line 4)");
    assert_int_equal(vigil_conf_len(vigil_conf_get(f->root, "b")), 2);
}

static void test_tree_nonscalar_key(void **state)
{
    struct fx *f = *state;
    assert_non_null(tree(f, "a: 1\n? [x, y]\n: 2\n"));
    expect_msg(&f->d, "t.yaml:2:3: a key must be a plain string, not a list");
    assert_int_equal(f->root->n, 1);
}

static void test_tree_two_documents(void **state)
{
    struct fx *f = *state;
    assert_null(tree(f, "a: 1\n---\nb: 2\n"));
    expect_msg(&f->d, "t.yaml:2:1: a second YAML document");
}

static void test_tree_aliases(void **state)
{
    struct fx *f = *state;
    const char *y = "base: &b {rate: 5, tags: [x, y]}\n"
                    "copy: *b\n";
    assert_non_null(tree(f, y));
    expect_no_errors(&f->d);
    const struct vigil_conf *copy = vigil_conf_get(f->root, "copy");
    assert_int_equal(copy->kind, VIGIL_CONF_MAP);
    assert_int_equal(copy->line, 2);
    assert_int_equal(copy->col, 7);
    int64_t rate;
    assert_int_equal(vigil_conf_int(vigil_conf_get(copy, "rate"), &rate), 0);
    assert_int_equal(rate, 5);
    /* A copy, not a shared node: freeing the tree frees each once. */
    assert_ptr_not_equal(copy, vigil_conf_get(f->root, "base"));

    assert_null(tree(f, "a: *nope\n"));
    expect_msg(&f->d, "t.yaml:1:4: unknown alias '*nope'");
}

static void test_tree_billion_laughs(void **state)
{
    struct fx *f = *state;
    char y[4096];
    size_t len = 0;
    len += (size_t)snprintf(y + len, sizeof y - len, "a0: &a0 [lol, lol, lol, lol, lol]\n");
    for (int i = 1; i < 10; i++) {
        len += (size_t)snprintf(y + len, sizeof y - len,
                                "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i,
                                i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_null(tree(f, y));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    expect_msg(&f->d, "t.yaml:");
    assert_non_null(strstr(f->d.msgs[0], "document too large (alias expansion)"));
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(s < 2.0);
}

static void test_tree_too_deep(void **state)
{
    struct fx *f = *state;
    char y[1024] = "a: ";
    for (int i = 0; i < 300; i++) {
        strcat(y, "[");
    }
    assert_null(tree(f, y)); /* never closed, but the depth limit comes first */
    assert_non_null(strstr(f->d.msgs[0], "nested deeper than"));
}

static void test_conf_load(void **state)
{
    struct fx *f = *state;
    struct vigil_conf *r = vigil_conf_load("/nonexistent/vigil.yaml", &f->d);
    assert_null(r);
    assert_string_equal(f->d.msgs[0], "/nonexistent/vigil.yaml: cannot open: No such file or "
                                      "directory");
    vigil_conf_free(NULL); /* does nothing */
}

/* ---- Readers ------------------------------------------------------------------- */

static void test_read_string(void **state)
{
    struct fx *f = *state;
    const char *s = NULL;
    assert_int_equal(vigil_conf_string(scalar(f, "hello world"), &s), 0);
    assert_string_equal(s, "hello world");
    assert_int_equal(vigil_conf_string(scalar(f, "5"), &s), 0);
    assert_string_equal(s, "5");
    assert_int_equal(vigil_conf_string(scalar(f, "[a]"), &s), VIGIL_ETYPE);
    assert_int_equal(vigil_conf_string(NULL, &s), VIGIL_ENOTFOUND);
    assert_true(VIGIL_ETYPE < 0 && VIGIL_ENOTFOUND < 0);
}

static void test_read_int(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *text;
        int rc;
        int64_t v;
    } cases[] = {
        {"0", 0, 0},
        {"42", 0, 42},
        {"-17", 0, -17},
        {"+8", 0, 8},
        {"0x1F", 0, 31},
        {"-0x10", 0, -16},
        {"9223372036854775807", 0, INT64_MAX},
        {"-9223372036854775808", 0, INT64_MIN},
        {"9223372036854775808", VIGIL_ETYPE, 0},
        {"-9223372036854775809", VIGIL_ETYPE, 0},
        {"99999999999999999999999", VIGIL_ETYPE, 0},
        {"0x10000000000000000", VIGIL_ETYPE, 0},
        {"12abc", VIGIL_ETYPE, 0},
        {"1.5", VIGIL_ETYPE, 0},
        {"0x", VIGIL_ETYPE, 0},
        {"--1", VIGIL_ETYPE, 0},
        {"+-1", VIGIL_ETYPE, 0},
        {"abc", VIGIL_ETYPE, 0},
        {"\"5\"", VIGIL_ETYPE, 0},
        {"'5'", VIGIL_ETYPE, 0},
        {"!!str 5", VIGIL_ETYPE, 0},
        {"", VIGIL_ETYPE, 0},
        {"[1]", VIGIL_ETYPE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t v = 12345;
        int rc = vigil_conf_int(scalar(f, cases[i].text), &v);
        if (rc != cases[i].rc) {
            fail_msg("int '%s': rc %d, want %d", cases[i].text, rc, cases[i].rc);
        }
        if (rc == 0 && v != cases[i].v) {
            fail_msg("int '%s': %lld", cases[i].text, (long long)v);
        }
    }
    int64_t v;
    assert_int_equal(vigil_conf_int(NULL, &v), VIGIL_ENOTFOUND);
}

static void test_read_double(void **state)
{
    struct fx *f = *state;
    double v;
    assert_int_equal(vigil_conf_double(scalar(f, "1.5"), &v), 0);
    assert_true(v == 1.5);
    assert_int_equal(vigil_conf_double(scalar(f, "-2e3"), &v), 0);
    assert_true(v == -2000.0);
    assert_int_equal(vigil_conf_double(scalar(f, "7"), &v), 0);
    assert_true(v == 7.0);
    assert_int_equal(vigil_conf_double(scalar(f, ".25"), &v), 0);
    assert_true(v == 0.25);
    assert_int_equal(vigil_conf_double(scalar(f, "1.5x"), &v), VIGIL_ETYPE);
    assert_int_equal(vigil_conf_double(scalar(f, "inf"), &v), VIGIL_ETYPE);
    assert_int_equal(vigil_conf_double(scalar(f, "nan"), &v), VIGIL_ETYPE);
    assert_int_equal(vigil_conf_double(scalar(f, "1e999"), &v), VIGIL_ETYPE);
    assert_int_equal(vigil_conf_double(scalar(f, "\"1.5\""), &v), VIGIL_ETYPE);
    assert_int_equal(vigil_conf_double(scalar(f, "{a: 1}"), &v), VIGIL_ETYPE);
    assert_int_equal(vigil_conf_double(NULL, &v), VIGIL_ENOTFOUND);
}

static void test_read_bool(void **state)
{
    struct fx *f = *state;
    const char *yes[] = {"true", "True", "yes", "ON"};
    const char *no[] = {"false", "FALSE", "no", "off"};
    const char *bad[] = {"1", "0", "y", "\"true\"", "'no'", "truthy", "[true]"};
    bool v;
    for (size_t i = 0; i < 4; i++) {
        v = false;
        assert_int_equal(vigil_conf_bool(scalar(f, yes[i]), &v), 0);
        assert_true(v);
        v = true;
        assert_int_equal(vigil_conf_bool(scalar(f, no[i]), &v), 0);
        assert_false(v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (vigil_conf_bool(scalar(f, bad[i]), &v) != VIGIL_ETYPE) {
            fail_msg("bool '%s' accepted", bad[i]);
        }
    }
    assert_int_equal(vigil_conf_bool(NULL, &v), VIGIL_ENOTFOUND);
}

static void test_read_duration(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *text;
        int rc;
        uint64_t ns;
    } cases[] = {
        {"250ms", 0, 250000000ull},
        {"1.5s", 0, 1500000000ull},
        {"0s", 0, 0},
        {"10ns", 0, 10},
        {"3us", 0, 3000},
        {"5m", 0, 300000000000ull},
        {"2h", 0, 7200000000000ull},
        {"1d", 0, 86400000000000ull},
        {"0.5m", 0, 30000000000ull},
        {"\"10s\"", 0, 10000000000ull},
        {"213503d", 0, 213503ull * 86400000000000ull},
        {"213504d", VIGIL_ETYPE, 0}, /* past 2^64 ns */
        {"18446744073709551615ns", 0, UINT64_MAX},
        {"18446744073709551616ns", VIGIL_ETYPE, 0},
        {"10", VIGIL_ETYPE, 0}, /* a unit is required */
        {"-1s", VIGIL_ETYPE, 0},
        {"1x", VIGIL_ETYPE, 0},
        {"s", VIGIL_ETYPE, 0},
        {"1.5", VIGIL_ETYPE, 0},
        {"1sec", VIGIL_ETYPE, 0},
        {"", VIGIL_ETYPE, 0},
        {"[1s]", VIGIL_ETYPE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t ns = 12345;
        int rc = vigil_conf_duration(scalar(f, cases[i].text), &ns);
        if (rc != cases[i].rc) {
            fail_msg("duration '%s': rc %d, want %d", cases[i].text, rc, cases[i].rc);
        }
        if (rc == 0 && ns != cases[i].ns) {
            fail_msg("duration '%s': %llu", cases[i].text, (unsigned long long)ns);
        }
    }
    uint64_t ns;
    assert_int_equal(vigil_conf_duration(NULL, &ns), VIGIL_ENOTFOUND);
    assert_int_equal(vigil_parse_duration("100ms", &ns), 0);
    assert_int_equal(ns, 100000000ull);
    assert_int_equal(vigil_parse_duration("1 h", &ns), 0);
    assert_int_equal(ns, 3600000000000ull);
    assert_int_equal(vigil_parse_duration("1s ", &ns), VIGIL_ETYPE);
    assert_int_equal(vigil_parse_duration(" 1s", &ns), VIGIL_ETYPE);
    assert_int_equal(vigil_parse_duration(NULL, &ns), VIGIL_ENOTFOUND);
}

static void test_read_size(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *text;
        int rc;
        uint64_t bytes;
    } cases[] = {
        {"512", 0, 512},
        {"0", 0, 0},
        {"512B", 0, 512},
        {"64KiB", 0, 65536},
        {"1.5MiB", 0, 1572864},
        {"2GiB", 0, 2147483648ull},
        {"1TiB", 0, 1099511627776ull},
        {"100MB", 0, 100000000},
        {"1KB", 0, 1000},
        {"3GB", 0, 3000000000ull},
        {"2TB", 0, 2000000000000ull},
        {"4K", 0, 4096},
        {"4k", 0, 4096},
        {"2M", 0, 2097152},
        {"1G", 0, 1073741824},
        {"'64KiB'", 0, 65536},
        {"18446744073709551615", 0, UINT64_MAX},
        {"18446744073709551616", VIGIL_ETYPE, 0},
        {"16777216TiB", VIGIL_ETYPE, 0}, /* 2^64 */
        {"16777215TiB", 0, 16777215ull << 40},
        {"1.5", VIGIL_ETYPE, 0},
        {"1.5B", VIGIL_ETYPE, 0},
        {"-1", VIGIL_ETYPE, 0},
        {"10XB", VIGIL_ETYPE, 0},
        {"KiB", VIGIL_ETYPE, 0},
        {"", VIGIL_ETYPE, 0},
        {"{a: 1}", VIGIL_ETYPE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t b = 12345;
        int rc = vigil_conf_size(scalar(f, cases[i].text), &b);
        if (rc != cases[i].rc) {
            fail_msg("size '%s': rc %d, want %d", cases[i].text, rc, cases[i].rc);
        }
        if (rc == 0 && b != cases[i].bytes) {
            fail_msg("size '%s': %llu", cases[i].text, (unsigned long long)b);
        }
    }
    uint64_t b;
    assert_int_equal(vigil_conf_size(NULL, &b), VIGIL_ENOTFOUND);
    assert_int_equal(vigil_parse_size("64 KiB", &b), 0);
    assert_int_equal(b, 65536);
    assert_int_equal(vigil_parse_size("1.25KiB", &b), 0);
    assert_int_equal(b, 1280);
    assert_int_equal(vigil_parse_size("x", &b), VIGIL_ETYPE);
    assert_int_equal(vigil_parse_size(NULL, &b), VIGIL_ENOTFOUND);
}

static void test_read_len_at_get(void **state)
{
    struct fx *f = *state;
    assert_non_null(tree(f, "l: [a, b, c]\nm: {x: 1, y: 2}\ns: one\n"));
    const struct vigil_conf *l = vigil_conf_get(f->root, "l");
    const struct vigil_conf *m = vigil_conf_get(f->root, "m");
    const struct vigil_conf *s = vigil_conf_get(f->root, "s");
    const char *key = "junk";

    assert_int_equal(vigil_conf_len(l), 3);
    assert_int_equal(vigil_conf_len(m), 2);
    assert_int_equal(vigil_conf_len(s), 1);
    assert_int_equal(vigil_conf_len(NULL), 0);

    assert_string_equal(vigil_conf_at(l, 2, &key)->value, "c");
    assert_null(key);
    assert_null(vigil_conf_at(l, 3, NULL));
    assert_string_equal(vigil_conf_at(m, 1, &key)->value, "2");
    assert_string_equal(key, "y");
    assert_ptr_equal(vigil_conf_at(s, 0, NULL), s);
    assert_null(vigil_conf_at(s, 1, NULL));
    assert_null(vigil_conf_at(NULL, 0, &key));

    assert_null(vigil_conf_get(f->root, "nope"));
    assert_null(vigil_conf_get(l, "a"));
    assert_null(vigil_conf_get(NULL, "a"));
}

/* ---- Plugin options -------------------------------------------------------------- */

static const struct vigil_option gen_opts[] = {
    {"rate", VIGIL_OPT_INT, "10", "events per interval"},
    {"count", VIGIL_OPT_INT, NULL, "stop after this many"},
    {"labels", VIGIL_OPT_MAP, "{}", "labels to add"},
    {"topics", VIGIL_OPT_LIST, "[gen.a, gen.b]", "topics"},
    {"ratio", VIGIL_OPT_DOUBLE, "0.5", NULL},
    {"enabled", VIGIL_OPT_BOOL, "true", NULL},
    {"timeout", VIGIL_OPT_DURATION, "250ms", NULL},
    {"buffer", VIGIL_OPT_SIZE, "64KiB", NULL},
    {"prefix", VIGIL_OPT_STRING, "gen", NULL},
    {NULL, 0, NULL, NULL},
};

static struct vigil_conf *own_of_first_source(struct fx *f, const char *yaml)
{
    assert_non_null(config(f, yaml));
    expect_no_errors(&f->d);
    assert_true(f->c->nsources >= 1);
    return f->c->sources[0].own;
}

static void test_options_unknown_key(void **state)
{
    struct fx *f = *state;
    static const struct vigil_option small[] = {
        {"rate", VIGIL_OPT_INT, NULL, NULL},
        {"count", VIGIL_OPT_INT, NULL, NULL},
        {"labels", VIGIL_OPT_MAP, NULL, NULL},
        {NULL, 0, NULL, NULL},
    };
    struct vigil_conf *own = own_of_first_source(f, "sources:\n"
                                                    "  - plugin: gen\n"
                                                    "    rate: 5\n"
                                                    "    rtae: 6\n");
    assert_int_equal(vigil_conf_check_options(own, small, "plugin 'gen'", &f->d), 1);
    assert_string_equal(f->d.msgs[0], "t.yaml:4:5: unknown key 'rtae' for plugin 'gen' (valid "
                                      "keys: rate, count, labels)");
}

static void test_options_mistyped(void **state)
{
    struct fx *f = *state;
    struct vigil_conf *own = own_of_first_source(f, "sources:\n"
                                                    "  - plugin: gen\n"
                                                    "    rate: abc\n"
                                                    "    ratio: \"0.5\"\n"
                                                    "    timeout: 10\n"
                                                    "    labels: [a]\n"
                                                    "    enabled: 1\n"
                                                    "    buffer: lots\n"
                                                    "    prefix: {a: b}\n"
                                                    "    topics: {a: b}\n");
    assert_int_equal(vigil_conf_check_options(own, gen_opts, "plugin 'gen'", &f->d), 8);
    expect_msg(&f->d, "t.yaml:3:11: key 'rate' of plugin 'gen' must be an integer, not 'abc'");
    expect_msg(&f->d, "t.yaml:4:12: key 'ratio' of plugin 'gen' must be a number, not '0.5'");
    expect_msg(&f->d, "t.yaml:5:14: key 'timeout' of plugin 'gen' must be a duration such as "
                      "250ms or 5m, not '10'");
    expect_msg(&f->d, "t.yaml:6:13: key 'labels' of plugin 'gen' must be a map, not a list");
    expect_msg(&f->d, "t.yaml:7:14: key 'enabled' of plugin 'gen' must be true or false, not '1'");
    expect_msg(&f->d, "t.yaml:8:13: key 'buffer' of plugin 'gen' must be a size such as 64KiB");
    expect_msg(&f->d, "t.yaml:9:13: key 'prefix' of plugin 'gen' must be a string, not a map");
    expect_msg(&f->d, "t.yaml:10:13: key 'topics' of plugin 'gen' must be a list, not a map");
}

static void test_options_defaults(void **state)
{
    struct fx *f = *state;
    struct vigil_conf *own = own_of_first_source(f, "sources:\n"
                                                    "  - plugin: gen\n"
                                                    "    rate: 7\n"
                                                    "    topics: only.one\n");
    assert_int_equal(vigil_conf_check_options(own, gen_opts, "plugin 'gen'", &f->d), 0);
    expect_no_errors(&f->d);

    int64_t i;
    assert_int_equal(vigil_conf_int(vigil_conf_get(own, "rate"), &i), 0);
    assert_int_equal(i, 7);                                             /* given, not the default */
    assert_null(vigil_conf_get(own, "count"));                          /* no default: absent */
    assert_int_equal(vigil_conf_len(vigil_conf_get(own, "topics")), 1); /* list of one */

    const struct vigil_conf *labels = vigil_conf_get(own, "labels");
    assert_non_null(labels);
    assert_int_equal(labels->kind, VIGIL_CONF_MAP);
    assert_int_equal(labels->line, 2); /* the map's position */
    assert_int_equal(labels->col, 5);
    assert_string_equal(labels->file, "t.yaml");

    double d;
    bool b;
    uint64_t u;
    const char *s;
    assert_int_equal(vigil_conf_double(vigil_conf_get(own, "ratio"), &d), 0);
    assert_true(d == 0.5);
    assert_int_equal(vigil_conf_bool(vigil_conf_get(own, "enabled"), &b), 0);
    assert_true(b);
    assert_int_equal(vigil_conf_duration(vigil_conf_get(own, "timeout"), &u), 0);
    assert_int_equal(u, 250000000ull);
    assert_int_equal(vigil_conf_size(vigil_conf_get(own, "buffer"), &u), 0);
    assert_int_equal(u, 65536);
    assert_int_equal(vigil_conf_string(vigil_conf_get(own, "prefix"), &s), 0);
    assert_string_equal(s, "gen");

    /* A second check finds everything present and adds nothing. */
    size_t n = own->n;
    assert_int_equal(vigil_conf_check_options(own, gen_opts, "plugin 'gen'", &f->d), 0);
    assert_int_equal(own->n, n);
}

static void test_options_bad_default(void **state)
{
    struct fx *f = *state;
    static const struct vigil_option bad[] = {
        {"rate", VIGIL_OPT_INT, "fast", NULL},
        {"list", VIGIL_OPT_LIST, "[unclosed", NULL},
        {NULL, 0, NULL, NULL},
    };
    struct vigil_conf *own = own_of_first_source(f, "sources:\n  - plugin: gen\n");
    assert_int_equal(vigil_conf_check_options(own, bad, "plugin 'gen'", &f->d), 2);
    expect_msg(&f->d, "t.yaml:2:5: plugin 'gen' has a bad default for 'rate': it must be an "
                      "integer, not 'fast'");
    expect_msg(&f->d, "t.yaml:2:5: plugin 'gen' has a bad default for 'list': '[unclosed' is not "
                      "valid YAML");
}

static void test_options_no_keys(void **state)
{
    struct fx *f = *state;
    static const struct vigil_option none[] = {{NULL, 0, NULL, NULL}};
    struct vigil_conf *own = own_of_first_source(f, "sources:\n  - plugin: p\n    x: 1\n");
    assert_int_equal(vigil_conf_check_options(own, none, "plugin 'p'", &f->d), 1);
    expect_msg(&f->d, "t.yaml:3:5: unknown key 'x' for plugin 'p' (valid keys: none)");
}

/* ---- The daemon's schema ------------------------------------------------------------ */

static void test_config_defaults(void **state)
{
    struct fx *f = *state;
    assert_non_null(config(f, ""));
    expect_no_errors(&f->d);
    char host[256];
    assert_int_equal(gethostname(host, sizeof host), 0);
    assert_string_equal(f->c->host, host);
    /* <prefix>/lib/vigil/plugins, the prefix CMake was configured with. */
    assert_string_equal(f->c->plugin_dir, VIGIL_DEFAULT_PLUGIN_DIR);
    assert_true(f->c->plugin_dir[0] == '/');
    size_t n = strlen(f->c->plugin_dir);
    assert_true(n > 18 && strcmp(f->c->plugin_dir + n - 18, "/lib/vigil/plugins") == 0);
    assert_string_equal(f->c->bus.publish, VIGIL_DEFAULT_PUBLISH);
    assert_string_equal(f->c->bus.subscribe, VIGIL_DEFAULT_SUBSCRIBE);
    assert_int_equal(f->c->bus.hwm, 10000);
    assert_int_equal(f->c->bus.max_event_bytes, 65536);
    assert_int_equal(f->c->bus.coalesce_ns, 300000);
    assert_int_equal(f->c->self_interval_ns, 10000000000ull);
    assert_int_equal(f->c->nsources, 0);
    assert_int_equal(f->c->nsinks, 0);
    assert_null(f->c->rules);
    assert_string_equal(f->c->path, "t.yaml");
    assert_true(f->c->dir[0] == '/');
    vigil_config_free(NULL); /* does nothing */
}

static void test_config_full(void **state)
{
    struct fx *f = *state;
    const char *y = "host: node7\n"
                    "plugin_dir: /opt/vigil/plugins\n"
                    "bus:\n"
                    "  publish: tcp://127.0.0.1:5555\n"
                    "  subscribe: inproc://sub\n"
                    "  hwm: 500\n"
                    "  max_event_bytes: 1MiB\n"
                    "self: {interval: 30s}\n"
                    "sources:\n"
                    "  - plugin: cpu\n"
                    "    interval: 1s\n"
                    "    percpu: true\n"
                    "  - plugin: cpu\n"
                    "    name: cpu.slow\n"
                    "sinks:\n"
                    "  - plugin: file\n"
                    "    match: [kvm., alert.]\n"
                    "    path: /tmp/x\n"
                    "  - plugin: syslog\n"
                    "rules:\n"
                    "  - name: r1\n";
    assert_non_null(config(f, y));
    expect_no_errors(&f->d);
    struct vigil_config *c = f->c;
    assert_string_equal(c->host, "node7");
    assert_string_equal(c->plugin_dir, "/opt/vigil/plugins");
    assert_string_equal(c->bus.publish, "tcp://127.0.0.1:5555");
    assert_string_equal(c->bus.subscribe, "inproc://sub");
    assert_int_equal(c->bus.hwm, 500);
    assert_int_equal(c->bus.max_event_bytes, 1048576);
    assert_int_equal(c->self_interval_ns, 30000000000ull);

    assert_int_equal(c->nsources, 2);
    assert_string_equal(c->sources[0].plugin, "cpu");
    assert_string_equal(c->sources[0].name, "cpu");
    assert_int_equal(c->sources[0].interval_ns, 1000000000ull);
    assert_int_equal(c->sources[0].node->line, 10);
    assert_int_equal(c->sources[0].own->n, 1);
    assert_string_equal(c->sources[0].own->keys[0], "percpu");
    assert_int_equal(c->sources[0].own->line, 10);
    assert_int_equal(c->sources[0].own->col, 5);
    assert_int_equal(c->sources[0].own->key_lines[0], 12);
    assert_ptr_not_equal(c->sources[0].own->items[0], vigil_conf_get(c->sources[0].node, "percpu"));
    assert_int_equal(c->sources[0].nmatch, 0);
    assert_string_equal(c->sources[1].name, "cpu.slow");
    assert_int_equal(c->sources[1].interval_ns, 10000000000ull);
    assert_int_equal(c->sources[1].own->n, 0);

    assert_int_equal(c->nsinks, 2);
    assert_int_equal(c->sinks[0].nmatch, 2);
    assert_string_equal(c->sinks[0].match[0], "kvm.");
    assert_string_equal(c->sinks[0].match[1], "alert.");
    assert_string_equal(c->sinks[0].own->keys[0], "path");
    assert_int_equal(c->sinks[1].nmatch, 1);
    assert_string_equal(c->sinks[1].match[0], "");

    assert_non_null(c->rules);
    assert_int_equal(c->rules->kind, VIGIL_CONF_LIST);
    assert_ptr_equal(c->rules, vigil_conf_get(c->root, "rules"));
}

static void test_config_unknown_top_key(void **state)
{
    struct fx *f = *state;
    assert_non_null(config(f, "host: a\n\nsourcse:\n  - plugin: cpu\n"));
    assert_int_equal(f->d.count, 1);
    assert_string_equal(f->d.msgs[0],
                        "t.yaml:3:1: unknown top-level key 'sourcse' (valid keys: "
                        "host, plugin_dir, plugin_trust, state_dir, pid_file, bus, self, "
                        "sources, rules, sinks)");
}

/* plugin_trust: on unless said off, and only a bool. */
static void test_config_plugin_trust(void **state)
{
    struct fx *f = *state;
    struct vigil_config *c = config(f, "host: a\n");
    assert_non_null(c);
    assert_true(c->plugin_trust);
    assert_null(c->plugin_trust_at);
    c = config(f, "host: a\nplugin_trust: off\n");
    assert_int_equal(f->d.count, 0);
    assert_false(c->plugin_trust);
    assert_int_equal(c->plugin_trust_at->line, 2);
    c = config(f, "plugin_trust: true\n");
    assert_true(c->plugin_trust);
    c = config(f, "plugin_trust: sometimes\n");
    assert_int_equal(f->d.count, 1);
    assert_string_equal(f->d.msgs[0],
                        "t.yaml:1:15: 'plugin_trust' must be true or false (on or off)");
}

static void test_config_bad_self_interval(void **state)
{
    struct fx *f = *state;
    assert_non_null(config(f, "self:\n  interval: soon\n  every: 1s\n"));
    expect_msg(&f->d, "t.yaml:2:13: 'self.interval' must be a duration such as 250ms or 5m, not "
                      "'soon'");
    expect_msg(&f->d, "t.yaml:3:3: unknown key 'every' in 'self' (valid keys: interval)");
    assert_int_equal(f->c->self_interval_ns, 10000000000ull);

    assert_non_null(config(f, "self: {interval: 0s}\n"));
    expect_msg(&f->d, "t.yaml:1:18: 'self.interval' must be more than 0");
}

static void test_config_sources_errors(void **state)
{
    struct fx *f = *state;
    const char *y = "sources:\n"
                    "  - plugin: cpu\n"
                    "  - plugin: cpu\n"
                    "  - name: lonely\n"
                    "    rate: 5\n"
                    "  - plugin: gen\n"
                    "    match: kvm.\n"
                    "  - plugin: ../evil\n"
                    "  - just a string\n"
                    "  - plugin: gen\n"
                    "    name: gen\n"
                    "  - plugin: x\n"
                    "    interval: -1s\n";
    assert_non_null(config(f, y));
    expect_msg(&f->d, "t.yaml:3:13: duplicate source name 'cpu' (first at line 2)");
    expect_msg(&f->d, "t.yaml:4:5: source entry needs 'plugin'");
    expect_msg(&f->d, "t.yaml:8:13: 'plugin' must be a plugin name (letters, digits, '_', '-'), "
                      "not '../evil'");
    expect_msg(&f->d, "t.yaml:9:5: each entry of 'sources' must be a map with a 'plugin' key, "
                      "not 'just a string'");
    expect_msg(&f->d, "t.yaml:11:11: duplicate source name 'gen' (first at line 6)");
    expect_msg(&f->d, "t.yaml:13:15: 'interval' must be a duration such as 250ms or 5m, not "
                      "'-1s'");
    assert_int_equal(f->d.count, 6);
    /* A source's `match` is its plugin's own key (the cgroups source's globs):
     * it stays in `own` for the plugin's option table to judge. */
    const struct vigil_conf *own = NULL;
    for (size_t i = 0; i < f->c->nsources; i++) {
        if (strcmp(f->c->sources[i].plugin, "gen") == 0 && !own) {
            own = f->c->sources[i].own;
        }
    }
    assert_non_null(own);
    assert_non_null(vigil_conf_get(own, "match"));
}

static void test_config_sinks_errors(void **state)
{
    struct fx *f = *state;
    const char *y = "sinks:\n"
                    "  - plugin: file\n"
                    "    interval: 1s\n"
                    "  - plugin: webhook\n"
                    "    match: {a: b}\n"
                    "  - plugin: syslog\n"
                    "    match: []\n"
                    "  - {plugin: syslog, name: 'bad name'}\n";
    assert_non_null(config(f, y));
    expect_msg(&f->d, "t.yaml:3:5: 'interval' is for sources");
    expect_msg(&f->d, "t.yaml:5:12: 'match' must be a topic prefix or a list of them, not a map");
    expect_msg(&f->d, "t.yaml:7:12: 'match' must be a topic prefix or a list of them, not an "
                      "empty list");
    expect_msg(&f->d, "t.yaml:8:28: 'name' must be an instance name");
    assert_int_equal(f->d.count, 4);
}

static void test_config_bus_errors(void **state)
{
    struct fx *f = *state;
    const char *y = "bus:\n"
                    "  publish: http://x\n"
                    "  hwm: 0\n"
                    "  max_event_bytes: 100\n"
                    "  speed: fast\n"
                    "  coalesce: 20ms\n";
    assert_non_null(config(f, y));
    expect_msg(&f->d, "t.yaml:2:12: 'bus.publish' must be a ZeroMQ endpoint: ipc://PATH, "
                      "tcp://HOST:PORT or inproc://NAME, not 'http://x'");
    expect_msg(&f->d, "t.yaml:3:8: 'bus.hwm' must be an integer from 1 to 10000000");
    expect_msg(&f->d, "t.yaml:4:20: 'bus.max_event_bytes' must be a size from 256B to 256MiB");
    expect_msg(&f->d, "t.yaml:5:3: unknown key 'speed' in 'bus'");
    expect_msg(&f->d, "t.yaml:6:13: 'bus.coalesce' must be a duration from 0s to 10ms, not '20ms'");
    assert_int_equal(f->d.count, 5);

    assert_non_null(config(f, "bus:\n  coalesce: soon\n"));
    expect_msg(&f->d, "t.yaml:2:13: 'bus.coalesce' must be a duration from 0s to 10ms, not 'soon'");
    size_t before = f->d.count;
    assert_non_null(config(f, "bus:\n  coalesce: 1500us\n"));
    assert_int_equal(f->d.count, before);
    assert_int_equal(f->c->bus.coalesce_ns, 1500000);
    assert_non_null(config(f, "bus:\n  coalesce: 0s\n"));
    assert_int_equal(f->d.count, before);
    assert_int_equal(f->c->bus.coalesce_ns, 0);

    assert_non_null(config(f, "bus:\n  publish: ipc:///x\n  subscribe: ipc:///x\n"));
    expect_msg(&f->d, "t.yaml:3:14: 'bus.publish' and 'bus.subscribe' must be different");
}

/* The fleet's keys: bus.ingest, bus.curve, and no network endpoint in
 * plaintext unless it says so. */
static void test_config_bus_fleet(void **state)
{
    struct fx *f = *state;
    size_t before = f->d.count;
    assert_non_null(config(f, "bus:\n"
                              "  ingest: tcp://127.0.0.1:7070\n"
                              "  publish: tcp://localhost:7071\n"));
    assert_int_equal(f->d.count, before); /* loopback: fine without CURVE */
    assert_string_equal(f->c->bus.ingest, "tcp://127.0.0.1:7070");
    assert_null(f->c->bus.curve_secret_key);

    assert_non_null(config(f, "bus:\n"
                              "  ingest: tcp://0.0.0.0:7070\n"
                              "  subscribe: tcp://*:7072\n"
                              "  publish: {endpoint: 'tcp://[::]:7071', plaintext: true}\n"));
    expect_msg(&f->d, "t.yaml:2:11: 'bus.ingest' (tcp://0.0.0.0:7070) is reachable from the "
                      "network: configure 'bus.curve'");
    expect_msg(&f->d, "t.yaml:3:14: 'bus.subscribe' (tcp://*:7072) is reachable");
    assert_int_equal(f->d.count, before + 2); /* publish said plaintext: true */
    assert_true(f->c->bus.publish_plaintext);
    assert_string_equal(f->c->bus.publish, "tcp://[::]:7071");

    before = f->d.count;
    assert_non_null(config(f, "bus:\n"
                              "  ingest: tcp://0.0.0.0:7070\n"
                              "  curve: {secret_key: keys/vigil.key, authorized_keys: /etc/ak}\n"));
    assert_int_equal(f->d.count, before);
    assert_non_null(strstr(f->c->bus.curve_secret_key, "/keys/vigil.key"));
    assert_string_equal(f->c->bus.curve_authorized_keys, "/etc/ak");

    assert_non_null(config(f,
                           "bus:\n"
                           "  curve: {secret_key: k}\n"
                           "  ingest: {endpoint: tcp://127.0.0.1:1, plaintext: maybe, port: 2}\n"));
    expect_msg(&f->d, "t.yaml:2:10: 'bus.curve' needs authorized_keys (make a keypair with "
                      "vigil-keygen DIR)");
    expect_msg(&f->d, "t.yaml:3:52: 'bus.ingest.plaintext' must be true or false");
    expect_msg(&f->d, "t.yaml:3:59: unknown key 'port' in 'bus.ingest'");
    assert_non_null(config(f, "bus:\n  ingest: {plaintext: true}\n  curve: 12\n"));
    expect_msg(&f->d, "t.yaml:2:11: 'bus.ingest' needs 'endpoint'");
    expect_msg(&f->d, "t.yaml:3:10: 'bus.curve' must be a map");
    assert_non_null(config(f, "bus:\n  publish: ipc:///a\n  ingest: ipc:///a\n"));
    expect_msg(&f->d, "t.yaml:3:11: 'bus.ingest' must be an endpoint of its own");
}

static void test_config_wrong_shapes(void **state)
{
    struct fx *f = *state;
    const char *y = "host: [a]\n"
                    "bus: 5\n"
                    "self: [1]\n"
                    "sources: {plugin: cpu}\n"
                    "sinks: nope\n"
                    "rules: {a: 1}\n";
    assert_non_null(config(f, y));
    expect_msg(&f->d, "t.yaml:1:7: 'host' must be a name for this machine, not a list");
    expect_msg(&f->d, "t.yaml:2:6: 'bus' must be a map, not '5'");
    expect_msg(&f->d, "t.yaml:3:7: 'self' must be a map, not a list");
    expect_msg(&f->d, "t.yaml:4:10: 'sources' must be a list");
    expect_msg(&f->d, "t.yaml:5:8: 'sinks' must be a list");
    expect_msg(&f->d, "t.yaml:6:8: 'rules' must be a list of rules, not a map");
    assert_int_equal(f->d.count, 6);
}

static void test_config_empty_sections(void **state)
{
    struct fx *f = *state;
    assert_non_null(config(f, "bus:\nself:\nsources:\nsinks: []\nrules:\n"));
    expect_no_errors(&f->d);
    assert_int_equal(f->c->nsources, 0);
    assert_null(f->c->rules);
}

static void test_config_all_errors_in_one_run(void **state)
{
    struct fx *f = *state;
    const char *y = "hots: x\n"
                    "self: {interval: 5}\n"
                    "sources:\n"
                    "  - name: a\n"
                    "a: 1\n"
                    "a: 2\n";
    assert_non_null(config(f, y));
    assert_true(f->d.count >= 4);
    expect_msg(&f->d, "t.yaml:1:1: unknown top-level key 'hots'");
    expect_msg(&f->d, "t.yaml:2:18: 'self.interval'");
    expect_msg(&f->d, "t.yaml:4:5: source entry needs 'plugin'");
    expect_msg(&f->d, "t.yaml:6:1: duplicate key 'a' (first at line 5)");
}

static void test_config_parse_fails(void **state)
{
    struct fx *f = *state;
    assert_null(config(f, "sources: [\n"));
    expect_msg(&f->d, "t.yaml:2:1: ");
    assert_null(vigil_config_load("/nonexistent/dir/vigil.yaml", &f->d));
    expect_msg(&f->d, "/nonexistent/dir/vigil.yaml: cannot open: ");
}

static void test_config_plugin_dir_relative_to_name(void **state)
{
    struct fx *f = *state;
    f->c = vigil_config_parse("plugin_dir: ./plugins\n", 22, "/no/such/etc/vigil.yaml", &f->d);
    assert_non_null(f->c);
    expect_no_errors(&f->d);
    assert_string_equal(f->c->dir, "/no/such/etc");
    assert_string_equal(f->c->plugin_dir, "/no/such/etc/plugins");
}

/* ---- Files: plugin_dir against the config's folder --------------------------------- */

struct files {
    char top[64];   /* mkdtemp */
    char etc[128];  /* top/etc */
    char conf[160]; /* top/etc/vigil.yaml */
    struct vigil_diag d;
    struct vigil_config *c;
};

static int files_setup(void **state)
{
    struct files *fs = calloc(1, sizeof *fs);
    if (!fs) {
        return -1;
    }
    strcpy(fs->top, "/tmp/test_config.XXXXXX");
    if (!mkdtemp(fs->top)) {
        free(fs);
        return -1;
    }
    snprintf(fs->etc, sizeof fs->etc, "%s/etc", fs->top);
    snprintf(fs->conf, sizeof fs->conf, "%s/vigil.yaml", fs->etc);
    if (mkdir(fs->etc, 0700) != 0) {
        rmdir(fs->top);
        free(fs);
        return -1;
    }
    vigil_diag_init(&fs->d);
    *state = fs;
    return 0;
}

static int files_teardown(void **state)
{
    struct files *fs = *state;
    vigil_config_free(fs->c);
    vigil_diag_fini(&fs->d);
    unlink(fs->conf);
    rmdir(fs->etc);
    rmdir(fs->top);
    free(fs);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void test_load_plugin_dir_resolution(void **state)
{
    struct files *fs = *state;
    write_file(fs->conf, "plugin_dir: ../lib/plugins\nsources:\n  - plugin: cpu\n");

    /* Load through a relative path from elsewhere: the folder is still the
     * config file's, made absolute. */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(fs->top), 0);
    fs->c = vigil_config_load("etc/vigil.yaml", &fs->d);
    assert_int_equal(chdir(cwd), 0);

    assert_non_null(fs->c);
    expect_no_errors(&fs->d);
    char *real_etc = realpath(fs->etc, NULL);
    assert_non_null(real_etc);
    assert_string_equal(fs->c->dir, real_etc);
    char want[PATH_MAX];
    snprintf(want, sizeof want, "%s/../lib/plugins", real_etc);
    assert_string_equal(fs->c->plugin_dir, want);
    assert_string_equal(fs->c->path, "etc/vigil.yaml");
    assert_string_equal(fs->c->sources[0].plugin, "cpu");
    free(real_etc);
}

static void test_load_errors_name_the_file(void **state)
{
    struct files *fs = *state;
    write_file(fs->conf, "self:\n  interval: 1\nbogus: 1\nsinks:\n  - interval: 1s\n");
    fs->c = vigil_config_load(fs->conf, &fs->d);
    assert_non_null(fs->c);
    assert_int_equal(fs->d.count, 4);
    char want[256];
    snprintf(want, sizeof want, "%s:2:13: 'self.interval' must be a duration", fs->conf);
    expect_msg(&fs->d, want);
    snprintf(want, sizeof want, "%s:3:1: unknown top-level key 'bogus'", fs->conf);
    expect_msg(&fs->d, want);
    snprintf(want, sizeof want, "%s:5:5: 'interval' is for sources", fs->conf);
    expect_msg(&fs->d, want);
    snprintf(want, sizeof want, "%s:5:5: sink entry needs 'plugin'", fs->conf);
    expect_msg(&fs->d, want);
}

static void test_load_directory(void **state)
{
    struct files *fs = *state;
    assert_null(vigil_config_load(fs->etc, &fs->d));
    char want[256];
    snprintf(want, sizeof want, "%s: cannot read: ", fs->etc);
    expect_msg(&fs->d, want);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tree_tests[] = {
        T(test_diag_format),
        T(test_diag_bounded),
        T(test_tree_positions_and_order),
        T(test_tree_empty),
        T(test_tree_not_a_map),
        T(test_tree_syntax_error),
        T(test_tree_syntax_error_indent),
        T(test_tree_bad_utf8),
        T(test_tree_duplicate_key),
        T(test_tree_nonscalar_key),
        T(test_tree_two_documents),
        T(test_tree_aliases),
        T(test_tree_billion_laughs),
        T(test_tree_too_deep),
        T(test_conf_load),
    };
    const struct CMUnitTest reader_tests[] = {
        T(test_read_string),   T(test_read_int),  T(test_read_double),     T(test_read_bool),
        T(test_read_duration), T(test_read_size), T(test_read_len_at_get),
    };
    const struct CMUnitTest option_tests[] = {
        T(test_options_unknown_key), T(test_options_mistyped), T(test_options_defaults),
        T(test_options_bad_default), T(test_options_no_keys),
    };
    const struct CMUnitTest schema_tests[] = {
        T(test_config_defaults),
        T(test_config_full),
        T(test_config_unknown_top_key),
        T(test_config_plugin_trust),
        T(test_config_bad_self_interval),
        T(test_config_sources_errors),
        T(test_config_sinks_errors),
        T(test_config_bus_errors),
        T(test_config_bus_fleet),
        T(test_config_wrong_shapes),
        T(test_config_empty_sections),
        T(test_config_all_errors_in_one_run),
        T(test_config_parse_fails),
        T(test_config_plugin_dir_relative_to_name), /* keeps clang-format to one a line */
    };
#undef T
#define F(fn) cmocka_unit_test_setup_teardown(fn, files_setup, files_teardown)
    const struct CMUnitTest file_tests[] = {
        F(test_load_plugin_dir_resolution),
        F(test_load_errors_name_the_file),
        F(test_load_directory),
    };
#undef F
    int failed = 0;
    failed += cmocka_run_group_tests_name("config tree", tree_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("config readers", reader_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("config options", option_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("config schema", schema_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("config files", file_tests, NULL, NULL);
    return failed == 0 ? 0 : 1;
}

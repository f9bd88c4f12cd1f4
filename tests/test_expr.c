/* Unit tests for the rule expression language (pipeline/expr*.c): precedence,
 * every operator and function, missing-field semantics, globs, lists,
 * literals, every kind of path, BIN strings and booleans from the body, the
 * compile errors with their exact file:line:col, and the path list.
 *
 * `test_expr --bench` runs a micro-benchmark instead (not a test): ns per
 * evaluation of a typical rule on a decoded event.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "config.h"
#include "event.h"
#include "expr.h"

#define MAX_BODY (64 * 1024)
#define TS 1700000000000000000ull

struct fx {
    struct vigil_event_builder b;
    msgpack_zone zone;
    msgpack_sbuffer sb; /* hand-packed bodies */
    msgpack_packer pk;
    struct vigil_event_view v;
};

/* The event most tests read: every envelope field, labels, values of each
 * numeric kind, and attrs with a nested map, booleans and a list. */
static void build_standard(struct fx *f)
{
    struct vigil_event_builder *b = &f->b;
    const char *body, *reason = NULL;
    size_t len;

    vigil_event_begin(b, "cgroup.stats");
    vigil_event_set_ts(b, TS);
    vigil_event_add_label(b, "container", "web-1");
    vigil_event_add_label(b, "cgroup", "/kubepods/burstable/pod1/abc");
    vigil_event_add_label(b, "vm", "vm1");
    vigil_event_add_label(b, "q", "a\"b");
    vigil_event_add_label(b, "empty", "");
    vigil_event_add_label(b, "utf", "caf\xc3\xa9");
    vigil_event_add_value(b, "cpu_usage_pct", 95.5);
    vigil_event_add_value_u64(b, "mem", 100);
    vigil_event_add_value(b, "zero", 0);
    vigil_event_add_value(b, "neg", -3);
    vigil_event_add_value(b, "one", 1);
    vigil_event_add_value(b, "two", 2);
    vigil_event_add_value(b, "three", 3);
    vigil_event_add_value(b, "seven", 7);
    vigil_event_add_value(b, "half", 0.5);
    vigil_event_attr_map_begin(b, "ns");
    vigil_event_add_attr_str(b, "net", "net:[4026531993]");
    vigil_event_add_attr_i64(b, "pid", -7);
    vigil_event_attr_map_begin(b, "deep");
    vigil_event_add_attr_f64(b, "x", 2.5);
    vigil_event_attr_end(b);
    vigil_event_attr_end(b);
    vigil_event_add_attr_bool(b, "flag", true);
    vigil_event_add_attr_bool(b, "off", false);
    vigil_event_attr_list_begin(b, "list");
    vigil_event_add_attr_str(b, NULL, "x");
    vigil_event_attr_end(b);
    assert_int_equal(vigil_event_finish(b, "node1", "cgroups/c1", 42, &body, &len), 0);
    msgpack_zone_clear(&f->zone);
    assert_int_equal(
        vigil_event_decode(&f->v, "cgroup.stats", 12, body, len, MAX_BODY, &f->zone, &reason), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f) {
        return -1;
    }
    vigil_event_builder_init(&f->b);
    if (!msgpack_zone_init(&f->zone, 4096)) {
        free(f);
        return -1;
    }
    msgpack_sbuffer_init(&f->sb);
    msgpack_packer_init(&f->pk, &f->sb, msgpack_sbuffer_write);
    build_standard(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    vigil_event_builder_fini(&f->b);
    msgpack_zone_destroy(&f->zone);
    msgpack_sbuffer_destroy(&f->sb);
    free(f);
    return 0;
}

/* ------------------------------------------------------------- helpers */

static struct vigil_expr *compile_ok(const char *text, enum vigil_expr_want want)
{
    struct vigil_diag d;
    vigil_diag_init(&d);
    struct vigil_expr *e = vigil_expr_compile(text, want, "r.yaml", 3, 9, false, &d);
    if (!e || d.count != 0) {
        fprintf(stderr, "compiling `%s`:\n", text);
        vigil_diag_print(&d, stderr);
    }
    assert_non_null(e);
    assert_int_equal(d.count, 0);
    vigil_diag_fini(&d);
    return e;
}

/* Compiles a condition and evaluates it on f's event. */
static bool cond(struct fx *f, const char *text)
{
    struct vigil_expr *e = compile_ok(text, VIGIL_EXPR_BOOL);
    bool r = vigil_expr_true(e, &f->v);
    vigil_expr_free(e);
    return r;
}

#define assert_cond(f, text) assert_true(cond((f), (text)))
#define refute_cond(f, text) assert_false(cond((f), (text)))

/* Compiles a quantity and evaluates it; false when missing. */
static bool num(struct fx *f, const char *text, double *out)
{
    struct vigil_expr *e = compile_ok(text, VIGIL_EXPR_NUMBER);
    bool r = vigil_expr_number(e, &f->v, out);
    vigil_expr_free(e);
    return r;
}

static void assert_num(struct fx *f, const char *text, double want)
{
    double got = NAN;
    if (!num(f, text, &got) || got != want) {
        fail_msg("`%s` gave %g, want %g", text, got, want);
    }
}

static void assert_no_num(struct fx *f, const char *text)
{
    double got = 12345;
    assert_false(num(f, text, &got));
    assert_true(got == 12345);
}

/* Compiles text that must fail with exactly one message, which must be at
 * r.yaml:line:at_col and contain `part`. */
static void check_error(const char *text, enum vigil_expr_want want, int line, int col, bool quoted,
                        int at_line, int at_col, const char *part)
{
    struct vigil_diag d;
    char prefix[64];
    vigil_diag_init(&d);
    struct vigil_expr *e = vigil_expr_compile(text, want, "r.yaml", line, col, quoted, &d);
    assert_null(e);
    if (d.n != 1) {
        fail_msg("`%s`: %zu messages", text, d.n);
    }
    if (at_line > 0 && at_col > 0) {
        snprintf(prefix, sizeof prefix, "r.yaml:%d:%d: ", at_line, at_col);
    } else if (at_line > 0) {
        snprintf(prefix, sizeof prefix, "r.yaml:%d: ", at_line);
    } else {
        snprintf(prefix, sizeof prefix, "r.yaml: ");
    }
    if (strncmp(d.msgs[0], prefix, strlen(prefix)) != 0 || !strstr(d.msgs[0], part)) {
        fail_msg("`%s`: got \"%s\", want prefix \"%s\" and \"%s\"", text, d.msgs[0], prefix, part);
    }
    vigil_diag_fini(&d);
}

/* The usual case: a plain scalar at 7:11, errors at column 11 + offset. */
static void err_at(const char *text, int offset, const char *part)
{
    check_error(text, VIGIL_EXPR_BOOL, 7, 11, false, 7, 11 + offset, part);
}

static void err_num_at(const char *text, int offset, const char *part)
{
    check_error(text, VIGIL_EXPR_NUMBER, 7, 11, false, 7, 11 + offset, part);
}

/* Packs a body by hand: the envelope plus what `extra` adds (n extra keys). */
static void pk_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pk_bin(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, s, n);
}

static void decode_sb(struct fx *f)
{
    const char *reason = NULL;
    msgpack_zone_clear(&f->zone);
    int rc =
        vigil_event_decode(&f->v, "t.x", 3, f->sb.data, f->sb.size, MAX_BODY, &f->zone, &reason);
    if (rc != 0) {
        fail_msg("decode: %s", reason);
    }
}

/* ------------------------------------------------------------- precedence */

static void test_precedence(void **state)
{
    struct fx *f = *state;
    /* Folded at compile time ... */
    assert_num(f, "1 + 2 * 3", 7);
    assert_num(f, "2 * 3 % 4", 2); /* (2*3)%4, not 2*(3%4) */
    assert_num(f, "-2 * -3", 6);
    assert_num(f, "10 - 4 - 3", 3); /* left-assoc */
    assert_num(f, "8 / 4 / 2", 1);
    assert_num(f, "2 * (3 + 4)", 14);
    assert_num(f, "-(2 + 3)", -5);
    assert_num(f, "- -2", 2);
    /* ... and the same through the VM. */
    assert_num(f, "values.one + values.two * values.three", 7);
    assert_num(f, "values.two * values.three % 4", 2);
    assert_num(f, "-values.two * -values.three", 6);
    assert_num(f, "values.seven - values.three - values.two", 2);
    assert_num(f, "values.seven / values.two / values.two", 1.75);
    assert_num(f, "(values.one + values.two) * values.three", 9);
    assert_num(f, "1 + values.two * 3", 7);

    /* ! binds tighter than &&, && tighter than ||. */
    assert_cond(f, "!false && false || true");
    refute_cond(f, "!(false && false || true)");
    assert_cond(f, "true || true && false");
    refute_cond(f, "(true || true) && false");
    assert_cond(f, "!attrs.off && attrs.flag || false");
    refute_cond(f, "!attrs.flag && attrs.flag || attrs.off");
    assert_cond(f, "attrs.off || attrs.flag && !attrs.off");
    /* Arithmetic binds tighter than comparisons, comparisons than &&. */
    assert_cond(f, "values.one + 1 == values.two && values.three * 2 > 5");
    assert_cond(f, "1 + 2 * 3 == 7");
    assert_cond(f, "-values.neg == values.three");
}

static void test_comparisons_do_not_chain(void **state)
{
    (void)state;
    err_at("1 < 2 < 3", 6, "comparisons do not chain");
    err_at("values.a == values.b == true", 21, "comparisons do not chain");
    err_at("labels.a ~ \"x\" == true", 15, "comparisons do not chain");
    err_at("values.a in [1] in [2]", 16, "comparisons do not chain");
    /* Parentheses make it legal. */
    struct vigil_expr *e = compile_ok("(values.a < 2) == true", VIGIL_EXPR_BOOL);
    vigil_expr_free(e);
}

/* ------------------------------------------------------------- operators */

static void test_arithmetic(void **state)
{
    struct fx *f = *state;
    assert_num(f, "values.seven + values.half", 7.5);
    assert_num(f, "values.seven - 10", -3);
    assert_num(f, "values.seven * values.half", 3.5);
    assert_num(f, "values.seven / values.two", 3.5);
    assert_num(f, "values.seven % values.three", 1);
    assert_num(f, "-values.seven % values.three", -1); /* fmod: the sign of the dividend */
    assert_num(f, "values.seven % 2.5", 2);
    assert_num(f, "-values.cpu_usage_pct", -95.5);
    assert_num(f, "values.mem", 100);  /* a uint from msgpack */
    assert_num(f, "attrs.ns.pid", -7); /* a negative int */
    assert_num(f, "values.cpu_usage_pct", 95.5);
    /* Division by zero at run time is missing, not inf. */
    assert_no_num(f, "values.seven / values.zero");
    assert_no_num(f, "values.seven % values.zero");
    refute_cond(f, "values.seven / values.zero > 0");
    refute_cond(f, "values.seven / values.zero < 0");
    /* At compile time it is an error. */
    err_num_at("1 / 0", 2, "division by zero");
    err_num_at("values.x + 5 % (2 - 2)", 13, "division by zero");
}

static void test_functions(void **state)
{
    struct fx *f = *state;
    assert_num(f, "abs(values.neg)", 3);
    assert_num(f, "abs(values.three)", 3);
    assert_num(f, "abs(-4)", 4);
    assert_num(f, "min(values.seven, values.two, values.three)", 2);
    assert_num(f, "max(values.seven, values.two, values.three)", 7);
    assert_num(f, "min(values.neg, 0)", -3);
    assert_num(f, "max(1, 5, 3)", 5);
    assert_num(f, "min(1, -5)", -5);
    assert_num(f, "max(values.half, abs(values.neg) * 2) + 1", 7);
    assert_cond(f, "abs(values.neg - values.seven) == 10");
    assert_no_num(f, "abs(values.nope)");
    assert_no_num(f, "min(values.seven, values.nope)");
    assert_no_num(f, "max(values.nope, 1, 2)");
    assert_no_num(f, "min(labels.vm, 1)"); /* a string is missing to arithmetic */

    err_at("foo(1) > 0", 0, "unknown function 'foo': the functions are abs, min and max");
    err_at("1 + values.foo(2) > 0", 4, "unknown function 'values.foo'");
    err_num_at("abs(1, 2)", 0, "abs takes one argument, not 2");
    err_num_at("abs()", 0, "abs takes one argument, not 0");
    err_num_at("min(values.a)", 0, "min takes two or more arguments");
    err_num_at("max(1, \"a\")", 7, "'max' needs numbers, but \"a\" is a string");
    err_num_at("max(1, 2", 3, "this '(' is never closed");
    err_num_at("max(1 2)", 6, "expected ',' or ')' in the call of max, found '2'");
}

static void test_comparison_operators(void **state)
{
    struct fx *f = *state;
    assert_cond(f, "values.cpu_usage_pct == 95.5");
    refute_cond(f, "values.cpu_usage_pct != 95.5");
    assert_cond(f, "values.cpu_usage_pct != 95");
    assert_cond(f, "values.cpu_usage_pct > 95");
    refute_cond(f, "values.cpu_usage_pct > 95.5");
    assert_cond(f, "values.cpu_usage_pct >= 95.5");
    assert_cond(f, "values.cpu_usage_pct < 96");
    assert_cond(f, "values.cpu_usage_pct <= 95.5");
    refute_cond(f, "values.cpu_usage_pct < 95.5");
    /* Constant on the left, path on the right. */
    assert_cond(f, "90 < values.cpu_usage_pct");
    assert_cond(f, "values.two < values.three");
    assert_cond(f, "values.mem == values.mem");
    /* Strings: equality by bytes, order by bytes then length. */
    assert_cond(f, "labels.vm == \"vm1\"");
    refute_cond(f, "labels.vm == \"vm\"");
    assert_cond(f, "labels.vm != \"vm10\"");
    assert_cond(f, "labels.vm < \"vm2\"");
    assert_cond(f, "labels.vm > \"vm\"");
    assert_cond(f, "labels.vm >= \"vm1\"");
    assert_cond(f, "labels.vm <= \"vm1\"");
    assert_cond(f, "\"ab\" < \"abc\"");
    assert_cond(f, "\"abd\" > \"abc\"");
    assert_cond(f, "labels.empty == \"\"");
    assert_cond(f, "labels.empty < labels.vm");
    assert_cond(f, "labels.container == labels.container");
    assert_cond(f, "labels.vm != labels.container");
    /* Mixed types at run time: every comparison is false, != too. */
    refute_cond(f, "labels.vm == values.mem");
    refute_cond(f, "labels.vm != values.mem");
    refute_cond(f, "labels.vm == 5");
    refute_cond(f, "labels.vm != 5");
    refute_cond(f, "values.mem == \"100\"");
    refute_cond(f, "values.mem < labels.vm");
    /* Literal against literal of another type: compile errors. */
    err_at("1 == \"a\"", 2, "'==' cannot compare these: '1' is a number, and \"a\" is a string");
    err_at("\"a\" != true", 4, "'!=' cannot compare these");
    err_at("values.a + 1 == \"a\"", 13, "cannot compare these: '+' gives a number");
    err_at("true < false", 0, "'<' orders numbers or strings, but 'true' is a boolean");
    err_at("values.a <= (values.b > 1)", 22, "'<=' orders numbers or strings, but '>' gives");
}

static void test_logic(void **state)
{
    struct fx *f = *state;
    assert_cond(f, "true && true");
    refute_cond(f, "true && false");
    refute_cond(f, "false && true");
    assert_cond(f, "false || true");
    refute_cond(f, "false || false");
    assert_cond(f, "!false");
    refute_cond(f, "!true");
    assert_cond(f, "!!true");
    assert_cond(f, "values.one > 0 && values.two > 1 && values.three > 2");
    refute_cond(f, "values.one > 0 && values.two > 1 && values.three > 3");
    assert_cond(f, "values.one > 5 || values.two > 5 || values.three > 2");
    refute_cond(f, "values.one > 5 || values.two > 5 || values.three > 5");
    assert_cond(f, "(values.one > 5 || values.two > 1) && (values.three > 5 || true)");
    /* The result of && and || compares like any boolean. */
    assert_cond(f, "(values.one > 0 && true) == true");
    assert_cond(f, "(values.one > 5 || false) == false");
    assert_cond(f, "(values.one > 5 || false) != (values.one > 0)");

    err_at("5 && true", 0,
           "'&&' needs conditions (comparisons, true/false or fields), but '5' is a number");
    err_at("true || \"a\"", 8, "'||' needs conditions");
    err_at("values.a + 1 || true", 9,
           "'||' needs conditions (comparisons, true/false or fields), but '+' gives a number");
    err_at("!5", 1, "'!' needs conditions");
    err_at("!values.a * 2", 0, "'*' needs numbers, but '!' gives true or false");
    err_at("a & b", 2, "write '&&' for and");
    err_at("a | b", 2, "write '||' for or");
    err_at("a and b", 2, "expected an operator, found 'and': write '&&' for and");
    err_at("a or b", 2, "write '||' for or");
    err_at("a = 1", 2, "write '==' to compare");
}

/* ------------------------------------------------------------- missing */

static void test_missing(void **state)
{
    struct fx *f = *state;
    refute_cond(f, "values.x > 5");
    refute_cond(f, "values.x < 5");
    refute_cond(f, "values.x == 5");
    refute_cond(f, "values.x != 5");
    refute_cond(f, "values.x == values.x");
    assert_cond(f, "!(values.x > 5)");
    assert_cond(f, "!(values.x != 5)");
    refute_cond(f, "values.x + 1 > 0");
    refute_cond(f, "values.x + 1 <= 0");
    refute_cond(f, "-values.x < 0");
    refute_cond(f, "abs(values.x) >= 0");
    refute_cond(f, "values.x * 0 == 0");
    refute_cond(f, "labels.nope ~ \"**\"");
    refute_cond(f, "values.nope in [1, 2]");
    refute_cond(f, "labels.nope in [\"a\"]");
    assert_cond(f, "!values.nope");
    assert_cond(f, "values.nope || true");
    refute_cond(f, "values.nope && true");
    refute_cond(f, "values.nope > 5 || values.nope < 5");
    assert_cond(f, "values.nope > 5 || values.cpu_usage_pct > 5");
    /* Of another type than the operator needs: missing too. */
    refute_cond(f, "labels.container + 1 > 0");
    refute_cond(f, "values.mem ~ \"*\"");
    refute_cond(f, "values.mem in [\"100\"]");
    refute_cond(f, "labels.vm in [1]");
    refute_cond(f, "attrs.ns > 0");        /* a map */
    refute_cond(f, "attrs.list == \"x\""); /* a list */
    refute_cond(f, "attrs.flag + 1 > 0");  /* a boolean in arithmetic */
    /* A whole map, or a field under a non-map, is missing. */
    refute_cond(f, "labels");
    refute_cond(f, "attrs.ns");
    refute_cond(f, "labels.vm.x == \"vm1\"");
    refute_cond(f, "attrs.ns.net.x ~ \"*\"");
    assert_no_num(f, "values.x + 1");
    assert_no_num(f, "values");
    assert_no_num(f, "labels.vm");
    assert_no_num(f, "attrs.flag");
}

static void test_truthiness(void **state)
{
    struct fx *f = *state;
    /* A bare field as a condition: present and non-zero, true or non-empty. */
    assert_cond(f, "values.cpu_usage_pct");
    assert_cond(f, "values.neg");
    refute_cond(f, "values.zero");
    refute_cond(f, "values.nope");
    assert_cond(f, "attrs.flag");
    refute_cond(f, "attrs.off");
    assert_cond(f, "labels.vm");
    refute_cond(f, "labels.empty");
    assert_cond(f, "!values.zero");
    assert_cond(f, "!attrs.off && attrs.flag");
    assert_cond(f, "attrs.flag && values.one");
    assert_cond(f, "host");
    assert_cond(f, "ts");
    /* A literal condition in BOOL context is fine, a number is not. */
    assert_cond(f, "true");
    refute_cond(f, "false");
    err_at("5", 0, "a condition is needed here, but '5' is a number");
    err_at("-5", 0, "a condition is needed here, but '-' is a number");
    err_at("\"x\"", 0, "a condition is needed here, but \"x\" is a string");
    err_at("values.a + 1", 9, "a condition is needed here, but '+' gives a number");
    err_at("abs(values.a)", 0, "a condition is needed here, but 'abs' gives a number");
    /* A number is needed for terms: a comparison or boolean is an error,
     * a bare field is fine. */
    err_num_at("a > b", 2, "a number is needed here, but '>' gives true or false");
    err_num_at("true", 0, "a number is needed here, but 'true' is a boolean");
    err_num_at("\"5\"", 0, "a number is needed here");
    err_num_at("a ~ \"x\"", 2, "a number is needed");
    err_num_at("values.a in [1]", 9, "a number is needed");
    err_num_at("!values.a", 0, "a number is needed");
    assert_num(f, "values.two", 2);
}

/* ------------------------------------------------------------- globs, lists */

static void test_glob(void **state)
{
    struct fx *f = *state;
    assert_cond(f, "labels.cgroup ~ \"/kubepods/**\"");
    refute_cond(f, "labels.cgroup ~ \"/kubepods/*\""); /* * stops at '/' */
    assert_cond(f, "labels.cgroup ~ \"/kubepods/*/*/abc\"");
    assert_cond(f, "labels.cgroup ~ \"**/abc\"");
    assert_cond(f, "labels.cgroup ~ \"/kube*/**\"");
    refute_cond(f, "labels.cgroup ~ \"/system.slice/**\"");
    assert_cond(f, "labels.container ~ \"web-*\"");
    assert_cond(f, "labels.container ~ 'web-?'");
    refute_cond(f, "labels.container ~ \"web-??\"");
    assert_cond(f, "labels.container ~ \"web-1\"");
    assert_cond(f, "labels.container ~ \"**\"");
    assert_cond(f, "labels.empty ~ \"*\"");
    assert_cond(f, "topic ~ \"cgroup.*\"");
    assert_cond(f, "host ~ \"node?\"");
    assert_cond(f, "attrs.ns.net ~ \"net:\\\\[*]\""); /* \\[ in the string is \[ in the glob */
    assert_cond(f, "\"a*b\" ~ \"a\\\\*b\"");
    refute_cond(f, "\"axb\" ~ \"a\\\\*b\"");
    assert_cond(f, "(\"abc\" ~ (\"a*\")) && !(\"abc\" ~ \"b*\")");
    assert_cond(f, "labels.container ~ \"web-*\" && labels.cgroup ~ \"/kubepods/**\"");

    err_at("labels.x ~ 5", 11,
           "'~' needs a quoted glob pattern on its right, as in ~ \"web-*\", but '5' is a number");
    err_at("labels.x ~ labels.y", 11, "'~' needs a quoted glob pattern");
    err_at("labels.x ~ \"a\" + \"b\"", 11, "'+' needs numbers");
    err_at("values.x + 1 ~ \"a\"", 9, "'~' matches strings, but '+' gives a number");
    err_at("5 ~ \"a\"", 0, "'~' matches strings, but '5' is a number");
    err_at("labels.x ~ \"a\\\\\"", 11,
           "bad glob pattern \"a\\\\\": pattern ends with a lone backslash");
    err_at("labels.x ~ ''", 11, "pattern is empty");
}

static void test_in(void **state)
{
    struct fx *f = *state;
    assert_cond(f, "values.mem in [1, 100, 3]");
    refute_cond(f, "values.mem in [1, 2, 3]");
    assert_cond(f, "values.neg in [-3]");
    assert_cond(f, "values.half in [0.5, 1e9]");
    assert_cond(f, "values.seven - 1 in [6]"); /* + - bind tighter than in */
    assert_cond(f, "labels.vm in [\"vm0\", 'vm1']");
    refute_cond(f, "labels.vm in [\"vm\", \"vm10\", \"VM1\"]");
    assert_cond(f, "labels.empty in [\"\"]");
    assert_cond(f, "!(labels.vm in [\"x\"])");
    assert_cond(f, "3 in [1, 2, 3]");
    assert_cond(f, "topic in [\"cgroup.stats\", \"kvm.vm\"]");

    err_at("values.x in []", 12, "the list after 'in' is empty");
    err_at("values.x in [1, \"a\"]", 16, "the list mixes numbers and strings");
    err_at("values.x in [\"a\", -1]", 18, "the list mixes numbers and strings");
    err_at("values.x in [values.y]", 13,
           "holds only literal numbers or strings, but found 'values.y'");
    err_at("values.x in [1 + 1]", 15, "expected ',' or ']'");
    err_at("values.x in [1,]", 15, "holds only literal numbers or strings, but found ']'");
    err_at("values.x in [1, 2", 12, "this '[' is never closed");
    err_at("values.x in 5", 12, "'in' needs a list of literals");
    err_at("\"s\" in [1, 2]", 4,
           "\"s\" is a string, so 'in' can never find it in a list of numbers");
    err_at("true in [1]", 0, "'in' looks for a number or a string, but 'true' is a boolean");
    err_at("values.x in [-\"a\"]", 14, "holds only literal numbers or strings");
}

/* ------------------------------------------------------------- literals */

static void test_strings(void **state)
{
    struct fx *f = *state;
    assert_cond(f, "labels.q == \"a\\\"b\"");
    assert_cond(f, "labels.q == 'a\"b'");
    assert_cond(f, "'it\\'s' == \"it's\"");
    assert_cond(f, "\"\\x41\\x62\" == \"Ab\"");
    assert_cond(f, "\"\\\\\" ~ \"?\""); /* one backslash: one character */
    assert_cond(f, "\"a\\tb\" ~ \"a?b\"");
    assert_cond(f, "\"a\\nb\" != \"a\\rb\"");
    assert_cond(f, "\"tab\there\" ~ \"tab?here\""); /* a raw tab is allowed */
    assert_cond(f, "labels.utf == \"caf\xc3\xa9\"");
    assert_cond(f, "labels.utf == \"caf\\xc3\\xa9\"");
    assert_cond(f, "\"\" == ''");

    err_at("labels.x == \"abc", 12, "this string is never closed: add \" at its end");
    err_at("labels.x == 'abc", 12, "add ' at its end");
    err_at("labels.x == \"a\\qb\"", 14, "unknown escape '\\q'");
    err_at("labels.x == \"a\\*\"", 14, "a glob's \\* is written \\\\*");
    err_at("labels.x == \"\\x4\"", 13, "\\x needs two hex digits");
    err_at("labels.x == \"\\x00\"", 13, "a string cannot hold a NUL byte");
    err_at("labels.x == \"a\x01b\"", 14, "cannot hold a line break or control character");
    check_error("labels.x == \"a\nb\"", VIGIL_EXPR_BOOL, 7, 11, false, 7, 11,
                "cannot hold a line break or control character: write \\n, \\r or \\t, or close "
                "it with \" (at '\\x0a', line 1, column 15 of the expression)");
}

static void test_numbers(void **state)
{
    struct fx *f = *state;
    double x = 1;
    assert_num(f, "1e9", 1e9);
    assert_num(f, "1E3", 1000);
    assert_num(f, "2.5e-3", 0.0025);
    assert_num(f, "1e+2", 100);
    assert_num(f, ".5", 0.5);
    assert_num(f, "5.", 5);
    assert_num(f, "0.25", 0.25);
    assert_num(f, "007", 7);
    assert_num(f, "18446744073709551616", 18446744073709551616.0);
    assert_true(num(f, "-0", &x));
    assert_true(x == 0 && signbit(x));
    assert_cond(f, "-0 == 0");
    assert_cond(f, "values.zero == -0");
    assert_cond(f, ".5 == values.half");
    assert_cond(f, "values.cpu_usage_pct > 9.55e1 - 1");

    err_num_at("1e", 1, "the exponent of a number needs digits");
    err_num_at("2 + 1e+", 5, "the exponent of a number needs digits");
    err_num_at("1e999", 0, "too large");
    err_num_at("5x", 1, "expected an operator, found 'x'");
    err_num_at("1.2.3", 3, "expected an operator, found '.3'");
    err_num_at(". 5", 0, "unexpected character '.'");
}

/* ------------------------------------------------------------- paths */

static void test_envelope_paths(void **state)
{
    struct fx *f = *state;
    assert_cond(f, "topic == \"cgroup.stats\"");
    assert_cond(f, "host == \"node1\"");
    assert_cond(f, "source == \"cgroups/c1\"");
    assert_cond(f, "ts == 1700000000000000000");
    assert_cond(f, "ts > 1.6e18");
    assert_cond(f, "seq == 42");
    assert_num(f, "seq + 1", 43);
    /* Fields of a string or number do not exist. */
    refute_cond(f, "host.x == \"node1\"");
    refute_cond(f, "topic.a");
    assert_no_num(f, "ts.x");
}

static void test_deep_paths(void **state)
{
    struct fx *f = *state;
    assert_cond(f, "attrs.ns.net == \"net:[4026531993]\"");
    assert_cond(f, "attrs.ns.pid == -7");
    assert_cond(f, "attrs.ns.deep.x == 2.5");
    assert_cond(f, "attrs.ns.deep.x * 2 == 5");
    refute_cond(f, "attrs.ns.deep.y == 2.5");
    refute_cond(f, "attrs.ns.nope.x == 2.5");
    refute_cond(f, "attrs.nope.deep.x == 2.5");
    assert_cond(f, "labels.container == \"web-1\"");
    assert_cond(f, "values.cpu_usage_pct == 95.5");
    /* The envelope's maps through the root as well: values.x is the same
     * as walking body.values.x. */
    assert_cond(f, "attrs.list != \"x\" || true");
}

static void test_bin_and_extra_keys(void **state)
{
    struct fx *f = *state;
    msgpack_packer *pk = &f->pk;
    msgpack_pack_map(pk, 8);
    pk_str(pk, "ts");
    msgpack_pack_uint64(pk, 5);
    pk_str(pk, "host");
    pk_bin(pk, "binhost"); /* BIN where a string is expected */
    pk_str(pk, "source");
    pk_str(pk, "s");
    pk_str(pk, "seq");
    msgpack_pack_uint64(pk, 1);
    pk_str(pk, "labels");
    msgpack_pack_map(pk, 2);
    pk_bin(pk, "b"); /* a BIN key */
    pk_bin(pk, "bin-value");
    pk_str(pk, "s");
    pk_str(pk, "str");
    pk_str(pk, "values");
    msgpack_pack_map(pk, 2);
    pk_str(pk, "f32");
    msgpack_pack_float(pk, 1.5f);
    pk_str(pk, "i");
    msgpack_pack_int64(pk, -9);
    pk_str(pk, "extra"); /* an unknown key, kept */
    msgpack_pack_map(pk, 3);
    pk_str(pk, "k");
    msgpack_pack_uint64(pk, 1);
    pk_str(pk, "t");
    msgpack_pack_true(pk);
    pk_str(pk, "nil");
    msgpack_pack_nil(pk);
    pk_str(pk, "flag");
    msgpack_pack_false(pk);
    decode_sb(f);

    assert_cond(f, "labels.b == \"bin-value\"");
    assert_cond(f, "labels.b ~ \"bin-*\"");
    assert_cond(f, "labels.b in [\"x\", \"bin-value\"]");
    assert_cond(f, "host == \"binhost\"");
    assert_cond(f, "topic == \"t.x\"");
    assert_cond(f, "values.f32 == 1.5");
    assert_cond(f, "values.i == -9");
    assert_cond(f, "extra.k == 1");
    assert_cond(f, "extra.t == true");
    assert_cond(f, "extra.t");
    refute_cond(f, "extra.nil");
    refute_cond(f, "extra.nil == 0");
    assert_cond(f, "flag == false");
    refute_cond(f, "flag");
    refute_cond(f, "extra");
    refute_cond(f, "attrs.x == 1"); /* no attrs at all */
}

static void test_booleans(void **state)
{
    struct fx *f = *state;
    assert_cond(f, "attrs.flag == true");
    assert_cond(f, "attrs.off == false");
    assert_cond(f, "attrs.flag != false");
    assert_cond(f, "attrs.flag != attrs.off");
    assert_cond(f, "true == attrs.flag");
    refute_cond(f, "attrs.flag == 1"); /* a boolean is not a number */
    refute_cond(f, "attrs.flag != 1");
    refute_cond(f, "attrs.flag > attrs.off");
    refute_cond(f, "attrs.flag == \"true\"");
    assert_cond(f, "(values.one > 0) == attrs.flag");
    assert_cond(f, "true != false");
}

/* ------------------------------------------------------------- errors */

#define B65 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static void test_error_positions(void **state)
{
    (void)state;
    /* A plain scalar at 7:11: the caret on the token; "a >" at the end. */
    err_at("a >", 3, "expected a value after '>', found the end of the expression");
    err_at("a > ", 4, "expected a value after '>'");
    /* Quoted: the text starts one column after the quote. */
    check_error("a >", VIGIL_EXPR_BOOL, 7, 11, true, 7, 15, "after '>'");
    check_error("values.x ~ 5", VIGIL_EXPR_BOOL, 2, 5, true, 2, 17, "glob");
    err_at("1 + foo(2) > 1", 4, "unknown function 'foo'");
    err_at("(a > 1", 0, "this '(' is never closed: add ')'");
    err_at("a > (1 + (2)", 4, "this '(' is never closed");
    err_at("(a > 1 b", 7, "expected ')' or an operator, found 'b'");
    err_at("a > 1)", 5, "expected an operator, found ')': there is no '(' for it");
    err_at("a b", 2, "expected an operator, found 'b'");
    err_at("a > > 1", 4,
           "expected a value (a number, a string, a field, a function or '('), found '>'");
    err_at("", 0, "the expression is empty");
    err_at("   ", 3, "the expression is empty");
    err_at("a # b", 2, "unexpected character '#'");
    err_at("a > \x01", 4, "unexpected character '\\x01'");
    err_at("a.", 1, "a field name must follow '.'");
    err_at("a..b", 1, "a field name must follow '.'");
    err_at("\"a\" + 1 > 0", 0, "'+' needs numbers, but \"a\" is a string");
    err_at("1 - true > 0", 4, "'-' needs numbers, but 'true' is a boolean");
    err_at("-\"a\" > 0", 1, "'-' needs numbers");
    /* Columns count characters, as YAML does: é is one. */
    err_at("labels.x == \"\xc3\xa9\" &&", 18, "after '&&'");
    err_at("\xc3\xa9", 0, "unexpected character '\xc3\xa9'");
    /* Long tokens are cut in messages. */
    char buf[128];
    snprintf(buf, sizeof buf, "a > %.65s c", B65);
    err_at(buf, 70, "found 'c'");
    snprintf(buf, sizeof buf, "b %.65s", B65);
    err_at(buf, 2, "found 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb...'");
    /* No position known: none is made up. */
    check_error("a >", VIGIL_EXPR_BOOL, 0, 0, false, 0, 0, "after '>'");
    check_error("a >", VIGIL_EXPR_BOOL, 4, 0, false, 4, 0, "after '>'");
    /* Multi-line text (a block scalar): at its start, the token named. */
    check_error("values.a > 1 &&\n  values.b >\n", VIGIL_EXPR_BOOL, 7, 11, true, 7, 11,
                "expected a value after '>', found the end of the expression (at the end of "
                "the expression, line 3, column 1 of the expression)");
    check_error("values.a > 1 &&\n  foo(1)\n", VIGIL_EXPR_BOOL, 7, 11, true, 7, 11,
                "unknown function 'foo': the functions are abs, min and max (at 'foo', line 2, "
                "column 3 of the expression)");
}

static void test_limits(void **state)
{
    struct fx *f = *state;
    char buf[4096];
    /* 32 levels of nesting are fine, 33 are not. */
    strcpy(buf, "");
    for (int i = 0; i < 32; i++) {
        strcat(buf, "(");
    }
    strcat(buf, "values.one");
    for (int i = 0; i < 32; i++) {
        strcat(buf, ")");
    }
    assert_num(f, buf, 1);
    strcpy(buf, "(");
    for (int i = 0; i < 32; i++) {
        strcat(buf, "(");
    }
    strcat(buf, "1");
    err_num_at(buf, 32, "nests deeper than 32 levels");
    strcpy(buf, "");
    for (int i = 0; i < 33; i++) {
        strcat(buf, "!");
    }
    strcat(buf, "true");
    err_at(buf, 32, "nests deeper than 32 levels");
    strcpy(buf, "");
    for (int i = 0; i < 32; i++) {
        strcat(buf, "-");
    }
    strcat(buf, "1");
    assert_num(f, buf, 1);

    /* A long flat expression is fine: its stack stays small. */
    strcpy(buf, "values.one");
    for (int i = 0; i < 100; i++) {
        strcat(buf, " + values.one");
    }
    assert_num(f, buf, 101);
    /* 64 values at once are fine, 65 are not. */
    strcpy(buf, "max(values.one");
    for (int i = 1; i < 64; i++) {
        strcat(buf, ", values.two");
    }
    strcat(buf, ")");
    assert_num(f, buf, 2);
    strcpy(buf, "values.one + max(values.one");
    for (int i = 1; i < 64; i++) {
        strcat(buf, ", values.two");
    }
    strcat(buf, ")");
    err_num_at(buf, (int)(strlen(buf) - 11), "needs more than 64 values at once at 'values.two'");

    char *big = malloc(70000);
    assert_non_null(big);
    memset(big, ' ', 69999);
    big[69999] = '\0';
    big[0] = '1';
    err_num_at(big, 0, "longer than 65536 bytes");
    free(big);
}

static void test_conf_nodes(void **state)
{
    (void)state;
    static const char yaml[] = "rules:\n"
                               "  - plain: values.x >\n"
                               "    quoted: \"values.x > 1 &&\"\n"
                               "    single: 'min(1) > 0'\n"
                               "    block: |\n"
                               "      values.x > 1 &&\n"
                               "        foo(2)\n"
                               "    map: {a: 1}\n"
                               "    good: labels.vm == \"x\"\n";
    struct vigil_diag d;
    vigil_diag_init(&d);
    struct vigil_conf *root = vigil_conf_parse(yaml, sizeof yaml - 1, "r.yaml", &d);
    assert_non_null(root);
    assert_int_equal(d.count, 0);
    const struct vigil_conf *rule = vigil_conf_at(vigil_conf_get(root, "rules"), 0, NULL);
    assert_non_null(rule);

    assert_null(vigil_expr_compile_node(vigil_conf_get(rule, "plain"), VIGIL_EXPR_BOOL, &d));
    assert_null(vigil_expr_compile_node(vigil_conf_get(rule, "quoted"), VIGIL_EXPR_BOOL, &d));
    assert_null(vigil_expr_compile_node(vigil_conf_get(rule, "single"), VIGIL_EXPR_BOOL, &d));
    assert_null(vigil_expr_compile_node(vigil_conf_get(rule, "block"), VIGIL_EXPR_BOOL, &d));
    assert_null(vigil_expr_compile_node(vigil_conf_get(rule, "map"), VIGIL_EXPR_BOOL, &d));
    assert_null(vigil_expr_compile_node(NULL, VIGIL_EXPR_BOOL, &d));
    struct vigil_expr *e =
        vigil_expr_compile_node(vigil_conf_get(rule, "good"), VIGIL_EXPR_BOOL, &d);
    assert_non_null(e);
    vigil_expr_free(e);
    assert_int_equal(d.n, 6);
    assert_string_equal(d.msgs[0],
                        "r.yaml:2:22: expected a value after '>', found the end of the expression");
    assert_string_equal(
        d.msgs[1], "r.yaml:3:29: expected a value after '&&', found the end of the expression");
    assert_string_equal(d.msgs[2], "r.yaml:4:14: min takes two or more arguments, not 1");
    assert_string_equal(d.msgs[3],
                        "r.yaml:5:12: unknown function 'foo': the functions are abs, min "
                        "and max (at 'foo', line 2, column 3 of the expression)");
    assert_string_equal(d.msgs[4], "r.yaml:8:10: an expression must be text, not a map");
    assert_string_equal(d.msgs[5], "<config>: an expression is missing");
    vigil_diag_fini(&d);
    vigil_conf_free(root);
}

/* ------------------------------------------------------------- paths list */

static void test_path_list(void **state)
{
    (void)state;
    struct vigil_expr *e = compile_ok("values.a > 1 && labels.b == \"x\" || values.a < 0 && "
                                      "host == \"h\" && attrs.ns.net ~ \"*\" || min(values.a, "
                                      "ts) > 0 || labels.b",
                                      VIGIL_EXPR_BOOL);
    assert_int_equal(vigil_expr_npaths(e), 5);
    assert_string_equal(vigil_expr_path(e, 0), "values.a");
    assert_string_equal(vigil_expr_path(e, 1), "labels.b");
    assert_string_equal(vigil_expr_path(e, 2), "host");
    assert_string_equal(vigil_expr_path(e, 3), "attrs.ns.net");
    assert_string_equal(vigil_expr_path(e, 4), "ts");
    assert_null(vigil_expr_path(e, 5));
    vigil_expr_free(e);

    e = compile_ok("1 + 2 * abs(-3)", VIGIL_EXPR_NUMBER);
    assert_int_equal(vigil_expr_npaths(e), 0);
    assert_null(vigil_expr_path(e, 0));
    vigil_expr_free(e);

    assert_int_equal(vigil_expr_npaths(NULL), 0);
    assert_null(vigil_expr_path(NULL, 0));
    vigil_expr_free(NULL);
}

/* The compiled form keeps no state: one expression, several events, and
 * the same result as evaluating again. */
static void test_reuse(void **state)
{
    struct fx *f = *state;
    struct vigil_expr *e =
        compile_ok("values.cpu_usage_pct > 90 && labels.container ~ \"web-*\"", VIGIL_EXPR_BOOL);
    assert_true(vigil_expr_true(e, &f->v));
    assert_true(vigil_expr_true(e, &f->v));
    assert_false(vigil_expr_true(NULL, &f->v));
    /* No diag: the error is only the NULL result. */
    assert_null(vigil_expr_compile("a >", VIGIL_EXPR_BOOL, "r.yaml", 1, 1, false, NULL));
    assert_null(vigil_expr_compile(NULL, VIGIL_EXPR_BOOL, NULL, 0, 0, false, NULL));
    assert_false(vigil_expr_true(e, NULL));
    double x;
    assert_false(vigil_expr_number(e, &f->v, &x)); /* a condition is not a number */

    vigil_event_begin(&f->b, "cgroup.stats");
    vigil_event_add_label(&f->b, "container", "db-1");
    vigil_event_add_value(&f->b, "cpu_usage_pct", 99);
    const char *body, *reason;
    size_t len;
    assert_int_equal(vigil_event_finish(&f->b, "h", "s", 1, &body, &len), 0);
    msgpack_zone_clear(&f->zone);
    assert_int_equal(vigil_event_decode(&f->v, "x", 1, body, len, MAX_BODY, &f->zone, &reason), 0);
    assert_false(vigil_expr_true(e, &f->v));
    vigil_expr_free(e);
}

/* ------------------------------------------------------------- benchmark */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench(void)
{
    static const char *const exprs[] = {
        "values.cpu_usage_pct > 90 && labels.container ~ \"web-*\"",
        "values.cpu_usage_pct > 99 && labels.container ~ \"web-*\"", /* first test false */
        ("labels.cgroup ~ \"/kubepods/**\" && (values.mem_rss_bytes / values.mem_limit_bytes > "
         "0.9 || attrs.ns.net in [\"a\", \"b\"])"),
        "0.5 * values.steal_pct + 0.3 * values.exits_per_s / 1000 + 0.2 * values.mem_overhead_pct",
    };
    struct fx f;
    memset(&f, 0, sizeof f);
    vigil_event_builder_init(&f.b);
    msgpack_zone_init(&f.zone, 4096);
    /* A realistic cgroup.stats event: 6 labels, 12 values, a small attrs. */
    vigil_event_begin(&f.b, "cgroup.stats");
    vigil_event_add_label(&f.b, "cgroup", "/kubepods/burstable/pod1234/0123456789abcdef");
    vigil_event_add_label(&f.b, "pod", "web-7d9f8-xk2p1");
    vigil_event_add_label(&f.b, "namespace", "default");
    vigil_event_add_label(&f.b, "node", "node-17");
    vigil_event_add_label(&f.b, "image", "registry.local/web:1.4.2");
    vigil_event_add_label(&f.b, "container", "web-frontend");
    static const char *const vals[] = {"cpu_user_ns",     "cpu_system_ns", "cpu_throttled_ns",
                                       "cpu_nr_periods",  "mem_rss_bytes", "mem_cache_bytes",
                                       "mem_limit_bytes", "io_read_bytes", "io_write_bytes",
                                       "steal_pct",       "exits_per_s",   "mem_overhead_pct"};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        vigil_event_add_value(&f.b, vals[i], 1000.0 * (double)(i + 1));
    }
    vigil_event_add_value(&f.b, "cpu_usage_pct", 95.5); /* last: the worst case for the scan */
    vigil_event_attr_map_begin(&f.b, "ns");
    vigil_event_add_attr_str(&f.b, "net", "net:[4026531993]");
    vigil_event_attr_end(&f.b);
    const char *body, *reason;
    size_t len;
    if (vigil_event_finish(&f.b, "node-17", "cgroups/c1", 1, &body, &len) != 0 ||
        vigil_event_decode(&f.v, "cgroup.stats", 12, body, len, MAX_BODY, &f.zone, &reason) != 0) {
        fprintf(stderr, "bench: cannot build the event\n");
        return 1;
    }
    for (size_t k = 0; k < sizeof exprs / sizeof exprs[0]; k++) {
        struct vigil_diag d;
        vigil_diag_init(&d);
        struct vigil_expr *e = vigil_expr_compile(
            exprs[k], k == 3 ? VIGIL_EXPR_NUMBER : VIGIL_EXPR_BOOL, "b", 1, 1, false, &d);
        if (!e) {
            vigil_diag_print(&d, stderr);
            return 1;
        }
        vigil_diag_fini(&d);
        const long n = 20000000;
        volatile unsigned sink = 0;
        double x = 0, t0 = now_s();
        for (long i = 0; i < n; i++) {
            if (k == 3) {
                sink += vigil_expr_number(e, &f.v, &x);
            } else {
                sink += vigil_expr_true(e, &f.v);
            }
        }
        double dt = now_s() - t0;
        printf("%6.1f ns/eval  %5.1f M eval/s  result %u/%ld  %s\n", dt * 1e9 / (double)n,
               (double)n / dt / 1e6, sink, n, exprs[k]);
        vigil_expr_free(e);
    }
    vigil_event_builder_fini(&f.b);
    msgpack_zone_destroy(&f.zone);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
        return bench();
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_comparisons_do_not_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arithmetic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_functions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_comparison_operators, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truthiness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_glob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_envelope_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deep_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bin_and_extra_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_booleans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_positions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conf_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for pipeline/glob.c, the one pattern syntax of vigil (cgroup
 * `match`, policy subjects, isolation `ignore`, the `~` operator): literals,
 * `*` within a path segment, `**` across segments, `?`, backslash escapes,
 * explicit lengths (no NUL termination), vigil_glob_valid, `?` on a
 * multi-byte character, and bounded time on long hostile subjects.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "glob.h"

/* Every case is matched twice, by the matcher and through a prepared
 * pattern (the shapes' shortcuts), which must agree. */
static bool m(const char *pattern, const char *s)
{
    struct vigil_glob g;
    vigil_glob_prepare(&g, pattern);
    bool plain = vigil_glob_match(pattern, s, strlen(s));
    if (vigil_glob_test(&g, s, strlen(s)) != plain) {
        fail_msg("'%s' against '%s': prepared says %d, the matcher %d", pattern, s, !plain, plain);
    }
    return plain;
}

/* Macros rather than functions so that a failure names the test's line. */
#define yes(p, s)                                                                                  \
    do {                                                                                           \
        if (!m((p), (s))) {                                                                        \
            fail_msg("'%s' should match '%s'", (p), (s));                                          \
        }                                                                                          \
    } while (0)
#define no(p, s)                                                                                   \
    do {                                                                                           \
        if (m((p), (s))) {                                                                         \
            fail_msg("'%s' should not match '%s'", (p), (s));                                      \
        }                                                                                          \
    } while (0)

static void test_literal(void **state)
{
    (void)state;
    yes("abc", "abc");
    no("abc", "abd");
    no("abc", "ab");
    no("abc", "abcd");
    no("abc", "");
    yes("/sys/fs/cgroup", "/sys/fs/cgroup");
    no("ABC", "abc"); /* case matters */
    yes("caf\xc3\xa9", "caf\xc3\xa9");
    /* The empty pattern matches only the empty string (valid() refuses it
     * in config). */
    yes("", "");
    no("", "a");
    /* Characters with a meaning elsewhere are plain here. */
    yes("[a]{b}.+^$|()", "[a]{b}.+^$|()");
}

static void test_star(void **state)
{
    (void)state;
    yes("*", "");
    yes("*", "anything-at-all");
    no("*", "a/b");
    no("*", "/");
    yes("web-*", "web-");
    yes("web-*", "web-frontend");
    no("web-*", "web");
    no("web-*", "web-a/b");
    no("web-*", "xweb-a");
    yes("*.scope", "docker-0123.scope");
    no("*.scope", "docker-0123.scope.x");
    no("*.scope", "system.slice/docker-0123.scope");
    yes("a*b*c", "abc");
    yes("a*b*c", "aXXbYYc");
    yes("a*b*c", "abbbc");
    no("a*b*c", "aXXbYY");
    no("a*b*c", "aX/bYc");
    yes("*a*", "banana");
    yes("/kubepods/*/*", "/kubepods/burstable/pod1");
    no("/kubepods/*/*", "/kubepods/burstable");
    no("/kubepods/*/*", "/kubepods/burstable/pod1/c");
    yes("/kubepods/*/", "/kubepods/x/");
    /* A star may match an empty segment. */
    yes("/a/*/b", "/a//b");
    /* Backtracking: the first place that fits is not always the one. */
    yes("*ab", "aab");
    yes("*aab", "aaab");
    yes("a*a", "aa");
    no("a*a", "a");
}

static void test_double_star(void **state)
{
    (void)state;
    yes("**", "");
    yes("**", "a");
    yes("**", "/a/b/c");
    yes("/kubepods/**", "/kubepods/");
    yes("/kubepods/**", "/kubepods/burstable");
    yes("/kubepods/**", "/kubepods/burstable/pod1/abc");
    no("/kubepods/**", "/kubepods"); /* "below /kubepods": the slash is literal */
    no("/kubepods/**", "/kubepodsX/a");
    no("/kubepods/**", "/system.slice/kubepods/a");
    yes("**/abc", "/kubepods/burstable/abc");
    yes("**/abc", "/abc");
    no("**/abc", "abc"); /* ** then a literal '/': at least one slash */
    no("**/abc", "/kubepods/abcd");
    yes("/a/**/b", "/a/x/b");
    yes("/a/**/b", "/a/x/y/z/b");
    yes("/a/**/b", "/a//b");
    no("/a/**/b", "/a/b"); /* ** is not "zero or more segments" */
    yes("**.scope", "/system.slice/docker-1.scope");
    no("**.scope", "/system.slice/docker-1.scopes");
    yes("**docker-*.scope", "/system.slice/docker-1.scope");
    no("**docker-*.scope", "/system.slice/docker-1/x.scope");
    yes("/**/*.scope", "/a/b/c.scope");
    no("/**/*.scope", "/a/b/c.scope/d");
    /* Three or more stars are two. */
    yes("***", "/a/b");
    yes("a***b", "a/x/y/b");
    yes("a****", "a/b");
    /* ** then * in one pattern. */
    yes("**/pod*/*", "/kubepods/burstable/pod1/c");
    no("**/pod*/*", "/kubepods/burstable/pod1/c/d/pod");
    yes("**/pod*/**", "/kubepods/burstable/pod1/c/d");
}

static void test_question(void **state)
{
    (void)state;
    yes("?", "a");
    no("?", "");
    no("?", "ab");
    no("?", "/");
    yes("web-?", "web-1");
    no("web-?", "web-12");
    yes("a?c", "abc");
    no("a?c", "a/c");
    yes("??", "ab");
    yes("*?", "a");
    no("*?", "");
    yes("?*", "abc");
    yes("/kubepods/????", "/kubepods/abcd");
    no("/kubepods/????", "/kubepods/ab/d");
}

static void test_escapes(void **state)
{
    (void)state;
    yes("\\*", "*");
    no("\\*", "a");
    no("\\*", "");
    yes("a\\*b", "a*b");
    no("a\\*b", "axb");
    yes("\\?", "?");
    no("\\?", "a");
    yes("\\\\", "\\");
    no("\\\\", "\\\\");
    yes("\\a", "a"); /* any character may be escaped */
    yes("net:\\[*]", "net:[4026531993]");
    yes("\\**", "*abc"); /* a literal star, then a star */
    no("\\**", "abc");
    no("\\**", "*a/b");
    yes("\\*\\*", "**");
    no("\\*\\*", "ab");
    yes("**\\*", "/a/b*");
    /* A lone trailing backslash (refused by valid()) matches itself. */
    yes("a\\", "a\\");
    no("a\\", "a");
}

/* The subject is s[0..len): not NUL-terminated, may hold NUL bytes. */
static void test_lengths(void **state)
{
    (void)state;
    assert_true(vigil_glob_match("abc", "abcdef", 3));
    assert_false(vigil_glob_match("abc", "abcdef", 4));
    assert_true(vigil_glob_match("a*", "abc/def", 3));
    assert_false(vigil_glob_match("a*", "abc/def", 4));
    assert_true(vigil_glob_match("*", "whatever", 0));
    assert_true(vigil_glob_match("", "whatever", 0));
    assert_false(vigil_glob_match("?", "whatever", 0));
    assert_true(vigil_glob_match("a?c", "a\0c", 3));
    assert_true(vigil_glob_match("a*c", "a\0\0c", 4));
    assert_true(vigil_glob_match("**", "a\0/b", 4));
    /* No read past len: the byte after is a '/', which * must not see. */
    char buf[4] = {'a', 'b', '/', 'c'};
    assert_true(vigil_glob_match("a*", buf, 2));
    assert_true(vigil_glob_match("a?", buf, 2));
}

static void test_shapes(void **state)
{
    (void)state;
    static const struct {
        const char *pattern;
        size_t lit;
        enum vigil_glob_shape shape;
    } cases[] = {
        {"web", 3, VIGIL_GLOB_EXACT},   {"web-*", 4, VIGIL_GLOB_STAR},
        {"/srv/**", 5, VIGIL_GLOB_ANY}, {"***", 0, VIGIL_GLOB_ANY},
        {"*", 0, VIGIL_GLOB_STAR},      {"a*b", 1, VIGIL_GLOB_OTHER},
        {"a?", 1, VIGIL_GLOB_OTHER},    {"a\\*", 1, VIGIL_GLOB_OTHER},
        {"x/*/y", 2, VIGIL_GLOB_OTHER}, {"a**b", 1, VIGIL_GLOB_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t lit = 99;
        assert_int_equal(vigil_glob_shape(cases[i].pattern, &lit), cases[i].shape);
        assert_int_equal(lit, cases[i].lit);
    }
    yes("guest:*", "guest:g1");
    no("guest:*", "guest:g/1");
    no("guest:*", "user:u1");
    yes("/srv/**", "/srv/data/1");
    no("/srv/**", "/srv");
    yes("read", "read");
    no("read", "reads");
}

static void test_valid(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_true(vigil_glob_valid("abc", &why));
    assert_true(vigil_glob_valid("*", &why));
    assert_true(vigil_glob_valid("**", &why));
    assert_true(vigil_glob_valid("/kubepods/**", &why));
    assert_true(vigil_glob_valid("\\*", &why));
    assert_true(vigil_glob_valid("a\\\\", &why));
    assert_true(vigil_glob_valid("?", &why));
    why = NULL;
    assert_false(vigil_glob_valid("", &why));
    assert_string_equal(why, "pattern is empty");
    why = NULL;
    assert_false(vigil_glob_valid("a\\", &why));
    assert_string_equal(why, "pattern ends with a lone backslash");
    why = NULL;
    assert_false(vigil_glob_valid("\\", &why));
    assert_string_equal(why, "pattern ends with a lone backslash");
    why = NULL;
    assert_false(vigil_glob_valid("a\\\\\\", &why));
    assert_non_null(why);
}

/* glob.h: "? one character except '/'". glob.c matches one byte, so `?`
 * never matches a multi-byte UTF-8 character and `??` matches one. */
static void test_question_is_one_character(void **state)
{
    (void)state;

    yes("caf?", "caf\xc3\xa9");
    no("caf??", "caf\xc3\xa9");
    yes("?", "\xe2\x82\xac");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Patterns come from config but subjects from the bus, where anyone may
 * publish: matching must stay fast on a long subject. glob.c backtracks
 * over every split, O(n^k) for k stars: "*web*prod*" on a 64 KiB label
 * takes 2 s, "*a*a*a*b" on 300 bytes of "a" over 2 minutes, and this test
 * did not finish in 10 minutes. */
static void test_bounded_time(void **state)
{
    (void)state;

    size_t n = 64 * 1024;
    char *s = malloc(n);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) {
        s[i] = "web"[i % 3];
    }
    double t0 = now_s();
    assert_false(vigil_glob_match("*web*prod*", s, n));
    assert_false(vigil_glob_match("**web**prod**", s, n));
    memset(s, 'a', 64);
    assert_false(vigil_glob_match("*a*a*a*a*a*a*a*a*a*a*b", s, 64));
    free(s);
    assert_true(now_s() - t0 < 0.05);
}

int main(void)
{
    /* One test per line. */
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal),
        cmocka_unit_test(test_star),
        cmocka_unit_test(test_double_star),
        cmocka_unit_test(test_question),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_question_is_one_character),
        cmocka_unit_test(test_bounded_time),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}

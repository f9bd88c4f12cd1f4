/* Glob patterns, one syntax everywhere an operator writes one: cgroup
 * `match`, policy subjects/actions/resources, isolation `ignore`, and the
 * `~` operator of rule expressions.
 *   *   any run of characters except '/'
 *   **  any run of characters, '/' included (so /kubepods/ followed by **
 *       matches every cgroup below /kubepods, and ** alone matches all)
 *   ?   one character except '/'
 *   \x  the character x itself
 * Everything else matches itself. No allocation; safe from any thread.
 */
#ifndef VIGIL_GLOB_H
#define VIGIL_GLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* True when the whole of s[0..len) matches the whole pattern. */
bool vigil_glob_match(const char *pattern, const char *s, size_t len);

/* A pattern is mostly a literal prefix and then nothing, "*" or "**"
 * ("web-*", "/srv/" followed by "**"): those shapes, found once when the
 * pattern is read, need no call to the matcher per text. */
enum vigil_glob_shape { VIGIL_GLOB_EXACT, VIGIL_GLOB_STAR, VIGIL_GLOB_ANY, VIGIL_GLOB_OTHER };

/* The shape of the pattern after its literal prefix, whose length goes to
 * *lit. */
enum vigil_glob_shape vigil_glob_shape(const char *pattern, size_t *lit);

/* A pattern with its shape, for matching many texts against it. */
struct vigil_glob {
    const char *pattern; /* the caller's, NUL-terminated: it must outlive this */
    size_t lit;
    enum vigil_glob_shape shape;
};

static inline void vigil_glob_prepare(struct vigil_glob *g, const char *pattern)
{
    g->pattern = pattern;
    g->shape = vigil_glob_shape(pattern, &g->lit);
}

/* Whether s[0..len), the text after the literal prefix, matches `rest`,
 * the pattern after it, whose shape is `shape`. */
static inline bool vigil_glob_rest(enum vigil_glob_shape shape, const char *rest, const char *s,
                                   size_t len)
{
    switch (shape) {
    case VIGIL_GLOB_EXACT:
        return len == 0;
    case VIGIL_GLOB_STAR: /* the rest is "*": no '/' left */
        return !memchr(s, '/', len);
    case VIGIL_GLOB_ANY: /* the rest is "**" or more stars */
        return true;
    default:
        return vigil_glob_match(rest, s, len);
    }
}

/* vigil_glob_match(g->pattern, s, len), without calling the matcher for
 * the shapes above. */
static inline bool vigil_glob_test(const struct vigil_glob *g, const char *s, size_t len)
{
    size_t n = g->lit;
    return len >= n && memcmp(s, g->pattern, n) == 0 &&
           vigil_glob_rest(g->shape, g->pattern + n, s + n, len - n);
}

/* True when the pattern is well formed (no trailing lone backslash), for
 * config checks; *why gets a static reason otherwise. */
bool vigil_glob_valid(const char *pattern, const char **why);

#endif

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

/* True when the whole of s[0..len) matches the whole pattern. */
bool vigil_glob_match(const char *pattern, const char *s, size_t len);

/* True when the pattern is well formed (no trailing lone backslash), for
 * config checks; *why gets a static reason otherwise. */
bool vigil_glob_valid(const char *pattern, const char **why);

#endif

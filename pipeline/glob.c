/* Glob matching (see glob.h). Recursive only at `**` and `*`, and a `*`
 * never looks past the next '/', so real patterns (a few stars over paths
 * and names) stay cheap; there is no allocation.
 */
#include "glob.h"

static bool match(const char *p, const char *s, const char *end)
{
    while (*p) {
        if (p[0] == '*' && p[1] == '*') {
            while (*p == '*') {
                p++; /* "***" is "**" */
            }
            if (!*p) {
                return true;
            }
            for (const char *t = s; t <= end; t++) {
                if (match(p, t, end)) {
                    return true;
                }
            }
            return false;
        }
        if (*p == '*') {
            p++;
            /* Try every split within the current path segment. */
            for (const char *t = s;; t++) {
                if (match(p, t, end)) {
                    return true;
                }
                if (t == end || *t == '/') {
                    return false;
                }
            }
        }
        if (s == end) {
            return false;
        }
        if (*p == '?') {
            if (*s == '/') {
                return false;
            }
        } else {
            if (*p == '\\' && p[1]) {
                p++;
            }
            if (*p != *s) {
                return false;
            }
        }
        p++;
        s++;
    }
    return s == end;
}

bool vigil_glob_match(const char *pattern, const char *s, size_t len)
{
    return match(pattern, s, s + len);
}

bool vigil_glob_valid(const char *pattern, const char **why)
{
    for (const char *p = pattern; *p; p++) {
        if (*p == '\\') {
            if (!p[1]) {
                *why = "pattern ends with a lone backslash";
                return false;
            }
            p++;
        }
    }
    if (!*pattern) {
        *why = "pattern is empty";
        return false;
    }
    return true;
}

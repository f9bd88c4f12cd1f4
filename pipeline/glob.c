/* Glob matching (see glob.h), after git's wildmatch: a star tries its
 * splits left to right, and a failure that no later split of an outer star
 * could repair (the text ran out, or a single star met a '/') aborts those
 * outer retries too. That keeps matching polynomial: patterns come from
 * config, but the text comes from whoever publishes an event. No allocation.
 */
#include "glob.h"

#include <string.h>

#include "utf8.h"

enum { MATCH = 0, NOMATCH = 1, ABORT_ALL = -1, ABORT_TO_STARSTAR = -2 };

/* Bytes of the character at s: a whole UTF-8 sequence, or one byte. */
static size_t char_len(const char *s, const char *end)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = *u < 0x80 ? 1 : vigil_utf8_seq_len(u, (size_t)(end - s));
    return n ? n : 1;
}

static bool special(char c)
{
    return c == '*' || c == '?' || c == '\\';
}

static int dowild(const char *p, const char *s, const char *end)
{
    for (; *p; p++) {
        if (s == end && *p != '*') {
            return ABORT_ALL; /* a shorter text (an outer star's later split) fails too */
        }
        switch (*p) {
        case '\\':
            if (p[1]) {
                p++;
            }
            if (*s != *p) {
                return NOMATCH;
            }
            s++;
            break;
        case '?':
            if (*s == '/') {
                return NOMATCH;
            }
            s += char_len(s, end);
            break;
        case '*': {
            bool match_slash = p[1] == '*';
            while (*p == '*') {
                p++;
            }
            if (!*p) {
                /* A trailing ** matches the rest; a trailing * only if no '/' is left. */
                if (!match_slash && memchr(s, '/', (size_t)(end - s))) {
                    return ABORT_TO_STARSTAR;
                }
                return MATCH;
            }
            for (; s < end; s++) {
                if (!special(*p)) {
                    /* A literal follows: what comes before it belongs to the star. */
                    while (s < end && *s != *p && (match_slash || *s != '/')) {
                        s++;
                    }
                    if (s == end) {
                        return ABORT_ALL;
                    }
                    if (*s != *p) {
                        return ABORT_TO_STARSTAR; /* a single star met '/' */
                    }
                }
                int r = dowild(p, s, end);
                if (r != NOMATCH) {
                    if (!match_slash || r != ABORT_TO_STARSTAR) {
                        return r;
                    }
                } else if (!match_slash && *s == '/') {
                    return ABORT_TO_STARSTAR;
                }
            }
            return ABORT_ALL;
        }
        default:
            if (*s != *p) {
                return NOMATCH;
            }
            s++;
            break;
        }
    }
    return s == end ? MATCH : NOMATCH;
}

bool vigil_glob_match(const char *pattern, const char *s, size_t len)
{
    return dowild(pattern, s, s + len) == MATCH;
}

enum vigil_glob_shape vigil_glob_shape(const char *pattern, size_t *lit)
{
    size_t n = strcspn(pattern, "*?\\"), stars = strspn(pattern + n, "*");
    *lit = n;
    return pattern[n] == '\0'                         ? VIGIL_GLOB_EXACT
           : stars == 1 && pattern[n + 1] == '\0'     ? VIGIL_GLOB_STAR
           : stars >= 2 && pattern[n + stars] == '\0' ? VIGIL_GLOB_ANY
                                                      : VIGIL_GLOB_OTHER;
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

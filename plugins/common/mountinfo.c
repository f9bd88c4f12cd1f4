/* The mountinfo parser (mountinfo.h): one line at a time, in place, skipping
 * what is malformed. The format is proc(5)'s; fields are separated by single
 * spaces, and spaces inside paths are escaped (\040).
 */
#include <string.h>

#include "mountinfo.h"

/* Undoes mountinfo's octal escapes (\040 space, \011 tab, \012 newline,
 * \134 backslash) in place; returns the new length. */
static size_t unescape(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* Splits the next space-separated field off *p (NUL-terminating it); NULL
 * at the end of the line. */
static char *next_field(char **p)
{
    char *f = *p;
    if (!f || !*f) {
        return NULL;
    }
    char *sp = strchr(f, ' ');
    if (sp) {
        *sp = '\0';
        *p = sp + 1;
    } else {
        *p = f + strlen(f);
    }
    return f;
}

/* An unsigned decimal at the start of s, followed by `end` (a separator or
 * '\0'); *after points at that character. False for anything else. */
static bool number(const char *s, char end, const char **after, uint64_t *out)
{
    uint64_t v = 0;
    const char *c = s;
    while (*c >= '0' && *c <= '9') {
        v = v * 10 + (uint64_t)(*c - '0');
        c++;
    }
    if (c == s || *c != end) {
        return false;
    }
    *out = v;
    if (after) {
        *after = c;
    }
    return true;
}

/* Fills m from one line (NUL-terminated, no newline); false when malformed. */
static bool parse_line(char *line, struct vigil_mountinfo *m)
{
    char *p = line;
    const char *id = next_field(&p);
    const char *parent_id = next_field(&p);
    const char *dev = next_field(&p);
    char *root = next_field(&p);
    char *point = next_field(&p);
    char *opts = next_field(&p);
    char *f;
    while ((f = next_field(&p)) && strcmp(f, "-") != 0) {
        /* optional fields: shared:N, master:N, ... */
    }
    char *fstype = next_field(&p);
    char *source = next_field(&p);
    char *super_opts = next_field(&p);
    uint64_t maj, min;
    const char *colon;
    /* f, the "-", comes after id ... opts: with it, those are all there. */
    if (!f || !fstype || !source || !number(id, '\0', NULL, &m->id) ||
        !number(parent_id, '\0', NULL, &m->parent_id) || !number(dev, ':', &colon, &maj) ||
        !number(colon + 1, '\0', NULL, &min)) {
        return false;
    }
    m->major = (uint32_t)maj;
    m->minor = (uint32_t)min;
    unescape(root);
    m->root = root;
    m->point_len = unescape(point);
    m->point = point;
    m->opts = opts;
    m->fstype = fstype;
    unescape(source);
    m->source = source;
    m->super_opts = super_opts ? super_opts : p; /* p: the empty end of the line */
    return true;
}

bool vigil_mountinfo_next(char **cursor, struct vigil_mountinfo *m)
{
    for (char *line = *cursor; line && *line;) {
        char *eol = strchr(line, '\n');
        if (eol) {
            *eol = '\0';
        }
        char *next = eol ? eol + 1 : line + strlen(line);
        if (parse_line(line, m)) {
            *cursor = next;
            return true;
        }
        line = next;
    }
    return false;
}

bool vigil_mountinfo_has_option(const char *opts, const char *opt)
{
    size_t n = strlen(opt);
    for (const char *p = opts; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, opt, n) == 0) {
            return true;
        }
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

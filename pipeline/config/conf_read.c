/* Reading config nodes: typed readers (int, double, bool, duration, size)
 * and the check of a plugin instance's keys against its option table, with
 * defaults filled in. Used by the daemon's schema and, through the plugin
 * API, by every plugin.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "conf_internal.h"
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <yaml.h>

/* ---- Readers ------------------------------------------------------------------ */

const struct vigil_conf *vigil_conf_get(const struct vigil_conf *map, const char *key)
{
    if (!map || !key || map->kind != VIGIL_CONF_MAP) {
        return NULL;
    }
    for (size_t i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i], key) == 0) {
            return map->items[i];
        }
    }
    return NULL;
}

int vigil_conf_string(const struct vigil_conf *n, const char **out)
{
    if (!n) {
        return VIGIL_ENOTFOUND;
    }
    if (n->kind != VIGIL_CONF_SCALAR) {
        return VIGIL_ETYPE;
    }
    *out = n->value;
    return 0;
}

static int digit_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return 99;
}

static int parse_int(const char *s, int64_t *out)
{
    bool neg = false;
    unsigned base = 10;
    uint64_t v = 0;

    if (*s == '-' || *s == '+') {
        neg = *s++ == '-';
    }
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (*s == '\0') {
        return VIGIL_ETYPE;
    }
    for (; *s != '\0'; s++) {
        unsigned dv = (unsigned)digit_value(*s);
        if (dv >= base) {
            return VIGIL_ETYPE;
        }
        if (v > (UINT64_MAX - dv) / base) {
            return VIGIL_ETYPE;
        }
        v = v * base + dv;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1) {
            return VIGIL_ETYPE;
        }
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > INT64_MAX) {
            return VIGIL_ETYPE;
        }
        *out = (int64_t)v;
    }
    return 0;
}

int vigil_conf_int(const struct vigil_conf *n, int64_t *out)
{
    if (!n) {
        return VIGIL_ENOTFOUND;
    }
    if (n->kind != VIGIL_CONF_SCALAR || n->quoted) {
        return VIGIL_ETYPE;
    }
    return parse_int(n->value, out);
}

int vigil_conf_double(const struct vigil_conf *n, double *out)
{
    if (!n) {
        return VIGIL_ENOTFOUND;
    }
    if (n->kind != VIGIL_CONF_SCALAR || n->quoted) {
        return VIGIL_ETYPE;
    }
    const char *s = n->value;
    /* strtod would skip leading blanks and accept "inf" and "nan". */
    if (*s == '\0' || !(*s == '-' || *s == '+' || *s == '.' || (*s >= '0' && *s <= '9'))) {
        return VIGIL_ETYPE;
    }
    char *end;
    double v = strtod(s, &end);
    if (*end != '\0' || !isfinite(v)) {
        return VIGIL_ETYPE;
    }
    *out = v;
    return 0;
}

int vigil_conf_bool(const struct vigil_conf *n, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};

    if (!n) {
        return VIGIL_ENOTFOUND;
    }
    if (n->kind != VIGIL_CONF_SCALAR || n->quoted) {
        return VIGIL_ETYPE;
    }
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(n->value, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(n->value, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return VIGIL_ETYPE;
}

/* "12", "1.5", ".5", "3.": a whole part (exact) and a fraction in [0, 1).
 * Returns the end of the number, or NULL if there is none or it overflows. */
static const char *parse_decimal(const char *s, uint64_t *whole, double *frac, bool *has_frac)
{
    bool digits = false;
    uint64_t w = 0;
    double f = 0, scale = 0.1;

    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned dv = (unsigned)(*s - '0');
        if (w > (UINT64_MAX - dv) / 10) {
            return NULL;
        }
        w = w * 10 + dv;
        digits = true;
    }
    *has_frac = false;
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++) {
            f += (*s - '0') * scale;
            scale /= 10;
            digits = true;
            *has_frac = true;
        }
    }
    if (!digits) {
        return NULL;
    }
    *whole = w;
    *frac = f;
    return s;
}

struct unit {
    const char *name;
    uint64_t mult;
};

/* whole.frac × the unit named by `rest`, rounded to the nearest integer. */
static int scale_by_unit(uint64_t whole, double frac, const char *rest, const struct unit *units,
                         size_t nunits, uint64_t *out)
{
    for (size_t i = 0; i < nunits; i++) {
        if (strcmp(rest, units[i].name) != 0) {
            continue;
        }
        uint64_t m = units[i].mult;
        if (m != 0 && whole > UINT64_MAX / m) {
            return VIGIL_ETYPE;
        }
        /* frac × m < m <= 2^50, well inside a double's exact range. */
        uint64_t part = (uint64_t)(frac * (double)m + 0.5);
        if (whole * m > UINT64_MAX - part) {
            return VIGIL_ETYPE;
        }
        *out = whole * m + part;
        return 0;
    }
    return VIGIL_ETYPE;
}

static const char *skip_blanks(const char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    return s;
}

int vigil_parse_duration(const char *s, uint64_t *out_ns)
{
    static const struct unit units[] = {
        {"ns", 1},
        {"us", 1000},
        {"ms", 1000000},
        {"s", NS_PER_S},
        {"m", 60 * NS_PER_S},
        {"h", 3600 * NS_PER_S},
        {"d", 86400 * NS_PER_S},
    };
    uint64_t whole;
    double frac;
    bool has_frac;

    if (!s) {
        return VIGIL_ENOTFOUND;
    }
    const char *p = parse_decimal(s, &whole, &frac, &has_frac);
    if (!p) {
        return VIGIL_ETYPE;
    }
    p = skip_blanks(p);
    if (*p == '\0') {
        return VIGIL_ETYPE; /* a bare number: seconds? milliseconds? say it */
    }
    return scale_by_unit(whole, frac, p, units, sizeof units / sizeof units[0], out_ns);
}

int vigil_parse_size(const char *s, uint64_t *out_bytes)
{
    static const struct unit units[] = {
        {"", 1},
        {"B", 1},
        {"KB", 1000},
        {"kB", 1000},
        {"MB", 1000000},
        {"GB", 1000000000},
        {"TB", 1000000000000},
        {"KiB", 1ull << 10},
        {"MiB", 1ull << 20},
        {"GiB", 1ull << 30},
        {"TiB", 1ull << 40},
        {"k", 1ull << 10},
        {"K", 1ull << 10},
        {"M", 1ull << 20},
        {"G", 1ull << 30},
        {"T", 1ull << 40},
    };
    uint64_t whole;
    double frac;
    bool has_frac;

    if (!s) {
        return VIGIL_ENOTFOUND;
    }
    const char *p = parse_decimal(s, &whole, &frac, &has_frac);
    if (!p) {
        return VIGIL_ETYPE;
    }
    p = skip_blanks(p);
    /* Half a byte is a mistake, not something to round. */
    if (has_frac && (*p == '\0' || strcmp(p, "B") == 0)) {
        return VIGIL_ETYPE;
    }
    return scale_by_unit(whole, frac, p, units, sizeof units / sizeof units[0], out_bytes);
}

/* Durations and sizes may be quoted: "10s" is a string to YAML anyway, and
 * the unit (or the parse) already says what it is. */
int vigil_conf_duration(const struct vigil_conf *n, uint64_t *out_ns)
{
    if (!n) {
        return VIGIL_ENOTFOUND;
    }
    if (n->kind != VIGIL_CONF_SCALAR) {
        return VIGIL_ETYPE;
    }
    return vigil_parse_duration(n->value, out_ns);
}

int vigil_conf_size(const struct vigil_conf *n, uint64_t *out_bytes)
{
    if (!n) {
        return VIGIL_ENOTFOUND;
    }
    if (n->kind != VIGIL_CONF_SCALAR) {
        return VIGIL_ETYPE;
    }
    return vigil_parse_size(n->value, out_bytes);
}

size_t vigil_conf_len(const struct vigil_conf *n)
{
    if (!n) {
        return 0;
    }
    return n->kind == VIGIL_CONF_SCALAR ? 1 : n->n;
}

const struct vigil_conf *vigil_conf_at(const struct vigil_conf *n, size_t i, const char **key_out)
{
    if (key_out) {
        *key_out = NULL;
    }
    if (!n) {
        return NULL;
    }
    if (n->kind == VIGIL_CONF_SCALAR) {
        return i == 0 ? n : NULL; /* a scalar is a list of one */
    }
    if (i >= n->n) {
        return NULL;
    }
    if (key_out && n->kind == VIGIL_CONF_MAP) {
        *key_out = n->keys[i];
    }
    return n->items[i];
}

/* ---- Plugin options ------------------------------------------------------------ */

/* "'abc'", "a map", "an empty value": for "must be X, not Y". Long text is
 * cut so that one message stays one readable line. */
const char *vigil__conf_describe(const struct vigil_conf *n, char *buf, size_t cap)
{
    if (n->kind != VIGIL_CONF_SCALAR) {
        return vigil__conf_kind_words(n);
    }
    if (n->value[0] == '\0') {
        return n->quoted ? "an empty string" : "an empty value";
    }
    size_t len = strcspn(n->value, "\n");
    if (len > 40 || n->value[len] != '\0') {
        snprintf(buf, cap, "'%.*s...'", (int)(len > 40 ? 40 : len), n->value);
    } else {
        snprintf(buf, cap, "'%s'", n->value);
    }
    return buf;
}

static const char *type_words(enum vigil_opt_type t)
{
    switch (t) {
    case VIGIL_OPT_STRING:
        return "a string";
    case VIGIL_OPT_INT:
        return "an integer";
    case VIGIL_OPT_DOUBLE:
        return "a number";
    case VIGIL_OPT_BOOL:
        return "true or false";
    case VIGIL_OPT_DURATION:
        return "a duration such as 250ms or 5m";
    case VIGIL_OPT_SIZE:
        return "a size such as 64KiB";
    case VIGIL_OPT_LIST:
        return "a list";
    case VIGIL_OPT_MAP:
        return "a map";
    }
    return "a known type";
}

static bool has_type(const struct vigil_conf *n, enum vigil_opt_type t)
{
    union {
        int64_t i;
        double f;
        bool b;
        uint64_t u;
    } v;

    switch (t) {
    case VIGIL_OPT_STRING:
        return n->kind == VIGIL_CONF_SCALAR;
    case VIGIL_OPT_INT:
        return vigil_conf_int(n, &v.i) == 0;
    case VIGIL_OPT_DOUBLE:
        return vigil_conf_double(n, &v.f) == 0;
    case VIGIL_OPT_BOOL:
        return vigil_conf_bool(n, &v.b) == 0;
    case VIGIL_OPT_DURATION:
        return vigil_conf_duration(n, &v.u) == 0;
    case VIGIL_OPT_SIZE:
        return vigil_conf_size(n, &v.u) == 0;
    case VIGIL_OPT_LIST:
        return n->kind == VIGIL_CONF_LIST || n->kind == VIGIL_CONF_SCALAR;
    case VIGIL_OPT_MAP:
        return n->kind == VIGIL_CONF_MAP;
    }
    return false;
}

/* Gives every node of a subtree one position (defaults have no place of
 * their own in the file). */
static void place(struct vigil_conf *n, const char *file, int line, int col)
{
    n->file = file;
    n->line = line;
    n->col = col;
    for (size_t i = 0; i < n->n; i++) {
        place(n->items[i], file, line, col);
        if (n->key_lines && n->key_cols) {
            n->key_lines[i] = line;
            n->key_cols[i] = col;
        }
    }
}

/* Appends opt's default to map; returns the number of errors (0 or 1). */
static int add_default(struct vigil_conf *map, const struct vigil_option *opt, const char *what,
                       struct vigil_diag *d)
{
    const char *text = opt->default_value;
    struct vigil_conf *v = vigil__conf_parse_doc(text, strlen(text), "default", NULL, true);
    char buf[64];

    if (!v) {
        vigil_diag_at(d, map, "%s has a bad default for '%s': '%s' is not valid YAML", what,
                      opt->key, text);
        return 1;
    }
    char *tmp = (char *)v->file;
    place(v, map->file, map->line, map->col);
    free(tmp);
    char *key = strdup(opt->key);
    if (!key || vigil__conf_reserve(map, map->n + 1) != 0) {
        free(key);
        vigil__conf_node_free(v);
        vigil_diag_at(d, map, "out of memory");
        return 1;
    }
    vigil__conf_put(map, key, map->line, map->col, v);
    if (!has_type(v, opt->type)) {
        vigil_diag_at(d, map, "%s has a bad default for '%s': it must be %s, not %s", what,
                      opt->key, type_words(opt->type), vigil__conf_describe(v, buf, sizeof buf));
        return 1;
    }
    return 0;
}

/* "a, b, c" or "none"; NULL when out of memory. */
static char *valid_keys(const struct vigil_option *opts)
{
    size_t len = 1;
    for (const struct vigil_option *o = opts; o && o->key; o++) {
        len += strlen(o->key) + 2;
    }
    char *s = malloc(len > 5 ? len : 5);
    if (!s) {
        return NULL;
    }
    s[0] = '\0';
    for (const struct vigil_option *o = opts; o && o->key; o++) {
        if (o != opts) {
            strcat(s, ", ");
        }
        strcat(s, o->key);
    }
    if (s[0] == '\0') {
        strcpy(s, "none");
    }
    return s;
}

int vigil_conf_check_options(struct vigil_conf *map, const struct vigil_option *opts,
                             const char *what, struct vigil_diag *d)
{
    int errors = 0;
    char buf[64];

    if (!what) {
        what = "?";
    }
    if (!map) {
        return 0;
    }
    if (map->kind != VIGIL_CONF_MAP) {
        vigil_diag_at(d, map, "%s takes a map of keys, not %s", what,
                      vigil__conf_describe(map, buf, sizeof buf));
        return 1;
    }
    size_t given = map->n; /* defaults appended below need no check */
    for (size_t i = 0; i < given; i++) {
        const struct vigil_option *opt = opts;
        while (opt && opt->key && strcmp(opt->key, map->keys[i]) != 0) {
            opt++;
        }
        if (!opt || !opt->key) {
            char *keys = valid_keys(opts);
            vigil__diag_key(d, map, i, "unknown key '%s' for %s (valid keys: %s)", map->keys[i],
                            what, keys ? keys : "?");
            free(keys);
            errors++;
            continue;
        }
        const struct vigil_conf *v = map->items[i];
        if (!has_type(v, opt->type)) {
            vigil_diag_at(d, v, "key '%s' of %s must be %s, not %s", opt->key, what,
                          type_words(opt->type), vigil__conf_describe(v, buf, sizeof buf));
            errors++;
        }
    }
    for (const struct vigil_option *opt = opts; opt && opt->key; opt++) {
        if (opt->default_value && !vigil_conf_get(map, opt->key)) {
            errors += add_default(map, opt, what, d);
        }
    }
    return errors;
}

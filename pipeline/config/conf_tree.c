/* Configuration text to tree: libyaml's events turned into vigil_conf nodes
 * that remember their file:line:col, with bounds against hostile input
 * (nesting, alias expansion, file size), and the diagnostics every config
 * error goes to as "FILE:LINE:COL: message".
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

#define DIAG_MAX 1000
/* Bounds against hostile or broken input: nesting (every walk of the tree
 * recurses, so this also bounds stack use) and what aliases may expand to
 * (a "billion laughs" document is a few hundred bytes). */
#define MAX_DEPTH 128
#define MAX_ALIAS_NODES 100000
#define MAX_ALIAS_BYTES (16u << 20)
#define MAX_FILE_BYTES (64u << 20)

/* ---- Diagnostics --------------------------------------------------------- */

void vigil_diag_init(struct vigil_diag *d)
{
    memset(d, 0, sizeof *d);
}

void vigil_diag_fini(struct vigil_diag *d)
{
    if (!d) {
        return;
    }
    for (size_t i = 0; i < d->n; i++) {
        free(d->msgs[i]);
    }
    free(d->msgs);
    memset(d, 0, sizeof *d);
}

static int format_prefix(char *buf, size_t cap, const char *file, int line, int col)
{
    if (line > 0 && col > 0) {
        return snprintf(buf, cap, "%s:%d:%d: ", file, line, col);
    }
    if (line > 0) {
        return snprintf(buf, cap, "%s:%d: ", file, line);
    }
    return snprintf(buf, cap, "%s: ", file);
}

void vigil_diag_vadd(struct vigil_diag *d, const char *file, int line, int col, const char *fmt,
                     va_list ap)
{
    if (!d) {
        return;
    }
    d->count++;
    if (d->n >= DIAG_MAX) {
        return;
    }
    if (!file) {
        file = "<config>";
    }

    va_list ap2;
    va_copy(ap2, ap);
    int mlen = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    int plen = format_prefix(NULL, 0, file, line, col);
    if (mlen < 0 || plen < 0) {
        return;
    }
    size_t len = (size_t)plen + (size_t)mlen;
    char *s = malloc(len + 1);
    if (!s) {
        return; /* the message is lost but still counted */
    }
    format_prefix(s, (size_t)plen + 1, file, line, col);
    vsnprintf(s + plen, (size_t)mlen + 1, fmt, ap);

    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        if (cap > DIAG_MAX) {
            cap = DIAG_MAX;
        }
        char **msgs = realloc(d->msgs, cap * sizeof *msgs);
        if (!msgs) {
            free(s);
            return;
        }
        d->msgs = msgs;
        d->cap = cap;
    }
    d->msgs[d->n++] = s;
}

void vigil_diag_add(struct vigil_diag *d, const char *file, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vigil_diag_vadd(d, file, line, col, fmt, ap);
    va_end(ap);
}

void vigil_diag_at(struct vigil_diag *d, const struct vigil_conf *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (n) {
        vigil_diag_vadd(d, n->file, n->line, n->col, fmt, ap);
    } else {
        vigil_diag_vadd(d, NULL, 0, 0, fmt, ap);
    }
    va_end(ap);
}

/* At where key i of `map` was written, or at its value if that is unknown. */
void vigil__diag_key(struct vigil_diag *d, const struct vigil_conf *map, size_t i, const char *fmt,
                     ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (map->key_lines && map->key_cols) {
        vigil_diag_vadd(d, map->file, map->key_lines[i], map->key_cols[i], fmt, ap);
    } else {
        vigil_diag_vadd(d, map->items[i]->file, map->items[i]->line, map->items[i]->col, fmt, ap);
    }
    va_end(ap);
}

void vigil_diag_print(const struct vigil_diag *d, FILE *out)
{
    for (size_t i = 0; i < d->n; i++) {
        fprintf(out, "%s\n", d->msgs[i]);
    }
    if (d->count > d->n) {
        fprintf(out, "(%zu more errors not shown)\n", d->count - d->n);
    }
}

/* ---- Nodes ------------------------------------------------------------------- */

struct vigil_conf *vigil__conf_node_new(enum vigil_conf_kind kind, const char *file, int line,
                                        int col)
{
    struct vigil_conf *n = calloc(1, sizeof *n);
    if (!n) {
        return NULL;
    }
    n->kind = kind;
    n->file = file;
    n->line = line;
    n->col = col;
    return n;
}

/* Frees a subtree but not the file name, which belongs to the document. */
void vigil__conf_node_free(struct vigil_conf *n)
{
    if (!n) {
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        vigil__conf_node_free(n->items[i]);
        if (n->keys) {
            free(n->keys[i]);
        }
    }
    free(n->items);
    free(n->keys);
    free(n->key_lines);
    free(n->key_cols);
    free(n->value);
    free(n);
}

void vigil_conf_free(struct vigil_conf *root)
{
    if (!root) {
        return;
    }
    char *file = (char *)root->file;
    vigil__conf_node_free(root);
    free(file);
}

/* Makes room for `cap` items in a map (or list: keys stay NULL). Key
 * positions are kept only if the map already has them or is new. */
int vigil__conf_reserve(struct vigil_conf *m, size_t cap)
{
    if (cap > SIZE_MAX / sizeof(void *)) {
        return -ENOMEM;
    }
    struct vigil_conf **items = realloc(m->items, cap * sizeof *items);
    if (!items) {
        return -ENOMEM;
    }
    m->items = items;
    if (m->kind != VIGIL_CONF_MAP) {
        return 0;
    }
    char **keys = realloc(m->keys, cap * sizeof *keys);
    if (!keys) {
        return -ENOMEM;
    }
    m->keys = keys;
    if (!m->key_lines && m->n > 0) {
        return 0;
    }
    int *lines = realloc(m->key_lines, cap * sizeof *lines);
    if (!lines) {
        return -ENOMEM;
    }
    m->key_lines = lines;
    int *cols = realloc(m->key_cols, cap * sizeof *cols);
    if (!cols) {
        return -ENOMEM;
    }
    m->key_cols = cols;
    return 0;
}

/* Stores item n of a map or list whose arrays have room for it. Takes the
 * key (maps) and the value. */
void vigil__conf_put(struct vigil_conf *m, char *key, int line, int col, struct vigil_conf *v)
{
    m->items[m->n] = v;
    if (m->kind == VIGIL_CONF_MAP) {
        m->keys[m->n] = key;
        if (m->key_lines && m->key_cols) {
            m->key_lines[m->n] = line;
            m->key_cols[m->n] = col;
        }
    }
    m->n++;
}

/* Sets first[i] to the index of the first string equal to strs[i], in
 * O(n log n): sorting (string, index) pairs puts each first occurrence at
 * the head of its run. Returns NULL when out of memory. */
struct indexed {
    const char *s;
    size_t i;
};

static int indexed_cmp(const void *a, const void *b)
{
    const struct indexed *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    if (c != 0) {
        return c;
    }
    return x->i < y->i ? -1 : x->i > y->i;
}

size_t *vigil__first_occurrences(char *const *strs, size_t n)
{
    if (n > SIZE_MAX / sizeof(struct indexed)) {
        return NULL;
    }
    struct indexed *v = malloc((n ? n : 1) * sizeof *v);
    size_t *first = malloc((n ? n : 1) * sizeof *first);
    if (!v || !first) {
        free(v);
        free(first);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = (struct indexed){strs[i], i};
    }
    qsort(v, n, sizeof *v, indexed_cmp);
    for (size_t i = 0; i < n; i++) {
        bool same = i > 0 && strcmp(v[i].s, v[i - 1].s) == 0;
        first[v[i].i] = same ? first[v[i - 1].i] : v[i].i;
    }
    free(v);
    return first;
}

/* ---- YAML → tree ------------------------------------------------------------- */

struct anchor {
    char *name;
    const struct vigil_conf *node;
};

struct builder {
    yaml_parser_t parser;
    const char *text;
    size_t len;
    const char *file;
    struct vigil_diag *d;
    struct anchor *anchors;
    size_t nanchors, capanchors;
    /* Nodes taken out of the tree while parsing (duplicate keys, map keys
     * that are not scalars) may still be the target of an anchor, so they
     * are freed only when the parse is over. */
    struct vigil_conf **trash;
    size_t ntrash, captrash;
    size_t alias_nodes, alias_bytes;
    int alias_line, alias_col; /* the alias being expanded, for messages */
    bool failed;               /* a fatal error was reported: unwind */
};

static int clamp_int(size_t v)
{
    return v >= INT_MAX ? INT_MAX : (int)v;
}

static void VIGIL_PRINTF(4, 5) fatal(struct builder *b, int line, int col, const char *fmt, ...)
{
    if (b->failed) {
        return; /* report only the first: the rest follows from it */
    }
    b->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vigil_diag_vadd(b->d, b->file, line, col, fmt, ap);
    va_end(ap);
}

static void out_of_memory(struct builder *b)
{
    fatal(b, 0, 0, "out of memory");
}

static void report_yaml_error(struct builder *b)
{
    yaml_parser_t *p = &b->parser;
    int line, col;

    if (p->error == YAML_MEMORY_ERROR) {
        out_of_memory(b);
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors (bad UTF-8, control characters) come with a byte
         * offset instead of a mark. */
        size_t end = p->problem_offset < b->len ? p->problem_offset : b->len;
        const char *nl = NULL;
        line = 1;
        for (size_t i = 0; i < end; i++) {
            if (b->text[i] == '\n') {
                line++;
                nl = b->text + i;
            }
        }
        col = clamp_int((size_t)(b->text + end - (nl ? nl + 1 : b->text)) + 1);
        if (p->problem_value != -1) {
            fatal(b, line, col, "%s (byte 0x%02x)", p->problem ? p->problem : "unreadable text",
                  (unsigned)p->problem_value & 0xff);
        } else {
            fatal(b, line, col, "%s", p->problem ? p->problem : "unreadable text");
        }
        return;
    }
    line = clamp_int(p->problem_mark.line + 1);
    col = clamp_int(p->problem_mark.column + 1);
    if (p->context) {
        fatal(b, line, col, "%s (%s at line %d)", p->problem ? p->problem : "invalid YAML",
              p->context, clamp_int(p->context_mark.line + 1));
    } else {
        fatal(b, line, col, "%s", p->problem ? p->problem : "invalid YAML");
    }
}

static bool next_event(struct builder *b, yaml_event_t *ev)
{
    if (yaml_parser_parse(&b->parser, ev)) {
        return true;
    }
    report_yaml_error(b);
    return false;
}

static void trash(struct builder *b, struct vigil_conf *n)
{
    if (!n) {
        return;
    }
    if (b->ntrash == b->captrash) {
        size_t cap = b->captrash ? b->captrash * 2 : 8;
        struct vigil_conf **t = realloc(b->trash, cap * sizeof *t);
        if (!t) {
            /* Fatal, so no alias will be expanded again: freeing now is
             * safe. */
            vigil__conf_node_free(n);
            out_of_memory(b);
            return;
        }
        b->trash = t;
        b->captrash = cap;
    }
    b->trash[b->ntrash++] = n;
}

static int add_anchor(struct builder *b, const yaml_char_t *name, const struct vigil_conf *n)
{
    if (b->nanchors == b->capanchors) {
        size_t cap = b->capanchors ? b->capanchors * 2 : 8;
        struct anchor *a = realloc(b->anchors, cap * sizeof *a);
        if (!a) {
            goto oom;
        }
        b->anchors = a;
        b->capanchors = cap;
    }
    char *copy = strdup((const char *)name);
    if (!copy) {
        goto oom;
    }
    b->anchors[b->nanchors++] = (struct anchor){copy, n};
    return 0;
oom:
    out_of_memory(b);
    return -ENOMEM;
}

/* A deep copy. With a builder it counts against the alias budget and the
 * depth limit, and reports why it failed; without one (copies of an
 * already checked tree) it fails only when out of memory. */
static struct vigil_conf *conf_copy(struct builder *b, const struct vigil_conf *src, int depth)
{
    if (b) {
        if (depth > MAX_DEPTH) {
            fatal(b, b->alias_line, b->alias_col, "nested deeper than %d levels", MAX_DEPTH);
            return NULL;
        }
        size_t bytes = src->value ? strlen(src->value) : 0;
        for (size_t i = 0; src->keys && i < src->n; i++) {
            bytes += strlen(src->keys[i]);
        }
        b->alias_nodes++;
        b->alias_bytes += bytes;
        if (b->alias_nodes > MAX_ALIAS_NODES || b->alias_bytes > MAX_ALIAS_BYTES) {
            fatal(b, b->alias_line, b->alias_col, "document too large (alias expansion)");
            return NULL;
        }
    }

    struct vigil_conf *n = vigil__conf_node_new(src->kind, src->file, src->line, src->col);
    if (!n) {
        goto oom;
    }
    n->quoted = src->quoted;
    if (src->value && !(n->value = strdup(src->value))) {
        goto oom;
    }
    if (src->n > 0) {
        if (vigil__conf_reserve(n, src->n) != 0) {
            goto oom;
        }
        if (!src->key_lines || !src->key_cols) {
            /* Keep the copy's key positions as unknown as the source's. */
            free(n->key_lines);
            free(n->key_cols);
            n->key_lines = n->key_cols = NULL;
        }
    }
    for (size_t i = 0; i < src->n; i++) {
        char *key = NULL;
        if (n->kind == VIGIL_CONF_MAP && !(key = strdup(src->keys[i]))) {
            goto oom;
        }
        struct vigil_conf *item = conf_copy(b, src->items[i], depth + 1);
        if (!item) {
            free(key);
            goto fail;
        }
        vigil__conf_put(n, key, n->key_lines ? src->key_lines[i] : 0,
                        n->key_cols ? src->key_cols[i] : 0, item);
    }
    return n;
oom:
    if (b) {
        out_of_memory(b);
    }
fail:
    vigil__conf_node_free(n);
    return NULL;
}

static struct vigil_conf *build_node(struct builder *b, yaml_event_t *ev, int depth);

static struct vigil_conf *build_scalar(struct builder *b, yaml_event_t *ev, int line, int col)
{
    struct vigil_conf *n = vigil__conf_node_new(VIGIL_CONF_SCALAR, b->file, line, col);
    size_t len = ev->data.scalar.length;
    if (!n || !(n->value = malloc(len + 1))) {
        vigil__conf_node_free(n);
        out_of_memory(b);
        return NULL;
    }
    memcpy(n->value, ev->data.scalar.value, len);
    n->value[len] = '\0';
    if (memchr(n->value, '\0', len)) {
        vigil_diag_add(b->d, b->file, line, col,
                       "text with a NUL character (\\0) is not supported");
    }
    /* Quoted and block scalars, and plain ones tagged as strings ("!!str 5",
     * "! 5"), are strings whatever they look like. */
    const char *tag = (const char *)ev->data.scalar.tag;
    n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                (tag && (strcmp(tag, YAML_STR_TAG) == 0 || strcmp(tag, "!") == 0));
    return n;
}

static struct vigil_conf *build_list(struct builder *b, int line, int col, int depth)
{
    struct vigil_conf *n = vigil__conf_node_new(VIGIL_CONF_LIST, b->file, line, col);
    size_t cap = 0;
    yaml_event_t ev;

    if (!n) {
        out_of_memory(b);
        return NULL;
    }
    for (;;) {
        if (!next_event(b, &ev)) {
            goto fail;
        }
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return n;
        }
        struct vigil_conf *item = build_node(b, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (!item) {
            goto fail;
        }
        if (n->n == cap) {
            cap = cap ? cap * 2 : 4;
            if (vigil__conf_reserve(n, cap) != 0) {
                vigil__conf_node_free(item);
                out_of_memory(b);
                goto fail;
            }
        }
        vigil__conf_put(n, NULL, 0, 0, item);
    }
fail:
    vigil__conf_node_free(n);
    return NULL;
}

/* Drops the second and later of equal keys, each with an error at its key. */
static void map_dedup(struct builder *b, struct vigil_conf *m)
{
    if (m->n < 2) {
        return;
    }
    size_t *first = vigil__first_occurrences(m->keys, m->n);
    if (!first) {
        out_of_memory(b);
        return;
    }
    for (size_t i = 0; i < m->n; i++) {
        if (first[i] != i) {
            vigil_diag_add(b->d, b->file, m->key_lines[i], m->key_cols[i],
                           "duplicate key '%s' (first at line %d)", m->keys[i],
                           m->key_lines[first[i]]);
        }
    }
    size_t w = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (first[i] != i) {
            free(m->keys[i]);
            trash(b, m->items[i]);
            continue;
        }
        m->keys[w] = m->keys[i];
        m->items[w] = m->items[i];
        m->key_lines[w] = m->key_lines[i];
        m->key_cols[w] = m->key_cols[i];
        w++;
    }
    m->n = w;
    free(first);
}

const char *vigil__conf_kind_words(const struct vigil_conf *n)
{
    switch (n->kind) {
    case VIGIL_CONF_MAP:
        return "a map";
    case VIGIL_CONF_LIST:
        return "a list";
    default:
        return "a string";
    }
}

static struct vigil_conf *build_map(struct builder *b, int line, int col, int depth)
{
    struct vigil_conf *n = vigil__conf_node_new(VIGIL_CONF_MAP, b->file, line, col);
    size_t cap = 0;
    yaml_event_t ev;

    if (!n) {
        out_of_memory(b);
        return NULL;
    }
    for (;;) {
        if (!next_event(b, &ev)) {
            goto fail;
        }
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        bool key_anchored = ev.type == YAML_SCALAR_EVENT && ev.data.scalar.anchor;
        struct vigil_conf *key = build_node(b, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (!key) {
            goto fail;
        }
        if (!next_event(b, &ev)) {
            vigil__conf_node_free(key);
            goto fail;
        }
        struct vigil_conf *value = build_node(b, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (!value) {
            vigil__conf_node_free(key);
            goto fail;
        }

        if (key->kind != VIGIL_CONF_SCALAR) {
            vigil_diag_add(b->d, b->file, key->line, key->col,
                           "a key must be a plain string, not %s", vigil__conf_kind_words(key));
            trash(b, key);
            trash(b, value);
            if (b->failed) {
                goto fail;
            }
            continue;
        }
        int kline = key->line, kcol = key->col;
        char *text;
        if (key_anchored) {
            /* An alias may still copy the key node: keep it whole. */
            text = strdup(key->value);
            trash(b, key);
        } else {
            text = key->value;
            key->value = NULL;
            vigil__conf_node_free(key);
        }
        if (!text || b->failed) {
            free(text);
            vigil__conf_node_free(value);
            out_of_memory(b);
            goto fail;
        }
        if (n->n == cap) {
            cap = cap ? cap * 2 : 4;
            if (vigil__conf_reserve(n, cap) != 0) {
                free(text);
                vigil__conf_node_free(value);
                out_of_memory(b);
                goto fail;
            }
        }
        vigil__conf_put(n, text, kline, kcol, value);
    }
    map_dedup(b, n);
    if (b->failed) {
        goto fail;
    }
    return n;
fail:
    vigil__conf_node_free(n);
    return NULL;
}

/* Builds the node that event `ev` starts, consuming the events up to its
 * end. The caller deletes `ev`. NULL after a fatal error. */
static struct vigil_conf *build_node(struct builder *b, yaml_event_t *ev, int depth)
{
    int line = clamp_int(ev->start_mark.line + 1);
    int col = clamp_int(ev->start_mark.column + 1);
    const yaml_char_t *anchor = NULL;
    struct vigil_conf *n = NULL;

    if (depth > MAX_DEPTH) {
        fatal(b, line, col, "nested deeper than %d levels", MAX_DEPTH);
        return NULL;
    }
    switch (ev->type) {
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        const struct anchor *a = NULL;
        /* The latest definition wins: YAML allows redefining an anchor. */
        for (size_t i = b->nanchors; i-- > 0;) {
            if (strcmp(b->anchors[i].name, name) == 0) {
                a = &b->anchors[i];
                break;
            }
        }
        if (!a) {
            fatal(b, line, col, "unknown alias '*%s': no '&%s' before it", name, name);
            return NULL;
        }
        b->alias_line = line;
        b->alias_col = col;
        n = conf_copy(b, a->node, depth);
        if (n) {
            /* Errors about the value point where it is used. */
            n->line = line;
            n->col = col;
        }
        return n;
    }
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        n = build_scalar(b, ev, line, col);
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ev->data.sequence_start.anchor;
        n = build_list(b, line, col, depth);
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ev->data.mapping_start.anchor;
        n = build_map(b, line, col, depth);
        break;
    default:
        fatal(b, line, col, "unexpected YAML event %d", (int)ev->type);
        return NULL;
    }
    /* Registered only once complete, so "&a [*a]" is an unknown alias
     * rather than an endless copy. */
    if (n && anchor && add_anchor(b, anchor, n) != 0) {
        vigil__conf_node_free(n);
        return NULL;
    }
    return n;
}

bool vigil__conf_is_null(const struct vigil_conf *n)
{
    return n && n->kind == VIGIL_CONF_SCALAR && !n->quoted &&
           (n->value[0] == '\0' || strcmp(n->value, "~") == 0 || strcmp(n->value, "null") == 0);
}

/* One document. With `any_root` the top may be anything and an empty text
 * is an empty plain scalar (option defaults); without, it is a map. */
struct vigil_conf *vigil__conf_parse_doc(const char *text, size_t len, const char *name,
                                         struct vigil_diag *d, bool any_root)
{
    struct builder b = {.text = text, .len = len, .d = d};
    struct vigil_conf *root = NULL;
    yaml_event_t ev;
    char *file = strdup(name ? name : "<config>");

    if (!file) {
        vigil_diag_add(d, name, 0, 0, "out of memory");
        return NULL;
    }
    b.file = file;
    if (!text) {
        b.text = text = "";
    }
    if (!yaml_parser_initialize(&b.parser)) {
        out_of_memory(&b);
        free(file);
        return NULL;
    }
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)text, len);

    if (!next_event(&b, &ev)) { /* stream start */
        goto fail;
    }
    yaml_event_delete(&ev);
    if (!next_event(&b, &ev)) {
        goto fail;
    }
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        root = vigil__conf_node_new(any_root ? VIGIL_CONF_SCALAR : VIGIL_CONF_MAP, file, 1, 1);
        if (root && any_root && !(root->value = strdup(""))) {
            vigil__conf_node_free(root);
            root = NULL;
        }
        if (!root) {
            out_of_memory(&b);
            goto fail;
        }
        goto done;
    }
    yaml_event_delete(&ev); /* document start */
    if (!next_event(&b, &ev)) {
        goto fail;
    }
    root = build_node(&b, &ev, 1);
    yaml_event_delete(&ev);
    if (!root) {
        goto fail;
    }
    if (!next_event(&b, &ev)) { /* document end */
        goto fail;
    }
    yaml_event_delete(&ev);
    if (!next_event(&b, &ev)) {
        goto fail;
    }
    if (ev.type != YAML_STREAM_END_EVENT) {
        fatal(&b, clamp_int(ev.start_mark.line + 1), clamp_int(ev.start_mark.column + 1),
              "a second YAML document: the file must hold exactly one");
        yaml_event_delete(&ev);
        goto fail;
    }
    yaml_event_delete(&ev);

    if (!any_root && vigil__conf_is_null(root)) {
        struct vigil_conf *map = vigil__conf_node_new(VIGIL_CONF_MAP, file, root->line, root->col);
        if (!map) {
            out_of_memory(&b);
            goto fail;
        }
        vigil__conf_node_free(root);
        root = map;
    } else if (!any_root && root->kind != VIGIL_CONF_MAP) {
        fatal(&b, root->line, root->col, "the top level must be a map of keys, not %s",
              vigil__conf_kind_words(root));
        goto fail;
    }

done:
    yaml_parser_delete(&b.parser);
    for (size_t i = 0; i < b.ntrash; i++) {
        vigil__conf_node_free(b.trash[i]);
    }
    free(b.trash);
    for (size_t i = 0; i < b.nanchors; i++) {
        free(b.anchors[i].name);
    }
    free(b.anchors);
    return root;

fail:
    vigil__conf_node_free(root);
    root = NULL;
    free(file);
    goto done;
}

struct vigil_conf *vigil_conf_parse(const char *text, size_t len, const char *name,
                                    struct vigil_diag *d)
{
    return vigil__conf_parse_doc(text, len, name, d, false);
}

/* Reads a whole file, NUL-terminated; NULL with a message on failure. */
char *vigil__conf_read_file(const char *path, size_t *len_out, struct vigil_diag *d)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (!f) {
        vigil_diag_add(d, path, 0, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= MAX_FILE_BYTES) {
                vigil_diag_add(d, path, 0, 0, "too big: a config file is at most %u MiB",
                               MAX_FILE_BYTES >> 20);
                goto fail;
            }
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                vigil_diag_add(d, path, 0, 0, "out of memory");
                goto fail;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) {
            break;
        }
    }
    if (ferror(f)) {
        vigil_diag_add(d, path, 0, 0, "cannot read: %s", strerror(errno));
        goto fail;
    }
    fclose(f);
    buf[len] = '\0';
    *len_out = len;
    return buf;
fail:
    fclose(f);
    free(buf);
    return NULL;
}

struct vigil_conf *vigil_conf_load(const char *path, struct vigil_diag *d)
{
    size_t len;
    char *text = vigil__conf_read_file(path, &len, d);
    if (!text) {
        return NULL;
    }
    struct vigil_conf *root = vigil_conf_parse(text, len, path, d);
    free(text);
    return root;
}

struct vigil_conf *vigil__conf_copy(const struct vigil_conf *src)
{
    return conf_copy(NULL, src, 0);
}

/* ---- Canonical text ------------------------------------------------------------ */

struct canon {
    char *buf;
    size_t len, cap;
    bool oom;
};

static void canon_put(struct canon *c, const char *s, size_t n)
{
    if (c->oom) {
        return;
    }
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        while (cap < c->len + n + 1) {
            cap *= 2;
        }
        char *p = realloc(c->buf, cap);
        if (!p) {
            c->oom = true;
            return;
        }
        c->buf = p;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, s, n);
    c->len += n;
    c->buf[c->len] = '\0';
}

/* Length-prefixed, so no value can imitate structure. */
static void canon_str(struct canon *c, char tag, const char *s)
{
    char head[32];
    size_t n = strlen(s);
    int hl = snprintf(head, sizeof head, "%c%zu:", tag, n);
    canon_put(c, head, (size_t)hl);
    canon_put(c, s, n);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void canon_node(struct canon *c, const struct vigil_conf *n)
{
    if (!n) {
        canon_put(c, "~", 1);
        return;
    }
    if (n->kind == VIGIL_CONF_SCALAR) {
        canon_str(c, n->quoted ? 'q' : 's', n->value ? n->value : "");
        return;
    }
    if (n->kind == VIGIL_CONF_LIST) {
        canon_put(c, "[", 1);
        for (size_t i = 0; i < n->n; i++) {
            canon_node(c, n->items[i]);
        }
        canon_put(c, "]", 1);
        return;
    }
    /* Maps: keys in sorted order, so that reordering keys is no change. */
    char **keys = malloc((n->n ? n->n : 1) * sizeof *keys);
    if (!keys) {
        c->oom = true;
        return;
    }
    memcpy(keys, n->keys, n->n * sizeof *keys);
    qsort(keys, n->n, sizeof *keys, key_cmp);
    canon_put(c, "{", 1);
    for (size_t i = 0; i < n->n; i++) {
        canon_str(c, 'k', keys[i]);
        canon_node(c, vigil_conf_get(n, keys[i]));
    }
    canon_put(c, "}", 1);
    free(keys);
}

char *vigil_conf_canonical(const struct vigil_conf *n)
{
    struct canon c = {0};
    canon_node(&c, n);
    canon_put(&c, "", 0);
    if (c.oom || !c.buf) {
        free(c.buf);
        return NULL;
    }
    return c.buf;
}

/* The prometheus sink's series table and its exposition (series.h).
 */
#include "series.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "utf8.h"

#define NAME_MAX_LEN 1024 /* longer metric names are refused (an event's odd key) */

/* ---- Hash tables (linear probing, backward-shift deletion) --------------------------------- */

/* Every entry starts with its hash. */
struct hashed {
    uint64_t hash;
};

struct htab {
    struct hashed **slot;
    size_t cap, n; /* cap: a power of two, at least twice n */
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ s[i]) * 0x100000001b3ull;
    }
    return h;
}

#define FNV_START 0xcbf29ce484222325ull

static int htab_grow(struct htab *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    struct hashed **slot = calloc(cap, sizeof *slot);
    if (!slot) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slot[i]) {
            size_t j = t->slot[i]->hash & (cap - 1);
            while (slot[j]) {
                j = (j + 1) & (cap - 1);
            }
            slot[j] = t->slot[i];
        }
    }
    free(t->slot);
    t->slot = slot;
    t->cap = cap;
    return 0;
}

/* The slot of the entry eq() accepts, or of the empty slot where it goes. */
static size_t htab_find(const struct htab *t, uint64_t hash,
                        bool (*eq)(const struct hashed *e, const void *key), const void *key)
{
    size_t i = hash & (t->cap - 1);
    while (t->slot[i] && !(t->slot[i]->hash == hash && eq(t->slot[i], key))) {
        i = (i + 1) & (t->cap - 1);
    }
    return i;
}

static void htab_remove(struct htab *t, const struct hashed *e)
{
    size_t i = e->hash & (t->cap - 1);
    while (t->slot[i] != e) {
        i = (i + 1) & (t->cap - 1);
    }
    /* Moves later entries of the run back where a probe from their home
     * slot still finds them. */
    for (size_t j = i;;) {
        t->slot[i] = NULL;
        for (;;) {
            j = (j + 1) & (t->cap - 1);
            if (!t->slot[j]) {
                t->n--;
                return;
            }
            size_t home = t->slot[j]->hash & (t->cap - 1);
            if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
                break;
            }
        }
        t->slot[i] = t->slot[j];
        i = j;
    }
}

/* ---- Families and series ----------------------------------------------------------------- */

struct family {
    uint64_t hash;
    char *name; /* the metric name; a counter's ends in _total */
    size_t name_len;
    char *help;
    bool counter;
    struct series **v; /* its series, in the order they came */
    size_t n, cap;
    struct family *next_dead;
};

struct series {
    uint64_t hash;
    struct family *f;
    size_t at; /* its index in f->v */
    double value;
    uint64_t updated_ns;
    size_t labels_len;
    struct series *next_dead;
    char labels[]; /* {host="h",...} */
};

struct prom_table {
    struct htab fams, series;
    size_t max_series;
    uint64_t dropped;
    unsigned snapshots;      /* alive: removed entries wait in the lists below */
    struct series *dead;     /* removed while a snapshot held them */
    struct family *dead_fam; /* emptied while a snapshot held them */
};

struct prom_table *prom_table_new(size_t max_series)
{
    struct prom_table *t = calloc(1, sizeof *t);
    if (t && (htab_grow(&t->fams) != 0 || htab_grow(&t->series) != 0)) {
        free(t->fams.slot);
        free(t);
        return NULL;
    }
    if (t) {
        t->max_series = max_series;
    }
    return t;
}

static void family_free(struct family *f)
{
    free(f->name);
    free(f->help);
    free(f->v);
    free(f);
}

static void free_dead(struct prom_table *t)
{
    while (t->dead) {
        struct series *s = t->dead;
        t->dead = s->next_dead;
        free(s);
    }
    while (t->dead_fam) {
        struct family *f = t->dead_fam;
        t->dead_fam = f->next_dead;
        family_free(f);
    }
}

void prom_table_free(struct prom_table *t)
{
    if (!t) {
        return;
    }
    for (size_t i = 0; i < t->series.cap; i++) {
        free(t->series.slot[i]);
    }
    for (size_t i = 0; i < t->fams.cap; i++) {
        if (t->fams.slot[i]) {
            family_free((struct family *)t->fams.slot[i]);
        }
    }
    free_dead(t);
    free(t->series.slot);
    free(t->fams.slot);
    free(t);
}

size_t prom_table_series(const struct prom_table *t)
{
    return t->series.n;
}

uint64_t prom_table_dropped(const struct prom_table *t)
{
    return t->dropped;
}

/* ---- Names ------------------------------------------------------------------------------- */

static bool name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static size_t map_chars(char *out, const char *s, size_t n, bool colon)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = name_char(c) || (colon && c == ':') ? (char)c : '_';
    }
    return n;
}

size_t prom_metric_name(char *out, const char *topic, size_t topic_len, const char *name,
                        size_t name_len)
{
    size_t n = 0;
    memcpy(out, "vigil_", 6);
    n = 6;
    if (topic_len > 6 && memcmp(topic, "vigil.", 6) == 0) {
        topic += 6;
        topic_len -= 6;
    }
    n += map_chars(out + n, topic, topic_len, true);
    out[n++] = '_';
    n += map_chars(out + n, name, name_len, true);
    out[n] = '\0';
    return n;
}

/* A label name: [a-zA-Z_][a-zA-Z0-9_]*, "__" reserved for Prometheus, host
 * taken by the event's host. out holds n + 16 bytes. */
static size_t label_name(char *out, const char *s, size_t n)
{
    size_t k = 0;
    if (n == 0 || (s[0] >= '0' && s[0] <= '9')) {
        out[k++] = '_';
    }
    k += map_chars(out + k, s, n, false);
    if (k >= 2 && out[0] == '_' && out[1] == '_') {
        memmove(out + 5, out, k);
        memcpy(out, "label", 5);
        k += 5;
    } else if (k == 4 && memcmp(out, "host", 4) == 0) {
        memcpy(out, "exported_host", 13);
        k = 13;
    }
    return k;
}

/* A label value: \ " and newline escaped, bytes that are not UTF-8 as
 * U+FFFD. out holds 4 * n bytes. */
static size_t label_value(char *out, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' || c == '"') {
            out[k++] = '\\';
            out[k++] = (char)c;
            i++;
        } else if (c == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
            i++;
        } else if (c < 0x80) {
            out[k++] = (char)c;
            i++;
        } else {
            size_t l = vigil_utf8_seq_len((const unsigned char *)s + i, n - i);
            if (l) {
                memcpy(out + k, s + i, l);
                k += l;
                i += l;
            } else {
                memcpy(out + k, "\xEF\xBF\xBD", 3);
                k += 3;
                i++;
            }
        }
    }
    return k;
}

/* ---- Label sets --------------------------------------------------------------------------- */

static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) {
        return 0;
    }
    size_t c = *cap ? *cap : 256;
    while (c < need) {
        c *= 2;
    }
    char *p = realloc(*buf, c);
    if (!p) {
        return -ENOMEM;
    }
    *buf = p;
    *cap = c;
    return 0;
}

void prom_labels_fini(struct prom_labels *l)
{
    free(l->buf);
    free(l->tmp);
    free(l->ix);
    *l = (struct prom_labels){0};
}

int prom_labels_begin(struct prom_labels *l, const char *host, size_t host_len)
{
    l->tlen = 0;
    l->n = 0;
    l->len = 0;
    if (host_len > UINT32_MAX / 4 || reserve(&l->tmp, &l->tcap, 4 + 4 * host_len) != 0) {
        return -ENOMEM;
    }
    /* host first: a later label that maps to it is a duplicate. */
    if (l->ixcap == 0) {
        struct prom_label_ix *ix = malloc(16 * sizeof *ix);
        if (!ix) {
            return -ENOMEM;
        }
        l->ix = ix;
        l->ixcap = 16;
    }
    memcpy(l->tmp, "host", 4);
    l->ix[0] = (struct prom_label_ix){0, 4, 4, (uint32_t)label_value(l->tmp + 4, host, host_len)};
    l->tlen = 4 + l->ix[0].value_len;
    l->n = 1;
    return 0;
}

int prom_labels_add(struct prom_labels *l, const char *name, size_t name_len, const char *value,
                    size_t value_len)
{
    if (name_len > 4096 || value_len > UINT32_MAX / 8) {
        return 0; /* no label is that long: skipped */
    }
    if (reserve(&l->tmp, &l->tcap, l->tlen + name_len + 16 + 4 * value_len) != 0) {
        return -ENOMEM;
    }
    if (l->n == l->ixcap) {
        struct prom_label_ix *ix = realloc(l->ix, 2 * l->ixcap * sizeof *ix);
        if (!ix) {
            return -ENOMEM;
        }
        l->ix = ix;
        l->ixcap *= 2;
    }
    struct prom_label_ix *x = &l->ix[l->n++];
    x->name_off = (uint32_t)l->tlen;
    x->name_len = (uint32_t)label_name(l->tmp + l->tlen, name, name_len);
    l->tlen += x->name_len;
    x->value_off = (uint32_t)l->tlen;
    x->value_len = (uint32_t)label_value(l->tmp + l->tlen, value, value_len);
    l->tlen += x->value_len;
    return 0;
}

static int cmp_name(const char *tmp, const struct prom_label_ix *a, const struct prom_label_ix *b)
{
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(tmp + a->name_off, tmp + b->name_off, n);
    return c ? c : (a->name_len > b->name_len) - (a->name_len < b->name_len);
}

int prom_labels_end(struct prom_labels *l)
{
    /* Insertion sort, stable: of two labels that map to one name the first
     * (host before all) stays. Events carry a handful. */
    for (size_t i = 1; i < l->n; i++) {
        struct prom_label_ix x = l->ix[i];
        size_t j = i;
        while (j > 0 && cmp_name(l->tmp, &l->ix[j - 1], &x) > 0) {
            l->ix[j] = l->ix[j - 1];
            j--;
        }
        l->ix[j] = x;
    }
    if (reserve(&l->buf, &l->cap, l->tlen + 4 * l->n + 2) != 0) {
        return -ENOMEM;
    }
    size_t k = 0;
    l->buf[k++] = '{';
    for (size_t i = 0; i < l->n; i++) {
        const struct prom_label_ix *x = &l->ix[i];
        if (i > 0 && cmp_name(l->tmp, &l->ix[i - 1], x) == 0) {
            continue;
        }
        if (k > 1) {
            l->buf[k++] = ',';
        }
        memcpy(l->buf + k, l->tmp + x->name_off, x->name_len);
        k += x->name_len;
        l->buf[k++] = '=';
        l->buf[k++] = '"';
        memcpy(l->buf + k, l->tmp + x->value_off, x->value_len);
        k += x->value_len;
        l->buf[k++] = '"';
    }
    l->buf[k++] = '}';
    l->len = k;
    return 0;
}

/* ---- Setting a series --------------------------------------------------------------------- */

struct fam_key {
    const char *name;
    size_t len;
};

static bool fam_eq(const struct hashed *e, const void *key)
{
    const struct family *f = (const struct family *)e;
    const struct fam_key *k = key;
    return f->name_len == k->len && memcmp(f->name, k->name, k->len) == 0;
}

struct series_key {
    const struct family *f;
    const char *labels;
    size_t len;
};

static bool series_eq(const struct hashed *e, const void *key)
{
    const struct series *s = (const struct series *)e;
    const struct series_key *k = key;
    return s->f == k->f && s->labels_len == k->len && memcmp(s->labels, k->labels, k->len) == 0;
}

/* HELP text: the topic and the value's name as they were, where they are
 * plain (no escaping needed in either format), else as mapped. */
static char *help_of(const char *topic, size_t topic_len, const char *name, size_t name_len)
{
    char *h = malloc(topic_len + name_len + 32);
    if (!h) {
        return NULL;
    }
    size_t k = (size_t)sprintf(h, "vigil topic ");
    for (size_t i = 0; i < topic_len; i++) {
        unsigned char c = (unsigned char)topic[i];
        h[k++] = name_char(c) || c == '.' || c == '-' || c == ':' || c == '/' ? (char)c : '_';
    }
    memcpy(h + k, ", value ", 8);
    k += 8;
    k += map_chars(h + k, name, name_len, true);
    h[k] = '\0';
    return h;
}

static struct family *family_get(struct prom_table *t, const char *mname, size_t mlen,
                                 const char *topic, size_t topic_len, const char *name,
                                 size_t name_len)
{
    struct fam_key key = {mname, mlen};
    uint64_t hash = fnv(FNV_START, mname, mlen);
    size_t i = htab_find(&t->fams, hash, fam_eq, &key);
    if (t->fams.slot[i]) {
        return (struct family *)t->fams.slot[i];
    }
    struct family *f = calloc(1, sizeof *f);
    if (!f || !(f->name = malloc(mlen + 1)) ||
        !(f->help = help_of(topic, topic_len, name, name_len))) {
        if (f) {
            free(f->name);
        }
        free(f);
        return NULL;
    }
    memcpy(f->name, mname, mlen + 1);
    f->name_len = mlen;
    f->hash = hash;
    f->counter = mlen > 6 && memcmp(mname + mlen - 6, "_total", 6) == 0;
    if (2 * (t->fams.n + 1) > t->fams.cap) {
        if (htab_grow(&t->fams) != 0) {
            family_free(f);
            return NULL;
        }
        i = htab_find(&t->fams, hash, fam_eq, &key);
    }
    t->fams.slot[i] = (struct hashed *)f;
    t->fams.n++;
    return f;
}

int prom_table_set(struct prom_table *t, const char *topic, size_t topic_len, const char *name,
                   size_t name_len, const struct prom_labels *l, double v, uint64_t now_ns)
{
    if (topic_len + name_len > NAME_MAX_LEN) {
        t->dropped++;
        return 0;
    }
    char mname[NAME_MAX_LEN + 16];
    size_t mlen = prom_metric_name(mname, topic, topic_len, name, name_len);
    struct fam_key fk = {mname, mlen};
    uint64_t fh = fnv(FNV_START, mname, mlen);
    size_t fi = htab_find(&t->fams, fh, fam_eq, &fk);
    struct family *f = (struct family *)t->fams.slot[fi];
    struct series_key key = {f, l->buf, l->len};
    uint64_t hash = fnv(fnv(fh, "\xff", 1), l->buf, l->len);
    if (f) {
        size_t i = htab_find(&t->series, hash, series_eq, &key);
        struct series *s = (struct series *)t->series.slot[i];
        if (s) {
            s->value = v;
            s->updated_ns = now_ns;
            return 1;
        }
    }
    if (t->series.n >= t->max_series) {
        t->dropped++;
        return 0;
    }
    if (!f && !(f = family_get(t, mname, mlen, topic, topic_len, name, name_len))) {
        return -ENOMEM;
    }
    key.f = f;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 4;
        struct series **nv = realloc(f->v, cap * sizeof *nv);
        if (!nv) {
            return -ENOMEM;
        }
        f->v = nv;
        f->cap = cap;
    }
    if (2 * (t->series.n + 1) > t->series.cap && htab_grow(&t->series) != 0) {
        return -ENOMEM;
    }
    struct series *s = malloc(sizeof *s + l->len);
    if (!s) {
        return -ENOMEM;
    }
    *s = (struct series){
        .hash = hash, .f = f, .at = f->n, .value = v, .updated_ns = now_ns, .labels_len = l->len};
    memcpy(s->labels, l->buf, l->len);
    f->v[f->n++] = s;
    t->series.slot[htab_find(&t->series, hash, series_eq, &key)] = (struct hashed *)s;
    t->series.n++;
    return 1;
}

void prom_table_expire(struct prom_table *t, uint64_t older_than)
{
    if (!t->snapshots) {
        free_dead(t);
    }
    for (size_t i = 0; i < t->fams.cap;) {
        struct family *f = (struct family *)t->fams.slot[i];
        if (!f) {
            i++;
            continue;
        }
        for (size_t k = 0; k < f->n;) {
            struct series *s = f->v[k];
            if (s->updated_ns >= older_than) {
                k++;
                continue;
            }
            htab_remove(&t->series, (struct hashed *)s);
            f->v[k] = f->v[--f->n];
            f->v[k]->at = k;
            if (t->snapshots) {
                s->next_dead = t->dead;
                t->dead = s;
            } else {
                free(s);
            }
        }
        if (f->n > 0) {
            i++;
            continue;
        }
        /* Removing shifts a later entry into slot i: look at it again. */
        htab_remove(&t->fams, (struct hashed *)f);
        if (t->snapshots) {
            f->next_dead = t->dead_fam;
            t->dead_fam = f;
        } else {
            family_free(f);
        }
    }
}

/* ---- Snapshots and the exposition -------------------------------------------------------- */

struct snap_item {
    const struct series *s;
    double value;
};

struct prom_snapshot {
    struct prom_table *t;
    bool om;
    struct snap_item *items;
    size_t n, pos;
};

static int cmp_family(const void *a, const void *b)
{
    const struct family *x = *(const struct family *const *)a,
                        *y = *(const struct family *const *)b;
    return strcmp(x->name, y->name);
}

struct prom_snapshot *prom_snapshot_take(struct prom_table *t, bool openmetrics)
{
    struct prom_snapshot *s = calloc(1, sizeof *s);
    struct family **fams = malloc((t->fams.n + 1) * sizeof *fams);
    if (!s || !fams || !(s->items = malloc((t->series.n + 1) * sizeof *s->items))) {
        free(fams);
        free(s);
        return NULL;
    }
    size_t nf = 0;
    for (size_t i = 0; i < t->fams.cap; i++) {
        if (t->fams.slot[i]) {
            fams[nf++] = (struct family *)t->fams.slot[i];
        }
    }
    qsort(fams, nf, sizeof *fams, cmp_family);
    for (size_t i = 0; i < nf; i++) {
        for (size_t k = 0; k < fams[i]->n; k++) {
            s->items[s->n++] = (struct snap_item){fams[i]->v[k], fams[i]->v[k]->value};
        }
    }
    free(fams);
    s->t = t;
    s->om = openmetrics;
    t->snapshots++;
    return s;
}

void prom_snapshot_free(struct prom_snapshot *s)
{
    if (!s) {
        return;
    }
    if (--s->t->snapshots == 0) {
        free_dead(s->t);
    }
    free(s->items);
    free(s);
}

/* A value as Go's ParseFloat reads it: the shortest form that reads back. */
static int format_value(char *out, size_t cap, double v)
{
    if (isnan(v)) {
        return snprintf(out, cap, "NaN");
    }
    if (isinf(v)) {
        return snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
    }
    int n = snprintf(out, cap, "%.15g", v);
    if (strtod(out, NULL) != v) {
        n = snprintf(out, cap, "%.17g", v);
    }
    return n;
}

bool prom_snapshot_render(struct prom_snapshot *s, struct evbuffer *out, size_t max_series)
{
    const struct family *last = s->pos ? s->items[s->pos - 1].s->f : NULL;
    for (size_t end = s->pos + max_series; s->pos < s->n && s->pos < end; s->pos++) {
        const struct snap_item *it = &s->items[s->pos];
        const struct family *f = it->s->f;
        if (f != last) {
            /* OpenMetrics names a counter's family without its _total. */
            int base = (int)f->name_len - (s->om && f->counter ? 6 : 0);
            evbuffer_add_printf(out, "# HELP %.*s %s\n# TYPE %.*s %s\n", base, f->name, f->help,
                                base, f->name, f->counter ? "counter" : "gauge");
            last = f;
        }
        char v[40];
        int vl = format_value(v, sizeof v, it->value);
        evbuffer_add(out, f->name, f->name_len);
        evbuffer_add(out, it->s->labels, it->s->labels_len);
        evbuffer_add(out, " ", 1);
        evbuffer_add(out, v, (size_t)vl);
        evbuffer_add(out, "\n", 1);
    }
    if (s->pos < s->n) {
        return false;
    }
    if (s->om) {
        evbuffer_add(out, "# EOF\n", 6);
    }
    return true;
}

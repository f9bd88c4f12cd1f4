/* vigil-top's model (see top_model.h): events into fixed tables keyed by
 * their identity labels, and the tables out as lines of text, each pane
 * sorted by the column the user chose.
 */
/* qsort_r: _GNU_SOURCE comes from the build. */
#include "top_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define INDEX_SLOTS (2 * TOP_ROWS_MAX)
#define SEP '\x1f'

/* ---- Tables ---------------------------------------------------------------- */

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    }
    return h;
}

static int table_init(struct top_table *tb, bool expires)
{
    tb->rows = calloc(TOP_ROWS_MAX, sizeof *tb->rows);
    tb->index = malloc(INDEX_SLOTS * sizeof *tb->index);
    if (!tb->rows || !tb->index) {
        return -1;
    }
    memset(tb->index, 0xff, INDEX_SLOTS * sizeof *tb->index);
    tb->expires = expires;
    return 0;
}

static void table_fini(struct top_table *tb)
{
    free(tb->rows);
    free(tb->index);
}

static void table_reindex(struct top_table *tb)
{
    memset(tb->index, 0xff, INDEX_SLOTS * sizeof *tb->index);
    for (size_t i = 0; i < tb->n; i++) {
        size_t s = tb->rows[i].hash % INDEX_SLOTS;
        while (tb->index[s] >= 0) {
            s = (s + 1) % INDEX_SLOTS;
        }
        tb->index[s] = (int32_t)i;
    }
}

/* The row with this key, made (numbers NaN) if new; NULL when the table is
 * full (counted) or, with create false, when there is none. */
static struct top_row *table_get(struct top_table *tb, const char *key, size_t len, bool create)
{
    uint64_t h = fnv1a(key, len);
    size_t s = h % INDEX_SLOTS;
    for (; tb->index[s] >= 0; s = (s + 1) % INDEX_SLOTS) {
        struct top_row *r = &tb->rows[tb->index[s]];
        if (r->hash == h && strncmp(r->key, key, sizeof r->key) == 0) {
            return r;
        }
    }
    if (!create) {
        return NULL;
    }
    if (tb->n == TOP_ROWS_MAX) {
        tb->unfit_total++;
        return NULL;
    }
    struct top_row *r = &tb->rows[tb->n];
    memset(r, 0, sizeof *r);
    r->hash = h;
    memcpy(r->key, key, len + 1);
    for (int i = 0; i < TOP_NUMS; i++) {
        r->num[i] = NAN;
    }
    tb->index[s] = (int32_t)tb->n++;
    return r;
}

/* A row is dropped after three of its periods without an update: its own
 * gap between events, or the refresh delay when it updates faster. */
static uint64_t row_period(const struct top_row *r, uint64_t period_ns)
{
    return r->gap_ns > period_ns ? r->gap_ns : period_ns;
}

static void table_expire(struct top_table *tb, uint64_t now_ns, uint64_t period_ns)
{
    size_t kept = 0;
    for (size_t i = 0; i < tb->n; i++) {
        const struct top_row *r = &tb->rows[i];
        bool old = tb->expires && now_ns - r->seen_ns > 3 * row_period(r, period_ns);
        if (!old && !r->gone) {
            if (kept != i) {
                tb->rows[kept] = *r;
            }
            kept++;
        }
    }
    if (kept != tb->n) {
        tb->n = kept;
        table_reindex(tb);
    }
}

static void touch(struct top_row *r, uint64_t now_ns)
{
    if (r->seen_ns) {
        r->gap_ns = now_ns - r->seen_ns;
    }
    r->seen_ns = now_ns;
    r->gone = false;
}

/* ---- Reading events ---------------------------------------------------------- */

/* Copies a string, bytes outside printable ASCII as '?': a name can never
 * move the cursor or split a multibyte character at a column's edge. */
static void copy_clean(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap) {
        n = cap - 1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[n] = '\0';
}

static bool str_of(const msgpack_object *map, const char *key, char *out, size_t cap)
{
    const char *s;
    size_t n;
    if (!map || vigil_msgpack_str(vigil_msgpack_map_get(map, key, strlen(key)), &s, &n) != 0) {
        out[0] = '\0';
        return false;
    }
    copy_clean(out, cap, s, n);
    return true;
}

static double num_of(const msgpack_object *map, const char *key)
{
    double d;
    if (!map || vigil_msgpack_double(vigil_msgpack_map_get(map, key, strlen(key)), &d) != 0) {
        return NAN;
    }
    return d;
}

/* Appends s and a separator to a key being built; false when it is full. */
static bool key_add(char *key, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 2 > cap) {
        return false;
    }
    memcpy(key + *len, s, n);
    *len += n;
    key[(*len)++] = SEP;
    key[*len] = '\0';
    return true;
}

/* The row for host + the given parts, or NULL (too long a key: unfit). */
static struct top_row *row_for(struct top_table *tb, const char *host, const char *const *parts,
                               size_t nparts, bool create)
{
    char key[sizeof((struct top_row *)0)->key];
    size_t len = 0;
    key[0] = '\0';
    bool ok = key_add(key, sizeof key, &len, host);
    for (size_t i = 0; ok && i < nparts; i++) {
        ok = key_add(key, sizeof key, &len, parts[i]);
    }
    if (!ok) {
        tb->unfit_total += create;
        return NULL;
    }
    return table_get(tb, key, len, create);
}

/* The row an update is for, marked seen now, with its host and name set;
 * NULL when it does not fit. */
static struct top_row *row_update(struct top_table *tb, const char *host, const char *name,
                                  const char *const *parts, size_t nparts, uint64_t now)
{
    struct top_row *r = row_for(tb, host, parts, nparts, true);
    if (r) {
        touch(r, now);
        snprintf(r->host, sizeof r->host, "%s", host);
        snprintf(r->name, sizeof r->name, "%s", name);
    }
    return r;
}

enum {
    VM_EXITS,
    VM_IO,
    VM_MMIO,
    VM_HALT,
    VM_IRQ,
    VM_HCPU,
    VM_GCPU,
    VM_MEMOVH,
    VM_OVH,
    VM_OVHMAX,
    VM_VCPUS,
    VM_FIRING
};
enum { CG_CPU, CG_MEM, CG_MEMB, CG_PCPU, CG_PMEM, CG_PIO, CG_THR };
enum { PR_UP, PR_MS };
enum { AL_SEV, AL_SINCE };
enum { SF_DROPPED, SF_EXTERNAL, SF_LOST };

static void ingest_vm(struct top *t, const struct vigil_event_view *v, const char *host,
                      uint64_t now)
{
    char vm[160], pid[96];
    str_of(v->labels, "vm", vm, sizeof vm);
    str_of(v->labels, "pid", pid, sizeof pid);
    const char *parts[] = {vm, pid};
    struct top_row *r = row_update(&t->pane[TOP_VMS], host, vm, parts, 2, now);
    if (!r) {
        return;
    }
    memcpy(r->s[0], pid, sizeof r->s[0]);
    static const char *const keys[] = {
        [VM_EXITS] = "exits_per_s",     [VM_IO] = "io_exits_per_s",
        [VM_MMIO] = "mmio_exits_per_s", [VM_HALT] = "halt_exits_per_s",
        [VM_IRQ] = "irq_exits_per_s",   [VM_HCPU] = "host_cpu_pct",
        [VM_GCPU] = "guest_cpu_pct",    [VM_MEMOVH] = "memory_overhead_bytes",
        [VM_VCPUS] = "vcpus",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (keys[i]) {
            r->num[i] = num_of(v->values, keys[i]);
        }
    }
}

static void ingest_cgroup(struct top *t, const struct vigil_event_view *v, const char *host,
                          uint64_t now)
{
    char cg[160];
    str_of(v->labels, "cgroup", cg, sizeof cg);
    const char *parts[] = {cg};
    struct top_row *r = row_update(&t->pane[TOP_CGROUPS], host, cg, parts, 1, now);
    if (!r) {
        return;
    }
    if (!str_of(v->labels, "container", r->s[0], sizeof r->s[0])) {
        str_of(v->labels, "unit", r->s[0], sizeof r->s[0]);
    }
    r->num[CG_CPU] = num_of(v->values, "cpu_usage_pct");
    r->num[CG_MEM] = num_of(v->values, "memory_usage_pct");
    r->num[CG_MEMB] = num_of(v->values, "memory_current_bytes");
    r->num[CG_PCPU] = num_of(v->values, "cpu_pressure_some_pct");
    r->num[CG_PMEM] = num_of(v->values, "memory_pressure_some_pct");
    r->num[CG_PIO] = num_of(v->values, "io_pressure_some_pct");
    r->num[CG_THR] = num_of(v->values, "cpu_throttled_pct");
}

static void ingest_probe(struct top *t, const struct vigil_event_view *v, const char *host,
                         uint64_t now)
{
    char target[160], source[96];
    str_of(v->labels, "target", target, sizeof target);
    copy_clean(source, sizeof source, v->source, v->source_len);
    const char *parts[] = {source, target};
    struct top_row *r = row_update(&t->pane[TOP_PROBES], host, target, parts, 2, now);
    if (!r) {
        return;
    }
    str_of(v->labels, "address", r->s[0], sizeof r->s[0]);
    str_of(v->attrs, "error", r->s[1], sizeof r->s[1]);
    r->num[PR_UP] = num_of(v->values, "up");
    r->num[PR_MS] = num_of(v->values, "connect_ms");
}

static double severity_rank(const char *s)
{
    if (strcmp(s, "critical") == 0) {
        return 3;
    }
    if (strcmp(s, "warning") == 0) {
        return 2;
    }
    return strcmp(s, "info") == 0 ? 1 : 0;
}

/* The labels of a verdict that name its series: all but what the rule adds. */
static void series_of(const msgpack_object *labels, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < vigil_msgpack_len(labels); i++) {
        const char *k, *val;
        size_t kn, vn;
        const msgpack_object *o = vigil_msgpack_at(labels, i, &k, &kn);
        if (!k || vigil_msgpack_str(o, &val, &vn) != 0) {
            continue;
        }
        static const char *const skip[] = {"rule", "severity", "kind", "dominant"};
        bool skipped = false;
        for (size_t j = 0; j < 4; j++) {
            skipped |= strlen(skip[j]) == kn && memcmp(skip[j], k, kn) == 0;
        }
        if (skipped || len + kn + vn + 3 > cap) {
            continue;
        }
        if (len) {
            out[len++] = ' ';
        }
        copy_clean(out + len, cap - len, k, kn);
        len += kn;
        out[len++] = '=';
        copy_clean(out + len, cap - len, val, vn);
        len += vn;
    }
}

static void ingest_alert(struct top *t, const struct vigil_event_view *v, const char *host,
                         uint64_t now, bool fired)
{
    char fp[96], kind[32];
    str_of(v->labels, "kind", kind, sizeof kind);
    if (strcmp(kind, "bound") == 0) {
        /* The bound's verdict carries the VM's labels: show its O/O_max there. */
        char vm[160], pid[96];
        str_of(v->labels, "vm", vm, sizeof vm);
        str_of(v->labels, "pid", pid, sizeof pid);
        const char *parts[] = {vm, pid};
        struct top_row *r = row_for(&t->pane[TOP_VMS], host, parts, 2, false);
        if (r) {
            r->num[VM_OVH] = num_of(v->values, "overhead");
            r->num[VM_OVHMAX] = num_of(v->values, "overhead_max");
            r->num[VM_FIRING] = fired;
        }
    }
    if (!str_of(v->attrs, "fingerprint", fp, sizeof fp)) {
        return;
    }
    const char *parts[] = {fp};
    struct top_row *r = row_for(&t->pane[TOP_ALERTS], host, parts, 1, fired);
    if (!r) {
        return;
    }
    if (!fired) {
        r->gone = true;
        return;
    }
    touch(r, now);
    memcpy(r->host, host, sizeof r->host);
    str_of(v->labels, "rule", r->name, sizeof r->name);
    str_of(v->labels, "severity", r->s[0], sizeof r->s[0]);
    memcpy(r->s[1], kind, sizeof kind);
    series_of(v->labels, r->s[2], sizeof r->s[2]);
    str_of(v->attrs, "message", r->s[3], sizeof r->s[3]);
    r->num[AL_SEV] = severity_rank(r->s[0]);
    double since = num_of(v->attrs, "since");
    r->num[AL_SINCE] = isnan(since) ? (double)v->ts : since;
}

static void ingest_self(struct top *t, const struct vigil_event_view *v, const char *host,
                        uint64_t now)
{
    char stage[32], plugin[32], instance[64], rule[64];
    str_of(v->labels, "stage", stage, sizeof stage);
    str_of(v->labels, "plugin", plugin, sizeof plugin);
    str_of(v->labels, "instance", instance, sizeof instance);
    str_of(v->labels, "rule", rule, sizeof rule);
    const char *parts[] = {stage, plugin, instance, rule};
    struct top_row *r = row_update(&t->self, host, stage, parts, 4, now);
    if (!r) {
        return;
    }
    r->num[SF_DROPPED] = num_of(v->values, "dropped_total");
    r->num[SF_EXTERNAL] = num_of(v->values, "external_dropped_total");
    r->num[SF_LOST] = num_of(v->values, "lost_total");
}

static void note_host(struct top *t, const char *host, uint64_t now)
{
    for (size_t i = 0; i < t->nhosts; i++) {
        if (strcmp(t->hosts[i].name, host) == 0) {
            t->hosts[i].seen_ns = now;
            return;
        }
    }
    if (t->nhosts < TOP_HOSTS_MAX) {
        memcpy(t->hosts[t->nhosts].name, host, sizeof t->hosts[0].name);
        t->hosts[t->nhosts++].seen_ns = now;
    }
}

static bool topic_is(const struct vigil_event_view *v, const char *topic)
{
    size_t n = strlen(topic);
    return v->topic_len == n && memcmp(v->topic, topic, n) == 0;
}

void top_ingest(struct top *t, const struct vigil_event_view *v, uint64_t now_ns)
{
    char host[64];
    copy_clean(host, sizeof host, v->host, v->host_len);
    t->events_total++;
    note_host(t, host, now_ns);
    if (topic_is(v, "kvm.vm")) {
        ingest_vm(t, v, host, now_ns);
    } else if (topic_is(v, "cgroup.stats")) {
        ingest_cgroup(t, v, host, now_ns);
    } else if (topic_is(v, "tcp.probe")) {
        ingest_probe(t, v, host, now_ns);
    } else if (topic_is(v, "alert.fired")) {
        ingest_alert(t, v, host, now_ns, true);
    } else if (topic_is(v, "alert.resolved")) {
        ingest_alert(t, v, host, now_ns, false);
    } else if (topic_is(v, "vigil.self")) {
        ingest_self(t, v, host, now_ns);
    }
}

void top_tick(struct top *t, uint64_t now_ns)
{
    if (t->frame_ns && now_ns > t->frame_ns) {
        t->rate =
            (double)(t->events_total - t->frame_events) * 1e9 / (double)(now_ns - t->frame_ns);
    }
    t->frame_ns = now_ns;
    t->frame_events = t->events_total;
    for (int p = 0; p < TOP_NPANES; p++) {
        table_expire(&t->pane[p], now_ns, t->period_ns);
    }
    table_expire(&t->self, now_ns, t->period_ns);
    size_t kept = 0;
    for (size_t i = 0; i < t->nhosts; i++) {
        if (now_ns - t->hosts[i].seen_ns <= 3 * t->period_ns + 30000000000ull) {
            t->hosts[kept++] = t->hosts[i];
        }
    }
    t->nhosts = kept;
}

/* ---- Columns ------------------------------------------------------------------- */

enum fmt {
    F_NAME,
    F_HOST,
    F_STR,
    F_RATE,
    F_PCT,
    F_BYTES,
    F_MS,
    F_UP,
    F_OVH,
    F_COUNT,
    F_SEV,
    F_AGE
};

struct col {
    const char *title;
    char key;  /* sorts by this column */
    int width; /* 0: the name column, which takes the room left */
    enum fmt fmt;
    int field; /* num[] index, or s[] index for F_STR */
    bool asc;  /* sorted ascending by default (names; probes' up: down first) */
};

#define NAME_MIN 12
#define COLS_MAX 12

static const struct col vm_cols[] = {
    {"VM", 'v', 0, F_NAME, 0, true},
    {"HOST", 'h', 10, F_HOST, 0, true},
    {"PID", 'p', 7, F_STR, 0, true},
    {"VCPU", 'u', 4, F_COUNT, VM_VCPUS, false},
    {"EXITS/s", 'e', 8, F_RATE, VM_EXITS, false},
    {"IO/s", 'i', 7, F_RATE, VM_IO, false},
    {"MMIO/s", 'm', 7, F_RATE, VM_MMIO, false},
    {"HALT/s", 'a', 7, F_RATE, VM_HALT, false},
    {"IRQ/s", 'x', 7, F_RATE, VM_IRQ, false},
    {"HOST%", 'c', 6, F_PCT, VM_HCPU, false},
    {"GUEST%", 'g', 6, F_PCT, VM_GCPU, false},
    {"MEMOVH", 'w', 7, F_BYTES, VM_MEMOVH, false},
    {"OVH/MAX", 'o', 11, F_OVH, VM_OVH, false},
};
static const struct col cg_cols[] = {
    {"CGROUP", 'n', 0, F_NAME, 0, true},        {"HOST", 'h', 12, F_HOST, 0, true},
    {"CONTAINER", 't', 14, F_STR, 0, true},     {"CPU%", 'c', 7, F_PCT, CG_CPU, false},
    {"THROT%", 'l', 7, F_PCT, CG_THR, false},   {"MEM%", 'm', 7, F_PCT, CG_MEM, false},
    {"MEM", 'b', 8, F_BYTES, CG_MEMB, false},   {"PSI-CPU", 'p', 8, F_PCT, CG_PCPU, false},
    {"PSI-MEM", 'y', 8, F_PCT, CG_PMEM, false}, {"PSI-IO", 'i', 8, F_PCT, CG_PIO, false},
};
static const struct col pr_cols[] = {
    {"TARGET", 't', 0, F_NAME, 0, true},      {"HOST", 'h', 12, F_HOST, 0, true},
    {"ADDRESS", 'a', 22, F_STR, 0, true},     {"UP", 'u', 5, F_UP, PR_UP, true},
    {"CONNECT", 'c', 10, F_MS, PR_MS, false}, {"ERROR", 'e', 14, F_STR, 1, true},
};
static const struct col al_cols[] = {
    {"RULE", 'u', 18, F_NAME, 0, true},     {"SEVERITY", 's', 9, F_SEV, AL_SEV, false},
    {"KIND", 'k', 10, F_STR, 1, true},      {"HOST", 'h', 12, F_HOST, 0, true},
    {"FOR", 'f', 8, F_AGE, AL_SINCE, true}, {"SERIES", 'e', 0, F_STR, 2, true},
    {"MESSAGE", 'm', 30, F_STR, 3, true},
};

static const struct {
    const char *name;
    const struct col *cols;
    int ncols;
    int default_sort;
} panes[TOP_NPANES] = {
    [TOP_VMS] = {"VMs", vm_cols, sizeof vm_cols / sizeof vm_cols[0], 4},
    [TOP_CGROUPS] = {"Cgroups", cg_cols, sizeof cg_cols / sizeof cg_cols[0], 3},
    [TOP_PROBES] = {"Probes", pr_cols, sizeof pr_cols / sizeof pr_cols[0], 3},
    [TOP_ALERTS] = {"Alerts", al_cols, sizeof al_cols / sizeof al_cols[0], 1},
};

const char *top_pane_name(enum top_pane p)
{
    return panes[p].name;
}

struct top *top_new(const char *endpoint, uint64_t period_ns)
{
    struct top *t = calloc(1, sizeof *t);
    if (!t) {
        return NULL;
    }
    t->endpoint = endpoint;
    t->period_ns = period_ns;
    for (int p = 0; p < TOP_NPANES; p++) {
        t->sort_col[p] = panes[p].default_sort;
        if (table_init(&t->pane[p], p != TOP_ALERTS) != 0) {
            top_free(t);
            return NULL;
        }
    }
    if (table_init(&t->self, true) != 0) {
        top_free(t);
        return NULL;
    }
    return t;
}

void top_free(struct top *t)
{
    if (!t) {
        return;
    }
    for (int p = 0; p < TOP_NPANES; p++) {
        table_fini(&t->pane[p]);
    }
    table_fini(&t->self);
    free(t);
}

bool top_sort_key(struct top *t, enum top_pane p, int key)
{
    int n = panes[p].ncols;
    if (key == '<' || key == '>') {
        t->sort_col[p] = (t->sort_col[p] + (key == '<' ? n - 1 : 1)) % n;
        t->reverse[p] = false;
        return true;
    }
    if (key == 'r') {
        t->reverse[p] = !t->reverse[p];
        return true;
    }
    for (int i = 0; i < n; i++) {
        if (panes[p].cols[i].key == key) {
            t->reverse[p] = t->sort_col[p] == i ? !t->reverse[p] : false;
            t->sort_col[p] = i;
            return true;
        }
    }
    return false;
}

/* ---- Sorting ---------------------------------------------------------------- */

struct sort_ctx {
    const struct col *col;
    bool asc;
};

static const char *col_str(const struct top_row *r, const struct col *c)
{
    switch (c->fmt) {
    case F_NAME:
        return r->name;
    case F_HOST:
        return r->host;
    case F_STR:
        return r->s[c->field];
    default:
        return NULL;
    }
}

static int cmp_rows(const void *a, const void *b, void *arg)
{
    const struct sort_ctx *sc = arg;
    const struct top_row *x = *(const struct top_row *const *)a;
    const struct top_row *y = *(const struct top_row *const *)b;
    const char *xs = col_str(x, sc->col), *ys = col_str(y, sc->col);
    int c = 0;
    if (xs) {
        c = strcmp(xs, ys);
    } else {
        double xv = x->num[sc->col->field], yv = y->num[sc->col->field];
        /* Not reported sorts last whichever the direction. */
        if (isnan(xv) || isnan(yv)) {
            if (isnan(xv) != isnan(yv)) {
                return isnan(xv) ? 1 : -1;
            }
        } else {
            c = (xv > yv) - (xv < yv);
        }
    }
    if (c == 0) {
        /* Ties by name, then key: a stable order from frame to frame. */
        c = strcmp(x->name, y->name);
        return c ? c : strcmp(x->key, y->key);
    }
    return sc->asc ? c : -c;
}

/* ---- Rendering --------------------------------------------------------------- */

struct line {
    char text[TOP_LINE_MAX];
    int len, width;
};

/* Appends s in a cell of w columns (numbers right-aligned), cut to fit,
 * and a space; nothing past the line's width. */
static void cell(struct line *l, const char *s, int w, bool right)
{
    int n = (int)strlen(s);
    if (n > w) {
        n = w;
    }
    int room = l->width - l->len;
    if (room <= 0) {
        return;
    }
    int pad = w - n;
    int total = w + 1 < room ? w + 1 : room;
    char *p = l->text + l->len;
    int at = 0;
    if (right) {
        for (int i = 0; i < pad && at < total; i++) {
            p[at++] = ' ';
        }
    }
    for (int i = 0; i < n && at < total; i++) {
        p[at++] = s[i];
    }
    while (at < total) {
        p[at++] = ' ';
    }
    l->len += total;
    l->text[l->len] = '\0';
}

static void fmt_scaled(char *out, size_t cap, double v, const char *const *units, double step)
{
    int u = 0;
    while (fabs(v) >= 9999.5 && units[u + 1]) {
        v /= step;
        u++;
    }
    if (u == 0 || fabs(v) >= 99.95) {
        snprintf(out, cap, "%.0f%s", v, units[u]);
    } else {
        snprintf(out, cap, "%.1f%s", v, units[u]);
    }
}

static void fmt_age(char *out, size_t cap, double secs)
{
    if (secs < 0) {
        secs = 0;
    }
    if (secs < 120) {
        snprintf(out, cap, "%.0fs", secs);
    } else if (secs < 7200) {
        snprintf(out, cap, "%.0fm", secs / 60);
    } else if (secs < 172800) {
        snprintf(out, cap, "%.0fh", secs / 3600);
    } else {
        snprintf(out, cap, "%.0fd", secs / 86400);
    }
}

static void col_text(const struct top_row *r, const struct col *c, char *out, size_t cap)
{
    static const char *const plain[] = {"", "k", "M", "G", "T", NULL};
    static const char *const bytes[] = {"B", "K", "M", "G", "T", "P", NULL};
    const char *s = col_str(r, c);
    if (s) {
        snprintf(out, cap, "%s", s[0] ? s : "-");
        return;
    }
    double v = r->num[c->field];
    if (isnan(v) && c->fmt != F_OVH) {
        snprintf(out, cap, "-");
        return;
    }
    switch (c->fmt) {
    case F_RATE:
        fmt_scaled(out, cap, v, plain, 1000);
        break;
    case F_COUNT:
        snprintf(out, cap, "%.0f", v);
        break;
    case F_PCT:
        snprintf(out, cap, "%.1f", v);
        break;
    case F_BYTES:
        fmt_scaled(out, cap, v, bytes, 1024);
        break;
    case F_MS:
        snprintf(out, cap, v < 10 ? "%.2fms" : "%.0fms", v);
        break;
    case F_UP:
        snprintf(out, cap, "%s", v >= 1 ? "up" : "DOWN");
        break;
    case F_SEV:
        snprintf(out, cap, "%s", r->s[0][0] ? r->s[0] : "-");
        break;
    case F_AGE:
        fmt_age(out, cap, ((double)vigil_now_ns() - v) / 1e9);
        break;
    case F_OVH:
        if (isnan(v) || isnan(r->num[VM_OVHMAX])) {
            snprintf(out, cap, "-");
        } else {
            snprintf(out, cap, "%.3g/%.3g%s", v, r->num[VM_OVHMAX],
                     r->num[VM_FIRING] > 0 ? "!" : "");
        }
        break;
    default:
        snprintf(out, cap, "?");
    }
}

/* The width the name column gets: what the others leave, at least NAME_MIN. */
static int name_width(const struct col *cols, int ncols, int width)
{
    int fixed = 0, flex = 0;
    for (int i = 0; i < ncols; i++) {
        fixed += cols[i].width + 1;
        flex += cols[i].width == 0;
    }
    int w = flex ? (width - fixed - flex) / flex : 0;
    return w < NAME_MIN ? NAME_MIN : w;
}

void top_render_header(const struct top *t, enum top_pane current, bool tabs, int width,
                       top_emit_fn emit, void *arg)
{
    struct line l = {.width = width < TOP_LINE_MAX ? width : TOP_LINE_MAX - 1};
    char buf[TOP_LINE_MAX];
    double dropped = 0, external = 0, lost = 0;
    for (size_t i = 0; i < t->self.n; i++) {
        const struct top_row *r = &t->self.rows[i];
        dropped += isnan(r->num[SF_DROPPED]) ? 0 : r->num[SF_DROPPED];
        external += isnan(r->num[SF_EXTERNAL]) ? 0 : r->num[SF_EXTERNAL];
        lost += isnan(r->num[SF_LOST]) ? 0 : r->num[SF_LOST];
    }
    int n = snprintf(buf, sizeof buf, "vigil-top  %s  hosts:", t->endpoint);
    for (size_t i = 0; i < t->nhosts && n > 0 && (size_t)n < sizeof buf; i++) {
        n += snprintf(buf + n, sizeof buf - (size_t)n, "%s%s", i ? "," : " ", t->hosts[i].name);
    }
    if (t->nhosts == 0 && n > 0 && (size_t)n < sizeof buf) {
        n += snprintf(buf + n, sizeof buf - (size_t)n, " -");
    }
    if (n > 0 && (size_t)n < sizeof buf) {
        n += snprintf(buf + n, sizeof buf - (size_t)n, "  events/s: %.0f", t->rate);
    }
    if (t->self.n && n > 0 && (size_t)n < sizeof buf) {
        n += snprintf(buf + n, sizeof buf - (size_t)n,
                      "  dropped: %.0f  subscribers dropped: %.0f  lost: %.0f", dropped, external,
                      lost);
    }
    uint64_t unfit = 0;
    for (int p = 0; p < TOP_NPANES; p++) {
        unfit += t->pane[p].unfit_total;
    }
    if (unfit && n > 0 && (size_t)n < sizeof buf) {
        snprintf(buf + n, sizeof buf - (size_t)n, "  not shown (tables full): %llu",
                 (unsigned long long)unfit);
    }
    cell(&l, buf, l.width, false);
    emit(arg, l.text, TOP_A_HEADER);
    if (!tabs) {
        return;
    }

    l.len = 0;
    l.text[0] = '\0';
    n = 0;
    buf[0] = '\0';
    for (int p = 0; p < TOP_NPANES && n >= 0 && (size_t)n < sizeof buf; p++) {
        n += snprintf(buf + n, sizeof buf - (size_t)n,
                      p == (int)current ? "[%d %s: %zu]  " : " %d %s: %zu   ", p + 1, panes[p].name,
                      t->pane[p].n);
    }
    const struct col *sc = &panes[current].cols[t->sort_col[current]];
    bool asc = sc->asc != t->reverse[current];
    if (n >= 0 && (size_t)n < sizeof buf) {
        snprintf(buf + n, sizeof buf - (size_t)n, "sort: %s %s", sc->title, asc ? "asc" : "desc");
    }
    cell(&l, buf, l.width, false);
    emit(arg, l.text, TOP_A_NORMAL);
}

void top_render_pane(const struct top *t, enum top_pane p, int width, int max_rows, uint64_t now_ns,
                     top_emit_fn emit, void *arg)
{
    const struct col *cols = panes[p].cols;
    int ncols = panes[p].ncols;
    int nw = name_width(cols, ncols, width);
    int sort = t->sort_col[p];
    struct line l = {.width = width < TOP_LINE_MAX ? width : TOP_LINE_MAX - 1};
    for (int i = 0; i < ncols; i++) {
        char title[32];
        snprintf(title, sizeof title, "%s%s", cols[i].title, i == sort ? "*" : "");
        bool right = cols[i].fmt != F_NAME && cols[i].fmt != F_HOST && cols[i].fmt != F_STR;
        cell(&l, title, cols[i].width ? cols[i].width : nw, right);
    }
    emit(arg, l.text, TOP_A_TITLE);

    const struct top_table *tb = &t->pane[p];
    /* Sorting pointers, not rows: the table's order is its index's. The
     * array is the frame's only allocation. */
    const struct top_row **order = malloc((tb->n ? tb->n : 1) * sizeof *order);
    if (!order) {
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < tb->n; i++) {
        if (!tb->rows[i].gone) {
            order[n++] = &tb->rows[i];
        }
    }
    struct sort_ctx sc = {.col = &cols[sort], .asc = cols[sort].asc != t->reverse[p]};
    qsort_r(order, n, sizeof *order, cmp_rows, &sc);
    for (size_t i = 0; i < n && (max_rows < 0 || (int)i < max_rows); i++) {
        const struct top_row *r = order[i];
        l.len = 0;
        l.text[0] = '\0';
        for (int c = 0; c < ncols; c++) {
            char text[TOP_LINE_MAX];
            col_text(r, &cols[c], text, sizeof text);
            bool right = cols[c].fmt != F_NAME && cols[c].fmt != F_HOST && cols[c].fmt != F_STR;
            cell(&l, text, cols[c].width ? cols[c].width : nw, right);
        }
        enum top_attr a = TOP_A_NORMAL;
        bool hot = (p == TOP_VMS && r->num[VM_FIRING] > 0) ||
                   (p == TOP_PROBES && r->num[PR_UP] < 1) ||
                   (p == TOP_ALERTS && r->num[AL_SEV] >= 3);
        if (tb->expires && 2 * (now_ns - r->seen_ns) > 3 * row_period(r, t->period_ns)) {
            a = TOP_A_FADED; /* an update is overdue: it goes at three periods */
        } else if (hot) {
            a = TOP_A_HOT;
        }
        emit(arg, l.text, a);
    }
    free(order);
}

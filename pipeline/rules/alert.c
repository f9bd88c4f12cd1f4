/* The stateful alert machine (alert.h) that kind: threshold and kind: bound
 * share. A series (the rule + host + the group_by labels) goes
 * inactive -> pending (`for`) -> firing -> resolved, with exactly one
 * alert.fired and one alert.resolved per episode (plus renotify repeats),
 * and is forgotten once resolved or silent past `stale`. Only pending and
 * firing series hold memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert.h"

#define STALE_FALLBACK_NS (300ull * 1000000000ull) /* before a gap is known */
#define KEY_MAX 4096

struct series {
    struct series *next;
    uint64_t hash;
    char *key; /* host \0 k1 \0 v1 \0 ... */
    size_t key_len;
    char fingerprint[17];
    bool firing;
    uint64_t since, last_seen, last_notify, gap_ns;
    char *host;
    size_t host_len;
    char *labels; /* msgpack map of the labels when it fired, for stale */
    size_t labels_len;
};

struct vigil_alerts {
    struct vigil_alert_params p;
    struct series **buckets;
    size_t nbuckets, n;
    char key[KEY_MAX];
};

/* ---- Parameters -------------------------------------------------------------- */

int vigil__alert_params_read(const struct vigil_conf *node, struct vigil_alert_params *p,
                             struct vigil_diag *d)
{
    memset(p, 0, sizeof *p);
    vigil_conf_duration(vigil_conf_get(node, "for"), &p->for_ns);
    vigil_conf_duration(vigil_conf_get(node, "renotify"), &p->renotify_ns);
    vigil_conf_duration(vigil_conf_get(node, "stale"), &p->stale_ns);
    int64_t max = 100000;
    const struct vigil_conf *mn = vigil_conf_get(node, "max_series");
    vigil_conf_int(mn, &max);
    if (max < 1) {
        vigil_diag_at(d, mn, "max_series must be 1 or more");
        return VIGIL_ECONFIG;
    }
    p->max_series = (size_t)max;
    const struct vigil_conf *g = vigil_conf_get(node, "group_by");
    if (g) {
        p->ngroup = vigil_conf_len(g);
        p->group_by = calloc(p->ngroup ? p->ngroup : 1, sizeof *p->group_by);
        p->group_len = calloc(p->ngroup ? p->ngroup : 1, sizeof *p->group_len);
        if (!p->group_by || !p->group_len) {
            vigil__alert_params_fini(p);
            return -ENOMEM;
        }
        for (size_t i = 0; i < p->ngroup; i++) {
            const char *s;
            if (vigil_conf_string(vigil_conf_at(g, i, NULL), &s) != 0) {
                vigil_diag_at(d, vigil_conf_at(g, i, NULL), "group_by lists label names");
                vigil__alert_params_fini(p);
                return VIGIL_ECONFIG;
            }
            p->group_by[i] = strdup(s);
            if (!p->group_by[i]) {
                vigil__alert_params_fini(p);
                return -ENOMEM;
            }
            p->group_len[i] = strlen(s);
        }
    }
    return 0;
}

void vigil__alert_params_fini(struct vigil_alert_params *p)
{
    for (size_t i = 0; p->group_by && i < p->ngroup; i++) {
        free(p->group_by[i]);
    }
    free(p->group_by);
    free(p->group_len);
    p->group_by = NULL;
    p->group_len = NULL;
}

/* ---- Series table -------------------------------------------------------------- */

struct vigil_alerts *vigil__alerts_new(const struct vigil_alert_params *p)
{
    struct vigil_alerts *a = calloc(1, sizeof *a);
    if (!a) {
        return NULL;
    }
    a->p = *p;
    a->nbuckets = 64;
    a->buckets = calloc(a->nbuckets, sizeof *a->buckets);
    if (!a->buckets) {
        free(a);
        return NULL;
    }
    return a;
}

static void series_free(struct series *s)
{
    free(s->key);
    free(s->host);
    free(s->labels);
    free(s);
}

void vigil__alerts_free(struct vigil_alerts *a)
{
    if (!a) {
        return;
    }
    for (size_t i = 0; i < a->nbuckets; i++) {
        for (struct series *s = a->buckets[i], *next; s; s = next) {
            next = s->next;
            series_free(s);
        }
    }
    free(a->buckets);
    vigil__alert_params_fini(&a->p);
    free(a);
}

static void grow(struct vigil_alerts *a)
{
    size_t nb = a->nbuckets * 2;
    struct series **b = calloc(nb, sizeof *b);
    if (!b) {
        return; /* keep the longer chains */
    }
    for (size_t i = 0; i < a->nbuckets; i++) {
        for (struct series *s = a->buckets[i], *next; s; s = next) {
            next = s->next;
            s->next = b[s->hash & (nb - 1)];
            b[s->hash & (nb - 1)] = s;
        }
    }
    free(a->buckets);
    a->buckets = b;
    a->nbuckets = nb;
}

static void unlink_series(struct vigil_alerts *a, struct series *s)
{
    struct series **pp = &a->buckets[s->hash & (a->nbuckets - 1)];
    while (*pp && *pp != s) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = s->next;
        a->n--;
    }
}

static bool append(char *key, size_t *len, const char *s, size_t n)
{
    if (*len + n + 1 > KEY_MAX) {
        return false;
    }
    memcpy(key + *len, s, n);
    *len += n;
    key[(*len)++] = '\0';
    return true;
}

/* The series key: host, then the group_by labels (or all labels, sorted by
 * name so label order in the event does not matter). Into a->key; returns
 * its length, 0 if it does not fit. */
static size_t series_key(struct vigil_alerts *a, const struct vigil_event_view *ev)
{
    size_t len = 0;
    if (!append(a->key, &len, ev->host, ev->host_len)) {
        return 0;
    }
    const msgpack_object *labels = ev->labels;
    if (a->p.group_by) {
        for (size_t i = 0; i < a->p.ngroup; i++) {
            const char *v = "";
            size_t vn = 0;
            const char *g = a->p.group_by[i];
            size_t gn = a->p.group_len[i];
            vigil_msgpack_str(vigil_msgpack_map_get(labels, g, gn), &v, &vn);
            if (!append(a->key, &len, g, gn) || !append(a->key, &len, v, vn)) {
                return 0;
            }
        }
        return len;
    }
    uint32_t n = labels ? labels->via.map.size : 0;
    const msgpack_object_kv *order[64];
    if (n > 64) {
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) { /* insertion sort: few labels */
        const msgpack_object_kv *kv = &labels->via.map.ptr[i];
        uint32_t j = i;
        while (j > 0) {
            const msgpack_object *pk = &order[j - 1]->key, *k = &kv->key;
            size_t ln = pk->via.str.size < k->via.str.size ? pk->via.str.size : k->via.str.size;
            int c = memcmp(pk->via.str.ptr, k->via.str.ptr, ln);
            if (c < 0 || (c == 0 && pk->via.str.size <= k->via.str.size)) {
                break;
            }
            order[j] = order[j - 1];
            j--;
        }
        order[j] = kv;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *v;
        size_t kn, vn;
        vigil_msgpack_str(&order[i]->key, &k, &kn);
        vigil_msgpack_str(&order[i]->val, &v, &vn);
        if (!append(a->key, &len, k, kn) || !append(a->key, &len, v, vn)) {
            return 0;
        }
    }
    return len;
}

static struct series *lookup(struct vigil_alerts *a, uint64_t h, size_t len)
{
    for (struct series *s = a->buckets[h & (a->nbuckets - 1)]; s; s = s->next) {
        if (s->hash == h && s->key_len == len && memcmp(s->key, a->key, len) == 0) {
            return s;
        }
    }
    return NULL;
}

static struct series *insert(struct vigil_alerts *a, const struct vigil_rule *rule, uint64_t h,
                             size_t len, const struct vigil_event_view *ev)
{
    struct series *s = calloc(1, sizeof *s);
    if (!s || !(s->key = malloc(len)) || !(s->host = malloc(ev->host_len + 1))) {
        if (s) {
            free(s->key);
            free(s);
        }
        return NULL;
    }
    memcpy(s->key, a->key, len);
    s->key_len = len;
    s->hash = h;
    memcpy(s->host, ev->host, ev->host_len);
    s->host_len = ev->host_len;
    /* Fingerprint: stable per rule + identifying labels, across restarts. */
    uint64_t fp = vigil__hash(VIGIL_HASH_INIT, rule->name, strlen(rule->name) + 1);
    fp = vigil__hash(fp, a->key, len);
    snprintf(s->fingerprint, sizeof s->fingerprint, "%016llx", (unsigned long long)fp);
    if (a->n + 1 > a->nbuckets) {
        grow(a);
    }
    s->next = a->buckets[h & (a->nbuckets - 1)];
    a->buckets[h & (a->nbuckets - 1)] = s;
    a->n++;
    return s;
}

/* ---- Verdicts ------------------------------------------------------------------- */

static void keep_labels(struct series *s, const struct vigil_event_view *ev)
{
    free(s->labels);
    s->labels = NULL;
    s->labels_len = 0;
    if (!ev->labels) {
        return;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *ev->labels);
    s->labels = sb.data; /* taken over from the sbuffer */
    s->labels_len = sb.size;
}

static void fired(struct vigil_rule *rule, struct series *s, const struct vigil_event_view *ev,
                  bool repeat, struct vigil_emit *out, vigil_alert_values_fn values, void *ctx)
{
    struct vigil_event_builder *b = vigil__verdict_begin(out, rule, "alert.fired", ev);
    if (values) {
        values(ctx, out, ev);
    }
    char fallback[512];
    snprintf(fallback, sizeof fallback, "%s: %s", rule->name, repeat ? "still firing" : "firing");
    vigil__verdict_message(out, rule, ev, fallback);
    vigil_event_add_attr_str(b, "fingerprint", s->fingerprint);
    vigil_event_add_attr_i64(b, "since", (int64_t)s->since);
    if (repeat) {
        vigil_event_add_attr_bool(b, "renotify", true);
    }
    vigil__verdict_emit(out);
    vigil_count(&rule->stats.fired_total, 1);
}

static void resolved(struct vigil_rule *rule, struct series *s, const struct vigil_event_view *ev,
                     uint64_t now, struct vigil_emit *out, vigil_alert_values_fn values, void *ctx,
                     const char *reason)
{
    struct vigil_event_builder *b;
    if (ev) {
        b = vigil__verdict_begin(out, rule, "alert.resolved", ev);
        if (values) {
            values(ctx, out, ev);
        }
    } else {
        b = vigil__verdict_begin_stored(out, rule, "alert.resolved", s->host, s->host_len,
                                        s->labels, s->labels_len);
        vigil_event_add_attr_str(b, "reason", reason);
    }
    char fallback[512];
    snprintf(fallback, sizeof fallback, "%s: resolved%s", rule->name,
             ev                               ? ""
             : strcmp(reason, "stale") == 0   ? " (the series stopped reporting)"
             : strcmp(reason, "changed") == 0 ? " (the rule was changed by a reload)"
                                              : " (the rule was removed by a reload)");
    vigil__verdict_message(out, rule, ev, fallback);
    vigil_event_add_attr_str(b, "fingerprint", s->fingerprint);
    vigil_event_add_attr_i64(b, "since", (int64_t)s->since);
    vigil_event_add_attr_i64(b, "duration_ns", (int64_t)(now - s->since));
    vigil__verdict_emit(out);
    vigil_count(&rule->stats.resolved_total, 1);
}

/* ---- The machine ------------------------------------------------------------------ */

void vigil__alerts_observe(struct vigil_alerts *a, struct vigil_rule *rule,
                           const struct vigil_event_view *ev, bool active, bool clear, uint64_t now,
                           struct vigil_emit *out, vigil_alert_values_fn values, void *ctx)
{
    if (!active && a->n == 0) {
        return; /* nothing pending or firing: nothing to look up */
    }
    vigil_event_tree(ev); /* the series key reads the labels */
    size_t len = series_key(a, ev);
    if (len == 0) {
        vigil_count(&rule->stats.dropped_total, 1);
        return;
    }
    uint64_t h = vigil__hash(VIGIL_HASH_INIT, a->key, len);
    struct series *s = lookup(a, h, len);
    if (!s) {
        if (!active) {
            return; /* inactive series hold no state */
        }
        if (a->n >= a->p.max_series) {
            vigil_count(&rule->stats.dropped_total, 1);
            return;
        }
        s = insert(a, rule, h, len, ev);
        if (!s) {
            vigil_count(&rule->stats.dropped_total, 1);
            return;
        }
        vigil_count(&rule->stats.series, 1);
        s->since = now;
        s->last_seen = now;
    } else {
        uint64_t gap = now > s->last_seen ? now - s->last_seen : 0;
        /* A smoothed gap, for the default staleness. */
        s->gap_ns = s->gap_ns ? (s->gap_ns * 3 + gap) / 4 : gap;
        s->last_seen = now;
    }
    if (!s->firing) {
        if (!active) {
            unlink_series(a, s); /* pending, then not: no verdict */
            series_free(s);
            atomic_fetch_sub(&rule->stats.series, 1);
            return;
        }
        if (now - s->since >= a->p.for_ns) {
            s->firing = true;
            s->last_notify = now;
            keep_labels(s, ev);
            fired(rule, s, ev, false, out, values, ctx);
        }
        return;
    }
    if (clear) {
        resolved(rule, s, ev, now, out, values, ctx, NULL);
        unlink_series(a, s);
        series_free(s);
        atomic_fetch_sub(&rule->stats.series, 1);
        return;
    }
    if (a->p.renotify_ns && now - s->last_notify >= a->p.renotify_ns) {
        s->last_notify = now;
        fired(rule, s, ev, true, out, values, ctx);
    }
}

void vigil__alerts_tick(struct vigil_alerts *a, struct vigil_rule *rule, uint64_t now,
                        struct vigil_emit *out)
{
    for (size_t i = 0; i < a->nbuckets; i++) {
        for (struct series *s = a->buckets[i], *next; s; s = next) {
            next = s->next;
            uint64_t stale = a->p.stale_ns ? a->p.stale_ns
                             : s->gap_ns   ? 5 * s->gap_ns
                                           : STALE_FALLBACK_NS;
            if (now - s->last_seen < stale) {
                continue;
            }
            if (s->firing) {
                resolved(rule, s, NULL, now, out, NULL, NULL, "stale");
            }
            unlink_series(a, s);
            series_free(s);
            atomic_fetch_sub(&rule->stats.series, 1);
        }
    }
}

void vigil__alerts_retire(struct vigil_alerts *a, struct vigil_rule *rule, uint64_t now,
                          const char *reason, struct vigil_emit *out)
{
    for (size_t i = 0; i < a->nbuckets; i++) {
        for (struct series *s = a->buckets[i], *next; s; s = next) {
            next = s->next;
            if (s->firing) {
                resolved(rule, s, NULL, now, out, NULL, NULL, reason);
            }
            unlink_series(a, s);
            series_free(s);
            atomic_fetch_sub(&rule->stats.series, 1);
        }
    }
}

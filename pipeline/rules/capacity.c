/* The capacity kind's ledger (capacity.h): per host, what it has and what
 * its containers and VMs reserve, kept exact as contributors come, change
 * and go. Which cgroups count, nesting, a VM met through kvm.vm and its
 * cgroup, unlimited and stale ones: docs/rules.md, kind: capacity.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "capacity.h"
#include "glob.h"

/* ---- Tables -------------------------------------------------------------------- */

struct cap_host *vigil__cap_host(struct cap_ledger *c, const char *name, size_t len)
{
    uint64_t h = vigil__hash(VIGIL_HASH_INIT, name, len);
    for (struct cap_host *x = c->hbuckets[h & (CAP_HOST_BUCKETS - 1)]; x; x = x->next) {
        if (x->hash == h && x->len == len && memcmp(x->name, name, len) == 0) {
            return x;
        }
    }
    if (c->nhosts >= c->max) {
        return NULL;
    }
    struct cap_host *x = calloc(1, sizeof *x);
    if (!x || !(x->name = malloc(len + 1))) {
        free(x);
        return NULL;
    }
    memcpy(x->name, name, len);
    x->name[len] = '\0';
    x->len = len;
    x->hash = h;
    x->next = c->hbuckets[h & (CAP_HOST_BUCKETS - 1)];
    c->hbuckets[h & (CAP_HOST_BUCKETS - 1)] = x;
    c->nhosts++;
    return x;
}

static void host_remove(struct cap_ledger *c, struct cap_host *h)
{
    struct cap_host **pp = &c->hbuckets[h->hash & (CAP_HOST_BUCKETS - 1)];
    while (*pp && *pp != h) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = h->next;
        c->nhosts--;
    }
    free(h->name);
    free(h);
}

/* c->key = host \0 kind name; returns its length, 0 when too long. */
static size_t make_key(struct cap_ledger *c, const struct cap_host *h, char kind, const char *name,
                       size_t len)
{
    if (h->len + 2 + len > CAP_KEY_MAX) {
        return 0;
    }
    memcpy(c->key, h->name, h->len);
    c->key[h->len] = '\0';
    c->key[h->len + 1] = kind;
    memcpy(c->key + h->len + 2, name, len);
    return h->len + 2 + len;
}

static struct cap_contrib *lookup(struct cap_ledger *c, size_t len, uint64_t hash)
{
    for (struct cap_contrib *x = c->buckets[hash & (c->nbuckets - 1)]; x; x = x->next) {
        if (x->hash == hash && x->key_len == len && memcmp(x->key, c->key, len) == 0) {
            return x;
        }
    }
    return NULL;
}

static void grow(struct cap_ledger *c)
{
    size_t nb = c->nbuckets * 2;
    struct cap_contrib **b = calloc(nb, sizeof *b);
    if (!b) {
        return; /* longer chains */
    }
    for (size_t i = 0; i < c->nbuckets; i++) {
        for (struct cap_contrib *x = c->buckets[i], *next; x; x = next) {
            next = x->next;
            x->next = b[x->hash & (nb - 1)];
            b[x->hash & (nb - 1)] = x;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = nb;
}

static struct cap_contrib *insert(struct cap_ledger *c, struct cap_host *h, size_t len,
                                  uint64_t hash)
{
    if (c->n >= c->max) {
        return NULL;
    }
    struct cap_contrib *x = calloc(1, sizeof *x);
    if (!x || !(x->key = malloc(len + 1))) {
        free(x);
        return NULL;
    }
    memcpy(x->key, c->key, len);
    x->key[len] = '\0';
    x->key_len = len;
    x->kind = c->key[h->len + 1];
    x->name = x->key + h->len + 2;
    x->hash = hash;
    x->host = h;
    if (c->n + 1 > c->nbuckets) {
        grow(c);
    }
    x->next = c->buckets[hash & (c->nbuckets - 1)];
    c->buckets[hash & (c->nbuckets - 1)] = x;
    x->host_next = h->first;
    if (h->first) {
        h->first->host_prev = x;
    }
    h->first = x;
    c->n++;
    return x;
}

/* Takes x's share out of its host's totals. */
static void untotal(struct cap_contrib *x)
{
    if (!x->in_total) {
        return;
    }
    for (int r = 0; r < CAP_NRES; r++) {
        x->host->reserved[r] -= x->counted[r];
        x->host->unlimited[r] -= x->unlimited[r];
    }
    x->host->counted--;
    x->in_total = false;
}

static void contrib_remove(struct cap_ledger *c, struct cap_contrib *x)
{
    c->nest_gen += x->kind == 'c' && x->in_total;
    untotal(x);
    struct cap_contrib **pp = &c->buckets[x->hash & (c->nbuckets - 1)];
    while (*pp && *pp != x) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = x->next;
        c->n--;
    }
    if (x->host_prev) {
        x->host_prev->host_next = x->host_next;
    } else {
        x->host->first = x->host_next;
    }
    if (x->host_next) {
        x->host_next->host_prev = x->host_prev;
    }
    free(x->key);
    free(x->cg_path);
    free(x);
}

/* ---- Counting ------------------------------------------------------------------ */

/* What x reserves now, into its host's totals: per resource the larger of
 * its cgroup's limit and its VM's size (a VM's cgroup also holds the VMM);
 * neither known: unlimited, counted as `unlimited` says. Nested: nothing. */
static void settle(struct cap_ledger *c, struct cap_contrib *x)
{
    bool was = x->in_total;
    untotal(x);
    if (!x->nested && (x->cg_seen || x->vm_seen)) {
        for (int r = 0; r < CAP_NRES; r++) {
            bool known = false;
            int64_t v = 0;
            if (x->cg_seen && x->cg_limited[r]) {
                v = x->cg[r];
                known = true;
            }
            if (x->vm_seen && x->vm_known[r] && (!known || x->vm[r] > v)) {
                v = x->vm[r];
                known = true;
            }
            x->counted[r] = known ? v : c->unlimited_as[r];
            x->unlimited[r] = !known;
            x->host->reserved[r] += x->counted[r];
            x->host->unlimited[r] += x->unlimited[r];
        }
        x->host->counted++;
        x->in_total = true;
    }
    if (x->kind == 'c' && was != x->in_total) {
        c->nest_gen++; /* a cgroup joined or left the sums */
    }
}

/* True when `anc` is a strict ancestor of `path` ("/a" of "/a/b"; "/" of
 * every other path). */
static bool below(const char *anc, size_t alen, const char *path, size_t plen)
{
    if (alen == 1 && anc[0] == '/') {
        return plen > 1;
    }
    return plen > alen && path[alen] == '/' && memcmp(anc, path, alen) == 0;
}

/* Whether a counted cgroup ('c') of the host holds `path`: its ancestors are
 * looked up one by one (a hash lookup per level). */
static bool has_counted_ancestor(struct cap_ledger *c, struct cap_host *h, const char *path,
                                 size_t len, uint64_t now)
{
    for (size_t n = len; n > 1;) {
        while (n > 0 && path[n - 1] != '/') {
            n--;
        }
        size_t alen = n > 1 ? n - 1 : 1; /* "/a/" -> "/a"; "/" stays */
        size_t kl = make_key(c, h, 'c', path, alen);
        if (kl) {
            struct cap_contrib *a = lookup(c, kl, vigil__hash(VIGIL_HASH_INIT, c->key, kl));
            if (a && !a->nested && vigil__cap_fresh(a->cg_seen, now, c->stale_ns)) {
                return true;
            }
        }
        n = alen == 1 ? 0 : alen;
    }
    return false;
}

/* A newly counted cgroup: what the host already has below it is nested. */
static void nest_below(struct cap_ledger *c, struct cap_contrib *top)
{
    size_t tl = strlen(top->name);
    for (struct cap_contrib *x = top->host->first; x; x = x->host_next) {
        const char *p = x->kind == 'c' ? x->name : x->cg_path;
        if (x != top && p && !x->nested && below(top->name, tl, p, strlen(p))) {
            x->nested = true;
            settle(c, x);
        }
    }
}

static bool selected(const struct cap_ledger *c, const struct vigil_event_view *ev,
                     const char *path, size_t len)
{
    if (c->globs) {
        for (size_t i = 0; i < c->nglobs; i++) {
            if (vigil_glob_match(c->globs[i], path, len)) {
                return true;
            }
        }
        return false;
    }
    return vigil_msgpack_map_get(ev->labels, "container", 9) ||
           vigil_msgpack_map_get(ev->labels, "vm", 2);
}

static bool value_of(const struct vigil_event_view *ev, const char *k, double *out)
{
    return vigil_msgpack_double(vigil_msgpack_map_get(ev->values, k, strlen(k)), out) == 0 &&
           *out >= 0 && isfinite(*out);
}

bool vigil__cap_cgroup(struct cap_ledger *c, struct cap_host *h, const struct vigil_event_view *ev,
                       uint64_t now)
{
    const char *path, *vm;
    size_t len, vlen;
    if (vigil_msgpack_str(vigil_msgpack_map_get(ev->labels, "cgroup", 6), &path, &len) != 0 ||
        len == 0 || !selected(c, ev, path, len)) {
        return true; /* not one that counts */
    }
    bool is_vm =
        c->vms && vigil_msgpack_str(vigil_msgpack_map_get(ev->labels, "vm", 2), &vm, &vlen) == 0;
    size_t kl = is_vm ? make_key(c, h, 'v', vm, vlen) : make_key(c, h, 'c', path, len);
    if (!kl) {
        return false;
    }
    uint64_t hash = vigil__hash(VIGIL_HASH_INIT, c->key, kl);
    struct cap_contrib *x = lookup(c, kl, hash);
    bool fresh_top = false, moved = false;
    if (!x) {
        if (!(x = insert(c, h, kl, hash))) {
            return false;
        }
        fresh_top = !is_vm;
    }
    if (is_vm) {
        /* A VM's scope and the cgroups below it (emulator, vcpuN) all carry
         * its name: the top-most one speaks for it. */
        size_t pl = x->cg_path ? strlen(x->cg_path) : 0;
        if (x->cg_path && vigil__cap_fresh(x->cg_seen, now, c->stale_ns) &&
            below(x->cg_path, pl, path, len)) {
            return true;
        }
        if (!x->cg_path || pl != len || memcmp(x->cg_path, path, len) != 0) {
            moved = true;
            char *np = malloc(len + 1); /* a VM's cgroup changes rarely */
            if (!np) {
                return false;
            }
            memcpy(np, path, len);
            np[len] = '\0';
            free(x->cg_path);
            x->cg_path = np;
        }
    }
    double v;
    x->cg_limited[CAP_MEM] = value_of(ev, "memory_max_bytes", &v);
    x->cg[CAP_MEM] = x->cg_limited[CAP_MEM] ? (int64_t)llround(v) : 0;
    x->cg_limited[CAP_CPU] = value_of(ev, "cpu_max_cpus", &v);
    x->cg[CAP_CPU] = x->cg_limited[CAP_CPU] ? (int64_t)llround(v * cap_unit(CAP_CPU)) : 0;
    bool was_counted = x->in_total;
    x->cg_seen = now;
    if (x->nest_gen != c->nest_gen || moved) {
        x->nested = has_counted_ancestor(c, h, is_vm ? x->cg_path : path, len, now);
        x->nest_gen = c->nest_gen;
    }
    settle(c, x);
    if (!is_vm && x->in_total && (fresh_top || !was_counted)) {
        nest_below(c, x);
    }
    return true;
}

bool vigil__cap_vm(struct cap_ledger *c, struct cap_host *h, const struct vigil_event_view *ev,
                   uint64_t now)
{
    const char *vm;
    size_t vlen;
    if (!c->vms ||
        (vigil_msgpack_str(vigil_msgpack_map_get(ev->labels, "vm", 2), &vm, &vlen) != 0 &&
         vigil_msgpack_str(vigil_msgpack_map_get(ev->labels, "pid", 3), &vm, &vlen) != 0)) {
        return true;
    }
    size_t kl = make_key(c, h, 'v', vm, vlen);
    if (!kl) {
        return false;
    }
    uint64_t hash = vigil__hash(VIGIL_HASH_INIT, c->key, kl);
    struct cap_contrib *x = lookup(c, kl, hash);
    if (!x && !(x = insert(c, h, kl, hash))) {
        return false;
    }
    double v;
    x->vm_known[CAP_CPU] = value_of(ev, "vcpus", &v) && v > 0;
    x->vm[CAP_CPU] = x->vm_known[CAP_CPU] ? (int64_t)llround(v * cap_unit(CAP_CPU)) : 0;
    x->vm_known[CAP_MEM] = value_of(ev, "guest_memory_bytes", &v) && v > 0;
    x->vm[CAP_MEM] = x->vm_known[CAP_MEM] ? (int64_t)llround(v) : 0;
    x->vm_seen = now;
    settle(c, x);
    return true;
}

void vigil__cap_system(struct cap_host *h, const struct vigil_event_view *ev, uint64_t now)
{
    double cpus, mem;
    if (!value_of(ev, "cpu_count", &cpus) || !value_of(ev, "memory_total_bytes", &mem)) {
        return;
    }
    h->capacity[CAP_CPU] = (int64_t)llround(cpus * cap_unit(CAP_CPU));
    h->capacity[CAP_MEM] = (int64_t)llround(mem);
    h->capacity_seen = now;
}

/* Forgets what was not reported for `stale`: a side of a contributor, a
 * contributor with neither, a host with nothing left. */
void vigil__cap_sweep(struct cap_ledger *c, uint64_t now)
{
    for (size_t i = 0; i < CAP_HOST_BUCKETS; i++) {
        for (struct cap_host *h = c->hbuckets[i], *hnext; h; h = hnext) {
            hnext = h->next;
            for (struct cap_contrib *x = h->first, *next; x; x = next) {
                next = x->host_next;
                bool cg = vigil__cap_fresh(x->cg_seen, now, c->stale_ns);
                bool vm = vigil__cap_fresh(x->vm_seen, now, c->stale_ns);
                if (!cg && !vm) {
                    contrib_remove(c, x);
                    continue;
                }
                if (!cg && x->cg_seen) {
                    x->cg_seen = 0;
                    free(x->cg_path);
                    x->cg_path = NULL;
                    x->nested = false; /* a VM left with its kvm.vm figures */
                    settle(c, x);
                } else if (!vm && x->vm_seen) {
                    x->vm_seen = 0;
                    settle(c, x);
                }
            }
            if (!h->first && !vigil__cap_fresh(h->capacity_seen, now, c->stale_ns)) {
                host_remove(c, h);
            }
        }
    }
}

int vigil__cap_init(struct cap_ledger *c)
{
    c->nest_gen = 1;    /* a new contributor's 0 never matches */
    c->nbuckets = 1024; /* sized at load: grows only past a contributor per bucket */
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    return c->buckets ? 0 : -ENOMEM;
}

void vigil__cap_fini(struct cap_ledger *c)
{
    for (size_t i = 0; c->buckets && i < c->nbuckets; i++) {
        for (struct cap_contrib *x = c->buckets[i], *next; x; x = next) {
            next = x->next;
            free(x->key);
            free(x->cg_path);
            free(x);
        }
    }
    free(c->buckets);
    c->buckets = NULL;
    for (size_t i = 0; i < CAP_HOST_BUCKETS; i++) {
        for (struct cap_host *h = c->hbuckets[i], *next; h; h = next) {
            next = h->next;
            free(h->name);
            free(h);
        }
        c->hbuckets[i] = NULL;
    }
    for (size_t i = 0; c->globs && i < c->nglobs; i++) {
        free(c->globs[i]);
    }
    free(c->globs);
    c->globs = NULL;
}

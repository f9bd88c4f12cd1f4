/* The (host, source) table (seqtab.h): FNV-1a over both names, open
 * addressing with linear probing, kept at most half full.
 */
#include "seqtab.h"

#include <stdlib.h>
#include <string.h>

#define FIRST_CAP 256

void vigil_seqtab_init(struct vigil_seqtab *t, size_t max)
{
    *t = (struct vigil_seqtab){.max = max};
}

void vigil_seqtab_fini(struct vigil_seqtab *t)
{
    for (size_t i = 0; i < t->cap; i++) {
        free(t->slots[i].key);
        free(t->slots[i].data);
    }
    free(t->slots);
    *t = (struct vigil_seqtab){.max = t->max};
}

static uint64_t fnv1a(const char *a, size_t an, const char *b, size_t bn)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < an; i++) {
        h = (h ^ (unsigned char)a[i]) * 1099511628211ull;
    }
    h = (h ^ 0) * 1099511628211ull;
    for (size_t i = 0; i < bn; i++) {
        h = (h ^ (unsigned char)b[i]) * 1099511628211ull;
    }
    return h;
}

static int grow(struct vigil_seqtab *t)
{
    size_t cap = t->cap ? t->cap * 2 : FIRST_CAP;
    struct vigil_seq_entry *s = calloc(cap, sizeof *s);
    if (!s) {
        return -1;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].key) {
            size_t j = t->slots[i].hash & (cap - 1);
            while (s[j].key) {
                j = (j + 1) & (cap - 1);
            }
            s[j] = t->slots[i];
        }
    }
    free(t->slots);
    t->slots = s;
    t->cap = cap;
    return 0;
}

struct vigil_seq_entry *vigil_seqtab_get(struct vigil_seqtab *t, const char *host, size_t host_len,
                                         const char *source, size_t source_len, int *added)
{
    uint64_t h = fnv1a(host, host_len, source, source_len);
    size_t key_len = host_len + 1 + source_len;
    *added = 0;
    if (t->cap) {
        for (size_t j = h & (t->cap - 1);; j = (j + 1) & (t->cap - 1)) {
            struct vigil_seq_entry *e = &t->slots[j];
            if (!e->key) {
                break;
            }
            if (e->hash == h && e->key_len == key_len && e->host_len == host_len &&
                memcmp(e->key, host, host_len) == 0 &&
                memcmp(e->key + host_len + 1, source, source_len) == 0) {
                return e;
            }
        }
    }
    if (t->used >= t->max || ((t->used + 1) * 2 > t->cap && grow(t) != 0)) {
        return NULL;
    }
    char *key = malloc(key_len);
    if (!key) {
        return NULL;
    }
    memcpy(key, host, host_len);
    key[host_len] = '\0';
    memcpy(key + host_len + 1, source, source_len);
    size_t j = h & (t->cap - 1);
    while (t->slots[j].key) {
        j = (j + 1) & (t->cap - 1);
    }
    t->slots[j] =
        (struct vigil_seq_entry){.hash = h, .key = key, .key_len = key_len, .host_len = host_len};
    t->used++;
    *added = 1;
    return &t->slots[j];
}

/* A table of sources, keyed by (host, source), with what was last seen of
 * each: the bus counts seq gaps with it, the ingest endpoint recognises an
 * agent's resent events with it. Bounded; one thread owns a table.
 */
#ifndef VIGIL_SEQTAB_H
#define VIGIL_SEQTAB_H

#include <stddef.h>
#include <stdint.h>

/* One source's entry. `last_seq`/`last_ts` are the caller's to read and
 * write; a new entry starts at 0/0. */
struct vigil_seq_entry {
    uint64_t hash;
    char *key;                /* host bytes, NUL, source bytes; NULL when the slot is free */
    size_t key_len, host_len; /* host_len too: either may contain NUL bytes */
    uint64_t last_seq, last_ts;
    void *data; /* the caller's, malloc'ed: freed with the table */
};

struct vigil_seqtab {
    struct vigil_seq_entry *slots; /* open addressing, power-of-two capacity */
    size_t cap, used, max;
};

/* An empty table of at most max sources. Allocates nothing. */
void vigil_seqtab_init(struct vigil_seqtab *t, size_t max);
void vigil_seqtab_fini(struct vigil_seqtab *t);

/* The entry of (host, source), made when missing (*added set, counters
 * 0). NULL when the table is full (max) or out of memory: the caller counts
 * the source as untracked. Entries stay valid until the next call. */
struct vigil_seq_entry *vigil_seqtab_get(struct vigil_seqtab *t, const char *host, size_t host_len,
                                         const char *source, size_t source_len, int *added);

#endif

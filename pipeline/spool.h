/* A sink's disk spool: an on-disk FIFO of events (topic + msgpack body)
 * that survives kill -9 and detects a torn tail after a power loss.
 *
 * Layout: a folder of segment files `<16 hex digits>.seg`, oldest first,
 * and `cursor` naming the first record not yet delivered (written with
 * rename, so it is either the old or the new one). Each segment starts with
 * an 8-byte magic; each record is [u32 len][u32 crc32c][u32 topic_len]
 * [topic][body] (little-endian), len and crc covering topic_len..body.
 * At open each segment is checked: a damaged record (bad header or
 * checksum) with valid records after it is skipped alone, reading
 * resynchronizing on the next offset where a whole record with a good
 * checksum starts; a damaged header keeps the valid records after it. Damage
 * with no valid record after it is a torn tail: the segment is truncated
 * there. Each damage is logged once and counted (corrupt_total, and its
 * bytes in skipped_bytes_total; its events in dropped_total when the
 * damaged records' lengths still say how many there were).
 *
 * Reading hands out records after the read position; commit() marks all of
 * them delivered. Records read but not committed are read again after a
 * crash (at least once). Single-threaded: the sink's own thread.
 */
#ifndef VIGIL_SPOOL_H
#define VIGIL_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vigil_spool;

struct vigil_spool_rec {
    const char *topic;
    size_t topic_len;
    const char *body;
    size_t body_len;
};

struct vigil_spool_counts {
    uint64_t events;              /* records held: unread + read, not committed */
    uint64_t bytes;               /* bytes of segment files (buffered included) */
    uint64_t dropped_total;       /* records removed unread to stay under max */
    uint64_t corrupt_total;       /* damaged ranges skipped or torn tails cut at open */
    uint64_t skipped_bytes_total; /* bytes of those ranges and tails */
};

/* Opens (creating it, mode 0750, with its parents) the spool folder and
 * checks what is there. Only one process may hold a spool (flock). Returns
 * 0 or a negative errno; on error, err gets a message. */
int vigil_spool_open(const char *dir, uint64_t max_bytes, const char *component,
                     struct vigil_spool **out, char *err, size_t errlen);
/* Writes what is buffered and closes. NULL is fine. */
void vigil_spool_close(struct vigil_spool *s);

/* Appends one record (buffered). When the spool would exceed max_bytes the
 * oldest segments are removed, their unread records counted as dropped.
 * Returns 0 or a negative errno (nothing appended). */
int vigil_spool_append(struct vigil_spool *s, const char *topic, size_t topic_len, const char *body,
                       size_t body_len);
/* Writes buffered records to the file; with sync, also fdatasync(). */
int vigil_spool_flush(struct vigil_spool *s, bool sync);
/* True when records are buffered but not yet written. */
bool vigil_spool_dirty(const struct vigil_spool *s);

/* Records after the read position exist. */
bool vigil_spool_has_unread(const struct vigil_spool *s);
/* True when nothing is held (no unread and no uncommitted records). */
bool vigil_spool_empty(const struct vigil_spool *s);
/* The next record: 1 (rec filled, valid until the next call on s), 0 at the
 * end, or a negative errno. */
int vigil_spool_read(struct vigil_spool *s, struct vigil_spool_rec *rec);
/* Marks every record appended so far as read (they are in the caller's
 * hands already), so the next read() gives only later ones. */
void vigil_spool_mark_read(struct vigil_spool *s);
/* Everything read so far is delivered: persists the cursor and removes the
 * segments left behind. 0 or a negative errno. */
int vigil_spool_commit(struct vigil_spool *s);

void vigil_spool_counts(const struct vigil_spool *s, struct vigil_spool_counts *out);

/* CRC-32C (Castagnoli) of buf, continuing from crc (0 to start). */
uint32_t vigil_crc32c(uint32_t crc, const void *buf, size_t len);

/* mkdir -p with mode 0750 for each folder made (spools, isolate.c's
 * folders). 0 or -errno. */
int vigil__mkdirs(const char *dir);

#endif

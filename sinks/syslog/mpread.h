/* mpread: a bounded, allocation-free msgpack reader, enough for the syslog
 * sink to walk an event body (labels, values, attrs) that the public API
 * only offers as bytes. Every read checks the end of the buffer.
 */
#ifndef VIGIL_SYSLOG_MPREAD_H
#define VIGIL_SYSLOG_MPREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mpr_type {
    MPR_NIL,
    MPR_BOOL,
    MPR_UINT,
    MPR_INT, /* negative integers only */
    MPR_FLOAT,
    MPR_STR,
    MPR_BIN,
    MPR_EXT,
    MPR_ARRAY,
    MPR_MAP,
};

struct mpr_obj {
    enum mpr_type type;
    union {
        bool b;
        uint64_t u;
        int64_t i;
        double f;
        struct {
            const char *p;
            uint32_t n;
        } s;            /* STR, BIN, EXT (the payload, without the ext type) */
        uint32_t count; /* ARRAY: items, MAP: pairs; they follow the header */
    } v;
};

struct mpr {
    const unsigned char *p, *end;
};

/* Reads one object at r->p. Scalars, strings, bins and exts are consumed
 * whole; for an array or map only its header is, its items come next.
 * Returns 0, or -1 when the bytes end early or hold 0xc1 (never used). */
int mpr_read(struct mpr *r, struct mpr_obj *o);

/* Skips one whole object, nested items included. Returns 0 or -1. */
int mpr_skip(struct mpr *r);

#endif

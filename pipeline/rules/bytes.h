/* Comparing short byte strings (keys, labels, glob prefixes) inline: the
 * rules compare many per event, and a call to memcmp costs more than the
 * comparison. Rules-internal.
 */
#ifndef VIGIL_RULES_BYTES_H
#define VIGIL_RULES_BYTES_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Equal bytes, inline: keys are short, and a call to memcmp costs more
 * than comparing them in (possibly overlapping) 8- or 4-byte words. */
static inline bool vigil__eq_bytes(const char *a, const char *b, uint32_t n)
{
    if (n >= 8) {
        uint64_t x, y;
        for (uint32_t i = 0; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y) {
                return false;
            }
        }
        memcpy(&x, a + n - 8, 8);
        memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        uint32_t x, y, z, w;
        memcpy(&x, a, 4);
        memcpy(&y, b, 4);
        memcpy(&z, a + n - 4, 4);
        memcpy(&w, b + n - 4, 4);
        return x == y && z == w;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            return false;
        }
    }
    return true;
}

/* Keys of one map often share a length and a prefix ("cpu_user_ns",
 * "cpu_system_ns"): the last byte rejects most of them at once. */
static inline bool vigil__same_bytes(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    return alen == blen &&
           (alen == 0 || (a[alen - 1] == b[alen - 1] && vigil__eq_bytes(a, b, alen)));
}

#endif

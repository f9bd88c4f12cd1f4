/* Log-linear histogram (see hist.h). */
#include "hist.h"

#include <string.h>

void bench_hist_init(struct bench_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

static unsigned bucket_of(uint64_t v)
{
    if (v < 256) {
        return (unsigned)v;
    }
    unsigned e = 63u - (unsigned)__builtin_clzll(v) - 7u; /* v >> e is in [128, 256) */
    return 256u + (e - 1u) * BENCH_HIST_SUB + (unsigned)((v >> e) - 128u);
}

/* The smallest value of bucket i and its width. */
static void bucket_range(unsigned i, uint64_t *lo, uint64_t *width)
{
    if (i < 256) {
        *lo = i;
        *width = 1;
        return;
    }
    unsigned e = (i - 256u) / BENCH_HIST_SUB + 1u;
    uint64_t m = 128u + (i - 256u) % BENCH_HIST_SUB;
    *lo = m << e;
    *width = (uint64_t)1 << e;
}

void bench_hist_add(struct bench_hist *h, uint64_t v)
{
    h->buckets[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min) {
        h->min = v;
    }
    if (v > h->max) {
        h->max = v;
    }
}

uint64_t bench_hist_quantile(const struct bench_hist *h, double q)
{
    if (h->count == 0) {
        return 0;
    }
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > h->count) {
        rank = h->count;
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t lo, width;
            bucket_range(i, &lo, &width);
            uint64_t v = lo + width / 2;
            return v < h->min ? h->min : v > h->max ? h->max : v;
        }
    }
    return h->max;
}

double bench_hist_mean(const struct bench_hist *h)
{
    return h->count ? (double)(h->sum / (long double)h->count) : 0.0;
}

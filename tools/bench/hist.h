/* A log-linear latency histogram (HDR-style): fixed memory (~60 KB) whatever
 * the number of samples, every recorded value kept within 0.4 % of itself
 * (256 linear buckets below 256, then 128 per power of two), with the exact
 * minimum, maximum and mean beside it. Not thread-safe: one writer.
 */
#ifndef VIGIL_BENCH_HIST_H
#define VIGIL_BENCH_HIST_H

#include <stdint.h>

#define BENCH_HIST_SUB 128 /* buckets per power of two above 256 */
#define BENCH_HIST_BUCKETS (256 + 56 * BENCH_HIST_SUB)

struct bench_hist {
    uint64_t count, min, max;
    long double sum;
    uint64_t buckets[BENCH_HIST_BUCKETS];
};

void bench_hist_init(struct bench_hist *h);
void bench_hist_add(struct bench_hist *h, uint64_t v);
/* The value at quantile q (0 < q <= 1): the midpoint of the bucket holding
 * the ceil(q * count)-th smallest sample, clamped to [min, max]. 0 when
 * empty. */
uint64_t bench_hist_quantile(const struct bench_hist *h, double q);
double bench_hist_mean(const struct bench_hist *h);

#endif

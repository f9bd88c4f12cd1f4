/* The tail reader: follows the file sink's output as it grows (inotify, with
 * a short poll as a fallback), parses only the envelope fields it needs
 * (ts, source, seq) of each JSON line, and counts every (source, seq) in a
 * bitmap per producer: distinct arrivals, duplicates, and the latency
 * (time of the read that returned the line - the event's ts) of events
 * published in the measured window. In our own temp folder it punches out
 * what it has read, so a 30 s run at 1M events/s does not fill the disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "bench.h"
#include "log.h"

#define CHUNK (1u << 20)
#define LINE_MAX_BYTES (64u << 20)  /* a longer "line" is garbage: skipped */
#define PUNCH_EVERY (64ull << 20)   /* bytes read between hole punches */
#define SEQ_MAX (UINT64_C(1) << 36) /* larger seqs are not ours */
#define IDLE_POLL_MS 10

/* After `lit` at p, or NULL. */
static const char *expect(const char *p, const char *end, const char *lit, size_t n)
{
    return (size_t)(end - p) >= n && memcmp(p, lit, n) == 0 ? p + n : NULL;
}
#define EXPECT(p, end, lit) expect((p), (end), (lit), sizeof(lit) - 1)

/* p is just inside a JSON string: returns just after its closing quote. */
static const char *skip_string(const char *p, const char *end)
{
    while (p < end) {
        if (*p == '\\') {
            p += 2;
        } else if (*p == '"') {
            return p + 1;
        } else {
            p++;
        }
    }
    return NULL;
}

static const char *read_u64(const char *p, const char *end, uint64_t *out)
{
    uint64_t v = 0;
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9' && p - s < 20) {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    *out = v;
    return p > s ? p : NULL;
}

/* Marks seq in the producer's bitmap; true if it was new. */
static bool seq_mark(struct bench_seqmap *m, uint64_t seq, bool *oom)
{
    uint64_t w = seq >> 6;
    if (w >= m->nwords) {
        uint64_t n = m->nwords ? m->nwords * 2 : 4096;
        while (n <= w) {
            n *= 2;
        }
        uint64_t *nb = realloc(m->bits, n * sizeof *nb);
        if (!nb) {
            *oom = true;
            return false;
        }
        memset(nb + m->nwords, 0, (n - m->nwords) * sizeof *nb);
        m->bits = nb;
        m->nwords = n;
    }
    uint64_t bit = UINT64_C(1) << (seq & 63);
    bool fresh = !(m->bits[w] & bit);
    m->bits[w] |= bit;
    return fresh;
}

void bench_tail_line(struct bench_tail *t, const char *line, size_t len, uint64_t now_real,
                     uint64_t now_mono)
{
    const char *end = line + len, *p = line, *src;
    uint64_t ts, seq;
    size_t src_len;
    if (!(p = EXPECT(p, end, "{\"topic\":\"")) || !(p = skip_string(p, end)) ||
        !(p = EXPECT(p, end, ",\"ts\":")) || !(p = read_u64(p, end, &ts)) ||
        !(p = EXPECT(p, end, ",\"host\":\"")) || !(p = skip_string(p, end)) ||
        !(p = EXPECT(p, end, ",\"source\":\""))) {
        t->bad_lines++;
        return;
    }
    src = p;
    if (!(p = skip_string(p, end))) {
        t->bad_lines++;
        return;
    }
    src_len = (size_t)(p - 1 - src);
    if (!(p = EXPECT(p, end, ",\"seq\":")) || !(p = read_u64(p, end, &seq))) {
        t->bad_lines++;
        return;
    }
    static const size_t pre = sizeof BENCH_SOURCE_PREFIX - 1;
    if (src_len <= pre || memcmp(src, BENCH_SOURCE_PREFIX, pre) != 0) {
        if (src_len == 5 && memcmp(src, "rules", 5) == 0) {
            t->verdicts++;
        } else {
            t->other_lines++;
        }
        return;
    }
    uint64_t idx;
    const char *q = read_u64(src + pre, src + src_len, &idx);
    if (!q || q != src + src_len || idx >= (uint64_t)t->nproducers || seq == 0 || seq >= SEQ_MAX) {
        t->other_lines++;
        return;
    }
    bool oom = false;
    if (!seq_mark(&t->maps[idx], seq, &oom)) {
        if (oom) {
            snprintf(t->err, sizeof t->err, "out of memory for the seq bitmaps");
            t->bad_lines++;
        } else {
            t->duplicated++;
        }
        return;
    }
    atomic_fetch_add_explicit(&t->distinct, 1, memory_order_relaxed);
    atomic_store_explicit(&t->last_line_mono, now_mono, memory_order_relaxed);
    if (ts >= t->win_start_real && ts < t->win_end_real) {
        t->measured++;
        t->last_measured_mono = now_mono;
        bench_hist_add(&t->lat, now_real > ts ? now_real - ts : 0);
    }
}

static void *tail_main(void *arg)
{
    struct bench_tail *t = arg;
    /* The sink creates the file at its start; give it a moment. */
    int fd = -1;
    uint64_t give_up = vigil_mono_ns() + 10000000000ull;
    while ((fd = open(t->path, O_RDONLY | O_CLOEXEC)) < 0 && errno == ENOENT &&
           !atomic_load(&t->stop) && vigil_mono_ns() < give_up) {
        poll(NULL, 0, 20);
    }
    if (fd < 0) {
        snprintf(t->err, sizeof t->err, "cannot open %s: %s", t->path, strerror(errno));
        return NULL;
    }
    if (t->from_end) {
        lseek(fd, 0, SEEK_END);
    }
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (in >= 0 && inotify_add_watch(in, t->path, IN_MODIFY) < 0) {
        close(in);
        in = -1; /* the short poll alone then */
    }
    size_t cap = CHUNK, carry = 0;
    char *buf = malloc(cap);
    uint64_t consumed = t->from_end ? (uint64_t)lseek(fd, 0, SEEK_CUR) : 0, punched = consumed;
    bool punch = !t->from_end; /* never in someone else's file */
    bool skipping = false;     /* inside an over-long line */
    while (buf) {
        ssize_t n = read(fd, buf + carry, cap - carry);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            snprintf(t->err, sizeof t->err, "read %s: %s", t->path, strerror(errno));
            break;
        }
        if (n == 0) {
            if (atomic_load(&t->stop)) {
                break;
            }
            struct pollfd pf = {.fd = in, .events = POLLIN};
            if (poll(&pf, 1, IDLE_POLL_MS) > 0) {
                char evbuf[4096];
                while (read(in, evbuf, sizeof evbuf) > 0) {
                }
            }
            continue;
        }
        uint64_t now_real = vigil_now_ns(), now_mono = vigil_mono_ns();
        t->bytes += (uint64_t)n;
        size_t have = carry + (size_t)n, off = 0;
        for (;;) {
            char *nl = memchr(buf + off, '\n', have - off);
            if (!nl) {
                break;
            }
            size_t len = (size_t)(nl - (buf + off));
            if (skipping) {
                skipping = false;
            } else if (len > 0) {
                bench_tail_line(t, buf + off, len, now_real, now_mono);
            }
            off += len + 1;
        }
        consumed += off;
        carry = have - off;
        memmove(buf, buf + off, carry);
        if (carry == cap) {
            if (cap >= LINE_MAX_BYTES) {
                t->bad_lines++; /* drop it and skip to its end */
                skipping = true;
                carry = 0;
            } else {
                char *nb = realloc(buf, cap * 2);
                if (!nb) {
                    snprintf(t->err, sizeof t->err, "out of memory for a %zu-byte line", cap);
                    break;
                }
                buf = nb;
                cap *= 2;
            }
        }
        if (punch && consumed - punched >= PUNCH_EVERY) {
            /* Already read: give the blocks back (offsets are kept). */
            uint64_t upto = consumed & ~UINT64_C(4095);
            if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)upto) == 0) {
                punched = upto;
            } else {
                punch = false; /* not supported by this file system */
            }
        }
    }
    if (carry > 0 && !skipping) {
        t->bad_lines++; /* a last line without its newline */
    }
    free(buf);
    if (in >= 0) {
        close(in);
    }
    close(fd);
    return NULL;
}

int bench_tail_start(struct bench_tail *t)
{
    bench_hist_init(&t->lat);
    if (pthread_create(&t->thread, NULL, tail_main, t) != 0) {
        snprintf(t->err, sizeof t->err, "cannot start the reader thread");
        return -1;
    }
    t->started = true;
    return 0;
}

void bench_tail_stop(struct bench_tail *t)
{
    if (t->started) {
        atomic_store(&t->stop, true);
        pthread_join(t->thread, NULL);
        t->started = false;
    }
}

void bench_tail_fini(struct bench_tail *t)
{
    bench_tail_stop(t);
    for (int i = 0; i < BENCH_MAX_PRODUCERS; i++) {
        free(t->maps[i].bits);
        t->maps[i].bits = NULL;
        t->maps[i].nwords = 0;
    }
}

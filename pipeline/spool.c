/* The disk spool (see spool.h). */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define SEG_MAGIC "VGSPOOL1"
#define SEG_HDR 8u
#define REC_HDR 12u /* len, crc, topic_len */
#define SEG_MIN (64u << 10)
#define SEG_MAX (64u << 20)
#define WBUF_SIZE (64u << 10)
#define WBUF_LIMIT (4u << 20) /* buffered bytes kept while the disk refuses them */
#define RA_SIZE (256u << 10)

/* Bytes [start, end) of a segment that hold no valid record: damage found
 * at open, with valid records after it. */
struct skip {
    uint64_t start, end;
};

/* Damaged ranges are remembered, not repaired: the file is left as it was
 * (no rewrite that a crash could tear, and the cursor's byte offsets stay
 * valid) and reading jumps over them. A segment without damage has no list
 * and reads exactly as before. */
struct seg {
    uint64_t id;
    uint64_t size;     /* bytes, header and buffered records included */
    uint64_t nrec;     /* valid records */
    uint64_t nread;    /* records handed out, from the segment's start */
    uint64_t ncommit;  /* records delivered, from the segment's start */
    struct skip *skip; /* damaged ranges, in order; NULL when none */
    size_t nskip;
    size_t skip_next; /* the first range reading has not passed yet */
};

struct vigil_spool {
    char *dir;
    char component[160];
    int lockfd;
    uint64_t max_bytes, seg_max, total_bytes;
    struct seg *segs; /* oldest first */
    size_t nseg, segcap;
    uint64_t next_id;

    bool wopen; /* the last segment is open for appending */
    int wfd;
    char *wbuf;
    size_t wlen, wcap;

    uint64_t rid, roff; /* read position */
    int rfd;
    uint64_t rfd_id;
    char *rbuf;
    size_t rcap;
    char *ra; /* read-ahead of segment rfd_id: bytes [ra_off, ra_off + ra_len) */
    uint64_t ra_off;
    size_t ra_len;

    uint64_t dropped_total, corrupt_total, skipped_bytes_total;
    struct vigil_ratelimit drop_rl;
};

/* ---- CRC-32C ------------------------------------------------------------------ */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        crc_table[i] = c;
    }
}

static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t len)
{
    while (len--) {
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return crc;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* SSE4.2's crc32 instruction computes CRC-32C, 8 bytes a step. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const unsigned char *p,
                                                         size_t len)
{
    uint64_t c = crc;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
    }
    crc = (uint32_t)c;
    while (len--) {
        crc = __builtin_ia32_crc32qi(crc, *p++);
    }
    return crc;
}
#endif

static uint32_t (*crc_impl)(uint32_t, const unsigned char *, size_t) = crc_sw;

static void crc_pick(void)
{
    crc_init();
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        crc_impl = crc_hw;
    }
#endif
}

uint32_t vigil_crc32c(uint32_t crc, const void *buf, size_t len)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_pick);
    return ~crc_impl(~crc, buf, len);
}

/* ---- Helpers -------------------------------------------------------------------- */

static void put32(char *p, uint32_t v)
{
    p[0] = (char)(v & 0xff);
    p[1] = (char)(v >> 8 & 0xff);
    p[2] = (char)(v >> 16 & 0xff);
    p[3] = (char)(v >> 24 & 0xff);
}

static uint32_t get32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

static void seg_path(const struct vigil_spool *s, uint64_t id, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%016" PRIx64 ".seg", s->dir, id);
}

static bool is_wseg(const struct vigil_spool *s, const struct seg *g)
{
    return s->wopen && g == &s->segs[s->nseg - 1];
}

int vigil__mkdirs(const char *dir)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) {
        return -ENAMETOOLONG;
    }
    for (char *c = p + 1;; c++) {
        if (*c == '/' || *c == '\0') {
            char save = *c;
            *c = '\0';
            if (mkdir(p, 0750) != 0 && errno != EEXIST) {
                return -errno;
            }
            *c = save;
            if (save == '\0') {
                return 0;
            }
        }
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) {
        return 0;
    }
    size_t c = *cap ? *cap : 4096;
    while (c < need) {
        c *= 2;
    }
    char *b = realloc(*buf, c);
    if (!b) {
        return -ENOMEM;
    }
    *buf = b;
    *cap = c;
    return 0;
}

static int add_seg(struct vigil_spool *s, uint64_t id)
{
    if (s->nseg == s->segcap) {
        size_t c = s->segcap ? s->segcap * 2 : 16;
        struct seg *g = realloc(s->segs, c * sizeof *g);
        if (!g) {
            return -ENOMEM;
        }
        s->segs = g;
        s->segcap = c;
    }
    s->segs[s->nseg++] = (struct seg){.id = id, .size = SEG_HDR};
    return 0;
}

static void close_rfd(struct vigil_spool *s)
{
    if (s->rfd >= 0) {
        close(s->rfd);
        s->rfd = -1;
    }
    s->rfd_id = UINT64_MAX;
    s->ra_len = 0;
}

/* Removes segs[0] and its file. */
static void remove_head(struct vigil_spool *s)
{
    char path[PATH_MAX];
    struct seg *g = &s->segs[0];
    if (is_wseg(s, g)) {
        close(s->wfd);
        s->wfd = -1;
        s->wopen = false;
        s->wlen = 0;
    }
    if (s->rfd_id == g->id) {
        close_rfd(s);
    }
    seg_path(s, g->id, path, sizeof path);
    unlink(path);
    s->total_bytes -= g->size;
    free(g->skip);
    memmove(s->segs, s->segs + 1, (s->nseg - 1) * sizeof *s->segs);
    s->nseg--;
}

/* ---- Opening: check what a previous run left -------------------------------------- */

/* True when a whole record with a good checksum starts at buf[off] (of n
 * bytes, off <= n); its len in *lenp. */
static bool rec_valid(const char *buf, uint64_t n, uint64_t off, uint32_t *lenp)
{
    if (n - off < REC_HDR) {
        return false;
    }
    uint32_t len = get32(buf + off);
    if (len < 4 || len - 4 < get32(buf + off + 8) || n - off - 8 < len) {
        return false;
    }
    *lenp = len;
    return vigil_crc32c(0, buf + off + 8, len) == get32(buf + off + 4);
}

/* The first offset from `from` on where a valid record starts, or n. Only
 * candidates whose header is plausible cost a checksum, and *budget (bytes
 * checksummed) bounds their sum: a file crafted to look like records at
 * every byte costs time linear in its size, not quadratic. A candidate past
 * the budget is passed over (at worst more is skipped as damaged). */
static uint64_t resync(const char *buf, uint64_t n, uint64_t from, uint64_t *budget)
{
    for (uint64_t p = from; p < n && n - p >= REC_HDR; p++) {
        uint32_t len = get32(buf + p);
        if (len < 4 || len - 4 < get32(buf + p + 8) || n - p - 8 < len || len > *budget) {
            continue;
        }
        *budget -= len;
        if (vigil_crc32c(0, buf + p + 8, len) == get32(buf + p + 4)) {
            return p;
        }
    }
    return n;
}

/* The events in the damaged bytes [from, to) when the damaged records'
 * lengths still chain exactly from one to the next (a flipped body or
 * checksum), or -1 when a length itself is damaged and nobody can know. */
static int64_t chain_count(const char *buf, uint64_t from, uint64_t to)
{
    int64_t n = 0;
    while (from < to) {
        if (to - from < REC_HDR) {
            return -1;
        }
        uint32_t len = get32(buf + from);
        if (len < 4 || to - from - 8 < len) {
            return -1;
        }
        from += 8 + (uint64_t)len;
        n++;
    }
    return n;
}

/* What scanning one segment needs to know and tell. */
struct scan {
    const char *path;
    struct seg *g;
    uint64_t cursor_off; /* records ending at or before it were delivered */
    uint64_t resume;     /* the first record not delivered (UINT64_MAX: none yet) */
};

static void count_rec(struct scan *sc, uint64_t start, uint64_t end)
{
    sc->g->nrec++;
    if (end <= sc->cursor_off) {
        sc->g->ncommit++;
    } else if (sc->resume == UINT64_MAX) {
        sc->resume = start;
    }
}

/* Damaged bytes [from, to) with a valid record at `to`: counted, logged once
 * and remembered so that reading jumps over them. from < SEG_HDR means the
 * segment's header is damaged too. 0, or -ENOMEM (then the caller cuts the
 * segment at `from` instead). */
static int damaged(struct vigil_spool *s, struct scan *sc, const char *buf, uint64_t from,
                   uint64_t to)
{
    struct seg *g = sc->g;
    if (to <= sc->cursor_off) {
        return 0; /* delivered before it was damaged: nothing is lost */
    }
    if (to > SEG_HDR) {
        struct skip *k = realloc(g->skip, (g->nskip + 1) * sizeof *k);
        if (!k) {
            return -ENOMEM;
        }
        g->skip = k;
        g->skip[g->nskip++] = (struct skip){from < SEG_HDR ? SEG_HDR : from, to};
    }
    int64_t lost = chain_count(buf, from < SEG_HDR ? SEG_HDR : from, to);
    char events[64];
    if (lost >= 0) {
        snprintf(events, sizeof events, "%" PRId64 " event%s", lost, lost == 1 ? "" : "s");
        s->dropped_total += (uint64_t)lost;
    } else {
        snprintf(events, sizeof events, "an unknown number of events (a length is damaged)");
    }
    s->corrupt_total++;
    s->skipped_bytes_total += to - from;
    vigil_log(VIGIL_LOG_WARN, s->component,
              "spool: %s is damaged at offset %" PRIu64 "%s: skipped %" PRIu64
              " bytes holding %s; the valid records from offset %" PRIu64 " on are kept",
              sc->path, from, from < SEG_HDR ? " (its header)" : "", to - from, events, to);
    return 0;
}

/* Checks a segment held whole in buf (n bytes) from `off`, where damage
 * was seen (0: the header's magic is wrong): skips each damaged range up
 * to the next valid record. Returns the end of the last valid record; what
 * is after it has no valid record (a torn tail), or 0 if the file holds no
 * valid record and its header is damaged. */
static uint64_t scan_damaged(struct vigil_spool *s, struct scan *sc, const char *buf, uint64_t n,
                             uint64_t off)
{
    uint64_t budget = 4 * n + (1u << 20);
    uint64_t end = off < SEG_HDR ? 0 : off;
    while (off < n) {
        uint32_t len;
        if (off >= SEG_HDR && rec_valid(buf, n, off, &len)) {
            count_rec(sc, off, off + 8 + len);
            off += 8 + (uint64_t)len;
            end = off;
            continue;
        }
        uint64_t next = resync(buf, n, off < SEG_HDR ? SEG_HDR : off + 1, &budget);
        if (next == n || damaged(s, sc, buf, off, next) != 0) {
            break;
        }
        off = next;
    }
    return end;
}

/* Reads a whole file; NULL on error (caller frees). */
static char *read_whole(int fd, uint64_t n)
{
    char *buf = malloc(n ? n : 1);
    if (buf && pread(fd, buf, n, 0) != (ssize_t)n) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

/* Validates one segment file; counts its records, skips damaged records
 * that have valid ones after them, truncates a torn or corrupt tail.
 * Returns the valid size, or 0 if the file is unusable (then g holds
 * nothing to free); *resume gets the offset of the first record not
 * delivered per cursor_off. */
static uint64_t scan_seg(struct vigil_spool *s, uint64_t id, struct seg *g, uint64_t cursor_off,
                         uint64_t *resume)
{
    char path[PATH_MAX];
    seg_path(s, id, path, sizeof path);
    *g = (struct seg){.id = id};
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    struct stat st;
    char hdr[REC_HDR];
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)SEG_HDR ||
        pread(fd, hdr, SEG_HDR, 0) != (ssize_t)SEG_HDR) {
        vigil_log(VIGIL_LOG_WARN, s->component, "spool: %s is not a spool segment: removed", path);
        s->corrupt_total++;
        s->skipped_bytes_total += st.st_size > 0 ? (uint64_t)st.st_size : 0;
        close(fd);
        unlink(path);
        return 0;
    }
    uint64_t fsize = (uint64_t)st.st_size, off = SEG_HDR;
    struct scan sc = {.path = path, .g = g, .cursor_off = cursor_off, .resume = UINT64_MAX};
    bool magic_ok = memcmp(hdr, SEG_MAGIC, SEG_HDR) == 0;
    /* The common case, no damage: one record at a time, little memory. */
    while (magic_ok && off < fsize) {
        if (fsize - off < REC_HDR || pread(fd, hdr, REC_HDR, (off_t)off) != (ssize_t)REC_HDR) {
            break;
        }
        uint32_t len = get32(hdr), crc = get32(hdr + 4);
        if (len < 4 || len - 4 < get32(hdr + 8) || fsize - off - 8 < len ||
            grow(&s->rbuf, &s->rcap, len) != 0 ||
            pread(fd, s->rbuf, len, (off_t)(off + 8)) != (ssize_t)len ||
            vigil_crc32c(0, s->rbuf, len) != crc) {
            break;
        }
        count_rec(&sc, off, off + 8 + len);
        off += 8 + len;
    }
    uint64_t end = off;
    if (!magic_ok || off < fsize) {
        /* Damage, or a torn tail: look for valid records after it, in the
         * whole file read at once (rare; bounded by the segment's size). */
        char *buf = read_whole(fd, fsize);
        if (buf) {
            end = scan_damaged(s, &sc, buf, fsize, magic_ok ? off : 0);
            free(buf);
        } else if (!magic_ok) {
            end = 0;
        }
    }
    if (end == 0) {
        vigil_log(VIGIL_LOG_WARN, s->component,
                  "spool: %s is not a spool segment (no spool header, no valid record): removed",
                  path);
        s->corrupt_total++;
        s->skipped_bytes_total += fsize;
        free(g->skip);
        *g = (struct seg){.id = id};
        close(fd);
        unlink(path);
        return 0;
    }
    if (end < fsize) {
        vigil_log(
            VIGIL_LOG_WARN, s->component,
            "spool: %s has a torn or corrupt record at offset %" PRIu64
            " with no valid record after it (a write cut short by a crash?): the last %" PRIu64
            " bytes are skipped",
            path, end, fsize - end);
        s->corrupt_total++;
        s->skipped_bytes_total += fsize - end;
        if (ftruncate(fd, (off_t)end) != 0) {
            vigil_log(VIGIL_LOG_WARN, s->component, "spool: cannot truncate %s: %s", path,
                      strerror(errno));
        }
    }
    close(fd);
    g->size = end;
    g->nread = g->ncommit;
    *resume = sc.resume == UINT64_MAX ? end : sc.resume;
    return end;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int load(struct vigil_spool *s)
{
    char path[PATH_MAX];
    uint64_t cid = 0, coff = 0, cresume = SEG_HDR;
    snprintf(path, sizeof path, "%s/cursor", s->dir);
    FILE *f = fopen(path, "re");
    if (f) {
        if (fscanf(f, "%" SCNx64 " %" SCNu64, &cid, &coff) != 2) {
            vigil_log(VIGIL_LOG_WARN, s->component,
                      "spool: %s is unreadable: delivering the whole spool again", path);
            cid = coff = 0;
        }
        fclose(f);
    }
    DIR *d = opendir(s->dir);
    if (!d) {
        return -errno;
    }
    uint64_t *ids = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        char *end;
        uint64_t id = strtoull(e->d_name, &end, 16);
        if (end != e->d_name + 16 || strcmp(end, ".seg") != 0) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *x = realloc(ids, cap * sizeof *x);
            if (!x) {
                rc = -ENOMEM;
                break;
            }
            ids = x;
        }
        ids[n++] = id;
    }
    closedir(d);
    if (n > 1) {
        qsort(ids, n, sizeof *ids, cmp_u64);
    }
    s->next_id = cid + 1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (ids[i] >= s->next_id) {
            s->next_id = ids[i] + 1;
        }
        if (ids[i] < cid) { /* delivered before a crash cut the clean-up */
            seg_path(s, ids[i], path, sizeof path);
            unlink(path);
            continue;
        }
        struct seg g;
        uint64_t resume;
        if (scan_seg(s, ids[i], &g, ids[i] == cid ? coff : 0, &resume) == 0) {
            continue;
        }
        if ((rc = add_seg(s, g.id)) != 0) {
            free(g.skip);
            break;
        }
        s->segs[s->nseg - 1] = g;
        s->total_bytes += g.size;
        if (g.id == cid) {
            cresume = resume;
        }
    }
    free(ids);
    if (s->nseg) {
        s->rid = s->segs[0].id;
        s->roff = SEG_HDR;
        if (s->segs[0].id == cid) {
            /* The first record not delivered: the cursor names it, unless
             * damage moved the record boundaries under the cursor. */
            s->roff = cresume;
        }
    }
    return rc;
}

int vigil_spool_open(const char *dir, uint64_t max_bytes, const char *component,
                     struct vigil_spool **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = vigil__mkdirs(dir);
    if (rc != 0) {
        snprintf(err, errlen, "cannot create the spool folder %s: %s", dir, strerror(-rc));
        return rc;
    }
    struct vigil_spool *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    snprintf(s->component, sizeof s->component, "%s", component);
    s->wfd = s->rfd = -1;
    s->rfd_id = UINT64_MAX;
    s->max_bytes = max_bytes;
    s->drop_rl = (struct vigil_ratelimit){.window_ns = 60000000000ull, .burst = 3};
    s->seg_max = max_bytes / 8;
    s->seg_max = s->seg_max < SEG_MIN ? SEG_MIN : s->seg_max > SEG_MAX ? SEG_MAX : s->seg_max;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/lock", dir);
    s->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->lockfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    } else if (flock(s->lockfd, LOCK_EX | LOCK_NB) != 0) {
        rc = -errno;
        snprintf(err, errlen,
                 "the spool %s is in use by another process (another vigild with the same "
                 "state_dir and sink name?)",
                 dir);
    } else if ((rc = load(s)) != 0) {
        snprintf(err, errlen, "cannot read the spool %s: %s", dir, strerror(-rc));
    }
    if (rc != 0) {
        vigil_spool_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void vigil_spool_close(struct vigil_spool *s)
{
    if (!s) {
        return;
    }
    if (s->wopen) {
        int rc = vigil_spool_flush(s, true);
        if (rc != 0) {
            vigil_log(VIGIL_LOG_ERROR, s->component,
                      "spool: %zu buffered bytes could not be written: %s", s->wlen, strerror(-rc));
        }
        close(s->wfd);
    }
    close_rfd(s);
    if (s->lockfd >= 0) {
        close(s->lockfd);
    }
    for (size_t i = 0; i < s->nseg; i++) {
        free(s->segs[i].skip);
    }
    free(s->segs);
    free(s->wbuf);
    free(s->rbuf);
    free(s->ra);
    free(s->dir);
    free(s);
}

/* ---- Writing ------------------------------------------------------------------------ */

int vigil_spool_flush(struct vigil_spool *s, bool sync)
{
    if (!s->wopen) {
        return 0;
    }
    if (s->wlen) {
        struct stat st;
        int rc = write_all(s->wfd, s->wbuf, s->wlen);
        if (rc != 0) {
            /* Leave no partial record behind: cut back to what was whole. */
            if (fstat(s->wfd, &st) == 0) {
                uint64_t whole = s->segs[s->nseg - 1].size - s->wlen;
                if ((uint64_t)st.st_size > whole && ftruncate(s->wfd, (off_t)whole) != 0) {
                    return -errno;
                }
            }
            return rc;
        }
        s->wlen = 0;
    }
    if (sync && fdatasync(s->wfd) != 0) {
        return -errno;
    }
    return 0;
}

bool vigil_spool_dirty(const struct vigil_spool *s)
{
    return s->wlen > 0;
}

static int new_wseg(struct vigil_spool *s)
{
    if (s->wopen) {
        int rc = vigil_spool_flush(s, false);
        if (rc != 0) {
            return rc;
        }
        close(s->wfd);
        s->wfd = -1;
        s->wopen = false;
    }
    char path[PATH_MAX];
    uint64_t id = s->next_id;
    seg_path(s, id, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        return -errno;
    }
    int rc = add_seg(s, id);
    if (rc == 0) {
        rc = grow(&s->wbuf, &s->wcap, WBUF_SIZE);
    }
    if (rc != 0) {
        if (s->nseg && s->segs[s->nseg - 1].id == id) {
            s->nseg--;
        }
        close(fd);
        unlink(path);
        return rc;
    }
    s->next_id++;
    s->wfd = fd;
    s->wopen = true;
    memcpy(s->wbuf, SEG_MAGIC, SEG_HDR);
    s->wlen = SEG_HDR;
    s->total_bytes += SEG_HDR;
    if (s->nseg == 1) {
        s->rid = id;
        s->roff = SEG_HDR;
    }
    return 0;
}

int vigil_spool_append(struct vigil_spool *s, const char *topic, size_t topic_len, const char *body,
                       size_t body_len)
{
    uint64_t rec = REC_HDR + (uint64_t)topic_len + body_len;
    if (rec + SEG_HDR > s->max_bytes || rec > UINT32_MAX) {
        return -EFBIG;
    }
    if (s->wlen > WBUF_LIMIT) {
        int rc = vigil_spool_flush(s, false);
        if (rc != 0) {
            return rc; /* the disk refuses: do not hoard memory instead */
        }
    }
    struct seg *w = s->wopen ? &s->segs[s->nseg - 1] : NULL;
    if (!w || (w->nrec && w->size + rec > s->seg_max)) {
        int rc = new_wseg(s);
        if (rc != 0) {
            return rc;
        }
    }
    while (s->total_bytes + rec > s->max_bytes && s->nseg > 1) {
        struct seg *g = &s->segs[0];
        uint64_t lost = g->nrec - g->nread;
        s->dropped_total += lost;
        uint64_t suppressed;
        if (vigil_ratelimit_ok(&s->drop_rl, vigil_mono_ns(), &suppressed)) {
            vigil_log(VIGIL_LOG_WARN, s->component,
                      "spool: over its max_size (%" PRIu64 " bytes): dropped the oldest %" PRIu64
                      " undelivered events (%" PRIu64 " similar reports not logged)",
                      s->max_bytes, lost, suppressed);
        }
        if (s->rid == g->id) {
            s->rid = s->segs[1].id;
            s->roff = SEG_HDR;
        }
        remove_head(s);
    }
    w = &s->segs[s->nseg - 1];
    if (s->wlen + rec > s->wcap) {
        /* A failed flush keeps the bytes buffered (bounded by WBUF_LIMIT). */
        (void)vigil_spool_flush(s, false);
        if (grow(&s->wbuf, &s->wcap, s->wlen + rec) != 0) {
            return -ENOMEM;
        }
    }
    char *p = s->wbuf + s->wlen;
    put32(p, (uint32_t)(rec - 8));
    put32(p + 8, (uint32_t)topic_len);
    memcpy(p + REC_HDR, topic, topic_len);
    memcpy(p + REC_HDR + topic_len, body, body_len);
    put32(p + 4, vigil_crc32c(0, p + 8, rec - 8));
    s->wlen += rec;
    w->size += rec;
    w->nrec++;
    s->total_bytes += rec;
    return 0;
}

/* ---- Reading --------------------------------------------------------------------------- */

/* The read position `off` of segment g moved past the damaged ranges it
 * reached (reading only moves forward in a segment). */
static uint64_t skip_damage(struct seg *g, uint64_t off)
{
    while (g->skip_next < g->nskip && g->skip[g->skip_next].start <= off) {
        if (off < g->skip[g->skip_next].end) {
            off = g->skip[g->skip_next].end;
        }
        g->skip_next++;
    }
    return off;
}

bool vigil_spool_has_unread(const struct vigil_spool *s)
{
    for (size_t i = 0; i < s->nseg; i++) {
        if (s->segs[i].nread < s->segs[i].nrec) {
            return true;
        }
    }
    return false;
}

bool vigil_spool_empty(const struct vigil_spool *s)
{
    for (size_t i = 0; i < s->nseg; i++) {
        if (s->segs[i].ncommit < s->segs[i].nrec) {
            return false;
        }
    }
    return true;
}

/* Copies [off, off+len) of segment g into dst, from the file or from the
 * write buffer for what is not written yet. */
static int seg_pread(struct vigil_spool *s, struct seg *g, char *dst, size_t len, uint64_t off)
{
    uint64_t on_disk = g->size - (is_wseg(s, g) ? s->wlen : 0);
    if (off >= on_disk) {
        memcpy(dst, s->wbuf + (off - on_disk), len);
        return 0;
    }
    if (s->rfd_id != g->id) {
        char path[PATH_MAX];
        close_rfd(s);
        seg_path(s, g->id, path, sizeof path);
        s->rfd = open(path, O_RDONLY | O_CLOEXEC);
        if (s->rfd < 0) {
            return -errno;
        }
        s->rfd_id = g->id;
    }
    size_t first = off + len > on_disk ? (size_t)(on_disk - off) : len;
    if (off < s->ra_off || off + first > s->ra_off + s->ra_len) {
        /* Read ahead: one pread serves many records. */
        size_t want = first > RA_SIZE ? first : RA_SIZE;
        if (!s->ra && !(s->ra = malloc(RA_SIZE))) {
            return -ENOMEM;
        }
        if (want > RA_SIZE) {
            ssize_t r = pread(s->rfd, dst, first, (off_t)off);
            if (r != (ssize_t)first) {
                return r < 0 ? -errno : -EIO;
            }
            goto tail;
        }
        if (want > on_disk - off) {
            want = (size_t)(on_disk - off);
        }
        ssize_t r = pread(s->rfd, s->ra, want, (off_t)off);
        if (r < (ssize_t)first) {
            s->ra_len = 0;
            return r < 0 ? -errno : -EIO;
        }
        s->ra_off = off;
        s->ra_len = (size_t)r;
    }
    memcpy(dst, s->ra + (off - s->ra_off), first);
tail:
    if (first < len) {
        memcpy(dst + first, s->wbuf, len - first);
    }
    return 0;
}

int vigil_spool_read(struct vigil_spool *s, struct vigil_spool_rec *out)
{
    for (size_t i = 0; i < s->nseg; i++) {
        struct seg *g = &s->segs[i];
        if (g->id < s->rid) {
            continue;
        }
        if (g->id != s->rid) {
            s->rid = g->id;
            s->roff = SEG_HDR;
        }
        if (g->nread == g->nrec) {
            continue;
        }
        if (g->skip_next < g->nskip) {
            s->roff = skip_damage(g, s->roff);
        }
        char hdr[REC_HDR];
        int rc = seg_pread(s, g, hdr, REC_HDR, s->roff);
        uint32_t len = get32(hdr);
        if (rc == 0 && (len < 4 || len - 4 < get32(hdr + 8) || s->roff + 8 + len > g->size)) {
            rc = -EBADMSG;
        }
        if (rc == 0 && (rc = grow(&s->rbuf, &s->rcap, len)) == 0) {
            rc = seg_pread(s, g, s->rbuf, len, s->roff + 8);
        }
        /* No checksum here: records of earlier runs were checked at open,
         * later ones were written by this process. */
        if (rc != 0) {
            /* Changed under us (or unreadable): give up on the segment's rest. */
            vigil_log(VIGIL_LOG_ERROR, s->component,
                      "spool: segment %016" PRIx64 " unreadable at offset %" PRIu64
                      ": %s; skipping its %" PRIu64 " remaining events",
                      g->id, s->roff, strerror(-rc), g->nrec - g->nread);
            s->corrupt_total++;
            s->dropped_total += g->nrec - g->nread;
            g->nrec = g->nread;
            if (g->ncommit > g->nrec) {
                g->ncommit = g->nrec;
            }
            continue;
        }
        uint32_t tl = get32(s->rbuf);
        out->topic = s->rbuf + 4;
        out->topic_len = tl;
        out->body = s->rbuf + 4 + tl;
        out->body_len = len - 4 - tl;
        s->roff += 8 + len;
        g->nread++;
        if (g->skip_next < g->nskip) {
            /* Past the damage now, so that a commit's cursor is too and the
             * next start does not count it again. */
            s->roff = skip_damage(g, s->roff);
        }
        return 1;
    }
    return 0;
}

void vigil_spool_mark_read(struct vigil_spool *s)
{
    for (size_t i = 0; i < s->nseg; i++) {
        s->segs[i].nread = s->segs[i].nrec;
    }
    if (s->nseg) {
        s->rid = s->segs[s->nseg - 1].id;
        s->roff = s->segs[s->nseg - 1].size;
    }
}

int vigil_spool_commit(struct vigil_spool *s)
{
    for (size_t i = 0; i < s->nseg; i++) {
        s->segs[i].ncommit = s->segs[i].nread;
    }
    char path[PATH_MAX], tmp[PATH_MAX];
    snprintf(path, sizeof path, "%s/cursor", s->dir);
    snprintf(tmp, sizeof tmp, "%s/cursor.tmp", s->dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        return -errno;
    }
    char line[64];
    int n = snprintf(line, sizeof line, "%016" PRIx64 " %" PRIu64 "\n", s->rid, s->roff);
    int rc = write_all(fd, line, (size_t)n);
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -errno;
    }
    if (rc != 0) {
        return rc;
    }
    /* Segments wholly delivered go; the one being appended to stays unless
     * everything is delivered. */
    bool all = vigil_spool_empty(s);
    while (s->nseg && s->segs[0].ncommit == s->segs[0].nrec && (all || !is_wseg(s, &s->segs[0])) &&
           (s->nseg > 1 || all)) {
        remove_head(s);
    }
    return 0;
}

void vigil_spool_counts(const struct vigil_spool *s, struct vigil_spool_counts *out)
{
    out->events = 0;
    for (size_t i = 0; i < s->nseg; i++) {
        out->events += s->segs[i].nrec - s->segs[i].ncommit;
    }
    out->bytes = s->total_bytes;
    out->dropped_total = s->dropped_total;
    out->corrupt_total = s->corrupt_total;
    out->skipped_bytes_total = s->skipped_bytes_total;
}

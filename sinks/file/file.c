/* file: a sink that appends events to a file, as JSON Lines or as
 * length-prefixed msgpack records, rotates it by size, reopens it on SIGHUP
 * (logrotate) and syncs it as configured. Each write() formats its batch into
 * one reused buffer and hands it to the kernel in one write(2); a write that
 * fails midway is cut back to the last whole record, so the file never holds
 * a torn one, and the events not written are answered RETRY.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vigil/plugin.h"

#define FILE_MODE 0640
#define DIR_MODE 0750
#define KEEP_MAX 1000
/* Flush the buffer once it holds this much, so a huge batch does not make a
 * huge buffer; a batch normally fits in one write(2). */
#define CHUNK_BYTES (4u << 20)
/* One event's record larger than this is refused (FAIL) instead of growing
 * the buffer without bound. */
#define RECORD_MAX (64u << 20)
#define BUF_INITIAL (64u << 10)
#define ROTATE_RETRY_NS 1000000000ull /* after a failed rotation */
/* page_cache: drop. Every DROP_STEP bytes appended, the sink starts the
 * new ones on their way to disk (fsync: never; the other modes have synced
 * them already) and drops from the page cache what it started DROP_LAG
 * bytes earlier: readers tailing the file are far nearer its end. Starting
 * writeback holds the sink thread for about a millisecond per 8 MiB here:
 * in steps of 8 MiB that put 1.3-1.4 ms on the p99 latency at 100,000
 * events/s, in steps of 1 MiB it stays near 0.7 ms (docs/benchmarks.md). */
#define DROP_STEP (1u << 20)
#define DROP_LAG (32u << 20)

enum file_format { FORMAT_JSON, FORMAT_MSGPACK };
enum file_fsync { FSYNC_NEVER, FSYNC_BATCH, FSYNC_ALWAYS };

struct file_sink {
    struct vigil_instance *h;
    const struct vigil_api *api;
    const char *path; /* the config's string: valid until fini */
    size_t path_len;
    char *from, *to; /* rotation names: path.N */
    enum file_format format;
    enum file_fsync fsync;
    uint64_t rotate_bytes; /* 0 = never */
    unsigned keep;

    int fd;        /* -1: not open; the next write() opens it */
    bool regular;  /* a regular file: can be rotated and truncated */
    uint64_t size; /* bytes in the file: learnt per write() call, plus ours */
    uint64_t rotate_not_before_ns;
    bool drop_cache;           /* page_cache: drop */
    uint64_t started, dropped; /* offsets: writeback started up to, dropped up to */
    bool failing;              /* the last attempt failed: say so when it works again */

    /* The chunk being built: bytes, and per record its event's index and
     * where it ends in buf. Reused across calls. */
    char *buf;
    size_t len, cap;
    size_t *idx, *ends;
    size_t nrec, rec_cap;
};

static const struct vigil_option file_options[] = {
    {"path", VIGIL_OPT_STRING, NULL, "absolute path of the file to append events to (required)"},
    {"format", VIGIL_OPT_STRING, "json",
     "json (one JSON object per line) or msgpack (4-byte big-endian length, then a msgpack map)"},
    {"rotate", VIGIL_OPT_MAP, NULL,
     "{ size: 100MiB, keep: 5 }: rotate before the file would pass size (0 = never), keeping "
     "path.1 (newest) .. path.<keep>"},
    {"fsync", VIGIL_OPT_STRING, "batch",
     "never (the kernel decides), batch (fdatasync once per write batch) or always (after "
     "every event)"},
    {"page_cache", VIGIL_OPT_STRING, "drop",
     "drop (what was written more than 32 MiB before the end leaves the page cache once on "
     "disk) or keep (the kernel decides)"},
    {NULL, 0, NULL, NULL},
};

/* ---- Small helpers ---------------------------------------------------------- */

/* What an operator can do about an I/O error. */
static const char *io_hint(int err)
{
    switch (-err) {
    case ENOSPC:
        return "the disk is full; free space there";
    case EDQUOT:
        return "the disk quota is used up; raise it or free space";
    case EFBIG:
        return "the file reached the largest size allowed (ulimit -f or the filesystem); "
               "set rotate.size below it";
    case EACCES:
    case EPERM:
        return "check the owner, mode and attributes (lsattr) of the file and its folder";
    case EROFS:
        return "the filesystem is mounted read-only";
    default:
        return "check the file and its filesystem";
    }
}

/* An I/O error, rate limited: events are held by the host meanwhile. */
static void report_io(struct file_sink *s, const char *what, const char *path, int err)
{
    s->failing = true;
    s->api->log_limited(s->h, VIGIL_LOG_WARN, "%s %s: %s (%s); events are held and retried", what,
                        path, s->api->strerror(err), io_hint(err));
}

/* ---- Opening, rotating -------------------------------------------------------- */

/* Creates the missing folders above path, mode 0750 (exactly: not reduced by
 * the umask). Returns 0 or -errno. */
static int make_parents(const char *path)
{
    char *p = strdup(path);
    if (!p) {
        return -ENOMEM;
    }
    int rc = 0;
    for (char *slash = strchr(p + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if (mkdir(p, DIR_MODE) == 0) {
            chmod(p, DIR_MODE);
        } else if (errno != EEXIST) {
            rc = -errno;
            break;
        }
        *slash = '/';
    }
    free(p);
    return rc;
}

/* Makes a new name in path's folder (a created or rotated file) durable:
 * without it a power cut can lose the file that fdatasync made durable. */
static void sync_dir(struct file_sink *s)
{
    char *dir = strdup(s->path);
    if (!dir) {
        return;
    }
    char *slash = strrchr(dir, '/');
    slash[slash == dir] = '\0'; /* "/x" -> "/" */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        report_io(s, "cannot sync the folder", dir, -errno);
    }
    if (fd >= 0) {
        close(fd);
    }
    free(dir);
}

/* Opens (creating, mode 0640 exactly) the file for appending and learns its
 * size. Returns 0 or -errno. */
static int file_open(struct file_sink *s)
{
    int fd = -1;
    bool created = false, made_parents = false;
    /* O_EXCL tells us whether we created it, so an existing file keeps the
     * mode its owner gave it; the loop covers a file removed between the
     * two opens. O_NONBLOCK only so that a FIFO without a reader fails
     * (ENXIO, retried) instead of hanging the thread; it is cleared below. */
    for (int attempt = 0; attempt < 4 && fd < 0; attempt++) {
        fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC | O_NONBLOCK,
                  FILE_MODE);
        if (fd >= 0) {
            created = true;
            break;
        }
        if (errno == EEXIST) {
            fd = open(s->path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NONBLOCK);
            if (fd < 0 && errno != ENOENT) {
                return -errno;
            }
        } else if (errno == ENOENT && !made_parents) {
            made_parents = true;
            int rc = make_parents(s->path);
            if (rc != 0) {
                return rc;
            }
        } else {
            return -errno;
        }
    }
    if (fd < 0) {
        return -ENOENT;
    }
    struct stat st;
    if (fcntl(fd, F_SETFL, O_APPEND) != 0 || fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (created) {
        fchmod(fd, FILE_MODE); /* the umask may have taken bits off */
        if (s->fsync != FSYNC_NEVER) {
            sync_dir(s);
        }
    }
    s->fd = fd;
    s->regular = S_ISREG(st.st_mode);
    s->size = s->regular ? (uint64_t)st.st_size : 0;
    return 0;
}

static void file_close(struct file_sink *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

/* path.N into buf (sized for any N up to KEEP_MAX + 1). */
static void numbered(const struct file_sink *s, char *buf, unsigned n)
{
    memcpy(buf, s->path, s->path_len);
    snprintf(buf + s->path_len, 16, ".%u", n);
}

/* path.keep-1 -> path.keep, ..., path -> path.1 (path.keep is replaced:
 * that is the oldest going). With keep 0 the file is simply removed. A
 * missing file is no error (logrotate or a person may have moved it).
 * Returns 0 or -errno, after which nothing further was renamed. */
static int shift_files(struct file_sink *s)
{
    if (s->keep == 0) {
        return unlink(s->path) == 0 || errno == ENOENT ? 0 : -errno;
    }
    for (unsigned k = s->keep - 1; k >= 1; k--) {
        numbered(s, s->from, k);
        numbered(s, s->to, k + 1);
        if (rename(s->from, s->to) != 0 && errno != ENOENT) {
            return -errno;
        }
    }
    numbered(s, s->to, 1);
    return rename(s->path, s->to) == 0 || errno == ENOENT ? 0 : -errno;
}

/* Moves the full file aside and opens a new one. When the renames fail the
 * old file stays open and in use (nothing is lost; it just grows past
 * rotate.size) and rotation is tried again a second later. Returns 0, or
 * -errno when no file is open any more. */
static int rotate(struct file_sink *s)
{
    int rc = shift_files(s);
    if (rc != 0) {
        report_io(s, "cannot rotate", s->path, rc);
        s->rotate_not_before_ns = s->api->mono_ns() + ROTATE_RETRY_NS;
        return 0;
    }
    file_close(s);
    rc = file_open(s);
    if (rc != 0) {
        report_io(s, "cannot open", s->path, rc);
    }
    return rc;
}

/* Whether a record of rec bytes, appended after the chunk so far, must go to
 * a new file. A file that is still empty takes any record: a record larger
 * than rotate.size gets a file of its own rather than being split. */
static bool must_rotate(const struct file_sink *s, size_t rec)
{
    uint64_t used = s->size + s->len;
    return s->rotate_bytes && s->regular && used > 0 && used + rec > s->rotate_bytes &&
           s->api->mono_ns() >= s->rotate_not_before_ns;
}

/* ---- Records -------------------------------------------------------------------- */

/* Room for `more` bytes after the chunk. */
static bool buf_reserve(struct file_sink *s, size_t more)
{
    if (s->cap - s->len >= more) {
        return true;
    }
    size_t cap = s->cap ? s->cap : BUF_INITIAL;
    while (cap - s->len < more) {
        cap *= 2;
    }
    char *b = realloc(s->buf, cap);
    if (!b) {
        return false;
    }
    s->buf = b;
    s->cap = cap;
    return true;
}

/* The JSON object vigil-tap prints, and a newline. */
static int format_json(struct file_sink *s, const struct vigil_event *ev, size_t *rec)
{
    size_t room = s->cap - s->len;
    size_t need = s->api->event_json(ev, s->buf + s->len, room);
    if (need == 0) {
        return VIGIL_EMALFORMED;
    }
    if (need >= RECORD_MAX) {
        return VIGIL_ETOOBIG;
    }
    if (need + 1 > room) { /* did not fit: grow and format again */
        if (!buf_reserve(s, need + 1)) {
            return -ENOMEM;
        }
        s->api->event_json(ev, s->buf + s->len, s->cap - s->len);
    }
    s->buf[s->len + need] = '\n'; /* over the NUL */
    *rec = need + 1;
    return 0;
}

static uint8_t *put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        *p++ = (uint8_t)(v >> (8 * i));
    }
    return p;
}

static uint8_t *put_map_header(uint8_t *p, uint32_t n)
{
    if (n < 16) {
        *p++ = (uint8_t)(0x80 | n);
        return p;
    }
    if (n <= 0xffff) {
        *p++ = 0xde;
        return put_be(p, n, 2);
    }
    *p++ = 0xdf;
    return put_be(p, n, 4);
}

static uint8_t *put_str_header(uint8_t *p, uint32_t n)
{
    if (n < 32) {
        *p++ = (uint8_t)(0xa0 | n);
        return p;
    }
    if (n <= 0xff) {
        *p++ = 0xd9;
        return put_be(p, n, 1);
    }
    if (n <= 0xffff) {
        *p++ = 0xda;
        return put_be(p, n, 2);
    }
    *p++ = 0xdb;
    return put_be(p, n, 4);
}

/* The map header at the start of a msgpack body: entry count and header
 * length, or false when the body is not a map. */
static bool body_map(const uint8_t *b, size_t len, uint32_t *count, size_t *hlen)
{
    if (len >= 1 && (b[0] & 0xf0) == 0x80) {
        *count = b[0] & 0x0f;
        *hlen = 1;
    } else if (len >= 3 && b[0] == 0xde) {
        *count = (uint32_t)b[1] << 8 | b[2];
        *hlen = 3;
    } else if (len >= 5 && b[0] == 0xdf) {
        *count = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];
        *hlen = 5;
    } else {
        return false;
    }
    return true;
}

/* 4-byte big-endian length, then one map: "topic" first, then the body's
 * own entries, copied as they travelled (no decoding). */
static int format_msgpack(struct file_sink *s, const struct vigil_event *ev, size_t *rec)
{
    size_t tlen, blen, hlen;
    uint32_t count;
    const char *topic = s->api->event_topic(ev, &tlen);
    const uint8_t *body = s->api->event_body(ev, &blen);
    if (!topic || !body || !body_map(body, blen, &count, &hlen) || count == UINT32_MAX ||
        tlen > UINT32_MAX) {
        return VIGIL_EMALFORMED;
    }
    size_t entries = blen - hlen;
    size_t max = 4 + 5 + 6 + 5 + tlen + entries; /* headers at their largest */
    if (max >= RECORD_MAX) {
        return VIGIL_ETOOBIG;
    }
    if (!buf_reserve(s, max)) {
        return -ENOMEM;
    }
    uint8_t *start = (uint8_t *)s->buf + s->len;
    uint8_t *p = put_map_header(start + 4, count + 1);
    p = put_str_header(p, 5);
    memcpy(p, "topic", 5);
    p = put_str_header(p + 5, (uint32_t)tlen);
    memcpy(p, topic, tlen);
    p += tlen;
    memcpy(p, body + hlen, entries);
    p += entries;
    size_t n = (size_t)(p - start) - 4;
    put_be(start, n, 4);
    *rec = n + 4;
    return 0;
}

/* One event's record at the end of the chunk (not yet counted in s->len).
 * Returns 0, -ENOMEM, or another code when the event can never be written. */
static int format_event(struct file_sink *s, const struct vigil_event *ev, size_t *rec)
{
    if (!s->buf && !buf_reserve(s, BUF_INITIAL)) {
        return -ENOMEM;
    }
    return s->format == FORMAT_JSON ? format_json(s, ev, rec) : format_msgpack(s, ev, rec);
}

/* ---- Writing -------------------------------------------------------------------- */

/* Writes p[0..len) at the end of the file, across short writes. Returns 0 or
 * -errno; *done is what was written either way. */
static int write_all(int fd, const char *p, size_t len, size_t *done)
{
    size_t off = 0;
    int rc = 0;
    while (off < len) {
        ssize_t n = write(fd, p + off, len - off);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            rc = n < 0 ? -errno : -EIO;
            break;
        }
    }
    *done = off;
    return rc;
}

/* Writes the chunk (and syncs it, if configured) and marks its events OK.
 * The `tail` bytes after the chunk (a record formatted but not yet in it)
 * move to the front of the buffer. On failure the file is cut back to its
 * last whole record, the records written whole before the failure are OK
 * (unless a sync failed: then none of the chunk is known to be on disk, so
 * it is cut off entirely and retried), the file is closed so the next
 * write() reopens it, and false is returned. */
static bool flush_chunk(struct file_sink *s, enum vigil_write_result *results, size_t tail)
{
    size_t done;
    int rc = write_all(s->fd, s->buf, s->len, &done);
    size_t good = 0;
    while (good < s->nrec && s->ends[good] <= done) {
        good++;
    }
    const char *what = "cannot write";
    if (rc == 0 && s->fsync != FSYNC_NEVER && fdatasync(s->fd) != 0) {
        rc = -errno;
        good = 0;
        what = "cannot sync";
    }
    size_t kept = good ? s->ends[good - 1] : 0;
    if (rc != 0) {
        if (s->regular && ftruncate(s->fd, (off_t)(s->size + kept)) != 0) {
            s->api->log(s->h, VIGIL_LOG_ERROR,
                        "cannot cut %s back to its last whole record after a failed write: %s; "
                        "it may now hold a partial record at byte %llu",
                        s->path, s->api->strerror(-errno), (unsigned long long)(s->size + kept));
        }
        report_io(s, what, s->path, rc);
        file_close(s);
    } else if (s->failing) {
        s->failing = false;
        s->api->log(s->h, VIGIL_LOG_INFO, "writing to %s again", s->path);
    }
    for (size_t i = 0; i < good; i++) {
        results[s->idx[i]] = VIGIL_WRITE_OK;
    }
    s->size += kept;
    if (tail) {
        memmove(s->buf, s->buf + s->len, tail);
    }
    s->len = 0;
    s->nrec = 0;
    return rc == 0;
}

/* page_cache: drop. A log file written at full speed would otherwise fill
 * the page cache (on a virtualization host, the memory the guests' I/O
 * caches live in) and every new page is memory the kernel, and on a VM the
 * hypervisor, must first find: writing into pages just freed costs a
 * fraction of that (docs/benchmarks.md). Best effort, never waits: a page
 * not yet written back when its turn comes stays cached, as with keep. */
static void drop_behind(struct file_sink *s)
{
    if (!s->drop_cache || !s->regular || s->fd < 0) {
        return;
    }
    /* Rotated, reopened or truncated (copytruncate): start again. */
    if (s->size < s->started || s->size < s->dropped) {
        s->started = s->dropped = 0;
    }
    if (s->size < s->started + DROP_STEP) {
        return;
    }
    uint64_t upto = s->size & ~(uint64_t)4095;
    if (s->fsync == FSYNC_NEVER) {
        sync_file_range(s->fd, (off_t)s->started, (off_t)(upto - s->started),
                        SYNC_FILE_RANGE_WRITE);
    }
    s->started = upto;
    if (upto > DROP_LAG && upto - DROP_LAG > s->dropped) {
        uint64_t to = upto - DROP_LAG;
        posix_fadvise(s->fd, (off_t)s->dropped, (off_t)(to - s->dropped), POSIX_FADV_DONTNEED);
        s->dropped = to;
    }
}

static void report_event(struct file_sink *s, int rc)
{
    s->api->log_limited(s->h, VIGIL_LOG_WARN, "an event cannot be written (%s); dropped",
                        s->api->strerror(rc));
}

static int file_write(void *state, const struct vigil_event *const *events, size_t n,
                      enum vigil_write_result *results)
{
    struct file_sink *s = state;
    for (size_t i = 0; i < n; i++) {
        results[i] = VIGIL_WRITE_RETRY;
    }
    if (n > s->rec_cap) {
        size_t *idx = realloc(s->idx, n * sizeof *idx);
        if (idx) {
            s->idx = idx;
        }
        size_t *ends = realloc(s->ends, n * sizeof *ends);
        if (ends) {
            s->ends = ends;
        }
        if (!idx || !ends) {
            return -ENOMEM;
        }
        s->rec_cap = n;
    }
    if (s->fd < 0) {
        int rc = file_open(s);
        if (rc != 0) {
            report_io(s, "cannot open", s->path, rc);
            return 0;
        }
    } else if (s->regular) {
        /* Where the file ends now, for rotation and for cutting back after a
         * failed write: logrotate's copytruncate may have emptied it. */
        struct stat st;
        if (fstat(s->fd, &st) == 0) {
            s->size = (uint64_t)st.st_size;
        }
    }
    s->len = 0;
    s->nrec = 0;
    for (size_t i = 0; i < n; i++) {
        size_t rec;
        int rc = format_event(s, events[i], &rec);
        if (rc == -ENOMEM) {
            break; /* write what we have; the rest is retried */
        }
        if (rc != 0) {
            results[i] = VIGIL_WRITE_FAIL;
            report_event(s, rc);
            continue;
        }
        if (must_rotate(s, rec)) {
            if (s->nrec && !flush_chunk(s, results, rec)) {
                return 0;
            }
            if (rotate(s) != 0) {
                return 0;
            }
        }
        s->len += rec;
        s->idx[s->nrec] = i;
        s->ends[s->nrec++] = s->len;
        if ((s->fsync == FSYNC_ALWAYS || s->len >= CHUNK_BYTES) && !flush_chunk(s, results, 0)) {
            return 0;
        }
    }
    if (s->nrec) {
        flush_chunk(s, results, 0);
    }
    drop_behind(s);
    /* One huge record should not pin a huge buffer. */
    if (s->cap > 2 * CHUNK_BYTES) {
        free(s->buf);
        s->buf = NULL;
        s->cap = 0;
    }
    return 0;
}

/* SIGHUP (logrotate moved or removed the file): write to a file at path
 * again, created if it is not there. */
static int file_reopen(void *state)
{
    struct file_sink *s = state;
    file_close(s);
    int rc = file_open(s);
    if (rc != 0) {
        report_io(s, "cannot reopen", s->path, rc);
    }
    return rc;
}

/* ---- Set-up ---------------------------------------------------------------------- */

/* Picks one of words (NULL-ended); reports at the node when it is none. */
static int keyword(struct file_sink *s, const char *key, const char *const *words, int *out)
{
    const struct vigil_api *api = s->api;
    const struct vigil_conf *n = api->conf_get(api->conf_root(s->h), key);
    const char *v = NULL;
    api->conf_string(n, &v);
    char list[64] = "";
    for (int i = 0; words[i]; i++) {
        if (v && strcmp(v, words[i]) == 0) {
            *out = i;
            return 0;
        }
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s",
                 i == 0         ? ""
                 : words[i + 1] ? ", "
                                : " or ",
                 words[i]);
    }
    api->conf_error(s->h, n, "%s must be %s, not '%s'", key, list, v ? v : "");
    return VIGIL_ECONFIG;
}

static int parse_rotate(struct file_sink *s)
{
    const struct vigil_api *api = s->api;
    const struct vigil_conf *r = api->conf_get(api->conf_root(s->h), "rotate");
    int bad = 0;
    s->rotate_bytes = 100ull << 20;
    s->keep = 5;
    for (size_t i = 0; r && i < api->conf_len(r); i++) {
        const char *k;
        const struct vigil_conf *v = api->conf_at(r, i, &k);
        int64_t keep;
        if (strcmp(k, "size") == 0) {
            if (api->conf_size(v, &s->rotate_bytes) != 0) {
                api->conf_error(s->h, v,
                                "rotate.size must be a size such as 100MiB, or 0 "
                                "for never");
                bad++;
            }
        } else if (strcmp(k, "keep") == 0) {
            if (api->conf_int(v, &keep) != 0 || keep < 0 || keep > KEEP_MAX) {
                api->conf_error(s->h, v, "rotate.keep must be a whole number from 0 to %d",
                                KEEP_MAX);
                bad++;
            } else {
                s->keep = (unsigned)keep;
            }
        } else {
            api->conf_error(s->h, v, "unknown key '%s' in rotate (valid keys: size, keep)", k);
            bad++;
        }
    }
    return bad ? VIGIL_ECONFIG : 0;
}

/* A warning at start (also under vigild --check) when the file cannot be
 * written now: not an error, since events are held until it can. Nothing is
 * created here: --check must not leave files behind. */
static void check_writable(struct file_sink *s)
{
    char *p = strdup(s->path);
    if (!p) {
        return;
    }
    int rc = access(p, W_OK) == 0 ? 0 : -errno;
    /* A missing file (or folder) is made later: ask its nearest ancestor. */
    char *slash;
    while (rc == -ENOENT && (slash = strrchr(p, '/'))) {
        bool root = slash == p;
        slash[root] = '\0';
        rc = access(p, W_OK | X_OK) == 0 ? 0 : -errno;
        if (root) {
            break;
        }
    }
    if (rc != 0) {
        s->api->log(s->h, VIGIL_LOG_WARN,
                    "%s cannot be written now (%s: %s); events will be held and retried until "
                    "it can",
                    s->path, p, s->api->strerror(rc));
    }
    free(p);
}

static void file_fini(void *state)
{
    struct file_sink *s = state;
    if (!s) {
        return;
    }
    file_close(s);
    free(s->from);
    free(s->to);
    free(s->buf);
    free(s->idx);
    free(s->ends);
    free(s);
}

static int file_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    static const char *const formats[] = {"json", "msgpack", NULL};
    static const char *const syncs[] = {"never", "batch", "always", NULL};
    static const char *const caches[] = {"keep", "drop", NULL};
    const struct vigil_conf *root = api->conf_root(h);
    struct file_sink *s = calloc(1, sizeof *s);
    if (!s) {
        return -ENOMEM;
    }
    s->h = h;
    s->api = api;
    s->fd = -1;
    int bad = 0, v = 0;
    const struct vigil_conf *pn = api->conf_get(root, "path");
    if (api->conf_string(pn, &s->path) != 0) {
        api->conf_error(h, root, "the file sink needs 'path': the file to append events to");
        bad++;
    } else if (s->path[0] != '/' || s->path[strlen(s->path) - 1] == '/') {
        api->conf_error(h, pn, "path must be the absolute path of a file, not '%s'", s->path);
        bad++;
    }
    bad += keyword(s, "format", formats, &v) != 0;
    s->format = (enum file_format)v;
    bad += keyword(s, "fsync", syncs, &v) != 0;
    s->fsync = (enum file_fsync)v;
    v = 1;
    bad += keyword(s, "page_cache", caches, &v) != 0;
    s->drop_cache = v == 1;
    bad += parse_rotate(s) != 0;
    if (bad) {
        file_fini(s);
        return VIGIL_ECONFIG;
    }
    s->path_len = strlen(s->path);
    s->from = malloc(s->path_len + 16);
    s->to = malloc(s->path_len + 16);
    if (!s->from || !s->to) {
        file_fini(s);
        return -ENOMEM;
    }
    /* Past `ulimit -f` the kernel sends SIGXFSZ, whose default action kills
     * the daemon; ignored, the write fails with EFBIG and the events are
     * retried. Only a default disposition is changed. */
    struct sigaction sa;
    if (sigaction(SIGXFSZ, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        signal(SIGXFSZ, SIG_IGN);
    }
    check_writable(s);
    *state = s;
    return 0;
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SINK,
    .name = "file",
    .version = "1.0.0",
    .description = "appends events to a file (JSON Lines or msgpack), with rotation",
    .options = file_options,
    .init = file_init,
    .write = file_write,
    .fini = file_fini,
    .reopen = file_reopen,
};

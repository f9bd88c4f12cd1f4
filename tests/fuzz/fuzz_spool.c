/* libFuzzer target for the disk spool's reader (pipeline/spool.c): a sink
 * reads segment files a previous run left, after crashes, power losses and
 * disk damage. The input is written as a segment file (as is, and after the
 * spool's magic, with and without a cursor into it); opening must keep
 * whatever it accepts readable to the end, count what it skipped, and leave
 * a spool that a commit empties and that opens clean again. The seeds in
 * corpus/spool are valid segments without their magic (the target adds it).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "log.h"
#include "spool.h"

static char dir[64];

static void put_file(const char *name, const void *a, size_t alen, const void *b, size_t blen)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    CHECK(fd >= 0);
    CHECK(write(fd, a, alen) == (ssize_t)alen);
    CHECK(blen == 0 || write(fd, b, blen) == (ssize_t)blen);
    close(fd);
}

/* Leaves the folder empty for the next run. */
static void clear(void)
{
    DIR *d = opendir(dir);
    CHECK(d);
    struct dirent *e;
    char path[384];
    while ((e = readdir(d))) {
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%.255s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

static struct vigil_spool *open_it(void)
{
    struct vigil_spool *s = NULL;
    char err[256];
    CHECK(vigil_spool_open(dir, 1 << 30, "fuzz", &s, err, sizeof err) == 0);
    return s;
}

static void one(const uint8_t *data, size_t size, bool magic, long cursor)
{
    put_file("0000000000000001.seg", magic ? "VGSPOOL1" : "", magic ? 8 : 0, data, size);
    if (cursor >= 0) {
        char line[64];
        int n = snprintf(line, sizeof line, "0000000000000001 %ld\n", cursor);
        put_file("cursor", line, (size_t)n, NULL, 0);
    }
    struct vigil_spool *s = open_it();
    struct vigil_spool_counts c;
    vigil_spool_counts(s, &c);
    CHECK(c.skipped_bytes_total <= size + 8);
    CHECK(c.corrupt_total <= size + 1);
    /* Every record it kept is readable, and no more. */
    struct vigil_spool_rec r;
    uint64_t n = 0;
    int rc;
    while ((rc = vigil_spool_read(s, &r)) == 1) {
        CHECK(r.topic_len + r.body_len <= size);
        n++;
    }
    CHECK(rc == 0);
    CHECK(n == c.events);
    /* Appending after what it kept works and reads back. */
    CHECK(vigil_spool_append(s, "t", 1, "body", 4) == 0);
    CHECK(vigil_spool_read(s, &r) == 1 && r.topic_len == 1 && r.body_len == 4 &&
          memcmp(r.body, "body", 4) == 0);
    CHECK(vigil_spool_read(s, &r) == 0);
    CHECK(vigil_spool_commit(s) == 0);
    CHECK(vigil_spool_empty(s));
    vigil_spool_close(s);
    /* Delivered: the next start finds nothing, damaged or not. */
    s = open_it();
    vigil_spool_counts(s, &c);
    CHECK(c.events == 0 && c.corrupt_total == 0);
    vigil_spool_close(s);
    clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        vigil_log_set_level(VIGIL_LOG_ERROR); /* a warning per damage: too many lines */
        /* tmpfs when there is one: close() syncs, and a disk would set the pace. */
        snprintf(dir, sizeof dir, "%s/vigil-fuzz-spool.XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        CHECK(mkdtemp(dir));
    }
    one(data, size, false, -1);
    one(data, size, true, -1);
    if (size >= 2) {
        one(data, size, true, (long)((data[0] | data[1] << 8) % (size + 9)));
    }
    return 0;
}

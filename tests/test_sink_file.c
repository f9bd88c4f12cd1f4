/* The file sink, end to end: the real vigild with file.so, events published
 * through the real bus with vigil-pub and gen, and the files read back with
 * real parsers (python's json, msgpack-c). Disk full, file-size limits and
 * permission errors are made for real: a tiny tmpfs, RLIMIT_FSIZE, a folder
 * the daemon may not write.
 */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "json.h"

struct fixture {
    struct vd v;
    char mnt[PATH_MAX]; /* a tmpfs this test mounted, or "" */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    *state = f;
    return f ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->mnt[0]) {
        /* Lazy: vigild may still hold the file open; the mount goes when it
         * exits, and rm -rf below never crosses into it. */
        if (umount2(f->mnt, MNT_DETACH) != 0) {
            fprintf(stderr, "cannot unmount %s: %s\n", f->mnt, strerror(errno));
        }
    }
    vd_cleanup(&f->v);
    free(f);
    return 0;
}

static char *path_in(const struct vd *v, const char *name)
{
    char *p = malloc(PATH_MAX);
    snprintf(p, PATH_MAX, "%s/%s", v->dir, name);
    return p;
}

/* The test's daemon with its config written from body; not started yet. */
static struct vd *configure(void **state, const char *body)
{
    struct fixture *f = *state;
    assert_int_equal(vd_setup(&f->v, NULL, body), 0);
    return &f->v;
}

static void start(struct vd *v)
{
    if (vd_start(v) != 0) {
        vd_dump_log(v);
        fail_msg("vigild did not start");
    }
}

/* n events for vigil-pub: {"labels":{"i":"<i>","pad":"<pad bytes>"},...}. */
static char *plain_events(size_t n, size_t pad, size_t *len)
{
    size_t cap = n * (pad + 96) + 1;
    char *in = malloc(cap), *p = in;
    char *padding = malloc(pad + 1);
    memset(padding, 'x', pad);
    padding[pad] = '\0';
    for (size_t i = 0; i < n; i++) {
        p += snprintf(p, cap - (size_t)(p - in),
                      "{\"labels\":{\"i\":\"%zu\",\"pad\":\"%s\"},\"values\":{\"x\":%zu.25}}\n", i,
                      padding, i);
    }
    free(padding);
    *len = (size_t)(p - in);
    return in;
}

/* Publishes the lines of `in` with vigil-pub under topic and source. */
static void publish(const struct vd *v, const char *topic, const char *source, const char *in,
                    size_t len)
{
    char *const argv[] = {VIGIL_BUILD_DIR "/vigil-pub",
                          "-c",
                          (char *)v->cfg,
                          "-t",
                          (char *)topic,
                          "--source",
                          (char *)source,
                          NULL};
    char *err = NULL;
    int rc = run(argv, in, len, NULL, &err, 60);
    if (rc != 0) {
        fail_msg("vigil-pub exited %d: %s", rc, err);
    }
    free(err);
}

static void publish_plain(const struct vd *v, const char *source, size_t n, size_t pad)
{
    size_t len;
    char *in = plain_events(n, pad, &len);
    publish(v, "test.file", source, in, len);
    free(in);
}

static bool log_has(const struct vd *v, const char *needle)
{
    char *log = slurp(v->log);
    bool has = log && strstr(log, needle);
    free(log);
    return has;
}

static bool wait_log(const struct vd *v, const char *needle, int timeout_s)
{
    for (int i = 0; i < timeout_s * 50; i++) {
        if (log_has(v, needle)) {
            return true;
        }
        sleep_ms(20);
    }
    vd_dump_log(v);
    return false;
}

/* The file ends with a newline (or is empty): no record was left torn. */
static bool ends_whole(const char *path)
{
    char *s = slurp(path);
    size_t n = s ? strlen(s) : 0;
    bool ok = s && (n == 0 || s[n - 1] == '\n');
    if (!ok) {
        fprintf(stderr, "%s does not end with a newline\n", path);
    }
    free(s);
    return ok;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Mounts a tmpfs of `size` (e.g. "256k") at <dir>/mnt and returns that
 * path; NULL (and the test should skip) when this machine does not let us. */
static const char *mount_tmpfs(void **state, const char *size)
{
    struct fixture *f = *state;
    char opts[64];
    snprintf(opts, sizeof opts, "size=%s,mode=0755", size);
    snprintf(f->mnt, sizeof f->mnt, "%s/mnt", f->v.dir);
    if (mkdir(f->mnt, 0755) != 0 || mount("tmpfs", f->mnt, "tmpfs", 0, opts) != 0) {
        fprintf(stderr, "cannot mount a tmpfs at %s (%s): needs root and CAP_SYS_ADMIN\n", f->mnt,
                strerror(errno));
        f->mnt[0] = '\0';
        return NULL;
    }
    return f->mnt;
}

/* ---- Content ----------------------------------------------------------------- */

/* Labels and attrs that JSON must escape, published with vigil-pub and by
 * gen (whose labels come from YAML): every line parses with python's json
 * and carries exactly what was published; every (source, seq) once. */
static void test_json_lines_escaped_and_complete(void **state)
{
    struct vd *v =
        configure(state, "sources:\n"
                         "  - plugin: gen\n"
                         "    name: g\n"
                         "    rate: 20000\n"
                         "    count: 3000\n"
                         "    labels: { quote: 'a \"b\" \\\\ c', nl: \"x\\ny\\tz\\u0001\","
                         " utf8: \"h\\u00e9llo \\u65e5\" }\n"
                         "sinks:\n"
                         "  - plugin: file\n"
                         "    match: [gen., test.]\n"
                         "    path: @DIR@/out.jsonl\n");
    start(v);
    /* Lines of odd content, and every 50th a label of 30,000 bytes. */
    size_t n = 1000, cap = n * 400 + 31000 * (n / 50 + 1), len = 0;
    char *in = malloc(cap);
    char *huge = malloc(30001);
    memset(huge, 'h', 30000);
    huge[30000] = '\0';
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(
            in + len, cap - len,
            "{\"labels\":{\"i\":\"%zu\",\"q\":\"say \\\"hi\\\"\",\"bs\":\"C:\\\\dir\\\\\","
            "\"nl\":\"a\\nb\\r\\n\",\"tab\":\"x\\ty\",\"ctl\":\"\\u0001\\u001f\\u007f\\b\\f\","
            "\"utf8\":\"h\u00e9llo \u65e5\u672c \U0001F600\",\"empty\":\"\"%s%s%s},"
            "\"values\":{\"v\":-1.5e300,\"i\":%zu,\"z\":0},"
            "\"attrs\":{\"nested\":{\"list\":[1,\"two\",{\"three\":3.5}],\"t\":true,\"n\":null}}"
            "}\n",
            i, i % 50 ? "" : ",\"huge\":\"", i % 50 ? "" : huge, i % 50 ? "" : "\"", i);
    }
    free(huge);
    char *in_path = path_in(v, "in.jsonl");
    FILE *fp = fopen(in_path, "w");
    fwrite(in, 1, len, fp);
    fclose(fp);
    publish(v, "test.odd", "odd", in, len);
    free(in);

    char *out = path_in(v, "out.jsonl");
    assert_true(wait_lines(out, "\"source\":\"odd\"", n, 30));
    assert_true(wait_lines(out, "\"source\":\"g\"", 3000, 30));
    assert_true(seqs_complete(out, "odd", n));
    assert_true(seqs_complete(out, "g", 3000));
    assert_true(json_lines_valid(out));
    assert_true(ends_whole(out));
    /* What python reads back is what was published, byte for byte. */
    char *const argv[] = {"/usr/bin/python3",
                          "-c",
                          "import json,sys\n"
                          "want=[json.loads(l) for l in open(sys.argv[1], encoding='utf-8')]\n"
                          "got=[json.loads(l) for l in open(sys.argv[2], encoding='utf-8')]\n"
                          "odd=[e for e in got if e['source']=='odd']\n"
                          "assert len(odd)==len(want), (len(odd), len(want))\n"
                          "for w,g in zip(want,odd):\n"
                          "    assert g['topic']=='test.odd'\n"
                          "    for k in ('labels','values','attrs'):\n"
                          "        assert g[k]==w[k], (k, g[k], w[k])\n"
                          "gen=[e for e in got if e['source']=='g']\n"
                          "assert all(e['labels']['quote']=='a \"b\" \\\\\\\\ c' and "
                          "e['labels']['nl']=='x\\ny\\tz\\x01'"
                          " and e['labels']['utf8']=='h\\u00e9llo \\u65e5' for e in gen)\n"
                          "print(len(odd), len(gen))\n",
                          in_path,
                          out,
                          NULL};
    char *pout = NULL, *perr = NULL;
    int rc = run(argv, NULL, 0, &pout, &perr, 60);
    if (rc != 0) {
        fail_msg("python comparison failed (%d): %s", rc, perr);
    }
    assert_string_equal(pout, "1000 3000\n");
    free(pout);
    free(perr);
    free(in_path);
    free(out);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* Numbers compare by value: JSON does not keep msgpack's int/float split. */
static bool is_number(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
           o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || o->type == MSGPACK_OBJECT_FLOAT32 ||
           o->type == MSGPACK_OBJECT_FLOAT64;
}

static double as_double(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return (double)o->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return (double)o->via.i64;
    default:
        return o->via.f64;
    }
}

static bool str_is(const msgpack_object *o, const char *s)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static const msgpack_object *map_get(const msgpack_object *m, const msgpack_object *key)
{
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == key->via.str.size &&
            memcmp(k->via.str.ptr, key->via.str.ptr, k->via.str.size) == 0) {
            return &m->via.map.ptr[i].val;
        }
    }
    return NULL;
}

/* j (parsed from the JSON line) holds the same content as m (the msgpack
 * record). At the top level JSON writes labels/values/attrs as {} when the
 * event lacks them; msgpack carries the body as it travelled. */
static bool same(const msgpack_object *j, const msgpack_object *m, bool top)
{
    if (is_number(j) && is_number(m)) {
        if (j->type == m->type && j->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            return j->via.u64 == m->via.u64;
        }
        return as_double(j) == as_double(m);
    }
    if (m->type == MSGPACK_OBJECT_BIN && j->type == MSGPACK_OBJECT_STR) {
        return j->via.str.size == m->via.bin.size &&
               memcmp(j->via.str.ptr, m->via.bin.ptr, m->via.bin.size) == 0;
    }
    if (j->type != m->type) {
        return false;
    }
    switch (j->type) {
    case MSGPACK_OBJECT_NIL:
        return true;
    case MSGPACK_OBJECT_BOOLEAN:
        return j->via.boolean == m->via.boolean;
    case MSGPACK_OBJECT_STR:
        return j->via.str.size == m->via.str.size &&
               memcmp(j->via.str.ptr, m->via.str.ptr, j->via.str.size) == 0;
    case MSGPACK_OBJECT_ARRAY:
        if (j->via.array.size != m->via.array.size) {
            return false;
        }
        for (uint32_t i = 0; i < j->via.array.size; i++) {
            if (!same(&j->via.array.ptr[i], &m->via.array.ptr[i], false)) {
                return false;
            }
        }
        return true;
    case MSGPACK_OBJECT_MAP: {
        uint32_t matched = 0;
        for (uint32_t i = 0; i < m->via.map.size; i++) {
            const msgpack_object *jv = map_get(j, &m->via.map.ptr[i].key);
            if (!jv || !same(jv, &m->via.map.ptr[i].val, false)) {
                return false;
            }
            matched++;
        }
        for (uint32_t i = 0; i < j->via.map.size; i++) {
            const msgpack_object *k = &j->via.map.ptr[i].key;
            if (!map_get(m, k)) {
                bool filled = top && j->via.map.ptr[i].val.type == MSGPACK_OBJECT_MAP &&
                              j->via.map.ptr[i].val.via.map.size == 0 &&
                              (str_is(k, "labels") || str_is(k, "values") || str_is(k, "attrs"));
                if (!filled) {
                    return false;
                }
            }
        }
        return matched == m->via.map.size;
    }
    default:
        return false;
    }
}

/* format: msgpack beside format: json on the same events: each record is a
 * 4-byte big-endian length and one map, "topic" first, that msgpack-c
 * decodes to what the JSON line says. */
static void test_msgpack_matches_json(void **state)
{
    struct vd *v =
        configure(state, "sinks:\n"
                         "  - { plugin: file, name: j, match: test., path: @DIR@/out.jsonl }\n"
                         "  - plugin: file\n"
                         "    name: m\n"
                         "    match: test.\n"
                         "    format: msgpack\n"
                         "    fsync: never\n"
                         "    path: @DIR@/out.msgpack\n");
    start(v);
    size_t n = 2000, cap = n * 300, len = 0;
    char *in = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        /* Some events without labels or attrs; one with 20 labels (map16). */
        if (i % 7 == 0) {
            len += (size_t)snprintf(in + len, cap - len, "{\"values\":{\"x\":%zu}}\n", i);
        } else if (i % 11 == 0) {
            len += (size_t)snprintf(in + len, cap - len, "{\"labels\":{");
            for (int k = 0; k < 20; k++) {
                len += (size_t)snprintf(in + len, cap - len, "%s\"k%d\":\"v\\\"%d\"", k ? "," : "",
                                        k, k);
            }
            len += (size_t)snprintf(in + len, cap - len, "},\"extra\":[1,-2,3.5,\"\\n\"]}\n");
        } else {
            len +=
                (size_t)snprintf(in + len, cap - len,
                                 "{\"labels\":{\"i\":\"%zu\",\"u\":\"\u00e9\\t\\\\\"},"
                                 "\"values\":{\"x\":%zu.5,\"neg\":-%zu},\"attrs\":{\"b\":false}}\n",
                                 i, i, i);
        }
    }
    /* A topic over 31 bytes takes a str8 header. */
    publish(v, "test.a.topic.longer.than.thirty.one.bytes", "mp", in, len);
    free(in);
    char *jpath = path_in(v, "out.jsonl");
    char *mpath = path_in(v, "out.msgpack");
    assert_true(wait_lines(jpath, "\"source\":\"mp\"", n, 30));
    assert_true(seqs_complete(jpath, "mp", n));
    /* The msgpack sink runs on its own thread: wait for its last record. */
    size_t records = 0;
    char *data = NULL;
    off_t size = 0;
    for (int tries = 0; tries < 1500; tries++) {
        free(data);
        size = file_size(mpath);
        data = slurp(mpath); /* NUL-terminated, binary-safe with `size` */
        records = 0;
        for (off_t off = 0; data && off + 4 <= size;) {
            const uint8_t *p = (const uint8_t *)data + off;
            off += 4 + ((off_t)p[0] << 24 | (off_t)p[1] << 16 | (off_t)p[2] << 8 | p[3]);
            records += off <= size;
        }
        if (records >= n) {
            break;
        }
        sleep_ms(20);
    }
    assert_int_equal(records, n);

    FILE *jf = fopen(jpath, "r");
    assert_non_null(jf);
    char *line = NULL;
    size_t lcap = 0;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 8192);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    off_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = (const uint8_t *)data + off;
        size_t rlen = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        size_t used = 0;
        assert_int_equal(msgpack_unpack_next(&up, (const char *)p + 4, rlen, &used),
                         MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(used, rlen); /* exactly one object per record */
        off += 4 + (off_t)rlen;
        const msgpack_object *m = &up.data;
        assert_int_equal(m->type, MSGPACK_OBJECT_MAP);
        assert_true(str_is(&m->via.map.ptr[0].key, "topic"));
        assert_true(str_is(&m->via.map.ptr[0].val, "test.a.topic.longer.than.thirty.one.bytes"));

        ssize_t ll = getline(&line, &lcap, jf);
        assert_true(ll > 0);
        msgpack_object j;
        char err[128];
        assert_int_equal(vigil_json_parse(line, (size_t)ll, &zone, &j, err, sizeof err), 0);
        if (!same(&j, m, true)) {
            fail_msg("record %zu differs from its JSON line: %s", i, line);
        }
        msgpack_zone_clear(&zone);
    }
    assert_int_equal(off, size);
    msgpack_unpacked_destroy(&up);
    msgpack_zone_destroy(&zone);
    free(line);
    fclose(jf);
    free(data);
    free(jpath);
    free(mpath);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* ---- Rotation, modes ----------------------------------------------------- */

/* Writes path.K (oldest) .. path.1, path into one file, in that order, and
 * returns the number of files. With check (once the sink is idle: a reader
 * may see a write half done) each file must be whole lines of valid JSON and
 * at most max_bytes. */
static size_t concat_rotated(const char *path, unsigned keep, off_t max_bytes, const char *out,
                             bool check)
{
    FILE *o = fopen(out, "w");
    size_t files = 0;
    char name[PATH_MAX + 16];
    for (unsigned k = keep + 1; k-- > 0;) {
        if (k) {
            snprintf(name, sizeof name, "%s.%u", path, k);
        } else {
            snprintf(name, sizeof name, "%s", path);
        }
        char *s = slurp(name);
        if (!s) {
            continue;
        }
        files++;
        off_t size = file_size(name);
        if (check && (size > max_bytes || !ends_whole(name) || !json_lines_valid(name))) {
            fail_msg("%s: %lld bytes (limit %lld), or a torn or invalid line", name,
                     (long long)size, (long long)max_bytes);
        }
        fputs(s, o);
        free(s);
    }
    fclose(o);
    return files;
}

/* rotate.size 4KiB: with keep 50 every event is somewhere, once, in order;
 * with keep 2 only path, .1, .2 exist and they hold the newest events. No
 * file passes the size and none ends in a torn line. Rotated files are 0640
 * too. fsync: always exercised here. */
static void test_rotation(void **state)
{
    struct vd *v = configure(state, "sinks:\n"
                                    "  - plugin: file\n"
                                    "    name: all\n"
                                    "    match: test.\n"
                                    "    path: @DIR@/all/out.jsonl\n"
                                    "    fsync: always\n"
                                    "    rotate: { size: 4KiB, keep: 50 }\n"
                                    "  - plugin: file\n"
                                    "    name: two\n"
                                    "    match: test.\n"
                                    "    path: @DIR@/two/out.jsonl\n"
                                    "    rotate: { size: 4KiB, keep: 2 }\n");
    start(v);
    size_t n = 400; /* ~250 bytes each: about 25 files' worth */
    publish_plain(v, "rot", n, 100);
    char *all = path_in(v, "all/out.jsonl"), *two = path_in(v, "two/out.jsonl");
    char *cat = path_in(v, "cat.jsonl");
    bool done = false;
    for (int i = 0; i < 1500 && !done; i++) {
        concat_rotated(all, 50, 4096, cat, false);
        done = count_lines(cat, "\"source\":\"rot\"") >= n;
        if (!done) {
            sleep_ms(20);
        }
    }
    sleep_ms(100); /* let the write that made the last line finish */
    size_t files = concat_rotated(all, 50, 4096, cat, true);
    assert_true(files > 10 && files < 50);
    assert_true(seqs_complete(cat, "rot", n));

    char *last = NULL;
    assert_true(wait_lines(two, "\"seq\":400,", 1, 30));
    files = concat_rotated(two, 2, 4096, cat, true);
    assert_int_equal(files, 3);
    char three[PATH_MAX + 16];
    snprintf(three, sizeof three, "%s.3", two);
    assert_int_equal(file_size(three), -1); /* the oldest were removed */
    /* What is left is the newest, in order, ending at the last event. */
    FILE *c = fopen(cat, "r");
    size_t lcap = 0, lines = 0;
    unsigned long long prev = 0;
    while (getline(&last, &lcap, c) != -1) {
        unsigned long long seq = strtoull(strstr(last, "\"seq\":") + 6, NULL, 10);
        assert_true(lines == 0 || seq == prev + 1);
        prev = seq;
        lines++;
    }
    fclose(c);
    free(last);
    assert_int_equal(prev, n);
    assert_true(lines > 20 && lines < n);
    struct stat st;
    snprintf(three, sizeof three, "%s.1", two);
    assert_int_equal(stat(three, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    free(all);
    free(two);
    free(cat);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* The file is created 0640 and missing folders 0750, exactly, whatever the
 * daemon's umask. */
static void test_modes_despite_umask(void **state)
{
    struct vd *v =
        configure(state, "sinks:\n"
                         "  - { plugin: file, match: test., path: @DIR@/a/b/out.jsonl }\n");
    mode_t old = umask(0077); /* inherited by vigild */
    start(v);
    umask(old);
    publish_plain(v, "m", 10, 0);
    char *out = path_in(v, "a/b/out.jsonl");
    assert_true(wait_lines(out, "\"source\":\"m\"", 10, 30));
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    out[strlen(out) - strlen("/out.jsonl")] = '\0';
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0750);
    out[strlen(out) - strlen("/b")] = '\0';
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0750);
    free(out);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* ---- Failures: nothing lost, nothing torn ------------------------------------ */

/* Fills the filesystem of `dir` with <dir>/filler until it is full. */
static void fill_up(const char *dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/filler", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    static char block[65536];
    memset(block, 'f', sizeof block);
    size_t chunk = sizeof block;
    for (int i = 0; i < 100000; i++) { /* bounded: the tmpfs is small */
        ssize_t w = write(fd, block, chunk);
        if (w < 0 && errno == ENOSPC) {
            if (chunk == 1) {
                break;
            }
            chunk = 1; /* the last bytes of the last page too */
        } else if (w < 0) {
            fail_msg("filling %s: %s", path, strerror(errno));
        }
    }
    close(fd);
}

/* A full disk: the events that do not fit are held (RETRY), the file keeps
 * only whole lines, and once space is freed every event arrives, once. */
static void test_disk_full_loses_nothing(void **state)
{
    struct vd *v = configure(state, "sinks:\n"
                                    "  - plugin: file\n"
                                    "    match: test.\n"
                                    "    path: @DIR@/mnt/out.jsonl\n");
    const char *mnt = mount_tmpfs(state, "256k");
    if (!mnt) {
        skip();
    }
    start(v);
    char *out = path_in(v, "mnt/out.jsonl");
    publish_plain(v, "before", 100, 50);
    assert_true(wait_lines(out, "\"source\":\"before\"", 100, 30));
    fill_up(mnt);
    publish_plain(v, "full", 500, 50);
    assert_true(wait_log(v, "No space left on device", 30));
    assert_true(log_has(v, "the disk is full"));
    /* Held, not torn: whatever is in the file is whole lines. */
    assert_true(ends_whole(out));
    assert_true(json_lines_valid(out));
    assert_true(count_lines(out, "\"source\":\"full\"") < 500);
    assert_int_equal(kill(v->pid, 0), 0);

    char filler[PATH_MAX + 16];
    snprintf(filler, sizeof filler, "%s/filler", mnt);
    assert_int_equal(unlink(filler), 0);
    assert_true(wait_lines(out, "\"source\":\"full\"", 500, 30));
    assert_true(seqs_complete(out, "before", 100));
    assert_true(seqs_complete(out, "full", 500));
    assert_true(json_lines_valid(out));
    assert_true(wait_log(v, "again", 10)); /* "writing to <path> again" */
    free(out);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* The file reaches the daemon's RLIMIT_FSIZE: EFBIG (SIGXFSZ must not kill
 * it), whole lines only, and after the limit is lifted everything arrives. */
static void test_file_size_limit(void **state)
{
    struct vd *v = configure(state, "sinks:\n"
                                    "  - { plugin: file, match: test., path: @DIR@/out.jsonl }\n");
    start(v);
    struct rlimit lim;
    assert_int_equal(prlimit(v->pid, RLIMIT_FSIZE, NULL, &lim), 0);
    struct rlimit small = {.rlim_cur = 64 * 1024, .rlim_max = lim.rlim_max};
    if (lim.rlim_max < small.rlim_cur || prlimit(v->pid, RLIMIT_FSIZE, &small, NULL) != 0) {
        fprintf(stderr, "cannot set vigild's RLIMIT_FSIZE: %s\n", strerror(errno));
        skip();
    }
    publish_plain(v, "big", 1000, 150); /* ~250 KB */
    char *out = path_in(v, "out.jsonl");
    assert_true(wait_log(v, "File too large", 30));
    assert_int_equal(kill(v->pid, 0), 0);
    assert_true(file_size(out) <= 64 * 1024);
    assert_true(ends_whole(out));
    assert_true(json_lines_valid(out));
    assert_int_equal(prlimit(v->pid, RLIMIT_FSIZE, &lim, NULL), 0);
    assert_true(wait_lines(out, "\"source\":\"big\"", 1000, 30));
    assert_true(seqs_complete(out, "big", 1000));
    free(out);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* Starts vigild like vd_start, but without the capabilities that let root
 * ignore file modes, so a folder of mode 0500 really refuses it. False when
 * this machine does not let us drop them. */
static bool start_without_dac_override(struct vd *v)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        /* The bounding set limits what root gets at exec. */
        char ok = prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) == 0 &&
                  prctl(PR_CAPBSET_DROP, CAP_DAC_READ_SEARCH, 0, 0, 0) == 0;
        if (write(pfd[1], &ok, 1) != 1 || !ok) {
            _exit(126);
        }
        int fd = open(v->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(VIGIL_BUILD_DIR "/vigild", "vigild", "-c", v->cfg, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char ok = 0;
    if (read(pfd[0], &ok, 1) != 1 || !ok) {
        close(pfd[0]);
        waitpid(pid, NULL, 0);
        fprintf(stderr, "cannot drop CAP_DAC_OVERRIDE: %s\n", strerror(errno));
        return false;
    }
    close(pfd[0]);
    v->pid = pid;
    if (!wait_log(v, "started", 10)) {
        fail_msg("vigild did not start");
    }
    return true;
}

/* EACCES: a folder the daemon may not write. Events are held, the log says
 * what to check, and once the folder is opened they all arrive. */
static void test_permission_denied_then_granted(void **state)
{
    struct vd *v =
        configure(state, "sinks:\n"
                         "  - { plugin: file, match: test., path: @DIR@/locked/out.jsonl }\n");
    char *dir = path_in(v, "locked");
    assert_int_equal(mkdir(dir, 0500), 0);
    assert_int_equal(chmod(dir, 0500), 0);
    if (!start_without_dac_override(v)) {
        skip();
    }
    /* Said at start already (also what vigild --check shows). */
    assert_true(log_has(v, "cannot be written now"));
    publish_plain(v, "acc", 200, 0);
    /* The start-up message names the error too: wait for the write's. */
    assert_true(wait_log(v, "Permission denied (check the owner, mode", 30));
    char *out = path_in(v, "locked/out.jsonl");
    assert_int_equal(file_size(out), -1);
    assert_int_equal(chmod(dir, 0700), 0);
    assert_true(wait_lines(out, "\"source\":\"acc\"", 200, 30));
    assert_true(seqs_complete(out, "acc", 200));
    free(out);
    free(dir);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* EROFS: the filesystem goes read-only under a running sink, and back. */
static void test_read_only_filesystem(void **state)
{
    struct vd *v =
        configure(state, "sinks:\n"
                         "  - { plugin: file, match: test., path: @DIR@/mnt/out.jsonl }\n");
    const char *mnt = mount_tmpfs(state, "1m");
    if (!mnt) {
        skip();
    }
    start(v);
    char *out = path_in(v, "mnt/out.jsonl");
    publish_plain(v, "rw", 50, 0);
    assert_true(wait_lines(out, "\"source\":\"rw\"", 50, 30));
    /* A remount read-only is refused (EBUSY) while the sink holds the file
     * open for writing, so the daemon restarts onto the read-only mount. */
    assert_int_equal(vd_stop(v, 10, NULL), 0);
    assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
    start(v);
    publish_plain(v, "ro", 50, 0);
    assert_true(wait_log(v, "Read-only file system", 30));
    assert_int_equal(count_lines(out, "\"source\":\"ro\""), 0);
    assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT, NULL), 0);
    assert_true(wait_lines(out, "\"source\":\"ro\"", 50, 30));
    assert_true(seqs_complete(out, "ro", 50));
    assert_true(seqs_complete(out, "rw", 50));
    free(out);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* ---- Reopen (SIGHUP) ------------------------------------------------------------ */

/* logrotate's way: rename the file, SIGHUP; the sink writes a new file at
 * the path. Also when the file was removed. */
static void test_reopen_on_sighup(void **state)
{
    struct vd *v = configure(state, "sinks:\n"
                                    "  - { plugin: file, match: test., path: @DIR@/out.jsonl }\n");
    start(v);
    char *out = path_in(v, "out.jsonl"), *old = path_in(v, "out.jsonl.old");
    publish_plain(v, "one", 20, 0);
    assert_true(wait_lines(out, "\"source\":\"one\"", 20, 30));
    assert_int_equal(rename(out, old), 0);
    assert_int_equal(kill(v->pid, SIGHUP), 0);
    assert_true(wait_lines(v->log, "reopened (SIGHUP)", 1, 10));
    publish_plain(v, "two", 20, 0);
    assert_true(wait_lines(out, "\"source\":\"two\"", 20, 30));
    assert_int_equal(count_lines(out, "\"source\":\"one\""), 0);
    assert_int_equal(count_lines(old, "\"source\":\"two\""), 0);
    assert_true(seqs_complete(old, "one", 20));
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);

    assert_int_equal(unlink(out), 0);
    assert_int_equal(kill(v->pid, SIGHUP), 0);
    assert_true(wait_lines(v->log, "reopened (SIGHUP)", 2, 10));
    publish_plain(v, "three", 20, 0);
    assert_true(wait_lines(out, "\"source\":\"three\"", 20, 30));
    assert_true(seqs_complete(out, "three", 20));
    free(out);
    free(old);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* logrotate's copytruncate empties the file under the open sink: the sink
 * keeps appending at the new end (no hole of zeros) and counts the file's
 * size from there, so it does not rotate an almost empty file. */
static void test_copytruncate(void **state)
{
    struct vd *v = configure(state, "sinks:\n"
                                    "  - plugin: file\n"
                                    "    match: test.\n"
                                    "    path: @DIR@/out.jsonl\n"
                                    "    rotate: { size: 4KiB, keep: 2 }\n");
    start(v);
    char *out = path_in(v, "out.jsonl"), *one = path_in(v, "out.jsonl.1");
    publish_plain(v, "before", 14, 100); /* about 3.2 KB */
    assert_true(wait_lines(out, "\"source\":\"before\"", 14, 30));
    assert_int_equal(file_size(one), -1);
    assert_int_equal(truncate(out, 0), 0);
    publish_plain(v, "after", 10, 100); /* about 2.3 KB: fits in 4 KiB */
    assert_true(wait_lines(out, "\"source\":\"after\"", 10, 30));
    assert_int_equal(file_size(one), -1);
    char *s = slurp(out);
    assert_int_equal(s[0], '{');
    free(s);
    assert_true(seqs_complete(out, "after", 10));
    free(out);
    free(one);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* ---- Config ---------------------------------------------------------------------- */

struct bad_config {
    const char *body;
    const char *where; /* line:col */
    const char *says;
};

/* ---- The page cache ------------------------------------------------------------ */

/* The share of the first len bytes of path the page cache holds (mincore:
 * nothing is read, so nothing is brought back in). */
static double resident_share(const char *path, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(m != MAP_FAILED);
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = len / page, in = 0;
    unsigned char *vec = malloc(n);
    assert_non_null(vec);
    assert_int_equal(mincore(m, len, vec), 0);
    for (size_t i = 0; i < n; i++) {
        in += vec[i] & 1;
    }
    free(vec);
    munmap(m, len);
    close(fd);
    return (double)in / (double)n;
}

/* page_cache: drop (the default) lets what lies far behind the end of a
 * long file leave the page cache once it is on disk, whatever fsync says;
 * keep leaves it to the kernel, which on this idle machine keeps it all. */
static void test_page_cache(void **state)
{
    struct vd *v = configure(state, "sinks:\n"
                                    "  - plugin: file\n"
                                    "    name: drop\n"
                                    "    match: test.\n"
                                    "    path: @DIR@/drop.jsonl\n"
                                    "  - plugin: file\n"
                                    "    name: never\n"
                                    "    match: test.\n"
                                    "    path: @DIR@/never.jsonl\n"
                                    "    fsync: never\n"
                                    "  - plugin: file\n"
                                    "    name: keep\n"
                                    "    match: test.\n"
                                    "    path: @DIR@/keep.jsonl\n"
                                    "    fsync: never\n"
                                    "    page_cache: keep\n");
    struct statfs fs;
    if (statfs(v->dir, &fs) == 0 && fs.f_type == TMPFS_MAGIC) {
        print_message("skipped: %s is on a tmpfs, whose pages cannot leave the page cache\n",
                      v->dir);
        skip();
    }
    start(v);
    size_t n = 56000; /* ~1.1 KB each: ~62 MB per file, the first 24 MB dropped */
    publish_plain(v, "pc", n, 1000);
    assert_int_equal(vd_stop(v, 60, NULL), 0);
    const size_t len = 16u << 20;
    static const char *const names[] = {"drop.jsonl", "never.jsonl", "keep.jsonl"};
    double share[3];
    for (int i = 0; i < 3; i++) {
        char *path = path_in(v, names[i]);
        assert_true(file_size(path) > (off_t)(56u << 20));
        share[i] = resident_share(path, len);
        free(path);
    }
    fprintf(stderr,
            "the first 16 MiB in the page cache: drop %.0f %%, never %.0f %%, keep %.0f %%\n",
            100 * share[0], 100 * share[1], 100 * share[2]);
    assert_true(share[0] < 0.25);
    assert_true(share[1] < 0.25);
    assert_true(share[2] > 0.75);
}

/* vigild --check refuses each mistake, at its file:line:col. The harness
 * writes 6 lines before the body, so the body starts on line 7. */
static void test_config_errors(void **state)
{
    struct vd *v = &((struct fixture *)*state)->v;
    static const struct bad_config cases[] = {
        {"sinks:\n  - plugin: file\n    path: /tmp/x\n    format: xml\n", "10:13",
         "format must be json or msgpack, not 'xml'"},
        {"sinks:\n  - plugin: file\n    path: /tmp/x\n    fsync: sometimes\n", "10:12",
         "fsync must be never, batch or always, not 'sometimes'"},
        {"sinks:\n  - plugin: file\n    path: /tmp/x\n    page_cache: forget\n", "10:17",
         "page_cache must be keep or drop, not 'forget'"},
        {"sinks:\n  - plugin: file\n    format: json\n", "8:5", "needs 'path'"},
        {"sinks:\n  - plugin: file\n    path: out.jsonl\n", "9:11", "absolute path"},
        {"sinks:\n  - plugin: file\n    path: /tmp/x\n    rotate: { size: 1MiB, kep: 2 }\n",
         "10:32", "unknown key 'kep' in rotate"},
        {"sinks:\n  - plugin: file\n    path: /tmp/x\n    rotate: { keep: -1 }\n", "10:21",
         "rotate.keep must be"},
        {"sinks:\n  - plugin: file\n    path: /tmp/x\n    rotate: { size: huge }\n", "10:21",
         "rotate.size must be"},
        {"sinks:\n  - plugin: file\n    path: /tmp/x\n    rotate: 5\n", "10:13", "map"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vd_cleanup(v);
        assert_int_equal(vd_setup(v, NULL, cases[i].body), 0);
        char *const argv[] = {VIGIL_BUILD_DIR "/vigild", "--check", "-c", v->cfg, NULL};
        char *err = NULL;
        int rc = run(argv, NULL, 0, NULL, &err, 30);
        char where[PATH_MAX + 32];
        snprintf(where, sizeof where, "%s:%s: ", v->cfg, cases[i].where);
        if (rc == 0 || !strstr(err, where) || !strstr(err, cases[i].says)) {
            fail_msg("case %zu: exit %d, wanted '%s' ... '%s' in: %s", i, rc, where, cases[i].says,
                     err);
        }
        free(err);
    }
    /* A valid one checks clean and creates nothing. */
    vd_cleanup(v);
    assert_int_equal(vd_setup(v, NULL,
                              "sinks:\n  - plugin: file\n    path: @DIR@/new/out.mp\n"
                              "    format: msgpack\n    fsync: always\n"
                              "    rotate: { size: 0, keep: 0 }\n"),
                     0);
    char *const argv[] = {VIGIL_BUILD_DIR "/vigild", "--check", "-c", v->cfg, NULL};
    char *out = NULL;
    assert_int_equal(run(argv, NULL, 0, &out, NULL, 30), 0);
    assert_non_null(strstr(out, "configuration is valid"));
    free(out);
    char *made = path_in(v, "new");
    struct stat st;
    assert_int_equal(stat(made, &st), -1);
    free(made);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_lines_escaped_and_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msgpack_matches_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modes_despite_umask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full_loses_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_size_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permission_denied_then_granted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_filesystem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_on_sighup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copytruncate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

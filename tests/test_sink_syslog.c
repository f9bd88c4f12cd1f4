/* Integration tests of the syslog sink against a real rsyslogd: the real
 * vigild with syslog.so, events published with vigil-pub (or raw on the
 * bus), and rsyslog's own parse of every message (the RFC 5424 fields, and
 * the structured data as mmpstrucdata reads it) written to a file we read
 * back. Each test starts its own rsyslogd on a free loopback port or a
 * socket in its own folder, and kills it by PID afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "event.h"
#include "harness.h"

#define RSYSLOGD "/usr/sbin/rsyslogd"
#define SD_ID "vigil@32473"

enum kind { K_TCP, K_UDP, K_UNIX };

struct rs {
    pid_t pid;
    enum kind kind;
    int port;
    char conf[PATH_MAX], out[PATH_MAX], sock[PATH_MAX], log[PATH_MAX], pidfile[PATH_MAX];
};

struct ctx {
    struct vd v;
    struct rs r;
    pid_t pub_pid; /* a vigil-pub running in the background */
};

/* The fields of one line of rsyslog's output (template "t" below). */
enum { F_PRI, F_VER, F_TS, F_HOST, F_APP, F_PROCID, F_MSGID, F_SD, F_JSON, F_MSG, F_N };

struct rows {
    char *text;
    char *(*row)[F_N];
    size_t n;
};

/* ---- rsyslogd ------------------------------------------------------------------ */

/* A loopback port that was free a moment ago. */
static int free_port(int type)
{
    int fd = socket(AF_INET, type, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        fail_msg("cannot find a free port: %s", strerror(errno));
    }
    close(fd);
    return ntohs(a.sin_port);
}

static void rs_write_conf(struct rs *r, const char *dir)
{
    FILE *f = fopen(r->conf, "w");
    assert_non_null(f);
    fprintf(f, "global(workDirectory=\"%s\")\n", dir);
    /* No system socket: only what the test sets up. */
    fprintf(f, "module(load=\"imuxsock\" SysSock.Use=\"off\")\n");
    fprintf(f, "module(load=\"mmpstrucdata\")\n");
    switch (r->kind) {
    case K_TCP:
        fprintf(f,
                "module(load=\"imtcp\")\n"
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"r\")\n",
                r->port);
        break;
    case K_UDP:
        fprintf(f,
                "module(load=\"imudp\")\n"
                "input(type=\"imudp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"r\")\n",
                r->port);
        break;
    case K_UNIX:
        /* The normal parsers, the sender's timestamp and hostname, no rate
         * limit: as a server on the network would see the messages. */
        fprintf(f,
                "input(type=\"imuxsock\" Socket=\"%s\" UseSpecialParser=\"off\" "
                "ParseHostname=\"on\" IgnoreTimestamp=\"off\" RateLimit.Interval=\"0\" "
                "ruleset=\"r\")\n",
                r->sock);
        break;
    }
    fprintf(f,
            "template(name=\"t\" type=\"list\") {\n"
            "  property(name=\"pri\") constant(value=\"\\t\")\n"
            "  property(name=\"protocol-version\") constant(value=\"\\t\")\n"
            "  property(name=\"timereported\" dateFormat=\"rfc3339\") constant(value=\"\\t\")\n"
            "  property(name=\"hostname\") constant(value=\"\\t\")\n"
            "  property(name=\"app-name\") constant(value=\"\\t\")\n"
            "  property(name=\"procid\") constant(value=\"\\t\")\n"
            "  property(name=\"msgid\") constant(value=\"\\t\")\n"
            "  property(name=\"structured-data\") constant(value=\"\\t\")\n"
            "  property(name=\"$!\") constant(value=\"\\t\")\n"
            "  property(name=\"msg\") constant(value=\"\\n\")\n"
            "}\n"
            "ruleset(name=\"r\") {\n"
            "  action(type=\"mmpstrucdata\" sd_name.lowercase=\"off\")\n"
            "  action(type=\"omfile\" file=\"%s\" template=\"t\")\n"
            "}\n",
            r->out);
    fclose(f);
}

static void rs_init(struct rs *r, const struct vd *v, enum kind kind)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->port = kind == K_UNIX ? 0 : free_port(kind == K_TCP ? SOCK_STREAM : SOCK_DGRAM);
    snprintf(r->conf, sizeof r->conf, "%s/rsyslog.conf", v->dir);
    snprintf(r->out, sizeof r->out, "%s/rsyslog.out", v->dir);
    snprintf(r->sock, sizeof r->sock, "%s/log.sock", v->dir);
    snprintf(r->log, sizeof r->log, "%s/rsyslog.log", v->dir);
    snprintf(r->pidfile, sizeof r->pidfile, "%s/rsyslog.pid", v->dir);
    rs_write_conf(r, v->dir);
}

/* A message straight from the test, to see that rsyslog listens. */
static void send_probe(const struct rs *r)
{
    static const char msg[] = "<13>1 - - - - probe - probe";
    struct sockaddr_in in = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)r->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    size_t sl_len = strlen(r->sock);
    assert_true(sl_len < sizeof un.sun_path);
    memcpy(un.sun_path, r->sock, sl_len + 1);
    int fd = socket(r->kind == K_UNIX ? AF_UNIX : AF_INET,
                    r->kind == K_TCP ? SOCK_STREAM : SOCK_DGRAM, 0);
    const struct sockaddr *sa = r->kind == K_UNIX ? (struct sockaddr *)&un : (struct sockaddr *)&in;
    socklen_t sl = r->kind == K_UNIX ? sizeof un : sizeof in;
    if (fd >= 0 && connect(fd, sa, sl) == 0) {
        char frame[64];
        int n = r->kind == K_TCP ? snprintf(frame, sizeof frame, "%zu %s", sizeof msg - 1, msg)
                                 : snprintf(frame, sizeof frame, "%s", msg);
        if (send(fd, frame, (size_t)n, MSG_NOSIGNAL) < 0) {
            /* not listening yet: the caller tries again */
        }
    }
    if (fd >= 0) {
        close(fd);
    }
}

static void rs_dump(const struct rs *r)
{
    char *log = slurp(r->log);
    fprintf(stderr, "---- rsyslogd output ----\n%s-------------------------\n",
            log ? log : "(none)");
    free(log);
}

/* Starts rsyslogd and waits (up to 10 s) until a probe comes out. */
static void rs_start(struct rs *r)
{
    size_t probes = count_lines(r->out, "\tprobe\t");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(r->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(RSYSLOGD, "rsyslogd", "-n", "-f", r->conf, "-i", r->pidfile, (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    double deadline = now_s() + 10;
    while (now_s() < deadline) {
        send_probe(r);
        if (wait_lines(r->out, "\tprobe\t", probes + 1, 0)) {
            return;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            r->pid = 0;
            rs_dump(r);
            fail_msg("rsyslogd exited (status %d)", st);
        }
        sleep_ms(50);
    }
    rs_dump(r);
    fail_msg("rsyslogd did not take messages within 10 s");
}

/* SIGTERM (a clean stop, as systemctl stop does), SIGKILL after 10 s. */
static void rs_stop(struct rs *r)
{
    if (r->pid <= 0) {
        return;
    }
    kill(r->pid, SIGTERM);
    double deadline = now_s() + 10;
    while (now_s() < deadline && waitpid(r->pid, NULL, WNOHANG) == 0) {
        sleep_ms(10);
    }
    if (kill(r->pid, 0) == 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
    }
    r->pid = 0;
}

/* ---- rsyslog's output ---------------------------------------------------------- */

static void rows_load(struct rows *rs, const char *path)
{
    memset(rs, 0, sizeof *rs);
    rs->text = slurp(path);
    if (!rs->text) {
        return;
    }
    size_t cap = 0;
    for (char *line = rs->text, *next; *line; line = next) {
        next = strchr(line, '\n');
        next = next ? (*next = '\0', next + 1) : line + strlen(line);
        if (rs->n == cap) {
            cap = cap ? cap * 2 : 256;
            rs->row = realloc(rs->row, cap * sizeof *rs->row);
            assert_non_null(rs->row);
        }
        char **f = rs->row[rs->n];
        size_t i = 0;
        for (char *p = line; i < F_N; i++) {
            f[i] = p;
            p = strchr(p, '\t');
            if (!p) {
                break;
            }
            *p++ = '\0';
        }
        if (i == F_N - 1) { /* all fields present */
            rs->n++;
        }
    }
}

static void rows_free(struct rows *rs)
{
    free(rs->text);
    free(rs->row);
}

/* The first row whose SD holds `sd_part` (and msgid, if given). */
static char **find_row(const struct rows *rs, const char *msgid, const char *sd_part)
{
    for (size_t i = 0; i < rs->n; i++) {
        if ((!msgid || strcmp(rs->row[i][F_MSGID], msgid) == 0) &&
            strstr(rs->row[i][F_SD], sd_part)) {
            return rs->row[i];
        }
    }
    return NULL;
}

static void print_row(char **f)
{
    fprintf(stderr,
            "row: pri=%s ver=%s ts=%s host=%s app=%s procid=%s msgid=%s\n  sd=%s\n  "
            "json=%s\n  msg=%s\n",
            f[F_PRI], f[F_VER], f[F_TS], f[F_HOST], f[F_APP], f[F_PROCID], f[F_MSGID], f[F_SD],
            f[F_JSON], f[F_MSG]);
}

static void expect_field(char **f, int i, const char *want)
{
    if (strcmp(f[i], want) != 0) {
        print_row(f);
        fail_msg("field %d is '%s', expected '%s'", i, f[i], want);
    }
}

static void expect_has(char **f, int i, const char *part)
{
    if (!strstr(f[i], part)) {
        print_row(f);
        fail_msg("field %d lacks '%s'", i, part);
    }
}

/* How often each seq 1..n of `source` arrived; counts[0] gets the number
 * of rows of that source whose seq is out of range. */
static unsigned *seq_counts(const char *path, const char *source, size_t n)
{
    char needle[128];
    snprintf(needle, sizeof needle, "[" SD_ID " source=\"%s\" seq=\"", source);
    unsigned *c = calloc(n + 1, sizeof *c);
    struct rows rs;
    rows_load(&rs, path);
    for (size_t i = 0; i < rs.n; i++) {
        const char *p = strstr(rs.row[i][F_SD], needle);
        if (p) {
            unsigned long s = strtoul(p + strlen(needle), NULL, 10);
            c[s >= 1 && s <= n ? s : 0]++;
        }
    }
    rows_free(&rs);
    return c;
}

/* Waits until every seq 1..n of `source` arrived at least once. */
static bool wait_seqs(const char *path, const char *source, size_t n, int timeout_s)
{
    double deadline = now_s() + timeout_s;
    do {
        unsigned *c = seq_counts(path, source, n);
        size_t have = 0;
        for (size_t i = 1; i <= n; i++) {
            have += c[i] > 0;
        }
        free(c);
        if (have == n) {
            return true;
        }
        sleep_ms(50);
    } while (now_s() < deadline);
    return false;
}

/* Checks seqs 1..n: each at least once, and exactly once for seq <= strict
 * (and no seq out of range). Prints what is wrong; returns the duplicates. */
static size_t check_seqs(const char *path, const char *source, size_t n, size_t strict)
{
    unsigned *c = seq_counts(path, source, n);
    size_t missing = 0, dups = 0;
    for (size_t i = 1; i <= n; i++) {
        if (c[i] == 0 || (i <= strict && c[i] != 1)) {
            if (missing++ < 10) {
                fprintf(stderr, "%s: seq %zu arrived %u times\n", source, i, c[i]);
            }
        }
        dups += c[i] > 1 ? c[i] - 1 : 0;
    }
    unsigned stray = c[0];
    free(c);
    if (missing || stray) {
        fail_msg("%s: %zu seqs wrong, %u out of range", source, missing, stray);
    }
    return dups;
}

/* ---- vigild and publishing ----------------------------------------------------- */

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof *c);
    *state = c;
    return c ? 0 : -1;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    if (c->pub_pid > 0) {
        kill(c->pub_pid, SIGKILL);
        waitpid(c->pub_pid, NULL, 0);
    }
    rs_stop(&c->r);
    vd_cleanup(&c->v);
    free(c);
    return 0;
}

static void skip_without_rsyslog(void)
{
    if (access(RSYSLOGD, X_OK) != 0) {
        fprintf(stderr, "skipped: %s is not installed (apt-get install rsyslog)\n", RSYSLOGD);
        skip();
    }
}

static void dump_vigild(const struct vd *v)
{
    char *log = slurp(v->log);
    fprintf(stderr, "---- vigild log ----\n%s--------------------\n", log ? log : "(none)");
    free(log);
}

/* Folder, rsyslogd of `kind` running, and vigild with one syslog sink for
 * topics test. and alert., with `extra` keys added to the sink. */
static void start_both(struct ctx *c, enum kind kind, const char *extra)
{
    skip_without_rsyslog();
    assert_int_equal(vd_setup(&c->v, NULL, ""), 0);
    rs_init(&c->r, &c->v, kind);
    rs_start(&c->r);
    char address[PATH_MAX + 32];
    if (kind == K_UNIX) {
        snprintf(address, sizeof address, "unix://%s", c->r.sock);
    } else {
        snprintf(address, sizeof address, "%s://127.0.0.1:%d", kind == K_TCP ? "tcp" : "udp",
                 c->r.port);
    }
    char body[PATH_MAX + 512];
    snprintf(body, sizeof body,
             "sinks:\n"
             "  - plugin: syslog\n"
             "    match: [test., alert.]\n"
             "    address: %s\n"
             "%s",
             address, extra ? extra : "");
    /* The harness wrote the header; the sink goes after it. */
    FILE *f = fopen(c->v.cfg, "a");
    assert_non_null(f);
    fputs(body, f);
    fclose(f);
    if (vd_start(&c->v) != 0) {
        dump_vigild(&c->v);
        fail_msg("vigild did not start");
    }
}

/* Stops vigild and checks it exits 0 (under ASan: no leak, no error). */
static void stop_vigild(struct ctx *c)
{
    int rc = vd_stop(&c->v, 20, NULL);
    if (rc != 0) {
        dump_vigild(&c->v);
    }
    assert_int_equal(rc, 0);
}

/* Publishes JSON lines with vigil-pub; waits for it. */
static void publish(struct ctx *c, const char *lines, size_t len)
{
    char *const argv[] = {VIGIL_BUILD_DIR "/vigil-pub", "-c", c->v.cfg, "-t", "test.x", NULL};
    char *err = NULL;
    int rc = run(argv, lines, len, NULL, &err, 60);
    if (rc != 0) {
        fprintf(stderr, "vigil-pub: %s\n", err);
    }
    free(err);
    assert_int_equal(rc, 0);
}

/* Lines {"source":..,"seq":i,...} for seq first..last. */
static char *seq_lines(const char *source, size_t first, size_t last, size_t *len)
{
    size_t cap = (last - first + 1) * 128 + 1;
    char *s = malloc(cap);
    assert_non_null(s);
    *len = 0;
    for (size_t i = first; i <= last; i++) {
        *len += (size_t)snprintf(s + *len, cap - *len,
                                 "{\"source\":\"%s\",\"seq\":%zu,\"labels\":{\"i\":\"%zu\"},"
                                 "\"values\":{\"x\":%zu.25}}\n",
                                 source, i, i, i);
    }
    return s;
}

/* vigil-pub in the background, one event every interval. */
static void publish_background(struct ctx *c, const char *lines, size_t len, const char *interval)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/pub.jsonl", c->v.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fwrite(lines, 1, len, f);
    fclose(f);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open(path, O_RDONLY);
        int null = open("/dev/null", O_WRONLY);
        dup2(in, 0);
        dup2(null, 1);
        execl(VIGIL_BUILD_DIR "/vigil-pub", "vigil-pub", "-c", c->v.cfg, "-t", "test.bg",
              "--interval", interval, (char *)NULL);
        _exit(127);
    }
    c->pub_pid = pid;
}

static void wait_background(struct ctx *c, int timeout_s)
{
    double deadline = now_s() + timeout_s;
    int st = 0;
    while (waitpid(c->pub_pid, &st, WNOHANG) == 0) {
        if (now_s() > deadline) {
            fail_msg("vigil-pub did not finish in %d s", timeout_s);
        }
        sleep_ms(20);
    }
    c->pub_pid = 0;
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* The sum of N over the sink's "N sent within the replay window" logs. */
static size_t logged_replays(const struct vd *v)
{
    static const char key[] = " sent within the replay window";
    char *log = slurp(v->log);
    size_t sum = 0;
    for (char *p = log; p && (p = strstr(p, key)); p += sizeof key - 1) {
        char *q = p;
        while (q > log && q[-1] >= '0' && q[-1] <= '9') {
            q--;
        }
        sum += strtoul(q, NULL, 10);
    }
    free(log);
    return sum;
}

/* Streams n events of `source` at 500/s and stops and starts rsyslogd
 * `restarts` times while they flow. Then every event must be there, and
 * duplicates only what the sink said it sends again (replay). */
static void stream_through_restarts(struct ctx *c, const char *source, size_t n, int restarts)
{
    size_t len;
    char *in = seq_lines(source, 1, n, &len);
    publish_background(c, in, len, "2ms");
    free(in);
    for (int i = 0; i < restarts; i++) {
        sleep_ms(700);
        rs_stop(&c->r);
        sleep_ms(300);
        rs_start(&c->r);
    }
    wait_background(c, 30);
    if (!wait_seqs(c->r.out, source, n, 20)) {
        dump_vigild(&c->v);
    }
    size_t dups = check_seqs(c->r.out, source, n, 0);
    size_t replayed = logged_replays(&c->v);
    fprintf(stderr, "%s: %d restarts while streaming: all %zu arrived, %zu twice; replayed %zu\n",
            source, restarts, n, dups, replayed);
    assert_true(dups <= replayed);
}

/* ---- The fields ---------------------------------------------------------------- */

static const char alert_line[] =
    "{\"topic\":\"alert.fired\",\"ts\":1700000000123456789,\"host\":\"node-1\","
    "\"labels\":{\"severity\":\"critical\",\"rule\":\"cpu-hot\",\"q\":\"a\\\"b\\\\c]d\","
    "\"u\":\"h\\u00e9llo \\u65e5\\u672c\"},"
    "\"values\":{\"cpu_pct\":97.5,\"n\":3},"
    "\"attrs\":{\"message\":\"cpu at 97.5% on node-1 "
    "\\u00e9\",\"fingerprint\":\"00ff00ff00ff00ff\"}}"
    "\n";

/* The alert as rsyslog parsed it: every RFC 5424 field, and the SD both
 * as sent (escaped) and as mmpstrucdata unescaped it. */
static void check_alert(struct ctx *c, int pri)
{
    assert_true(wait_lines(c->r.out, "\talert.fired\t", 1, 15));
    struct rows rs;
    rows_load(&rs, c->r.out);
    char **f = find_row(&rs, "alert.fired", "label.rule=\"cpu-hot\"");
    assert_non_null(f);
    char want[32];
    snprintf(want, sizeof want, "%d", pri);
    expect_field(f, F_PRI, want);
    expect_field(f, F_VER, "1");
    expect_field(f, F_TS, "2023-11-14T22:13:20.123456Z");
    expect_field(f, F_HOST, "node-1");
    expect_field(f, F_APP, "vigil-test");
    snprintf(want, sizeof want, "%d", (int)c->v.pid);
    expect_field(f, F_PROCID, want);
    expect_field(f, F_MSGID, "alert.fired");
    expect_has(f, F_SD, "[" SD_ID " source=\"vigil-pub\" seq=\"1\" ");
    expect_has(f, F_SD, " label.q=\"a\\\"b\\\\c\\]d\"");
    expect_has(f, F_SD, " label.u=\"h\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac\"");
    expect_has(f, F_SD, " label.severity=\"critical\"");
    expect_has(f, F_SD, " value.cpu_pct=\"97.5\"");
    expect_has(f, F_SD, " value.n=\"3\"");
    expect_has(f, F_SD, " attr.fingerprint=\"00ff00ff00ff00ff\"]");
    if (strstr(f[F_SD], "attr.message")) {
        print_row(f);
        fail_msg("the message is MSG, not a parameter too");
    }
    expect_has(f, F_JSON, "\"" SD_ID "\": {");
    expect_has(f, F_JSON, "\"label.q\": \"a\\\"b\\\\c]d\"");
    expect_has(f, F_JSON, "\"label.u\": \"h\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac\"");
    expect_field(f, F_MSG, "cpu at 97.5% on node-1 \xc3\xa9");
    rows_free(&rs);
}

/* Everything about the fields, over TCP. */
static void test_tcp_fields(void **state)
{
    struct ctx *c = *state;
    start_both(c, K_TCP, "    facility: local3\n    app_name: vigil-test\n");
    char big[10000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    size_t cap = 32768, len = 0;
    char *in = malloc(cap);
    len += (size_t)snprintf(in + len, cap - len, "%s", alert_line);
    static const struct {
        const char *sev;
        int want;
    } sevs[] = {{"warning", 4}, {"info", 6},  {"ERROR", 3}, {NULL, 5},
                {"bogus", 5},   {"emerg", 0}, {"7", 7}};
    for (size_t i = 0; i < sizeof sevs / sizeof sevs[0]; i++) {
        len += (size_t)snprintf(in + len, cap - len,
                                "{\"topic\":\"test.sev\",\"labels\":{\"case\":\"%zu\"%s%s%s}}\n", i,
                                sevs[i].sev ? ",\"severity\":\"" : "",
                                sevs[i].sev ? sevs[i].sev : "", sevs[i].sev ? "\"" : "");
    }
    len += (size_t)snprintf(
        in + len, cap - len,
        "{\"topic\":\"test.this.topic.is.longer.than.thirty.two\",\"host\":\"my host \\u00e9x\","
        "\"labels\":{\"case\":\"names\",\"a b=c]\\\"d\":\"v\","
        "\"a_very_long_label_name_that_goes_on_and_on\":\"w\"}}\n"
        "{\"topic\":\"test.json\",\"labels\":{\"case\":\"json\"},\"values\":{\"v\":0.1}}\n"
        "{\"topic\":\"test.big\",\"labels\":{\"case\":\"big\",\"huge\":\"%s\"}}\n"
        "{\"topic\":\"test.nl\",\"labels\":{\"case\":\"nl\",\"nl\":\"x\\ny\"},"
        "\"attrs\":{\"message\":\"line1\\nline2\"}}\n",
        big);
    publish(c, in, len);
    free(in);

    check_alert(c, 19 * 8 + 2); /* local3, crit */
    assert_true(wait_lines(c->r.out, "\ttest.nl\t", 1, 15));
    struct rows rs;
    rows_load(&rs, c->r.out);
    for (size_t i = 0; i < sizeof sevs / sizeof sevs[0]; i++) {
        char part[64], want[16];
        snprintf(part, sizeof part, "label.case=\"%zu\"", i);
        char **f = find_row(&rs, "test.sev", part);
        assert_non_null(f);
        snprintf(want, sizeof want, "%d", 19 * 8 + sevs[i].want);
        expect_field(f, F_PRI, want);
    }
    /* MSGID cut at 32, HOSTNAME with '_' for a space and for an é. */
    char **f = find_row(&rs, NULL, "label.case=\"names\"");
    assert_non_null(f);
    expect_field(f, F_MSGID, "test.this.topic.is.longer.than.t");
    expect_field(f, F_HOST, "my_host__x");
    expect_has(f, F_SD, " label.a_b_c__d=\"v\"");
    expect_has(f, F_SD, " label.a_very_long_label_name_tha=\"w\""); /* 32 octets */
    /* No message: MSG is the event's JSON. */
    f = find_row(&rs, "test.json", "label.case=\"json\"");
    assert_non_null(f);
    expect_has(f, F_SD, " value.v=\"0.1\"");
    if (strncmp(f[F_MSG], "{\"topic\":\"test.json\",", 21) != 0) {
        print_row(f);
        fail_msg("MSG should be the event's JSON");
    }
    /* A parameter too long for max_message (8KiB) is left out, and said. */
    f = find_row(&rs, "test.big", "label.case=\"big\"");
    assert_non_null(f);
    expect_has(f, F_SD, " truncated=\"1\"]");
    assert_null(strstr(f[F_SD], "label.huge"));
    assert_true(strlen(f[F_MSG]) > 1000); /* what room was left: the JSON, cut */
    /* Newlines are valid in SD values and MSG; rsyslog escapes them. */
    f = find_row(&rs, "test.nl", "label.case=\"nl\"");
    assert_non_null(f);
    expect_has(f, F_SD, " label.nl=\"x#012y\"");
    expect_field(f, F_MSG, "line1#012line2");
    expect_field(f, F_PRI, "157"); /* local3, notice: no severity */
    rows_free(&rs);
    stop_vigild(c);
}

/* Sends one message straight onto the bus, bypassing vigil-pub's checks. */
static void push_raw(struct ctx *c, const char *topic, const char *body, size_t len)
{
    void *zctx = zmq_ctx_new();
    void *push = zmq_socket(zctx, ZMQ_PUSH);
    int linger = 5000;
    zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_connect(push, c->v.pub), 0);
    zmq_send(push, topic, strlen(topic), ZMQ_SNDMORE);
    zmq_send(push, body, len, 0);
    zmq_close(push);
    zmq_ctx_term(zctx);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* A body with every msgpack type in labels, values and attrs, in encodings
 * vigil's builder never makes (float32, a positive int32, bin, ext). */
static void pack_types(msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    pack_str(&pk, "ts");
    msgpack_pack_uint64(&pk, 1700000000000000000ull);
    pack_str(&pk, "host");
    pack_str(&pk, "h");
    pack_str(&pk, "source");
    pack_str(&pk, "types");
    pack_str(&pk, "seq");
    msgpack_pack_uint64(&pk, 1);
    pack_str(&pk, "labels");
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "case");
    pack_str(&pk, "types");
    pack_str(&pk, "binv"); /* a bin label value: text, as everywhere in vigil */
    msgpack_pack_bin_with_body(&pk, "x", 1);
    pack_str(&pk, "values");
    msgpack_pack_map(&pk, 6);
    pack_str(&pk, "u");
    msgpack_pack_uint64(&pk, UINT64_MAX);
    pack_str(&pk, "i");
    msgpack_pack_int64(&pk, INT64_MIN);
    pack_str(&pk, "d");
    msgpack_pack_double(&pk, 1e300);
    pack_str(&pk, "h");
    msgpack_pack_double(&pk, -2.5);
    pack_str(&pk, "f");
    msgpack_pack_float(&pk, 0.1f);
    pack_str(&pk, "z");
    msgpack_pack_uint64(&pk, 0);
    pack_str(&pk, "attrs");
    msgpack_pack_map(&pk, 13);
    pack_str(&pk, "t");
    msgpack_pack_true(&pk);
    pack_str(&pk, "nil");
    msgpack_pack_nil(&pk);
    pack_str(&pk, "message");
    pack_str(&pk, "the message");
    pack_str(&pk, "nested");
    msgpack_pack_map(&pk, 1);
    pack_str(&pk, "a");
    msgpack_pack_uint64(&pk, 1);
    pack_str(&pk, "f");
    msgpack_pack_false(&pk);
    pack_str(&pk, "list");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, 1);
    pack_str(&pk, "two");
    pack_str(&pk, "p"); /* 7 as an int32: a signed encoding of a positive */
    msgpack_sbuffer_write(sb, "\xd2\x00\x00\x00\x07", 5);
    pack_str(&pk, "bin");
    msgpack_pack_bin_with_body(&pk, "b", 1);
    pack_str(&pk, "ext");
    msgpack_pack_ext_with_body(&pk, "abcd", 4, 5);
    msgpack_pack_bin_with_body(&pk, "bk", 2); /* a bin key: a name like a str one */
    msgpack_pack_uint64(&pk, 1);
    pack_str(&pk, "s");
    pack_str(&pk, "s\"]");
    pack_str(&pk, "n");
    msgpack_pack_int64(&pk, -1);
    pack_str(&pk, "x");
    msgpack_pack_double(&pk, 0.1 + 0.2);
}

/* Bodies straight onto the bus: bytes that are not UTF-8 (and NUL) in a
 * label, and attrs of every msgpack type. */
static void test_tcp_raw_bodies(void **state)
{
    struct ctx *c = *state;
    start_both(c, K_TCP, NULL);
    struct vigil_event_builder b;
    vigil_event_builder_init(&b);
    vigil_event_begin(&b, "test.raw");
    vigil_event_add_label(&b, "case", "raw");
    vigil_event_add_label_n(&b, "bad", 3, "x\xffy\xe6\x97", 5);
    vigil_event_add_label_n(&b, "nul", 3, "a\0b", 3);
    vigil_event_add_label_n(&b, "k\xfe", 2, "v", 1);
    const char *body;
    size_t len;
    assert_int_equal(vigil_event_finish(&b, "h", "raw", 1, &body, &len), 0);
    push_raw(c, "test.raw", body, len);
    vigil_event_builder_fini(&b);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_types(&sb);
    push_raw(c, "test.types", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);

    assert_true(wait_lines(c->r.out, "\ttest.raw\t", 1, 15));
    assert_true(wait_lines(c->r.out, "\ttest.types\t", 1, 15));
    struct rows rs;
    rows_load(&rs, c->r.out);
    char **f = find_row(&rs, "test.raw", "label.case=\"raw\"");
    assert_non_null(f);
    expect_field(f, F_PRI, "29"); /* daemon (the default), notice */
    expect_field(f, F_APP, "vigil");
    /* Each bad byte is U+FFFD, as in vigil's JSON; so is NUL. */
    expect_has(f, F_SD, " label.bad=\"x\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbd\"");
    expect_has(f, F_SD,
               " label.nul=\"a\xef\xbf\xbd"
               "b\"");
    expect_has(f, F_SD, " label.k_=\"v\"");
    /* Scalars in the body's order, numbers as vigil's JSON writes them
     * (the shortest of %.15g/%.17g that reads back), bin as text (the host
     * reads msgpack bin as a string everywhere); containers, nil, ext and
     * the message (it is MSG) left out. */
    f = find_row(&rs, "test.types", "label.case=\"types\"");
    assert_non_null(f);
    expect_field(f, F_SD,
                 "[" SD_ID " source=\"types\" seq=\"1\" label.case=\"types\" label.binv=\"x\" "
                 "value.u=\"18446744073709551615\" value.i=\"-9223372036854775808\" "
                 "value.d=\"1e+300\" value.h=\"-2.5\" value.f=\"0.10000000149011612\" "
                 "value.z=\"0\" attr.t=\"true\" attr.f=\"false\" attr.p=\"7\" attr.bin=\"b\" "
                 "attr.bk=\"1\" attr.s=\"s\\\"\\]\" attr.n=\"-1\" attr.x=\"0.30000000000000004\"]");
    expect_field(f, F_MSG, "the message");
    rows_free(&rs);
    stop_vigild(c);
}

/* Every event, once, in a burst bigger than a batch; then a stream during
 * which SIGHUP makes the sink close its connection and open a new one
 * (the kernel still delivers what the old one had taken: nothing lost,
 * nothing replayed). */
static void test_tcp_exactly_once(void **state)
{
    struct ctx *c = *state;
    start_both(c, K_TCP, NULL);
    size_t n = 5000, len;
    char *in = seq_lines("bulk", 1, n, &len);
    publish(c, in, len);
    free(in);
    if (!wait_seqs(c->r.out, "bulk", n, 30)) {
        dump_vigild(&c->v);
    }
    sleep_ms(300); /* anything extra would be here by now */
    assert_int_equal(check_seqs(c->r.out, "bulk", n, n), 0);

    in = seq_lines("hup", 1, 2000, &len);
    publish_background(c, in, len, "500us");
    free(in);
    for (int i = 0; i < 3; i++) {
        sleep_ms(300);
        kill(c->v.pid, SIGHUP);
    }
    wait_background(c, 30);
    assert_true(wait_seqs(c->r.out, "hup", 2000, 20));
    sleep_ms(300);
    assert_int_equal(check_seqs(c->r.out, "hup", 2000, 2000), 0);
    assert_true(wait_lines(c->v.log, "reopened (SIGHUP)", 3, 5));
    stop_vigild(c);
}

/* rsyslogd stopped and started again on the same port: while it is down
 * the sink answers RETRY and the host keeps the events; after, everything
 * arrives. Stopped between events, nothing is sent twice; stopped while
 * events stream, what it may not have read is sent again (replay). */
static void test_tcp_restart(void **state)
{
    struct ctx *c = *state;
    start_both(c, K_TCP, "    replay: 500ms\n");
    size_t len;
    char *in = seq_lines("rs", 1, 300, &len);
    publish(c, in, len);
    free(in);
    assert_true(wait_seqs(c->r.out, "rs", 300, 15));

    rs_stop(&c->r);
    in = seq_lines("rs", 301, 600, &len);
    publish(c, in, len);
    free(in);
    assert_true(wait_lines(c->v.log, "events wait for a retry", 1, 10));
    sleep_ms(1000); /* the host retries meanwhile */
    rs_start(&c->r);
    if (!wait_seqs(c->r.out, "rs", 600, 20)) {
        dump_vigild(&c->v);
        fail_msg("events held while rsyslogd was down did not arrive");
    }
    assert_true(wait_lines(c->v.log, "delivering to tcp://", 1, 5));
    assert_int_equal(check_seqs(c->r.out, "rs", 600, 600), 0);

    /* Now while events stream, twice. */
    stream_through_restarts(c, "bg", 1500, 2);
    stop_vigild(c);
}

/* UDP: the fields, and a stream at a pace the server's socket buffer takes
 * (UDP has no flow control: a burst beyond it is dropped by the kernel). */
static void test_udp(void **state)
{
    struct ctx *c = *state;
    start_both(c, K_UDP, "    facility: local0\n    app_name: vigil-test\n");
    publish(c, alert_line, sizeof alert_line - 1);
    check_alert(c, 16 * 8 + 2);
    size_t n = 300, len;
    char *in = seq_lines("udp", 1, n, &len);
    publish_background(c, in, len, "1ms");
    free(in);
    wait_background(c, 30);
    assert_true(wait_seqs(c->r.out, "udp", n, 15));
    sleep_ms(300);
    assert_int_equal(check_seqs(c->r.out, "udp", n, n), 0);
    stop_vigild(c);
}

/* The local daemon's socket: fields, then the daemon restarted (a new
 * socket file) while events stream. */
static void test_unix(void **state)
{
    struct ctx *c = *state;
    start_both(c, K_UNIX, "    facility: auth\n    app_name: vigil-test\n");
    publish(c, alert_line, sizeof alert_line - 1);
    check_alert(c, 4 * 8 + 2);

    stream_through_restarts(c, "ux", 1000, 1);
    stop_vigild(c);
}

/* Config errors: each at its file:line:col, from vigild --check. */
static void test_config_errors(void **state)
{
    struct ctx *c = *state;
    /* The harness writes 6 lines before the body: body line k is k + 6. */
    assert_int_equal(vd_setup(&c->v, NULL,
                              "sinks:\n"
                              "  - plugin: syslog\n"
                              "    name: s1\n"
                              "    address: ftp://example.org\n"
                              "  - plugin: syslog\n"
                              "    name: s2\n"
                              "    facility: local9\n"
                              "  - plugin: syslog\n"
                              "    name: s3\n"
                              "    severity: loud\n"
                              "    app_name: \"has space\"\n"
                              "    sd_id: nope\n"
                              "    max_message: 100\n"
                              "  - plugin: syslog\n"
                              "    name: s4\n"
                              "    address: \"tcp://[::1:514\"\n"
                              "  - plugin: syslog\n"
                              "    name: s5\n"
                              "    address: udp://127.0.0.1:99999\n"
                              "  - plugin: syslog\n"
                              "    name: s6\n"
                              "    address: tcp://127.0.0.1\n"
                              "    max_message: 2MiB\n"),
                     0);
    char *const argv[] = {VIGIL_BUILD_DIR "/vigild", "--check", "-c", c->v.cfg, NULL};
    char *err = NULL;
    assert_int_equal(run(argv, NULL, 0, NULL, &err, 30), 1);
    static const struct {
        int line, col;
        const char *text;
    } want[] = {
        {10, 14, "must start with unix://, udp:// or tcp://"},
        {13, 15, "unknown facility 'local9'"},
        {16, 15, "unknown severity 'loud'"},
        {17, 15, "app_name 'has space' may hold only printable ASCII"},
        {18, 12, "sd_id 'nope' must be name@enterprise-number"},
        {19, 18, "max_message must be 480 to 65507 bytes"},
        {22, 14, "closing ']'"},
        {25, 14, "the port must be a number from 1 to 65535"},
        {29, 18, "max_message must be 480 to 1048576 bytes"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char where[PATH_MAX + 32];
        snprintf(where, sizeof where, "%s:%d:%d: ", c->v.cfg, want[i].line, want[i].col);
        const char *at = strstr(err, where);
        const char *eol = at ? strchr(at, '\n') : NULL;
        const char *hit = at ? strstr(at, want[i].text) : NULL;
        if (!hit || (eol && hit > eol)) {
            fail_msg("expected %s... %s in:\n%s", where, want[i].text, err);
        }
    }
    free(err);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tcp_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_raw_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_udp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

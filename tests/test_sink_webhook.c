/* The webhook sink against a real HTTP(S) receiver on loopback
 * (tests/http_peer.py), inside the real vigild, fed through the real bus by
 * vigil-pub and the rules engine: formats, headers and their secrecy, the
 * verdicts per HTTP status, Retry-After, outages and restarts, and TLS.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <time.h>
#include <unistd.h>
#include <cmocka.h> /* after setjmp.h, stdarg.h and stddef.h, which it needs */

#include "harness.h"

#define PY "/usr/bin/python3"
#define PEER VIGIL_SOURCE_DIR "/tests/http_peer.py"

struct peer {
    pid_t pid;
    int port;
    char log[PATH_MAX]; /* one JSON line per request */
    char port_file[PATH_MAX];
    char status_file[PATH_MAX]; /* the status it answers; absent: 200 */
};

struct fx {
    struct vd v;
    struct peer peer;
    char pdir[64]; /* the peer's folder: it starts before vigild's exists */
    pid_t pub;     /* a vigil-pub running in the background */
};

static void reap(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        *pid = 0;
    }
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    *state = f;
    if (!f) {
        return -1;
    }
    snprintf(f->pdir, sizeof f->pdir, "/tmp/vigil-peer.XXXXXX");
    if (!mkdtemp(f->pdir)) {
        return -1;
    }
    struct peer *p = &f->peer;
    snprintf(p->log, sizeof p->log, "%s/requests.jsonl", f->pdir);
    snprintf(p->port_file, sizeof p->port_file, "%s/peer.port", f->pdir);
    snprintf(p->status_file, sizeof p->status_file, "%s/peer.status", f->pdir);
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    reap(&f->pub);
    reap(&f->peer.pid);
    vd_cleanup(&f->v);
    if (f->pdir[0] && !getenv("VIGIL_KEEP_TEST_DIRS")) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->pdir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", f->pdir);
        }
    }
    free(f);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* ---- The HTTP peer ------------------------------------------------------------- */

/* Starts http_peer.py serve on `port` (0: any) with extra arguments
 * (NULL-terminated); fails the test if it does not listen. */
static void peer_start(struct fx *f, int port, const char *const *extra)
{
    struct peer *p = &f->peer;
    unlink(p->port_file);
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    const char *argv[32] = {PY,
                            PEER,
                            "serve",
                            "--log",
                            p->log,
                            "--port-file",
                            p->port_file,
                            "--status-file",
                            p->status_file,
                            "--port",
                            port_s};
    size_t n = 11;
    for (size_t i = 0; extra && extra[i] && n < 31; i++) {
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    char err_path[PATH_MAX + 16];
    snprintf(err_path, sizeof err_path, "%s/peer.err", f->pdir);
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        int fd = open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(PY, (char *const *)argv);
        _exit(127);
    }
    double deadline = now_s() + 10;
    while (now_s() < deadline) {
        char *text = slurp(p->port_file);
        if (text) {
            p->port = atoi(text);
            free(text);
            return;
        }
        if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
            p->pid = 0;
            break;
        }
        sleep_ms(20);
    }
    char *err = slurp(err_path);
    fail_msg("http_peer.py did not start: %s", err ? err : "(no output)");
}

static void peer_stop(struct fx *f)
{
    if (f->peer.pid > 0) {
        kill(f->peer.pid, SIGTERM);
        waitpid(f->peer.pid, NULL, 0);
        f->peer.pid = 0;
    }
}

/* Runs http_peer.py check until it passes or timeout_s goes by. */
static bool delivered(struct fx *f, const char *source, int count, bool allow_dups,
                      const char *labels, int timeout_s)
{
    char count_s[16];
    snprintf(count_s, sizeof count_s, "%d", count);
    const char *argv[12] = {PY, PEER, "check", f->peer.log, "--source", source, "--count", count_s};
    size_t n = 8;
    if (allow_dups) {
        argv[n++] = "--allow-dups";
    }
    if (labels) {
        argv[n++] = "--expect-labels";
        argv[n++] = labels;
    }
    argv[n] = NULL;
    double deadline = now_s() + timeout_s;
    for (;;) {
        char *out = NULL, *err = NULL;
        int rc = run((char *const *)argv, NULL, 0, &out, &err, 60);
        bool last = now_s() >= deadline;
        if (rc == 0 || last) {
            if (rc != 0) {
                fprintf(stderr, "check of %s: %s%s\n", f->peer.log, out, err);
            }
            free(out);
            free(err);
            return rc == 0;
        }
        free(out);
        free(err);
        sleep_ms(300);
    }
}

/* Runs python `code` with r = the list of recorded requests (dicts, see
 * http_peer.py); fails the test, saying `what`, when it raises. */
static void requests_hold(const struct fx *f, const char *what, const char *code)
{
    char prog[4096];
    snprintf(prog, sizeof prog, "import json,sys\nr=[json.loads(l) for l in open(sys.argv[1])]\n%s",
             code);
    char *const argv[] = {PY, "-c", prog, (char *)f->peer.log, NULL};
    char *out = NULL, *err = NULL;
    if (run(argv, NULL, 0, &out, &err, 30) != 0) {
        fail_msg("%s: not so: %s %s", what, out, err);
    }
    free(out);
    free(err);
}

/* ---- vigild and its counters ----------------------------------------------------- */

static void start(struct vd *v)
{
    if (vd_start(v) != 0) {
        vd_dump_log(v);
        fail_msg("vigild did not start");
    }
}

/* vigil.self as the test_capture sink "self" writes it. */
static const char *self_path(const struct fx *f)
{
    static char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/self.jsonl", f->v.dir);
    return p;
}

/* The last value of `key` vigil.self reported for `instance`, or -1. */
static double self_now(const struct fx *f, const char *instance, const char *key)
{
    double x;
    return self_value(self_path(f), instance, key, &x) ? x : -1;
}

/* The sink under test plus a capture of vigil.self; `extra` goes into the
 * webhook's own mapping (indented 4), `more` after the sinks (rules...). */
static void setup_daemon(struct fx *f, const char *url, const char *extra, const char *more)
{
    char body[3 * PATH_MAX];
    snprintf(
        body, sizeof body,
        "%s"
        "sinks:\n"
        "  - plugin: webhook\n"
        "    name: wh\n"
        "    url: %s\n"
        "%s"
        "  - { plugin: test_capture, name: self, match: vigil.self, path: @DIR@/self.jsonl }\n",
        more ? more : "", url, extra ? extra : "    match: test.\n");
    assert_int_equal(vd_setup(&f->v, "200ms", body), 0);
}

static char *url_of(const struct fx *f, const char *scheme)
{
    static char url[128];
    snprintf(url, sizeof url, "%s://127.0.0.1:%d/hook", scheme, f->peer.port);
    return url;
}

/* Publishes `n` lines of events through vigil-pub on `topic` (source
 * vigil-pub, seq 1..n), one every `interval` (NULL: as fast as it goes). In
 * the background when bg (f->pub), else waits for it. */
static void publish(struct fx *f, const char *topic, const char *source, int n,
                    const char *interval, bool bg)
{
    char in_path[PATH_MAX + 32];
    snprintf(in_path, sizeof in_path, "%s/pub-%s.jsonl", f->pdir, source);
    FILE *fp = fopen(in_path, "w");
    assert_non_null(fp);
    for (int i = 1; i <= n; i++) {
        fprintf(fp,
                "{\"labels\":{\"i\":\"%d\",\"q\":\"a \\\"b\\\" \\\\ c\\nd\","
                "\"u\":\"h\\u00e9llo \\u65e5\"",
                i);
        if (i == 7) { /* one label far larger than the room the sink starts with */
            fputs(",\"big\":\"", fp);
            for (int k = 0; k < 30000; k++) {
                fputc('y', fp);
            }
            fputc('"', fp);
        }
        fprintf(fp, "},\"values\":{\"x\":%d.5}}\n", i);
    }
    fclose(fp);
    const char *argv[] = {
        VIGIL_BUILD_DIR "/vigil-pub",   "-c",     f->v.cfg, "-t", topic, "--source", source,
        interval ? "--interval" : NULL, interval, NULL};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(in_path, O_RDONLY);
        dup2(fd, 0);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (bg) {
        f->pub = pid;
        return;
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void publish_wait(struct fx *f)
{
    int st;
    assert_int_equal(waitpid(f->pub, &st, 0), f->pub);
    f->pub = 0;
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

#define LABELS_Q "{\"q\": \"a \\\"b\\\" \\\\ c\\nd\", \"u\": \"h\\u00e9llo \\u65e5\"}"

/* ---- Tests ---------------------------------------------------------------------- */

/* format json: arrays that parse, every event once, odd labels intact, over
 * one kept-alive connection. */
static void test_json_every_event_once(void **state)
{
    struct fx *f = *state;
    peer_start(f, 0, NULL);
    setup_daemon(f, url_of(f, "http"), NULL, NULL);
    start(&f->v);
    publish(f, "test.json", "p1", 3000, NULL, false);
    assert_true(delivered(f, "p1", 3000, false, LABELS_Q, 30));
    /* Batches, not one request per event, and the connection is reused. */
    requests_hold(f, "batches over one connection",
                  "h=r[0]['headers']\n"
                  "assert h['Content-Type']=='application/json', h\n"
                  "assert all(x['path']=='/hook' for x in r)\n"
                  "ports={x['peer_port'] for x in r}\n"
                  "print(len(r), 'requests over', len(ports), 'connections')\n"
                  "assert 1 < len(r) < 3000 and len(ports) < len(r), (len(r), ports)\n");
    assert_true(wait_self_value(self_path(f), "wh", "out_total", 3000, 10));
    assert_true(self_now(f, "wh", "failed_total") == 0);
    assert_int_equal(vd_stop(&f->v, 10, NULL), 0);
}

/* format alertmanager: a real threshold rule fires and resolves; the
 * receiver gets alerts with alertname, summary, startsAt, endsAt; events that
 * are not alerts fail, with one log line. */
static void test_alertmanager_fired_resolved(void **state)
{
    struct fx *f = *state;
    peer_start(f, 0, NULL);
    setup_daemon(f, url_of(f, "http"),
                 "    format: alertmanager\n"
                 "    match: [alert., test.cpu]\n",
                 "rules:\n"
                 "  - name: cpu-hot\n"
                 "    kind: threshold\n"
                 "    match: test.cpu\n"
                 "    expr: values.cpu > 90\n"
                 "    severity: critical\n"
                 "    message: '{labels.box} is hot ({values.cpu})'\n");
    start(&f->v);
    const char in[] =
        "{\"labels\":{\"box\":\"b\\\"1\",\"odd-name\":\"x\"},\"values\":{\"cpu\":95}}\n"
        "{\"labels\":{\"box\":\"b\\\"1\",\"odd-name\":\"x\"},\"values\":{\"cpu\":50}}\n";
    char *const pub[] = {VIGIL_BUILD_DIR "/vigil-pub", "-c", f->v.cfg, "-t", "test.cpu", NULL};
    assert_int_equal(run(pub, in, sizeof in - 1, NULL, NULL, 30), 0);
    assert_true(wait_self_value(self_path(f), "wh", "out_total", 2, 10));
    assert_true(
        wait_self_value(self_path(f), "wh", "failed_total", 2, 10)); /* the two test.cpu events */

    char alerts[PATH_MAX + 16];
    snprintf(alerts, sizeof alerts, "%s/alerts.jsonl", f->pdir);
    char *const dump[] = {PY, PEER, "alerts", f->peer.log, NULL};
    char *out = NULL;
    assert_int_equal(run(dump, NULL, 0, &out, NULL, 30), 0);
    write_file(alerts, out);
    free(out);
    assert_int_equal(count_lines(alerts, "\"alertname\": \"cpu-hot\""), 2);
    /* The message is rendered from the event that fired, then resolved it. */
    assert_int_equal(count_lines(alerts, "\"summary\": \"b\\\"1 is hot (95)\""), 1);
    assert_int_equal(count_lines(alerts, "\"summary\": \"b\\\"1 is hot (50)\""), 1);
    assert_int_equal(count_lines(alerts, "\"box\": \"b\\\"1\""), 2);
    assert_int_equal(count_lines(alerts, "\"fingerprint\": \""), 2);
    assert_int_equal(count_lines(alerts, "\"severity\": \"critical\""), 2);
    assert_int_equal(count_lines(alerts, "\"odd_name\": \"x\""), 2);
    assert_int_equal(count_lines(alerts, "\"_startsAt_ok\": true"), 2);
    assert_int_equal(count_lines(alerts, "\"_endsAt_ok\": true"), 1); /* only the resolved one */
    assert_int_equal(count_lines(alerts, "\"endsAt\""), 1);
    assert_int_equal(count_lines(alerts, "\"generatorURL\": \"vigil://"), 2);
    assert_int_equal(count_lines(alerts, "/cpu-hot\""), 2);
    assert_int_equal(count_lines(alerts, "\"value_cpu\": \"95\""), 1);
    assert_true(count_lines(f->v.log, "are not alerts") >= 1);
    assert_int_equal(vd_stop(&f->v, 10, NULL), 0);
}

/* ${ENV} in a header reaches the server; the value never shows in vigild's
 * log, even at debug level, nor in --check's output. */
static void test_header_secret_from_env(void **state)
{
    struct fx *f = *state;
    char secret[64];
    snprintf(secret, sizeof secret, "s3cr3t-%d-token", (int)getpid());
    setenv("VIGIL_TEST_WEBHOOK_SECRET", secret, 1);
    peer_start(f, 0, NULL);
    setup_daemon(f, url_of(f, "http"),
                 "    match: test.\n"
                 "    headers:\n"
                 "      Authorization: 'Bearer ${VIGIL_TEST_WEBHOOK_SECRET}'\n"
                 "      X-Team: ops\n",
                 NULL);
    char *const check[] = {VIGIL_BUILD_DIR "/vigild", "--check", "-c", f->v.cfg, NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(run(check, NULL, 0, &out, &err, 30), 0);
    assert_null(strstr(out, secret));
    assert_null(strstr(err, secret));
    free(out);
    free(err);
    /* vigild at debug level, started by hand (vd_start has no -l). */
    f->v.pid = fork();
    assert_true(f->v.pid >= 0);
    if (f->v.pid == 0) {
        int fd = open(f->v.log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(VIGIL_BUILD_DIR "/vigild", "vigild", "-c", f->v.cfg, "-l", "debug", (char *)NULL);
        _exit(127);
    }
    assert_true(wait_lines(f->v.log, "started", 1, 10));
    /* Some failures too, so that the sink has reasons to log. */
    write_file(f->peer.status_file, "400\n");
    publish(f, "test.sec", "p1", 5, NULL, false);
    assert_true(wait_self_value(self_path(f), "wh", "failed_total", 5, 10));
    unlink(f->peer.status_file);
    publish(f, "test.sec", "p2", 5, NULL, false);
    assert_true(delivered(f, "p2", 5, false, NULL, 10));
    char expect[96];
    snprintf(expect, sizeof expect, "\"Authorization\": \"Bearer %s\"", secret);
    assert_true(count_lines(f->peer.log, expect) >= 2);
    assert_true(count_lines(f->peer.log, "\"X-Team\": \"ops\"") >= 2);
    assert_int_equal(vd_stop(&f->v, 10, NULL), 0);
    assert_int_equal(count_lines(f->v.log, secret), 0);
    assert_int_equal(count_lines(f->v.log, "${VIGIL_TEST"), 0);
    unsetenv("VIGIL_TEST_WEBHOOK_SECRET");
}

/* 500: every event retried (counted), nothing lost; once the receiver
 * answers 200, all of them arrive, each once. */
static void test_500_retried_then_delivered(void **state)
{
    struct fx *f = *state;
    write_file(f->peer.status_file, "500\n");
    peer_start(f, 0, NULL);
    setup_daemon(f, url_of(f, "http"), NULL, NULL);
    start(&f->v);
    publish(f, "test.r", "p1", 200, NULL, false);
    assert_true(wait_lines(f->peer.log, "\"status\": 500", 3, 20));
    assert_true(wait_self_value(self_path(f), "wh", "retried_total", 1, 10));
    assert_true(self_now(f, "wh", "out_total") == 0);
    assert_true(self_now(f, "wh", "failed_total") == 0);
    assert_true(count_lines(f->v.log, "HTTP 500") >= 1);
    unlink(f->peer.status_file);
    assert_true(delivered(f, "p1", 200, false, LABELS_Q, 30));
    assert_true(wait_self_value(self_path(f), "wh", "out_total", 200, 10));
    assert_true(self_now(f, "wh", "failed_total") == 0);
    assert_int_equal(vd_stop(&f->v, 10, NULL), 0);
}

/* 400: failed for good, counted, and the log shows the status and the
 * start of the response body. */
static void test_400_fails_for_good(void **state)
{
    struct fx *f = *state;
    const char *const extra[] = {"--reply", "bad payload: field 'x' \xc3\xa9\nline2", NULL};
    peer_start(f, 0, extra);
    write_file(f->peer.status_file, "400\n");
    setup_daemon(f, url_of(f, "http"), NULL, NULL);
    start(&f->v);
    publish(f, "test.bad", "p1", 50, NULL, false);
    assert_true(wait_self_value(self_path(f), "wh", "failed_total", 50, 15));
    assert_true(self_now(f, "wh", "out_total") == 0);
    assert_true(self_now(f, "wh", "retried_total") == 0);
    assert_true(count_lines(f->v.log, "HTTP 400") >= 1);
    assert_true(count_lines(f->v.log, "bad payload: field 'x'") >= 1);
    assert_int_equal(count_lines(f->v.log, "line2"), count_lines(f->v.log, "bad payload"));
    /* Nothing was retried: as many requests as it took, no more. */
    size_t reqs = count_lines(f->peer.log, "\"status\": 400");
    sleep_ms(1000);
    assert_int_equal(count_lines(f->peer.log, "\"status\": 400"), reqs);
    assert_int_equal(vd_stop(&f->v, 10, NULL), 0);
}

/* 429 with Retry-After: the next attempt waits at least that long, given
 * in seconds (2) or as an HTTP date (3 s ahead, whole seconds). */
static void test_429_retry_after(void **state)
{
    struct fx *f = *state;
    write_file(f->peer.status_file, "429 2\n");
    peer_start(f, 0, NULL);
    setup_daemon(f, url_of(f, "http"), NULL, NULL);
    start(&f->v);
    publish(f, "test.ra", "p1", 5, NULL, false);
    assert_true(wait_lines(f->peer.log, "\"status\": 429", 1, 10));
    unlink(f->peer.status_file);
    assert_true(delivered(f, "p1", 5, false, NULL, 15));
    write_file(f->peer.status_file, "429 +3\n");
    publish(f, "test.ra", "p2", 5, NULL, false);
    assert_true(wait_lines(f->peer.log, "\"status\": 429", 2, 10));
    unlink(f->peer.status_file);
    assert_true(delivered(f, "p2", 5, false, NULL, 15));
    requests_hold(f, "Retry-After honoured",
                  "k=[i for i,x in enumerate(r) if x['status']==429]\n"
                  "gaps=[r[i+1]['t']-r[i]['t'] for i in k]\n"
                  "print(len(r), 'requests; after each 429:', gaps)\n"
                  "assert len(k)==2 and all(r[i+1]['status']==200 for i in k), k\n"
                  "assert 1.9 <= gaps[0] < 8 and 1.9 <= gaps[1] < 9, gaps\n");
    assert_true(count_lines(f->v.log, "Retry-After") >= 2);
    assert_int_equal(vd_stop(&f->v, 10, NULL), 0);
}

/* The receiver goes away for seconds while events keep coming, then comes
 * back on the same port: everything arrives. */
static void test_outage_loses_nothing(void **state)
{
    struct fx *f = *state;
    peer_start(f, 0, NULL);
    int port = f->peer.port;
    setup_daemon(f, url_of(f, "http"), "    match: test.\n    timeout: 2s\n", NULL);
    start(&f->v);
    publish(f, "test.out", "p1", 600, "10ms", true); /* ~6 s */
    sleep_ms(1000);
    peer_stop(f);
    sleep_ms(3000);
    assert_true(wait_self_value(self_path(f), "wh", "retried_total", 1, 5));
    peer_start(f, port, NULL);
    publish_wait(f);
    assert_true(delivered(f, "p1", 600, true, LABELS_Q, 30));
    assert_true(self_now(f, "wh", "failed_total") == 0);
    assert_int_equal(vd_stop(&f->v, 10, NULL), 0);
}

/* kill -9 while the receiver is down and events wait in the spool; a
 * restart with the same state_dir delivers every one (duplicates allowed). */
static void test_kill9_spool_resumes(void **state)
{
    struct fx *f = *state;
    peer_start(f, 0, NULL);
    int port = f->peer.port;
    peer_stop(f); /* down from the start: the port is known, nothing listens */
    setup_daemon(f, url_of(f, "http"), "    match: test.\n    timeout: 2s\n", NULL);
    start(&f->v);
    publish(f, "test.spool", "p1", 300, NULL, false);
    /* All of them on disk (the harness's state_dir), as vigil.self says. */
    assert_true(wait_self_value(self_path(f), "wh", "spool_events", 300, 10));
    vd_kill9(&f->v);
    peer_start(f, port, NULL);
    start(&f->v);
    assert_true(delivered(f, "p1", 300, true, LABELS_Q, 30));
    assert_true(count_lines(f->v.log, "events left in the spool") >= 1);
    assert_int_equal(vd_stop(&f->v, 10, NULL), 0);
}

/* TLS with a self-signed certificate: trusted through tls.ca_file, refused
 * (retried, logged) without it, accepted with insecure: true and a warning. */
static void test_tls(void **state)
{
    struct fx *f = *state;
    char cert[PATH_MAX + 16], key[PATH_MAX + 16];
    snprintf(cert, sizeof cert, "%s/cert.pem", f->pdir);
    snprintf(key, sizeof key, "%s/key.pem", f->pdir);
    char *const openssl[] = {"/usr/bin/openssl",
                             "req",
                             "-x509",
                             "-newkey",
                             "ec",
                             "-pkeyopt",
                             "ec_paramgen_curve:prime256v1",
                             "-nodes",
                             "-keyout",
                             key,
                             "-out",
                             cert,
                             "-days",
                             "2",
                             "-subj",
                             "/CN=127.0.0.1",
                             "-addext",
                             "subjectAltName=IP:127.0.0.1",
                             NULL};
    if (access(openssl[0], X_OK) != 0) {
        fprintf(stderr, "SKIP: no %s to make a certificate\n", openssl[0]);
        skip();
    }
    char *err = NULL;
    int rc = run(openssl, NULL, 0, NULL, &err, 30);
    if (rc != 0) {
        fail_msg("openssl req failed: %s", err);
    }
    free(err);
    const char *const extra[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    peer_start(f, 0, extra);
    char body[8192];
    const char *url = url_of(f, "https");
    snprintf(
        body, sizeof body,
        "sinks:\n"
        "  - { plugin: webhook, name: ca, match: test.a, url: '%s', tls: { ca_file: %s } }\n"
        "  - { plugin: webhook, name: noca, match: test.b, url: '%s' }\n"
        "  - { plugin: webhook, name: insecure, match: test.c, url: '%s',\n"
        "      tls: { insecure: true } }\n"
        "  - { plugin: test_capture, name: self, match: vigil.self, path: @DIR@/self.jsonl }\n",
        url, cert, url, url);
    assert_int_equal(vd_setup(&f->v, "200ms", body), 0);
    start(&f->v);
    publish(f, "test.a", "pa", 20, NULL, false);
    publish(f, "test.b", "pb", 20, NULL, false);
    publish(f, "test.c", "pc", 20, NULL, false);
    assert_true(delivered(f, "pa", 20, false, LABELS_Q, 15));
    assert_true(delivered(f, "pc", 20, false, LABELS_Q, 15));
    assert_true(wait_self_value(self_path(f), "noca", "retried_total", 1, 10));
    assert_true(self_now(f, "noca", "out_total") == 0);
    assert_int_equal(count_lines(f->peer.log, "\\\"source\\\":\\\"pb\\\""), 0);
    assert_true(count_lines(f->v.log, "webhook/noca") >= 1);
    assert_true(count_lines(f->v.log, "certificate") >= 1);
    assert_int_equal(count_lines(f->v.log, "is NOT verified"), 1);
    /* noca keeps retrying; vd_cleanup ends it. */
}

/* Config errors name the file, line and column. */
static void test_config_errors(void **state)
{
    struct fx *f = *state;
    static const struct bad_conf cases[] = {
        /* Line 7 is the first of the body (the harness writes six). */
        {"sinks:\n  - plugin: webhook\n    format: json\n", ":8:5: ", "needs 'url'"},
        {"sinks:\n  - plugin: webhook\n    url: http://127.0.0.1:9/\n    format: xml\n",
         ":10:13: ", "format must be json or alertmanager"},
        {"sinks:\n  - plugin: webhook\n    url: ftp://127.0.0.1/x\n",
         ":9:10: ", "http:// or https://"},
        {"sinks:\n  - plugin: webhook\n    url: http://127.0.0.1:9/\n    headers:\n"
         "      Authorization: 'Bearer ${VIGIL_NO_SUCH_VARIABLE_X}'\n",
         ":11:22: ", "VIGIL_NO_SUCH_VARIABLE_X"},
        {"sinks:\n  - plugin: webhook\n    url: http://127.0.0.1:9/\n"
         "    tls: { ca_file: /nonexistent/ca.pem }\n",
         ":10:21: ", "cannot be read"},
        {"sinks:\n  - plugin: webhook\n    url: http://127.0.0.1:9/\n    tls: { verify: no }\n",
         ":10:20: ", "unknown key 'verify'"},
    };
    unsetenv("VIGIL_NO_SUCH_VARIABLE_X");
    assert_true(vd_check_refuses_all(&f->v, cases, sizeof cases / sizeof cases[0]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_every_event_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alertmanager_fired_resolved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_secret_from_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_500_retried_then_delivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_400_fails_for_good, setup, teardown),
        cmocka_unit_test_setup_teardown(test_429_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outage_loses_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_spool_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    /* WEBHOOK_TEST=test_tls runs one test (a cmocka glob). */
    if (getenv("WEBHOOK_TEST")) {
        cmocka_set_test_filter(getenv("WEBHOOK_TEST"));
    }
    return cmocka_run_group_tests_name("sink_webhook", tests, NULL, NULL);
}

/* The prometheus sink inside the real vigild, fed by its system and cgroups
 * sources and by events the test publishes on the real bus: the exposition
 * (both formats) read over HTTP and checked by promtool, a real Prometheus
 * server scraping it and answering queries, odd labels, expiry, max_series,
 * and config errors.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>
#include <cmocka.h> /* after setjmp.h, stdarg.h and stddef.h, which it needs */

#include "event.h"
#include "harness.h"

#define PROMETHEUS "/usr/bin/prometheus"
#define PROMTOOL "/usr/bin/promtool"

struct fx {
    struct vd v;
    int port; /* the sink's */
    pid_t prom;
    void *zctx, *push;
    struct vigil_event_builder b;
    uint64_t seq;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    *state = f;
    if (!f || !(f->zctx = zmq_ctx_new())) {
        return -1;
    }
    vigil_event_builder_init(&f->b);
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->prom > 0) {
        kill(f->prom, SIGKILL);
        waitpid(f->prom, NULL, 0);
    }
    if (f->push) {
        zmq_close(f->push);
    }
    zmq_ctx_term(f->zctx);
    vigil_event_builder_fini(&f->b);
    vd_cleanup(&f->v);
    free(f);
    return 0;
}

/* vigild with `body` (vd_setup), self reports every `self_interval`, and a PUSH
 * socket to its bus. */
static void launch(struct fx *f, const char *body, const char *self_interval)
{
    assert_int_equal(vd_setup(&f->v, self_interval, body), 0);
    assert_true(vd_started(&f->v));
    f->push = zmq_socket(f->zctx, ZMQ_PUSH);
    assert_int_equal(zmq_connect(f->push, f->v.pub), 0);
}

/* vigild on host "h1" with its system and cgroups sources every second,
 * the prometheus sink (with `sink_keys`), and vigil.self in self.jsonl. */
static void start(struct fx *f, const char *sink_keys)
{
    f->port = free_loopback_port();
    assert_true(f->port > 0);
    char body[2048];
    snprintf(body, sizeof body,
             "host: h1\n"
             "sources:\n"
             "  - plugin: system\n    interval: 1s\n"
             "  - plugin: cgroups\n    interval: 1s\n"
             "sinks:\n"
             "  - plugin: prometheus\n    listen: 127.0.0.1:%d\n%s"
             "  - plugin: file\n    name: self\n    match: vigil.self\n"
             "    path: @DIR@/self.jsonl\n",
             f->port, sink_keys);
    launch(f, body, "1s");
}

/* Publishes one event of `topic` with the labels (name, value pairs, NULL
 * ended) and one value `name` = v. */
static void publish(struct fx *f, const char *topic, const char *name, double v, ...)
{
    vigil_event_begin(&f->b, topic);
    va_list ap;
    va_start(ap, v);
    for (const char *k; (k = va_arg(ap, const char *));) {
        vigil_event_add_label(&f->b, k, va_arg(ap, const char *));
    }
    va_end(ap);
    vigil_event_add_value(&f->b, name, v);
    const char *body;
    size_t len;
    assert_int_equal(vigil_event_finish(&f->b, "h1", "test", ++f->seq, &body, &len), 0);
    assert_int_equal(zmq_send(f->push, topic, strlen(topic), ZMQ_SNDMORE), (int)strlen(topic));
    assert_int_equal(zmq_send(f->push, body, len, 0), (int)len);
}

/* GET http://127.0.0.1:port/path (HTTP/1.0: the server closes after the
 * reply). The status, or -1; *body gets what follows the headers, *head
 * the headers (caller frees both). */
static int http_get(int port, const char *path, const char *accept, char **head, char **body)
{
    *head = *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s%s%s\r\n", path,
                     accept ? "Accept: " : "", accept ? accept : "", accept ? "\r\n" : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    for (ssize_t r; buf && (r = read(fd, buf + len, cap - len - 1)) > 0;) {
        len += (size_t)r;
        if (cap - len < 4096) {
            char *p = realloc(buf, cap *= 2);
            if (!p) {
                free(buf);
                buf = NULL;
            }
            buf = p;
        }
    }
    close(fd);
    if (!buf) {
        return -1;
    }
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    int status = -1;
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        free(buf);
        return -1;
    }
    *sep = '\0';
    *body = strdup(sep + 4);
    *head = buf;
    return status;
}

/* The exposition (text 0.0.4) once it holds `needle`, waiting up to 15 s;
 * NULL (after printing the last one) if it never does. */
static char *metrics_with(struct fx *f, const char *needle)
{
    char *head, *body = NULL;
    for (double end = now_s() + 15; now_s() < end; sleep_ms(200)) {
        free(body);
        body = NULL;
        int st = http_get(f->port, "/metrics", NULL, &head, &body);
        free(head);
        if (st == 200 && strstr(body, needle)) {
            return body;
        }
    }
    fprintf(stderr, "no '%s' in the exposition:\n%s\n", needle, body ? body : "(none)");
    free(body);
    return NULL;
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++) {
        n++;
    }
    return n;
}

/* promtool check metrics over `text`: it must parse; of its lint, only
 * the naming advice our value names draw (abbreviated units such as _s and
 * _pct, a gauge named _count) is accepted. */
static void promtool_accepts(struct fx *f, const char *text)
{
    char *const argv[] = {PROMTOOL, "check", "metrics", NULL};
    char *out = NULL, *err = NULL;
    int rc = run(argv, text, strlen(text), &out, &err, 30);
    bool ok = rc == 0 || rc == 3;
    for (char *line = strtok(err, "\n"); ok && line; line = strtok(NULL, "\n")) {
        ok = strstr(line, "should not contain abbreviated units") ||
             strstr(line, "should not have \"_count\" suffix");
        if (!ok) {
            fprintf(stderr, "promtool: %s\n", line);
        }
    }
    if (!ok) {
        fail_msg("promtool check metrics: exit %d\n%s\n%s", rc, out ? out : "", err ? err : "");
    }
    free(out);
    free(err);
    (void)f;
}

/* ---- Tests ---------------------------------------------------------------------------------- */

#define ODD_LINE                                                                                   \
    "vigil_test_odd_v_1{_9lives=\"n\",a_b=\"1\",bad=\"x\xEF\xBF\xBD\xEF\xBF\xBDy\","               \
    "exported_host=\"fake\",host=\"h1\",label__r=\"r\",q=\"a \\\"b\\\" \\\\ c\\nd\","              \
    "u=\"h\xC3\xA9llo\"} 1.5\n"

/* The exposition: the sources' series and vigil.self with their labels,
 * odd labels escaped or mapped, counters and gauges typed, promtool
 * content; OpenMetrics when asked for. */
static void test_exposition(void **state)
{
    struct fx *f = *state;
    start(f, "");
    publish(f, "test.odd", "v.1", 1.5, "q", "a \"b\" \\ c\nd", "u", "h\xC3\xA9llo", "bad",
            "x\xFF\xFEy", "9lives", "n", "__r", "r", "host", "fake", "a.b", "1", NULL);
    publish(f, "test.odd", "n_total", 7, "k", "v", NULL);
    char *m = metrics_with(f, "vigil_self_in_total{host=\"h1\",stage=\"bus\"}");
    assert_non_null(m);
    free(m);
    assert_non_null(m = metrics_with(f, "vigil_test_odd_n_total{"));
    if (!strstr(m, ODD_LINE)) {
        fail_msg("no line\n%s\nin\n%s", ODD_LINE, m);
    }
    assert_non_null(strstr(m, "# TYPE vigil_test_odd_n_total counter\n"));
    assert_non_null(strstr(m, "vigil_test_odd_n_total{host=\"h1\",k=\"v\"} 7\n"));
    assert_non_null(strstr(m, "# TYPE vigil_test_odd_v_1 gauge\n"));
    assert_non_null(strstr(m, "# HELP vigil_test_odd_v_1 vigil topic test.odd, value v_1\n"));
    assert_non_null(strstr(m, "vigil_system_stats_"));
    assert_non_null(strstr(m, "vigil_cgroup_stats_memory_current_bytes{cgroup=\""));
    assert_non_null(strstr(m, "vigil_self_out_total{host=\"h1\",instance=\"prometheus\","
                              "plugin=\"prometheus\",stage=\"sink\"}"));
    promtool_accepts(f, m);
    free(m);

    char *head, *om;
    assert_int_equal(
        http_get(f->port, "/metrics", "application/openmetrics-text; version=1.0.0", &head, &om),
        200);
    assert_non_null(strstr(head, "application/openmetrics-text; version=1.0.0"));
    assert_non_null(strstr(om, "# TYPE vigil_test_odd_n counter\n"));
    assert_non_null(strstr(om, "vigil_test_odd_n_total{host=\"h1\",k=\"v\"} 7\n"));
    size_t len = strlen(om);
    assert_true(len > 6 && strcmp(om + len - 6, "# EOF\n") == 0);
    free(head);
    free(om);
    assert_int_equal(http_get(f->port, "/nothing", NULL, &head, &om), 404);
    free(head);
    free(om);
}

/* A real Prometheus scrapes vigild every second; its query API returns the
 * cgroup, system, vigil.self and test series with their labels and values. */
static void test_prometheus_scrapes(void **state)
{
    struct fx *f = *state;
    if (access(PROMETHEUS, X_OK) != 0) {
        fprintf(stderr, "SKIP: %s is missing (Debian package prometheus; tools/dev.sh setup)\n",
                PROMETHEUS);
        skip();
    }
    start(f, "");
    publish(f, "test.odd", "v.1", 1.5, "q", "a \"b\" \\ c\nd", NULL);
    int pport = free_loopback_port();
    assert_true(pport > 0);
    FILE *cf = fopen(vd_path(&f->v, "prometheus.yml"), "w");
    assert_non_null(cf);
    fprintf(cf,
            "global: { scrape_interval: 1s, scrape_timeout: 1s }\n"
            "scrape_configs:\n"
            "  - job_name: vigil\n"
            "    static_configs: [ { targets: ['127.0.0.1:%d'] } ]\n",
            f->port);
    fclose(cf);
    char cfg_arg[PATH_MAX + 32], data_arg[PATH_MAX + 32], web_arg[64];
    snprintf(cfg_arg, sizeof cfg_arg, "--config.file=%s", vd_path(&f->v, "prometheus.yml"));
    snprintf(data_arg, sizeof data_arg, "--storage.tsdb.path=%s", vd_path(&f->v, "tsdb"));
    snprintf(web_arg, sizeof web_arg, "--web.listen-address=127.0.0.1:%d", pport);
    f->prom = fork();
    assert_true(f->prom >= 0);
    if (f->prom == 0) {
        FILE *log = freopen(vd_path(&f->v, "prometheus.log"), "w", stderr);
        (void)log;
        execl(PROMETHEUS, PROMETHEUS, cfg_arg, data_arg, web_arg, (char *)NULL);
        _exit(127);
    }
    static const struct {
        const char *query, *want[3];
    } cases[] = {
        {"vigil_test_odd_v_1",
         {"\"__name__\":\"vigil_test_odd_v_1\"", "\"q\":\"a \\\"b\\\" \\\\ c\\nd\"", "\"1.5\"]"}},
        {"vigil_self_in_total{stage=\"bus\"}", {"\"host\":\"h1\"", "\"job\":\"vigil\"", NULL}},
        {"vigil_cgroup_stats_memory_current_bytes", {"\"cgroup\":\"/", NULL, NULL}},
        {"vigil_system_stats_memory_total_bytes", {"\"host\":\"h1\"", NULL, NULL}},
        {"up{job=\"vigil\"}", {"\"1\"]", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[512], *q = path, *head = NULL, *body = NULL;
        q += snprintf(path, sizeof path, "/api/v1/query?query=");
        for (const char *c = cases[i].query; *c; c++) {
            q += isalnum((unsigned char)*c) || *c == '_' ? sprintf(q, "%c", *c)
                                                         : sprintf(q, "%%%02X", (unsigned char)*c);
        }
        bool found = false;
        for (double end = now_s() + 30; !found && now_s() < end; sleep_ms(500)) {
            free(head);
            free(body);
            int st = http_get(pport, path, NULL, &head, &body);
            found = st == 200 && strstr(body, "\"result\":[{");
        }
        if (!found) {
            vd_dump_log(&f->v);
            fail_msg("Prometheus has no %s: %s (its log: %s)", cases[i].query,
                     body ? body : "(no answer)", vd_path(&f->v, "prometheus.log"));
        }
        for (size_t k = 0; k < 3 && cases[i].want[k]; k++) {
            if (!strstr(body, cases[i].want[k])) {
                fail_msg("%s: no %s in %s", cases[i].query, cases[i].want[k], body);
            }
        }
        free(head);
        free(body);
    }
}

/* max_series bounds the table (what did not fit counted in
 * dropped_series_total); series not updated for `expire` disappear. */
static void test_expire_and_max_series(void **state)
{
    struct fx *f = *state;
    start(f, "    match: test.\n    expire: 2s\n    max_series: 10\n");
    char i_text[16];
    for (int i = 1; i <= 12; i++) {
        snprintf(i_text, sizeof i_text, "%d", i);
        publish(f, "test.m", "v", i, "i", i_text, NULL);
    }
    char *m = metrics_with(f, "vigil_test_m_v{");
    assert_non_null(m);
    free(m);
    const char *self = vd_path(&f->v, "self.jsonl");
    assert_true(wait_self_value(self, "prometheus", "dropped_series_total", 2, 10));
    double x;
    assert_true(self_value(self, "prometheus", "series", &x));
    assert_true(x == 10);
    m = metrics_with(f, "vigil_test_m_v{");
    assert_int_equal(count_of(m, "vigil_test_m_v{"), 10);
    free(m);

    /* Only i=1 is kept fresh: after 2 s (and the next sweep) it stands alone,
     * and a new series fits again. */
    for (double end = now_s() + 3.5; now_s() < end; sleep_ms(250)) {
        publish(f, "test.m", "v", 1, "i", "1", NULL);
    }
    m = metrics_with(f, "vigil_test_m_v{");
    assert_int_equal(count_of(m, "vigil_test_m_v{"), 1);
    assert_non_null(strstr(m, "vigil_test_m_v{host=\"h1\",i=\"1\"} 1\n"));
    free(m);
    publish(f, "test.m", "v", 13, "i", "13", NULL);
    assert_non_null(m = metrics_with(f, "vigil_test_m_v{host=\"h1\",i=\"13\"} 13\n"));
    free(m);
}

/* The answer of /healthz now: its status, the body into *body. */
static int healthz(int port, char **body)
{
    char *head;
    int st = http_get(port, "/healthz", NULL, &head, body);
    free(head);
    return st;
}

/* Waits up to timeout_s for /healthz to answer `status` with `text` in its
 * body; prints the last answer if it never does. */
static bool healthz_is(int port, int status, const char *text, int timeout_s)
{
    char *body = NULL;
    int st = -1;
    for (double end = now_s() + timeout_s; now_s() < end; sleep_ms(200)) {
        free(body);
        body = NULL;
        st = healthz(port, &body);
        if (st == status && body && strstr(body, text)) {
            free(body);
            return true;
        }
    }
    fprintf(stderr, "/healthz: %d %s (wanted %d with '%s')\n", st, body ? body : "", status, text);
    free(body);
    return false;
}

/* /healthz: 200 while the stages run and the sinks deliver; 503 saying
 * which sink has failed too long, which stage's thread is stuck, and when
 * vigil.self does not reach the sink; 200 again once that is over. */
static void test_healthz(void **state)
{
    struct fx *f = *state;
    f->port = free_loopback_port();
    int blind = free_loopback_port();
    assert_true(f->port > 0 && blind > 0 && blind != f->port);
    char body[2048];
    snprintf(body, sizeof body,
             "host: h1\n"
             "sinks:\n"
             "  - plugin: prometheus\n    listen: 127.0.0.1:%d\n"
             "    unhealthy_after_failing: 2s\n    unhealthy_after_silence: 5s\n"
             "  - plugin: prometheus\n    name: blind\n    match: test.\n"
             "    listen: 127.0.0.1:%d\n    unhealthy_after_silence: 2s\n"
             "  - plugin: test_capture\n    name: cap\n    match: test.\n"
             "    path: @DIR@/cap.jsonl\n    fail_while: @DIR@/fail\n"
             "    block_while: @DIR@/block\n"
             "    retry: { min_backoff: 100ms, max_backoff: 300ms }\n",
             f->port, blind);
    launch(f, body, "4s"); /* the first report 4 s after the start: past 3 beats */
    /* The first report already says the loops run. */
    char *m = metrics_with(f, "vigil_self_running{host=\"h1\",stage=\"bus\"}");
    assert_non_null(m);
    if (!strstr(m, "vigil_self_running{host=\"h1\",stage=\"bus\"} 1\n")) {
        fail_msg("the first report says the bus is not running:\n%s", m);
    }
    free(m);
    assert_true(healthz_is(f->port, 200, "{\"status\":\"ok\"}", 15));
    assert_true(healthz_is(blind, 503, "is vigil.self in this sink's match?", 15));

    /* The capture sink fails: after 2 s (and the next report) it is named.
     * Then its write() hangs: its thread stops turning. */
    static const struct {
        const char *flag, *says;
    } faults[] = {
        {"fail", "sink test_capture/cap has been failing for"},
        {"block", "sink test_capture/cap is not running"},
    };
    for (size_t i = 0; i < 2; i++) {
        FILE *flag = fopen(vd_path(&f->v, faults[i].flag), "w");
        assert_non_null(flag);
        fclose(flag);
        publish(f, "test.h", "v", (double)i, NULL);
        assert_true(healthz_is(f->port, 503, faults[i].says, 15));
        unlink(vd_path(&f->v, faults[i].flag));
        assert_true(healthz_is(f->port, 200, "ok", 15));
    }
    assert_true(wait_lines(vd_path(&f->v, "cap.jsonl"), "\"topic\":\"test.h\"", 2, 10));
}

/* Bad keys name FILE:LINE:COL; a port in use stops the start, not --check. */
static void test_config_errors(void **state)
{
    struct fx *f = *state;
    static const struct bad_conf cases[] = {
        /* Line 7 is the first of the body (the harness writes six). */
        {"sinks:\n  - plugin: prometheus\n    listen: 9464\n",
         ":9:13: ", "listen must be HOST:PORT"},
        {"sinks:\n  - plugin: prometheus\n    listen: '::1:9464'\n",
         ":9:13: ", "listen must be HOST:PORT"},
        {"sinks:\n  - plugin: prometheus\n    max_series: 0\n",
         ":9:17: ", "max_series must be at least 1"},
        {"sinks:\n  - plugin: prometheus\n    expire: 100ms\n",
         ":9:13: ", "expire must be at least 1s"},
    };
    assert_true(vd_check_refuses_all(&f->v, cases, sizeof cases / sizeof cases[0]));

    /* Someone holds the port. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    char body[256];
    snprintf(body, sizeof body, "sinks:\n  - plugin: prometheus\n    listen: 127.0.0.1:%d\n",
             ntohs(a.sin_port));
    vd_cleanup(&f->v);
    assert_int_equal(vd_setup(&f->v, "1s", body), 0);
    char *const check[] = {VIGIL_BUILD_DIR "/vigild", "--check", "-c", f->v.cfg, NULL};
    char *out = NULL, *err = NULL;
    int rc = run(check, NULL, 0, &out, &err, 30);
    if (rc != 0) {
        fail_msg("--check with the port in use: exit %d: %s", rc, err);
    }
    free(out);
    free(err);
    assert_int_equal(vd_start(&f->v), -1);
    char *log = slurp(f->v.log);
    assert_non_null(log);
    if (!strstr(log, ":9:13: ") || !strstr(log, "cannot listen on 127.0.0.1:")) {
        fail_msg("vigild said: %s", log);
    }
    free(log);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exposition, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prometheus_scrapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire_and_max_series, setup, teardown),
        cmocka_unit_test_setup_teardown(test_healthz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* vigil-bench selftest: what the bench itself can do, without vigild, so a
 * figure of the daemon is never the bench's limit in disguise:
 *  1. the producers into a bare ZeroMQ PULL socket of our own (one thread
 *     that receives and counts, checking each producer's seq order);
 *  2. the tail reader over a file of JSON lines in the sink's exact shape
 *     (rendered with vigil_json_event, as the sinks do), from the page cache;
 *  3. what one thread waking another costs here (two threads passing a token
 *     through two eventfds), on two CPUs and on one: vigild's stages hand
 *     every burst of events across threads, so at moderate rates this, not
 *     the per-event work, is most of its CPU.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "../tool.h"
#include "bench.h"
#include "config.h"
#include "log.h"

struct pull_counter {
    void *sock;
    atomic_bool stop;
    uint64_t msgs, bad, out_of_order;
    uint64_t last_seq[BENCH_MAX_PRODUCERS];
    pthread_t thread;
};

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

/* Counts messages; reads source and seq at the offsets the templates put
 * them (the body is ours), to check order without decoding. */
static void *pull_main(void *arg)
{
    struct pull_counter *c = arg;
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    static const char key_src[] = "\xa6source\xa7" BENCH_SOURCE_PREFIX;
    static const char key_seq[] = "\xa3seq\xcf";
    while (!atomic_load(&c->stop)) {
        if (zmq_msg_recv(&topic, c->sock, 0) < 0) {
            continue; /* EAGAIN on the receive timeout: look at stop */
        }
        if (!zmq_msg_more(&topic) || zmq_msg_recv(&body, c->sock, 0) < 0) {
            c->bad++;
            continue;
        }
        const char *b = zmq_msg_data(&body);
        size_t n = zmq_msg_size(&body);
        const char *s = memmem(b, n, key_src, sizeof key_src - 1);
        const char *q = memmem(b, n, key_seq, sizeof key_seq - 1);
        if (!s || !q || q + sizeof key_seq - 1 + 8 > b + n) {
            c->bad++;
            continue;
        }
        unsigned idx = (unsigned)(s[sizeof key_src - 1] - '0');
        if (s[sizeof key_src] >= '0' && s[sizeof key_src] <= '9') {
            idx = idx * 10 + (unsigned)(s[sizeof key_src] - '0');
        }
        uint64_t seq = be64((const unsigned char *)q + sizeof key_seq - 1);
        if (idx < BENCH_MAX_PRODUCERS) {
            if (seq != c->last_seq[idx] + 1) {
                c->out_of_order++;
            }
            c->last_seq[idx] = seq;
        }
        c->msgs++;
    }
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    return NULL;
}

static int producers_alone(int producers, uint64_t duration_ns, bool tcp, int io_threads, bool json)
{
    char dir[] = "/tmp/vigil-bench-self.XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "vigil-bench: mkdtemp: %s\n", strerror(errno));
        return 3;
    }
    struct bench_producers *ps = calloc(1, sizeof *ps);
    struct pull_counter *c = calloc(1, sizeof *c);
    int rc = 3;
    char endpoint[PATH_MAX];
    if (!ps || !c || bench_producers_init(ps, producers, "selftest") != 0) {
        goto out;
    }
    ps->zctx = zmq_ctx_new();
    zmq_ctx_set(ps->zctx, ZMQ_IO_THREADS, io_threads);
    c->sock = zmq_socket(ps->zctx, ZMQ_PULL);
    int timeout = 100, hwm = 10000, linger = 0;
    zmq_setsockopt(c->sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(c->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (tcp) {
        if (zmq_bind(c->sock, "tcp://127.0.0.1:*") != 0) {
            goto out;
        }
        size_t len = sizeof endpoint;
        zmq_getsockopt(c->sock, ZMQ_LAST_ENDPOINT, endpoint, &len);
    } else {
        snprintf(endpoint, sizeof endpoint, "ipc://%s/pull", dir);
        if (zmq_bind(c->sock, endpoint) != 0) {
            goto out;
        }
    }
    pthread_create(&c->thread, NULL, pull_main, c);
    uint64_t warm = 500000000ull;
    ps->endpoint = endpoint;
    ps->rate = 0;
    ps->t0 = vigil_mono_ns() + 100000000ull;
    uint64_t rmm = vigil_now_ns() - vigil_mono_ns();
    ps->win_start_real = ps->t0 + warm + rmm;
    ps->win_end_real = ps->win_start_real + duration_ns;
    if (bench_producers_start(ps) != 0) {
        atomic_store(&c->stop, true);
        pthread_join(c->thread, NULL);
        goto out;
    }
    bench_producers_join(ps);
    uint64_t sent = 0, measured = 0;
    for (int i = 0; i < producers; i++) {
        sent += ps->p[i].sent;
        measured += ps->p[i].sent - ps->p[i].warm_last;
    }
    /* Let the counter take what is queued. */
    uint64_t deadline = vigil_mono_ns() + 5000000000ull;
    while (c->msgs < sent && vigil_mono_ns() < deadline && !vigil_tool_stop) {
        bench_sleep_ns(10000000);
    }
    atomic_store(&c->stop, true);
    pthread_join(c->thread, NULL);
    double rate = (double)measured / ((double)duration_ns / 1e9);
    if (json) {
        printf("{\"producers\":%d,\"transport\":\"%s\",\"io_threads\":%d,"
               "\"events_per_s\":%.0f,\"sent\":%llu,\"received\":%llu,\"out_of_order\":%llu,"
               "\"bad\":%llu}",
               producers, tcp ? "tcp" : "ipc", io_threads, rate, (unsigned long long)sent,
               (unsigned long long)c->msgs, (unsigned long long)c->out_of_order,
               (unsigned long long)c->bad);
    } else {
        printf("producers -> bare PULL: %d producer%s over %s, %d I/O thread%s: %.0f events/s "
               "(%llu sent, %llu received, %llu out of order, %llu malformed)\n",
               producers, producers == 1 ? "" : "s", tcp ? "tcp" : "ipc", io_threads,
               io_threads == 1 ? "" : "s", rate, (unsigned long long)sent,
               (unsigned long long)c->msgs, (unsigned long long)c->out_of_order,
               (unsigned long long)c->bad);
    }
    rc = c->msgs == sent && !c->out_of_order && !c->bad ? 0 : 1;
out:
    if (c && c->sock) {
        zmq_close(c->sock);
    }
    if (ps) {
        bench_producers_fini(ps);
    }
    free(ps);
    free(c);
    bench_rmtree(dir);
    return rc;
}

static int reader_alone(uint64_t lines, bool json)
{
    char dir[] = "/tmp/vigil-bench-self.XXXXXX";
    if (!mkdtemp(dir)) {
        return 3;
    }
    struct bench_producers *ps = calloc(1, sizeof *ps);
    struct bench_tail *t = calloc(1, sizeof *t);
    int rc = 3;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    FILE *f = NULL;
    if (!ps || !t || bench_producers_init(ps, 2, "selftest-host") != 0 || !(f = fopen(path, "w"))) {
        goto out;
    }
    char buf[4096];
    uint64_t ts0 = vigil_now_ns();
    for (uint64_t i = 0; i < lines; i++) {
        struct bench_producer *p = &ps->p[i % 2];
        uint64_t seq = i / 2 + 1;
        unsigned tm = bench_producer_fill(p, seq, ts0 + i);
        size_t n = bench_producer_json(p, tm, buf, sizeof buf - 1);
        buf[n] = '\n';
        fwrite(buf, 1, n + 1, f);
    }
    if (fclose(f) != 0) {
        f = NULL;
        goto out;
    }
    f = NULL;
    snprintf(t->path, sizeof t->path, "%s", path);
    t->nproducers = 2;
    t->win_start_real = 0;
    t->win_end_real = UINT64_MAX;
    atomic_store(&t->stop, true); /* read to the end once, then return */
    uint64_t start = vigil_mono_ns();
    if (bench_tail_start(t) != 0) {
        goto out;
    }
    bench_tail_stop(t);
    double secs = (double)(vigil_mono_ns() - start) / 1e9;
    uint64_t got = atomic_load(&t->distinct);
    if (json) {
        printf("{\"lines\":%llu,\"lines_per_s\":%.0f,\"mb_per_s\":%.1f,"
               "\"distinct\":%llu,\"bad_lines\":%llu}",
               (unsigned long long)lines, (double)lines / secs, (double)t->bytes / secs / 1e6,
               (unsigned long long)got, (unsigned long long)t->bad_lines);
    } else {
        printf("tail reader alone: %llu lines (%.0f MB) in %.3f s: %.0f lines/s, %.0f MB/s "
               "(%llu distinct, %llu unparsable)%s\n",
               (unsigned long long)lines, (double)t->bytes / 1e6, secs, (double)lines / secs,
               (double)t->bytes / secs / 1e6, (unsigned long long)got,
               (unsigned long long)t->bad_lines, t->err[0] ? t->err : "");
    }
    rc = got == lines && !t->bad_lines ? 0 : 1;
out:
    if (f) {
        fclose(f);
    }
    if (ps) {
        bench_producers_fini(ps);
    }
    if (t) {
        bench_tail_fini(t);
    }
    free(ps);
    free(t);
    bench_rmtree(dir);
    return rc;
}

struct pingpong {
    int to_peer, to_main;
    unsigned rounds;
};

static void *pong_main(void *arg)
{
    struct pingpong *pp = arg;
    uint64_t v;
    for (unsigned i = 0; i < pp->rounds; i++) {
        if (read(pp->to_peer, &v, sizeof v) != sizeof v) {
            break;
        }
        v = 1;
        if (write(pp->to_main, &v, sizeof v) != sizeof v) {
            break;
        }
    }
    return NULL;
}

static uint64_t process_cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Blocking token passes between two threads: each round is two wake-ups.
 * With one_cpu, both run on the CPU this thread is on now (what a wake-up
 * costs without another CPU being woken). 0 on success. */
static int wakeup_cost(bool one_cpu, double *cpu_us, double *wall_us)
{
    struct pingpong pp = {.rounds = 20000};
    pp.to_peer = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE); /* one read per write */
    pp.to_main = eventfd(0, EFD_CLOEXEC);
    cpu_set_t old, one;
    bool pinned = false;
    int rc = -1;
    if (pp.to_peer < 0 || pp.to_main < 0) {
        goto out;
    }
    if (one_cpu) {
        int cpu = sched_getcpu();
        if (cpu < 0 || sched_getaffinity(0, sizeof old, &old) != 0) {
            goto out;
        }
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (sched_setaffinity(0, sizeof one, &one) != 0) {
            goto out;
        }
        pinned = true; /* the peer inherits it */
    }
    pthread_t t;
    if (pthread_create(&t, NULL, pong_main, &pp) != 0) {
        goto out;
    }
    uint64_t c0 = process_cpu_ns(), w0 = vigil_mono_ns();
    unsigned i;
    for (i = 0; i < pp.rounds; i++) {
        uint64_t v = 1;
        if (write(pp.to_peer, &v, sizeof v) != sizeof v ||
            read(pp.to_main, &v, sizeof v) != sizeof v) {
            break;
        }
    }
    uint64_t c1 = process_cpu_ns(), w1 = vigil_mono_ns();
    if (i < pp.rounds) {
        uint64_t v = pp.rounds; /* lets the peer finish its reads (a semaphore) */
        (void)!write(pp.to_peer, &v, sizeof v);
    }
    pthread_join(t, NULL);
    if (i == pp.rounds) {
        *cpu_us = (double)(c1 - c0) / 1e3 / (2.0 * pp.rounds);
        *wall_us = (double)(w1 - w0) / 1e3 / (2.0 * pp.rounds);
        rc = 0;
    }
out:
    if (pinned) {
        sched_setaffinity(0, sizeof old, &old);
    }
    if (pp.to_peer >= 0) {
        close(pp.to_peer);
    }
    if (pp.to_main >= 0) {
        close(pp.to_main);
    }
    return rc;
}

static int wakeups(bool json)
{
    double cpu2 = 0, wall2 = 0, cpu1 = 0, wall1 = 0;
    if (wakeup_cost(false, &cpu2, &wall2) != 0 || wakeup_cost(true, &cpu1, &wall1) != 0) {
        fprintf(stderr, "vigil-bench selftest: the wake-up probe could not run: %s\n",
                strerror(errno));
        return 3;
    }
    if (json) {
        printf("{\"cpu_us\":%.2f,\"wall_us\":%.2f,\"one_cpu_cpu_us\":%.2f,"
               "\"one_cpu_wall_us\":%.2f}",
               cpu2, wall2, cpu1, wall1);
    } else {
        printf("one thread waking another (eventfd): %.1f us of CPU, %.1f us until it runs; "
               "both on one CPU: %.1f us, %.1f us\n",
               cpu2, wall2, cpu1, wall1);
    }
    return 0;
}

/* The reader's parser and the histogram on known input: odd hosts,
 * verdicts, foreign and broken lines, duplicates; quantiles within 0.5 %. */
static int known_answers(void)
{
    struct bench_tail *t = calloc(1, sizeof *t);
    struct bench_hist *h = calloc(1, sizeof *h);
    if (!t || !h) {
        free(t);
        free(h);
        return 3;
    }
    static const char *const lines[] = {
        ("{\"topic\":\"bench.metric\",\"ts\":1000,\"host\":\"a\\\"b\\\\\",\"source\":\"bench-0\","
         "\"seq\":1,\"labels\":{}}"),
        "{\"topic\":\"bench.metric\",\"ts\":1000,\"host\":\"h\",\"source\":\"bench-0\",\"seq\":2}",
        "{\"topic\":\"bench.metric\",\"ts\":1000,\"host\":\"h\",\"source\":\"bench-0\",\"seq\":2}",
        "{\"topic\":\"bench.metric\",\"ts\":5000,\"host\":\"h\",\"source\":\"bench-1\",\"seq\":1}",
        "{\"topic\":\"alert.fired\",\"ts\":1000,\"host\":\"h\",\"source\":\"rules\",\"seq\":7}",
        "{\"topic\":\"x\",\"ts\":1,\"host\":\"h\",\"source\":\"bench-9\",\"seq\":1}",
        "{\"topic\":\"x\",\"ts\":1,\"host\":\"h\",\"source\":\"other\",\"seq\":1}",
        "{\"topic\":\"bench.metric\",\"ts\":1000,\"host\":\"h\",\"source\":\"bench-0\"",
        "not json at all",
    };
    t->nproducers = 2;
    t->win_start_real = 0;
    t->win_end_real = 2000;
    bench_hist_init(&t->lat);
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        bench_tail_line(t, lines[i], strlen(lines[i]), 1500, 1);
    }
    bool ok = atomic_load(&t->distinct) == 3 && t->duplicated == 1 && t->verdicts == 1 &&
              t->other_lines == 2 && t->bad_lines == 2 && t->measured == 2 && t->lat.count == 2 &&
              t->lat.min == 500 && t->lat.max == 500;
    bench_hist_init(h);
    for (uint64_t v = 1; v <= 1000000; v++) {
        bench_hist_add(h, v * 997 % 1000000 + 1); /* 1..1000000, shuffled */
    }
    static const double qs[] = {0.5, 0.95, 0.99, 0.999};
    for (size_t i = 0; i < 4; i++) {
        double want = qs[i] * 1e6, got = (double)bench_hist_quantile(h, qs[i]);
        ok &= got > want * 0.995 && got < want * 1.005;
    }
    ok &= h->min == 1 && h->max == 1000000 && bench_hist_mean(h) > 500000 &&
          bench_hist_mean(h) < 500001;
    printf("parser and histogram on known input: %s\n", ok ? "ok" : "WRONG");
    bench_tail_fini(t);
    free(t);
    free(h);
    return ok ? 0 : 1;
}

int bench_selftest_main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"duration", required_argument, NULL, 'd'},
        {"producers", required_argument, NULL, 'p'},
        {"transport", required_argument, NULL, 't'},
        {"io-threads", required_argument, NULL, 'I'},
        {"lines", required_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t duration_ns = 5000000000ull, lines = 2000000;
    int producers = 2, io_threads = 1;
    bool tcp = false, json = false;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "d:p:t:n:jh", lo, NULL)) != -1) {
        switch (c) {
        case 'd':
            if (vigil_parse_duration(optarg, &duration_ns) != 0 || duration_ns < 100000000ull) {
                fprintf(stderr, "vigil-bench selftest: --duration wants e.g. 5s\n");
                return 2;
            }
            break;
        case 'p':
            producers = (int)strtol(optarg, &end, 10);
            if (*end || producers < 1 || producers > BENCH_MAX_PRODUCERS) {
                fprintf(stderr, "vigil-bench selftest: --producers 1..%d\n", BENCH_MAX_PRODUCERS);
                return 2;
            }
            break;
        case 't':
            tcp = strcmp(optarg, "tcp") == 0;
            if (!tcp && strcmp(optarg, "ipc") != 0) {
                fprintf(stderr, "vigil-bench selftest: --transport is ipc or tcp\n");
                return 2;
            }
            break;
        case 'I':
            io_threads = (int)strtol(optarg, &end, 10);
            if (*end || io_threads < 1 || io_threads > 16) {
                fprintf(stderr, "vigil-bench selftest: --io-threads 1..16\n");
                return 2;
            }
            break;
        case 'n':
            lines = strtoull(optarg, &end, 10);
            if (*end || lines < 1 || lines > 100000000) {
                fprintf(stderr, "vigil-bench selftest: --lines 1..100000000\n");
                return 2;
            }
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            printf("usage: vigil-bench selftest [-d DURATION] [-p PRODUCERS] [-t ipc|tcp]\n"
                   "                            [--io-threads N] [-n LINES] [--json]\n"
                   "The bench alone: producers into a bare ZeroMQ PULL for DURATION (default\n"
                   "5s), then the tail reader over LINES (default 2000000) JSON lines,\n"
                   "then the CPU and time one thread takes to wake another.\n");
            return 0;
        default:
            return 2;
        }
    }
    if (!json && known_answers() != 0) {
        return 1;
    }
    /* In JSON, a part that could not run is null. */
    if (json) {
        printf("{\"producers_alone\":");
        fflush(stdout);
    }
    int a = producers_alone(producers, duration_ns, tcp, io_threads, json);
    if (json) {
        printf("%s,\"reader_alone\":", a == 3 ? "null" : "");
        fflush(stdout);
    }
    int b = vigil_tool_stop ? 3 : reader_alone(lines, json);
    if (json) {
        printf("%s,\"wakeup\":", b == 3 ? "null" : "");
        fflush(stdout);
    }
    int w = vigil_tool_stop ? 3 : wakeups(json);
    if (json) {
        printf("%s}\n", w == 3 ? "null" : "");
    }
    int rc = a > b ? a : b;
    return rc > w ? rc : w;
}

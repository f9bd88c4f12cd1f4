/* vigil-bench: end-to-end throughput, loss and latency of vigild —
 * producers -> bus -> rules -> a sink — measured from outside, plus the cost
 * of a cgroups/kvm/net collection (`collect`) and of the bench itself
 * (`selftest`). It starts its own vigild from the build tree (or attaches to
 * a running one with -c) and reports human-readable text or one JSON object.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "bench/bench.h"
#include "config.h"
#include "log.h"
#include "tool.h"

#define QUIET_NS 2000000000ull /* drain: no progress this long = done */
/* --forward: longer than the forward sink's ack timeout plus a retry's
 * backoff, so that a stalled hop shows as a long gap, not as loss. */
#define QUIET_FORWARD_NS 12000000000ull
#define SETTLE_NS 300000000ull  /* drain: complete and quiet this long = done */
#define CONNECT_NS 300000000ull /* between starting producers and t0 */
#define SELF_INTERVAL "100ms"   /* our vigild's vigil.self period */

struct opts {
    uint64_t duration_ns, warmup_ns, drain_ns;
    double rate;
    int producers, rules, io_threads;
    int batch;        /* events per producer message (--batch) */
    int bus_hwm;      /* --bus-hwm; 0: vigild's default */
    uint64_t tick_ns; /* --tick: a paced producer's wake-up period */
    enum bench_sink sink;
    bool tcp, json, keep, probe;
    bool forward, curve;      /* producers -> agent vigild -> forward sink -> central vigild */
    int forward_batch;        /* the forward sink's batch.max_events; 0: its default */
    uint64_t reload_every_ns; /* --reload-every; 0: none */
    const char *config, *fsync_mode, *coalesce;
    pid_t pid;
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: vigil-bench [options]            producers -> vigild -> sink, measured\n"
        "       vigil-bench collect [options]    cost of a cgroups / kvm / net collection\n"
        "       vigil-bench selftest [options]   the bench alone (producers, reader)\n"
        "  -d, --duration D      measured time (default 10s)\n"
        "  -w, --warmup D        published before, not counted in rates (default 2s)\n"
        "  -r, --rate N          events/s over all producers; 0 = flat out (default 0)\n"
        "  -p, --producers N     producer threads, one PUSH socket each (default 2)\n"
        "  -b, --batch N         events per producer message: above 1, the producers' batch\n"
        "                        format (docs/events.md) (default 1: one event each)\n"
        "      --tick D          with -r: a producer wakes this often (10us to 1s) and\n"
        "                        sends what is due, with -b in batches of up to N: 10ms,\n"
        "                        an agent handing on what it collects (default 200us)\n"
        "  -k, --rules K         rules: thresholds, bounds, policies (default 10)\n"
        "  -s, --sink S          file (the file sink plugin), capture (tests' test_capture)\n"
        "                        or discard (no I/O; counts from vigil.self) (default file)\n"
        "  -t, --transport T     ipc or tcp (loopback) (default ipc)\n"
        "      --fsync M         the file sink's fsync: never, batch, always (default never)\n"
        "      --drain D         longest wait for the sink to catch up (default 60s;\n"
        "                        --forward: 600s)\n"
        "      --io-threads N    the bench's ZeroMQ I/O threads (default 1)\n"
        "      --bus-hwm N       bus.hwm of the vigild the producers publish to (default:\n"
        "                        vigild's; it counts a batch as one message)\n"
        "      --coalesce D      bus.coalesce of the vigild it starts (default: vigild's,\n"
        "                        300us)\n"
        "  -c, --config FILE     use the running vigild of this config (its endpoints and\n"
        "                        its first sink of the chosen plugin)\n"
        "      --pid PID         ... and this pid for CPU and RSS (default: found from the\n"
        "                        socket listening on bus.publish)\n"
        "      --keep            keep the temp folder (config, vigild log, sink file)\n"
        "      --probe           also time the events at the bus's output (a SUB socket):\n"
        "                        the latency up to the bus, apart from the rest\n"
        "      --forward         a fleet: producers -> an agent vigild (no rules, a forward\n"
        "                        sink) -> tcp loopback -> a central vigild (bus.ingest, the\n"
        "                        rules, the sink); CPU and RSS of each\n"
        "      --curve           --forward with CURVE on the hop (keys by vigil-keygen)\n"
        "      --forward-batch N the forward sink's batch.max_events (default: the sink's)\n"
        "      --reload-every D  rewrite the config and SIGHUP vigild every D while publishing\n"
        "                        (each reload replaces a rule and the sink); report each\n"
        "                        reload's pause until the new rules judge\n"
        "  -j, --json            one JSON object instead of text\n"
        "Exit status: 0 measured, nothing lost; 1 measured, events lost or duplicated;\n"
        "2 usage; 3 could not run.\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"rate", required_argument, NULL, 'r'},
        {"producers", required_argument, NULL, 'p'},
        {"batch", required_argument, NULL, 'b'},
        {"rules", required_argument, NULL, 'k'},
        {"sink", required_argument, NULL, 's'},
        {"transport", required_argument, NULL, 't'},
        {"fsync", required_argument, NULL, 'F'},
        {"drain", required_argument, NULL, 'D'},
        {"io-threads", required_argument, NULL, 'I'},
        {"config", required_argument, NULL, 'c'},
        {"pid", required_argument, NULL, 'P'},
        {"keep", no_argument, NULL, 'K'},
        {"json", no_argument, NULL, 'j'},
        {"probe", no_argument, NULL, 'B'},
        {"coalesce", required_argument, NULL, 'C'},
        {"bus-hwm", required_argument, NULL, 'H'},
        {"forward", no_argument, NULL, 'W'},
        {"curve", no_argument, NULL, 'V'},
        {"forward-batch", required_argument, NULL, 'X'},
        {"reload-every", required_argument, NULL, 'L'},
        {"tick", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.duration_ns = 10000000000ull,
                       .warmup_ns = 2000000000ull,
                       .drain_ns = 60000000000ull,
                       .producers = 2,
                       .batch = 1,
                       .tick_ns = BENCH_PACE_TICK_NS,
                       .rules = 10,
                       .io_threads = 1,
                       .fsync_mode = "never"};
    int c;
    char *end;
    bool drain_set = false;
    while ((c = getopt_long(argc, argv, "d:w:r:p:b:k:s:t:c:jh", lo, NULL)) != -1) {
        switch (c) {
        case 'd':
        case 'w':
        case 'D': {
            uint64_t ns;
            if (vigil_parse_duration(optarg, &ns) != 0 || (c == 'd' && ns < 100000000ull)) {
                fprintf(stderr, "vigil-bench: '%s' is not a duration such as 30s or 500ms%s\n",
                        optarg, c == 'd' ? " (at least 100ms)" : "");
                return 2;
            }
            *(c == 'd' ? &o->duration_ns : c == 'w' ? &o->warmup_ns : &o->drain_ns) = ns;
            drain_set = drain_set || c == 'D';
            break;
        }
        case 'r':
            o->rate = strtod(optarg, &end);
            if (*end || o->rate < 0 || o->rate > 1e9) {
                fprintf(stderr, "vigil-bench: --rate wants events/s (0 = flat out)\n");
                return 2;
            }
            break;
        case 'H':
            o->bus_hwm = (int)strtol(optarg, &end, 10);
            if (*end || o->bus_hwm < 1 || o->bus_hwm > 1000000) {
                fprintf(stderr, "vigil-bench: --bus-hwm wants a number from 1 to 1000000\n");
                return 2;
            }
            break;
        case 'p':
        case 'b':
        case 'k':
        case 'I': {
            long v = strtol(optarg, &end, 10);
            long lo_ = c == 'k' ? 0 : 1;
            long hi = c == 'p' ? BENCH_MAX_PRODUCERS : c == 'k' ? 1000 : c == 'b' ? 4096 : 16;
            if (*end || v < lo_ || v > hi) {
                fprintf(stderr, "vigil-bench: -%c wants a number from %ld to %ld\n", c, lo_, hi);
                return 2;
            }
            *(c == 'p'   ? &o->producers
              : c == 'b' ? &o->batch
              : c == 'k' ? &o->rules
                         : &o->io_threads) = (int)v;
            break;
        }
        case 's':
            if (strcmp(optarg, "file") == 0) {
                o->sink = BENCH_SINK_FILE;
            } else if (strcmp(optarg, "capture") == 0) {
                o->sink = BENCH_SINK_CAPTURE;
            } else if (strcmp(optarg, "discard") == 0) {
                o->sink = BENCH_SINK_DISCARD;
            } else {
                fprintf(stderr, "vigil-bench: --sink is file, capture or discard\n");
                return 2;
            }
            break;
        case 't':
            if (strcmp(optarg, "ipc") != 0 && strcmp(optarg, "tcp") != 0) {
                fprintf(stderr, "vigil-bench: --transport is ipc or tcp\n");
                return 2;
            }
            o->tcp = strcmp(optarg, "tcp") == 0;
            break;
        case 'F':
            if (strcmp(optarg, "never") != 0 && strcmp(optarg, "batch") != 0 &&
                strcmp(optarg, "always") != 0) {
                fprintf(stderr, "vigil-bench: --fsync is never, batch or always\n");
                return 2;
            }
            o->fsync_mode = optarg;
            break;
        case 'c':
            o->config = optarg;
            break;
        case 'C': {
            uint64_t ns;
            if (vigil_parse_duration(optarg, &ns) != 0 || ns > 10000000u || strlen(optarg) > 30) {
                fprintf(stderr, "vigil-bench: --coalesce wants a duration from 0s to 10ms\n");
                return 2;
            }
            o->coalesce = optarg;
            break;
        }
        case 'T':
            if (vigil_parse_duration(optarg, &o->tick_ns) != 0 || o->tick_ns < 10000u ||
                o->tick_ns > 1000000000u) {
                fprintf(stderr, "vigil-bench: --tick wants a duration from 10us to 1s\n");
                return 2;
            }
            break;
        case 'P':
            o->pid = (pid_t)strtol(optarg, &end, 10);
            if (*end || o->pid <= 0) {
                fprintf(stderr, "vigil-bench: --pid wants a process id\n");
                return 2;
            }
            break;
        case 'K':
            o->keep = true;
            break;
        case 'B':
            o->probe = true;
            break;
        case 'W':
            o->forward = true;
            break;
        case 'V':
            o->forward = o->curve = true;
            break;
        case 'X': {
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 65536) {
                fprintf(stderr, "vigil-bench: --forward-batch wants a number from 1 to 65536\n");
                return 2;
            }
            o->forward_batch = (int)v;
            o->forward = true;
            break;
        }
        case 'L':
            if (vigil_parse_duration(optarg, &o->reload_every_ns) != 0 ||
                o->reload_every_ns < 100000000ull) {
                fprintf(stderr, "vigil-bench: --reload-every wants a duration of 100ms or more\n");
                return 2;
            }
            break;
        case 'j':
            o->json = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (o->bus_hwm && o->config) {
        fprintf(stderr, "vigil-bench: --bus-hwm is for the vigild it starts, not with -c\n");
        return 2;
    }
    if (o->coalesce && o->config) {
        fprintf(stderr, "vigil-bench: --coalesce is for the vigild it starts, not with -c\n");
        return 2;
    }
    if (o->forward && !drain_set) {
        /* Flat out the agent takes events faster than it forwards them and
         * keeps the rest in its spool: the drain is most of the run. */
        o->drain_ns = 600000000000ull;
    }
    if (o->reload_every_ns && (o->config || o->forward)) {
        fprintf(stderr, "vigil-bench: --reload-every reloads the one vigild it starts: not with "
                        "-c or --forward\n");
        return 2;
    }
    if (o->forward && o->config) {
        fprintf(stderr, "vigil-bench: --forward starts its own two daemons, not with -c\n");
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "vigil-bench: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return 0;
}

/* --bus-hwm: one more line under `bus:` of a vigild it starts. */
static void add_bus_hwm(struct bench_vigild *v, int hwm)
{
    size_t n = strlen(v->bus_extra);
    snprintf(v->bus_extra + n, sizeof v->bus_extra - n, "  hwm: %d\n", hwm);
}

static const char *sink_plugin(enum bench_sink s)
{
    return s == BENCH_SINK_FILE ? "file" : s == BENCH_SINK_CAPTURE ? "test_capture" : "discard";
}

/* --reload-every: generation `gen` of the config has a rule of its own,
 * firing at the first event it judges (the reload's pause ends there), and
 * its sink's batch.max_events differs from the last generation's, so that
 * every reload replaces the sink too (a handover under load). */
static char *pipeline_yaml_gen(const struct opts *o, const struct bench_vigild *v, unsigned gen)
{
    char *rules = o->rules ? bench_rules_yaml(o->rules) : strdup("");
    if (!rules) {
        return NULL;
    }
    size_t cap = strlen(rules) + 2 * PATH_MAX + 1024;
    char *y = malloc(cap);
    if (y) {
        int n = snprintf(y, cap, "%s", rules);
        if (o->reload_every_ns) {
            n += snprintf(y + n, cap - (size_t)n,
                          "%s  - name: reload-%u\n    kind: threshold\n    match: bench.\n"
                          "    expr: values.cpu_pct >= 0\n    group_by: []\n",
                          o->rules ? "" : "rules:\n", gen);
        }
        n += snprintf(y + n, cap - (size_t)n, "sinks:\n  - plugin: %s\n    name: bench\n",
                      sink_plugin(o->sink));
        if (o->reload_every_ns) {
            n +=
                snprintf(y + n, cap - (size_t)n, "    batch: { max_events: %u }\n", 1024 - gen % 2);
        }
        switch (o->sink) {
        case BENCH_SINK_FILE:
            snprintf(y + n, cap - (size_t)n,
                     "    match: [bench., alert.]\n    path: %s/events.jsonl\n    format: json\n"
                     "    fsync: %s\n    rotate: { size: 0 }\n",
                     v->dir, o->fsync_mode);
            break;
        case BENCH_SINK_CAPTURE:
            snprintf(y + n, cap - (size_t)n,
                     "    match: [bench., alert.]\n    path: %s/events.jsonl\n", v->dir);
            break;
        case BENCH_SINK_DISCARD:
            /* Only the bench's events, so that its delivered count is theirs. */
            snprintf(y + n, cap - (size_t)n, "    match: [bench.]\n");
            break;
        }
    }
    free(rules);
    return y;
}

static char *pipeline_yaml(const struct opts *o, const struct bench_vigild *v)
{
    return pipeline_yaml_gen(o, v, 0);
}

struct reload_arg {
    const struct opts *o;
    const struct bench_vigild *v;
};

static char *reload_body(void *arg, unsigned gen)
{
    struct reload_arg *a = arg;
    return pipeline_yaml_gen(a->o, a->v, gen);
}

/* ---- A fleet (--forward) ---------------------------------------------------------------- */

/* Runs the built vigil-keygen DIR, its output into `log`. Returns 0 or -1. */
static int keygen(const char *dir, const char *log)
{
    char prog[PATH_MAX];
    snprintf(prog, sizeof prog, "%s/vigil-keygen", bench_build_dir());
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(prog, "vigil-keygen", dir, (char *)NULL);
        fprintf(stderr, "vigil-bench: cannot run %s: %s\n", prog, strerror(errno));
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "vigil-bench: %s %s failed (see %s)\n", prog, dir, log);
        return -1;
    }
    return 0;
}

/* The central's bus lines: ingest on a free loopback port and, with
 * --curve, keypairs for the central and the agent and an authorized_keys
 * that lists the agent, all in the central's temp folder. The central's
 * publish and subscribe stay ipc, so that the bench's monitor and reader
 * need no keys. Sets *port. Returns 0 or -1 after printing why. */
static int central_bus(const struct opts *o, struct bench_vigild *v, int *port)
{
    *port = bench_free_tcp_port();
    if (*port < 0) {
        fprintf(stderr, "vigil-bench: cannot find a free loopback port\n");
        return -1;
    }
    int n = snprintf(v->bus_extra, sizeof v->bus_extra, "  ingest: tcp://127.0.0.1:%d\n", *port);
    if (!o->curve) {
        return 0;
    }
    char dir[PATH_MAX], ak[PATH_MAX], pub[64] = "";
    snprintf(dir, sizeof dir, "%s/keys", v->dir);
    if (mkdir(dir, 0700) != 0) {
        fprintf(stderr, "vigil-bench: cannot make %s: %s\n", dir, strerror(errno));
        return -1;
    }
    snprintf(dir, sizeof dir, "%s/keys/central", v->dir);
    char adir[PATH_MAX];
    snprintf(adir, sizeof adir, "%s/keys/agent", v->dir);
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/keygen.log", v->dir);
    if (keygen(dir, log) != 0 || keygen(adir, log) != 0) {
        return -1;
    }
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/vigil.pub", adir);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(pub, sizeof pub, f) || strlen(pub) < 40) {
        fprintf(stderr, "vigil-bench: cannot read %s\n", path);
        if (f) {
            fclose(f);
        }
        return -1;
    }
    fclose(f);
    snprintf(ak, sizeof ak, "%s/keys/authorized_keys", v->dir);
    char line[128];
    snprintf(line, sizeof line, "%.40s bench-agent\n", pub);
    if (bench_write_file(ak, line) != 0) {
        fprintf(stderr, "vigil-bench: cannot write %s\n", ak);
        return -1;
    }
    snprintf(v->bus_extra + n, sizeof v->bus_extra - (size_t)n,
             "  curve: {secret_key: %s/vigil.key, authorized_keys: %s}\n", dir, ak);
    return 0;
}

/* The agent: no rules, one forward sink (the defaults an operator gets,
 * but for the spool's bound) that takes the bench's events to the central's
 * ingest. Flat out the producers outrun the hop: the sink host keeps the
 * backlog in its disk spool rather than holding back the bus, and a spool
 * that dropped its oldest events at the default bound would measure that
 * bound instead of the forwarding. */
static char *agent_yaml(const struct opts *o, const struct bench_vigild *central, int port)
{
    size_t cap = 3 * PATH_MAX + 512;
    char *y = malloc(cap);
    if (!y) {
        return NULL;
    }
    int n = snprintf(y, cap,
                     "sinks:\n  - plugin: forward\n    name: central\n    match: [bench.]\n"
                     "    endpoint: tcp://127.0.0.1:%d\n    spool: { max_size: 64GiB }\n",
                     port);
    if (o->forward_batch) {
        n += snprintf(y + n, cap - (size_t)n, "    batch: { max_events: %d }\n", o->forward_batch);
    }
    if (o->curve) {
        snprintf(y + n, cap - (size_t)n,
                 "    server_key: %s/keys/central/vigil.pub\n    key: %s/keys/agent/vigil.key\n",
                 central->dir, central->dir);
    }
    return y;
}

/* ---- The run ---------------------------------------------------------------------------- */

struct result {
    unsigned reloads, reloads_unseen; /* --reload-every */
    double reload_p50_ms, reload_max_ms;
    uint64_t published, measured_in, arrived, measured_out, lost, duplicated;
    bool dup_known, lat_known, drain_timed_out, interrupted;
    double in_per_s, out_per_s, out_span_s;
    uint64_t verdicts, judged;
    double verdict_fraction;
    double cpu_s, cpu_s_per_million;
    double drain_max_gap_s; /* the longest time without a new arrival while draining */
    uint64_t cpu_events;    /* the events the CPU figures are divided by */
    double bench_cpu_s;     /* the bench's own CPU over the same span */
    int64_t rss_peak, rss_now;
    uint64_t bad_lines, other_lines;
    int vigild_status;
    int producer_err;
    struct bench_self_counters self; /* vigil.self: what changed during the run */
    struct bench_threads threads;    /* vigild's CPU per thread name over the same span */
    /* --forward: the agent (the fields above are the central's). */
    double agent_cpu_s, agent_cpu_s_per_million;
    int64_t agent_rss_peak, agent_rss_now;
    int agent_status;
    struct bench_self_counters agent_self; /* its forward sink's counters */
    struct bench_threads agent_threads;
};

/* Waits until the sink has everything (or stops progressing, or the drain
 * bound). Returns the mono time of the last progress seen. */
static uint64_t wait_drain(const struct opts *o, struct bench_tail *t, struct bench_self *s,
                           const struct bench_self_counters *base, uint64_t self_interval_ns,
                           uint64_t published, uint64_t since, struct result *r)
{
    uint64_t last_count = UINT64_MAX, last_change = since;
    /* Without the file, progress is seen once per vigil.self period. */
    uint64_t quiet = o->forward ? QUIET_FORWARD_NS : QUIET_NS;
    quiet += t ? 0 : 2 * self_interval_ns;
    for (;;) {
        uint64_t count = 0;
        if (t) {
            count = atomic_load(&t->distinct);
            uint64_t ll = atomic_load(&t->last_line_mono);
            if (ll > last_change) {
                last_change = ll;
            }
        }
        /* Read after the reader's last line time: a line read in between
         * would put last_change ahead of now, and now - last_change would
         * wrap around to "quiet for ages" (a drain cut short while events
         * still arrive, which a long forwarding drain hits). */
        uint64_t now = vigil_mono_ns();
        if (last_change > now) {
            last_change = now;
        }
        struct bench_self_counters now_c = bench_self_get(s);
        struct bench_self_counters c = bench_self_since(&now_c, base);
        if (!t) {
            count = c.sink_out;
        }
        /* Complete also means the rules judged everything (our own
         * daemon, whose rules all match the bench's events), so that the
         * verdict counts are final. */
        bool rules_done = o->config || o->rules == 0 || c.rules_in >= published;
        if (count != last_count) {
            if (last_count != UINT64_MAX && !t) {
                last_change = now;
            }
            last_count = count;
        }
        if (count < published && now > last_change &&
            (double)(now - last_change) / 1e9 > r->drain_max_gap_s) {
            r->drain_max_gap_s = (double)(now - last_change) / 1e9;
        }
        if (count >= published && rules_done && now - last_change >= SETTLE_NS) {
            return last_change;
        }
        if (now - last_change >= quiet) {
            return last_change;
        }
        if (now - since >= o->drain_ns) {
            r->drain_timed_out = true;
            return last_change;
        }
        if (vigil_tool_stop) {
            r->interrupted = true;
            return last_change;
        }
        bench_sleep_ns(20000000);
    }
}

/* One latency line (µs), or n/a when h is NULL or empty. */
static void print_latency_text(const char *label, const struct bench_hist *h)
{
    if (!h || !h->count) {
        printf("  %s n/a\n", label);
        return;
    }
    printf("  %s min %.0f  mean %.0f  median %.0f  p95 %.0f  p99 %.0f  max %.0f  (%llu "
           "samples)\n",
           label, (double)h->min / 1e3, bench_hist_mean(h) / 1e3,
           (double)bench_hist_quantile(h, 0.5) / 1e3, (double)bench_hist_quantile(h, 0.95) / 1e3,
           (double)bench_hist_quantile(h, 0.99) / 1e3, (double)h->max / 1e3,
           (unsigned long long)h->count);
}

static void print_latency_json(const char *key, const struct bench_hist *h)
{
    if (!h || !h->count) {
        printf("\"%s\":null,", key);
        return;
    }
    printf("\"%s\":{\"min\":%.1f,\"mean\":%.1f,\"median\":%.1f,\"p95\":%.1f,\"p99\":%.1f,"
           "\"max\":%.1f,\"samples\":%llu},",
           key, (double)h->min / 1e3, bench_hist_mean(h) / 1e3,
           (double)bench_hist_quantile(h, 0.5) / 1e3, (double)bench_hist_quantile(h, 0.95) / 1e3,
           (double)bench_hist_quantile(h, 0.99) / 1e3, (double)h->max / 1e3,
           (unsigned long long)h->count);
}

/* "name 1.23 s (0.45 us/event), ..." per thread name, heaviest first. */
static void print_threads_text(const char *label, const struct bench_threads *th, uint64_t events)
{
    if (!th->n) {
        return;
    }
    printf("  %s", label);
    for (int i = 0; i < th->n; i++) {
        if (th->t[i].ticks == 0) {
            continue;
        }
        printf("%s%s %.2f s", i ? ", " : "", th->t[i].name, (double)th->t[i].ticks / 1e9);
        if (events) {
            printf(" (%.2f us/event)", (double)th->t[i].ticks / 1e3 / (double)events);
        }
    }
    printf("\n");
}

static void print_threads_json(const char *key, const struct bench_threads *th)
{
    printf("\"%s\":{", key);
    bool first = true;
    for (int i = 0; i < th->n; i++) {
        if (th->t[i].ticks == 0) {
            continue;
        }
        /* Thread names are ours and ZeroMQ's ("ZMQbg/IO/0"): no quotes or
         * backslashes to escape; anything else odd is dropped. */
        printf("%s\"", first ? "" : ",");
        for (const char *c = th->t[i].name; *c; c++) {
            if (*c >= 0x20 && *c != '"' && *c != '\\') {
                putchar(*c);
            }
        }
        printf("\":%.3f", (double)th->t[i].ticks / 1e9);
        first = false;
    }
    printf("},");
}

static void print_text(const struct opts *o, const struct result *r, struct bench_tail *t,
                       const struct bench_probe *p, const struct bench_vigild *v)
{
    char rules[32];
    snprintf(rules, sizeof rules, "%d rule%s", o->rules, o->rules == 1 ? "" : "s");
    printf("vigil-bench: %d producer%s over %s%s, %s, sink %s (plugin %s), %.1f s measured after "
           "%.1f s warm-up%s%s%s\n",
           o->producers, o->producers == 1 ? "" : "s", o->tcp ? "tcp" : "ipc",
           !o->forward ? ""
           : o->curve  ? " to an agent, forwarded over tcp with CURVE to a central"
                       : " to an agent, forwarded over tcp to a central",
           o->config ? "the daemon's rules" : rules,
           o->sink == BENCH_SINK_DISCARD ? "discard" : "file", sink_plugin(o->sink),
           (double)o->duration_ns / 1e9, (double)o->warmup_ns / 1e9,
           o->config ? " (attached to a running vigild)" : "", o->coalesce ? ", bus.coalesce " : "",
           o->coalesce ? o->coalesce : "");
    if (o->batch > 1) {
        printf("  batch         %d events per producer message\n", o->batch);
    }
    if (o->rate > 0 && o->tick_ns != BENCH_PACE_TICK_NS) {
        printf("  tick          %.0f us between a producer's sends\n", (double)o->tick_ns / 1e3);
    }
    if (o->rate > 0) {
        printf("  rate          %.0f events/s asked\n", o->rate);
    } else {
        printf("  rate          flat out\n");
    }
    printf("  events in     %.0f /s  (%llu published in the window, %llu in all)\n", r->in_per_s,
           (unsigned long long)r->measured_in, (unsigned long long)r->published);
    if (o->sink == BENCH_SINK_DISCARD) {
        printf("  events out    %.0f /s  (%llu delivered from the window's start to the last "
               "delivery, %.2f s; vigil.self every %.1f s)\n",
               r->out_per_s, (unsigned long long)r->measured_out, r->out_span_s,
               (double)v->self_interval_ns / 1e9);
    } else {
        printf("  events out    %.0f /s  (%llu of the window's events arrived, the last %.2f s "
               "after its start)\n",
               r->out_per_s, (unsigned long long)r->measured_out, r->out_span_s);
    }
    printf("  lost          %llu%s\n", (unsigned long long)r->lost,
           r->drain_timed_out ? "  (the drain timed out: still arriving?)" : "");
    if (r->dup_known) {
        printf("  duplicated    %llu\n", (unsigned long long)r->duplicated);
    } else {
        printf("  duplicated    n/a (discard sink)\n");
    }
    if (o->reload_every_ns) {
        printf("  reloads       %u, every %.1f s (each a new rule and a new sink); pause from "
               "SIGHUP to the new rules judging: p50 %.1f ms, max %.1f ms%s\n",
               r->reloads, (double)o->reload_every_ns / 1e9, r->reload_p50_ms, r->reload_max_ms,
               r->reloads_unseen ? " (SOME NEVER JUDGED, see below)" : "");
        if (r->reloads_unseen) {
            printf("  reloads       %u without a verdict of their rule within 5 s\n",
                   r->reloads_unseen);
        }
    }
    printf("  verdicts      %llu for %llu events judged (%.2f %%)\n",
           (unsigned long long)r->verdicts, (unsigned long long)r->judged,
           100.0 * r->verdict_fraction);
    print_latency_text("latency (us) ", r->lat_known ? &t->lat : NULL);
    if (o->probe) {
        print_latency_text("  to the bus  ", p ? &p->lat : NULL);
    }
    if (r->cpu_s >= 0) {
        printf("  %s   %.3f s per million events (%.2f s%s)\n",
               o->forward ? "central CPU" : "vigild CPU ", r->cpu_s_per_million, r->cpu_s,
               o->forward ? ", from the first event to the end of the drain, over all events" : "");
    } else {
        printf("  vigild CPU    n/a\n");
    }
    print_threads_text(o->forward ? "  central's threads: " : "  threads:  ", &r->threads,
                       r->cpu_events);
    if (o->forward) {
        if (r->agent_cpu_s >= 0) {
            printf("  agent CPU     %.3f s per million events (%.2f s)\n",
                   r->agent_cpu_s_per_million, r->agent_cpu_s);
        } else {
            printf("  agent CPU     n/a\n");
        }
        print_threads_text("  agent's threads:   ", &r->agent_threads, r->cpu_events);
    }
    printf("  bench CPU     %.3f s per million events (%.2f s: producers, reader, monitor)\n",
           r->cpu_events ? r->bench_cpu_s / ((double)r->cpu_events / 1e6) : 0.0, r->bench_cpu_s);
    if (r->rss_peak >= 0) {
        printf("  vigild RSS    peak %.1f MiB (now %.1f MiB)\n", (double)r->rss_peak / 1048576.0,
               (double)r->rss_now / 1048576.0);
    } else {
        printf("  vigild RSS    n/a\n");
    }
    if (o->forward && r->agent_rss_peak >= 0) {
        printf("  agent RSS     peak %.1f MiB (now %.1f MiB)\n",
               (double)r->agent_rss_peak / 1048576.0, (double)r->agent_rss_now / 1048576.0);
    }
    if (o->forward) {
        const struct bench_self_counters *ac = &r->agent_self;
        printf("  forward sink  delivered %llu, failed %llu, retried %llu, dropped %llu, spooled "
               "%llu%s\n",
               (unsigned long long)ac->sink_out, (unsigned long long)ac->sink_failed,
               (unsigned long long)ac->sink_retried, (unsigned long long)ac->sink_dropped,
               (unsigned long long)ac->sink_spooled, ac->sink_reports ? "" : " (no report)");
        printf("  drain         longest wait for the next arrival %.2f s\n", r->drain_max_gap_s);
    }
    const struct bench_self_counters *c = &r->self;
    printf("  vigil.self    bus malformed %llu, seq gaps %llu, dropped %llu; sink failed %llu, "
           "dropped %llu, retried %llu, spooled %llu%s\n",
           (unsigned long long)c->bus_malformed, (unsigned long long)c->bus_lost,
           (unsigned long long)c->bus_dropped, (unsigned long long)c->sink_failed,
           (unsigned long long)c->sink_dropped, (unsigned long long)c->sink_retried,
           (unsigned long long)c->sink_spooled, c->reports ? "" : " (no report received)");
    if (r->bad_lines || r->other_lines) {
        printf("  sink file     %llu unparsable lines, %llu lines of other sources\n",
               (unsigned long long)r->bad_lines, (unsigned long long)r->other_lines);
    }
    if (r->vigild_status > 0) {
        printf("  vigild exit   %d (see %s)\n", r->vigild_status, v->log);
    }
    if (r->agent_status > 0) {
        printf("  agent exit    %d\n", r->agent_status);
    }
    if (r->producer_err) {
        printf("  producers     stopped on an error: %s\n", zmq_strerror(r->producer_err));
    }
    if (r->interrupted) {
        printf("  interrupted: figures are partial\n");
    }
}

static void print_json(const struct opts *o, const struct result *r, struct bench_tail *t,
                       const struct bench_probe *p)
{
    char rules[16] = "null"; /* attached: the daemon's own rules */
    if (!o->config) {
        snprintf(rules, sizeof rules, "%d", o->rules);
    }
    printf("{\"sink\":\"%s\",\"sink_plugin\":\"%s\",\"transport\":\"%s\",\"producers\":%d,"
           "\"batch\":%d,\"tick_us\":%.0f,\"bus_hwm\":%d,\"rules\":%s,\"attached\":%s,\"rate\":%."
           "0f,\"duration_s\":%"
           ".3f,\"warmup_"
           "s\":%.3f,"
           "\"coalesce\":%s%s%s,\"mode\":\"%s\",\"curve\":%s,",
           o->sink == BENCH_SINK_DISCARD ? "discard" : "file", sink_plugin(o->sink),
           o->tcp ? "tcp" : "ipc", o->producers, o->batch, (double)o->tick_ns / 1e3, o->bus_hwm,
           rules, o->config ? "true" : "false", o->rate, (double)o->duration_ns / 1e9,
           (double)o->warmup_ns / 1e9, o->coalesce ? "\"" : "", o->coalesce ? o->coalesce : "null",
           o->coalesce ? "\"" : "", o->forward ? "forward" : "single", o->curve ? "true" : "false");
    printf("\"published\":%llu,\"published_in_window\":%llu,\"arrived_of_window\":%llu,"
           "\"events_per_s_in\":%.1f,\"events_per_s_out\":%.1f,\"lost\":%llu,",
           (unsigned long long)r->published, (unsigned long long)r->measured_in,
           (unsigned long long)r->measured_out, r->in_per_s, r->out_per_s,
           (unsigned long long)r->lost);
    if (r->dup_known) {
        printf("\"duplicated\":%llu,", (unsigned long long)r->duplicated);
    } else {
        printf("\"duplicated\":null,");
    }
    printf("\"verdicts\":%llu,\"verdict_fraction\":%.6f,", (unsigned long long)r->verdicts,
           r->verdict_fraction);
    if (o->reload_every_ns) {
        printf("\"reloads\":%u,\"reloads_unseen\":%u,\"reload_pause_p50_ms\":%.3f,"
               "\"reload_pause_max_ms\":%.3f,",
               r->reloads, r->reloads_unseen, r->reload_p50_ms, r->reload_max_ms);
    }
    print_latency_json("latency_us", r->lat_known ? &t->lat : NULL);
    if (o->probe) {
        print_latency_json("bus_latency_us", p ? &p->lat : NULL);
    }
    if (r->cpu_s >= 0) {
        printf("\"cpu_s\":%.3f,\"cpu_s_per_million\":%.4f,", r->cpu_s, r->cpu_s_per_million);
    } else {
        printf("\"cpu_s\":null,\"cpu_s_per_million\":null,");
    }
    printf("\"bench_cpu_s\":%.3f,\"cpu_events\":%llu,", r->bench_cpu_s,
           (unsigned long long)r->cpu_events);
    if (r->rss_peak >= 0) {
        printf("\"rss_peak_bytes\":%lld,", (long long)r->rss_peak);
    } else {
        printf("\"rss_peak_bytes\":null,");
    }
    print_threads_json("threads_cpu_s", &r->threads);
    /* --forward: the figures above (cpu, rss, threads, vigil_self) are the
     * central's, the daemon with the rules and the sink as in the single
     * mode; the agent's are here. */
    if (o->forward) {
        const struct bench_self_counters *ac = &r->agent_self;
        printf("\"agent\":{");
        if (r->agent_cpu_s >= 0) {
            printf("\"cpu_s\":%.3f,\"cpu_s_per_million\":%.4f,", r->agent_cpu_s,
                   r->agent_cpu_s_per_million);
        } else {
            printf("\"cpu_s\":null,\"cpu_s_per_million\":null,");
        }
        if (r->agent_rss_peak >= 0) {
            printf("\"rss_peak_bytes\":%lld,", (long long)r->agent_rss_peak);
        } else {
            printf("\"rss_peak_bytes\":null,");
        }
        print_threads_json("threads_cpu_s", &r->agent_threads);
        printf("\"drain_max_gap_s\":%.3f,", r->drain_max_gap_s);
        if (o->forward_batch) {
            printf("\"batch_max_events\":%d,", o->forward_batch);
        } else {
            printf("\"batch_max_events\":null,");
        }
        printf("\"forward\":{\"reports\":%llu,\"delivered\":%llu,\"failed\":%llu,"
               "\"dropped\":%llu,\"retried\":%llu,\"spooled\":%llu},\"exit\":%d},",
               (unsigned long long)ac->sink_reports, (unsigned long long)ac->sink_out,
               (unsigned long long)ac->sink_failed, (unsigned long long)ac->sink_dropped,
               (unsigned long long)ac->sink_retried, (unsigned long long)ac->sink_spooled,
               r->agent_status);
    } else {
        printf("\"agent\":null,");
    }
    const struct bench_self_counters *c = &r->self;
    printf("\"vigil_self\":{\"reports\":%llu,\"bus_in\":%llu,\"bus_malformed\":%llu,"
           "\"bus_lost\":%llu,"
           "\"bus_dropped\":%llu,\"sink_delivered\":%llu,\"sink_failed\":%llu,"
           "\"sink_dropped\":%llu,\"sink_retried\":%llu,\"sink_spooled\":%llu,"
           "\"rules_in\":%llu,\"rules_out\":%llu},",
           (unsigned long long)c->reports, (unsigned long long)c->bus_in,
           (unsigned long long)c->bus_malformed, (unsigned long long)c->bus_lost,
           (unsigned long long)c->bus_dropped, (unsigned long long)c->sink_out,
           (unsigned long long)c->sink_failed, (unsigned long long)c->sink_dropped,
           (unsigned long long)c->sink_retried, (unsigned long long)c->sink_spooled,
           (unsigned long long)c->rules_in, (unsigned long long)c->rules_out);
    char status[16] = "null"; /* attached: not ours to stop */
    if (!o->config) {
        snprintf(status, sizeof status, "%d", r->vigild_status);
    }
    printf("\"bad_lines\":%llu,\"drain_timed_out\":%s,\"interrupted\":%s,\"vigild_exit\":%s,"
           "\"producer_error\":%s%s%s}\n",
           (unsigned long long)r->bad_lines, r->drain_timed_out ? "true" : "false",
           r->interrupted ? "true" : "false", status, r->producer_err ? "\"" : "",
           r->producer_err ? zmq_strerror(r->producer_err) : "null", r->producer_err ? "\"" : "");
}

/* A daemon's figures at the end of the drain: its CPU since cpu0, its RSS,
 * its CPU per thread since `before` (`after` is scratch). Leaves them as
 * they are when pid or cpu0 is unknown. */
static void daemon_end(pid_t pid, int64_t cpu0, const struct bench_threads *before,
                       struct bench_threads *after, double *cpu_s, int64_t *rss_peak,
                       int64_t *rss_now, struct bench_threads *threads)
{
    if (pid <= 0 || cpu0 < 0) {
        return;
    }
    int64_t cpu1 = bench_proc_cpu_ns(pid);
    if (cpu1 >= cpu0) {
        *cpu_s = (double)(cpu1 - cpu0) / 1e9;
    }
    *rss_peak = bench_proc_status_bytes(pid, "VmHWM:");
    *rss_now = bench_proc_status_bytes(pid, "VmRSS:");
    bench_threads_read(pid, after);
    bench_threads_diff(before, after, threads);
}

/* Names the first few (source, seq) that never arrived: where to look. */
static void report_missing(const struct bench_tail *t, const struct bench_producers *ps)
{
    int shown = 0;
    for (int i = 0; i < ps->n; i++) {
        const struct bench_seqmap *m = &t->maps[i];
        uint64_t missing = 0, first = 0, last = 0;
        for (uint64_t seq = 1; seq <= ps->p[i].sent; seq++) {
            uint64_t w = seq >> 6;
            if (w >= m->nwords || !(m->bits[w] & (UINT64_C(1) << (seq & 63)))) {
                first = first ? first : seq;
                last = seq;
                missing++;
            }
        }
        if (missing) {
            fprintf(stderr,
                    "vigil-bench: %s: %llu of seq 1..%llu never arrived (first %llu, last %llu)\n",
                    ps->p[i].source, (unsigned long long)missing, (unsigned long long)ps->p[i].sent,
                    (unsigned long long)first, (unsigned long long)last);
            shown++;
        }
    }
    (void)shown;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void reload_figures(struct bench_reloader *rl, struct result *r)
{
    r->reloads = rl->sent;
    r->reloads_unseen = rl->unseen;
    if (rl->n) {
        qsort(rl->pause_ns, rl->n, sizeof *rl->pause_ns, cmp_u64);
        r->reload_p50_ms = (double)rl->pause_ns[rl->n / 2] / 1e6;
        r->reload_max_ms = (double)rl->pause_ns[rl->n - 1] / 1e6;
    }
}

static int run(const struct opts *o)
{
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    struct bench_vigild v, a; /* the daemon measured; --forward: the central, and its agent */
    struct bench_producers *ps = calloc(1, sizeof *ps);
    struct bench_tail *t = calloc(1, sizeof *t);
    struct bench_self *s = calloc(1, sizeof *s);
    struct bench_self *as = calloc(1, sizeof *as); /* the agent's vigil.self */
    struct bench_probe *pr = calloc(1, sizeof *pr);
    struct bench_reloader *rl = calloc(1, sizeof *rl);
    struct bench_threads *th = calloc(4, sizeof *th); /* central, agent: at start, at end */
    struct result r = {.cpu_s = -1,
                       .rss_peak = -1,
                       .rss_now = -1,
                       .agent_cpu_s = -1,
                       .agent_rss_peak = -1,
                       .agent_rss_now = -1};
    bool file = o->sink != BENCH_SINK_DISCARD;
    int rc = 3;
    memset(&v, 0, sizeof v);
    memset(&a, 0, sizeof a);
    if (!ps || !t || !s || !as || !pr || !th || !rl) {
        goto out_free;
    }
    if (o->config) {
        if (bench_vigild_attach(&v, o->config, o->sink, o->pid) != 0) {
            goto out;
        }
    } else {
        /* --forward: the central's own endpoints are ipc (the hop is its
         * tcp ingest); -t is the producers' hop into the agent. */
        if (bench_vigild_setup(&v, o->tcp && !o->forward) != 0) {
            goto out;
        }
        int port = 0;
        if (o->forward && central_bus(o, &v, &port) != 0) {
            goto out;
        }
        snprintf(v.sink_name, sizeof v.sink_name, "bench");
        if (o->bus_hwm && !o->forward) {
            add_bus_hwm(&v, o->bus_hwm);
        }
        snprintf(v.coalesce, sizeof v.coalesce, "%s", o->coalesce ? o->coalesce : "");
        snprintf(v.sink_path, sizeof v.sink_path, "%s/events.jsonl", v.dir);
        /* The capture sink is a test plugin: it builds apart from the real ones. */
        v.test_plugins = o->sink == BENCH_SINK_CAPTURE;
        char *body = pipeline_yaml(o, &v);
        int st = body ? bench_vigild_start(&v, SELF_INTERVAL, body, "info") : -1;
        free(body);
        if (st != 0) {
            goto out;
        }
        if (o->forward) {
            if (bench_vigild_setup(&a, o->tcp) != 0) {
                goto out;
            }
            snprintf(a.coalesce, sizeof a.coalesce, "%s", v.coalesce);
            snprintf(a.sink_name, sizeof a.sink_name, "central");
            if (o->bus_hwm) {
                add_bus_hwm(&a, o->bus_hwm);
            }
            body = agent_yaml(o, &v, port);
            st = body ? bench_vigild_start(&a, SELF_INTERVAL, body, "info") : -1;
            free(body);
            if (st != 0) {
                goto out;
            }
        }
    }
    if (bench_producers_init(ps, o->producers, host) != 0) {
        fprintf(stderr, "vigil-bench: cannot build the events\n");
        goto out;
    }
    ps->zctx = zmq_ctx_new();
    zmq_ctx_set(ps->zctx, ZMQ_IO_THREADS, o->io_threads);
    ps->endpoint = o->forward ? a.publish : v.publish;
    ps->rate = o->rate;
    ps->batch = o->batch;
    ps->tick_ns = o->tick_ns;
    snprintf(s->endpoint, sizeof s->endpoint, "%s", v.subscribe);
    snprintf(s->sink_name, sizeof s->sink_name, "%s", v.sink_name);
    if (bench_self_start(s, ps->zctx) != 0) {
        goto out;
    }
    if (o->forward) {
        snprintf(as->endpoint, sizeof as->endpoint, "%s", a.subscribe);
        snprintf(as->sink_name, sizeof as->sink_name, "%s", a.sink_name);
        if (bench_self_start(as, ps->zctx) != 0) {
            goto out;
        }
    }
    /* The counters before we publish: an attached daemon has a past, and
     * our own one counts its start. */
    if (v.self_interval_ns > 1000000000ull && !o->json) {
        fprintf(stderr, "vigil-bench: waiting for a vigil.self report (every %.0f s)...\n",
                (double)v.self_interval_ns / 1e9);
    }
    uint64_t give_up = vigil_mono_ns() + v.self_interval_ns + 2000000000ull;
    while (bench_self_get(s).sink_reports == 0 && vigil_mono_ns() < give_up && !vigil_tool_stop) {
        bench_sleep_ns(10000000);
    }
    bench_sleep_ns(100000000); /* the rest of that report (rules come after sinks) */
    struct bench_self_counters base = bench_self_get(s), abase = bench_self_get(as);
    if (base.sink_reports == 0) {
        fprintf(stderr,
                "vigil-bench: no vigil.self report of sink '%s' from %s: its counters are "
                "missing from the results\n",
                v.sink_name, v.subscribe);
    }
    uint64_t t0 = vigil_mono_ns() + CONNECT_NS;
    uint64_t real_minus_mono = vigil_now_ns() - vigil_mono_ns();
    uint64_t win_start = t0 + o->warmup_ns, win_end = win_start + o->duration_ns;
    ps->t0 = t0;
    ps->win_start_real = win_start + real_minus_mono;
    ps->win_end_real = win_end + real_minus_mono;
    if (file) {
        snprintf(t->path, sizeof t->path, "%s", v.sink_path);
        t->nproducers = o->producers;
        t->win_start_real = ps->win_start_real;
        t->win_end_real = ps->win_end_real;
        t->from_end = o->config != NULL;
        if (bench_tail_start(t) != 0) {
            fprintf(stderr, "vigil-bench: %s\n", t->err);
            goto out;
        }
    }
    pr->win_start_real = ps->win_start_real;
    pr->win_end_real = ps->win_end_real;
    if (o->probe && bench_probe_start(pr, ps->zctx, v.subscribe) != 0) {
        fprintf(stderr, "vigil-bench: cannot subscribe the probe to %s\n", v.subscribe);
        goto out;
    }
    if (bench_producers_start(ps) != 0) {
        fprintf(stderr, "vigil-bench: cannot start the producers\n");
        goto out;
    }
    if (!o->json) {
        fprintf(stderr, "vigil-bench: publishing for %.1f s (%.1f s warm-up)...\n",
                (double)(o->warmup_ns + o->duration_ns) / 1e9, (double)o->warmup_ns / 1e9);
    }
    int64_t cpu0 = -1, acpu0 = -1;
    /* One daemon keeps up, so its CPU over the window is the window's
     * events'. Forwarding flat out does not: the central still works
     * through the warm-up's backlog inside the window, so both daemons are
     * measured from the first event to the end of the drain, over every
     * event published. */
    uint64_t cpu_from = o->forward ? t0 : win_start;
    while (!vigil_tool_stop && vigil_mono_ns() < cpu_from) {
        bench_sleep_ns(1000000);
    }
    uint64_t out_at_cpu0 = 0; /* the file sink's distinct arrivals when cpu0 is read */
    if (v.pid > 0) {
        cpu0 = bench_proc_cpu_ns(v.pid);
        bench_threads_read(v.pid, &th[0]);
        out_at_cpu0 = file ? atomic_load(&t->distinct) : 0;
    }
    if (a.pid > 0) {
        acpu0 = bench_proc_cpu_ns(a.pid);
        bench_threads_read(a.pid, &th[2]);
    }
    int64_t self_cpu0 = bench_proc_cpu_ns(getpid());
    struct reload_arg ra = {.o = o, .v = &v};
    rl->v = &v;
    rl->self_interval = SELF_INTERVAL;
    rl->body = reload_body;
    rl->arg = &ra;
    rl->every_ns = o->reload_every_ns;
    rl->until_mono = win_end;
    rl->zctx = ps->zctx;
    if (o->reload_every_ns && bench_reloader_start(rl) != 0) {
        fprintf(stderr, "vigil-bench: cannot start the reloader\n");
        goto out;
    }
    while (!vigil_tool_stop && vigil_mono_ns() < win_end) {
        bench_sleep_ns(10000000);
    }
    bench_reloader_stop(rl);
    if (rl->err[0]) {
        fprintf(stderr, "vigil-bench: reloading: %s\n", rl->err);
    }
    reload_figures(rl, &r);
    if (vigil_tool_stop) {
        atomic_store(&ps->stop, true);
        r.interrupted = true;
    }
    bench_producers_join(ps);
    uint64_t producers_done = vigil_mono_ns();
    for (int i = 0; i < ps->n; i++) {
        r.published += ps->p[i].sent;
        r.measured_in += ps->p[i].sent - ps->p[i].warm_last;
        if (ps->p[i].err && !r.producer_err) {
            r.producer_err = ps->p[i].err;
        }
    }
    r.in_per_s = (double)r.measured_in / ((double)o->duration_ns / 1e9);

    uint64_t last = wait_drain(o, file ? t : NULL, s, &base, v.self_interval_ns, r.published,
                               producers_done, &r);
    r.bench_cpu_s = (double)(bench_proc_cpu_ns(getpid()) - self_cpu0) / 1e9;
    daemon_end(v.pid, cpu0, &th[0], &th[1], &r.cpu_s, &r.rss_peak, &r.rss_now, &r.threads);
    daemon_end(a.pid, acpu0, &th[2], &th[3], &r.agent_cpu_s, &r.agent_rss_peak, &r.agent_rss_now,
               &r.agent_threads);
    if (file) {
        bench_tail_stop(t);
        if (t->err[0]) {
            fprintf(stderr, "vigil-bench: reading the sink's file: %s\n", t->err);
        }
        r.arrived = atomic_load(&t->distinct);
        r.measured_out = t->measured;
        r.duplicated = t->duplicated;
        r.dup_known = r.lat_known = true;
        r.bad_lines = t->bad_lines;
        r.other_lines = t->other_lines;
        uint64_t span = t->last_measured_mono > win_start ? t->last_measured_mono - win_start : 0;
        r.out_span_s = (double)span / 1e9;
    } else {
        uint64_t abs_out = bench_self_get(s).sink_out;
        r.arrived = abs_out > base.sink_out ? abs_out - base.sink_out : 0;
        double at_start = bench_self_sink_out_at(s, win_start);
        uint64_t done = bench_self_reached(s, abs_out);
        if (!done) {
            done = last;
        }
        r.measured_out = (double)abs_out > at_start ? (uint64_t)((double)abs_out - at_start) : 0;
        r.out_span_s = done > win_start ? (double)(done - win_start) / 1e9 : 0;
    }
    r.out_per_s = r.out_span_s > 0 ? (double)r.measured_out / r.out_span_s : 0;
    r.lost = r.published > r.arrived ? r.published - r.arrived : 0;
    if (file && r.lost) {
        report_missing(t, ps);
    }
    /* One daemon's CPU is read from the window's start to the end of the
     * drain: it pays for the window's events and for whatever the warm-up
     * left queued in it, a backlog when the producers outrun the stages (as
     * flat-out batches do: up to bus.hwm messages of them, ~640,000 events
     * of 64). So the divisor is every event not yet out when cpu0 was read;
     * dividing by the window's events alone charged that backlog to them. */
    r.cpu_events = r.measured_in;
    if (o->forward) {
        r.cpu_events = r.published;
    } else if (cpu0 >= 0) {
        double out0 = file ? (double)out_at_cpu0
                           : bench_self_sink_out_at(s, cpu_from) - (double)base.sink_out;
        uint64_t before = out0 > 0 ? (uint64_t)out0 : 0;
        if (r.published > before && r.published - before > r.measured_in) {
            r.cpu_events = r.published - before;
        }
    }
    if (r.cpu_s >= 0 && r.cpu_events > 0) {
        r.cpu_s_per_million = r.cpu_s / ((double)r.cpu_events / 1e6);
    }
    if (r.agent_cpu_s >= 0 && r.cpu_events > 0) {
        r.agent_cpu_s_per_million = r.agent_cpu_s / ((double)r.cpu_events / 1e6);
    }
    if (o->forward) {
        struct bench_self_counters aend = bench_self_get(as);
        r.agent_self = bench_self_since(&aend, &abase);
    }
    struct bench_self_counters end_c = bench_self_get(s);
    r.self = bench_self_since(&end_c, &base);
    r.verdicts = r.self.rules_out;
    r.judged = r.self.rules_in;
    if (file && t->verdicts > r.verdicts) {
        r.verdicts = t->verdicts; /* an attached daemon's sink may take alert. too */
    }
    r.verdict_fraction = r.judged ? (double)r.verdicts / (double)r.judged : 0;
    bench_self_stop(s);
    bench_self_stop(as);
    bench_probe_stop(pr);
    if (a.ours) {
        r.agent_status = bench_vigild_stop(&a);
    }
    if (v.ours) {
        r.vigild_status = bench_vigild_stop(&v);
    }
    if (o->json) {
        print_json(o, &r, t, o->probe ? pr : NULL);
    } else {
        print_text(o, &r, t, o->probe ? pr : NULL, &v);
    }
    fflush(stdout);
    rc = (r.lost || r.duplicated || r.interrupted || r.producer_err || r.reloads_unseen) ? 1 : 0;
out:
    /* Every socket on the producers' context is closed before fini
     * terminates it (zmq_ctx_term waits for them). */
    bench_self_fini(s);
    bench_self_fini(as);
    bench_probe_stop(pr);
    if (rl) {
        bench_reloader_stop(rl); /* its socket is on the producers' context */
    }
    bench_producers_fini(ps);
    bench_tail_fini(t);
    bench_vigild_cleanup(&a, o->keep);
    bench_vigild_cleanup(&v, o->keep);
out_free:
    free(ps);
    free(t);
    free(s);
    free(as);
    free(pr);
    free(th);
    if (rl) {
        bench_reloader_fini(rl);
        free(rl);
    }
    return rc;
}

int main(int argc, char **argv)
{
    vigil_tool_catch_signals();
    if (argc > 1 && strcmp(argv[1], "collect") == 0) {
        return bench_collect_main(argc - 1, argv + 1);
    }
    if (argc > 1 && strcmp(argv[1], "selftest") == 0) {
        return bench_selftest_main(argc - 1, argv + 1);
    }
    struct opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc != 0) {
        return rc;
    }
    return run(&o);
}

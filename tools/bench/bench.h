/* vigil-bench's parts (see ../vigil-bench.c): the producers, the sink-file
 * tail reader, the vigil.self monitor, the vigild it starts (or finds), and
 * the collect and selftest subcommands. Times are CLOCK_MONOTONIC ns unless
 * a name says _real (CLOCK_REALTIME, the clock of an event's ts).
 */
#ifndef VIGIL_BENCH_H
#define VIGIL_BENCH_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hist.h"

#define BENCH_TOPIC "bench.metric"
#define BENCH_SOURCE_PREFIX "bench-"
#define BENCH_MAX_PRODUCERS 64

/* ---- Producers (producer.c) ------------------------------------------------ */

/* One pre-built body (built with the event builder) whose ts, seq and
 * values are rewritten in place per event: their msgpack encodings have a
 * fixed width (uint64 0xcf, float64 0xcb). */
struct bench_tmpl {
    char *body;
    size_t len;
    size_t off_ts, off_seq, off_val[4];
};

#define BENCH_TMPLS 16 /* 8 series x (normal, policy-violating) */

struct bench_producer {
    int index;
    pthread_t thread;
    bool started;
    char source[32];
    struct bench_tmpl t[BENCH_TMPLS];
    /* Written by the producer thread, read after it is joined. */
    uint64_t sent;      /* events handed to ZeroMQ: seq 1..sent */
    uint64_t warm_last; /* last seq published before the measured window */
    int err;            /* 0, or the zmq errno that stopped it */
    void *sock;         /* its PUSH socket, closed by bench_producers_fini */
    struct bench_producers *all;
};

/* A paced producer wakes at most this often by default and sends what is due
 * by then: one wake-up per event would cost the bench more than the daemon
 * spends on the event at high rates. */
#define BENCH_PACE_TICK_NS 200000u

struct bench_producers {
    void *zctx;
    const char *endpoint;
    int n;
    double rate;              /* events/s over all producers; 0: as fast as the bus takes them */
    int batch;                /* events per message; above 1 a producer's batch (bus.h) */
    uint64_t tick_ns;         /* paced: a producer wakes this often (0: BENCH_PACE_TICK_NS) */
    uint64_t t0;              /* mono: when everyone starts */
    uint64_t win_start_real;  /* ts at which the measured window starts */
    uint64_t win_end_real;    /* ... and ends: producers stop there */
    uint64_t real_minus_mono; /* real = mono + this, at start */
    atomic_bool stop;
    struct bench_producer p[BENCH_MAX_PRODUCERS];
};

/* The spike schedule: in every BENCH_PERIOD events of a producer, one event
 * crosses the thresholds, one the overhead bound, and one is a denied
 * access. See rules_yaml() for the rules that read them. */
#define BENCH_PERIOD 2048u

/* Builds each producer's templates; host is the events' host. Returns 0 or
 * -1 (out of memory). */
int bench_producers_init(struct bench_producers *ps, int n, const char *host);
/* Starts the threads: they connect PUSH sockets to ps->endpoint, publish
 * from ps->t0 (paced at ps->rate) until ts reaches ps->win_end_real or stop
 * is set. Returns 0 or -1. */
int bench_producers_start(struct bench_producers *ps);
/* Joins the threads (after they stopped by themselves or stop was set). */
void bench_producers_join(struct bench_producers *ps);
/* Frees templates and closes the ZeroMQ context. */
void bench_producers_fini(struct bench_producers *ps);
/* Renders one template's event as the sinks write it (JSON, no newline),
 * for the selftest's reader run. Returns the length or 0. */
size_t bench_producer_json(const struct bench_producer *p, unsigned tmpl, char *buf, size_t cap);
/* Rewrites template `tmpl` of p for event `seq` published at ts_real and
 * returns which template to send. */
unsigned bench_producer_fill(struct bench_producer *p, uint64_t seq, uint64_t ts_real);

/* ---- The tail reader (tail.c) ---------------------------------------------- */

/* Seqs seen of one producer: a bitmap that grows. */
struct bench_seqmap {
    uint64_t *bits;
    uint64_t nwords;
};

struct bench_tail {
    char path[PATH_MAX];
    int nproducers;
    uint64_t win_start_real, win_end_real;
    bool from_end; /* -c: start at the file's current end */
    pthread_t thread;
    bool started;
    atomic_bool stop;
    /* Progress, read by the main thread while it waits for the drain. */
    _Atomic uint64_t distinct, last_line_mono;
    /* The rest: read after the thread is joined. */
    struct bench_seqmap maps[BENCH_MAX_PRODUCERS];
    uint64_t duplicated, verdicts, other_lines, bad_lines;
    uint64_t measured;           /* distinct events published in the window */
    uint64_t last_measured_mono; /* when the last of them was read */
    uint64_t bytes;
    struct bench_hist lat; /* ns, events published in the window */
    char err[PATH_MAX + 256];
};

/* Starts the reader thread on t->path (which must exist). Returns 0 or -1
 * with t->err set. */
int bench_tail_start(struct bench_tail *t);
void bench_tail_stop(struct bench_tail *t);
void bench_tail_fini(struct bench_tail *t);
/* Parses one line (without its newline) and accounts it; now_real is when
 * it was read. Exposed for the selftest, which times it. */
void bench_tail_line(struct bench_tail *t, const char *line, size_t len, uint64_t now_real,
                     uint64_t now_mono);

/* ---- vigil.self (selfmon.c) ------------------------------------------------- */

struct bench_self_sample {
    uint64_t mono;
    uint64_t sink_out;
};

/* The counters the bench follows, as vigil.self last reported them. */
struct bench_self_counters {
    uint64_t reports; /* bus reports seen: one per self.interval */
    uint64_t sink_reports;
    uint64_t sink_in, sink_out, sink_failed, sink_dropped, sink_retried, sink_errors;
    uint64_t sink_spooled; /* events the sink host wrote to its disk spool */
    uint64_t bus_in, bus_malformed, bus_lost, bus_dropped, bus_ext_dropped;
    uint64_t rules_in, rules_out, rules_dropped;
};

struct bench_self {
    char endpoint[PATH_MAX];
    char sink_name[128]; /* the sink instance whose counters we follow */
    pthread_t thread;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu;
    struct bench_self_counters c; /* under mu */
    /* sink_out over time (under mu), for the discard sink's rate. */
    struct bench_self_sample *hist;
    size_t nhist, caphist;
};

int bench_self_start(struct bench_self *s, void *zctx);
void bench_self_stop(struct bench_self *s);
void bench_self_fini(struct bench_self *s);
/* A copy of the latest counters. */
struct bench_self_counters bench_self_get(struct bench_self *s);
/* a - b, field by field (b: a baseline taken earlier). */
struct bench_self_counters bench_self_since(const struct bench_self_counters *a,
                                            const struct bench_self_counters *b);
/* sink_out at mono time t, interpolated between the samples around it. */
double bench_self_sink_out_at(struct bench_self *s, uint64_t t);
/* The first sample time at which sink_out reached `n`, or 0. */
uint64_t bench_self_reached(struct bench_self *s, uint64_t n);

/* ---- The bus probe (probe.c) ---------------------------------------------------- */

struct bench_probe {
    void *sock;
    uint64_t win_start_real, win_end_real;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    struct bench_hist lat; /* ns from ts to the bus's output; read after stop */
};

/* Subscribes to the bench's topic on `endpoint` and times what the bus
 * republishes. Returns 0 or -1. */
int bench_probe_start(struct bench_probe *p, void *zctx, const char *endpoint);
void bench_probe_stop(struct bench_probe *p);

/* ---- The daemon (vigild.c) ---------------------------------------------------- */

enum bench_sink { BENCH_SINK_FILE, BENCH_SINK_CAPTURE, BENCH_SINK_DISCARD };

struct bench_vigild {
    char dir[256]; /* our temp folder ("" with -c) */
    char cfg[PATH_MAX];
    char log[PATH_MAX];
    char publish[PATH_MAX];
    char subscribe[PATH_MAX];
    char sink_path[PATH_MAX]; /* file/capture sinks: the output file */
    char sink_name[128];
    char coalesce[32];            /* bus.coalesce for one we start; "": vigild's default */
    char bus_extra[3 * PATH_MAX]; /* more `bus:` lines for one we start (ingest, curve) */
    bool test_plugins;            /* one we start: plugin_dir is the tests' (test_capture) */
    uint64_t self_interval_ns;    /* its vigil.self period */
    pid_t pid;                    /* 0: unknown (CPU and RSS not measured) */
    bool ours;                    /* we started it: we stop it */
};

/* A free loopback tcp port (bound and released: another program may take
 * it before vigild binds it), or -1. */
int bench_free_tcp_port(void);
/* Where vigild is: next to this program (the build tree, or <prefix>/bin). */
const char *bench_build_dir(void);
/* The plugins vigild loads: the build tree's plugins/ (tests/plugins/ with
 * test_plugins) next to this program, or the installed ones
 * (<prefix>/lib/vigil/plugins) when this program is the installed one. */
const char *bench_plugin_dir(bool test_plugins);
/* Makes our temp folder and picks endpoints (ipc:// in the folder, or two
 * free loopback tcp:// ports). Returns 0 or -1 after printing why. */
int bench_vigild_setup(struct bench_vigild *v, bool tcp);
/* Writes the config (plugin_dir, bus, self.interval, state_dir, then
 * `body`) and starts vigild -c it -l log_level; waits
 * for its "started" line. Returns 0 or -1 after printing why (with the end
 * of vigild's log). */
int bench_vigild_start(struct bench_vigild *v, const char *self_interval, const char *body,
                       const char *log_level);
/* Writes the config alone (as bench_vigild_start does), renamed into
 * place. Returns 0 or -1 after printing why. */
int bench_vigild_write(struct bench_vigild *v, const char *self_interval, const char *body);
/* --reload-every: rewrites the config every `every_ns` with the next
 * generation's body and sends SIGHUP, and times each reload from the signal
 * to the first verdict of the rule only that generation has
 * ("reload-<gen>", on alert.fired at the subscribe endpoint). */
struct bench_reloader {
    struct bench_vigild *v;
    const char *self_interval;
    char *(*body)(void *arg, unsigned gen); /* malloc'ed YAML */
    void *arg;
    uint64_t every_ns, until_mono;
    void *zctx;
    pthread_t thread;
    bool started;
    _Atomic bool stop;
    uint64_t *pause_ns; /* one per reload that was seen to judge */
    size_t n, cap;
    unsigned sent, unseen; /* reloads asked; of those, no verdict within 5 s */
    char err[256];
};
int bench_reloader_start(struct bench_reloader *r);
void bench_reloader_stop(struct bench_reloader *r);
void bench_reloader_fini(struct bench_reloader *r);

/* -c: reads endpoints, the sink's path or name from a running daemon's
 * config and finds its pid (explicit_pid if > 0). Returns 0 or -1. */
int bench_vigild_attach(struct bench_vigild *v, const char *config, enum bench_sink sink,
                        pid_t explicit_pid);
/* Stops our vigild (SIGTERM, then SIGKILL after 20 s); returns its exit
 * status or -1. Does nothing for an attached one. */
int bench_vigild_stop(struct bench_vigild *v);
/* Kills our vigild if still running and removes the temp folder (unless
 * keep). */
void bench_vigild_cleanup(struct bench_vigild *v, bool keep);
/* The rules of the benchmark, as YAML (caller frees). */
char *bench_rules_yaml(int n);

/* CPU time (user + system) of a process, in ns, or -1. */
int64_t bench_proc_cpu_ns(pid_t pid);
/* A "VmHWM:"/"VmRSS:" line of /proc/<pid>/status, in bytes, or -1. */
int64_t bench_proc_status_bytes(pid_t pid, const char *key);

/* CPU time per thread of a process (/proc/<pid>/task/<tid>/stat), to say
 * which of vigild's threads the time goes to. */
#define BENCH_MAX_THREADS 64
struct bench_thread {
    pid_t tid;
    char name[16];
    uint64_t ticks; /* utime + stime, clock ticks (ns after bench_threads_diff) */
};
struct bench_threads {
    int n;
    struct bench_thread t[BENCH_MAX_THREADS];
};
/* Reads the threads of pid into out (n = 0 when it cannot). */
void bench_threads_read(pid_t pid, struct bench_threads *out);
/* after - before per thread name (threads of one name summed, new threads
 * counted whole), into `out` sorted by CPU, heaviest first. Returns how
 * many names. */
int bench_threads_diff(const struct bench_threads *before, const struct bench_threads *after,
                       struct bench_threads *out);

/* ---- Subcommands ---------------------------------------------------------------- */

int bench_collect_main(int argc, char **argv);
int bench_selftest_main(int argc, char **argv);

/* ---- collect's parts (collect.c, collect_net.c) --------------------------------- */

#define BENCH_COLLECT_MAX_PASSES 100

struct bench_collect_opts {
    int ncg, passes;
    int nif, nns; /* --net: veth pairs, network namespaces */
    uint64_t interval_ns;
    bool procs, active, flat, json, do_cgroups, do_kvm, do_net;
};

/* One collection, as a source's debug line "collected ..." tells it. */
struct bench_pass {
    double us;      /* the plugin thread's CPU for the collection */
    double us_each; /* per item, where the line says it (cgroups) */
    size_t items;   /* cgroups, VMs, interfaces */
    size_t groups;  /* network namespaces (net) */
};
/* Parses a log line from its "collected " on; true if it is one. */
typedef bool (*bench_pass_parse)(const char *line, struct bench_pass *out);

/* Sets v up and starts vigild with `body` at -l debug, waits until its log
 * holds o->passes + 1 collections that `parse` takes (at most (passes + 3)
 * intervals + 30 s), reads them into out[0..] (room for
 * BENCH_COLLECT_MAX_PASSES + 1) and stops vigild. Returns how many (at
 * least 2), or -1 after printing why (vigild did not start, fewer than 2
 * in time, Ctrl-C). The caller cleans v up (bench_vigild_cleanup). */
int bench_collect_run(struct bench_vigild *v, const struct bench_collect_opts *o, const char *body,
                      bench_pass_parse parse, struct bench_pass *out);
/* Whether the bench run `pid` is over: no such process, or a zombie (a
 * killed run that nobody has reaped yet, which kill(pid, 0) still finds). */
bool bench_pid_gone(int pid);
/* The median of v[0..n-1], n > 0; sorts v. */
double bench_median(double *v, int n);
/* --net: makes the namespaces and veths, measures, removes them. Returns
 * 0, 1 (the plugin missed some of them) or 3 (could not run). */
int bench_collect_net(const struct bench_collect_opts *o);

/* ---- Small shared helpers (vigild.c) ------------------------------------------ */

void bench_sleep_ns(uint64_t ns);
/* Writes a whole file; 0 or -1. */
int bench_write_file(const char *path, const char *text);
/* rm -r of a folder we made (symlinks are removed, not followed). */
void bench_rmtree(const char *path);

#endif

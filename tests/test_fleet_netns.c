/* A fleet across two simulated hosts: two network namespaces of the test's
 * own (vigil-a-PID for the agent, vigil-c-PID for the central) joined by a
 * veth pair whose addresses exist only inside them. A central vigild
 * (bus.ingest with CURVE, a file sink) and an agent vigild (gen -> forward
 * sink, 1,000 events/s for 60 s) talk over that link through a central
 * killed with SIGKILL, away for 15 s and restarted on its state dir, and
 * the link set down for 10 s;
 * then a stranger's key and vigil-tap over the same link. Nothing here
 * touches the machine's own namespace beyond creating and removing the two
 * namespaces. Needs root and `ip netns`; without them every test skips,
 * saying why, and ctest reports it as skipped.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

#define NS_A_PREFIX "vigil-a-"
#define NS_C_PREFIX "vigil-c-"
#define ADDR_A "10.203.0.1/30"
#define ADDR_C "10.203.0.2/30"
#define INGEST "tcp://10.203.0.2:7070"
#define SUBSCRIBE "tcp://10.203.0.2:7072"
#define SKIPPED 77 /* ctest's SKIP_RETURN_CODE for this test */

/* The run: the agent's gen, and the forward sink's batching. */
#define RATE 1000
/* 60 s at RATE: the faults below take ~36 s and the rest is steady flow.
 * Under the sanitizers the run stops at 40 s: the same faults, less of the
 * steady part, which finds no memory error the plain build's 60 s would
 * not (the sanitized CI build's longest test otherwise). */
#ifdef VIGIL_TEST_SHORT
#define COUNT 40000
#else
#define COUNT 60000
#endif
#define BATCH_MAX 512
#define INFLIGHT 4

/* ---- The two namespaces ------------------------------------------------------ */

static const char *ip;
static char ns_a[32], ns_c[32];
static bool ns_made;       /* ours exist: teardown, atexit or a signal removes them */
static char ns_skip[2048]; /* why the tests skip, or "" */
/* What a signal handler needs, ready made: it may only fork, exec and kill. */
static char *del_a[5], *del_c[5];
static struct vd *live[4]; /* vigilds to kill before the namespaces go */

/* Runs ip with the arguments (NULL-terminated); on failure `why` gets the
 * command and its stderr. Returns its exit status. */
static int ip_cmd(char *why, size_t whylen, const char *first, ...)
{
    char *argv[24] = {(char *)ip};
    size_t n = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 23; a = va_arg(ap, const char *)) {
        argv[n++] = (char *)a;
    }
    va_end(ap);
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    int rc = run(argv, NULL, 0, &out, &err, 10);
    if (rc != 0 && why) {
        size_t at = (size_t)snprintf(why, whylen, "`ip");
        for (size_t i = 1; i < n && at < whylen; i++) {
            at += (size_t)snprintf(why + at, whylen - at, " %s", argv[i]);
        }
        if (at < whylen) {
            snprintf(why + at, whylen - at, "` exited %d: %s", rc, err ? err : "");
        }
    }
    free(out);
    free(err);
    return rc;
}

/* From a signal handler too: fork, exec, wait are async-signal-safe. */
static void spawn_wait(char *const argv[])
{
    pid_t p = fork();
    if (p == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    if (p > 0) {
        waitpid(p, NULL, 0);
    }
}

static void kill_live(void)
{
    for (size_t i = 0; i < sizeof live / sizeof live[0]; i++) {
        if (live[i] && live[i]->pid > 0) {
            kill(live[i]->pid, SIGKILL);
            waitpid(live[i]->pid, NULL, 0);
        }
    }
}

static void remove_namespaces(void)
{
    if (!ns_made) {
        return;
    }
    kill_live();
    ns_made = false;
    spawn_wait(del_a);
    spawn_wait(del_c);
}

static void on_signal(int sig)
{
    remove_namespaces();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Namespaces of our prefixes whose test process is gone (a run killed
 * before its cleanup): whatever still runs in them is that run's, and goes
 * with them. A live test's namespaces are left alone. */
static void remove_stale(void)
{
    char *const list[] = {(char *)ip, "netns", "list", NULL};
    char *out = NULL;
    if (run(list, NULL, 0, &out, NULL, 10) != 0 || !out) {
        free(out);
        return;
    }
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        line[strcspn(line, " ")] = '\0';
        bool ours = strncmp(line, NS_A_PREFIX, strlen(NS_A_PREFIX)) == 0 ||
                    strncmp(line, NS_C_PREFIX, strlen(NS_C_PREFIX)) == 0;
        long pid = ours ? strtol(line + strlen(NS_A_PREFIX), NULL, 10) : 0;
        if (pid <= 0 || pid == getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) {
            continue;
        }
        char *const pids[] = {(char *)ip, "netns", "pids", line, NULL};
        char *in_ns = NULL;
        if (run(pids, NULL, 0, &in_ns, NULL, 10) == 0 && in_ns) {
            for (char *p = in_ns; *p;) {
                char *end;
                long victim = strtol(p, &end, 10);
                if (end == p) {
                    break;
                }
                if (victim > 0) {
                    kill((pid_t)victim, SIGKILL);
                }
                p = end;
            }
        }
        free(in_ns);
        fprintf(stderr, "removing the stale namespace %s of a test run that is gone\n", line);
        ip_cmd(NULL, 0, "netns", "del", line, NULL);
    }
    free(out);
}

/* Two namespaces, loopback up in each, a veth pair made inside them (its
 * ends never exist in the machine's namespace) with a /30 between them. */
static int make_namespaces(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        snprintf(ns_skip, sizeof ns_skip, "network namespaces need root (euid %d)", (int)geteuid());
        return 0;
    }
    ip = ip_tool();
    if (!ip) {
        snprintf(ns_skip, sizeof ns_skip, "no ip(8): install iproute2 (tools/dev.sh setup)");
        return 0;
    }
    remove_stale();
    snprintf(ns_a, sizeof ns_a, NS_A_PREFIX "%d", (int)getpid());
    snprintf(ns_c, sizeof ns_c, NS_C_PREFIX "%d", (int)getpid());
    char *const da[] = {(char *)ip, "netns", "del", ns_a, NULL};
    char *const dc[] = {(char *)ip, "netns", "del", ns_c, NULL};
    memcpy(del_a, da, sizeof da);
    memcpy(del_c, dc, sizeof dc);
    atexit(remove_namespaces);
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGALRM};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        signal(sigs[i], on_signal);
    }
    char why[1024];
    if (ip_cmd(why, sizeof why, "netns", "add", ns_a, NULL) != 0) {
        snprintf(ns_skip, sizeof ns_skip, "`ip netns` does not work here: %s", why);
        return 0;
    }
    ns_made = true;
    if (ip_cmd(why, sizeof why, "netns", "add", ns_c, NULL) != 0 ||
        ip_cmd(why, sizeof why, "-n", ns_a, "link", "set", "lo", "up", NULL) != 0 ||
        ip_cmd(why, sizeof why, "-n", ns_c, "link", "set", "lo", "up", NULL) != 0 ||
        ip_cmd(why, sizeof why, "-n", ns_a, "link", "add", "vethA", "type", "veth", "peer", "name",
               "vethC", "netns", ns_c, NULL) != 0 ||
        ip_cmd(why, sizeof why, "-n", ns_a, "addr", "add", ADDR_A, "dev", "vethA", NULL) != 0 ||
        ip_cmd(why, sizeof why, "-n", ns_c, "addr", "add", ADDR_C, "dev", "vethC", NULL) != 0 ||
        ip_cmd(why, sizeof why, "-n", ns_a, "link", "set", "vethA", "up", NULL) != 0 ||
        ip_cmd(why, sizeof why, "-n", ns_c, "link", "set", "vethC", "up", NULL) != 0) {
        snprintf(ns_skip, sizeof ns_skip, "cannot set up the namespaces' link: %s", why);
        remove_namespaces();
    }
    return 0;
}

static int drop_namespaces(void **state)
{
    (void)state;
    remove_namespaces();
    return 0;
}

static void need_namespaces(void)
{
    if (ns_skip[0]) {
        print_message("skipped: %s\n", ns_skip);
        skip();
    }
}

/* ---- Keys and daemons -------------------------------------------------------- */

struct fx {
    struct vd central, agent, stranger;
    char keys[64]; /* central/, agent/, stranger/, authorized_keys */
};

static const char *key_path(struct fx *f, const char *who, const char *file)
{
    static char buf[4][128];
    static unsigned i;
    char *p = buf[i++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s/%s", f->keys, who, file);
    return p;
}

static int keygen(struct fx *f, const char *who)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", f->keys, who);
    char *const argv[] = {VIGIL_BUILD_DIR "/vigil-keygen", dir, NULL};
    return run(argv, NULL, 0, NULL, NULL, 10);
}

/* The central, in its namespace: ingest and subscribe on the veth address,
 * CURVE admitting the agent's key (named agent-a) only. */
static int central_setup(struct fx *f)
{
    char ak[128], bus[1024];
    snprintf(ak, sizeof ak, "%s/authorized_keys", f->keys);
    char *pub = slurp(key_path(f, "agent", "vigil.pub"));
    FILE *a = fopen(ak, "w");
    if (!pub || !a) {
        free(pub);
        if (a) {
            fclose(a);
        }
        return -1;
    }
    fprintf(a, "%.40s agent-a\n", pub);
    fclose(a);
    free(pub);
    snprintf(bus, sizeof bus,
             "  subscribe: " SUBSCRIBE "\n"
             "  ingest: " INGEST "\n"
             "  curve: {secret_key: %s, authorized_keys: %s}\n",
             key_path(f, "central", "vigil.key"), ak);
    return vd_setup_bus(&f->central, "500ms", bus,
                        "sinks:\n"
                        "  - plugin: file\n"
                        "    match: [gen.]\n"
                        "    path: @DIR@/central.jsonl\n"
                        "  - plugin: test_capture\n"
                        "    match: [vigil.self]\n"
                        "    path: @DIR@/self.jsonl\n");
}

/* An agent of host host-a: gen (`count` events of source `name`) ->
 * forward over the veth with `who`'s key. */
static int agent_setup(struct fx *f, struct vd *v, const char *name, const char *who, int count)
{
    char body[2048];
    snprintf(body, sizeof body,
             "host: host-a\n"
             "sources:\n"
             "  - plugin: gen\n"
             "    name: %s\n"
             "    rate: %d\n"
             "    count: %d\n"
             "sinks:\n"
             "  - plugin: forward\n"
             "    match: [gen.]\n"
             "    endpoint: " INGEST "\n"
             "    timeout: 1s\n"
             "    inflight: %d\n"
             "    batch: { max_events: %d }\n"
             "    retry: { min_backoff: 50ms, max_backoff: 500ms }\n"
             "    server_key: %s\n"
             "    key: %s\n"
             "  - plugin: test_capture\n"
             "    match: [vigil.self]\n"
             "    path: @DIR@/self.jsonl\n",
             name, RATE, count, INFLIGHT, BATCH_MAX, key_path(f, "central", "vigil.pub"),
             key_path(f, who, "vigil.key"));
    return vd_setup(v, "500ms", body);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    *state = f;
    if (!f) {
        return -1;
    }
    live[0] = &f->central;
    live[1] = &f->agent;
    live[2] = &f->stranger;
    if (ns_skip[0]) {
        return 0; /* the test says why it skips */
    }
    snprintf(f->keys, sizeof f->keys, "/tmp/vigil-keys.XXXXXX");
    if (!mkdtemp(f->keys) || keygen(f, "central") != 0 || keygen(f, "agent") != 0 ||
        keygen(f, "stranger") != 0) {
        return -1;
    }
    return central_setup(f);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f) {
        vd_cleanup(&f->agent);
        vd_cleanup(&f->stranger);
        vd_cleanup(&f->central);
        memset(live, 0, sizeof live);
        remove_tree(f->keys);
        free(f);
    }
    return 0;
}

/* ---- Reading the central's file as it grows ------------------------------------ */

/* Phases of the run, by when a line was read: before the central's stop,
 * after its restart, after the link went down. */
enum { BEFORE_STOP, AFTER_RESTART, AFTER_LINK_DOWN, PHASES };

struct scan {
    const char *path, *needle;
    long off;
    unsigned char *copies, *first;  /* per seq: copies read, phase of the first */
    size_t distinct, lines, prefix; /* prefix: every seq 1..prefix is there */
    size_t dups[PHASES][PHASES];    /* [phase of the first copy][of the extra one] */
    int phase;
};

static void scan_init(struct scan *s, const char *path)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    s->needle = "\"host\":\"host-a\"";
    s->copies = calloc(COUNT + 1, 1);
    s->first = calloc(COUNT + 1, 1);
}

/* Reads the whole lines added since the last call. */
static void scan_read(struct scan *s)
{
    FILE *f = fopen(s->path, "r");
    if (!f || fseek(f, s->off, SEEK_SET) != 0) {
        if (f) {
            fclose(f);
        }
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0 && line[n - 1] == '\n') {
        s->off += n;
        const char *at = strstr(line, "\"seq\":");
        if (!strstr(line, s->needle) || !strstr(line, "\"source\":\"g1\"") || !at) {
            continue;
        }
        unsigned long long seq = strtoull(at + 6, NULL, 10);
        if (seq < 1 || seq > COUNT) {
            continue; /* seqs_at_least_once reports it */
        }
        s->lines++;
        if (s->copies[seq] == 0) {
            s->first[seq] = (unsigned char)s->phase;
            s->distinct++;
        } else {
            s->dups[s->first[seq]][s->phase]++;
        }
        if (s->copies[seq] < 255) {
            s->copies[seq]++;
        }
    }
    while (s->prefix < COUNT && s->copies[s->prefix + 1]) {
        s->prefix++;
    }
    free(line);
    fclose(f);
}

/* Seconds until the central's file holds every seq 1..n, or -1 after
 * timeout_s. */
static double catch_up(struct scan *s, size_t n, int timeout_s)
{
    double t0 = now_s();
    while (now_s() - t0 < timeout_s) {
        scan_read(s);
        if (s->prefix >= n) {
            return now_s() - t0;
        }
        sleep_ms(100);
    }
    return -1;
}

/* What gen had published by now, as far as the agent's vigil.self says
 * (at most a self interval old: a lower bound). */
static size_t generated(struct fx *f)
{
    double v = 0;
    self_value(vd_path(&f->agent, "self.jsonl"), "g1", "out_total", &v);
    return (size_t)v;
}

/* The sum over the central's runs of a per-agent counter: each run starts
 * from zero, and its last vigil.self is what that run counted (the run
 * that was killed may have counted a little more after it). */
static double agent_counter(struct fx *f, const char *agent, const char *key)
{
    char who[128], k[64];
    snprintf(who, sizeof who, "\"agent\":\"%s\"", agent);
    snprintf(k, sizeof k, "\"%s\":", key);
    FILE *in = fopen(vd_path(&f->central, "self.jsonl"), "r");
    double sum = 0, last = 0;
    char *line = NULL;
    size_t cap = 0;
    while (in && getline(&line, &cap, in) != -1) {
        const char *at = strstr(line, k);
        if (!strstr(line, "\"stage\":\"agent\"") || !strstr(line, who) || !at) {
            continue;
        }
        double v = strtod(at + strlen(k), NULL);
        if (v < last) {
            sum += last; /* a new run */
        }
        last = v;
    }
    free(line);
    if (in) {
        fclose(in);
    }
    return sum + last;
}

static int link_vetha(const char *updown)
{
    char why[1024];
    if (ip_cmd(why, sizeof why, "netns", "exec", ns_a, ip, "link", "set", "vethA", updown, NULL) !=
        0) {
        fprintf(stderr, "%s\n", why);
        return -1;
    }
    return 0;
}

/* ---- The tests -------------------------------------------------------------- */

/* gen at RATE for COUNT events on host-a; the central is stopped for a
 * while and restarted on its state dir, then the link goes down for a while
 * and comes back. Every (host, source, seq) reaches the central's file, and
 * the duplicates that reach it are the ones the restart can make. */
static void test_restart_and_link_down(void **state)
{
    need_namespaces();
    struct fx *f = *state;
    assert_int_equal(agent_setup(f, &f->agent, "g1", "agent", COUNT), 0);
    const char *out = vd_path(&f->central, "central.jsonl");
    struct scan sc;
    scan_init(&sc, out);
    assert_true(vd_started_netns(&f->central, ns_c));
    assert_true(vd_started_netns(&f->agent, ns_a));
    double t0 = now_s();
    assert_true(wait_lines(out, "\"source\":\"g1\"", 1000, 15));
    while (now_s() - t0 < 8) {
        sleep_ms(100);
    }

    /* Fault 1: the central is killed (SIGKILL: nothing of it runs) and
     * stays away. Its acks wait for its sinks to hold the events on disk,
     * so what the agent dropped after an ack must be in the file. */
    vd_kill9(&f->central);
    scan_read(&sc);
    size_t at_stop = sc.distinct;
    sleep_ms(15000);
    sc.phase = AFTER_RESTART;
    assert_true(vd_started_netns(&f->central, ns_c));
    size_t backlog1 = generated(f);
    double up1 = catch_up(&sc, backlog1, 30);
    if (up1 < 0) {
        vd_dump_log(&f->central);
        fail_msg("the central did not catch up after its restart: %zu of %zu", sc.prefix, backlog1);
    }

    /* Fault 2: the link between the hosts goes down, the central stays up
     * (so it still knows every seq it published). */
    scan_read(&sc);
    sc.phase = AFTER_LINK_DOWN;
    assert_int_equal(link_vetha("down"), 0);
    sleep_ms(2000); /* what was already past the link lands */
    scan_read(&sc);
    size_t lines_down = sc.lines;
    sleep_ms(8000);
    scan_read(&sc);
    size_t through_down_link = sc.lines - lines_down;
    assert_int_equal(link_vetha("up"), 0);
    size_t backlog2 = generated(f);
    double up2 = catch_up(&sc, backlog2, 30);
    if (up2 < 0) {
        vd_dump_log(&f->agent);
        fail_msg("the agent did not catch up after the link came back: %zu of %zu", sc.prefix,
                 backlog2);
    }
    /* Nothing crosses a link that is down: the traffic really is on it. */
    assert_int_equal(through_down_link, 0);

    double left = 110 - (now_s() - t0);
    if (catch_up(&sc, COUNT, left > 5 ? (int)left : 5) < 0) {
        vd_dump_log(&f->agent);
        vd_dump_log(&f->central);
        fail_msg("%zu of %d seqs at the central", sc.prefix, COUNT);
    }
    sleep_ms(1500); /* whatever else would come, comes */
    scan_read(&sc);
    size_t dups = 0;
    assert_true(seqs_at_least_once(out, "g1", COUNT, &dups));
    assert_int_equal(count_lines(out, "\"source\":\"g1\""),
                     count_lines(out, "\"host\":\"host-a\""));
    assert_int_equal(dups, sc.lines - sc.distinct);

    size_t by_restart = sc.dups[BEFORE_STOP][AFTER_RESTART] + sc.dups[BEFORE_STOP][AFTER_LINK_DOWN];
    size_t by_link =
        sc.dups[AFTER_RESTART][AFTER_LINK_DOWN] + sc.dups[AFTER_LINK_DOWN][AFTER_LINK_DOWN];
    size_t unexplained = dups - by_restart - by_link;
    double recognised = agent_counter(f, "agent-a", "duplicates_total");
    double timeouts = 0;
    self_value(vd_path(&f->agent, "self.jsonl"), "forward", "timeouts_total", &timeouts);
    print_message("fleet over veth: %d events; %zu at the central when it stopped; caught up "
                  "%.1f s after its restart (%zu events of backlog) and %.1f s after the link "
                  "came back (%zu); duplicates in the file %zu (restart %zu, link %zu), "
                  "recognised by the ingest %.0f; agent timeouts %.0f\n",
                  COUNT, at_stop, up1, backlog1, up2, backlog2, dups, by_restart, by_link,
                  recognised, timeouts);
    /* Between faults nothing comes twice. */
    assert_int_equal(unexplained, 0);
    /* The restarted central remembers no seq: it publishes again what the
     * stopped one published but did not get acked. A sink has one write()
     * out at a time and that write's events (at most batch.max_events,
     * split over up to `inflight` batches) are all the agent can have on
     * the wire unacked. */
    /* Across the link outage the central keeps its memory: every event the
     * agent sends again is recognised (counted in duplicates_total), none is
     * published twice. But a phase is when this test read a line, not when
     * vigild wrote it: the last lines the killed central wrote, and their
     * copies after the restart, can be read in the next phase. So the bound
     * holds for the two together: one write's worth, from the kill. */
    assert_true(by_restart + by_link <= BATCH_MAX);
    /* The agent felt the outage. */
    assert_true(timeouts >= 1);
    free(sc.copies);
    free(sc.first);
    assert_int_equal(vd_stop(&f->agent, 10, NULL), 0);
    assert_int_equal(vd_stop(&f->central, 10, NULL), 0);
}

/* vigil-tap in the agent's namespace, for one vigil.self from the central's
 * bus over the link; with the agent's key or none. Returns its exit status. */
static int tap_in_a(struct fx *f, bool with_key, const char *timeout, char **out, char **err)
{
    char *argv[20] = {
        (char *)ip, "netns",     "exec",         ns_a,         VIGIL_BUILD_DIR "/vigil-tap",
        "-e",       SUBSCRIBE,   "-t",           "vigil.self", "-n",
        "1",        "--timeout", (char *)timeout};
    size_t n = 13;
    if (with_key) {
        argv[n++] = "--server-key";
        argv[n++] = (char *)key_path(f, "central", "vigil.pub");
        argv[n++] = "--key";
        argv[n++] = (char *)key_path(f, "agent", "vigil.key");
    }
    argv[n] = NULL;
    return run(argv, NULL, 0, out, err, 20);
}

/* Over the same link: a stranger's key gets nothing in and is counted;
 * vigil-tap in the agent's namespace reads the central's bus with a listed
 * key and nothing without. */
static void test_keys_over_the_link(void **state)
{
    need_namespaces();
    struct fx *f = *state;
    assert_int_equal(agent_setup(f, &f->stranger, "intruder", "stranger", 500), 0);
    assert_true(vd_started_netns(&f->central, ns_c));
    assert_true(vd_started_netns(&f->stranger, ns_a));
    const char *self = vd_path(&f->central, "self.jsonl");
    bool refused = false;
    for (double end = now_s() + 15; !refused && now_s() < end; sleep_ms(200)) {
        char *all = slurp(self);
        for (const char *p = all; p && (p = strstr(p, "\"auth_refused_total\":")); p++) {
            refused |= p[21] >= '1' && p[21] <= '9';
        }
        free(all);
    }
    if (!refused) {
        vd_dump_log(&f->central);
        fail_msg("the central did not count the stranger as refused");
    }
    /* The stranger's events wait in its spool: none got in. */
    assert_true(
        wait_self_value(vd_path(&f->stranger, "self.jsonl"), "forward", "spool_events", 1, 10));
    assert_int_equal(count_lines(vd_path(&f->central, "central.jsonl"), "intruder"), 0);
    assert_int_equal(count_lines(self, "\"stage\":\"agent\""), 0);
    char *log = slurp(f->central.log);
    bool logged = log && strstr(log, "refused a client from 10.203.0.1");
    free(log);
    if (!logged) {
        vd_dump_log(&f->central);
        fail_msg("the central did not log the refused client's address");
    }

    char *out = NULL, *err = NULL;
    int rc = tap_in_a(f, true, "10s", &out, &err);
    if (rc != 0 || !strstr(out, "\"topic\":\"vigil.self\"")) {
        fail_msg("vigil-tap with the agent's key: exit %d, %s", rc, err);
    }
    free(out);
    free(err);
    assert_int_equal(tap_in_a(f, false, "3s", &out, &err), 1);
    assert_null(strstr(out, "vigil.self"));
    free(out);
    free(err);
    assert_int_equal(vd_stop(&f->stranger, 10, NULL), 0);
    assert_int_equal(vd_stop(&f->central, 10, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restart_and_link_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_over_the_link, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, make_namespaces, drop_namespaces);
    return failed ? failed : ns_skip[0] ? SKIPPED : 0;
}

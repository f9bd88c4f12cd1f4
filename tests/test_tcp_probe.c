/* The tcp_probe source through the real host and bus, against real kernel
 * objects: listeners on loopback (open, closed, backlog full = timeout), a
 * fake DNS server on loopback for evdns, and, as root, network namespaces the
 * test creates (a listener inside one, probed from inside and from outside).
 * Nothing here sends a packet beyond loopback or the test's namespaces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "plugin_harness.h"

#define NS_PREFIX "vigil-tcpprobe-"

/* ---- Reading events -------------------------------------------------------- */

struct got {
    bool seen;
    int count;      /* events seen for this target */
    uint64_t at_ns; /* when the first one arrived (monotonic) */
    double up, expected, skipped_total;
    bool has_connect, has_rtt, has_rttvar, has_resolve, has_error;
    double connect_ms, rtt_us, rttvar_us;
    char error[32], detail[256], netns[256], address[128], ip[64];
};

static bool opt_double(const struct vigil_event_view *v, const char *path, double *out)
{
    return vigil_msgpack_double(vigil_event_get(v, path), out) == 0;
}

static void got_fill(struct got *g, const struct vigil_event_view *v)
{
    memset(g, 0, sizeof *g);
    g->seen = true;
    g->at_ns = vigil_mono_ns();
    g->up = ph_value(v, "values.up");
    g->expected = ph_value(v, "values.expected");
    g->skipped_total = ph_value(v, "values.skipped_total");
    g->has_connect = opt_double(v, "values.connect_ms", &g->connect_ms);
    g->has_rtt = opt_double(v, "values.rtt_us", &g->rtt_us);
    g->has_rttvar = opt_double(v, "values.rttvar_us", &g->rttvar_us);
    double r;
    g->has_resolve = opt_double(v, "values.resolve_ms", &r);
    g->has_error = ph_str(v, "attrs.error", g->error, sizeof g->error) != NULL;
    ph_str(v, "attrs.error_detail", g->detail, sizeof g->detail);
    ph_str(v, "labels.netns", g->netns, sizeof g->netns);
    ph_str(v, "labels.address", g->address, sizeof g->address);
    ph_str(v, "attrs.ip", g->ip, sizeof g->ip);
}

/* Reads tcp.probe events until each of names[0..n) has had `rounds` events
 * (out[i] keeps the first one, `count` how many) or timeout_ms pass.
 * Returns how many targets got there. */
static size_t wait_for(struct ph *p, const char *const *names, struct got *out, size_t n,
                       int rounds, int timeout_ms)
{
    uint64_t deadline = vigil_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    size_t done = 0;
    memset(out, 0, n * sizeof *out);
    while (done < n && vigil_mono_ns() < deadline) {
        const struct vigil_event_view *v = ph_next(p, 100);
        if (!v) {
            continue;
        }
        char name[128];
        if (!ph_str(v, "labels.target", name, sizeof name)) {
            fail_msg("a tcp.probe event without labels.target");
        }
        for (size_t i = 0; i < n; i++) {
            if (strcmp(names[i], name) != 0) {
                continue;
            }
            if (!out[i].seen) {
                got_fill(&out[i], v);
            }
            if (++out[i].count == rounds) {
                done++;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (out[i].count < rounds) {
            fprintf(stderr, "target %s: %d of %d events\n", names[i], out[i].count, rounds);
        }
    }
    return done;
}

/* ---- Loopback helpers ------------------------------------------------------------ */

/* A TCP socket bound to ip:port (port 0: any), listening when backlog >= 0.
 * Returns the fd; *port gets the bound port. */
static int tcp_socket_on(const char *ip, uint16_t *port, int backlog)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    int family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(*port);
        inet_pton(AF_INET6, ip, &a->sin6_addr);
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(*port);
        inet_pton(AF_INET, ip, &a->sin_addr);
        len = sizeof *a;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || (backlog >= 0 && listen(fd, backlog) != 0) ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                     : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* How many connections wait in a listener's accept queue (accepting them). */
static int drain_accept(int lfd)
{
    int n = 0;
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    for (int i = 0; i < 1000; i++) {
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            break;
        }
        close(c);
        n++;
    }
    return n;
}

/* A non-blocking connect to 127.0.0.1:port; true when it completes within
 * wait_ms. The socket is kept in *fd_out (the caller closes it). */
static bool connect_within(uint16_t port, int wait_ms, int *fd_out)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    *fd_out = fd;
    if (fd < 0) {
        return false;
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        return true;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int e = 0;
    socklen_t len = sizeof e;
    return poll(&pfd, 1, wait_ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 &&
           e == 0;
}

/* ---- A fake DNS server on loopback ------------------------------------------------
 * Answers A for probe.vigil.test with 127.0.0.1, AAAA for it with no
 * records, never answers names that start with "slow", and says NXDOMAIN
 * for any other name, so the resolver path runs for real without a packet
 * leaving the machine. */

struct fake_dns {
    int fd;
    uint16_t port;
    pthread_t thread;
    atomic_bool stop;
    atomic_int queries;
    char resolv_conf[64];
};

static void *fake_dns_main(void *arg)
{
    struct fake_dns *f = arg;
    unsigned char q[512], r[600];
    while (!atomic_load(&f->stop)) {
        struct pollfd pfd = {.fd = f->fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) != 1) {
            continue;
        }
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(f->fd, q, sizeof q, 0, (struct sockaddr *)&from, &flen);
        if (n < 17) {
            continue;
        }
        atomic_fetch_add(&f->queries, 1);
        /* The question: labels from byte 12, then type and class. */
        char name[256];
        size_t at = 12, nl = 0;
        while (at < (size_t)n && q[at] != 0 && nl + q[at] + 1 < sizeof name) {
            size_t l = q[at];
            if (at + 1 + l > (size_t)n) {
                break;
            }
            if (nl) {
                name[nl++] = '.';
            }
            memcpy(name + nl, q + at + 1, l);
            nl += l;
            at += 1 + l;
        }
        name[nl] = '\0';
        size_t qend = at + 1 + 4;
        if (qend > (size_t)n) {
            continue;
        }
        unsigned qtype = (unsigned)q[at + 1] << 8 | q[at + 2];
        if (strncasecmp(name, "slow", 4) == 0) {
            continue;
        }
        bool known = strcasecmp(name, "probe.vigil.test") == 0;
        bool answer = known && qtype == 1;
        memcpy(r, q, qend);
        r[2] = (unsigned char)(0x80 | (q[2] & 0x01));   /* QR, RD copied */
        r[3] = (unsigned char)(0x80 | (known ? 0 : 3)); /* RA, NOERROR or NXDOMAIN */
        r[4] = 0, r[5] = 1;                             /* one question */
        r[6] = 0, r[7] = answer ? 1 : 0;                /* answers */
        memset(r + 8, 0, 4);
        size_t len = qend;
        if (answer) {
            static const unsigned char a[] = {0xc0, 0x0c, 0, 1, 0,   1, 0, 0,
                                              0,    60,   0, 4, 127, 0, 0, 1};
            memcpy(r + len, a, sizeof a);
            len += sizeof a;
        }
        sendto(f->fd, r, len, 0, (struct sockaddr *)&from, flen);
    }
    return NULL;
}

static int fake_dns_start(struct fake_dns *f)
{
    memset(f, 0, sizeof *f);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof a;
    f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (f->fd < 0 || bind(f->fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(f->fd, (struct sockaddr *)&a, &len) != 0) {
        return -1;
    }
    f->port = ntohs(a.sin_port);
    snprintf(f->resolv_conf, sizeof f->resolv_conf, "/tmp/vigil-tcpprobe-resolv.XXXXXX");
    int cfd = mkstemp(f->resolv_conf);
    if (cfd < 0) {
        return -1;
    }
    FILE *c = fdopen(cfd, "w");
    fprintf(c, "nameserver 127.0.0.1:%u\noptions timeout:1 attempts:2\n", f->port);
    fclose(c);
    return pthread_create(&f->thread, NULL, fake_dns_main, f) == 0 ? 0 : -1;
}

static void fake_dns_stop(struct fake_dns *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    close(f->fd);
    unlink(f->resolv_conf);
}

/* ---- Open, closed, expect, IPv6, a name from /etc/hosts ------------------------- */

static void test_loopback_open_closed(void **state)
{
    (void)state;
    struct fake_dns dns;
    assert_int_equal(fake_dns_start(&dns), 0);
    uint16_t open_port = 0, closed_port = 0, open6_port = 0;
    int lfd = tcp_socket_on("127.0.0.1", &open_port, 64);
    /* Bound, never listening: nothing else can take the port, and a
     * connect to it is refused. */
    int cfd = tcp_socket_on("127.0.0.1", &closed_port, -1);
    int l6 = tcp_socket_on("::1", &open6_port, 64);
    assert_true(lfd >= 0 && cfd >= 0);
    if (l6 < 0) {
        fprintf(stderr, "no IPv6 loopback here: the [::1] target is left out\n");
    }
    char y[2048];
    snprintf(y, sizeof y,
             "plugin: tcp_probe\nname: lo\ninterval: 200ms\ntimeout: 2s\nresolv_conf: %s\n"
             "targets:\n"
             "  - { name: open4, address: \"127.0.0.1:%u\" }\n"
             "  - { name: closed, address: \"127.0.0.1:%u\", timeout: 1s }\n"
             "  - { name: seg_closed, address: \"127.0.0.1:%u\", expect: closed }\n"
             "  - { name: seg_open, address: \"127.0.0.1:%u\", expect: closed }\n"
             "  - { name: byname, address: \"localhost:%u\", expect: open }\n"
             "  - { name: open6, address: \"[::1]:%u\" }\n",
             dns.resolv_conf, open_port, closed_port, closed_port, open_port, open_port,
             l6 >= 0 ? open6_port : open_port);
    struct ph *p = ph_start(y, "tcp.probe");
    assert_non_null(p);
    const char *names[] = {"open4", "closed", "seg_closed", "seg_open", "byname", "open6"};
    size_t n = l6 >= 0 ? 6 : 5;
    struct got g[6];
    /* Two rounds each: collect() keeps starting probes every interval. */
    assert_int_equal(wait_for(p, names, g, n, 2, 5000), n);
    ph_stop(p);

    assert_true(g[0].up == 1 && g[0].expected == 1 && !g[0].has_error);
    assert_true(g[0].has_connect && g[0].connect_ms >= 0 && g[0].connect_ms < 2000);
    assert_true(g[0].has_rtt && g[0].rtt_us > 0 && g[0].has_rttvar);
    assert_string_equal(g[0].ip, "127.0.0.1");
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%u", open_port);
    assert_string_equal(g[0].address, want);
    assert_int_equal(g[0].skipped_total, 0);

    assert_true(g[1].up == 0 && g[1].expected == 0);
    assert_string_equal(g[1].error, "refused");
    assert_false(g[1].has_connect || g[1].has_rtt);

    assert_true(g[2].up == 0 && g[2].expected == 1); /* closed, as wanted */
    assert_string_equal(g[2].error, "refused");
    assert_true(g[3].up == 1 && g[3].expected == 0); /* reachable: the finding */

    assert_true(g[4].up == 1 && g[4].expected == 1 && g[4].has_resolve);
    assert_string_equal(g[4].ip, "127.0.0.1");
    /* localhost came from /etc/hosts: the resolver was not asked. */
    assert_int_equal(atomic_load(&dns.queries), 0);

    if (l6 >= 0) {
        assert_true(g[5].up == 1 && g[5].has_rtt);
        assert_string_equal(g[5].ip, "::1");
        assert_true(drain_accept(l6) >= 2);
        close(l6);
    }
    /* The probes reached our listener: open4, seg_open and byname, two
     * rounds each, are in its accept queue. */
    assert_true(drain_accept(lfd) >= 6);
    close(lfd);
    close(cfd);
    fake_dns_stop(&dns);
}

/* ---- Names through evdns ----------------------------------------------------------- */

static void test_dns_resolution(void **state)
{
    (void)state;
    struct fake_dns dns;
    assert_int_equal(fake_dns_start(&dns), 0);
    uint16_t port = 0;
    int lfd = tcp_socket_on("127.0.0.1", &port, 64);
    assert_true(lfd >= 0);
    char y[1024];
    snprintf(y, sizeof y,
             "plugin: tcp_probe\nname: dns\ninterval: 300ms\ntimeout: 3s\nresolv_conf: %s\n"
             "targets:\n"
             "  - { name: good, address: \"probe.vigil.test:%u\" }\n"
             "  - { name: nosuch, address: \"nosuch.vigil.test:%u\" }\n"
             "  - { name: nosuch_closed, address: \"nosuch.vigil.test:%u\", expect: closed }\n"
             "  - { name: slow, address: \"slow.vigil.test:%u\", timeout: 300ms }\n"
             "  - { name: stuck, address: \"slow2.vigil.test:%u\", timeout: 30s }\n",
             dns.resolv_conf, port, port, port, port, port);
    struct ph *p = ph_start(y, "tcp.probe");
    assert_non_null(p);
    const char *names[] = {"good", "nosuch", "nosuch_closed", "slow"};
    struct got g[4];
    assert_int_equal(wait_for(p, names, g, 4, 1, 8000), 4);
    /* Stopping while `stuck` still waits for its answer: the lookup is
     * cancelled and freed (the ASan build checks that nothing leaks). */
    ph_stop(p);
    assert_true(g[3].up == 0 && g[3].expected == 0);
    assert_string_equal(g[3].error, "dns");
    assert_non_null(strstr(g[3].detail, "no answer from the resolver within 0.3s"));
    assert_true(g[0].up == 1 && g[0].expected == 1 && g[0].has_resolve && g[0].has_rtt);
    assert_string_equal(g[0].ip, "127.0.0.1");
    assert_true(g[1].up == 0 && g[1].expected == 0);
    assert_string_equal(g[1].error, "dns");
    assert_non_null(strstr(g[1].detail, "nosuch.vigil.test"));
    /* A name that does not resolve proves nothing about segmentation. */
    assert_true(g[2].up == 0 && g[2].expected == 0);
    assert_true(atomic_load(&dns.queries) >= 2);
    assert_true(drain_accept(lfd) >= 1);
    close(lfd);
    fake_dns_stop(&dns);
}

/* ---- Timeout, parallel probes, skipped rounds ------------------------------------------ */

static void test_timeout_parallel_skip(void **state)
{
    (void)state;
    /* A listener whose accept queue is full drops new SYNs: a connect to it
     * gets no answer at all, which is what a filtered port looks like. */
    uint16_t full_port = 0, open_port = 0;
    int full = tcp_socket_on("127.0.0.1", &full_port, 0);
    int lfd = tcp_socket_on("127.0.0.1", &open_port, 64);
    assert_true(full >= 0 && lfd >= 0);
    int fill[4];
    int nfill = 0;
    bool blocked = false;
    for (; nfill < 4 && !blocked; nfill++) {
        blocked = !connect_within(full_port, 200, &fill[nfill]);
    }
    if (!blocked) {
        for (int i = 0; i < nfill; i++) {
            close(fill[i]);
        }
        close(full);
        close(lfd);
        fprintf(stderr, "this kernel accepts beyond listen(fd, 0): no silent port, skipped\n");
        skip();
    }
    char y[1024];
    snprintf(y, sizeof y,
             "plugin: tcp_probe\nname: slow\ninterval: 100ms\n"
             "targets:\n"
             "  - { name: silent, address: \"127.0.0.1:%u\", timeout: 450ms }\n"
             "  - { name: fast, address: \"127.0.0.1:%u\", timeout: 450ms }\n",
             full_port, open_port);
    uint64_t t0 = vigil_mono_ns();
    struct ph *p = ph_start(y, "tcp.probe");
    assert_non_null(p);
    const char *names[] = {"silent", "fast"};
    struct got g[2];
    assert_int_equal(wait_for(p, names, g, 2, 1, 5000), 2);
    assert_true(g[0].up == 0 && g[0].expected == 0);
    assert_string_equal(g[0].error, "timeout");
    assert_false(g[0].has_connect);
    /* Not before its timeout, and the fast target, listed after it, did not
     * wait for it: probes run in parallel. */
    assert_true(g[0].at_ns - t0 >= 440000000ull);
    assert_true(g[1].up == 1);
    assert_true(g[1].at_ns < g[0].at_ns);
    /* Rounds every 100 ms against a 450 ms timeout: the next silent probe
     * starts only after this one ended, and the rounds between are counted. */
    const char *silent[] = {"silent"};
    struct got g2[1];
    assert_int_equal(wait_for(p, silent, g2, 1, 1, 3000), 1);
    ph_stop(p);
    assert_string_equal(g2[0].error, "timeout");
    assert_true(g2[0].skipped_total >= 2);
    for (int i = 0; i < nfill; i++) {
        close(fill[i]);
    }
    close(full);
    close(lfd);
}

/* ---- Many targets: a round is started in batches, all of them complete -------------- */

#define MANY 200

static void test_many_targets(void **state)
{
    (void)state;
    uint16_t open_port = 0, closed_port = 0;
    int lfd = tcp_socket_on("127.0.0.1", &open_port, 1024);
    int cfd = tcp_socket_on("127.0.0.1", &closed_port, -1);
    assert_true(lfd >= 0 && cfd >= 0);
    size_t cap = 64 + MANY * 80, len = 0;
    char *y = malloc(cap);
    assert_non_null(y);
    len += (size_t)snprintf(y, cap, "plugin: tcp_probe\nname: many\ninterval: 500ms\ntargets:\n");
    static char name_buf[MANY][16];
    const char *names[MANY];
    for (int i = 0; i < MANY; i++) {
        snprintf(name_buf[i], sizeof name_buf[i], "t%d", i);
        names[i] = name_buf[i];
        len +=
            (size_t)snprintf(y + len, cap - len, "  - { name: t%d, address: \"127.0.0.1:%u\" }\n",
                             i, i % 2 ? closed_port : open_port);
    }
    struct ph *p = ph_start(y, "tcp.probe");
    free(y);
    assert_non_null(p);
    static struct got g[MANY];
    assert_int_equal(wait_for(p, names, g, MANY, 2, 10000), MANY);
    ph_stop(p);
    for (int i = 0; i < MANY; i++) {
        if (i % 2) {
            assert_true(g[i].up == 0);
            assert_string_equal(g[i].error, "refused");
        } else {
            assert_true(g[i].up == 1 && g[i].has_rtt);
        }
        assert_int_equal(g[i].skipped_total, 0);
    }
    assert_true(drain_accept(lfd) >= MANY); /* 100 open targets, two rounds */
    close(lfd);
    close(cfd);
}

/* ---- Network namespaces (root) ------------------------------------------------------- */

struct ns_fixture {
    char ns[64], ns_down[64];
    bool made, made_down;
    pid_t child;
    uint16_t port;
    int home_fd; /* the port reserved in our own namespace */
};

static struct ns_fixture nsf = {.child = -1, .home_fd = -1};

/* Namespaces left by an earlier run that crashed: NS_PREFIX<pid>[-...] whose
 * pid is gone. */
static void remove_leftovers(void)
{
    DIR *d = opendir("/run/netns");
    if (!d) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, NS_PREFIX, strlen(NS_PREFIX)) != 0) {
            continue;
        }
        long pid = strtol(e->d_name + strlen(NS_PREFIX), NULL, 10);
        if (pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH) {
            continue;
        }
        fprintf(stderr, "removing netns %s left by an earlier run\n", e->d_name);
        ph_run("ip netns del '%s' 2>/dev/null", e->d_name);
    }
    closedir(d);
}

/* Kills and reaps a child the test started, if any. */
static void stop_child(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        *pid = -1;
    }
}

/* Deletes a namespace the test made, if it did. */
static void del_ns(const char *ns, bool *made)
{
    if (*made && ph_run("ip netns del %s", ns) != 0) {
        fprintf(stderr, "could not delete netns %s\n", ns);
    }
    *made = false;
}

static int ns_teardown(void **state)
{
    (void)state;
    stop_child(&nsf.child);
    if (nsf.home_fd >= 0) {
        close(nsf.home_fd);
        nsf.home_fd = -1;
    }
    del_ns(nsf.ns, &nsf.made);
    del_ns(nsf.ns_down, &nsf.made_down);
    return 0;
}

/* Forks a child that dies with us and enters /run/netns/<ns>. Returns 0 in
 * the child (*entered says whether it got in), the pid in the parent, -1 when
 * fork failed. */
static pid_t fork_in_ns(const char *ns, bool *entered)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char path[128];
        snprintf(path, sizeof path, "/run/netns/%s", ns);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        *entered = fd >= 0 && setns(fd, CLONE_NEWNET) == 0;
    }
    return pid;
}

/* A child inside nsf.ns listening on 127.0.0.1:nsf.port; it dies with us. */
static int start_ns_listener(void)
{
    int pfd[2];
    if (pipe(pfd) != 0) {
        return -1;
    }
    bool entered = false;
    pid_t pid = fork_in_ns(nsf.ns, &entered);
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        uint16_t port = nsf.port;
        char ok = entered && tcp_socket_on("127.0.0.1", &port, 64) >= 0 ? 'y' : 'n';
        if (write(pfd[1], &ok, 1) != 1 || ok != 'y') {
            _exit(1);
        }
        for (;;) {
            pause();
        }
    }
    nsf.child = pid;
    close(pfd[1]);
    char ok = 'n';
    ssize_t r = read(pfd[0], &ok, 1);
    close(pfd[0]);
    return r == 1 && ok == 'y' ? 0 : -1;
}

/* Every thread of this process is in the namespace the process started in. */
static void assert_threads_home(void)
{
    char home[64] = "", link[64], path[300];
    ssize_t n = readlink("/proc/self/ns/net", home, sizeof home - 1);
    assert_true(n > 0);
    home[n] = '\0';
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    struct dirent *e;
    int threads = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof path, "/proc/self/task/%s/ns/net", e->d_name);
        n = readlink(path, link, sizeof link - 1);
        if (n <= 0) {
            continue; /* the thread just ended */
        }
        link[n] = '\0';
        if (strcmp(link, home) != 0) {
            fail_msg("thread %s is in %s, not %s", e->d_name, link, home);
        }
        threads++;
    }
    closedir(d);
    assert_true(threads >= 2); /* at least ours and the instance's */
}

static void test_netns(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        fprintf(stderr, "network namespaces need root: skipped\n");
        skip();
    }
    if (ph_run("ip -V >/dev/null 2>&1") != 0) {
        fprintf(stderr, "no 'ip' command (iproute2): skipped\n");
        skip();
    }
    remove_leftovers();
    snprintf(nsf.ns, sizeof nsf.ns, NS_PREFIX "%d", (int)getpid());
    snprintf(nsf.ns_down, sizeof nsf.ns_down, NS_PREFIX "%d-down", (int)getpid());
    if (ph_run("ip netns add %s", nsf.ns) != 0) {
        fprintf(stderr, "cannot create a network namespace here: skipped\n");
        skip();
    }
    nsf.made = true;
    assert_int_equal(ph_run("ip netns exec %s ip link set lo up", nsf.ns), 0);
    /* Its loopback stays down: 127.0.0.1 has no route there. */
    assert_int_equal(ph_run("ip netns add %s", nsf.ns_down), 0);
    nsf.made_down = true;
    /* The port is reserved (bound, not listening) in our own namespace, so
     * the same address probed from here is refused for sure. */
    nsf.port = 0;
    nsf.home_fd = tcp_socket_on("127.0.0.1", &nsf.port, -1);
    assert_true(nsf.home_fd >= 0);
    assert_int_equal(start_ns_listener(), 0);

    char y[2048];
    snprintf(y, sizeof y,
             "plugin: tcp_probe\nname: ns\ninterval: 200ms\ntimeout: 1s\n"
             "targets:\n"
             "  - { name: inside, address: \"127.0.0.1:%u\", netns: %s }\n"
             "  - { name: bypath, address: \"127.0.0.1:%u\", netns: /proc/%d/ns/net }\n"
             "  - { name: outside, address: \"127.0.0.1:%u\" }\n"
             "  - { name: nolo, address: \"127.0.0.1:%u\", netns: %s }\n"
             "  - { name: seg, address: \"127.0.0.1:%u\", netns: %s, expect: closed }\n",
             nsf.port, nsf.ns, nsf.port, (int)nsf.child, nsf.port, nsf.port, nsf.ns_down, nsf.port,
             nsf.ns);
    struct vigil_diag d;
    vigil_diag_init(&d);
    size_t errs = ph_check(y, &d);
    if (errs) {
        vigil_diag_print(&d, stderr);
    }
    vigil_diag_fini(&d);
    assert_int_equal(errs, 0);

    struct ph *p = ph_start(y, "tcp.probe");
    assert_non_null(p);
    const char *names[] = {"inside", "bypath", "outside", "nolo", "seg"};
    struct got g[5];
    assert_int_equal(wait_for(p, names, g, 5, 2, 5000), 5);
    /* Probing moved no thread for good (the instance thread is alive). */
    assert_threads_home();
    ph_stop(p);

    assert_true(g[0].up == 1 && g[0].expected == 1 && g[0].has_rtt);
    assert_string_equal(g[0].netns, nsf.ns);
    assert_true(g[1].up == 1);
    /* The same address from the daemon's namespace: refused, which proves
     * the sockets above were made in the other namespace. */
    assert_true(g[2].up == 0);
    assert_string_equal(g[2].error, "refused");
    assert_string_equal(g[2].netns, "");
    assert_true(g[3].up == 0 && g[3].expected == 0);
    assert_string_equal(g[3].error, "unreachable");
    assert_true(g[4].up == 1 && g[4].expected == 0);
}

/* ---- Loss: nft drops a share of the SYNs inside a namespace (root) ---------------------
 * A listener that accepts on two ports inside a fresh namespace, whose output
 * hook drops ~30% of the packets to the first port. The kernel has no netem;
 * nf_tables is enough to lose SYNs. */

struct loss_fixture {
    char ns[64];
    bool made;
    pid_t child;
};

static struct loss_fixture lossf = {.child = -1};

static int loss_teardown(void **state)
{
    (void)state;
    stop_child(&lossf.child);
    del_ns(lossf.ns, &lossf.made);
    return 0;
}

/* A child inside lossf.ns that accepts (and closes) every connection to
 * 127.0.0.1:ports[0] and [1], so that no accept queue fills up; it dies with
 * us. Picks the ports; returns 0 when both listen. */
static int start_loss_listener(uint16_t ports[2])
{
    int pfd[2];
    if (pipe(pfd) != 0) {
        return -1;
    }
    bool ok = false;
    pid_t pid = fork_in_ns(lossf.ns, &ok);
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        struct pollfd l[2] = {{.fd = -1, .events = POLLIN}, {.fd = -1, .events = POLLIN}};
        uint16_t got[2] = {0, 0};
        for (int i = 0; ok && i < 2; i++) {
            l[i].fd = tcp_socket_on("127.0.0.1", &got[i], 512);
            ok = l[i].fd >= 0;
        }
        if (write(pfd[1], got, sizeof got) != (ssize_t)sizeof got || !ok) {
            _exit(1);
        }
        for (;;) {
            if (poll(l, 2, -1) > 0) {
                for (int i = 0; i < 2; i++) {
                    if (l[i].revents & POLLIN) {
                        drain_accept(l[i].fd);
                    }
                }
            }
        }
    }
    lossf.child = pid;
    close(pfd[1]);
    ssize_t r = read(pfd[0], ports, 2 * sizeof ports[0]);
    close(pfd[0]);
    return r == (ssize_t)(2 * sizeof ports[0]) && ports[0] && ports[1] ? 0 : -1;
}

/* What the events of one target added up to. */
struct loss_sum {
    int events;
    double attempts, connected, retrans;
    double loss_min, loss_max;
    bool ordered; /* p50 <= p90 <= max, connect_ms == p50, in every event */
};

static void loss_add(struct loss_sum *s, const struct vigil_event_view *v)
{
    double a = ph_value(v, "values.attempts"), c = ph_value(v, "values.connected");
    double loss = ph_value(v, "values.loss_pct"), r = 0, ms, p50, p90, max;
    if (s->events++ == 0) {
        s->loss_min = s->loss_max = loss;
        s->ordered = true;
    }
    s->attempts += a;
    s->connected += c;
    s->loss_min = loss < s->loss_min ? loss : s->loss_min;
    s->loss_max = loss > s->loss_max ? loss : s->loss_max;
    assert_true(loss >= 100.0 * (a - c) / a - 1e-9 && loss <= 100.0 * (a - c) / a + 1e-9);
    if (c > 0) {
        assert_true(opt_double(v, "values.retrans_total", &r));
        s->retrans += r;
        s->ordered &= opt_double(v, "values.connect_ms", &ms) &&
                      opt_double(v, "values.connect_ms_p50", &p50) &&
                      opt_double(v, "values.connect_ms_p90", &p90) &&
                      opt_double(v, "values.connect_ms_max", &max) && ms == p50 && p50 <= p90 &&
                      p90 <= max;
    }
}

static void test_loss(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        fprintf(stderr, "network namespaces and nft need root: skipped\n");
        skip();
    }
    if (ph_run("ip -V >/dev/null 2>&1") != 0 || ph_run("nft --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "no 'ip' or no 'nft' command (iproute2, nftables): skipped\n");
        skip();
    }
    remove_leftovers();
    snprintf(lossf.ns, sizeof lossf.ns, NS_PREFIX "%d-loss", (int)getpid());
    if (ph_run("ip netns add %s", lossf.ns) != 0) {
        fprintf(stderr, "cannot create a network namespace here: skipped\n");
        skip();
    }
    lossf.made = true;
    assert_int_equal(ph_run("ip netns exec %s ip link set lo up", lossf.ns), 0);
    uint16_t ports[2];
    assert_int_equal(start_loss_listener(ports), 0);
    if (ph_run("ip netns exec %s nft add table inet t", lossf.ns) != 0 ||
        ph_run("ip netns exec %s nft add chain inet t out "
               "'{ type filter hook output priority 0; }'",
               lossf.ns) != 0 ||
        ph_run("ip netns exec %s nft add rule inet t out tcp dport %u numgen random mod 100 '<' 30 "
               "drop",
               lossf.ns, ports[0]) != 0) {
        fprintf(stderr, "nft cannot add the drop rule here (no nf_tables?): skipped\n");
        skip();
    }

    /* `lossy` times out before the SYN's first retransmission (1 s), so a
     * dropped SYN is a lost attempt; `retrans` waits past it, so a dropped
     * SYN is mostly retransmitted and shows in retrans_total. Its timeout is
     * longer than the interval: it runs every other round. */
    char y[1024];
    snprintf(y, sizeof y,
             "plugin: tcp_probe\nname: loss\ninterval: 1s\ntimeout: 300ms\nattempts: 20\n"
             "targets:\n"
             "  - { name: lossy, address: \"127.0.0.1:%u\", netns: %s }\n"
             "  - { name: retrans, address: \"127.0.0.1:%u\", netns: %s, timeout: 1500ms }\n"
             "  - { name: clean, address: \"127.0.0.1:%u\", netns: %s }\n"
             "  - { name: one, address: \"127.0.0.1:%u\", netns: %s, attempts: 1 }\n",
             ports[0], lossf.ns, ports[0], lossf.ns, ports[1], lossf.ns, ports[1], lossf.ns);
    struct ph *p = ph_start(y, "tcp.probe");
    assert_non_null(p);
    const char *names[] = {"lossy", "retrans", "clean", "one"};
    struct loss_sum sum[4];
    memset(sum, 0, sizeof sum);
    uint64_t deadline = vigil_mono_ns() + 12000000000u;
    while (vigil_mono_ns() < deadline && (sum[0].events < 4 || sum[1].events < 3)) {
        const struct vigil_event_view *v = ph_next(p, 100);
        char name[64];
        if (!v || !ph_str(v, "labels.target", name, sizeof name)) {
            continue;
        }
        for (size_t i = 0; i < 4; i++) {
            if (strcmp(name, names[i]) == 0) {
                loss_add(&sum[i], v);
                if (i == 0 && sum[0].events == 1) {
                    char err[32] = "";
                    ph_str(v, "attrs.error", err, sizeof err);
                    fprintf(stderr, "lossy: first round %g of %g connected, error '%s'\n",
                            ph_value(v, "values.connected"), ph_value(v, "values.attempts"), err);
                }
            }
        }
    }
    ph_stop(p);
    for (size_t i = 0; i < 4; i++) {
        fprintf(stderr,
                "%s: %d events, %g of %g attempts connected (loss %g..%g%%), "
                "retrans_total %g\n",
                names[i], sum[i].events, sum[i].connected, sum[i].attempts, sum[i].loss_min,
                sum[i].loss_max, sum[i].retrans);
    }
    assert_true(sum[0].events >= 4 && sum[1].events >= 3 && sum[2].events >= 3);
    double lossy = 100.0 * (sum[0].attempts - sum[0].connected) / sum[0].attempts;
    assert_true(sum[0].attempts == 20.0 * sum[0].events);
    assert_true(lossy >= 5 && lossy <= 70);
    assert_true(sum[1].retrans > 0);
    assert_true(sum[2].loss_max == 0 && sum[2].connected == 20.0 * sum[2].events);
    assert_true(sum[3].loss_max == 0 && sum[3].attempts == sum[3].events);
    for (size_t i = 0; i < 4; i++) {
        assert_true(sum[i].ordered);
    }
}

/* ---- Config errors at their positions ----------------------------------------------------
 * The instance's lines start at ph.yaml line 3; a line's text starts at
 * column 5. at() finds `needle` in line i and names its position. */

static const char *at(char *buf, size_t cap, const char *const *lines, size_t i, const char *needle,
                      const char *msg)
{
    const char *s = strstr(lines[i], needle);
    assert_non_null(s);
    snprintf(buf, cap, "ph.yaml:%zu:%zu: %s", i + 3, (size_t)(s - lines[i]) + 5, msg);
    return buf;
}

static void test_config_errors(void **state)
{
    (void)state;
    char missing_ns[64];
    snprintf(missing_ns, sizeof missing_ns, NS_PREFIX "missing-%d", (int)getpid());
    char ns_line[256];
    snprintf(ns_line, sizeof ns_line, "  - { name: ns, address: \"127.0.0.1:80\", netns: %s }",
             missing_ns);
    const char *lines[] = {
        "plugin: tcp_probe",
        "targets:",
        "  - { address: \"127.0.0.1:80\" }",
        "  - { name: noport, address: \"127.0.0.1\" }",
        "  - { name: badport, address: \"127.0.0.1:99999\" }",
        "  - { name: v6, address: \"::1:80\" }",
        "  - { name: exp, address: \"127.0.0.1:80\", expect: maybe }",
        "  - { name: dup, address: \"127.0.0.1:80\" }",
        "  - { name: dup, address: \"127.0.0.1:81\" }",
        ns_line,
        "  - { name: noaddr }",
        "  - { name: t0, address: \"127.0.0.1:80\", timeout: 0s }",
        "  - { name: unk, address: \"127.0.0.1:80\", port: 80 }",
        "  - { name: svc, address: \"127.0.0.1:http\" }",
        "  - { name: odd, address: \"we b:80\" }",
        "  - just-a-string",
        "  - { name: uts, address: \"127.0.0.1:80\", netns: /proc/self/ns/uts }",
        "  - { name: gone, address: \"127.0.0.1:80\", netns: /proc/999999999/ns/net }",
        "  - { name: a0, address: \"127.0.0.1:80\", attempts: 0 }",
        "  - { name: a101, address: \"127.0.0.1:80\", attempts: 101 }",
    };
    size_t nl = sizeof lines / sizeof lines[0];
    char y[4096] = "";
    for (size_t i = 0; i < nl; i++) {
        strcat(y, lines[i]);
        strcat(y, "\n");
    }
    struct vigil_diag d;
    vigil_diag_init(&d);
    size_t errs = ph_check(y, &d);
    char b[512];
    ph_expect_msg(&d, at(b, sizeof b, lines, 2, "{", "a target needs a name"));
    ph_expect_msg(&d, at(b, sizeof b, lines, 3, "\"127", "address '127.0.0.1' has no port"));
    ph_expect_msg(&d, at(b, sizeof b, lines, 4, "\"127", "address '127.0.0.1:99999': bad port"));
    ph_expect_msg(&d, at(b, sizeof b, lines, 5, "\"::1", "address '::1:80': an IPv6 address goes"));
    ph_expect_msg(&d, at(b, sizeof b, lines, 6, "maybe", "expect must be 'open' or 'closed'"));
    ph_expect_msg(&d, at(b, sizeof b, lines, 8, "dup", "target name 'dup' is used twice"));
    char ns_msg[256];
    snprintf(ns_msg, sizeof ns_msg, "netns '%s': /run/netns/%s does not exist", missing_ns,
             missing_ns);
    ph_expect_msg(&d, at(b, sizeof b, lines, 9, "vigil-", ns_msg));
    ph_expect_msg(&d, at(b, sizeof b, lines, 10, "{", "target 'noaddr' needs an address"));
    ph_expect_msg(&d, at(b, sizeof b, lines, 11, "0s", "target timeout must be"));
    ph_expect_msg(&d, at(b, sizeof b, lines, 12, "80 }", "unknown key 'port' in a target"));
    ph_expect_msg(&d, at(b, sizeof b, lines, 13, "\"127", "address '127.0.0.1:http': bad port"));
    ph_expect_msg(&d, at(b, sizeof b, lines, 14, "\"we", "address 'we b:80': 'we b' is neither"));
    ph_expect_msg(&d, at(b, sizeof b, lines, 15, "just", "a target is a map"));
    ph_expect_msg(&d,
                  at(b, sizeof b, lines, 16, "/proc",
                     "netns '/proc/self/ns/uts': /proc/self/ns/uts is not a network namespace"));
    ph_expect_msg(&d, at(b, sizeof b, lines, 17, "/proc",
                         "netns '/proc/999999999/ns/net': cannot open /proc/999999999/ns/net: No "
                         "such file"));
    ph_expect_msg(&d, at(b, sizeof b, lines, 18, "0 }", "attempts must be a whole number from 1"));
    ph_expect_msg(&d,
                  at(b, sizeof b, lines, 19, "101 }", "attempts must be a whole number from 1"));
    if (errs != 17) {
        vigil_diag_print(&d, stderr);
    }
    assert_int_equal(errs, 17);
    vigil_diag_fini(&d);

    /* No targets at all; an unreadable resolv_conf (only read when a
     * target is a name). */
    vigil_diag_init(&d);
    assert_int_equal(ph_check("plugin: tcp_probe\ntimeout: 1s\n", &d), 1);
    ph_expect_msg(&d, "ph.yaml:3:");
    assert_non_null(strstr(d.msgs[0], "tcp_probe needs targets"));
    vigil_diag_fini(&d);
    const char *rl[] = {"plugin: tcp_probe", "resolv_conf: /nonexistent/resolv.conf",
                        "targets: [{ name: n, address: \"example.invalid:80\" }]"};
    snprintf(y, sizeof y, "%s\n%s\n%s\n", rl[0], rl[1], rl[2]);
    vigil_diag_init(&d);
    assert_int_equal(ph_check(y, &d), 1);
    ph_expect_msg(&d, at(b, sizeof b, rl, 1, "/non", "resolv_conf: cannot read /nonexistent"));
    vigil_diag_fini(&d);

    /* And a good one passes, names included. */
    vigil_diag_init(&d);
    assert_int_equal(ph_check("plugin: tcp_probe\ntargets:\n"
                              "  - { name: a, address: \"localhost:22\", timeout: 250ms }\n"
                              "  - { name: b, address: \"[::1]:22\", expect: closed }\n",
                              &d),
                     0);
    vigil_diag_fini(&d);
}

int main(void)
{
    /* A probe's peer may vanish mid-test; never die of SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_loopback_open_closed),
        cmocka_unit_test(test_dns_resolution),
        cmocka_unit_test(test_timeout_parallel_skip),
        cmocka_unit_test(test_many_targets),
        cmocka_unit_test_teardown(test_netns, ns_teardown),
        cmocka_unit_test_teardown(test_loss, loss_teardown),
    };
    /* clang-format on */
    return cmocka_run_group_tests_name("tcp_probe", tests, NULL, NULL);
}

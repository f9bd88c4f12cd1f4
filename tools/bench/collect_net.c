/* vigil-bench collect --net: the cost of one collection of the net source over
 * M network namespaces it makes (vigil-bench-<pid>-NNN, a sleeping process in
 * each, as a container has) and N veth pairs spread evenly over them
 * (vb<pid>-NNNN here, eth<k> inside; both ends up, without addresses, so
 * nothing is sent), read from the plugin's debug line "collected N interfaces
 * in M namespaces in X us CPU". iproute2's `ip -batch` makes and removes them;
 * everything goes at the end, also after Ctrl-C or a failure, and a killed
 * run's leftovers at the next start.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../tool.h"
#include "bench.h"
#include "log.h"

#define NETNS_DIR "/run/netns" /* where `ip netns add` mounts them */
#define NS_PREFIX "vigil-bench-"
#define VETH_PREFIX "vb" /* vb<pid>-NNNN: at most 14 of IFNAMSIZ's 15 characters */
#define CHUNK 100        /* commands per `ip -batch`: progress (and Ctrl-C) between them */
#define GONE_TIMEOUT_NS 30000000000ull

struct net_set {
    pid_t *kids; /* one sleeping process in each namespace */
    int nkids;
    bool ipv6; /* the kernel has IPv6: address generation is turned off */
};

/* ---- ip ------------------------------------------------------------------------------- */

/* "what: done/total" rewritten in place on a terminal (elsewhere the
 * caller's start and end lines say enough). */
static void progress(const char *what, int done, int total)
{
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\rvigil-bench: %s: %d/%d%s", what, done, total,
                done == total ? "\n" : "   ");
    }
}

/* Runs `ip [-n ns] [-force] -batch -` over the len bytes of lines (one
 * command a line). ip ignores SIGINT, which a Ctrl-C sends the whole
 * foreground group: the bench stops between batches and never leaves a
 * removal half done. Returns 0, or -1 (ip failed and said why on stderr). */
static int ip_batch(const char *ns, bool force, const char *lines, size_t len)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        fprintf(stderr, "vigil-bench: pipe: %s\n", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "vigil-bench: fork: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        signal(SIGINT, SIG_IGN);
        if (dup2(fds[0], STDIN_FILENO) < 0) {
            _exit(127);
        }
        const char *argv[8];
        int a = 0;
        argv[a++] = "ip";
        if (ns) {
            argv[a++] = "-n";
            argv[a++] = ns;
        }
        if (force) {
            argv[a++] = "-force";
        }
        argv[a++] = "-batch";
        argv[a++] = "-";
        argv[a] = NULL;
        execvp("ip", (char *const *)argv);
        _exit(127);
    }
    close(fds[0]);
    /* An ip that stops early closes the pipe: EPIPE, not a SIGPIPE that
     * would kill the bench before it cleans up. */
    void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fds[1], lines + off, len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            break; /* ip is gone: its status says why */
        }
        off += (size_t)w;
    }
    close(fds[1]);
    signal(SIGPIPE, old_pipe);
    int st = 0;
    pid_t r;
    while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
    }
    if (r != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        if (r == pid && WIFEXITED(st) && WEXITSTATUS(st) == 127) {
            fprintf(stderr, "vigil-bench: cannot run ip: install iproute2\n");
        }
        return -1;
    }
    return 0;
}

/* Runs the n lines of `lines` in batches of CHUNK, showing progress as
 * `what`. force: removing, so on past failed commands and Ctrl-C; else
 * making, stopped by either. Returns 0 or -1. */
static int ip_batches(const char *what, const char *lines, int n, bool force)
{
    const char *p = lines;
    for (int done = 0; done < n;) {
        if (vigil_tool_stop && !force) {
            return -1;
        }
        const char *end = p;
        int k = 0;
        while (k < CHUNK && done + k < n && strchr(end, '\n')) {
            end = strchr(end, '\n') + 1;
            k++;
        }
        if (k == 0) {
            return -1; /* fewer lines than n: a bug of ours */
        }
        if (ip_batch(NULL, force, p, (size_t)(end - p)) != 0 && !force) {
            return -1;
        }
        p = end;
        done += k;
        progress(what, done, n);
    }
    return 0;
}

/* ---- Names ---------------------------------------------------------------------------- */

/* The pid in a whole "<prefix><pid>-<n>" name, or -1. */
static int name_pid(const char *name, const char *prefix)
{
    size_t pl = strlen(prefix);
    int pid, n, end = 0;
    if (strncmp(name, prefix, pl) != 0 || name[pl] < '1' || name[pl] > '9' ||
        sscanf(name + pl, "%d-%d%n", &pid, &n, &end) != 2 || name[pl + (size_t)end] != '\0') {
        return -1;
    }
    return pid;
}

/* This run's (ours), or one of a run that is gone. */
static bool to_remove(int pid, bool ours)
{
    if (pid <= 0) {
        return false;
    }
    if (ours) {
        return pid == getpid();
    }
    return pid != getpid() && bench_pid_gone(pid);
}

/* Our veth ends in the bench's namespace (vigild's) that are to go, as
 * "link del" lines into m (if m); returns how many. */
static int veths_left(FILE *m, bool ours)
{
    struct if_nameindex *ifs = if_nameindex();
    int n = 0;
    for (struct if_nameindex *i = ifs; i && i->if_index; i++) {
        if (to_remove(name_pid(i->if_name, VETH_PREFIX), ours)) {
            n++;
            if (m) {
                fprintf(m, "link del %s\n", i->if_name);
            }
        }
    }
    if (ifs) {
        if_freenameindex(ifs);
    }
    return n;
}

/* Removes this run's namespaces and veth pairs (ours), or those of runs
 * that died without cleaning up. Removing a namespace removes the veth
 * ends in it and so their peers here, all in one go in the kernel (far
 * faster than deleting 500 links one by one); what is still here after
 * that (a namespace some other process holds) is deleted by name. */
static void net_remove(bool ours)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) {
        return;
    }
    int nns = 0;
    DIR *d = opendir(NETNS_DIR);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (to_remove(name_pid(e->d_name, NS_PREFIX), ours)) {
            fprintf(m, "netns del %s\n", e->d_name);
            nns++;
        }
    }
    if (d) {
        closedir(d);
    }
    fclose(m);
    int nveth = veths_left(NULL, ours);
    if (nns == 0 && nveth == 0) {
        free(buf);
        return;
    }
    fprintf(stderr, "vigil-bench: removing %d namespaces and %d veth pairs%s...\n", nns, nveth,
            ours ? "" : " left by a run that was killed");
    uint64_t t0 = vigil_mono_ns();
    ip_batches("namespaces removed", buf, nns, true);
    free(buf);
    /* The kernel tears the namespaces down in the background. */
    int left;
    while ((left = veths_left(NULL, ours)) > 0 && vigil_mono_ns() - t0 < GONE_TIMEOUT_NS) {
        progress("veth pairs removed", nveth - left, nveth);
        bench_sleep_ns(50000000);
    }
    if (left > 0) {
        buf = NULL;
        m = open_memstream(&buf, &len);
        if (m) {
            left = veths_left(m, ours);
            fclose(m);
            ip_batches("veth pairs deleted by name", buf, left, true);
            free(buf);
        }
    }
    progress("veth pairs removed", nveth, nveth);
    left = veths_left(NULL, ours);
    fprintf(stderr, "vigil-bench: removed in %.1f s%s\n", (double)(vigil_mono_ns() - t0) / 1e9,
            left ? "; some veths are still there (ip link | grep " VETH_PREFIX ")" : "");
}

/* ---- Making them ---------------------------------------------------------------------- */

/* A process sleeping in namespace `fd` until the bench ends. Returns its
 * pid or -1. */
static pid_t sleeper(int fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the bench */
        if (getppid() != parent || setns(fd, CLONE_NEWNET) != 0) {
            _exit(1);
        }
        for (;;) {
            pause();
        }
    }
    return pid;
}

/* Waits until every sleeper is in its namespace (as /proc shows it to the
 * plugin). Returns 0 or -1. */
static int sleepers_settled(struct net_set *s)
{
    uint64_t deadline = vigil_mono_ns() + 10000000000ull;
    for (int i = 0; i < s->nkids; i++) {
        char ns[PATH_MAX], proc[64];
        snprintf(ns, sizeof ns, NETNS_DIR "/" NS_PREFIX "%d-%03d", (int)getpid(), i);
        snprintf(proc, sizeof proc, "/proc/%d/ns/net", (int)s->kids[i]);
        struct stat want, got;
        while (stat(ns, &want) != 0 || stat(proc, &got) != 0 || got.st_ino != want.st_ino) {
            if (vigil_tool_stop) {
                return -1;
            }
            bool dead = waitpid(s->kids[i], NULL, WNOHANG) == s->kids[i];
            if (dead || vigil_mono_ns() > deadline) {
                fprintf(stderr, "vigil-bench: the process for %s did not enter it\n", ns);
                if (dead) {
                    s->kids[i] = 0; /* reaped: not to be killed again */
                }
                return -1;
            }
            bench_sleep_ns(1000000);
        }
    }
    return 0;
}

static int net_create(struct net_set *s, const struct bench_collect_opts *o)
{
    int me = (int)getpid();
    uint64_t t0 = vigil_mono_ns();
    fprintf(stderr,
            "vigil-bench: making %d network namespaces with a sleeping process each and %d "
            "veth pairs...\n",
            o->nns, o->nif);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) {
        return -1;
    }
    for (int i = 0; i < o->nns; i++) {
        fprintf(m, "netns add " NS_PREFIX "%d-%03d\n", me, i);
    }
    fclose(m);
    int rc = ip_batches("namespaces", buf, o->nns, false);
    free(buf);
    if (rc != 0) {
        return -1;
    }
    s->kids = calloc((size_t)o->nns, sizeof *s->kids);
    if (!s->kids) {
        return -1;
    }
    for (int i = 0; i < o->nns && !vigil_tool_stop; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, NETNS_DIR "/" NS_PREFIX "%d-%03d", me, i);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        pid_t pid = fd >= 0 ? sleeper(fd) : -1;
        if (pid < 0) {
            fprintf(stderr, "vigil-bench: cannot start a process in %s: %s\n", path,
                    strerror(errno));
            if (fd >= 0) {
                close(fd);
            }
            return -1;
        }
        close(fd);
        s->kids[s->nkids++] = pid;
    }
    if (vigil_tool_stop || sleepers_settled(s) != 0) {
        return -1;
    }
    /* The pairs are made from inside each namespace, the peer sent here
     * (`netns <our pid>`), so that the inner end can be brought up in the
     * same batch; a veth's ends cannot be brought up as it is made. */
    const char *nogen = s->ipv6 ? "addrgenmode none " : "";
    int made = 0;
    for (int j = 0; j < o->nns && !vigil_tool_stop; j++) {
        buf = NULL;
        m = open_memstream(&buf, &len);
        if (!m) {
            return -1;
        }
        int k = 0;
        for (int i = j; i < o->nif; i += o->nns, k++) {
            fprintf(m, "link add eth%d type veth peer name " VETH_PREFIX "%d-%04d netns %d\n", k,
                    me, i, me);
            fprintf(m, "link set eth%d %sup\n", k, nogen);
        }
        fclose(m);
        char ns[64];
        snprintf(ns, sizeof ns, NS_PREFIX "%d-%03d", me, j);
        rc = ip_batch(ns, false, buf, len);
        free(buf);
        if (rc != 0) {
            return -1;
        }
        made += k;
        progress("veth pairs", made, o->nif);
    }
    buf = NULL;
    m = open_memstream(&buf, &len);
    if (!m) {
        return -1;
    }
    for (int i = 0; i < o->nif; i++) {
        fprintf(m, "link set " VETH_PREFIX "%d-%04d %sup\n", me, i, nogen);
    }
    fclose(m);
    rc = vigil_tool_stop ? -1 : ip_batches("veth ends up here", buf, o->nif, false);
    free(buf);
    if (rc == 0) {
        fprintf(stderr, "vigil-bench: made in %.1f s\n", (double)(vigil_mono_ns() - t0) / 1e9);
    }
    return rc;
}

static void net_cleanup(struct net_set *s)
{
    for (int k = 0; k < s->nkids; k++) {
        if (s->kids[k] > 0) {
            kill(s->kids[k], SIGKILL);
        }
    }
    for (int k = 0; k < s->nkids; k++) {
        while (s->kids[k] > 0 && waitpid(s->kids[k], NULL, 0) < 0 && errno == EINTR) {
        }
    }
    s->nkids = 0;
    free(s->kids);
    s->kids = NULL;
    net_remove(true);
}

/* ---- Measuring ------------------------------------------------------------------------ */

/* "collected N interfaces in M namespaces in X us CPU" */
static bool parse_net(const char *line, struct bench_pass *out)
{
    return sscanf(line, "collected %zu interfaces in %zu namespaces in %lf us CPU", &out->items,
                  &out->groups, &out->us) == 3;
}

static double per(double us, size_t n)
{
    return n ? us / (double)n : 0;
}

int bench_collect_net(const struct bench_collect_opts *o)
{
    char so[PATH_MAX + 16];
    snprintf(so, sizeof so, "%s/net.so", bench_plugin_dir(false));
    if (access(so, F_OK) != 0) {
        fprintf(stderr, "vigil-bench: the net plugin is not built (no %s)\n", so);
        return 3;
    }
    if (geteuid() != 0) {
        fprintf(stderr, "vigil-bench: collect --net makes network namespaces and veths: run it "
                        "as root\n");
        return 3;
    }
    if (ip_batch(NULL, false, "", 0) != 0) {
        return 3;
    }
    net_remove(false);
    struct net_set s = {.ipv6 = access("/proc/sys/net/ipv6", F_OK) == 0};
    struct bench_vigild v = {0};
    int rc = 3;
    if (net_create(&s, o) != 0) {
        fprintf(stderr, "vigil-bench: %s\n",
                vigil_tool_stop ? "interrupted" : "could not make the namespaces and veths");
        goto out;
    }
    char body[512];
    snprintf(body, sizeof body,
             "sources:\n  - plugin: net\n    interval: %llums\n    namespaces: true\n"
             "    per_interface: true\n    snmp: true\n",
             (unsigned long long)(o->interval_ns / 1000000));
    /* The first pass is the full scan (finding and opening every
     * namespace): reported apart. */
    struct bench_pass pass[BENCH_COLLECT_MAX_PASSES + 1];
    int got = bench_collect_run(&v, o, body, parse_net, pass);
    if (got < 0) {
        goto out;
    }
    /* Every pass must have seen at least what we made: both ends of every
     * pair and every namespace (the host's, others' and the lo of each
     * come on top). */
    size_t ends = 2 * (size_t)o->nif;
    rc = 0;
    for (int i = 0; i < got; i++) {
        if (pass[i].items < ends || pass[i].groups < (size_t)o->nns) {
            fprintf(stderr,
                    "vigil-bench: collection %d of the net source read %zu interfaces in %zu "
                    "namespaces: fewer than the %zu veth ends in %d namespaces made\n",
                    i + 1, pass[i].items, pass[i].groups, ends, o->nns);
            rc = 1;
        }
    }
    int m = got - 1;
    double us[BENCH_COLLECT_MAX_PASSES], us_if[BENCH_COLLECT_MAX_PASSES],
        us_ns[BENCH_COLLECT_MAX_PASSES];
    for (int i = 0; i < m; i++) {
        us[i] = pass[i + 1].us;
        us_if[i] = per(pass[i + 1].us, pass[i + 1].items);
        us_ns[i] = per(pass[i + 1].us, pass[i + 1].groups);
    }
    double med = bench_median(us, m), med_if = bench_median(us_if, m),
           med_ns = bench_median(us_ns, m);
    const struct bench_pass *last = &pass[got - 1];
    if (o->json) {
        printf("\"net\":{\"interfaces\":%d,\"namespaces\":%d,\"read\":%zu,\"namespaces_read\":%zu,"
               "\"interval_s\":%.3f,\"first_pass_us\":%.0f,\"first_pass_us_per_interface\":%.2f,"
               "\"us_per_collection_median\":%.0f,\"us_per_collection_min\":%.0f,"
               "\"us_per_collection_max\":%.0f,\"us_per_interface_median\":%.2f,"
               "\"us_per_namespace_median\":%.2f,\"passes_us\":[",
               o->nif, o->nns, last->items, last->groups, (double)o->interval_ns / 1e9, pass[0].us,
               per(pass[0].us, pass[0].items), med, us[0], us[m - 1], med_if, med_ns);
        for (int i = 1; i < got; i++) {
            printf("%s%.0f", i > 1 ? "," : "", pass[i].us);
        }
        printf("]}");
    } else {
        printf("net: %d veth pairs in %d namespaces (%zu interfaces in %zu namespaces read per "
               "pass), interval %.1f s\n",
               o->nif, o->nns, last->items, last->groups, (double)o->interval_ns / 1e9);
        printf("  first pass (full scan): %.0f us CPU (%.2f us per interface)\n", pass[0].us,
               per(pass[0].us, pass[0].items));
        printf("  next %d passes: median %.0f us CPU per collection (min %.0f, max %.0f), %.2f us "
               "per interface, %.1f us per namespace\n",
               m, med, us[0], us[m - 1], med_if, med_ns);
    }
out:
    bench_vigild_cleanup(&v, false);
    net_cleanup(&s);
    return rc;
}

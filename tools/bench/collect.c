/* vigil-bench collect: the cost of one collection pass of the cgroups source
 * over N cgroups it creates (vigil-bench-<pid>/cg-NNNN, under one parent as
 * containers and VMs sit under /kubepods, /docker or /machine.slice, or
 * vigil-bench-<pid>-NNNN at the top with --flat, in every hierarchy the
 * plugin reads: cgroup2 and the v1 cpu, cpuacct, memory, pids, blkio
 * hierarchies, whatever the layout), optionally with one process in each
 * (sleeping, or with --active waking every 100 ms to do a little work), read from the plugin's own
 * debug line ("collected N cgroups in X us CPU"); and of the kvm source over the VMs present, from
 * vigild's CPU clock around its collections. Every cgroup and process it made is removed at the
 * end, also after Ctrl-C or a failure. --net measures the net source instead
 * (collect_net.c).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "../cgroup_rm.h"
#include "../tool.h"
#include "bench.h"
#include "config.h"
#include "log.h"
#include "mountinfo.h"

#define MAX_HIER 16
#define MAX_PASSES BENCH_COLLECT_MAX_PASSES

struct cg_set {
    char hier[MAX_HIER][PATH_MAX]; /* mount points we create in */
    int nhier;
    bool v1, v2;
    char parent[64]; /* vigil-bench-<pid> when nested, else "" */
    char prefix[96]; /* vigil-bench-<pid>/cg- or vigil-bench-<pid>- */
    int made;        /* dirs 0..made-1 exist (in every hierarchy) */
    pid_t *kids;
    int nkids;
};

/* ---- Hierarchies ------------------------------------------------------------------------ */

/* The hierarchies the cgroups plugin reads values from, from mountinfo. */
static void find_hierarchies(struct cg_set *s)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f) {
        return;
    }
    char line[4096];
    static const char *const ctrls[] = {"cpu", "cpuacct", "memory", "pids", "blkio"};
    while (fgets(line, sizeof line, f) && s->nhier < MAX_HIER) {
        char mnt[PATH_MAX], fstype[64], super[1024];
        const char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
            sscanf(dash + 3, "%63s %*s %1023s", fstype, super) != 2) {
            continue;
        }
        bool use = false;
        if (strcmp(fstype, "cgroup2") == 0) {
            use = true;
            s->v2 = true;
        } else if (strcmp(fstype, "cgroup") == 0) {
            for (size_t i = 0; i < sizeof ctrls / sizeof ctrls[0]; i++) {
                use |= vigil_mountinfo_has_option(super, ctrls[i]);
            }
            s->v1 |= use;
        }
        for (int i = 0; use && i < s->nhier; i++) {
            use = strcmp(s->hier[i], mnt) != 0;
        }
        if (use) {
            snprintf(s->hier[s->nhier++], PATH_MAX, "%s", mnt);
        }
    }
    fclose(f);
}

static void cg_path(const struct cg_set *s, int h, int i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s%04d", s->hier[h], s->prefix, i);
}

static bool write_str(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        return false;
    }
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

static void cg_cleanup(struct cg_set *s)
{
    for (int k = 0; k < s->nkids; k++) {
        kill(s->kids[k], SIGKILL);
    }
    for (int k = 0; k < s->nkids; k++) {
        waitpid(s->kids[k], NULL, 0);
    }
    s->nkids = 0;
    char p[PATH_MAX + 64];
    for (int i = 0; i < s->made; i++) {
        for (int h = 0; h < s->nhier; h++) {
            cg_path(s, h, i, p, sizeof p);
            vigil_cgroup_rmdir(p);
        }
    }
    s->made = 0;
    for (int h = 0; h < s->nhier && s->parent[0]; h++) {
        snprintf(p, sizeof p, "%s/%s", s->hier[h], s->parent);
        vigil_cgroup_rmdir(p);
    }
    free(s->kids);
    s->kids = NULL;
}

bool bench_pid_gone(int pid)
{
    if (kill(pid, 0) != 0) {
        return errno == ESRCH;
    }
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) {
        fclose(f);
    }
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')'); /* "pid (comm) state ..." */
    return paren && paren[1] == ' ' && paren[2] == 'Z';
}

/* Leftovers of a bench that died without cleaning up (its pid is gone or a
 * zombie). */
static void cg_remove_stale(const struct cg_set *s)
{
    for (int h = 0; h < s->nhier; h++) {
        DIR *d = opendir(s->hier[h]);
        if (!d) {
            continue;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            int pid;
            if (sscanf(e->d_name, "vigil-bench-%d", &pid) == 1 && pid > 0 && pid != getpid() &&
                bench_pid_gone(pid)) {
                char p[PATH_MAX + 256];
                snprintf(p, sizeof p, "%s/%s", s->hier[h], e->d_name);
                vigil_cgroup_remove_tree(p); /* a nested set: its children first */
            }
        }
        closedir(d);
    }
}

/* A process of an --active cgroup: wakes every 100 ms (spread over the
 * period by its index) and works ~20 us, so its cgroup's CPU usage moves
 * at every collection, as a running container's does. */
static void active_loop(int i)
{
    struct timespec ts = {0, (long)(i % 100) * 1000000L};
    nanosleep(&ts, NULL);
    for (;;) {
        uint64_t end = vigil_mono_ns() + 20000;
        while (vigil_mono_ns() < end) {
        }
        ts = (struct timespec){0, 100000000L};
        nanosleep(&ts, NULL);
    }
}

static int cg_create(struct cg_set *s, int n, bool procs, bool active)
{
    char p[PATH_MAX + 64];
    for (int h = 0; h < s->nhier && s->parent[0]; h++) {
        snprintf(p, sizeof p, "%s/%s", s->hier[h], s->parent);
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "vigil-bench: mkdir %s: %s\n", p, strerror(errno));
            return -1;
        }
    }
    for (int i = 0; i < n && !vigil_tool_stop; i++) {
        for (int h = 0; h < s->nhier; h++) {
            cg_path(s, h, i, p, sizeof p);
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                fprintf(stderr, "vigil-bench: mkdir %s: %s\n", p, strerror(errno));
                for (int k = 0; k < h; k++) { /* this one is half made: undo it */
                    cg_path(s, k, i, p, sizeof p);
                    rmdir(p);
                }
                return -1;
            }
        }
        s->made = i + 1;
    }
    if (!procs || vigil_tool_stop) {
        return vigil_tool_stop ? -1 : 0;
    }
    s->kids = calloc((size_t)n, sizeof *s->kids);
    if (!s->kids) {
        return -1;
    }
    pid_t parent = getpid();
    for (int i = 0; i < n && !vigil_tool_stop; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "vigil-bench: fork: %s\n", strerror(errno));
            return -1;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the bench */
            if (getppid() != parent) {
                _exit(0);
            }
            if (active) {
                active_loop(i); /* its first wake-ups may come before the move: harmless */
            }
            for (;;) {
                pause();
            }
        }
        s->kids[s->nkids++] = pid;
        char num[32];
        snprintf(num, sizeof num, "%d\n", (int)pid);
        for (int h = 0; h < s->nhier; h++) {
            cg_path(s, h, i, p, sizeof p);
            strncat(p, "/cgroup.procs", sizeof p - strlen(p) - 1);
            if (!write_str(p, num)) {
                fprintf(stderr, "vigil-bench: cannot move %d into %s: %s\n", (int)pid, p,
                        strerror(errno));
                return -1;
            }
        }
    }
    return vigil_tool_stop ? -1 : 0;
}

/* ---- Reading the plugin's lines ----------------------------------------------------------- */

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Every collection line of the log that `parse` takes, into out[0..max-1]. */
static int read_passes(const char *log, bench_pass_parse parse, struct bench_pass *out, int max)
{
    FILE *f = fopen(log, "r");
    if (!f) {
        return 0;
    }
    char line[2048];
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        const char *c = strstr(line, "collected ");
        if (c && parse(c, &out[n])) {
            n++;
        }
    }
    fclose(f);
    return n;
}

int bench_collect_run(struct bench_vigild *v, const struct bench_collect_opts *o, const char *body,
                      bench_pass_parse parse, struct bench_pass *out)
{
    if (bench_vigild_setup(v, false) != 0 || bench_vigild_start(v, "1h", body, "debug") != 0) {
        return -1;
    }
    int want = o->passes + 1, got = 0;
    uint64_t deadline = vigil_mono_ns() + (uint64_t)(want + 2) * o->interval_ns + 30000000000ull;
    while (!vigil_tool_stop && vigil_mono_ns() < deadline &&
           (got = read_passes(v->log, parse, out, want)) < want) {
        bench_sleep_ns(100000000);
    }
    bench_vigild_stop(v);
    if (vigil_tool_stop) {
        fprintf(stderr, "vigil-bench: interrupted\n");
        return -1;
    }
    if (got < 2) {
        fprintf(stderr, "vigil-bench: vigild logged %d collection%s in time (see %s)\n", got,
                got == 1 ? "" : "s", v->log);
        return -1;
    }
    return got;
}

/* "collected N cgroups in X us CPU (Y us each" */
static bool parse_cgroups(const char *line, struct bench_pass *out)
{
    return sscanf(line, "collected %zu cgroups in %lf us CPU (%lf us each", &out->items, &out->us,
                  &out->us_each) == 3;
}

static int measure_cgroups(const struct bench_collect_opts *o)
{
    struct cg_set s = {0};
    if (o->flat) {
        snprintf(s.prefix, sizeof s.prefix, "vigil-bench-%d-", (int)getpid());
    } else {
        snprintf(s.parent, sizeof s.parent, "vigil-bench-%d", (int)getpid());
        snprintf(s.prefix, sizeof s.prefix, "%s/cg-", s.parent);
    }
    find_hierarchies(&s);
    if (s.nhier == 0) {
        if (o->json) {
            printf("\"cgroups\":null");
        } else {
            printf("cgroups: no cgroup hierarchy mounted: not measured\n");
        }
        return 0;
    }
    const char *layout = s.v1 && s.v2 ? "hybrid" : s.v2 ? "v2" : "v1";
    cg_remove_stale(&s);
    struct bench_vigild v = {0};
    int rc = 3;
    if (!o->json) {
        fprintf(stderr, "vigil-bench: creating %d cgroups in %d hierarchies (%s)%s%s...\n", o->ncg,
                s.nhier, layout, o->flat ? " at the top" : " under one parent",
                !o->procs   ? ""
                : o->active ? " with one active process each"
                            : " with one sleeping process each");
    }
    if (cg_create(&s, o->ncg, o->procs, o->active) != 0) {
        fprintf(stderr, "vigil-bench: %s\n",
                vigil_tool_stop ? "interrupted" : "could not create the cgroups (root needed)");
        goto out;
    }
    char body[1024];
    snprintf(body, sizeof body,
             "sources:\n  - plugin: cgroups\n    interval: %llums\n    match: ['/%s*']\n"
             "    max_cgroups: %d\n",
             (unsigned long long)(o->interval_ns / 1000000), s.prefix,
             /* Only ours are read; the bound also caps the directories
              * followed (8x + 1024), and other cgroups share the tree. */
             o->ncg * 4 + 4096);
    /* The first pass is the full scan (inotify watches, opening every
     * file): reported apart. */
    struct bench_pass pass[MAX_PASSES + 1];
    int got = bench_collect_run(&v, o, body, parse_cgroups, pass);
    if (got < 0) {
        goto out;
    }
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    double sorted[MAX_PASSES];
    int m = got - 1;
    for (int i = 0; i < m; i++) {
        sorted[i] = pass[i + 1].us_each;
    }
    double median = bench_median(sorted, m);
    if (o->json) {
        printf("\"cgroups\":{\"layout\":\"%s\",\"hierarchies\":%d,\"cgroups\":%d,\"read\":%zu,"
               "\"nested\":%s,\"procs\":%s,\"interval_s\":%.3f,\"nofile_soft\":%llu,"
               "\"first_pass_us_per_cgroup\":%.2f,\"us_per_cgroup_median\":%.2f,"
               "\"us_per_cgroup_min\":%.2f,\"us_per_cgroup_max\":%.2f,\"passes_us_per_cgroup\":[",
               layout, s.nhier, o->ncg, pass[got - 1].items, o->flat ? "false" : "true",
               !o->procs   ? "false"
               : o->active ? "\"active\""
                           : "\"sleeping\"",
               (double)o->interval_ns / 1e9, (unsigned long long)rl.rlim_cur, pass[0].us_each,
               median, sorted[0], sorted[m - 1]);
        for (int i = 1; i < got; i++) {
            printf("%s%.2f", i > 1 ? "," : "", pass[i].us_each);
        }
        printf("]}");
    } else {
        printf("cgroups: %d cgroups (%zu read per pass) in %d hierarchies (%s), %s, %s, "
               "interval %.1f s, RLIMIT_NOFILE %llu\n",
               o->ncg, pass[got - 1].items, s.nhier, layout,
               o->flat ? "at the top" : "under one parent",
               !o->procs   ? "no processes"
               : o->active ? "one active process each"
                           : "one sleeping process each",
               (double)o->interval_ns / 1e9, (unsigned long long)rl.rlim_cur);
        printf("  first pass (full scan): %.2f us CPU per cgroup (%.0f us)\n", pass[0].us_each,
               pass[0].us);
        printf("  next %d passes: median %.2f us CPU per cgroup per collection (min %.2f, max "
               "%.2f)\n",
               m, median, sorted[0], sorted[m - 1]);
    }
    rc = 0;
out:
    bench_vigild_cleanup(&v, false);
    cg_cleanup(&s);
    return rc;
}

/* ---- kvm ------------------------------------------------------------------------------ */

/* The pids now in /proc, sorted (caller frees), in *n. */
static int *list_pids(size_t *n)
{
    *n = 0;
    DIR *d = opendir("/proc");
    if (!d) {
        return NULL;
    }
    size_t cap = 1024;
    int *pids = malloc(cap * sizeof *pids);
    struct dirent *e;
    while (pids && (e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') {
            continue;
        }
        if (*n == cap) {
            int *np = realloc(pids, cap * 2 * sizeof *np);
            if (!np) {
                break;
            }
            pids = np;
            cap *= 2;
        }
        pids[(*n)++] = atoi(e->d_name);
    }
    closedir(d);
    if (pids) {
        qsort(pids, *n, sizeof *pids, cmp_int);
    }
    return pids;
}

/* Processes of `now` not in `before` (both sorted). */
static size_t count_new(const int *before, size_t nb, const int *now, size_t nn)
{
    size_t fresh = 0, i = 0;
    for (size_t j = 0; j < nn; j++) {
        while (i < nb && before[i] < now[j]) {
            i++;
        }
        fresh += i == nb || before[i] != now[j];
    }
    return fresh;
}

/* "collected N VMs in X us CPU" */
static bool parse_kvm(const char *line, struct bench_pass *out)
{
    return sscanf(line, "collected %zu VMs in %lf us CPU", &out->items, &out->us) == 2;
}

/* The kvm source's collection lines, the first (the full scan at start)
 * left out: the median X, and N of the last. */
static int kvm_collections(const char *log, double *median_us, size_t *vms)
{
    struct bench_pass pass[MAX_PASSES * 4 + 1];
    double us[MAX_PASSES * 4];
    int n = read_passes(log, parse_kvm, pass, MAX_PASSES * 4 + 1) - 1;
    for (int i = 0; i < n; i++) {
        us[i] = pass[i + 1].us;
        *vms = pass[i + 1].items;
    }
    if (n > 0) {
        *median_us = bench_median(us, n);
    }
    return n > 0 ? n : 0;
}

static int measure_kvm(const struct bench_collect_opts *o)
{
    struct bench_vigild v = {0};
    void *zctx = NULL, *sub = NULL;
    int rc = 3;
    char body[256];
    snprintf(body, sizeof body, "sources:\n  - plugin: kvm\n    interval: %llums\n",
             (unsigned long long)(o->interval_ns / 1000000));
    if (bench_vigild_setup(&v, false) != 0 || bench_vigild_start(&v, "1h", body, "debug") != 0) {
        goto out;
    }
    zctx = zmq_ctx_new();
    sub = zmq_socket(zctx, ZMQ_SUB);
    int linger = 0, timeout = 50;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "kvm.vm", 6);
    zmq_connect(sub, v.subscribe);
    /* Skip the first collection (at start: the full /proc scan) and wait
     * half an interval so that the window holds whole collections. */
    bench_sleep_ns(o->interval_ns / 2);
    /* The plugin looks at every process that appeared since its last full
     * scan: its cost follows the host's process churn, so say what it was. */
    size_t npids0 = 0, npids1 = 0;
    int *pids0 = list_pids(&npids0);
    int64_t cpu0 = bench_proc_cpu_ns(v.pid);
    uint64_t end = vigil_mono_ns() + (uint64_t)o->passes * o->interval_ns;
    uint64_t vm_events = 0;
    while (!vigil_tool_stop && vigil_mono_ns() < end) {
        char t[64];
        if (zmq_recv(sub, t, sizeof t, 0) >= 0) {
            vm_events++;
            int more;
            size_t ml = sizeof more;
            zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ml);
            while (more) {
                char b[1];
                zmq_recv(sub, b, sizeof b, 0);
                zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ml);
            }
        }
    }
    int64_t cpu1 = bench_proc_cpu_ns(v.pid);
    double plugin_us = -1;
    size_t plugin_vms = 0;
    int plugin_n = kvm_collections(v.log, &plugin_us, &plugin_vms);
    int *pids1 = list_pids(&npids1);
    size_t fresh = pids0 && pids1 ? count_new(pids0, npids0, pids1, npids1) : 0;
    free(pids0);
    free(pids1);
    bench_vigild_stop(&v);
    if (vigil_tool_stop) {
        fprintf(stderr, "vigil-bench: interrupted\n");
        goto out;
    }
    double per_pass_us = cpu0 >= 0 && cpu1 >= cpu0 ? (double)(cpu1 - cpu0) / 1e3 / o->passes : -1;
    double vms = (double)vm_events / o->passes;
    if (o->json) {
        printf("\"kvm\":{\"vms\":%.1f,\"passes\":%d,\"interval_s\":%.3f,"
               "\"us_cpu_per_collection\":%.1f,\"vigild_us_cpu_per_collection\":%.1f,"
               "\"processes\":%zu,\"new_processes\":%zu,",
               vms, plugin_n, (double)o->interval_ns / 1e9, plugin_us, per_pass_us, npids1, fresh);
        if (plugin_vms > 0) {
            printf("\"us_per_vm\":%.1f}", plugin_us / (double)plugin_vms);
        } else {
            printf("\"us_per_vm\":null}");
        }
    } else {
        printf("kvm: %zu VMs; %d collections, interval %.1f s: median %.1f us of the plugin's "
               "thread CPU per collection",
               plugin_vms, plugin_n, (double)o->interval_ns / 1e9, plugin_us);
        if (plugin_vms > 0) {
            printf(" (%.1f us per VM)", plugin_us / (double)plugin_vms);
        }
        printf("; vigild's whole CPU: %.1f us per collection\n", per_pass_us);
        printf("  %zu processes on the host, %zu of them new during the passes (the plugin "
               "checks new ones)\n",
               npids1, fresh);
    }
    rc = 0;
out:
    if (sub) {
        zmq_close(sub);
    }
    if (zctx) {
        zmq_ctx_term(zctx);
    }
    bench_vigild_cleanup(&v, false);
    return rc;
}

/* A whole number lo..hi in arg, into *out; else says so (as --name). */
static bool int_opt(const char *arg, const char *name, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (!*arg || *end || v < lo || v > hi) {
        fprintf(stderr, "vigil-bench collect: --%s %d..%d\n", name, lo, hi);
        return false;
    }
    *out = (int)v;
    return true;
}

int bench_collect_main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"cgroups", required_argument, NULL, 'n'}, {"procs", no_argument, NULL, 'P'},
        {"active", no_argument, NULL, 'A'},        {"flat", no_argument, NULL, 'F'},
        {"passes", required_argument, NULL, 'x'},  {"interval", required_argument, NULL, 'i'},
        {"no-kvm", no_argument, NULL, 'K'},        {"no-cgroups", no_argument, NULL, 'C'},
        {"net", no_argument, NULL, 'N'},           {"interfaces", required_argument, NULL, 'I'},
        {"netns", required_argument, NULL, 'M'},   {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    struct bench_collect_opts o = {.ncg = 1000,
                                   .passes = 5,
                                   .nif = 500,
                                   .nns = 100,
                                   .interval_ns = 2000000000ull,
                                   .do_cgroups = true,
                                   .do_kvm = true};
    int c;
    while ((c = getopt_long(argc, argv, "n:jh", lo, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (!int_opt(optarg, "cgroups", 1, 9999, &o.ncg)) {
                return 2;
            }
            break;
        case 'P':
            o.procs = true;
            break;
        case 'A':
            o.procs = o.active = true;
            break;
        case 'F':
            o.flat = true;
            break;
        case 'x':
            if (!int_opt(optarg, "passes", 1, MAX_PASSES, &o.passes)) {
                return 2;
            }
            break;
        case 'i':
            if (vigil_parse_duration(optarg, &o.interval_ns) != 0 || o.interval_ns < 100000000ull) {
                fprintf(stderr, "vigil-bench collect: --interval wants e.g. 2s (at least 100ms)\n");
                return 2;
            }
            break;
        case 'K':
            o.do_kvm = false;
            break;
        case 'C':
            o.do_cgroups = false;
            break;
        case 'N':
            o.do_net = true;
            break;
        case 'I':
            if (!int_opt(optarg, "interfaces", 1, 4000, &o.nif)) {
                return 2;
            }
            o.do_net = true;
            break;
        case 'M':
            if (!int_opt(optarg, "netns", 1, 1000, &o.nns)) {
                return 2;
            }
            o.do_net = true;
            break;
        case 'j':
            o.json = true;
            break;
        case 'h':
            printf("usage: vigil-bench collect [--cgroups N] [--procs|--active] [--flat] "
                   "[--passes P]\n"
                   "                           [--interval D] [--no-kvm] [--no-cgroups] "
                   "[--json]\n"
                   "       vigil-bench collect --net [--interfaces N] [--netns M] [--passes P]\n"
                   "                           [--interval D] [--json]\n"
                   "Creates N cgroups (default 1000) under one parent (--flat: at the top;\n"
                   "--procs: one sleeping process in each; --active: one that wakes every\n"
                   "100 ms and works ~20 us, so every cgroup's CPU usage moves),\n"
                   "runs vigild with the cgroups source for P+1 passes (default 5) every D\n"
                   "(default 2s) and reports its CPU per cgroup per collection; then the kvm\n"
                   "source over the VMs present. Removes everything it made.\n"
                   "--net instead: M network namespaces (default 100, at most N) with a\n"
                   "sleeping process each and N veth pairs (default 500) spread over them, one\n"
                   "end in each namespace, the other here; runs vigild with the net source\n"
                   "alone and reports its CPU per collection, per interface and per namespace.\n"
                   "Needs root and iproute2; removes them all, also a killed run's.\n");
            return 0;
        default:
            return 2;
        }
    }
    if (o.do_net && o.nns > o.nif) {
        fprintf(stderr, "vigil-bench collect: --netns at most --interfaces (one veth each)\n");
        return 2;
    }
    int rc = 0;
    if (o.json) {
        printf("{");
    }
    if (o.do_net) {
        /* A measurement of its own: the other sources' vigilds would
         * read the namespaces and veths too. */
        rc = bench_collect_net(&o);
        if (rc == 3 && o.json) {
            printf("\"net\":null");
        }
        o.do_cgroups = o.do_kvm = false;
    }
    if (o.do_cgroups) {
        rc = measure_cgroups(&o);
        if (rc == 3 && o.json) {
            printf("\"cgroups\":null");
        }
    }
    if (o.do_kvm && !vigil_tool_stop) {
        if (o.json && o.do_cgroups) {
            printf(",");
        }
        int k = measure_kvm(&o);
        if (k == 3 && o.json) {
            printf("\"kvm\":null");
        }
        rc = rc > k ? rc : k;
    }
    if (o.json) {
        printf("}\n");
    }
    return rc;
}

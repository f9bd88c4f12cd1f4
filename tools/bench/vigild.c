/* The vigild under test: either one we start from the build tree in a temp
 * folder of our own (own endpoints, own config, own state_dir), or a running
 * one we attach to with -c (endpoints and sink from its config, its pid
 * found from the socket it listens on). Also the benchmark's rules and the
 * /proc readings (CPU time, RSS).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "config.h"
#include "log.h"

#define START_TIMEOUT_S 15
#define STOP_TIMEOUT_S 20

/* ---- Small helpers ------------------------------------------------------------ */

void bench_sleep_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int bench_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        return -1;
    }
    size_t n = strlen(text);
    int rc = fwrite(text, 1, n, f) == n ? 0 : -1;
    if (fclose(f) != 0) {
        rc = -1;
    }
    return rc;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void bench_rmtree(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *bench_build_dir(void)
{
    static char dir[PATH_MAX];
    if (!dir[0]) {
        ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
        if (n <= 0) {
            snprintf(dir, sizeof dir, ".");
        } else {
            dir[n] = '\0';
            char *slash = strrchr(dir, '/');
            if (slash) {
                *slash = '\0';
            }
        }
    }
    return dir;
}

const char *bench_plugin_dir(bool test_plugins)
{
    static char dir[PATH_MAX + 16]; /* the build dir (< PATH_MAX) and a leaf */
    struct stat st;
    snprintf(dir, sizeof dir, "%s/%s", bench_build_dir(),
             test_plugins ? "tests/plugins" : "plugins");
    if (!test_plugins && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        return VIGIL_DEFAULT_PLUGIN_DIR;
    }
    return dir;
}

/* ---- /proc ----------------------------------------------------------------------- */

int64_t bench_proc_cpu_ns(pid_t pid)
{
    /* The process's CPU clock: utime + stime at ns resolution (the sum
     * /proc/<pid>/stat gives in clock ticks). */
    clockid_t clk;
    struct timespec ts;
    if (clock_getcpuclockid(pid, &clk) == 0 && clock_gettime(clk, &ts) == 0) {
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    }
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        return -1;
    }
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    /* After ")": state(3) ... utime is field 14, stime 15. */
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return -1;
    }
    return (int64_t)((ut + st) * (1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK)));
}

int64_t bench_proc_status_bytes(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    int64_t out = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) == 0) {
            long long kb;
            if (sscanf(line + kl, " %lld", &kb) == 1) {
                out = (int64_t)kb * 1024;
            }
            break;
        }
    }
    fclose(f);
    return out;
}

void bench_threads_read(pid_t pid, struct bench_threads *out)
{
    out->n = 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) {
        return;
    }
    struct dirent *e;
    while (out->n < BENCH_MAX_THREADS && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') {
            continue;
        }
        char sp[320], buf[1024];
        snprintf(sp, sizeof sp, "/proc/%d/task/%s/stat", (int)pid, e->d_name);
        int fd = open(sp, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) {
            continue;
        }
        buf[n] = '\0';
        /* "tid (comm) state ...": comm may hold spaces and parentheses. */
        char *open_p = strchr(buf, '('), *close_p = strrchr(buf, ')');
        unsigned long long ut, st;
        if (!open_p || !close_p || close_p < open_p ||
            sscanf(close_p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                   &st) != 2) {
            continue;
        }
        size_t len = (size_t)(close_p - open_p - 1);
        len = len < sizeof out->t[0].name ? len : sizeof out->t[0].name - 1;
        memcpy(out->t[out->n].name, open_p + 1, len);
        out->t[out->n].name[len] = '\0';
        out->t[out->n].tid = (pid_t)atoi(e->d_name);
        out->t[out->n].ticks = ut + st;
        out->n++;
    }
    closedir(d);
}

int bench_threads_diff(const struct bench_threads *before, const struct bench_threads *after,
                       struct bench_threads *out)
{
    out->n = 0;
    uint64_t ns_per_tick = 1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK);
    for (int i = 0; i < after->n; i++) {
        uint64_t base = 0;
        for (int j = 0; j < before->n; j++) {
            if (before->t[j].tid == after->t[i].tid) {
                base = before->t[j].ticks;
            }
        }
        uint64_t d = after->t[i].ticks > base ? after->t[i].ticks - base : 0;
        int k = 0;
        while (k < out->n && strcmp(out->t[k].name, after->t[i].name) != 0) {
            k++;
        }
        if (k == out->n) {
            out->t[k].tid = after->t[i].tid;
            snprintf(out->t[k].name, sizeof out->t[k].name, "%s", after->t[i].name);
            out->t[k].ticks = 0;
            out->n++;
        }
        out->t[k].ticks += d * ns_per_tick;
    }
    /* Heaviest first: a handful of entries, insertion sort. */
    for (int i = 1; i < out->n; i++) {
        for (int j = i; j > 0 && out->t[j].ticks > out->t[j - 1].ticks; j--) {
            struct bench_thread tmp = out->t[j];
            out->t[j] = out->t[j - 1];
            out->t[j - 1] = tmp;
        }
    }
    return out->n;
}

/* ---- The rules ---------------------------------------------------------------------- */

/* n rules cycling threshold, bound, policy over the bench topic. Against
 * the producers' spike schedule (producer.c: one spike of each kind per
 * BENCH_PERIOD events of a producer), each threshold and bound rule makes
 * 2 verdicts (fired, then resolved on the series' next event) and each
 * policy rule 1 per BENCH_PERIOD events: with 10 rules (4 threshold, 3
 * bound, 3 policy) 17 verdicts per 2048 events, 0.83 %. */
char *bench_rules_yaml(int n)
{
    size_t cap = (size_t)n * 700 + 64, len = 0;
    char *y = malloc(cap);
    if (!y) {
        return NULL;
    }
    len += (size_t)snprintf(y + len, cap - len, "rules:\n");
    static const char *const exprs[4] = {
        "values.cpu_pct > 95",
        "values.cpu_pct > 97 && labels.series ~ \"p*\"",
        "max(values.cpu_pct, values.latency_ms * 2) > 98",
        "values.cpu_pct > 90 && labels.action in [\"read\", \"write\"]",
    };
    for (int i = 0; i < n; i++) {
        switch (i % 3) {
        case 0:
            len += (size_t)snprintf(y + len, cap - len,
                                    "  - name: cpu-%d\n    kind: threshold\n    match: " BENCH_TOPIC
                                    "\n    expr: '%s'\n%s    group_by: [series]\n"
                                    "    message: \"{labels.series}: CPU at {values.cpu_pct}%%\"\n",
                                    i, exprs[(i / 3) % 4],
                                    (i / 3) % 2 ? "    clear: values.cpu_pct < 80\n" : "");
            break;
        case 1:
            len +=
                (size_t)snprintf(y + len, cap - len,
                                 "  - name: overhead-%d\n    kind: bound\n    match: " BENCH_TOPIC
                                 "\n    weights: { H: 1.0, C: 0.001, M: 0.000000001 }\n"
                                 "    terms: { H: values.cpu_pct, C: values.exits_per_s, "
                                 "M: values.mem_bytes }\n"
                                 "    max: { H: 90, C: 20000, M: 2000000000 }\n"
                                 "    group_by: [series]\n",
                                 i);
            break;
        default:
            len +=
                (size_t)snprintf(y + len, cap - len,
                                 "  - name: access-%d\n    kind: policy\n    match: " BENCH_TOPIC
                                 "\n    default: deny\n    rules:\n"
                                 "      - deny: { subject: 'guest:*', action: [write, delete] }\n"
                                 "        id: no-guest-writes\n"
                                 "      - allow: { subject: 'user:*', action: [read, write], "
                                 "resource: '/srv/**' }\n"
                                 "      - allow: { subject: 'admin:*' }\n",
                                 i);
            break;
        }
    }
    return y;
}

/* ---- Starting our own ------------------------------------------------------------------ */

int bench_free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0) {
        port = ntohs(sa.sin_port);
    }
    close(fd);
    return port;
}

static void print_log_tail(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return;
    }
    char line[1024];
    char *lines[20] = {0};
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        free(lines[n % 20]);
        lines[n % 20] = strdup(line);
        n++;
    }
    fclose(f);
    fprintf(stderr, "vigil-bench: the end of vigild's log (%s):\n", path);
    for (size_t i = n > 20 ? n - 20 : 0; i < n; i++) {
        fprintf(stderr, "  %s", lines[i % 20] ? lines[i % 20] : "\n");
        free(lines[i % 20]);
        lines[i % 20] = NULL;
    }
}

static bool log_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return false;
    }
    char line[2048];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        found = strstr(line, needle) != NULL;
    }
    fclose(f);
    return found;
}

int bench_vigild_setup(struct bench_vigild *v, bool tcp)
{
    memset(v, 0, sizeof *v);
    /* TMPDIR picks the file system the sink's file is written to. */
    const char *tmp = getenv("TMPDIR");
    tmp = tmp && *tmp ? tmp : "/tmp";
    if ((size_t)snprintf(v->dir, sizeof v->dir, "%s/vigil-bench.XXXXXX", tmp) >= sizeof v->dir) {
        fprintf(stderr, "vigil-bench: TMPDIR is too long: %s\n", tmp);
        v->dir[0] = '\0';
        return -1;
    }
    if (!mkdtemp(v->dir)) {
        fprintf(stderr, "vigil-bench: cannot make a temp folder in %s: %s\n", tmp, strerror(errno));
        v->dir[0] = '\0';
        return -1;
    }
    v->ours = true;
    snprintf(v->cfg, sizeof v->cfg, "%s/vigil.yaml", v->dir);
    snprintf(v->log, sizeof v->log, "%s/vigild.log", v->dir);
    if (tcp) {
        int a = bench_free_tcp_port(), b = bench_free_tcp_port();
        if (a < 0 || b < 0 || a == b) {
            fprintf(stderr, "vigil-bench: cannot find free loopback ports\n");
            return -1;
        }
        snprintf(v->publish, sizeof v->publish, "tcp://127.0.0.1:%d", a);
        snprintf(v->subscribe, sizeof v->subscribe, "tcp://127.0.0.1:%d", b);
    } else {
        snprintf(v->publish, sizeof v->publish, "ipc://%s/pub", v->dir);
        snprintf(v->subscribe, sizeof v->subscribe, "ipc://%s/sub", v->dir);
    }
    return 0;
}

int bench_vigild_write(struct bench_vigild *v, const char *self_interval, const char *body)
{
    size_t cap = strlen(body) + strlen(v->bus_extra) + 4 * PATH_MAX + 256;
    char *yaml = malloc(cap);
    if (!yaml || vigil_parse_duration(self_interval, &v->self_interval_ns) != 0) {
        free(yaml);
        return -1;
    }
    int n = snprintf(yaml, cap,
                     "# written by vigil-bench\nplugin_dir: %s\nbus:\n  publish: %s\n"
                     "  subscribe: %s\n%s%s%s%sself:\n  interval: %s\n",
                     bench_plugin_dir(v->test_plugins), v->publish, v->subscribe,
                     v->coalesce[0] ? "  coalesce: " : "", v->coalesce, v->coalesce[0] ? "\n" : "",
                     v->bus_extra, self_interval);
    n += snprintf(yaml + n, cap - (size_t)n, "state_dir: %s/state\n", v->dir);
    snprintf(yaml + n, cap - (size_t)n, "%s", body);
    /* Renamed into place: a reload never reads half a file. */
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.new", v->cfg);
    int rc = bench_write_file(tmp, yaml);
    free(yaml);
    if (rc != 0 || rename(tmp, v->cfg) != 0) {
        fprintf(stderr, "vigil-bench: cannot write %s: %s\n", v->cfg, strerror(errno));
        return -1;
    }
    return 0;
}

int bench_vigild_start(struct bench_vigild *v, const char *self_interval, const char *body,
                       const char *log_level)
{
    if (bench_vigild_write(v, self_interval, body) != 0) {
        return -1;
    }
    char vigild[PATH_MAX];
    if (snprintf(vigild, sizeof vigild, "%s/vigild", bench_build_dir()) >= (int)sizeof vigild) {
        fprintf(stderr, "vigil-bench: the build folder's path is too long\n");
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        /* If the bench dies, so does its daemon. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) {
            _exit(127);
        }
        int fd = open(v->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(vigild, "vigild", "-c", v->cfg, "-l", log_level, (char *)NULL);
        fprintf(stderr, "cannot run %s: %s\n", vigild, strerror(errno));
        _exit(127);
    }
    v->pid = pid;
    uint64_t deadline = vigil_mono_ns() + START_TIMEOUT_S * 1000000000ull;
    while (vigil_mono_ns() < deadline) {
        if (log_has(v->log, " started on host ")) {
            return 0;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            v->pid = 0;
            fprintf(stderr, "vigil-bench: vigild exited at start (status %d)\n",
                    WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
            print_log_tail(v->log);
            return -1;
        }
        bench_sleep_ns(20000000);
    }
    fprintf(stderr, "vigil-bench: vigild did not start within %d s\n", START_TIMEOUT_S);
    print_log_tail(v->log);
    return -1;
}

int bench_vigild_stop(struct bench_vigild *v)
{
    if (!v->ours || v->pid <= 0) {
        return -1;
    }
    kill(v->pid, SIGTERM);
    uint64_t deadline = vigil_mono_ns() + STOP_TIMEOUT_S * 1000000000ull;
    int st;
    while (vigil_mono_ns() < deadline) {
        if (waitpid(v->pid, &st, WNOHANG) == v->pid) {
            v->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        bench_sleep_ns(10000000);
    }
    fprintf(stderr, "vigil-bench: vigild did not stop within %d s; killed\n", STOP_TIMEOUT_S);
    kill(v->pid, SIGKILL);
    waitpid(v->pid, &st, 0);
    v->pid = 0;
    return -1;
}

void bench_vigild_cleanup(struct bench_vigild *v, bool keep)
{
    if (v->ours && v->pid > 0) {
        kill(v->pid, SIGKILL);
        waitpid(v->pid, NULL, 0);
        v->pid = 0;
    }
    if (v->ours && v->dir[0]) {
        if (keep) {
            fprintf(stderr, "vigil-bench: kept %s\n", v->dir);
        } else {
            bench_rmtree(v->dir);
        }
        v->dir[0] = '\0';
    }
}

/* ---- Attaching to a running one (-c) ---------------------------------------------------- */

/* Inodes of listening sockets bound to the endpoint (ipc:// path, or
 * tcp:// port on a local address). Returns how many were found. */
static size_t listening_inodes(const char *endpoint, unsigned long *ino, size_t max)
{
    size_t n = 0;
    char line[1024];
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        const char *path = endpoint + 6;
        FILE *f = fopen("/proc/net/unix", "r");
        if (!f) {
            return 0;
        }
        while (n < max && fgets(line, sizeof line, f)) {
            unsigned long flags, inode;
            char p[512] = "";
            /* Num RefCount Protocol Flags Type St Inode Path */
            if (sscanf(line, "%*s %*s %*s %lx %*s %*s %lu %511s", &flags, &inode, p) == 3 &&
                (flags & 0x10000) && strcmp(p, path) == 0) { /* __SO_ACCEPTCON: listening */
                ino[n++] = inode;
            }
        }
        fclose(f);
    } else if (strncmp(endpoint, "tcp://", 6) == 0) {
        const char *colon = strrchr(endpoint, ':');
        int port = colon ? atoi(colon + 1) : 0;
        static const char *const files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
        for (int fi = 0; fi < 2 && port > 0; fi++) {
            FILE *f = fopen(files[fi], "r");
            if (!f) {
                continue;
            }
            while (n < max && fgets(line, sizeof line, f)) {
                char local[64];
                unsigned st;
                unsigned long inode;
                if (sscanf(line, "%*s %63s %*s %x %*s %*s %*s %*s %*s %lu", local, &st, &inode) ==
                    3) {
                    char *c = strrchr(local, ':');
                    if (c && st == 0x0a && (int)strtol(c + 1, NULL, 16) == port) {
                        ino[n++] = inode;
                    }
                }
            }
            fclose(f);
        }
    }
    return n;
}

static pid_t pid_holding(const unsigned long *ino, size_t n)
{
    DIR *proc = opendir("/proc");
    if (!proc) {
        return 0;
    }
    pid_t found = 0;
    struct dirent *e;
    while (!found && (e = readdir(proc))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') {
            continue;
        }
        char fdpath[300];
        snprintf(fdpath, sizeof fdpath, "/proc/%s/fd", e->d_name);
        DIR *fds = opendir(fdpath);
        if (!fds) {
            continue;
        }
        struct dirent *f;
        while (!found && (f = readdir(fds))) {
            char link[600], target[128];
            snprintf(link, sizeof link, "%s/%s", fdpath, f->d_name);
            ssize_t len = readlink(link, target, sizeof target - 1);
            if (len <= 0) {
                continue;
            }
            target[len] = '\0';
            unsigned long i;
            if (sscanf(target, "socket:[%lu]", &i) == 1) {
                for (size_t k = 0; k < n; k++) {
                    if (ino[k] == i) {
                        found = (pid_t)atoi(e->d_name);
                    }
                }
            }
        }
        closedir(fds);
    }
    closedir(proc);
    return found;
}

int bench_vigild_attach(struct bench_vigild *v, const char *config, enum bench_sink sink,
                        pid_t explicit_pid)
{
    memset(v, 0, sizeof *v);
    struct vigil_diag d;
    vigil_diag_init(&d);
    struct vigil_config *c = vigil_config_load(config, &d);
    int rc = -1;
    if (!c || d.count) {
        vigil_diag_print(&d, stderr);
        fprintf(stderr, "vigil-bench: cannot read %s\n", config);
        goto out;
    }
    snprintf(v->cfg, sizeof v->cfg, "%s", config);
    snprintf(v->publish, sizeof v->publish, "%s", c->bus.publish);
    snprintf(v->subscribe, sizeof v->subscribe, "%s", c->bus.subscribe);
    v->self_interval_ns = c->self_interval_ns;
    const char *want = sink == BENCH_SINK_FILE      ? "file"
                       : sink == BENCH_SINK_CAPTURE ? "test_capture"
                                                    : "discard";
    const struct vigil_instance_conf *inst = NULL;
    for (size_t i = 0; i < c->nsinks && !inst; i++) {
        if (strcmp(c->sinks[i].plugin, want) == 0) {
            inst = &c->sinks[i];
        }
    }
    if (!inst) {
        fprintf(stderr, "vigil-bench: %s has no sink with plugin: %s\n", config, want);
        goto out;
    }
    snprintf(v->sink_name, sizeof v->sink_name, "%s", inst->name);
    for (size_t m = 0; m < inst->nmatch; m++) {
        if (strncmp(BENCH_TOPIC, inst->match[m], strlen(inst->match[m])) == 0) {
            break;
        }
        if (m + 1 == inst->nmatch) {
            fprintf(stderr, "vigil-bench: warning: sink %s does not match topic %s\n", inst->name,
                    BENCH_TOPIC);
        }
    }
    if (sink != BENCH_SINK_DISCARD) {
        const char *path = NULL;
        if (vigil_conf_string(vigil_conf_get(inst->own, "path"), &path) != 0 || !path[0]) {
            fprintf(stderr, "vigil-bench: sink %s has no path\n", inst->name);
            goto out;
        }
        if (path[0] == '/') {
            snprintf(v->sink_path, sizeof v->sink_path, "%s", path);
        } else {
            snprintf(v->sink_path, sizeof v->sink_path, "%s/%s", c->dir, path);
        }
    } else {
        for (size_t m = 0; m < inst->nmatch; m++) {
            if (strncmp(inst->match[m], BENCH_TOPIC, strlen(inst->match[m])) == 0 &&
                strcmp(inst->match[m], BENCH_TOPIC) != 0 &&
                strncmp(inst->match[m], "bench.", 6) != 0) {
                fprintf(stderr,
                        "vigil-bench: warning: sink %s also takes other topics (match '%s'): "
                        "its delivered count is not the bench's alone, so 'lost' is "
                        "approximate; give it match: [bench.]\n",
                        inst->name, inst->match[m]);
            }
        }
    }
    if (explicit_pid > 0) {
        v->pid = explicit_pid;
    } else {
        unsigned long ino[64];
        size_t n = listening_inodes(v->publish, ino, 64);
        v->pid = n ? pid_holding(ino, n) : 0;
        if (!v->pid) {
            fprintf(stderr,
                    "vigil-bench: cannot find the pid of the vigild listening on %s (give "
                    "--pid): CPU and RSS will not be measured\n",
                    v->publish);
        }
    }
    rc = 0;
out:
    vigil_config_free(c);
    vigil_diag_fini(&d);
    return rc;
}

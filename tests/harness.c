/* Integration-test harness (see harness.h). */
#include "harness.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) {
        buf[len] = '\0';
    }
    return buf;
}

/* Links every shared object (.so) of `from` into the folder `into`, but for
 * names it already holds. Returns 0 or -1. */
static int link_plugins(const char *into, const char *from)
{
    DIR *d = opendir(from);
    if (!d) {
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".so") != 0) {
            continue;
        }
        char src[PATH_MAX], dst[PATH_MAX];
        snprintf(src, sizeof src, "%s/%s", from, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", into, e->d_name);
        if (symlink(src, dst) != 0 && errno != EEXIST) {
            rc = -1;
        }
    }
    closedir(d);
    return rc;
}

int vd_setup(struct vd *v, const char *self_interval, const char *body)
{
    return vd_setup_bus(v, self_interval, NULL, body);
}

int vd_setup_bus(struct vd *v, const char *self_interval, const char *bus_keys, const char *body)
{
    memset(v, 0, sizeof *v);
    snprintf(v->dir, sizeof v->dir, "/tmp/vigil-test.XXXXXX");
    if (!mkdtemp(v->dir)) {
        return -1;
    }
    snprintf(v->cfg, sizeof v->cfg, "%s/vigil.yaml", v->dir);
    snprintf(v->log, sizeof v->log, "%s/vigild.log", v->dir);
    snprintf(v->pub, sizeof v->pub, "ipc://%s/pub", v->dir);
    snprintf(v->sub, sizeof v->sub, "ipc://%s/sub", v->dir);
    snprintf(v->plugins, sizeof v->plugins, "%s/plugins", v->dir);
    /* The test plugins first: a build folder made before they moved out of
     * the real plugin folder may still hold stale copies there. */
    if (mkdir(v->plugins, 0755) != 0 || link_plugins(v->plugins, VIGIL_TEST_PLUGIN_DIR) != 0 ||
        link_plugins(v->plugins, VIGIL_PLUGIN_DIR) != 0) {
        return -1;
    }
    return vd_rewrite_bus(v, self_interval, bus_keys, body);
}

int vd_rewrite(struct vd *v, const char *self_interval, const char *body)
{
    return vd_rewrite_bus(v, self_interval, NULL, body);
}

int vd_rewrite_bus(struct vd *v, const char *self_interval, const char *bus_keys, const char *body)
{
    /* A new file renamed over the old: vigild never reads half of one. */
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.new", v->cfg);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        return -1;
    }
    /* bus_keys may name its own subscribe endpoint (tcp, for another host). */
    const char *own_sub = bus_keys ? strstr(bus_keys, "  subscribe: ") : NULL;
    if (own_sub) {
        own_sub += strlen("  subscribe: ");
        snprintf(v->sub, sizeof v->sub, "%.*s", (int)strcspn(own_sub, "\n"), own_sub);
        fprintf(f, "plugin_dir: %s\nbus:\n  publish: %s\n", v->plugins, v->pub);
    } else {
        fprintf(f, "plugin_dir: %s\nbus:\n  publish: %s\n  subscribe: %s\n", v->plugins, v->pub,
                v->sub);
    }
    fprintf(f, "%sself:\n  interval: %s\n", bus_keys ? bus_keys : "",
            self_interval ? self_interval : "10s");
    for (const char *p = body; p && *p; p++) {
        if (strncmp(p, "@DIR@", 5) == 0) {
            fputs(v->dir, f);
            p += 4;
        } else {
            fputc(*p, f);
        }
    }
    /* Last, so the lines tests expect errors at stay where they were; a
     * body may set its own. Sink spools go under it. */
    if (!body || !strstr(body, "state_dir:")) {
        fprintf(f, "\nstate_dir: %s/state\n", v->dir);
    }
    if (fclose(f) != 0) {
        return -1;
    }
    return rename(tmp, v->cfg);
}

/* The ip(8) program of iproute2, or NULL. */
const char *ip_tool(void)
{
    static const char *const where[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
        if (access(where[i], X_OK) == 0) {
            return where[i];
        }
    }
    return NULL;
}

/* True when /proc says pid runs the build's vigild (not ip, not a shell). */
static bool runs_vigild(pid_t pid)
{
    char link[64], exe[PATH_MAX];
    snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(link, exe, sizeof exe - 1);
    if (n <= 0) {
        return false;
    }
    exe[n] = '\0';
    return n >= 7 && strcmp(exe + n - 7, "/vigild") == 0;
}

static int start_in(struct vd *v, const char *netns)
{
    char *before = slurp(v->log);
    size_t skip = before ? strlen(before) : 0;
    free(before);
    const char *ip = netns ? ip_tool() : NULL;
    if (netns && !ip) {
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        int fd = open(v->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        if (netns) {
            /* A test killed before its teardown must not leave a vigild
             * running in a namespace only it knew about. */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            /* `ip netns exec` enters the namespace and execs its command
             * (no fork), so this pid becomes vigild's: checked below. */
            execl(ip, "ip", "netns", "exec", netns, VIGIL_BUILD_DIR "/vigild", "-c", v->cfg,
                  (char *)NULL);
        } else {
            execl(VIGIL_BUILD_DIR "/vigild", "vigild", "-c", v->cfg, (char *)NULL);
        }
        _exit(127);
    }
    v->pid = pid;
    double deadline = now_s() + 10;
    while (now_s() < deadline) {
        /* This run's start line (a restart appends to the same log; and
         * "vigild not started" must not count). */
        char *log = slurp(v->log);
        bool up = log && strlen(log) > skip && strstr(log + skip, " started on host ");
        free(log);
        if (up) {
            if (netns && !runs_vigild(pid)) {
                fprintf(stderr, "pid %d is not vigild: signals would miss it\n", (int)pid);
                return -1;
            }
            return 0;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            v->pid = 0;
            return -1;
        }
        sleep_ms(20);
    }
    return -1;
}

int vd_start(struct vd *v)
{
    return start_in(v, NULL);
}

int vd_start_netns(struct vd *v, const char *netns)
{
    return start_in(v, netns);
}

int vd_stop(struct vd *v, int timeout_s, double *secs)
{
    if (v->pid <= 0) {
        return -1;
    }
    double t0 = now_s();
    kill(v->pid, SIGTERM);
    int st = 0;
    while (now_s() - t0 < timeout_s) {
        if (waitpid(v->pid, &st, WNOHANG) == v->pid) {
            v->pid = 0;
            if (secs) {
                *secs = now_s() - t0;
            }
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        sleep_ms(10);
    }
    kill(v->pid, SIGKILL);
    waitpid(v->pid, &st, 0);
    v->pid = 0;
    return -1;
}

void vd_kill9(struct vd *v)
{
    if (v->pid > 0) {
        kill(v->pid, SIGKILL);
        waitpid(v->pid, NULL, 0);
        v->pid = 0;
    }
}

void vd_cleanup(struct vd *v)
{
    if (v->pid > 0) {
        kill(v->pid, SIGKILL);
        waitpid(v->pid, NULL, 0);
        v->pid = 0;
    }
    if (v->dir[0]) {
        if (getenv("VIGIL_KEEP_TEST_DIRS")) {
            fprintf(stderr, "kept %s\n", v->dir);
            return;
        }
        remove_tree(v->dir);
    }
}

void remove_tree(const char *dir)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (dir[0] && system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", dir);
    }
}

/* Appends what is readable on fd to *buf; false at EOF. */
static bool drain_fd(int fd, char **buf, size_t *len)
{
    char tmp[65536];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0) {
        return n < 0 && errno == EINTR;
    }
    char *nb = realloc(*buf, *len + (size_t)n + 1);
    if (!nb) {
        return false;
    }
    memcpy(nb + *len, tmp, (size_t)n);
    *len += (size_t)n;
    nb[*len] = '\0';
    *buf = nb;
    return true;
}

int run(char *const argv[], const char *in, size_t in_len, char **out, char **err, int timeout_s)
{
    int pin[2], pout[2], perr[2];
    if (pipe(pin) || pipe(pout) || pipe(perr)) {
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        close(pin[1]);
        close(pout[0]);
        close(perr[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    signal(SIGPIPE, SIG_IGN);
    size_t in_off = 0, olen = 0, elen = 0;
    char *obuf = calloc(1, 1), *ebuf = calloc(1, 1);
    bool oopen = true, eopen = true;
    int win = in && in_len ? pin[1] : -1;
    if (win < 0) {
        close(pin[1]);
    }
    double deadline = now_s() + timeout_s;
    while ((oopen || eopen) && now_s() < deadline) {
        struct pollfd p[3] = {{.fd = oopen ? pout[0] : -1, .events = POLLIN},
                              {.fd = eopen ? perr[0] : -1, .events = POLLIN},
                              {.fd = win, .events = POLLOUT}};
        if (poll(p, 3, 100) <= 0) {
            continue;
        }
        if (p[0].revents) {
            oopen = drain_fd(pout[0], &obuf, &olen);
        }
        if (p[1].revents) {
            eopen = drain_fd(perr[0], &ebuf, &elen);
        }
        if (win >= 0 && p[2].revents) {
            ssize_t n = write(win, in + in_off, in_len - in_off > 65536 ? 65536 : in_len - in_off);
            if (n > 0) {
                in_off += (size_t)n;
            }
            if (n < 0 || in_off == in_len) {
                close(win);
                win = -1;
            }
        }
    }
    if (win >= 0) {
        close(win);
    }
    close(pout[0]);
    close(perr[0]);
    int st = 0, status = -1;
    pid_t r;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && now_s() < deadline) {
        sleep_ms(10);
    }
    if (r == pid) {
        status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    } else {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    if (out) {
        *out = obuf;
    } else {
        free(obuf);
    }
    if (err) {
        *err = ebuf;
    } else {
        free(ebuf);
    }
    return status;
}

size_t count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return 0;
    }
    size_t n = 0, cap = 0;
    char *line = NULL;
    while (getline(&line, &cap, f) != -1) {
        n += strstr(line, needle) != NULL;
    }
    free(line);
    fclose(f);
    return n;
}

bool wait_lines(const char *path, const char *needle, size_t n, int timeout_s)
{
    double deadline = now_s() + timeout_s;
    while (now_s() < deadline) {
        if (count_lines(path, needle) >= n) {
            return true;
        }
        sleep_ms(20);
    }
    return count_lines(path, needle) >= n;
}

bool seqs_complete(const char *path, const char *source, size_t n)
{
    char needle[256];
    snprintf(needle, sizeof needle, "\"source\":\"%s\"", source);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return false;
    }
    size_t expect = 1, cap = 0;
    char *line = NULL;
    bool ok = true;
    while (getline(&line, &cap, f) != -1) {
        if (!strstr(line, needle)) {
            continue;
        }
        const char *s = strstr(line, "\"seq\":");
        unsigned long long seq = s ? strtoull(s + 6, NULL, 10) : 0;
        if (seq != expect) {
            fprintf(stderr, "%s: source %s: seq %llu where %zu was expected\n", path, source, seq,
                    expect);
            ok = false;
            break;
        }
        expect++;
    }
    free(line);
    fclose(f);
    if (ok && expect - 1 != n) {
        fprintf(stderr, "%s: source %s: %zu events, expected %zu\n", path, source, expect - 1, n);
        ok = false;
    }
    return ok;
}

bool json_lines_valid(const char *path)
{
    char *const argv[] = {"/usr/bin/python3", "-c",
                          "import json,sys\n"
                          "n=0\n"
                          "for l in open(sys.argv[1], encoding='utf-8'):\n"
                          "    json.loads(l); n+=1\n"
                          "print(n)\n",
                          (char *)path, NULL};
    char *out = NULL, *err = NULL;
    int rc = run(argv, NULL, 0, &out, &err, 60);
    if (rc != 0) {
        fprintf(stderr, "python3 json check of %s failed (%d): %s\n", path, rc, err);
    }
    free(out);
    free(err);
    return rc == 0;
}

bool seqs_at_least_once(const char *path, const char *source, size_t n, size_t *dups)
{
    char needle[256];
    snprintf(needle, sizeof needle, "\"source\":\"%s\"", source);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return false;
    }
    unsigned *seen = calloc(n + 1, sizeof *seen);
    size_t cap = 0, extra = 0, missing = 0;
    char *line = NULL;
    bool ok = seen != NULL;
    while (ok && getline(&line, &cap, f) != -1) {
        if (!strstr(line, needle)) {
            continue;
        }
        const char *s = strstr(line, "\"seq\":");
        unsigned long long seq = s ? strtoull(s + 6, NULL, 10) : 0;
        if (seq < 1 || seq > n) {
            fprintf(stderr, "%s: source %s: seq %llu outside 1..%zu\n", path, source, seq, n);
            ok = false;
        } else if (seen[seq]++) {
            extra++;
        }
    }
    for (size_t i = 1; ok && i <= n; i++) {
        if (!seen[i] && missing++ < 5) {
            fprintf(stderr, "%s: source %s: seq %zu missing\n", path, source, i);
        }
    }
    if (missing) {
        fprintf(stderr, "%s: source %s: %zu of %zu missing\n", path, source, missing, n);
        ok = false;
    }
    if (dups) {
        *dups = extra;
    }
    free(seen);
    free(line);
    fclose(f);
    return ok;
}

bool self_value(const char *path, const char *instance, const char *key, double *out)
{
    char inst[256];
    snprintf(inst, sizeof inst, "\"instance\":\"%s\"", instance);
    return self_value_of(path, inst, key, out);
}

bool self_value_of(const char *path, const char *needle, const char *key, double *out)
{
    char k[256];
    snprintf(k, sizeof k, "\"%s\":", key);
    FILE *f = fopen(path, "r");
    if (!f) {
        return false;
    }
    size_t cap = 0;
    char *line = NULL;
    bool found = false;
    while (getline(&line, &cap, f) != -1) {
        const char *at;
        if (strstr(line, "\"topic\":\"vigil.self\"") && strstr(line, needle) &&
            (at = strstr(line, k))) {
            *out = strtod(at + strlen(k), NULL);
            found = true;
        }
    }
    free(line);
    fclose(f);
    return found;
}

bool wait_self_value(const char *path, const char *instance, const char *key, double min,
                     int timeout_s)
{
    double deadline = now_s() + timeout_s, x = 0;
    while (now_s() < deadline) {
        if (self_value(path, instance, key, &x) && x >= min) {
            return true;
        }
        sleep_ms(50);
    }
    fprintf(stderr, "vigil.self %s %s: %g, waited for %g\n", instance, key, x, min);
    return false;
}

bool wait_self_equal(const char *path, const char *needle, const char *key, double want,
                     int timeout_s)
{
    double deadline = now_s() + timeout_s, x = -1;
    while (now_s() < deadline) {
        if (self_value_of(path, needle, key, &x) && x == want) {
            return true;
        }
        sleep_ms(50);
    }
    fprintf(stderr, "vigil.self %s %s: %g, waited for %g\n", needle, key, x, want);
    return false;
}

int vd_fixture_setup(void **state)
{
    struct vd *v = calloc(1, sizeof *v);
    *state = v;
    return v ? 0 : -1;
}

int vd_fixture_teardown(void **state)
{
    vd_cleanup(*state);
    free(*state);
    return 0;
}

const char *vd_path(const struct vd *v, const char *name)
{
    static char p[8][PATH_MAX + 300];
    static unsigned next;
    char *out = p[next++ % 8];
    snprintf(out, sizeof p[0], "%s/%s", v->dir, name);
    return out;
}

void vd_dump_log(const struct vd *v)
{
    char *log = slurp(v->log);
    fprintf(stderr, "---- vigild log ----\n%s--------------------\n", log ? log : "(none)");
    free(log);
}

bool vd_started(struct vd *v)
{
    return vd_started_netns(v, NULL);
}

bool vd_started_netns(struct vd *v, const char *netns)
{
    if (start_in(v, netns) == 0) {
        return true;
    }
    vd_dump_log(v);
    return false;
}

int free_loopback_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        port = ntohs(sa.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

bool vd_check_refuses(struct vd *v, const char *body, const char *where, const char *text)
{
    vd_cleanup(v);
    if (vd_setup(v, NULL, body) != 0) {
        return false;
    }
    char *const argv[] = {VIGIL_BUILD_DIR "/vigild", "--check", "-c", v->cfg, NULL};
    char *err = NULL;
    int rc = run(argv, NULL, 0, NULL, &err, 30);
    char at[PATH_MAX + 32];
    snprintf(at, sizeof at, "%s%s", v->cfg, where);
    bool ok = rc == 1 && err && strstr(err, at) && strstr(err, text);
    if (!ok) {
        fprintf(stderr, "vigild --check exited %d; wanted '%s' and '%s' in: %s\n", rc, at, text,
                err ? err : "");
    }
    free(err);
    return ok;
}

bool vd_check_refuses_all(struct vd *v, const struct bad_conf *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!vd_check_refuses(v, cases[i].yaml, cases[i].where, cases[i].text)) {
            fprintf(stderr, "config error case %zu was not refused as expected\n", i);
            return false;
        }
    }
    return true;
}

/* The supervisor of an isolated source (see isolate.h): on the instance's
 * thread in vigild, it starts the plugin host, relays its events into the
 * bus, notices its deaths and hangs, and restarts it with backoff.
 */
#include "isolate.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "bus.h"
#include "host_internal.h"
#include "log.h"
#include "spool.h"

extern char **environ;

#define NS_PER_S 1000000000ull
#define BACKOFF_MIN_NS (1 * NS_PER_S)
#define BACKOFF_MAX_NS (300 * NS_PER_S)
/* A child that ran this long was healthy: the next restart waits
 * BACKOFF_MIN_NS again. */
#define HEALTHY_NS (60 * NS_PER_S)
#define TICK_MS 100                  /* exit, hang and `child_up` checks */
#define STOP_GRACE_NS (2 * NS_PER_S) /* SIGTERM, then SIGKILL */
#define RELAY_BURST 512              /* messages per relay turn, for fairness with the tick */
#define FIRST_FD 10                  /* the memfds sit above the child's fds 3 and 4 */

/* The supervisor's values in the instance's vigil.self event. */
enum { C_RESTARTS, C_CRASHES, C_HANGS, C_UP, NCOUNTERS };
static const char *const counter_names[NCOUNTERS] = {"restarts_total", "crashes_total",
                                                     "hangs_total", "child_up"};

struct vigil_isolate {
    struct vigil_instance *h;
    const struct vigil_instance_conf *ic;
    char endpoint[PATH_MAX + 16]; /* ipc://<isolate_dir>/events */
    bool dir_made;
    void *pull;
    int cfg_fd, shm_fd;
    struct vigil_isolate_shm *shm;
    pid_t pid;           /* the running child, or 0 */
    uint64_t started_ns; /* when it was spawned */
    bool killed_hung;    /* we killed it for a hang */
    uint64_t backoff_ns; /* the next restart's delay */
    uint64_t stop_deadline_ns;
    uint64_t seen_errors, seen_dropped; /* the child's counters as last added */
    struct event *pull_ev, *tick_ev, *restart_ev;
};

static vigil_counter *counter(struct vigil_isolate *iso, int id)
{
    return &iso->h->counters[id].value;
}

/* An fd at FIRST_FD or above (close-on-exec), so that the spawn's dup2s to
 * 3 and 4 can never overwrite one another. */
static int high_fd(int fd)
{
    if (fd < 0 || fd >= FIRST_FD) {
        return fd;
    }
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, FIRST_FD);
    close(fd);
    return hi;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

struct vigil_isolate *vigil_isolate_new(struct vigil_instance *h, struct vigil_diag *d)
{
    const struct vigil_instance_conf *ic = h->ic;
    const struct vigil_config *c = ic->config;
    const struct vigil_conf *at = vigil_conf_get(ic->node, "isolate");
    if (!c || !c->text) {
        vigil_diag_at(d, at, "isolate: process needs the config as a file (vigild -c FILE)");
        return NULL;
    }
    struct vigil_isolate *iso = calloc(1, sizeof *iso);
    if (!iso) {
        vigil_diag_at(d, at, "out of memory");
        return NULL;
    }
    iso->h = h;
    iso->ic = ic;
    iso->cfg_fd = iso->shm_fd = -1;
    iso->backoff_ns = BACKOFF_MIN_NS;
    /* sun_path holds 107 bytes and a NUL. */
    size_t len = strlen(ic->isolate_dir) + strlen("/events");
    if (len > 107) {
        vigil_diag_at(d, at,
                      "isolate: process: the socket %s/events would be %zu bytes long, more than "
                      "the 107 a Unix socket's path may have: choose a shorter state_dir",
                      ic->isolate_dir, len);
        goto fail;
    }
    snprintf(iso->endpoint, sizeof iso->endpoint, "ipc://%s/events", ic->isolate_dir);
    /* The text vigild parsed, for every child to parse again: the same
     * FILE:LINE:COL, and an edited but not reloaded file changes nothing. */
    iso->cfg_fd = high_fd(memfd_create("vigil-config", MFD_CLOEXEC));
    iso->shm_fd = high_fd(memfd_create("vigil-isolate", MFD_CLOEXEC));
    if (iso->cfg_fd < 0 || iso->shm_fd < 0 || write_all(iso->cfg_fd, c->text, c->text_len) != 0 ||
        ftruncate(iso->shm_fd, sizeof *iso->shm) != 0) {
        vigil_diag_at(d, at, "isolate: process: cannot make its shared memory: %s",
                      strerror(errno));
        goto fail;
    }
    iso->shm = mmap(NULL, sizeof *iso->shm, PROT_READ | PROT_WRITE, MAP_SHARED, iso->shm_fd, 0);
    if (iso->shm == MAP_FAILED) {
        iso->shm = NULL;
        vigil_diag_at(d, at, "isolate: process: cannot map its shared memory: %s", strerror(errno));
        goto fail;
    }
    /* The plugin's own counters live in the plugin host; here the
     * supervisor's stand in the instance's vigil.self. */
    for (int i = 0; i < NCOUNTERS; i++) {
        snprintf(h->counters[i].name, sizeof h->counters[i].name, "%s", counter_names[i]);
    }
    h->ncounters = NCOUNTERS;
    return iso;
fail:
    vigil_isolate_free(iso);
    return NULL;
}

/* "SIGSEGV", or "signal 40". */
static const char *signal_name(int sig, char *buf, size_t len)
{
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev) {
        snprintf(buf, len, "SIG%s", abbrev);
    } else {
        snprintf(buf, len, "signal %d", sig);
    }
    return buf;
}

/* Starts a plugin host: /proc/self/exe (this very vigild, even if its file
 * was replaced since) with the hidden command line of isolate.h, signals as
 * a fresh process has them, fd 4 the config text, fd 3 the shared page
 * (not with check), stdout `out_fd` if not -1. 0 or a negative code. */
static int spawn(struct vigil_isolate *iso, bool check, int out_fd, pid_t *pid)
{
    char ppid[24], level[16];
    snprintf(ppid, sizeof ppid, "%d", (int)getpid());
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    snprintf(level, sizeof level, "%s", levels[vigil_log_get_level()]);
    char *argv[] = {"vigild",
                    VIGIL_PLUGIN_HOST_FLAG,
                    iso->ic->name,
                    "-c",
                    iso->ic->config->path,
                    "--ppid",
                    ppid,
                    "--endpoint",
                    iso->endpoint,
                    "-l",
                    level,
                    check ? "--check" : NULL,
                    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, iso->cfg_fd, 4);
    if (!check) {
        posix_spawn_file_actions_adddup2(&fa, iso->shm_fd, 3);
    }
    if (out_fd >= 0) {
        posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
    }
    /* vigild blocks its signals in every thread and ignores SIGPIPE and
     * SIGXFSZ; the child starts clean and sets its own (isolate_child.c). */
    sigset_t none, dflt;
    sigemptyset(&none);
    sigfillset(&dflt);
    sigdelset(&dflt, SIGKILL);
    sigdelset(&dflt, SIGSTOP);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dflt);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawn(pid, "/proc/self/exe", &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return -rc;
}

/* ---- --check and the start: init() in a plugin host ------------------------------ */

/* One line the child printed on stdout: its diag, "FILE:LINE:COL: message"
 * or "FILE: message", back into d at the same place. */
static void add_child_line(struct vigil_isolate *iso, struct vigil_diag *d, char *line)
{
    const char *path = iso->ic->config->path;
    size_t pl = strlen(path);
    int ln = 0, col = 0, used = 0;
    if (strncmp(line, path, pl) == 0 && line[pl] == ':') {
        const char *rest = line + pl + 1;
        if (sscanf(rest, "%d:%d: %n", &ln, &col, &used) == 2 && used > 0) {
            vigil_diag_add(d, path, ln, col, "%s", rest + used);
            return;
        }
        if (rest[0] == ' ') {
            vigil_diag_add(d, path, 0, 0, "%s", rest + 1);
            return;
        }
    }
    vigil_diag_at(d, iso->ic->node, "%s", line);
}

int vigil_isolate_check(struct vigil_isolate *iso, struct vigil_diag *d)
{
    const struct vigil_instance_conf *ic = iso->ic;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        vigil_diag_at(d, ic->node, "isolate: process: pipe: %s", strerror(errno));
        return -errno;
    }
    pid_t pid;
    int rc = spawn(iso, true, p[1], &pid);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        vigil_diag_at(d, ic->node, "isolate: process: cannot start vigild's plugin host: %s",
                      strerror(-rc));
        return rc;
    }
    /* Its stdout is its diag (bounded by the diag's own bound); a host
     * that hangs in init() is killed at hang_timeout. */
    FILE *f = fdopen(p[0], "r");
    size_t before = d->count;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (f && (n = getline(&line, &cap, f)) > 0) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0]) {
            add_child_line(iso, d, line);
        }
    }
    free(line);
    if (f) {
        fclose(f);
    } else {
        close(p[0]);
    }
    int st = 0;
    uint64_t deadline = vigil_mono_ns() + ic->hang_timeout_ns;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (vigil_mono_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            vigil_diag_at(d, ic->node,
                          "source '%s' (plugin %s): its init() did not return within "
                          "hang_timeout in the plugin host: killed",
                          ic->name, ic->plugin);
            return VIGIL_ECONFIG;
        }
        usleep(10000);
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && d->count == before) {
        return 0;
    }
    if (d->count == before) {
        char sig[32];
        vigil_diag_at(d, ic->node, "source '%s' (plugin %s) failed in its plugin host: %s %d%s",
                      ic->name, ic->plugin, WIFEXITED(st) ? "exit status" : "signal",
                      WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                      WIFSIGNALED(st) ? signal_name(WTERMSIG(st), sig, sizeof sig) : "");
    }
    return VIGIL_ECONFIG;
}

/* ---- Connecting ------------------------------------------------------------------- */

/* <state_dir>/isolate, the folder of every isolated source's folder. */
static void parent_folder(const char *dir, char *out, size_t len)
{
    snprintf(out, len, "%s", dir);
    char *slash = strrchr(out, '/');
    if (slash && slash != out) {
        *slash = '\0';
    }
}

int vigil_isolate_connect(struct vigil_isolate *iso)
{
    const char *dir = iso->ic->isolate_dir;
    char parent[PATH_MAX];
    parent_folder(dir, parent, sizeof parent);
    int rc = vigil__mkdirs(parent);
    if (rc == 0 && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = -errno;
    }
    /* A folder left by an earlier vigild is taken over, but only ours. */
    struct stat st;
    if (rc == 0 && (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
                    chmod(dir, 0700) != 0)) {
        rc = -EPERM;
    }
    if (rc != 0) {
        vigil_log(VIGIL_LOG_ERROR, iso->h->component,
                  "cannot make the private folder %s (mode 0700, owned by vigild's user): %s", dir,
                  vigil_strerror(rc));
        return rc;
    }
    iso->dir_made = true;
    iso->pull = zmq_socket(iso->h->env.zctx, ZMQ_PULL);
    if (!iso->pull) {
        return -zmq_errno();
    }
    int linger = 0;
    int hwm = vigil_bus_inproc_hwm(iso->h->env.hwm); /* batches (bus.h VIGIL_BUS_SOURCES) */
    zmq_setsockopt(iso->pull, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(iso->pull, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(iso->pull, iso->endpoint) != 0) {
        rc = -zmq_errno();
        vigil_log(VIGIL_LOG_ERROR, iso->h->component, "cannot bind %s: %s", iso->endpoint,
                  zmq_strerror(-rc));
        return rc;
    }
    return 0;
}

/* ---- Relaying ---------------------------------------------------------------------- */

/* Sends one part to the bus, waiting while it is full: the child then
 * waits on its own full PUSH, as an in-process source would. At stop, waits
 * until the stop's deadline only. */
static int relay_part(struct vigil_isolate *iso, zmq_msg_t *m, int flags)
{
    while (zmq_msg_send(m, iso->h->sock, flags) == -1) {
        int e = zmq_errno();
        if (e != EAGAIN && e != EINTR) {
            return -e;
        }
        if (iso->stop_deadline_ns && vigil_mono_ns() > iso->stop_deadline_ns) {
            return VIGIL_ESTOPPED;
        }
    }
    return 0;
}

/* Relays up to `max` messages; returns how many, or -1 once the bus
 * refuses (at stop). */
static int relay(struct vigil_isolate *iso, int max)
{
    struct vigil_instance *h = iso->h;
    int n = 0;
    while (n < max) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, iso->pull, ZMQ_DONTWAIT) == -1) {
            zmq_msg_close(&m);
            break;
        }
        bool failed = false;
        size_t events = 0; /* the batch's, as the child sent it (bus.h VIGIL_BUS_SOURCES) */
        struct vigil_record_iter it = vigil_record_iter_bytes(zmq_msg_data(&m), zmq_msg_size(&m));
        for (struct vigil_record r; vigil_record_next(&it, &r);) {
            events++;
        }
        for (;;) {
            bool more = zmq_msg_more(&m);
            if (!failed && relay_part(iso, &m, more ? ZMQ_SNDMORE : 0) != 0) {
                failed = true;
            }
            zmq_msg_close(&m);
            if (!more) {
                break;
            }
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, iso->pull, 0) == -1) {
                zmq_msg_close(&m);
                break;
            }
        }
        if (failed) {
            vigil_count(&h->stats.dropped_total, events);
            return -1;
        }
        vigil_count(&h->stats.out_total, events);
        n++;
    }
    return n;
}

static void relay_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_isolate *iso = arg;
    if (relay(iso, RELAY_BURST) == RELAY_BURST) {
        event_active(iso->pull_ev, EV_READ, 0); /* more may wait: after the timers */
    }
}

/* ---- Children ---------------------------------------------------------------------- */

/* Adds what the child counted since the last call to the instance's
 * errors_total and dropped_total. */
static void sync_counters(struct vigil_isolate *iso)
{
    struct vigil_stage_stats *s = &iso->h->stats;
    uint64_t errors = atomic_load(&iso->shm->errors_total);
    uint64_t dropped = atomic_load(&iso->shm->dropped_total);
    vigil_count(&s->errors_total, errors - iso->seen_errors);
    vigil_count(&s->dropped_total, dropped - iso->seen_dropped);
    iso->seen_errors = errors;
    iso->seen_dropped = dropped;
}

static void start_child(struct vigil_isolate *iso)
{
    struct vigil_instance *h = iso->h;
    atomic_store(&iso->shm->ready, 0);
    atomic_store(&iso->shm->errors_total, 0);
    atomic_store(&iso->shm->dropped_total, 0);
    iso->seen_errors = iso->seen_dropped = 0;
    atomic_store(&iso->shm->progress_ns, vigil_mono_ns());
    iso->killed_hung = false;
    iso->started_ns = vigil_mono_ns();
    int rc = spawn(iso, false, -1, &iso->pid);
    if (rc != 0) {
        iso->pid = 0;
        uint64_t delay = iso->backoff_ns;
        iso->backoff_ns = delay * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : delay * 2;
        vigil_log(VIGIL_LOG_ERROR, h->component,
                  "cannot start the plugin host: %s; trying again in %llu s", strerror(-rc),
                  (unsigned long long)(delay / NS_PER_S));
        struct timeval tv = {.tv_sec = (time_t)(delay / NS_PER_S)};
        evtimer_add(iso->restart_ev, &tv);
        return;
    }
    vigil_log(VIGIL_LOG_INFO, h->component, "plugin host started (pid %d)", (int)iso->pid);
}

static void restart_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_isolate *iso = arg;
    vigil_count(counter(iso, C_RESTARTS), 1);
    start_child(iso);
}

/* The child is gone with status `st`: say why, count, and schedule the
 * restart. */
static void child_gone(struct vigil_isolate *iso, int st)
{
    struct vigil_instance *h = iso->h;
    uint64_t ran = vigil_mono_ns() - iso->started_ns;
    pid_t pid = iso->pid;
    iso->pid = 0;
    atomic_store(counter(iso, C_UP), 0);
    if (ran >= HEALTHY_NS) {
        iso->backoff_ns = BACKOFF_MIN_NS;
    }
    uint64_t delay = iso->backoff_ns;
    iso->backoff_ns = delay * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : delay * 2;
    char why[160], sig[32];
    if (iso->killed_hung) {
        snprintf(why, sizeof why, "was killed (SIGKILL) for hanging");
    } else if (WIFSIGNALED(st)) {
        vigil_count(counter(iso, C_CRASHES), 1);
        snprintf(why, sizeof why, "was killed by signal %s%s",
                 signal_name(WTERMSIG(st), sig, sizeof sig), WCOREDUMP(st) ? " (core dumped)" : "");
    } else if (WEXITSTATUS(st) == VIGIL_HOST_EXIT_CONFIG) {
        snprintf(why, sizeof why, "exited with status %d: its config or init() failed (above)",
                 WEXITSTATUS(st));
    } else {
        snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(st));
    }
    vigil_log(VIGIL_LOG_ERROR, h->component,
              "plugin host (pid %d) %s after %.1f s; the events it had not sent are lost; "
              "restarting in %llu s",
              (int)pid, why, (double)ran / 1e9, (unsigned long long)(delay / NS_PER_S));
    struct timeval tv = {.tv_sec = (time_t)(delay / NS_PER_S),
                         .tv_usec = (suseconds_t)(delay % NS_PER_S / 1000u)};
    evtimer_add(iso->restart_ev, &tv);
}

/* Every TICK_MS: reaps a child that died, kills one that hangs, and keeps
 * `child_up` true to what it sees. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_isolate *iso = arg;
    if (!iso->pid) {
        return;
    }
    int st;
    sync_counters(iso);
    if (waitpid(iso->pid, &st, WNOHANG) == iso->pid) {
        relay(iso, INT32_MAX); /* what it sent before it died goes first */
        child_gone(iso, st);
        return;
    }
    uint64_t now = vigil_mono_ns();
    uint64_t progress = atomic_load(&iso->shm->progress_ns);
    uint64_t quiet = now > progress ? now - progress : 0;
    if (!iso->killed_hung && quiet > iso->ic->hang_timeout_ns) {
        iso->killed_hung = true;
        vigil_count(counter(iso, C_HANGS), 1);
        vigil_log(VIGIL_LOG_ERROR, iso->h->component,
                  "plugin host (pid %d): %s did not return within hang_timeout (%.3g s): "
                  "killing it",
                  (int)iso->pid, atomic_load(&iso->shm->ready) ? "collect()" : "init()",
                  (double)iso->ic->hang_timeout_ns / 1e9);
        kill(iso->pid, SIGKILL);
    }
    bool up = atomic_load(&iso->shm->ready) && !iso->killed_hung &&
              quiet < 3 * (uint64_t)VIGIL_BEAT_MS * 1000000u;
    atomic_store(counter(iso, C_UP), up);
}

/* At stop: SIGTERM (the child runs fini() and flushes its socket), relaying
 * meanwhile; SIGKILL after the grace. */
static void stop_child(struct vigil_isolate *iso)
{
    iso->stop_deadline_ns = vigil_mono_ns() + STOP_GRACE_NS;
    if (iso->pid) {
        kill(iso->pid, SIGTERM);
        int st = 0;
        bool gone = false;
        while (!gone && vigil_mono_ns() < iso->stop_deadline_ns) {
            relay(iso, RELAY_BURST);
            gone = waitpid(iso->pid, &st, WNOHANG) == iso->pid;
            if (!gone) {
                zmq_pollitem_t pi = {.socket = iso->pull, .events = ZMQ_POLLIN};
                zmq_poll(&pi, 1, 10);
            }
        }
        if (!gone) {
            vigil_log(VIGIL_LOG_WARN, iso->h->component,
                      "plugin host (pid %d) still running %llu s after SIGTERM: killing it",
                      (int)iso->pid, (unsigned long long)(STOP_GRACE_NS / NS_PER_S));
            kill(iso->pid, SIGKILL);
            waitpid(iso->pid, &st, 0);
        }
        iso->pid = 0;
        sync_counters(iso);
        if (gone && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            vigil_log(VIGIL_LOG_WARN, iso->h->component, "plugin host ended with %s %d at stop",
                      WIFEXITED(st) ? "status" : "signal",
                      WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        }
    }
    while (relay(iso, RELAY_BURST) > 0) {
    }
    atomic_store(counter(iso, C_UP), 0);
}

void vigil_isolate_run(struct vigil_isolate *iso)
{
    struct vigil_instance *h = iso->h;
    int zfd;
    size_t zlen = sizeof zfd;
    zmq_getsockopt(iso->pull, ZMQ_FD, &zfd, &zlen);
    iso->pull_ev = event_new(h->base, zfd, EV_READ | EV_PERSIST, relay_cb, iso);
    iso->tick_ev = event_new(h->base, -1, EV_PERSIST, tick_cb, iso);
    iso->restart_ev = evtimer_new(h->base, restart_cb, iso);
    if (!iso->pull_ev || !iso->tick_ev || !iso->restart_ev) {
        vigil_log(VIGIL_LOG_ERROR, h->component, "out of memory: the source does not run");
        event_base_dispatch(h->base); /* still answer the stop request */
        return;
    }
    struct timeval tick = {.tv_sec = 0, .tv_usec = TICK_MS * 1000};
    event_add(iso->pull_ev, NULL);
    event_add(iso->tick_ev, &tick);
    event_active(iso->pull_ev, EV_READ, 0);
    start_child(iso);
    event_base_dispatch(h->base);
    stop_child(iso);
}

void vigil_isolate_free(struct vigil_isolate *iso)
{
    if (!iso) {
        return;
    }
    if (iso->pid) {
        kill(iso->pid, SIGKILL);
        waitpid(iso->pid, NULL, 0);
    }
    if (iso->pull_ev) {
        event_free(iso->pull_ev);
    }
    if (iso->tick_ev) {
        event_free(iso->tick_ev);
    }
    if (iso->restart_ev) {
        event_free(iso->restart_ev);
    }
    if (iso->pull) {
        zmq_close(iso->pull);
    }
    if (iso->dir_made) {
        char sock[PATH_MAX + 16];
        snprintf(sock, sizeof sock, "%s/events", iso->ic->isolate_dir);
        unlink(sock);
        rmdir(iso->ic->isolate_dir);
        char parent[PATH_MAX];
        parent_folder(iso->ic->isolate_dir, parent, sizeof parent);
        rmdir(parent); /* once no other source uses it */
    }
    if (iso->shm) {
        munmap(iso->shm, sizeof *iso->shm);
    }
    if (iso->cfg_fd >= 0) {
        close(iso->cfg_fd);
    }
    if (iso->shm_fd >= 0) {
        close(iso->shm_fd);
    }
    free(iso);
}

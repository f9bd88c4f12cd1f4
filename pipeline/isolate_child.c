/* The plugin host (see isolate.h): vigild re-executed by an isolated
 * source's supervisor runs that one instance, as the daemon would run it
 * in-process, pushing its events to the supervisor over ipc://.
 */
#include "isolate.h"

#include <errno.h>
#include <event2/thread.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "host_internal.h"
#include "log.h"

struct host_args {
    const char *name, *config, *endpoint;
    pid_t ppid;
    bool check;
};

static int parse_args(int argc, char **argv, struct host_args *a)
{
    *a = (struct host_args){0};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(k, "--check") == 0) {
            a->check = true;
            continue;
        }
        if (!v) {
            return -1;
        }
        i++;
        if (strcmp(k, VIGIL_PLUGIN_HOST_FLAG) == 0) {
            a->name = v;
        } else if (strcmp(k, "-c") == 0) {
            a->config = v;
        } else if (strcmp(k, "--endpoint") == 0) {
            a->endpoint = v;
        } else if (strcmp(k, "--ppid") == 0) {
            a->ppid = (pid_t)atoi(v);
        } else if (strcmp(k, "-l") == 0) {
            enum vigil_log_level level;
            if (vigil_log_parse_level(v, &level) != 0) {
                return -1;
            }
            vigil_log_set_level(level);
        } else {
            return -1;
        }
    }
    return a->name && a->config && a->endpoint && a->ppid > 0 ? 0 : -1;
}

/* The config text on fd 4 (read from its start: every child shares the
 * descriptor's offset). Caller frees; NULL on error. */
static char *read_config_fd(size_t *len)
{
    struct stat st;
    if (fstat(4, &st) != 0 || st.st_size < 0) {
        return NULL;
    }
    char *text = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (text && got < (size_t)st.st_size) {
        ssize_t n = pread(4, text + got, (size_t)st.st_size - got, (off_t)got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            free(text);
            return NULL;
        }
        got += (size_t)n;
    }
    if (text) {
        text[got] = '\0';
        *len = got;
    }
    return text;
}

/* The errors, for vigild's log (stderr: as vigild's own, journald's
 * priorities included) or, with --check, for the supervisor (stdout). */
static void report(const struct vigil_diag *d, bool check, const char *component)
{
    if (check) {
        vigil_diag_print(d, stdout);
        fflush(stdout);
        return;
    }
    for (size_t i = 0; i < d->n; i++) {
        vigil_log(VIGIL_LOG_ERROR, component, "%s", d->msgs[i]);
    }
}

/* memory_max: the address space the plugin may add to what the host has
 * mapped now, just before collect() starts (RLIMIT_AS: a failed allocation,
 * not a kill). One malloc arena, so that a thread's first allocation does
 * not reserve 64 MiB of it. */
static void limit_memory(struct vigil_instance *h, uint64_t max_bytes)
{
    mallopt(M_ARENA_MAX, 1);
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld", &pages) != 1) {
        pages = 0;
    }
    if (f) {
        fclose(f);
    }
    struct rlimit stack;
    uint64_t stack_bytes = getrlimit(RLIMIT_STACK, &stack) == 0 && stack.rlim_cur != RLIM_INFINITY
                               ? stack.rlim_cur
                               : 8u << 20;
    /* The instance's thread is not started yet: its stack is the host's. */
    uint64_t base = (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE) + stack_bytes;
    struct rlimit rl = {.rlim_cur = base + max_bytes, .rlim_max = base + max_bytes};
    if (pages <= 0 || setrlimit(RLIMIT_AS, &rl) != 0) {
        vigil_log(VIGIL_LOG_WARN, h->component, "memory_max not applied: %s", strerror(errno));
        return;
    }
    vigil_log(VIGIL_LOG_DEBUG, h->component, "memory_max: address space limited to %llu MiB",
              (unsigned long long)((base + max_bytes) >> 20));
}

/* The source named a->name, if it is an isolated one. */
static const struct vigil_instance_conf *find_source(const struct vigil_config *c, const char *name)
{
    for (size_t i = 0; i < c->nsources; i++) {
        if (strcmp(c->sources[i].name, name) == 0 && c->sources[i].isolate) {
            return &c->sources[i];
        }
    }
    return NULL;
}

/* Waits for SIGTERM or SIGINT while the instance's thread runs. */
static void serve(const sigset_t *stop)
{
    for (;;) {
        int sig = sigwaitinfo(stop, NULL);
        if (sig == SIGTERM || sig == SIGINT) {
            return;
        }
    }
}

int vigil_plugin_host_main(int argc, char **argv)
{
    struct host_args a;
    if (parse_args(argc, argv, &a) != 0) {
        fprintf(stderr, "vigild %s: for vigild's own use (isolate: process)\n",
                VIGIL_PLUGIN_HOST_FLAG);
        return VIGIL_HOST_EXIT_USAGE;
    }
    /* Dies with vigild: the signal goes when the thread that started us
     * exits, and vigild may have died before the prctl. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != a.ppid) {
        return 1;
    }
    /* Nothing of vigild's but stdio, the shared page (3) and the config (4). */
    close_range(5, ~0u, 0);
    /* Signals: SIGTERM and SIGINT wait for sigwaitinfo() in this thread
     * (every thread inherits the mask); SIGHUP is vigild's business. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_SETMASK, &stop, NULL);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    evthread_use_pthreads();

    struct vigil_diag d;
    vigil_diag_init(&d);
    int status = VIGIL_HOST_EXIT_CONFIG;
    struct vigil_instance *h = NULL;
    void *zctx = NULL;
    size_t len = 0;
    char *text = read_config_fd(&len);
    close(4);
    struct vigil_config *c = text ? vigil_config_parse(text, len, a.config, &d) : NULL;
    free(text);
    const struct vigil_instance_conf *ic = c ? find_source(c, a.name) : NULL;
    char component[200];
    snprintf(component, sizeof component, "source:%s/%s", ic ? ic->plugin : "?", a.name);
    if (!c || d.count || !ic) {
        if (c && !d.count) {
            vigil_diag_add(&d, a.config, 0, 0, "no source '%s' with isolate: process", a.name);
        }
        goto out;
    }
    zctx = a.check ? NULL : zmq_ctx_new();
    struct vigil_host_env env = {
        .host_name = c->host,
        .plugin_dir = c->plugin_dir,
        .plugin_trust_off = !c->plugin_trust,
        .zctx = zctx,
        .hwm = c->bus.hwm,
        .max_event_bytes = c->bus.max_event_bytes,
        .bus_in = a.endpoint,
        .plugin_host = true,
    };
    h = vigil_instance_new(ic, VIGIL_SOURCE, &env, &d);
    if (!h || vigil_instance_init(h, &d) != 0) {
        goto out;
    }
    if (a.check) {
        status = 0;
        goto out;
    }
    h->shm = mmap(NULL, sizeof *h->shm, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
    close(3);
    if (h->shm == MAP_FAILED) {
        h->shm = NULL;
        vigil_log(VIGIL_LOG_ERROR, component, "plugin host: no shared page: %s", strerror(errno));
        status = 1;
        goto out;
    }
    /* Beats often enough that a hang_timeout below a second still sees an
     * idle loop turn. */
    if (h->beat_ns > ic->hang_timeout_ns / 4) {
        h->beat_ns = ic->hang_timeout_ns / 4 ? ic->hang_timeout_ns / 4 : 1;
    }
    int rc = vigil_instance_connect(h);
    if (rc != 0) {
        vigil_log(VIGIL_LOG_ERROR, component, "plugin host: cannot connect to %s: %s", a.endpoint,
                  vigil_strerror(rc));
        status = 1;
        goto out;
    }
    if (ic->memory_max_bytes) {
        limit_memory(h, ic->memory_max_bytes);
    }
    vigil_isolate_progress(h);
    atomic_store(&h->shm->ready, 1);
    if (vigil_instance_start(h) != 0) {
        vigil_log(VIGIL_LOG_ERROR, component, "plugin host: cannot start the thread");
        status = 1;
        goto out;
    }
    serve(&stop);
    status = 0;
out:
    if (d.count) {
        report(&d, a.check, component);
    }
    vigil_instance_free(h); /* stops the thread, runs fini(), flushes the socket */
    if (zctx) {
        zmq_ctx_term(zctx);
    }
    vigil_config_free(c);
    vigil_diag_fini(&d);
    return status;
}

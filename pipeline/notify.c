/* vigild and systemd (see notify.h): readiness, reload and stop through
 * sd_notify(3), and the watchdog thread, which pings only while every
 * watched thread's beats counter moves.
 */
#include "notify.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"

/* A thread is stuck after max(WatchdogSec / 2, this) without a beat: its
 * beat comes every VIGIL_BEAT_MS, a loaded host delays it by some, and a
 * short WatchdogSec must not turn a busy second into a restart. */
#define STALL_MIN_NS 5000000000ull
#define STATUS_MAX 512

struct watched {
    const char *name;
    vigil_counter *beats;
    uint64_t last;       /* watchdog thread: the value seen last */
    uint64_t changed_ns; /* watchdog thread: when it was seen to move */
    bool stalled;        /* watchdog thread: said so in the log */
};

struct vigil_notify {
    struct watched *w;
    size_t n, cap;
    vigil_counter main_beats; /* the main thread's (vigil_notify_tick) */
    uint64_t watchdog_ns, stall_ns;
    bool ready;
    _Atomic bool stopping;
    _Atomic bool send_failed; /* logged once */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu; /* quit, status */
    pthread_cond_t cv;
    bool quit;
    char status[STATUS_MAX]; /* the last STATUS= of a ready daemon */
};

static void say(struct vigil_notify *n, const char *msg)
{
    int rc = sd_notify(0, msg);
    if (rc < 0 && !atomic_exchange(&n->send_failed, true)) {
        vigil_log(VIGIL_LOG_WARN, "systemd", "cannot notify the service manager (%s): %s", msg,
                  vigil_strerror(rc));
    }
}

struct vigil_notify *vigil_notify_new(void)
{
    struct vigil_notify *n = calloc(1, sizeof *n);
    if (!n) {
        return NULL;
    }
    pthread_mutex_init(&n->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->cv, &ca);
    pthread_condattr_destroy(&ca);
    uint64_t usec = 0;
    /* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is ours. */
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        n->watchdog_ns = usec * 1000u;
        n->stall_ns = n->watchdog_ns / 2 > STALL_MIN_NS ? n->watchdog_ns / 2 : STALL_MIN_NS;
    }
    if (vigil_notify_watch(n, "vigild", &n->main_beats) != 0) {
        vigil_notify_free(n);
        return NULL;
    }
    return n;
}

int vigil_notify_watch(struct vigil_notify *n, const char *name, vigil_counter *beats)
{
    pthread_mutex_lock(&n->mu);
    if (n->n == n->cap) {
        size_t cap = n->cap ? n->cap * 2 : 16;
        struct watched *w = realloc(n->w, cap * sizeof *w);
        if (!w) {
            pthread_mutex_unlock(&n->mu);
            return -ENOMEM;
        }
        n->w = w;
        n->cap = cap;
    }
    /* Watched from now: a thread added by a reload gets a whole stall
     * period to beat. */
    n->w[n->n++] = (struct watched){.name = name,
                                    .beats = beats,
                                    .last = vigil_counter_get(beats),
                                    .changed_ns = vigil_mono_ns()};
    pthread_mutex_unlock(&n->mu);
    return 0;
}

void vigil_notify_unwatch_all(struct vigil_notify *n)
{
    pthread_mutex_lock(&n->mu);
    n->n = n->n ? 1 : 0; /* the main thread stays, first in the list */
    pthread_mutex_unlock(&n->mu);
}

uint64_t vigil_notify_watchdog_ns(const struct vigil_notify *n)
{
    return n->watchdog_ns;
}

uint64_t vigil_notify_stall_ns(const struct vigil_notify *n)
{
    return n->stall_ns;
}

static void set_status(struct vigil_notify *n, const char *status)
{
    pthread_mutex_lock(&n->mu);
    snprintf(n->status, sizeof n->status, "%s", status ? status : "running");
    pthread_mutex_unlock(&n->mu);
}

/* One pass over the watched threads: true when none is stuck. Watchdog
 * thread only, holding mu. */
static bool all_alive(struct vigil_notify *n, uint64_t now)
{
    bool alive = true;
    for (size_t i = 0; i < n->n; i++) {
        struct watched *w = &n->w[i];
        uint64_t v = vigil_counter_get(w->beats);
        if (v != w->last) {
            w->last = v;
            w->changed_ns = now;
            if (w->stalled) {
                w->stalled = false;
                vigil_log(VIGIL_LOG_INFO, "watchdog", "%s runs again", w->name);
            }
            continue;
        }
        if (now - w->changed_ns <= n->stall_ns) {
            continue;
        }
        alive = false;
        if (!w->stalled) {
            w->stalled = true;
            vigil_log(VIGIL_LOG_ERROR, "watchdog",
                      "%s has not run its loop for %.1f s (stuck in a plugin's collect or write?): "
                      "no more watchdog pings, systemd will restart vigild",
                      w->name, (double)(now - w->changed_ns) / 1e9);
            char msg[STATUS_MAX];
            snprintf(msg, sizeof msg, "STATUS=%s is stuck: watchdog pings stopped", w->name);
            say(n, msg);
        }
    }
    return alive;
}

static void *watchdog_main(void *arg)
{
    struct vigil_notify *n = arg;
    /* Ping at half systemd's interval; look at the threads at least every
     * beat so a stall is timed to about a beat. */
    uint64_t ping_ns = n->watchdog_ns / 2;
    uint64_t look_ns = ping_ns < VIGIL_BEAT_MS * 1000000ull ? ping_ns : VIGIL_BEAT_MS * 1000000ull;
    if (look_ns < 10000000u) {
        look_ns = 10000000u;
    }
    uint64_t now = vigil_mono_ns();
    pthread_mutex_lock(&n->mu);
    for (size_t i = 0; i < n->n; i++) {
        n->w[i].last = vigil_counter_get(n->w[i].beats);
        n->w[i].changed_ns = now;
    }
    pthread_mutex_unlock(&n->mu);
    uint64_t last_ping = 0;
    bool was_alive = true;
    pthread_mutex_lock(&n->mu);
    while (!n->quit) {
        pthread_mutex_unlock(&n->mu);
        now = vigil_mono_ns();
        bool stopping = atomic_load(&n->stopping);
        /* While stopping, the stages end one by one: ping regardless. */
        pthread_mutex_lock(&n->mu); /* a reload changes the list */
        bool alive = stopping || all_alive(n, now);
        pthread_mutex_unlock(&n->mu);
        if (alive && !was_alive) {
            char msg[STATUS_MAX + 8];
            pthread_mutex_lock(&n->mu);
            snprintf(msg, sizeof msg, "STATUS=%s", n->status);
            pthread_mutex_unlock(&n->mu);
            say(n, msg);
        }
        was_alive = alive;
        /* Late by up to a look: still well inside systemd's interval. */
        if (alive && (last_ping == 0 || now - last_ping + look_ns / 2 >= ping_ns)) {
            say(n, "WATCHDOG=1");
            last_ping = now;
        }
        uint64_t until = now + look_ns;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
                              .tv_nsec = (long)(until % 1000000000u)};
        pthread_mutex_lock(&n->mu);
        while (!n->quit && pthread_cond_timedwait(&n->cv, &n->mu, &ts) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

bool vigil_notify_tick(struct vigil_notify *n, const char *status)
{
    vigil_count_own(&n->main_beats, 1);
    if (n->ready) {
        return true;
    }
    for (size_t i = 0; i < n->n; i++) {
        if (vigil_counter_get(n->w[i].beats) == 0) {
            return false;
        }
    }
    n->ready = true;
    set_status(n, status);
    char msg[STATUS_MAX + 32];
    snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", n->status);
    say(n, msg);
    if (n->watchdog_ns) {
        if (pthread_create(&n->thread, NULL, watchdog_main, n) == 0) {
            pthread_setname_np(n->thread, "vigil-watchdog");
            n->started = true;
            vigil_log(VIGIL_LOG_INFO, "watchdog",
                      "systemd's watchdog is on (%.1f s): pinging every %.1f s while every "
                      "thread's loop turns; one silent for %.1f s stops the pings",
                      (double)n->watchdog_ns / 1e9, (double)n->watchdog_ns / 2e9,
                      (double)n->stall_ns / 1e9);
        } else {
            /* Without pings systemd restarts us: say why first. */
            vigil_log(VIGIL_LOG_ERROR, "watchdog", "cannot start the watchdog thread");
        }
    }
    return true;
}

int vigil_notify_wait_ready(struct vigil_notify *n, const char *status, int timeout_ms)
{
    uint64_t deadline = vigil_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (!vigil_notify_tick(n, status)) {
        if (vigil_mono_ns() >= deadline) {
            for (size_t i = 0; i < n->n; i++) {
                if (vigil_counter_get(n->w[i].beats) == 0) {
                    vigil_log(VIGIL_LOG_WARN, "systemd",
                              "%s has not started its loop within %d ms: not ready yet",
                              n->w[i].name, timeout_ms);
                }
            }
            return -ETIMEDOUT;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

void vigil_notify_reloading(struct vigil_notify *n)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[128];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u);
    say(n, msg);
}

void vigil_notify_reloaded(struct vigil_notify *n, const char *status)
{
    set_status(n, status);
    char msg[STATUS_MAX + 32];
    snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", n->status);
    say(n, msg);
}

void vigil_notify_stopping(struct vigil_notify *n)
{
    atomic_store(&n->stopping, true);
    say(n, "STOPPING=1\nSTATUS=stopping: delivering what is in flight");
}

void vigil_notify_free(struct vigil_notify *n)
{
    if (!n) {
        return;
    }
    if (n->started) {
        pthread_mutex_lock(&n->mu);
        n->quit = true;
        pthread_cond_signal(&n->cv);
        pthread_mutex_unlock(&n->mu);
        pthread_join(n->thread, NULL);
    }
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
    free(n->w);
    free(n);
}

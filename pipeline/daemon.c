/* vigild as a whole (see daemon.h): start-up in dependency order, the
 * vigil.self reporter, signal handling and an orderly, lossless stop.
 */
#include "daemon.h"

#include <errno.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bus.h"
#include "config.h"
#include "curve/endpoint.h"
#include "curve/keys.h"
#include "event.h"
#include "ingest.h"
#include "log.h"
#include "notify.h"
#include "plugin_host.h"
#include "rules.h"
#include "rules_stage.h"
#include "zap.h"

#define READY_TIMEOUT_MS 5000
#define DRAIN_TIMEOUT_MS 3000
#define RELOAD_SUBS_TIMEOUT_MS 5000

struct daemon {
    const char *path;
    struct vigil_config *cfg;
    /* The config the daemon started with: the bus, CURVE and the ingest
     * keep pointers into it, so it lives to the end. Older configs live
     * while an instance made from them runs (a reload keeps unchanged
     * instances as they are). */
    struct vigil_config *boot;
    struct vigil_config **old_cfgs;
    size_t nold;
    unsigned subs_total;          /* subscriptions the bus has been told to expect */
    vigil_counter *barrier_slots; /* with bus.ingest: each sink's barrier progress */
    vigil_counter reloads_total, reload_failed_total, reload_pause_us;
    bool pid_written;
    void *zctx;
    struct vigil_bus *bus;
    struct vigil_instance **sources, **sinks;
    struct vigil_rules *rules; /* NULL when the config has none */
    struct vigil_rules_stage *rules_stage;
    struct vigil_ingest *ingest; /* NULL without bus.ingest */
    struct vigil_zap *zap;       /* NULL without bus.curve */
    vigil_counter **progress;    /* the sinks' barrier progress, for the ingest */
    void *self_push;
    struct vigil_event_builder self;
    uint64_t self_seq;
    uint64_t handover_seq; /* the handover events' (source vigild.reload) */
    uint64_t started_mono;
    struct vigil_notify *notify; /* systemd: ready, reload, stop, watchdog */
    char status[512];            /* what systemctl status shows once started */
    struct beat_seen *seen;      /* each stage's beats at the last self report */
    size_t nseen, seen_cap;
};

/* A stage's loop counter as the self reporter last saw it. */
struct beat_seen {
    vigil_counter *beats;
    uint64_t last, changed_ns;
};

/* What an instance made from config c needs of the daemon. */
static struct vigil_host_env host_env(const struct daemon *dm, const struct vigil_config *c)
{
    return (struct vigil_host_env){
        .host_name = c->host,
        .plugin_dir = c->plugin_dir,
        .plugin_trust_off = !c->plugin_trust,
        .zctx = dm->zctx,
        .hwm = c->bus.hwm,
        .barriers = c->bus.ingest != NULL,
        .max_event_bytes = c->bus.max_event_bytes,
    };
}

/* plugin_trust: off, said at every start and every reload that has it. */
static void warn_trust_off(const struct vigil_config *c)
{
    if (!c->plugin_trust) {
        const struct vigil_conf *at = c->plugin_trust_at;
        vigil_log(VIGIL_LOG_WARN, "vigild",
                  "%s:%d:%d: plugin_trust: off: plugins in %s are loaded whoever can write them "
                  "(for development trees only)",
                  at->file, at->line, at->col, c->plugin_dir);
    }
}

/* Loads every plugin instance and runs its init. Everything that goes wrong
 * goes to d, so one run reports all problems. */
static void load_instances(struct daemon *dm, struct vigil_diag *d)
{
    struct vigil_config *c = dm->cfg;
    struct vigil_host_env env = host_env(dm, c);
    warn_trust_off(c);
    dm->sources = calloc(c->nsources + 1, sizeof *dm->sources);
    dm->sinks = calloc(c->nsinks + 1, sizeof *dm->sinks);
    if (!dm->sources || !dm->sinks) {
        vigil_diag_add(d, c->path, 0, 0, "out of memory");
        return;
    }
    for (size_t i = 0; i < c->nsinks; i++) {
        dm->sinks[i] = vigil_instance_new(&c->sinks[i], VIGIL_SINK, &env, d);
    }
    for (size_t i = 0; i < c->nsources; i++) {
        dm->sources[i] = vigil_instance_new(&c->sources[i], VIGIL_SOURCE, &env, d);
    }
    if (c->rules && vigil_conf_len(c->rules) > 0) {
        size_t before = d->count;
        dm->rules = vigil_rules_new(c->rules, "rules", d);
        if (!dm->rules && d->count == before) {
            vigil_diag_add(d, c->path, 0, 0, "out of memory for the rules");
        }
    }
    if (d->count) {
        return; /* do not run any init when the config is already wrong */
    }
    for (size_t i = 0; i < c->nsinks; i++) {
        vigil_instance_init(dm->sinks[i], d);
    }
    for (size_t i = 0; i < c->nsources; i++) {
        vigil_instance_init(dm->sources[i], d);
    }
}

static void free_instances(struct daemon *dm)
{
    if (!dm->cfg) {
        return;
    }
    for (size_t i = 0; dm->sources && i < dm->cfg->nsources; i++) {
        vigil_instance_free(dm->sources[i]);
    }
    for (size_t i = 0; dm->sinks && i < dm->cfg->nsinks; i++) {
        vigil_instance_free(dm->sinks[i]);
    }
    free(dm->sources);
    free(dm->sinks);
    dm->sources = dm->sinks = NULL;
    vigil_rules_stage_free(dm->rules_stage);
    vigil_ingest_free(dm->ingest);
    free(dm->progress);
    dm->progress = NULL;
    free(dm->barrier_slots);
    dm->barrier_slots = NULL;
    vigil_zap_free(dm->zap);
    dm->rules_stage = NULL;
    vigil_rules_free(dm->rules);
    dm->rules = NULL;
}

/* bus.curve's files, read as the start will read them, so --check finds a
 * missing file, a bad authorized_keys line or a secret key others may read. */
static void check_keys(const struct vigil_config *c, struct vigil_diag *d)
{
    if (!c->bus.curve_secret_key || !c->bus.curve_authorized_keys) {
        return;
    }
    char err[1024];
    struct vigil_keypair kp;
    if (vigil_key_read_secret(c->bus.curve_secret_key, NULL, &kp, err, sizeof err) != 0) {
        vigil_diag_at(d, c->bus.curve_secret_at, "bus.curve.secret_key: %s", err);
    }
    vigil_keypair_clear(&kp);
    struct vigil_authkeys *ak = NULL;
    if (vigil_authkeys_load(c->bus.curve_authorized_keys, &ak, err, sizeof err) != 0) {
        vigil_diag_at(d, c->bus.curve_authorized_at, "bus.curve.authorized_keys: %s", err);
    }
    vigil_authkeys_free(ak);
}

/* The config's errors, when vigild cannot start. Into the journal each is
 * a line of its own at priority "err" (log.h), so `journalctl -p err` shows
 * why vigild did not start. */
static void print_diag(const struct vigil_diag *d, const char *path)
{
    if (!vigil_log_to_journal()) {
        vigil_diag_print(d, stderr);
        fprintf(stderr, "%s: %zu error%s; vigild not started\n", path, d->count,
                d->count == 1 ? "" : "s");
        return;
    }
    for (size_t i = 0; i < d->n; i++) {
        vigil_log(VIGIL_LOG_ERROR, "config", "%s", d->msgs[i]);
    }
    if (d->count > d->n) {
        vigil_log(VIGIL_LOG_ERROR, "config", "(%zu more errors not shown)", d->count - d->n);
    }
    vigil_log(VIGIL_LOG_ERROR, "config", "%s: %zu error%s; vigild not started", path, d->count,
              d->count == 1 ? "" : "s");
}

int vigil_daemon_check(const char *path)
{
    struct vigil_diag d;
    vigil_diag_init(&d);
    evthread_use_pthreads();
    struct daemon dm = {0};
    dm.cfg = vigil_config_load(path, &d);
    if (dm.cfg) {
        check_keys(dm.cfg, &d);
        load_instances(&dm, &d);
        free_instances(&dm);
        vigil_config_free(dm.cfg);
    }
    int status = d.count ? 1 : 0;
    vigil_diag_print(&d, stderr);
    if (status == 0) {
        printf("%s: configuration is valid\n", path);
    } else {
        fprintf(stderr, "%s: %zu error%s\n", path, d.count, d.count == 1 ? "" : "s");
    }
    vigil_diag_fini(&d);
    return status;
}

/* ---- vigil.self -------------------------------------------------------------- */

static void self_value(struct vigil_event_builder *b, const char *key, vigil_counter *c)
{
    vigil_event_add_value_u64(b, key, vigil_counter_get(c));
}

static void self_publish(struct daemon *dm)
{
    const char *body;
    size_t len;
    if (vigil_event_finish(&dm->self, dm->cfg->host, "vigild", dm->self_seq + 1, &body, &len) !=
        0) {
        return;
    }
    /* Never block the main thread on a full bus: it must keep answering
     * signals. A self report that does not fit is skipped and counted. */
    if (zmq_send(dm->self_push, "vigil.self", 10, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
        vigil_count(&vigil_bus_stats(dm->bus)->dropped_total, 1);
        return;
    }
    zmq_send(dm->self_push, body, len, 0);
    dm->self_seq++;
}

/* `running` of a stage in vigil.self: 1 while its loop has turned within
 * three beats (stats.h), 0 once it has not (a collect() or write() that
 * does not return); the prometheus sink's /healthz reads it. */
static void self_running(struct daemon *dm, vigil_counter *beats)
{
    uint64_t now = vigil_mono_ns(), v = vigil_counter_get(beats);
    struct beat_seen *e = NULL;
    for (size_t i = 0; i < dm->nseen && !e; i++) {
        e = dm->seen[i].beats == beats ? &dm->seen[i] : NULL;
    }
    if (!e && dm->nseen == dm->seen_cap) {
        size_t cap = dm->seen_cap ? 2 * dm->seen_cap : 16;
        struct beat_seen *p = realloc(dm->seen, cap * sizeof *p);
        if (!p) {
            return; /* out of memory: no `running` this time */
        }
        dm->seen = p;
        dm->seen_cap = cap;
    }
    if (!e) {
        /* First report: a loop that beat at all since the start counts as
         * turning now (it is judged again at the next report). */
        e = &dm->seen[dm->nseen++];
        *e = (struct beat_seen){.beats = beats, .last = 0, .changed_ns = dm->started_mono};
    }
    if (v != e->last) {
        e->last = v;
        e->changed_ns = now;
    }
    vigil_event_add_value_u64(&dm->self, "running",
                              now - e->changed_ns < 3ull * VIGIL_BEAT_MS * 1000000u);
}

static void self_plugin_value(void *arg, const char *name, vigil_counter *value)
{
    self_value(arg, name, value);
}

static void self_stage(struct daemon *dm, struct vigil_instance *h, const char *stage)
{
    struct vigil_event_builder *b = &dm->self;
    struct vigil_stage_stats *s = vigil_instance_stats(h);
    vigil_event_begin(b, "vigil.self");
    vigil_event_add_label(b, "stage", stage);
    vigil_event_add_label(b, "plugin", vigil_instance_plugin_name(h));
    vigil_event_add_label(b, "instance", vigil_instance_name(h));
    if (strcmp(stage, "sink") == 0) {
        self_value(b, "in_total", &s->in_total);
        self_value(b, "retried_total", &s->retried_total);
        self_value(b, "failed_total", &s->failed_total);
        self_value(b, "queue_depth", &s->queue_depth);
        self_value(b, "spooled_total", &s->spooled_total);
        self_value(b, "spool_events", &s->spool_events);
        self_value(b, "spool_bytes", &s->spool_bytes);
        self_value(b, "spool_corrupt_total", &s->spool_corrupt_total);
        self_value(b, "spool_skipped_bytes_total", &s->spool_skipped_bytes_total);
        uint64_t since = vigil_counter_get(&s->failing_since_mono);
        vigil_event_add_value(b, "failing_s", since ? (double)(vigil_mono_ns() - since) / 1e9 : 0);
    }
    self_running(dm, &s->beats);
    self_value(b, "out_total", &s->out_total);
    self_value(b, "dropped_total", &s->dropped_total);
    self_value(b, "errors_total", &s->errors_total);
    vigil_instance_each_counter(h, self_plugin_value, b);
    self_publish(dm);
}

static void self_rule(void *arg, const char *rule, const char *kind, const char *const *keys,
                      const uint64_t *values, size_t n)
{
    struct daemon *dm = arg;
    struct vigil_event_builder *b = &dm->self;
    vigil_event_begin(b, "vigil.self");
    vigil_event_add_label(b, "stage", "rule");
    vigil_event_add_label(b, "rule", rule);
    vigil_event_add_label(b, "kind", kind);
    for (size_t i = 0; i < n; i++) {
        vigil_event_add_value_u64(b, keys[i], values[i]);
    }
    self_publish(dm);
}

static void self_agent(void *arg, const char *agent, struct vigil_agent_stats *s)
{
    struct daemon *dm = arg;
    struct vigil_event_builder *b = &dm->self;
    vigil_event_begin(b, "vigil.self");
    vigil_event_add_label(b, "stage", "agent");
    vigil_event_add_label(b, "agent", agent);
    self_value(b, "batches_total", &s->batches_total);
    self_value(b, "events_total", &s->events_total);
    self_value(b, "refused_total", &s->refused_total);
    self_value(b, "duplicates_total", &s->duplicates_total);
    self_value(b, "shed_total", &s->shed_total);
    self_value(b, "connected", &s->connected);
    uint64_t seen = vigil_counter_get(&s->last_seen_mono);
    vigil_event_add_value(b, "last_seen_s", (double)(vigil_mono_ns() - seen) / 1e9);
    self_publish(dm);
}

static void self_report(struct daemon *dm)
{
    struct vigil_event_builder *b = &dm->self;
    struct vigil_bus_stats *bs = vigil_bus_stats(dm->bus);
    vigil_event_begin(b, "vigil.self");
    vigil_event_add_label(b, "stage", "bus");
    self_value(b, "in_total", &bs->in_total);
    self_value(b, "out_total", &bs->out_total);
    self_value(b, "malformed_total", &bs->malformed_total);
    self_value(b, "lost_total", &bs->lost_total);
    self_value(b, "seq_resets_total", &bs->seq_resets_total);
    self_value(b, "dropped_total", &bs->dropped_total);
    self_value(b, "external_dropped_total", &bs->external_dropped_total);
    self_value(b, "untracked_total", &bs->untracked_total);
    self_value(b, "sources_tracked", &bs->sources_tracked);
    self_running(dm, &bs->beats);
    self_publish(dm);

    for (size_t i = 0; i < dm->cfg->nsources; i++) {
        self_stage(dm, dm->sources[i], "source");
    }
    for (size_t i = 0; i < dm->cfg->nsinks; i++) {
        self_stage(dm, dm->sinks[i], "sink");
    }
    if (dm->zap) {
        struct vigil_zap_stats *zs = vigil_zap_stats(dm->zap);
        vigil_event_begin(b, "vigil.self");
        vigil_event_add_label(b, "stage", "curve");
        self_value(b, "accepted_total", &zs->accepted_total);
        self_value(b, "auth_refused_total", &zs->auth_refused_total);
        vigil_event_add_value_u64(b, "keys", vigil_zap_keys(dm->zap));
        self_publish(dm);
    }
    if (dm->ingest) {
        struct vigil_ingest_stats *is = vigil_ingest_stats(dm->ingest);
        vigil_event_begin(b, "vigil.self");
        vigil_event_add_label(b, "stage", "ingest");
        self_value(b, "bad_batches_total", &is->bad_batches_total);
        self_value(b, "untracked_total", &is->untracked_total);
        self_value(b, "agents_untracked_total", &is->agents_untracked_total);
        self_value(b, "shed_total", &is->shed_total);
        self_publish(dm);
        vigil_ingest_each_agent(dm->ingest, self_agent, dm);
    }
    if (dm->rules_stage) {
        struct vigil_stage_stats *rs = vigil_rules_stage_stats(dm->rules_stage);
        vigil_event_begin(b, "vigil.self");
        vigil_event_add_label(b, "stage", "rules");
        self_value(b, "in_total", &rs->in_total);
        self_value(b, "out_total", &rs->out_total);
        self_value(b, "dropped_total", &rs->dropped_total);
        self_value(b, "errors_total", &rs->errors_total);
        self_value(b, "queue_depth", &rs->queue_depth);
        self_running(dm, &rs->beats);
        self_publish(dm);
        vigil_rules_stats(dm->rules, self_rule, dm);
    }

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss_pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        long size_pages;
        if (fscanf(f, "%ld %ld", &size_pages, &rss_pages) != 2) {
            rss_pages = 0;
        }
        fclose(f);
    }
    vigil_event_begin(b, "vigil.self");
    vigil_event_add_label(b, "stage", "daemon");
    vigil_event_add_label(b, "version", VIGIL_VERSION);
    vigil_event_add_value(b, "uptime_s", (double)(vigil_mono_ns() - dm->started_mono) / 1e9);
    vigil_event_add_value_u64(b, "rss_bytes",
                              (uint64_t)rss_pages * (uint64_t)sysconf(_SC_PAGESIZE));
    vigil_event_add_value(b, "cpu_user_s", (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6);
    vigil_event_add_value(b, "cpu_system_s",
                          (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    self_value(b, "reloads_total", &dm->reloads_total);
    self_value(b, "reload_failed_total", &dm->reload_failed_total);
    self_value(b, "reload_pause_us", &dm->reload_pause_us);
    self_publish(dm);
}

/* ---- Run ---------------------------------------------------------------------- */

/* Network endpoints without CURVE are there because the config said
 * plaintext: true; say so where operators look. */
static void warn_plaintext(const struct vigil_config *c)
{
    const char *eps[][2] = {
        {"publish", c->bus.publish}, {"subscribe", c->bus.subscribe}, {"ingest", c->bus.ingest}};
    for (size_t i = 0; i < 3 && !c->bus.curve_secret_key; i++) {
        if (eps[i][1] && vigil_endpoint_is_remote(eps[i][1])) {
            vigil_log(VIGIL_LOG_WARN, "vigild",
                      "bus.%s %s is open to anyone who can reach it, unencrypted (plaintext: "
                      "true)",
                      eps[i][0], eps[i][1]);
        }
    }
}

static void set_status(struct daemon *dm)
{
    struct vigil_config *c = dm->cfg;
    char coalesce[48] = "";
    if (c->bus.coalesce_ns) { /* it delays events: say so where operators look */
        snprintf(coalesce, sizeof coalesce, "; bus.coalesce %llu us",
                 (unsigned long long)(c->bus.coalesce_ns / 1000u));
    }
    size_t nrules = dm->rules ? vigil_rules_count(dm->rules) : 0;
    snprintf(dm->status, sizeof dm->status,
             "%zu source%s, %zu rule%s, %zu sink%s; publish %s, subscribe %s%s", c->nsources,
             c->nsources == 1 ? "" : "s", nrules, nrules == 1 ? "" : "s", c->nsinks,
             c->nsinks == 1 ? "" : "s", c->bus.publish, c->bus.subscribe, coalesce);
}

static int start(struct daemon *dm)
{
    struct vigil_config *c = dm->cfg;
    char err[1024];
    /* CURVE first: the authenticator must be there before the first
     * connection can arrive, and a bad key file stops the start. */
    struct vigil_keypair kp = {0};
    if (c->bus.curve_secret_key) {
        if (vigil_key_read_secret(c->bus.curve_secret_key, NULL, &kp, err, sizeof err) != 0) {
            vigil_log(VIGIL_LOG_ERROR, "curve", "bus.curve.secret_key: %s", err);
            return -1;
        }
        dm->zap = vigil_zap_new(dm->zctx, c->bus.curve_authorized_keys, err, sizeof err);
        if (!dm->zap || vigil_zap_start(dm->zap) != 0) {
            vigil_log(VIGIL_LOG_ERROR, "curve", "bus.curve.authorized_keys: %s",
                      dm->zap ? "cannot start the authenticator's thread" : err);
            vigil_keypair_clear(&kp);
            return -1;
        }
        vigil_log(VIGIL_LOG_INFO, "curve", "CURVE on the bus's tcp endpoints; %zu keys from %s",
                  vigil_zap_keys(dm->zap), c->bus.curve_authorized_keys);
    }
    const char *secret = c->bus.curve_secret_key ? kp.secret_z85 : NULL;
    struct vigil_bus_opts bo = {
        .publish = c->bus.publish,
        .subscribe = c->bus.subscribe,
        .hwm = c->bus.hwm,
        .max_event_bytes = c->bus.max_event_bytes,
        .coalesce_ns = c->bus.coalesce_ns,
        .curve_secret_z85 = secret,
    };
    dm->bus = vigil_bus_new(dm->zctx, &bo, err, sizeof err);
    if (!dm->bus) {
        vigil_keypair_clear(&kp);
        vigil_log(VIGIL_LOG_ERROR, "vigild", "%s", err);
        return -1;
    }
    unsigned subs = 0;
    for (size_t i = 0; i < c->nsinks; i++) {
        int rc = vigil_instance_connect(dm->sinks[i]);
        if (rc == VIGIL_ECONFIG) {
            return -1; /* its spool: already said why */
        }
        if (rc < 0) {
            vigil_log(VIGIL_LOG_ERROR, vigil_instance_component(dm->sinks[i]),
                      "cannot connect to the bus: %s", zmq_strerror(-rc));
            return -1;
        }
        subs += (unsigned)rc;
    }
    for (size_t i = 0; i < c->nsources; i++) {
        int rc = vigil_instance_connect(dm->sources[i]);
        if (rc < 0) {
            vigil_log(VIGIL_LOG_ERROR, vigil_instance_component(dm->sources[i]),
                      "cannot connect to the bus: %s", zmq_strerror(-rc));
            return -1;
        }
    }
    if (dm->rules) {
        dm->rules_stage = vigil_rules_stage_new(dm->zctx, dm->rules, c->bus.hwm);
        if (!dm->rules_stage) {
            vigil_log(VIGIL_LOG_ERROR, "rules", "cannot connect the rules engine to the bus");
            return -1;
        }
        subs += vigil_rules_stage_subscriptions(dm->rules_stage);
    }
    if (c->bus.ingest) {
        dm->progress = calloc(c->nsinks ? c->nsinks : 1, sizeof *dm->progress);
        if (!dm->progress) {
            vigil_log(VIGIL_LOG_ERROR, "ingest", "out of memory");
            return -1;
        }
        /* The daemon's counters, which a sink's successor after a reload
         * goes on with (vigil_instance_share_barrier). */
        dm->barrier_slots = calloc(c->nsinks ? c->nsinks : 1, sizeof *dm->barrier_slots);
        if (!dm->barrier_slots) {
            vigil_log(VIGIL_LOG_ERROR, "ingest", "out of memory");
            return -1;
        }
        for (size_t i = 0; i < c->nsinks; i++) {
            vigil_instance_share_barrier(dm->sinks[i], &dm->barrier_slots[i]);
            dm->progress[i] = &dm->barrier_slots[i];
        }
        struct vigil_ingest_opts io = {.progress = dm->progress,
                                       .nprogress = c->nsinks,
                                       .host = c->host,
                                       .endpoint = c->bus.ingest,
                                       .hwm = c->bus.hwm,
                                       .max_event_bytes = c->bus.max_event_bytes,
                                       .curve_secret_z85 = secret};
        dm->ingest = vigil_ingest_new(dm->zctx, &io, err, sizeof err);
        if (!dm->ingest) {
            vigil_log(VIGIL_LOG_ERROR, "ingest", "%s", err);
            return -1;
        }
    }
    vigil_keypair_clear(&kp); /* the sockets keep their own copies */
    warn_plaintext(c);
    dm->self_push = zmq_socket(dm->zctx, ZMQ_PUSH);
    int linger = 1000;
    zmq_setsockopt(dm->self_push, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(dm->self_push, VIGIL_BUS_IN) != 0) {
        vigil_log(VIGIL_LOG_ERROR, "vigild", "cannot connect the self reporter: %s",
                  zmq_strerror(zmq_errno()));
        return -1;
    }
    dm->subs_total = subs;
    if (vigil_bus_start(dm->bus, subs) != 0) {
        vigil_log(VIGIL_LOG_ERROR, "vigild", "cannot start the bus thread");
        return -1;
    }
    /* Sinks first, and sources only once the bus has seen every sink's
     * subscription: otherwise the first events would reach no sink. */
    for (size_t i = 0; i < c->nsinks; i++) {
        if (vigil_instance_start(dm->sinks[i]) != 0) {
            vigil_log(VIGIL_LOG_ERROR, vigil_instance_component(dm->sinks[i]),
                      "cannot start thread");
            return -1;
        }
    }
    if (dm->rules_stage && vigil_rules_stage_start(dm->rules_stage) != 0) {
        vigil_log(VIGIL_LOG_ERROR, "rules", "cannot start thread");
        return -1;
    }
    if (vigil_bus_wait_ready(dm->bus, READY_TIMEOUT_MS) != 0) {
        vigil_log(VIGIL_LOG_WARN, "bus", "not every sink subscription arrived within %d ms",
                  READY_TIMEOUT_MS);
    }
    if (dm->ingest && vigil_ingest_start(dm->ingest) != 0) {
        vigil_log(VIGIL_LOG_ERROR, "ingest", "cannot start thread");
        return -1;
    }
    for (size_t i = 0; i < c->nsources; i++) {
        if (vigil_instance_start(dm->sources[i]) != 0) {
            vigil_log(VIGIL_LOG_ERROR, vigil_instance_component(dm->sources[i]),
                      "cannot start thread");
            return -1;
        }
    }
    set_status(dm);
    vigil_log(VIGIL_LOG_INFO, "vigild", "vigild %s started on host %s: %s", VIGIL_VERSION, c->host,
              dm->status);
    return 0;
}

/* systemd (notify.h): the bus, the rules and every source and sink thread
 * are watched; READY=1 once each one's loop has turned. The ingest's and the
 * CURVE authenticator's threads are not watched. */
static int notify_watch_all(struct daemon *dm)
{
    struct vigil_notify *n = dm->notify;
    int rc = vigil_notify_watch(n, "bus", &vigil_bus_stats(dm->bus)->beats);
    if (rc == 0 && dm->rules_stage) {
        rc = vigil_notify_watch(n, "rules", &vigil_rules_stage_stats(dm->rules_stage)->beats);
    }
    for (size_t i = 0; rc == 0 && i < dm->cfg->nsources; i++) {
        rc = vigil_notify_watch(n, vigil_instance_component(dm->sources[i]),
                                &vigil_instance_stats(dm->sources[i])->beats);
    }
    for (size_t i = 0; rc == 0 && i < dm->cfg->nsinks; i++) {
        rc = vigil_notify_watch(n, vigil_instance_component(dm->sinks[i]),
                                &vigil_instance_stats(dm->sinks[i])->beats);
    }
    if (rc != 0) {
        vigil_log(VIGIL_LOG_ERROR, "vigild", "out of memory");
    }
    return rc;
}

static int notify_ready(struct daemon *dm)
{
    struct vigil_notify *n = dm->notify;
    int rc = notify_watch_all(dm);
    if (rc != 0) {
        return rc;
    }
    /* A thread still not turning: READY=1 comes later, from the main loop. */
    vigil_notify_wait_ready(n, dm->status, READY_TIMEOUT_MS);
    return 0;
}

static void drain(struct daemon *dm)
{
    if (dm->bus && vigil_bus_drain(dm->bus, DRAIN_TIMEOUT_MS) != 0) {
        vigil_log(VIGIL_LOG_WARN, "bus",
                  "producers were still sending after %d ms; stopping anyway", DRAIN_TIMEOUT_MS);
    }
}

/* Reverse order: sources stop producing, the bus forwards what is queued,
 * the rules judge it and hand over their verdicts, the bus forwards those,
 * sinks deliver what they hold, then the bus closes. */
static void stop(struct daemon *dm)
{
    vigil_ingest_stop(dm->ingest);
    /* All asked at once: an isolated source's child may take its grace. */
    for (size_t i = 0; dm->sources && i < dm->cfg->nsources; i++) {
        vigil_instance_stop_request(dm->sources[i]);
    }
    for (size_t i = 0; dm->sources && i < dm->cfg->nsources; i++) {
        vigil_instance_stop(dm->sources[i]);
    }
    drain(dm);
    if (dm->rules_stage) {
        vigil_rules_stage_stop(dm->rules_stage);
        drain(dm);
    }
    /* Sinks finish in parallel: each may spend its grace period delivering. */
    for (size_t i = 0; dm->sinks && i < dm->cfg->nsinks; i++) {
        vigil_instance_stop_request(dm->sinks[i]);
    }
    for (size_t i = 0; dm->sinks && i < dm->cfg->nsinks; i++) {
        vigil_instance_stop(dm->sinks[i]);
    }
}

/* ---- Reload (SIGHUP) ----------------------------------------------------------- */

/* What makes an instance the same across a reload: its entry as written
 * (whatever its position or key order) and the daemon-wide settings it was
 * made with. */
static char *instance_key(const struct vigil_config *c, const struct vigil_instance_conf *ic)
{
    char *node = vigil_conf_canonical(ic->node);
    if (!node) {
        return NULL;
    }
    /* Not plugin_trust: it judges plugin files as they are loaded, so it
     * applies to the instances a reload makes (docs/reload.md). */
    const char *spool = ic->delivery.spool_path ? ic->delivery.spool_path : "";
    size_t n = strlen(node) + strlen(c->plugin_dir) + strlen(spool) + 16;
    char *k = malloc(n);
    if (k) {
        snprintf(k, n, "%s|%s|%s", node, c->plugin_dir, spool);
    }
    free(node);
    return k;
}

static bool same_instance(const struct vigil_config *a, const struct vigil_instance_conf *ia,
                          const struct vigil_config *b, const struct vigil_instance_conf *ib)
{
    char *ka = instance_key(a, ia), *kb = instance_key(b, ib);
    bool same = ka && kb && strcmp(ka, kb) == 0;
    free(ka);
    free(kb);
    return same;
}

/* The node of "bus.publish" in the new file, or the nearest one there is. */
static const struct vigil_conf *key_node(const struct vigil_config *c, const char *key)
{
    const struct vigil_conf *n = c->root;
    char part[64];
    for (const char *p = key; n && *p;) {
        size_t len = strcspn(p, ".");
        snprintf(part, sizeof part, "%.*s", (int)len, p);
        const struct vigil_conf *next = vigil_conf_get(n, part);
        if (!next) {
            break;
        }
        n = next;
        p += len + (p[len] == '.');
    }
    return n;
}

static void unchanged(struct vigil_diag *d, const struct vigil_config *nc, const char *key,
                      const char *was, const char *now)
{
    if ((!was && !now) || (was && now && strcmp(was, now) == 0)) {
        return;
    }
    vigil_diag_at(d, key_node(nc, key),
                  "%s cannot change on reload (running with %s, the file now says %s): restart "
                  "vigild to apply it",
                  key, was ? was : "none", now ? now : "none");
}

static void unchanged_u64(struct vigil_diag *d, const struct vigil_config *nc, const char *key,
                          uint64_t was, uint64_t now)
{
    char a[32], b[32];
    snprintf(a, sizeof a, "%" PRIu64, was);
    snprintf(b, sizeof b, "%" PRIu64, now);
    unchanged(d, nc, key, a, b);
}

/* What a running daemon cannot change without a restart: its bus (the
 * sockets are bound, agents and subscribers connected), its name and its
 * pid file. */
static void check_unchangeable(const struct vigil_config *o, const struct vigil_config *n,
                               struct vigil_diag *d)
{
    unchanged(d, n, "host", o->host, n->host);
    unchanged(d, n, "pid_file", o->pid_file, n->pid_file);
    unchanged(d, n, "bus.publish", o->bus.publish, n->bus.publish);
    unchanged(d, n, "bus.subscribe", o->bus.subscribe, n->bus.subscribe);
    unchanged(d, n, "bus.ingest", o->bus.ingest, n->bus.ingest);
    unchanged_u64(d, n, "bus.publish.plaintext", o->bus.publish_plaintext,
                  n->bus.publish_plaintext);
    unchanged_u64(d, n, "bus.subscribe.plaintext", o->bus.subscribe_plaintext,
                  n->bus.subscribe_plaintext);
    unchanged_u64(d, n, "bus.ingest.plaintext", o->bus.ingest_plaintext, n->bus.ingest_plaintext);
    unchanged(d, n, "bus.curve.secret_key", o->bus.curve_secret_key, n->bus.curve_secret_key);
    unchanged(d, n, "bus.curve.authorized_keys", o->bus.curve_authorized_keys,
              n->bus.curve_authorized_keys);
    unchanged_u64(d, n, "bus.hwm", (uint64_t)o->bus.hwm, (uint64_t)n->bus.hwm);
    unchanged_u64(d, n, "bus.max_event_bytes", o->bus.max_event_bytes, n->bus.max_event_bytes);
    unchanged_u64(d, n, "bus.coalesce", o->bus.coalesce_ns, n->bus.coalesce_ns);
}

/* A reload's plan: for each instance of the new config, the running one
 * it keeps or the one made for it. */
struct plan {
    struct vigil_config *nc;
    struct vigil_instance **src, **snk; /* by the new config's index */
    bool *src_made, *snk_made;          /* made by this reload (else kept) */
    struct vigil_instance **snk_prev;   /* the running sink a made one replaces */
    bool *old_src_kept, *old_snk_kept;  /* by the running config's index */
    char (*tokens)[VIGIL_TOKEN_LEN + 1];
    struct vigil_rules *rules; /* the new engine; NULL: none before, none now */
};

static void plan_free(struct plan *p, bool abandon)
{
    for (size_t i = 0; abandon && p->src_made && i < p->nc->nsources; i++) {
        if (p->src_made[i]) {
            vigil_instance_free(p->src[i]);
        }
    }
    for (size_t i = 0; abandon && p->snk_made && i < p->nc->nsinks; i++) {
        if (p->snk_made[i]) {
            vigil_instance_free(p->snk[i]);
        }
    }
    if (abandon) {
        vigil_rules_free(p->rules);
        vigil_config_free(p->nc);
    }
    free(p->src_made);
    free(p->snk_made);
    free(p->snk_prev);
    free(p->old_src_kept);
    free(p->old_snk_kept);
    free(p->tokens);
    if (abandon) {
        free(p->src);
        free(p->snk);
    }
}

static struct vigil_instance *running_named(struct vigil_instance **hs,
                                            const struct vigil_instance_conf *ics, size_t n,
                                            const char *name, size_t *index)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ics[i].name, name) == 0) {
            *index = i;
            return hs[i];
        }
    }
    return NULL;
}

/* Everything that can fail, before anything running is touched: the new
 * config checked as --check does (its keys, the plugins' keys, the init of
 * every instance made for it, the rules compiled). */
static void plan_make(struct daemon *dm, struct plan *p, struct vigil_diag *d)
{
    struct vigil_config *oc = dm->cfg, *nc = p->nc;
    size_t ns = nc->nsources, nk = nc->nsinks;
    p->src = calloc(ns + 1, sizeof *p->src);
    p->snk = calloc(nk + 1, sizeof *p->snk);
    p->src_made = calloc(ns + 1, sizeof *p->src_made);
    p->snk_made = calloc(nk + 1, sizeof *p->snk_made);
    p->snk_prev = calloc(nk + 1, sizeof *p->snk_prev);
    p->old_src_kept = calloc(oc->nsources + 1, sizeof *p->old_src_kept);
    p->old_snk_kept = calloc(oc->nsinks + 1, sizeof *p->old_snk_kept);
    p->tokens = calloc(nk + 1, sizeof *p->tokens);
    if (!p->src || !p->snk || !p->src_made || !p->snk_made || !p->snk_prev || !p->old_src_kept ||
        !p->old_snk_kept || !p->tokens) {
        vigil_diag_add(d, nc->path, 0, 0, "out of memory");
        return;
    }
    struct vigil_host_env env = host_env(dm, nc);
    for (size_t i = 0; i < nk; i++) {
        const struct vigil_instance_conf *ic = &nc->sinks[i];
        size_t j;
        struct vigil_instance *was = running_named(dm->sinks, oc->sinks, oc->nsinks, ic->name, &j);
        if (was && same_instance(oc, &oc->sinks[j], nc, ic)) {
            p->snk[i] = was;
            p->old_snk_kept[j] = true;
            continue;
        }
        if (was && strcmp(oc->sinks[j].delivery.spool_path, ic->delivery.spool_path) != 0) {
            vigil_diag_at(d, key_node(nc, "sinks"),
                          "sink '%s': its spool cannot move on reload (its undelivered events "
                          "are in %s): restart vigild to apply it",
                          ic->name, oc->sinks[j].delivery.spool_path);
            continue;
        }
        if (!was && dm->ingest) {
            vigil_diag_at(d, ic->node,
                          "sink '%s' is new: with bus.ingest, a reload cannot add or remove "
                          "sinks (agents' acknowledgements wait for each sink): restart vigild "
                          "to apply it",
                          ic->name);
            continue;
        }
        p->snk_prev[i] = was;
        p->snk_made[i] = true;
        p->snk[i] = vigil_instance_new(ic, VIGIL_SINK, &env, d);
    }
    for (size_t j = 0; dm->ingest && j < oc->nsinks; j++) {
        size_t i;
        if (!running_named(p->snk, nc->sinks, nk, oc->sinks[j].name, &i)) {
            vigil_diag_add(d, nc->path, 0, 0,
                           "sink '%s' is gone: with bus.ingest, a reload cannot add or remove "
                           "sinks (agents' acknowledgements wait for each sink): restart vigild "
                           "to apply it",
                           oc->sinks[j].name);
        }
    }
    for (size_t i = 0; i < ns; i++) {
        const struct vigil_instance_conf *ic = &nc->sources[i];
        size_t j;
        struct vigil_instance *was =
            running_named(dm->sources, oc->sources, oc->nsources, ic->name, &j);
        if (was && same_instance(oc, &oc->sources[j], nc, ic)) {
            p->src[i] = was;
            p->old_src_kept[j] = true;
            continue;
        }
        p->src_made[i] = true;
        p->src[i] = vigil_instance_new(ic, VIGIL_SOURCE, &env, d);
    }
    if ((nc->rules && vigil_conf_len(nc->rules) > 0) || dm->rules_stage) {
        size_t before = d->count;
        /* No rules any more: an engine without rules takes over. */
        p->rules =
            vigil_rules_new(nc->rules && vigil_conf_len(nc->rules) ? nc->rules : NULL, "rules", d);
        if (!p->rules && d->count == before) {
            vigil_diag_add(d, nc->path, 0, 0, "out of memory for the rules");
        }
    }
    if (d->count) {
        return; /* no init when the config is already wrong */
    }
    for (size_t i = 0; i < nk; i++) {
        if (p->snk_made[i]) {
            vigil_instance_init(p->snk[i], d);
        }
    }
    for (size_t i = 0; i < ns; i++) {
        if (p->src_made[i]) {
            vigil_instance_init(p->src[i], d);
        }
    }
}

static void new_token(char *out)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
        r = vigil_mono_ns() * 0x9e3779b97f4a7c15ull; /* unpredictable enough for its purpose */
    }
    snprintf(out, VIGIL_TOKEN_LEN + 1, "%016" PRIx64, r);
}

/* The event at which a replaced sink stops and its successor starts (bus.h).
 * It must not be lost: a blocking send. */
static int send_handover(struct daemon *dm, const char *sink, const char *token)
{
    struct vigil_event_builder *b = &dm->self;
    const char *body;
    size_t len;
    vigil_event_begin(b, VIGIL_HANDOVER_TOPIC);
    vigil_event_add_label(b, "sink", sink);
    vigil_event_add_label(b, "token", token);
    /* A source of its own: vigil.self's seq stays without gaps for those
     * who read it (the handover reaches no subscriber). */
    if (vigil_event_finish(b, dm->cfg->host, "vigild.reload", dm->handover_seq + 1, &body, &len) !=
            0 ||
        zmq_send(dm->self_push, VIGIL_HANDOVER_TOPIC, VIGIL_HANDOVER_TOPIC_LEN, ZMQ_SNDMORE) < 0 ||
        zmq_send(dm->self_push, body, len, 0) < 0) {
        return -1;
    }
    dm->handover_seq++;
    return 0;
}

static void wait_subscriptions(struct daemon *dm)
{
    if (vigil_bus_wait_subscriptions(dm->bus, dm->subs_total, RELOAD_SUBS_TIMEOUT_MS) != 0) {
        vigil_log(VIGIL_LOG_WARN, "bus", "reload: not every new subscription arrived within %d ms",
                  RELOAD_SUBS_TIMEOUT_MS);
    }
}

/* The sink made for entry i goes (stopped if it runs: a successor that has
 * taken nothing over ends without delivering anything); the running sink
 * it was to replace, if any, stays. */
static void keep_running_sink(struct daemon *dm, struct plan *p, size_t i)
{
    struct vigil_instance *prev = p->snk_prev[i];
    vigil_instance_free(p->snk[i]);
    p->snk[i] = prev;
    p->snk_made[i] = false;
    p->snk_prev[i] = NULL;
    for (size_t j = 0; prev && j < dm->cfg->nsinks; j++) {
        p->old_snk_kept[j] |= dm->sinks[j] == prev;
    }
}

/* Sinks: the new ones subscribe; each replaced one hands over at its
 * handover event (plugin_host.h); removed ones stop as at a stop. */
static void commit_sinks(struct daemon *dm, struct plan *p, size_t *counts)
{
    struct vigil_config *oc = dm->cfg, *nc = p->nc;
    for (size_t i = 0; i < nc->nsinks; i++) {
        if (!p->snk_made[i]) {
            continue;
        }
        struct vigil_instance *h = p->snk[i], *prev = p->snk_prev[i];
        if (prev) {
            new_token(p->tokens[i]);
            vigil_instance_takeover(h, p->tokens[i]);
            if (dm->barrier_slots) {
                vigil_instance_share_barrier(h, vigil_instance_barrier(prev));
            }
        }
        int rc = vigil_instance_connect(h);
        if (rc >= 0) {
            dm->subs_total += (unsigned)rc;
            rc = vigil_instance_start(h);
        }
        if (rc < 0) {
            /* Too late to refuse the reload: the running sink stays. */
            vigil_log(VIGIL_LOG_ERROR, vigil_instance_component(h), "reload: cannot start (%s)%s",
                      vigil_strerror(rc), prev ? "; the running sink of that name stays" : "");
            keep_running_sink(dm, p, i);
        }
    }
    wait_subscriptions(dm);
    for (size_t i = 0; i < nc->nsinks; i++) {
        if (p->snk_made[i] && p->snk_prev[i]) {
            vigil_instance_handover(p->snk_prev[i], p->tokens[i]);
            if (send_handover(dm, nc->sinks[i].name, p->tokens[i]) != 0) {
                /* Without the event neither side moves: the running sink
                 * goes on, its successor (which took nothing) goes. */
                vigil_log(VIGIL_LOG_ERROR, "vigild",
                          "reload: cannot send sink '%s' its handover (%s); the running sink "
                          "stays",
                          nc->sinks[i].name, zmq_strerror(zmq_errno()));
                keep_running_sink(dm, p, i);
            }
        }
    }
    for (size_t i = 0; i < nc->nsinks; i++) {
        if (p->snk_made[i] && p->snk_prev[i]) {
            vigil_instance_join(p->snk_prev[i]);
            vigil_instance_free(p->snk_prev[i]); /* lets go of the spool */
            vigil_instance_resume(p->snk[i]);
            counts[1]++;
        } else if (p->snk_made[i]) {
            counts[2]++;
        } else {
            counts[0]++;
        }
    }
    for (size_t j = 0; j < oc->nsinks; j++) {
        bool replaced = false;
        for (size_t i = 0; i < nc->nsinks; i++) {
            replaced |= p->snk_prev[i] == dm->sinks[j] && p->snk_made[i];
        }
        if (!p->old_snk_kept[j] && !replaced) {
            vigil_instance_stop(dm->sinks[j]);
            vigil_instance_free(dm->sinks[j]);
            counts[3]++;
        }
    }
}

static void commit_sources(struct daemon *dm, struct plan *p, size_t *counts)
{
    struct vigil_config *oc = dm->cfg, *nc = p->nc;
    for (size_t j = 0; j < oc->nsources; j++) {
        if (!p->old_src_kept[j]) {
            size_t i;
            counts[3] += !running_named(p->src, nc->sources, nc->nsources, oc->sources[j].name, &i);
            vigil_instance_stop(dm->sources[j]);
            vigil_instance_free(dm->sources[j]);
        }
    }
    for (size_t i = 0; i < nc->nsources; i++) {
        if (!p->src_made[i]) {
            counts[0]++;
            continue;
        }
        size_t j;
        counts[running_named(dm->sources, oc->sources, oc->nsources, nc->sources[i].name, &j)
                   ? 4
                   : 2]++;
        int rc = vigil_instance_connect(p->src[i]);
        if (rc >= 0) {
            rc = vigil_instance_start(p->src[i]);
        }
        if (rc < 0) {
            vigil_log(VIGIL_LOG_ERROR, vigil_instance_component(p->src[i]),
                      "reload: cannot start: %s", vigil_strerror(rc));
        }
    }
}

/* The rules: unchanged ones keep their state (rules_stage.h). Returns when
 * the new rules judge. */
static void commit_rules(struct daemon *dm, struct plan *p, struct vigil_rules_reload *rc)
{
    if (!p->rules) {
        return;
    }
    if (!dm->rules_stage) {
        dm->rules_stage = vigil_rules_stage_new(dm->zctx, p->rules, dm->cfg->bus.hwm);
        if (!dm->rules_stage || vigil_rules_stage_start(dm->rules_stage) != 0) {
            vigil_log(VIGIL_LOG_ERROR, "rules", "reload: cannot start the rules engine");
            vigil_rules_stage_free(dm->rules_stage);
            dm->rules_stage = NULL;
            vigil_rules_free(p->rules);
            p->rules = NULL;
            return;
        }
        dm->subs_total += vigil_rules_stage_subscriptions(dm->rules_stage);
        dm->rules = p->rules;
        rc->added = vigil_rules_count(p->rules);
        p->rules = NULL;
        return;
    }
    unsigned subs = 0;
    struct vigil_rules *old = vigil_rules_stage_swap(dm->rules_stage, p->rules, &subs, rc);
    if (!old) {
        vigil_log(VIGIL_LOG_ERROR, "rules", "reload: out of memory: the running rules stay");
        vigil_rules_free(p->rules);
    } else {
        dm->subs_total += subs;
        vigil_rules_free(old);
        dm->rules = p->rules;
    }
    p->rules = NULL;
}

static bool config_in_use(const struct daemon *dm, const struct vigil_config *c)
{
    if (c == dm->cfg || c == dm->boot) {
        return true;
    }
    const struct vigil_instance_conf *lo[] = {c->sources, c->sinks};
    size_t n[] = {c->nsources, c->nsinks};
    for (size_t i = 0; i < dm->cfg->nsources + dm->cfg->nsinks; i++) {
        struct vigil_instance *h =
            i < dm->cfg->nsources ? dm->sources[i] : dm->sinks[i - dm->cfg->nsources];
        const struct vigil_instance_conf *ic = h ? vigil_instance_conf(h) : NULL;
        for (size_t k = 0; ic && k < 2; k++) {
            if (n[k] && ic >= lo[k] && ic < lo[k] + n[k]) {
                return true;
            }
        }
    }
    return false;
}

static void reload_failed(struct daemon *dm, struct vigil_diag *d)
{
    for (size_t i = 0; i < d->n; i++) {
        vigil_log(VIGIL_LOG_ERROR, "config", "%s", d->msgs[i]);
    }
    if (d->count > d->n) {
        vigil_log(VIGIL_LOG_ERROR, "config", "(%zu more errors not shown)", d->count - d->n);
    }
    vigil_log(VIGIL_LOG_ERROR, "vigild",
              "reload of %s refused (%zu error%s): the running config stays", dm->path, d->count,
              d->count == 1 ? "" : "s");
    vigil_count(&dm->reload_failed_total, 1);
}

/* SIGHUP (received at t0): apply the config file's changes, losing nothing
 * (docs/reload.md). */
static void reload(struct daemon *dm, uint64_t t0)
{
    struct vigil_diag d;
    vigil_diag_init(&d);
    struct plan p = {.nc = vigil_config_load(dm->path, &d)};
    if (p.nc) {
        check_keys(p.nc, &d);
        check_unchangeable(dm->boot, p.nc, &d);
    }
    if (p.nc && d.count == 0) {
        warn_trust_off(p.nc);
        plan_make(dm, &p, &d);
    }
    if (d.count || !p.nc) {
        reload_failed(dm, &d);
        plan_free(&p, true);
        vigil_diag_fini(&d);
        return;
    }
    vigil_diag_fini(&d);
    /* From here on the old pipeline gives way to the new one, stage by
     * stage: sinks first (so that whatever the new rules and sources send
     * finds them subscribed), then the rules, then the sources. */
    vigil_notify_unwatch_all(dm->notify); /* the instances it watches may go */
    dm->nseen = 0;
    size_t sinks[4] = {0}, sources[5] = {0}; /* kept, replaced, added, removed(, restarted) */
    commit_sinks(dm, &p, sinks);
    struct vigil_rules_reload rr = {0};
    commit_rules(dm, &p, &rr);
    uint64_t judging = vigil_mono_ns();
    wait_subscriptions(dm); /* the new rules' prefixes, before new sources send */
    commit_sources(dm, &p, sources);

    free(dm->sources);
    free(dm->sinks);
    dm->sources = p.src;
    dm->sinks = p.snk;
    struct vigil_config **olds = realloc(dm->old_cfgs, (dm->nold + 1) * sizeof *olds);
    if (olds) {
        dm->old_cfgs = olds;
        dm->old_cfgs[dm->nold++] = dm->cfg;
    } /* else: it cannot be freed safely, so it stays allocated */
    dm->cfg = p.nc;
    p.nc = NULL;
    plan_free(&p, false);
    size_t keep = 0;
    for (size_t i = 0; i < dm->nold; i++) {
        if (config_in_use(dm, dm->old_cfgs[i])) {
            dm->old_cfgs[keep++] = dm->old_cfgs[i];
        } else {
            vigil_config_free(dm->old_cfgs[i]);
        }
    }
    dm->nold = keep;
    notify_watch_all(dm);
    set_status(dm);
    uint64_t pause_us = (judging - t0) / 1000u;
    atomic_store_explicit(&dm->reload_pause_us, pause_us, memory_order_relaxed);
    vigil_count(&dm->reloads_total, 1);
    vigil_log(VIGIL_LOG_INFO, "vigild",
              "reloaded %s in %.1f ms (new rules judging after %.1f ms): rules %zu kept, %zu "
              "changed, %zu added, %zu removed; sources %zu kept, %zu restarted, %zu added, %zu "
              "removed; sinks %zu kept, %zu replaced, %zu added, %zu removed",
              dm->path, (double)(vigil_mono_ns() - t0) / 1e6, (double)pause_us / 1e3, rr.kept,
              rr.changed, rr.added, rr.removed, sources[0], sources[4], sources[2], sources[3],
              sinks[0], sinks[1], sinks[2], sinks[3]);
}

static void wait_for_signal(struct daemon *dm, const sigset_t *set)
{
    uint64_t next = vigil_mono_ns() + dm->cfg->self_interval_ns;
    for (;;) {
        uint64_t interval = dm->cfg->self_interval_ns; /* a reload may change it */
        vigil_notify_tick(dm->notify, dm->status);     /* this thread is watched too */
        uint64_t now = vigil_mono_ns();
        if (now >= next) {
            self_report(dm);
            next += interval;
            if (next <= now) {
                next = now + interval;
            }
            continue;
        }
        uint64_t wait = next - now;
        if (wait > VIGIL_BEAT_MS * 1000000ull) {
            wait = VIGIL_BEAT_MS * 1000000ull;
        }
        struct timespec ts = {.tv_sec = (time_t)(wait / 1000000000u),
                              .tv_nsec = (long)(wait % 1000000000u)};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            vigil_log(VIGIL_LOG_INFO, "vigild", "%s received: stopping",
                      sig == SIGTERM ? "SIGTERM" : "SIGINT");
            vigil_notify_stopping(dm->notify);
            return;
        }
        if (sig == SIGHUP) {
            uint64_t t0 = vigil_mono_ns();
            vigil_notify_reloading(dm->notify);
            vigil_log(VIGIL_LOG_INFO, "vigild",
                      "SIGHUP received: reloading %s; sinks reopen their files", dm->path);
            reload(dm, t0);
            for (size_t i = 0; dm->sinks && i < dm->cfg->nsinks; i++) {
                vigil_instance_reopen(dm->sinks[i]);
            }
            if (dm->zap) {
                char err[1024];
                if (vigil_zap_reload(dm->zap, err, sizeof err) != 0) {
                    vigil_log(VIGIL_LOG_ERROR, "curve",
                              "authorized_keys not reloaded, the keys in use stay: %s", err);
                } else {
                    vigil_log(VIGIL_LOG_INFO, "curve", "authorized_keys reloaded: %zu keys",
                              vigil_zap_keys(dm->zap));
                }
            }
            vigil_notify_reloaded(dm->notify, dm->status);
        }
    }
}

/* ---- The pid file: vigild --reload finds the daemon by it ---------------------- */

static void pid_file_write(struct daemon *dm)
{
    const char *path = dm->cfg->pid_file;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (fd < 0 || write(fd, buf, (size_t)n) != n) {
        vigil_log(VIGIL_LOG_WARN, "vigild",
                  "cannot write the pid file %s (%s): vigild --reload "
                  "will not find this daemon; kill -HUP %ld does the same",
                  path, strerror(errno), (long)getpid());
    } else {
        dm->pid_written = true;
    }
    if (fd >= 0) {
        close(fd);
    }
}

/* Only if it is still ours: another vigild may have started since. */
static void pid_file_remove(struct daemon *dm)
{
    if (!dm->pid_written) {
        return;
    }
    long pid = 0;
    FILE *f = fopen(dm->boot->pid_file, "r");
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1) {
            pid = 0;
        }
        fclose(f);
    }
    if (pid == (long)getpid()) {
        unlink(dm->boot->pid_file);
    }
}

int vigil_daemon_reload(const char *path)
{
    struct vigil_diag d;
    vigil_diag_init(&d);
    struct vigil_config *c = vigil_config_load(path, &d);
    int status = 1;
    if (!c) {
        vigil_diag_print(&d, stderr);
        goto out;
    }
    /* Only the pid file is needed here: the daemon checks the whole file
     * itself, and logs every error if it refuses it. */
    long pid = 0;
    FILE *f = fopen(c->pid_file, "r");
    if (!f) {
        fprintf(stderr, "vigild: cannot read the pid file %s: %s (is vigild running with %s?)\n",
                c->pid_file, strerror(errno), path);
        goto out;
    }
    if (fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
        fprintf(stderr, "vigild: %s holds no process id\n", c->pid_file);
        fclose(f);
        goto out;
    }
    fclose(f);
    if (kill((pid_t)pid, SIGHUP) != 0) {
        fprintf(stderr, "vigild: cannot signal process %ld (from %s): %s\n", pid, c->pid_file,
                strerror(errno));
        goto out;
    }
    printf("vigild: asked vigild (pid %ld) to reload %s; its log says whether it applied it\n", pid,
           path);
    if (d.count) {
        fprintf(stderr,
                "vigild: %s has %zu error%s: the running config will stay (vigild "
                "--check -c %s shows them)\n",
                path, d.count, d.count == 1 ? "" : "s", path);
    }
    status = 0;
out:
    vigil_config_free(c);
    vigil_diag_fini(&d);
    return status;
}

int vigil_daemon_run(const char *path)
{
    /* Every thread (ours, libzmq's) inherits this mask, so signals reach only
     * sigtimedwait() in the main thread. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A file sink past RLIMIT_FSIZE gets EFBIG (and spools) instead of dying. */
    signal(SIGXFSZ, SIG_IGN);
    evthread_use_pthreads();
    /* Sources hold many descriptors (the kvm source's tracepoints take nine
     * per VMM thread; ZeroMQ two per socket): use all the hard limit gives. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }

    struct daemon dm = {.started_mono = vigil_mono_ns(), .path = path};
    vigil_event_builder_init(&dm.self);
    struct vigil_diag d;
    vigil_diag_init(&d);
    int status = 1;
    dm.cfg = dm.boot = vigil_config_load(path, &d);
    if (dm.cfg) {
        dm.zctx = zmq_ctx_new();
        check_keys(dm.cfg, &d);
        load_instances(&dm, &d);
    }
    if (d.count || !dm.cfg) {
        print_diag(&d, path);
        goto out;
    }
    dm.notify = vigil_notify_new();
    /* The pid file once started: the sinks' spools have made state_dir. */
    if (dm.notify && start(&dm) == 0 && (pid_file_write(&dm), notify_ready(&dm) == 0)) {
        wait_for_signal(&dm, &set);
        status = 0;
    } else if (!dm.notify) {
        vigil_log(VIGIL_LOG_ERROR, "vigild", "out of memory");
    }
    stop(&dm);
    if (status == 0) {
        self_report(&dm); /* the final counters, for whoever still listens */
        vigil_bus_drain(dm.bus, DRAIN_TIMEOUT_MS);
        vigil_log(VIGIL_LOG_INFO, "vigild", "stopped");
    }
out:
    vigil_notify_free(dm.notify); /* before the counters it watches go */
    free(dm.seen);
    free_instances(&dm);
    if (dm.self_push) {
        zmq_close(dm.self_push);
    }
    vigil_bus_free(dm.bus);
    if (dm.zctx) {
        zmq_ctx_term(dm.zctx);
    }
    vigil_event_builder_fini(&dm.self);
    pid_file_remove(&dm);
    if (dm.boot != dm.cfg) {
        vigil_config_free(dm.boot);
    }
    for (size_t i = 0; i < dm.nold; i++) {
        if (dm.old_cfgs[i] != dm.boot) {
            vigil_config_free(dm.old_cfgs[i]);
        }
    }
    free(dm.old_cfgs);
    vigil_config_free(dm.cfg);
    vigil_diag_fini(&d);
    return status;
}

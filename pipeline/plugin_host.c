/* The plugin host (see plugin_host.h): the loader and its refusals, the
 * services table handed to plugins, and the per-instance threads that run
 * sources (collect/own I/O -> PUSH) and sinks (SUB -> batched write()).
 */
#include "plugin_host.h"

#include <dlfcn.h>
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bus.h"
#include "event.h"
#include "glob.h"
#include "json.h"
#include "log.h"

#include "host_internal.h"

/* ---- Trust: who can write the plugin -------------------------------------- */

/* "alice (uid 1000)", or "uid 1000" for a uid without a name. */
static void owner_name(uid_t uid, char *out, size_t outlen)
{
    struct passwd pw, *found = NULL;
    char buf[1024];
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found) {
        snprintf(out, outlen, "%s (uid %u)", found->pw_name, (unsigned)uid);
    } else {
        snprintf(out, outlen, "uid %u", (unsigned)uid);
    }
}

/* Checks one component of the plugin's real path (`st` from lstat). A
 * component is trusted when it is owned by root or by vigild's effective
 * user and nobody else can write it: the rule of sshd's StrictModes. The
 * one exception is a root-owned sticky folder (/tmp) above the plugin's
 * own folder: nobody but root and the owner can rename or remove an entry
 * of it, and the entry below it is checked too. The folder that holds the
 * plugin must itself be closed: a plugin folder is no place to share.
 * Returns true when trusted; else fills why (a whole sentence part). */
static bool component_trusted(const char *cur, const struct stat *st, bool is_file,
                              bool plugin_folder, char *why, size_t whylen)
{
    uid_t me = geteuid();
    bool bad_owner = st->st_uid != 0 && st->st_uid != me;
    mode_t w = st->st_mode & (S_IWGRP | S_IWOTH);
    bool shared_ok = !is_file && !plugin_folder && st->st_uid == 0 && (st->st_mode & S_ISVTX);
    bool bad_mode = w && !shared_ok;
    if (!bad_owner && !bad_mode) {
        return true;
    }
    char owner[320], mine[360] = "root";
    owner_name(st->st_uid, owner, sizeof owner);
    if (me != 0) {
        char name[320];
        owner_name(me, name, sizeof name);
        snprintf(mine, sizeof mine, "root or vigild's user %s", name);
    }
    const char *what = is_file ? "the file" : "the folder";
    const char *who = w == (S_IWGRP | S_IWOTH) ? "group and others"
                      : w == S_IWGRP           ? "group"
                                               : "others";
    char fix[PATH_MAX * 2 + 64];
    if (bad_mode && !is_file && (st->st_mode & S_ISVTX)) {
        /* chmod go-w /tmp would break the machine: move instead. */
        snprintf(fix, sizeof fix,
                 "move the plugins to a folder of their own that only root can write, and "
                 "point plugin_dir there");
    } else if (bad_owner && bad_mode) {
        snprintf(fix, sizeof fix, "run 'chown root %s && chmod go-w %s'", cur, cur);
    } else if (bad_owner) {
        snprintf(fix, sizeof fix, "run 'chown root %s'", cur);
    } else {
        snprintf(fix, sizeof fix, "run 'chmod go-w %s'", cur);
    }
    if (bad_owner && bad_mode) {
        snprintf(why, whylen,
                 "%s %s is owned by %s, not by %s, and is writable by %s "
                 "(mode %04o)",
                 what, cur, owner, mine, who, (unsigned)(st->st_mode & 07777));
    } else if (bad_owner) {
        snprintf(why, whylen, "%s %s is owned by %s, not by %s (mode %04o)", what, cur, owner, mine,
                 (unsigned)(st->st_mode & 07777));
    } else {
        snprintf(why, whylen, "%s %s is writable by %s (mode %04o, owner %s)", what, cur, who,
                 (unsigned)(st->st_mode & 07777), owner);
    }
    size_t n = strlen(why);
    snprintf(why + n, whylen - n,
             ": whoever can write it can make vigild run their code; %s (plugin_trust: off "
             "skips this check, for development trees only)",
             fix);
    return false;
}

/* Resolves `path` into real (PATH_MAX bytes) and checks the file and every
 * folder from / down to it. Each component is lstat'ed: realpath left no
 * symlink, so one found now was put there meanwhile and is refused. Not a
 * check of the descriptor dlopen will read: once every component is
 * trusted, only root and vigild's own user can change what the path names,
 * and they could change the plugin anyway. Loading through
 * /proc/self/fd/N instead would name the library /proc/self/fd/N in gdb,
 * perf and dladdr. Returns 0, or -1 with err filled. */
static int check_trust(const char *name, const char *path, char *real, char *err, size_t errlen)
{
    if (!realpath(path, real)) {
        snprintf(err, errlen, "plugin '%s': %s: %s", name, path, strerror(errno));
        return -1;
    }
    char shown[PATH_MAX * 2 + 8];
    if (strcmp(real, path) == 0) {
        snprintf(shown, sizeof shown, "%s", path);
    } else {
        snprintf(shown, sizeof shown, "%s (%s)", path, real);
    }
    size_t len = strlen(real);
    size_t last_slash = (size_t)(strrchr(real, '/') - real);
    char cur[PATH_MAX];
    char why[PATH_MAX * 4];
    for (size_t i = 0; i <= len; i++) {
        if (i != 0 && i < len && real[i] != '/') {
            continue;
        }
        /* i == 0: "/"; a later slash ends a folder; i == len: the file. */
        if (i == 0) {
            strcpy(cur, "/");
        } else {
            memcpy(cur, real, i);
            cur[i] = '\0';
        }
        bool is_file = i == len;
        struct stat st;
        if (lstat(cur, &st) != 0) {
            snprintf(err, errlen, "plugin '%s': refusing to load %s: %s: %s", name, shown, cur,
                     strerror(errno));
            return -1;
        }
        if (is_file ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode)) {
            snprintf(err, errlen,
                     "plugin '%s': refusing to load %s: %s is not a %s (it changed while being "
                     "checked?)",
                     name, shown, cur, is_file ? "regular file" : "folder");
            return -1;
        }
        bool plugin_folder = !is_file && (i == last_slash || (i == 0 && last_slash == 0));
        if (!component_trusted(cur, &st, is_file, plugin_folder, why, sizeof why)) {
            snprintf(err, errlen, "plugin '%s': refusing to load %s: %s", name, shown, why);
            return -1;
        }
    }
    return 0;
}

/* ---- Loading ----------------------------------------------------------- */

static const char *kind_name(enum vigil_plugin_kind k)
{
    return k == VIGIL_SOURCE ? "source" : k == VIGIL_SINK ? "sink" : "unknown";
}

void *vigil_plugin_open(const char *dir, const char *name, enum vigil_plugin_kind kind, bool trust,
                        const struct vigil_plugin **desc, char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.so", dir, name);
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen,
                 "plugin '%s': %s: %s (looked in %s; set plugin_dir, or build the plugin)", name,
                 path, strerror(errno), dir);
        return NULL;
    }
    /* What is checked is what is loaded: the real path, symlinks resolved. */
    char real[PATH_MAX];
    const char *load = path;
    if (trust) {
        if (check_trust(name, path, real, err, errlen) != 0) {
            return NULL;
        }
        load = real;
    }
    dlerror();
    void *dl = dlopen(load, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *e = dlerror();
        snprintf(err, errlen,
                 "plugin '%s': cannot load %s: %s (check its dependencies with 'ldd %s')", name,
                 path, e ? e : "unknown dlopen error", path);
        return NULL;
    }
    const struct vigil_plugin *p = dlsym(dl, "vigil_plugin");
    if (!p) {
        snprintf(err, errlen,
                 "plugin '%s': %s does not export the symbol 'vigil_plugin' (a plugin exports "
                 "'VIGIL_EXPORT const struct vigil_plugin vigil_plugin')",
                 name, path);
        goto fail;
    }
    if (p->abi != VIGIL_PLUGIN_ABI) {
        snprintf(err, errlen,
                 "plugin '%s': %s has plugin ABI %u, but this vigild has ABI %u: rebuild the "
                 "plugin against this version's vigil/plugin.h",
                 name, path, (unsigned)p->abi, (unsigned)VIGIL_PLUGIN_ABI);
        goto fail;
    }
    if (p->size < VIGIL_PLUGIN_SIZE_MIN) {
        snprintf(err, errlen,
                 "plugin '%s': %s has a descriptor of %u bytes, this vigild needs at least %zu: "
                 "rebuild the plugin against this version's vigil/plugin.h",
                 name, path, (unsigned)p->size, (size_t)VIGIL_PLUGIN_SIZE_MIN);
        goto fail;
    }
    if (!p->name || strcmp(p->name, name) != 0) {
        snprintf(err, errlen,
                 "plugin '%s': %s declares the name '%s': a plugin's file must be named after "
                 "it (<name>.so)",
                 name, path, p->name ? p->name : "(none)");
        goto fail;
    }
    if (p->kind != kind) {
        snprintf(err, errlen, "plugin '%s': %s is a %s plugin, but is listed under %ss", name, path,
                 kind_name(p->kind), kind_name(kind));
        goto fail;
    }
    if (!p->init || !p->fini || (kind == VIGIL_SINK && !p->write)) {
        snprintf(err, errlen, "plugin '%s': %s lacks init, fini%s", name, path,
                 kind == VIGIL_SINK ? " or write" : "");
        goto fail;
    }
    *desc = p;
    return dl;
fail:
    dlclose(dl);
    return NULL;
}

void vigil_plugin_close(void *handle)
{
    if (handle) {
        dlclose(handle);
    }
}

/* ---- Services for plugins --------------------------------------------------- */

static void api_vlog(struct vigil_instance *h, enum vigil_log_level level, const char *fmt,
                     va_list ap)
{
    vigil_vlog(level, h->component, fmt, ap);
}

static void api_log(struct vigil_instance *h, enum vigil_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vigil_vlog(level, h->component, fmt, ap);
    va_end(ap);
}

/* One limiter per call site (the format's address); sites past the table
 * share its last slot, so a plugin with many sites is still bounded. */
static void api_vlog_limited(struct vigil_instance *h, enum vigil_log_level level, const char *fmt,
                             va_list ap)
{
    size_t i = 0;
    while (i < VIGIL_LOG_SITES - 1 && h->log_sites[i].fmt && h->log_sites[i].fmt != fmt) {
        i++;
    }
    struct vigil_log_site *site = &h->log_sites[i];
    if (!site->fmt) {
        site->fmt = fmt;
        site->rl = (struct vigil_ratelimit){.window_ns = 60000000000ull, .burst = 3};
    }
    uint64_t suppressed;
    if (!vigil_ratelimit_ok(&site->rl, vigil_mono_ns(), &suppressed)) {
        return;
    }
    vigil_vlog(level, h->component, fmt, ap);
    if (suppressed) {
        vigil_log(level, h->component, "(%llu similar messages suppressed)",
                  (unsigned long long)suppressed);
    }
}

static void api_log_limited(struct vigil_instance *h, enum vigil_log_level level, const char *fmt,
                            ...)
{
    va_list ap;
    va_start(ap, fmt);
    api_vlog_limited(h, level, fmt, ap);
    va_end(ap);
}

static const char *api_instance_name(struct vigil_instance *h)
{
    return h->ic->name;
}

static const char *api_host_name(struct vigil_instance *h)
{
    return h->env.host_name;
}

static struct event_base *api_event_base(struct vigil_instance *h)
{
    return h->base;
}

static const struct vigil_conf *api_conf_root(struct vigil_instance *h)
{
    return h->ic->own;
}

static void api_conf_error(struct vigil_instance *h, const struct vigil_conf *n, const char *fmt,
                           ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (h->diag) {
        const struct vigil_conf *at = n ? n : h->ic->node;
        vigil_diag_vadd(h->diag, at->file, at->line, at->col, fmt, ap);
    } else {
        vigil_vlog(VIGIL_LOG_ERROR, h->component, fmt, ap);
    }
    va_end(ap);
}

/* A sink's event, decoded on first use (sink.c hands them out undecoded). */
static const struct vigil_event_view *as_view(const struct vigil_event *ev)
{
    if (!ev) {
        return NULL;
    }
    struct vigil_event_view *v = vigil_event_view_of(ev);
    if (v->lazy_zone) {
        msgpack_zone *zone = v->lazy_zone;
        const char *why;
        struct vigil_event_view d;
        int rc = v->lazy_trusted ? vigil_event_decode_trusted(&d, v->topic, v->topic_len, v->body,
                                                              v->body_len, zone, &why)
                                 : vigil_event_decode(&d, v->topic, v->topic_len, v->body,
                                                      v->body_len, SIZE_MAX, zone, &why);
        if (rc != 0) {
            vigil_log(VIGIL_LOG_ERROR, "sink", "an event of topic '%.*s' does not decode: %s",
                      (int)v->topic_len, v->topic, why);
            return NULL;
        }
        *v = d;
    }
    return v;
}

static struct vigil_event_builder *api_event_begin(struct vigil_instance *h, const char *topic)
{
    vigil_event_begin(&h->builder, topic);
    return &h->builder;
}

/* Sends one event, waiting while the bus is full (the socket's send timeout
 * lets us notice a stop request). Nothing is dropped unless we stop. */
static int send_event(struct vigil_instance *h, const char *topic, size_t tl, const char *body,
                      size_t len)
{
    while (zmq_send(h->sock, topic, tl, ZMQ_SNDMORE) == -1) {
        if ((zmq_errno() != EAGAIN && zmq_errno() != EINTR) || atomic_load(&h->stopping)) {
            return VIGIL_ESTOPPED;
        }
        vigil_isolate_progress(h); /* waiting on backpressure is no hang */
    }
    /* Only the first frame of a message can meet the HWM. */
    while (zmq_send(h->sock, body, len, 0) == -1) {
        if (zmq_errno() != EINTR) {
            return VIGIL_ESTOPPED;
        }
    }
    vigil_count(&h->stats.out_total, 1);
    return 0;
}

#define HELD_MAX_EVENTS 256
#define HELD_MAX_BYTES (256u << 10)

/* Sends the kept events as one message on VIGIL_BUS_SOURCES, waiting while
 * the bus is full. Nothing is counted here. */
static int send_held_message(struct vigil_instance *h)
{
    const char *data = vigil_record_data(&h->held);
    size_t len = vigil_record_bytes(&h->held);
    while (zmq_send(h->sock, data, len, 0) == -1) {
        if ((zmq_errno() != EAGAIN && zmq_errno() != EINTR) || atomic_load(&h->stopping)) {
            return VIGIL_ESTOPPED;
        }
        vigil_isolate_progress(h); /* waiting on backpressure is no hang */
    }
    vigil_count(&h->stats.out_total, vigil_record_count(&h->held));
    return 0;
}

/* Sends one event now, outside a batch. */
static int send_one(struct vigil_instance *h, const char *topic, size_t tl, const char *body,
                    size_t len)
{
    if (!h->wire_batch) {
        return send_event(h, topic, tl, body, len);
    }
    /* held is empty here: batch_end() and a full buffer flush it. */
    int rc = vigil_record_append(&h->held, topic, tl, body, len);
    rc = rc != 0 ? rc : send_held_message(h);
    vigil_record_clear(&h->held);
    return rc;
}

/* Sends the kept events: on VIGIL_BUS_SOURCES as one message; else back
 * to back, so that the bus thread, slower per event than these sends, finds
 * the next one queued instead of sleeping and being woken (an eventfd write
 * and a cross-CPU wake-up) for each. */
static int flush_held(struct vigil_instance *h)
{
    if (h->wire_batch) {
        int rc = send_held_message(h);
        if (rc != 0) {
            vigil_count(&h->stats.dropped_total, vigil_record_count(&h->held));
        }
        vigil_record_clear(&h->held);
        return rc;
    }
    int rc = 0;
    size_t sent = 0;
    struct vigil_record r;
    struct vigil_record_iter it = vigil_record_iter(&h->held);
    while (vigil_record_next(&it, &r)) {
        rc = send_event(h, r.topic, r.topic_len, r.body, r.body_len);
        if (rc != 0) {
            break;
        }
        sent++;
    }
    if (rc != 0) {
        vigil_count(&h->stats.dropped_total, vigil_record_count(&h->held) - sent);
    }
    vigil_record_clear(&h->held);
    return rc;
}

/* Keeps one finished event for flush_held(); a full buffer is sent first. */
static int hold_event(struct vigil_instance *h, const char *topic, size_t tl, const char *body,
                      size_t len)
{
    int rc = vigil_record_append(&h->held, topic, tl, body, len);
    if (rc == -ENOBUFS) {
        rc = flush_held(h);
        if (rc != 0) {
            vigil_count(&h->stats.dropped_total, 1);
            return rc;
        }
        rc = vigil_record_append(&h->held, topic, tl, body, len);
    }
    if (rc != 0) {
        rc = flush_held(h); /* no memory: send what is kept, then this one alone */
        rc = rc != 0 ? rc : send_one(h, topic, tl, body, len);
        if (rc != 0) {
            vigil_count(&h->stats.dropped_total, 1);
        }
        return rc;
    }
    return 0;
}

static void api_batch_begin(struct vigil_instance *h)
{
    h->batching = h->kind == VIGIL_SOURCE && h->sock;
}

static int api_batch_end(struct vigil_instance *h)
{
    h->batching = false;
    return vigil_record_count(&h->held) ? flush_held(h) : 0;
}

static int api_publish(struct vigil_instance *h, struct vigil_event_builder *b)
{
    if (!b || b != &h->builder || h->kind != VIGIL_SOURCE) {
        /* A sink publishing, or a builder that is not this instance's: a
         * plugin bug, not a reason to stop. */
        return VIGIL_EPLUGIN;
    }
    if (!h->sock) {
        return VIGIL_ESTOPPED; /* vigild --check: nothing is connected */
    }
    const char *body;
    size_t len;
    int rc = vigil_event_finish(b, h->env.host_name, h->ic->name, h->seq + 1, &body, &len);
    if (rc != 0) {
        vigil_count(&h->stats.errors_total, 1);
        uint64_t suppressed;
        if (vigil_ratelimit_ok(&h->collect_rl, vigil_mono_ns(), &suppressed)) {
            vigil_log(VIGIL_LOG_ERROR, h->component, "event not published: %s (%llu more)",
                      rc == -ENOMEM ? "out of memory" : b->why, (unsigned long long)suppressed);
        }
        return rc;
    }
    if (len > h->env.max_event_bytes) {
        vigil_count(&h->stats.errors_total, 1);
        return VIGIL_ETOOBIG;
    }
    if (h->batching) {
        h->seq++; /* the event has its seq: a later failed send is a counted drop */
        return hold_event(h, b->topic, b->topic_len, body, len);
    }
    rc = send_one(h, b->topic, b->topic_len, body, len);
    if (rc != 0) {
        vigil_count(&h->stats.dropped_total, 1);
        return rc;
    }
    h->seq++;
    return 0;
}

static const char *api_event_topic(const struct vigil_event *ev, size_t *len)
{
    const struct vigil_event_view *v = ev ? &ev->view : NULL;
    if (!v) {
        *len = 0;
        return "";
    }
    *len = v->topic_len;
    return v->topic;
}

static int api_event_get_str(const struct vigil_event *ev, const char *path, const char **out,
                             size_t *len)
{
    const struct vigil_event_view *v = as_view(ev);
    return v ? vigil_msgpack_str(vigil_event_get(v, path), out, len) : VIGIL_ETYPE;
}

static int api_event_get_double(const struct vigil_event *ev, const char *path, double *out)
{
    const struct vigil_event_view *v = as_view(ev);
    return v ? vigil_msgpack_double(vigil_event_get(v, path), out) : VIGIL_ETYPE;
}

static int api_event_get_u64(const struct vigil_event *ev, const char *path, uint64_t *out)
{
    const struct vigil_event_view *v = as_view(ev);
    return v ? vigil_msgpack_u64(vigil_event_get(v, path), out) : VIGIL_ETYPE;
}

static const void *api_event_body(const struct vigil_event *ev, size_t *len)
{
    const struct vigil_event_view *v = ev ? &ev->view : NULL;
    *len = v ? v->body_len : 0;
    return v ? v->body : NULL;
}

static size_t api_event_json(const struct vigil_event *ev, char *buf, size_t cap)
{
    /* From the bytes: no decoding, whether or not the event was decoded. */
    const struct vigil_event_view *v = ev ? &ev->view : NULL;
    size_t n =
        v ? vigil_json_event(v->topic, v->topic_len, v->body, v->body_len, buf, cap) : SIZE_MAX;
    if (n == SIZE_MAX) {
        if (v) {
            vigil_log(VIGIL_LOG_ERROR, "sink", "an event of topic '%.*s' is not one msgpack object",
                      (int)v->topic_len, v->topic);
        }
        if (cap) {
            buf[0] = '\0';
        }
        return 0;
    }
    return n;
}

/* A struct vigil_field is a msgpack object of a decoded event. */
static const msgpack_object *as_obj(const struct vigil_field *f)
{
    return (const msgpack_object *)f;
}

static const struct vigil_field *api_event_field(const struct vigil_event *ev, const char *path)
{
    const struct vigil_event_view *v = as_view(ev);
    return v ? (const struct vigil_field *)vigil_event_get(v, path) : NULL;
}

static size_t api_event_len(const struct vigil_field *f)
{
    return vigil_msgpack_len(as_obj(f));
}

static const struct vigil_field *api_event_at(const struct vigil_field *f, size_t i,
                                              const char **key, size_t *key_len)
{
    return (const struct vigil_field *)vigil_msgpack_at(as_obj(f), i, key, key_len);
}

static enum vigil_field_type api_field_type(const struct vigil_field *f)
{
    return vigil_msgpack_type(as_obj(f));
}

static int api_field_str(const struct vigil_field *f, const char **out, size_t *len)
{
    return vigil_msgpack_str(as_obj(f), out, len);
}

static int api_field_double(const struct vigil_field *f, double *out)
{
    return vigil_msgpack_double(as_obj(f), out);
}

static int api_field_u64(const struct vigil_field *f, uint64_t *out)
{
    return vigil_msgpack_u64(as_obj(f), out);
}

static int api_field_i64(const struct vigil_field *f, int64_t *out)
{
    return vigil_msgpack_i64(as_obj(f), out);
}

static int api_field_bool(const struct vigil_field *f, bool *out)
{
    return vigil_msgpack_bool(as_obj(f), out);
}

/* ---- Counters for vigil.self ---------------------------------------------- */

/* The host's own names in a stage's vigil.self event. */
static const char *const host_counter_names[] = {
    "in_total",     "out_total",           "dropped_total",
    "errors_total", "retried_total",       "failed_total",
    "queue_depth",  "spooled_total",       "spool_events",
    "spool_bytes",  "spool_corrupt_total", "spool_skipped_bytes_total",
    NULL,
};

static int api_counter_new(struct vigil_instance *h, const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > VIGIL_COUNTER_NAME_MAX ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != n) {
        vigil_log(VIGIL_LOG_ERROR, h->component,
                  "counter name '%s': use 1-%d characters of a-z, 0-9 and _",
                  name ? name : "(null)", VIGIL_COUNTER_NAME_MAX);
        return VIGIL_ECONFIG;
    }
    for (size_t i = 0; host_counter_names[i]; i++) {
        if (strcmp(name, host_counter_names[i]) == 0) {
            vigil_log(VIGIL_LOG_ERROR, h->component,
                      "counter name '%s' is one of the host's own in vigil.self", name);
            return VIGIL_ECONFIG;
        }
    }
    for (int i = 0; i < h->ncounters; i++) {
        if (strcmp(name, h->counters[i].name) == 0) {
            vigil_log(VIGIL_LOG_ERROR, h->component, "counter '%s' is made twice", name);
            return VIGIL_ECONFIG;
        }
    }
    if (h->ncounters == VIGIL_PLUGIN_COUNTERS) {
        vigil_log(VIGIL_LOG_ERROR, h->component, "counter '%s': at most %d counters", name,
                  VIGIL_PLUGIN_COUNTERS);
        return VIGIL_ETOOBIG;
    }
    struct vigil_plugin_counter *c = &h->counters[h->ncounters];
    memcpy(c->name, name, n + 1);
    atomic_store(&c->value, 0);
    return h->ncounters++;
}

static void api_counter_add(struct vigil_instance *h, int id, uint64_t n)
{
    if (id >= 0 && id < h->ncounters) {
        vigil_count_own(&h->counters[id].value, n);
    }
}

static void api_counter_set(struct vigil_instance *h, int id, uint64_t value)
{
    if (id >= 0 && id < h->ncounters) {
        atomic_store_explicit(&h->counters[id].value, value, memory_order_relaxed);
    }
}

void vigil_instance_each_counter(struct vigil_instance *h,
                                 void (*fn)(void *arg, const char *name, vigil_counter *value),
                                 void *arg)
{
    for (int i = 0; i < h->ncounters; i++) {
        fn(arg, h->counters[i].name, &h->counters[i].value);
    }
}

/* vigild --check runs init() without a ZeroMQ context. */
static bool api_checking(struct vigil_instance *h)
{
    return h->env.zctx == NULL;
}

const struct vigil_api vigil_host_api = {
    .size = sizeof(struct vigil_api),
    .log = api_log,
    .vlog = api_vlog,
    .strerror = vigil_strerror,
    .instance_name = api_instance_name,
    .host_name = api_host_name,
    .event_base = api_event_base,
    .now_ns = vigil_now_ns,
    .mono_ns = vigil_mono_ns,
    .thread_cpu_ns = vigil_thread_cpu_ns,
    .log_limited = api_log_limited,
    .vlog_limited = api_vlog_limited,
    .counter_new = api_counter_new,
    .counter_add = api_counter_add,
    .counter_set = api_counter_set,
    .conf_root = api_conf_root,
    .conf_get = vigil_conf_get,
    .conf_string = vigil_conf_string,
    .conf_int = vigil_conf_int,
    .conf_double = vigil_conf_double,
    .conf_bool = vigil_conf_bool,
    .conf_duration = vigil_conf_duration,
    .conf_size = vigil_conf_size,
    .conf_len = vigil_conf_len,
    .conf_at = vigil_conf_at,
    .conf_error = api_conf_error,
    .event_begin = api_event_begin,
    .event_ts = vigil_event_set_ts,
    .event_label = vigil_event_add_label,
    .event_value = vigil_event_add_value,
    .event_value_u64 = vigil_event_add_value_u64,
    .event_attr_str = vigil_event_add_attr_str,
    .event_attr_i64 = vigil_event_add_attr_i64,
    .event_attr_f64 = vigil_event_add_attr_f64,
    .event_attr_bool = vigil_event_add_attr_bool,
    .event_attr_map_begin = vigil_event_attr_map_begin,
    .event_attr_list_begin = vigil_event_attr_list_begin,
    .event_attr_end = vigil_event_attr_end,
    .publish = api_publish,
    .event_topic = api_event_topic,
    .event_get_str = api_event_get_str,
    .event_get_double = api_event_get_double,
    .event_get_u64 = api_event_get_u64,
    .event_body = api_event_body,
    .event_json = api_event_json,
    .event_field = api_event_field,
    .event_len = api_event_len,
    .event_at = api_event_at,
    .field_type = api_field_type,
    .field_str = api_field_str,
    .field_double = api_field_double,
    .field_u64 = api_field_u64,
    .field_i64 = api_field_i64,
    .field_bool = api_field_bool,
    .glob_match = vigil_glob_match,
    .glob_valid = vigil_glob_valid,
    .write_done = vigil_sink_write_done,
    .retry_after = vigil_sink_retry_after,
    .batch_begin = api_batch_begin,
    .batch_end = api_batch_end,
    .checking = api_checking,
};

/* ---- Instances ------------------------------------------------------------- */

static void stop_cb(evutil_socket_t fd, short what, void *arg);
static void beat_cb(evutil_socket_t fd, short what, void *arg);

struct vigil_instance *vigil_instance_new(const struct vigil_instance_conf *ic,
                                          enum vigil_plugin_kind kind,
                                          const struct vigil_host_env *env, struct vigil_diag *d)
{
    char err[PATH_MAX * 6];
    const struct vigil_plugin *desc = NULL;
    const struct vigil_conf *at = vigil_conf_get(ic->node, "plugin");
    if (!at) {
        at = ic->node;
    }
    void *dl = vigil_plugin_open(env->plugin_dir, ic->plugin, kind, !env->plugin_trust_off, &desc,
                                 err, sizeof err);
    if (!dl) {
        vigil_diag_add(d, at->file, at->line, at->col, "%s", err);
        return NULL;
    }
    char what[128];
    snprintf(what, sizeof what, "plugin '%s'", ic->plugin);
    if (vigil_conf_check_options(ic->own, desc->options, what, d) != 0) {
        dlclose(dl);
        return NULL;
    }
    struct vigil_instance *h = calloc(1, sizeof *h);
    if (!h) {
        vigil_diag_add(d, at->file, at->line, at->col, "out of memory");
        dlclose(dl);
        return NULL;
    }
    h->dl = dl;
    h->desc = desc;
    h->ic = ic;
    h->kind = kind;
    h->env = *env;
    h->barrier = &h->barrier_done;
    snprintf(h->component, sizeof h->component, "%s:%s/%s", kind_name(kind), ic->plugin, ic->name);
    h->beat_ns = VIGIL_BEAT_MS * 1000000ull;
    h->collect_rl = (struct vigil_ratelimit){.window_ns = 60000000000ull, .burst = 3};
    vigil_event_builder_init(&h->builder);
    vigil_record_init(&h->held, HELD_MAX_EVENTS, HELD_MAX_BYTES, VIGIL_RECORD_ONE_ANY_SIZE);
    h->base = event_base_new();
    h->stop_ev = h->base ? event_new(h->base, -1, 0, stop_cb, h) : NULL;
    h->beat_ev = h->base ? event_new(h->base, -1, EV_PERSIST, beat_cb, h) : NULL;
    if (!h->stop_ev || !h->beat_ev) {
        vigil_diag_add(d, at->file, at->line, at->col, "cannot create an event loop");
        vigil_instance_free(h);
        return NULL;
    }
    /* isolate: process: init() and collect() run in a plugin host; here
     * the plugin was loaded only to check its keys. */
    if (ic->isolate && kind == VIGIL_SOURCE && !env->plugin_host &&
        !(h->iso = vigil_isolate_new(h, d))) {
        vigil_instance_free(h);
        return NULL;
    }
    return h;
}

int vigil_instance_init(struct vigil_instance *h, struct vigil_diag *d)
{
    if (h->iso) {
        return vigil_isolate_check(h->iso, d);
    }
    size_t before = d->count;
    h->diag = d;
    int rc = h->desc->init(h, &vigil_host_api, &h->state);
    h->diag = NULL;
    if (rc == 0 && d->count > before) {
        /* It reported a config error but went on: honour the report. */
        h->desc->fini(h->state);
        return VIGIL_ECONFIG;
    }
    if (rc != 0) {
        if (d->count == before) {
            const struct vigil_conf *n = h->ic->node;
            vigil_diag_add(d, n->file, n->line, n->col, "%s '%s' (plugin %s) failed to start: %s",
                           kind_name(h->kind), h->ic->name, h->ic->plugin, vigil_strerror(rc));
        }
        return rc;
    }
    h->inited = true;
    return 0;
}

static void collect_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_instance *h = arg;
    vigil_isolate_progress(h);
    int rc = h->desc->collect(h->state);
    vigil_isolate_progress(h);
    if (h->batching || vigil_record_count(&h->held)) {
        api_batch_end(h); /* a batch left open: its events go out now */
    }
    if (rc != 0) {
        vigil_count(&h->stats.errors_total, 1);
        uint64_t suppressed;
        if (vigil_ratelimit_ok(&h->collect_rl, vigil_mono_ns(), &suppressed)) {
            vigil_log(VIGIL_LOG_WARN, h->component, "collect failed: %s (%llu more not logged)",
                      vigil_strerror(rc), (unsigned long long)suppressed);
        }
    }
}

int vigil_instance_connect(struct vigil_instance *h)
{
    void *zctx = h->env.zctx;
    int linger = 2000;
    if (h->kind == VIGIL_SOURCE) {
        h->sock = zmq_socket(zctx, ZMQ_PUSH);
        if (!h->sock) {
            return -zmq_errno();
        }
        int timeout_ms = 200;
        /* Batches as VIGIL_BUS_SOURCES takes them, there or, in an isolated
         * source's process (bus_in), to its supervisor, who relays them. */
        h->wire_batch = true;
        int hwm = vigil_bus_inproc_hwm(h->env.hwm);
        zmq_setsockopt(h->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(h->sock, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
        zmq_setsockopt(h->sock, ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_connect(h->sock, h->env.bus_in ? h->env.bus_in : VIGIL_BUS_SOURCES) != 0) {
            return -zmq_errno();
        }
        if (h->iso) {
            return vigil_isolate_connect(h->iso);
        }
        if (h->desc->collect) {
            h->collect_ev = event_new(h->base, -1, EV_PERSIST, collect_cb, h);
            if (!h->collect_ev) {
                return -ENOMEM;
            }
        }
        return 0;
    }
    h->sock = zmq_socket(zctx, ZMQ_SUB);
    if (!h->sock) {
        return -zmq_errno();
    }
    int sub_hwm = vigil_bus_inproc_hwm(h->env.hwm); /* batches of events (bus.h) */
    zmq_setsockopt(h->sock, ZMQ_RCVHWM, &sub_hwm, sizeof sub_hwm);
    zmq_setsockopt(h->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(h->sock, VIGIL_BUS_OUT) != 0) {
        return -zmq_errno();
    }
    for (size_t i = 0; i < h->ic->nmatch; i++) {
        zmq_setsockopt(h->sock, ZMQ_SUBSCRIBE, h->ic->match[i], strlen(h->ic->match[i]));
    }
    if (h->env.barriers) {
        zmq_setsockopt(h->sock, ZMQ_SUBSCRIBE, VIGIL_BARRIER_TOPIC, VIGIL_BARRIER_TOPIC_LEN);
    }
    /* A reload may replace this sink: the handover event (bus.h). */
    zmq_setsockopt(h->sock, ZMQ_SUBSCRIBE, VIGIL_HANDOVER_TOPIC, VIGIL_HANDOVER_TOPIC_LEN);
    int rc = vigil_sink_new(h);
    if (rc != 0) {
        return rc;
    }
    return (int)h->ic->nmatch + (h->env.barriers ? 1 : 0) + 1;
}

/* ---- Threads ------------------------------------------------------------------ */

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_instance *h = arg;
    if (h->kind == VIGIL_SINK) {
        vigil_sink_stop(h); /* breaks the loop once the sink is done */
        return;
    }
    event_base_loopbreak(h->base);
}

/* The watchdog's view of this thread (notify.h): the loop still turns. A
 * collect() or write() that never returns stops it. */
static void beat_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct vigil_instance *h = arg;
    vigil_count_own(&h->stats.beats, 1);
    vigil_isolate_progress(h);
}

static void *instance_main(void *arg)
{
    struct vigil_instance *h = arg;
    event_add(h->stop_ev, NULL);
    struct timeval beat = {.tv_sec = (time_t)(h->beat_ns / 1000000000u),
                           .tv_usec = (suseconds_t)(h->beat_ns % 1000000000u / 1000u)};
    event_add(h->beat_ev, &beat);
    vigil_count_own(&h->stats.beats, 1); /* the loop is about to run: the first beat */
    if (h->iso) {
        vigil_isolate_run(h->iso); /* supervises the plugin host instead */
        return NULL;
    }
    if (h->collect_ev) {
        uint64_t ns = h->ic->interval_ns;
        struct timeval tv = {.tv_sec = (time_t)(ns / 1000000000u),
                             .tv_usec = (suseconds_t)(ns % 1000000000u / 1000u)};
        event_add(h->collect_ev, &tv);
        event_active(h->collect_ev, EV_TIMEOUT, 0); /* first collection at once */
    }
    if (h->sink) {
        vigil_sink_start(h);
    }
    event_base_dispatch(h->base);
    /* fini on the thread that ran the instance, before its socket closes, so
     * a plugin may still publish from fini. */
    if (h->inited && !h->finished) {
        h->desc->fini(h->state);
        h->finished = true;
    }
    if (vigil_record_count(&h->held)) {
        api_batch_end(h); /* a batch left open outside collect() */
    }
    return NULL;
}

int vigil_instance_start(struct vigil_instance *h)
{
    int rc = pthread_create(&h->thread, NULL, instance_main, h);
    if (rc == 0) {
        /* "src:<instance>" / "sink:<instance>", cut to the 15 bytes Linux keeps. */
        char name[16];
        snprintf(name, sizeof name, "%s:%s", h->kind == VIGIL_SOURCE ? "src" : "sink", h->ic->name);
        pthread_setname_np(h->thread, name);
    }
    if (rc != 0) {
        return -rc;
    }
    h->running = true;
    return 0;
}

void vigil_instance_stop_request(struct vigil_instance *h)
{
    if (h && h->running && !atomic_exchange(&h->stopping, true)) {
        event_active(h->stop_ev, EV_TIMEOUT, 0);
    }
}

void vigil_instance_stop(struct vigil_instance *h)
{
    if (!h || !h->running) {
        return;
    }
    vigil_instance_stop_request(h);
    pthread_join(h->thread, NULL);
    h->running = false;
}

void vigil_instance_reopen(struct vigil_instance *h)
{
    if (h->kind == VIGIL_SINK) {
        vigil_sink_reopen(h);
    }
}

void vigil_instance_free(struct vigil_instance *h)
{
    if (!h) {
        return;
    }
    vigil_instance_stop(h);
    vigil_isolate_free(h->iso);
    if (h->inited && !h->finished) {
        h->desc->fini(h->state);
        h->finished = true;
    }
    if (h->collect_ev) {
        event_free(h->collect_ev);
    }
    vigil_sink_free(h);
    if (h->stop_ev) {
        event_free(h->stop_ev);
    }
    if (h->beat_ev) {
        event_free(h->beat_ev);
    }
    if (h->base) {
        event_base_free(h->base);
    }
    if (h->sock) {
        zmq_close(h->sock);
    }
    vigil_event_builder_fini(&h->builder);
    vigil_record_fini(&h->held);
    vigil_plugin_close(h->dl);
    free(h);
}

const char *vigil_instance_component(const struct vigil_instance *h)
{
    return h->component;
}

const char *vigil_instance_plugin_name(const struct vigil_instance *h)
{
    return h->ic->plugin;
}

const char *vigil_instance_name(const struct vigil_instance *h)
{
    return h->ic->name;
}

struct vigil_stage_stats *vigil_instance_stats(struct vigil_instance *h)
{
    return &h->stats;
}

const struct vigil_instance_conf *vigil_instance_conf(const struct vigil_instance *h)
{
    return h->ic;
}

vigil_counter *vigil_instance_barrier(struct vigil_instance *h)
{
    return h->barrier;
}

void vigil_instance_share_barrier(struct vigil_instance *h, vigil_counter *c)
{
    h->barrier = c;
}

void vigil_instance_takeover(struct vigil_instance *h, const char *token)
{
    snprintf(h->takeover, sizeof h->takeover, "%s", token);
}

void vigil_instance_handover(struct vigil_instance *h, const char *token)
{
    if (h->kind == VIGIL_SINK && h->sink) {
        vigil_sink_handover(h, token);
    }
}

void vigil_instance_resume(struct vigil_instance *h)
{
    if (h->kind == VIGIL_SINK && h->sink) {
        vigil_sink_resume(h);
    }
}

void vigil_instance_join(struct vigil_instance *h)
{
    if (h && h->running) {
        pthread_join(h->thread, NULL);
        h->running = false;
    }
}

/* The daemon's config schema: host, plugin_dir, bus, self, sources, rules,
 * sinks, checked over the node tree (conf_tree.c) with every problem
 * reported at its FILE:LINE:COL, and all problems of a file in one run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "config.h"
#include "conf_internal.h"
#include "curve/endpoint.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <yaml.h>

#define DEFAULT_INTERVAL_NS (10 * NS_PER_S)
/* CMake sets VIGIL_DEFAULT_PLUGIN_DIR from the install prefix
 * (<prefix>/lib/vigil/plugins); the fallback serves builds that compile this
 * file on their own (the fuzz targets). */
#ifdef VIGIL_DEFAULT_PLUGIN_DIR
#define DEFAULT_PLUGIN_DIR VIGIL_DEFAULT_PLUGIN_DIR
#else
#define DEFAULT_PLUGIN_DIR "/usr/local/lib/vigil/plugins"
#endif
#define DEFAULT_STATE_DIR "/var/lib/vigil"
#define DEFAULT_HWM 10000
#define DEFAULT_COALESCE_NS 300000u /* bus.coalesce (trade-off: docs/configuration.md) */
#define MAX_COALESCE_NS 10000000u   /* the bus thread sleeps this long at most */
#define MAX_HWM 10000000
#define DEFAULT_MAX_EVENT_BYTES (64u << 10)
#define MIN_MAX_EVENT_BYTES 256u
#define MAX_MAX_EVENT_BYTES (256u << 20)

/* ---- The daemon's schema ---------------------------------------------------------- */

struct checker {
    struct vigil_config *c;
    struct vigil_diag *d;
    bool oom;
};

static void set_string(struct checker *ch, char **field, const char *value)
{
    char *s = strdup(value);
    if (!s) {
        ch->oom = true;
        return;
    }
    free(*field);
    *field = s;
}

/* "a/b" + "c" → "a/b/c", with "./" in front of rel dropped. */
static char *path_join(const char *dir, const char *rel)
{
    while (rel[0] == '.' && rel[1] == '/') {
        rel += 2;
        while (*rel == '/') {
            rel++;
        }
    }
    if (strcmp(rel, ".") == 0 || rel[0] == '\0') {
        return strdup(dir);
    }
    size_t dl = strlen(dir);
    bool slash = dl > 0 && dir[dl - 1] == '/';
    size_t len = dl + !slash + strlen(rel) + 1;
    char *s = malloc(len);
    if (s) {
        snprintf(s, len, "%s%s%s", dir, slash ? "" : "/", rel);
    }
    return s;
}

/* The absolute folder of `name` (which may name no real file: text parsed
 * from memory), so that relative paths work whatever the cwd. */
static char *dir_of(const char *name)
{
    const char *slash = strrchr(name, '/');
    char *dir = !slash          ? strdup(".")
                : slash == name ? strdup("/")
                                : strndup(name, (size_t)(slash - name));
    if (!dir) {
        return NULL;
    }
    char *real = realpath(dir, NULL);
    if (real) {
        free(dir);
        return real;
    }
    if (dir[0] == '/') {
        return dir;
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        return dir; /* the best there is */
    }
    char *abs = path_join(cwd, dir);
    free(dir);
    return abs;
}

static bool name_chars_ok(const char *s, const char *extra)
{
    if (*s == '\0') {
        return false;
    }
    for (; *s; s++) {
        bool ok = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                  (*s >= '0' && *s <= '9') || strchr(extra, *s);
        if (!ok) {
            return false;
        }
    }
    return true;
}

static void check_host(struct checker *ch, const struct vigil_conf *v)
{
    char buf[64];
    if (v->kind != VIGIL_CONF_SCALAR || v->value[0] == '\0') {
        vigil_diag_at(ch->d, v,
                      "'host' must be a name for this machine, not %s (leave it out to use the "
                      "hostname)",
                      vigil__conf_describe(v, buf, sizeof buf));
        return;
    }
    set_string(ch, &ch->c->host, v->value);
}

/* A path ("a folder", "a file"), absolute or relative to the config file's
 * folder. */
static void check_path(struct checker *ch, const struct vigil_conf *v, const char *what,
                       const char *noun, char **field)
{
    char buf[64];
    if (v->kind != VIGIL_CONF_SCALAR || v->value[0] == '\0') {
        vigil_diag_at(ch->d, v, "'%s' must be %s, not %s", what, noun,
                      vigil__conf_describe(v, buf, sizeof buf));
        return;
    }
    if (v->value[0] == '/') {
        set_string(ch, field, v->value);
        return;
    }
    char *p = path_join(ch->c->dir, v->value);
    if (!p) {
        ch->oom = true;
        return;
    }
    free(*field);
    *field = p;
}

static void check_folder(struct checker *ch, const struct vigil_conf *v, const char *what,
                         char **field)
{
    check_path(ch, v, what, "a folder", field);
}

static bool endpoint_ok(const char *s)
{
    static const char *const schemes[] = {"ipc://", "tcp://", "inproc://"};
    for (size_t i = 0; i < 3; i++) {
        size_t l = strlen(schemes[i]);
        if (strncmp(s, schemes[i], l) == 0 && s[l] != '\0') {
            return true;
        }
    }
    return false;
}

static void check_endpoint(struct checker *ch, const struct vigil_conf *v, const char *key,
                           char **field, bool *plaintext)
{
    char buf[64];
    if (v->kind == VIGIL_CONF_MAP) {
        const struct vigil_conf *ep = NULL;
        for (size_t i = 0; i < v->n; i++) {
            const char *k = v->keys[i];
            if (strcmp(k, "endpoint") == 0) {
                ep = v->items[i];
            } else if (strcmp(k, "plaintext") == 0) {
                if (vigil_conf_bool(v->items[i], plaintext) != 0) {
                    vigil_diag_at(ch->d, v->items[i], "'bus.%s.plaintext' must be true or false",
                                  key);
                }
            } else {
                vigil__diag_key(ch->d, v, i,
                                "unknown key '%s' in 'bus.%s' (valid keys: endpoint, plaintext)", k,
                                key);
            }
        }
        if (!ep) {
            vigil_diag_at(ch->d, v, "'bus.%s' needs 'endpoint'", key);
            return;
        }
        v = ep;
    }
    if (v->kind != VIGIL_CONF_SCALAR || !endpoint_ok(v->value)) {
        vigil_diag_at(ch->d, v,
                      "'bus.%s' must be a ZeroMQ endpoint: ipc://PATH, tcp://HOST:PORT or "
                      "inproc://NAME, not %s",
                      key, vigil__conf_describe(v, buf, sizeof buf));
        return;
    }
    set_string(ch, field, v->value);
}

/* bus.curve: { secret_key: FILE, authorized_keys: FILE }, both required. */
static void check_curve(struct checker *ch, const struct vigil_conf *v)
{
    char buf[64];
    if (v->kind != VIGIL_CONF_MAP) {
        vigil_diag_at(ch->d, v,
                      "'bus.curve' must be a map {secret_key: FILE, authorized_keys: FILE}, not %s",
                      vigil__conf_describe(v, buf, sizeof buf));
        return;
    }
    bool have_secret = false, have_auth = false;
    for (size_t i = 0; i < v->n; i++) {
        const char *k = v->keys[i];
        if (strcmp(k, "secret_key") == 0) {
            have_secret = true;
            check_path(ch, v->items[i], "bus.curve.secret_key", "a file",
                       &ch->c->bus.curve_secret_key);
            ch->c->bus.curve_secret_at = v->items[i];
        } else if (strcmp(k, "authorized_keys") == 0) {
            have_auth = true;
            check_path(ch, v->items[i], "bus.curve.authorized_keys", "a file",
                       &ch->c->bus.curve_authorized_keys);
            ch->c->bus.curve_authorized_at = v->items[i];
        } else {
            vigil__diag_key(ch->d, v, i,
                            "unknown key '%s' in 'bus.curve' (valid keys: secret_key, "
                            "authorized_keys)",
                            k);
        }
    }
    if (!have_secret || !have_auth) {
        vigil_diag_at(ch->d, v, "'bus.curve' needs %s (make a keypair with vigil-keygen DIR)",
                      !have_secret && !have_auth ? "secret_key and authorized_keys"
                      : !have_secret             ? "secret_key"
                                                 : "authorized_keys");
    }
}

static void check_bus(struct checker *ch, const struct vigil_conf *bus)
{
    const struct vigil_conf *pub = NULL, *sub = NULL, *ing = NULL, *curve = NULL;
    char buf[64];

    if (vigil__conf_is_null(bus)) {
        return;
    }
    if (bus->kind != VIGIL_CONF_MAP) {
        vigil_diag_at(ch->d, bus, "'bus' must be a map, not %s",
                      vigil__conf_describe(bus, buf, sizeof buf));
        return;
    }
    for (size_t i = 0; i < bus->n; i++) {
        const char *k = bus->keys[i];
        const struct vigil_conf *v = bus->items[i];
        if (strcmp(k, "publish") == 0) {
            pub = v;
            check_endpoint(ch, v, k, &ch->c->bus.publish, &ch->c->bus.publish_plaintext);
        } else if (strcmp(k, "subscribe") == 0) {
            sub = v;
            check_endpoint(ch, v, k, &ch->c->bus.subscribe, &ch->c->bus.subscribe_plaintext);
        } else if (strcmp(k, "ingest") == 0) {
            ing = v;
            check_endpoint(ch, v, k, &ch->c->bus.ingest, &ch->c->bus.ingest_plaintext);
        } else if (strcmp(k, "curve") == 0) {
            curve = v;
            check_curve(ch, v);
        } else if (strcmp(k, "hwm") == 0) {
            int64_t hwm;
            if (vigil_conf_int(v, &hwm) != 0 || hwm < 1 || hwm > MAX_HWM) {
                vigil_diag_at(ch->d, v,
                              "'bus.hwm' must be an integer from 1 to %d (messages queued per "
                              "socket), not %s",
                              MAX_HWM, vigil__conf_describe(v, buf, sizeof buf));
            } else {
                ch->c->bus.hwm = (int)hwm;
            }
        } else if (strcmp(k, "max_event_bytes") == 0) {
            uint64_t size;
            if (vigil_conf_size(v, &size) != 0 || size < MIN_MAX_EVENT_BYTES ||
                size > MAX_MAX_EVENT_BYTES) {
                vigil_diag_at(ch->d, v,
                              "'bus.max_event_bytes' must be a size from 256B to 256MiB, not %s",
                              vigil__conf_describe(v, buf, sizeof buf));
            } else {
                ch->c->bus.max_event_bytes = size;
            }
        } else if (strcmp(k, "coalesce") == 0) {
            uint64_t ns;
            if (vigil_conf_duration(v, &ns) != 0 || ns > MAX_COALESCE_NS) {
                vigil_diag_at(ch->d, v, "'bus.coalesce' must be a duration from 0s to 10ms, not %s",
                              vigil__conf_describe(v, buf, sizeof buf));
            } else {
                ch->c->bus.coalesce_ns = ns;
            }
        } else {
            vigil__diag_key(ch->d, bus, i,
                            "unknown key '%s' in 'bus' (valid keys: publish, subscribe, ingest, "
                            "curve, hwm, max_event_bytes, coalesce)",
                            k);
        }
    }
    if (strcmp(ch->c->bus.publish, ch->c->bus.subscribe) == 0) {
        const struct vigil_conf *at = sub ? sub : pub ? pub : bus;
        vigil_diag_at(ch->d, at,
                      "'bus.publish' and 'bus.subscribe' must be different endpoints (both are "
                      "'%s')",
                      ch->c->bus.publish);
    }
    if (ch->c->bus.ingest && (strcmp(ch->c->bus.ingest, ch->c->bus.publish) == 0 ||
                              strcmp(ch->c->bus.ingest, ch->c->bus.subscribe) == 0)) {
        vigil_diag_at(ch->d, ing, "'bus.ingest' must be an endpoint of its own (it is '%s')",
                      ch->c->bus.ingest);
    }
    /* Nothing reachable from the network in plaintext by accident. */
    const struct {
        const struct vigil_conf *at;
        const char *key, *endpoint;
        bool plaintext;
    } eps[] = {
        {pub, "publish", ch->c->bus.publish, ch->c->bus.publish_plaintext},
        {sub, "subscribe", ch->c->bus.subscribe, ch->c->bus.subscribe_plaintext},
        {ing, "ingest", ch->c->bus.ingest, ch->c->bus.ingest_plaintext},
    };
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++) {
        if (eps[i].at && eps[i].endpoint && vigil_endpoint_is_remote(eps[i].endpoint) && !curve &&
            !eps[i].plaintext) {
            vigil_diag_at(ch->d, eps[i].at,
                          "'bus.%s' (%s) is reachable from the network: configure 'bus.curve' "
                          "(secret_key, authorized_keys), bind it to a loopback address, or say "
                          "'plaintext: true' ({endpoint: %s, plaintext: true}) to accept anyone",
                          eps[i].key, eps[i].endpoint, eps[i].endpoint);
        }
    }
}

/* A positive duration, or an error naming `what` ("'self.interval'"). */
static void check_interval(struct checker *ch, const struct vigil_conf *v, const char *what,
                           uint64_t *out)
{
    char buf[64];
    uint64_t ns;
    if (vigil_conf_duration(v, &ns) != 0) {
        vigil_diag_at(ch->d, v, "%s must be a duration such as 250ms or 5m, not %s", what,
                      vigil__conf_describe(v, buf, sizeof buf));
    } else if (ns == 0) {
        vigil_diag_at(ch->d, v, "%s must be more than 0", what);
    } else {
        *out = ns;
    }
}

static void check_self(struct checker *ch, const struct vigil_conf *self)
{
    char buf[64];
    if (vigil__conf_is_null(self)) {
        return;
    }
    if (self->kind != VIGIL_CONF_MAP) {
        vigil_diag_at(ch->d, self, "'self' must be a map, not %s",
                      vigil__conf_describe(self, buf, sizeof buf));
        return;
    }
    for (size_t i = 0; i < self->n; i++) {
        if (strcmp(self->keys[i], "interval") == 0) {
            check_interval(ch, self->items[i], "'self.interval'", &ch->c->self_interval_ns);
        } else {
            vigil__diag_key(ch->d, self, i, "unknown key '%s' in 'self' (valid keys: interval)",
                            self->keys[i]);
        }
    }
}

static void instance_fini(struct vigil_instance_conf *inst)
{
    free(inst->plugin);
    free(inst->name);
    for (size_t i = 0; i < inst->nmatch; i++) {
        free(inst->match[i]);
    }
    free(inst->match);
    free(inst->delivery.spool_path);
    free(inst->isolate_dir);
    vigil__conf_node_free(inst->own);
    memset(inst, 0, sizeof *inst);
}

static void check_match(struct checker *ch, const struct vigil_conf *v,
                        struct vigil_instance_conf *inst)
{
    char buf[64];
    size_t n = vigil_conf_len(v);
    bool ok = v->kind != VIGIL_CONF_MAP && n > 0;
    for (size_t i = 0; ok && i < n; i++) {
        ok = vigil_conf_at(v, i, NULL)->kind == VIGIL_CONF_SCALAR;
    }
    if (!ok) {
        vigil_diag_at(ch->d, v,
                      "'match' must be a topic prefix or a list of them, not %s (leave it out "
                      "to receive everything)",
                      v->kind == VIGIL_CONF_LIST && n == 0
                          ? "an empty list"
                          : vigil__conf_describe(v, buf, sizeof buf));
        return;
    }
    char **m = calloc(n, sizeof *m);
    if (!m) {
        ch->oom = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(m[i] = strdup(vigil_conf_at(v, i, NULL)->value))) {
            for (size_t j = 0; j < i; j++) {
                free(m[j]);
            }
            free(m);
            ch->oom = true;
            return;
        }
    }
    for (size_t i = 0; i < inst->nmatch; i++) {
        free(inst->match[i]);
    }
    free(inst->match);
    inst->match = m;
    inst->nmatch = n;
}

/* The host's isolation keys (isolate.h): sources only, but never a
 * plugin's own key, so a sink's is refused by the host, not as unknown. */
static bool isolation_key(const char *k)
{
    return strcmp(k, "isolate") == 0 || strcmp(k, "hang_timeout") == 0 ||
           strcmp(k, "memory_max") == 0;
}

static bool common_key(const char *k, bool sink)
{
    return strcmp(k, "plugin") == 0 || strcmp(k, "name") == 0 || strcmp(k, "interval") == 0 ||
           isolation_key(k) ||
           (sink &&
            (strcmp(k, "match") == 0 || strcmp(k, "queue") == 0 || strcmp(k, "spool") == 0 ||
             strcmp(k, "retry") == 0 || strcmp(k, "batch") == 0));
}

/* ---- A sink's delivery keys ---------------------------------------------------- */

enum dkey_type { DK_COUNT, DK_SIZE, DK_DURATION, DK_PATH };

struct dkey {
    const char *key;
    enum dkey_type type;
    size_t off; /* into struct vigil_delivery_conf */
    uint64_t min, max;
    const char *range; /* min and max as written in config */
};

#define DK(k, t, f, lo, hi, r)                                                                     \
    {                                                                                              \
        k, t, offsetof(struct vigil_delivery_conf, f), lo, hi, r                                   \
    }

static const struct dkey queue_keys[] = {
    DK("max_events", DK_COUNT, queue_events, 1, 100000000, "1 to 100000000"),
    DK("max_bytes", DK_SIZE, queue_bytes, 4096, 1ull << 40, "4KiB to 1TiB"),
    {NULL, 0, 0, 0, 0, NULL},
};
static const struct dkey spool_keys[] = {
    DK("path", DK_PATH, spool_path, 0, 0, NULL),
    DK("max_size", DK_SIZE, spool_max, 64 * 1024, 1ull << 50, "64KiB to 1PiB"),
    {NULL, 0, 0, 0, 0, NULL},
};
static const struct dkey retry_keys[] = {
    DK("min_backoff", DK_DURATION, min_backoff_ns, 1000000, 3600 * NS_PER_S, "1ms to 1h"),
    DK("max_backoff", DK_DURATION, max_backoff_ns, 1000000, 3600 * NS_PER_S, "1ms to 1h"),
    {NULL, 0, 0, 0, 0, NULL},
};
static const struct dkey batch_keys[] = {
    DK("max_events", DK_COUNT, batch_max, 1, 65536, "1 to 65536"),
    DK("max_wait", DK_DURATION, batch_wait_ns, 0, 60 * NS_PER_S, "0s to 1m"),
    {NULL, 0, 0, 0, 0, NULL},
};

static void check_dkey(struct checker *ch, const struct vigil_conf *v, const char *sect,
                       const struct dkey *k, struct vigil_delivery_conf *dc)
{
    char buf[64];
    uint64_t x = 0;
    int rc;
    const char *want;
    switch (k->type) {
    case DK_PATH:
        check_folder(ch, v, sect, (char **)((char *)dc + k->off));
        return;
    case DK_COUNT: {
        int64_t i = 0;
        rc = vigil_conf_int(v, &i);
        if (rc == 0 && i < 0) {
            rc = VIGIL_ETYPE;
        }
        x = (uint64_t)i;
        want = "a whole number";
        break;
    }
    case DK_SIZE:
        rc = vigil_conf_size(v, &x);
        want = "a size such as 64KiB or 1GiB";
        break;
    default:
        rc = vigil_conf_duration(v, &x);
        want = "a duration such as 100ms or 5s";
        break;
    }
    if (rc != 0) {
        vigil_diag_at(ch->d, v, "'%s.%s' must be %s, not %s", sect, k->key, want,
                      vigil__conf_describe(v, buf, sizeof buf));
    } else if (x < k->min || x > k->max) {
        vigil_diag_at(ch->d, v, "'%s.%s' must be from %s, not %s", sect, k->key, k->range,
                      vigil__conf_describe(v, buf, sizeof buf));
    } else {
        *(uint64_t *)((char *)dc + k->off) = x;
    }
}

static void check_delivery_map(struct checker *ch, const struct vigil_conf *v, const char *sect,
                               const struct dkey *keys, struct vigil_delivery_conf *dc)
{
    char buf[64];
    if (v->kind != VIGIL_CONF_MAP) {
        vigil_diag_at(ch->d, v, "'%s' must be a map, not %s", sect,
                      vigil__conf_describe(v, buf, sizeof buf));
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        const struct dkey *k = keys;
        while (k->key && strcmp(k->key, v->keys[i]) != 0) {
            k++;
        }
        if (k->key) {
            check_dkey(ch, v->items[i], sect, k, dc);
            continue;
        }
        char valid[128] = "";
        for (k = keys; k->key; k++) {
            snprintf(valid + strlen(valid), sizeof valid - strlen(valid), "%s%s",
                     k == keys ? "" : ", ", k->key);
        }
        vigil__diag_key(ch->d, v, i, "unknown key '%s' in '%s' (valid keys: %s)", v->keys[i], sect,
                        valid);
    }
}

static void delivery_defaults(struct vigil_delivery_conf *dc)
{
    *dc = (struct vigil_delivery_conf){
        .queue_events = 65536,
        .queue_bytes = 32u << 20,
        .spool_max = 1ull << 30,
        .min_backoff_ns = NS_PER_S / 10,
        .max_backoff_ns = 5 * NS_PER_S,
    };
}

/* The entry minus the common keys, as a new map at the entry's position. */
static struct vigil_conf *own_keys(struct vigil_conf *e, bool sink)
{
    struct vigil_conf *own = vigil__conf_node_new(VIGIL_CONF_MAP, e->file, e->line, e->col);
    if (!own || vigil__conf_reserve(own, e->n ? e->n : 1) != 0) {
        goto oom;
    }
    for (size_t i = 0; i < e->n; i++) {
        if (common_key(e->keys[i], sink)) {
            continue;
        }
        char *key = strdup(e->keys[i]);
        struct vigil_conf *v = key ? vigil__conf_copy(e->items[i]) : NULL;
        if (!v) {
            free(key);
            goto oom;
        }
        vigil__conf_put(own, key, e->key_lines ? e->key_lines[i] : e->items[i]->line,
                        e->key_cols ? e->key_cols[i] : e->items[i]->col, v);
    }
    return own;
oom:
    vigil__conf_node_free(own);
    return NULL;
}

/* ---- A source's isolation keys (isolate.h) ------------------------------------- */

/* One of isolate, hang_timeout, memory_max: e->items[i]. */
static void check_isolation_key(struct checker *ch, const struct vigil_conf *e, size_t i, bool sink,
                                struct vigil_instance_conf *inst)
{
    const char *k = e->keys[i];
    const struct vigil_conf *v = e->items[i];
    char buf[64];
    if (sink) {
        vigil__diag_key(ch->d, e, i,
                        "'%s' is for sources: sinks run inside vigild (a sink's crash would "
                        "lose what it holds in memory; README.md, Isolation)",
                        k);
    } else if (strcmp(k, "isolate") == 0) {
        if (v->kind == VIGIL_CONF_SCALAR && strcmp(v->value, "process") == 0) {
            inst->isolate = true;
        } else if (!(v->kind == VIGIL_CONF_SCALAR && strcmp(v->value, "none") == 0)) {
            vigil_diag_at(ch->d, v,
                          "'isolate' must be one of: process (the source runs in a child "
                          "process of its own), none (the default: a thread of vigild), not %s",
                          vigil__conf_describe(v, buf, sizeof buf));
        }
    } else if (strcmp(k, "hang_timeout") == 0) {
        check_interval(ch, v, "'hang_timeout'", &inst->hang_timeout_ns);
    } else if (vigil_conf_size(v, &inst->memory_max_bytes) != 0 || inst->memory_max_bytes == 0) {
        vigil_diag_at(ch->d, v, "'memory_max' must be a size above 0 such as 256MiB, not %s",
                      vigil__conf_describe(v, buf, sizeof buf));
        inst->memory_max_bytes = 0;
    }
}

/* After the entry's keys: hang_timeout and memory_max need isolate: process
 * (an in-process collect() can be neither stopped nor bounded), and the
 * hang timeout defaults to 10 x interval. */
static void check_isolation(struct checker *ch, const struct vigil_conf *e,
                            struct vigil_instance_conf *inst)
{
    static const char *const needs[] = {"hang_timeout", "memory_max"};
    const struct vigil_conf *iso = vigil_conf_get(e, "isolate");
    bool said_none = iso && iso->kind == VIGIL_CONF_SCALAR && strcmp(iso->value, "none") == 0;
    for (size_t i = 0; i < e->n && !inst->isolate && (!iso || said_none); i++) {
        for (size_t j = 0; j < sizeof needs / sizeof needs[0]; j++) {
            if (strcmp(e->keys[i], needs[j]) == 0) {
                vigil__diag_key(ch->d, e, i,
                                "'%s' needs 'isolate: process': only a source in a process of "
                                "its own can be killed or bounded",
                                needs[j]);
            }
        }
    }
    if (inst->hang_timeout_ns == 0) {
        inst->hang_timeout_ns =
            inst->interval_ns > UINT64_MAX / 10 ? UINT64_MAX : 10 * inst->interval_ns;
    }
}

/* Fills *inst from one entry of sources/sinks; false if the entry cannot
 * make an instance (no usable plugin name). */
static bool check_instance(struct checker *ch, struct vigil_conf *e, bool sink,
                           struct vigil_instance_conf *inst)
{
    const char *kind = sink ? "sink" : "source";
    const struct vigil_conf *plugin = NULL, *name = NULL;
    char buf[64];
    bool ok = true;

    memset(inst, 0, sizeof *inst);
    inst->interval_ns = DEFAULT_INTERVAL_NS;
    delivery_defaults(&inst->delivery);
    for (size_t i = 0; i < e->n; i++) {
        const char *k = e->keys[i];
        const struct vigil_conf *v = e->items[i];
        if (strcmp(k, "plugin") == 0) {
            plugin = v;
            if (v->kind != VIGIL_CONF_SCALAR || !name_chars_ok(v->value, "_-")) {
                vigil_diag_at(ch->d, v,
                              "'plugin' must be a plugin name (letters, digits, '_', '-'), not "
                              "%s",
                              vigil__conf_describe(v, buf, sizeof buf));
                ok = false;
            }
        } else if (strcmp(k, "name") == 0) {
            if (v->kind != VIGIL_CONF_SCALAR || !name_chars_ok(v->value, "_.-") ||
                strcmp(v->value, ".") == 0 || strcmp(v->value, "..") == 0) {
                vigil_diag_at(ch->d, v,
                              "'name' must be an instance name (letters, digits, '_', '.', "
                              "'-'), not %s",
                              vigil__conf_describe(v, buf, sizeof buf));
                ok = false;
            } else {
                name = v;
            }
        } else if (strcmp(k, "interval") == 0) {
            if (sink) {
                vigil__diag_key(ch->d, e, i,
                                "'interval' is for sources: a sink writes events as they arrive");
            } else {
                check_interval(ch, v, "'interval'", &inst->interval_ns);
            }
        } else if (isolation_key(k)) {
            check_isolation_key(ch, e, i, sink, inst);
        } else if (strcmp(k, "match") == 0 && sink) {
            check_match(ch, v, inst); /* a source's match is its plugin's own key */
        } else if (sink && strcmp(k, "queue") == 0) {
            check_delivery_map(ch, v, "queue", queue_keys, &inst->delivery);
        } else if (sink && strcmp(k, "spool") == 0) {
            check_delivery_map(ch, v, "spool", spool_keys, &inst->delivery);
        } else if (sink && strcmp(k, "retry") == 0) {
            check_delivery_map(ch, v, "retry", retry_keys, &inst->delivery);
            if (inst->delivery.min_backoff_ns > inst->delivery.max_backoff_ns) {
                vigil_diag_at(ch->d, v, "'retry.min_backoff' is more than 'retry.max_backoff'");
            }
        } else if (sink && strcmp(k, "batch") == 0) {
            check_delivery_map(ch, v, "batch", batch_keys, &inst->delivery);
        }
    }
    if (!plugin) {
        vigil_diag_at(ch->d, e, "%s entry needs 'plugin' (which plugin to load from plugin_dir)",
                      kind);
        ok = false;
    }
    if (!sink) {
        check_isolation(ch, e, inst);
    }
    if (!ok) {
        goto fail;
    }
    if (sink && !inst->match) {
        inst->match = calloc(1, sizeof *inst->match);
        if (!inst->match || !(inst->match[0] = strdup(""))) {
            goto oom;
        }
        inst->nmatch = 1;
    }
    inst->plugin = strdup(plugin->value);
    inst->name = strdup(name ? name->value : plugin->value);
    inst->own = own_keys(e, sink);
    if (!inst->plugin || !inst->name || !inst->own) {
        goto oom;
    }
    inst->node = e;
    inst->config = ch->c;
    return true;
oom:
    ch->oom = true;
fail:
    instance_fini(inst);
    return false;
}

static void check_instances(struct checker *ch, struct vigil_conf *list, bool sink,
                            struct vigil_instance_conf **out, size_t *nout)
{
    const char *what = sink ? "sinks" : "sources";
    const char *kind = sink ? "sink" : "source";
    char buf[64];

    if (vigil__conf_is_null(list)) {
        return;
    }
    if (list->kind != VIGIL_CONF_LIST) {
        vigil_diag_at(ch->d, list, "'%s' must be a list of entries (- plugin: NAME ...), not %s",
                      what, vigil__conf_describe(list, buf, sizeof buf));
        return;
    }
    if (list->n == 0) {
        return;
    }
    struct vigil_instance_conf *insts = calloc(list->n, sizeof *insts);
    char **names = calloc(list->n, sizeof *names);
    if (!insts || !names) {
        free(insts);
        free(names);
        ch->oom = true;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < list->n; i++) {
        struct vigil_conf *e = list->items[i];
        if (e->kind != VIGIL_CONF_MAP) {
            vigil_diag_at(ch->d, e, "each entry of '%s' must be a map with a 'plugin' key, not %s",
                          what, vigil__conf_describe(e, buf, sizeof buf));
            continue;
        }
        if (check_instance(ch, e, sink, &insts[n])) {
            names[n] = insts[n].name;
            n++;
        }
    }
    size_t *first = vigil__first_occurrences(names, n);
    if (!first) {
        ch->oom = true;
    } else {
        for (size_t i = 0; i < n; i++) {
            if (first[i] == i) {
                continue;
            }
            const struct vigil_conf *at = vigil_conf_get(insts[i].node, "name");
            const struct vigil_conf *was = vigil_conf_get(insts[first[i]].node, "name");
            if (!at) {
                at = vigil_conf_get(insts[i].node, "plugin");
            }
            if (!was) {
                was = vigil_conf_get(insts[first[i]].node, "plugin");
            }
            vigil_diag_at(ch->d, at,
                          "duplicate %s name '%s' (first at line %d): give each %s its own 'name'",
                          kind, insts[i].name, was->line, kind);
        }
    }
    free(first);
    free(names);
    *out = insts;
    *nout = n;
}

static void check_rules(struct checker *ch, struct vigil_conf *v)
{
    char buf[64];
    if (vigil__conf_is_null(v)) {
        return;
    }
    if (v->kind != VIGIL_CONF_LIST) {
        vigil_diag_at(ch->d, v, "'rules' must be a list of rules, not %s",
                      vigil__conf_describe(v, buf, sizeof buf));
        return;
    }
    ch->c->rules = v;
}

static int set_defaults(struct vigil_config *c)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0 || host[0] == '\0') {
        strcpy(host, "localhost");
    }
    host[sizeof host - 1] = '\0'; /* POSIX leaves truncation unterminated */
    c->host = strdup(host);
    c->plugin_dir = strdup(DEFAULT_PLUGIN_DIR);
    c->plugin_trust = true;
    c->state_dir = strdup(DEFAULT_STATE_DIR);
    c->bus.publish = strdup(VIGIL_DEFAULT_PUBLISH);
    c->bus.subscribe = strdup(VIGIL_DEFAULT_SUBSCRIBE);
    c->bus.hwm = DEFAULT_HWM;
    c->bus.max_event_bytes = DEFAULT_MAX_EVENT_BYTES;
    c->bus.coalesce_ns = DEFAULT_COALESCE_NS;
    c->self_interval_ns = DEFAULT_INTERVAL_NS;
    if (!c->host || !c->plugin_dir || !c->state_dir || !c->bus.publish || !c->bus.subscribe) {
        return -ENOMEM;
    }
    return 0;
}

struct vigil_config *vigil_config_parse(const char *text, size_t len, const char *name,
                                        struct vigil_diag *d)
{
    if (!name) {
        name = "<config>";
    }
    struct vigil_conf *root = vigil_conf_parse(text, len, name, d);
    if (!root) {
        return NULL;
    }
    struct vigil_config *c = calloc(1, sizeof *c);
    if (!c) {
        vigil_conf_free(root);
        vigil_diag_add(d, name, 0, 0, "out of memory");
        return NULL;
    }
    c->root = root;
    c->path = strdup(name);
    c->dir = dir_of(name);
    if (!c->path || !c->dir || set_defaults(c) != 0) {
        goto oom;
    }

    struct checker ch = {.c = c, .d = d};
    for (size_t i = 0; i < root->n && !ch.oom; i++) {
        const char *k = root->keys[i];
        struct vigil_conf *v = root->items[i];
        if (strcmp(k, "host") == 0) {
            check_host(&ch, v);
        } else if (strcmp(k, "plugin_dir") == 0) {
            check_folder(&ch, v, "plugin_dir", &c->plugin_dir);
        } else if (strcmp(k, "plugin_trust") == 0) {
            if (vigil_conf_bool(v, &c->plugin_trust) != 0) {
                vigil_diag_at(d, v, "'plugin_trust' must be true or false (on or off)");
            }
            c->plugin_trust_at = v;
        } else if (strcmp(k, "state_dir") == 0) {
            check_folder(&ch, v, "state_dir", &c->state_dir);
        } else if (strcmp(k, "pid_file") == 0) {
            check_path(&ch, v, "pid_file", "a file", &c->pid_file);
        } else if (strcmp(k, "bus") == 0) {
            check_bus(&ch, v);
        } else if (strcmp(k, "self") == 0) {
            check_self(&ch, v);
        } else if (strcmp(k, "sources") == 0) {
            check_instances(&ch, v, false, &c->sources, &c->nsources);
        } else if (strcmp(k, "sinks") == 0) {
            check_instances(&ch, v, true, &c->sinks, &c->nsinks);
        } else if (strcmp(k, "rules") == 0) {
            check_rules(&ch, v);
        } else {
            vigil__diag_key(d, root, i,
                            "unknown top-level key '%s' (valid keys: host, plugin_dir, "
                            "plugin_trust, state_dir, pid_file, bus, self, sources, rules, "
                            "sinks)",
                            k);
        }
    }
    if (!c->pid_file && !(c->pid_file = path_join(c->state_dir, "vigild.pid"))) {
        ch.oom = true;
    }
    /* Spools default under state_dir, known only once the whole file is read. */
    for (size_t i = 0; i < c->nsinks && !ch.oom; i++) {
        struct vigil_instance_conf *inst = &c->sinks[i];
        if (!inst->delivery.spool_path) {
            char rel[300];
            snprintf(rel, sizeof rel, "spool/%s", inst->name);
            if (!(inst->delivery.spool_path = path_join(c->state_dir, rel))) {
                ch.oom = true;
            }
        }
    }
    for (size_t i = 0; i < c->nsources && !ch.oom; i++) {
        struct vigil_instance_conf *inst = &c->sources[i];
        char rel[300];
        snprintf(rel, sizeof rel, "isolate/%s", inst->name);
        if (inst->isolate && !(inst->isolate_dir = path_join(c->state_dir, rel))) {
            ch.oom = true;
        }
    }
    if (ch.oom) {
        goto oom;
    }
    return c;
oom:
    vigil_diag_add(d, name, 0, 0, "out of memory");
    vigil_config_free(c);
    return NULL;
}

struct vigil_config *vigil_config_load(const char *path, struct vigil_diag *d)
{
    size_t len;
    char *text = vigil__conf_read_file(path, &len, d);
    if (!text) {
        return NULL;
    }
    struct vigil_config *c = vigil_config_parse(text, len, path, d);
    if (c) {
        c->text = text;
        c->text_len = len;
    } else {
        free(text);
    }
    return c;
}

void vigil_config_free(struct vigil_config *c)
{
    if (!c) {
        return;
    }
    for (size_t i = 0; i < c->nsources; i++) {
        instance_fini(&c->sources[i]);
    }
    free(c->sources);
    for (size_t i = 0; i < c->nsinks; i++) {
        instance_fini(&c->sinks[i]);
    }
    free(c->sinks);
    free(c->path);
    free(c->dir);
    free(c->host);
    free(c->plugin_dir);
    free(c->state_dir);
    free(c->pid_file);
    free(c->bus.publish);
    free(c->bus.subscribe);
    free(c->bus.ingest);
    free(c->bus.curve_secret_key);
    free(c->bus.curve_authorized_keys);
    vigil_conf_free(c->root);
    free(c->text);
    free(c);
}

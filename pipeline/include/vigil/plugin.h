/* vigil plugin ABI: the one header a source or sink plugin is built against.
 *
 * It includes only standard headers and every host object is opaque, so a
 * plugin builds with `cc -shared -fPIC -I pipeline/include x.c -o x.so` and
 * never links against the daemon: all host services come through the
 * `struct vigil_api` table handed to init().
 */
#ifndef VIGIL_PLUGIN_H
#define VIGIL_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to struct vigil_plugin or struct
 * vigil_api; the loader refuses a plugin of another ABI. Compatible additions
 * append fields and are detected by the `size` fields instead.
 * ABI 2: the instance handle is struct vigil_instance (ABI 1: vigil_host),
 * sources build a struct vigil_event_builder and sinks read a const struct
 * vigil_event (walked with event_field/event_len/event_at), misuse answers
 * VIGIL_EPLUGIN, and the host offers mono_ns(), log_limited() and counters
 * in vigil.self. */
#define VIGIL_PLUGIN_ABI 2

#if defined(__GNUC__)
#define VIGIL_EXPORT __attribute__((visibility("default")))
#define VIGIL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define VIGIL_EXPORT
#define VIGIL_PRINTF(a, b)
#endif

/* Opaque host objects. */
struct vigil_instance;      /* one plugin instance (not the machine: see host_name()) */
struct vigil_event_builder; /* an event being built (sources) */
struct vigil_event;         /* an event being read (sinks), always const */
struct vigil_field;         /* a value inside an event being read */
struct vigil_conf;          /* one node of the instance's config subtree */
struct event_base;          /* libevent; the instance's own loop */

enum vigil_plugin_kind { VIGIL_SOURCE = 1, VIGIL_SINK = 2 };

enum vigil_log_level {
    VIGIL_LOG_ERROR = 0,
    VIGIL_LOG_WARN = 1,
    VIGIL_LOG_INFO = 2,
    VIGIL_LOG_DEBUG = 3,
};

/* What a sink's write() says about each event of a batch. */
enum vigil_write_result {
    VIGIL_WRITE_OK = 0,    /* delivered */
    VIGIL_WRITE_RETRY = 1, /* not delivered now; the host retries it later */
    VIGIL_WRITE_FAIL = 2,  /* never deliverable; counted and dropped */
};

/* write() may return this instead of 0: the batch is in flight (a request
 * driven by the instance's event loop). The plugin fills results[] later and
 * calls api->write_done(h) from the instance's thread; until then the host
 * keeps the events and the results array valid and does not call write()
 * again. */
#define VIGIL_WRITE_ASYNC 1

/* Error codes: 0 or a negative number. Codes that are not listed here are
 * negated errno values. api->strerror() names either kind. */
#define VIGIL_ERRNO_MAP(X)                                                                         \
    X(CONFIG, -1001, "invalid configuration")                                                      \
    X(TYPE, -1002, "value has the wrong type")                                                     \
    X(NOTFOUND, -1003, "no such key")                                                              \
    X(MALFORMED, -1004, "malformed event")                                                         \
    X(TOOBIG, -1005, "too big")                                                                    \
    X(STOPPED, -1006, "host is stopping")                                                          \
    X(ABI, -1007, "plugin ABI mismatch")                                                           \
    X(PLUGIN, -1008, "plugin misused the host API or failed")

enum vigil_errno {
#define VIGIL_ERRNO_ENUM(name, code, text) VIGIL_E##name = (code),
    VIGIL_ERRNO_MAP(VIGIL_ERRNO_ENUM)
#undef VIGIL_ERRNO_ENUM
};

/* What a field of an event being read holds (api->field_type()). */
enum vigil_field_type {
    VIGIL_FIELD_ABSENT = 0, /* no such field (a NULL field) */
    VIGIL_FIELD_NIL,
    VIGIL_FIELD_BOOL,
    VIGIL_FIELD_UINT, /* an integer >= 0 */
    VIGIL_FIELD_INT,  /* an integer < 0 */
    VIGIL_FIELD_DOUBLE,
    VIGIL_FIELD_STR, /* a string (msgpack str or bin) */
    VIGIL_FIELD_LIST,
    VIGIL_FIELD_MAP,
    VIGIL_FIELD_OTHER, /* a msgpack extension type */
};

/* ---- Options: the keys a plugin accepts -------------------------------
 * A plugin lists its keys in a table ended by { NULL }. The host checks the
 * instance's config against it before init(): an unknown key or a value of
 * the wrong type is an error reported at the value's file:line:col, and a
 * missing key with a default gets that default, so getters always find it.
 * A key without a default that is missing is simply absent (NULL node). */
enum vigil_opt_type {
    VIGIL_OPT_STRING = 1,
    VIGIL_OPT_INT,      /* signed 64-bit */
    VIGIL_OPT_DOUBLE,   /* any number */
    VIGIL_OPT_BOOL,     /* true/false */
    VIGIL_OPT_DURATION, /* "250ms", "1s", "5m", "1h": read as nanoseconds */
    VIGIL_OPT_SIZE,     /* "512", "64KiB", "100MB": read as bytes */
    VIGIL_OPT_LIST,     /* a YAML sequence (a scalar is taken as a list of one) */
    VIGIL_OPT_MAP,      /* a YAML mapping */
};

struct vigil_option {
    const char *key;
    enum vigil_opt_type type;
    const char *default_value; /* YAML text, or NULL for "no default" */
    const char *help;
};

/* ---- Host services ------------------------------------------------------
 * Given to init() and valid until fini() returns. Every function may be
 * called from the instance's own thread; log() from any thread. */
struct vigil_api {
    uint32_t size; /* sizeof(struct vigil_api) of the host: check it (with
                      VIGIL_API_HAS) before using a field appended after
                      ABI 2's first release */

    /* Logging, prefixed by the host with "[source:<plugin>/<instance>]". */
    void (*log)(struct vigil_instance *h, enum vigil_log_level level, const char *fmt, ...)
        VIGIL_PRINTF(3, 4);
    void (*vlog)(struct vigil_instance *h, enum vigil_log_level level, const char *fmt, va_list ap);
    const char *(*strerror)(int err);

    /* Identity and loop. */
    const char *(*instance_name)(struct vigil_instance *h);
    const char *(*host_name)(struct vigil_instance *h);
    struct event_base *(*event_base)(struct vigil_instance *h);
    uint64_t (*now_ns)(void);        /* CLOCK_REALTIME, ns since the epoch */
    uint64_t (*mono_ns)(void);       /* CLOCK_MONOTONIC, ns: for intervals and rates */
    uint64_t (*thread_cpu_ns)(void); /* CPU time of the calling thread, ns: a collection's cost */

    /* Like log(), for warnings that can repeat on every event or collection:
     * at most 3 messages per call site (keyed by the address of fmt, so pass
     * a literal) every 60 s; the next one that is let through says how many
     * were suppressed. The instance's thread only. */
    void (*log_limited)(struct vigil_instance *h, enum vigil_log_level level, const char *fmt, ...)
        VIGIL_PRINTF(3, 4);
    void (*vlog_limited)(struct vigil_instance *h, enum vigil_log_level level, const char *fmt,
                         va_list ap);

    /* Counters of the plugin's own, reported in its instance's vigil.self
     * event as values.<name> beside the host's (out_total, dropped_total,
     * ...). counter_new() names one in init() (main thread): [a-z0-9_],
     * 1..63 bytes, a count ending in _total, anything else a level; it
     * returns the counter's id (>= 0), VIGIL_ECONFIG for a bad or repeated
     * name or one of the host's own, VIGIL_ETOOBIG past 16 counters.
     * counter_add() and counter_set() take that id, on the instance's
     * thread; an unknown id does nothing. */
    int (*counter_new)(struct vigil_instance *h, const char *name);
    void (*counter_add)(struct vigil_instance *h, int id, uint64_t n);
    void (*counter_set)(struct vigil_instance *h, int id, uint64_t value);

    /* Config. conf_root() is the instance's own mapping (the common keys
     * plugin/name/interval/match removed). Getters return 0, VIGIL_ETYPE or
     * VIGIL_ENOTFOUND (NULL node): the codes are negative themselves.
     * Strings stay valid until fini(). */
    const struct vigil_conf *(*conf_root)(struct vigil_instance *h);
    const struct vigil_conf *(*conf_get)(const struct vigil_conf *map, const char *key);
    int (*conf_string)(const struct vigil_conf *n, const char **out);
    int (*conf_int)(const struct vigil_conf *n, int64_t *out);
    int (*conf_double)(const struct vigil_conf *n, double *out);
    int (*conf_bool)(const struct vigil_conf *n, bool *out);
    int (*conf_duration)(const struct vigil_conf *n, uint64_t *out_ns);
    int (*conf_size)(const struct vigil_conf *n, uint64_t *out_bytes);
    /* Number of items of a list or map (a scalar counts as a list of one). */
    size_t (*conf_len)(const struct vigil_conf *n);
    /* Item i of a list or map; for a map *key_out (if not NULL) gets its key. */
    const struct vigil_conf *(*conf_at)(const struct vigil_conf *n, size_t i, const char **key_out);
    /* Reports a semantic error at the node's file:line:col (e.g. "rate must
     * be positive"). init() should then return VIGIL_ECONFIG. */
    void (*conf_error)(struct vigil_instance *h, const struct vigil_conf *n, const char *fmt, ...)
        VIGIL_PRINTF(3, 4);

    /* Event builder (sources). begin() returns the instance's one reusable
     * builder, cleared, for `topic` (dot-separated, e.g. "kvm.vm"). Adders
     * copy their arguments. publish() fills ts (unless set), host, source and
     * seq, hands the event to the bus and clears the builder; it blocks while
     * the bus is full (backpressure, nothing dropped) and returns 0,
     * VIGIL_ESTOPPED during shutdown, VIGIL_ETOOBIG, VIGIL_EMALFORMED (the
     * builder was misused: an unbalanced attr_end, too deep, too long a
     * topic), -ENOMEM, or VIGIL_EPLUGIN (a sink called it, or a builder
     * that is not this instance's). */
    struct vigil_event_builder *(*event_begin)(struct vigil_instance *h, const char *topic);
    void (*event_ts)(struct vigil_event_builder *ev, uint64_t ts_ns);
    void (*event_label)(struct vigil_event_builder *ev, const char *key, const char *value);
    void (*event_value)(struct vigil_event_builder *ev, const char *key, double value);
    void (*event_value_u64)(struct vigil_event_builder *ev, const char *key, uint64_t value);
    void (*event_attr_str)(struct vigil_event_builder *ev, const char *key, const char *value);
    void (*event_attr_i64)(struct vigil_event_builder *ev, const char *key, int64_t value);
    void (*event_attr_f64)(struct vigil_event_builder *ev, const char *key, double value);
    void (*event_attr_bool)(struct vigil_event_builder *ev, const char *key, bool value);
    /* Nested attrs: open a map or list under `key` (NULL inside a list),
     * add items, close it with attr_end(). At most 8 levels. */
    void (*event_attr_map_begin)(struct vigil_event_builder *ev, const char *key);
    void (*event_attr_list_begin)(struct vigil_event_builder *ev, const char *key);
    void (*event_attr_end)(struct vigil_event_builder *ev);
    int (*publish)(struct vigil_instance *h, struct vigil_event_builder *ev);

    /* Event reader (sinks): events given to write() are valid only during
     * that call. Paths are dotted: "host", "seq", "labels.vm",
     * "values.exits_per_s", "attrs.ns.net". */
    const char *(*event_topic)(const struct vigil_event *ev, size_t *len_out);
    int (*event_get_str)(const struct vigil_event *ev, const char *path, const char **out,
                         size_t *len_out);
    int (*event_get_double)(const struct vigil_event *ev, const char *path, double *out);
    int (*event_get_u64)(const struct vigil_event *ev, const char *path, uint64_t *out);
    /* The body as msgpack bytes, as it travelled on the bus. */
    const void *(*event_body)(const struct vigil_event *ev, size_t *len_out);
    /* One JSON object, no newline: {"topic":...,"ts":...,...}. Returns the
     * length it needs (excluding the NUL); writes at most cap bytes, NUL
     * terminated when cap > 0, like snprintf. */
    size_t (*event_json)(const struct vigil_event *ev, char *buf, size_t cap);
    /* Walking an event, as conf_len()/conf_at() walk config: event_field()
     * gives the field at a dotted path ("labels", "attrs.ns"; "" is the
     * whole body), NULL when absent. event_len() counts the items of a map
     * or list (0 for anything else, NULL too); event_at() gives item i (NULL
     * past the end) and, for a map, its key in *key_out and *key_len_out
     * (not NUL-terminated; NULL for a key that is not a string). Both
     * key_out and key_len_out may be NULL. The field_* readers answer 0,
     * VIGIL_ETYPE, or VIGIL_ENOTFOUND for a NULL field: field_double() takes
     * any number, field_u64() an integer >= 0, field_i64() any integer that
     * fits. Fields live as long as their event. */
    const struct vigil_field *(*event_field)(const struct vigil_event *ev, const char *path);
    size_t (*event_len)(const struct vigil_field *f);
    const struct vigil_field *(*event_at)(const struct vigil_field *f, size_t i,
                                          const char **key_out, size_t *key_len_out);
    enum vigil_field_type (*field_type)(const struct vigil_field *f);
    int (*field_str)(const struct vigil_field *f, const char **out, size_t *len_out);
    int (*field_double)(const struct vigil_field *f, double *out);
    int (*field_u64)(const struct vigil_field *f, uint64_t *out);
    int (*field_i64)(const struct vigil_field *f, int64_t *out);
    int (*field_bool)(const struct vigil_field *f, bool *out);

    /* Glob match, the syntax every vigil pattern uses: `*` any run without
     * '/', `**` any run with '/', `?` one character but '/', `\x` a literal
     * x. True when the whole of s[0..len) matches. glob_valid() checks a
     * pattern from config (false, with a reason, if malformed). */
    bool (*glob_match)(const char *pattern, const char *s, size_t len);
    bool (*glob_valid)(const char *pattern, const char **why);

    /* Sinks: completes a write() that returned VIGIL_WRITE_ASYNC; results[]
     * given to that write() must be filled. Call it from the instance's
     * thread, at most once per such write(). */
    void (*write_done)(struct vigil_instance *h);
    /* Sinks: the destination asked not to be retried before delay_ns from
     * now (HTTP Retry-After). The host waits at least that long (capped at
     * 10 minutes) before the next attempt, instead of its own backoff. */
    void (*retry_after)(struct vigil_instance *h, uint64_t delay_ns);
    /* Sources: between batch_begin() and batch_end(), publish() keeps the
     * finished events (seq already given) and they go to the bus as one
     * message at batch_end(), or as soon as 256 events or 256 KiB are kept. A
     * source that publishes a burst (one event per cgroup, per CPU) wakes
     * the bus thread once per burst instead of about once per event.
     * publish() then returns 0 or the error of an early send; batch_end()
     * returns 0, VIGIL_ESTOPPED (the events not sent are counted dropped).
     * Not nested. The host also sends what is kept when collect() returns.
     * Read nothing that may block inside a batch: what was read before it
     * would wait too. */
    void (*batch_begin)(struct vigil_instance *h);
    int (*batch_end)(struct vigil_instance *h);
    /* True while init() runs under `vigild --check`: a plugin that binds a
     * port or opens a device for good checks only what it can without
     * doing so (the running daemon may hold it). Appended to ABI 2: check
     * VIGIL_API_HAS(api, checking). */
    bool (*checking)(struct vigil_instance *h);
};

#define VIGIL_API_HAS(api, field)                                                                  \
    ((api)->size >= offsetof(struct vigil_api, field) + sizeof((api)->field))

/* ---- The descriptor -------------------------------------------------------
 * Export exactly one: `VIGIL_EXPORT const struct vigil_plugin vigil_plugin`.
 *
 * init: parse config through api, allocate state into *state. Sources that
 *   do their own I/O register events on api->event_base(h) here. Returns 0
 *   or a negative code; on failure nothing is left to free. It also runs
 *   under `vigild --check`, with a host whose publish() is not connected, so
 *   it must not start work that outlives fini().
 * collect (sources, optional): called every `interval` on the instance's
 *   thread, first right after start.
 * write (sinks): a batch of n events; fill results[i] for each. The return
 *   value is 0, VIGIL_WRITE_ASYNC (see above), or a negative code meaning
 *   "every event: retry". The host owns batching, retries with backoff and
 *   the disk spool: a plugin only formats and writes. Events are read-only
 *   and valid until write() returns (or until write_done() when async).
 * fini: free state. Called once after a successful init, on the same thread
 *   that ran the instance.
 * reopen (sinks, optional): vigild got SIGHUP (logrotate): reopen files.
 *   Runs on the instance's thread between writes.
 * batch_max_events (sinks, optional): the batch.max_events an instance gets
 *   when its config does not set it; 0: the host's default, 512. For a sink
 *   whose write() pipelines (forward: 65536, so that many wire batches are
 *   in flight before the host's next write). Read only from a descriptor
 *   whose size covers it. */
struct vigil_plugin {
    uint32_t abi;  /* VIGIL_PLUGIN_ABI */
    uint32_t size; /* sizeof(struct vigil_plugin) */
    enum vigil_plugin_kind kind;
    const char *name; /* must match the file name: <name>.so */
    const char *version;
    const char *description;
    const struct vigil_option *options;

    int (*init)(struct vigil_instance *h, const struct vigil_api *api, void **state);
    int (*collect)(void *state);
    int (*write)(void *state, const struct vigil_event *const *events, size_t n,
                 enum vigil_write_result *results);
    void (*fini)(void *state);

    int (*reopen)(void *state);

    uint32_t batch_max_events;
};

/* The descriptor size of ABI 2's first release; larger ones add fields. */
#define VIGIL_PLUGIN_SIZE_MIN offsetof(struct vigil_plugin, batch_max_events)

/* Whether descriptor d is large enough to hold `field`. */
#define VIGIL_PLUGIN_HAS(d, field)                                                                 \
    ((d)->size >= offsetof(struct vigil_plugin, field) + sizeof(d)->field)

#define VIGIL_PLUGIN_DESCRIPTOR_FIELDS .abi = VIGIL_PLUGIN_ABI, .size = sizeof(struct vigil_plugin)

#ifdef __cplusplus
}
#endif
#endif /* VIGIL_PLUGIN_H */

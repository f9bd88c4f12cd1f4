/* Configuration: the YAML file parsed (libyaml) into a tree of nodes that
 * remember their file:line:col, typed readers for those nodes, and the
 * daemon's own schema (host, plugin_dir, plugin_trust, bus, self, sources, rules, sinks).
 * Every error goes to a vigil_diag as "FILE:LINE:COL: message".
 */
#ifndef VIGIL_CONFIG_H
#define VIGIL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vigil/plugin.h"

/* ---- Diagnostics --------------------------------------------------------- */

/* Collected error messages, each "FILE:LINE:COL: message" (or "FILE: message"
 * when there is no position). Bounded: past 1000 messages only `count` grows. */
struct vigil_diag {
    size_t count;
    size_t n, cap;
    char **msgs;
};

void vigil_diag_init(struct vigil_diag *d);
void vigil_diag_fini(struct vigil_diag *d);
/* line/col <= 0 means "no position". */
void vigil_diag_add(struct vigil_diag *d, const char *file, int line, int col, const char *fmt, ...)
    VIGIL_PRINTF(5, 6);
void vigil_diag_vadd(struct vigil_diag *d, const char *file, int line, int col, const char *fmt,
                     va_list ap);
/* At a node's position. */
void vigil_diag_at(struct vigil_diag *d, const struct vigil_conf *n, const char *fmt, ...)
    VIGIL_PRINTF(3, 4);
/* Writes every message, one per line. */
void vigil_diag_print(const struct vigil_diag *d, FILE *out);

/* ---- The node tree ----------------------------------------------------------- */

enum vigil_conf_kind { VIGIL_CONF_SCALAR = 1, VIGIL_CONF_MAP, VIGIL_CONF_LIST };

struct vigil_conf {
    enum vigil_conf_kind kind;
    const char *file; /* shared, owned by the document */
    int line, col;    /* 1-based, where the node starts */
    char *value;      /* scalars: the text, NUL-terminated */
    bool quoted;      /* scalars: written quoted ('x' or "x"): always a string */
    size_t n;         /* maps and lists: number of items */
    char **keys;      /* maps: keys[i] names items[i] */
    struct vigil_conf **items;
    /* Appended: maps only, where keys[i] was written (1-based), so that a
     * message about a key (unknown, misplaced) points at the key rather
     * than at its value. NULL when unknown, e.g. in a map built by hand. */
    int *key_lines, *key_cols;
};

/* Parses YAML text (one document; a mapping at the top, or empty) into a
 * tree. `name` is the file name used in messages. Syntax errors, duplicate
 * keys and non-scalar keys go to d. Returns NULL on a syntax error. The
 * caller owns the result (vigil_conf_free). An empty document gives an empty
 * map. */
struct vigil_conf *vigil_conf_parse(const char *text, size_t len, const char *name,
                                    struct vigil_diag *d);
/* Reads and parses a file; an unreadable file is one diag message. */
struct vigil_conf *vigil_conf_load(const char *path, struct vigil_diag *d);
void vigil_conf_free(struct vigil_conf *root);

/* Readers. They return 0, VIGIL_ETYPE (wrong type, or a number out of
 * range), or VIGIL_ENOTFOUND when n is NULL (the codes are negative). Strings: any scalar. Ints:
 * plain scalars in decimal (or 0x hex). Doubles: any number. Bools:
 * true/false/yes/no/on/off (plain). Durations need a unit: ns us ms s m h d
 * ("250ms", "1.5s"). Sizes: bytes with an optional unit B KB MB GB TB (x1000)
 * or KiB MiB GiB TiB (x1024), also k/K/M/G as 1024 multiples ("64KiB"). */
const struct vigil_conf *vigil_conf_get(const struct vigil_conf *map, const char *key);
int vigil_conf_string(const struct vigil_conf *n, const char **out);
int vigil_conf_int(const struct vigil_conf *n, int64_t *out);
int vigil_conf_double(const struct vigil_conf *n, double *out);
int vigil_conf_bool(const struct vigil_conf *n, bool *out);
int vigil_conf_duration(const struct vigil_conf *n, uint64_t *out_ns);
int vigil_conf_size(const struct vigil_conf *n, uint64_t *out_bytes);
size_t vigil_conf_len(const struct vigil_conf *n);
const struct vigil_conf *vigil_conf_at(const struct vigil_conf *n, size_t i, const char **key_out);

/* The node as text that is equal for equal configs whatever their positions
 * or key order (for telling what a reload changed). Caller frees; NULL when
 * out of memory. */
char *vigil_conf_canonical(const struct vigil_conf *n);

/* The parsers behind the readers, for text from elsewhere (command lines). */
int vigil_parse_duration(const char *s, uint64_t *out_ns);
int vigil_parse_size(const char *s, uint64_t *out_bytes);

/* Checks a plugin instance's own keys against its option table: every key
 * of `map` must be in `opts` (else "unknown key 'x' for plugin 'p'", with
 * the list of valid keys), and every present value must read as its type.
 * Missing keys that have a default get it added to `map` (parsed from the
 * default's YAML text, at the map's position). Errors go to d; returns the
 * number of errors found. `what` names the owner in messages, as a noun
 * phrase: "plugin 'gen'", "threshold rule 'cpu'". */
int vigil_conf_check_options(struct vigil_conf *map, const struct vigil_option *opts,
                             const char *what, struct vigil_diag *d);

/* ---- The daemon's schema ------------------------------------------------------ */

/* How the host delivers to one sink (the sink's common keys queue, spool,
 * retry, batch; the plugin never sees them). */
struct vigil_delivery_conf {
    uint64_t queue_events;   /* memory queue bound in events, default 65536 */
    uint64_t queue_bytes;    /* and in bytes, default 32 MiB */
    char *spool_path;        /* folder; default <state_dir>/spool/<name> */
    uint64_t spool_max;      /* bytes on disk, default 1 GiB */
    uint64_t min_backoff_ns; /* default 100ms */
    uint64_t max_backoff_ns; /* default 5s */
    uint64_t batch_max;      /* events per write(); 0: the plugin's default, else 512 */
    uint64_t batch_wait_ns;  /* wait this long for a fuller batch, default 0 */
};

struct vigil_instance_conf {
    char *plugin;         /* plugin name: loads <plugin_dir>/<plugin>.so */
    char *name;           /* instance name, unique among sources / sinks */
    uint64_t interval_ns; /* sources: collect() period, default 10s */
    char **match;         /* sinks: topic prefixes; default one "" (all) */
    size_t nmatch;
    struct vigil_conf *node;             /* the entry as written (for positions) */
    struct vigil_conf *own;              /* the plugin's own keys: the entry minus
                                            plugin/name/interval/match (and for sinks
                                            queue/spool/retry/batch); a map owned by
                                            this struct */
    struct vigil_delivery_conf delivery; /* sinks */
    /* Sources: `isolate: process` runs the instance in a plugin host, a
     * child process of its own (isolate.h); the host's keys, never the
     * plugin's. */
    bool isolate;
    uint64_t hang_timeout_ns;  /* collect() longer than this: killed; default 10 x interval */
    uint64_t memory_max_bytes; /* address space the plugin may add (RLIMIT_AS); 0: none */
    char *isolate_dir;         /* <state_dir>/isolate/<name>: the child's socket */
    const struct vigil_config *config; /* the config of this entry (its text for the child) */
};

struct vigil_config {
    char *path;       /* as given */
    char *dir;        /* folder of the file, for relative paths */
    char *host;       /* default: gethostname() */
    char *plugin_dir; /* absolute or resolved against dir */
    /* plugin_trust (default true): refuse plugin files and folders others
     * can write (plugin_host.c). false for development trees only; the
     * node is where it was said, for the warning (NULL when absent). */
    bool plugin_trust;
    const struct vigil_conf *plugin_trust_at;
    char *state_dir; /* default /var/lib/vigil; sink spools live here */
    char *pid_file;  /* default <state_dir>/vigild.pid; vigild --reload reads it */
    struct {
        char *publish;            /* PULL endpoint for producers */
        char *subscribe;          /* XPUB endpoint for consumers */
        char *ingest;             /* ROUTER endpoint for agents' forward sinks, or NULL */
        bool publish_plaintext;   /* {endpoint, plaintext: true}: a network endpoint */
        bool subscribe_plaintext; /*   without CURVE, on purpose */
        bool ingest_plaintext;
        char *curve_secret_key;      /* bus.curve: this daemon's secret key file, or NULL */
        char *curve_authorized_keys; /* and the public keys it lets in */
        const struct vigil_conf *curve_secret_at, *curve_authorized_at; /* positions */
        int hwm;                  /* messages per socket, default 10000 */
        uint64_t max_event_bytes; /* default 64 KiB */
        uint64_t coalesce_ns;     /* default 300us */
    } bus;
    uint64_t self_interval_ns; /* default 10s */
    struct vigil_instance_conf *sources;
    size_t nsources;
    struct vigil_instance_conf *sinks;
    size_t nsinks;
    struct vigil_conf *rules; /* the `rules:` list as written, or NULL */
    struct vigil_conf *root;
    /* The file's text as parsed: an isolated source's plugin host parses the
     * same bytes (isolate.h), whatever the file holds by then. */
    char *text;
    size_t text_len;
};

#define VIGIL_DEFAULT_PUBLISH "ipc:///run/vigil/publish"
#define VIGIL_DEFAULT_SUBSCRIBE "ipc:///run/vigil/subscribe"

/* Loads and checks the daemon's keys (not the plugins' own keys: that needs
 * the plugins, see plugin_host). Every problem goes to d. Returns NULL only
 * when the file cannot be read or parsed; otherwise a config (possibly with
 * errors in d: check d->count). Caller owns it. */
struct vigil_config *vigil_config_load(const char *path, struct vigil_diag *d);
/* The same from text in memory; `name` stands for the file in messages and
 * its folder resolves relative paths. */
struct vigil_config *vigil_config_parse(const char *text, size_t len, const char *name,
                                        struct vigil_diag *d);
void vigil_config_free(struct vigil_config *c);

#endif

/* Integration-test harness: runs the real vigild (and the tools) from the
 * build tree in a temporary folder of its own, with its own ipc endpoints,
 * and cleans everything up, also after a failed test.
 */
#ifndef VIGIL_TEST_HARNESS_H
#define VIGIL_TEST_HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct vd {
    pid_t pid;
    char dir[256];      /* the test's own temporary folder */
    char cfg[PATH_MAX]; /* <dir>/vigil.yaml */
    char log[PATH_MAX]; /* vigild's stderr */
    char pub[PATH_MAX]; /* ipc://<dir>/pub */
    char sub[PATH_MAX]; /* ipc://<dir>/sub */
    /* <dir>/plugins, the config's plugin_dir: links to the build's plugins
     * and to the test plugins (tests/plugins), which build apart. */
    char plugins[PATH_MAX];
};

/* Makes the folder and writes the config: plugin_dir (v->plugins), bus
 * endpoints and self.interval are set by the harness, and state_dir
 * (<dir>/state, where sink spools go) unless body sets it; `body` adds
 * sources/sinks/etc.
 * Every "@DIR@" in body becomes the folder. Returns 0 or -1. */
int vd_setup(struct vd *v, const char *self_interval, const char *body);
/* The same, with `bus_keys` ("  coalesce: 2ms\n") added to the bus section;
 * a "  subscribe: EP\n" there replaces the ipc one (and sets v->sub). */
int vd_setup_bus(struct vd *v, const char *self_interval, const char *bus_keys, const char *body);
/* Writes the config again in the same folder (for a reload), as vd_setup
 * and vd_setup_bus write it. Returns 0 or -1. */
int vd_rewrite(struct vd *v, const char *self_interval, const char *body);
int vd_rewrite_bus(struct vd *v, const char *self_interval, const char *bus_keys, const char *body);
/* Starts vigild -c cfg; waits (up to 10 s) for its "started" log line.
 * Returns 0, or -1 if it exited or did not start (see v->log). */
int vd_start(struct vd *v);
/* vd_start(), printing vigild's log when it did not start: for
 * assert_true(vd_started(v)). */
bool vd_started(struct vd *v);
/* The same inside the network namespace `netns` (`ip netns exec`, root
 * only); v->pid is vigild's own (checked), so vd_stop and vd_kill9 reach
 * it. vigild gets SIGKILL if the test process dies first. */
int vd_start_netns(struct vd *v, const char *netns);
bool vd_started_netns(struct vd *v, const char *netns);
/* The path of iproute2's ip(8), or NULL. */
const char *ip_tool(void);
/* A loopback tcp port nothing listens on now, or -1. */
int free_loopback_port(void);
/* Writes `body` as a fresh config (vd_setup) and runs vigild --check on it:
 * true when it exits 1 with a message at "<config><where>" (where is
 * ":LINE:COL: ") that contains `text`; otherwise prints what it said. */
bool vd_check_refuses(struct vd *v, const char *body, const char *where, const char *text);
/* Config cases vigild --check must refuse (vd_check_refuses). */
struct bad_conf {
    const char *yaml;
    const char *where; /* ":LINE:COL: " of the error */
    const char *text;
};
/* True when every case is refused as it says; else names the first that was
 * not. */
bool vd_check_refuses_all(struct vd *v, const struct bad_conf *cases, size_t n);
/* SIGTERM and wait up to timeout_s; returns the exit status (or -1 on
 * timeout, after SIGKILL) and the seconds it took. */
int vd_stop(struct vd *v, int timeout_s, double *secs);
/* cmocka setup/teardown for tests whose state is one struct vd. */
int vd_fixture_setup(void **state);
int vd_fixture_teardown(void **state);
/* <dir>/<name>; the last 8 results stay valid. */
const char *vd_path(const struct vd *v, const char *name);
/* vigild's log on stderr, for a failing test. */
void vd_dump_log(const struct vd *v);
/* CLOCK_MONOTONIC in seconds; a sleep. */
double now_s(void);
void sleep_ms(int ms);

/* kill -9 (a crash: nothing is flushed, no handler runs) and reap it. */
void vd_kill9(struct vd *v);
/* Kills vigild if running and removes the folder. */
void vd_cleanup(struct vd *v);
/* rm -rf dir (nothing for ""), saying so when it fails. */
void remove_tree(const char *dir);

/* Runs argv with stdin from `in` (may be NULL), collecting stdout and stderr
 * (caller frees); kills it after timeout_s. Returns its exit status, or -1. */
int run(char *const argv[], const char *in, size_t in_len, char **out, char **err, int timeout_s);

/* Reads a whole file (NUL-terminated; caller frees), NULL if absent. */
char *slurp(const char *path);
/* Number of lines of a file that contain `needle`. */
size_t count_lines(const char *path, const char *needle);
/* Waits up to timeout_s until count_lines(path, needle) >= n. */
bool wait_lines(const char *path, const char *needle, size_t n, int timeout_s);
/* Checks that the lines of `path` with "source":"<source>" carry seq 1..n
 * each exactly once and in order; prints what is wrong. */
bool seqs_complete(const char *path, const char *source, size_t n);
/* Like seqs_complete, but for at-least-once: every seq 1..n present, each
 * at least once, none other; *dups (if not NULL) gets the extra copies. */
bool seqs_at_least_once(const char *path, const char *source, size_t n, size_t *dups);
/* The value `key` of the last vigil.self line in `path` for the sink or
 * source instance `instance`; false if there is none yet. */
bool self_value(const char *path, const char *instance, const char *key, double *out);
/* Waits up to timeout_s for self_value(...) >= min. */
bool wait_self_value(const char *path, const char *instance, const char *key, double min,
                     int timeout_s);
/* The same for the last vigil.self line that contains `needle` (such as
 * "\"stage\":\"ingest\""), and a wait for a value equal to `want`. */
bool self_value_of(const char *path, const char *needle, const char *key, double *out);
bool wait_self_equal(const char *path, const char *needle, const char *key, double want,
                     int timeout_s);
/* Every line of the file parses as JSON (python3's json module). */
bool json_lines_valid(const char *path);

#endif

/* access plugin internals: the state its files share (the fanotify groups,
 * the audit socket, the identity cache, the rate limit). Private to
 * plugins/access/; not an API.
 */
#ifndef VIGIL_ACCESS_H
#define VIGIL_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroup_labels.h"
#include "vigil/plugin.h"

#define AC_CACHE_SLOTS 512                /* identities of processes kept (a power of two) */
#define AC_CACHE_TTL_NS 2000000000ull     /* an identity is read again after this long */
#define AC_READ_BURST 256                 /* kernel events read per wake-up before yielding */
#define AC_AUDIT_TIMEOUT_NS 1000000000ull /* an audit event without EOE is sent after this */
#define AC_PATH_MAX 4096

/* What the source reports (the `events` option). */
enum {
    AC_EV_READ = 1u << 0,   /* a file opened read-only was closed */
    AC_EV_WRITE = 1u << 1,  /* a file opened for writing was closed */
    AC_EV_EXEC = 1u << 2,   /* a file was opened to be executed */
    AC_EV_MODIFY = 1u << 3, /* data was written */
    AC_EV_OPEN = 1u << 4,   /* any open, its mode unknown */
    AC_EV_CREATE = 1u << 5, /* an entry was made in a watched directory */
    AC_EV_DELETE = 1u << 6, /* an entry was removed */
};

/* Who did it: read from /proc/<pid> once per AC_CACHE_TTL_NS. */
struct ac_ident {
    pid_t pid; /* 0: empty slot */
    uint64_t read_ns;
    bool own; /* vigild or one of its children: never reported */
    bool gone;
    uid_t uid;
    char cgroup[512];
    char exe[256];
    char lbuf[512]; /* the labels' strings */
    struct vigil_cgroup_labels labels;
};

/* A filesystem a mark is on: open_by_handle_at() needs a descriptor in it. */
struct ac_fs {
    uint64_t fsid;
    int fd; /* a directory in it */
};

/* One audit event being assembled from its records (same serial). */
struct ac_audit_ev {
    uint64_t serial; /* 0: free */
    uint64_t first_ns;
    uint64_t ts_ns; /* from the records' audit(SECONDS.MS:SERIAL) */
    char *text;     /* the records, "TYPE text\n" each */
    size_t len, cap;
};

struct ac {
    struct vigil_instance *h;
    const struct vigil_api *api;

    /* Options. */
    unsigned events; /* AC_EV_* */
    const struct vigil_conf *paths, *mounts, *filesystems;
    const char **ignore, **ignore_exe;
    size_t nignore, nignore_exe;
    int64_t rate, burst;
    int64_t max_pending;
    const char *audit_mode; /* "auto", "on", "off" */
    uint64_t audit_buffer;

    /* fanotify: fd-mode group (open, close, exec, modify), FID group
     * (create, delete). -1 when not used. */
    int fan_fd, fid_fd;
    struct event *fan_ev, *fid_ev;
    struct ac_fs *fs;
    size_t nfs;

    /* Audit. */
    int audit_fd;
    struct event *audit_ev, *audit_tick;
    struct ac_audit_ev *pending; /* max_pending slots */
    char *nlbuf;
    size_t nlbuf_cap;

    /* Who we are. */
    pid_t self_pid, vigild_pid;

    /* Identity cache. */
    struct ac_ident *cache;

    /* Rate limit: a token bucket. */
    double tokens;
    uint64_t tokens_ns;

    /* Counters (ids from counter_new) and their totals. */
    int c_rate_dropped, c_queue_dropped;
    uint64_t published, rate_dropped, queue_dropped;
    char path[AC_PATH_MAX + 256]; /* scratch */
};

/* access.c: the event of one access, with the identity of pid. `resource`
 * may be NULL (a login). Applies the ignore globs, the own-pid filter and
 * the rate limit. ts_ns 0: now. attrs_fn (may be NULL) adds attrs. Returns
 * 0, or the publish() error (VIGIL_ESTOPPED: stop reading). */
typedef void (*ac_attrs_fn)(struct ac *a, struct vigil_event_builder *ev, void *arg);
int ac_emit(struct ac *a, pid_t pid, const char *action, const char *resource, uint64_t ts_ns,
            const char *uid, const char *exe, ac_attrs_fn attrs_fn, void *arg);
/* The identity of pid, from the cache or /proc. Never NULL. */
const struct ac_ident *ac_ident(struct ac *a, pid_t pid);
/* Forgets pid's identity (it exec'd: its exe changed). */
void ac_ident_forget(struct ac *a, pid_t pid);
void ac_count_queue_drop(struct ac *a, uint64_t n);

/* ac_fanotify.c: sets the groups up from the options and registers them on
 * the event base. 0, or a negative code with the reason logged. */
int ac_fanotify_start(struct ac *a);
void ac_fanotify_stop(struct ac *a);

/* ac_audit.c: joins the audit multicast group. 0; 1 when audit is not
 * available and the mode is auto (logged); a negative code otherwise. */
int ac_audit_start(struct ac *a);
void ac_audit_stop(struct ac *a);
/* Parses one audit event's records (exposed for the unit test). */
int ac_audit_publish(struct ac *a, const char *records, size_t len, uint64_t ts_ns,
                     uint64_t serial);

#endif

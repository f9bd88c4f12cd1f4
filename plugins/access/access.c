/* access: file accesses and executions (fanotify, notification only) and the
 * kernel audit stream (the read-only multicast group) as `access` events:
 * who (the process's cgroup and its container/pod/vm labels), did what, to
 * which resource; the input of the policy rule. See README.md.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"

static const struct vigil_option ac_options[] = {
    {"paths", VIGIL_OPT_LIST, NULL,
     "files and directories to watch (inode marks: the directory's entries, not below)"},
    {"mounts", VIGIL_OPT_LIST, NULL, "mount points whose every file is watched (no create/delete)"},
    {"filesystems", VIGIL_OPT_LIST, NULL, "paths whose whole filesystem is watched"},
    {"events", VIGIL_OPT_LIST, "[read, write, exec, create, delete]",
     "read, write, exec, modify, open, create, delete"},
    {"ignore", VIGIL_OPT_LIST, NULL, "globs over resources (paths) not to report"},
    {"ignore_exe", VIGIL_OPT_LIST, NULL, "globs over executables whose accesses are not reported"},
    {"audit", VIGIL_OPT_STRING, "auto", "auto, on or off: read the kernel audit stream"},
    {"audit_buffer", VIGIL_OPT_SIZE, "4MiB", "receive buffer of the audit socket"},
    {"rate", VIGIL_OPT_INT, "20000", "events per second at most (0: no limit)"},
    {"burst", VIGIL_OPT_INT, "0", "events above the rate let through at once; 0: one second's"},
    {"max_pending", VIGIL_OPT_INT, "256", "audit events being assembled at once"},
    {NULL, 0, NULL, NULL},
};

static const struct {
    const char *name;
    unsigned bit;
} ev_names[] = {
    {"read", AC_EV_READ},     {"write", AC_EV_WRITE}, {"exec", AC_EV_EXEC},
    {"modify", AC_EV_MODIFY}, {"open", AC_EV_OPEN},   {"create", AC_EV_CREATE},
    {"delete", AC_EV_DELETE},
};

/* ---- identity --------------------------------------------------------------- */

static void read_small(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
}

/* The parent pid and real uid from /proc/<pid>/status; false if gone, or
 * a zombie: /proc/<pid>/cgroup no longer says where it ran. */
static bool proc_status(pid_t pid, pid_t *ppid, uid_t *uid)
{
    char path[64], text[2048];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    read_small(path, text, sizeof text);
    const char *state = strstr(text, "\nState:");
    const char *p = strstr(text, "\nPPid:");
    const char *u = strstr(text, "\nUid:");
    if (state) {
        state += 7 + strspn(state + 7, " \t");
    }
    if (!state || !p || !u || *state == 'Z' || *state == 'X') {
        return false;
    }
    *ppid = (pid_t)strtol(p + 6, NULL, 10);
    *uid = (uid_t)strtoul(u + 5, NULL, 10);
    return true;
}

static void proc_exe(pid_t pid, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(path, out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
}

const struct ac_ident *ac_ident(struct ac *a, pid_t pid)
{
    struct ac_ident *e = &a->cache[(uint32_t)pid * 2654435761u % AC_CACHE_SLOTS];
    uint64_t now = a->api->mono_ns();
    if (e->pid == pid && now - e->read_ns < AC_CACHE_TTL_NS) {
        return e;
    }
    memset(e, 0, sizeof *e);
    e->pid = pid;
    e->read_ns = now;
    pid_t ppid = 0;
    if (!proc_status(pid, &ppid, &e->uid)) {
        e->gone = true; /* exited before we looked: only what the kernel said */
        return e;
    }
    e->own = pid == a->self_pid || pid == a->vigild_pid || ppid == a->vigild_pid;
    proc_exe(pid, e->exe, sizeof e->exe); /* "" for a kernel thread */
    if (vigil_proc_cgroup(pid, e->cgroup, sizeof e->cgroup) == 0) {
        vigil_cgroup_labels_derive(e->cgroup, &e->labels, e->lbuf, sizeof e->lbuf);
    } else {
        e->cgroup[0] = '\0';
    }
    return e;
}

void ac_ident_forget(struct ac *a, pid_t pid)
{
    struct ac_ident *e = &a->cache[(uint32_t)pid * 2654435761u % AC_CACHE_SLOTS];
    if (e->pid == pid) {
        e->pid = 0;
    }
}

/* ---- publishing ------------------------------------------------------------- */

static bool any_glob(struct ac *a, const char **globs, size_t n, const char *s)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < n; i++) {
        if (a->api->glob_match(globs[i], s, len)) {
            return true;
        }
    }
    return false;
}

/* The token bucket: true when one more event may go now. */
static bool rate_ok(struct ac *a)
{
    if (a->rate == 0) {
        return true;
    }
    uint64_t now = a->api->mono_ns();
    a->tokens += (double)(now - a->tokens_ns) * 1e-9 * (double)a->rate;
    a->tokens_ns = now;
    if (a->tokens > (double)a->burst) {
        a->tokens = (double)a->burst;
    }
    if (a->tokens < 1.0) {
        return false;
    }
    a->tokens -= 1.0;
    return true;
}

void ac_count_queue_drop(struct ac *a, uint64_t n)
{
    a->queue_dropped += n;
    a->api->counter_set(a->h, a->c_queue_dropped, a->queue_dropped);
    a->api->log_limited(a->h, VIGIL_LOG_WARN,
                        "the kernel's queue overflowed: accesses were lost (%llu times so far); "
                        "narrow the marks or raise rate",
                        (unsigned long long)a->queue_dropped);
}

int ac_emit(struct ac *a, pid_t pid, const char *action, const char *resource, uint64_t ts_ns,
            const char *uid, const char *exe, ac_attrs_fn attrs_fn, void *arg)
{
    const struct vigil_api *api = a->api;
    const struct ac_ident *id = ac_ident(a, pid);
    if (id->own) {
        return 0;
    }
    if (!exe || !*exe) {
        exe = id->exe;
    }
    if ((resource && any_glob(a, a->ignore, a->nignore, resource)) ||
        (*exe && any_glob(a, a->ignore_exe, a->nignore_exe, exe))) {
        return 0;
    }
    if (!rate_ok(a)) {
        a->rate_dropped++;
        api->counter_set(a->h, a->c_rate_dropped, a->rate_dropped);
        api->log_limited(a->h, VIGIL_LOG_WARN,
                         "over rate=%lld events/s: accesses not reported (%llu so far)",
                         (long long)a->rate, (unsigned long long)a->rate_dropped);
        return 0;
    }
    struct vigil_event_builder *ev = api->event_begin(a->h, "access");
    if (ts_ns) {
        api->event_ts(ev, ts_ns);
    }
    /* A process gone before we looked has no cgroup to name: the subject
     * says so rather than guessing. */
    api->event_label(ev, "subject", id->cgroup[0] ? id->cgroup : "?");
    api->event_label(ev, "action", action);
    if (resource) {
        api->event_label(ev, "resource", resource);
    }
    vigil_cgroup_labels_add(api, ev, id->cgroup[0] ? id->cgroup : NULL, &id->labels);
    char ubuf[16];
    if (!uid && !id->gone) {
        snprintf(ubuf, sizeof ubuf, "%u", (unsigned)id->uid);
        uid = ubuf;
    }
    if (uid) {
        api->event_label(ev, "uid", uid);
    }
    if (*exe) {
        api->event_label(ev, "exe", exe);
    }
    api->event_value_u64(ev, "pid", (uint64_t)pid);
    if (attrs_fn) {
        attrs_fn(a, ev, arg);
    }
    int rc = api->publish(a->h, ev);
    if (rc == 0) {
        a->published++;
    }
    return rc;
}

/* ---- options ---------------------------------------------------------------- */

/* A list option of strings into a NULL-less array; globs checked. */
static int string_list(struct ac *a, const char *key, bool globs, const char ***out, size_t *n)
{
    const struct vigil_api *api = a->api;
    const struct vigil_conf *l = api->conf_get(api->conf_root(a->h), key);
    *n = l ? api->conf_len(l) : 0;
    *out = *n ? calloc(*n, sizeof **out) : NULL;
    if (*n && !*out) {
        return -ENOMEM;
    }
    int bad = 0;
    for (size_t i = 0; i < *n; i++) {
        const struct vigil_conf *item = api->conf_at(l, i, NULL);
        const char *why = NULL;
        if (api->conf_string(item, &(*out)[i]) != 0) {
            api->conf_error(a->h, item, "%s: each item must be a string", key);
            bad++;
        } else if (globs && !api->glob_valid((*out)[i], &why)) {
            api->conf_error(a->h, item, "%s: '%s' is not a valid glob: %s", key, (*out)[i], why);
            bad++;
        } else if (!globs && (*out)[i][0] != '/') {
            api->conf_error(a->h, item, "%s: '%s' must be an absolute path", key, (*out)[i]);
            bad++;
        }
    }
    return bad ? VIGIL_ECONFIG : 0;
}

static int read_options(struct ac *a)
{
    const struct vigil_api *api = a->api;
    const struct vigil_conf *root = api->conf_root(a->h);
    int bad = 0;
    const struct vigil_conf *evs = api->conf_get(root, "events");
    for (size_t i = 0; i < api->conf_len(evs); i++) {
        const struct vigil_conf *item = api->conf_at(evs, i, NULL);
        const char *name = "";
        api->conf_string(item, &name);
        size_t k = 0;
        while (k < sizeof ev_names / sizeof ev_names[0] && strcmp(ev_names[k].name, name) != 0) {
            k++;
        }
        if (k == sizeof ev_names / sizeof ev_names[0]) {
            api->conf_error(a->h, item,
                            "events: '%s' is not read, write, exec, modify, open, create or delete",
                            name);
            bad++;
        } else {
            a->events |= ev_names[k].bit;
        }
    }
    const char **unused;
    size_t nunused;
    static const char *const lists[] = {"paths", "mounts", "filesystems"};
    for (size_t i = 0; i < 3; i++) {
        int rc = string_list(a, lists[i], false, &unused, &nunused);
        free(unused);
        bad += rc != 0;
    }
    a->paths = api->conf_get(root, "paths");
    a->mounts = api->conf_get(root, "mounts");
    a->filesystems = api->conf_get(root, "filesystems");
    bad += string_list(a, "ignore", true, &a->ignore, &a->nignore) != 0;
    bad += string_list(a, "ignore_exe", true, &a->ignore_exe, &a->nignore_exe) != 0;
    api->conf_string(api->conf_get(root, "audit"), &a->audit_mode);
    if (strcmp(a->audit_mode, "auto") != 0 && strcmp(a->audit_mode, "on") != 0 &&
        strcmp(a->audit_mode, "off") != 0) {
        api->conf_error(a->h, api->conf_get(root, "audit"), "audit must be auto, on or off");
        bad++;
    }
    api->conf_size(api->conf_get(root, "audit_buffer"), &a->audit_buffer);
    if (a->audit_buffer < 65536 || a->audit_buffer > (1u << 30)) {
        api->conf_error(a->h, api->conf_get(root, "audit_buffer"),
                        "audit_buffer must be 64KiB to 1GiB");
        bad++;
    }
    api->conf_int(api->conf_get(root, "rate"), &a->rate);
    api->conf_int(api->conf_get(root, "burst"), &a->burst);
    api->conf_int(api->conf_get(root, "max_pending"), &a->max_pending);
    if (a->rate < 0 || a->rate > 10000000) {
        api->conf_error(a->h, api->conf_get(root, "rate"), "rate must be 0 (no limit) to 10000000");
        bad++;
    }
    if (a->burst < 0) {
        api->conf_error(a->h, api->conf_get(root, "burst"), "burst must be 0 or more");
        bad++;
    }
    if (a->max_pending < 1 || a->max_pending > 65536) {
        api->conf_error(a->h, api->conf_get(root, "max_pending"), "max_pending must be 1 to 65536");
        bad++;
    }
    if (a->burst == 0) {
        a->burst = a->rate;
    }
    bool files =
        api->conf_len(a->paths) + api->conf_len(a->mounts) + api->conf_len(a->filesystems) > 0;
    if (!bad && !files && strcmp(a->audit_mode, "off") == 0) {
        api->conf_error(a->h, root,
                        "nothing to watch: give paths, mounts or filesystems, or audit: auto");
        bad++;
    }
    return bad ? VIGIL_ECONFIG : 0;
}

/* ---- lifecycle -------------------------------------------------------------- */

static void ac_free(struct ac *a)
{
    ac_fanotify_stop(a);
    ac_audit_stop(a);
    free(a->ignore);
    free(a->ignore_exe);
    free(a->cache);
    free(a);
}

/* vigild itself: our process, or our parent when we run as vigild's
 * isolated child (the same program). */
static pid_t find_vigild(void)
{
    char self[512], parent[512], path[64];
    pid_t ppid = getppid();
    proc_exe(getpid(), self, sizeof self);
    snprintf(path, sizeof path, "/proc/%d/exe", (int)ppid);
    ssize_t n = readlink(path, parent, sizeof parent - 1);
    parent[n > 0 ? n : 0] = '\0';
    return ppid > 1 && self[0] && strcmp(self, parent) == 0 ? ppid : getpid();
}

static int ac_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    struct ac *a = calloc(1, sizeof *a);
    if (!a) {
        return -ENOMEM;
    }
    a->h = h;
    a->api = api;
    a->fan_fd = a->fid_fd = a->audit_fd = -1;
    int rc = read_options(a);
    if (rc != 0) {
        ac_free(a);
        return rc;
    }
    a->c_rate_dropped = api->counter_new(h, "rate_dropped_total");
    a->c_queue_dropped = api->counter_new(h, "queue_dropped_total");
    a->cache = calloc(AC_CACHE_SLOTS, sizeof *a->cache);
    if (!a->cache) {
        ac_free(a);
        return -ENOMEM;
    }
    a->self_pid = getpid();
    a->vigild_pid = find_vigild();
    a->tokens = (double)a->burst;
    a->tokens_ns = api->mono_ns();
    /* Under --check the kernel is not asked: the running daemon holds its
     * own marks, and a check needs no privilege. */
    if (VIGIL_API_HAS(api, checking) && api->checking(h)) {
        *state = a;
        return 0;
    }
    rc = ac_fanotify_start(a);
    if (rc == 0) {
        rc = ac_audit_start(a);
        if (rc == 1) {
            rc = a->fan_fd < 0 && a->fid_fd < 0 ? VIGIL_ECONFIG : 0;
            if (rc != 0) {
                api->log(h, VIGIL_LOG_ERROR, "nothing to watch: no paths and no audit stream");
            }
        }
    }
    if (rc != 0) {
        ac_free(a);
        return rc;
    }
    *state = a;
    return 0;
}

static void ac_fini(void *state)
{
    struct ac *a = state;
    a->api->log(a->h, VIGIL_LOG_INFO, "%llu accesses reported, %llu over rate, %llu lost",
                (unsigned long long)a->published, (unsigned long long)a->rate_dropped,
                (unsigned long long)a->queue_dropped);
    ac_free(a);
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SOURCE,
    .name = "access",
    .version = "1.0.0",
    .description = "file accesses and executions (fanotify) and the audit stream",
    .options = ac_options,
    .init = ac_init,
    .fini = ac_fini,
};

/* access: the kernel audit stream, read from the read-only multicast group
 * (AUDIT_NLGRP_READLOG, CAP_AUDIT_READ): it coexists with auditd and changes
 * no audit rule or setting. The records of one audit event (same serial,
 * ending with EOE) become one access event; logins and MAC denials their own.
 */
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <linux/audit.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access.h"

#define NL_BUF_BYTES 65536
#define RECORD_MAX 8970 /* the kernel's MAX_AUDIT_MESSAGE_LENGTH */
#define MAX_PATHS 8

/* Userspace record types (libaudit.h, not in the kernel's header). */
#define AC_AUDIT_USER_AUTH 1100
#define AC_AUDIT_USER_LOGIN 1112
#define AC_AUDIT_APPARMOR_DENIED 1503

/* x86_64 syscall numbers of the calls audit rules usually watch; others are
 * named syscall_<n> (as are all on other architectures). */
static const struct {
    int nr;
    const char *name;
} x86_64_syscalls[] = {
    {0, "read"},        {1, "write"},          {2, "open"},
    {4, "stat"},        {9, "mmap"},           {21, "access"},
    {42, "connect"},    {43, "accept"},        {44, "sendto"},
    {49, "bind"},       {56, "clone"},         {57, "fork"},
    {58, "vfork"},      {59, "execve"},        {62, "kill"},
    {76, "truncate"},   {77, "ftruncate"},     {82, "rename"},
    {83, "mkdir"},      {84, "rmdir"},         {85, "creat"},
    {86, "link"},       {87, "unlink"},        {88, "symlink"},
    {90, "chmod"},      {91, "fchmod"},        {92, "chown"},
    {93, "fchown"},     {94, "lchown"},        {101, "ptrace"},
    {105, "setuid"},    {106, "setgid"},       {113, "setreuid"},
    {117, "setresuid"}, {161, "chroot"},       {165, "mount"},
    {166, "umount2"},   {175, "init_module"},  {176, "delete_module"},
    {188, "setxattr"},  {257, "openat"},       {258, "mkdirat"},
    {260, "fchownat"},  {263, "unlinkat"},     {264, "renameat"},
    {265, "linkat"},    {266, "symlinkat"},    {268, "fchmodat"},
    {272, "unshare"},   {288, "accept4"},      {298, "perf_event_open"},
    {308, "setns"},     {313, "finit_module"}, {316, "renameat2"},
    {321, "bpf"},       {322, "execveat"},     {437, "openat2"},
};

/* ---- fields of a record ------------------------------------------------------ */

static bool hex_key(const char *key)
{
    static const char *const keys[] = {"name", "exe", "comm", "cwd", "key", "path",
                                       "acct", "a0",  "a1",   "a2",  "a3",  "proctitle"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (strcmp(key, keys[i]) == 0) {
            return true;
        }
    }
    return false;
}

static int hexv(char c)
{
    return isdigit((unsigned char)c) ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The value of `key` in record rec[0..len) into out (cap bytes), quotes
 * removed and audit's hex encoding (an unquoted value of a string field)
 * undone. False when absent or "(null)". */
static bool field(const char *rec, size_t len, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = rec; p + kl + 1 <= rec + len; p++) {
        p = memchr(p, key[0], (size_t)(rec + len - p));
        if (!p || p + kl + 1 > rec + len) {
            return false;
        }
        if ((p > rec && p[-1] != ' ' && p[-1] != '\'') || memcmp(p, key, kl) != 0 || p[kl] != '=') {
            continue;
        }
        const char *v = p + kl + 1, *end = rec + len;
        bool quoted = v < end && *v == '"';
        const char *e;
        if (quoted) {
            v++;
            e = memchr(v, '"', (size_t)(end - v));
            e = e ? e : end;
        } else {
            e = v;
            while (e < end && *e != ' ' && *e != '\'' && *e != '\n') {
                e++;
            }
        }
        size_t n = (size_t)(e - v);
        if (n == 6 && memcmp(v, "(null)", 6) == 0) {
            return false;
        }
        bool hex = !quoted && hex_key(key) && n % 2 == 0 && n > 0;
        for (size_t i = 0; hex && i < n; i++) {
            hex = hexv(v[i]) >= 0;
        }
        size_t w = 0;
        if (hex) {
            for (size_t i = 0; i + 1 < n && w + 1 < cap; i += 2) {
                out[w++] = (char)(hexv(v[i]) * 16 + hexv(v[i + 1]));
            }
        } else {
            w = n < cap - 1 ? n : cap - 1;
            memcpy(out, v, w);
        }
        out[w] = '\0';
        return true;
    }
    return false;
}

/* ---- one audit event --------------------------------------------------------- */

struct group {
    const char *syscall, *avc, *user, *cwd, *execve, *config; /* records (after "TYPE ") */
    size_t syscall_len, avc_len, user_len, cwd_len, execve_len, config_len;
    int user_type;
    const char *path[MAX_PATHS];
    size_t path_len[MAX_PATHS], npaths;
    uint64_t serial;
    char resolved[MAX_PATHS][1040]; /* cwd (512) + name (512) */
};

static void audit_attrs(struct ac *a, struct vigil_event_builder *ev, void *arg)
{
    const struct vigil_api *api = a->api;
    struct group *g = arg;
    char v[512];
    api->event_attr_i64(ev, "audit_serial", (int64_t)g->serial);
    const char *rec = g->syscall ? g->syscall : g->avc ? g->avc : g->user;
    size_t len = g->syscall ? g->syscall_len : g->avc ? g->avc_len : g->user_len;
    static const char *const keys[] = {"success", "exit", "auid", "comm",    "key",
                                       "ses",     "res",  "addr", "terminal"};
    for (size_t i = 0; rec && i < sizeof keys / sizeof keys[0]; i++) {
        if (field(rec, len, keys[i], v, sizeof v)) {
            api->event_attr_str(ev, keys[i], v);
        }
    }
    if (g->avc && field(g->avc, g->avc_len, "tcontext", v, sizeof v)) {
        api->event_attr_str(ev, "tcontext", v);
    }
    if (g->npaths > 1) {
        api->event_attr_list_begin(ev, "paths");
        for (size_t i = 0; i < g->npaths; i++) {
            api->event_attr_str(ev, NULL, g->resolved[i]);
        }
        api->event_attr_end(ev);
    }
    if (g->execve) {
        api->event_attr_list_begin(ev, "argv");
        for (int i = 0; i < 16; i++) {
            char key[8];
            snprintf(key, sizeof key, "a%d", i);
            if (!field(g->execve, g->execve_len, key, v, sizeof v)) {
                break;
            }
            api->event_attr_str(ev, NULL, v);
        }
        api->event_attr_end(ev);
    }
}

static const char *syscall_name(const char *rec, size_t len, char *buf, size_t cap)
{
    char arch[16], nr[16];
    if (!field(rec, len, "syscall", nr, sizeof nr)) {
        return "syscall";
    }
    int n = atoi(nr);
    if (field(rec, len, "arch", arch, sizeof arch) && strcmp(arch, "c000003e") == 0) {
        for (size_t i = 0; i < sizeof x86_64_syscalls / sizeof x86_64_syscalls[0]; i++) {
            if (x86_64_syscalls[i].nr == n) {
                return x86_64_syscalls[i].name;
            }
        }
    }
    snprintf(buf, cap, "syscall_%d", n);
    return buf;
}

/* The action of a MAC record: "selinux_denied", "apparmor_denied", ... */
static const char *mac_action(const char *rec, size_t len, char *buf, size_t cap)
{
    char v[32];
    if (field(rec, len, "apparmor", v, sizeof v)) {
        snprintf(buf, cap, "apparmor_%s", v);
        for (char *c = buf; *c; c++) {
            *c = (char)tolower((unsigned char)*c);
        }
        return buf;
    }
    return memmem(rec, len, "granted", 7) ? "selinux_granted" : "selinux_denied";
}

int ac_audit_publish(struct ac *a, const char *records, size_t len, uint64_t ts_ns, uint64_t serial)
{
    struct group g = {.serial = serial};
    for (const char *r = records; r < records + len;) {
        const char *nl = memchr(r, '\n', (size_t)(records + len - r));
        const char *end = nl ? nl : records + len;
        int type = atoi(r);
        const char *text = memchr(r, ' ', (size_t)(end - r));
        text = text ? text + 1 : end;
        size_t tl = (size_t)(end - text);
        if (type == AUDIT_SYSCALL) {
            g.syscall = text, g.syscall_len = tl;
        } else if (type == AUDIT_PATH && g.npaths < MAX_PATHS) {
            g.path[g.npaths] = text;
            g.path_len[g.npaths++] = tl;
        } else if (type == AUDIT_CWD) {
            g.cwd = text, g.cwd_len = tl;
        } else if (type == AUDIT_EXECVE) {
            g.execve = text, g.execve_len = tl;
        } else if (type == AUDIT_AVC || type == AUDIT_SELINUX_ERR ||
                   type == AC_AUDIT_APPARMOR_DENIED) {
            g.avc = text, g.avc_len = tl;
        } else if (type == AC_AUDIT_USER_LOGIN || type == AC_AUDIT_USER_AUTH) {
            g.user = text, g.user_len = tl, g.user_type = type;
        } else if (type == AUDIT_CONFIG_CHANGE) {
            g.config = text, g.config_len = tl;
        }
        r = end + 1;
    }
    if (!g.syscall && !g.avc && !g.user && !g.config) {
        return 0; /* not an access: configuration changes, netfilter, ... */
    }
    const char *s = g.syscall ? g.syscall : g.avc ? g.avc : g.user ? g.user : g.config;
    size_t sl = g.syscall ? g.syscall_len : g.avc ? g.avc_len : g.user ? g.user_len : g.config_len;
    char pid_s[16], uid[16], exe[256], cwd[512], abuf[48], res[16];
    pid_t pid = field(s, sl, "pid", pid_s, sizeof pid_s) ? (pid_t)atoi(pid_s) : 0;
    bool have_uid = field(s, sl, "uid", uid, sizeof uid);
    if (!field(s, sl, "exe", exe, sizeof exe)) {
        exe[0] = '\0';
    }
    if (!g.cwd || !field(g.cwd, g.cwd_len, "cwd", cwd, sizeof cwd)) {
        cwd[0] = '\0';
    }
    /* Paths: relative ones are the process's, under CWD. */
    const char *resource = NULL;
    for (size_t i = 0; i < g.npaths; i++) {
        char name[512], type[16];
        if (!field(g.path[i], g.path_len[i], "name", name, sizeof name)) {
            snprintf(g.resolved[i], sizeof g.resolved[i], "?");
        } else if (name[0] != '/' && cwd[0]) {
            snprintf(g.resolved[i], sizeof g.resolved[i], "%s%s%s", cwd,
                     cwd[strlen(cwd) - 1] == '/' ? "" : "/", name);
        } else {
            snprintf(g.resolved[i], sizeof g.resolved[i], "%s", name);
        }
        bool parent = field(g.path[i], g.path_len[i], "nametype", type, sizeof type) &&
                      strcmp(type, "PARENT") == 0;
        if (!resource && !parent) {
            resource = g.resolved[i];
        }
    }
    if (!resource && g.npaths > 0) {
        resource = g.resolved[0];
    }
    char avc_res[512];
    const char *action;
    if (g.avc) {
        action = mac_action(g.avc, g.avc_len, abuf, sizeof abuf);
        /* SELinux's name= is the last component only: the event's PATH,
         * when it has one, is the whole path. */
        if (field(g.avc, g.avc_len, "path", avc_res, sizeof avc_res) ||
            (!resource && field(g.avc, g.avc_len, "name", avc_res, sizeof avc_res))) {
            resource = avc_res;
        }
        if (!pid && field(g.avc, g.avc_len, "pid", pid_s, sizeof pid_s)) {
            pid = (pid_t)atoi(pid_s);
        }
    } else if (g.user) {
        bool failed =
            field(g.user, g.user_len, "res", res, sizeof res) && strcmp(res, "success") != 0;
        action = g.user_type == AC_AUDIT_USER_LOGIN ? (failed ? "login_failed" : "login")
                                                    : (failed ? "auth_failed" : "auth");
        if (field(g.user, g.user_len, "acct", avc_res, sizeof avc_res)) {
            resource = avc_res;
        } else if (field(g.user, g.user_len, "id", avc_res, sizeof avc_res)) {
            resource = avc_res;
        }
    } else if (g.config) {
        /* Someone changed the audit rules or settings (auditctl). */
        action = "audit_config_change";
        if (field(g.config, g.config_len, "op", avc_res, sizeof avc_res)) {
            resource = avc_res;
        }
    } else {
        action = syscall_name(g.syscall, g.syscall_len, abuf, sizeof abuf);
    }
    return ac_emit(a, pid, action, resource, ts_ns, have_uid ? uid : NULL, exe, audit_attrs, &g);
}

/* ---- assembling events from records ----------------------------------------- */

static void slot_free(struct ac_audit_ev *e)
{
    e->serial = 0;
    e->len = 0;
}

static int slot_publish(struct ac *a, struct ac_audit_ev *e)
{
    int rc = ac_audit_publish(a, e->text, e->len, e->ts_ns, e->serial);
    slot_free(e);
    return rc;
}

static struct ac_audit_ev *slot_of(struct ac *a, uint64_t serial, uint64_t now)
{
    struct ac_audit_ev *free_slot = NULL, *oldest = NULL;
    for (int64_t i = 0; i < a->max_pending; i++) {
        struct ac_audit_ev *e = &a->pending[i];
        if (e->serial == serial) {
            return e;
        }
        if (e->serial == 0 && !free_slot) {
            free_slot = e;
        }
        if (e->serial && (!oldest || e->first_ns < oldest->first_ns)) {
            oldest = e;
        }
    }
    if (!free_slot) {
        /* Over max_pending: the oldest goes out as it is, without its EOE. */
        slot_publish(a, oldest);
        free_slot = oldest;
    }
    free_slot->serial = serial;
    free_slot->first_ns = now;
    return free_slot;
}

static void slot_append(struct ac_audit_ev *e, int type, const char *text, size_t n)
{
    size_t need = e->len + n + 16;
    if (need > e->cap) {
        size_t cap = e->cap ? e->cap : 1024;
        while (cap < need) {
            cap *= 2;
        }
        if (cap > 16 * RECORD_MAX) {
            return; /* an event of this many records keeps its first ones */
        }
        char *t = realloc(e->text, cap);
        if (!t) {
            return;
        }
        e->text = t;
        e->cap = cap;
    }
    e->len += (size_t)snprintf(e->text + e->len, e->cap - e->len, "%d ", type);
    memcpy(e->text + e->len, text, n);
    e->len += n;
    e->text[e->len++] = '\n';
}

/* One record: "audit(1700000000.123:456): fields...". */
static int on_record(struct ac *a, int type, const char *text, size_t n)
{
    unsigned long long sec = 0, ms = 0, serial = 0;
    int used = 0;
    if (sscanf(text, "audit(%llu.%llu:%llu): %n", &sec, &ms, &serial, &used) < 3 || used == 0) {
        return 0;
    }
    uint64_t ts = sec * 1000000000ull + ms * 1000000ull;
    uint64_t now = a->api->mono_ns();
    bool user = (type >= AUDIT_FIRST_USER_MSG && type <= AUDIT_LAST_USER_MSG) ||
                (type >= AUDIT_FIRST_USER_MSG2 && type <= AUDIT_LAST_USER_MSG2);
    if (user) {
        /* Userspace messages are single records: no EOE follows. */
        if (type != AC_AUDIT_USER_LOGIN && type != AC_AUDIT_USER_AUTH) {
            return 0;
        }
        char rec[RECORD_MAX + 16];
        int rl = snprintf(rec, sizeof rec, "%d %.*s", type, (int)(n - (size_t)used), text + used);
        return ac_audit_publish(a, rec, (size_t)(rl < (int)sizeof rec ? rl : (int)sizeof rec - 1),
                                ts, serial);
    }
    struct ac_audit_ev *e = slot_of(a, serial, now);
    if (type == AUDIT_EOE) {
        return slot_publish(a, e);
    }
    if (e->len == 0) {
        e->ts_ns = ts;
    }
    slot_append(e, type, text + used, n - (size_t)used);
    return 0;
}

static void on_audit(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct ac *a = arg;
    int rc = 0;
    a->api->batch_begin(a->h);
    for (int burst = 0; rc == 0 && burst < AC_READ_BURST; burst++) {
        ssize_t len = recv(fd, a->nlbuf, a->nlbuf_cap, MSG_DONTWAIT);
        if (len < 0) {
            if (errno == ENOBUFS) {
                ac_count_queue_drop(a, 1); /* the socket overflowed */
                continue;
            }
            break;
        }
        for (struct nlmsghdr *nh = (struct nlmsghdr *)a->nlbuf; NLMSG_OK(nh, len);
             nh = NLMSG_NEXT(nh, len)) {
            size_t n = nh->nlmsg_len - NLMSG_HDRLEN;
            const char *text = NLMSG_DATA(nh);
            while (n > 0 && (text[n - 1] == '\0' || text[n - 1] == '\n')) {
                n--;
            }
            if (rc == 0 && nh->nlmsg_type >= AUDIT_FIRST_USER_MSG) {
                char *copy = strndup(text, n);
                if (copy) {
                    rc = on_record(a, nh->nlmsg_type, copy, n);
                    free(copy);
                }
            }
        }
    }
    a->api->batch_end(a->h);
}

/* Sends what waited longer than AC_AUDIT_TIMEOUT_NS for its EOE. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct ac *a = arg;
    uint64_t now = a->api->mono_ns();
    for (int64_t i = 0; i < a->max_pending; i++) {
        struct ac_audit_ev *e = &a->pending[i];
        if (e->serial && now - e->first_ns > AC_AUDIT_TIMEOUT_NS) {
            slot_publish(a, e);
        }
    }
}

int ac_audit_start(struct ac *a)
{
    const struct vigil_api *api = a->api;
    if (strcmp(a->audit_mode, "off") == 0) {
        return 1;
    }
    bool must = strcmp(a->audit_mode, "on") == 0;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_AUDIT);
    const char *why = "this kernel has no audit (CONFIG_AUDIT)";
    int err = 0;
    if (fd >= 0) {
        struct sockaddr_nl sa = {.nl_family = AF_NETLINK,
                                 .nl_groups = 1u << (AUDIT_NLGRP_READLOG - 1)};
        int size = (int)a->audit_buffer;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        }
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            err = errno;
            why = err == EPERM ? "reading the audit stream needs CAP_AUDIT_READ"
                               : "cannot join the audit multicast group";
            close(fd);
            fd = -1;
        }
    } else {
        err = errno;
    }
    if (fd < 0) {
        api->log(a->h, must ? VIGIL_LOG_ERROR : VIGIL_LOG_INFO, "audit stream not read: %s (%s)%s",
                 why, strerror(err), must ? "" : "; files only");
        return must ? -err : 1;
    }
    a->audit_fd = fd;
    a->nlbuf_cap = NL_BUF_BYTES;
    a->nlbuf = malloc(a->nlbuf_cap);
    a->pending = calloc((size_t)a->max_pending, sizeof *a->pending);
    struct event_base *base = api->event_base(a->h);
    a->audit_ev = event_new(base, fd, EV_READ | EV_PERSIST, on_audit, a);
    a->audit_tick = event_new(base, -1, EV_PERSIST, on_tick, a);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 250000};
    if (!a->nlbuf || !a->pending || !a->audit_ev || !a->audit_tick ||
        event_add(a->audit_ev, NULL) != 0 || event_add(a->audit_tick, &tv) != 0) {
        ac_audit_stop(a);
        return -ENOMEM;
    }
    return 0;
}

void ac_audit_stop(struct ac *a)
{
    if (a->audit_ev) {
        event_free(a->audit_ev);
        a->audit_ev = NULL;
    }
    if (a->audit_tick) {
        event_free(a->audit_tick);
        a->audit_tick = NULL;
    }
    if (a->audit_fd >= 0) {
        close(a->audit_fd);
        a->audit_fd = -1;
    }
    for (int64_t i = 0; a->pending && i < a->max_pending; i++) {
        free(a->pending[i].text);
    }
    free(a->pending);
    a->pending = NULL;
    free(a->nlbuf);
    a->nlbuf = NULL;
}

/* The access source in a real vigild: a process the test starts in a cgroup
 * it makes opens a watched file for reading and for writing and execs a
 * binary; the access events name its cgroup, the action and the path, and a
 * policy rule in the same vigild flags exactly the denied ones. The audit
 * stream with a watch rule the test adds and removes (also on failure), and
 * a vigild without CAP_SYS_ADMIN that says why it cannot start.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "cgroup_labels.h"
#include "harness.h"
#include "mountinfo.h"

#define AUDIT_KEY "vigil-test-access"

/* What a test made, undone in teardown whatever happened. */
static struct {
    char cgroup[512]; /* the cgroup directory, "" none */
    pid_t kid;        /* a child still to kill, 0 none */
    bool audit_rule;  /* the watch rule below is in the kernel */
    char watch[512];
    int audit_enabled; /* the audit status to restore; -1: untouched */
} F = {.audit_enabled = -1};

/* ---- cgroups ------------------------------------------------------------- */

/* Where to make a cgroup: the cgroup2 mount (its root is the hierarchy's
 * root here), else the v1 pids hierarchy; false if none. */
static bool cgroup_base(char *out, size_t cap)
{
    char *text = slurp("/proc/self/mountinfo");
    bool found = false;
    char v1[512] = "";
    struct vigil_mountinfo m;
    for (char *cur = text; cur && vigil_mountinfo_next(&cur, &m);) {
        if (strcmp(m.fstype, "cgroup2") == 0 && strcmp(m.root, "/") == 0) {
            snprintf(out, cap, "%s", m.point);
            found = true;
            break;
        }
        if (strcmp(m.fstype, "cgroup") == 0 && strcmp(m.root, "/") == 0 &&
            vigil_mountinfo_has_option(m.super_opts, "pids")) {
            snprintf(v1, sizeof v1, "%s", m.point);
        }
    }
    free(text);
    if (!found && v1[0]) {
        snprintf(out, cap, "%s", v1);
        found = true;
    }
    return found;
}

static bool need_root_cgroup(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "skipped: fanotify and making cgroups need root\n");
        return false;
    }
    char base[256];
    if (!cgroup_base(base, sizeof base)) {
        fprintf(stderr, "skipped: no cgroup2 or v1 pids hierarchy mounted\n");
        return false;
    }
    snprintf(F.cgroup, sizeof F.cgroup, "%s/vigil-test-access-%d", base, (int)getpid());
    if (mkdir(F.cgroup, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "skipped: cannot make %s: %s\n", F.cgroup, strerror(errno));
        F.cgroup[0] = '\0';
        return false;
    }
    return true;
}

/* A child that waits on `go`, then runs body (which does not return). Moved
 * into F.cgroup before it starts; its cgroup path (as /proc says) in cg. */
static pid_t start_kid(void (*body)(void *), void *arg, char *cg, size_t cap)
{
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(go[1]);
        char c;
        if (read(go[0], &c, 1) != 1) {
            _exit(3);
        }
        body(arg);
        _exit(4);
    }
    close(go[0]);
    F.kid = pid;
    char procs[600], num[16];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", F.cgroup);
    int fd = open(procs, O_WRONLY);
    assert_true(fd >= 0);
    int n = snprintf(num, sizeof num, "%d", (int)pid);
    assert_int_equal(write(fd, num, (size_t)n), n);
    close(fd);
    assert_int_equal(vigil_proc_cgroup(pid, cg, cap), 0);
    assert_non_null(strstr(cg, "/vigil-test-access-"));
    assert_int_equal(write(go[1], "g", 1), 1);
    close(go[1]);
    return pid;
}

static void stop_kid(void)
{
    if (F.kid > 0) {
        kill(F.kid, SIGKILL);
        waitpid(F.kid, NULL, 0);
        F.kid = 0;
    }
}

/* ---- the output ------------------------------------------------------------ */

/* Lines of `path` that contain every one of the NULL-terminated needles. */
static size_t count_all(const char *path, ...)
{
    const char *needles[8];
    size_t nn = 0;
    va_list ap;
    va_start(ap, path);
    for (const char *s; nn < 8 && (s = va_arg(ap, const char *));) {
        needles[nn++] = s;
    }
    va_end(ap);
    char *text = slurp(path);
    size_t count = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
        }
        size_t i = 0;
        while (i < nn && strstr(line, needles[i])) {
            i++;
        }
        count += i == nn;
        line = nl ? nl + 1 : line + strlen(line);
    }
    free(text);
    return count;
}

/* Waits up to timeout_s for an access event of subject cg, action, resource. */
static bool wait_access(const char *out, const char *cg, const char *action, const char *res,
                        int timeout_s)
{
    char s[600], a[64], r[600];
    snprintf(s, sizeof s, "\"subject\":\"%s\"", cg);
    snprintf(a, sizeof a, "\"action\":\"%s\"", action);
    snprintf(r, sizeof r, "\"resource\":\"%s\"", res);
    double deadline = now_s() + timeout_s;
    do {
        if (count_all(out, "\"topic\":\"access\"", s, a, r, (char *)NULL) > 0) {
            return true;
        }
        sleep_ms(50);
    } while (now_s() < deadline);
    fprintf(stderr, "no access event %s %s %s in %s:\n", s, a, r, out);
    char *text = slurp(out);
    fprintf(stderr, "%s\n", text ? text : "(no file)");
    free(text);
    return false;
}

/* ---- fixtures -------------------------------------------------------------- */

static int audit_request(int type, const void *data, size_t len, void *reply, size_t reply_len);
static void audit_rule(int type);

static int teardown(void **state)
{
    stop_kid();
    if (F.audit_rule) {
        audit_rule(AUDIT_DEL_RULE);
        F.audit_rule = false;
    }
    if (F.audit_enabled >= 0) {
        struct audit_status st = {.mask = AUDIT_STATUS_ENABLED,
                                  .enabled = (uint32_t)F.audit_enabled};
        audit_request(AUDIT_SET, &st, sizeof st, NULL, 0);
        F.audit_enabled = -1;
    }
    if (F.cgroup[0]) {
        if (rmdir(F.cgroup) != 0 && errno != ENOENT) {
            fprintf(stderr, "cannot remove %s: %s\n", F.cgroup, strerror(errno));
        }
        F.cgroup[0] = '\0';
    }
    return vd_fixture_teardown(state);
}

/* A copy of `from` at `to`, executable. */
static void copy_exe(const char *from, const char *to)
{
    char *argv[] = {"/bin/cp", (char *)from, (char *)to, NULL};
    assert_int_equal(run(argv, NULL, 0, NULL, NULL, 10), 0);
    assert_int_equal(chmod(to, 0755), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* ---- files ----------------------------------------------------------------- */

struct files_kid {
    const char *file, *exe, *sub;
};

/* Reads the file, writes it, makes and removes a folder (a create and a
 * delete that are not writes), then becomes `exe 5` (sleep): alive while
 * the source looks it up. */
static void files_kid_main(void *arg)
{
    struct files_kid *k = arg;
    char buf[16];
    int fd = open(k->file, O_RDONLY);
    if (fd < 0 || read(fd, buf, sizeof buf) < 0) {
        _exit(5);
    }
    close(fd);
    fd = open(k->file, O_WRONLY | O_APPEND);
    if (fd < 0 || write(fd, "more\n", 5) != 5) {
        _exit(6);
    }
    close(fd);
    if (mkdir(k->sub, 0755) != 0 || rmdir(k->sub) != 0) {
        _exit(8);
    }
    execl(k->exe, "sleeper", "5", (char *)NULL);
    _exit(7);
}

static void test_files_and_policy(void **state)
{
    struct vd *v = *state;
    if (!need_root_cgroup()) {
        skip();
    }
    char body[2048];
    snprintf(body, sizeof body,
             "sources:\n"
             "  - plugin: access\n"
             "    name: acc\n"
             "    paths: ['@DIR@/w']\n"
             "    audit: off\n"
             "rules:\n"
             "  - name: files\n"
             "    kind: policy\n"
             "    match: access\n"
             "    default: allow\n"
             "    rules:\n"
             "      - deny: { action: write, resource: '@DIR@/w/**' }\n"
             "        id: no-writes\n"
             "      - deny: { action: exec, resource: '@DIR@/w/*' }\n"
             "        id: no-exec\n"
             "sinks:\n"
             "  - plugin: test_capture\n"
             "    match: [access, alert.]\n"
             "    path: @DIR@/w/out.jsonl\n");
    assert_int_equal(vd_setup(v, NULL, body), 0);
    char dir[600], file[700], exe[700], sub[700];
    snprintf(dir, sizeof dir, "%s/w", v->dir);
    snprintf(file, sizeof file, "%s/f", dir);
    snprintf(exe, sizeof exe, "%s/sleeper", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    write_file(file, "hello\n");
    copy_exe("/bin/sleep", exe);
    assert_true(vd_started(v));

    char cg[512];
    struct files_kid k = {file, exe, sub};
    start_kid(files_kid_main, &k, cg, sizeof cg);
    /* In the watched folder: vigild's sink writes there all along, and
     * reporting that would be an endless loop of its own writes (denied
     * ones, too). */
    const char *out = vd_path(v, "w/out.jsonl");
    assert_true(wait_access(out, cg, "read", file, 10));
    assert_true(wait_access(out, cg, "write", file, 10));
    assert_true(wait_access(out, cg, "exec", exe, 10));
    assert_true(wait_access(out, cg, "create", sub, 10));
    assert_true(wait_access(out, cg, "delete", sub, 10));

    /* The policy flags the write and the exec, not the read. */
    char s[600];
    snprintf(s, sizeof s, "\"subject\":\"%s\"", cg);
    double deadline = now_s() + 10;
    while (count_all(out, "\"topic\":\"alert.violation\"", (char *)NULL) < 2 &&
           now_s() < deadline) {
        sleep_ms(50);
    }
    sleep_ms(500); /* anything more would have come by now */
    assert_int_equal(count_all(out, "\"topic\":\"alert.violation\"", s, "\"action\":\"write\"",
                               "\"entry_id\":\"no-writes\"", (char *)NULL),
                     1);
    assert_int_equal(count_all(out, "\"topic\":\"alert.violation\"", s, "\"action\":\"exec\"",
                               "\"entry_id\":\"no-exec\"", (char *)NULL),
                     1);
    assert_int_equal(count_all(out, "\"topic\":\"alert.violation\"", (char *)NULL), 2);
    /* The exec'd process is the binary; its pid is the child's. */
    char pid[32];
    snprintf(pid, sizeof pid, "\"pid\":%d", (int)F.kid);
    assert_true(count_all(out, "\"action\":\"exec\"", pid, (char *)NULL) >= 1);
    /* vigild's own accesses are never reported: its pid appears nowhere. */
    snprintf(pid, sizeof pid, "\"pid\":%d}", (int)v->pid);
    assert_int_equal(count_all(out, "\"topic\":\"access\"", pid, (char *)NULL), 0);
    stop_kid();
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* ---- audit ----------------------------------------------------------------- */

/* One request on a fresh NETLINK_AUDIT socket; the reply's payload (a
 * struct for AUDIT_GET) into reply. 0, or a negative errno (the kernel's
 * NLMSG_ERROR answer included). */
static int audit_request(int type, const void *data, size_t len, void *reply, size_t reply_len)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT);
    if (fd < 0) {
        return -errno;
    }
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[NLMSG_SPACE(sizeof(struct audit_rule_data) + 1024)];
    memset(buf, 0, sizeof buf);
    struct nlmsghdr *nh = (struct nlmsghdr *)buf;
    nh->nlmsg_len = (uint32_t)NLMSG_LENGTH(len);
    nh->nlmsg_type = (uint16_t)type;
    nh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nh->nlmsg_seq = 1;
    if (len > 0) {
        memcpy(NLMSG_DATA(nh), data, len);
    }
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    int rc = 0;
    if (sendto(fd, buf, nh->nlmsg_len, 0, (struct sockaddr *)&sa, sizeof sa) < 0) {
        rc = -errno;
    }
    /* An AUDIT_GET answers its status, then the ack; the others the ack. */
    for (int i = 0; rc == 0 && i < 2; i++) {
        char in[8192];
        ssize_t n = recv(fd, in, sizeof in, 0);
        if (n < 0) {
            rc = -errno;
            break;
        }
        struct nlmsghdr *r = (struct nlmsghdr *)in;
        if (r->nlmsg_type == NLMSG_ERROR) {
            rc = ((struct nlmsgerr *)NLMSG_DATA(r))->error;
            break;
        }
        if (r->nlmsg_type == type && reply) {
            memcpy(reply, NLMSG_DATA(r), reply_len);
            if (!(nh->nlmsg_flags & NLM_F_ACK)) {
                break;
            }
        }
    }
    close(fd);
    return rc;
}

/* auditctl -w F.watch -p wa -k AUDIT_KEY, added or removed. */
static void audit_rule(int type)
{
    size_t plen = strlen(F.watch), klen = strlen(AUDIT_KEY);
    size_t size = sizeof(struct audit_rule_data) + plen + klen;
    struct audit_rule_data *r = calloc(1, size);
    assert_non_null(r);
    r->flags = AUDIT_FILTER_EXIT;
    r->action = AUDIT_ALWAYS;
    for (int i = 0; i < AUDIT_BITMASK_SIZE; i++) {
        r->mask[i] = ~0u;
    }
    r->field_count = 3;
    r->fields[0] = AUDIT_WATCH;
    r->fieldflags[0] = AUDIT_EQUAL;
    r->values[0] = (uint32_t)plen;
    r->fields[1] = AUDIT_PERM;
    r->fieldflags[1] = AUDIT_EQUAL;
    r->values[1] = AUDIT_PERM_WRITE | AUDIT_PERM_ATTR;
    r->fields[2] = AUDIT_FILTERKEY;
    r->fieldflags[2] = AUDIT_EQUAL;
    r->values[2] = (uint32_t)klen;
    memcpy(r->buf, F.watch, plen);
    memcpy(r->buf + plen, AUDIT_KEY, klen);
    r->buflen = (uint32_t)(plen + klen);
    int rc = audit_request(type, r, size, NULL, 0);
    free(r);
    if (type == AUDIT_ADD_RULE) {
        if (rc != 0) {
            fail_msg("cannot add the audit watch on %s: %s", F.watch, strerror(-rc));
        }
        F.audit_rule = true;
    } else if (rc != 0) {
        fprintf(stderr, "cannot remove the audit watch on %s: %s\n", F.watch, strerror(-rc));
    }
}

/* True when the kernel has audit and we may set rules; enables auditing
 * (restored in teardown) when it is off. Prints why not. */
static bool need_audit(void)
{
    struct audit_status st = {0};
    int rc = audit_request(AUDIT_GET, NULL, 0, &st, sizeof st);
    if (rc != 0) {
        fprintf(stderr, "skipped: the kernel's audit cannot be asked (%s)\n", strerror(-rc));
        return false;
    }
    if (st.enabled == 2) {
        fprintf(stderr, "skipped: audit rules are locked (enabled=2)\n");
        return false;
    }
    if (st.enabled == 0) {
        struct audit_status on = {.mask = AUDIT_STATUS_ENABLED, .enabled = 1};
        rc = audit_request(AUDIT_SET, &on, sizeof on, NULL, 0);
        if (rc != 0) {
            fprintf(stderr, "skipped: cannot enable audit: %s\n", strerror(-rc));
            return false;
        }
        F.audit_enabled = 0;
    }
    return true;
}

static void audit_kid_main(void *arg)
{
    const char *file = arg;
    int fd = open(file, O_WRONLY | O_APPEND);
    if (fd < 0 || write(fd, "audit\n", 6) != 6) {
        _exit(5);
    }
    close(fd);
    pause(); /* alive while the source looks it up; killed by the test */
    _exit(0);
}

static void test_audit(void **state)
{
    struct vd *v = *state;
    if (!need_root_cgroup() || !need_audit()) {
        skip();
    }
    assert_int_equal(vd_setup(v, NULL,
                              "sources:\n"
                              "  - plugin: access\n"
                              "    name: aud\n"
                              "    audit: on\n"
                              "rules:\n"
                              "  - name: audited\n"
                              "    kind: policy\n"
                              "    match: access\n"
                              "    default: allow\n"
                              "    rules:\n"
                              "      - deny: { action: [open, openat, openat2], resource: "
                              "'@DIR@/audited' }\n"
                              "        id: no-open\n"
                              "sinks:\n"
                              "  - plugin: test_capture\n"
                              "    match: [access, alert.]\n"
                              "    path: @DIR@/out.jsonl\n"),
                     0);
    snprintf(F.watch, sizeof F.watch, "%s/audited", v->dir);
    write_file(F.watch, "x\n");
    assert_true(vd_started(v));
    audit_rule(AUDIT_ADD_RULE);
    char cg[512];
    start_kid(audit_kid_main, F.watch, cg, sizeof cg);
    const char *out = vd_path(v, "out.jsonl");
    char s[600], r[600];
    snprintf(s, sizeof s, "\"subject\":\"%s\"", cg);
    snprintf(r, sizeof r, "\"resource\":\"%s\"", F.watch);
    double deadline = now_s() + 10;
    while (count_all(out, "\"topic\":\"access\"", s, r, "\"key\":\"" AUDIT_KEY "\"",
                     (char *)NULL) == 0 &&
           now_s() < deadline) {
        sleep_ms(50);
    }
    char *text = slurp(out);
    if (count_all(out, "\"topic\":\"access\"", s, r, (char *)NULL) == 0) {
        vd_dump_log(v);
        fail_msg("no audit access event of %s on %s:\n%s", cg, F.watch, text ? text : "");
    }
    free(text);
    /* The open is the syscall (open, openat or openat2 by libc). */
    assert_true(count_all(out, "\"topic\":\"access\"", s, r, "\"action\":\"open", (char *)NULL) >=
                1);
    deadline = now_s() + 5;
    while (count_all(out, "\"topic\":\"alert.violation\"", s, "\"entry_id\":\"no-open\"",
                     (char *)NULL) == 0 &&
           now_s() < deadline) {
        sleep_ms(50);
    }
    assert_true(count_all(out, "\"topic\":\"alert.violation\"", s, "\"entry_id\":\"no-open\"",
                          (char *)NULL) >= 1);
    stop_kid();
    audit_rule(AUDIT_DEL_RULE);
    F.audit_rule = false;

    /* A failed login, as PAM reports it (a userspace message the kernel
     * passes on with the sender's pid): its own action, the account as the
     * resource. */
    static const char login[] = "op=login acct=\"vigil-test-user\" exe=\"/usr/sbin/sshd\" "
                                "hostname=? addr=192.0.2.7 terminal=ssh res=failed";
    int rc = audit_request(1112 /* AUDIT_USER_LOGIN */, login, sizeof login, NULL, 0);
    if (rc != 0) {
        fprintf(stderr, "note: cannot send a USER_LOGIN message (%s); logins not checked\n",
                strerror(-rc));
    } else {
        deadline = now_s() + 10;
        while (count_all(out, "\"action\":\"login_failed\"", "\"resource\":\"vigil-test-user\"",
                         "\"addr\":\"192.0.2.7\"", (char *)NULL) == 0 &&
               now_s() < deadline) {
            sleep_ms(50);
        }
        if (count_all(out, "\"action\":\"login_failed\"", "\"resource\":\"vigil-test-user\"",
                      "\"addr\":\"192.0.2.7\"", (char *)NULL) == 0) {
            text = slurp(out);
            fail_msg("no login_failed access event:\n%s", text ? text : "");
        }
    }
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* ---- without the capability ------------------------------------------------ */

static void test_no_cap_says_why(void **state)
{
    struct vd *v = *state;
    assert_int_equal(vd_setup(v, NULL,
                              "sources:\n"
                              "  - plugin: access\n"
                              "    paths: ['@DIR@']\n"
                              "    audit: off\n"),
                     0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(v->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        /* Out of the bounding set, root's exec gets no CAP_SYS_ADMIN. */
        if (prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0 && geteuid() == 0) {
            _exit(126);
        }
        execl(VIGIL_BUILD_DIR "/vigild", "vigild", "-c", v->cfg, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    double deadline = now_s() + 10;
    pid_t done = 0;
    while ((done = waitpid(pid, &st, WNOHANG)) == 0 && now_s() < deadline) {
        sleep_ms(20);
    }
    if (done != pid) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        vd_dump_log(v);
        fail_msg("vigild without CAP_SYS_ADMIN kept running");
    }
    assert_true(WIFEXITED(st));
    assert_int_not_equal(WEXITSTATUS(st), 0);
    assert_int_not_equal(WEXITSTATUS(st), 126);
    char *log = slurp(v->log);
    if (!log || !strstr(log, "CAP_SYS_ADMIN")) {
        vd_dump_log(v);
        free(log);
        fail_msg("vigild did not say it needs CAP_SYS_ADMIN");
    }
    free(log);
}

/* ---- bounds ------------------------------------------------------------------ */

/* Over `rate`, accesses are counted in vigil.self, not published. */
static void test_rate_limit_counted(void **state)
{
    struct vd *v = *state;
    if (geteuid() != 0) {
        fprintf(stderr, "skipped: fanotify needs root\n");
        skip();
    }
    assert_int_equal(vd_setup(v, "200ms",
                              "sources:\n"
                              "  - plugin: access\n"
                              "    name: acc\n"
                              "    paths: ['@DIR@/w']\n"
                              "    audit: off\n"
                              "    rate: 5\n"
                              "    burst: 10\n"
                              "sinks:\n"
                              "  - plugin: test_capture\n"
                              "    match: [access, vigil.self]\n"
                              "    path: @DIR@/out.jsonl\n"),
                     0);
    char dir[600], file[700];
    snprintf(dir, sizeof dir, "%s/w", v->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_true(vd_started(v));
    /* 200 files written once each: the kernel merges nothing. */
    double t0 = now_s();
    for (int i = 0; i < 200; i++) {
        snprintf(file, sizeof file, "%s/f%d", dir, i);
        write_file(file, "x");
    }
    const char *out = vd_path(v, "out.jsonl");
    if (!wait_self_value(out, "acc", "rate_dropped_total", 150, 10)) {
        vd_dump_log(v);
        fail_msg("%zu access events, fewer than 150 dropped",
                 count_all(out, "\"topic\":\"access\"", (char *)NULL));
    }
    double dropped = 0;
    assert_true(self_value(out, "acc", "rate_dropped_total", &dropped));
    size_t published = count_all(out, "\"topic\":\"access\"", (char *)NULL);
    /* The burst and what the rate refilled while the loop ran and the
     * events were read. */
    double allowed = 10 + 5 * (now_s() - t0) + 1;
    if (published > allowed || published + (size_t)dropped < 200 * 2) {
        fail_msg("%zu published, %.0f dropped of 400 (create and write of 200 files), at most %.0f "
                 "allowed",
                 published, dropped, allowed);
    }
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* ---- config ------------------------------------------------------------------ */

static void test_config_refused(void **state)
{
    struct vd *v = *state;
    static const struct bad_conf cases[] = {
        {"sources:\n  - plugin: access\n    paths: [/tmp]\n    events: [read, peek]\n",
         ":10:20: ", "'peek' is not read, write"},
        {"sources:\n  - plugin: access\n    paths: [tmp]\n", ":9:13: ", "must be an absolute path"},
        {"sources:\n  - plugin: access\n    audit: off\n", ":", "nothing to watch"},
        {"sources:\n  - plugin: access\n    audit: maybe\n",
         ":9:12: ", "audit must be auto, on or off"},
        {"sources:\n  - plugin: access\n    rate: -1\n", ":9:11: ", "rate must be 0"},
    };
    assert_true(vd_check_refuses_all(v, cases, sizeof cases / sizeof cases[0]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_files_and_policy, vd_fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit, vd_fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_cap_says_why, vd_fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_counted, vd_fixture_setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_refused, vd_fixture_setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The access source's audit records → access events, without the kernel:
 * the plugin's own files against a fake host table, fed the records that a
 * host with SELinux, AppArmor, PAM and audit rules would send (which this
 * test host cannot produce: AVC records only come from a kernel with a MAC
 * policy).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "access.h"

/* The fake builder: every field as "key=value;" in one string. */
struct vigil_event_builder {
    char text[8192];
    size_t len;
    int list_depth;
};

static struct vigil_event_builder B;
static char last[8192]; /* the last event published */
static int published;

static void put(const char *prefix, const char *key, const char *value)
{
    B.len += (size_t)snprintf(B.text + B.len, sizeof B.text - B.len, "%s%s=%s;", prefix,
                              key ? key : "", value);
}

static struct vigil_event_builder *f_begin(struct vigil_instance *h, const char *topic)
{
    (void)h;
    memset(&B, 0, sizeof B);
    put("", "topic", topic);
    return &B;
}
static void f_ts(struct vigil_event_builder *ev, uint64_t ts)
{
    char v[32];
    snprintf(v, sizeof v, "%llu", (unsigned long long)ts);
    (void)ev;
    put("", "ts", v);
}
static void f_label(struct vigil_event_builder *ev, const char *k, const char *v)
{
    (void)ev;
    put("labels.", k, v);
}
static void f_u64(struct vigil_event_builder *ev, const char *k, uint64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)v);
    (void)ev;
    put("values.", k, s);
}
static void f_attr_str(struct vigil_event_builder *ev, const char *k, const char *v)
{
    (void)ev;
    put("attrs.", k, v);
}
static void f_attr_i64(struct vigil_event_builder *ev, const char *k, int64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%lld", (long long)v);
    (void)ev;
    put("attrs.", k, s);
}
static void f_list_begin(struct vigil_event_builder *ev, const char *k)
{
    (void)ev;
    put("attrs.", k, "[");
}
static void f_end(struct vigil_event_builder *ev)
{
    (void)ev;
    put("", NULL, "]");
}
static int f_publish(struct vigil_instance *h, struct vigil_event_builder *ev)
{
    (void)h;
    snprintf(last, sizeof last, "%s", ev->text);
    published++;
    return 0;
}
static uint64_t f_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
static void f_counter_set(struct vigil_instance *h, int id, uint64_t v)
{
    (void)h, (void)id, (void)v;
}
static void f_log(struct vigil_instance *h, enum vigil_log_level l, const char *fmt, ...)
{
    (void)h, (void)l, (void)fmt;
}
static bool f_glob(const char *pattern, const char *s, size_t len)
{
    return strlen(pattern) == len && memcmp(pattern, s, len) == 0;
}

static const struct vigil_api api = {
    .size = sizeof(struct vigil_api),
    .event_begin = f_begin,
    .event_ts = f_ts,
    .event_label = f_label,
    .event_value_u64 = f_u64,
    .event_attr_str = f_attr_str,
    .event_attr_i64 = f_attr_i64,
    .event_attr_list_begin = f_list_begin,
    .event_attr_end = f_end,
    .publish = f_publish,
    .mono_ns = f_mono,
    .counter_set = f_counter_set,
    .log_limited = f_log,
    .glob_match = f_glob,
};

static struct ac *new_ac(void)
{
    struct ac *a = calloc(1, sizeof *a);
    assert_non_null(a);
    a->api = &api;
    a->cache = calloc(AC_CACHE_SLOTS, sizeof *a->cache);
    assert_non_null(a->cache);
    a->self_pid = a->vigild_pid = -1;
    a->fan_fd = a->fid_fd = a->audit_fd = -1;
    return a;
}

static void free_ac(struct ac *a)
{
    free(a->cache);
    free(a);
}

/* Publishes one event from the records and checks that `last` has each
 * "key=value;" of the NULL-terminated list. */
static void check(const char *records, ...)
{
    struct ac *a = new_ac();
    int before = published;
    assert_int_equal(ac_audit_publish(a, records, strlen(records), 1, 42), 0);
    free_ac(a);
    if (published != before + 1) {
        fail_msg("no event from:\n%s", records);
    }
    va_list ap;
    va_start(ap, records);
    for (const char *want; (want = va_arg(ap, const char *));) {
        if (!strstr(last, want)) {
            fail_msg("no '%s' in %s", want, last);
        }
    }
    va_end(ap);
}

static void test_syscall_paths(void **state)
{
    (void)state;
    /* A relative openat under the CWD; the parent folder's PATH is not the
     * resource. */
    check("1300 arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c items=2 ppid=1 pid=1 "
          "auid=1000 uid=0 gid=0 euid=0 ses=3 comm=\"cat\" exe=\"/usr/bin/cat\" key=\"etc\"\n"
          "1307 cwd=\"/etc\"\n"
          "1302 item=0 name=\"/etc\" inode=2 nametype=PARENT\n"
          "1302 item=1 name=\"shadow\" inode=3 nametype=NORMAL\n",
          "labels.action=openat;", "labels.resource=/etc/shadow;", "labels.uid=0;",
          "labels.exe=/usr/bin/cat;", "values.pid=1;", "attrs.key=etc;", "attrs.auid=1000;",
          "attrs.audit_serial=42;", "attrs.paths=[;attrs.=/etc;attrs.=/etc/shadow;=];", NULL);
}

static void test_hex_and_execve(void **state)
{
    (void)state;
    /* audit hex-encodes a string with a space or a quote; EXECVE's args. */
    check("1300 arch=c000003e syscall=59 success=yes exit=0 pid=1 uid=0 comm=\"sh\" "
          "exe=2F746D702F6120622F7368 key=(null)\n"
          "1309 argc=2 a0=\"sh\" a1=2D632065\n"
          "1302 item=0 name=2F746D702F6120622F7368 nametype=NORMAL\n",
          "labels.action=execve;", "labels.resource=/tmp/a b/sh;", "labels.exe=/tmp/a b/sh;",
          "attrs.argv=[;attrs.=sh;attrs.=-c e;=];", NULL);
    assert_null(strstr(last, "attrs.key="));
}

static void test_unknown_syscall(void **state)
{
    (void)state;
    check("1300 arch=c00000b7 syscall=56 success=no exit=-13 pid=1 uid=0\n",
          "labels.action=syscall_56;", "attrs.success=no;", NULL);
}

static void test_selinux_avc(void **state)
{
    (void)state;
    check("1400 avc:  denied  { read } for  pid=1 comm=\"cat\" name=\"shadow\" dev=\"vda\" "
          "ino=3 scontext=system_u:system_r:container_t:s0 "
          "tcontext=system_u:object_r:shadow_t:s0 tclass=file permissive=0\n"
          "1300 arch=c000003e syscall=257 success=no exit=-13 pid=1 uid=0 exe=\"/usr/bin/cat\"\n",
          "labels.action=selinux_denied;", "labels.resource=shadow;",
          "attrs.tcontext=system_u:object_r:shadow_t:s0;", NULL);
}

static void test_apparmor(void **state)
{
    (void)state;
    check("1400 apparmor=\"DENIED\" operation=\"open\" profile=\"docker-default\" "
          "name=\"/etc/shadow\" pid=1 comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\"\n",
          "labels.action=apparmor_denied;", "labels.resource=/etc/shadow;", "values.pid=1;", NULL);
}

static void test_user_auth(void **state)
{
    (void)state;
    check("1100 pid=1 uid=0 auid=4294967295 ses=4294967295 msg='op=PAM:authentication "
          "grantors=pam_unix acct=\"alice\" exe=\"/usr/sbin/sshd\" hostname=10.0.0.2 "
          "addr=10.0.0.2 terminal=ssh res=success'\n",
          "labels.action=auth;", "labels.resource=alice;", "labels.exe=/usr/sbin/sshd;",
          "attrs.res=success;", "attrs.terminal=ssh;", NULL);
}

static void test_not_accesses(void **state)
{
    (void)state;
    struct ac *a = new_ac();
    int before = published;
    static const char netfilter[] = "1325 table=filter family=2 entries=4 op=xt_replace\n";
    assert_int_equal(ac_audit_publish(a, netfilter, strlen(netfilter), 1, 1), 0);
    assert_int_equal(ac_audit_publish(a, "", 0, 1, 1), 0);
    assert_int_equal(published, before);
    free_ac(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syscall_paths),   cmocka_unit_test(test_hex_and_execve),
        cmocka_unit_test(test_unknown_syscall), cmocka_unit_test(test_selinux_avc),
        cmocka_unit_test(test_apparmor),        cmocka_unit_test(test_user_auth),
        cmocka_unit_test(test_not_accesses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

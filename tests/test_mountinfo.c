/* Unit tests for plugins/common/mountinfo.c, the mountinfo parser the system
 * and cgroups plugins share: the fields of a line, optional fields, escapes,
 * malformed lines skipped, a last line without a newline, and option lists.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mountinfo.h"

/* One line each, read whole: the mount it holds and nothing after it. */
static void test_lines(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t id, parent_id;
        uint32_t major, minor;
        const char *root, *point, *opts, *fstype, *source, *super_opts;
    } cases[] = {
        /* optional fields between the options and the "-" */
        {"36 35 98:1 /root /mnt/point rw,noatime master:1 shared:7 - ext4 /dev/sda1 "
         "rw,errors=remount-ro\n",
         36, 35, 98, 1, "/root", "/mnt/point", "rw,noatime", "ext4", "/dev/sda1",
         "rw,errors=remount-ro"},
        /* none, and no newline after the last line */
        {"25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate", 25, 1, 0, 22, "/",
         "/sys/fs/cgroup", "rw,nosuid", "cgroup2", "cgroup2", "rw,nsdelegate"},
        /* octal escapes in the root, the mount point and the source */
        {"40 36 0:50 /a\\134b /mnt/my\\040disk\\011x rw - fuse.x my\\040src rw\n", 40, 36, 0, 50,
         "/a\\b", "/mnt/my disk\tx", "rw", "fuse.x", "my src", "rw"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "%s", cases[i].text);
        char *cursor = text;
        struct vigil_mountinfo m;
        assert_true(vigil_mountinfo_next(&cursor, &m));
        assert_int_equal(m.id, cases[i].id);
        assert_int_equal(m.parent_id, cases[i].parent_id);
        assert_int_equal(m.major, cases[i].major);
        assert_int_equal(m.minor, cases[i].minor);
        assert_string_equal(m.root, cases[i].root);
        assert_string_equal(m.point, cases[i].point);
        assert_int_equal(m.point_len, strlen(cases[i].point));
        assert_string_equal(m.opts, cases[i].opts);
        assert_string_equal(m.fstype, cases[i].fstype);
        assert_string_equal(m.source, cases[i].source);
        assert_string_equal(m.super_opts, cases[i].super_opts);
        assert_false(vigil_mountinfo_next(&cursor, &m));
    }
}

/* Lines without the "-", a device number, a source or a numeric id are
 * skipped; the good lines around them are read. A line without super
 * options is read with "" for them. */
static void test_malformed_skipped(void **state)
{
    (void)state;
    char text[] = "garbage\n"
                  "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
                  "2 1 8:2 / /no-dash rw ext4 /dev/sda2 rw\n"
                  "3 1 8x3 / /bad-dev rw - ext4 /dev/sda3 rw\n"
                  "x 1 8:4 / /bad-id rw - ext4 /dev/sda4 rw\n"
                  "5 1 8:5 / /no-source rw - ext4\n"
                  "\n"
                  "6 1 8:6 / /no-super rw - ext4 /dev/sda6\n";
    char *cursor = text;
    struct vigil_mountinfo m;
    assert_true(vigil_mountinfo_next(&cursor, &m));
    assert_string_equal(m.point, "/");
    assert_true(vigil_mountinfo_next(&cursor, &m));
    assert_string_equal(m.point, "/no-super");
    assert_string_equal(m.super_opts, "");
    assert_false(vigil_mountinfo_next(&cursor, &m));
    char empty[] = "";
    cursor = empty;
    assert_false(vigil_mountinfo_next(&cursor, &m));
}

static void test_has_option(void **state)
{
    (void)state;
    assert_true(vigil_mountinfo_has_option("ro,noatime", "ro"));
    assert_true(vigil_mountinfo_has_option("rw,cpu,cpuacct", "cpuacct"));
    assert_true(vigil_mountinfo_has_option("rw,cpu,cpuacct", "cpu"));
    assert_false(vigil_mountinfo_has_option("rw,cpuacct", "cpu"));
    assert_false(vigil_mountinfo_has_option("rootcontext=x", "ro"));
    assert_false(vigil_mountinfo_has_option("", "ro"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_malformed_skipped),
        cmocka_unit_test(test_has_option),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Plugin trust: vigild refuses a plugin file, or a folder on its real path,
 * that others can write or that someone else owns, and says at the config's
 * FILE:LINE:COL what, why and what to run; plugin_trust: off loads it and
 * warns. Real files and folders, the real vigild and its --check.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"
#include "plugin_host.h"

#define NOBODY 65534

/* The config line of `plugin: gen`, at the value: vd_setup writes 7 lines
 * of its own before the body. */
#define GEN_AT ":8:13: "
static const char gen_body[] = "sources:\n  - plugin: gen\n";

/* Copies the built gen.so to `to` with `mode`. */
static void copy_gen(const char *to, mode_t mode)
{
    int in = open(VIGIL_PLUGIN_DIR "/gen.so", O_RDONLY | O_CLOEXEC);
    assert_true(in >= 0);
    unlink(to);
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        assert_int_equal(write(out, buf, (size_t)n), n);
    }
    assert_int_equal(n, 0);
    close(in);
    close(out);
    assert_int_equal(chmod(to, mode), 0); /* whatever the umask */
}

/* A fresh harness folder whose plugins/gen.so is a real copy (the harness
 * links to the build's, and a link's target is what is checked). */
static void setup_copy(struct vd *v, const char *body)
{
    vd_cleanup(v);
    assert_int_equal(vd_setup(v, NULL, body), 0);
    char so[PATH_MAX + 16];
    snprintf(so, sizeof so, "%s/gen.so", v->plugins);
    copy_gen(so, 0644);
}

/* vigild --check -c cfg: exit status, stderr in *err (caller frees). */
static int check(struct vd *v, char **err)
{
    char *const argv[] = {VIGIL_BUILD_DIR "/vigild", "--check", "-c", v->cfg, NULL};
    return run(argv, NULL, 0, NULL, err, 30);
}

/* --check refuses at the plugin key, with every piece of `want`; and the
 * daemon itself does not start. */
static void expect_refused(struct vd *v, const char *const want[])
{
    char *err = NULL;
    int rc = check(v, &err);
    char at[PATH_MAX + 32];
    snprintf(at, sizeof at, "%s" GEN_AT, v->cfg);
    bool ok = rc == 1 && err && strstr(err, at);
    for (size_t i = 0; ok && want[i]; i++) {
        ok = strstr(err, want[i]) != NULL;
    }
    if (!ok) {
        fail_msg("vigild --check exited %d; wanted '%s' and each of the expected parts in: %s", rc,
                 at, err ? err : "");
    }
    free(err);
    char *const argv[] = {VIGIL_BUILD_DIR "/vigild", "-c", v->cfg, NULL};
    assert_int_equal(run(argv, NULL, 0, NULL, &err, 30), 1);
    assert_non_null(strstr(err, "refusing to load"));
    assert_null(strstr(err, "started on host"));
    free(err);
}

static void test_plugin_folder_writable_by_group(void **state)
{
    struct vd *v = *state;
    setup_copy(v, gen_body);
    assert_int_equal(chmod(v->plugins, 0775), 0);
    char what[PATH_MAX * 2], fix[PATH_MAX * 2];
    snprintf(what, sizeof what, "the folder %s is writable by group (mode 0775, owner ",
             v->plugins);
    snprintf(fix, sizeof fix, "run 'chmod go-w %s'", v->plugins);
    expect_refused(v, (const char *const[]){"refusing to load", what, fix, NULL});
}

static void test_plugin_file_writable_by_others(void **state)
{
    struct vd *v = *state;
    setup_copy(v, gen_body);
    char so[PATH_MAX + 16], what[PATH_MAX * 2], fix[PATH_MAX * 2];
    snprintf(so, sizeof so, "%s/gen.so", v->plugins);
    assert_int_equal(chmod(so, 0646), 0);
    snprintf(what, sizeof what, "the file %s is writable by others (mode 0646, owner ", so);
    snprintf(fix, sizeof fix, "run 'chmod go-w %s'", so);
    expect_refused(v, (const char *const[]){what, fix, NULL});
}

/* A folder above the plugin folder counts as much as the plugin folder. */
static void test_parent_folder_writable_by_others(void **state)
{
    struct vd *v = *state;
    setup_copy(v, gen_body);
    assert_int_equal(chmod(v->dir, 0757), 0);
    char what[PATH_MAX * 2], fix[PATH_MAX * 2];
    snprintf(what, sizeof what, "the folder %s is writable by others (mode 0757", v->dir);
    snprintf(fix, sizeof fix, "run 'chmod go-w %s'", v->dir);
    expect_refused(v, (const char *const[]){what, fix, NULL});
}

static void test_plugin_owned_by_another_user(void **state)
{
    struct vd *v = *state;
    if (geteuid() != 0) {
        printf("skipped: chown to uid %d needs root\n", NOBODY);
        return;
    }
    setup_copy(v, gen_body);
    char so[PATH_MAX + 16], what[PATH_MAX * 2], fix[PATH_MAX * 2];
    snprintf(so, sizeof so, "%s/gen.so", v->plugins);
    assert_int_equal(chown(so, NOBODY, NOBODY), 0);
    snprintf(what, sizeof what, "the file %s is owned by ", so);
    snprintf(fix, sizeof fix, "run 'chown root %s'", so);
    expect_refused(
        v, (const char *const[]){what, "(uid 65534), not by root", "(mode 0644)", fix, NULL});
}

/* A link's target is what counts: the harness's links to the build's own
 * plugins load; a link into a folder anyone can write is refused, by both
 * names. */
static void test_symlinks(void **state)
{
    struct vd *v = *state;
    vd_cleanup(v);
    assert_int_equal(vd_setup(v, NULL, gen_body), 0);
    char *err = NULL;
    if (check(v, &err) != 0) {
        fail_msg("a link to the build's gen.so was refused: %s", err);
    }
    free(err);

    char shared[PATH_MAX], target[PATH_MAX + 16], so[PATH_MAX + 16];
    snprintf(shared, sizeof shared, "%s/shared", v->dir);
    assert_int_equal(mkdir(shared, 0700), 0);
    assert_int_equal(chmod(shared, 0777), 0);
    snprintf(target, sizeof target, "%s/gen.so", shared);
    copy_gen(target, 0644);
    snprintf(so, sizeof so, "%s/gen.so", v->plugins);
    assert_int_equal(unlink(so), 0);
    assert_int_equal(symlink(target, so), 0);
    char names[3 * PATH_MAX], what[PATH_MAX * 2];
    snprintf(names, sizeof names, "refusing to load %s (%s)", so, target);
    snprintf(what, sizeof what, "the folder %s is writable by group and others (mode 0777", shared);
    expect_refused(v, (const char *const[]){names, what, NULL});
}

/* A sticky folder such as /tmp may be on the way (the harness's own folder
 * is in /tmp), but is no place for the plugins themselves; and chmod go-w
 * is not the fix there. */
static void test_sticky_plugin_folder(void **state)
{
    struct vd *v = *state;
    setup_copy(v, gen_body);
    assert_int_equal(chmod(v->plugins, 01777), 0);
    char what[PATH_MAX * 2];
    snprintf(what, sizeof what, "the folder %s is writable by group and others (mode 1777",
             v->plugins);
    expect_refused(v,
                   (const char *const[]){what, "move the plugins to a folder of their own", NULL});
}

/* plugin_trust: off loads what would be refused, and says so in --check
 * and at start. */
static void test_trust_off_loads_and_warns(void **state)
{
    struct vd *v = *state;
    setup_copy(v, "plugin_trust: off\nsources:\n  - plugin: gen\n    interval: 100ms\n");
    assert_int_equal(chmod(v->plugins, 0777), 0);
    char *err = NULL;
    assert_int_equal(check(v, &err), 0);
    char at[PATH_MAX + 64];
    snprintf(at, sizeof at, "%s:7:15: plugin_trust: off", v->cfg);
    if (!strstr(err, at) || !strstr(err, "for development trees only")) {
        fail_msg("no warning '%s' from --check: %s", at, err);
    }
    free(err);
    assert_true(vd_started(v));
    assert_true(count_lines(v->log, "plugin_trust: off") == 1);
    assert_int_equal(vd_stop(v, 10, NULL), 0);
}

/* The loader's own switch: trust false loads from a folder anyone can
 * write, true refuses it. */
static void test_loader_trust_switch(void **state)
{
    struct vd *v = *state;
    setup_copy(v, gen_body);
    assert_int_equal(chmod(v->plugins, 0777), 0);
    char err[8192] = "";
    const struct vigil_plugin *desc = NULL;
    assert_null(vigil_plugin_open(v->plugins, "gen", VIGIL_SOURCE, true, &desc, err, sizeof err));
    assert_non_null(strstr(err, "is writable by group and others (mode 0777"));
    void *dl = vigil_plugin_open(v->plugins, "gen", VIGIL_SOURCE, false, &desc, err, sizeof err);
    assert_non_null(dl);
    assert_string_equal(desc->name, "gen");
    vigil_plugin_close(dl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plugin_folder_writable_by_group, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_plugin_file_writable_by_others, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_parent_folder_writable_by_others, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_plugin_owned_by_another_user, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_symlinks, vd_fixture_setup, vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_sticky_plugin_folder, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_trust_off_loads_and_warns, vd_fixture_setup,
                                        vd_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_loader_trust_switch, vd_fixture_setup,
                                        vd_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Removing cgroups that a benchmark or a test made (vigil-bench collect,
 * test_cgroups): their processes are killed first, and a cgroup a killed
 * process is still leaving is tried again for up to two seconds.
 */
#ifndef VIGIL_CGROUP_RM_H
#define VIGIL_CGROUP_RM_H

/* rmdir(dir), killing what is left in it (never pid 1 or ourselves) and
 * retrying while it is busy; a cgroup already gone is fine. Complains on
 * stderr when it cannot. */
void vigil_cgroup_rmdir(const char *dir);

/* The same for dir and every cgroup below it, deepest first. */
void vigil_cgroup_remove_tree(const char *dir);

#endif

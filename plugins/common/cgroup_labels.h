/* Who a cgroup or a process is: the container / pod / vm / runtime labels of
 * a cgroup path (cgroups source: per cgroup; access source: per process) and
 * the cgroup path of a process. Part of the plugins' helper library
 * (plugins/common).
 */
#ifndef VIGIL_CGROUP_LABELS_H
#define VIGIL_CGROUP_LABELS_H

#include <stddef.h>
#include <sys/types.h>

#include "vigil/plugin.h"

struct vigil_cgroup_labels {
    const char *container, *pod, *vm, *runtime; /* NULL when not derived */
};

/* Derives the labels of cgroup `path` ("/docker/<id>", "/kubepods/..."):
 * the strings go into buf (cap bytes; 1 KiB is ample) and *out points into
 * it, except runtime, a static string. A label that does not fit is NULL. */
void vigil_cgroup_labels_derive(const char *path, struct vigil_cgroup_labels *out, char *buf,
                                size_t cap);

/* Adds labels.cgroup (the path; left out when NULL) and the derived labels
 * that are set to the event being built: the same names in every source. */
void vigil_cgroup_labels_add(const struct vigil_api *api, struct vigil_event_builder *ev,
                             const char *path, const struct vigil_cgroup_labels *l);

/* The cgroup of process `pid`, from /proc/<pid>/cgroup, into out (cap
 * bytes): the cgroup2 path ("0::/x") unless it is "/", else the v1 path that
 * the most hierarchies share (the first listed on a tie), else "/". Returns
 * 0, or a negative errno (-ESRCH: the process is gone; -ENAMETOOLONG). */
int vigil_proc_cgroup(pid_t pid, char *out, size_t cap);

#endif

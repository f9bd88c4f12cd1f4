#include "cgroup_rm.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void kill_procs_in(const char *dir)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/cgroup.procs", dir) >= (int)sizeof p) {
        return;
    }
    FILE *f = fopen(p, "r");
    if (!f) {
        return;
    }
    int pid;
    while (fscanf(f, "%d", &pid) == 1) {
        if (pid > 1 && pid != getpid()) {
            kill(pid, SIGKILL);
        }
    }
    fclose(f);
}

void vigil_cgroup_rmdir(const char *dir)
{
    for (int i = 0; i < 100; i++) {
        if (rmdir(dir) == 0 || errno == ENOENT) {
            return;
        }
        if (errno != EBUSY) {
            break;
        }
        kill_procs_in(dir);
        struct timespec ts = {0, 20000000}; /* a killed process leaves a moment later */
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "cannot remove cgroup %s: %s\n", dir, strerror(errno));
}

static void remove_tree(const char *dir, int depth)
{
    DIR *d = depth < 16 ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_type == DT_DIR && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            char sub[PATH_MAX];
            if (snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) >= (int)sizeof sub) {
                continue; /* not a path anyone made */
            }
            remove_tree(sub, depth + 1);
        }
    }
    if (d) {
        closedir(d);
    }
    vigil_cgroup_rmdir(dir);
}

void vigil_cgroup_remove_tree(const char *dir)
{
    remove_tree(dir, 0);
}

/* cgroups: which hierarchies to read, from /proc/self/mountinfo rather than a
 * fixed layout, so pure v1, pure v2 and hybrid hosts (and cgroups mounted
 * somewhere else than /sys/fs/cgroup) all work.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgroups.h"
#include "mountinfo.h"

static bool under_root(const char *mnt, const char *root, size_t root_len)
{
    if (root_len == 1 && root[0] == '/') {
        return true;
    }
    return strncmp(mnt, root, root_len) == 0 && (mnt[root_len] == '\0' || mnt[root_len] == '/');
}

static unsigned v1_controllers(const char *super_opts)
{
    static const struct {
        const char *name;
        unsigned bit;
    } known[] = {{"cpu", C_CPU},
                 {"cpuacct", C_CPUACCT},
                 {"memory", C_MEMORY},
                 {"pids", C_PIDS},
                 {"blkio", C_BLKIO}};
    unsigned ctrl = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (vigil_mountinfo_has_option(super_opts, known[i].name)) {
            ctrl |= known[i].bit;
        }
    }
    return ctrl;
}

static char *slurp(const char *path, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    size_t cap = 16384, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                errno = ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            free(buf);
            buf = NULL;
            break;
        }
        if (n == 0) {
            buf[len] = '\0';
            break;
        }
        len += (size_t)n;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    *len_out = len;
    return buf;
}

void cg_mounts_free(struct cgs *s)
{
    for (size_t i = 0; i < s->nh; i++) {
        free(s->hier[i].mnt);
        free(s->hier[i].prefix);
        if (s->hier[i].dirfd >= 0) {
            close(s->hier[i].dirfd);
        }
    }
    memset(s->hier, 0, sizeof s->hier);
    s->nh = 0;
    s->h_v2 = -1;
    for (size_t i = 0; i < sizeof s->h_ctrl / sizeof s->h_ctrl[0]; i++) {
        s->h_ctrl[i] = -1;
    }
}

/* Adds one hierarchy; false when it is a second mount of one we have (same
 * device) or there is no room. */
static int add_hier(struct cgs *s, uint64_t *devs, uint64_t dev, const char *root_field,
                    const char *mnt, bool v2, unsigned ctrl)
{
    for (size_t i = 0; i < s->nh; i++) {
        if (devs[i] == dev) {
            return 0; /* the same hierarchy mounted twice: the first one wins */
        }
        if (v2 && s->hier[i].v2) {
            return 0;
        }
        if (!v2 && (s->hier[i].ctrl & ctrl)) {
            return 0;
        }
    }
    if (s->nh == CG_MAX_HIER) {
        return 0;
    }
    struct cg_hier *h = &s->hier[s->nh];
    h->mnt = strdup(mnt);
    h->prefix = strdup(strcmp(root_field, "/") == 0 ? "" : root_field);
    if (!h->mnt || !h->prefix) {
        free(h->mnt);
        free(h->prefix);
        h->mnt = h->prefix = NULL;
        return -ENOMEM;
    }
    h->prefix_len = strlen(h->prefix);
    h->v2 = v2;
    h->ctrl = ctrl;
    h->dirfd = open(mnt, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (h->dirfd < 0) {
        int err = -errno;
        free(h->mnt);
        free(h->prefix);
        memset(h, 0, sizeof *h);
        return err;
    }
    devs[s->nh] = dev;
    s->nh++;
    return 1;
}

int cg_mounts_detect(struct cgs *s, const char *mountinfo, const char **why)
{
    uint64_t devs[CG_MAX_HIER]; /* major << 32 | minor of each hierarchy's mount */
    size_t len;
    cg_mounts_free(s);
    *why = NULL;
    char *text = slurp(mountinfo, &len);
    if (!text) {
        *why = "cannot read the mount table";
        return -errno;
    }
    size_t root_len = strlen(s->root);
    while (root_len > 1 && s->root[root_len - 1] == '/') {
        root_len--; /* "/sys/fs/cgroup/" is "/sys/fs/cgroup" */
    }
    int rc = 0;
    char *cursor = text;
    struct vigil_mountinfo m;
    while (vigil_mountinfo_next(&cursor, &m)) {
        bool v2 = strcmp(m.fstype, "cgroup2") == 0;
        if (!v2 && strcmp(m.fstype, "cgroup") != 0) {
            continue;
        }
        if (!under_root(m.point, s->root, root_len)) {
            continue;
        }
        unsigned ctrl = v2 ? 0 : v1_controllers(m.super_opts);
        if (!v2 && ctrl == 0) {
            continue; /* name=systemd, cpuset, devices, ...: nothing we read */
        }
        rc = add_hier(s, devs, (uint64_t)m.major << 32 | m.minor, m.root, m.point, v2, ctrl);
        if (rc < 0) {
            break;
        }
    }
    free(text);
    if (rc < 0) {
        cg_mounts_free(s);
        *why = "cannot open a cgroup mount point";
        return rc;
    }
    for (size_t i = 0; i < s->nh; i++) {
        if (s->hier[i].v2) {
            s->h_v2 = (int)i;
        }
        for (unsigned b = 0; b < 5; b++) {
            if (s->hier[i].ctrl & (1u << b)) {
                s->h_ctrl[b] = (int)i;
            }
        }
    }
    if (s->nh == 0) {
        *why = "no cgroup2 mount, nor a cgroup v1 mount with cpu, cpuacct, memory, pids or "
               "blkio, at or below root (see /proc/self/mountinfo)";
    }
    return (int)s->nh;
}

/* Container / pod / vm / runtime labels read off well-known cgroup layouts
 * (docker, podman, containerd and cri-o under kubepods, libvirt under
 * machine.slice), with both the cgroupfs and the systemd naming, and a
 * process's cgroup path from /proc/<pid>/cgroup. Shared by the cgroups source
 * (labels of a cgroup) and the access source (labels of a process).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cgroup_labels.h"

struct out {
    char *buf;
    size_t cap, len;
};

/* Copies s[0..n) into the output buffer; NULL if it does not fit. */
static const char *put(struct out *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        return NULL;
    }
    char *d = o->buf + o->len;
    memcpy(d, s, n);
    d[n] = '\0';
    o->len += n + 1;
    return d;
}

static bool is_hex64(const char *s, size_t n)
{
    if (n != 64) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

static bool starts(const char *s, size_t n, const char *prefix)
{
    size_t p = strlen(prefix);
    return n >= p && memcmp(s, prefix, p) == 0;
}

static bool ends(const char *s, size_t n, const char *suffix)
{
    size_t p = strlen(suffix);
    return n >= p && memcmp(s + n - p, suffix, p) == 0;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* systemd unit-name unescaping: "\x2d" is '-'. Into dst (cap bytes). */
static size_t unescape_unit(const char *s, size_t n, char *dst, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < n && w + 1 < cap; i++) {
        if (s[i] == '\\' && i + 3 < n && s[i + 1] == 'x' && hexval(s[i + 2]) >= 0 &&
            hexval(s[i + 3]) >= 0) {
            dst[w++] = (char)(hexval(s[i + 2]) * 16 + hexval(s[i + 3]));
            i += 3;
        } else {
            dst[w++] = s[i];
        }
    }
    dst[w] = '\0';
    return w;
}

/* A container id with a runtime prefix (".scope" already stripped). */
static bool container_id(const char *c, size_t n, const char **runtime, const char **id)
{
    static const struct {
        const char *prefix, *runtime;
    } known[] = {
        {"docker-", "docker"},
        {"cri-containerd-", "containerd"},
        {"crio-", "cri-o"},
        {"libpod-", "podman"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        size_t p = strlen(known[i].prefix);
        if (starts(c, n, known[i].prefix) && is_hex64(c + p, n - p)) {
            *runtime = known[i].runtime;
            *id = c + p;
            return true;
        }
    }
    return false;
}

/* A machine.slice scope, unescaped: "qemu-1-web" (libvirt >= 5.x),
 * "qemu-web" (older), "lxc-1-box", or any other machined name. */
static void machine_scope(struct out *o, struct vigil_cgroup_labels *l, const char *name, size_t n)
{
    const char *kind = NULL;
    if (starts(name, n, "qemu-")) {
        kind = "vm";
        name += 5;
        n -= 5;
    } else if (starts(name, n, "lxc-")) {
        kind = "lxc";
        name += 4;
        n -= 4;
    }
    if (kind) {
        size_t d = 0;
        while (d < n && name[d] >= '0' && name[d] <= '9') {
            d++;
        }
        if (d > 0 && d < n && name[d] == '-') {
            name += d + 1; /* the domain id libvirt puts first */
            n -= d + 1;
        }
    }
    if (n == 0) {
        return;
    }
    if (kind && kind[0] == 'v') {
        l->vm = put(o, name, n);
        l->runtime = "libvirt";
    } else {
        l->container = put(o, name, n);
        l->runtime = kind ? "libvirt-lxc" : "machined";
    }
}

void vigil_cgroup_labels_derive(const char *path, struct vigil_cgroup_labels *l, char *buf,
                                size_t cap)
{
    struct out o = {.buf = buf, .cap = cap};
    memset(l, 0, sizeof *l);
    bool kube = false, machine_slice = false;
    const char *parent = "";
    size_t parent_len = 0;
    for (const char *c = path; *c;) {
        if (*c == '/') {
            c++;
            continue;
        }
        size_t n = strcspn(c, "/");
        size_t base_n = ends(c, n, ".scope") ? n - 6 : n;
        const char *runtime, *id;
        if (starts(c, n, "kubepods")) {
            kube = true;
            /* systemd driver: kubepods-burstable-pod<uid with '_'>.slice */
            const char *pod = strstr(c, "-pod");
            if (pod && pod < c + n && ends(c, n, ".slice")) {
                const char *uid = pod + 4;
                size_t un = (size_t)(c + n - 6 - uid);
                char tmp[128];
                if (un > 0 && un < sizeof tmp) {
                    for (size_t i = 0; i < un; i++) {
                        tmp[i] = uid[i] == '_' ? '-' : uid[i];
                    }
                    l->pod = put(&o, tmp, un);
                }
            }
        } else if (kube && starts(c, n, "pod") && n > 3) {
            l->pod = put(&o, c + 3, n - 3); /* cgroupfs driver: pod<uid> */
        } else if (container_id(c, base_n, &runtime, &id)) {
            l->container = put(&o, id, 64);
            l->runtime = runtime;
        } else if (is_hex64(c, n) && parent_len == 6 && memcmp(parent, "docker", 6) == 0) {
            l->container = put(&o, c, n); /* docker, cgroupfs driver: /docker/<id> */
            l->runtime = "docker";
        } else if (is_hex64(c, n) && kube) {
            l->container = put(&o, c, n); /* kubepods, cgroupfs driver: containerd */
            l->runtime = "containerd";
        } else if ((n == 13 && memcmp(c, "machine.slice", 13) == 0) ||
                   (n == 7 && memcmp(c, "machine", 7) == 0)) {
            machine_slice = true;
        } else if (machine_slice && starts(c, n, "machine-") && ends(c, n, ".scope")) {
            char name[512];
            size_t un = unescape_unit(c + 8, n - 8 - 6, name, sizeof name);
            machine_scope(&o, l, name, un);
        } else if (machine_slice && ends(c, n, ".libvirt-qemu")) {
            l->vm = put(&o, c, n - 13); /* libvirt, cgroupfs: /machine/<name>.libvirt-qemu */
            l->runtime = "libvirt";
        } else if (machine_slice && ends(c, n, ".libvirt-lxc")) {
            l->container = put(&o, c, n - 12);
            l->runtime = "libvirt-lxc";
        }
        parent = c;
        parent_len = n;
        c += n;
    }
}

void vigil_cgroup_labels_add(const struct vigil_api *api, struct vigil_event_builder *ev,
                             const char *path, const struct vigil_cgroup_labels *l)
{
    if (path) {
        api->event_label(ev, "cgroup", path);
    }
    if (l->container) {
        api->event_label(ev, "container", l->container);
    }
    if (l->pod) {
        api->event_label(ev, "pod", l->pod);
    }
    if (l->vm) {
        api->event_label(ev, "vm", l->vm);
    }
    if (l->runtime) {
        api->event_label(ev, "runtime", l->runtime);
    }
}

struct vote {
    const char *p; /* a v1 path of /proc/<pid>/cgroup */
    size_t n, votes;
};

/* The line's path (after the second ':'), its length in *n; NULL if malformed. */
static const char *line_path(const char *line, size_t len, size_t *n)
{
    const char *a = memchr(line, ':', len);
    const char *b = a ? memchr(a + 1, ':', (size_t)(line + len - a - 1)) : NULL;
    if (!b) {
        return NULL;
    }
    *n = (size_t)(line + len - b - 1);
    return b + 1;
}

int vigil_proc_cgroup(pid_t pid, char *out, size_t cap)
{
    char path[64], text[4096];
    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? -ESRCH : -errno;
    }
    ssize_t len = read(fd, text, sizeof text - 1);
    int err = errno;
    close(fd);
    if (len <= 0) {
        return len == 0 ? -ESRCH : -err;
    }
    text[len] = '\0';
    /* At most 16 hierarchies are compared; a host has about 13. */
    struct vote seen[16];
    size_t nseen = 0;
    const char *best = "/";
    size_t best_n = 1, best_votes = 0;
    for (const char *line = text; *line;) {
        size_t ll = strcspn(line, "\n");
        size_t n;
        const char *p = line_path(line, ll, &n);
        if (p && n > 0 && !(n == 1 && p[0] == '/')) {
            if (ll >= 3 && memcmp(line, "0::", 3) == 0) {
                best = p;
                best_n = n;
                break; /* cgroup2 is the one identity where it is used */
            }
            size_t i = 0;
            while (i < nseen && !(seen[i].n == n && memcmp(seen[i].p, p, n) == 0)) {
                i++;
            }
            if (i == nseen && nseen < sizeof seen / sizeof seen[0]) {
                seen[nseen++] = (struct vote){p, n, 0};
            }
            if (i < nseen && ++seen[i].votes > best_votes) {
                best = seen[i].p;
                best_n = seen[i].n;
                best_votes = seen[i].votes;
            }
        }
        line += ll + (line[ll] == '\n');
    }
    if (best_n + 1 > cap) {
        return -ENAMETOOLONG;
    }
    memcpy(out, best, best_n);
    out[best_n] = '\0';
    return 0;
}

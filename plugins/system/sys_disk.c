/* system: the filesystems. /proc/self/mountinfo, read again only when the
 * kernel flags a change, gives the mounts; each one a path reaches, once per
 * device, is statvfs()ed into a system.disk event. The other half of the
 * plugin (CPU, memory, load, the descriptor) is system.c.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "mountinfo.h"
#include "system.h"

#define SLOW_STATVFS_NS 1000000000ull /* a statvfs this slow is worth a warning */

/* Filesystems without a disk of their own (kernel interfaces, memory,
 * overlays of another filesystem, read-only images that are always full),
 * skipped unless include_pseudo. */
/* clang-format off */
static const char *const pseudo_fstypes[] = {
    /* kernel interfaces */
    "proc", "sysfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs",
    "pstore", "bpf", "configfs", "fusectl", "mqueue", "binfmt_misc", "efivarfs", "rpc_pipefs",
    "nsfs", "selinuxfs", "nfsd", "binder", "rootfs", "fuse.lxcfs", "fuse.gvfsd-fuse",
    "fuse.portal",
    /* memory: counted in the memory values already */
    "tmpfs", "devtmpfs", "ramfs", "hugetlbfs",
    /* views of another filesystem (container roots) and images that are always full */
    "overlay", "aufs", "shiftfs", "squashfs",
    NULL,
};
/* clang-format on */

/* Parses /proc/self/mountinfo in s->mrb into s->mnts. Malformed lines are
 * skipped. */
static int parse_mountinfo(struct sys *s)
{
    s->nmnts = 0;
    char *cursor = s->mrb.p;
    struct vigil_mountinfo mi;
    while (vigil_mountinfo_next(&cursor, &mi)) {
        if (s->nmnts == s->mnt_cap) {
            size_t cap = s->mnt_cap ? s->mnt_cap * 2 : 64;
            struct mnt *m = realloc(s->mnts, cap * sizeof *m);
            if (!m) {
                return -ENOMEM;
            }
            s->mnts = m;
            s->mnt_cap = cap;
        }
        struct mnt *m = &s->mnts[s->nmnts++];
        m->point_len = mi.point_len;
        m->point = mi.point;
        m->source = mi.source;
        m->fstype = mi.fstype;
        m->id = mi.id;
        m->parent_id = mi.parent_id;
        m->major = mi.major;
        m->minor = mi.minor;
        m->ro = vigil_mountinfo_has_option(mi.opts, "ro");
        m->selected = false;
        m->warned = 0;
    }
    return 0;
}

enum tab_key { KEY_ID, KEY_DEV };

static uint64_t key_of(const struct mnt *m, enum tab_key kind)
{
    return kind == KEY_ID ? m->id : (uint64_t)m->major << 32 | m->minor;
}

/* The slot of `key` (a mount id or a device number) in s->tab: either the
 * slot that holds a mount with that key or an empty one. The table has at
 * least twice as many slots as mounts, so one is always free. */
static size_t tab_slot(const struct sys *s, enum tab_key kind, uint64_t key)
{
    size_t mask = s->tab_cap - 1;
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    for (size_t i = (size_t)(h ^ h >> 29) & mask;; i = (i + 1) & mask) {
        uint32_t v = s->tab[i];
        if (v == 0 || key_of(&s->mnts[v - 1], kind) == key) {
            return i;
        }
    }
}

static int tab_reset(struct sys *s)
{
    size_t want = 16;
    while (want < s->nmnts * 2) {
        want *= 2;
    }
    if (want > s->tab_cap) {
        uint32_t *t = realloc(s->tab, want * sizeof *t);
        if (!t) {
            return -ENOMEM;
        }
        s->tab = t;
        s->tab_cap = want;
    }
    memset(s->tab, 0, s->tab_cap * sizeof *s->tab);
    return 0;
}

static bool is_pseudo(const char *fstype)
{
    for (size_t i = 0; pseudo_fstypes[i]; i++) {
        if (strcmp(pseudo_fstypes[i], fstype) == 0) {
            return true;
        }
    }
    return false;
}

static bool any_glob(const struct sys *s, const char *const *globs, size_t n, const char *str,
                     size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (s->api->glob_match(globs[i], str, len)) {
            return true;
        }
    }
    return false;
}

/* True when a's mount point is b's or a directory above it. */
static bool point_covers(const struct mnt *a, const struct mnt *b)
{
    if (a->point_len == 1 && a->point[0] == '/') {
        return true;
    }
    return a->point_len <= b->point_len && memcmp(a->point, b->point, a->point_len) == 0 &&
           (b->point_len == a->point_len || b->point[a->point_len] == '/');
}

/* True when a path to the mount point of mnts[i] reaches that mount: no
 * mount on the way down to it has another one on top, on its own point or on
 * a directory above (mounted later on the same parent). statvfs() of a hidden
 * mount's point would measure whatever hides it. */
static bool reachable(const struct sys *s, size_t i)
{
    ptrdiff_t from = -1; /* the mount below c on the way up: it may sit on c */
    for (int depth = 0; depth < 64; depth++) {
        const struct mnt *c = &s->mnts[i];
        if (c->covered_by >= 0 && c->covered_by != from) {
            return false;
        }
        if (c->parent < 0 || (size_t)c->parent == i) {
            return true;
        }
        for (size_t j = 0; j < s->nmnts; j++) {
            const struct mnt *x = &s->mnts[j];
            if (j != i && x->parent == c->parent && x->point_len < c->point_len &&
                point_covers(x, c)) {
                return false;
            }
        }
        from = (ptrdiff_t)i;
        i = (size_t)c->parent;
    }
    return true; /* deeper than any real tree: do not judge */
}

/* Marks the mounts to statvfs. Each filesystem is looked at once: a mount
 * that a path cannot reach (another mount on top of it or above it) is
 * skipped, and of several mounts of one device (bind mounts, the same
 * filesystem mounted twice) only the one with the shortest mount point
 * counts. Runs only when the mount table changed. */
static int select_mounts(struct sys *s)
{
    int rc = tab_reset(s);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < s->nmnts; i++) {
        s->tab[tab_slot(s, KEY_ID, s->mnts[i].id)] = (uint32_t)i + 1;
        s->mnts[i].covered_by = -1;
    }
    for (size_t i = 0; i < s->nmnts; i++) {
        struct mnt *m = &s->mnts[i];
        uint32_t v = s->tab[tab_slot(s, KEY_ID, m->parent_id)];
        m->parent = v ? (ptrdiff_t)v - 1 : -1;
    }
    for (size_t i = 0; i < s->nmnts; i++) {
        const struct mnt *m = &s->mnts[i];
        if (m->parent >= 0 && (size_t)m->parent != i &&
            s->mnts[m->parent].point_len == m->point_len &&
            memcmp(s->mnts[m->parent].point, m->point, m->point_len) == 0) {
            s->mnts[m->parent].covered_by = (ptrdiff_t)i;
        }
    }
    for (size_t i = 0; i < s->nmnts; i++) {
        struct mnt *m = &s->mnts[i];
        /* autofs is never looked at: statvfs on it would trigger the mount. */
        m->selected = strcmp(m->fstype, "autofs") != 0 &&
                      (s->include_pseudo || !is_pseudo(m->fstype)) &&
                      !any_glob(s, s->skip_globs, s->nskip_globs, m->fstype, strlen(m->fstype)) &&
                      (!s->mount_globs ||
                       any_glob(s, s->mount_globs, s->nmount_globs, m->point, m->point_len)) &&
                      reachable(s, i);
    }
    rc = tab_reset(s);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < s->nmnts; i++) {
        struct mnt *m = &s->mnts[i];
        if (!m->selected) {
            continue;
        }
        size_t slot = tab_slot(s, KEY_DEV, key_of(m, KEY_DEV));
        if (s->tab[slot] == 0) {
            s->tab[slot] = (uint32_t)i + 1;
            continue;
        }
        struct mnt *o = &s->mnts[s->tab[slot] - 1];
        if (m->point_len < o->point_len) {
            o->selected = false;
            s->tab[slot] = (uint32_t)i + 1;
        } else {
            m->selected = false;
        }
    }
    return 0;
}

/* Logs a problem with one mount once while it lasts (m->warned); the host
 * limits such lines per call site for all mounts together. */
static void disk_warn(struct sys *s, struct mnt *m, uint8_t what, const char *fmt, ...)
    VIGIL_PRINTF(4, 5);

static void disk_warn(struct sys *s, struct mnt *m, uint8_t what, const char *fmt, ...)
{
    if (m->warned & what) {
        return;
    }
    m->warned |= what;
    va_list ap;
    va_start(ap, fmt);
    s->api->vlog_limited(s->h, VIGIL_LOG_WARN, fmt, ap);
    va_end(ap);
}

static int publish_disk(struct sys *s, struct mnt *m, uint64_t ts)
{
    const struct vigil_api *api = s->api;
    struct statvfs st;
    uint64_t t0 = s->api->mono_ns();
    int rc = statvfs(m->point, &st);
    int err = errno;
    uint64_t took = s->api->mono_ns() - t0;
    if (took >= SLOW_STATVFS_NS) {
        disk_warn(s, m, WARNED_SLOW,
                  "statvfs(%s) (%s on %s) took %.1f s: while a filesystem hangs, so does this "
                  "source; exclude it with mounts or skip_fstypes",
                  m->point, m->fstype, m->source, (double)took / 1e9);
    }
    if (rc != 0) {
        disk_warn(s, m, WARNED_FAIL,
                  "cannot statvfs %s (%s on %s): %s; no system.disk event for it", m->point,
                  m->fstype, m->source, api->strerror(-err));
        return 0;
    }
    if (m->warned & WARNED_FAIL) {
        m->warned &= (uint8_t)~WARNED_FAIL;
        api->log(s->h, VIGIL_LOG_INFO, "statvfs %s works again", m->point);
    }
    if (st.f_blocks == 0 && !s->include_pseudo) {
        return 0; /* no blocks at all: a pseudo filesystem by another name (df does the same) */
    }
    uint64_t unit = st.f_frsize ? st.f_frsize : st.f_bsize;
    uint64_t bfree = st.f_bfree < st.f_blocks ? st.f_bfree : st.f_blocks;
    uint64_t used = (st.f_blocks - bfree) * unit;
    uint64_t avail = (uint64_t)st.f_bavail * unit;

    struct vigil_event_builder *ev = api->event_begin(s->h, "system.disk");
    api->event_ts(ev, ts);
    api->event_label(ev, "mount", m->point);
    api->event_label(ev, "device", m->source);
    api->event_label(ev, "fstype", m->fstype);
    api->event_value_u64(ev, "disk_total_bytes", (uint64_t)st.f_blocks * unit);
    api->event_value_u64(ev, "disk_used_bytes", used);
    api->event_value_u64(ev, "disk_free_bytes", avail);
    /* Blocks only root may use (ext4's reserved 5%, ...). */
    uint64_t bavail = st.f_bavail < bfree ? st.f_bavail : bfree;
    api->event_value_u64(ev, "disk_reserved_bytes", (bfree - bavail) * unit);
    if (used + avail > 0) {
        api->event_value(ev, "disk_usage_pct", 100.0 * (double)used / (double)(used + avail));
    }
    if (st.f_files > 0) {
        uint64_t ffree = st.f_ffree < st.f_files ? st.f_ffree : st.f_files;
        api->event_value_u64(ev, "inodes_total", st.f_files);
        api->event_value_u64(ev, "inodes_used", st.f_files - ffree);
        api->event_value_u64(ev, "inodes_free", ffree);
        api->event_value(ev, "inodes_usage_pct",
                         100.0 * (double)(st.f_files - ffree) / (double)st.f_files);
    }
    api->event_attr_bool(ev, "readonly", m->ro);
    return api->publish(s->h, ev);
}

/* True when the mount table may have changed since the last look: the
 * kernel flags a mountinfo descriptor with POLLPRI after every mount and
 * unmount in its namespace. Unchanged, the parsed and selected list is kept,
 * and a host with thousands of mounts is not re-read every interval. */
static bool mounts_changed(struct sys *s)
{
    if (!s->mounts_ok || s->fd[PF_MOUNTINFO] < 0) {
        return true;
    }
    struct pollfd pfd = {.fd = s->fd[PF_MOUNTINFO], .events = POLLPRI};
    int n = poll(&pfd, 1, 0);
    return n != 0; /* an error also means: read it again */
}

int sys_publish_disks(struct sys *s, uint64_t ts)
{
    if (!s->disks) {
        return 0;
    }
    int rc = 0;
    if (mounts_changed(s)) {
        /* poll() above took note of the change: one after this read flags
         * the descriptor again. */
        s->mounts_ok = false;
        size_t nkeep = 0;
        for (size_t i = 0; i < s->nmnts && nkeep < KEEP_WARNED_MAX; i++) {
            if (s->mnts[i].warned) {
                s->keep[nkeep].id = s->mnts[i].id;
                s->keep[nkeep++].warned = s->mnts[i].warned;
            }
        }
        s->nmnts = 0;
        if (sys_read_file(s, PF_MOUNTINFO, &s->mrb) < 0) {
            return 0;
        }
        rc = parse_mountinfo(s);
        /* A mount that stays keeps its warnings (ids are unique while mounted). */
        for (size_t i = 0; rc == 0 && nkeep > 0 && i < s->nmnts; i++) {
            for (size_t k = 0; k < nkeep; k++) {
                if (s->mnts[i].id == s->keep[k].id) {
                    s->mnts[i].warned = s->keep[k].warned;
                }
            }
        }
        if (rc == 0) {
            rc = select_mounts(s);
        }
        s->mounts_ok = rc == 0;
    }
    for (size_t i = 0; rc == 0 && i < s->nmnts; i++) {
        if (s->mnts[i].selected) {
            rc = publish_disk(s, &s->mnts[i], ts);
        }
    }
    return rc;
}

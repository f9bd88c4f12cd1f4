/* access: the fanotify side. Two notification groups (never permission
 * events: vigil cannot block a process): one with a descriptor per event for
 * opens, closes, execs and writes (the path read off /proc/self/fd), one
 * reporting directory handles and names for creates and deletes (kernel
 * 5.9+, FAN_REPORT_DFID_NAME; mount marks cannot carry those).
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "access.h"

#define FAN_BUF_BYTES 16384

static const char *why_errno(int err)
{
    return err == EPERM ? " (fanotify needs CAP_SYS_ADMIN: run vigild as root, or grant the "
                          "capability: docs/systemd.md)"
                        : "";
}

static uint64_t fsid_of(int fd)
{
    struct statfs st;
    uint64_t id = 0;
    if (fstatfs(fd, &st) == 0) {
        memcpy(&id, &st.f_fsid, sizeof id < sizeof st.f_fsid ? sizeof id : sizeof st.f_fsid);
    }
    return id;
}

/* Keeps a descriptor of a filesystem we mark, for open_by_handle_at(): a
 * directory opened for reading (it refuses O_PATH), the path's own or its
 * parent. */
static void remember_fs(struct ac *a, const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        char dir[AC_PATH_MAX];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) {
            slash[slash == dir] = '\0';
            fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
    }
    if (fd < 0) {
        return;
    }
    uint64_t id = fsid_of(fd);
    for (size_t i = 0; i < a->nfs; i++) {
        if (a->fs[i].fsid == id) {
            close(fd);
            return;
        }
    }
    struct ac_fs *n = realloc(a->fs, (a->nfs + 1) * sizeof *n);
    if (!n) {
        close(fd);
        return;
    }
    a->fs = n;
    a->fs[a->nfs++] = (struct ac_fs){.fsid = id, .fd = fd};
}

/* The path of an event's descriptor, into a->path; closes the descriptor. */
static const char *fd_path(struct ac *a, int fd)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, a->path, AC_PATH_MAX - 1);
    close(fd);
    if (n <= 0) {
        return NULL;
    }
    a->path[n] = '\0';
    return a->path;
}

static int emit_fd_event(struct ac *a, const struct fanotify_event_metadata *md, const char *path)
{
    static const struct {
        uint64_t mask;
        unsigned ev;
        const char *action;
    } kinds[] = {
        {FAN_OPEN_EXEC, AC_EV_EXEC, "exec"},     {FAN_OPEN, AC_EV_OPEN, "open"},
        {FAN_CLOSE_NOWRITE, AC_EV_READ, "read"}, {FAN_CLOSE_WRITE, AC_EV_WRITE, "write"},
        {FAN_MODIFY, AC_EV_MODIFY, "modify"},
    };
    if (md->mask & FAN_OPEN_EXEC) {
        ac_ident_forget(a, md->pid); /* its exe is changing */
    }
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if ((md->mask & kinds[i].mask) && (a->events & kinds[i].ev)) {
            int rc = ac_emit(a, md->pid, kinds[i].action, path, 0, NULL, NULL, NULL, NULL);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* The directory of a DFID_NAME record (rec[0..len), from its header on)
 * joined with its name, into a->path. Records follow events of any length,
 * so they are copied out before being read as structs. */
static const char *fid_path(struct ac *a, const char *rec, size_t len)
{
    size_t at = offsetof(struct fanotify_event_info_fid, handle);
    union {
        struct file_handle fh;
        char raw[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    } h;
    if (len < at + sizeof h.fh) {
        return NULL;
    }
    memcpy(&h.fh, rec + at, sizeof h.fh);
    if (h.fh.handle_bytes > MAX_HANDLE_SZ || len < at + sizeof h.fh + h.fh.handle_bytes + 1) {
        return NULL;
    }
    memcpy(h.raw, rec + at, sizeof h.fh + h.fh.handle_bytes);
    const char *name = rec + at + sizeof h.fh + h.fh.handle_bytes;
    size_t name_len = strnlen(name, len - (at + sizeof h.fh + h.fh.handle_bytes));
    uint64_t id;
    memcpy(&id, rec + offsetof(struct fanotify_event_info_fid, fsid), sizeof id);
    for (size_t i = 0; i < a->nfs; i++) {
        if (a->fs[i].fsid != id) {
            continue;
        }
        int dfd = open_by_handle_at(a->fs[i].fd, &h.fh, O_PATH | O_CLOEXEC);
        if (dfd < 0 || !fd_path(a, dfd)) {
            break;
        }
        size_t dl = strlen(a->path);
        if (!(name_len == 1 && name[0] == '.') && dl + 1 + name_len < sizeof a->path) {
            snprintf(a->path + dl, sizeof a->path - dl, "%s%.*s", dl > 1 ? "/" : "", (int)name_len,
                     name);
        }
        return a->path;
    }
    return NULL;
}

/* A create or delete: md is the event's metadata (copied), ev its bytes. */
static int emit_fid_event(struct ac *a, const struct fanotify_event_metadata *md, const char *ev)
{
    const char *path = NULL;
    for (size_t off = md->metadata_len;
         off + sizeof(struct fanotify_event_info_header) <= md->event_len;) {
        struct fanotify_event_info_header hdr;
        memcpy(&hdr, ev + off, sizeof hdr);
        if (hdr.len == 0 || off + hdr.len > md->event_len) {
            break;
        }
        if (hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME) {
            path = fid_path(a, ev + off, hdr.len);
            break;
        }
        off += hdr.len;
    }
    if (!path) {
        a->api->log_limited(a->h, VIGIL_LOG_WARN,
                            "cannot resolve the path of a create/delete (pid %d): its folder is "
                            "gone, or open_by_handle_at lacks CAP_DAC_READ_SEARCH",
                            (int)md->pid);
        path = "?";
    }
    int rc = 0;
    if ((md->mask & FAN_CREATE) && (a->events & AC_EV_CREATE)) {
        rc = ac_emit(a, md->pid, "create", path, 0, NULL, NULL, NULL, NULL);
    }
    if (rc == 0 && (md->mask & FAN_DELETE) && (a->events & AC_EV_DELETE)) {
        rc = ac_emit(a, md->pid, "delete", path, 0, NULL, NULL, NULL, NULL);
    }
    return rc;
}

/* Reads up to AC_READ_BURST events of a group; published as one batch. */
static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct ac *a = arg;
    bool fid = fd == a->fid_fd;
    char buf[FAN_BUF_BYTES];
    int rc = 0;
    size_t seen = 0;
    a->api->batch_begin(a->h);
    while (rc == 0 && seen < AC_READ_BURST) {
        ssize_t len = read(fd, buf, sizeof buf);
        if (len <= 0) {
            if (len < 0 && errno != EAGAIN && errno != EINTR) {
                a->api->log_limited(a->h, VIGIL_LOG_WARN, "reading fanotify: %s", strerror(errno));
            }
            break;
        }
        /* Events with info records have any length: the metadata is
         * copied out rather than read in place, misaligned. */
        for (size_t off = 0; off + FAN_EVENT_METADATA_LEN <= (size_t)len;) {
            struct fanotify_event_metadata md;
            memcpy(&md, buf + off, sizeof md);
            if (md.vers != FANOTIFY_METADATA_VERSION || md.event_len < FAN_EVENT_METADATA_LEN ||
                off + md.event_len > (size_t)len) {
                a->api->log_limited(a->h, VIGIL_LOG_ERROR,
                                    "fanotify event of version %u (vigil knows %u) or length %u: "
                                    "the rest of this read is skipped",
                                    md.vers, FANOTIFY_METADATA_VERSION, md.event_len);
                break;
            }
            seen++;
            if (md.mask & FAN_Q_OVERFLOW) {
                ac_count_queue_drop(a, 1);
            } else if (rc == 0 && fid) {
                rc = emit_fid_event(a, &md, buf + off);
            } else if (rc == 0 && md.fd >= 0) {
                const char *path = fd_path(a, md.fd); /* closes it */
                rc = emit_fd_event(a, &md, path ? path : "?");
                md.fd = FAN_NOFD;
            }
            if (md.fd >= 0) {
                close(md.fd);
            }
            off += md.event_len;
        }
    }
    a->api->batch_end(a->h);
    (void)rc; /* VIGIL_ESTOPPED: the host is stopping the loop */
}

/* Marks every path of a list; logs and counts the failures. */
static int mark_list(struct ac *a, int fd, const struct vigil_conf *list, unsigned how,
                     uint64_t mask, const char *key)
{
    const struct vigil_api *api = a->api;
    int failed = 0;
    for (size_t i = 0; i < api->conf_len(list); i++) {
        const char *path = NULL;
        api->conf_string(api->conf_at(list, i, NULL), &path);
        uint64_t m = mask;
        struct stat st;
        if (how == 0 && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            m |= FAN_EVENT_ON_CHILD | FAN_ONDIR;
        }
        if (fanotify_mark(fd, FAN_MARK_ADD | how, m, AT_FDCWD, path) != 0) {
            int err = errno;
            api->log(a->h, VIGIL_LOG_ERROR, "%s: cannot watch %s: %s%s", key, path, strerror(err),
                     why_errno(err));
            failed = -err;
            continue;
        }
        remember_fs(a, path);
    }
    return failed;
}

static int start_group(struct ac *a, bool fid, uint64_t mask, int *out)
{
    const struct vigil_api *api = a->api;
    unsigned flags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK;
    if (fid) {
        flags |= FAN_REPORT_DFID_NAME;
    }
    int fd = fanotify_init(flags, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (fid && err == EINVAL) {
            api->log(a->h, VIGIL_LOG_WARN,
                     "this kernel's fanotify cannot report creates and deletes (needs 5.9+): "
                     "not reported");
            return 0;
        }
        api->log(a->h, VIGIL_LOG_ERROR, "cannot start fanotify: %s%s", strerror(err),
                 why_errno(err));
        return -err;
    }
    int rc = mark_list(a, fd, a->paths, 0, mask, "paths");
    if (rc == 0) {
        rc = mark_list(a, fd, a->filesystems, FAN_MARK_FILESYSTEM, mask, "filesystems");
    }
    if (rc == 0 && !fid) {
        rc = mark_list(a, fd, a->mounts, FAN_MARK_MOUNT, mask, "mounts");
    }
    if (rc != 0) {
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

int ac_fanotify_start(struct ac *a)
{
    const struct vigil_api *api = a->api;
    if (api->conf_len(a->paths) + api->conf_len(a->mounts) + api->conf_len(a->filesystems) == 0) {
        return 0;
    }
    uint64_t mask = 0;
    mask |= a->events & AC_EV_READ ? FAN_CLOSE_NOWRITE : 0;
    mask |= a->events & AC_EV_WRITE ? FAN_CLOSE_WRITE : 0;
    mask |= a->events & AC_EV_EXEC ? FAN_OPEN_EXEC : 0;
    mask |= a->events & AC_EV_MODIFY ? FAN_MODIFY : 0;
    mask |= a->events & AC_EV_OPEN ? FAN_OPEN : 0;
    uint64_t fid_mask = 0;
    fid_mask |= a->events & AC_EV_CREATE ? FAN_CREATE : 0;
    fid_mask |= a->events & AC_EV_DELETE ? FAN_DELETE : 0;
    int rc = 0;
    if (mask) {
        rc = start_group(a, false, mask, &a->fan_fd);
    }
    if (rc == 0 && fid_mask && api->conf_len(a->paths) + api->conf_len(a->filesystems) > 0) {
        rc = start_group(a, true, fid_mask | FAN_ONDIR, &a->fid_fd);
    }
    if (rc == 0 && fid_mask && api->conf_len(a->mounts) > 0) {
        api->log(a->h, VIGIL_LOG_INFO,
                 "mounts: creates and deletes are reported only under paths and filesystems "
                 "(the kernel cannot report them for a mount mark)");
    }
    struct event_base *base = api->event_base(a->h);
    if (rc == 0 && a->fan_fd >= 0) {
        a->fan_ev = event_new(base, a->fan_fd, EV_READ | EV_PERSIST, on_readable, a);
        rc = a->fan_ev && event_add(a->fan_ev, NULL) == 0 ? 0 : -ENOMEM;
    }
    if (rc == 0 && a->fid_fd >= 0) {
        a->fid_ev = event_new(base, a->fid_fd, EV_READ | EV_PERSIST, on_readable, a);
        rc = a->fid_ev && event_add(a->fid_ev, NULL) == 0 ? 0 : -ENOMEM;
    }
    if (rc != 0) {
        ac_fanotify_stop(a);
    }
    return rc;
}

void ac_fanotify_stop(struct ac *a)
{
    if (a->fan_ev) {
        event_free(a->fan_ev);
        a->fan_ev = NULL;
    }
    if (a->fid_ev) {
        event_free(a->fid_ev);
        a->fid_ev = NULL;
    }
    if (a->fan_fd >= 0) {
        close(a->fan_fd);
        a->fan_fd = -1;
    }
    if (a->fid_fd >= 0) {
        close(a->fid_fd);
        a->fid_fd = -1;
    }
    for (size_t i = 0; i < a->nfs; i++) {
        close(a->fs[i].fd);
    }
    free(a->fs);
    a->fs = NULL;
    a->nfs = 0;
}

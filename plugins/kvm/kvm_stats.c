/* kvm plugin, KVM's own counters: the binary stats fds a VMM holds (borrowed
 * with pidfd_getfd; KVM_GET_STATS_FD itself only works inside the VMM's
 * process) and the per-VM debugfs folder. Descriptors are read once per
 * vCPU; each collection is one pread of the data block per vCPU.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/mount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvm.h"

#define MAX_DESCS 4096
#define MAX_NAME 1024

/* A private, detached instance of a kernel filesystem (fsopen + fsmount):
 * visible to no other process, gone when the fd is closed. Needs
 * CAP_SYS_ADMIN and Linux 5.2. Returns the mount fd or -errno. */
int kv_private_mount(struct kv_state *s, const char *fstype)
{
    (void)s;
    int fs = (int)syscall(SYS_fsopen, fstype, FSOPEN_CLOEXEC);
    if (fs < 0) {
        return -errno;
    }
    int rc = -1;
    if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0) {
        rc = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
                          MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                              MOUNT_ATTR_NOEXEC);
    }
    int err = rc < 0 ? -errno : 0;
    close(fs);
    return rc < 0 ? err : rc;
}

/* ---- binary stats fds ------------------------------------------------------ */

void kv_statsfd_close(struct kv_statsfd *sf)
{
    if (sf->fd >= 0) {
        close(sf->fd);
    }
    free(sf->data);
    memset(sf, 0, sizeof *sf);
    sf->fd = -1;
}

/* Reads the header and descriptors of a vCPU stats fd once: where each
 * counter we publish sits in the data block, and how long the block is. */
static int statsfd_parse(struct kv_statsfd *sf, int fd, int index)
{
    struct kvm_stats_header hdr;
    if (pread(fd, &hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr) {
        return -EIO;
    }
    if (hdr.num_desc == 0 || hdr.num_desc > MAX_DESCS || hdr.name_size == 0 ||
        hdr.name_size > MAX_NAME) {
        return -EPROTO;
    }
    /* The id is "kvm-<pid>/vcpu-<index>": make sure this is the vCPU the
     * fd's name said. */
    char id[MAX_NAME + 1], want[32];
    ssize_t n = pread(fd, id, hdr.name_size, hdr.id_offset);
    if (n <= 0) {
        return -EIO;
    }
    id[n] = '\0';
    snprintf(want, sizeof want, "/vcpu-%d", index);
    const char *slash = strrchr(id, '/');
    if (!slash || strcmp(slash, want) != 0) {
        return -EPROTO;
    }
    size_t dsize = sizeof(struct kvm_stats_desc) + hdr.name_size;
    size_t total = dsize * hdr.num_desc;
    char *descs = malloc(total);
    if (!descs) {
        return -ENOMEM;
    }
    if (pread(fd, descs, total, hdr.desc_offset) != (ssize_t)total) {
        free(descs);
        return -EIO;
    }
    for (int r = 0; r < KV_R_COUNT; r++) {
        sf->word[r] = -1;
    }
    size_t words = 0;
    for (uint32_t i = 0; i < hdr.num_desc; i++) {
        /* Copied out: with an odd name_size a descriptor is not aligned. */
        struct kvm_stats_desc d;
        char *name = descs + i * dsize + sizeof d;
        memcpy(&d, descs + i * dsize, sizeof d);
        name[hdr.name_size - 1] = '\0';
        size_t end = d.offset / 8 + d.size;
        if (end > words) {
            words = end;
        }
        if ((d.flags & KVM_STATS_TYPE_MASK) != KVM_STATS_TYPE_CUMULATIVE || d.size < 1 ||
            d.offset % 8) {
            continue;
        }
        for (int r = 0; r < KV_R_COUNT; r++) {
            if (kv_reasons[r].stat && strcmp(name, kv_reasons[r].stat) == 0) {
                sf->word[r] = (int)(d.offset / 8);
            }
        }
    }
    free(descs);
    if (words == 0 || words > 65536) {
        return -EPROTO;
    }
    sf->data = calloc(words, sizeof *sf->data);
    if (!sf->data) {
        return -ENOMEM;
    }
    sf->nwords = words;
    sf->data_offset = hdr.data_offset;
    sf->fd = fd;
    return 0;
}

/* Borrows the vCPU stats fds a VMM keeps open (QEMU opens one per vCPU);
 * fds already borrowed are skipped. */
void kv_stats_setup(struct kv_state *s, struct kv_vm *vm, const int *stats_fds,
                    const int *stats_idx, size_t nstats)
{
    if (vm->pidfd < 0) {
        return;
    }
    for (size_t i = 0; i < nstats; i++) {
        struct kv_vcpu *v = kv_vcpu_get(vm, stats_idx[i]);
        if (!v || v->stats.fd >= 0) {
            continue;
        }
        int fd = (int)syscall(SYS_pidfd_getfd, vm->pidfd, stats_fds[i], 0);
        if (fd < 0) {
            if (errno == EPERM || errno == EACCES || errno == ENOSYS) {
                kv_warn_once(s, KV_W_PIDFD,
                             "pidfd_getfd(pid %d, fd %d): %s: cannot borrow the VMM's KVM stats "
                             "fds (needs Linux 5.6 and ptrace rights over the VMM, e.g. root)",
                             vm->pid, stats_fds[i], strerror(errno));
            }
            continue;
        }
        int rc = statsfd_parse(&v->stats, fd, stats_idx[i]);
        if (rc != 0) {
            close(fd);
            kv_statsfd_close(&v->stats);
            kv_warn_rl(s, "VM %s (pid %d): cannot use the stats fd %d of vCPU %d: %s", vm->name,
                       vm->pid, stats_fds[i], stats_idx[i], strerror(-rc));
        }
    }
}

/* ---- debugfs -------------------------------------------------------------- */

void kv_debugfs_close(struct kv_vm *vm)
{
    for (int r = 0; r < KV_R_COUNT; r++) {
        if (vm->dbg_fd[r] >= 0) {
            close(vm->dbg_fd[r]);
        }
        vm->dbg_fd[r] = -1;
    }
}

void kv_mounts_close(struct kv_state *s)
{
    if (s->dbg_dir >= 0) {
        close(s->dbg_dir);
    }
    if (s->dbg_mnt >= 0) {
        close(s->dbg_mnt);
    }
    s->dbg_dir = s->dbg_mnt = -1;
}

/* The debugfs kvm folder: the mounted one, else a private mount. */
static int debugfs_dir(struct kv_state *s)
{
    if (s->dbg_tried) {
        return s->dbg_dir;
    }
    s->dbg_tried = true;
    char path[4096];
    snprintf(path, sizeof path, "%s/kvm", s->debugfs_path);
    s->dbg_dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dbg_dir >= 0) {
        return s->dbg_dir;
    }
    int err = errno;
    if (s->private_mounts) {
        s->dbg_mnt = kv_private_mount(s, "debugfs");
        if (s->dbg_mnt >= 0) {
            s->dbg_dir = openat(s->dbg_mnt, "kvm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (s->dbg_dir >= 0) {
                s->api->log(s->h, VIGIL_LOG_INFO,
                            "%s: %s; reading KVM's debugfs through a private mount", path,
                            strerror(err));
                return s->dbg_dir;
            }
            err = errno;
            close(s->dbg_mnt);
            s->dbg_mnt = -1;
        } else {
            err = -s->dbg_mnt;
            s->dbg_mnt = -1;
        }
    }
    kv_warn_once(s, KV_W_DEBUGFS, "no KVM debugfs counters: %s: %s%s", path, strerror(err),
                 s->private_mounts ? "" : " (private_mounts is off)");
    return -1;
}

static int read_u64_fd(int fd, uint64_t *out)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) {
        return n < 0 ? -errno : -EIO;
    }
    buf[n] = '\0';
    char *end;
    *out = strtoull(buf, &end, 10);
    return end == buf ? -EPROTO : 0;
}

/* Opens the VM's debugfs counters; 0 when at least `exits` is readable. */
static int debugfs_open_vm(struct kv_state *s, struct kv_vm *vm)
{
    int dir = debugfs_dir(s);
    if (dir < 0 || s->dbg_denied) {
        return -ENOENT;
    }
    char path[96];
    int rc = 0;
    for (int r = 0; r < KV_R_COUNT && rc == 0; r++) {
        if (!kv_reasons[r].stat) {
            continue;
        }
        snprintf(path, sizeof path, "%d-%d/%s", vm->pid, vm->vm_fd, kv_reasons[r].stat);
        int fd = openat(dir, path, O_RDONLY | O_CLOEXEC);
        uint64_t v;
        int err = fd < 0 ? -errno : read_u64_fd(fd, &v);
        if (err == 0) {
            vm->dbg_fd[r] = fd;
            continue;
        }
        if (fd >= 0) {
            close(fd);
        }
        if (r == KV_R_EXITS) {
            rc = err;
            if (err == -EPERM || err == -EACCES) {
                s->dbg_denied = true;
                kv_warn_once(s, KV_W_DEBUGFS_DENIED,
                             "KVM's debugfs counters are not readable (%s/kvm/%s: %s: the kernel "
                             "is locked down?); counting VM exits with tracepoints instead",
                             s->dbg_mnt >= 0 ? "<private debugfs>" : s->debugfs_path, path,
                             strerror(-err));
            }
        }
    }
    if (rc != 0) {
        kv_debugfs_close(vm);
    }
    return rc;
}

/* vCPUs from the VM's debugfs folder ("vcpuN"), and the thread running each
 * ("vcpuN/pid", set by KVM on the vCPU's first KVM_RUN). */
void kv_debugfs_vcpu_tids(struct kv_state *s, struct kv_vm *vm)
{
    int dir = debugfs_dir(s);
    if (dir < 0) {
        return;
    }
    char path[96];
    snprintf(path, sizeof path, "%d-%d", vm->pid, vm->vm_fd);
    int vdir = openat(dir, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (vdir < 0) {
        return;
    }
    for (;;) {
        long n = syscall(SYS_getdents64, vdir, s->dents, sizeof s->dents);
        if (n <= 0) {
            break;
        }
        for (long off = 0; off < n;) {
            const struct kv_dirent64 *d = (const struct kv_dirent64 *)(s->dents + off);
            const char *name = d->d_name;
            off += d->d_reclen;
            if (strncmp(name, "vcpu", 4) != 0 || name[4] < '0' || name[4] > '9') {
                continue;
            }
            struct kv_vcpu *v = kv_vcpu_get(vm, atoi(name + 4));
            if (!v || v->tid) {
                continue;
            }
            snprintf(path, sizeof path, "%s/pid", name);
            int fd = openat(vdir, path, O_RDONLY | O_CLOEXEC);
            uint64_t tid = 0;
            if (fd >= 0 && read_u64_fd(fd, &tid) == 0 && tid > 0 && tid < 0x7fffffff) {
                v->tid = (int)tid;
                snprintf(v->tid_str, sizeof v->tid_str, "%d", v->tid);
            }
            if (fd >= 0) {
                close(fd);
            }
        }
    }
    close(vdir);
}

/* Picks the VM's counter method if it has none yet (stats fds win; then
 * debugfs). Returns the method in use. */
enum kv_method kv_stats_method(struct kv_state *s, struct kv_vm *vm)
{
    for (size_t i = 0; vm->primary && i < vm->nvcpus; i++) {
        if (vm->vcpus[i].stats.fd >= 0) {
            if (vm->method == KV_M_DEBUGFS) {
                kv_debugfs_close(vm);
            }
            return KV_M_STATS_FD;
        }
    }
    if (vm->method == KV_M_DEBUGFS) {
        return KV_M_DEBUGFS;
    }
    return debugfs_open_vm(s, vm) == 0 ? KV_M_DEBUGFS : KV_M_NONE;
}

static void add_counts(struct kv_counts *sum, const struct kv_counts *c)
{
    for (int r = 0; r < KV_R_COUNT; r++) {
        sum->v[r] += c->v[r];
    }
    sum->have |= c->have;
}

/* One reading of the VM's stats layer (and its vCPUs' with stats fds). */
void kv_stats_read(struct kv_state *s, struct kv_vm *vm, struct kv_counts *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < vm->nvcpus; i++) {
        memset(&vm->vcpus[i].now[0], 0, sizeof vm->vcpus[i].now[0]);
    }
    if (vm->method == KV_M_STATS_FD) {
        for (size_t i = 0; i < vm->nvcpus; i++) {
            struct kv_vcpu *v = &vm->vcpus[i];
            struct kv_statsfd *sf = &v->stats;
            size_t len = sf->nwords * sizeof *sf->data;
            if (sf->fd < 0 || pread(sf->fd, sf->data, len, sf->data_offset) != (ssize_t)len) {
                continue;
            }
            for (int r = 0; r < KV_R_COUNT; r++) {
                if (sf->word[r] >= 0) {
                    v->now[0].v[r] = sf->data[sf->word[r]];
                    v->now[0].have |= 1u << r;
                }
            }
            add_counts(out, &v->now[0]);
        }
    } else if (vm->method == KV_M_DEBUGFS) {
        for (int r = 0; r < KV_R_COUNT; r++) {
            if (vm->dbg_fd[r] >= 0 && read_u64_fd(vm->dbg_fd[r], &out->v[r]) == 0) {
                out->have |= 1u << r;
            }
        }
    }
    (void)s;
}

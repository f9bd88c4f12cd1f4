/* cgroups: the tree of cgroup paths over every tracked hierarchy. A full scan
 * at start (and after an inotify overflow); in between, inotify reports the
 * mkdir/rmdir of cgroups, so a quiet host costs one read(2) per collection
 * instead of a directory walk. Without inotify, every collection scans.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "cgroups.h"

#define WATCH_MASK                                                                                 \
    (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR | IN_DONT_FOLLOW)

/* The files watched for writes (IN_MODIFY), each on its own: a directory
 * watched for events of its files sets a mark on every file's dentry, and
 * then every read of any of them (memory.usage_in_bytes at each collection)
 * looks up and pins the parent directory to offer it the access. And on
 * cgroup2 the kernel itself notifies memory.events, cgroup.events and the
 * like (up to 50 a second each), which would flood the queue. */
static const char *const watched_file[W_COUNT] = {
    [W_PROCS] = "cgroup.procs",
    [W_THREADS] = "cgroup.threads",
    [W_MEM_LIMIT] = "memory.limit_in_bytes",
    [W_CPU_QUOTA] = "cpu.cfs_quota_us",
    [W_CPU_PERIOD] = "cpu.cfs_period_us",
};

/* Whether file i is watched in hierarchy h's directories. */
static bool watched_in(const struct cgs *s, unsigned i, unsigned h)
{
    const struct cg_hier *hi = &s->hier[h];
    switch (i) {
    case W_PROCS:
    case W_THREADS:
        return s->procs_watch && (int)h == s->h_v2;
    case W_MEM_LIMIT:
        return !hi->v2 && (hi->ctrl & C_MEMORY);
    default:
        return !hi->v2 && (hi->ctrl & C_CPU);
    }
}

/* A watched file was written: forget what it decides. */
static void file_written(struct cgs *s, struct cg_node *n, unsigned i)
{
    if (i == W_PROCS || i == W_THREADS) {
        /* A process or thread moved in, and out of some other cgroup,
         * perhaps not watched. */
        s->procs_written = true;
    } else if (i == W_MEM_LIMIT) {
        n->cached.valid &= (uint16_t)~V_LIMIT;
    } else {
        n->cached.valid &= (uint16_t) ~(V_QUOTA | V_THROTTLE);
    }
}

static uint64_t hash_path(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    }
    return h;
}

static struct cg_node *node_find(struct cgs *s, const char *path, size_t len, uint64_t hash)
{
    if (!s->nbuckets) {
        return NULL;
    }
    for (struct cg_node *n = s->buckets[hash & (s->nbuckets - 1)]; n; n = n->hnext) {
        if (n->hash == hash && n->path_len == len && memcmp(n->path, path, len) == 0) {
            return n;
        }
    }
    return NULL;
}

static int grow_buckets(struct cgs *s)
{
    size_t nb = s->nbuckets ? s->nbuckets * 2 : 256;
    struct cg_node **b = calloc(nb, sizeof *b);
    if (!b) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->nbuckets; i++) {
        for (struct cg_node *n = s->buckets[i], *next; n; n = next) {
            next = n->hnext;
            n->hnext = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
    return 0;
}

static bool matches(struct cgs *s, const char *path, size_t len)
{
    for (size_t i = 0; i < s->nmatch; i++) {
        if (s->api->glob_match(s->match[i], path, len)) {
            return true;
        }
    }
    return false;
}

static size_t copy_label(char *dst, const char *src)
{
    if (!src) {
        return 0;
    }
    size_t n = strlen(src) + 1;
    memcpy(dst, src, n);
    return n;
}

/* Finds or creates the node of `path`. NULL when the bound on tracked
 * directories is reached (counted, warned, retried by a later scan). */
static struct cg_node *node_get(struct cgs *s, const char *path, size_t len)
{
    uint64_t hash = hash_path(path, len);
    struct cg_node *n = node_find(s, path, len, hash);
    if (n) {
        return n;
    }
    if (s->nnodes >= s->max_nodes) {
        s->nodes_refused++;
        cg_warn(s,
                "tracking at most %zu cgroup directories (8 x max_cgroups + 1024); %s and "
                "others are not followed (%zu refused so far): raise max_cgroups",
                s->max_nodes, path, s->nodes_refused);
        return NULL;
    }
    if (s->nnodes >= s->nbuckets && grow_buckets(s) != 0) {
        return NULL;
    }
    char lbuf[1024];
    struct vigil_cgroup_labels l;
    vigil_cgroup_labels_derive(path, &l, lbuf, sizeof lbuf);
    size_t extra = (l.container ? strlen(l.container) + 1 : 0) + (l.pod ? strlen(l.pod) + 1 : 0) +
                   (l.vm ? strlen(l.vm) + 1 : 0);
    n = calloc(1, sizeof *n + len + 1 + extra);
    if (!n) {
        return NULL;
    }
    memcpy(n->path, path, len);
    n->path[len] = '\0';
    n->path_len = len;
    n->hash = hash;
    char *tail = n->path + len + 1;
    if (l.container) {
        n->labels.container = tail;
        tail += copy_label(tail, l.container);
    }
    if (l.pod) {
        n->labels.pod = tail;
        tail += copy_label(tail, l.pod);
    }
    if (l.vm) {
        n->labels.vm = tail;
        tail += copy_label(tail, l.vm);
    }
    n->labels.runtime = l.runtime; /* a static string */
    for (size_t i = 0; i < CG_MAX_HIER; i++) {
        n->wd[i] = -1;
    }
    for (size_t i = 0; i < W_COUNT; i++) {
        n->fw[i] = -1;
    }
    for (size_t i = 0; i < G_COUNT; i++) {
        n->src[i] = -1;
    }
    for (size_t i = 0; i < S_COUNT; i++) {
        n->fd[i] = FD_CLOSED;
    }
    n->matched = matches(s, path, len);
    size_t b = hash & (s->nbuckets - 1);
    n->hnext = s->buckets[b];
    s->buckets[b] = n;
    n->prev = s->tail;
    if (s->tail) {
        s->tail->next = n;
    } else {
        s->head = n;
    }
    s->tail = n;
    s->nnodes++;
    return n;
}

static void node_free(struct cgs *s, struct cg_node *n)
{
    cg_node_close_files(s, n);
    free(n->procs);
    free(n);
}

static void node_remove(struct cgs *s, struct cg_node *n)
{
    struct cg_node **pp = &s->buckets[n->hash & (s->nbuckets - 1)];
    while (*pp && *pp != n) {
        pp = &(*pp)->hnext;
    }
    if (*pp) {
        *pp = n->hnext;
    }
    if (n->prev) {
        n->prev->next = n->next;
    } else {
        s->head = n->next;
    }
    if (n->next) {
        n->next->prev = n->prev;
    } else {
        s->tail = n->prev;
    }
    s->nnodes--;
    node_free(s, n);
}

/* ---- inotify watch descriptors -> (node, hierarchy) ------------------------ */

static size_t wd_slot(const struct cgs *s, int wd)
{
    return ((size_t)(unsigned)wd * 2654435761u) & (s->cap_wds - 1);
}

static struct cg_wd *wd_get(struct cgs *s, int wd)
{
    if (!s->cap_wds) {
        return NULL;
    }
    for (size_t i = wd_slot(s, wd);; i = (i + 1) & (s->cap_wds - 1)) {
        if (s->wds[i].wd == wd) {
            return &s->wds[i];
        }
        if (s->wds[i].wd == 0) {
            return NULL;
        }
    }
}

static int wd_put(struct cgs *s, int wd, struct cg_node *n, unsigned h, unsigned file)
{
    if ((s->nwds + 1) * 2 > s->cap_wds) {
        size_t cap = s->cap_wds ? s->cap_wds * 2 : 1024;
        struct cg_wd *old = s->wds, *t = calloc(cap, sizeof *t);
        size_t old_cap = s->cap_wds;
        if (!t) {
            return -ENOMEM;
        }
        s->wds = t;
        s->cap_wds = cap;
        for (size_t i = 0; i < old_cap; i++) {
            if (old[i].wd) {
                size_t j = wd_slot(s, old[i].wd);
                while (t[j].wd) {
                    j = (j + 1) & (cap - 1);
                }
                t[j] = old[i];
            }
        }
        free(old);
    }
    struct cg_wd *w = wd_get(s, wd);
    if (!w) {
        size_t j = wd_slot(s, wd);
        while (s->wds[j].wd) {
            j = (j + 1) & (s->cap_wds - 1);
        }
        w = &s->wds[j];
        s->nwds++;
    }
    *w = (struct cg_wd){.wd = wd, .hier = (uint8_t)h, .file = (uint8_t)file, .node = n};
    return 0;
}

/* Linear-probing delete: shift later entries of the run back into the gap. */
static void wd_del(struct cgs *s, int wd)
{
    struct cg_wd *w = wd_get(s, wd);
    if (!w) {
        return;
    }
    size_t mask = s->cap_wds - 1, i = (size_t)(w - s->wds), j = i;
    s->wds[i].wd = 0;
    s->nwds--;
    for (;;) {
        j = (j + 1) & mask;
        if (s->wds[j].wd == 0) {
            return;
        }
        size_t k = wd_slot(s, s->wds[j].wd);
        /* Move j into the gap at i unless its home k lies cyclically in (i, j]. */
        if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
            s->wds[i] = s->wds[j];
            s->wds[j].wd = 0;
            i = j;
        }
    }
}

static void inotify_stop(struct cgs *s)
{
    if (s->ino_fd >= 0) {
        close(s->ino_fd); /* drops every watch */
        s->ino_fd = -1;
    }
    for (struct cg_node *n = s->head; n; n = n->next) {
        for (size_t i = 0; i < CG_MAX_HIER; i++) {
            n->wd[i] = -1;
        }
        for (size_t i = 0; i < W_COUNT; i++) {
            n->fw[i] = -1;
        }
    }
    free(s->wds);
    s->wds = NULL;
    s->nwds = s->cap_wds = 0;
}

/* ---- presence and routing ------------------------------------------------- */

/* Also forgets the kept values: they belong to the files. */
void cg_node_close_files(struct cgs *s, struct cg_node *n)
{
    for (size_t i = 0; i < S_COUNT; i++) {
        if (n->fd[i] >= 0) {
            close(n->fd[i]);
            s->open_fds--;
        }
        n->fd[i] = FD_CLOSED;
    }
    n->cached.valid = 0;
    memset(n->hg, 0, sizeof n->hg);
    memset(n->hg_gen, 0, sizeof n->hg_gen);
}

void cg_tree_forget(struct cgs *s)
{
    for (struct cg_node *n = s->head; n; n = n->next) {
        n->cached.valid = 0;
        memset(n->hg, 0, sizeof n->hg);
        memset(n->hg_gen, 0, sizeof n->hg_gen);
    }
}

struct cg_node *cg_node_parent(struct cgs *s, const struct cg_node *n)
{
    if (n->path_len <= 1) {
        return NULL;
    }
    size_t len = n->path_len - 1;
    while (len > 0 && n->path[len] != '/') {
        len--;
    }
    len = len ? len : 1; /* "/a" -> "/" */
    return node_find(s, n->path, len, hash_path(n->path, len));
}

static int present_in(const struct cg_node *n, int h)
{
    return h >= 0 && (n->present & (1u << h)) ? h : -1;
}

void cg_node_route(struct cgs *s, struct cg_node *n)
{
    int8_t src[G_COUNT];
    int v2 = present_in(n, s->h_v2);
    static const unsigned ctrl_bit[G_COUNT] = {
        [G_CPUACCT] = 1, [G_CPU] = 0, [G_MEMORY] = 2, [G_PIDS] = 3, [G_IO] = 4};
    for (int g = 0; g < G_COUNT; g++) {
        int h = -1;
        if (g == G_PROCS) {
            h = v2;
            for (size_t i = 0; h < 0 && i < s->nh; i++) {
                h = present_in(n, (int)i);
            }
        } else if (g == G_PSI) {
            h = v2;
        } else {
            h = present_in(n, s->h_ctrl[ctrl_bit[g]]);
            if (h < 0) {
                h = v2;
            }
        }
        src[g] = (int8_t)h;
    }
    if (memcmp(src, n->src, sizeof src) != 0) {
        /* Values now come from another hierarchy: the open files and the
         * previous counters belong to the old one. */
        memcpy(n->src, src, sizeof src);
        cg_node_close_files(s, n);
        n->have_prev = false;
    }
}

/* Identity of a directory `rel` (relative to hierarchy h's mount point, ""
 * for the mount point itself) into s->path; returns its length. */
static size_t identity(struct cgs *s, unsigned h, const char *rel)
{
    const struct cg_hier *hi = &s->hier[h];
    size_t n = hi->prefix_len;
    memcpy(s->path, hi->prefix, n);
    if (*rel) {
        s->path[n++] = '/';
        size_t rl = strlen(rel);
        if (n + rl >= sizeof s->path) {
            rl = sizeof s->path - n - 1;
        }
        memcpy(s->path + n, rel, rl);
        n += rl;
    }
    if (n == 0) {
        s->path[n++] = '/';
    }
    s->path[n] = '\0';
    return n;
}

/* Watches for writes the files of the directory that hierarchy h has (see
 * watched_file): cgroup2's cgroup.procs and cgroup.threads, the only ways a
 * process moves in or out but by forking or exiting (cg_procs_still); v1's
 * memory limit and CPU quota, read only after a write. A node without a
 * file's watch reads what it decides at every collection. `dir` is its
 * path, len bytes in a buffer of cap. */
static void watch_files(struct cgs *s, struct cg_node *n, unsigned h, char *dir, size_t len,
                        size_t cap)
{
    for (unsigned i = 0; i < W_COUNT; i++) {
        if (!watched_in(s, i, h)) {
            continue;
        }
        size_t fl = strlen(watched_file[i]);
        if (len + 1 + fl + 1 > cap) {
            continue;
        }
        dir[len] = '/';
        memcpy(dir + len + 1, watched_file[i], fl + 1);
        int wd = inotify_add_watch(s->ino_fd, dir, IN_MODIFY | IN_DONT_FOLLOW);
        dir[len] = '\0';
        if (n->fw[i] >= 0 && n->fw[i] != wd) {
            wd_del(s, n->fw[i]); /* re-created directory */
        }
        n->fw[i] = -1;
        if (wd >= 0 && wd_put(s, wd, n, h, 1 + i) == 0) {
            n->fw[i] = wd;
        } else if (wd >= 0) {
            inotify_rm_watch(s->ino_fd, wd);
        }
    }
}

/* Drops node n's watches of files in hierarchy h from the map (the kernel
 * drops them with the directory). */
static void unwatch_files(struct cgs *s, struct cg_node *n, unsigned h)
{
    for (unsigned i = 0; i < W_COUNT; i++) {
        if (n->fw[i] >= 0 && watched_in(s, i, h)) {
            wd_del(s, n->fw[i]);
            n->fw[i] = -1;
        }
    }
}

static void add_watch(struct cgs *s, struct cg_node *n, unsigned h, const char *rel)
{
    if (s->ino_fd < 0) {
        return;
    }
    char p[sizeof s->path + 256];
    const char *mnt = s->hier[h].mnt;
    int len = *rel ? snprintf(p, sizeof p, "%s/%s", mnt, rel) : snprintf(p, sizeof p, "%s", mnt);
    if (len < 0 || (size_t)len >= sizeof p) {
        return;
    }
    int wd = inotify_add_watch(s->ino_fd, p, WATCH_MASK);
    if (wd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            return; /* gone already; its parent's event tells us */
        }
        cg_warn(s,
                "cannot watch %s with inotify: %s (fs.inotify.max_user_watches?); "
                "scanning every cgroup directory at each collection instead",
                p, strerror(errno));
        s->inotify_off = true;
        inotify_stop(s);
        return;
    }
    if (n->wd[h] >= 0 && n->wd[h] != wd) {
        wd_del(s, n->wd[h]); /* re-created directory: a new watch */
    }
    if (wd_put(s, wd, n, h, 0) != 0) {
        inotify_rm_watch(s->ino_fd, wd);
        s->rescan = true;
        return;
    }
    n->wd[h] = wd;
    watch_files(s, n, h, p, (size_t)len, sizeof p);
}

static void set_present(struct cgs *s, struct cg_node *n, unsigned h)
{
    n->seen |= 1u << h;
    if (!(n->present & (1u << h))) {
        n->present |= 1u << h;
        cg_node_route(s, n);
    }
}

static void clear_present(struct cgs *s, struct cg_node *n, unsigned h)
{
    if (n->wd[h] >= 0) {
        wd_del(s, n->wd[h]); /* the kernel dropped the watch with the directory */
        n->wd[h] = -1;
    }
    unwatch_files(s, n, h);
    n->present &= ~(1u << h);
    if (!n->present) {
        node_remove(s, n);
    } else {
        cg_node_route(s, n);
    }
}

/* ---- scanning ---------------------------------------------------------------- */

static int work_push(struct cgs *s, const char *a, const char *b)
{
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    size_t need = la + (b ? lb + 1 : 0) + 1;
    if (s->work_len + need > s->work_cap) {
        size_t cap = s->work_cap ? s->work_cap : 16384;
        while (cap < s->work_len + need) {
            cap *= 2;
        }
        char *w = realloc(s->work, cap);
        if (!w) {
            return -ENOMEM;
        }
        s->work = w;
        s->work_cap = cap;
    }
    char *p = s->work + s->work_len;
    memcpy(p, a, la);
    if (b) {
        if (la) {
            p[la++] = '/';
        }
        memcpy(p + la, b, lb);
        la += lb;
    }
    p[la] = '\0';
    s->work_len += la + 1;
    return 0;
}

/* Pops the last path into rel (cap bytes). False when empty. */
static bool work_pop(struct cgs *s, char *rel, size_t cap)
{
    if (s->work_len == 0) {
        return false;
    }
    size_t end = s->work_len - 1, start = end;
    while (start > 0 && s->work[start - 1] != '\0') {
        start--;
    }
    size_t n = end - start < cap - 1 ? end - start : cap - 1;
    memcpy(rel, s->work + start, n);
    rel[n] = '\0';
    s->work_len = start;
    return true;
}

static size_t depth_of(const char *rel)
{
    size_t d = *rel ? 1 : 0;
    for (; *rel; rel++) {
        d += *rel == '/';
    }
    return d;
}

/* Walks hierarchy h from `start` (relative to its mount point), marking
 * every directory present and watching it. */
static int scan_hier(struct cgs *s, unsigned h, const char *start)
{
    char rel[sizeof s->path];
    s->work_len = 0;
    if (work_push(s, start, NULL) != 0) {
        return -ENOMEM;
    }
    if (!s->dents) {
        s->dents_cap = 32768;
        s->dents = malloc(s->dents_cap);
        if (!s->dents) {
            return -ENOMEM;
        }
    }
    while (work_pop(s, rel, sizeof rel)) {
        int fd = openat(s->hier[h].dirfd, *rel ? rel : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            continue; /* removed meanwhile */
        }
        size_t len = identity(s, h, rel);
        struct cg_node *n = node_get(s, s->path, len);
        if (!n) {
            close(fd);
            s->rescan_refused = true;
            continue; /* over the bound: not followed, nor its children */
        }
        set_present(s, n, h);
        add_watch(s, n, h, rel); /* before listing: no child slips between */
        bool deep = depth_of(rel) >= CG_MAX_DEPTH;
        ssize_t got;
        while ((got = getdents64(fd, s->dents, s->dents_cap)) > 0) {
            for (ssize_t off = 0; off < got;) {
                struct dirent64 *d = (struct dirent64 *)(s->dents + off);
                off += d->d_reclen;
                if (d->d_type != DT_DIR || strcmp(d->d_name, ".") == 0 ||
                    strcmp(d->d_name, "..") == 0) {
                    continue;
                }
                if (deep) {
                    s->tree_partial = true; /* a process may move where we cannot see */
                    continue;
                }
                if (work_push(s, rel, d->d_name) != 0) {
                    close(fd);
                    return -ENOMEM;
                }
            }
        }
        close(fd);
    }
    return 0;
}

static int full_scan(struct cgs *s)
{
    for (struct cg_node *n = s->head; n; n = n->next) {
        n->seen = 0;
    }
    s->rescan = false;
    s->rescan_refused = false;
    s->tree_partial = false;
    int rc = 0;
    for (unsigned h = 0; h < s->nh && rc == 0; h++) {
        rc = scan_hier(s, h, "");
    }
    if (rc != 0) {
        s->rescan = true;
        return rc;
    }
    /* Between two scans a cgroup may have been removed and made again. */
    cg_tree_forget(s);
    /* Sweep: what the scan did not see is gone. */
    for (struct cg_node *n = s->head, *next; n; n = next) {
        next = n->next;
        uint32_t gone = n->present & ~n->seen;
        for (unsigned h = 0; gone && h < s->nh; h++) {
            if (gone & (1u << h)) {
                gone &= ~(1u << h);
                bool last = (n->present & ~(1u << h)) == 0;
                clear_present(s, n, h);
                if (last) {
                    break; /* n is freed */
                }
            }
        }
    }
    return 0;
}

/* The path of watched directory (node n in hierarchy h) plus "/name",
 * relative to h's mount point, into rel. False if it does not fit. */
static bool child_rel(const struct cgs *s, const struct cg_node *n, unsigned h, const char *name,
                      char *rel, size_t cap)
{
    const struct cg_hier *hi = &s->hier[h];
    const char *r = n->path + hi->prefix_len; /* "" or "/a/b" */
    if (n->path_len == 1 && hi->prefix_len == 0) {
        r = ""; /* the root "/" */
    }
    if (*r == '/') {
        r++;
    }
    int len = *r ? snprintf(rel, cap, "%s/%s", r, name) : snprintf(rel, cap, "%s", name);
    return len > 0 && (size_t)len < cap;
}

static int drain_inotify(struct cgs *s)
{
    _Alignas(struct inotify_event) char buf[16384];
    char rel[sizeof s->path];
    for (;;) {
        ssize_t got = read(s->ino_fd, buf, sizeof buf);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN ? 0 : -errno;
        }
        for (ssize_t off = 0; off < got;) {
            const struct inotify_event *e = (const struct inotify_event *)(buf + off);
            off += (ssize_t)(sizeof *e + e->len);
            if (e->mask & IN_Q_OVERFLOW) {
                s->rescan = true;
                s->procs_written = true;
                continue;
            }
            struct cg_wd *w = wd_get(s, e->wd);
            if (!w) {
                continue;
            }
            struct cg_node *parent = w->node;
            unsigned h = w->hier;
            if (w->file) {
                /* A watched file written, or gone with its directory. */
                unsigned i = w->file - 1u;
                if (e->mask & IN_IGNORED) {
                    if (parent->fw[i] == e->wd) {
                        parent->fw[i] = -1;
                    }
                    wd_del(s, e->wd);
                } else {
                    file_written(s, parent, i); /* IN_MODIFY (or IN_UNMOUNT: forget too) */
                }
                continue;
            }
            if (e->mask & IN_IGNORED) {
                if (parent->wd[h] == e->wd) {
                    parent->wd[h] = -1;
                }
                wd_del(s, e->wd);
                continue;
            }
            if (!(e->mask & IN_ISDIR) || e->len == 0 || s->rescan) {
                continue; /* a full scan comes anyway */
            }
            if (!child_rel(s, parent, h, e->name, rel, sizeof rel)) {
                continue;
            }
            if (e->mask & IN_MOVED_FROM) {
                s->rescan = true; /* a renamed subtree: let a scan sort it out */
            } else if (e->mask & (IN_CREATE | IN_MOVED_TO)) {
                int rc = scan_hier(s, h, rel);
                if (rc != 0) {
                    return rc;
                }
            } else if (e->mask & IN_DELETE) {
                size_t len = identity(s, h, rel);
                struct cg_node *c = node_find(s, s->path, len, hash_path(s->path, len));
                if (c && (c->present & (1u << h))) {
                    clear_present(s, c, h);
                }
            }
        }
    }
}

int cg_tree_update(struct cgs *s)
{
    if (s->ino_fd < 0 && !s->inotify_off) {
        s->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (s->ino_fd < 0) {
            cg_warn(s,
                    "inotify is unavailable (%s): scanning every cgroup directory at each "
                    "collection instead",
                    strerror(errno));
            s->inotify_off = true;
        }
        s->rescan = true;
    }
    if (s->inotify_off) {
        s->rescan = true;
    } else {
        int rc = drain_inotify(s);
        if (rc != 0) {
            s->rescan = true;
        }
    }
    if (s->rescan_refused && s->nnodes < s->max_nodes) {
        s->rescan = true; /* room again for what the bound turned away */
    }
    return s->rescan ? full_scan(s) : 0;
}

void cg_tree_free(struct cgs *s)
{
    inotify_stop(s);
    for (struct cg_node *n = s->head, *next; n; n = next) {
        next = n->next;
        node_free(s, n);
    }
    s->head = s->tail = NULL;
    s->nnodes = 0;
    free(s->buckets);
    s->buckets = NULL;
    s->nbuckets = 0;
    free(s->dents);
    s->dents = NULL;
    free(s->work);
    s->work = NULL;
    s->work_len = s->work_cap = 0;
}

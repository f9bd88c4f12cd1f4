/* /proc/<pid>/mountinfo, one line at a time: split and unescaped in place in
 * the caller's buffer, for the plugins that look at mounts (system's disks,
 * cgroups' hierarchies). Part of the plugins' helper library (plugins/common).
 */
#ifndef VIGIL_MOUNTINFO_H
#define VIGIL_MOUNTINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One mount:
 *   36 35 98:0 /root /mnt/point rw,noatime master:1 - ext4 /dev/sda1 rw,errors=remount-ro
 *   id parent maj:min root point opts [optional fields] - fstype source super_opts
 * The strings point into the text given to vigil_mountinfo_next(); root,
 * point and source have mountinfo's octal escapes (\040 for a space) undone. */
struct vigil_mountinfo {
    uint64_t id, parent_id;
    uint32_t major, minor;
    char *root; /* the mount's root within its filesystem */
    char *point;
    size_t point_len;
    char *opts; /* per-mount options: rw,noatime */
    char *fstype;
    char *source;
    char *super_opts; /* per-filesystem options; "" when the line has none */
};

/* Reads the next mount of the NUL-terminated text at *cursor into m, cutting
 * the text up (NULs in place of separators), and advances *cursor past its
 * line. Malformed lines are skipped. Returns false at the end of the text. */
bool vigil_mountinfo_next(char **cursor, struct vigil_mountinfo *m);

/* True when the comma-separated option list `opts` holds `opt` exactly
 * ("ro" in "ro,noatime", not in "rootcontext=x"). */
bool vigil_mountinfo_has_option(const char *opts, const char *opt);

#endif

/* Reading a small file (a /proc or sysfs entry) whole, by path. Part of
 * the plugins' helper library (plugins/common).
 */
#ifndef VIGIL_SMALL_FILE_H
#define VIGIL_SMALL_FILE_H

#include <stddef.h>

/* Reads the file at path into buf (cap bytes, cap >= 1), at most cap - 1
 * bytes, and terminates it with a NUL. Returns the length read, or -errno
 * when it cannot be opened. */
int vigil_read_small_file(const char *path, char *buf, size_t cap);

#endif

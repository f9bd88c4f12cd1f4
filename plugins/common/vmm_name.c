/* A VMM's VM name from its command line (see vmm_name.h): one derivation for
 * every source that names VMs, so their `vm` labels agree.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "small_file.h"
#include "vmm_name.h"

#define CMDLINE_MAX (64 * 1024)

/* QEMU's -name: "guest=NAME,debug-threads=on" or "NAME[,process=...]". */
static void qemu_name(const char *v, char *out, size_t cap)
{
    const char *g = strstr(v, "guest=");
    const char *p = (g && (g == v || g[-1] == ',')) ? g + 6 : v;
    size_t n = strcspn(p, ",");
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

/* The name an argument pair gives (arg "-name", val "guest=web,debug-threads=on"
 * gives "web") into out; false when arg names none. */
static bool name_arg(const char *arg, const char *val, char *out, size_t cap)
{
    if (strcmp(arg, "-name") == 0 || strcmp(arg, "--name") == 0) {
        qemu_name(val, out, cap);
        return true;
    }
    if (strcmp(arg, "--id") == 0) { /* Firecracker */
        snprintf(out, cap, "%s", val);
        return true;
    }
    return false;
}

/* Reads up to cap - 1 bytes of a file; the length, or -1. */
void vigil_vmm_name(pid_t pid, char *out, size_t cap)
{
    if (cap == 0) {
        return;
    }
    out[0] = '\0';
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    char *buf = malloc(CMDLINE_MAX);
    ssize_t len = buf ? vigil_read_small_file(path, buf, CMDLINE_MAX) : -1;
    for (ssize_t i = 0; len > 0 && i < len;) {
        const char *arg = buf + i;
        i += (ssize_t)strlen(arg) + 1;
        if (i >= len) {
            break;
        }
        name_arg(arg, buf + i, out, cap); /* the last one wins, as in QEMU */
    }
    free(buf);
    if (!out[0]) {
        snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
        if (vigil_read_small_file(path, out, cap) > 0) {
            out[strcspn(out, "\n")] = '\0';
        }
    }
    if (!out[0]) {
        snprintf(out, cap, "%d", (int)pid);
    }
}

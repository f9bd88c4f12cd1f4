/* The name of a VM as its VMM's command line gives it: QEMU's or kvmtool's
 * `-name` (`guest=NAME,...` or `NAME,...`), Firecracker's `--id`, else the
 * process's comm, else its pid. The kvm source names its VMs with it and the
 * net source labels a VMM's tap devices with the same name. Part of the
 * plugins' helper library (plugins/common).
 */
#ifndef VIGIL_VMM_NAME_H
#define VIGIL_VMM_NAME_H

#include <stddef.h>
#include <sys/types.h>

/* The name of VMM process `pid`, into out (cap bytes): from
 * /proc/<pid>/cmdline, else /proc/<pid>/comm, else the pid in decimal.
 * Reads at most 64 KiB of command line. Any thread may call it. */
void vigil_vmm_name(pid_t pid, char *out, size_t cap);

#endif

/* kvm_guest: the smallest VMM test_kvm needs. One VM, one vCPU in real mode
 * running `spin; out 0x10, al; hlt; jmp back`, so each loop is one I/O exit
 * and one HLT exit to user space; the run loop sleeps between loops to pace
 * them at -hz loops per second. The test compiles it with cc at run time.
 *
 *   kvm_guest [-name NAME] [-hz LOOPS_PER_S] [-spin N] [-m MIB] [-statsfd 1]
 *             [-vcpu-delay MS] [-tap NAME [-tap-first MS]]
 *
 * -spin: guest `loop` iterations per loop (guest CPU time). -m: guest memory
 * in MiB, all touched, given as QEMU gives it. -statsfd 1 opens
 * the vCPU and VM binary stats fds and keeps them, as QEMU does; without it
 * the guest opens none, like VMMs that never ask for stats. -vcpu-delay
 * waits that long between creating the VM and its vCPU. -tap makes a tap
 * device of that name (/dev/net/tun, IFF_TAP | IFF_NO_PI) once the VM
 * exists and keeps its fd, as QEMU's -netdev tap does; with -tap-first, MS
 * before the VM instead (libvirt makes the tap before QEMU makes the VM).
 * Prints "vm" once
 * the VM exists and "ready" after the first loop; runs until killed.
 * Exit 2: no usable KVM here.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CODE_GPA 0x1000
#define SPIN_GPA 0x2000

/* Real-mode code at CODE_GPA; reads its spin count from SPIN_GPA. */
static const unsigned char guest_code[] = {
    0x66, 0x8b, 0x0e, 0x00, 0x20, /* mov ecx, [0x2000] */
    0x67, 0xe2, 0xfd,             /* a32 loop $: ecx iterations */
    0xe6, 0x10,                   /* out 0x10, al */
    0xf4,                         /* hlt */
    0xeb, 0xf3,                   /* jmp back to the mov */
};

/* A tap device held by this process until it exits, as QEMU's -netdev tap. */
static int open_tap(const char *name)
{
    int tfd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    if (tfd < 0 || ioctl(tfd, TUNSETIFF, &ifr) < 0) {
        fprintf(stderr, "kvm_guest: tap %s: %s\n", name, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    double hz = 50;
    uint32_t spin = 1;
    size_t mem_bytes = 2u << 20;
    int statsfd = 0;
    long vcpu_delay_ms = 0;
    const char *tap = NULL;
    long tap_first_ms = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-hz") == 0) {
            hz = atof(argv[i + 1]);
        } else if (strcmp(argv[i], "-spin") == 0) {
            spin = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "-m") == 0) { /* QEMU's spelling: the plugin reads it */
            const char *m = argv[i + 1];
            m += strncmp(m, "size=", 5) == 0 ? 5 : 0; /* "size=16M,slots=2": MiB only */
            mem_bytes = (size_t)atol(m) << 20;
        } else if (strcmp(argv[i], "-statsfd") == 0) {
            statsfd = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "-vcpu-delay") == 0) {
            vcpu_delay_ms = atol(argv[i + 1]);
        } else if (strcmp(argv[i], "-tap") == 0) {
            tap = argv[i + 1];
        } else if (strcmp(argv[i], "-tap-first") == 0) {
            tap_first_ms = atol(argv[i + 1]);
        } /* -name is only for the plugin, from /proc/<pid>/cmdline */
    }
    signal(SIGPIPE, SIG_IGN); /* whoever reads our stdout may stop early */
    if (spin == 0) {
        spin = 1; /* loop with ecx = 0 would run 2^32 times */
    }
    if (tap && tap_first_ms > 0) {
        if (open_tap(tap) != 0) {
            return 1;
        }
        struct timespec d = {.tv_sec = tap_first_ms / 1000,
                             .tv_nsec = tap_first_ms % 1000 * 1000000L};
        nanosleep(&d, NULL);
    }
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        fprintf(stderr, "kvm_guest: /dev/kvm: %s\n", strerror(errno));
        return 2;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        fprintf(stderr, "kvm_guest: KVM_CREATE_VM: %s\n", strerror(errno));
        return 2;
    }
    /* Touch all of guest memory so it is resident, as a booted guest's is. */
    unsigned char *mem = mmap(NULL, mem_bytes, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
        perror("kvm_guest: mmap");
        return 1;
    }
    memset(mem, 0xf4, mem_bytes);
    memcpy(mem + CODE_GPA, guest_code, sizeof guest_code);
    memcpy(mem + SPIN_GPA, &spin, sizeof spin);
    struct kvm_userspace_memory_region region = {.slot = 0,
                                                 .guest_phys_addr = 0,
                                                 .memory_size = mem_bytes,
                                                 .userspace_addr = (uintptr_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        perror("kvm_guest: KVM_SET_USER_MEMORY_REGION");
        return 1;
    }
    if (tap && tap_first_ms == 0 && open_tap(tap) != 0) {
        return 1;
    }
    printf("vm\n");
    fflush(stdout);
    if (vcpu_delay_ms > 0) {
        struct timespec d = {.tv_sec = vcpu_delay_ms / 1000,
                             .tv_nsec = vcpu_delay_ms % 1000 * 1000000L};
        nanosleep(&d, NULL);
    }
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vcpu < 0 || run_size <= 0) {
        fprintf(stderr, "kvm_guest: KVM_CREATE_VCPU: %s\n", strerror(errno));
        return 2;
    }
    if (statsfd && (ioctl(vcpu, KVM_GET_STATS_FD, 0) < 0 || ioctl(vm, KVM_GET_STATS_FD, 0) < 0)) {
        fprintf(stderr, "kvm_guest: KVM_GET_STATS_FD: %s\n", strerror(errno));
        return 2;
    }
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    struct kvm_sregs sregs;
    if (run == MAP_FAILED || ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) {
        perror("kvm_guest: vcpu setup");
        return 1;
    }
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    sregs.ds.base = 0;
    sregs.ds.selector = 0;
    struct kvm_regs regs = {.rip = CODE_GPA, .rflags = 0x2};
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(vcpu, KVM_SET_REGS, &regs) < 0) {
        perror("kvm_guest: vcpu regs");
        return 1;
    }
    /* Absolute deadlines: the rate does not drift with the loop's own time. */
    long period_ns = hz > 0 ? (long)(1e9 / hz) : 1000000000L;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    int ready = 0;
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("kvm_guest: KVM_RUN");
            return 1;
        }
        if (run->exit_reason == KVM_EXIT_IO) {
            continue; /* straight on to the hlt */
        }
        if (run->exit_reason != KVM_EXIT_HLT) {
            fprintf(stderr, "kvm_guest: unexpected exit reason %u\n", run->exit_reason);
            return 1;
        }
        if (!ready) {
            ready = 1;
            printf("ready\n");
            fflush(stdout);
        }
        next.tv_nsec += period_ns;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {
        }
    }
}

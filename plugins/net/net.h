/* net source plugin: the state its files share. net.c holds the options, the
 * collection and the events; net_link.c speaks rtnetlink (the link dump,
 * netns ids) and ethtool; net_ns.c finds network namespaces, enters them and
 * reads their SNMP counters; net_owner.c finds whose a namespace or a tap
 * device is (cgroup labels, the VMM holding a tap).
 */
#ifndef VIGIL_PLUGIN_NET_H
#define VIGIL_PLUGIN_NET_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroup_labels.h"
#include "vigil/plugin.h"

/* The link counters of IFLA_STATS64 the plugin publishes, in value order. */
enum net_ctr {
    NC_RX_BYTES,
    NC_TX_BYTES,
    NC_RX_PACKETS,
    NC_TX_PACKETS,
    NC_RX_DROPPED,
    NC_TX_DROPPED,
    NC_RX_ERRORS,
    NC_TX_ERRORS,
    NC_N
};
extern const char *const net_ctr_total[NC_N];
extern const char *const net_ctr_rate[NC_N];

/* The SNMP counters of a namespace (/proc/net/snmp, /proc/net/netstat). */
enum net_snmp {
    NS_TCP_OUT_SEGS,
    NS_TCP_RETRANS_SEGS,
    NS_TCP_IN_ERRS,
    NS_TCP_LISTEN_DROPS,
    NS_TCP_LISTEN_OVERFLOWS,
    NS_UDP_RCVBUF_ERRORS,
    NS_UDP_IN_ERRORS,
    NS_N
};

/* Whose something is: a cgroup path and the labels derived from it. */
struct net_owner {
    bool set;
    char cgroup[512];
    char buf[768];
    struct vigil_cgroup_labels l;
};

/* What made a tap or tun device: the VMM (a process holding a kvm-vm fd) that
 * holds it open. */
struct net_vmm {
    pid_t pid;
    char pid_str[12];
    char vm[128];
    struct net_owner owner;
};

struct net_if {
    int ifindex;
    char name[IFNAMSIZ];
    char kind[24];
    bool selected; /* interfaces/ignore */
    bool seen;     /* in this collection's dump */
    bool tun;      /* kind tun or tap: its holder is looked for */
    unsigned flags;
    uint8_t operstate, carrier;
    uint32_t mtu;
    int64_t speed_mbps; /* -1: unknown */
    int32_t link_nsid;  /* -1: none */
    uint64_t cur[NC_N], prev[NC_N];
    bool have_prev, have_rate;
    double rate[NC_N];
    struct net_vmm *vmm; /* NULL: not held by a VMM (that we know of) */
};

struct net_nsid {
    int32_t nsid;
    uint64_t ino; /* 0: not one of ours */
};

struct net_ns {
    uint64_t ino;
    char ino_str[24];
    char label[96]; /* host, a /run/netns name, ns-<inode> */
    bool host, seen, named;
    bool dumped;             /* its links were read in this collection */
    int fd;                  /* the namespace itself (nsfs) */
    int nl;                  /* NETLINK_ROUTE socket inside it */
    int snmp_fd, netstat_fd; /* /proc/thread-self/net/{snmp,netstat} opened inside it */
    uint32_t seq;            /* netlink sequence numbers */
    struct net_if *ifs;
    size_t nifs, cap_ifs;
    struct net_nsid *nsids; /* netnsid (as this namespace numbers others) -> inode */
    size_t nnsids, cap_nsids;
    /* SNMP readings and when */
    uint64_t snmp[NS_N], snmp_prev[NS_N];
    bool have_snmp, have_snmp_prev;
    uint64_t snmp_ns, snmp_prev_ns, link_ns, link_prev_ns;
    /* the processes inside, as discovery last counted them */
    size_t nprocs;
    uint64_t procs_sig, owner_sig;
    bool owner_due;
    int owner_rank; /* of the best process so far: see net_owner.c */
    struct net_owner owner;
};

struct net_state {
    struct vigil_instance *h;
    const struct vigil_api *api;
    /* options */
    bool namespaces, snmp, per_interface;
    uint64_t rescan_ns;
    const char **want, **ignore;
    size_t nwant, nignore;
    /* namespaces */
    struct net_ns **ns;
    size_t nns, cap_ns, find_hint;
    int home_fd; /* the instance thread's own namespace */
    uint64_t home_ino;
    dev_t nsfs_dev;
    bool home_tried, broken;
    /* (pid, netns inode) of every process, in /proc's (increasing) order,
     * this discovery's and the last one's; first_ns: when the process was
     * first seen, 0 when it was there at the plugin's start */
    struct net_proc {
        pid_t pid;
        uint64_t ino, first_ns;
    } *procs, *procs_old;
    size_t nprocs, nprocs_old, cap_procs;
    bool listed;
    uint64_t refused[64]; /* namespaces we may not enter, until the next rescan */
    size_t nrefused;
    _Alignas(8) char dents[32768]; /* getdents64 records are 8-byte aligned */
    _Alignas(8) char dents_fd[16384];
    /* the netlink receive buffer and the /proc file buffer */
    char *buf;
    size_t buf_cap;
    char text[16384];
    uint64_t last_rescan_ns;
    bool rescanned;
    bool tun_scan_due;                 /* a tun/tap device appeared */
    uint64_t tun_next_ns, tun_wait_ns; /* the next look for holders, and the wait after it */
    /* counters in vigil.self */
    int c_namespaces, c_interfaces, c_read_errors, c_owner_scans;
};

/* getdents64(2)'s records: the plugin lists /proc without opendir's
 * allocations. */
struct net_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Logs a warning that may repeat, rate-limited by the host. */
void net_warn(struct net_state *s, const char *fmt, ...) VIGIL_PRINTF(2, 3);

/* ---- net_link.c ---- */
/* Opens a NETLINK_ROUTE socket in the calling thread's namespace; fd or -errno. */
int net_nl_open(void);
/* Dumps the links of ns into ns->ifs (marking each seen, reusing entries by
 * ifindex, dropping the ones gone). Returns the number of links or -errno. */
int net_link_dump(struct net_state *s, struct net_ns *ns);
/* The inode of the namespace that ns numbers `nsid`, or 0 when it is none
 * of the namespaces the plugin holds. Asks the kernel (RTM_GETNSID with each
 * held namespace's fd) only on a miss. */
uint64_t net_nsid_ino(struct net_state *s, struct net_ns *ns, int32_t nsid);
/* Forgets every netns id that stands for `ino` (a namespace let go of). */
void net_nsid_forget(struct net_state *s, uint64_t ino);

/* ---- net_ns.c ---- */
/* Finds the namespaces (all, or only the host's), opens the new ones, lets
 * go of the ones gone; fills s->procs. The namespace of a process seen
 * before is read again only while it is young (seen first less than 10 s
 * ago) or when full. Returns 0 or -errno. */
int net_ns_discover(struct net_state *s, bool full);
/* Reads the SNMP counters of ns into ns->snmp. 0 or -errno. */
int net_ns_snmp(struct net_state *s, struct net_ns *ns);
/* Calls fn(s, dir, name, arg) for each entry of directory dir but "." and
 * "..", listing it with getdents64 into buf (cap bytes). 0 or -errno. */
int net_each_entry(int dir, char *buf, size_t cap,
                   void (*fn)(struct net_state *, int, const char *, void *), struct net_state *s,
                   void *arg);
struct net_ns *net_ns_find(struct net_state *s, uint64_t ino);
void net_ns_free(struct net_ns *ns);

/* ---- net_owner.c ---- */
/* Works out the owners of the namespaces whose processes changed or whose
 * refresh is due (from s->procs). */
void net_owner_namespaces(struct net_state *s, bool rescan);
/* Looks through every process's fds for the tun/tap devices of ns tables
 * that VMMs hold; sets each such interface's vmm. Returns how many tun/tap
 * devices are left without one. */
size_t net_owner_taps(struct net_state *s);
/* Adds labels.cgroup and the derived labels of o; without `vm` when skip_vm. */
void net_owner_labels(struct net_state *s, struct vigil_event_builder *ev,
                      const struct net_owner *o, bool skip_vm);

#endif

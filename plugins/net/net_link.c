/* net: rtnetlink. One RTM_GETLINK dump per namespace and collection gives
 * every interface's IFLA_STATS64 counters, flags, MTU, kind and veth peer;
 * RTM_GETNSID tells which namespace a peer's netns id stands for; the
 * ethtool ioctl, on the same socket, gives a link's speed.
 */
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/net_namespace.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <net/if_arp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "net.h"

int net_nl_open(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) {
        return -errno;
    }
    /* A dump always ends; the timeout only guards against a kernel bug
     * stalling the instance's thread for good. */
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* ---- speed (ethtool) --------------------------------------------------- */

/* The link speed in Mb/s, -1 when the driver does not say. SIOCETHTOOL
 * works on any socket of the namespace: the netlink socket will do. */
static int64_t link_speed(int nl, const char *name)
{
    struct ethtool_cmd cmd = {.cmd = ETHTOOL_GSET};
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    size_t len = strnlen(name, IFNAMSIZ - 1); /* the rest stays zero: terminated */
    memcpy(ifr.ifr_name, name, len);
    ifr.ifr_data = (void *)&cmd;
    if (ioctl(nl, SIOCETHTOOL, &ifr) != 0) {
        return -1;
    }
    /* As ethtool_cmd_speed(), whose int shift overflows for SPEED_UNKNOWN. */
    uint32_t speed = (uint32_t)cmd.speed_hi << 16 | cmd.speed;
    return speed == 0 || speed == (uint32_t)SPEED_UNKNOWN ? -1 : (int64_t)speed;
}

/* ---- the link dump ------------------------------------------------------ */

struct link_msg {
    int ifindex;
    unsigned flags, type;
    const char *name;
    const char *kind;
    int tun_type; /* IFF_TUN, IFF_TAP, 0 */
    bool parent;  /* a bus device under it: a physical NIC */
    uint32_t mtu;
    uint8_t operstate, carrier;
    int32_t link_nsid;
    const void *st; /* struct rtnl_link_stats64, 4-byte aligned in the message */
};

static void parse_linkinfo(struct link_msg *m, const struct rtattr *info)
{
    int len = (int)RTA_PAYLOAD(info);
    for (const struct rtattr *a = RTA_DATA(info); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type == IFLA_INFO_KIND) {
            m->kind = RTA_DATA(a);
        } else if (a->rta_type == IFLA_INFO_DATA && m->kind && strcmp(m->kind, "tun") == 0) {
            int dl = (int)RTA_PAYLOAD(a);
            for (const struct rtattr *d = RTA_DATA(a); RTA_OK(d, dl); d = RTA_NEXT(d, dl)) {
                if (d->rta_type == IFLA_TUN_TYPE && RTA_PAYLOAD(d) >= 1) {
                    m->tun_type = *(const uint8_t *)RTA_DATA(d);
                }
            }
        }
    }
}

static bool parse_link(const struct nlmsghdr *h, struct link_msg *m)
{
    if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg))) {
        return false;
    }
    const struct ifinfomsg *ifi = NLMSG_DATA(h);
    memset(m, 0, sizeof *m);
    m->ifindex = ifi->ifi_index;
    m->flags = ifi->ifi_flags;
    m->type = ifi->ifi_type;
    m->link_nsid = -1;
    int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *ifi));
    for (const struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        size_t pl = RTA_PAYLOAD(a);
        switch (a->rta_type) {
        case IFLA_IFNAME:
            m->name = RTA_DATA(a);
            break;
        case IFLA_MTU:
            if (pl >= 4) {
                memcpy(&m->mtu, RTA_DATA(a), 4);
            }
            break;
        case IFLA_OPERSTATE:
            m->operstate = pl >= 1 ? *(const uint8_t *)RTA_DATA(a) : 0;
            break;
        case IFLA_CARRIER:
            m->carrier = pl >= 1 ? *(const uint8_t *)RTA_DATA(a) : 0;
            break;
        case IFLA_STATS64:
            if (pl >= sizeof(struct rtnl_link_stats64)) {
                m->st = RTA_DATA(a);
            }
            break;
        case IFLA_LINKINFO:
            parse_linkinfo(m, a);
            break;
        case IFLA_LINK_NETNSID:
            if (pl >= 4) {
                memcpy(&m->link_nsid, RTA_DATA(a), 4);
            }
            break;
        case IFLA_PARENT_DEV_NAME:
            m->parent = true;
            break;
        default:
            break;
        }
    }
    return m->name != NULL && m->st != NULL;
}

/* The `kind` label: IFLA_INFO_KIND, tap told from tun, else what the device is. */
static void link_kind(const struct link_msg *m, char *out, size_t cap)
{
    const char *k = m->kind;
    if (k && strcmp(k, "tun") == 0) {
        k = m->tun_type == IFF_TAP ? "tap" : "tun";
    } else if (!k || !*k) {
        k = m->type == ARPHRD_LOOPBACK ? "loopback" : m->parent ? "physical" : "other";
    }
    size_t n = strlen(k);
    n = n < cap - 1 ? n : cap - 1;
    memcpy(out, k, n);
    out[n] = '\0';
}

static bool selected(struct net_state *s, const char *name)
{
    size_t len = strlen(name);
    bool in = s->nwant == 0;
    for (size_t i = 0; i < s->nwant && !in; i++) {
        in = s->api->glob_match(s->want[i], name, len);
    }
    for (size_t i = 0; i < s->nignore && in; i++) {
        in = !s->api->glob_match(s->ignore[i], name, len);
    }
    return in;
}

/* The entry of ifindex; the dump lists links in ifindex order, so the
 * search starts where the last one was found. NULL when it is new. */
static struct net_if *find_if(struct net_ns *ns, int ifindex, size_t *hint)
{
    for (size_t k = 0; k < ns->nifs; k++) {
        size_t i = (*hint + k) % ns->nifs;
        if (ns->ifs[i].ifindex == ifindex) {
            *hint = i + 1;
            return &ns->ifs[i];
        }
    }
    return NULL;
}

static struct net_if *add_if(struct net_ns *ns)
{
    if (ns->nifs == ns->cap_ifs) {
        size_t cap = ns->cap_ifs ? ns->cap_ifs * 2 : 8;
        struct net_if *a = realloc(ns->ifs, cap * sizeof *a);
        if (!a) {
            return NULL;
        }
        ns->ifs = a;
        ns->cap_ifs = cap;
    }
    struct net_if *i = &ns->ifs[ns->nifs++];
    memset(i, 0, sizeof *i);
    return i;
}

static void if_reset(struct net_state *s, struct net_ns *ns, struct net_if *i,
                     const struct link_msg *m, const char *kind)
{
    free(i->vmm);
    memset(i, 0, sizeof *i);
    i->ifindex = m->ifindex;
    snprintf(i->name, sizeof i->name, "%s", m->name);
    snprintf(i->kind, sizeof i->kind, "%s", kind);
    i->selected = selected(s, i->name);
    i->tun = strcmp(kind, "tap") == 0 || strcmp(kind, "tun") == 0;
    i->speed_mbps = link_speed(ns->nl, i->name);
    i->carrier = m->carrier;
    if (i->tun) {
        s->tun_scan_due = true; /* a new tap: whose is it? */
    }
}

static void update_if(struct net_state *s, struct net_ns *ns, const struct link_msg *m,
                      size_t *hint)
{
    char kind[sizeof((struct net_if *)0)->kind];
    link_kind(m, kind, sizeof kind);
    struct net_if *i = find_if(ns, m->ifindex, hint);
    if (i && (strcmp(i->name, m->name) != 0 || strcmp(i->kind, kind) != 0)) {
        if_reset(s, ns, i, m, kind); /* renamed, or the index was reused */
    } else if (!i) {
        i = add_if(ns);
        if (!i) {
            return;
        }
        i->vmm = NULL;
        if_reset(s, ns, i, m, kind);
    } else if (i->carrier != m->carrier) {
        i->carrier = m->carrier;
        i->speed_mbps = link_speed(ns->nl, i->name); /* renegotiated */
    }
    i->seen = true;
    i->flags = m->flags;
    i->operstate = m->operstate;
    i->mtu = m->mtu;
    i->link_nsid = m->link_nsid;
    struct rtnl_link_stats64 st;
    memcpy(&st, m->st, sizeof st);
    uint64_t v[NC_N];
    v[NC_RX_BYTES] = st.rx_bytes;
    v[NC_TX_BYTES] = st.tx_bytes;
    v[NC_RX_PACKETS] = st.rx_packets;
    v[NC_TX_PACKETS] = st.tx_packets;
    v[NC_RX_DROPPED] = st.rx_dropped;
    v[NC_TX_DROPPED] = st.tx_dropped;
    v[NC_RX_ERRORS] = st.rx_errors;
    v[NC_TX_ERRORS] = st.tx_errors;
    memcpy(i->prev, i->cur, sizeof i->prev);
    i->have_rate = i->have_prev && ns->link_ns > ns->link_prev_ns;
    double dt = (double)(ns->link_ns - ns->link_prev_ns) / 1e9;
    for (int k = 0; k < NC_N; k++) {
        if (i->have_rate && v[k] < i->prev[k]) {
            i->have_rate = false; /* a counter went back: the driver reset it */
        }
        i->rate[k] = i->have_rate ? (double)(v[k] - i->prev[k]) / dt : 0;
    }
    memcpy(i->cur, v, sizeof v);
    i->have_prev = true;
}

/* Sends a request and walks the answers until NLMSG_DONE (a dump) or the
 * one answer. fn sees each message. Returns 0 or -errno. */
static int nl_talk(struct net_state *s, struct net_ns *ns, struct nlmsghdr *req, bool dump,
                   void (*fn)(struct net_state *, struct net_ns *, const struct nlmsghdr *, void *),
                   void *arg)
{
    req->nlmsg_seq = ++ns->seq;
    struct sockaddr_nl to = {.nl_family = AF_NETLINK};
    if (sendto(ns->nl, req, req->nlmsg_len, 0, (struct sockaddr *)&to, sizeof to) < 0) {
        return -errno;
    }
    for (;;) {
        ssize_t n = recv(ns->nl, s->buf, s->buf_cap, MSG_TRUNC);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if ((size_t)n > s->buf_cap) {
            return -EMSGSIZE;
        }
        size_t left = (size_t)n;
        for (const struct nlmsghdr *h = (const struct nlmsghdr *)s->buf; NLMSG_OK(h, left);
             h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != req->nlmsg_seq) {
                continue; /* the tail of an earlier, abandoned exchange */
            }
            if (h->nlmsg_type == NLMSG_DONE) {
                return 0;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                return h->nlmsg_len >= NLMSG_LENGTH(sizeof *e) ? e->error : -EPROTO;
            }
            fn(s, ns, h, arg);
            if (!dump) {
                return 0;
            }
        }
    }
}

static void on_link(struct net_state *s, struct net_ns *ns, const struct nlmsghdr *h, void *arg)
{
    struct link_msg m;
    if (parse_link(h, &m)) {
        update_if(s, ns, &m, arg);
    }
}

int net_link_dump(struct net_state *s, struct net_ns *ns)
{
    struct {
        struct nlmsghdr h;
        struct ifinfomsg ifi;
    } req = {
        .h = {.nlmsg_len = sizeof req,
              .nlmsg_type = RTM_GETLINK,
              .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
        .ifi = {.ifi_family = AF_UNSPEC},
    };
    for (size_t i = 0; i < ns->nifs; i++) {
        ns->ifs[i].seen = false;
    }
    ns->link_prev_ns = ns->link_ns;
    ns->link_ns = s->api->mono_ns();
    size_t hint = 0;
    int rc = nl_talk(s, ns, &req.h, true, on_link, &hint);
    if (rc != 0) {
        /* Some entries may hold this reading, some the last: no rates from
         * either next time. */
        for (size_t i = 0; i < ns->nifs; i++) {
            ns->ifs[i].have_prev = false;
        }
        return rc;
    }
    size_t out = 0;
    for (size_t i = 0; i < ns->nifs; i++) {
        if (ns->ifs[i].seen) {
            ns->ifs[out++] = ns->ifs[i];
        } else {
            free(ns->ifs[i].vmm);
        }
    }
    ns->nifs = out;
    return (int)out;
}

/* ---- netns ids ------------------------------------------------------------ */

static void on_nsid(struct net_state *s, struct net_ns *ns, const struct nlmsghdr *h, void *arg)
{
    (void)s;
    (void)ns;
    int32_t *out = arg;
    if (h->nlmsg_type != RTM_NEWNSID || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtgenmsg))) {
        return;
    }
    int len = (int)(h->nlmsg_len - NLMSG_LENGTH(NLMSG_ALIGN(sizeof(struct rtgenmsg))));
    const struct rtattr *a =
        (const struct rtattr *)((const char *)NLMSG_DATA(h) + NLMSG_ALIGN(sizeof(struct rtgenmsg)));
    for (; RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type == NETNSA_NSID && RTA_PAYLOAD(a) >= 4) {
            memcpy(out, RTA_DATA(a), 4);
        }
    }
}

/* The id namespace `in` gives namespace `other` (whose fd we hold), -1 when
 * it gives none. */
static int32_t ask_nsid(struct net_state *s, struct net_ns *in, int other_fd)
{
    struct {
        struct nlmsghdr h;
        struct rtgenmsg g;
        char pad[3];
        struct rtattr a;
        uint32_t fd;
    } req;
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = RTM_GETNSID;
    req.h.nlmsg_flags = NLM_F_REQUEST;
    req.g.rtgen_family = AF_UNSPEC;
    req.a.rta_type = NETNSA_FD;
    req.a.rta_len = RTA_LENGTH(sizeof(uint32_t));
    req.fd = (uint32_t)other_fd;
    int32_t nsid = -1;
    if (nl_talk(s, in, &req.h, false, on_nsid, &nsid) != 0) {
        return -1;
    }
    return nsid;
}

uint64_t net_nsid_ino(struct net_state *s, struct net_ns *ns, int32_t nsid)
{
    if (nsid < 0) {
        return 0;
    }
    for (size_t i = 0; i < ns->nnsids; i++) {
        if (ns->nsids[i].nsid == nsid) {
            return ns->nsids[i].ino;
        }
    }
    uint64_t ino = 0;
    for (size_t k = 0; k < s->nns && !ino; k++) {
        struct net_ns *o = s->ns[k];
        if (o != ns && o->fd >= 0 && ask_nsid(s, ns, o->fd) == nsid) {
            ino = o->ino;
        }
    }
    if (ns->nnsids == ns->cap_nsids) {
        size_t cap = ns->cap_nsids ? ns->cap_nsids * 2 : 4;
        struct net_nsid *a = realloc(ns->nsids, cap * sizeof *a);
        if (!a) {
            return ino;
        }
        ns->nsids = a;
        ns->cap_nsids = cap;
    }
    /* A miss is remembered too (ino 0): a namespace the plugin does not
     * hold; discovery forgets misses when a namespace is added. */
    ns->nsids[ns->nnsids++] = (struct net_nsid){.nsid = nsid, .ino = ino};
    return ino;
}

void net_nsid_forget(struct net_state *s, uint64_t ino)
{
    for (size_t k = 0; k < s->nns; k++) {
        struct net_ns *ns = s->ns[k];
        size_t out = 0;
        for (size_t i = 0; i < ns->nnsids; i++) {
            if (ns->nsids[i].ino != ino) {
                ns->nsids[out++] = ns->nsids[i];
            }
        }
        ns->nnsids = out;
    }
}

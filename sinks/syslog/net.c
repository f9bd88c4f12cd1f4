/* net: unix datagram, UDP and TCP transports of the syslog sink (see net.h).
 *
 * Failure handling, per transport:
 *  - tcp: before each message the socket is polled for a FIN or RST the
 *    server sent (a syslog server never sends data), so a restarted server
 *    is noticed before a message goes into a dead connection. A send error
 *    on an established connection closes it and the message is sent once
 *    more on a new one at once; a connection that fails right after being
 *    made waits for the host's retry. A message sent only in part closes
 *    the connection too (its framing is broken). A reset, or EOF while
 *    bytes were unacknowledged, means the server dropped what it had not
 *    read: the replay window is sent again (replay.h).
 *  - unix: the server's socket file gone or replaced shows as ECONNREFUSED
 *    or ENOENT: reconnect (to the new socket) and resend once at once.
 *    Datagrams the old server had not read are replayed; SIOCOUTQ tells
 *    when the server has read all we sent, and the ring is cleared then,
 *    so a restart replays only the few it had queued.
 *  - udp: an ICMP port unreachable makes the next send fail; that message
 *    is retried later, a datagram the server never got is lost (UDP).
 */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PORT "514"
#define REPLAY_RING_BYTES (1024u * 1024u)

static const char *parse_port(struct net *n, const char *p)
{
    size_t len = strlen(p);
    if (len == 0 || len > 5 || strspn(p, "0123456789") != len || atoi(p) < 1 || atoi(p) > 65535) {
        return "the port must be a number from 1 to 65535";
    }
    memcpy(n->port, p, len + 1);
    return NULL;
}

const char *net_parse(struct net *n, const char *a, uint64_t timeout_ns)
{
    memset(n, 0, sizeof *n);
    n->fd = -1;
    n->timeout_ns = timeout_ns;
    snprintf(n->url, sizeof n->url, "%s", a);
    if (strncmp(a, "unix://", 7) == 0) {
        const char *path = a + 7;
        if (path[0] != '/') {
            return "a unix address needs an absolute path, as in unix:///dev/log";
        }
        if (strlen(path) >= sizeof n->path) {
            return "the socket path is too long (at most 107 bytes)";
        }
        n->kind = NET_UNIX;
        memcpy(n->path, path, strlen(path) + 1);
        return NULL;
    }
    if (strncmp(a, "udp://", 6) == 0) {
        n->kind = NET_UDP;
    } else if (strncmp(a, "tcp://", 6) == 0) {
        n->kind = NET_TCP;
    } else {
        return "the address must start with unix://, udp:// or tcp://";
    }
    const char *h = a + 6, *h_end, *port = NULL;
    if (*h == '[') {
        h_end = strchr(++h, ']');
        if (!h_end) {
            return "an IPv6 address needs its closing ']', as in tcp://[::1]:514";
        }
        if (h_end[1] == ':') {
            port = h_end + 2;
        } else if (h_end[1] != '\0') {
            return "expected ':port' after ']'";
        }
    } else {
        h_end = strchr(h, ':');
        if (h_end && strchr(h_end + 1, ':')) {
            return "write an IPv6 address in brackets, as in tcp://[::1]:514";
        }
        port = h_end ? h_end + 1 : NULL;
        h_end = h_end ? h_end : h + strlen(h);
    }
    size_t hl = (size_t)(h_end - h);
    if (hl == 0) {
        return "the address has no host";
    }
    if (hl >= sizeof n->host || memchr(h, '/', hl)) {
        return "the host is not a name or an address (too long, or holds a '/')";
    }
    memcpy(n->host, h, hl);
    n->host[hl] = '\0';
    if (!port) {
        memcpy(n->port, DEFAULT_PORT, sizeof DEFAULT_PORT);
        return NULL;
    }
    return parse_port(n, port);
}

int net_resolve(struct net *n)
{
    if (n->kind == NET_UNIX) {
        return 0;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = n->kind == NET_TCP ? SOCK_STREAM : SOCK_DGRAM,
        .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
    };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(n->host, n->port, &hints, &res);
    if (rc == EAI_NONAME) {
        hints.ai_flags = AI_NUMERICSERV; /* not an address: a name */
        rc = getaddrinfo(n->host, n->port, &hints, &res);
    }
    if (rc == 0) {
        if (n->ai) {
            freeaddrinfo(n->ai);
        }
        n->ai = res;
    }
    return rc;
}

bool net_connected(const struct net *n)
{
    return n->fd >= 0;
}

void net_close(struct net *n)
{
    if (n->fd >= 0) {
        close(n->fd);
        n->fd = -1;
    }
}

void net_forget(struct net *n)
{
    net_close(n);
    if (n->kind != NET_UNIX && n->ai) {
        freeaddrinfo(n->ai);
        n->ai = NULL;
    }
}

void net_fini(struct net *n)
{
    net_forget(n);
    replay_fini(&n->replay);
    free(n->scratch);
    n->scratch = NULL;
}

int net_replay_init(struct net *n, uint64_t window_ns, size_t max_len)
{
    if (n->kind == NET_UDP || window_ns == 0) {
        return replay_init(&n->replay, 0, 0);
    }
    n->scratch = malloc(NET_HEADROOM + max_len + 1);
    if (!n->scratch || replay_init(&n->replay, REPLAY_RING_BYTES + max_len + 64, window_ns) != 0) {
        free(n->scratch);
        n->scratch = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* Waits for a non-blocking connect; returns 0 or an errno. */
static int connect_wait(struct net *n, int fd)
{
    uint64_t deadline = n->mono_ns() + n->timeout_ns;
    for (;;) {
        uint64_t now = n->mono_ns();
        if (now >= deadline) {
            return ETIMEDOUT;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r = poll(&p, 1, (int)((deadline - now + 999999) / 1000000));
        if (r > 0) {
            int e = 0;
            socklen_t el = sizeof e;
            return getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 ? e : errno;
        }
        if (r < 0 && errno != EINTR) {
            return errno;
        }
    }
}

/* Makes a connected socket of the family and type given; returns it, or -1
 * with *err set. Connects without blocking for longer than the timeout,
 * then leaves the socket blocking with SO_SNDTIMEO, so a send waits for a
 * slow server at most that long. */
static int open_one(struct net *n, int family, int type, int proto, const struct sockaddr *sa,
                    socklen_t salen, int *err)
{
    int fd = socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, proto);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    int e = 0;
    if (connect(fd, sa, salen) != 0) {
        e = errno == EINPROGRESS ? connect_wait(n, fd) : errno;
    }
    struct timeval tv = {.tv_sec = (time_t)(n->timeout_ns / 1000000000u),
                         .tv_usec = (suseconds_t)(n->timeout_ns % 1000000000u / 1000u)};
    int one = 1;
    if (e == 0 && (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0 ||
                   setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
                   (type == SOCK_STREAM &&
                    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0))) {
        e = errno;
    }
    if (e != 0) {
        close(fd);
        *err = e;
        return -1;
    }
    return fd;
}

static void addr_text(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo(sa, len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(buf, cap, "?");
    } else if (sa->sa_family == AF_INET6) {
        snprintf(buf, cap, "[%s]:%s", host, serv);
    } else {
        snprintf(buf, cap, "%s:%s", host, serv);
    }
}

/* Connects n->fd; returns 0 or -1 with why[] filled. */
static int net_connect(struct net *n, char *why, size_t why_cap)
{
    int err = 0;
    if (n->kind == NET_UNIX) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        memcpy(un.sun_path, n->path, sizeof un.sun_path);
        n->fd = open_one(n, AF_UNIX, SOCK_DGRAM, 0, (struct sockaddr *)&un, sizeof un, &err);
        if (n->fd < 0) {
            snprintf(why, why_cap, "connect to %s: %s%s", n->path, strerror(err),
                     err == EPROTOTYPE ? " (a stream socket: this sink sends datagrams, as "
                                         "rsyslog's, journald's and syslog-ng's unix-dgram "
                                         "/dev/log take them)"
                                       : "");
            return -1;
        }
        return 0;
    }
    if (!n->ai) {
        int rc = net_resolve(n);
        if (rc != 0) {
            snprintf(why, why_cap, "resolve %s: %s", n->host, gai_strerror(rc));
            return -1;
        }
    }
    char where[NI_MAXHOST + NI_MAXSERV + 4] = "?";
    for (const struct addrinfo *ai = n->ai; ai; ai = ai->ai_next) {
        n->fd = open_one(n, ai->ai_family, ai->ai_socktype, ai->ai_protocol, ai->ai_addr,
                         ai->ai_addrlen, &err);
        if (n->fd >= 0) {
            return 0;
        }
        addr_text(ai->ai_addr, ai->ai_addrlen, where, sizeof where);
    }
    snprintf(why, why_cap, "connect to %s: %s", where, strerror(err ? err : EHOSTUNREACH));
    return -1;
}

/* Bytes we sent that the other end has not taken: for TCP not yet
 * acknowledged, for a unix datagram socket not yet read by the server. */
static int outq_bytes(int fd)
{
    int q = 0;
    return ioctl(fd, SIOCOUTQ, &q) == 0 ? q : 0;
}

enum conn_state { CONN_ALIVE, CONN_CLOSED, CONN_LOST };

/* Whether the server closed the connection, and if so whether it may have
 * dropped data: a reset (Linux resets when it closes with bytes unread), or
 * EOF while bytes were still unacknowledged. A syslog server sends nothing,
 * so readable means EOF or an error; stray bytes are read and ignored. */
static enum conn_state tcp_state(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) {
        return CONN_ALIVE; /* nothing pending (or EINTR: the send will tell) */
    }
    if (p.revents & POLLERR) {
        return CONN_LOST;
    }
    char junk[512];
    ssize_t k = recv(fd, junk, sizeof junk, MSG_DONTWAIT);
    if (k > 0 || (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))) {
        return CONN_ALIVE;
    }
    return k == 0 && outq_bytes(fd) == 0 ? CONN_CLOSED : CONN_LOST;
}

/* Sends len bytes; returns 0 or an errno, *sent says how many went out. */
static int send_all(int fd, const char *p, size_t len, size_t *sent)
{
    *sent = 0;
    while (*sent < len) {
        ssize_t k = send(fd, p + *sent, len - *sent, MSG_NOSIGNAL);
        if (k > 0) {
            *sent += (size_t)k;
        } else if (k < 0 && errno != EINTR) {
            return errno;
        } else if (k == 0) {
            return EPIPE;
        }
    }
    return 0;
}

/* One message with its framing; returns 0 or an errno, *sent the bytes
 * that went out. */
static int send_msg(struct net *n, char *msg, size_t len, size_t *sent)
{
    if (n->kind != NET_TCP) {
        return send_all(n->fd, msg, len, sent);
    }
    char prefix[NET_HEADROOM]; /* RFC 6587 §3.4.1: MSG-LEN SP SYSLOG-MSG */
    int k = snprintf(prefix, sizeof prefix, "%zu ", len);
    memcpy(msg - k, prefix, (size_t)k);
    return send_all(n->fd, msg - k, len + (size_t)k, sent);
}

/* Sends what waits for a replay, then msg. Returns 0 or an errno. */
static int send_with_replay(struct net *n, char *msg, size_t len, size_t *sent)
{
    char *r = n->scratch + NET_HEADROOM;
    size_t rl;
    while (n->scratch && (rl = replay_peek(&n->replay, r)) > 0) {
        int e = send_msg(n, r, rl, sent);
        if (e != 0) {
            return e;
        }
        replay_next(&n->replay);
        n->replayed++;
    }
    /* Nothing of ours queued at a unix server means it read it all, or
     * that it closed its socket (which freed the queue): the send below
     * tells the two apart, as it fails on a closed socket. */
    bool all_read = n->kind == NET_UNIX && n->replay.cap && outq_bytes(n->fd) == 0;
    int e = send_msg(n, msg, len, sent);
    if (e == 0) {
        if (all_read) {
            replay_clear(&n->replay);
        }
        replay_push(&n->replay, msg, len, n->mono_ns());
    }
    return e;
}

/* The server may have dropped messages it had not read. */
static void lost(struct net *n)
{
    n->losses++;
    n->last_armed = replay_arm(&n->replay, n->mono_ns());
}

static bool lossy_errno(int e)
{
    return e == ECONNRESET || e == EPIPE || e == ECONNREFUSED || e == ENOTCONN || e == ETIMEDOUT ||
           e == ECONNABORTED;
}

enum vigil_write_result net_send(struct net *n, char *msg, size_t len, char *why, size_t why_cap)
{
    bool fresh = false;
    for (;;) {
        if (n->fd >= 0 && n->kind == NET_TCP) {
            enum conn_state st = tcp_state(n->fd);
            if (st == CONN_LOST) {
                lost(n);
            }
            if (st != CONN_ALIVE) {
                net_close(n); /* the server went away since the last message */
            }
        }
        if (n->fd < 0) {
            if (net_connect(n, why, why_cap) != 0) {
                return VIGIL_WRITE_RETRY;
            }
            fresh = true;
        }
        size_t sent;
        int e = send_with_replay(n, msg, len, &sent);
        if (e == 0) {
            return VIGIL_WRITE_OK;
        }
        snprintf(why, why_cap, "send to %s: %s", n->url, strerror(e));
        if (e == EMSGSIZE) {
            return VIGIL_WRITE_FAIL;
        }
        if ((e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) && sent == 0) {
            return VIGIL_WRITE_RETRY; /* the server is slow: keep the connection */
        }
        if (lossy_errno(e)) {
            lost(n); /* also what was resent on this connection, if any */
        }
        net_close(n);
        if (fresh || n->kind == NET_UDP) {
            /* A new connection failed at once, or UDP (where a new socket
             * would "send" into the void): wait for the host's retry. */
            return VIGIL_WRITE_RETRY;
        }
    }
}

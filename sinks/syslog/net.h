/* net: the syslog sink's transports. A local unix datagram socket
 * (/dev/log), UDP (RFC 5426, a datagram per message) and TCP (RFC 6587
 * octet counting), each connected lazily and again after a failure, with
 * every blocking call bounded by a timeout.
 */
#ifndef VIGIL_SYSLOG_NET_H
#define VIGIL_SYSLOG_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

#include "replay.h"
#include "vigil/plugin.h"

/* Bytes a caller leaves free in front of a message for the TCP length
 * prefix ("65536 " and more: up to 20 digits and a space). */
#define NET_HEADROOM 24

enum net_kind { NET_UNIX, NET_UDP, NET_TCP };

struct addrinfo;

struct net {
    enum net_kind kind;
    char url[320];           /* the address as configured, for messages */
    char host[256], port[8]; /* udp, tcp */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* unix */
    struct addrinfo *ai;       /* resolved udp/tcp addresses, or NULL */
    uint64_t timeout_ns;       /* connect and send */
    uint64_t (*mono_ns)(void); /* the host's monotonic clock (api->mono_ns) */
    int fd;                    /* -1 while not connected */
    struct replay replay;      /* tcp, unix: what to resend after a loss */
    char *scratch;             /* NET_HEADROOM + the longest message: a replay */
    uint64_t replayed;         /* messages sent again, in all */
    uint64_t losses;           /* connections that ended with messages unread */
    size_t last_armed;         /* messages marked for resending at the last loss */
};

/* Parses unix:///path, udp://host[:port] or tcp://host[:port] (port 514 if
 * omitted; IPv6 as [addr]:port) into n, not connected. Returns NULL or what
 * is wrong. */
const char *net_parse(struct net *n, const char *address, uint64_t timeout_ns);

/* Sets up the replay of messages sent within window_ns before a loss (0:
 * off; UDP never replays), for messages up to max_len. Returns 0 or
 * -ENOMEM. */
int net_replay_init(struct net *n, uint64_t window_ns, size_t max_len);

/* Resolves host:port (numeric first, then getaddrinfo). Returns 0 or a
 * getaddrinfo EAI_* code; a unix address resolves to 0 at once. */
int net_resolve(struct net *n);

/* Sends one message. msg must have NET_HEADROOM writable bytes in front of
 * it (TCP writes its length prefix there). Connects first if needed and,
 * when an established connection turns out dead, reconnects once at once.
 * On a new connection after a loss, the replay goes first.
 * Returns VIGIL_WRITE_OK when the kernel took the whole message,
 * VIGIL_WRITE_RETRY when it may work later (no server, connection lost,
 * timeout), VIGIL_WRITE_FAIL when this message can never be sent (too big).
 * On failure why[] says what failed ("connect to 127.0.0.1:514: ..."). */
enum vigil_write_result net_send(struct net *n, char *msg, size_t len, char *why, size_t why_cap);

/* True while a connection is open (and not known dead). */
bool net_connected(const struct net *n);

/* Closes the connection (the next send reconnects). */
void net_close(struct net *n);

/* Closes and forgets the resolved addresses: the next send resolves the
 * name again (after SIGHUP, so a changed DNS entry is followed). */
void net_forget(struct net *n);

/* Closes and frees everything. */
void net_fini(struct net *n);

#endif

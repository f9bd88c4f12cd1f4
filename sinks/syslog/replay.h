/* replay: the syslog sink's memory of the messages it sent last. Plain
 * syslog over TCP or a unix socket has no acknowledgements: what a server
 * had not read yet when it stopped is lost though send() succeeded. When a
 * connection ends in a way that says so (a reset, or EOF with bytes still
 * unacknowledged), the messages sent within the replay window are sent
 * again on the new connection: at least once, some maybe twice.
 *
 * A fixed ring of bytes, allocated once; the oldest messages make room.
 */
#ifndef VIGIL_SYSLOG_REPLAY_H
#define VIGIL_SYSLOG_REPLAY_H

#include <stddef.h>
#include <stdint.h>

struct replay {
    char *buf;
    size_t cap;        /* 0: replay is off */
    size_t head, used; /* the oldest entry's offset; bytes in use */
    uint64_t window_ns;
    size_t pend_off; /* offset from head of the next entry to resend */
    size_t pend_n;   /* entries still to resend; 0 = none */
};

/* cap bytes of memory (0 = off). Returns 0 or -ENOMEM. */
int replay_init(struct replay *r, size_t cap, uint64_t window_ns);
void replay_fini(struct replay *r);

/* Remembers a message sent at now_ns (monotonic). A message larger than
 * the ring is not kept. Must not be called while a replay is pending. */
void replay_push(struct replay *r, const char *msg, size_t len, uint64_t now_ns);

/* The server has read everything pushed so far: forget it all. Must not be
 * called while a replay is pending. */
void replay_clear(struct replay *r);

/* The connection ended with possible loss: forget what is older than the
 * window and mark the rest for resending. Returns how many entries. */
size_t replay_arm(struct replay *r, uint64_t now_ns);

/* The next message to resend, copied into out (which holds any message
 * that was pushed); returns its length, or 0 when none is pending. */
size_t replay_peek(const struct replay *r, char *out);

/* The message replay_peek() returned was sent. */
void replay_next(struct replay *r);

#endif

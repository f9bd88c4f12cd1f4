/* Logging to stderr, one line per message: time, level, component, text.
 * When stderr is systemd's journal (JOURNAL_STREAM), the time gives way to
 * the syslog priority journald reads, "<3>" for errors (sd-daemon(3)).
 * Safe from any thread (each line is one write(2)). Also the clocks and the
 * rate limiter that keeps repeated warnings on hot paths to a few lines.
 */
#ifndef VIGIL_LOG_H
#define VIGIL_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "vigil/plugin.h"

/* Messages above this level are not written. Default VIGIL_LOG_INFO. */
void vigil_log_set_level(enum vigil_log_level level);
enum vigil_log_level vigil_log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns 0 or VIGIL_ECONFIG. */
int vigil_log_parse_level(const char *s, enum vigil_log_level *out);

/* True when stderr is the journal (decided on first use, then fixed). */
bool vigil_log_to_journal(void);

/* `component` is printed in brackets, e.g. "bus" or "source:gen/gen". */
void vigil_log(enum vigil_log_level level, const char *component, const char *fmt, ...)
    VIGIL_PRINTF(3, 4);
void vigil_vlog(enum vigil_log_level level, const char *component, const char *fmt, va_list ap);

/* Names an error code: a VIGIL_E* value or a negated errno. */
const char *vigil_strerror(int err);

uint64_t vigil_now_ns(void);        /* CLOCK_REALTIME */
uint64_t vigil_mono_ns(void);       /* CLOCK_MONOTONIC */
uint64_t vigil_thread_cpu_ns(void); /* CLOCK_THREAD_CPUTIME_ID: the calling thread's CPU */

/* At most `burst` messages per `window_ns`; the rest are counted. */
struct vigil_ratelimit {
    uint64_t window_ns;
    unsigned burst;
    uint64_t window_start;
    unsigned used;
    uint64_t suppressed;
};

/* True when a message may be written now. *suppressed_out (if not NULL) gets
 * the number suppressed since the last allowed message, to mention in it. */
bool vigil_ratelimit_ok(struct vigil_ratelimit *rl, uint64_t now_mono_ns, uint64_t *suppressed_out);

#endif

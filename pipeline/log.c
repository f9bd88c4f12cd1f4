/* Logging to stderr (or the journal), clocks, and the rate limiter (see
 * log.h). */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = VIGIL_LOG_INFO;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
/* Syslog priorities, as sd-daemon(3)'s SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG
 * spell them at the head of a line for journald. */
static const char *const level_prefixes[] = {"<3>", "<4>", "<6>", "<7>"};

static pthread_once_t journal_once = PTHREAD_ONCE_INIT;
static bool journal;

/* systemd connects stderr to journald and says so in JOURNAL_STREAM
 * ("DEVICE:INODE" of that stream); a stderr redirected since (to a file,
 * by a shell or a test) no longer matches it. */
static void detect_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    struct stat st;
    if (!e || fstat(STDERR_FILENO, &st) != 0) {
        return;
    }
    char *end;
    errno = 0;
    unsigned long long dev = strtoull(e, &end, 10);
    if (errno || end == e || *end != ':') {
        return;
    }
    const char *ino_s = end + 1;
    unsigned long long ino = strtoull(ino_s, &end, 10);
    if (errno || end == ino_s || *end != '\0') {
        return;
    }
    journal = (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

bool vigil_log_to_journal(void)
{
    pthread_once(&journal_once, detect_journal);
    return journal;
}

void vigil_log_set_level(enum vigil_log_level level)
{
    atomic_store(&log_level, (int)level);
}

enum vigil_log_level vigil_log_get_level(void)
{
    return (enum vigil_log_level)atomic_load(&log_level);
}

int vigil_log_parse_level(const char *s, enum vigil_log_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum vigil_log_level)i;
            return 0;
        }
    }
    return VIGIL_ECONFIG;
}

void vigil_vlog(enum vigil_log_level level, const char *component, const char *fmt, va_list ap)
{
    if ((int)level > atomic_load(&log_level)) {
        return;
    }
    char line[2048];
    unsigned li = (unsigned)level > 3 ? 0 : (unsigned)level;
    const char *comp = component ? component : "vigild";
    int n;
    if (vigil_log_to_journal()) {
        /* The journal keeps its own time stamp; the prefix is the priority
         * (journalctl -p warning). */
        n = snprintf(line, sizeof line, "%s%-5s [%s] ", level_prefixes[li], level_names[li], comp);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[li], comp);
    }
    if (n < 0) {
        return;
    }
    if ((size_t)n < sizeof line) {
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        if (m > 0) {
            n += m;
        }
    }
    if ((size_t)n >= sizeof line - 1) {
        n = (int)sizeof line - 2; /* truncated: still one line */
    }
    /* A message must stay one line, whatever the plugin put in it. */
    for (int i = 0; i < n; i++) {
        if (line[i] == '\n' || line[i] == '\r') {
            line[i] = ' ';
        }
    }
    line[n++] = '\n';
    /* One write per line so lines from threads never interleave. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void vigil_log(enum vigil_log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vigil_vlog(level, component, fmt, ap);
    va_end(ap);
}

const char *vigil_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define VIGIL_ERRNO_NAME(name, code, text)                                                         \
    case code:                                                                                     \
        return text;
        VIGIL_ERRNO_MAP(VIGIL_ERRNO_NAME)
#undef VIGIL_ERRNO_NAME
    default:
        break;
    }
    if (err < 0 && err > -4096) {
        return strerror(-err);
    }
    return "unknown error";
}

static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t vigil_now_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

uint64_t vigil_mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

uint64_t vigil_thread_cpu_ns(void)
{
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

bool vigil_ratelimit_ok(struct vigil_ratelimit *rl, uint64_t now, uint64_t *suppressed_out)
{
    if (now - rl->window_start >= rl->window_ns) {
        rl->window_start = now;
        rl->used = 0;
    }
    if (rl->used < rl->burst) {
        rl->used++;
        if (suppressed_out) {
            *suppressed_out = rl->suppressed;
        }
        rl->suppressed = 0;
        return true;
    }
    rl->suppressed++;
    return false;
}

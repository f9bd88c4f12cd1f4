/* rfc5424: formats one vigil event as an RFC 5424 syslog message, into a
 * caller's buffer, reading the body through the host's event API (no
 * allocation per event). The header fields are sanitised
 * to the RFC's character sets and lengths, STRUCTURED-DATA carries the
 * event's labels, values and scalar attrs, MSG its message or its JSON.
 */
#ifndef VIGIL_SYSLOG_RFC5424_H
#define VIGIL_SYSLOG_RFC5424_H

#include <stddef.h>
#include <stdint.h>

#include "vigil/plugin.h"

/* RFC 5424 §6 field limits (octets). */
#define RFC5424_HOSTNAME_MAX 255
#define RFC5424_APP_NAME_MAX 48
#define RFC5424_PROCID_MAX 128
#define RFC5424_MSGID_MAX 32
#define RFC5424_SD_NAME_MAX 32

/* The smallest message size the formatter accepts (the size every receiver
 * must accept, RFC 5424 §6.1). The header at its longest, the SD element's
 * brackets and the truncation mark fit in it. */
#define RFC5424_MIN_LEN 480

struct rfc5424_fmt {
    int facility;         /* 0..23 */
    int default_severity; /* 0..7: events without a known labels.severity */
    char app_name[RFC5424_APP_NAME_MAX + 1];
    char procid[24];
    char sd_id[RFC5424_SD_NAME_MAX + 1];
    size_t max_len; /* >= RFC5424_MIN_LEN */
};

/* Facility code of a name ("daemon", "local0", ...), or -1. */
int rfc5424_facility(const char *name);

/* Syslog severity (0 emerg .. 7 debug) of a severity word, case-insensitive:
 * emerg/emergency/panic, alert, crit/critical/fatal, err/error,
 * warn/warning, notice, info/informational, debug, or a digit 0..7.
 * Returns -1 for anything else. */
int rfc5424_severity(const char *s, size_t n);

/* NULL when s is a valid SD-NAME (RFC 5424 §6.3.2: 1..32 printable US-ASCII
 * characters but '=', ' ', ']' and '"'), or a reason. With at_required, it
 * must also contain one '@' (a private SD-ID: name@enterprise-number). */
const char *rfc5424_check_sd_name(const char *s, int at_required);

/* NULL when s is 1..max printable US-ASCII characters (APP-NAME), or a
 * reason. */
const char *rfc5424_check_ascii(const char *s, size_t max);

/* Formats ev into buf, which must hold f->max_len + 1 bytes. Returns the
 * message length (at most f->max_len; no NUL is guaranteed). *dropped_out
 * gets the number of SD parameters left out because they did not fit. */
size_t rfc5424_format(const struct rfc5424_fmt *f, const struct vigil_api *api,
                      const struct vigil_event *ev, char *buf, size_t *dropped_out);

#endif

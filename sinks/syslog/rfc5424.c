/* rfc5424: one event as an RFC 5424 message (see rfc5424.h).
 *
 *   <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID source=.. seq=..
 *   label.k=.. value.k=.. attr.k=..] MSG
 *
 * Choices the RFC leaves to us:
 *  - HOSTNAME, MSGID: bytes outside PRINTUSASCII become '_' (one per UTF-8
 *    character), then cut at the RFC's length; empty becomes "-".
 *  - PARAM-NAME: the prefix plus the key, characters an SD-NAME may not
 *    hold become '_', cut at 32 octets (a repeated name is allowed, §6.3.3).
 *  - PARAM-VALUE and MSG: invalid UTF-8 and NUL become U+FFFD, byte by
 *    byte, as in vigil's JSON; other control characters pass (valid UTF-8).
 *  - No BOM before MSG: it is MSG-ANY, which receivers show as written.
 *  - A parameter that does not fit into max_len is left out whole (a cut
 *    value would be a wrong value) and `truncated="N"` counts them; MSG is
 *    cut at a character boundary.
 */
#include "rfc5424.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* " truncated=\"<up to 20 digits>\"" and the closing ']' */
#define TRUNC_MARK_ROOM 34

static const char *const facility_names[] = {
    "kern",   "user",   "mail",     "daemon", "auth",   "syslog", "lpr",    "news",
    "uucp",   "cron",   "authpriv", "ftp",    NULL,     NULL,     NULL,     NULL,
    "local0", "local1", "local2",   "local3", "local4", "local5", "local6", "local7",
};

int rfc5424_facility(const char *name)
{
    for (int i = 0; i < (int)(sizeof facility_names / sizeof facility_names[0]); i++) {
        if (facility_names[i] && strcmp(name, facility_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

int rfc5424_severity(const char *s, size_t n)
{
    static const struct {
        const char *word;
        int sev;
    } words[] = {
        {"emerg", 0},    {"emergency", 0}, {"panic", 0}, {"alert", 1},         {"crit", 2},
        {"critical", 2}, {"fatal", 2},     {"err", 3},   {"error", 3},         {"warn", 4},
        {"warning", 4},  {"notice", 5},    {"info", 6},  {"informational", 6}, {"debug", 7},
    };
    if (n == 1 && s[0] >= '0' && s[0] <= '7') {
        return s[0] - '0';
    }
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strlen(words[i].word) == n && strncasecmp(s, words[i].word, n) == 0) {
            return words[i].sev;
        }
    }
    return -1;
}

static bool sd_name_char(unsigned char c)
{
    return c > ' ' && c < 0x7f && c != '=' && c != ']' && c != '"';
}

const char *rfc5424_check_sd_name(const char *s, int at_required)
{
    size_t n = strlen(s);
    if (n == 0 || n > RFC5424_SD_NAME_MAX) {
        return "must be 1 to 32 characters";
    }
    for (size_t i = 0; i < n; i++) {
        if (!sd_name_char((unsigned char)s[i])) {
            return "may hold only printable ASCII characters but '=', ' ', ']' and '\"'";
        }
    }
    /* §7.2.2: name@<private enterprise number>, the number in digits and
     * dots (a sub-identifier such as 32473.1 is allowed). */
    const char *at = strchr(s, '@');
    const char *pen = at ? at + 1 : "";
    if (at_required && (!at || at == s || pen[0] < '0' || pen[0] > '9' ||
                        strspn(pen, "0123456789.") != strlen(pen) || pen[strlen(pen) - 1] == '.')) {
        return "must be name@enterprise-number, as in vigil@32473 (RFC 5424 section 7.2.2)";
    }
    return NULL;
}

const char *rfc5424_check_ascii(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) {
        return "has the wrong length";
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f) {
            return "may hold only printable ASCII characters, no spaces";
        }
    }
    return NULL;
}

/* ---- Output buffer ------------------------------------------------------------ */

struct out {
    char *buf;
    size_t len, cap;
    bool over; /* something did not fit: the caller rolls back */
};

static void put(struct out *o, const char *p, size_t n)
{
    if (o->over || n > o->cap - o->len) {
        o->over = true;
        return;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

static void put_ch(struct out *o, char c)
{
    put(o, &c, 1);
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Length of the well-formed UTF-8 character at s (1 for ASCII), or 0. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    uint32_t cp, min;
    size_t len;
    if (s[0] < 0x80) {
        return 1;
    } else if ((s[0] & 0xe0) == 0xc0) {
        len = 2, cp = s[0] & 0x1fu, min = 0x80;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3, cp = s[0] & 0x0fu, min = 0x800;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4, cp = s[0] & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

/* A header field: PRINTUSASCII only, at most max characters, "-" if empty. */
static void put_ascii_field(struct out *o, const char *s, size_t n, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t w = 0;
    for (size_t i = 0; i < n && w < max;) {
        size_t k = u[i] < 0x80 ? 1 : utf8_char(u + i, n - i);
        put_ch(o, k == 1 && u[i] > ' ' && u[i] < 0x7f ? (char)u[i] : '_');
        i += k ? k : 1;
        w++;
    }
    if (w == 0) {
        put_ch(o, '-');
    }
}

/* Text with invalid UTF-8 and NUL replaced by U+FFFD; with sd_escape, '"',
 * '\' and ']' get a backslash (§6.3.3) and what does not fit sets o->over.
 * Without it (MSG) the text is cut after the last whole character that fits. */
static void put_text(struct out *o, const char *s, size_t n, bool sd_escape)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n && !o->over;) {
        size_t k = utf8_char(u + i, n - i);
        const char *p = s + i;
        size_t pn = k;
        char esc[2] = {'\\', (char)u[i]};
        if (k == 0 || u[i] == 0) {
            p = "\xef\xbf\xbd";
            pn = 3;
            k = 1;
        } else if (sd_escape && (u[i] == '"' || u[i] == '\\' || u[i] == ']')) {
            p = esc;
            pn = 2;
        }
        if (!sd_escape && pn > o->cap - o->len) {
            return;
        }
        put(o, p, pn);
        i += k;
    }
}

static void put_timestamp(struct out *o, uint64_t ts_ns)
{
    time_t secs = (time_t)(ts_ns / 1000000000u);
    unsigned usec = (unsigned)(ts_ns % 1000000000u / 1000u);
    struct tm tm;
    char tmp[40];
    if (!gmtime_r(&secs, &tm)) {
        put_ch(o, '-');
        return;
    }
    int n = snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
    put(o, tmp, (size_t)n);
}

/* Shortest of %.15g / %.17g that reads back the same (as vigil's JSON). */
static int format_double(char *tmp, size_t cap, double d)
{
    int n = snprintf(tmp, cap, "%.15g", d);
    if (isfinite(d) && strtod(tmp, NULL) != d) {
        n = snprintf(tmp, cap, "%.17g", d);
    }
    return n;
}

/* ---- STRUCTURED-DATA ---------------------------------------------------------- */

struct sd {
    struct out *o;
    size_t dropped;
};

static void put_param_name(struct out *o, const char *prefix, const char *k, size_t kn)
{
    const unsigned char *u = (const unsigned char *)k;
    size_t w = strlen(prefix);
    put_str(o, prefix);
    for (size_t i = 0; i < kn && w < RFC5424_SD_NAME_MAX; w++) {
        size_t c = u[i] < 0x80 ? 1 : utf8_char(u + i, kn - i);
        put_ch(o, c == 1 && sd_name_char(u[i]) ? (char)u[i] : '_');
        i += c ? c : 1;
    }
    if (kn == 0) {
        put_ch(o, '_');
    }
}

/* ` name="value"`, or nothing (counted) if it does not fit. */
static void put_param(struct sd *sd, const char *prefix, const char *k, size_t kn, const char *v,
                      size_t vn)
{
    struct out *o = sd->o;
    size_t mark = o->len;
    put_ch(o, ' ');
    put_param_name(o, prefix, k, kn);
    put(o, "=\"", 2);
    put_text(o, v, vn, true);
    put_ch(o, '"');
    if (o->over) {
        o->len = mark;
        o->over = false;
        sd->dropped++;
    }
}

/* A scalar as parameter text; false for what has none (nil, containers,
 * ext). */
static bool scalar_text(const struct vigil_api *api, const struct vigil_field *v, char *tmp,
                        size_t cap, const char **p, size_t *n)
{
    int k;
    uint64_t u;
    int64_t i;
    double d;
    bool b;
    switch (api->field_type(v)) {
    case VIGIL_FIELD_STR:
        return api->field_str(v, p, n) == 0;
    case VIGIL_FIELD_BOOL:
        api->field_bool(v, &b);
        *p = b ? "true" : "false";
        *n = strlen(*p);
        return true;
    case VIGIL_FIELD_UINT:
        api->field_u64(v, &u);
        k = snprintf(tmp, cap, "%llu", (unsigned long long)u);
        break;
    case VIGIL_FIELD_INT:
        api->field_i64(v, &i);
        k = snprintf(tmp, cap, "%lld", (long long)i);
        break;
    case VIGIL_FIELD_DOUBLE:
        api->field_double(v, &d);
        k = format_double(tmp, cap, d);
        break;
    default:
        return false;
    }
    *p = tmp;
    *n = (size_t)k;
    return true;
}

static bool key_is(const char *k, size_t kn, const char *s)
{
    return k && kn == strlen(s) && memcmp(k, s, kn) == 0;
}

/* The scalar items of a map as prefix.key="value"; skip_key is left out. */
static void put_map_params(struct sd *sd, const struct vigil_api *api, const struct vigil_field *m,
                           const char *prefix, const char *skip_key)
{
    char tmp[64];
    for (size_t i = 0; i < api->event_len(m); i++) {
        const char *k, *p;
        size_t kn, n;
        const struct vigil_field *v = api->event_at(m, i, &k, &kn);
        if (!k || (skip_key && key_is(k, kn, skip_key)) ||
            !scalar_text(api, v, tmp, sizeof tmp, &p, &n)) {
            continue;
        }
        put_param(sd, prefix, k, kn, p, n);
    }
}

/* labels, values and scalar attrs of the body, in the body's order. */
static void put_body_params(struct sd *sd, const struct vigil_api *api,
                            const struct vigil_event *ev, bool message_is_msg)
{
    const struct vigil_field *top = api->event_field(ev, "");
    for (size_t i = 0; i < api->event_len(top); i++) {
        const char *k;
        size_t kn;
        const struct vigil_field *v = api->event_at(top, i, &k, &kn);
        const char *prefix = key_is(k, kn, "labels")   ? "label."
                             : key_is(k, kn, "values") ? "value."
                             : key_is(k, kn, "attrs")  ? "attr."
                                                       : NULL;
        if (prefix && api->field_type(v) == VIGIL_FIELD_MAP) {
            put_map_params(sd, api, v, prefix,
                           message_is_msg && prefix[0] == 'a' ? "message" : NULL);
        }
    }
}

/* ---- The message -------------------------------------------------------------- */

/* Cuts a JSON text that event_json() truncated back to a whole character. */
static size_t whole_chars(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = n;
    while (i > 0 && (u[i - 1] & 0xc0) == 0x80 && n - i < 3) {
        i--;
    }
    if (i > 0 && u[i - 1] >= 0xc0) {
        i--; /* the lead byte of the last character */
        return utf8_char(u + i, n - i) ? n : i;
    }
    return n;
}

size_t rfc5424_format(const struct rfc5424_fmt *f, const struct vigil_api *api,
                      const struct vigil_event *ev, char *buf, size_t *dropped_out)
{
    struct out o = {.buf = buf, .cap = f->max_len};
    const char *s;
    size_t n;
    char tmp[64];

    int sev = -1;
    if (api->event_get_str(ev, "labels.severity", &s, &n) == 0) {
        sev = rfc5424_severity(s, n);
    }
    n = (size_t)snprintf(tmp, sizeof tmp, "<%d>1 ",
                         f->facility * 8 + (sev < 0 ? f->default_severity : sev));
    put(&o, tmp, n);
    uint64_t ts;
    put_timestamp(&o, api->event_get_u64(ev, "ts", &ts) == 0 ? ts : api->now_ns());
    put_ch(&o, ' ');
    if (api->event_get_str(ev, "host", &s, &n) != 0) {
        s = "";
        n = 0;
    }
    put_ascii_field(&o, s, n, RFC5424_HOSTNAME_MAX);
    put_ch(&o, ' ');
    put_str(&o, f->app_name);
    put_ch(&o, ' ');
    put_str(&o, f->procid);
    put_ch(&o, ' ');
    s = api->event_topic(ev, &n);
    put_ascii_field(&o, s, s ? n : 0, RFC5424_MSGID_MAX);
    put(&o, " [", 2);
    put_str(&o, f->sd_id);

    /* Parameters may use all but the room for the mark and the ']'. */
    struct sd sd = {.o = &o};
    o.cap = f->max_len - TRUNC_MARK_ROOM;
    if (api->event_get_str(ev, "source", &s, &n) == 0) {
        put_param(&sd, "", "source", 6, s, n);
    }
    uint64_t seq;
    if (api->event_get_u64(ev, "seq", &seq) == 0) {
        n = (size_t)snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)seq);
        put_param(&sd, "", "seq", 3, tmp, n);
    }
    const char *msg;
    size_t msg_len;
    bool have_msg = api->event_get_str(ev, "attrs.message", &msg, &msg_len) == 0;
    put_body_params(&sd, api, ev, have_msg);
    o.cap = f->max_len;
    if (sd.dropped) {
        n = (size_t)snprintf(tmp, sizeof tmp, " truncated=\"%zu\"", sd.dropped);
        put(&o, tmp, n);
    }
    put_ch(&o, ']');

    put_ch(&o, ' ');
    if (have_msg) {
        put_text(&o, msg, msg_len, false);
    } else if (o.len < o.cap) {
        /* The JSON goes straight into the buffer, which has one byte more
         * than max_len for the NUL event_json() writes. */
        size_t room = o.cap - o.len;
        size_t need = api->event_json(ev, buf + o.len, room + 1);
        o.len += need <= room ? need : whole_chars(buf + o.len, room);
    }
    *dropped_out = sd.dropped;
    return o.len;
}

/* webhook sink: request bodies. `json` is an array of events exactly as
 * vigil-tap prints them; `alertmanager` is the list of alerts Alertmanager's
 * POST /api/v2/alerts takes, built from the rules engine's verdicts. Both
 * append to the instance's one body buffer, which only grows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "webhook.h"

/* ---- The buffer ----------------------------------------------------------------- */

static bool buf_reserve(struct wh_buf *b, size_t more)
{
    if (b->oom) {
        return false;
    }
    if (b->len + more <= b->cap) {
        return true;
    }
    size_t cap = b->cap ? b->cap : 64 * 1024;
    while (cap < b->len + more) {
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void buf_put(struct wh_buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

static void buf_puts(struct wh_buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

static void buf_reset(struct wh_buf *b)
{
    b->len = 0;
    b->oom = false;
}

/* ---- JSON strings -------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (c < 0x80) {
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlong forms */
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return len;
}

/* Appends s escaped for the inside of a JSON string. Bytes that are not
 * UTF-8 become U+FFFD, so the body is always valid JSON whatever a label
 * holds. */
static void json_chars(struct wh_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0; /* start of the bytes that need no escaping */
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        size_t len = c < 0x80 ? 1 : utf8_len(u + i, n - i);
        if (len > 1) {
            i += len; /* valid multi-byte character: copied as is */
            continue;
        }
        buf_put(b, s + run, i - run);
        char esc[8];
        switch (c) {
        case '"':
            buf_put(b, "\\\"", 2);
            break;
        case '\\':
            buf_put(b, "\\\\", 2);
            break;
        case '\n':
            buf_put(b, "\\n", 2);
            break;
        case '\r':
            buf_put(b, "\\r", 2);
            break;
        case '\t':
            buf_put(b, "\\t", 2);
            break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                buf_put(b, esc, 6);
            } else {
                buf_put(b, "\\ufffd", 6);
            }
        }
        i++;
        run = i;
    }
    buf_put(b, s + run, n - run);
}

static void json_str(struct wh_buf *b, const char *s, size_t n)
{
    buf_put(b, "\"", 1);
    json_chars(b, s, n);
    buf_put(b, "\"", 1);
}

/* ---- format: json ------------------------------------------------------------------ */

long wh_format_json(struct webhook *w, const struct vigil_event *const *events, size_t n,
                    enum vigil_write_result *results)
{
    struct wh_buf *b = &w->body;
    buf_reset(b);
    buf_put(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            buf_put(b, ",", 1);
        }
        /* event_json writes in place; when it needs more room, grow and redo. */
        if (!buf_reserve(b, 4096)) {
            break;
        }
        size_t need = w->api->event_json(events[i], b->p + b->len, b->cap - b->len);
        if (need >= b->cap - b->len) {
            if (!buf_reserve(b, need + 1)) {
                break;
            }
            w->api->event_json(events[i], b->p + b->len, b->cap - b->len);
        }
        b->len += need;
        results[i] = VIGIL_WRITE_RETRY;
    }
    buf_put(b, "]", 1);
    return b->oom ? -ENOMEM : (long)n;
}

/* ---- format: alertmanager ----------------------------------------------------------- */

/* Alertmanager (before its UTF-8 mode) refuses the whole request when one
 * label name is not [a-zA-Z_][a-zA-Z0-9_]*: write names in that alphabet. */
static void label_name(struct wh_buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n + 3)) {
        return;
    }
    char *out = b->p + b->len;
    size_t o = 0;
    out[o++] = '"';
    if (n == 0 || (s[0] >= '0' && s[0] <= '9')) {
        out[o++] = '_';
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        out[o++] = ok ? c : '_';
    }
    out[o++] = '"';
    b->len += o;
}

static void rfc3339(struct wh_buf *b, uint64_t ns)
{
    time_t secs = (time_t)(ns / 1000000000u);
    struct tm tm;
    char out[48];
    gmtime_r(&secs, &tm);
    int len = snprintf(out, sizeof out, "\"%04d-%02d-%02dT%02d:%02d:%02d.%09uZ\"",
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                       tm.tm_sec, (unsigned)(ns % 1000000000u));
    buf_put(b, out, (size_t)len);
}

/* Percent-encodes all but RFC 3986's unreserved characters. */
static void url_part(struct wh_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            buf_put(b, (const char *)&c, 1);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_put(b, esc, 3);
        }
    }
}

/* One string annotation from attrs, when the verdict has it. */
static void annotation(struct wh_buf *b, const struct vigil_api *api, const struct vigil_event *ev,
                       const char *name, const char *path, bool *first)
{
    const char *s;
    size_t n;
    if (api->event_get_str(ev, path, &s, &n) != 0) {
        return;
    }
    buf_puts(b, *first ? "\"" : ",\"");
    buf_puts(b, name);
    buf_puts(b, "\":");
    json_str(b, s, n);
    *first = false;
}

static bool key_is(const char *k, size_t kn, const char *s)
{
    return k && kn == strlen(s) && memcmp(k, s, kn) == 0;
}

/* One alert object from a verdict. */
static void alert(struct wh_buf *b, const struct vigil_api *api, const struct vigil_event *ev,
                  const char *topic, size_t topic_len)
{
    const char *rule_s, *host_s;
    size_t rule_n, host_n;
    /* Not from the rules engine: name the publisher. */
    if (api->event_get_str(ev, "labels.rule", &rule_s, &rule_n) != 0 &&
        api->event_get_str(ev, "source", &rule_s, &rule_n) != 0) {
        rule_s = "vigil";
        rule_n = 5;
    }
    if (api->event_get_str(ev, "host", &host_s, &host_n) != 0) {
        host_s = "";
        host_n = 0;
    }

    buf_puts(b, "{\"labels\":{\"alertname\":");
    json_str(b, rule_s, rule_n);
    bool has_host = false;
    const struct vigil_field *labels = api->event_field(ev, "labels");
    for (size_t i = 0; i < api->event_len(labels); i++) {
        const char *k, *v;
        size_t kn, vn;
        const struct vigil_field *f = api->event_at(labels, i, &k, &kn);
        if (!k || api->field_str(f, &v, &vn) != 0 || key_is(k, kn, "alertname")) {
            continue;
        }
        has_host |= key_is(k, kn, "host");
        buf_put(b, ",", 1);
        label_name(b, k, kn);
        buf_put(b, ":", 1);
        json_str(b, v, vn);
    }
    if (!has_host) {
        buf_puts(b, ",\"host\":");
        json_str(b, host_s, host_n);
    }

    buf_puts(b, "},\"annotations\":{");
    bool first = true;
    annotation(b, api, ev, "summary", "attrs.message", &first);
    annotation(b, api, ev, "fingerprint", "attrs.fingerprint", &first);
    annotation(b, api, ev, "source_topic", "attrs.source_topic", &first);
    annotation(b, api, ev, "reason", "attrs.reason", &first);
    const struct vigil_field *values = api->event_field(ev, "values");
    for (size_t i = 0; i < api->event_len(values); i++) {
        const char *k;
        size_t kn;
        double d;
        if (api->field_double(api->event_at(values, i, &k, &kn), &d) != 0 || !k) {
            continue;
        }
        char num[40];
        int len = snprintf(num, sizeof num, "%.15g", d);
        buf_puts(b, first ? "\"value_" : ",\"value_");
        first = false;
        json_chars(b, k, kn);
        buf_puts(b, "\":");
        json_str(b, num, (size_t)len);
    }

    uint64_t ts_ns, start_ns;
    if (api->event_get_u64(ev, "ts", &ts_ns) != 0) {
        ts_ns = 0;
    }
    if (api->event_get_u64(ev, "attrs.since", &start_ns) != 0 || start_ns == 0) {
        start_ns = ts_ns;
    }
    buf_puts(b, "},\"startsAt\":");
    rfc3339(b, start_ns);
    if (topic_len == 14 && memcmp(topic, "alert.resolved", 14) == 0) {
        buf_puts(b, ",\"endsAt\":");
        rfc3339(b, ts_ns);
    }
    buf_puts(b, ",\"generatorURL\":\"vigil://");
    url_part(b, host_s, host_n);
    buf_put(b, "/", 1);
    url_part(b, rule_s, rule_n);
    buf_puts(b, "\"}");
}

long wh_format_alertmanager(struct webhook *w, const struct vigil_event *const *events, size_t n,
                            enum vigil_write_result *results)
{
    struct wh_buf *b = &w->body;
    buf_reset(b);
    buf_put(b, "[", 1);
    long sent = 0;
    size_t skipped = 0;
    const char *skipped_topic = "";
    size_t skipped_len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t tl;
        const char *topic = w->api->event_topic(events[i], &tl);
        if (tl < 6 || memcmp(topic, "alert.", 6) != 0 ||
            w->api->field_type(w->api->event_field(events[i], "")) != VIGIL_FIELD_MAP) {
            results[i] = VIGIL_WRITE_FAIL;
            if (skipped++ == 0) {
                skipped_topic = topic;
                skipped_len = tl;
            }
            continue;
        }
        if (sent > 0) {
            buf_put(b, ",", 1);
        }
        alert(b, w->api, events[i], topic, tl);
        results[i] = VIGIL_WRITE_RETRY;
        sent++;
    }
    buf_put(b, "]", 1);
    if (skipped) {
        wh_warn(w,
                "%zu events are not alerts (the first has topic '%.*s'): failed, as format "
                "alertmanager takes only alert.* verdicts; give this sink 'match: [alert.]'",
                skipped, (int)(skipped_len > 255 ? 255 : skipped_len), skipped_topic);
    }
    return b->oom ? -ENOMEM : sent;
}

/* webhook: a sink that POSTs each batch the host hands it as one HTTP(S)
 * request, as a JSON array of events or as Alertmanager alerts. Header
 * values may name environment variables (${NAME}) and are secrets: they are
 * never logged. The HTTP side is in http.c, the bodies in format.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "webhook.h"

static const struct vigil_option webhook_options[] = {
    {"url", VIGIL_OPT_STRING, NULL, "http:// or https:// URL to POST to (required)"},
    {"format", VIGIL_OPT_STRING, "json",
     "json (a JSON array of events) or alertmanager (the alerts list of Alertmanager's "
     "/api/v2/alerts)"},
    {"headers", VIGIL_OPT_MAP, NULL,
     "extra request headers; ${NAME} in a value is replaced by that environment variable"},
    {"timeout", VIGIL_OPT_DURATION, "10s", "the whole request, connecting included"},
    {"tls", VIGIL_OPT_MAP, NULL,
     "{ca_file: PEM file of the CAs to trust instead of the system's, insecure: false}"},
    {NULL, 0, NULL, NULL},
};

/* Warnings a batch can repeat: rate-limited per call site by the host. */
void wh_warn(struct webhook *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    w->api->vlog_limited(w->h, VIGIL_LOG_WARN, fmt, ap);
    va_end(ap);
}

/* ---- Config ----------------------------------------------------------------------- */

/* Checks the URL and keeps scheme://host:port for the log: the path and
 * query may hold a token (many webhook URLs do), and userinfo a password. */
static bool parse_url(struct webhook *w, const char *url, const struct vigil_conf *at)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    bool ok = false;
    if (!u) {
        w->api->conf_error(w->h, at, "out of memory");
        return false;
    }
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (rc != CURLUE_OK) {
        w->api->conf_error(w->h, at, "url is not a valid URL: %s", curl_url_strerror(rc));
    } else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
               (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        w->api->conf_error(w->h, at, "url must start with http:// or https://");
    } else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0]) {
        w->api->conf_error(w->h, at, "url has no host");
    } else {
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
        snprintf(w->origin, sizeof w->origin, "%s://%s:%s", scheme, host, port ? port : "?");
        ok = true;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return ok;
}

static bool header_name_ok(const char *s)
{
    if (!*s) {
        return false;
    }
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s))) {
            return false;
        }
    }
    return true;
}

/* Writes "name: value" with every ${NAME} of value taken from the
 * environment into f. Returns NULL, or a reason (which never quotes the
 * value: it may be a secret). `var` gets the offending variable's name. */
static const char *expand(FILE *f, const char *value, char *var, size_t var_cap)
{
    for (const char *p = value; *p; p++) {
        if (p[0] != '$' || p[1] != '{') {
            if (*p == '\r' || *p == '\n') {
                return "contains a line break";
            }
            fputc(*p, f);
            continue;
        }
        const char *name = p + 2, *end = name;
        while ((*end >= 'A' && *end <= 'Z') || (*end >= 'a' && *end <= 'z') ||
               (*end >= '0' && *end <= '9') || *end == '_') {
            end++;
        }
        if (*end != '}' || end == name || (*name >= '0' && *name <= '9')) {
            return "has a '${' that does not start a ${NAME} (letters, digits, '_')";
        }
        snprintf(var, var_cap, "%.*s", (int)(end - name), name);
        const char *env = getenv(var);
        if (!env) {
            return "names an environment variable that is not set";
        }
        if (strpbrk(env, "\r\n")) {
            return "takes a line break from an environment variable";
        }
        fputs(env, f);
        p = end;
    }
    return NULL;
}

/* Builds w->headers from the `headers` map. Returns the number of errors. */
static int build_headers(struct webhook *w, const struct vigil_conf *map)
{
    const struct vigil_api *api = w->api;
    bool content_type = false;
    int bad = 0;
    for (size_t i = 0; map && i < api->conf_len(map); i++) {
        const char *name, *value;
        const struct vigil_conf *n = api->conf_at(map, i, &name);
        if (!header_name_ok(name)) {
            api->conf_error(w->h, n, "'%s' is not a valid HTTP header name", name);
            bad++;
            continue;
        }
        if (api->conf_string(n, &value) != 0) {
            api->conf_error(w->h, n, "header '%s' must be a string", name);
            bad++;
            continue;
        }
        char *line = NULL, var[128] = "";
        size_t len = 0;
        FILE *f = open_memstream(&line, &len);
        if (!f) {
            return bad + 1;
        }
        fprintf(f, "%s: ", name);
        const char *why = expand(f, value, var, sizeof var);
        fclose(f);
        if (why) {
            api->conf_error(w->h, n, "header '%s': its value %s%s%s%s", name, why,
                            var[0] ? " (${" : "", var, var[0] ? "})" : "");
            bad++;
        } else {
            if (len == strlen(name) + 2) {
                /* "Name: " would make libcurl drop the header; "Name;" sends it empty. */
                line[len - 2] = ';';
                line[len - 1] = '\0';
            }
            struct curl_slist *s = curl_slist_append(w->headers, line);
            if (s) {
                w->headers = s;
            } else {
                bad++;
            }
        }
        explicit_bzero(line, len);
        free(line);
        content_type |= strcasecmp(name, "Content-Type") == 0;
    }
    static const char *const defaults[] = {"Content-Type: application/json",
                                           "Expect:"}; /* no 100-continue round trip */
    for (size_t i = content_type ? 1 : 0; i < 2; i++) {
        struct curl_slist *s = curl_slist_append(w->headers, defaults[i]);
        if (!s) {
            return bad + 1;
        }
        w->headers = s;
    }
    return bad;
}

/* Reads `tls` into c. Returns the number of errors. */
static int read_tls(struct webhook *w, const struct vigil_conf *tls, struct wh_http_conf *c)
{
    const struct vigil_api *api = w->api;
    int bad = 0;
    for (size_t i = 0; tls && i < api->conf_len(tls); i++) {
        const char *key;
        const struct vigil_conf *n = api->conf_at(tls, i, &key);
        if (strcmp(key, "ca_file") == 0) {
            if (api->conf_string(n, &c->ca_file) != 0) {
                api->conf_error(w->h, n, "tls.ca_file must be a path");
                bad++;
            } else if (access(c->ca_file, R_OK) != 0) {
                api->conf_error(w->h, n, "tls.ca_file %s cannot be read: %s", c->ca_file,
                                strerror(errno));
                bad++;
            }
        } else if (strcmp(key, "insecure") == 0) {
            if (api->conf_bool(n, &c->insecure) != 0) {
                api->conf_error(w->h, n, "tls.insecure must be true or false");
                bad++;
            }
        } else {
            api->conf_error(w->h, n, "unknown key '%s' in tls (valid keys: ca_file, insecure)",
                            key);
            bad++;
        }
    }
    return bad;
}

static void webhook_fini(void *state)
{
    struct webhook *w = state;
    wh_http_fini(w);
    for (struct curl_slist *s = w->headers; s; s = s->next) {
        explicit_bzero(s->data, strlen(s->data));
    }
    curl_slist_free_all(w->headers);
    free(w->body.p);
    free(w);
}

static int webhook_init(struct vigil_instance *h, const struct vigil_api *api, void **state)
{
    const struct vigil_conf *root = api->conf_root(h);
    struct webhook *w = calloc(1, sizeof *w);
    if (!w) {
        return -ENOMEM;
    }
    w->h = h;
    w->api = api;
    struct wh_http_conf c = {0};
    int bad = 0;
    const struct vigil_conf *n = api->conf_get(root, "url");
    if (api->conf_string(n, &c.url) != 0) {
        api->conf_error(h, n ? n : root, "webhook needs 'url' (http:// or https://)");
        bad++;
    } else if (!parse_url(w, c.url, n)) {
        bad++;
    }
    const char *format = "json";
    n = api->conf_get(root, "format");
    api->conf_string(n, &format);
    if (strcmp(format, "json") == 0) {
        w->format = WH_FORMAT_JSON;
    } else if (strcmp(format, "alertmanager") == 0) {
        w->format = WH_FORMAT_ALERTMANAGER;
    } else {
        api->conf_error(h, n, "format must be json or alertmanager, not '%s'", format);
        bad++;
    }
    n = api->conf_get(root, "timeout");
    api->conf_duration(n, &c.timeout_ns);
    if (c.timeout_ns < 1000000u) {
        api->conf_error(h, n, "timeout must be at least 1ms");
        bad++;
    }
    bad += build_headers(w, api->conf_get(root, "headers"));
    bad += read_tls(w, api->conf_get(root, "tls"), &c);
    if (bad) {
        webhook_fini(w);
        return VIGIL_ECONFIG;
    }
    int rc = wh_http_init(w, &c);
    if (rc != 0) {
        webhook_fini(w);
        return rc;
    }
    bool https = strncmp(w->origin, "https:", 6) == 0;
    if (c.insecure && https) {
        api->log(h, VIGIL_LOG_WARN,
                 "tls.insecure: the certificate of %s is NOT verified; anyone on the path can "
                 "read and change what this sink sends",
                 w->origin);
    } else if (!https && api->conf_get(root, "tls")) {
        api->log(h, VIGIL_LOG_WARN, "tls is ignored: %s is plain http", w->origin);
    }
    *state = w;
    return 0;
}

static int webhook_write(void *state, const struct vigil_event *const *events, size_t n,
                         enum vigil_write_result *results)
{
    struct webhook *w = state;
    if (w->in_flight) {
        return -EBUSY; /* the host broke the contract: retry everything */
    }
    long sent = w->format == WH_FORMAT_ALERTMANAGER ? wh_format_alertmanager(w, events, n, results)
                                                    : wh_format_json(w, events, n, results);
    if (sent < 0) {
        wh_warn(w, "no memory for a request body of %zu events; retrying", n);
        return (int)sent;
    }
    if (sent == 0) {
        return 0; /* nothing to send: every event already has its FAIL */
    }
    return wh_http_post(w, results, n);
}

VIGIL_EXPORT const struct vigil_plugin vigil_plugin = {
    VIGIL_PLUGIN_DESCRIPTOR_FIELDS,
    .kind = VIGIL_SINK,
    .name = "webhook",
    .version = "1.0.0",
    .description = "POSTs events as JSON, or alerts to Alertmanager, over HTTP(S)",
    .options = webhook_options,
    .init = webhook_init,
    .write = webhook_write,
    .fini = webhook_fini,
};

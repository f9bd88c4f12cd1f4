/* tcp_probe config: reads `targets` (name, address, timeout, attempts, netns,
 * expect),
 * checks each value and reports problems at their file:line:col, checks that
 * every netns exists and is a network namespace, and sets up the resolver
 * when some target is a name rather than an IP literal.
 */
#include <errno.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <netdb.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "tcp_probe.h"

#define TIMEOUT_MAX_NS (3600ull * 1000000000ull)

static const char *const target_keys[] = {"name",  "address", "timeout", "attempts",
                                          "netns", "expect",  NULL};

/* Splits "host:port" or "[v6]:port" into t->host and t->port. */
static int parse_address(struct tcp_probe *tp, struct tp_target *t, const struct vigil_conf *n)
{
    const struct vigil_api *api = tp->api;
    const char *a = t->address, *host, *port;
    size_t hlen;
    if (a[0] == '[') {
        const char *close = strchr(a, ']');
        if (!close) {
            api->conf_error(tp->h, n, "address '%s': missing ']' after the IPv6 address", a);
            return VIGIL_ECONFIG;
        }
        host = a + 1;
        hlen = (size_t)(close - host);
        if (close[1] != ':') {
            api->conf_error(tp->h, n, "address '%s' has no port: write [%.*s]:PORT", a, (int)hlen,
                            host);
            return VIGIL_ECONFIG;
        }
        port = close + 2;
    } else {
        const char *colon = strrchr(a, ':');
        if (!colon) {
            api->conf_error(tp->h, n, "address '%s' has no port: write %s:PORT", a, a);
            return VIGIL_ECONFIG;
        }
        if (memchr(a, ':', (size_t)(colon - a))) {
            api->conf_error(tp->h, n,
                            "address '%s': an IPv6 address goes in brackets, as in [::1]:22", a);
            return VIGIL_ECONFIG;
        }
        host = a;
        hlen = (size_t)(colon - a);
        port = colon + 1;
    }
    if (hlen == 0 || hlen >= sizeof t->host) {
        api->conf_error(tp->h, n, "address '%s': the host must be 1 to %zu characters", a,
                        sizeof t->host - 1);
        return VIGIL_ECONFIG;
    }
    char *end = NULL;
    errno = 0;
    unsigned long p = port[0] >= '0' && port[0] <= '9' ? strtoul(port, &end, 10) : 0;
    if (!end || *end != '\0' || errno || p < 1 || p > 65535) {
        api->conf_error(tp->h, n, "address '%s': bad port '%s' (a number from 1 to 65535)", a,
                        port);
        return VIGIL_ECONFIG;
    }
    memcpy(t->host, host, hlen);
    t->host[hlen] = '\0';
    snprintf(t->port, sizeof t->port, "%lu", p);
    return 0;
}

/* An IP literal becomes t->addr now (getaddrinfo with AI_NUMERICHOST never
 * asks a resolver); anything else must look like a host name. */
static int classify_host(struct tcp_probe *tp, struct tp_target *t, const struct vigil_conf *n)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(t->host, t->port, &hints, &res) == 0 && res) {
        memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
        t->addr_len = res->ai_addrlen;
        t->numeric = true;
        freeaddrinfo(res);
        return 0;
    }
    if (t->address[0] == '[') {
        tp->api->conf_error(tp->h, n, "address '%s': '%s' is not an IPv6 address", t->address,
                            t->host);
        return VIGIL_ECONFIG;
    }
    for (const char *c = t->host; *c; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_';
        if (!ok) {
            tp->api->conf_error(tp->h, n,
                                "address '%s': '%s' is neither an IP address nor a host name",
                                t->address, t->host);
            return VIGIL_ECONFIG;
        }
    }
    t->numeric = false;
    return 0;
}

/* `netns`: a name under /run/netns (as `ip netns add` makes) or a path. It
 * must exist now and be a network namespace; it is opened again for every
 * probe, so a namespace that is re-created under the same name is followed
 * and a finished container's namespace is not kept alive by us. */
static int check_netns(struct tcp_probe *tp, struct tp_target *t, const struct vigil_conf *n)
{
    const struct vigil_api *api = tp->api;
    const char *ns = t->netns;
    if (strchr(ns, '/')) {
        if (strlen(ns) >= sizeof t->ns_path) {
            api->conf_error(tp->h, n, "netns path is too long");
            return VIGIL_ECONFIG;
        }
        snprintf(t->ns_path, sizeof t->ns_path, "%s", ns);
    } else {
        if (ns[0] == '\0' || strcmp(ns, ".") == 0 || strcmp(ns, "..") == 0 || strlen(ns) > 255) {
            api->conf_error(tp->h, n,
                            "netns '%s': give a name under /run/netns or a path such as "
                            "/proc/<pid>/ns/net",
                            ns);
            return VIGIL_ECONFIG;
        }
        snprintf(t->ns_path, sizeof t->ns_path, "/run/netns/%s", ns);
    }
    int fd = open(t->ns_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT && !strchr(ns, '/')) {
            api->conf_error(tp->h, n,
                            "netns '%s': %s does not exist (create it with 'ip netns add %s', or "
                            "give a path such as /proc/<pid>/ns/net)",
                            ns, t->ns_path, ns);
        } else if (e == EACCES || e == EPERM) {
            api->conf_error(tp->h, n,
                            "netns '%s': cannot open %s: %s (entering a network namespace "
                            "needs root, or CAP_SYS_ADMIN and CAP_SYS_PTRACE)",
                            ns, t->ns_path, strerror(e));
        } else {
            api->conf_error(tp->h, n, "netns '%s': cannot open %s: %s", ns, t->ns_path,
                            strerror(e));
        }
        return VIGIL_ECONFIG;
    }
    int type = ioctl(fd, NS_GET_NSTYPE);
    int e = errno;
    close(fd);
    if (type != CLONE_NEWNET) {
        api->conf_error(tp->h, n, "netns '%s': %s is not a network namespace%s%s%s", ns, t->ns_path,
                        type < 0 ? " (" : "", type < 0 ? strerror(e) : "", type < 0 ? ")" : "");
        return VIGIL_ECONFIG;
    }
    tp->any_netns = true;
    return 0;
}

/* A string key of a target, or NULL (after an error) when it is not one. */
static const char *target_string(struct tcp_probe *tp, const struct vigil_conf *map,
                                 const char *key, int *bad)
{
    const struct vigil_conf *n = tp->api->conf_get(map, key);
    const char *s = NULL;
    if (n && tp->api->conf_string(n, &s) != 0) {
        tp->api->conf_error(tp->h, n, "target %s must be a string", key);
        (*bad)++;
        return NULL;
    }
    return s;
}

/* `attempts`, at the top or in a target: a whole number from 1 to
 * TP_ATTEMPTS_MAX. */
static int read_attempts(struct tcp_probe *tp, const struct vigil_conf *n, unsigned *out)
{
    int64_t v = 0;
    if (tp->api->conf_int(n, &v) != 0 || v < 1 || v > TP_ATTEMPTS_MAX) {
        tp->api->conf_error(tp->h, n, "attempts must be a whole number from 1 to %d",
                            TP_ATTEMPTS_MAX);
        return VIGIL_ECONFIG;
    }
    *out = (unsigned)v;
    return 0;
}

static int read_target(struct tcp_probe *tp, struct tp_target *t, const struct vigil_conf *map,
                       uint64_t default_timeout_ns, unsigned default_attempts)
{
    const struct vigil_api *api = tp->api;
    int bad = 0;
    const char *key = NULL;
    /* A map has keys; a scalar or a list has none (an empty map cannot be
     * told from an empty list, and both lack a name anyway). */
    if (api->conf_len(map) > 0) {
        api->conf_at(map, 0, &key);
    }
    if (!key && api->conf_len(map) > 0) {
        api->conf_error(tp->h, map, "a target is a map: { name: web, address: \"10.0.0.1:80\" }");
        return VIGIL_ECONFIG;
    }
    for (size_t i = 0; i < api->conf_len(map); i++) {
        const struct vigil_conf *v = api->conf_at(map, i, &key);
        size_t k = 0;
        while (target_keys[k] && strcmp(target_keys[k], key) != 0) {
            k++;
        }
        if (!target_keys[k]) {
            api->conf_error(tp->h, v,
                            "unknown key '%s' in a target (valid keys: name, address, "
                            "timeout, attempts, netns, expect)",
                            key);
            bad++;
        }
    }
    t->name = target_string(tp, map, "name", &bad);
    t->address = target_string(tp, map, "address", &bad);
    t->netns = target_string(tp, map, "netns", &bad);
    const char *expect = target_string(tp, map, "expect", &bad);
    const struct vigil_conf *name_n = api->conf_get(map, "name");
    const struct vigil_conf *addr_n = api->conf_get(map, "address");
    if (!name_n) {
        api->conf_error(tp->h, map, "a target needs a name (labels.target of its events)");
        bad++;
    } else if (t->name && t->name[0] == '\0') {
        api->conf_error(tp->h, name_n, "target name must not be empty");
        bad++;
    }
    if (!addr_n) {
        api->conf_error(tp->h, map, "target '%s' needs an address (host:port)",
                        t->name ? t->name : "?");
        bad++;
    } else if (t->address &&
               (parse_address(tp, t, addr_n) != 0 || classify_host(tp, t, addr_n) != 0)) {
        bad++;
    }
    const struct vigil_conf *tn = api->conf_get(map, "timeout");
    t->timeout_ns = default_timeout_ns;
    if (tn && (api->conf_duration(tn, &t->timeout_ns) != 0 || t->timeout_ns == 0 ||
               t->timeout_ns > TIMEOUT_MAX_NS)) {
        api->conf_error(tp->h, tn,
                        "target timeout must be a duration above 0 and at most 1h, "
                        "such as 500ms or 5s");
        bad++;
    }
    const struct vigil_conf *an = api->conf_get(map, "attempts");
    t->attempts = default_attempts;
    if (an && read_attempts(tp, an, &t->attempts) != 0) {
        bad++;
    }
    if (expect) {
        if (strcmp(expect, "closed") == 0) {
            t->expect_closed = true;
        } else if (strcmp(expect, "open") != 0) {
            api->conf_error(tp->h, api->conf_get(map, "expect"),
                            "expect must be 'open' or 'closed', not '%s'", expect);
            bad++;
        }
    }
    if (t->netns && check_netns(tp, t, api->conf_get(map, "netns")) != 0) {
        bad++;
    }
    if (bad) {
        return VIGIL_ECONFIG;
    }
    /* Everything a round needs, now: a probe allocates nothing. */
    t->att = calloc(t->attempts, sizeof *t->att);
    t->ms = calloc(t->attempts, sizeof *t->ms);
    if (!t->att || !t->ms) {
        return -ENOMEM;
    }
    for (unsigned i = 0; i < t->attempts; i++) {
        t->att[i].t = t;
        t->att[i].fd = -1;
    }
    return 0;
}

/* The resolver: one evdns_base on the instance's loop, configured from
 * resolv_conf (default /etc/resolv.conf; /etc/hosts is read as well). */
static int setup_resolver(struct tcp_probe *tp)
{
    const struct vigil_api *api = tp->api;
    const struct vigil_conf *rn = api->conf_get(api->conf_root(tp->h), "resolv_conf");
    const char *path = "/etc/resolv.conf";
    if (rn && api->conf_string(rn, &path) != 0) {
        api->conf_error(tp->h, rn, "resolv_conf must be a file name");
        return VIGIL_ECONFIG;
    }
    tp->dns = evdns_base_new(tp->base, 0);
    if (!tp->dns) {
        return -ENOMEM;
    }
    int r = evdns_base_resolv_conf_parse(tp->dns, DNS_OPTIONS_ALL, path);
    if (r == 0 || r == 6) {
        return 0; /* 6: no nameserver listed; evdns then asks 127.0.0.1 */
    }
    if (rn) {
        api->conf_error(tp->h, rn, "resolv_conf: cannot read %s (evdns error %d)", path, r);
        return VIGIL_ECONFIG;
    }
    api->log(tp->h, VIGIL_LOG_WARN,
             "cannot read %s (evdns error %d): names resolve from /etc/hosts, then by asking "
             "127.0.0.1",
             path, r);
    return 0;
}

int tp_conf_read(struct tcp_probe *tp)
{
    const struct vigil_api *api = tp->api;
    const struct vigil_conf *root = api->conf_root(tp->h);
    const struct vigil_conf *list = api->conf_get(root, "targets");
    uint64_t default_timeout_ns = 0;
    const struct vigil_conf *tn = api->conf_get(root, "timeout");
    int bad = 0;
    api->conf_duration(tn, &default_timeout_ns);
    if (default_timeout_ns == 0 || default_timeout_ns > TIMEOUT_MAX_NS) {
        api->conf_error(tp->h, tn, "timeout must be above 0 and at most 1h");
        bad++;
    }
    unsigned default_attempts = 1;
    const struct vigil_conf *an = api->conf_get(root, "attempts");
    if (an && read_attempts(tp, an, &default_attempts) != 0) {
        bad++;
    }
    size_t n = api->conf_len(list);
    if (!list || n == 0) {
        api->conf_error(tp->h, list,
                        "tcp_probe needs targets: a list of { name, address: host:port }");
        return VIGIL_ECONFIG;
    }
    tp->targets = calloc(n, sizeof *tp->targets);
    if (!tp->targets) {
        return -ENOMEM;
    }
    tp->ntargets = n;
    bool need_dns = false;
    for (size_t i = 0; i < n; i++) {
        struct tp_target *t = &tp->targets[i];
        t->tp = tp;
        int rc =
            read_target(tp, t, api->conf_at(list, i, NULL), default_timeout_ns, default_attempts);
        if (rc == -ENOMEM) {
            return rc;
        }
        if (rc != 0) {
            bad++;
        } else {
            need_dns |= !t->numeric;
        }
        for (size_t j = 0; t->name && j < i; j++) {
            if (tp->targets[j].name && strcmp(tp->targets[j].name, t->name) == 0) {
                api->conf_error(tp->h, api->conf_get(api->conf_at(list, i, NULL), "name"),
                                "target name '%s' is used twice (names label the events: "
                                "make them unique)",
                                t->name);
                bad++;
                break;
            }
        }
    }
    if (bad) {
        return VIGIL_ECONFIG;
    }
    return need_dns ? setup_resolver(tp) : 0;
}

void tp_conf_free(struct tcp_probe *tp)
{
    if (tp->dns) {
        evdns_base_free(tp->dns, 0);
        tp->dns = NULL;
    }
    for (size_t i = 0; tp->targets && i < tp->ntargets; i++) {
        free(tp->targets[i].att);
        free(tp->targets[i].ms);
    }
    free(tp->targets);
    tp->targets = NULL;
    tp->ntargets = 0;
}

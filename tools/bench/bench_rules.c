/* vigil-bench-rules: events per second through the rules engine alone (no
 * bus, no threads), with 1, 10 and 50 rules of a representative mix:
 * thresholds over cgroup stats, overhead bounds over KVM stats, and access
 * policies. Events are pre-built and read per evaluation, as the engine's
 * stage reads what the bus checked, so the figure includes reading. `capacity`: one capacity rule
 * over a host of 2,000 containers (cgroup.stats) and 50 VMs (kvm.vm), with
 * their limits steady or changing at every event.
 *   vigil-bench-rules [EVENTS]            (default 2000000)
 *   vigil-bench-rules capacity [EVENTS]
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "event.h"
#include "log.h"
#include "rules.h"

#define KINDS 3

static size_t verdicts;

static void count_verdict(void *arg, const char *topic, const char *body, size_t len)
{
    (void)arg;
    (void)topic;
    (void)body;
    (void)len;
    verdicts++;
}

/* n rules, cycling through the three kinds. */
static char *rules_yaml(int n)
{
    size_t cap = (size_t)n * 512 + 64, len = 0;
    char *y = malloc(cap);
    len += (size_t)snprintf(y + len, cap - len, "rules:\n");
    for (int i = 0; i < n; i++) {
        switch (i % KINDS) {
        case 0:
            len +=
                (size_t)snprintf(y + len, cap - len,
                                 "  - name: cpu%d\n    kind: threshold\n    match: cgroup.stats\n"
                                 "    expr: values.cpu_usage_pct > %d && labels.container ~ "
                                 "\"web-*\"\n    for: 30s\n",
                                 i, 90 + i % 9);
            break;
        case 1:
            len +=
                (size_t)snprintf(y + len, cap - len,
                                 "  - name: bound%d\n    kind: bound\n    match: kvm.vm\n"
                                 "    weights: { H: 1.0, C: 0.001, M: 0.000000001 }\n"
                                 "    terms: { H: values.host_cpu_pct, C: values.exits_per_s, M: "
                                 "values.memory_overhead_bytes }\n"
                                 "    max: { H: 20, C: 10000, M: 1000000000 }\n",
                                 i);
            break;
        default:
            len +=
                (size_t)snprintf(y + len, cap - len,
                                 "  - name: policy%d\n    kind: policy\n    match: access\n"
                                 "    rules:\n"
                                 "      - deny: { subject: 'guest:*', action: [write, delete] }\n"
                                 "      - allow: { subject: '*', action: read }\n"
                                 "      - allow: { subject: 'admin:*' }\n",
                                 i);
            break;
        }
    }
    return y;
}

struct sample {
    char topic[256];
    char body[512];
    size_t len;
};

/* hot: some series fire and flap, some accesses are denied (an alert storm:
 * more verdicts than events); quiet: nothing fires (evaluation alone). */
static void build_samples(struct sample *s, size_t n, bool hot)
{
    struct vigil_event_builder b;
    vigil_event_builder_init(&b);
    for (size_t i = 0; i < n; i++) {
        char name[32];
        const char *body;
        switch (i % KINDS) {
        case 0:
            vigil_event_begin(&b, "cgroup.stats");
            snprintf(name, sizeof name, "web-%zu", i % 50);
            vigil_event_add_label(&b, "cgroup", "/kubepods/burstable/pod1/x");
            vigil_event_add_label(&b, "container", name);
            /* web-0..web-4 stay hot: they fire once `for` has held. */
            vigil_event_add_value(&b, "cpu_usage_pct", hot && i % 50 < 5 ? 99.0 : (double)(i % 90));
            vigil_event_add_value(&b, "memory_current_bytes", 1e8);
            break;
        case 1:
            vigil_event_begin(&b, "kvm.vm");
            snprintf(name, sizeof name, "vm-%zu", i % 20);
            vigil_event_add_label(&b, "vm", name);
            vigil_event_add_value(&b, "host_cpu_pct", (double)(i % 30));
            vigil_event_add_value(&b, "exits_per_s", (double)(i % 999) * (hot ? 20.0 : 1.0));
            vigil_event_add_value(&b, "memory_overhead_bytes", 5e7);
            break;
        default:
            vigil_event_begin(&b, "access");
            vigil_event_add_label(&b, "subject", !hot || i % 7 ? "user:bob" : "guest:eve");
            vigil_event_add_label(&b, "action", !hot || i % 5 ? "read" : "write");
            vigil_event_add_label(&b, "resource", "/srv/data");
            break;
        }
        vigil_event_finish(&b, "bench-host", "bench", i + 1, &body, &s[i].len);
        memcpy(s[i].body, body, s[i].len);
        snprintf(s[i].topic, sizeof s[i].topic, "%s", b.topic);
    }
    vigil_event_builder_fini(&b);
}

/* Compiles `yaml`, feeds it `events` events cycling over s[0..n), each
 * `step_ns` of event time after the last, and returns the seconds taken
 * (verdicts counted in `verdicts`); < 0 when the rules do not compile. */
static double run(const char *yaml, const struct sample *s, size_t n, size_t events,
                  uint64_t step_ns)
{
    struct vigil_diag d;
    vigil_diag_init(&d);
    struct vigil_conf *root = vigil_conf_parse(yaml, strlen(yaml), "bench.yaml", &d);
    struct vigil_rules *r =
        root ? vigil_rules_new(vigil_conf_get(root, "rules"), "rules", &d) : NULL;
    if (!r) {
        vigil_diag_print(&d, stderr);
        vigil_conf_free(root);
        vigil_diag_fini(&d);
        return -1;
    }
    msgpack_zone zone;
    msgpack_zone_init(&zone, 64 * 1024);
    verdicts = 0;
    uint64_t now = vigil_now_ns(), t0 = vigil_mono_ns();
    for (size_t i = 0; i < events; i++) {
        const struct sample *e = &s[i % n];
        struct vigil_event_view v;
        const char *why;
        if (vigil_rules_read(r, &v, e->topic, strlen(e->topic), e->body, e->len, &zone, &why) ==
            0) {
            vigil_rules_eval(r, &v, now + i * step_ns, count_verdict, NULL);
        }
        msgpack_zone_clear(&zone);
    }
    double secs = (double)(vigil_mono_ns() - t0) / 1e9;
    msgpack_zone_destroy(&zone);
    vigil_rules_free(r);
    vigil_conf_free(root);
    vigil_diag_fini(&d);
    return secs;
}

/* One host's events: a system.stats, then 2,000 containers' cgroup.stats
 * (three levels deep, as kubepods) and 50 kvm.vm, cycled. `changing`: each
 * cgroup's quota differs from its previous event's, so every event moves the
 * host's sums (judged at once, capacity.host at most every publish_every). */
static int bench_capacity(size_t events)
{
    enum { NCG = 2000, NVM = 50, NCAP = 1 + 2 * NCG + NVM };
    static struct sample s[NCAP];
    static const char yaml[] = "rules:\n  - name: cap\n    kind: capacity\n"
                               "    match: [system.stats, cgroup.stats, kvm.vm]\n"
                               "    overcommit: {cpu: 100.0, memory: 8.0}\n";
    printf("%-9s %14s %12s %10s\n", "limits", "events/s", "ns/event", "published");
    for (int changing = 0; changing < 2; changing++) {
        struct vigil_event_builder b;
        vigil_event_builder_init(&b);
        size_t n = 0;
        for (size_t i = 0; i < NCAP; i++) {
            const char *body;
            char path[128], name[80];
            if (i == 0) {
                vigil_event_begin(&b, "system.stats");
                vigil_event_add_value(&b, "cpu_count", 64);
                vigil_event_add_value(&b, "memory_total_bytes", 512e9);
            } else if (i <= 2 * NCG) {
                size_t c = (i - 1) % NCG; /* each container twice: two quotas */
                vigil_event_begin(&b, "cgroup.stats");
                snprintf(name, sizeof name, "%064zx", c);
                snprintf(path, sizeof path, "/kubepods/burstable/pod%zu/cri-containerd-%.12s.scope",
                         c / 3, name + 52);
                vigil_event_add_label(&b, "cgroup", path);
                vigil_event_add_label(&b, "container", name);
                vigil_event_add_value(&b, "cpu_max_cpus",
                                      changing && i > NCG ? 0.25 : 0.5 + (double)(c % 4));
                vigil_event_add_value(&b, "memory_max_bytes", 268435456.0 * (double)(1 + c % 8));
            } else {
                vigil_event_begin(&b, "kvm.vm");
                snprintf(name, sizeof name, "vm-%zu", i);
                vigil_event_add_label(&b, "vm", name);
                vigil_event_add_value(&b, "vcpus", 4);
                vigil_event_add_value(&b, "guest_memory_bytes", 8e9);
            }
            vigil_event_finish(&b, "bench-host", "bench", i + 1, &body, &s[n].len);
            memcpy(s[n].body, body, s[n].len);
            snprintf(s[n].topic, sizeof s[n].topic, "%s", b.topic);
            n++;
        }
        vigil_event_builder_fini(&b);
        double secs = run(yaml, s, n, events, 100000); /* 10k events/s */
        if (secs < 0) {
            return 1;
        }
        printf("%-9s %14.0f %12.1f %10zu\n", changing ? "changing" : "steady",
               (double)events / secs, secs * 1e9 / (double)events, verdicts);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "capacity") == 0) {
        return bench_capacity(argc > 2 ? strtoull(argv[2], NULL, 10) : 2000000);
    }
    size_t events = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
    enum { NSAMPLES = 999 };
    static struct sample samples[NSAMPLES];
    const int counts[] = {1, 10, 50};
    printf("%-7s %-6s %14s %12s %10s\n", "events", "rules", "events/s", "ns/event", "verdicts");
    for (size_t c = 0; c < 2 * sizeof counts / sizeof counts[0]; c++) {
        bool hot = c >= sizeof counts / sizeof counts[0];
        build_samples(samples, NSAMPLES, hot);
        int nrules = counts[c % (sizeof counts / sizeof counts[0])];
        char *y = rules_yaml(nrules);
        /* 1 ms of event time per event: `for` and renotify move on. */
        double secs = run(y, samples, NSAMPLES, events, 1000000);
        free(y);
        if (secs < 0) {
            return 1;
        }
        printf("%-7s %-6d %14.0f %12.1f %10zu\n", hot ? "storm" : "quiet", nrules,
               (double)events / secs, secs * 1e9 / (double)events, verdicts);
    }
    return 0;
}

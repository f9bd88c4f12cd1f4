/* The prometheus sink's series: the latest value of every (metric, labels)
 * its events carried, and their exposition in the Prometheus text format
 * 0.0.4 or OpenMetrics 1.0. Single-threaded (the sink's thread).
 *
 * A series is named from its event: "vigil_" + topic + "_" + value name
 * (a topic "vigil.x" gives "vigil_x_..."), every character outside
 * [a-zA-Z0-9_:] replaced by '_'. Its labels are the event's labels plus
 * `host`, names mapped the same way (a leading digit or "__" gets a "_"
 * or "label" in front; an event label named host becomes exported_host),
 * values escaped, bytes that are not UTF-8 replaced by U+FFFD. A name
 * ending in _total is a counter, the others gauges.
 *
 * Scrapes render from a snapshot (the values when it was taken) in slices,
 * so a large exposition never holds the thread: series removed meanwhile
 * are freed once no snapshot holds them.
 */
#ifndef VIGIL_PROM_SERIES_H
#define VIGIL_PROM_SERIES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct prom_table;
struct prom_snapshot;
struct evbuffer;

struct prom_table *prom_table_new(size_t max_series);
void prom_table_free(struct prom_table *t);

/* One event's label set, rendered once for all its values. Zero it to
 * start; it grows and is reused event after event. */
struct prom_label_ix {
    uint32_t name_off, name_len, value_off, value_len; /* into tmp */
};
struct prom_labels {
    char *buf; /* {host="h",a="b"} */
    size_t len, cap;
    char *tmp; /* names mapped and values escaped, unsorted */
    size_t tlen, tcap;
    struct prom_label_ix *ix;
    size_t n, ixcap;
};
void prom_labels_fini(struct prom_labels *l);
/* Starts the set with host. 0 or -ENOMEM. */
int prom_labels_begin(struct prom_labels *l, const char *host, size_t host_len);
/* Adds a label (name and value as the event has them). Labels must come in
 * any order; a name already there (after mapping) is skipped. */
int prom_labels_add(struct prom_labels *l, const char *name, size_t name_len, const char *value,
                    size_t value_len);
/* Sorts the labels by name and closes the set. */
int prom_labels_end(struct prom_labels *l);

/* Sets the series (topic, value name, labels) to v at time now_ns
 * (monotonic). 1 set, 0 when it is new and max_series are there already
 * (counted in prom_table_dropped), -ENOMEM. */
int prom_table_set(struct prom_table *t, const char *topic, size_t topic_len, const char *name,
                   size_t name_len, const struct prom_labels *l, double v, uint64_t now_ns);
/* Removes the series not set since before `older_than` (monotonic ns). */
void prom_table_expire(struct prom_table *t, uint64_t older_than);

size_t prom_table_series(const struct prom_table *t);
uint64_t prom_table_dropped(const struct prom_table *t); /* new series refused, in all */

/* A snapshot of every series and its value now; the table keeps what it
 * points at until it is freed. NULL on ENOMEM. */
struct prom_snapshot *prom_snapshot_take(struct prom_table *t, bool openmetrics);
/* Renders up to max_series more into out; true when the exposition is
 * complete (OpenMetrics' "# EOF" included). */
bool prom_snapshot_render(struct prom_snapshot *s, struct evbuffer *out, size_t max_series);
void prom_snapshot_free(struct prom_snapshot *s);

/* The mappings, for the tests and the sink's own names. out must hold
 * 2 * len + 16 bytes; returns the length written. */
size_t prom_metric_name(char *out, const char *topic, size_t topic_len, const char *name,
                        size_t name_len);

#endif

/* vigil-top's model: fixed tables of VMs, cgroups, probes and firing alerts
 * that bus events fill without allocating, and the text frame they render
 * to (the same lines for the curses screen and for batch mode).
 */
#ifndef VIGIL_TOP_MODEL_H
#define VIGIL_TOP_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define TOP_ROWS_MAX 4096 /* per pane; more are counted in unfit_total */
#define TOP_NUMS 12
#define TOP_STRS 4
#define TOP_HOSTS_MAX 32
#define TOP_LINE_MAX 512 /* widest line rendered */

enum top_pane { TOP_VMS, TOP_CGROUPS, TOP_PROBES, TOP_ALERTS, TOP_NPANES };

struct top_row {
    uint64_t hash;
    char key[192]; /* identity: host, then the pane's labels, 0x1f apart */
    char host[64];
    char name[160];
    char s[TOP_STRS][96]; /* the pane's other strings (pid, address, ...) */
    double num[TOP_NUMS]; /* NaN: not reported */
    uint64_t seen_ns;     /* monotonic time of the last update */
    uint64_t gap_ns;      /* time between its last two updates */
    bool gone;            /* resolved alert: dropped at the next frame */
};

struct top_table {
    struct top_row *rows; /* dense, n used */
    size_t n;
    int32_t *index; /* open addressing over 2 x TOP_ROWS_MAX slots, -1: free */
    uint64_t unfit_total;
    bool expires; /* rows not updated for 3 periods are dropped */
};

struct top_host {
    char name[64];
    uint64_t seen_ns;
};

struct top {
    struct top_table pane[TOP_NPANES];
    struct top_table self; /* vigil.self, per host and stage */
    struct top_host hosts[TOP_HOSTS_MAX];
    size_t nhosts;
    uint64_t events_total, bad_total; /* received; not decodable */
    uint64_t frame_events, frame_ns;  /* at the last frame, for the rate */
    double rate;                      /* events/s over the last frame */
    uint64_t period_ns;               /* the refresh delay */
    int sort_col[TOP_NPANES];
    bool reverse[TOP_NPANES];
    const char *endpoint;
};

/* Allocates the tables (calloc: pages are touched as rows fill). Returns
 * NULL when memory is short; top_free(NULL) does nothing. */
struct top *top_new(const char *endpoint, uint64_t period_ns);
void top_free(struct top *t);

/* Takes one decoded event into the tables; now_ns is CLOCK_MONOTONIC. */
void top_ingest(struct top *t, const struct vigil_event_view *v, uint64_t now_ns);

/* Once per refresh: computes the event rate and drops rows not updated for
 * three of their periods (and resolved alerts). */
void top_tick(struct top *t, uint64_t now_ns);

/* A line of a frame: its text and how to show it. */
enum top_attr { TOP_A_NORMAL, TOP_A_HEADER, TOP_A_TITLE, TOP_A_HOT, TOP_A_FADED };
typedef void (*top_emit_fn)(void *arg, const char *line, enum top_attr attr);

/* The header line (hosts, event rate, vigil.self's drops), and with tabs a
 * second one (the panes, the current one in brackets, and its sort). */
void top_render_header(const struct top *t, enum top_pane current, bool tabs, int width,
                       top_emit_fn emit, void *arg);
/* One pane: its column titles, then at most max_rows rows (<0: all) sorted
 * by its sort column, width columns wide. now_ns decides what is faded. */
void top_render_pane(const struct top *t, enum top_pane p, int width, int max_rows, uint64_t now_ns,
                     top_emit_fn emit, void *arg);

/* Pane names ("VMs", ...). */
const char *top_pane_name(enum top_pane p);
/* Keys: a column's letter sorts by it (true), '<' / '>' move the sort
 * column, 'r' reverses. False: the key is not a sort key of this pane. */
bool top_sort_key(struct top *t, enum top_pane p, int key);

#endif

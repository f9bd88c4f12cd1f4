/* vigil-top: a live view of a vigil bus, like kvm_stat and htop: VMs,
 * cgroups, probes and the alerts firing now, refreshed every second on a
 * curses screen, or printed as plain-text frames for scripts (-b).
 */
#include <curses.h>
#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "config.h"
#include "event.h"
#include "log.h"
#include "tool.h"
#include "top_model.h"

#define PROG "vigil-top"
#define MIN_COLS 60
#define MIN_LINES 8
#define BATCH_WIDTH 132
#define DRAIN_MAX 20000 /* messages taken between two looks at the keyboard */
#define MAX_BODY (16u << 20)

/* Topics the panes and the header read; everything else stays on the bus. */
static const char *const topics[] = {"kvm.vm",      "cgroup.stats",   "tcp.probe",
                                     "alert.fired", "alert.resolved", "vigil.self"};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vigil-top [-c FILE | -e ENDPOINT] [-d DELAY] [-b] [-n FRAMES]\n"
            "  -c, --config FILE     read the subscribe endpoint from a vigil config\n"
            "  -e, --endpoint EP     the bus's subscribe endpoint (default %s)\n"
            "  -d, --delay D         refresh every D (seconds, or 500ms; default 1s)\n"
            "  -b, --batch           print plain-text frames to stdout, no screen\n"
            "  -n, --frames N        exit 0 after N frames\n"
            "      --server-key FILE the central's public key (vigil.pub): CURVE, with --key\n"
            "      --key FILE        your secret key (vigil.key, mode 0600; from vigil-keygen)\n"
            "Keys: Tab or 1-4 pane, < > sort column, a column's letter sorts by it,\n"
            "      r reverse, q quit.\n",
            VIGIL_DEFAULT_SUBSCRIBE);
}

/* -d: plain seconds ("0.5") or a vigil duration ("500ms"). */
static int parse_delay(const char *s, uint64_t *ns)
{
    char *end;
    errno = 0;
    double secs = strtod(s, &end);
    if (end != s && *end == '\0' && !errno) {
        if (!(secs >= 0.1 && secs <= 3600)) {
            return -1;
        }
        *ns = (uint64_t)(secs * 1e9);
        return 0;
    }
    if (vigil_parse_duration(s, ns) != 0 || *ns < 100000000ull || *ns > 3600000000000ull) {
        return -1;
    }
    return 0;
}

/* ---- The screen --------------------------------------------------------------- */

struct screen {
    int y, lines;
};

static void screen_emit(void *arg, const char *line, enum top_attr attr)
{
    struct screen *s = arg;
    if (s->y >= s->lines) {
        return;
    }
    int a = A_NORMAL;
    switch (attr) {
    case TOP_A_HEADER:
        a = A_BOLD;
        break;
    case TOP_A_TITLE:
        a = A_REVERSE;
        break;
    case TOP_A_HOT:
        a = A_BOLD;
        break;
    case TOP_A_FADED:
        a = A_DIM;
        break;
    default:
        break;
    }
    attrset(a);
    mvaddnstr(s->y++, 0, line, COLS);
    attrset(A_NORMAL);
}

static void draw(const struct top *t, enum top_pane pane, uint64_t now)
{
    erase();
    if (COLS < MIN_COLS || LINES < MIN_LINES) {
        char msg[96];
        snprintf(msg, sizeof msg, "terminal too small (%dx%d): vigil-top needs %dx%d", COLS, LINES,
                 MIN_COLS, MIN_LINES);
        mvaddnstr(0, 0, msg, COLS);
        refresh();
        return;
    }
    struct screen s = {.y = 0, .lines = LINES - 1};
    top_render_header(t, pane, true, COLS, screen_emit, &s);
    s.y++;
    top_render_pane(t, pane, COLS, LINES - 5, now, screen_emit, &s);
    attrset(A_DIM);
    mvaddnstr(LINES - 1, 0, "Tab/1-4 pane  < > sort  letters: sort by column  r reverse  q quit",
              COLS);
    attrset(A_NORMAL);
    refresh();
}

/* ---- Batch frames ---------------------------------------------------------------- */

static void print_emit(void *arg, const char *line, enum top_attr attr)
{
    (void)arg;
    (void)attr;
    /* Cells are padded: trailing blanks say nothing to a script. */
    size_t n = strlen(line);
    while (n && line[n - 1] == ' ') {
        n--;
    }
    fwrite(line, 1, n, stdout);
    fputc('\n', stdout);
}

static void print_frame(const struct top *t, uint64_t now)
{
    top_render_header(t, TOP_VMS, false, BATCH_WIDTH, print_emit, NULL);
    for (int p = 0; p < TOP_NPANES; p++) {
        printf("\n%s (%zu)\n", top_pane_name(p), t->pane[p].n);
        top_render_pane(t, p, BATCH_WIDTH, -1, now, print_emit, NULL);
    }
    printf("\n");
    fflush(stdout);
}

/* ---- The loop ------------------------------------------------------------------ */

/* Takes what the socket holds (at most DRAIN_MAX messages) into the model. */
static void drain(void *sub, struct top *t, msgpack_zone *zone, zmq_msg_t *topic, zmq_msg_t *body)
{
    for (int i = 0; i < DRAIN_MAX && zmq_msg_recv(topic, sub, ZMQ_DONTWAIT) != -1; i++) {
        if (!zmq_msg_more(topic) || zmq_msg_recv(body, sub, 0) == -1 || zmq_msg_more(body)) {
            t->bad_total++;
            while (zmq_msg_more(topic) && zmq_msg_recv(topic, sub, 0) != -1) {
            }
            continue;
        }
        struct vigil_event_view v;
        const char *why;
        msgpack_zone_clear(zone);
        if (vigil_event_decode(&v, zmq_msg_data(topic), zmq_msg_size(topic), zmq_msg_data(body),
                               zmq_msg_size(body), MAX_BODY, zone, &why) != 0) {
            t->bad_total++;
            continue;
        }
        top_ingest(t, &v, vigil_mono_ns());
    }
}

/* A key on the screen; false to quit. */
static bool on_key(struct top *t, enum top_pane *pane, int ch)
{
    switch (ch) {
    case 'q':
    case 'Q':
        return false;
    case '\t':
    case KEY_RIGHT:
        *pane = (*pane + 1) % TOP_NPANES;
        break;
    case KEY_BTAB:
    case KEY_LEFT:
        *pane = (*pane + TOP_NPANES - 1) % TOP_NPANES;
        break;
    case '1':
    case '2':
    case '3':
    case '4':
        *pane = (enum top_pane)(ch - '1');
        break;
    default:
        if (ch > 0 && ch < 128) {
            top_sort_key(t, *pane, ch);
        }
    }
    return true;
}

struct run_opts {
    bool batch;
    unsigned long frames; /* 0: until q or a signal */
    uint64_t delay_ns;
};

static int run_loop(void *sub, struct top *t, const struct run_opts *o)
{
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 64 * 1024)) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    enum top_pane pane = TOP_VMS;
    unsigned long shown = 0;
    uint64_t next = vigil_mono_ns() + o->delay_ns;
    top_tick(t, vigil_mono_ns());
    if (!o->batch) {
        draw(t, pane, vigil_mono_ns());
    }
    int status = 0;
    while (!vigil_tool_stop) {
        uint64_t now = vigil_mono_ns();
        if (now >= next) {
            top_tick(t, now);
            if (o->batch) {
                print_frame(t, now);
                if (ferror(stdout)) {
                    status = 1; /* the reader went away */
                    break;
                }
            } else {
                draw(t, pane, now);
            }
            next += o->delay_ns;
            if (next <= now) {
                next = now + o->delay_ns; /* we fell behind: do not catch up in a burst */
            }
            if (o->frames && ++shown == o->frames) {
                break;
            }
            continue;
        }
        zmq_pollitem_t it[2] = {{.socket = sub, .events = ZMQ_POLLIN},
                                {.fd = STDIN_FILENO, .events = ZMQ_POLLIN}};
        long wait_ms = (long)((next - now) / 1000000u) + 1;
        /* A signal (SIGWINCH, SIGINT) ends the wait early: that is what we want. */
        int rc = zmq_poll(it, o->batch ? 1 : 2, wait_ms);
        if (rc > 0 && (it[0].revents & ZMQ_POLLIN)) {
            drain(sub, t, &zone, &topic, &body);
        }
        if (!o->batch) {
            bool redraw = false, quit = false;
            int ch;
            while (!quit && (ch = getch()) != ERR) {
                if (ch == KEY_RESIZE) {
                    redraw = true;
                } else {
                    quit = !on_key(t, &pane, ch);
                    redraw = true;
                }
            }
            if (quit) {
                break;
            }
            if (redraw) {
                draw(t, pane, vigil_mono_ns());
            }
        }
    }
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    msgpack_zone_destroy(&zone);
    return status;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"endpoint", required_argument, NULL, 'e'},
        {"delay", required_argument, NULL, 'd'},
        {"batch", no_argument, NULL, 'b'},
        {"frames", required_argument, NULL, 'n'},
        {"server-key", required_argument, NULL, 'S'},
        {"key", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *endpoint_arg = NULL, *server_key = NULL, *key = NULL;
    struct run_opts o = {.delay_ns = 1000000000ull};
    int c;
    while ((c = getopt_long(argc, argv, "c:e:d:bn:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'e':
            endpoint_arg = optarg;
            break;
        case 'd':
            if (parse_delay(optarg, &o.delay_ns) != 0) {
                fprintf(stderr, PROG ": -d wants 0.1 to 3600 seconds (or 500ms, 2s), not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'b':
            o.batch = true;
            break;
        case 'n': {
            char *end;
            errno = 0;
            o.frames = strtoul(optarg, &end, 10);
            if (errno || *end || o.frames == 0 || optarg[0] == '-') {
                fprintf(stderr, PROG ": -n wants a positive number of frames, not '%s'\n", optarg);
                return 2;
            }
            break;
        }
        case 'S':
            server_key = optarg;
            break;
        case 'K':
            key = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || (config && endpoint_arg)) {
        if (optind < argc) {
            fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        } else {
            fprintf(stderr, PROG ": -c and -e exclude each other\n");
        }
        usage(stderr);
        return 2;
    }
    if (!o.batch && (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))) {
        fprintf(stderr, PROG ": the screen needs a terminal; for scripts use -b (batch mode)\n");
        return 2;
    }
    char *endpoint = vigil_tool_endpoint(PROG, config, endpoint_arg, true);
    if (!endpoint) {
        return 1;
    }
    vigil_tool_catch_signals();
    signal(SIGPIPE, SIG_IGN); /* batch output to a closed pipe: ferror, exit 1 */

    int status = 1;
    struct top *t = NULL;
    void *zctx = zmq_ctx_new();
    void *sub = zmq_socket(zctx, ZMQ_SUB);
    int hwm = 100000, linger = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    if (vigil_tool_curve(PROG, sub, server_key, key) != 0) {
        goto out;
    }
    if (zmq_connect(sub, endpoint) != 0) {
        fprintf(stderr, PROG ": cannot connect to %s: %s (an endpoint looks like %s)\n", endpoint,
                zmq_strerror(zmq_errno()), VIGIL_DEFAULT_SUBSCRIBE);
        goto out;
    }
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topics[i], strlen(topics[i]));
    }
    t = top_new(endpoint, o.delay_ns);
    if (!t) {
        fprintf(stderr, PROG ": out of memory\n");
        goto out;
    }
    if (o.batch) {
        status = run_loop(sub, t, &o);
    } else {
        setlocale(LC_ALL, "");
        SCREEN *scr = newterm(NULL, stdout, stdin);
        if (!scr) {
            fprintf(stderr, PROG ": cannot use this terminal (TERM=%s)\n",
                    getenv("TERM") ? getenv("TERM") : "");
            goto out;
        }
        cbreak();
        noecho();
        nodelay(stdscr, TRUE);
        keypad(stdscr, TRUE);
        curs_set(0);
        status = run_loop(sub, t, &o);
        endwin();
        delscreen(scr);
    }
    if (t->bad_total) {
        fprintf(stderr, PROG ": %llu messages were not events and were skipped\n",
                (unsigned long long)t->bad_total);
    }
out:
    top_free(t);
    zmq_close(sub);
    zmq_ctx_term(zctx);
    free(endpoint);
    return status;
}

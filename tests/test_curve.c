/* CURVE on a central's tcp endpoints, with real processes: keys made by
 * vigil-keygen, a central vigild with bus.curve, agents whose forward sink
 * has the right key or a stranger's, a plaintext client, and vigil-tap with
 * and without a key. Loopback only.
 */
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>
#include <cmocka.h>

#include "fleet/wire.h"
#include "harness.h"

struct curve_fx {
    struct vd central, agent, stranger;
    char keys[256]; /* a folder with central/, agent/, stranger/ */
    int ingest_port, sub_port;
};

static int keygen(struct curve_fx *f, const char *who)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", f->keys, who);
    char *const argv[] = {VIGIL_BUILD_DIR "/vigil-keygen", dir, NULL};
    char *out = NULL, *err = NULL;
    int rc = run(argv, NULL, 0, &out, &err, 10);
    free(out);
    free(err);
    return rc;
}

static const char *key_path(struct curve_fx *f, const char *who, const char *file)
{
    static char buf[4][512];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, 512, "%s/%s/%s", f->keys, who, file);
    return p;
}

/* An agent: gen (count events of source `name`) -> forward with `who`'s key. */
static int agent_setup(struct curve_fx *f, struct vd *v, const char *name, const char *who,
                       int count)
{
    char body[2048];
    snprintf(body, sizeof body,
             "sources:\n"
             "  - plugin: gen\n"
             "    name: %s\n"
             "    rate: 1000\n"
             "    count: %d\n"
             "sinks:\n"
             "  - plugin: forward\n"
             "    match: [gen.]\n"
             "    endpoint: tcp://127.0.0.1:%d\n"
             "    timeout: 1s\n"
             "    server_key: %s\n"
             "    key: %s\n"
             "  - plugin: test_capture\n"
             "    match: [vigil.self]\n"
             "    path: @DIR@/self.jsonl\n",
             name, count, f->ingest_port, key_path(f, "central", "vigil.pub"),
             key_path(f, who, "vigil.key"));
    return vd_setup(v, "500ms", body);
}

static int setup(void **state)
{
    struct curve_fx *f = calloc(1, sizeof *f);
    *state = f;
    snprintf(f->keys, sizeof f->keys, "/tmp/vigil-keys.XXXXXX");
    if (!mkdtemp(f->keys) || keygen(f, "central") != 0 || keygen(f, "agent") != 0 ||
        keygen(f, "stranger") != 0) {
        return -1;
    }
    char ak[512], line[256];
    snprintf(ak, sizeof ak, "%s/authorized_keys", f->keys);
    char *pub = slurp(key_path(f, "agent", "vigil.pub"));
    FILE *a = fopen(ak, "w");
    if (!pub || !a) {
        return -1;
    }
    snprintf(line, sizeof line, "# the agents this central trusts\n%.40s agent-1\n", pub);
    fputs(line, a);
    fclose(a);
    free(pub);
    f->ingest_port = free_loopback_port();
    f->sub_port = free_loopback_port();
    char keys[2048];
    snprintf(keys, sizeof keys,
             "  ingest: tcp://127.0.0.1:%d\n"
             "  curve: {secret_key: %s, authorized_keys: %s}\n",
             f->ingest_port, key_path(f, "central", "vigil.key"), ak);
    if (vd_setup_bus(&f->central, "500ms", keys,
                     "sinks:\n"
                     "  - plugin: file\n"
                     "    match: [gen.]\n"
                     "    path: @DIR@/central.jsonl\n"
                     "  - plugin: test_capture\n"
                     "    match: [vigil.self]\n"
                     "    path: @DIR@/self.jsonl\n") != 0) {
        return -1;
    }
    /* Its subscribe endpoint on tcp too, for vigil-tap. */
    char *cfg = slurp(f->central.cfg);
    char *at = cfg ? strstr(cfg, "  subscribe: ") : NULL;
    if (!at) {
        return -1;
    }
    char *eol = strchr(at, '\n');
    FILE *w = fopen(f->central.cfg, "w");
    fprintf(w, "%.*s  subscribe: tcp://127.0.0.1:%d%s", (int)(at - cfg), cfg, f->sub_port, eol);
    fclose(w);
    free(cfg);
    snprintf(f->central.sub, sizeof f->central.sub, "tcp://127.0.0.1:%d", f->sub_port);
    return 0;
}

static int teardown(void **state)
{
    struct curve_fx *f = *state;
    if (f) {
        vd_cleanup(&f->agent);
        vd_cleanup(&f->stranger);
        vd_cleanup(&f->central);
        remove_tree(f->keys);
        free(f);
    }
    return 0;
}

/* The agent with a listed key gets in and is named by its key; a stranger's
 * key is refused and counted, and nothing of it arrives until its key is
 * added and the central reloads authorized_keys. */
static void test_only_listed_keys_get_in(void **state)
{
    struct curve_fx *f = *state;
    assert_true(vd_started(&f->central));
    assert_int_equal(agent_setup(f, &f->agent, "trusted", "agent", 500), 0);
    assert_int_equal(agent_setup(f, &f->stranger, "intruder", "stranger", 500), 0);
    assert_true(vd_started(&f->agent));
    assert_true(vd_started(&f->stranger));
    const char *out = vd_path(&f->central, "central.jsonl");
    assert_true(wait_lines(out, "\"source\":\"trusted\"", 500, 20));
    assert_true(seqs_complete(out, "trusted", 500));
    const char *self = vd_path(&f->central, "self.jsonl");
    assert_true(wait_lines(self, "\"agent\":\"agent-1\"", 1, 10));
    assert_true(wait_lines(self, "\"stage\":\"curve\"", 1, 10));
    sleep_ms(1500);
    assert_int_equal(count_lines(out, "\"source\":\"intruder\""), 0);
    bool refused = false;
    for (double end = now_s() + 10; !refused && now_s() < end; sleep_ms(200)) {
        char *all = slurp(self);
        for (const char *p = all; p && (p = strstr(p, "\"auth_refused_total\":")); p++) {
            refused |= p[21] >= '1' && p[21] <= '9';
        }
        free(all);
    }
    assert_true(refused); /* counted in vigil.self */
    char *log = slurp(f->central.log);
    if (!strstr(log, "refused a client from 127.0.0.1") || !strstr(log, "not in ")) {
        fprintf(stderr, "%s", log);
        fail_msg("the central did not log the refused key");
    }
    free(log);
    /* The stranger's events wait in its spool: nothing was lost, nothing in. */
    double spooled;
    assert_true(
        wait_self_value(vd_path(&f->stranger, "self.jsonl"), "forward", "spool_events", 1, 10));
    assert_true(
        self_value(vd_path(&f->stranger, "self.jsonl"), "forward", "spool_events", &spooled));
    char *slog = slurp(f->stranger.log);
    if (!slog || !strstr(slog, "refused this agent")) {
        fprintf(stderr, "%s", slog ? slog : "");
        fail_msg("the agent did not say the central refused it");
    }
    free(slog);

    /* Its key added on the central and SIGHUP: the agent, whose socket
     * ZeroMQ gave up on, connects anew and its spool drains. */
    char ak[512];
    snprintf(ak, sizeof ak, "%s/authorized_keys", f->keys);
    char *pub = slurp(key_path(f, "stranger", "vigil.pub"));
    FILE *a = fopen(ak, "a");
    assert_non_null(pub);
    assert_non_null(a);
    fprintf(a, "%.40s newcomer\n", pub);
    fclose(a);
    free(pub);
    assert_int_equal(kill(f->central.pid, SIGHUP), 0);
    if (!wait_lines(out, "\"source\":\"intruder\"", 500, 30)) {
        vd_dump_log(&f->stranger);
        fail_msg("the agent did not get in after its key was added");
    }
    assert_true(seqs_complete(out, "intruder", 500));
}

/* A client without CURVE gets no ack and publishes nothing. */
static void test_plaintext_client_refused(void **state)
{
    struct curve_fx *f = *state;
    assert_true(vd_started(&f->central));
    void *zctx = zmq_ctx_new();
    void *d = zmq_socket(zctx, ZMQ_DEALER);
    int linger = 0, timeout = 1500;
    zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(d, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", f->ingest_port);
    assert_int_equal(zmq_connect(d, ep), 0);
    struct vigil_wire_batch b;
    vigil_wire_batch_init(&b, 0);
    assert_int_equal(vigil_wire_batch_begin(&b, 7), 0);
    zmq_send(d, b.head, VIGIL_WIRE_HEAD_LEN, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(d, b.data, b.len, ZMQ_DONTWAIT);
    char buf[64];
    assert_int_equal(zmq_recv(d, buf, sizeof buf, 0), -1); /* no ack: never let in */
    vigil_wire_batch_fini(&b);
    zmq_close(d);
    zmq_ctx_term(zctx);
    assert_int_equal(count_lines(vd_path(&f->central, "self.jsonl"), "\"stage\":\"agent\""), 0);
}

/* vigil-tap reads the central's bus with a listed key, and not without. */
static void test_tap_needs_a_key(void **state)
{
    struct curve_fx *f = *state;
    assert_true(vd_started(&f->central));
    char *out = NULL, *err = NULL;
    char *const with_key[] = {VIGIL_BUILD_DIR "/vigil-tap",
                              "-e",
                              f->central.sub,
                              "-t",
                              "vigil.self",
                              "-n",
                              "1",
                              "--timeout",
                              "10s",
                              "--server-key",
                              (char *)key_path(f, "central", "vigil.pub"),
                              "--key",
                              (char *)key_path(f, "agent", "vigil.key"),
                              NULL};
    assert_int_equal(run(with_key, NULL, 0, &out, &err, 20), 0);
    assert_non_null(strstr(out, "\"topic\":\"vigil.self\""));
    free(out);
    free(err);
    char *const no_key[] = {VIGIL_BUILD_DIR "/vigil-tap",
                            "-e",
                            f->central.sub,
                            "-t",
                            "vigil.self",
                            "-n",
                            "1",
                            "--timeout",
                            "2s",
                            NULL};
    assert_int_equal(run(no_key, NULL, 0, &out, &err, 20), 1);
    assert_null(strstr(out, "vigil.self"));
    free(out);
    free(err);
}

/* A secret key others may read stops the central, naming file and mode. */
static void test_open_secret_key_refused(void **state)
{
    struct curve_fx *f = *state;
    chmod(key_path(f, "central", "vigil.key"), 0644);
    assert_int_not_equal(vd_start(&f->central), 0);
    char *log = slurp(f->central.log);
    if (!strstr(log, "vigil.key: permissions 0644 are too open")) {
        fprintf(stderr, "%s", log);
        fail_msg("no message naming the key file and its mode");
    }
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_only_listed_keys_get_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plaintext_client_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tap_needs_a_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_secret_key_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* libFuzzer target for pipeline/json.c. The input is tried both ways: as
 * JSON (whatever the parser accepts must render to JSON that parses back
 * and renders the same again) and as msgpack (whatever msgpack_unpack
 * accepts must render to an event the parser accepts, also when cut short). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);       \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Renders with the given function into a buffer of exactly the needed size,
 * checking the snprintf contract on the way; caller frees. */
static char *render_value(const msgpack_object *v, size_t *len)
{
    size_t need = vigil_json_value(v, NULL, 0);
    char *buf = malloc(need + 1);
    CHECK(buf);
    CHECK(vigil_json_value(v, buf, need + 1) == need);
    CHECK(strlen(buf) == need);
    *len = need;
    return buf;
}

static void check_json(const uint8_t *data, size_t size)
{
    msgpack_zone *zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
    msgpack_object obj, again;
    char err[160];
    size_t len1, len2;

    CHECK(zone);
    if (vigil_json_parse((const char *)data, size, zone, &obj, err, sizeof err) == 0) {
        char *text1 = render_value(&obj, &len1);
        if (vigil_json_parse(text1, len1, zone, &again, err, sizeof err) != 0) {
            fprintf(stderr, "rendered JSON does not parse: %s\n%s\n", err, text1);
            abort();
        }
        /* rendering is canonical: a second round gives the same text */
        char *text2 = render_value(&again, &len2);
        CHECK(len1 == len2 && memcmp(text1, text2, len1) == 0);
        free(text1);
        free(text2);
    } else {
        CHECK(strncmp(err, "column ", 7) == 0 || strncmp(err, "line ", 5) == 0);
    }
    msgpack_zone_free(zone);
}

static void check_msgpack(const uint8_t *data, size_t size)
{
    msgpack_zone *zone;
    msgpack_object obj, parsed;
    size_t off = 0;
    char err[160];

    /* msgpack_unpack would reserve memory for declared counts before
     * reading them; the daemon checks first, and so does this target. */
    if (!vigil_msgpack_plausible((const char *)data, size)) {
        return;
    }
    zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
    CHECK(zone);
    msgpack_unpack_return rc = msgpack_unpack((const char *)data, size, &off, zone, &obj);
    if (rc == MSGPACK_UNPACK_SUCCESS || rc == MSGPACK_UNPACK_EXTRA_BYTES) {
        /* the first bytes double as the topic, to fuzz its escaping too */
        const char *topic = (const char *)data;
        size_t topic_len = size < 8 ? size : 8;
        size_t need = vigil_json_event(topic, topic_len, &obj, NULL, 0);
        char *buf = malloc(need + 1);
        CHECK(buf);
        CHECK(vigil_json_event(topic, topic_len, &obj, buf, need + 1) == need);
        CHECK(strlen(buf) == need);
        if (vigil_json_parse(buf, need, zone, &parsed, err, sizeof err) != 0) {
            fprintf(stderr, "rendered event does not parse: %s\n%s\n", err, buf);
            abort();
        }
        /* a short buffer holds a NUL-terminated prefix of the same text */
        size_t cap = need / 2 + 1;
        char *half = malloc(cap);
        CHECK(half);
        CHECK(vigil_json_event(topic, topic_len, &obj, half, cap) == need);
        CHECK(strlen(half) == cap - 1 && memcmp(half, buf, cap - 1) == 0);
        free(half);
        /* Straight from the bytes: the same text for the object's own
         * bytes, and a refusal when more bytes follow it. */
        char *raw = malloc(need + 1);
        CHECK(raw);
        size_t rn = vigil_json_event_raw(topic, topic_len, (const char *)data, off, raw, need + 1);
        if (rn != need || memcmp(raw, buf, need) != 0) {
            fprintf(stderr, "raw rendering differs (%zu vs %zu bytes):\n%.*s\n%s\n", rn, need,
                    rn == SIZE_MAX ? 0 : (int)rn, raw, buf);
            abort();
        }
        if (off < size) {
            CHECK(vigil_json_event_raw(topic, topic_len, (const char *)data, size, raw, need + 1) ==
                  SIZE_MAX);
        }
        free(raw);
        free(buf);
    } else if (rc == MSGPACK_UNPACK_CONTINUE) {
        /* Cut short: refused, never read past. (Nesting deeper than
         * msgpack-c goes is its refusal alone: the bus never passes it.) */
        char small[256];
        CHECK(vigil_json_event_raw("t", 1, (const char *)data, size, small, sizeof small) ==
              SIZE_MAX);
    }
    msgpack_zone_free(zone);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Anything at all: the raw renderer bounds-checks every read. */
    char any[512];
    (void)vigil_json_event_raw("t", 1, (const char *)data, size, any, sizeof any);
    check_json(data, size);
    check_msgpack(data, size);
    return 0;
}

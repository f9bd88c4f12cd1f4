/* libFuzzer target for pipeline/json.c. The input is tried both ways: as
 * JSON (whatever the parser accepts must render to JSON that parses back
 * and renders the same again) and as msgpack (whatever msgpack_unpack
 * accepts must render to an event the parser accepts, also when cut short,
 * and to the same text when msgpack-c packs the object again, in its own
 * encodings; what it does not take whole is refused). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "fuzz.h"
#include "json.h"

/* The object's msgpack bytes as msgpack-c packs them; caller destroys. */
static void pack(const msgpack_object *v, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    CHECK(msgpack_pack_object(&pk, *v) == 0);
}

/* Renders into a buffer of exactly the needed size, checking the snprintf
 * contract on the way; caller frees. */
static char *render_value(const msgpack_object *v, size_t *len)
{
    msgpack_sbuffer sb;
    pack(v, &sb);
    size_t need = vigil_json_value(sb.data, sb.size, NULL, 0);
    CHECK(need != SIZE_MAX);
    char *buf = malloc(need + 1);
    CHECK(buf);
    CHECK(vigil_json_value(sb.data, sb.size, buf, need + 1) == need);
    CHECK(strlen(buf) == need);
    msgpack_sbuffer_destroy(&sb);
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
        const char *body = (const char *)data;
        size_t need = vigil_json_event(topic, topic_len, body, off, NULL, 0);
        CHECK(need != SIZE_MAX);
        char *buf = malloc(need + 1);
        CHECK(buf);
        CHECK(vigil_json_event(topic, topic_len, body, off, buf, need + 1) == need);
        CHECK(strlen(buf) == need);
        {
            char *ref = malloc(need + 1);
            CHECK(ref);
            size_t rn = vigil_json_event_two_walks(topic, topic_len, body, off, ref, need + 1);
            if (rn != need || memcmp(ref, buf, need) != 0) {
                fprintf(stderr, "one walk and two walks differ:\n%s\n%.*s\n", buf,
                        rn == SIZE_MAX ? 0 : (int)rn, ref);
                abort();
            }
            free(ref);
        }
        if (vigil_json_parse(buf, need, zone, &parsed, err, sizeof err) != 0) {
            fprintf(stderr, "rendered event does not parse: %s\n%s\n", err, buf);
            abort();
        }
        /* a short buffer holds a NUL-terminated prefix of the same text */
        size_t cap = need / 2 + 1;
        char *half = malloc(cap);
        CHECK(half);
        CHECK(vigil_json_event(topic, topic_len, body, off, half, cap) == need);
        CHECK(strlen(half) == cap - 1 && memcmp(half, buf, cap - 1) == 0);
        free(half);
        /* The text depends on the values, not on how they were encoded:
         * msgpack-c's own packing of the object renders the same. */
        msgpack_sbuffer sb;
        pack(&obj, &sb);
        char *again = malloc(need + 1);
        CHECK(again);
        size_t an = vigil_json_event(topic, topic_len, sb.data, sb.size, again, need + 1);
        if (an != need || memcmp(again, buf, need) != 0) {
            fprintf(stderr, "re-packed rendering differs (%zu vs %zu bytes):\n%.*s\n%s\n", an, need,
                    an == SIZE_MAX ? 0 : (int)an, again, buf);
            abort();
        }
        msgpack_sbuffer_destroy(&sb);
        free(again);
        /* more bytes after the object: refused */
        if (off < size) {
            CHECK(vigil_json_event(topic, topic_len, body, size, buf, need + 1) == SIZE_MAX);
        }
        free(buf);
    } else if (rc == MSGPACK_UNPACK_CONTINUE) {
        /* Cut short: refused, never read past. (Nesting deeper than
         * msgpack-c goes is its refusal alone: the bus never passes it.) */
        char small[256];
        CHECK(vigil_json_event("t", 1, (const char *)data, size, small, sizeof small) == SIZE_MAX);
    }
    msgpack_zone_free(zone);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Anything at all: the renderer bounds-checks every read. */
    char any[512];
    (void)vigil_json_event("t", 1, (const char *)data, size, any, sizeof any);
    check_json(data, size);
    check_msgpack(data, size);
    return 0;
}

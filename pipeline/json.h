/* JSON for people and other programs: an event rendered as one JSON object
 * (vigil-tap, the file sink, the webhook sink), and a JSON text parsed into
 * a msgpack object (vigil-pub) by a strict RFC 8259 parser.
 */
#ifndef VIGIL_JSON_H
#define VIGIL_JSON_H

#include <msgpack.h>
#include <stddef.h>

/* Renders an event, its body given as msgpack bytes, as one JSON object
 * without a trailing newline:
 *   {"topic":"…","ts":…,"host":"…","source":"…","seq":…,"labels":{…},
 *    "values":{…},"attrs":{…}, <other body keys in body order>}
 * Envelope keys come first in that order when the body has them (labels,
 * values and attrs are written as {} when absent); every other key of the
 * body follows in body order (a repeated envelope key among them). A body
 * that is not a map is written as {"topic":…,"body":<value>}.
 * The bytes are read in place, never unpacked, and must be exactly one
 * msgpack object: otherwise SIZE_MAX is returned and buf's contents are
 * unspecified.
 * Strings (STR or BIN) are escaped per RFC 8259; bytes that are not valid
 * UTF-8 become U+FFFD. Doubles use the shortest of %.15g/%.17g that reads
 * back exactly; NaN and infinities become null. Non-string map keys are
 * written as strings of their JSON text.
 * snprintf semantics: returns the length needed (without the NUL), writes at
 * most cap bytes and NUL-terminates when cap > 0. Allocates nothing. */
size_t vigil_json_event(const char *topic, size_t topic_len, const char *body, size_t body_len,
                        char *buf, size_t cap);
/* The same text, always found with two walks over the body (vigil_json_event
 * takes one when the envelope keys come first and in order): the reference
 * the JSON fuzz target compares it with. */
size_t vigil_json_event_two_walks(const char *topic, size_t topic_len, const char *body,
                                  size_t body_len, char *buf, size_t cap);

/* Same, for one msgpack value of its own. */
size_t vigil_json_value(const char *data, size_t len, char *buf, size_t cap);

/* Parses one JSON text (RFC 8259: object, array, string, number, true,
 * false, null; surrounding whitespace allowed) into *out, with every
 * allocation in `zone`. Integers without fraction or exponent become
 * POSITIVE_INTEGER / NEGATIVE_INTEGER when they fit 64 bits, else FLOAT64;
 * other numbers FLOAT64; strings STR (UTF-8); objects MAP with STR keys.
 * Returns 0, or -1 with a one-line reason in err (e.g. "column 7: expected
 * ',' or '}'" — wording may differ, but it gives a column when it has one). */
int vigil_json_parse(const char *text, size_t len, msgpack_zone *zone, msgpack_object *out,
                     char *err, size_t errlen);

#endif

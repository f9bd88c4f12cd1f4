/* Shared by the three config files (conf_tree.c, conf_read.c, config.c) and
 * nobody else: node construction, copying, and message helpers.
 */
#ifndef VIGIL_CONF_INTERNAL_H
#define VIGIL_CONF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define NS_PER_S 1000000000ull

struct vigil_conf *vigil__conf_node_new(enum vigil_conf_kind kind, const char *file, int line,
                                        int col);
/* Frees a node and everything below it (not the shared file name). */
void vigil__conf_node_free(struct vigil_conf *n);
/* Room for `cap` items in a map or list; 0 or -1 (out of memory). */
int vigil__conf_reserve(struct vigil_conf *m, size_t cap);
/* Appends an item (takes ownership of key and v); key NULL for lists. */
void vigil__conf_put(struct vigil_conf *m, char *key, int line, int col, struct vigil_conf *v);
/* A deep copy of an already checked tree; NULL when out of memory. */
struct vigil_conf *vigil__conf_copy(const struct vigil_conf *src);
/* For each string, the index of its first occurrence (caller frees). */
size_t *vigil__first_occurrences(char *const *strs, size_t n);
/* "a map", "a list", "an empty value", ... */
const char *vigil__conf_kind_words(const struct vigil_conf *n);
/* A short quote of a node for messages ("'abc'", "a list"), in buf. */
const char *vigil__conf_describe(const struct vigil_conf *n, char *buf, size_t cap);
bool vigil__conf_is_null(const struct vigil_conf *n);
/* Parses text; any_root allows a top level that is not a map. */
struct vigil_conf *vigil__conf_parse_doc(const char *text, size_t len, const char *name,
                                         struct vigil_diag *d, bool any_root);
/* Reads a whole config file (bounded); NULL after a diag message. */
char *vigil__conf_read_file(const char *path, size_t *len_out, struct vigil_diag *d);
/* A message at where key i of `map` was written (or at its value). */
void vigil__diag_key(struct vigil_diag *d, const struct vigil_conf *map, size_t i, const char *fmt,
                     ...) VIGIL_PRINTF(4, 5);

#endif

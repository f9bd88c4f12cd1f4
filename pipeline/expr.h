/* The rule expression language, compiled once at load time and evaluated
 * per event without allocating. Used by rules' `expr`, `clear`, `when` and
 * `terms`.
 *
 *   paths     host  source  topic  ts  seq  values.cpu_usage_pct
 *             labels.container  attrs.ns.net  (any dotted path into the body;
 *             "topic" is the message's topic)
 *   literals  42  2.5  1e9  "text"  'text'  true  false
 *   operators (lowest first)  ||   &&   == != < <= > >= ~ in   + -   * / %
 *             unary ! -   ( )
 *   x ~ "glob"         glob match (glob.h syntax) of a string
 *   x in [a, b, ...]   membership (numbers or strings)
 *   functions abs(x) min(x, y, ...) max(x, y, ...)
 *
 * Types are checked at compile time where they can be: a literal of the
 * wrong type, `"a" + 1`, `! 5`, a `~` whose right side is not a string
 * literal are errors. Paths are untyped until run time.
 *
 * Missing values: a path that is absent (or of another type than the
 * operator needs) is "missing". Arithmetic with a missing operand is missing;
 * a comparison, `~` or `in` with a missing operand is false; `!` of false is
 * true; `&&`/`||` see missing as false. So `values.x > 5` is false when the
 * event has no values.x, and never an error.
 */
#ifndef VIGIL_EXPR_H
#define VIGIL_EXPR_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "event.h"

struct vigil_expr;

enum vigil_expr_want {
    VIGIL_EXPR_BOOL,   /* a condition: expr, clear, when */
    VIGIL_EXPR_NUMBER, /* a quantity: terms */
};

/* Compiles `text`. On error returns NULL after adding one message to d at
 * file:line:col of the offending token: (line, col) is where the text
 * starts in the file (the YAML scalar's position), and for a plain or
 * quoted single-line scalar the token's offset is added to col so the
 * caret lands on the token itself (pass quoted = true when the YAML scalar
 * was quoted: the text then starts one column after `col`). Caller owns
 * the result. */
struct vigil_expr *vigil_expr_compile(const char *text, enum vigil_expr_want want,
                                      const char *file, int line, int col, bool quoted,
                                      struct vigil_diag *d);

/* The same from a config node (a scalar). */
struct vigil_expr *vigil_expr_compile_node(const struct vigil_conf *n, enum vigil_expr_want want,
                                           struct vigil_diag *d);

void vigil_expr_free(struct vigil_expr *e);

/* Evaluation. No allocation, no error at run time; one thread at a time per
 * compiled expression is NOT required (evaluation keeps no state in e). */
bool vigil_expr_true(const struct vigil_expr *e, const struct vigil_event_view *v);
/* False when the result is missing (or not a number). */
bool vigil_expr_number(const struct vigil_expr *e, const struct vigil_event_view *v, double *out);

/* The distinct paths the expression reads, in order of first use (for
 * verdicts that report "the values the rule used"). */
size_t vigil_expr_npaths(const struct vigil_expr *e);
const char *vigil_expr_path(const struct vigil_expr *e, size_t i);

#endif

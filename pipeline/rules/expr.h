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

/* Details, as implemented (expr.c, expr_lex.c, expr_parse.c, expr_eval.c):
 *
 * Paths: names of letters, digits and _, joined by '.'; the first starts
 * with a letter or _ and may not be true, false or in. topic, host, source,
 * ts and seq come from the envelope (topic.x and the like are missing);
 * labels.x, values.x and attrs.x... start at those maps; anything else walks
 * the body from its root. Strings (STR or BIN), numbers (ints become
 * doubles: ts ~1.7e18 keeps ~256 ns) and booleans are values; nil, lists and
 * maps are missing.
 *
 * Literals: numbers 42 2.5 .5 5. 1e9 2.5e-3 (no hex, no inf); strings in
 * "..." or '...' with escapes \\ \" \' \n \t \r \xHH (not \x00); other
 * escapes and raw control characters but tab are errors. A glob's own
 * escape is written doubled: ~ "a\\*b" matches "a*b".
 *
 * Comparisons do not chain: `a < b < c` is an error (write a < b && b < c).
 * Values of different types are never equal, unequal or ordered: like a
 * missing operand, `labels.vm != 5` is false, so `!(x == y)` and `x != y`
 * differ when a side is missing. Strings order by bytes, then length;
 * booleans only compare with == and !=. Literals of different types
 * (`1 == "a"`, `"s" in [1]`) are compile errors.
 *
 * Arithmetic: / and % by zero give missing (compile error when both sides
 * are constants); % is fmod (sign of the dividend). min/max take two or
 * more arguments, abs one. Constant sub-expressions are folded.
 *
 * `~` takes a string literal (glob.h syntax, checked at compile time) on its
 * right. `in` takes a non-empty list of literal numbers (optionally
 * negative) or strings, all of one kind.
 *
 * Conditions: where a condition is needed (operands of && || !, and the
 * whole expression for VIGIL_EXPR_BOOL), a bare path is allowed and is true
 * when present and true, a non-zero number or a non-empty string. A number
 * or a string there (a literal, arithmetic, a function) is a compile error;
 * so is a comparison, ~, in or ! where a number is needed (VIGIL_EXPR_NUMBER).
 * vigil_expr_true() of a NUMBER expression is its truthiness;
 * vigil_expr_number() of a BOOL expression is false, as is a NaN result.
 *
 * Limits, each a compile error at the offending token: 65536 bytes of text,
 * nesting ( ), calls and unary operators 32 deep, 64 values on the stack.
 *
 * Error positions: columns count characters, as YAML does. Text with a
 * line break (a block scalar) is reported at (line, col) with "(at 'tok',
 * line L, column C of the expression)" appended. The node does not say how
 * a single-line scalar was written, so a double-quoted scalar with escapes
 * before the token, a `|-` block scalar or a plain scalar folded across
 * lines gets a column that may be off; most messages also name the token.
 */

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
struct vigil_expr *vigil_expr_compile(const char *text, enum vigil_expr_want want, const char *file,
                                      int line, int col, bool quoted, struct vigil_diag *d);

/* The same from a config node (a scalar). */
struct vigil_expr *vigil_expr_compile_node(const struct vigil_conf *n, enum vigil_expr_want want,
                                           struct vigil_diag *d);

void vigil_expr_free(struct vigil_expr *e);

/* Reads labels.x and values.y of e through the slots of table f (fields.h)
 * when the view carries them (v->fields, filled from the same f), instead of
 * searching the maps; f NULL: always search. Not while e is evaluated. */
struct vigil_fields;
void vigil_expr_bind(struct vigil_expr *e, struct vigil_fields *f);
/* The slot e reads when it is nothing but one bound labels.x or values.y
 * (its value is the slot's); 0 otherwise. */
uint16_t vigil_expr_slot(const struct vigil_expr *e);

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

# Shared by the shell tests (sourced, not run): $work, a temp folder removed
# on exit whatever happens, with the daemon ($pid) and every background job
# stopped first; fail and skip (exit 77: ctest's SKIP_RETURN_CODE) that say
# why; block, a fenced block of the docs. The sourcing script sets src (the
# source tree) and may set test_name (the folder's name) first.

work=$(mktemp -d "/tmp/vigil-${test_name:-test}.XXXXXX")
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  # TERM, not KILL: timeout(1) passes TERM on to its command, while a
  # killed timeout leaves it running (the subscriber loops forever).
  jobs -p | xargs -r kill -TERM 2>/dev/null || true # a job may have ended already
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  [ -f "$work/vigild.log" ] && cat "$work/vigild.log"
  exit 1
}
skip() {
  echo "SKIP: $*"
  exit 77
}

# Fenced block of $src/$1 (README.md, docs/plugins.md, ...) whose first line
# starts with $2 (without the fences).
block() {
  [ -f "$src/$1" ] || fail "no $1"
  awk -v first="$2" '
    /^```/ { if (inb) { if (take) exit; inb = 0; next } inb = 1; take = 0; n = 0; next }
    inb && n == 0 { n = 1; if (index($0, first) == 1) take = 1 }
    inb && take { print }' "$src/$1"
}

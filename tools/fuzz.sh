#!/usr/bin/env bash
# Runs vigil's libFuzzer targets (tests/fuzz/, built with ASan+UBSan into
# build-fuzz) from their committed seeds, each for a number of executions or
# a time, and prints per target: executions, coverage (libFuzzer's cov: edges
# and ft: features), the corpus it grew, and any finding.
#   tools/fuzz.sh [-n RUNS | -t SECONDS] [TARGET...]    (default -n 10000000, every target)
# tools/dev.sh test runs it with -t (VIGIL_FUZZ_SECONDS, 6 s per target).
# A finding (crash, leak, timeout, UB) is kept in build-fuzz/findings/ and the
# exit status is 1.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

limit=(-runs=10000000)
what="10000000 runs"
while getopts "n:t:" o; do
  case $o in
  n)
    limit=(-runs="$OPTARG")
    what="$OPTARG runs"
    ;;
  t)
    limit=(-max_total_time="$OPTARG")
    what="${OPTARG}s"
    ;;
  *)
    echo "usage: tools/fuzz.sh [-n RUNS | -t SECONDS] [TARGET...]" >&2
    exit 2
    ;;
  esac
done
shift $((OPTIND - 1))

dir=build-fuzz
CC=clang cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVIGIL_FUZZ=ON \
  -DVIGIL_TESTS=OFF >/dev/null
cmake --build "$dir" -j "$(nproc)" -- --no-print-directory >/dev/null

targets=("$@")
if ((${#targets[@]} == 0)); then
  for t in "$dir"/fuzz/fuzz_*; do
    [ -x "$t" ] && targets+=("$(basename "$t")")
  done
fi

echo "== fuzz (libFuzzer + ASan + UBSan, $what per target)"
failed=0
for name in "${targets[@]}"; do
  t=$dir/fuzz/$name
  [ -x "$t" ] || {
    echo "$name: no such target in $dir/fuzz"
    failed=1
    continue
  }
  work=$(mktemp -d)
  # Start from the committed seeds; what the run finds stays in the temp dir.
  seeds=tests/fuzz/corpus/${name#fuzz_}
  [ -d "$seeds" ] && cp -r "$seeds/." "$work/"
  start=$(date +%s)
  if "$t" "${limit[@]}" -print_final_stats=1 -artifact_prefix="$work/" "$work" >"$work.log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work.log" | tail -1)
    cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE).*cov: ' "$work.log" | tail -1 |
      sed -E 's/.*(cov: [0-9]+ ft: [0-9]+ corp: [0-9]+\/[^ ]+).*/\1/')
    echo "$name: ok (${runs:-?} runs in $(($(date +%s) - start)) s; ${cov:-no coverage line}; no finding)"
  else
    echo "$name: FAILED"
    tail -n 40 "$work.log"
    mkdir -p "$dir/findings"
    for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
      [ -e "$a" ] && cp "$a" "$dir/findings/$name-$(basename "$a")" && echo "kept $dir/findings/$name-$(basename "$a")"
    done
    failed=1
  fi
  rm -rf "$work" "$work.log"
done
exit $failed

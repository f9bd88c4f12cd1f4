#!/bin/bash
# ctest smoke test of vigil-bench-naive, the baseline run.sh compares vigild
# with (correctness only, no timed thresholds): a short count must arrive as
# exactly that many JSON lines of the file sink's shape, seqs 1..N in order,
# one cpu_pct spike per 2048 events counted as an alert, and one JSON object
# of figures on stdout; a short --duration run must also end and agree.
#   smoke_naive.sh BUILD_DIR
set -u
build=$1
fail() {
    echo "FAIL: $*"
    exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=5000
out=$("$build/vigil-bench-naive" -n "$n" -o "$tmp/naive.jsonl")
rc=$?
echo "$out"
[[ $rc -eq 0 ]] || fail "vigil-bench-naive -n $n exited $rc"
/usr/bin/python3 - "$out" "$n" "$tmp/naive.jsonl" <<'PY' || exit 1
import json, sys
r, n, path = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
bad = []
def check(ok, what):
    if not ok:
        bad.append(what)
check(r["events"] == n and r["sent"] == n and r["lines"] == n, "events/sent/lines %s/%s/%s of %s" % (r["events"], r["sent"], r["lines"], n))
check(r["events_per_s"] > 0 and r["seconds"] > 0 and r["cpu_s_per_million"] > 0, "figures %s" % r)
spikes = 0
with open(path) as f:
    lines = f.read().split("\n")
check(lines[-1] == "", "no newline at the end")
lines = lines[:-1]
check(len(lines) == n, "%d lines in the file" % len(lines))
for i, line in enumerate(lines, 1):
    try:
        e = json.loads(line)
    except ValueError as x:
        bad.append("line %d is not JSON: %s" % (i, x))
        break
    keys = list(e)
    if keys != ["topic", "ts", "host", "source", "seq", "labels", "values", "attrs"]:
        bad.append("line %d keys %s" % (i, keys))
        break
    if e["topic"] != "bench.metric" or e["source"] != "bench-0" or e["seq"] != i or e["attrs"] != {}:
        bad.append("line %d: %s" % (i, line))
        break
    if sorted(e["labels"]) != ["action", "region", "resource", "series", "subject"] or \
       sorted(e["values"]) != ["cpu_pct", "exits_per_s", "latency_ms", "mem_bytes"]:
        bad.append("line %d labels/values: %s" % (i, line))
        break
    spikes += e["values"]["cpu_pct"] > 90
check(spikes == r["alerts"] and spikes == (n - 1) // 2048 + 1, "alerts %s, spikes in the file %d" % (r["alerts"], spikes))
if bad:
    print("FAIL: " + "; ".join(bad))
    sys.exit(1)
PY
out=$(TMPDIR=$tmp "$build/vigil-bench-naive" --duration 200ms)
rc=$?
echo "$out"
[[ $rc -eq 0 ]] || fail "vigil-bench-naive --duration 200ms exited $rc"
/usr/bin/python3 -c '
import json, sys
r = json.loads(sys.argv[1])
sys.exit(0 if r["events"] > 0 and r["events"] == r["sent"] == r["lines"] else 1)
' "$out" || fail "--duration: events, sent and lines differ"
[[ -z $(ls -A "$tmp" | grep -v naive.jsonl) ]] || fail "temporary files left in TMPDIR: $(ls "$tmp")"
"$build/vigil-bench-naive" -n 0 2>/dev/null
[[ $? -eq 2 ]] || fail "-n 0 is not a usage error"
echo "vigil-bench-naive: ok"

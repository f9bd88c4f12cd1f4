#!/bin/bash
# ctest smoke test of `vigil-bench collect --net` (correctness only, no timed
# thresholds): over 12 veth pairs in 3 network namespaces the net source must
# read at least what was made, the figures must agree with each other, and
# no namespace, veth or process of the run may be left behind.
#   smoke_collect_net.sh BUILD_DIR
set -u
build=$1
fail() {
    echo "FAIL: $*"
    exit 1
}
if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: vigil-bench collect --net makes network namespaces and veths: needs root"
    exit 77
fi
if ! command -v ip >/dev/null; then
    echo "SKIP: vigil-bench collect --net needs iproute2's ip"
    exit 77
fi
bench=$build/vigil-bench
[[ $("$bench" collect --net --interfaces 3 --netns 4 2>&1) == *"--netns at most --interfaces"* ]] ||
    fail "--netns above --interfaces was not refused"
args=(collect --net --interfaces 12 --netns 3 --passes 2 --interval 300ms --json)
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$bench" "${args[@]}" >"$out" 2>"$err" &
pid=$! # the names it makes carry it
wait $pid
rc=$?
cat "$err" "$out"
if [[ $rc -eq 3 ]] && grep -q "the net plugin is not built" "$err"; then
    echo "SKIP: the net plugin is not built"
    exit 77
fi
[[ $rc -eq 0 ]] || fail "vigil-bench collect --net exited $rc"
/usr/bin/python3 - "$out" <<'PY' || exit 1
import json, sys
n = json.loads(open(sys.argv[1]).read())["net"]
bad = []
if n["interfaces"] != 12 or n["namespaces"] != 3:
    bad.append("made %s veth pairs in %s namespaces, not 12 in 3" % (n["interfaces"], n["namespaces"]))
# Both ends of each pair, here and inside; the host's own and the others'
# interfaces and namespaces come on top.
if n["read"] < 24 or n["namespaces_read"] < 3:
    bad.append("read %s interfaces in %s namespaces" % (n["read"], n["namespaces_read"]))
p = n["passes_us"]
med = n["us_per_collection_median"]
if len(p) != 2 or not all(x > 0 for x in p) or not (min(p) <= med <= max(p)):
    bad.append("passes %s against median %s" % (p, med))
if (n["us_per_collection_min"], n["us_per_collection_max"]) != (min(p), max(p)):
    bad.append("min/max %s/%s against passes %s" % (n["us_per_collection_min"], n["us_per_collection_max"], p))
# The per-interface and per-namespace medians are of each pass's ratio, and
# each pass read at least 24 interfaces in 3 namespaces (the counts may
# move between passes: other namespaces come and go on a busy machine).
for key, least in (("us_per_interface_median", 24), ("us_per_namespace_median", 3)):
    if not 0 < n[key] <= max(p) / least:
        bad.append("%s %s against passes %s" % (key, n[key], p))
if not n["first_pass_us"] > 0:
    bad.append("no first pass")
if bad:
    print("FAIL: " + "; ".join(bad))
    sys.exit(1)
PY
left=$(ip netns list | grep -c "^vigil-bench-$pid-")
[[ $left -eq 0 ]] || fail "$left namespaces left behind: $(ip netns list | grep "^vigil-bench-$pid-" | head -3)"
left=$(ip -o link show | grep -c ": vb$pid-")
[[ $left -eq 0 ]] || fail "$left veths left behind: $(ip -o link show | grep ": vb$pid-" | head -3)"
# The sleeping processes in the namespaces were forks of the bench: its
# command line (with this build's path) is theirs.
left=$(pgrep -c -f -x -- "$bench ${args[*]}")
[[ $left -eq 0 ]] || fail "$left processes of the run left behind"
echo "vigil-bench collect --net: ok"

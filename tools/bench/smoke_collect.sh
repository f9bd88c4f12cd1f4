#!/bin/bash
# ctest smoke test of `vigil-bench collect` (correctness only, no timed
# thresholds): over a few cgroups, nested and flat, sleeping and active, it
# must read every cgroup it made, print figures that agree with each other,
# and leave no cgroup or process behind.
#   smoke_collect.sh BUILD_DIR
set -u
build=$1
fail() {
    echo "FAIL: $*"
    exit 1
}
if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: vigil-bench collect makes cgroups: needs root"
    exit 77
fi
if ! grep -qE ' - cgroup2? ' /proc/self/mountinfo; then
    echo "SKIP: no cgroup hierarchy mounted"
    exit 77
fi
leftovers() { ls -d /sys/fs/cgroup/vigil-bench-* /sys/fs/cgroup/*/vigil-bench-* 2>/dev/null | wc -l; }
before=$(leftovers)
for mode in "--procs" "--active --flat"; do
    # shellcheck disable=SC2086 # two options on purpose
    out=$("$build/vigil-bench" collect --cgroups 12 --passes 2 --interval 300ms --no-kvm $mode --json)
    rc=$?
    echo "$out"
    [[ $rc -eq 0 ]] || fail "vigil-bench collect $mode exited $rc"
    /usr/bin/python3 - "$out" "$mode" <<'PY' || exit 1
import json, sys
g = json.loads(sys.argv[1])["cgroups"]
mode = sys.argv[2]
bad = []
if g["cgroups"] != 12 or g["read"] != 12:
    bad.append("made %s, read %s of 12" % (g["cgroups"], g["read"]))
if g["nested"] != ("--flat" not in mode):
    bad.append("nested: %s for %s" % (g["nested"], mode))
if g["procs"] != ("active" if "--active" in mode else "sleeping"):
    bad.append("procs: %s for %s" % (g["procs"], mode))
p = g["passes_us_per_cgroup"]
if len(p) != 2 or not all(x > 0 for x in p) or not (min(p) <= g["us_per_cgroup_median"] <= max(p)):
    bad.append("passes %s against median %s" % (p, g["us_per_cgroup_median"]))
if not g["first_pass_us_per_cgroup"] > 0:
    bad.append("no first pass")
if bad:
    print("FAIL: " + "; ".join(bad))
    sys.exit(1)
PY
done
after=$(leftovers)
[[ $after -le $before ]] || fail "cgroups left behind: $(ls -d /sys/fs/cgroup/*/vigil-bench-* 2>/dev/null | head -3)"
echo "vigil-bench collect: ok"

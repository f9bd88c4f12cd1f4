#!/bin/bash
# Reproduces the benchmark figures of docs/benchmarks.md: builds a
# Release tree in build-release, then runs
#   1. 100,000 events/s, 30 s, file sink           (target: p99 <= 1 ms)
#   2. flat out, 30 s, 10 rules, file sink        (target: >= 1,000,000 events/s, 0 lost)
#      (target: <= 1.2 s vigild CPU per million events)
#      between two 30 s runs of vigil-bench-naive   (target: vigild >= 1.5x its rate)
#   2b. the same with producers' batches of 64 (--batch 64: the fast producer path)
#   3. flat out, 30 s, 10 rules, discard sink      (the pipeline without sink I/O)
#   3b. 10,000 events/s, 30 s, file sink            (target, with 1.: CPU per event
#      at 10k and 100k/s <= 2x the flat-out run's)
#   3c. 100,000 and 10,000 events/s with bus.coalesce 0s (no window: CPU
#      against latency; 1. and 3b. run the default, 300us)
#   4. collect --cgroups 1000 --procs              (target: <= 8 us per cgroup;
#      idle cgroups under one parent, then --active and --flat beside it)
#   4b. collect --net: 500 veth pairs in 100 network namespaces (us per interface)
#   5. idle RSS of vigild with conf/vigil.yaml after 20 s (target: <= 8 MB)
#   6. the bench alone (selftest)
# and prints a summary table. Every run's JSON is kept in build-release/bench/.
#   tools/bench/run.sh [--quick]     (--quick: 5 s runs, 200 cgroups, 100 veth
#                                     pairs in 20 namespaces; a smoke run)
# Needs root (cgroups, namespaces, /proc of the daemon). Takes about 10 minutes.
#
#   tools/bench/run.sh --fleet [DURATION [ROUNDS]]   (default 15s, 2)
# instead measures the fleet's forwarding against one daemon, back to back:
# per round, flat out over tcp with 10 rules and the file sink, one vigild
# (single), then producers -> agent -> forward sink -> central (forward),
# then the same with CURVE (forward_curve), and prints each run and the
# ratios forward / single and forward_curve / forward (events/s out: what
# reached the central's file).
set -euo pipefail

cd "$(dirname "$0")/../.."
src=$PWD
build=$src/build-release
out=$build/bench
dur=30s
cgroups=1000
netif=500
netns=100
passes=15 # single collections on a VM range from 0.7 to 3 times their median
idle_s=20
fleet=
if [[ ${1:-} == --quick ]]; then
    dur=5s
    cgroups=200
    netif=100
    netns=20
    passes=3
    idle_s=5
elif [[ ${1:-} == --fleet ]]; then
    fleet=1
    dur=${2:-15s}
    rounds=${3:-2}
fi

echo "== building Release into $build"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DVIGIL_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
mkdir -p "$out"
bench=$build/vigil-bench

tmp=$(mktemp -d /tmp/vigil-bench-run.XXXXXX)
vigild_pid=
cleanup() {
    if [[ -n $vigild_pid ]] && kill -0 "$vigild_pid" 2>/dev/null; then
        kill -KILL "$vigild_pid" 2>/dev/null || true
        wait "$vigild_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# A run that fails still leaves its JSON (or null) for the summary.
run() {
    local name=$1
    shift
    echo "== $name: vigil-bench $*"
    "$bench" "$@" --json >"$out/$name.json" 2>"$out/$name.err" ||
        echo "   (exit status $?; see $out/$name.err)"
    [[ -s $out/$name.json ]] || echo null >"$out/$name.json"
}

# The naive two-thread program (tools/bench/naive.c), flat out for as long
# as vigil-bench's window, its file in the same $TMPDIR as the bench's.
run_naive() {
    local name=$1
    shift
    echo "== $name: vigil-bench-naive $*"
    "$build/vigil-bench-naive" "$@" >"$out/$name.json" 2>"$out/$name.err" ||
        echo "   (exit status $?; see $out/$name.err)"
    [[ -s $out/$name.json ]] || echo null >"$out/$name.json"
}

if [[ -n $fleet ]]; then
    for ((i = 1; i <= rounds; i++)); do
        run "fleet_single_$i" --duration "$dur" -t tcp --rules 10 --sink file
        run "fleet_forward_$i" --duration "$dur" -t tcp --rules 10 --sink file --forward
        run "fleet_curve_$i" --duration "$dur" -t tcp --rules 10 --sink file --curve
    done
    # Flat out, latency only says how deep the agent's backlog is: the
    # hop's own latency at a rate all three keep up with.
    for kind in single forward curve; do
        extra=()
        [[ $kind == forward ]] && extra=(--forward)
        [[ $kind == curve ]] && extra=(--curve)
        run "fleet_${kind}_100k" --duration "$dur" --rate 100000 -t tcp --rules 10 --sink file "${extra[@]}"
    done
    echo
    echo "== fleet ($(nproc) CPUs, $(uname -r), $(git -C "$src" rev-parse --short HEAD))"
    /usr/bin/python3 - "$out" "$rounds" <<'EOF'
import json, os, sys

d, rounds = sys.argv[1], int(sys.argv[2])
def load(n):
    try:
        with open(os.path.join(d, n + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def mib(b):
    return "%.0f" % (b / 1048576) if b else "-"

def cpu(x):
    return "%.2f" % x if x is not None else "-"

print("%-10s %9s %9s %5s %4s %9s %9s %9s %9s %7s %7s %9s" % ("run", "in/s", "out/s", "lost", "dup",
      "p50 us", "p99 us", "CPU/M ctl", "CPU/M agt", "RSS ctl", "RSS agt", "spooled"))
ratios = {"forward": [], "curve": []}
for i in range(1, rounds + 1):
    got = {}
    for kind in ("single", "forward", "curve"):
        name = "fleet_%s_%d" % (kind, i)
        r = load(name)
        got[kind] = r
        if not r:
            print("%-10s not run" % name)
            continue
        l = r.get("latency_us") or {}
        a = r.get("agent") or {}
        print("%-10s %9.0f %9.0f %5s %4s %9.0f %9.0f %9s %9s %7s %7s %9s" % (
            "%s %d" % (kind, i), r["events_per_s_in"], r["events_per_s_out"], r["lost"],
            r["duplicated"], l.get("median", 0), l.get("p99", 0), cpu(r["cpu_s_per_million"]),
            cpu(a.get("cpu_s_per_million")), mib(r["rss_peak_bytes"]), mib(a.get("rss_peak_bytes")),
            (a.get("forward") or {}).get("spooled", "-")))
    s, f, c = got["single"], got["forward"], got["curve"]
    if i == rounds:
        for kind in ("single", "forward", "curve"):
            r = load("fleet_%s_100k" % kind)
            if r and r.get("latency_us"):
                l, a = r["latency_us"], r.get("agent") or {}
                print("%-10s %9.0f %9.0f %5s %4s %9.0f %9.0f %9s %9s %7s %7s %9s" % (
                    kind + " 100k", r["events_per_s_in"], r["events_per_s_out"], r["lost"],
                    r["duplicated"], l["median"], l["p99"], cpu(r["cpu_s_per_million"]),
                    cpu(a.get("cpu_s_per_million")), mib(r["rss_peak_bytes"]),
                    mib(a.get("rss_peak_bytes")), (a.get("forward") or {}).get("spooled", "-")))
    if s and f and s["events_per_s_out"]:
        ratios["forward"].append(f["events_per_s_out"] / s["events_per_s_out"])
    if f and c and f["events_per_s_out"]:
        ratios["curve"].append(c["events_per_s_out"] / f["events_per_s_out"])
def show(what, xs, target):
    if xs:
        print("%s: %s%s" % (what, ", ".join("%.0f %%" % (100 * x) for x in xs), target))
show("forward / single (events/s out)", ratios["forward"], "  (target >= 60 %)")
show("with CURVE / without (events/s out)", ratios["curve"], "")
EOF
    echo "(JSON of every run: $out)"
    exit 0
fi

if [[ -f $build/plugins/file.so ]]; then
    # Latency first: for about a minute after the flat-out run's gigabytes
    # of writes this VM's disk lengthens the tail 2-3x (docs/benchmarks.md).
    run rate100k_file --duration "$dur" --rate 100000 --rules 10 --sink file
    # The naive program right before and right after, in the same minutes:
    # the machine's drift shows as the gap between its two rates.
    run_naive naive_before --duration "$dur"
    run flatout_file --duration "$dur" --rules 10 --sink file
    run_naive naive_after --duration "$dur"
    # The fast producer path (docs/events.md "Batches"): what the in-process
    # sources, the forward sink's central and vigil-pub --batch send.
    run flatout_file_batch --duration "$dur" --rules 10 --sink file --batch 64
else
    echo "== the file sink plugin is not built here: file-sink runs skipped"
    echo null >"$out/flatout_file.json"
    echo null >"$out/naive_before.json"
    echo null >"$out/naive_after.json"
    echo null >"$out/rate100k_file.json"
fi
run flatout_discard --duration "$dur" --rules 10 --sink discard
if [[ -f $build/plugins/file.so ]]; then
    run rate10k_file --duration "$dur" --rate 10000 --rules 10 --sink file
    run rate100k_file_c0 --duration "$dur" --rate 100000 --rules 10 --sink file --coalesce 0s
    run rate10k_file_c0 --duration "$dur" --rate 10000 --rules 10 --sink file --coalesce 0s
else
    for n in rate10k_file rate100k_file_c0 rate10k_file_c0; do echo null >"$out/$n.json"; done
fi
run collect collect --cgroups "$cgroups" --procs --passes "$passes"
run collect_active collect --cgroups "$cgroups" --active --no-kvm --passes "$passes"
run collect_flat collect --cgroups "$cgroups" --procs --flat --no-kvm --passes "$passes"
run collect_net collect --net --interfaces "$netif" --netns "$netns" --passes "$passes"
run selftest selftest

echo "== idle: vigild -c conf/vigil.yaml (own endpoints), VmRSS after $idle_s s"
# The default config as shipped, with endpoints, plugin_dir, state_dir and
# the sinks' files (/var/log/vigil) moved to our temp folder.
mkdir -p "$tmp/log"
sed -e "s|ipc:///run/vigil/publish|ipc://$tmp/pub|" \
    -e "s|ipc:///run/vigil/subscribe|ipc://$tmp/sub|" \
    -e "s|^plugin_dir:.*|plugin_dir: $build/plugins|" \
    -e "s|^state_dir:.*|state_dir: $tmp/state|" \
    -e "s|/var/log/vigil/|$tmp/log/|g" \
    "$src/conf/vigil.yaml" >"$tmp/vigil.yaml"
if grep -nE '^[^#]*(/var/|/run/|/etc/)' "$tmp/vigil.yaml"; then
    echo "   (the lines above still name system paths: the idle run may touch them)"
fi
grep -q '^state_dir:' "$tmp/vigil.yaml" || echo "state_dir: $tmp/state" >>"$tmp/vigil.yaml"
"$build/vigild" -c "$tmp/vigil.yaml" 2>"$tmp/vigild.log" &
vigild_pid=$!
sleep "$idle_s"
if kill -0 "$vigild_pid" 2>/dev/null; then
    rss=$(awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$vigild_pid/status")
    hwm=$(awk '/^VmHWM:/ {print $2 * 1024}' "/proc/$vigild_pid/status")
    kill -TERM "$vigild_pid"
    wait "$vigild_pid" || true
    echo "{\"rss_bytes\":$rss,\"rss_peak_bytes\":$hwm,\"after_s\":$idle_s}" >"$out/idle.json"
else
    echo "   vigild did not stay up: $(tail -3 "$tmp/vigild.log")"
    echo null >"$out/idle.json"
fi
vigild_pid=

echo
echo "== summary ($(nproc) CPUs, $(uname -r); other work on the machine counts: see docs/benchmarks.md)"
/usr/bin/python3 - "$out" <<'EOF'
import json, os, sys

d = sys.argv[1]
def load(n):
    try:
        with open(os.path.join(d, n + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

rows = []
def row(what, value, target, ok):
    rows.append((what, value, target, "-" if ok is None else ("yes" if ok else "NO")))

for name, label in (("flatout_file", "flat out, file sink"),
                    ("flatout_file_batch", "flat out, file sink, producers' batches of 64"),
                    ("flatout_discard", "flat out, discard sink")):
    r = load(name)
    if r:
        row(label + ": events/s in / out", "%.0f / %.0f" % (r["events_per_s_in"], r["events_per_s_out"]),
            ">= 1,000,000" if name == "flatout_file" else "",
            r["events_per_s_out"] >= 1e6 if name == "flatout_file" else None)
        dup = "n/a" if r["duplicated"] is None else r["duplicated"]
        row(label + ": lost, duplicated", "%s, %s" % (r["lost"], dup), "0",
            r["lost"] == 0 and not r["duplicated"])
        if r.get("cpu_s_per_million") is not None:
            file_run = name.startswith("flatout_file")
            row(label + ": vigild CPU s per M events, peak RSS",
                "%.2f s, %.1f MiB" % (r["cpu_s_per_million"], r["rss_peak_bytes"] / 1048576),
                "<= 1.2 s" if file_run else "", r["cpu_s_per_million"] <= 1.2 if file_run else None)
    else:
        row(label, "not run", "", None)
naive = [r["events_per_s"] for r in (load("naive_before"), load("naive_after")) if r and r.get("events_per_s")]
if naive:
    # The median of the runs around vigild's (of two: their mean).
    xs = sorted(naive)
    mid = len(xs) // 2
    median = xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2
    row("naive two-thread program (before / after): events/s",
        "%s (median %.0f)" % (" / ".join("%.0f" % x for x in naive), median), "", None)
    f = load("flatout_file")
    if f and f.get("events_per_s_out"):
        ratio = f["events_per_s_out"] / median
        row("flat out, file sink: vigild / naive (events/s out)", "%.2fx" % ratio, ">= 1.5x", ratio >= 1.5)
else:
    row("naive two-thread program", "not run", "", None)
flat = load("flatout_file")
flat_cpu = flat.get("cpu_s_per_million") if flat else None
def against_flat(label, r):
    """CPU per event at a rate against the flat-out run's (target <= 2x)."""
    if r and r.get("cpu_s_per_million") is not None and flat_cpu:
        x = r["cpu_s_per_million"] / flat_cpu
        row(label + ": CPU per event / flat out's", "%.1fx" % x, "<= 2x", x <= 2)
r = load("rate100k_file")
if r and r.get("latency_us"):
    l = r["latency_us"]
    row("100k/s, file sink: latency p50 / p99 / max (us)",
        "%.0f / %.0f / %.0f" % (l["median"], l["p99"], l["max"]), "p99 <= 1000", l["p99"] <= 1000)
    row("100k/s, file sink: lost", str(r["lost"]), "0", r["lost"] == 0)
    row("100k/s, file sink: vigild CPU s per M events", "%.2f s" % r["cpu_s_per_million"], "", None)
    against_flat("100k/s, file sink", r)
else:
    row("100k/s, file sink", "not run", "", None)
r = load("rate10k_file")
if r and r.get("cpu_s_per_million") is not None:
    row("10k/s, file sink: vigild CPU s per M events, lost",
        "%.1f s, %s" % (r["cpu_s_per_million"], r["lost"]), "", r["lost"] == 0)
    against_flat("10k/s, file sink", r)
r = load("rate100k_file_c0")
if r and r.get("latency_us") and r.get("cpu_s_per_million") is not None:
    l = r["latency_us"]
    row("100k/s, bus.coalesce 0s: p50 / p99 / max (us); vigild CPU s per M",
        "%.0f / %.0f / %.0f; %.2f s" % (l["median"], l["p99"], l["max"], r["cpu_s_per_million"]),
        "", r["lost"] == 0)
r = load("rate10k_file_c0")
if r and r.get("latency_us") and r.get("cpu_s_per_million") is not None:
    l = r["latency_us"]
    row("10k/s, bus.coalesce 0s: p50 / p99 (us); vigild CPU s per M",
        "%.0f / %.0f; %.1f s" % (l["median"], l["p99"], r["cpu_s_per_million"]), "", r["lost"] == 0)
c = load("collect")
for name, what, target in (("collect", "idle, one parent", True),
                           ("collect_active", "active, one parent", False),
                           ("collect_flat", "idle, at the top", False)):
    cg = c if name == "collect" else load(name)
    if cg and cg.get("cgroups"):
        g = cg["cgroups"]
        row("cgroups: us CPU per cgroup per collection (%d %s, %s)" % (g["cgroups"], what, g["layout"]),
            "%.2f (first pass %.1f)" % (g["us_per_cgroup_median"], g["first_pass_us_per_cgroup"]),
            "<= 8" if target else "", g["us_per_cgroup_median"] <= 8 if target else None)
if c and c.get("kvm"):
    k = c["kvm"]
    per_vm = k.get("us_per_vm")
    row("kvm: us plugin CPU per collection (%.0f VMs, %d new processes)" % (k["vms"], k.get("new_processes", 0)),
        "%.0f%s" % (k["us_cpu_per_collection"], "" if per_vm is None else " (%.1f per VM)" % per_vm),
        "", None)
n = load("collect_net")
if n and n.get("net"):
    n = n["net"]
    row("net: us plugin CPU per interface per collection (%d veth pairs in %d namespaces, %d read)"
        % (n["interfaces"], n["namespaces"], n["read"]),
        "%.2f (%.0f per collection, first pass %.0f)"
        % (n["us_per_interface_median"], n["us_per_collection_median"], n["first_pass_us"]), "", None)
else:
    row("net", "not run (see collect_net.err)", "", None)
i = load("idle")
if i:
    row("idle vigild (conf/vigil.yaml) VmRSS after %ss" % i["after_s"], "%.1f MiB" % (i["rss_bytes"] / 1048576),
        "<= 8 MB", i["rss_bytes"] <= 8e6)
s = load("selftest")
if s and s.get("producers_alone"):
    row("the bench alone: producers -> bare PULL, events/s", "%.0f" % s["producers_alone"]["events_per_s"], "", None)
if s and s.get("reader_alone"):
    row("the bench alone: tail reader, lines/s", "%.0f" % s["reader_alone"]["lines_per_s"], "", None)
if s and s.get("wakeup"):
    wk = s["wakeup"]
    row("this machine: us CPU per cross-thread wake-up (two CPUs / one)",
        "%.1f / %.1f" % (wk["cpu_us"], wk["one_cpu_cpu_us"]), "", None)

w = max(len(r[0]) for r in rows)
v = max(len(r[1]) for r in rows)
print("%-*s  %-*s  %-14s %s" % (w, "figure", v, "measured", "target", "met"))
for r in rows:
    print("%-*s  %-*s  %-14s %s" % (w, r[0], v, r[1], r[2], r[3]))
EOF
echo "(JSON of every run: $out)"

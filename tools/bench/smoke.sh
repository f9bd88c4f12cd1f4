#!/bin/bash
# ctest smoke test of vigil-bench (correctness only, no timed thresholds):
# a short run through a real vigild with the given sink must publish, lose
# and duplicate nothing, and print one JSON object whose figures agree with
# each other; the selftest's own counts must be exact. The discard run has
# the bus coalescing (bus.coalesce 500us): nothing may be lost that way either.
# forward and forward_curve: producers -> an agent vigild -> its forward sink
# -> tcp loopback (with CURVE) -> a central vigild -> the file sink; nothing
# lost or duplicated at the central's file, both daemons measured.
# reload: the file sink while vigild reloads every 500 ms (each reload a new
# rule and a new sink): nothing lost or doubled, every reload's rule judged.
# batch: the file sink, the producers sending 16 events per message (the
# producers' batch format): each event checked, none lost or doubled.
#   smoke.sh BUILD_DIR MODE      (MODE: file, capture, discard, forward, forward_curve, reload,
#                                 batch)
set -u
build=$1
mode=$2
sink=$mode
extra=()
case $mode in
discard) extra=(--coalesce 500us) ;;
forward) sink=file extra=(--forward -t tcp) ;;
forward_curve) sink=file extra=(--curve -t tcp) ;;
reload) sink=file extra=(--reload-every 500ms) ;;
batch) sink=file extra=(--batch 16) ;;
esac
fail() {
    echo "FAIL: $*"
    exit 1
}

out=$("$build/vigil-bench" --duration 2s --warmup 500ms --rate 10000 --sink "$sink" "${extra[@]}" --json)
rc=$?
echo "$out"
[[ $rc -eq 0 ]] || fail "vigil-bench exited $rc"
/usr/bin/python3 - "$out" "$sink" "$mode" <<'PY' || exit 1
import json, sys
r = json.loads(sys.argv[1])
sink = sys.argv[2]
mode = sys.argv[3]
bad = []
def check(ok, what):
    if not ok:
        bad.append(what)
check(r["published"] > 0 and r["published_in_window"] > 0, "nothing published")
check(r["lost"] == 0, "lost %s" % r["lost"])
check(r["vigil_self"]["bus_malformed"] == 0, "the bus refused %s events" % r["vigil_self"]["bus_malformed"])
check(r["vigil_self"]["rules_in"] == r["published"], "the rules judged %s of %s events" % (r["vigil_self"]["rules_in"], r["published"]))
check(0 < r["verdicts"] < r["published"] * 0.02, "verdicts %s for %s events" % (r["verdicts"], r["published"]))
check(r["cpu_s_per_million"] is not None and r["rss_peak_bytes"] > 0, "no CPU/RSS of vigild")
check(r["vigild_exit"] == 0, "vigild exited %s" % r["vigild_exit"])
check(r["coalesce"] == ("500us" if sink == "discard" else None), "coalesce %s" % r["coalesce"])
check(r["batch"] == (16 if mode == "batch" else 1), "batch %s" % r["batch"])
if sink == "discard":
    check(r["duplicated"] is None and r["latency_us"] is None, "discard has no duplicates/latency")
    check(r["vigil_self"]["sink_delivered"] == r["published"], "delivered %s of %s" % (r["vigil_self"]["sink_delivered"], r["published"]))
else:
    l = r["latency_us"]
    check(r["duplicated"] == 0, "duplicated %s" % r["duplicated"])
    check(r["arrived_of_window"] == r["published_in_window"], "arrived %s of the window's %s" % (r["arrived_of_window"], r["published_in_window"]))
    check(l is not None and l["samples"] == r["published_in_window"], "latency samples")
    check(l is not None and 0 <= l["min"] <= l["median"] <= l["p95"] <= l["p99"] <= l["max"], "latency order")
    check(r["bad_lines"] == 0, "%s unparsable lines in the sink's file" % r["bad_lines"])
if mode == "reload":
    check(r["reloads"] >= 2 and r["reloads_unseen"] == 0, "reloads %s, of which %s never judged" % (r["reloads"], r["reloads_unseen"]))
    check(0 < r["reload_pause_p50_ms"] <= r["reload_pause_max_ms"], "reload pause p50 %s max %s" % (r["reload_pause_p50_ms"], r["reload_pause_max_ms"]))
if mode.startswith("forward"):
    a = r["agent"]
    check(r["mode"] == "forward" and r["curve"] == (mode == "forward_curve"), "mode %s curve %s" % (r["mode"], r["curve"]))
    check(a is not None and a["cpu_s_per_million"] is not None and a["rss_peak_bytes"] > 0, "no CPU/RSS of the agent")
    # Loss is judged at the central's file (above); the sink's counters come
    # every vigil.self period and may trail the last acks by a report.
    check(a is not None and a["forward"]["delivered"] > 0 and a["forward"]["failed"] == 0 and a["forward"]["dropped"] == 0, "the forward sink: %s" % (a and a["forward"]))
    check(a is not None and a["exit"] == 0, "the agent exited %s" % (a and a["exit"]))
else:
    check(r["mode"] == "single" and r["agent"] is None, "mode %s" % r["mode"])
if bad:
    print("FAIL: " + "; ".join(bad))
    sys.exit(1)
PY

# The bench alone: every event sent is received in order, every line read;
# the wake-up probe ran.
self=$("$build/vigil-bench" selftest --duration 500ms --lines 20000 --json) || fail "selftest"
echo "$self"
/usr/bin/python3 -c '
import json, sys
s = json.loads(sys.argv[1])
w = s["wakeup"]
sys.exit(0 if w and w["cpu_us"] > 0 and w["wall_us"] > 0 and w["one_cpu_cpu_us"] > 0 else 1)
' "$self" || fail "selftest: no wake-up figures"
echo "ok"

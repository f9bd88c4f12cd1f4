#!/usr/bin/env bash
# What isolate: process costs: the CPU (user + system, vigild and its plugin
# host together) per event of one gen source publishing N events into a
# discard sink, in-process and isolated. README.md "Isolation" quotes it.
#   tools/bench/isolate_cost.sh BUILD_DIR [N (default 1000000)] [RATE (default 200000)]
set -euo pipefail
build=$(cd "$1" && pwd)
n=${2:-1000000}
rate=${3:-200000}
dir=$(mktemp -d /tmp/vigil-isolate-cost.XXXXXX)
trap 'rm -rf "$dir"' EXIT

run() { # run LABEL ISOLATE_LINE
  cat >"$dir/vigil.yaml" <<CONF
plugin_dir: $build/plugins
bus: { publish: ipc://$dir/pub, subscribe: ipc://$dir/sub }
state_dir: $dir/state
self: { interval: 1h }
sources:
  - { plugin: gen, name: g, rate: $rate, count: $n$2 }
sinks:
  - { plugin: discard }
CONF
  : >"$dir/log"
  /usr/bin/time -f "%U %S" -o "$dir/time" "$build/vigild" -c "$dir/vigil.yaml" 2>>"$dir/log" &
  local pid=$!
  until grep -q "published $n events; done" "$dir/log"; do
    sleep 0.2
    kill -0 $pid 2>/dev/null || { cat "$dir/log"; exit 1; }
  done
  kill -TERM "$(pgrep -P $pid)" # the child of /usr/bin/time: vigild
  wait $pid || true
  read -r user sys <"$dir/time"
  awk -v l="$1" -v u="$user" -v s="$sys" -v n="$n" \
    'BEGIN { printf "%-11s %6.2f s CPU (%.2f user, %.2f system): %.2f us per event\n", l, u + s, u, s, (u + s) * 1e6 / n }'
}

echo "gen: $n events at $rate/s into a discard sink"
run in-process ""
run isolated ", isolate: process"

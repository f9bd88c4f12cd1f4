#!/bin/bash
# Events per second the file sink writes: the gen source publishes N events
# flat out through the bus into one file sink; the time is from vigild's
# start until the last event is in the file. The sink's memory queue is made
# large enough for all N, so the figure is the sink's own pace, not that of
# the host's disk spool (which takes over when the queue is full). Run
# against a Release build:
#   [BATCH=512] sinks/file/bench.sh BUILD_DIR [N] [FORMAT] [FSYNC]
# e.g. sinks/file/bench.sh build-rel 1000000 json batch
set -euo pipefail
build=$(realpath "${1:?usage: bench.sh BUILD_DIR [N] [json|msgpack] [never|batch|always]}")
n=${2:-1000000} format=${3:-json} fsync=${4:-batch}
dir=$(mktemp -d /tmp/vigil-bench-file.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT
cat >"$dir/vigil.yaml" <<YAML
plugin_dir: $build/plugins
bus: { publish: ipc://$dir/pub, subscribe: ipc://$dir/sub }
self: { interval: 1h }
sources:
  - { plugin: gen, name: bench, rate: 10000000, count: $n, labels: { vm: guest-01, cgroup: /machine.slice/x } }
sinks:
  - plugin: file
    match: gen.
    queue: { max_events: $((n + 1000)), max_bytes: 2GiB }
    batch: { max_events: ${BATCH:-512} }
    path: $dir/out
    format: $format
    fsync: $fsync
    rotate: { size: 0 }
YAML
start=$(date +%s.%N)
"$build/vigild" -c "$dir/vigil.yaml" 2>"$dir/log" &
pid=$!
# The last event is in the file when its line (or record) is: watch the log
# for gen finishing, then the sink's vigil.self-free way: the file's tail.
last="\"seq\":$n,"
until grep -q "published $n events" "$dir/log" 2>/dev/null; do sleep 0.05; done
if [ "$format" = json ]; then
    until tail -c 400 "$dir/out" | grep -q "$last"; do sleep 0.01; done
else
    until [ "$(/usr/bin/python3 -c '
import struct,sys
d=open(sys.argv[1],"rb").read(); o=0; n=0
while o+4<=len(d):
    l=struct.unpack(">I",d[o:o+4])[0]
    if o+4+l>len(d): break
    o+=4+l; n+=1
print(n)' "$dir/out")" -ge "$n" ]; do sleep 0.2; done
fi
end=$(date +%s.%N)
size=$(stat -c %s "$dir/out")
awk -v n="$n" -v s="$start" -v e="$end" -v b="$size" -v f="$format" -v y="$fsync" 'BEGIN {
    t = e - s; printf "%d events (%s, fsync %s) in %.2f s: %.0f events/s, %.1f MB/s, %d bytes/event\n",
    n, f, y, t, n / t, b / t / 1e6, b / n }'

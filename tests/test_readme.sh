#!/usr/bin/env bash
# The documentation's examples, run as written, from the file each lives in:
# the plugin example (docs/plugins.md) builds against the public header alone
# and runs in vigild; the Python subscriber and publishers (one event per
# message, and a batch: docs/subscribing.md) talk to the real bus; the
# README's first pipeline passes --check and runs; every relative link of the docs resolves.
# Usage: test_readme.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
test_name=readme
. "$src/tests/lib.sh"

mkdir -p "$work/plugins"
block docs/plugins.md '/* hello.c:' >"$work/hello.c"
[ -s "$work/hello.c" ] || fail "no hello.c example in docs/plugins.md"
cc -std=c11 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden \
  -I "$src/pipeline/include" "$work/hello.c" -o "$work/plugins/hello.so" ||
  fail "the docs/plugins.md plugin does not build against the header alone"
# Exactly one exported symbol beside the usual ELF ones: the descriptor.
nm -D --defined-only "$work/plugins/hello.so" | grep -q ' vigil_plugin$' || fail "vigil_plugin not exported"

cat >"$work/vigil.yaml" <<YAML
plugin_dir: plugins
bus:
  publish: ipc://$work/pub
  subscribe: ipc://$work/sub
sources: [{plugin: hello, interval: 200ms, who: operators}]
YAML
"$build/vigild" --check -c "$work/vigil.yaml" >/dev/null || fail "--check refused the docs/plugins.md plugin"
"$build/vigild" -c "$work/vigil.yaml" 2>"$work/vigild.log" &
pid=$!
for _ in $(seq 100); do grep -q "started" "$work/vigild.log" && break; sleep 0.05; done

if /usr/bin/python3 -c 'import zmq, msgpack' 2>/dev/null; then
  block docs/subscribing.md 'import zmq, msgpack' | sed "s#ipc:///run/vigil/subscribe#ipc://$work/sub#; s#b\"gen.\"#b\"hello.\"#" >"$work/sub.py"
  timeout 10 /usr/bin/python3 -u "$work/sub.py" >"$work/sub.out" 2>&1 &
  for _ in $(seq 100); do grep -q "hello.greeting" "$work/sub.out" && break; sleep 0.05; done
  grep -q "hello.greeting hello" "$work/sub.out" || fail "the docs/subscribing.md subscriber got no greeting: $(cat "$work/sub.out")"

  "$build/vigil-tap" -e "ipc://$work/sub" -t app. -n 10 --timeout 20s >"$work/tap.out" &
  tap=$!
  sleep 0.5 # let the tap's subscription reach the bus (slow joiner)
  block docs/subscribing.md 'import socket, time, zmq, msgpack' | sed "s#ipc:///run/vigil/publish#ipc://$work/pub#" >"$work/pub.py"
  timeout 20 /usr/bin/python3 "$work/pub.py" || fail "the docs/subscribing.md publisher failed"
  wait "$tap" || fail "vigil-tap did not see the docs/subscribing.md publisher's 10 events"
  [ "$(grep -c '"source":"my-app"' "$work/tap.out")" -eq 10 ] || fail "expected 10 events from my-app"

  # The batch publisher: 100 events in one message, each one on its own.
  "$build/vigil-tap" -e "ipc://$work/sub" -t app.batched -n 100 --timeout 20s >"$work/tapb.out" &
  tap=$!
  sleep 0.5
  block docs/subscribing.md 'import socket, struct, time, zmq, msgpack' | sed "s#ipc:///run/vigil/publish#ipc://$work/pub#" >"$work/pubb.py"
  [ -s "$work/pubb.py" ] || fail "no batch publisher in docs/subscribing.md"
  timeout 20 /usr/bin/python3 "$work/pubb.py" || fail "the docs/subscribing.md batch publisher failed"
  wait "$tap" || fail "vigil-tap did not see the docs/subscribing.md batch publisher's 100 events"
  [ "$(grep -c '"source":"my-batcher"' "$work/tapb.out")" -eq 100 ] || fail "expected 100 events from my-batcher"
else
  echo "SKIP: python3-zmq or python3-msgpack missing: the Python examples were not run"
fi

kill -TERM "$pid"
wait "$pid" || fail "vigild did not exit 0 on SIGTERM"
pid=

# The README's first pipeline, with this build's plugins and its folder in
# $work: --check accepts it, and it runs: vigil-tap sees a gen.demo event.
block README.md '# first.yaml:' |
  sed "s#^plugin_dir:.*#plugin_dir: $build/plugins#; s#/tmp/vigil-first#$work/first#g" >"$work/first.yaml"
grep -q '^sources:' "$work/first.yaml" || fail "no first.yaml example in README.md"
"$build/vigild" --check -c "$work/first.yaml" >"$work/check.out" 2>&1 ||
  fail "vigild --check refused the README's first.yaml: $(cat "$work/check.out")"
"$build/vigild" -c "$work/first.yaml" 2>"$work/vigild.log" &
pid=$!
"$build/vigil-tap" -c "$work/first.yaml" -t gen.demo -n 1 --timeout 10s >"$work/first.out" ||
  fail "vigil-tap saw no gen.demo event of the README's first pipeline"
kill -TERM "$pid"
wait "$pid" || fail "vigild (first.yaml) did not exit 0 on SIGTERM"
pid=

# A README example: the config block "# NAME.yaml:" (plugin_dir and
# /tmp/vigil-NAME made this build's and this test's, plus the sed
# expression given: faster intervals) holds `needle`, passes --check and
# runs; its one "vigil-tap -c NAME.yaml" line, its vigil-tap command
# replaced by `tap` (bounded by -n or --timeout), prints what the function
# `check` accepts (it gets the output file).
#   readme_example NAME SED NEEDLE TAP CHECK
readme_example() {
  local name=$1 sedx=$2 needle=$3 tap=$4 check=$5 line
  block README.md "# $name.yaml:" |
    sed "s#^plugin_dir:.*#plugin_dir: $build/plugins#; s#/tmp/vigil-$name#$work/$name#g; $sedx" >"$work/$name.yaml"
  grep -q "$needle" "$work/$name.yaml" || fail "no $name.yaml example in README.md"
  "$build/vigild" --check -c "$work/$name.yaml" >"$work/check.out" 2>&1 ||
    fail "vigild --check refused the README's $name.yaml: $(cat "$work/check.out")"
  /usr/bin/python3 -c 'import json' 2>/dev/null || return 0
  "$build/vigild" -c "$work/$name.yaml" 2>"$work/vigild.log" &
  pid=$!
  line=$(grep -F "vigil-tap -c $name.yaml" "$src/README.md" | head -1 |
    sed "s#^build/vigil-tap -c $name.yaml[^|]*|#$tap |#")
  [ -n "$line" ] || fail "no vigil-tap | python3 line beside README.md's $name.yaml"
  bash -c "$line" >"$work/$name.out" 2>&1 || fail "the README's $name line failed: $(cat "$work/$name.out")"
  "$check" "$work/$name.out" || fail "the README's $name line said: $(cat "$work/$name.out")"
  kill -TERM "$pid"
  wait "$pid" || fail "vigild ($name.yaml) did not exit 0 on SIGTERM"
  pid=
}

# Capacity: "HOST fits" or "HOST does not fit", for this host.
fit_answer() { grep -Eq '^[^ ]+ (fits|does not fit)$' "$1"; }
readme_example capacity 's#interval: 10s#interval: 300ms#; s#republish: 30s#republish: 1s#' \
  'kind: capacity' "$build/vigil-tap -c $work/capacity.yaml -t capacity.host -n 1 --timeout 20s" fit_answer

# Network: one to five lines "NETNS INTERFACE OWNER RATE B/s" (loopback at least).
busiest_interfaces() {
  local n
  n=$(grep -Ec '^[^ ]+ [^ ]+ [^ ]+ [0-9]+ B/s$' "$1")
  [ "$n" -ge 1 ] && [ "$n" -le 5 ] && [ "$n" -eq "$(wc -l <"$1")" ]
}
readme_example net 's#interval: 10s#interval: 300ms#' 'plugin: net' \
  "$build/vigil-tap -c $work/net.yaml -t net.if --timeout 2s" busiest_interfaces

# Every relative link of the README and the docs resolves (file and heading).
if command -v python3 >/dev/null; then
  (cd "$src" && python3 tools/check_doc_links.py README.md docs/*.md plugins/*/README.md sinks/*/README.md conf/kubernetes/README.md >"$work/links.out") ||
    fail "broken links: $(cat "$work/links.out")"
fi

# The default config and every example the docs point to are valid, with
# the plugins of this build (plugin_dir rewritten to it).
# The fleet examples name key files under /etc/vigil: made here with the
# build's vigil-keygen, in the test's folder.
mkdir -p "$work/etc"
"$build/vigil-keygen" "$work/etc/keys" >/dev/null || fail "vigil-keygen failed"
cp "$work/etc/keys/vigil.pub" "$work/etc/keys/central.pub"
printf '%s agent-1\n' "$(head -c 40 "$work/etc/keys/vigil.pub")" >"$work/etc/authorized_keys"
for f in "$src/conf/vigil.yaml" "$src"/conf/examples/*.yaml; do
  sed "s#^plugin_dir:.*#plugin_dir: $build/plugins#; s#/etc/vigil/#$work/etc/#g" "$f" >"$work/example.yaml"
  VIGIL_SIEM_TOKEN=example "$build/vigild" --check -c "$work/example.yaml" >"$work/check.out" 2>&1 ||
    fail "vigild --check refused $f: $(cat "$work/check.out")"
done
echo "README and docs examples: ok"

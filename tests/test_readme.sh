#!/usr/bin/env bash
# The README's examples, run as written: the plugin example builds against
# the public header alone and runs in vigild; the Python subscriber and
# publisher talk to the real bus. Usage: test_readme.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d /tmp/vigil-readme.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  # TERM, not KILL: timeout(1) passes TERM on to its command, while a
  # killed timeout leaves it running (the subscriber loops forever).
  jobs -p | xargs -r kill -TERM 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$work/vigild.log" ] && cat "$work/vigild.log"; exit 1; }

# Fenced block of README.md whose first line matches $1 (without the fences).
block() {
  awk -v first="$1" '
    /^```/ { if (inb) { if (take) exit; inb = 0; next } inb = 1; take = 0; n = 0; next }
    inb && n == 0 { n = 1; if (index($0, first) == 1) take = 1 }
    inb && take { print }' "$src/README.md"
}

mkdir -p "$work/plugins"
block '/* hello.c:' >"$work/hello.c"
[ -s "$work/hello.c" ] || fail "no hello.c example in README.md"
cc -std=c11 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden \
  -I "$src/pipeline/include" "$work/hello.c" -o "$work/plugins/hello.so" ||
  fail "the README plugin does not build against the header alone"
# Exactly one exported symbol beside the usual ELF ones: the descriptor.
nm -D --defined-only "$work/plugins/hello.so" | grep -q ' vigil_plugin$' || fail "vigil_plugin not exported"

cat >"$work/vigil.yaml" <<YAML
plugin_dir: plugins
bus:
  publish: ipc://$work/pub
  subscribe: ipc://$work/sub
sources: [{plugin: hello, interval: 200ms, who: operators}]
YAML
"$build/vigild" --check -c "$work/vigil.yaml" >/dev/null || fail "--check refused the README plugin"
"$build/vigild" -c "$work/vigil.yaml" 2>"$work/vigild.log" &
pid=$!
for _ in $(seq 100); do grep -q "started" "$work/vigild.log" && break; sleep 0.05; done

if /usr/bin/python3 -c 'import zmq, msgpack' 2>/dev/null; then
  block 'import zmq, msgpack' | sed "s#ipc:///run/vigil/subscribe#ipc://$work/sub#; s#b\"gen.\"#b\"hello.\"#" >"$work/sub.py"
  timeout 10 /usr/bin/python3 -u "$work/sub.py" >"$work/sub.out" 2>&1 &
  for _ in $(seq 100); do grep -q "hello.greeting" "$work/sub.out" && break; sleep 0.05; done
  grep -q "hello.greeting hello" "$work/sub.out" || fail "the README subscriber got no greeting: $(cat "$work/sub.out")"

  "$build/vigil-tap" -e "ipc://$work/sub" -t app. -n 10 --timeout 20s >"$work/tap.out" &
  tap=$!
  sleep 0.5 # let the tap's subscription reach the bus (slow joiner)
  block 'import socket, time, zmq, msgpack' | sed "s#ipc:///run/vigil/publish#ipc://$work/pub#" >"$work/pub.py"
  timeout 20 /usr/bin/python3 "$work/pub.py" || fail "the README publisher failed"
  wait "$tap" || fail "vigil-tap did not see the README publisher's 10 events"
  [ "$(grep -c '"source":"my-app"' "$work/tap.out")" -eq 10 ] || fail "expected 10 events from my-app"
else
  echo "SKIP: python3-zmq or python3-msgpack missing: the Python examples were not run"
fi

kill -TERM "$pid"
wait "$pid" || fail "vigild did not exit 0 on SIGTERM"
pid=

# The default config and every example the README points to are valid, with
# the plugins of this build (plugin_dir rewritten to it).
for f in "$src/conf/vigil.yaml" "$src"/conf/examples/*.yaml; do
  sed "s#^plugin_dir:.*#plugin_dir: $build/plugins#" "$f" >"$work/example.yaml"
  VIGIL_SIEM_TOKEN=example "$build/vigild" --check -c "$work/example.yaml" >"$work/check.out" 2>&1 ||
    fail "vigild --check refused $f: $(cat "$work/check.out")"
done
echo "README examples: ok"

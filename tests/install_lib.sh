# Shared by test_install.sh and test_package.sh (sourced, not run): lib.sh's
# temp folder, and running an installed vigild on a copy of its installed
# config whose state, bus and log paths are moved into that folder, so a
# test never touches the host's /run, /var or /etc. The sourcing script sets
# `build` and `src` first.

test_name=install
. "$src/tests/lib.sh"

# A value of the build's CMakeCache.txt.
cache_get() {
  sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"
}

# runnable_config IN OUT [PLUGIN_DIR]: IN with state_dir, the bus endpoints
# and the file sink's log folder under $work, every 10s interval 1s (events
# come in a test's time), and plugin_dir PLUGIN_DIR if given (else IN's own).
runnable_config() {
  local in=$1 out=$2 pd=${3:-}
  sed -e "s#^state_dir:.*#state_dir: $work/state#" \
    -e "s#ipc:///run/vigil/#ipc://$work/run/#g" \
    -e "s#/var/log/vigil/#$work/log/#g" \
    -e "s#interval: 10s#interval: 1s#g" "$in" >"$out"
  if [ -n "$pd" ]; then
    sed -i "s#^plugin_dir:.*#plugin_dir: $pd#" "$out"
  fi
  # Whatever the rewrite missed would be the host's: refuse to run it. A
  # policy rule's `resource:` globs name what is judged, not what vigild
  # opens: not paths to rewrite.
  if grep -v -e '^ *#' -e '^ *- \(deny\|allow\): {.*resource:' "$out" | sed -e 's/ #.*//' -e "s#$work#WORK#g" | grep -nE '(^|[^A-Za-z0-9_.-])/(run|var|etc)/'; then
    fail "$out still names a host path (the rewrite above missed it)"
  fi
}

# run_daemon VIGILD TAP CONFIG TOPIC...: starts VIGILD -c CONFIG, waits for
# "started", lets TAP see one event of each TOPIC, then stops it with SIGTERM
# and wants exit status 0.
run_daemon() {
  local vigild=$1 tap=$2 cfg=$3 t
  shift 3
  "$vigild" -c "$cfg" 2>"$work/vigild.log" &
  pid=$!
  for _ in $(seq 200); do
    grep -q "started" "$work/vigild.log" && break
    kill -0 "$pid" 2>/dev/null || fail "$vigild exited at start"
    sleep 0.05
  done
  grep -q "started" "$work/vigild.log" || fail "$vigild did not start within 10 s"
  for t in "$@"; do
    "$tap" -c "$cfg" -t "$t" -n 1 --timeout 15s >"$work/tap.out" ||
      fail "$tap saw no $t event from $vigild"
    grep -q "\"topic\":\"$t" "$work/tap.out" || fail "unexpected tap output: $(cat "$work/tap.out")"
  done
  kill -0 "$pid" 2>/dev/null || fail "$vigild died"
  kill -TERM "$pid"
  wait "$pid" || fail "$vigild did not exit 0 on SIGTERM"
  pid=
}

# package_deb: builds the .deb (CPack) from a build configured for prefix
# /usr: this build if it is one, else package-test/ in it (configured and
# built the first time, without the tests; incremental after); moves it into
# $work, its path in $deb.
package_deb() {
  if [ "$(cache_get CMAKE_INSTALL_PREFIX)" = /usr ]; then
    pkgbuild=$build
  else
    pkgbuild=$build/package-test
    cmake -S "$src" -B "$pkgbuild" -DCMAKE_INSTALL_PREFIX=/usr -DVIGIL_TESTS=OFF \
      -DCMAKE_BUILD_TYPE="$(cache_get CMAKE_BUILD_TYPE)" >"$work/configure.log" 2>&1 ||
      fail "configuring $pkgbuild: $(cat "$work/configure.log")"
    cmake --build "$pkgbuild" -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}" >"$work/build.log" 2>&1 ||
      fail "building $pkgbuild: $(tail -n 30 "$work/build.log")"
  fi
  rm -f "$pkgbuild"/vigil_*.deb
  cmake --build "$pkgbuild" --target package >"$work/package.log" 2>&1 ||
    fail "cmake --build $pkgbuild --target package: $(tail -n 30 "$work/package.log")"
  debs=("$pkgbuild"/vigil_*.deb)
  [ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] || fail "expected one vigil_*.deb in $pkgbuild: ${debs[*]}"
  mv "${debs[0]}" "$work/"
  deb=$work/$(basename "${debs[0]}")
}

#!/usr/bin/env bash
# vigil's one entry point for developers, on a fresh Debian 12 machine too:
#   tools/dev.sh run    install what is missing, build, run vigild -c conf/vigil.yaml
#   tools/dev.sh test   install what is missing, build plain and with ASan+UBSan,
#                       run every test in both, then run each fuzz target briefly
#   tools/dev.sh setup | build
#   tools/dev.sh package  build the Debian package (prefix /usr, in build-package/)
#                       and put vigil_<version>_<arch>.deb here: apt install ./vigil_*.deb
#   tools/dev.sh format apply clang-format-16 to every C file (test fails on a diff)
# Environment: VIGIL_FUZZ_SECONDS (per fuzz target, default 6).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# vigild refuses plugins that group or others can write (plugin_trust,
# README "Plugin trust"): what this script builds must not be, whatever the
# caller's umask (002 on some machines).
umask 022

# Debian packages the build, the tests and the fuzzers need.
packages=(
  gcc make cmake pkg-config
  libevent-dev libzmq3-dev libmsgpack-dev libyaml-dev libcmocka-dev
  libcurl4-openssl-dev        # the webhook sink
  rsyslog openssl             # the syslog sink's tests talk to a real rsyslogd; TLS test certs
  prometheus                  # the prometheus sink's tests: a real server scrapes it; promtool
  clang libclang-rt-14-dev    # libFuzzer and the sanitizer runtimes
  clang-format-16             # the style check (.clang-format's InsertBraces needs 15+)
  python3 python3-zmq python3-msgpack  # JSON checks; the Python examples of docs/subscribing.md
  iproute2 procps
  nftables                    # the tcp_probe loss test drops SYNs with nft in its netns
  man-db groff-base mandoc     # the man pages' test: man -l, groff -ww, mandoc -T lint
  dpkg-dev file               # the Debian package: dpkg-shlibdeps computes its Depends
  libsystemd-dev systemd      # sd_notify and the watchdog; systemd-analyze verifies the unit
  libncurses-dev tmux         # vigil-top's screen; its test drives it under tmux
)

setup() {
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  # node and npm: Debian's nodejs and npm, unless a node with its npm is
  # there already (NodeSource's nodejs carries npm, and conflicts with Debian's).
  command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
  if ((${#missing[@]} > 0)); then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "dev.sh: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
  setup_npm
}

# The npm packages of the Kubernetes manifests' test (tests/k8s/: the
# kubernetes-models validator), as locked in its package-lock.json: installed
# when node_modules is missing or older than the lock, quietly. Without node
# and npm (setup() installs them) this says so and goes on (the test then
# skips, saying why).
setup_npm() {
  local dir=$root/tests/k8s
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "dev.sh: node/npm not installed: the k8s test will be skipped"
    return 0
  fi
  if [ -f "$dir/node_modules/.package-lock.json" ] &&
    [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    return 0
  fi
  echo "dev.sh: installing the npm packages of tests/k8s"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

# build DIR [cmake options...]
build() {
  local dir=$1
  shift
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)" -- --no-print-directory >/dev/null
}

passed=0
failed=0

# ctest_in DIR LABEL: runs the suite, counts its tests.
ctest_in() {
  local dir=$1 label=$2 out rc=0
  echo "== tests ($label)"
  out=$(cd "$dir" && ctest --output-on-failure --timeout 300 -j "${VIGIL_CTEST_JOBS:-2}" 2>&1) || rc=$?
  echo "$out"
  local total bad
  total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' <<<"$out" | tail -n 1)
  bad=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' <<<"$out" | tail -n 1)
  if [ -z "$total" ]; then
    echo "dev.sh: ctest in $dir printed no summary"
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + total - bad))
  failed=$((failed + bad))
  [ "$rc" -eq 0 ] || [ "$bad" -gt 0 ] || failed=$((failed + 1))
}

# The style is checked, not hoped for: any file clang-format would change
# fails the run (fix with: tools/dev.sh format).
format_check() {
  echo "== style (clang-format-16)"
  local bad
  bad=$(git ls-files '*.c' '*.h' | while read -r f; do
    clang-format-16 --dry-run -Werror "$f" >/dev/null 2>&1 || echo "$f"
  done)
  if [ -n "$bad" ]; then
    echo "dev.sh: clang-format-16 would change these files (run tools/dev.sh format):"
    sed 's/^/  /' <<<"$bad"
    failed=$((failed + 1))
  else
    echo "style: ok ($(git ls-files '*.c' '*.h' | wc -l) files)"
    passed=$((passed + 1))
  fi
}

fuzz() {
  local out rc=0 ok bad
  out=$(tools/fuzz.sh -t "${VIGIL_FUZZ_SECONDS:-6}" 2>&1) || rc=$?
  echo "$out"
  ok=$(grep -c ': ok (' <<<"$out" || true)
  bad=$(grep -c ': FAILED' <<<"$out" || true)
  if ((rc != 0 && bad == 0)); then
    bad=1 # it did not get as far as a target (the build)
  fi
  passed=$((passed + ok))
  failed=$((failed + bad))
}

case "${1:-}" in
setup)
  setup
  ;;
build)
  setup
  build build
  ;;
format)
  setup
  git ls-files '*.c' '*.h' | xargs clang-format-16 -i
  ;;
package)
  setup
  # Its own build: the package's vigild has /etc/vigil/vigil.yaml and
  # /usr/lib/vigil/plugins compiled in, which only prefix /usr gives.
  build build-package -DCMAKE_INSTALL_PREFIX=/usr -DVIGIL_TESTS=OFF
  rm -f build-package/vigil_*.deb
  out=$(cmake --build build-package --target package 2>&1) || {
    echo "$out"
    exit 1
  }
  mv build-package/vigil_*.deb .
  echo "dev.sh: $(ls vigil_*.deb): install it with apt install ./$(ls vigil_*.deb)"
  ;;
run)
  setup
  build build
  exec build/vigild -c conf/vigil.yaml
  ;;
test)
  setup
  format_check
  echo "== build (plain)"
  build build
  echo "== build (AddressSanitizer + UndefinedBehaviorSanitizer)"
  build build-asan -DVIGIL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  ctest_in build plain
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest_in build-asan "ASan+UBSan"
  fuzz
  echo
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  ;;
*)
  echo "usage: tools/dev.sh run | test | setup | build | package | format" >&2
  exit 2
  ;;
esac

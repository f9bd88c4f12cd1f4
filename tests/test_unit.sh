#!/usr/bin/env bash
# The Debian package's vigild run as a systemd unit, for real: systemd as
# PID 1 of a private PID and mount namespace, the package's files laid over
# /usr and /etc there (overlayfs: the host's are untouched), with its own
# /run, /tmp, /var/lib, /var/log and cgroup subtrees. The unit starts
# (Type=notify: active once vigild says READY=1), runs as its DynamicUser
# with exactly the unit's three capabilities, publishes (vigil-tap sees
# events), logs to the journal with priorities, reloads and stops.
# Root only; skipped, saying why, without systemd, unshare or overlayfs.
# Usage: test_unit.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
. "$src/tests/install_lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (a PID and mount namespace, cgroups)"
[ -x /lib/systemd/systemd ] || skip "systemd is not installed (tools/dev.sh setup installs it)"
for t in unshare nsenter dpkg-deb cpack; do
  command -v "$t" >/dev/null || skip "$t is not installed"
done
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
  skip "the kernel has no overlayfs"
if [ "$(cache_get VIGIL_SANITIZE)" = ON ]; then
  skip "a sanitizer build: the package is built without sanitizers, which the plain build's run of this test checks"
fi

package_deb
root=$work/root
dpkg-deb -x "$deb" "$root"

# Cgroup subtrees of our own, seen as the roots inside the namespace.
cgs=()
if [ -d /sys/fs/cgroup/systemd ]; then # the hybrid (or legacy) layout
  cgs+=(/sys/fs/cgroup/systemd)
  [ -d /sys/fs/cgroup/unified ] && cgs+=(/sys/fs/cgroup/unified)
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then # cgroup v2 only
  cgs+=(/sys/fs/cgroup)
else
  skip "no cgroup hierarchy systemd can run in"
fi
sub=vigil-unit-$$
ns_pid=
unshare_pid=
cleanup_unit() {
  # Killing the namespace's PID 1 kills everything in it.
  if [ -n "$ns_pid" ]; then kill -9 "$ns_pid" 2>/dev/null || true; fi
  if [ -n "$unshare_pid" ]; then wait "$unshare_pid" 2>/dev/null || true; fi
  for cg in "${cgs[@]}"; do
    for _ in $(seq 50); do
      [ -d "$cg/$sub" ] || break
      find "$cg/$sub" -depth -type d -exec rmdir {} + 2>/dev/null || sleep 0.1
    done
    if [ -d "$cg/$sub" ]; then echo "unit: could not remove $cg/$sub"; fi
  done
  cleanup
}
trap cleanup_unit EXIT

setup_ns="set -e"
for cg in "${cgs[@]}"; do
  mkdir "$cg/$sub"
  setup_ns+="; echo \$\$ >$cg/$sub/cgroup.procs"
done
setup_ns+="; mount -t proc proc /proc"
# The overlays first: $root is under /tmp.
for d in /usr /etc; do
  setup_ns+="; mount -t overlay overlay -o lowerdir=$root$d:$d $d"
done
for d in /run /tmp /var/lib /var/log; do
  setup_ns+="; mount -t tmpfs tmpfs $d"
done
for cg in "${cgs[@]}"; do
  setup_ns+="; mount --bind $cg/$sub $cg"
done
setup_ns+="; exec env container=vigil-test /lib/systemd/systemd --system --log-target=console"
unshare --pid --fork --mount --uts --propagation private sh -c "$setup_ns" \
  >"$work/systemd.log" 2>&1 &
unshare_pid=$!

# systemd's pid in the host's PID namespace: the child of unshare.
for _ in $(seq 100); do
  ns_pid=$(pgrep -P "$unshare_pid" || true)
  [ -n "$ns_pid" ] && break
  sleep 0.1
done
[ -n "$ns_pid" ] || fail "systemd did not start: $(cat "$work/systemd.log")"
in_ns() { nsenter -t "$ns_pid" -m -p "$@"; }
for _ in $(seq 100); do
  in_ns systemctl show -p Version >/dev/null 2>&1 && break
  sleep 0.2
done
in_ns systemctl show -p Version >/dev/null 2>&1 || fail "systemd does not answer: $(cat "$work/systemd.log")"

unit_fail() {
  in_ns systemctl status vigild --no-pager >"$work/status" 2>&1 || true
  in_ns journalctl -u vigild --no-pager >"$work/journal" 2>&1 || true
  fail "$*
$(cat "$work/status")
$(cat "$work/journal")"
}

# ---- Start: ready means ready -------------------------------------------------------

in_ns systemctl start vigild || unit_fail "systemctl start vigild failed"
state=$(in_ns systemctl show -p ActiveState -p SubState -p StatusText vigild)
grep -q '^ActiveState=active' <<<"$state" && grep -q '^SubState=running' <<<"$state" ||
  unit_fail "not active (running): $state"
grep -q '^StatusText=5 sources, .* rules, 1 sink; publish ipc:///run/vigil/publish' <<<"$state" ||
  unit_fail "its status: $state"
main=$(in_ns systemctl show -p MainPID --value vigild)
[ "$(in_ns ps -o user= -p "$main")" = vigild ] || unit_fail "runs as $(in_ns ps -o user= -p "$main"), not its DynamicUser"
# CAP_DAC_READ_SEARCH (2), CAP_SYS_PTRACE (19), CAP_PERFMON (38), nothing else.
caps=$(in_ns awk '/^CapEff/ {print $2}' "/proc/$main/status")
[ "$caps" = 0000004000080004 ] || unit_fail "its effective capabilities are $caps"

# ---- It works: events, the journal -------------------------------------------------

in_ns timeout 30 vigil-tap -c /etc/vigil/vigil.yaml -t system.stats -n 1 >"$work/tap.out" 2>&1 ||
  unit_fail "vigil-tap saw no system.stats: $(cat "$work/tap.out")"
grep -q '"topic":"system.stats"' "$work/tap.out" || unit_fail "vigil-tap: $(cat "$work/tap.out")"
# Priorities, not time stamps: the start is at info, so not among warnings.
in_ns journalctl -u vigild -o cat -p info --no-pager | grep -q '^INFO  \[vigild\] vigild .* started on host' ||
  unit_fail "no start line at priority info in the journal"
if in_ns journalctl -u vigild -o cat -p warning --no-pager | grep -q 'started on host'; then
  unit_fail "the start line is logged as a warning"
fi

# ---- Reload, stop -----------------------------------------------------------------------

in_ns systemctl reload vigild || unit_fail "systemctl reload failed"
for _ in $(seq 50); do
  in_ns journalctl -u vigild -o cat --no-pager | grep -q 'SIGHUP received' && break
  sleep 0.1
done
in_ns journalctl -u vigild -o cat --no-pager | grep -q 'SIGHUP received' || unit_fail "the reload did not reach vigild"
[ "$(in_ns systemctl show -p ActiveState --value vigild)" = active ] || unit_fail "not active after the reload"
in_ns systemctl stop vigild || unit_fail "systemctl stop failed"
result=$(in_ns systemctl show -p ActiveState -p Result vigild)
grep -q '^ActiveState=inactive' <<<"$result" && grep -q '^Result=success' <<<"$result" ||
  unit_fail "after the stop: $result"
in_ns journalctl -u vigild -o cat --no-pager | grep -q '\[vigild\] stopped' || unit_fail "vigild did not say it stopped"
echo "unit: ok (started as $(in_ns systemctl show -p User --value vigild 2>/dev/null || true) with capabilities $caps; events, journal, reload, stop)"

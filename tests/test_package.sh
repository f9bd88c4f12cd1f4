#!/usr/bin/env bash
# The Debian package (CPack's DEB generator, packaging/CMakeLists.txt): its
# control fields (Depends computed by dpkg-shlibdeps, conffiles, maintainer
# scripts that start nothing), its files, and its vigild run from an
# extracted root (dpkg-deb -x), with -c into that root and plugin_dir
# rewritten: its compiled-in paths are /etc/vigil and /usr/lib/vigil.
# The package comes from a build configured for prefix /usr: this build if it
# is one, else package-test/ in it (configured and built here the first time,
# without the tests; incremental after).
# Usage: test_package.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
. "$src/tests/install_lib.sh"

for t in dpkg-deb dpkg-shlibdeps cpack; do
  command -v "$t" >/dev/null || skip "$t is not installed (tools/dev.sh setup installs dpkg-dev)"
done
if [ "$(cache_get VIGIL_SANITIZE)" = ON ]; then
  skip "a sanitizer build: the package is built without sanitizers in a tree of its own, which the plain build's run of this test already builds and checks"
fi

package_deb

# ---- Control -------------------------------------------------------------------------

version=$(sed -n 's/^project(vigil VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ "$(basename "$deb")" = "vigil_${version}_$(dpkg --print-architecture).deb" ] ||
  fail "package file name $(basename "$deb")"
[ "$(dpkg-deb -f "$deb" Package)" = vigil ] || fail "Package: $(dpkg-deb -f "$deb" Package)"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "Version: $(dpkg-deb -f "$deb" Version), not project()'s $version"
[ -n "$(dpkg-deb -f "$deb" Maintainer)" ] || fail "no Maintainer"
[ -n "$(dpkg-deb -f "$deb" Description)" ] || fail "no Description"
depends=$(dpkg-deb -f "$deb" Depends)
for d in libc6 libzmq5 libevent-core libevent-pthreads libyaml-0-2 libmsgpackc libcurl; do
  grep -q "$d" <<<"$depends" || fail "Depends lacks $d (shlibdeps): $depends"
done
dpkg-deb -I "$deb" >"$work/info"
[ "$(dpkg-deb -I "$deb" conffiles)" = /etc/vigil/vigil.yaml ] ||
  fail "conffiles is not /etc/vigil/vigil.yaml: $(dpkg-deb -I "$deb" conffiles 2>&1)"
for s in postinst postrm; do
  dpkg-deb -I "$deb" "$s" >"$work/$s" || fail "no $s: $(cat "$work/info")"
  sh -n "$work/$s" || fail "$s: syntax error"
  # Installed, not started: no maintainer script enables or starts the unit.
  if grep -v '^ *#' "$work/$s" | grep -nE 'deb-systemd-(helper|invoke)|systemctl +(enable|start|restart)|invoke-rc\.d'; then
    fail "$s enables or starts the unit"
  fi
done
grep -q '/var/lib/vigil' "$work/postinst" || fail "postinst does not make /var/lib/vigil"

# ---- Files ---------------------------------------------------------------------------

dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's#^\./#/#' >"$work/files"
for f in /usr/bin/vigild /usr/bin/vigil-tap /usr/bin/vigil-pub /usr/bin/vigil-top /usr/bin/vigil-bench \
  /usr/bin/vigil-keygen /usr/include/vigil/plugin.h /etc/vigil/vigil.yaml \
  /usr/lib/systemd/system/vigild.service /usr/share/doc/vigil/examples/file.yaml; do
  grep -qx "$f" "$work/files" || fail "$f is not in the package: $(cat "$work/files")"
done
for pl in gen kvm cgroups tcp_probe net system access file syslog webhook forward discard; do
  grep -qx "/usr/lib/vigil/plugins/$pl.so" "$work/files" || fail "plugin $pl is not in the package"
done
grep -q '/vigil-plugin.pc$' "$work/files" || fail "vigil-plugin.pc is not in the package"
grep -q '/test_' "$work/files" && fail "the tests' plugins are in the package"

# ---- Run it from an extracted root ---------------------------------------------------

root=$work/root
dpkg-deb -x "$deb" "$root"
grep -q '^plugin_dir: /usr/lib/vigil/plugins' "$root/etc/vigil/vigil.yaml" ||
  fail "the packaged config's plugin_dir: $(grep plugin_dir "$root/etc/vigil/vigil.yaml")"
grep -q '^state_dir: /var/lib/vigil' "$root/etc/vigil/vigil.yaml" || fail "the packaged config's state_dir"
"$root/usr/bin/vigild" --help | grep -q '(default /etc/vigil/vigil.yaml)' ||
  fail "the packaged vigild's default -c: $("$root/usr/bin/vigild" --help)"
# The compiled-in plugin_dir: a config without one loads from /usr/lib/vigil/plugins
# (valid if vigil is installed on this machine, else the error names that folder).
printf 'bus:\n  publish: ipc://%s/p\n  subscribe: ipc://%s/s\nsources: [{plugin: gen}]\n' \
  "$work" "$work" >"$work/no-plugin-dir.yaml"
if ! "$root/usr/bin/vigild" --check -c "$work/no-plugin-dir.yaml" >"$work/check.out" 2>&1; then
  grep -q 'looked in /usr/lib/vigil/plugins' "$work/check.out" ||
    fail "the packaged vigild's default plugin_dir: $(cat "$work/check.out")"
fi

runnable_config "$root/etc/vigil/vigil.yaml" "$work/vigil.yaml" "$root/usr/lib/vigil/plugins"
cd "$work"
"$root/usr/bin/vigild" --check -c "$work/vigil.yaml" >"$work/check.out" 2>&1 ||
  fail "the packaged vigild --check refused the packaged config: $(cat "$work/check.out")"
run_daemon "$root/usr/bin/vigild" "$root/usr/bin/vigil-tap" "$work/vigil.yaml" system.stats vigil.self
echo "package: ok ($(basename "$deb"), $(wc -l <"$work/files") entries)"

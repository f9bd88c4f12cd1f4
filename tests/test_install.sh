#!/usr/bin/env bash
# cmake --install, as an operator and a plugin author meet it:
# * into a temp prefix (--prefix): every file where docs/development.md says;
#   the installed vigild --check accepts the installed config, whose
#   plugin_dir is the installed plugins; a plugin built out of the tree as
#   docs/plugins.md says (pkg-config vigil-plugin, the installed header
#   alone) loads; the installed vigild runs that config and the installed
#   vigil-tap sees its events;
# * at the configured prefix (DESTDIR, then bound over the prefix in a
#   private mount namespace, as root): the installed vigild needs no flags
#   (-c and plugin_dir compiled in), and the installed vigil-bench finds the
#   installed vigild and plugins.
# Usage: test_install.sh BUILD_DIR SOURCE_DIR PREFIX DEFAULT_CONFIG (the
# configured CMAKE_INSTALL_PREFIX and the -c default CMake derived from it)
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
prefix=$3
default_config=$4
. "$src/tests/install_lib.sh"

command -v pkg-config >/dev/null || skip "pkg-config is not installed (tools/dev.sh setup)"
command -v cc >/dev/null || skip "no C compiler (cc)"

# ---- --prefix: a relocated install -----------------------------------------------------

p=$work/prefix
cmake --install "$build" --prefix "$p" >"$work/install.log" 2>&1 ||
  fail "cmake --install failed: $(cat "$work/install.log")"

for f in bin/vigild bin/vigil-tap bin/vigil-pub bin/vigil-top bin/vigil-bench bin/vigil-keygen; do
  [ -x "$p/$f" ] || fail "$f not installed"
done
for f in include/vigil/plugin.h etc/vigil/vigil.yaml lib/systemd/system/vigild.service \
  share/doc/vigil/examples/file.yaml share/doc/vigil/examples/agent.yaml; do
  [ -f "$p/$f" ] || fail "$f not installed"
done
for pl in gen kvm cgroups tcp_probe net system access file syslog webhook forward discard; do
  [ -f "$p/lib/vigil/plugins/$pl.so" ] || fail "plugin $pl not installed in lib/vigil/plugins"
done
if ls "$p/lib/vigil/plugins" | grep -q '^test_'; then
  fail "the tests' plugins were installed: $(ls "$p/lib/vigil/plugins")"
fi
pc=$(find "$p/lib" -name vigil-plugin.pc)
[ -n "$pc" ] || fail "no vigil-plugin.pc installed"
grep -q "^plugin_dir: $p/lib/vigil/plugins" "$p/etc/vigil/vigil.yaml" ||
  fail "the installed config's plugin_dir is not the installed plugins: $(grep plugin_dir "$p/etc/vigil/vigil.yaml")"
grep -q "^plugin_dir: $p/lib/vigil/plugins" "$p/share/doc/vigil/examples/file.yaml" ||
  fail "the installed examples' plugin_dir is not the installed plugins"
grep -q "^ExecStart=$p/bin/vigild" "$p/lib/systemd/system/vigild.service" ||
  fail "the installed unit does not start the installed vigild: $(grep Exec "$p/lib/systemd/system/vigild.service")"

# From a folder unrelated to the source and build trees.
cd "$work"
"$p/bin/vigild" --check -c "$p/etc/vigil/vigil.yaml" >"$work/check.out" 2>&1 ||
  fail "the installed vigild --check refused the installed config: $(cat "$work/check.out")"

# A third-party plugin: the docs/plugins.md example, built as that page says
# to build out of the tree (its `cc ... $(pkg-config ...)` block, run as
# written, sudo aside), against the installed header alone.
block docs/plugins.md '/* hello.c:' >"$work/hello.c"
[ -s "$work/hello.c" ] || fail "no hello.c example in docs/plugins.md"
block docs/plugins.md 'cc -shared -fPIC -fvisibility=hidden $(pkg-config' | sed 's/^sudo //' >"$work/build-hello.sh"
[ -s "$work/build-hello.sh" ] || fail "no out-of-tree build (pkg-config) block in docs/plugins.md"
export PKG_CONFIG_PATH=$(dirname "$pc")
[ "$(pkg-config --variable=pluginsdir vigil-plugin)" = "$p/lib/vigil/plugins" ] ||
  fail "pkg-config's pluginsdir is $(pkg-config --variable=pluginsdir vigil-plugin)"
cflags=$(pkg-config --cflags vigil-plugin)
[ "${cflags% }" = "-I$p/include" ] || fail "pkg-config --cflags vigil-plugin is '$cflags'"
bash -e "$work/build-hello.sh" >"$work/hello.out" 2>&1 ||
  fail "the docs/plugins.md out-of-tree build failed: $(cat "$work/hello.out")"
[ -f "$p/lib/vigil/plugins/hello.so" ] || fail "hello.so did not land in pkg-config's pluginsdir"

# The installed config, runnable here, with the hello source added: the
# installed vigild loads the installed plugins and the one built against the
# installed header, and the installed vigil-tap sees both publish.
runnable_config "$p/etc/vigil/vigil.yaml" "$work/vigil.yaml"
sed -i 's/^sources:$/sources:\n  - { plugin: hello, interval: 200ms, who: installed }/' "$work/vigil.yaml"
"$p/bin/vigild" --check -c "$work/vigil.yaml" >"$work/check.out" 2>&1 ||
  fail "the installed vigild --check refused the runnable config: $(cat "$work/check.out")"
run_daemon "$p/bin/vigild" "$p/bin/vigil-tap" "$work/vigil.yaml" system.stats hello.greeting

# ---- At the configured prefix: no flags --------------------------------------------------

conf_default=$("$p/bin/vigild" --help | sed -n 's/.*the config file (default \(.*\))$/\1/p')
[ "$conf_default" = "$default_config" ] ||
  fail "vigild's default -c is '$conf_default', not the configured $default_config"
case $conf_default in
"$prefix"/*) ;;
*) echo "note: the no-flags run skipped: the config ($conf_default) is outside the prefix ($prefix)," \
  "so one bind mount cannot stand in for the install"
  echo "install: ok (--prefix)"
  exit 0 ;;
esac
if [ "$(id -u)" -ne 0 ] || ! unshare -m true 2>/dev/null; then
  echo "note: the no-flags run skipped: it needs root and unshare -m (a private mount namespace)"
  echo "install: ok (--prefix)"
  exit 0
fi
[ -d "$prefix" ] || fail "the configured prefix $prefix does not exist to bind over"
DESTDIR=$work/root cmake --install "$build" >"$work/install.log" 2>&1 ||
  fail "DESTDIR cmake --install failed: $(cat "$work/install.log")"
grep -q "Warning" "$work/install.log" && fail "an install at the configured prefix warned: $(cat "$work/install.log")"

# Only this namespace sees $work/root$prefix as $prefix. vigild without -c,
# and a config without plugin_dir, use the compiled-in defaults; vigil-bench
# starts $prefix/bin/vigild with $prefix/lib/vigil/plugins.
printf 'bus:\n  publish: ipc://%s/ns-pub\n  subscribe: ipc://%s/ns-sub\nsources: [{plugin: gen, rate: 1}]\n' \
  "$work" "$work" >"$work/no-plugin-dir.yaml"
unshare -m bash -euc '
  mount --bind "$1/root$2" "$2"
  "$2/bin/vigild" --check
  "$2/bin/vigild" --check -c "$1/no-plugin-dir.yaml"
  "$2/bin/vigil-bench" --duration 1s --warmup 200ms --rate 2000 --sink discard --json
' ns "$work" "$prefix" >"$work/ns.out" 2>&1 ||
  fail "at the configured prefix: $(cat "$work/ns.out")"
grep -q '"lost": *0' "$work/ns.out" || fail "the installed vigil-bench: $(cat "$work/ns.out")"
echo "install: ok (--prefix, and no flags at $prefix)"

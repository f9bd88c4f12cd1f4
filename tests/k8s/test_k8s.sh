#!/usr/bin/env bash
# conf/kubernetes/ is valid: every manifest against the Kubernetes schema
# (check.js, kubernetes-models' validate()), and every vigil.yaml its
# ConfigMaps carry passes `vigild --check` with this build's plugins and
# keys made by vigil-keygen (the paths rewritten to a temp folder, nothing
# else). Skips (77) with the reason when node or the npm packages are missing.
# Usage: test_k8s.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
here=$src/tests/k8s
if ! command -v node >/dev/null; then
  echo "SKIP: node is not installed: the Kubernetes manifests were not validated (tools/dev.sh setup)"
  exit 77
fi
if [ ! -d "$here/node_modules/kubernetes-models" ] || [ ! -d "$here/node_modules/yaml" ]; then
  echo "SKIP: $here/node_modules is missing: the Kubernetes manifests were not validated (run tools/dev.sh setup)"
  exit 77
fi
work=$(mktemp -d /tmp/vigil-k8s.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$work/configs"
node "$here/check.js" "$src" "$work/configs" || fail "conf/kubernetes/ does not validate (above)"

# The keys the Secrets would hold (README.md), made as the README makes them.
"$build/vigil-keygen" "$work/agent" >/dev/null 2>&1 || fail "vigil-keygen failed"
"$build/vigil-keygen" "$work/central" >/dev/null 2>&1 || fail "vigil-keygen failed"
mkdir -p "$work/keys-vigil-agent" "$work/keys-vigil-central" "$work/state" "$work/run"
cp "$work/agent/vigil.key" "$work/agent/vigil.pub" "$work/keys-vigil-agent/"
cp "$work/central/vigil.pub" "$work/keys-vigil-agent/central.pub"
cp "$work/central/vigil.key" "$work/central/vigil.pub" "$work/keys-vigil-central/"
echo "$(cat "$work/agent/vigil.pub") k8s-agents" >"$work/keys-vigil-central/authorized_keys"
chmod 0400 "$work"/keys-*/*

n=0
for f in "$work"/configs/*.yaml; do
  [ -e "$f" ] || fail "no ConfigMap with a vigil.yaml in conf/kubernetes/"
  name=$(basename "$f" .yaml)
  [ -d "$work/keys-$name" ] || fail "ConfigMap $name: which keys? (test_k8s.sh knows vigil-agent and vigil-central)"
  # Paths only: the image's plugin folder, the mounted Secret, the volumes,
  # and the node's /sys mounted under /host.
  sed -e "s#/usr/local/lib/vigil/plugins#$build/plugins#g" \
    -e "s#/etc/vigil/keys/#$work/keys-$name/#g" \
    -e "s#/var/lib/vigil#$work/state#g" \
    -e "s#/run/vigil/#$work/run/$name-#g" \
    -e "s#/host/sys/#/sys/#g" "$f" >"$work/$name.yaml"
  "$build/vigild" --check -c "$work/$name.yaml" >"$work/check.out" 2>&1 ||
    fail "vigild --check refused the vigil.yaml of ConfigMap $name (conf/kubernetes/): $(cat "$work/check.out")"
  echo "ConfigMap $name: vigild --check ok"
  n=$((n + 1))
done
echo "conf/kubernetes: ok ($n configs)"

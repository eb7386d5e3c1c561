#!/bin/sh
# Thin launchers for the dev tree: one multicall script behind hard links, one per executable
# name, so that "is this delegate ours?" is the same inode check as in the built suite.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/dist/bin}
py=${PYTHON:-$repo/.venv/bin/python}
mkdir -p "$out"
tmp="$out/.pycni-dev.$$"
cat > "$tmp" <<PY
#!$py -I
import sys
sys.path.insert(0, "$repo")
from cni.multicall import main
main()
PY
chmod 0755 "$tmp"
mv -f "$tmp" "$out/.pycni-dev"
for name in flannel bridge host-local portmap loopback cnitool; do
    ln -f "$out/.pycni-dev" "$out/$name"
done

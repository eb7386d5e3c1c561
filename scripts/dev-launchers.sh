#!/bin/sh
# Thin launchers for the dev tree: one multicall script behind hard links, one per executable
# name, so that "is this delegate ours?" is the same inode check as in the built suite.
# The interpreter runs isolated and without the site module (-IS: no .pth processing, no
# user site; about 6 ms less per call); the path is set explicitly instead: the work tree
# first, then the stdlib, then the directories the site module would add (the venv's
# site-packages; a system Python's dist-packages).
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/dist/bin}
py=${PYTHON:-$repo/.venv/bin/python}
site=$("$py" -I -c 'import os, site; print(repr([p for p in site.getsitepackages() if os.path.isdir(p)]))')
mkdir -p "$out"
tmp="$out/.pycni-dev.$$"
cat > "$tmp" <<PY
#!$py -IS
import sys
sys.path.insert(0, "$repo")
sys.path += $site
from plugins.multicall import main
main()
PY
chmod 0755 "$tmp"
mv -f "$tmp" "$out/.pycni-dev"
for name in flannel bridge host-local portmap loopback cnitool; do
    ln -f "$out/.pycni-dev" "$out/$name"
done

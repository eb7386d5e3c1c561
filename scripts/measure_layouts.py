#!/usr/bin/env python3
"""Build every candidate executable layout and time them (the figures in docs/startup.md).

    .venv/bin/python scripts/measure_layouts.py [--runs N] [--out DIR] [--only NAME,...]

Candidates, each built from build.spec with its PYCNI_LAYOUT / PYCNI_TRIM knobs into
OUT/<name> (default build/measure/, never dist/):

    onefile             one self-unpacking executable per name, PyInstaller's default hooks
    onefile-trim        the same without the unneeded runtime hooks
    onedir              one executable per name sharing one contents directory, default hooks
    onedir-trim         the same, trimmed
    multicall           one executable hard-linked under every name, shared contents, default hooks
    multicall-trim      the same, trimmed
    multicall-trim-pyc  the same with modules as .pyc files instead of the PYZ (the shipped build)

All but the last keep PyInstaller's default PYZ archive.

plus the dev launchers (the venv's interpreter behind hard links) and the bare interpreter
for scale. Prints the build time, size on disk and a markdown table from
conformance/bench/bench_startup.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from plugins.multicall import ENTRY_POINTS  # the venv's editable install (make venv)

REPO = Path(__file__).resolve().parent.parent

# name -> (PYCNI_LAYOUT, PYCNI_TRIM, PYCNI_PYZ)
VARIANTS = {
    "onefile": ("onefile", "0", "1"),
    "onefile-trim": ("onefile", "1", "1"),
    "onedir": ("onedir", "0", "1"),
    "onedir-trim": ("onedir", "1", "1"),
    "multicall": ("multicall", "0", "1"),
    "multicall-trim": ("multicall", "1", "1"),
    "multicall-trim-pyc": ("multicall", "1", "0"),
}


def build(name: str, out: Path) -> tuple[Path, float]:
    """Build variant `name` into out/name; (directory holding `loopback`, build seconds)."""
    layout, trim, pyz = VARIANTS[name]
    root = out / name
    shutil.rmtree(root, ignore_errors=True)
    env = dict(os.environ, PYCNI_LAYOUT=layout, PYCNI_TRIM=trim, PYCNI_PYZ=pyz)
    t0 = time.monotonic()
    subprocess.run(
        [
            sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "ERROR",
            "--distpath", str(root / "dist"), "--workpath", str(root / "work"),
            str(REPO / "build.spec"),
        ],
        env=env,
        check=True,
        cwd=REPO,
    )
    seconds = time.monotonic() - t0
    if layout == "onefile":
        return root / "dist", seconds
    bindir = root / "dist" / "pycni"
    if layout == "multicall":
        for exe in ENTRY_POINTS:
            os.link(bindir / "pycni", bindir / exe)
        (bindir / "pycni").unlink()
    return bindir, seconds


def disk_usage(path: Path) -> int:
    """Bytes used under path, counting each inode once (hard links share)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for p in [path, *path.rglob("*")]:
        st = p.lstat()
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        total += st.st_blocks * 512
    return total


def main() -> int:
    """Build the chosen variants, then run the start-up bench over all of them."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default=os.environ.get("BENCH_RUNS", "40"))
    ap.add_argument("--out", default=str(REPO / "build" / "measure"))
    ap.add_argument("--only", help="comma-separated variant names")
    ap.add_argument("--reuse", action="store_true", help="time the variants already in --out")
    ap.add_argument("--dev", default=str(REPO / "dist" / "dev"), help="dev launcher dir")
    args = ap.parse_args()
    out = Path(args.out)
    names = args.only.split(",") if args.only else list(VARIANTS)
    candidates = []
    for name in names:
        if args.reuse:
            onefile = VARIANTS[name][0] == "onefile"
            bindir = out / name / "dist" / ("" if onefile else "pycni")
        else:
            bindir, seconds = build(name, out)
            print(f"{name}: built in {seconds:.1f} s", file=sys.stderr)
        size = disk_usage(bindir) / 2**20
        print(f"{name}: {size:.0f} MiB on disk", file=sys.stderr)
        candidates.append(f"{name}={bindir}")
    dev = Path(args.dev)
    subprocess.run(["sh", str(REPO / "scripts" / "dev-launchers.sh"), str(dev)], check=True)
    candidates.insert(0, f"dev launchers (venv python)={dev}")
    bench = REPO / "conformance" / "bench" / "bench_startup.py"
    return subprocess.run(
        [sys.executable, str(bench), "--baseline", "--runs", args.runs, *candidates],
        check=False,
    ).returncode


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Build the standalone suite into dist/bin: one executable behind hard links, Python beside it.

    .venv/bin/python scripts/build_standalone.py [--out DIR] [--strict] [--force]

Layout of OUT (default dist/bin), ready to be copied or extracted into /opt/cni/bin:

    OUT/flannel, OUT/bridge, ...   hard links of one PyInstaller bootloader (plugins/multicall.py
                                   dispatches on the name; same inode = "one of ours")
    OUT/pycni-lib/                 the interpreter, libraries and modules (.pyc) they share
    OUT/pycni-lib/BUILD-INFO       version and source fingerprint of this build

The build is skipped when OUT already holds a standalone build of the same sources. It runs
under a lock (concurrent `make build`s wait for each other) in build/standalone/, is smoke-tested
there (every executable answers VERSION), and only then replaces OUT by two renames, so a
test running from OUT meanwhile sees the old build or the new one, never half of either. The
previous build stays in .<name>.old beside OUT until the next build, for processes still
running from it.

--strict fails when a module named in plugins.multicall.ENTRY_POINTS does not exist (a release
must be complete); without it such names are reported and left out of the smoke test.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from cni import __version__  # the venv's editable install (make venv) provides cni/, plugins/
from plugins.multicall import ENTRY_POINTS

REPO = Path(__file__).resolve().parent.parent

CONTENTS_DIR = "pycni-lib"  # must match build.spec
MULTICALL_NAME = "pycni"  # must match build.spec
SOURCE_DIRS = ("cni", "plugins", "ipam", "packaging")
SOURCE_FILES = ("build.spec", "pyproject.toml", "scripts/build_standalone.py")
ELF_MAGIC = b"\x7fELF"


def fingerprint() -> str:
    """sha256 over every source file that goes into the build, plus the toolchain versions."""
    import PyInstaller

    h = hashlib.sha256()
    h.update(
        f"{sys.version} {PyInstaller.__version__} {os.environ.get('PYCNI_LAYOUT', '')}".encode()
    )
    files = [REPO / f for f in SOURCE_FILES]
    for d in SOURCE_DIRS:
        files += (REPO / d).rglob("*.py")
    for f in sorted(set(files)):
        if "__pycache__" in f.parts or not f.is_file():
            continue
        h.update(str(f.relative_to(REPO)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def missing_entry_points() -> list[str]:
    """Names whose module does not exist in the source tree."""
    missing = []
    for name, module in ENTRY_POINTS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


def is_current(out: Path, fp: str) -> bool:
    """True when `out` holds a standalone build (not dev launchers) made from these sources."""
    try:
        info = json.loads((out / CONTENTS_DIR / "BUILD-INFO").read_text())
        inodes = set()
        for name in ENTRY_POINTS:
            path = out / name
            with open(path, "rb") as f:
                if f.read(4) != ELF_MAGIC:
                    return False
            inodes.add(path.stat().st_ino)
    except (OSError, ValueError):
        return False
    return info.get("fingerprint") == fp and len(inodes) == 1


def pyinstaller(work: Path) -> Path:
    """Run PyInstaller on build.spec; the directory holding the executable and contents."""
    dist = work / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    env = dict(os.environ)
    for knob in ("PYCNI_LAYOUT", "PYCNI_TRIM", "PYCNI_PYZ", "PYCNI_IMPORTTIME"):
        env.pop(knob, None)  # the shipped build, whatever the caller's environment says
    subprocess.run(
        [
            sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
            "--distpath", str(dist), "--workpath", str(work / "work"), str(REPO / "build.spec"),
        ],
        check=True,
        cwd=REPO,
        env=env,
    )
    return dist / "pycni"


def assemble(built: Path, stage: Path, fp: str) -> None:
    """Lay out `stage`: the contents dir and one hard link of the executable per name."""
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    shutil.move(built / CONTENTS_DIR, stage / CONTENTS_DIR)
    names = list(ENTRY_POINTS)
    shutil.copy2(built / MULTICALL_NAME, stage / names[0])
    for name in names[1:]:
        os.link(stage / names[0], stage / name)
    info = {
        "version": __version__,
        "fingerprint": fp,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "names": sorted(ENTRY_POINTS),
    }
    (stage / CONTENTS_DIR / "BUILD-INFO").write_text(json.dumps(info, indent=2) + "\n")


def is_plugin(name: str) -> bool:
    """True when the entry point is a CNI plugin (its module has PLUGIN), not a tool."""
    import importlib

    return hasattr(importlib.import_module(ENTRY_POINTS[name]), "PLUGIN")


def smoke_test(stage: Path, skip: list[str]) -> None:
    """With an empty environment (but PYCNI_WORKER=0), every plugin (but `skip`) answers VERSION
    with JSON and every
    tool answers --help."""
    for name in ENTRY_POINTS:
        if name in skip:
            continue
        plugin = is_plugin(name)
        proc = subprocess.run(
            [str(stage / name)] + ([] if plugin else ["--help"]),
            input=b'{"cniVersion":"1.1.0"}',
            env={"CNI_COMMAND": "VERSION", "PYCNI_WORKER": "0"}
            if plugin
            else {},  # in-process: no worker for a staging dir
            capture_output=True,
            cwd="/",
            timeout=60,
            check=False,
        )
        ok = proc.returncode == 0
        if plugin:
            try:
                reply = json.loads(proc.stdout)
            except ValueError:
                reply = None
            ok = ok and isinstance(reply, dict) and "supportedVersions" in reply
        if not ok:
            raise SystemExit(
                f"smoke test failed: {name} exited {proc.returncode}: "
                f"{proc.stdout.decode(errors='replace')}{proc.stderr.decode(errors='replace')}"
            )


def install(stage: Path, out: Path) -> None:
    """Replace `out` with `stage` by renames; keep the previous build in .<name>.old."""
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.rename(out, old)
    os.rename(stage, out)


def main() -> int:
    """Build (unless current), smoke-test, and put the standalone suite in place."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "dist" / "bin"))
    ap.add_argument("--work", default=str(REPO / "build" / "standalone"))
    ap.add_argument("--strict", action="store_true", help="every entry point must exist")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)

    missing = missing_entry_points()
    if missing:
        msg = f"entry points without a module yet: {', '.join(missing)}"
        if args.strict:
            raise SystemExit(f"build_standalone: {msg}")
        print(f"build_standalone: warning: {msg}", file=sys.stderr)

    with open(work / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fp = fingerprint()
        if not args.force and is_current(out, fp):
            print(f"build_standalone: {out} is up to date")
            return 0
        built = pyinstaller(work)
        stage = out.parent / f".{out.name}.new"
        assemble(built, stage, fp)
        smoke_test(stage, missing)
        install(stage, out)
    print(f"build_standalone: {out}: {', '.join(ENTRY_POINTS)} -> {CONTENTS_DIR}/ ({__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

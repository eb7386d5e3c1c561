#!/usr/bin/env python3
"""Release artifacts from a standalone build: the tarball for /opt/cni/bin and its checksum.

    .venv/bin/python scripts/make_release.py [--bin dist/bin] [--out dist]

Writes, like the reference's cni-plugins-linux-<arch>-v<version>.tgz:

    OUT/pycni-plugins-linux-<arch>-v<version>.tgz         extract with -C /opt/cni/bin
    OUT/pycni-plugins-linux-<arch>-v<version>.tgz.sha256  "<hex>  <file name>" (sha256sum -c)
    OUT/10-flannel.conflist                               sample for /etc/cni/net.d

The tarball also carries the resident worker's systemd units in ./pycni-lib/systemd/
(pycni-worker.socket, pycni-worker.service; `make install` installs and enables them).

Tarball layout: ./pycni-lib/... first, then ./<name> for every executable, the first as a file
and the others as hard links to it (GNU tar, busybox tar and Python's tarfile recreate them),
so that an extraction over a running install puts the shared contents in place before any
executable that needs them. Owner root:root, modes as built, mtimes from SOURCE_DATE_EPOCH
(default: the last commit's time), sorted, gzip without a timestamp: the same build gives the
same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from cni import __version__  # the venv's editable install (make venv) provides cni/, plugins/
from plugins.multicall import ENTRY_POINTS

REPO = Path(__file__).resolve().parent.parent

CONTENTS_DIR = "pycni-lib"
# The resident worker's systemd units, carried in the tarball under pycni-lib/systemd/.
UNITS_DIR = REPO / "packaging" / "systemd"
UNITS_ARCDIR = "systemd"
UNITS = ("pycni-worker.service", "pycni-worker.socket")
GO_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def tarball_name(version: str = __version__, machine: str | None = None) -> str:
    """pycni-plugins-linux-<go arch>-v<version>.tgz."""
    m = machine or platform.machine()
    return f"pycni-plugins-linux-{GO_ARCH.get(m, m)}-v{version}.tgz"


def source_epoch() -> int:
    """SOURCE_DATE_EPOCH, else the last commit's time, else 0."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "log", "-1", "--format=%ct"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        return int(out)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 0


def check_build(bindir: Path) -> None:
    """Refuse anything but a complete standalone build of this version."""
    info_path = bindir / CONTENTS_DIR / "BUILD-INFO"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{bindir}: not a standalone build ({e}); run `make build`") from None
    if info.get("version") != __version__ or set(info.get("names", ())) != set(ENTRY_POINTS):
        raise SystemExit(f"{info_path}: built for {info}, not {__version__} {sorted(ENTRY_POINTS)}")
    inodes = {(bindir / n).stat().st_ino for n in ENTRY_POINTS}
    if len(inodes) != 1:
        raise SystemExit(f"{bindir}: the executables are not hard links of one file")


def members(bindir: Path) -> list[tuple[Path, str]]:
    """(file, name in the archive) in archive order: the contents directory, the systemd units
    (in its `systemd/`, for `make install` or an administrator to install), the executables."""
    lib = bindir / CONTENTS_DIR
    paths = [Path(CONTENTS_DIR)]
    paths += sorted(p.relative_to(bindir) for p in lib.rglob("*"))
    entries = [(bindir / rel, f"./{rel}") for rel in paths]
    entries.append((UNITS_DIR, f"./{CONTENTS_DIR}/{UNITS_ARCDIR}"))
    entries += [(UNITS_DIR / n, f"./{CONTENTS_DIR}/{UNITS_ARCDIR}/{n}") for n in UNITS]
    entries += [(bindir / n, f"./{n}") for n in sorted(ENTRY_POINTS)]
    return entries


def write_tarball(bindir: Path, dest: Path, epoch: int) -> None:
    """Write the reproducible .tgz of bindir to dest."""

    def normalise(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        ti.mtime = epoch
        if f"{CONTENTS_DIR}/{UNITS_ARCDIR}" in ti.name:  # modes as checked out vary with umask
            ti.mode = 0o755 if ti.isdir() else 0o644
        return ti

    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0
    ) as gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, arcname in members(bindir):
            # tarfile stores a path it has seen before under another name (same inode) as a
            # hard link to the first one.
            tar.add(path, arcname=arcname, recursive=False, filter=normalise)
    os.replace(tmp, dest)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    """Check the build, write tarball, checksum and sample conflist; print the tarball path."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(REPO / "dist" / "bin"))
    ap.add_argument("--out", default=str(REPO / "dist"))
    args = ap.parse_args()
    bindir, out = Path(args.bin), Path(args.out)
    check_build(bindir)
    out.mkdir(parents=True, exist_ok=True)
    dest = out / tarball_name()
    write_tarball(bindir, dest, source_epoch())
    (out / f"{dest.name}.sha256").write_text(f"{sha256_file(dest)}  {dest.name}\n")
    shutil.copyfile(REPO / "packaging" / "10-flannel.conflist", out / "10-flannel.conflist")
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

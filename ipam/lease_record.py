"""What we note about a lease beside it, so that its death can later be proven.

At ADD, host-local notes for each lease it writes: this boot's ID, the CNI_NETNS path, the
(device, inode) that path named then, and the inode of the lease file itself. The note lives in
the owner index (ipam/index.py), never in the lease file, whose bytes stay the reference's.

Where the host's facts are read from is a `Host`: the boot ID file and the root under which
`/proc/...` namespace paths are looked up. Tests point both elsewhere through the environment
(`PYCNI_BOOT_ID_FILE`, `PYCNI_PROC_ROOT`) to simulate a reboot; nothing else should.
"""

from __future__ import annotations

import os
from typing import NamedTuple

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
PROC_ROOT = "/proc"
_TAG = "L1"  # first field of a note in an index line; a new format gets a new tag

_boot_ids: dict[str, str] = {}
# Percent-escapes for the characters an index line cannot hold (dataclasses and urllib are
# left out: host-local ADD imports this module, and their imports cost more than its work).
_ESCAPES = {"%": "%25", "\t": "%09", "\n": "%0A", "\r": "%0D"}
_UNESCAPES = {v[1:]: k for k, v in _ESCAPES.items()}


class Host(NamedTuple):
    """Where the running host's facts come from (the real ones unless a test says otherwise)."""

    boot_id_file: str = BOOT_ID_FILE
    proc_root: str = PROC_ROOT

    @classmethod
    def current(cls) -> Host:
        """The host as the environment describes it (`PYCNI_BOOT_ID_FILE`, `PYCNI_PROC_ROOT`,
        test hooks), else the real /proc files."""
        return cls(
            os.environ.get("PYCNI_BOOT_ID_FILE") or BOOT_ID_FILE,
            os.environ.get("PYCNI_PROC_ROOT") or PROC_ROOT,
        )

    def boot_id(self) -> str:
        """This boot's ID ("" when unreadable). Read once per process and file."""
        value = _boot_ids.get(self.boot_id_file)
        if value is None:
            try:
                with open(self.boot_id_file, "rb") as f:
                    value = f.read().decode("ascii", "replace").strip()
            except OSError:
                value = ""
            _boot_ids[self.boot_id_file] = value
        return value

    def resolve(self, path: str) -> str:
        """`path` with a leading `/proc/` moved under this host's proc root."""
        if self.proc_root != PROC_ROOT and (path == PROC_ROOT or path.startswith(PROC_ROOT + "/")):
            return self.proc_root + path[len(PROC_ROOT) :]
        return path


class LeaseRecord(NamedTuple):
    """The note kept beside one lease: `boot` ID at ADD, the lease file's identity `lease_file`
    (`<inode>.<ctime ns>`, "" when unknown), the CNI_NETNS path `netns` ("" when none could be
    examined) and the (`ns_dev`, `ns_ino`) it named at ADD."""

    boot: str
    lease_file: str
    netns: str
    ns_dev: int
    ns_ino: int


def netns_identity(netns: str, host: Host | None = None) -> tuple[str, int, int]:
    """(path, st_dev, st_ino) of the namespace file at `netns`, or ("", 0, 0) when there is no
    path or it cannot be examined: a lease is then never judged by its namespace."""
    if not netns:
        return "", 0, 0
    try:
        st = os.stat((host or Host.current()).resolve(netns))
    except (OSError, ValueError):
        return "", 0, 0
    return netns, st.st_dev, st.st_ino


def encode(rec: LeaseRecord) -> str:
    """The record as tab-separated index fields (`%`, tab, CR and LF of the path
    percent-escaped: an index line holds none of them)."""
    path = "".join(_ESCAPES.get(c, c) for c in rec.netns)
    return f"{_TAG}\t{rec.boot}\t{rec.lease_file}\t{rec.ns_dev}\t{rec.ns_ino}\t{path}"


def _unescape(text: str) -> str:
    head, *rest = text.split("%")
    return head + "".join(_UNESCAPES.get(p[:2], "%" + p[:2]) + p[2:] for p in rest)


def decode(fields: list[str]) -> LeaseRecord | None:
    """The record in `fields` (as written by `encode`), or None when they are not one."""
    if len(fields) != 6 or fields[0] != _TAG:
        return None
    try:
        return LeaseRecord(
            fields[1], fields[2], _unescape(fields[5]), int(fields[3]), int(fields[4])
        )
    except ValueError:
        return None

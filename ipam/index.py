"""The owner index: which lease files a container holds, without reading the whole directory.

The lease files stay the source of truth (the reference plugin and operators read and write
them); this index is a cache derived from them, kept under `<network dir>/.pycni-index/`:

* `00` .. `ff`: buckets keyed by a CRC of the container ID; a line per lease file,
  `<file name>\\t<container ID>\\t<ifname>` (or `<file name>\\t<container ID>` for a legacy
  lease that holds the ID only), followed, for a lease we wrote, by its liveness record (boot
  ID, namespace path and inode: ipam/lease_record.py). A rebuild keeps the record of every lease
  whose file still has the same owner and inode, so records survive reboots and changes made
  by others; a lease without one (written by the reference) is never judged dead.
* `state`: when the index was last known to match the directory.

Trust rule. After every change we make (under the store lock) the network directory's mtime
is set to a *sentinel*, one second in the past, and the directory's (device, inode, mtime,
ctime) plus the boot ID are written to `state`. Any later change to the directory by anyone
(the reference plugin creating or deleting a lease, an operator's `rm`) makes the kernel set
mtime and ctime to "now", which can never equal the sentinel; a reboot changes the boot ID.
So `state` matching the directory means nobody but us changed it since we last wrote the
index, and the index can be used; otherwise it is rebuilt from the lease files. Every entry
used is also checked against the lease file it names before being acted on, and any
disagreement triggers a rebuild. A crash at any point leaves `state` not matching (we change
the directory before we write `state`), so the next call rebuilds.

The reference walks this directory too (recursively, reading every file and deleting those
whose content is exactly `<id>\\r\\n<ifname>` or `<id>`): no file here ever has such content
(bucket lines contain tabs; `state` starts with `{`; bucket files are never left empty).
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Iterable
from typing import NamedTuple

from cni import fileutil
from ipam.lease_record import Host, LeaseRecord, decode, encode

INDEX_DIR = ".pycni-index"
STATE = "state"
FORMAT = 2  # 2: lines may carry a liveness record (older versions rebuild)
_SENTINEL_AGE_NS = 1_000_000_000
_WS = " \t\n\r\v\f"


class Entry(NamedTuple):
    """One lease file: its `name` (normally the IP), owner `cid` and `ifname` (None: legacy)."""

    name: str
    cid: str
    ifname: str | None


def boot_id() -> str:
    """This boot's ID (changes at every reboot, so an index never survives a power loss)."""
    return Host.current().boot_id()


def owner_of(content: bytes) -> tuple[str, str | None] | None:
    """The owner recorded in lease file content: (container ID, ifname), (ID, None) for the
    legacy ID-only form, or None when no container could ever match it (empty, or whitespace
    inside the ID or ifname, which valid IDs and interface names never contain)."""
    text = content.decode("utf-8", "surrogateescape").strip(_WS + "\x85\xa0")
    if not text:
        return None
    cid, sep, ifname = text.partition("\r\n")
    if any(c in _WS for c in cid):
        return None
    if not sep:
        return cid, None
    if not ifname or any(c in _WS for c in ifname):
        return None
    return cid, ifname


def bucket_key(cid: str) -> str:
    """The bucket file name for container ID `cid`: two hex digits."""
    return f"{zlib.crc32(cid.encode('utf-8', 'surrogateescape')) & 0xFF:02x}"


def _is_bucket(name: str) -> bool:
    return len(name) == 2 and all(c in "0123456789abcdef" for c in name)


def temp_path(directory: str, name: str) -> str:
    """A temporary file name for `name`: pid-tagged for the dead-writer sweep, starts with a dot
    (never a lease)."""
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}")


class OwnerIndex:
    """The on-disk owner index of one network directory, loaded bucket by bucket.

    Not thread-safe and only valid while the caller holds the store lock.
    """

    def __init__(self, netdir: str) -> None:
        self.netdir = netdir
        self.root = os.path.join(netdir, INDEX_DIR)
        self._buckets: dict[str, list[Entry]] = {}
        self._dirty: set[str] = set()
        self._replaced = False
        self._records: dict[str, tuple[Entry, LeaseRecord]] = {}  # by lease name

    # ------------------------------------------------------------------ trust

    def _dir_identity(self) -> dict[str, int | str]:
        st = os.stat(self.netdir)
        return {
            "v": FORMAT,
            "boot": boot_id(),
            "dev": st.st_dev,
            "ino": st.st_ino,
            "mtime": st.st_mtime_ns,
            "ctime": st.st_ctime_ns,
        }

    def is_current(self) -> bool:
        """True when nobody but us changed the network directory since the index was written."""
        try:
            with open(os.path.join(self.root, STATE), "rb") as f:
                recorded = json.loads(f.read())
            return bool(recorded) and recorded == self._dir_identity()
        except (OSError, ValueError):
            return False

    def invalidate(self) -> None:
        """Forget that the index matches the directory (the next call rebuilds)."""
        try:
            os.unlink(os.path.join(self.root, STATE))
        except FileNotFoundError:
            pass

    def _seal(self) -> None:
        """Set the directory's sentinel mtime and record the directory's identity in `state`."""
        st = os.stat(self.netdir)
        os.utime(self.netdir, ns=(st.st_atime_ns, time.time_ns() - _SENTINEL_AGE_NS))
        ident = json.dumps(self._dir_identity(), sort_keys=True).encode()
        # Not fsynced, like every file of the index: derived data, rebuilt when in doubt.
        fileutil.atomic_write(os.path.join(self.root, STATE), ident, durable=False)

    # ------------------------------------------------------------------ buckets

    def _bucket(self, key: str) -> list[Entry]:
        entries = self._buckets.get(key)
        if entries is not None:
            return entries
        entries = []
        if not self._replaced:
            try:
                with open(os.path.join(self.root, key), "rb") as f:
                    data = f.read().decode("utf-8", "surrogateescape")
            except FileNotFoundError:
                data = ""
            for line in data.split("\n"):
                parts = line.split("\t")
                if len(parts) >= 3:
                    e = Entry(parts[0], parts[1], parts[2])
                    entries.append(e)
                    rec = decode(parts[3:])
                    if rec is not None:
                        self._records[e.name] = (e, rec)
                elif len(parts) == 2:
                    entries.append(Entry(parts[0], parts[1], None))
        self._buckets[key] = entries
        return entries

    def entries(self) -> list[Entry]:
        """Every indexed lease (reads all buckets: O(leases), for whole-network queries)."""
        out: list[Entry] = []
        for i in range(256):
            out.extend(self._bucket(f"{i:02x}"))
        return out

    def record(self, entry: Entry) -> LeaseRecord | None:
        """The liveness record kept for `entry` (its bucket must have been read), or None."""
        kept = self._records.get(entry.name)
        return kept[1] if kept is not None and kept[0] == entry else None

    def records(self) -> dict[str, tuple[Entry, LeaseRecord]]:
        """Every liveness record with the lease it was written for, by lease name."""
        self.entries()
        return dict(self._records)

    def lookup(self, cid: str) -> list[Entry]:
        """Every indexed lease whose owner has container ID `cid` (any ifname, legacy too)."""
        return [e for e in self._bucket(bucket_key(cid)) if e.cid == cid]

    def add(self, entry: Entry, record: LeaseRecord | None = None) -> None:
        """Record a lease file that was just created (with its liveness record, if any)."""
        key = bucket_key(entry.cid)
        self._bucket(key).append(entry)
        self._dirty.add(key)
        if record is not None:
            self._records[entry.name] = (entry, record)
        else:
            self._records.pop(entry.name, None)

    def discard(self, entry: Entry) -> None:
        """Forget a lease file that was just removed."""
        key = bucket_key(entry.cid)
        bucket = self._bucket(key)
        if entry in bucket:
            bucket.remove(entry)
            self._dirty.add(key)
        kept = self._records.get(entry.name)
        if kept is not None and kept[0] == entry:
            del self._records[entry.name]

    def replace_all(
        self, entries: Iterable[Entry], records: dict[str, LeaseRecord] | None = None
    ) -> None:
        """Make the index exactly `entries` (a full scan of the directory), keeping the
        liveness records given by lease name (each must belong to that entry's lease)."""
        self._buckets = {}
        self._records = {}
        self._replaced = True
        for e in entries:
            if any(c in "\t\n" for c in e.name):
                continue  # cannot be written as a line; never a lease the reference makes
            self._buckets.setdefault(bucket_key(e.cid), []).append(e)
            rec = (records or {}).get(e.name)
            if rec is not None:
                self._records[e.name] = (e, rec)
        self._dirty = set(self._buckets)

    # ------------------------------------------------------------------ persistence

    def commit(self) -> None:
        """Write the changed buckets, then seal (sentinel mtime + `state`). Raises OSError."""
        fileutil.ensure_dir(self.root, 0o700)
        if self._replaced:
            for name in os.listdir(self.root):
                # Dot files are temporary files, possibly another ADD's lease written before it
                # took the lock; those of dead writers are swept when the store is opened.
                if _is_bucket(name) and name not in self._buckets:
                    self._unlink(name)
        for key in sorted(self._dirty):
            entries = self._buckets.get(key, [])
            if not entries:
                self._unlink(key)
                continue
            lines = [self._line(e) for e in entries]
            fileutil.atomic_write(
                os.path.join(self.root, key),
                "".join(lines).encode("utf-8", "surrogateescape"),
                durable=False,
            )
        self._dirty.clear()
        self._seal()

    def _line(self, e: Entry) -> str:
        if e.ifname is None:
            return f"{e.name}\t{e.cid}\n"
        rec = self.record(e)
        if rec is None:
            return f"{e.name}\t{e.cid}\t{e.ifname}\n"
        return f"{e.name}\t{e.cid}\t{e.ifname}\t{encode(rec)}\n"

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(os.path.join(self.root, name))
        except FileNotFoundError:
            pass

"""The disk store: `<dataDir>/<network>/` in the reference's exact layout
(docs/reference-behaviour.md §1.5).

* `<ip>`: one lease file per address, content `<containerID>\\r\\n<ifname>`, mode 0600.
* `last_reserved_ip.<range set index>`: the last address reserved in that set, no newline.
* `lock`: empty; every operation holds an exclusive flock(2) on it, exactly as the reference
  does, so both implementations can work on one directory at the same time.

Lease files are never visible half-written: the content is written to a temporary file,
fdatasync'ed, and then hard-linked to `<ip>` (ipam/lease_file.py). link(2) fails if `<ip>`
exists, which keeps the reference's O_EXCL rule: two allocators can never both win one address.

Finding a container's leases goes through the owner index (ipam/index.py) instead of reading
every file, so ADD, DEL and CHECK cost the same with 10 or 60,000 leases.
"""

from __future__ import annotations

import fcntl
import os
import sys

from cni import fileutil
from cni.errors import ERR_IO_FAILURE, CNIError, one_line, os_error_text
from cni.validate import safe_file_component
from ipam.addr import Addr, parse
from ipam.index import INDEX_DIR, Entry, OwnerIndex, owner_of
from ipam.lease_file import (
    LAST_RESERVED,
    LOCK_FILE,
    LeaseTemps,
    is_lease_name,
    lease_content,
    read_small,
)
from ipam.lease_record import Host, LeaseRecord


def _io_error(what: str, err: OSError) -> CNIError:
    return CNIError(ERR_IO_FAILURE, one_line(f"{what}: {os_error_text(err)}"))


class Store:
    """One network's lease directory, locked for the lifetime of the object.

    Use as a context manager: `with Store.open(data_dir, network) as store: ...`. On leaving,
    the owner index is written and sealed when the operation ended normally or with a CNIError
    (the in-memory index then mirrors the directory); after any other exception it is
    invalidated, so the next operation rebuilds it from the lease files.
    """

    def __init__(self, netdir: str, lock_fd: int | None) -> None:
        self.dir = netdir
        self._lock_fd = lock_fd
        self.index = OwnerIndex(netdir)
        self._index_checked = False
        self._changed = False
        self._temps = LeaseTemps(os.path.join(netdir, INDEX_DIR))

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        data_dir: str,
        network: str,
        *,
        create: bool = True,
        lease: tuple[str, str, int] | None = None,
    ) -> Store | None:
        """Create `<data_dir>/<network>` (mode 0755) and its lock file, and take the lock.

        With `create=False` a missing directory gives None instead of being created. With
        `lease=(containerID, ifname, n)`, the temporary files of `n` leases of that attachment
        are written and synced before the lock is taken, so concurrent ADDs do not wait for
        each other's fdatasync. Raises CNIError 5 naming the path when the directory or lock
        cannot be made or locked.
        """
        safe_file_component(network, "network name")
        netdir = os.path.join(data_dir, network)
        if not create and not os.path.isdir(netdir):
            return None
        try:
            fileutil.ensure_dir(netdir, 0o755)
        except OSError as e:
            raise _io_error(f'cannot use data directory "{data_dir}": mkdir {netdir}', e) from None
        lock_path = os.path.join(netdir, LOCK_FILE)
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_RDONLY | os.O_CLOEXEC, 0o750)
        except OSError as e:
            raise _io_error(f"cannot open lock file: open {lock_path}", e) from None
        store = cls(netdir, fd)
        if lease is not None:
            try:
                store._temps.prewrite(lease_content(lease[0], lease[1]), lease[2])
            except OSError as e:
                os.close(fd)
                raise _io_error(f"cannot write a lease in {netdir}", e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            store._temps.drop()
            os.close(fd)
            raise _io_error(f"cannot lock {lock_path}", e) from None
        # Under the lock no live writer owns a temp of ours: what is left is a killed one's
        # (~260 entries at most: the buckets, `state`, temp files).
        fileutil.sweep_dead_temps(os.path.join(netdir, INDEX_DIR))
        return store

    @classmethod
    def peek(cls, data_dir: str, network: str) -> Store | None:
        """An unlocked, read-only view of `<data_dir>/<network>` (None when it does not exist),
        for queries that need no consistency with concurrent writers (STATUS)."""
        safe_file_component(network, "network name")
        netdir = os.path.join(data_dir, network)
        return cls(netdir, None) if os.path.isdir(netdir) else None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._temps.drop()
            if self._changed:
                if exc_type is None or issubclass(exc_type, CNIError):
                    try:
                        self.index.commit()
                    except OSError:
                        self.index.invalidate()
                else:
                    self.index.invalidate()
        except OSError:
            pass
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock

    # ------------------------------------------------------------------ index

    def scan(self) -> list[tuple[str, bytes | None]]:
        """Every possible lease file at the top of the directory with its content (None when
        it is not a readable regular file). O(number of files): used only to rebuild and for GC."""
        out: list[tuple[str, bytes | None]] = []
        try:
            it = os.scandir(self.dir)
        except OSError as e:
            raise _io_error(f"cannot read {self.dir}", e) from None
        with it:
            for entry in it:
                name = entry.name
                if not is_lease_name(name):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False) or entry.is_symlink():
                        continue
                except OSError:
                    continue
                out.append((name, read_small(os.path.join(self.dir, name))))
        return out

    def rebuild_index(self, scanned: list[tuple[str, bytes | None]] | None = None) -> None:
        """Rebuild the owner index from the lease files (or from an existing `scan()`).

        Liveness records are kept for the leases whose file still has the owner and the inode
        the record was written for; any other lease loses its record."""
        old = self.index.records()
        if scanned is None:
            scanned = self.scan()
        entries = []
        records: dict[str, LeaseRecord] = {}
        for name, content in scanned:
            owner = owner_of(content) if content is not None else None
            if owner is not None:
                e = Entry(name, owner[0], owner[1])
                entries.append(e)
                kept = old.get(name)
                if (
                    kept is not None
                    and kept[0] == e
                    and kept[1].lease_file
                    and self._file_id(name) == kept[1].lease_file
                ):
                    records[name] = kept[1]
        self.index.replace_all(entries, records)
        self._index_checked = True
        self._changed = True

    def _ensure_index(self) -> None:
        if not self._index_checked:
            if not self.index.is_current():
                self.rebuild_index()
            self._index_checked = True

    def _file_id(self, name: str) -> str:
        """`<inode>.<ctime ns>` of file `name` ("" when it cannot be examined)."""
        try:
            st = os.lstat(os.path.join(self.dir, name))
        except OSError:
            return ""
        return f"{st.st_ino}.{st.st_ctime_ns}"

    def _read_owner(self, name: str) -> tuple[str, str | None] | None:
        content = read_small(os.path.join(self.dir, name))
        return owner_of(content) if content is not None else None

    def _leases_of(self, cid: str) -> list[Entry]:
        """The lease files owned by container ID `cid`, each checked against its file."""
        self._ensure_index()
        entries = self.index.lookup(cid)
        for e in entries:
            if self._read_owner(e.name) != (e.cid, e.ifname):
                self.rebuild_index()  # someone changed a file in place: trust the files
                return self.index.lookup(cid)
        return entries

    # ------------------------------------------------------------------ queries

    def owned(self, container_id: str, ifname: str) -> list[Addr]:
        """The reference's GetByID: addresses of every lease held by (ID, ifname) or by the ID
        alone (legacy content), in file-name order; names that are not IPs are left out."""
        cid = container_id.strip()
        out = []
        for e in sorted(self._leases_of(cid)):
            if e.ifname is None or e.ifname == ifname:
                a = parse(e.name)
                if a is not None:
                    out.append(a)
        return out

    def has_owner(self, container_id: str, ifname: str) -> bool:
        """The reference's FindByID: True when a lease holds `<ID>\\r\\n<ifname>` or just `<ID>`."""
        cid = container_id.strip()
        return any(e.ifname is None or e.ifname == ifname for e in self._leases_of(cid))

    def holder(self, name: str) -> tuple[str, str | None] | None:
        """The owner recorded in lease file `name`, or None (missing or unmatchable)."""
        return self._read_owner(name)

    def leases(self) -> list[tuple[Entry, LeaseRecord | None]]:
        """Every lease with an owner, with its liveness record (None: none kept). Reads the
        whole index (rebuilt first when it does not match the directory): O(leases)."""
        self._ensure_index()
        return [(e, self.index.record(e)) for e in self.index.entries()]

    def still_holds(self, e: Entry, lease_file: str) -> bool:
        """True when lease file `e.name` is still the file `lease_file` (LeaseRecord.lease_file)
        and holds e's owner."""
        return (
            bool(lease_file)
            and self._file_id(e.name) == lease_file
            and self._read_owner(e.name) == (e.cid, e.ifname)
        )

    def free(self, e: Entry) -> bool:
        """Remove lease `e` (file and index entry); False when the file could not be removed."""
        return self._remove(e)

    def exists(self, name: str) -> bool:
        """True when a directory entry `name` exists (a lease, whatever its content)."""
        try:
            os.lstat(os.path.join(self.dir, name))
        except FileNotFoundError:
            return False
        except OSError:
            return True
        return True

    def names(self) -> set[str]:
        """Every name in the directory (one listdir): the taken addresses in text form."""
        try:
            return set(os.listdir(self.dir))
        except OSError as e:
            raise _io_error(f"cannot read {self.dir}", e) from None

    def last_reserved(self, range_id: int) -> Addr | None:
        """The address in `last_reserved_ip.<range_id>`, parsed strictly (exactly an IP, no
        newline); None when missing or unparsable. Other read errors are logged to stderr."""
        path = os.path.join(self.dir, f"{LAST_RESERVED}{range_id}")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            sys.stderr.write(
                f"Error retrieving last reserved ip: read {path}: {os_error_text(e)}\n"
            )
            return None
        try:
            return parse(data.decode("ascii"))
        except UnicodeDecodeError:
            return None

    # ------------------------------------------------------------------ changes

    def reserve(
        self,
        name: str,
        container_id: str,
        ifname: str,
        netns: tuple[str, int, int] | None = None,
    ) -> bool:
        """Create lease file `name` for (ID, ifname) if it does not exist; False if it does.

        Content `<ID trimmed>\\r\\n<ifname>`, mode 0600; never visible half-written. With
        `netns` (lease_record.netns_identity of CNI_NETNS), the index also keeps this boot's
        ID and that namespace beside the lease, so its death can later be proven.
        """
        cid = container_id.strip()
        content = lease_content(container_id, ifname)
        self._ensure_index()
        try:
            tmp = self._temps.prepare(content)
            os.link(tmp, os.path.join(self.dir, name))
        except FileExistsError:
            return False
        except OSError as e:
            raise _io_error(f"cannot create lease {os.path.join(self.dir, name)}", e) from None
        self._changed = True
        self._temps.consume()
        record = None
        if netns is not None:
            # Identified by inode and ctime, taken after the unlink above (which sets ctime):
            # an inode number alone is soon reused by the next lease file.
            record = LeaseRecord(Host.current().boot_id(), self._file_id(name), *netns)
        self.index.add(Entry(name, cid, ifname), record)
        return True

    def set_last_reserved(self, range_id: int, name: str) -> None:
        """Replace `last_reserved_ip.<range_id>` with `name` atomically (mode 0600)."""
        root = os.path.join(self.dir, INDEX_DIR)
        target = os.path.join(self.dir, f"{LAST_RESERVED}{range_id}")
        try:
            fileutil.ensure_dir(root, 0o700)
            # A hint, not fsynced; its temp file lives in the index directory.
            fileutil.atomic_write(target, name.encode(), temp_dir=root, durable=False)
        except OSError as e:
            raise _io_error(f"cannot write {target}", e) from None
        self._changed = True

    def _remove(self, e: Entry) -> bool:
        try:
            os.unlink(os.path.join(self.dir, e.name))
        except FileNotFoundError:
            pass
        except OSError:
            return False
        self._changed = True
        self.index.discard(e)
        return True

    def unreserve(self, name: str, container_id: str, ifname: str) -> None:
        """Remove lease `name` that this operation reserved for (ID, ifname) (a rollback)."""
        self._remove(Entry(name, container_id.strip(), ifname))

    def release_owner(self, container_id: str, ifname: str) -> list[str]:
        """The reference's ReleaseByID: remove every lease holding `<ID>\\r\\n<ifname>`; when
        there is none, every lease holding just `<ID>` (legacy). Returns the names removed.
        Removal failures are skipped, as in the reference."""
        cid = container_id.strip()
        leases = self._leases_of(cid)
        match = [e for e in leases if e.ifname == ifname]
        if not match:
            match = [e for e in leases if e.ifname is None]
        return [e.name for e in match if self._remove(e)]

    def remove_leases(self, names: list[str]) -> list[str]:
        """Remove the given lease files (GC); returns error texts for the ones that failed."""
        errors = []
        for name in names:
            try:
                os.unlink(os.path.join(self.dir, name))
                self._changed = True
            except FileNotFoundError:
                pass
            except OSError as e:
                errors.append(f"failed to release {name}: {os_error_text(e)}")
        return errors


"""Lease liveness: which leases of a network can be proven to belong to no pod any more.

Every lease host-local writes gets a record in the owner index (ipam/lease_record.py): the
boot ID, the CNI_NETNS path and the namespace inode at ADD. A lease is

* `dead` when its record was written in an earlier boot (every namespace of that boot is
  gone), or its namespace path no longer exists, or now names another namespace;
* `live` when its namespace path still names the namespace it named at ADD;
* `unknown` otherwise: no record (a lease written by the reference plugin or by an older
  pycni), no namespace recorded, or a path that cannot be examined.

Only `dead` leases are ever freed, and only by `reclaim`, which takes the store's lock and
checks each lease again (same owner, same lease file, still dead) right before freeing it.
`cnitool doctor` uses `lease_states` and `reclaim`; host-local uses `reclaim_in` on its own
locked store when a range set is exhausted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ipam.addr import parse
from ipam.index import Entry
from ipam.lease_record import Host, LeaseRecord
from ipam.store import Store

LIVE = "live"
DEAD = "dead"
UNKNOWN = "unknown"

EARLIER_BOOT = "earlier boot"
NETNS_GONE = "namespace gone"
NETNS_REPLACED = "namespace path now names another namespace"
NO_RECORD = "no record (reference lease)"
NO_NETNS = "no namespace recorded at ADD"
NETNS_PRESENT = "namespace present"


@dataclass(frozen=True)
class LeaseState:
    """One lease of a network: address `ip` (the lease file name), owner `container_id` and
    `ifname` (None for a legacy ID-only lease), `state` (LIVE, DEAD or UNKNOWN), `reason` (one
    of the texts above, or why the namespace could not be examined) and the namespace path
    `netns` recorded at ADD ("" when none)."""

    ip: str
    container_id: str
    ifname: str | None
    state: str
    reason: str
    netns: str = ""


class _Judge:
    """Decides a record's state; each namespace path is examined once per judge."""

    def __init__(self, host: Host | None) -> None:
        self.host = host or Host.current()
        self.boot = self.host.boot_id()
        self._paths: dict[str, tuple[str, str] | tuple[int, int]] = {}

    def __call__(self, rec: LeaseRecord | None) -> tuple[str, str]:
        if rec is None:
            return UNKNOWN, NO_RECORD
        if not self.boot or not rec.boot:
            return UNKNOWN, "boot ID unknown"
        if rec.boot != self.boot:
            return DEAD, EARLIER_BOOT
        if not rec.netns:
            return UNKNOWN, NO_NETNS
        seen = self._paths.get(rec.netns)
        if seen is None:
            seen = self._examine(rec.netns)
            self._paths[rec.netns] = seen
        if isinstance(seen[0], str):
            return seen  # type: ignore[return-value]
        if seen != (rec.ns_dev, rec.ns_ino):
            return DEAD, NETNS_REPLACED
        return LIVE, NETNS_PRESENT

    def _examine(self, netns: str) -> tuple[str, str] | tuple[int, int]:
        try:
            st = os.stat(self.host.resolve(netns))
        except FileNotFoundError:
            return DEAD, NETNS_GONE
        except (OSError, ValueError) as e:
            return UNKNOWN, f"namespace path cannot be examined: {getattr(e, 'strerror', e)}"
        return st.st_dev, st.st_ino


def _state(e: Entry, rec: LeaseRecord | None, judge: _Judge) -> LeaseState:
    state, reason = judge(rec)
    return LeaseState(e.name, e.cid, e.ifname, state, reason, rec.netns if rec else "")


def states_in(store, host: Host | None = None) -> list[LeaseState]:
    """The state of every lease in an open Store (ipam.store.Store), in address-name order.

    Files whose name is not an address are left out. O(leases) reads of the index (rebuilt in
    memory first if it does not match the directory) and one stat per distinct namespace path.
    """
    judge = _Judge(host)
    out = [_state(e, rec, judge) for e, rec in store.leases() if parse(e.name) is not None]
    out.sort(key=lambda s: s.ip)
    return out


def lease_states(data_dir: str, network: str, host: Host | None = None) -> list[LeaseState]:
    """The state of every lease of `network` under `data_dir` ([] when the network has no
    directory). Read-only and lock-free: nothing on disk changes, a concurrent ADD or DEL may
    not be seen; `reclaim` checks again under the lock before freeing anything."""
    store = Store.peek(data_dir, network)
    return [] if store is None else states_in(store, host)


def reclaim_in(store, states: list[LeaseState], host: Host | None = None) -> list[LeaseState]:
    """Free the leases among `states` that are DEAD and still dead now, in a Store the caller
    holds locked. Each is checked again first: same owner in the lease file, same lease file
    (inode) as the record, and its record still proves it dead. Returns the states of the
    leases freed (with the reason found now)."""
    wanted = {(s.ip, s.container_id, s.ifname) for s in states if s.state == DEAD}
    if not wanted:
        return []
    judge = _Judge(host)
    freed = []
    for e, rec in store.leases():
        if (e.name, e.cid, e.ifname) not in wanted or rec is None:
            continue
        now = _state(e, rec, judge)
        if now.state != DEAD or not store.still_holds(e, rec.lease_file):
            continue
        if store.free(e):
            freed.append(now)
    return freed


def reclaim(
    data_dir: str, network: str, states: list[LeaseState], host: Host | None = None
) -> list[LeaseState]:
    """Free the provably dead leases among `states` (from `lease_states`) under the store's
    lock, checking each again right before freeing it (see `reclaim_in`). A lease without a
    record, live, or unknown is never freed. Returns the freed leases; [] when the network has
    no directory. Raises CNIError 5 when the lock cannot be taken."""
    store = Store.open(data_dir, network, create=False)
    if store is None:
        return []
    with store:
        return reclaim_in(store, states, host)

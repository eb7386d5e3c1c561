"""Choosing addresses: one per range set, in the reference's order and with its messages.

ADD is planned first and written second (`plan`, then `commit_plan`), all under the store
lock: every check that can fail (requested IP taken or outside every set, duplicate
allocation, exhaustion) runs before anything is written, so a failed ADD leaves no lease and
no last_reserved_ip change behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ipam.addr import Addr, text
from ipam.range import Range, RangeSet, candidates

# Addresses tried one by one (one lstat each) before the search switches to a single directory
# listing; keeps the common case O(1) and a densely packed range O(leases) instead of
# O(range size).
PROBES = 64


class AllocationError(Exception):
    """A range set cannot give an address; str() is the reference's message for it."""


class Exhausted(AllocationError):
    """Every address of range set `set_index` (`range_set`) is leased."""

    def __init__(self, message: str, set_index: int, range_set: RangeSet) -> None:
        super().__init__(message)
        self.set_index = set_index
        self.range_set = range_set


@dataclass(frozen=True)
class Choice:
    """The address chosen for one range set: range set index, its range and the address."""

    set_index: int
    range_set: RangeSet
    range: Range
    addr: Addr

    @property
    def name(self) -> str:
        """The lease file name: the address's canonical text."""
        return text(self.addr)

    def ip_config(self) -> dict[str, str]:
        """The result entry: `address` with the subnet's prefix and the range's `gateway`."""
        return {"address": f"{self.name}/{self.range.prefix}", "gateway": text(self.range.gateway)}


def first_free(
    rs: RangeSet,
    last: Addr | None,
    is_free: Callable[[str], bool],
    all_names: Callable[[], set[str]],
) -> tuple[Range, Addr] | None:
    """The first address of `rs` in round-robin order (after `last`) for which `is_free(text)`
    holds, or None when every address is taken.

    The first PROBES candidates are checked one by one; after that one directory listing
    (`all_names`) tells which names exist, and only candidates missing from it are checked.
    Every candidate that is passed over is a name in the listing, so the search is bounded by
    the number of leases even in an IPv6 range of 2^64 addresses.
    """
    it = candidates(rs, last)
    for n, (r, a) in enumerate(it, 1):
        if is_free(text(a)):
            return r, a
        if n >= PROBES:
            break
    else:
        return None
    taken = all_names()
    for r, a in it:
        name = text(a)
        if name not in taken and is_free(name):
            return r, a
    return None


def plan(
    store,
    range_sets: list[RangeSet],
    requested: list[Addr],
    container_id: str,
    ifname: str,
) -> list[Choice]:
    """Choose one address per range set without writing anything (store locked).

    Requested IPs are consumed one per set, in the order given. Raises AllocationError with
    the reference's full message (`failed to allocate for range N: ...` or `failed to allocate
    all requested IPs: ...`).
    """
    pending = list(requested)
    chosen: set[str] = set()
    out: list[Choice] = []

    def is_free(name: str) -> bool:
        return name not in chosen and not store.exists(name)

    for idx, rs in enumerate(range_sets):
        req = next((a for a in pending if rs.contains(a)), None)
        try:
            if req is not None:
                pending.remove(req)
                r = rs.range_for(req)
                assert r is not None
                if r.is_gateway(req.value):
                    raise AllocationError(f"requested ip {text(req)} is subnet's gateway")
                if not is_free(text(req)):
                    raise AllocationError(
                        f"requested IP address {text(req)} is not available in range set {rs}"
                    )
                choice = Choice(idx, rs, r, req)
            else:
                for held in store.owned(container_id, ifname):
                    if rs.contains(held):
                        raise AllocationError(
                            f"{text(held)} has been allocated to {container_id}, "
                            "duplicate allocation is not allowed"
                        )
                found = first_free(rs, store.last_reserved(idx), is_free, store.names)
                if found is None:
                    raise Exhausted(
                        f"failed to allocate for range {idx}: "
                        f"no IP addresses available in range set: {rs}",
                        idx,
                        rs,
                    )
                choice = Choice(idx, rs, found[0], found[1])
        except Exhausted:
            raise
        except AllocationError as e:
            raise AllocationError(f"failed to allocate for range {idx}: {e}") from None
        chosen.add(choice.name)
        out.append(choice)
    if pending:
        raise AllocationError(
            "failed to allocate all requested IPs: " + " ".join(text(a) for a in pending)
        )
    return out


def commit_plan(
    store,
    choices: list[Choice],
    container_id: str,
    ifname: str,
    netns: tuple[str, int, int] | None = None,
) -> None:
    """Write the leases of a plan and each set's last_reserved_ip; all or nothing. `netns` is
    noted beside each lease (Store.reserve).

    A lease that appeared since planning (only possible for a writer that ignores the lock)
    rolls back what this call wrote and raises the reference's "not available" error.
    """
    done: list[Choice] = []
    try:
        for c in choices:
            if not store.reserve(c.name, container_id, ifname, netns):
                raise AllocationError(
                    f"failed to allocate for range {c.set_index}: requested IP address "
                    f"{c.name} is not available in range set {c.range_set}"
                )
            done.append(c)
        for c in choices:
            store.set_last_reserved(c.set_index, c.name)
    except BaseException:
        for c in done:
            store.unreserve(c.name, container_id, ifname)
        raise

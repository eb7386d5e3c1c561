"""Ranges and range sets: canonicalisation, membership, overlap and the round-robin iterator.

Semantics and error texts are the reference's (docs/reference-behaviour.md §1.3, §1.4): only the
gateway is never handed out; the network address and the IPv4 broadcast are excluded by the defaults
of rangeStart/rangeEnd alone; the IPv6 default rangeEnd is the last address of the prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ipam.addr import Addr, mask, text


class RangeError(ValueError):
    """A range or range set the reference would reject; str() is the reference's message."""


@dataclass
class RawRange:
    """One range as configured, addresses already parsed (None = not given)."""

    subnet: tuple[Addr, int, int] | None  # (address as written, prefix, mask width)
    range_start: Addr | None = None
    range_end: Addr | None = None
    gateway: Addr | None = None


@dataclass(frozen=True)
class Range:
    """A canonical range: subnet `network/prefix`, inclusive `start`..`end`, and its `gateway`."""

    bits: int
    network: int
    prefix: int
    start: int
    end: int
    gateway: Addr

    def contains(self, a: Addr) -> bool:
        """Same family, inside the subnet, and within start..end (the reference's Contains)."""
        return (
            a.bits == self.bits
            and (a.value & mask(self.bits, self.prefix)) == self.network
            and self.start <= a.value <= self.end
        )

    def is_gateway(self, value: int) -> bool:
        """True when the address `value` of this range's family is its gateway."""
        return self.gateway.bits == self.bits and self.gateway.value == value

    def overlaps(self, other: Range) -> bool:
        """True when either range's start or end lies in the other (same family only)."""
        if self.bits != other.bits:
            return False
        return (
            self.contains(Addr(other.bits, other.start))
            or self.contains(Addr(other.bits, other.end))
            or other.contains(Addr(self.bits, self.start))
            or other.contains(Addr(self.bits, self.end))
        )

    def size(self) -> int:
        """How many addresses this range can hand out (start..end without the gateway)."""
        n = self.end - self.start + 1
        if self.gateway.bits == self.bits and self.start <= self.gateway.value <= self.end:
            n -= 1
        return n

    def subnet_text(self) -> str:
        """`network/prefix`, as Go prints the subnet."""
        return f"{text(Addr(self.bits, self.network))}/{self.prefix}"

    def __str__(self) -> str:
        return f"{text(Addr(self.bits, self.start))}-{text(Addr(self.bits, self.end))}"


def _ipnet_text(a: Addr, prefix: int, width: int) -> str:
    """Go's IPNet.String() for an address as written (host bits kept)."""
    if a.bits == 32 and width == 128:
        return f"{text(a)}/{max(prefix - 96, 0)}"
    return f"{text(a)}/{prefix}"


def _in_subnet(a: Addr, bits: int, network: int, prefix: int) -> bool:
    return a.bits == bits and (a.value & mask(bits, prefix)) == network


def canonicalize(raw: RawRange) -> Range:
    """Fill in the defaults and check one range, in the reference's order and wording.

    Raises RangeError: `IP <nil> not v4 nor v6` (no subnet), `Network X too small to allocate
    from` (IPv4 /31 and /32, IPv6 /127 and /128), `Network has host bits set. ...`,
    `RangeStart X not in network Y`, `RangeEnd X not in network Y`. An explicit gateway is not
    checked against the subnet (the reference does not either).
    """
    if raw.subnet is None:
        raise RangeError("IP <nil> not v4 nor v6")
    ip, prefix, width = raw.subnet
    if prefix > width - 2:
        raise RangeError(f"Network {_ipnet_text(ip, prefix, width)} too small to allocate from")
    if ip.bits != width:
        raise RangeError("IPNet IP and Mask version mismatch")
    bits = ip.bits
    network = ip.value & mask(bits, prefix)
    if network != ip.value:
        raise RangeError(
            "Network has host bits set. For a subnet mask of length "
            f"{prefix} the network address is {text(Addr(bits, network))}"
        )
    subnet = f"{text(Addr(bits, network))}/{prefix}"
    gateway = raw.gateway if raw.gateway is not None else Addr(bits, network + 1)

    end_given = raw.range_end
    if raw.range_start is not None:
        s = raw.range_start
        # The reference compares against the configured rangeEnd here, before it is checked.
        if not _in_subnet(s, bits, network, prefix) or (
            end_given is not None and s.value > end_given.value
        ):
            raise RangeError(f"RangeStart {text(s)} not in network {subnet}")
        start = s.value
    else:
        start = network + 1

    if end_given is not None:
        if not _in_subnet(end_given, bits, network, prefix) or end_given.value < start:
            raise RangeError(f"RangeEnd {text(end_given)} not in network {subnet}")
        end = end_given.value
    else:
        last = network | ((1 << (bits - prefix)) - 1)
        end = last - 1 if bits == 32 else last
    return Range(bits=bits, network=network, prefix=prefix, start=start, end=end, gateway=gateway)


class RangeSet:
    """An ordered, non-empty list of disjoint ranges of one family; one address per ADD."""

    __slots__ = ("ranges",)

    def __init__(self, ranges: list[Range]) -> None:
        self.ranges = ranges

    @property
    def bits(self) -> int:
        """32 or 128: the family of every range in the set."""
        return self.ranges[0].bits

    def range_for(self, a: Addr) -> Range | None:
        """The first range containing `a`, or None."""
        for r in self.ranges:
            if r.contains(a):
                return r
        return None

    def contains(self, a: Addr) -> bool:
        """True when some range of the set contains `a`."""
        return self.range_for(a) is not None

    def overlaps(self, other: RangeSet) -> bool:
        """True when any range of this set overlaps any range of `other`."""
        return any(r.overlaps(o) for r in self.ranges for o in other.ranges)

    def capacity(self) -> int:
        """How many addresses the whole set can hand out."""
        return sum(r.size() for r in self.ranges)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


def canonicalize_set(raws: list[RawRange | None] | None) -> RangeSet:
    """Canonicalise every range of a set; RangeError `empty range set`, a range's own error,
    `mixed address families` or `subnets A and B overlap`."""
    if not raws:
        raise RangeError("empty range set")
    ranges: list[Range] = []
    for raw in raws:
        r = canonicalize(raw if raw is not None else RawRange(subnet=None))
        if ranges and r.bits != ranges[0].bits:
            raise RangeError("mixed address families")
        ranges.append(r)
    for i, r1 in enumerate(ranges[:-1]):
        for r2 in ranges[i + 1 :]:
            if r1.overlaps(r2):
                raise RangeError(f"subnets {r1} and {r2} overlap")
    return RangeSet(ranges)


def candidates(rs: RangeSet, last: Addr | None) -> Iterator[tuple[Range, Addr]]:
    """Addresses to try, in the reference's round-robin order (docs/reference-behaviour.md §1.4).

    When `last` (the last reserved address) lies in the set, start right after it (moving to the
    next range's start after a range's end, wrapping to the first range) and try `last` itself
    at the very end; otherwise start at the first range's start. Gateways are skipped. Every
    allocatable address of the set is yielded exactly once.
    """
    ranges = rs.ranges
    n = len(ranges)
    idx = 0
    cur: int | None = None
    first: int | None = None
    if last is not None:
        for i, r in enumerate(ranges):
            if r.contains(last):
                idx, cur = i, last.value
                break
    bits = rs.bits
    while True:
        r = ranges[idx]
        if cur is None:
            cur = first = r.start
        else:
            if cur == r.end:
                idx = (idx + 1) % n
                r = ranges[idx]
                cur = r.start
            else:
                cur += 1
            if first is None:
                first = cur
            elif cur == first:
                return
        if not r.is_gateway(cur):
            yield r, Addr(bits, cur)

"""host-local lease checks: ipam.leases, ipam.exhaustion (ipam.liveness judges each lease)."""

from __future__ import annotations

import os

from ipam.addr import parse
from ipam.liveness import DEAD, LIVE, LeaseState, reclaim
from plugins.doctor.facts import Network
from plugins.doctor.node import Node
from plugins.doctor.report import FAIL, WARN, Check, Repair, ok

EXHAUSTION_WARN = 0.90


def _reclaim(data_dir: str, network: str, states: list[LeaseState]):
    def run() -> list[str]:
        freed = reclaim(data_dir, network, states)
        where = os.path.join(data_dir, network)
        return [f"freed lease {s.ip} of {s.container_id} in {where} ({s.reason})" for s in freed]

    return run


def _capacity(net: Network) -> int | None:
    if net.ipam is None:
        return None
    return sum(rs.capacity() for rs in net.ipam.range_sets)


def check_leases(node: Node) -> Check:
    """Per network: leases held, free, and provably dead (with their owners)."""
    broken = [n for n in node.networks if n.ipam_error]
    if broken:
        n = broken[0]
        return Check("ipam.leases", FAIL,
                     f'the host-local configuration of network "{n.name}" ({n.path}) does not '
                     f"load: {n.ipam_error}", f"repair the ipam section of {n.path}", [n.path])
    dirs = node.lease_dirs()
    if not dirs:
        return ok("ipam.leases", "no network allocates with host-local: not applicable")
    parts, dead_all, objects, repairs = [], [], [], []
    for net, data_dir, name in dirs:
        states = node.leases.get((data_dir, name), [])
        dead = [s for s in states if s.state == DEAD]
        live = sum(1 for s in states if s.state == LIVE)
        cap = _capacity(net)
        free = f", {cap - len(states)} free" if cap is not None else ""
        where = os.path.join(data_dir, name)
        unproven = len(states) - len(dead) - live
        parts.append(f'network "{name}" ({where}): {len(states)} held{free}, {len(dead)} provably '
                     f"dead, {live} of live pods, {unproven} without proof either way")
        if dead:
            dead_all += [f"{s.ip} ({s.container_id}: {s.reason})" for s in dead]
            objects += [os.path.join(where, s.ip) for s in dead]
            repairs.append(Repair(f"free the provably dead leases of {where}",
                                  _reclaim(data_dir, name, dead), phase=80))
    if dead_all:
        shown = ", ".join(dead_all[:10])
        if len(dead_all) > 10:
            shown += f" and {len(dead_all) - 10} more"
        return Check("ipam.leases", WARN, "; ".join(parts) + f"; dead: {shown}",
                     "cnitool doctor --fix (frees only the provably dead leases)", objects, repairs)
    return ok("ipam.leases", "; ".join(parts))


def check_exhaustion(node: Node) -> Check:
    """Warn above 90 % of a range set used; fail when a range set is full."""
    judged = []
    status, fixes, objects = "ok", [], []
    for net, data_dir, name in node.lease_dirs():
        if net.ipam is None:
            continue
        states = node.leases.get((data_dir, name), [])
        addrs = [(a.bits, a.value, s.state == DEAD)
                 for s in states if (a := parse(s.ip)) is not None]
        for i, rs in enumerate(net.ipam.range_sets):
            n_used = n_dead = 0
            # start..end of a canonical range lies inside its subnet, and the ranges of a set
            # are disjoint: counting per range is counting per set
            for r in rs.ranges:
                for bits, value, dead in addrs:
                    if bits == r.bits and r.start <= value <= r.end:
                        n_used += 1
                        n_dead += dead
            cap = rs.capacity()
            share = n_used / cap if cap else 1.0
            text = f'network "{name}" range set {i} ({rs}): {n_used} of {cap} used ({share:.0%})'
            judged.append(text)
            if share >= 1.0 or share > EXHAUSTION_WARN:
                status = FAIL if share >= 1.0 or status == FAIL else WARN
                objects.append(os.path.join(data_dir, name))
                if n_dead:
                    fixes.append(f"cnitool doctor --fix frees {n_dead} provably dead lease(s) of "
                                 f"{name}")
                else:
                    fixes.append(f"give the node a larger pod subnet or fewer pods (maxPods); "
                                 f"leases without proof of death are in "
                                 f"{os.path.join(data_dir, name)}")
    if not judged:
        return ok("ipam.exhaustion",
                  "no host-local range set known (see flannel.subnet-env): not checked")
    if status == "ok":
        return ok("ipam.exhaustion", "; ".join(judged))
    word = "full" if status == FAIL else f"above {EXHAUSTION_WARN:.0%} used"
    return Check("ipam.exhaustion", status, f"a range set is {word}: " + "; ".join(judged),
                 "; ".join(fixes), objects)


CHECKS = [check_leases, check_exhaustion]

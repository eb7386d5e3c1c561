"""host-local's verbs at work (ipam/host_local.py is the thin main): the settings loaded, the
store opened, addresses planned, committed, released, checked and collected.
"""

from __future__ import annotations

import os
import sys

from cni.config import valid_attachments
from cni.errors import ERR_INTERNAL, ERR_PLUGIN_NOT_AVAILABLE, CNIError, one_line
from cni.gocompat.decode import field
from cni.result import Result, new_result
from cni.skel import CmdArgs
from cni.version import CURRENT
from ipam.addr import parse, parse_cidr, text
from ipam.allocator import AllocationError, Choice, Exhausted, commit_plan, first_free, plan
from ipam.config import Settings, load
from ipam.dns import parse_resolv_conf
from ipam.index import owner_of
from ipam.lease_record import netns_identity
from ipam.liveness import DEAD, UNKNOWN, reclaim_in, states_in
from ipam.store import Store


def _settings(args: CmdArgs, cni_args: str | None = None) -> Settings:
    return load(args.config, args.args if cni_args is None else cni_args)


def add(args: CmdArgs) -> Result:
    """Lease one address per range set to (CNI_CONTAINERID, CNI_IFNAME) and return them."""
    s = _settings(args)
    dns = None
    if s.resolv_conf:
        dns = parse_resolv_conf(s.resolv_conf)
    netns = netns_identity(args.netns)
    with Store.open(
        s.data_dir, s.name, lease=(args.container_id, args.ifname, len(s.range_sets))
    ) as store:
        try:
            try:
                choices = plan(store, s.range_sets, s.requested, args.container_id, args.ifname)
            except Exhausted as e:
                choices = _plan_after_reclaim(store, s, args, e)
            commit_plan(store, choices, args.container_id, args.ifname, netns)
        except AllocationError as e:
            raise CNIError(ERR_INTERNAL, one_line(str(e))) from None

    fields: dict = {"ips": [c.ip_config() for c in choices]}
    if s.routes:
        fields["routes"] = s.routes
    if dns is not None:
        fields["dns"] = dns
    return new_result(CURRENT, **fields)


def _plan_after_reclaim(
    store: Store, s: Settings, args: CmdArgs, exhausted: Exhausted
) -> list[Choice]:
    """A range set is exhausted: free the provably dead leases (ipam/liveness.py) and plan
    again. When that still fails, the reference's message gets how many leases the set holds,
    how many look dead, and the command that frees them."""

    freed = reclaim_in(store, states_in(store))
    if freed:
        shown = ", ".join(f"{f.ip} ({f.container_id}: {f.reason})" for f in freed[:8])
        more = f" and {len(freed) - 8} more" if len(freed) > 8 else ""
        sys.stderr.write(
            f"host-local: {s.name}: range set exhausted, freed {len(freed)} provably dead "
            f"leases: {shown}{more}\n"
        )
    try:
        return plan(store, s.range_sets, s.requested, args.container_id, args.ifname)
    except Exhausted as e:
        exhausted = e
    rs = exhausted.range_set
    states = [st for st in states_in(store) if rs.contains(parse(st.ip))]
    held = sum(1 for n in store.names() if (a := parse(n)) is not None and rs.contains(a))
    dead = sum(1 for st in states if st.state == DEAD)
    unknown = sum(1 for st in states if st.state == UNKNOWN)
    raise Exhausted(
        f"{exhausted}; leases held: {held}, provably dead: {dead}, cannot be judged: {unknown} "
        f"(no liveness record or namespace); free dead leases with "
        f"`cnitool doctor --fix --network {s.name}`",
        exhausted.set_index,
        rs,
    )


def delete(args: CmdArgs) -> None:
    """Release every lease of (CNI_CONTAINERID, CNI_IFNAME) (legacy ID-only leases when there
    is none). Idempotent; a data directory that does not exist and cannot be created is success."""

    s = _settings(args)
    try:
        store = Store.open(s.data_dir, s.name)
    except CNIError:
        if not os.path.isdir(os.path.join(s.data_dir, s.name)):
            return  # nothing was ever leased here
        raise
    with store:
        # One release pass per range set, as the reference: a pass after the first finds no
        # `<id>\r\n<ifname>` lease any more and so also frees the legacy `<id>`-only ones.
        for _ in s.range_sets:
            store.release_owner(args.container_id, args.ifname)


def check(args: CmdArgs) -> None:
    """Succeed when (CNI_CONTAINERID, CNI_IFNAME) holds a lease, and when every prevResult
    address inside this plugin's ranges is leased to exactly that attachment."""
    s = _settings(args)
    with Store.open(s.data_dir, s.name) as store:
        if not store.has_owner(args.container_id, args.ifname):
            raise CNIError(
                ERR_INTERNAL,
                f"host-local: Failed to find address added by container {args.container_id}",
            )
        cid = args.container_id.strip()
        for a in _prev_addresses(args.config):
            if not any(rs.contains(a) for rs in s.range_sets):
                continue
            holder = store.holder(text(a))
            if holder not in ((cid, args.ifname), (cid, None)):
                who = "nobody" if holder is None else " ".join(h for h in holder if h)
                raise CNIError(
                    ERR_INTERNAL,
                    one_line(
                        f"host-local: address {text(a)} of container {args.container_id} "
                        f"({args.ifname}) is not leased to it (lease holder: {who})"
                    ),
                )


def _prev_addresses(conf: dict) -> list:
    """The addresses listed in the config's prevResult (any result version), leniently."""
    prev = field(conf, "prevresult")
    if not isinstance(prev, dict):
        return []
    texts = []
    for ip in prev.get("ips") or ():
        if isinstance(ip, dict) and isinstance(ip.get("address"), str):
            texts.append(ip["address"])
    for fam in ("ip4", "ip6"):
        block = prev.get(fam)
        if isinstance(block, dict) and isinstance(block.get("ip"), str):
            texts.append(block["ip"])
    out = []
    for t in texts:
        parsed = parse_cidr(t)
        if parsed is not None:
            out.append(parsed[0])
    return out


def gc(args: CmdArgs) -> None:
    """Free every lease whose holder is not among the valid attachments (spec 1.1.0 GC).

    Attachments come from `cni.dev/valid-attachments` (or the older `cni.dev/attachments`);
    null or missing means none is valid. A lease file with empty or unreadable owner content
    is freed too. Failures are collected and reported after the whole directory was handled.
    """
    s = _settings(args)
    valid = {(cid.strip(), ifname) for cid, ifname in valid_attachments(args.config)}
    valid_ids = {cid for cid, _ in valid}
    store = Store.open(s.data_dir, s.name, create=False)
    if store is None:
        return
    with store:
        scanned = store.scan()
        keep, drop = [], []
        for name, content in scanned:
            if content is None or parse(name) is None:
                keep.append((name, content))  # not a lease we can judge: leave it alone
                continue
            owner = owner_of(content)
            if owner is not None and (
                owner in valid if owner[1] is not None else owner[0] in valid_ids
            ):
                keep.append((name, content))
            else:
                drop.append(name)
        errors = store.remove_leases(drop)
        store.rebuild_index(keep)
    if errors:
        raise CNIError(ERR_INTERNAL, one_line("; ".join(errors)))


def status(args: CmdArgs) -> None:
    """Succeed when an ADD could get an address from every range set; else code 50.

    Read-only: the data directory must exist and be writable (or be creatable), and every
    range set must have a free address. Nothing is created or locked.
    """
    s = _settings(args)
    problem = _data_dir_problem(s.data_dir, s.name)
    if problem:
        raise CNIError(
            ERR_PLUGIN_NOT_AVAILABLE,
            one_line(f'host-local cannot allocate: data directory "{s.data_dir}" {problem}'),
        )
    store = Store.peek(s.data_dir, s.name)
    if store is None:
        return  # a fresh directory: every range is free
    for idx, rs in enumerate(s.range_sets):
        found = first_free(rs, store.last_reserved(idx), lambda n: not store.exists(n), store.names)
        if found is None:
            raise CNIError(
                ERR_PLUGIN_NOT_AVAILABLE,
                f"host-local cannot allocate: no IP addresses available in range set {idx}: {rs}",
            )


def _data_dir_problem(data_dir: str, network: str) -> str:
    """Why leases cannot be written under `<data_dir>/<network>`, or "" when they can."""
    path = os.path.join(data_dir, network)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path or not parent:
            break
        path = parent
    if not os.path.isdir(path):
        return f"is not usable: {path} is not a directory"
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return f"is not usable: {path} is on a read-only file system"
    except OSError as e:
        return f"is not usable: {path}: {e.strerror}"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"is not usable: {path} is not writable"
    return ""

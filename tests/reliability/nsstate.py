"""What a test namespace and a state directory hold, as sets of comparable items, read fast.

Used from *inside* a node namespace (the fuzz runner is started with `ip netns exec`), so it
reads the kernel through netlink (pyroute2, a few ms) and one `nft list ruleset` (iptables is
nft-backed here, so that one listing covers iptables, ip6tables and nft) instead of the ~10
processes of `harness.snapshot_ns`.

Items are tuples, so snapshots compare as sets:

* ("link", name, kind, master, peer)   peer: "" (no peer), "same" or "other" namespace
* ("addr", dev, "ip/prefix")           not on `lo`
* ("route", family, table, dst, gw, dev, type)   not via `lo`
* ("rule", family, text)
* ("nft", "<block> / <block>", line)   every header and line of `nft list ruleset`
* ("file", root label, relative path, kind, size, sha1 prefix)

`leaks()` decides which added items are shared infrastructure that the reference leaves in
place on purpose (a bridge and its addresses, the top-level NAT chains, host-local's `lock` and
`last_reserved_ip.*`) and which are per-attachment leftovers (a veth, an address, a per-container
chain or rule, a lease, a saved configuration, a cache entry, a temporary file).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Item = tuple
Snapshot = dict[str, frozenset[Item]]

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_RT_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
             6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}


# --------------------------------------------------------------------------- kernel objects


def _iproute():
    from plugins.linux.netlink import import_iproute

    return import_iproute().IPRoute()  # pyroute2's full IPRoute: get_rules too


def net_items(ipr, *, routes: bool = True) -> dict[str, set[Item]]:
    """Links, addresses, routes and rules visible through the netlink socket `ipr` (links and
    addresses only when not `routes`)."""
    names: dict[int, str] = {}
    raw_links = list(ipr.get_links())
    for msg in raw_links:
        names[msg["index"]] = msg.get_attr("IFLA_IFNAME") or f"if{msg['index']}"
    links: set[Item] = set()
    for msg in raw_links:
        info = msg.get_attr("IFLA_LINKINFO")
        kind = (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""
        master = msg.get_attr("IFLA_MASTER")
        peer = ""
        if kind == "veth":
            peer = "other" if msg.get_attr("IFLA_LINK_NETNSID") is not None else "same"
        name = names[msg["index"]]
        if name == "lo":
            continue
        links.add(("link", name, kind, names.get(master, "") if master else "", peer))
    addrs: set[Item] = set()
    for msg in ipr.get_addr():
        dev = names.get(msg["index"], "")
        if dev == "lo":
            continue
        addr = msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL")
        if str(addr).lower().startswith("fe80:"):
            # IPv6 link-local: the kernel adds it to a link when it comes up, on its own clock
            # (after DAD); no plugin ever makes one, so it is timing, not a leftover.
            continue
        addrs.add(("addr", dev, f"{addr}/{msg['prefixlen']}"))
    if not routes:
        return {"links": links, "addresses": addrs}
    route_items: set[Item] = set()
    for family in (2, 10):
        for msg in ipr.get_routes(family=family, table=0):  # table 0: every table
            if msg.get_attr("RTA_CACHEINFO") is not None and msg["flags"] & 0x200:
                continue  # RTM_F_CLONED cache entries
            dev = names.get(msg.get_attr("RTA_OIF") or 0, "")
            if dev == "lo":
                continue
            table = msg.get_attr("RTA_TABLE") or msg["table"]
            dst = msg.get_attr("RTA_DST")
            dst = f"{dst}/{msg['dst_len']}" if dst else ("default" if msg["dst_len"] == 0 else "?")
            gw = msg.get_attr("RTA_GATEWAY") or ""
            route_items.add(
                ("route", family, table, dst, gw, dev, _RT_TYPES.get(msg["type"], str(msg["type"])))
            )
    rules: set[Item] = set()
    for family in (2, 10):
        for msg in ipr.get_rules(family=family):
            attrs = {k: v for k, v in msg["attrs"] if k not in ("FRA_PROTOCOL",)}
            text = " ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + f" action={msg['action']}"
            rules.add(("rule", family, text))
    return {"links": links, "addresses": addrs, "routes": route_items, "rules": rules}


_NFT_COUNTER = re.compile(r"counter packets \d+ bytes \d+")


def nft_items(text: str) -> set[Item]:
    """Every block header and line of `nft list ruleset` output, with its enclosing blocks."""
    items: set[Item] = set()
    stack: list[str] = []
    for raw in text.splitlines():
        line = _NFT_COUNTER.sub("counter", raw.strip())
        if not line:
            continue
        if line == "}":
            if stack:
                stack.pop()
            continue
        if line.endswith("{"):
            header = line[:-1].strip()
            items.add(("nft", " / ".join(stack), header))
            stack.append(header)
            continue
        items.add(("nft", " / ".join(stack), line))
    return items


def firewall_items() -> set[Item]:
    """The current namespace's nftables ruleset (iptables-nft tables included) as items."""
    proc = subprocess.run(
        ["nft", "list", "ruleset"], capture_output=True, text=True, env={"PATH": SAFE_PATH},
        timeout=60, check=False,
    )
    if proc.returncode != 0:
        return {("nft", "<error>", proc.stderr.strip())}
    return nft_items(proc.stdout)


# --------------------------------------------------------------------------- files


def file_items(roots: Mapping[str, str]) -> set[Item]:
    """Every directory, file and symlink under each root (label -> path), with size and digest."""
    items: set[Item] = set()
    for label, root in roots.items():
        if not os.path.isdir(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            for d in dirnames:
                full = os.path.join(dirpath, d)
                rel = os.path.normpath(os.path.join(rel_dir, d))
                if os.path.islink(full):
                    items.add(("file", label, rel, "symlink", 0, os.readlink(full)))
                else:
                    items.add(("file", label, rel, "dir", 0, ""))
            for f in filenames:
                full = os.path.join(dirpath, f)
                rel = os.path.normpath(os.path.join(rel_dir, f))
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                import stat

                if stat.S_ISLNK(st.st_mode):
                    items.add(("file", label, rel, "symlink", 0, os.readlink(full)))
                elif stat.S_ISREG(st.st_mode):
                    items.add(("file", label, rel, "file", st.st_size, _digest(full)))
                else:
                    items.add(("file", label, rel, "special", 0, ""))
    return items


def _digest(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.sha1(f.read(1 << 20)).hexdigest()[:12]
    except OSError:
        return "<unreadable>"


# --------------------------------------------------------------------------- snapshots


def snapshot_here(
    file_roots: Mapping[str, str] | None = None, *, ipr=None, firewall: bool = True
) -> Snapshot:
    """The calling thread's namespace (links, addresses, routes, rules, firewall) and files.

    Pass a long-lived netlink socket `ipr` when snapshotting often: opening one costs ~15 ms.
    """
    if ipr is None:
        with _iproute() as own:
            snap = {k: frozenset(v) for k, v in net_items(own).items()}
    else:
        snap = {k: frozenset(v) for k, v in net_items(ipr).items()}
    snap["firewall"] = frozenset(firewall_items()) if firewall else frozenset()
    snap["files"] = frozenset(file_items(file_roots or {}))
    return snap


def open_netns(path: str):
    """A netlink socket bound to the namespace at `path`, for snapshot_netns / reset_pod."""
    from plugins.linux.rtnl import iproute_in

    return iproute_in(path)


def snapshot_netns(ipr) -> Snapshot:
    """Links and addresses of the namespace `ipr` is bound to (a pod), lo excluded. (Routes
    belong to links: a pod whose links are gone has none left.)"""
    return {k: frozenset(v) for k, v in net_items(ipr, routes=False).items()}


def added(before: Snapshot, after: Snapshot) -> list[Item]:
    """Items present in `after` and not in `before`, sorted for stable reports."""
    out: list[Item] = []
    for key in sorted(set(after) | set(before)):
        out.extend(sorted(set(after.get(key, ())) - set(before.get(key, ())), key=repr))
    return out


# --------------------------------------------------------------------------- leak rules

# Per-attachment chain names: ipmasq `CNI-<24 hex>`, portmap `CNI-DN-<hex>` / `CNI-SN-<hex>`,
# spoof check `cni-br-iface-<ref>`; none of them may outlive the attachment.
_PER_ATTACHMENT_CHAIN = re.compile(r"CNI-(?:DN-|SN-)?[0-9a-f]{16,}|cni-br-iface-")
_BOUNDARY = r"[A-Za-z0-9_.\-]"

# The firewall infrastructure the plugins (like the reference) keep once made: these tables,
# these chains, and in them only the lines listed below. Everything else is a leftover.
SHARED_TABLES = frozenset({
    "table ip nat", "table ip6 nat", "table ip filter", "table ip6 filter", "table ip mangle",
    "table ip6 mangle", "table bridge nat", "table inet cni_plugins_masquerade",
    "table ip cni_hostport", "table ip6 cni_hostport",
})
BASE_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING",
                         "prerouting", "output", "postrouting"})
SHARED_CHAINS = BASE_CHAINS | frozenset({
    "CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SNAT",
    "hostports", "hostip_hostports", "hostports_all", "masquerading", "masq_checks",
})
_ATTACHMENTS_CHAIN = re.compile(r"attachments_[0-9a-f]{16}")
# Chains whose rules are shared (not per attachment): what may stay in them.
_SHARED_RULE = {
    # nft prints a mask made of leading ones (markMasqBit 31) as a prefix: 0x80000000/1
    "CNI-HOSTPORT-MASQ": re.compile(
        r"meta mark (& 0x[0-9a-f]+ == 0x[0-9a-f]+|0x[0-9a-f]+/\d+) counter( masquerade)?$"
    ),
    "CNI-HOSTPORT-SETMARK": re.compile(r"counter meta mark set mark or 0x[0-9a-f]+$"),
    "hostports_all": re.compile(r"jump (hostports|hostip_hostports)$"),
}
_JUMP_TO_SHARED = re.compile(
    r"(jump|goto) (CNI-HOSTPORT-(DNAT|SETMARK|MASQ|SNAT)|hostports_all|masq_checks)$"
)
_MULTICAST_RETURN = re.compile(r"ip6? daddr (224\.0\.0\.0/4|ff00::/8) return$")


def _firewall_leak(path: str, line: str) -> str | None:
    """Why the nft item (enclosing blocks `path`, `line`) is not shared infrastructure, or None."""
    blocks = [b for b in path.split(" / ") if b]
    if not blocks:  # a table header
        return None if line in SHARED_TABLES else "a table the plugins do not share"
    if blocks[0] not in SHARED_TABLES:
        return "inside a table the plugins do not share"
    if len(blocks) == 1:  # a chain (or set, map, ...) header, or a table comment
        if line.startswith("comment "):
            return None
        name = line.split()[1] if line.startswith("chain ") and len(line.split()) > 1 else ""
        if name in SHARED_CHAINS or _ATTACHMENTS_CHAIN.fullmatch(name):
            return None
        return "a chain that is not shared infrastructure"
    chain = blocks[1].split()[1] if blocks[1].startswith("chain ") else ""
    if line.startswith(("type ", "comment ", "policy ")):
        return None
    rule = _SHARED_RULE.get(chain)
    if rule is not None and rule.search(line):
        return None
    if chain in BASE_CHAINS and (_JUMP_TO_SHARED.search(line) or _MULTICAST_RETURN.search(line)):
        return None
    return f"a rule left in {chain or blocks[1]}"


@dataclass
class Attachment:
    """What identifies one case's attachments in leftovers: container IDs and addresses."""

    ids: set[str] = field(default_factory=set)
    ips: set[str] = field(default_factory=set)
    bridges: set[str] = field(default_factory=set)  # bridges the config may create and keep

    def add_result_ips(self, result: object) -> None:
        """Collect every address found in a (decoded) result or prevResult of any version."""
        for text in _strings(result):
            try:
                self.ips.add(str(ipaddress.ip_interface(text).ip))
            except ValueError:
                continue


def _strings(obj: object) -> Iterable[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def _mentions(text: str, att: Attachment) -> str | None:
    for cid in att.ids:
        if len(cid) >= 3 and re.search(f"(?<!{_BOUNDARY}){re.escape(cid)}(?!{_BOUNDARY})", text):
            return f"container ID {cid!r}"
    for ip in att.ips:
        if re.search(f"(?<![0-9a-fA-F.:]){re.escape(ip)}(?![0-9a-fA-F:]|\\.[0-9])", text):
            return f"address {ip}"
    return None


def _allowed_links(items: Iterable[Item], att: Attachment) -> set[str]:
    ok = set()
    for it in items:
        if it[0] != "link":
            continue
        _, name, kind, master, peer = it
        if kind == "bridge" and name in att.bridges and not master:
            ok.add(name)
        elif kind == "veth" and peer == "same" and (
            master in att.bridges or any(name.startswith(b + ".") for b in att.bridges)
        ):
            ok.add(name)  # the bridge's VLAN gateway pair, kept like the bridge
    return ok


_INFRA_FILE = re.compile(r"(^|/)(lock|last_reserved_ip\.\d+)$")


def leaks(new: list[Item], att: Attachment, *, kernel: bool = True) -> list[str]:
    """The added items that are per-attachment leftovers, as readable lines (empty: clean).

    `kernel=False` treats every new link, address and route as a leak (for a failed command,
    which must not even leave a bridge).
    """
    links_ok = _allowed_links(new, att) if kernel else set()
    problems: list[str] = []
    for it in new:
        kind = it[0]
        if kind == "link":
            if it[1] not in links_ok:
                problems.append(
                    f"link {it[1]} ({it[2] or 'no kind'}, master={it[3] or '-'}, "
                    f"peer={it[4] or '-'})"
                )
        elif kind == "addr":
            # A gateway address added to a bridge that was already there stays with the bridge,
            # as the reference leaves it (as long as kernel objects may stay at all).
            if it[1] not in links_ok and not (kernel and it[1] in att.bridges):
                problems.append(f"address {it[2]} on {it[1]}")
        elif kind == "route":
            if it[5] not in links_ok and not (kernel and it[5] in att.bridges):
                problems.append(
                    f"route {it[3]} via {it[4] or '-'} dev {it[5] or '-'} table {it[2]} ({it[6]})"
                )
        elif kind == "rule":
            problems.append(f"ip rule {it[2]}")
        elif kind == "nft":
            text = f"{it[1]} / {it[2]}"
            m = _PER_ATTACHMENT_CHAIN.search(text)
            why = (f"per-attachment chain {m.group(0)}" if m else None) or _mentions(text, att) \
                or _firewall_leak(it[1], it[2])
            if why:
                problems.append(f"firewall: {text} ({why})")
        elif kind == "file":
            _, label, rel, ftype = it[:4]
            if ftype == "dir":
                continue
            inside_index = "/.pycni-index/" in f"/{rel}" and ".tmp-" not in os.path.basename(rel)
            if ftype == "file" and (_INFRA_FILE.search(rel) or inside_index):
                continue
            problems.append(f"file {label}:{rel} ({ftype}, {it[4]} bytes)")
        elif kind == "pod":  # ("pod", index, <a link or address item>): pods get nothing back
            problems.append(f"pod {it[1]}: {it[2]} {' '.join(str(x) for x in it[3:] if x != '')}")
        else:
            problems.append(f"unclassified {it!r}")
    return problems


# --------------------------------------------------------------------------- reset


def reset_here(pristine: Snapshot, ipr=None, current: Snapshot | None = None) -> None:
    """Put the calling thread's namespace back to `pristine`: delete links it did not have,
    set lo up, flush the ruleset when it differs (from `current`'s, when given, else from a
    fresh listing). Only for throwaway test namespaces."""
    if ipr is None:
        with _iproute() as own:
            _reset_links(own, {it[1] for it in pristine.get("links", ())}, lo_up=True)
    else:
        _reset_links(ipr, {it[1] for it in pristine.get("links", ())}, lo_up=True)
    rules = current["firewall"] if current is not None else firewall_items()
    if set(rules) != set(pristine.get("firewall", ())):
        subprocess.run(["nft", "flush", "ruleset"], env={"PATH": SAFE_PATH}, check=False,
                       capture_output=True, timeout=60)


def reset_pod(ipr) -> None:
    """Delete every link but lo in the pod namespace `ipr` is bound to, and set lo down (as a
    runtime leaves a fresh pod)."""
    _reset_links(ipr, set(), lo_up=False)


def _reset_links(ipr, keep: set[str], *, lo_up: bool) -> None:
    for msg in ipr.get_links():
        name = msg.get_attr("IFLA_IFNAME")
        if name == "lo":
            ipr.link("set", index=msg["index"], state="up" if lo_up else "down")
        elif name not in keep:
            try:
                ipr.link("del", index=msg["index"])
            except Exception:  # noqa: BLE001 - a veth whose peer went first is gone already
                pass

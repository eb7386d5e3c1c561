"""What a case looks at after a plugin ran, in a form two implementations can be compared on.

* `kernel(ns)`: links, addresses, routes (all tables, both families) from `ip -j`, reduced to
  fields that are not random per run (ifindex, lifetimes, statistics are dropped; an IPv6
  address's own local route, which appears when DAD completes, is left out).
* `sysctls(ns, paths)`: /proc/sys and /sys values read inside the namespace (globs allowed).
* `firewall(ns)`: iptables-save / ip6tables-save / nft ruleset from `harness.snapshot_ns`.
* `files(dir)`: every file and directory below `dir` with its mode and content.
* `outcome(run)`: exit status plus the parsed result or error object.

`Normaliser` then replaces only what docs/reference-behaviour.md calls random: MAC addresses,
veth names (``veth`` + 8 hex), IPv6 link-local addresses derived from them, and the per-run
namespace names and temp paths. Replacements are numbered by first appearance, so "the bridge has
the host veth's MAC" survives normalisation. One relation stays random and cannot be normalised: an
unpinned bridge takes the lowest MAC of its ports, so with several ports which one it copies varies
per run; scenarios with several pods on one bridge use isGateway (which pins the bridge MAC at the
first ADD).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from conformance import harness

# ------------------------------------------------------------------------- capture

# Left out on purpose, as timing rather than behaviour: `operstate` and the NO-CARRIER /
# LOWER_UP flags (and a route's `linkdown`) are derived by the kernel from carrier changes,
# which linkwatch applies with up to a second of delay; the admin UP flag is kept.
_LINK_KEYS = ("ifname", "link_type", "mtu", "address", "broadcast", "master", "promiscuity")
_CARRIER_FLAGS = ("LOWER_UP", "NO-CARRIER", "M-DOWN")
_LINKINFO_DATA_KEYS = {
    "bridge": ("stp_state", "vlan_filtering", "vlan_default_pvid"),
    "vxlan": ("id", "port", "local", "learning", "link"),
}
_SLAVE_KEYS = ("state", "hairpin", "isolated", "learning", "flood")
# `tentative` is left out on purpose: it only says whether DAD had finished when we looked
_ADDR_KEYS = ("family", "local", "prefixlen", "scope", "broadcast", "label", "noprefixroute",
              "nodad", "dadfailed")
_ROUTE_KEYS = ("type", "dst", "gateway", "dev", "protocol", "scope", "prefsrc", "table",
               "metric", "flags", "pref")


def _ip_json(ns: str, *args: str) -> Any:
    proc = harness.ns_ip(ns, "-j", *args, check=False)
    if proc.returncode != 0:
        return f"<error: {proc.stderr.strip()}>"
    return json.loads(proc.stdout or "[]")


def kernel(ns: harness.Netns | str) -> dict[str, Any]:
    """Links, addresses and routes inside `ns` (read only)."""
    name = harness.netns_name_of(ns)
    links = []
    for link in _ip_json(name, "-d", "link", "show"):
        item = {k: link[k] for k in _LINK_KEYS if k in link}
        item["flags"] = sorted(f for f in link.get("flags", ()) if f not in _CARRIER_FLAGS)
        info = link.get("linkinfo") or {}
        if info.get("info_kind"):
            item["kind"] = info["info_kind"]
            data = info.get("info_data") or {}
            keep = _LINKINFO_DATA_KEYS.get(info["info_kind"], ())
            picked = {k: data[k] for k in keep if k in data}
            if picked:
                item["data"] = picked
        if info.get("info_slave_kind"):
            item["slave_kind"] = info["info_slave_kind"]
            sdata = info.get("info_slave_data") or {}
            item["slave"] = {k: sdata[k] for k in _SLAVE_KEYS if k in sdata}
        links.append(item)
    addrs = []
    for link in _ip_json(name, "addr", "show"):
        for a in link.get("addr_info", ()):
            entry = {k: a[k] for k in _ADDR_KEYS if k in a}
            entry["dev"] = link["ifname"]
            addrs.append(entry)
    # An IPv6 address's own `local` route enters the table only when its DAD completes (about
    # a second after the link comes up), so its presence is timing; the address is compared.
    own6 = {(a["local"], a["dev"]) for a in addrs if a.get("family") == "inet6"}
    routes = {}
    for fam in ("-4", "-6"):
        rows = []
        for r in _ip_json(name, fam, "route", "show", "table", "all"):
            if fam == "-6" and r.get("type") == "local" and (r.get("dst"), r.get("dev")) in own6:
                continue
            row = {k: r[k] for k in _ROUTE_KEYS if k in r}
            if "flags" in row:
                row["flags"] = [f for f in row["flags"] if f != "linkdown"]
            rows.append(row)
        routes["v4" if fam == "-4" else "v6"] = rows
    return {"links": links, "addresses": addrs, "routes": routes}


def sysctls(ns: harness.Netns | str, paths: Iterable[str]) -> dict[str, str]:
    """Values of the given /proc/sys or /sys paths (shell globs allowed) inside `ns`.

    A path that does not exist is reported as "<absent>"; globs expand inside the namespace
    (`ip netns exec` remounts /sys, so /sys/class/net shows the namespace's own links).
    """
    paths = list(paths)
    script = 'for f in "$@"; do for g in $f; do if [ -e "$g" ]; then printf "%s=%s\\n" "$g" ' \
             '"$(cat "$g")"; else printf "%s=<absent>\\n" "$g"; fi; done; done'
    proc = harness.ns_exec(ns, "sh", "-c", script, "sh", *paths, check=False)
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        out[key] = value
    return out


def firewall(ns: harness.Netns | str) -> dict[str, str]:
    """iptables / ip6tables / nft rulesets inside `ns`, counters and dates removed.

    The nft listing shows chains in creation order, which says nothing about behaviour (an
    iptables-restore batch creates them in another order than one-by-one calls); the chain
    blocks of each table are sorted by name, rule order inside a chain is kept.
    """
    snap = harness.snapshot_ns(ns)
    out = {k: snap[k] for k in ("iptables", "ip6tables", "nft")}
    out["nft"] = sort_nft_blocks(out["nft"])
    return out


def sort_nft_blocks(text: str) -> str:
    """`nft list ruleset` text with the blocks (chains, sets, maps) of each table sorted."""
    out: list[str] = []
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("table "):
            out.append(line)
            blocks = []
        elif line == "}":
            for b in sorted(blocks, key=lambda b: b[0]):
                if out and out[-1] != line and not out[-1].startswith("table "):
                    out.append("")
                out.extend(b)
            out.append(line)
            blocks = []
        elif line.startswith("\t") and not line.startswith("\t\t") and line.rstrip().endswith("{"):
            current = [line]
        elif current is not None:
            current.append(line)
            if line == "\t}":
                blocks.append(current)
                current = None
        elif line.strip():
            out.append(line)
    return "\n".join(out)


def files(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Every entry below `root`: relative path -> {"mode": "0644", "data": text} (dirs: no data).

    A missing root gives {"<absent>": True}. Contents are decoded with surrogateescape so
    binary bytes still compare exactly.
    """
    base = Path(root)
    if not base.exists():
        return {"<absent>": True}
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for d in dirnames:
            p = Path(dirpath) / d
            out[str(p.relative_to(base)) + "/"] = {"mode": _mode(p)}
        for f in sorted(filenames):
            p = Path(dirpath) / f
            data = p.read_bytes().decode(errors="surrogateescape")
            out[str(p.relative_to(base))] = {"mode": _mode(p), "data": data}
    return out


def _mode(p: Path) -> str:
    return f"{stat.S_IMODE(p.lstat().st_mode):04o}"


def outcome(run: harness.PluginRun) -> dict[str, Any]:
    """Exit status and parsed stdout of one run: {"rc", "result"} or {"rc", "error"}.

    Unparsable stdout is kept as text under "stdout".
    """
    out: dict[str, Any] = {"rc": run.returncode}
    if run.result is None:
        out["stdout"] = run.stdout
    elif run.returncode != 0 and isinstance(run.result, dict) and "code" in run.result:
        out["error"] = run.result
    else:
        out["result"] = run.result
    return out


# ------------------------------------------------------------------------- normalisation

MAC_RE = re.compile(r"\b(?:[0-9a-f]{2}:){5}[0-9a-f]{2}\b")
VETH_RE = re.compile(r"\bveth[0-9a-f]{8}\b")
LL6_RE = re.compile(r"\bfe80::[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,3}\b")
_FIXED_MACS = {"00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"}


class Normaliser:
    """Replaces random values by numbered placeholders, consistently within one observation.

    `fixed` maps exact substrings (temp roots, namespace paths and names of one run) to stable
    labels; apply it to both runs with labels that mean the same thing.
    """

    def __init__(self, fixed: Mapping[str, str] | None = None) -> None:
        self.fixed = dict(sorted((fixed or {}).items(), key=lambda kv: -len(kv[0])))
        self.maps: dict[str, dict[str, str]] = {"mac": {}, "veth": {}, "ll6": {}}

    def _sub(self, kind: str, regex: re.Pattern[str], text: str) -> str:
        table = self.maps[kind]

        def repl(m: re.Match[str]) -> str:
            value = m.group(0)
            if kind == "mac" and value in _FIXED_MACS:
                return value
            if value not in table:
                table[value] = f"<{kind}{len(table) + 1}>"
            return table[value]

        return regex.sub(repl, text)

    def text(self, s: str) -> str:
        """One string normalised."""
        for raw, label in self.fixed.items():
            if raw:
                s = s.replace(raw, label)
        s = self._sub("veth", VETH_RE, s)
        s = self._sub("mac", MAC_RE, s)
        return self._sub("ll6", LL6_RE, s)

    def __call__(self, obj: Any) -> Any:
        """A deep copy of `obj` with every string (dict keys included) normalised."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {self.text(k): self(obj[k]) for k in sorted(obj)}
        if isinstance(obj, list | tuple):
            return [self(v) for v in obj]
        return obj


def diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Human-readable differences between two normalised observations (empty: equal)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            p = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append(f"{p}: only in reference: {_short(b[k])}")
            elif k not in b:
                out.append(f"{p}: only in target: {_short(a[k])}")
            else:
                out.extend(diff(a[k], b[k], p))
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items vs {len(b)}:\n    target:    {_short(a)}\n"
                    f"    reference: {_short(b)}"]
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out.extend(diff(x, y, f"{path}[{i}]"))
        return out
    if isinstance(a, str) and isinstance(b, str) and "\n" in (a + b) and a != b:
        import difflib

        lines = difflib.unified_diff(b.splitlines(), a.splitlines(), "reference", "target",
                                     lineterm="", n=1)
        return [f"{path}:\n    " + "\n    ".join(lines)]
    if a != b:
        return [f"{path}: target {_short(a)} != reference {_short(b)}"]
    return []


def _short(v: Any, limit: int = 400) -> str:
    s = json.dumps(v, sort_keys=True) if not isinstance(v, str) else repr(v)
    return s if len(s) <= limit else s[:limit] + "..."

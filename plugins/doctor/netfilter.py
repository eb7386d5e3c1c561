"""Firewall checks: netfilter.forward, netfilter.backend (read only: *-save, nft list)."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess

from plugins.doctor.node import Node
from plugins.doctor.report import FAIL, WARN, Check, ok
from plugins.linux.iptables import TableState
from plugins.linux.iptables_rules import split_saved
from plugins.linux.netfilter import default_backend, nft_installed

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAX_DEPTH = 6


def pod_networks(node: Node) -> list[IPNetwork]:
    """The cluster and pod networks of the configurations (FLANNEL_NETWORK, host-local subnets)."""
    out: list[IPNetwork] = []
    for net in node.networks:
        if net.subnet_env is not None:
            out += [ipaddress.ip_network(n) for n in net.subnet_env.route_dsts()]
        if net.ipam is not None:
            for rs in net.ipam.range_sets:
                out += [ipaddress.ip_network(r.subnet_text()) for r in rs.ranges]
    return list(dict.fromkeys(out))


def _covers(text: str, nets: list[IPNetwork]) -> bool:
    try:
        cidr = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return any(n.version == cidr.version and n.subnet_of(cidr) for n in nets)


def _accepts(
    state: TableState, chain: str, nets: list[IPNetwork], bridges: set[str], depth: int = 0
) -> str | None:
    """The first rule reachable from `chain` that accepts traffic of the pod networks (or of the
    bridges), as text; None when there is none."""
    if depth > _MAX_DEPTH:
        return None
    for rule in state.chains.get(chain, ()):
        words = split_saved(rule)
        target = words[words.index("-j") + 1] if "-j" in words[:-1] else ""
        if target == "ACCEPT":
            matched = False
            for i, w in enumerate(words[:-1]):
                negated = i > 0 and words[i - 1] == "!"
                if negated:
                    continue
                if w in ("-s", "-d") and _covers(words[i + 1], nets):
                    matched = True
                if w in ("-i", "-o") and words[i + 1] in bridges:
                    matched = True
            if matched or all(w in ("-j", "ACCEPT") for w in words):
                return f"-A {chain} {rule}"
        elif target in state.chains and target not in ("RETURN", "DROP", "REJECT"):
            found = _accepts(state, target, nets, bridges, depth + 1)
            if found:
                return found
    return None


def _nft_forward_drops(node: Node, nets: list[IPNetwork], bridges: set[str]) -> list[str]:
    """Native nftables base chains on the forward hook with policy drop and no rule accepting
    the pod networks (iptables-nft's own tables are judged through iptables-save)."""
    if not nft_installed(node.env.get("PATH")):
        return []
    try:
        proc = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True,
                              check=False)
        items = json.loads(proc.stdout).get("nftables", []) if proc.returncode == 0 else []
    except (OSError, ValueError):
        return []
    drops, rules = [], []
    for item in items:
        chain = item.get("chain")
        if chain and chain.get("hook") == "forward" and chain.get("policy") == "drop":
            if not (chain.get("family") in ("ip", "ip6") and chain.get("table") == "filter"):
                drops.append(chain)
        if "rule" in item:
            rules.append(item["rule"])
    out = []
    keys = [str(n.network_address) for n in nets] + sorted(bridges)
    for chain in drops:
        mine = [r for r in rules
                if r.get("family") == chain["family"] and r.get("table") == chain["table"]]
        accepted = any('"accept"' in json.dumps(r) and any(k in json.dumps(r) for k in keys)
                       for r in mine)
        if not accepted:
            out.append(f"nft chain {chain['family']} {chain['table']} {chain['name']}")
    return out


def check_forward(node: Node) -> Check:
    """FORWARD policy DROP without a rule accepting the pod network."""
    nets = pod_networks(node)
    if not nets:
        return ok("netfilter.forward", "no pod network configured: not applicable")
    bridges = {n.bridge for n in node.networks if n.bridge}
    problems, fine = [], []
    for v6 in (False, True):
        mine = [n for n in nets if n.version == (6 if v6 else 4)]
        state = node.filter.get(v6)
        if not mine or state is None:
            continue
        tool = "ip6tables" if v6 else "iptables"
        policy = state.policies.get("FORWARD", "ACCEPT")
        if policy != "DROP":
            fine.append(f"{tool} FORWARD policy {policy}")
            continue
        rule = _accepts(state, "FORWARD", mine, bridges)
        if rule is None:
            problems.append(f"{tool} FORWARD policy is DROP and no rule accepts "
                            f"{', '.join(map(str, mine))}")
        else:
            fine.append(f"{tool} FORWARD policy DROP, pod traffic accepted by `{rule}`")
    problems += [f"{c} has policy drop and accepts nothing of {', '.join(map(str, nets))}"
                 for c in _nft_forward_drops(node, nets, bridges)]
    if problems:
        first = nets[0]
        return Check(
            "netfilter.forward", FAIL,
            "; ".join(problems) + ": pod traffic is dropped silently",
            f"iptables -A FORWARD -s {first} -j ACCEPT; iptables -A FORWARD -d {first} -j ACCEPT "
            "(flanneld adds these itself in its FLANNEL-FWD chain when it runs)",
            [str(n) for n in nets],
        )
    return ok("netfilter.forward", "; ".join(fine) or "no FORWARD chain to judge")


def _run(node: Node, argv: list[str]) -> str | None:
    exe = shutil.which(argv[0], path=node.env.get("PATH"))
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return proc.stdout if proc.returncode == 0 else None


def _cni_chains(text: str | None) -> set[str]:
    out = set()
    for line in (text or "").splitlines():
        if line.startswith(":") and line[1:].startswith(("CNI-", "FLANNEL")):
            out.add(line[1:].split(" ", 1)[0])
    return out


def check_backend(node: Node) -> Check:
    """Which firewall backend the plugins use here; warn when CNI chains exist both in
    iptables-legacy and in nf_tables (one side cannot see the other's rules)."""
    backend = default_backend()
    version = (_run(node, ["iptables", "-V"]) or "").strip()
    used = f"the plugins use {backend}"
    if backend == "iptables" and version:
        used += f" ({version})"
    legacy: set[str] = set()
    tables = (node.proc("thread-self/net/ip_tables_names") or "").split()
    for table in ("nat", "filter"):
        if table in tables:  # only tables that exist: reading one never creates it
            saved = _run(node, ["iptables-legacy-save", "-t", table])
            legacy |= {f"legacy {table} {c}" for c in _cni_chains(saved)}
    nft: set[str] = set()
    for table in ("nat", "filter"):
        saved = _run(node, ["iptables-nft-save", "-t", table])
        nft |= {f"nf_tables {table} {c}" for c in _cni_chains(saved)}
    native = [t for t in (_run(node, ["nft", "list", "tables"]) or "").splitlines()
              if "cni_" in t]
    nft |= {f"nf_tables {t.strip()}" for t in native}
    if legacy and nft:
        return Check(
            "netfilter.backend", WARN,
            f"{used}, but CNI chains exist in both iptables-legacy ({', '.join(sorted(legacy))}) "
            f"and nf_tables ({', '.join(sorted(nft))}): rules on one side are invisible to the "
            "other",
            "make every tool on the node use one iptables (update-alternatives --set iptables "
            "/usr/sbin/iptables-nft), then remove the legacy chains (iptables-legacy -t nat -F/-X "
            "each CNI- chain) on a drained node",
            sorted(legacy | nft),
        )
    where = "iptables-legacy" if legacy else ("nf_tables" if nft else "no table yet")
    return ok("netfilter.backend", f"{used}; CNI chains only in {where}")


CHECKS = [check_forward, check_backend]

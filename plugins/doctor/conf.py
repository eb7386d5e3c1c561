"""Checks of NETCONFPATH: conf.parse, conf.winner, conf.plugins."""

from __future__ import annotations

import json
import os

from cni.errors import CNIError
from cni.invoke import exec_plugin, find_in_path
from cni.libcni.request import decode_version_info
from plugins.doctor.facts import Network, network_of
from plugins.doctor.node import Node
from plugins.doctor.report import FAIL, WARN, Check, ok


def _json_offset(path: str) -> str:
    """` (at byte N)` where the file's JSON breaks, or "" when it decodes or cannot be read."""
    try:
        with open(path, "rb") as f:
            json.loads(f.read())
    except json.JSONDecodeError as e:
        return f" (at byte {e.pos})"
    except (OSError, ValueError):
        return ""
    return ""


def check_parse(node: Node) -> Check:
    """Every file of NETCONFPATH loads as libcni loads it; a bad one is named with its error."""
    files = node.conf_files
    if not files:
        return Check(
            "conf.parse", FAIL,
            f"no network configuration (.conf, .conflist, .json) in {node.net_dir}: "
            "the runtime reports 'cni plugin not initialized'",
            f"install the network's configuration into {node.net_dir} "
            "(flannel: kube-flannel writes 10-flannel.conflist when its pod starts)",
            [node.net_dir],
        )
    bad = [cf for cf in files if cf.error is not None]
    if not bad:
        names = ", ".join(os.path.basename(cf.path) for cf in files)
        return ok("conf.parse", f"{len(files)} file(s) in {node.net_dir} load: {names}",
                  [cf.path for cf in files])
    first = bad[0]
    detail = first.error or ""
    if "(char " not in detail:
        detail += _json_offset(first.path)
    more = ""
    if len(bad) > 1:
        more = f" (and {len(bad) - 1} more: {', '.join(cf.path for cf in bad[1:])})"
    return Check(
        "conf.parse", FAIL,
        f"{first.path} does not load: {detail}{more}",
        f"repair or remove {first.path}; a runtime stops at the first file that does not load",
        [cf.path for cf in bad],
    )


def _subnets(net: Network) -> list[str]:
    """The pod subnets a network hands out (host-local ranges, else FLANNEL_SUBNET)."""
    if net.ipam is not None:
        return sorted({r.subnet_text() for rs in net.ipam.range_sets for r in rs.ranges})
    if net.subnet_env is not None and net.subnet_env.subnet:
        return [net.subnet_env.subnet]
    return []


def check_winner(node: Node) -> Check:
    """Which network a runtime uses (the first file in name order) and why; warn when another
    bridge configuration sorts before the flannel one, or two share a bridge with other subnets."""
    files = node.conf_files
    if not files:
        return Check("conf.winner", FAIL,
                     f"no network configuration in {node.net_dir}: a runtime has no network",
                     f"install the network's configuration into {node.net_dir}", [node.net_dir])
    first = files[0]
    if first.conf is None:
        return Check(
            "conf.winner", FAIL,
            f"the runtime's first file {first.path} does not load, so no network is used",
            f"repair or remove {first.path}", [first.path],
        )
    why = f"first of {len(files)} file(s) in name order in {node.net_dir}"
    winner = f'network "{first.conf.name}" from {os.path.basename(first.path)} ({why})'
    problems: list[str] = []
    objects = [first.path]
    all_nets = [network_of(cf) for cf in files if cf.conf is not None]
    flannel = [n for n in all_nets if "flannel" in n.types]
    if flannel and "flannel" not in all_nets[0].types:
        f = flannel[0]
        what = all_nets[0].types[0] if all_nets[0].types else "?"
        nets = ", ".join(_subnets(all_nets[0])) or "its own subnet"
        problems.append(
            f"{os.path.basename(first.path)} ({what}, {nets}) sorts before the flannel "
            f"configuration {os.path.basename(f.path)}, so pods get addresses from {nets}"
        )
        objects.append(f.path)
        fix = (f"remove {first.path} (left by another runtime), or rename {f.path} to sort first "
               f"(e.g. {os.path.join(node.net_dir, '00-' + os.path.basename(f.path))})")
    else:
        fix = ""
    by_bridge: dict[str, list[Network]] = {}
    for n in all_nets:
        if n.bridge:
            by_bridge.setdefault(n.bridge, []).append(n)
    for bridge, nets in sorted(by_bridge.items()):
        subnets = {tuple(_subnets(n)) for n in nets if _subnets(n)}
        if len(subnets) > 1:
            listed = "; ".join(
                f"{os.path.basename(n.path)}: {', '.join(_subnets(n))}" for n in nets
            )
            problems.append(f"bridge {bridge} is used with different subnets ({listed})")
            objects += [n.path for n in nets]
            fix = fix or "give each configuration its own bridge name, or remove the unused one"
    if not problems:
        note = ""
        if node.only is not None and node.only != first.conf.name:
            note = f"; --network {node.only} is not the one a runtime picks"
        return ok("conf.winner", f"a runtime uses {winner}{note}", objects)
    return Check("conf.winner", WARN, f"a runtime uses {winner}, but " + "; ".join(problems),
                 fix, objects)


def _version_info(node: Node, path: str, cni_version: str) -> list[str]:
    """The versions the plugin at `path` answers VERSION with; CNIError when it cannot say."""
    env = dict(node.env)
    env.update(CNI_COMMAND="VERSION", CNI_PATH=os.pathsep.join(node.cni_path),
               CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="", CNI_ARGS="")
    stdin = json.dumps({"cniVersion": cni_version or "0.1.0"}).encode()
    return decode_version_info(exec_plugin(path, env, stdin))


def _plugin_types(net: Network) -> list[tuple[str, str]]:
    """(type, role) of every executable a network's ADD needs, the delegates included."""
    out = [(t, "plugin") for t in net.types]
    for plugin in net.conf.plugins:
        ipam = plugin.conf.get("ipam")
        if (
            isinstance(ipam, dict)
            and isinstance(ipam.get("type"), str)
            and plugin.type != "flannel"
        ):
            out.append((ipam["type"], f"ipam of {plugin.type}"))
    if net.delegate is not None:
        out.append((str(net.delegate.get("type")), "flannel's delegate"))
        ipam = net.delegate.get("ipam") or {}
        out.append((str(ipam.get("type", "host-local")), "ipam of flannel's delegate"))
    elif net.flannel is not None:
        delegate = net.flannel.delegate or {}
        out.append((str(delegate.get("type", "bridge")), "flannel's delegate"))
        ipam_type = (net.flannel.ipam or {}).get("type", "host-local")
        out.append((str(ipam_type), "ipam of flannel's delegate"))
    seen: set[str] = set()
    return [(t, r) for t, r in out if not (t in seen or seen.add(t))]


def check_plugins(node: Node) -> Check:
    """Every plugin type of every configuration (delegates too) is on CNI_PATH and its VERSION
    supports the configuration's cniVersion."""
    if not node.networks:
        return ok("conf.plugins",
                  f"no loadable network configuration in {node.net_dir}: nothing to check")
    path_text = os.pathsep.join(node.cni_path)
    versions: dict[str, list[str] | str] = {}
    missing: list[str] = []
    unsupported: list[str] = []
    objects: list[str] = []
    found = 0
    for net in node.networks:
        for ptype, role in _plugin_types(net):
            where = f'{role} "{ptype}" of network "{net.name}"'
            try:
                path = find_in_path(ptype, node.cni_path)
            except CNIError:
                missing.append(where)
                objects.append(ptype)
                continue
            found += 1
            if path not in versions:
                try:
                    versions[path] = _version_info(node, path, net.conf.cni_version)
                except CNIError as e:
                    versions[path] = e.msg
            info = versions[path]
            if isinstance(info, str):
                unsupported.append(f"{path} does not answer VERSION ({info})")
                objects.append(path)
            elif net.conf.cni_version and net.conf.cni_version not in info:
                unsupported.append(
                    f"{path} does not support cniVersion {net.conf.cni_version} of network "
                    f'"{net.name}" (it speaks {", ".join(info)})'
                )
                objects.append(path)
    if missing:
        return Check(
            "conf.plugins", FAIL,
            f"not found in CNI_PATH {path_text}: " + "; ".join(missing)
            + " (pods fail at ADD, and at DEL their deletion blocks)",
            f"install {', '.join(sorted(set(objects)))} into "
            f"{node.cni_path[0] if node.cni_path else '/opt/cni/bin'}",
            objects,
        )
    if unsupported:
        return Check("conf.plugins", FAIL, "; ".join(unsupported),
                     "install a plugin release that speaks the configuration's cniVersion, "
                     "or lower cniVersion in the configuration", objects)
    return ok("conf.plugins",
              f"{found} plugin(s) found in {path_text}, each supporting its configuration's "
              "cniVersion",
              sorted(versions))


CHECKS = [check_parse, check_winner, check_plugins]

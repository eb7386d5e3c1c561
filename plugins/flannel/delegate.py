"""The delegate configuration flannel hands to bridge (docs/flannel-behaviour.md §3), and where it
is kept.

`build()` generates it exactly as the reference does; `encode()` serialises it as Go's
json.Marshal does (map keys sorted, route objects in libcni's field order), so the file saved
under `<dataDir>/<containerID>` is byte-identical to the reference's. Files are written
atomically (`cni.fileutil`); files written by the reference are plain JSON and read the same.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from cni import fileutil
from cni.errors import ERR_INTERNAL, ERR_INVALID_NETWORK_CONFIG, CNIError, one_line, os_error_text
from cni.gocompat.decode import go_validate
from cni.gocompat.json import Struct, json_kind, marshal
from cni.result.models import Route
from cni.validate import safe_file_component
from plugins.flannel.config import Settings
from plugins.flannel.subnet import SubnetEnv


def validate_user_delegate(delegate: dict[str, Any] | None) -> None:
    """The reference's checks on the user's `delegate` map, in its order and wording; CNIError 7."""
    if delegate is None:
        return
    if "type" in delegate and not isinstance(delegate["type"], str):
        raise CNIError(
            ERR_INVALID_NETWORK_CONFIG,
            "'delegate' dictionary, if present, must have (string) 'type' field",
        )
    if "name" in delegate:
        raise CNIError(
            ERR_INVALID_NETWORK_CONFIG,
            "'delegate' dictionary must not have 'name' field, it'll be set by flannel",
        )
    if "ipam" in delegate:
        raise CNIError(
            ERR_INVALID_NETWORK_CONFIG,
            "'delegate' dictionary must not have 'ipam' field, it'll be set by flannel",
        )


def _user_routes(ipam: dict[str, Any]) -> list[Struct]:
    """`ipam.routes` decoded as libcni's Route (unknown per-route keys dropped), in struct order."""
    if "routes" not in ipam or ipam["routes"] is None:
        return []
    raw = ipam["routes"]

    def fail(reason: str) -> CNIError:
        return CNIError(
            ERR_INVALID_NETWORK_CONFIG,
            "failed to assemble Delegate IPAM: failed to read IPAM routes: "
            f"failed to parse ipam.routes: {one_line(reason)}",
        )

    if not isinstance(raw, list):
        raise fail(f"json: cannot unmarshal {json_kind(raw)} into Go value of type []types.Route")
    out: list[Struct] = []
    for item in raw:
        if item is None:
            item = {}
        if not isinstance(item, dict):
            raise fail(
                f"json: cannot unmarshal {json_kind(item)} into Go value of type types.route"
            )
        try:
            route = go_validate(Route, item, "route")
        except CNIError as e:
            raise fail(e.msg) from None
        except ValueError as e:
            raise fail(str(e)) from None
        out.append(Struct(route.to_dict()))
    return out


def build(conf: Settings, env: SubnetEnv) -> dict[str, Any]:
    """The delegate configuration for `conf` and `env`, as the reference generates it
    (docs/flannel-behaviour.md §3.2).

    The user's `delegate` keys are kept; `name` and `ipam` are flannel's; `type` defaults to
    bridge, `ipMasq` to the opposite of FLANNEL_IPMASQ, `mtu` to FLANNEL_MTU, `isGateway` to
    true for bridge; a non-empty top-level `cniVersion` and a top-level `runtimeConfig` replace
    the delegate's. Raises CNIError 999 for a bad `delegate` or `ipam.routes`.
    """
    validate_user_delegate(conf.delegate)
    delegate: dict[str, Any] = copy.deepcopy(conf.delegate) if conf.delegate else {}
    if conf.runtimeConfig is not None:
        delegate["runtimeConfig"] = copy.deepcopy(conf.runtimeConfig)
    delegate["name"] = conf.name
    delegate.setdefault("type", "bridge")
    if "ipMasq" not in delegate:
        delegate["ipMasq"] = not env.ipmasq
    if "mtu" not in delegate:
        delegate["mtu"] = env.mtu
    if delegate["type"] == "bridge" and "isGateway" not in delegate:
        delegate["isGateway"] = True
    if conf.cniVersion:
        delegate["cniVersion"] = conf.cniVersion
    delegate["ipam"] = _ipam(conf, env)
    return delegate


def _ipam(conf: Settings, env: SubnetEnv) -> dict[str, Any]:
    ipam: dict[str, Any] = copy.deepcopy(conf.ipam) if conf.ipam else {}
    ipam.setdefault("type", "host-local")
    ipam["ranges"] = env.ranges()
    routes = _user_routes(ipam)
    routes += [Struct(dst=dst) for dst in env.route_dsts()]
    ipam["routes"] = routes
    return ipam


def encode(delegate: dict[str, Any]) -> bytes:
    """The delegate configuration as the reference's json.Marshal writes it (compact, UTF-8)."""
    try:
        return marshal(delegate)
    except (TypeError, ValueError) as e:
        raise CNIError(ERR_INTERNAL, f"error serializing delegate netconf: {one_line(e)}") from None


# --------------------------------------------------------------------------- saved files


def saved_path(data_dir: str, container_id: str) -> str:
    """`<dataDir>/<containerID>`, the reference's file name (the ID is path-safe: skel-checked)."""
    return os.path.join(data_dir, safe_file_component(container_id, "containerID"))


def save(data_dir: str, container_id: str, data: bytes) -> str:
    """Write `data` atomically to `<dataDir>/<containerID>` (dir 0700, file 0600); its path.

    CNIError 999 naming the path when the directory or file cannot be written.
    """
    path = saved_path(data_dir, container_id)
    try:
        fileutil.ensure_dir(data_dir, 0o700)
        fileutil.atomic_write(path, data, 0o600)
    except OSError as e:
        raise CNIError(
            ERR_INTERNAL, f"failed to save delegate config {path}: {os_error_text(e)}"
        ) from None
    return path


def read_saved(path: str) -> bytes | None:
    """The saved bytes at `path`, or None when there is no such file; OSError otherwise."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def parse_saved(data: bytes) -> dict[str, Any] | None:
    """A saved configuration decoded, or None when it is not a usable one (empty, torn, no type)."""
    try:
        conf = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(conf, dict):
        return None
    if not usable_type(conf.get("type")):
        return None
    return conf


def usable_type(plugin_type: object) -> bool:
    """True when `plugin_type` can name an executable on CNI_PATH (a plain, non-empty file name)."""
    return (
        isinstance(plugin_type, str)
        and plugin_type not in ("", ".", "..")
        and "/" not in plugin_type
        and "\x00" not in plugin_type
    )


def remove_saved(path: str) -> None:
    """Remove a saved configuration (absent is fine); CNIError 999 when it cannot be removed."""
    try:
        fileutil.remove(path)
    except OSError as e:
        raise CNIError(ERR_INTERNAL, f"failed to remove {path}: {os_error_text(e)}") from None

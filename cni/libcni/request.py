"""What libcni hands a plugin and how it reads the answers: one attachment's parameters, the
stdin built for each plugin of a list (docs/spec-rules.md §5.4), an ADD's output and a VERSION
reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cni.errors import ERR_DECODING_FAILURE, CNIError
from cni.gocompat import json as gojson

if TYPE_CHECKING:
    from cni.libcni.conflist import PluginConfig

GC_KEY = "cni.dev/valid-attachments"
GC_KEY_LEGACY = "cni.dev/attachments"  # the spec-v1.1.0 tag's spelling; libcni sends both


@dataclass
class RuntimeConf:
    """One attachment's parameters (libcni RuntimeConf).

    `args` become CNI_ARGS (`K=V;K=V`); `capability_args` feed `runtimeConfig` for the
    capabilities a plugin declares.
    """

    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: list[tuple[str, str]] = field(default_factory=list)
    capability_args: dict[str, Any] | None = None


def _reserved(key: str) -> bool:
    return key.lower() == "capabilities" or key == "prevResult" or key.startswith("cni.dev/")


def runtime_config(
    plugin: PluginConfig, capability_args: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The capabilities the plugin declares true and the runtime supplied, with their values."""
    if not capability_args:
        return {}
    return {
        cap: capability_args[cap]
        for cap, enabled in plugin.capabilities.items()
        if enabled and cap in capability_args
    }


def build_request(
    plugin: PluginConfig,
    name: str,
    cni_version: str,
    *,
    prev_result: Mapping[str, Any] | None = None,
    rt: RuntimeConf | None = None,
    gc_attachments: Sequence[tuple[str, str]] | None = None,
) -> bytes:
    """The stdin for one plugin (docs/spec-rules.md §5.4), serialised as libcni does.

    Sets `name` and `cniVersion` (overriding the plugin object's), `prevResult` when given,
    `runtimeConfig` when a capability matches (replacing one from the file; a file's own is
    kept otherwise), and both GC attachment keys when `gc_attachments` is not None.
    """
    conf = {k: v for k, v in plugin.conf.items() if not _reserved(k)}
    conf["name"] = name
    conf["cniVersion"] = cni_version
    if prev_result is not None:
        conf["prevResult"] = dict(prev_result)
    if rt is not None:
        rc = runtime_config(plugin, rt.capability_args)
        if rc:
            conf["runtimeConfig"] = rc
    if gc_attachments is not None:
        listed = [{"containerID": c, "ifname": i} for c, i in gc_attachments]
        conf[GC_KEY] = listed
        conf[GC_KEY_LEGACY] = listed
    return gojson.marshal(conf)


def parse_add_output(stdout: bytes, conf_version: str):
    """An ADD's stdout as a Result (libcni fixupResultVersion + create.Create, in cni.result).

    A result without a (string, non-empty) `cniVersion` is labelled with the request's
    version (0.1.0 when that is empty too); `null` counts as `{}`; empty or non-JSON stdout
    is an error.
    """
    from cni.result import parse_result  # lazy: pydantic (~120 ms), for an ADD's result only

    return parse_result(stdout, conf_version)


def decode_version_info(stdout: bytes) -> list[str]:
    """A VERSION reply's supported versions (libcni PluginDecoder rules,
    docs/spec-rules.md §3.5)."""
    try:
        info = gojson.loads(stdout)
        if not isinstance(info, dict):
            raise ValueError(f"json: cannot unmarshal {gojson.kind(info)} into Go value")
    except ValueError as e:
        raise CNIError(ERR_DECODING_FAILURE, f"decoding version info: {e}") from None
    cni_version = info.get("cniVersion")
    supported = info.get("supportedVersions")
    if cni_version is not None and not isinstance(cni_version, str):
        raise CNIError(ERR_DECODING_FAILURE, "decoding version info: cniVersion is not a string")
    if supported is not None and (
        not isinstance(supported, list) or not all(isinstance(v, str) for v in supported)
    ):
        raise CNIError(
            ERR_DECODING_FAILURE,
            "decoding version info: supportedVersions is not a list of strings",
        )
    if not cni_version:
        raise CNIError(ERR_DECODING_FAILURE, "decoding version info: missing field cniVersion")
    if not supported:
        if cni_version == "0.2.0":
            return ["0.1.0", "0.2.0"]
        raise CNIError(
            ERR_DECODING_FAILURE, "decoding version info: missing field supportedVersions"
        )
    return list(supported)

"""Spec versions: parsing, comparison, the supported list and the gating matrix
(docs/spec-rules.md §2.3, §3.8)."""

from __future__ import annotations

import json

from cni.errors import (
    ERR_DECODING_FAILURE,
    ERR_INCOMPATIBLE_CNI_VERSION,
    CNIError,
    one_line,
)

# The newest spec version: the one place that names it (tests/test_layering.py keeps it so).
CURRENT = "1.1.0"
ALL = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", CURRENT)
LEGACY = ("0.1.0", "0.2.0")
# The version each later command first appeared in.
SINCE = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}


def parse(version: str) -> tuple[int, int, int]:
    """Parse `1`, `1.2` or `1.2.3` into (major, minor, micro); "" is 0.1.0.

    Raises CNIError code 6 with the reference's wording for anything else.
    """
    if not isinstance(version, str):
        raise CNIError(ERR_DECODING_FAILURE, f"invalid version {version!r}")
    if version == "":
        version = "0.1.0"
    parts = version.split(".")
    if len(parts) >= 4:
        raise CNIError(
            ERR_DECODING_FAILURE, one_line(f'invalid version "{version}": too many parts')
        )
    nums = []
    for p in parts:
        if not p.isascii() or not p.isdigit():
            raise CNIError(
                ERR_DECODING_FAILURE, one_line(f'failed to convert version "{version}" to integer')
            )
        nums.append(int(p))
    while len(nums) < 3:
        nums.append(0)
    return nums[0], nums[1], nums[2]


def greater_than_or_equal(version: str, other: str) -> bool:
    """True when `version` >= `other`; raises CNIError 6 when either does not parse."""
    return parse(version) >= parse(other)


def starting_from(min_version: str) -> list[str]:
    """Every known version >= min_version, in ascending order."""
    lo = parse(min_version)
    return [v for v in ALL if parse(v) >= lo]


def config_version(conf: dict) -> str:
    """The config's `cniVersion` ("" when absent); code 6 when it is not a string."""
    v = conf.get("cniVersion", "")
    if v is None:
        return ""
    if not isinstance(v, str):
        # Imported on the error path only: this module is on every start-up path.
        from cni.gocompat.json import json_kind

        raise CNIError(
            ERR_DECODING_FAILURE,
            f"decoding version from network config: json: cannot unmarshal {json_kind(v)} "
            "into Go struct field .cniVersion of type string",
        )
    return v


def incompatible(version: str, supported: tuple[str, ...] | list[str]) -> CNIError:
    """The reference's code-1 error for a version the plugin does not list."""
    listed = " ".join(f'"{v}"' for v in supported)
    return CNIError(
        ERR_INCOMPATIBLE_CNI_VERSION,
        "incompatible CNI versions",
        f'config is "{version}", plugin supports [{listed}]',
    )


def check_command(command: str, version: str, supported: tuple[str, ...] | list[str]) -> None:
    """Apply the skel's gate for `command` to the config `version` (docs/spec-rules.md §3.8).

    ADD/DEL need exact membership (empty means 0.1.0). CHECK needs 0.4.0+, STATUS and GC 1.1.0+,
    checked against the config and then against the plugin's list.
    """
    effective = version or "0.1.0"
    minimum = SINCE.get(command)
    if minimum is not None:
        if not greater_than_or_equal(effective, minimum):
            raise CNIError(ERR_INCOMPATIBLE_CNI_VERSION, f"config version does not allow {command}")
        if not any(greater_than_or_equal(v, effective) for v in supported):
            raise CNIError(ERR_INCOMPATIBLE_CNI_VERSION, f"plugin version does not allow {command}")
    if effective not in supported:
        raise incompatible(effective, supported)


def version_reply(stdin_conf: dict | None, supported: tuple[str, ...] | list[str]) -> str:
    """The VERSION answer: echoes the request's cniVersion when given, else 1.1.0; with newline."""
    v = CURRENT
    if isinstance(stdin_conf, dict) and isinstance(stdin_conf.get("cniVersion"), str):
        if stdin_conf["cniVersion"]:
            v = stdin_conf["cniVersion"]
    return (
        json.dumps({"cniVersion": v, "supportedVersions": list(supported)}, separators=(",", ":"))
        + "\n"
    )

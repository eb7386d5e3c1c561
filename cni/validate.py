"""Validation of names exactly as the reference does it (docs/spec-rules.md §1.3)."""

from __future__ import annotations

import re

from cni.errors import (
    ERR_INVALID_ENVIRONMENT_VARIABLES,
    ERR_INVALID_NETWORK_CONFIG,
    ERR_UNKNOWN_CONTAINER,
    CNIError,
    one_line,
)

_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z")


def container_id(cid: str) -> None:
    """Accept a container ID matching ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$; CNIError 3 when empty, 4
    otherwise."""
    if cid == "":
        raise CNIError(ERR_UNKNOWN_CONTAINER, "missing containerID")
    if not isinstance(cid, str) or not _NAME_RE.match(cid):
        raise CNIError(
            ERR_INVALID_ENVIRONMENT_VARIABLES, "invalid characters in containerID", str(cid)
        )


def network_name(name: str) -> None:
    """Accept a network name with the container-ID charset; CNIError 7 otherwise."""
    if name == "" or name is None:
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, "missing network name:")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise CNIError(
            ERR_INVALID_NETWORK_CONFIG, "invalid characters found in network name", str(name)
        )


def interface_name(ifname: str) -> None:
    """Accept a Linux interface name: 1-15 bytes, not . or .., no / : or whitespace; CNIError 4
    otherwise."""
    if ifname == "":
        raise CNIError(ERR_INVALID_ENVIRONMENT_VARIABLES, "interface name is empty")
    if len(ifname.encode("utf-8", "surrogateescape")) > 15:
        raise CNIError(
            ERR_INVALID_ENVIRONMENT_VARIABLES,
            "interface name is too long",
            "interface name should be less than 16 characters",
        )
    if ifname in (".", ".."):
        raise CNIError(ERR_INVALID_ENVIRONMENT_VARIABLES, "interface name is . or ..")
    if any(c in "/:" or c.isspace() or c == "\x00" for c in ifname):
        raise CNIError(
            ERR_INVALID_ENVIRONMENT_VARIABLES,
            "interface name contains / or : or whitespace characters",
        )


def utf8_name(value: str, what: str, code: int = ERR_INVALID_ENVIRONMENT_VARIABLES) -> str:
    """Return `value` when it is valid UTF-8 text (the kernel and the firewall tools are handed it
    as such); CNIError `code` naming it otherwise. A value from the environment or a file that
    held bytes which are not UTF-8 arrives with surrogate escapes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        from cni.gocompat.json import quote  # error path only: ~3 ms on every call otherwise

        raise CNIError(code, f"{what} {quote(value)} is not valid UTF-8") from None
    return value


def safe_file_component(value: str, what: str, code: int = ERR_INVALID_NETWORK_CONFIG) -> str:
    """Return `value` when it can be used as one file name inside a state directory.

    Rejects empty names, `.`/`..`, path separators, NUL and names over 255 bytes, so that no
    crafted ID or name can escape the directory it is joined to.
    """
    if (
        not isinstance(value, str)
        or value in ("", ".", "..")
        or "/" in value
        or "\x00" in value
        or len(value.encode("utf-8", "surrogateescape")) > 255
    ):
        raise CNIError(code, f"invalid {what} {one_line(repr(value))}: not a safe file name")
    return value


def path_problem(path: str) -> str | None:
    """Why `path` (a state path from a configuration or the environment) is unsafe, or None.

    Refused: NUL, a `..` component (it could climb out of the intended tree), a component over
    255 bytes, or a path of PATH_MAX (4096) bytes or more. Absolute and relative paths are both
    accepted, as the reference accepts them.
    """
    if "\x00" in path:
        return "contains NUL"
    raw = path.encode("utf-8", "surrogateescape")
    if len(raw) >= 4096:
        return "longer than PATH_MAX"
    parts = raw.split(b"/")
    if b".." in parts:
        return "has a '..' component"
    if any(len(p) > 255 for p in parts):
        return "has a component longer than 255 bytes"
    return None


def safe_path(path: str, what: str, code: int = ERR_INVALID_NETWORK_CONFIG) -> str:
    """Return `path` when `path_problem` finds nothing; else CNIError `code` naming it, on one
    line."""
    problem = path_problem(path)
    if problem is not None:
        raise CNIError(code, f"invalid {what} {one_line(repr(path))}: {problem}")
    return path

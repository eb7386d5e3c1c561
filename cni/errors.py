"""CNI errors: one exception type and the well-known codes (docs/spec-rules.md §2)."""

from __future__ import annotations

import os

ERR_UNKNOWN = 0
ERR_INCOMPATIBLE_CNI_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENVIRONMENT_VARIABLES = 4
ERR_IO_FAILURE = 5
ERR_DECODING_FAILURE = 6
ERR_INVALID_NETWORK_CONFIG = 7
ERR_INVALID_NETNS = 8
ERR_TRY_AGAIN_LATER = 11
ERR_PLUGIN_NOT_AVAILABLE = 50
ERR_LIMITED_CONNECTIVITY = 51
ERR_INTERNAL = 999


class CNIError(Exception):
    """A CNI error: `code`, `msg` and optional `details`, printed as the error JSON."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = int(code)
        self.msg = str(msg)
        self.details = str(details) if details else ""

    def __str__(self) -> str:
        """The reference text form: msg, or `msg; details`."""
        return f"{self.msg}; {self.details}" if self.details else self.msg

    def __repr__(self) -> str:
        return f"CNIError({self.code}, {self.msg!r}, {self.details!r})"

    def to_dict(self, cni_version: str | None = None) -> dict:
        """The error object, keys in the reference order; `cniVersion` first when given."""
        out: dict = {}
        if cni_version:
            out["cniVersion"] = cni_version
        out["code"] = self.code
        out["msg"] = self.msg
        if self.details:
            out["details"] = self.details
        return out

    def to_json(self, cni_version: str | None = None) -> str:
        """The error JSON as the skel prints it: 4-space indent, no trailing newline, Go escapes."""
        from cni.gocompat.json import marshal_indent  # error path only: ~3 ms otherwise

        return marshal_indent(self.to_dict(cni_version))

    @classmethod
    def from_dict(cls, obj: dict) -> CNIError:
        """Build from a decoded error object; raises ValueError when it is not one."""
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("code"), int)
            or isinstance(obj.get("code"), bool)
        ):
            raise ValueError("not a CNI error object")
        msg = obj.get("msg", "")
        details = obj.get("details", "")
        if not isinstance(msg, str) or not isinstance(details, str):
            raise ValueError("not a CNI error object")
        return cls(obj["code"], msg, details)


def os_error_text(err: OSError) -> str:
    """An OSError's text as Go prints the syscall.Errno: strerror with a lower-case first letter.

    ("no such file or directory", "permission denied"). An OSError without an errno (not one
    the OS raised) gives its own str().
    """
    if not err.errno:
        return str(err)
    return errno_text(err.errno)


def errno_text(code: int) -> str:
    """Go's text for a syscall.Errno: strerror with a lower-case first letter."""
    text = os.strerror(code)
    return text[:1].lower() + text[1:]


def one_line(text: object, limit: int = 300) -> str:
    """`text` as one printable line of at most `limit` characters, for naming bad values."""
    s = str(text).replace("\r", "\\r").replace("\n", "\\n").replace("\x00", "\\x00")
    return s if len(s) <= limit else s[: limit - 3] + "..."

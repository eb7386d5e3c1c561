"""Sysctls through /proc/sys, slash notation only (interface names may contain dots)."""

from __future__ import annotations


def read(name: str) -> str:
    """The value of /proc/sys/<name> without its trailing newline."""
    with open("/proc/sys/" + name) as f:
        value = f.read()
    return value[:-1] if value.endswith("\n") else value


def write(name: str, value: str) -> None:
    """Write `value` to /proc/sys/<name>, skipping the write when it already holds that value."""
    path = "/proc/sys/" + name
    try:
        if read(name) == value:
            return
    except OSError:
        pass
    with open(path, "w") as f:
        f.write(value)

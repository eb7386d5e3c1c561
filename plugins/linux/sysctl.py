"""Sysctls through /proc/sys, slash notation only (interface names may contain dots), and
every knob the plugins turn: forwarding, router advertisements, neighbour announcements,
IPv6 on a pod's links, route_localnet for portmap.

Knobs of a pod's links are written from a thread inside the pod's network namespace
(`cni.netns.in_netns`): /proc/sys/net shows the namespace of the thread that opens it.
"""

from __future__ import annotations

import sys

from plugins.linux.netlink import errno_text


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


def sysctl_quiet(name: str, value: str) -> None:
    """Write a sysctl (slash notation), ignoring failures, as the reference does for
    best-effort knobs."""
    try:
        write(name, value)
    except OSError:
        pass


def disable_accept_ra(ifname: str) -> None:
    """`net/ipv6/conf/<if>/accept_ra = 0` (we own this link's routes); errors ignored."""
    sysctl_quiet(f"net/ipv6/conf/{ifname}/accept_ra", "0")


def enable_ip_forward(version: int) -> None:
    """Enable IPv4 (`net/ipv4/ip_forward`) or IPv6 (`net/ipv6/conf/all/forwarding`) forwarding.

    Skipped when already 1; raises OSError when the write fails.
    """
    name = "net/ipv4/ip_forward" if version == 4 else "net/ipv6/conf/all/forwarding"
    write(name, "1")


def configure_announcements(ifname: str, enable_dad: bool) -> None:
    """Container-side neighbour knobs of the reference, errors ignored (call inside the pod netns).

    `arp_notify=1` makes the kernel send gratuitous ARP when the link comes up or its address
    changes, so neighbours learn the new MAC at once. IPv6 duplicate address detection is off
    (`accept_dad=0`) unless `enable_dad`, which sets `enhanced_dad=1` and `accept_dad=1`.
    """
    if enable_dad:
        sysctl_quiet(f"net/ipv6/conf/{ifname}/enhanced_dad", "1")
        sysctl_quiet(f"net/ipv6/conf/{ifname}/accept_dad", "1")
    else:
        sysctl_quiet(f"net/ipv6/conf/{ifname}/accept_dad", "0")
    sysctl_quiet(f"net/ipv4/conf/{ifname}/arp_notify", "1")


def prepare_ipv6(ifname: str) -> None:
    """Before the first IPv6 address (inside the pod netns): IPv6 on for `lo` and `ifname`,
    `keep_addr_on_down=1` on `ifname` (upstream 3d27709f). Raises RuntimeError with the
    reference's text when a write fails; an unreadable value is reported on stderr and skipped.
    """
    for name in ("lo", ifname):
        key = f"net/ipv6/conf/{name}/disable_ipv6"
        try:
            value = read(key)
        except OSError as e:
            sys.stderr.write(
                f'ipam_linux: failed to read sysctl "{key}": {errno_text(e)}\n')
            continue
        if value == "0":
            continue
        try:
            write(key, "0")
        except OSError as e:
            raise RuntimeError(
                f'failed to enable IPv6 for interface "{name}" ({key}={value}): {errno_text(e)}'
            ) from None
    try:
        write(f"net/ipv6/conf/{ifname}/keep_addr_on_down", "1")
    except OSError as e:
        raise RuntimeError(
            f'failed to enable keep_addr_on_down for interface "{ifname}": {errno_text(e)}'
        ) from None


def enable_route_localnet(ifname: str) -> None:
    """`net/ipv4/conf/<if>/route_localnet = 1` (portmap's DNAT to 127.0.0.0/8 from outside);
    raises OSError when the write fails."""
    write(f"net/ipv4/conf/{ifname}/route_localnet", "1")

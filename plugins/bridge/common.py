"""What the bridge's verbs share: the internal-error constructor, the CNI_IFNAME check, the pod
netns socket, the rollback stack of a failing ADD, and the rule for which bridge addresses keep
a gateway off it."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from cni.errors import ERR_INTERNAL, CNIError
from cni.gocompat.json import quote
from cni.validate import utf8_name
from plugins.linux import addr, netlink, rtnl

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from plugins.linux.addr import IPInterface
    from plugins.linux.link import Link
    from plugins.linux.rtnl import RtnlSocket


def internal(msg: str) -> CNIError:
    """A CNIError with code 999 (internal) and `msg`, as the reference's plain errors."""
    return CNIError(ERR_INTERNAL, msg)


@contextmanager
def refused(prefix: str, error: Callable[[str], Exception] = internal) -> Iterator[None]:
    """Run the block; a netlink refusal in it is raised as `error(prefix + <Go's errno text>)`
    (CNIError 999 by default), the reference's way of wrapping a failed kernel request."""
    try:
        yield
    except netlink.netlink_error() as e:
        raise error(prefix + netlink.errno_text(e)) from None


def add_gateway_address(host: RtnlSocket, target: Link, gw: IPInterface) -> None:
    """Put `gw` on `target`; already there is fine. RuntimeError with the reference's text when
    the kernel refuses."""
    try:
        addr.add_address(host, target.index, gw)
    except netlink.netlink_error() as e:
        if netlink.errno_of(e) != netlink.EEXIST:
            raise RuntimeError(
                f'could not add IP address {gw} to "{target.name}": {netlink.errno_text(e)}'
            ) from None


def ifname_utf8(ifname: str) -> None:
    """CNIError 4 when CNI_IFNAME is not UTF-8 text (the kernel is handed it as such)."""
    utf8_name(ifname, "interface name")


def open_pod(netns: str) -> RtnlSocket:
    """An rtnetlink socket in the pod netns at `netns`; CNIError 999 naming the path when it
    is not a usable netns. The caller closes it."""
    try:
        return rtnl.iproute_in(netns)
    except CNIError as e:
        raise internal(f"failed to open netns {quote(netns)}: {e.msg}") from None


class Undo:
    """Compensating actions for a failing ADD, run in reverse order, best effort."""

    def __init__(self) -> None:
        self._steps: list[Callable[[], object]] = []

    def push(self, step: Callable[[], object]) -> None:
        """Remember `step`, to be run (before the steps pushed earlier) by `run`."""
        self._steps.append(step)

    def run(self) -> None:
        """Run every remembered step, newest first; a step that fails does not stop the rest."""
        while self._steps:
            step = self._steps.pop()
            try:
                step()
            except Exception:  # noqa: BLE001 - rollback must go on; the original error wins
                pass


def conflicting(addresses: list[IPInterface], gw: IPInterface) -> list[IPInterface]:
    """The addresses among `addresses` that keep `gw` off the bridge, by the reference's rule:
    any other IPv4 address, or an IPv6 address whose subnet overlaps gw's."""
    out = []
    for a in addresses:
        if a == gw or a.version != gw.version:
            continue
        overlap = a.network.overlaps(gw.network) and (gw.ip in a.network or a.ip in gw.network)
        if gw.version == 4 or overlap:
            out.append(a)
    return out

"""loopback: bring `lo` up in the container's namespace (docs/reference-behaviour.md §4).

CNI_IFNAME is validated by the skel but otherwise ignored, as in the reference: this plugin
always works on `lo`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cni import __version__
from cni.errors import ERR_INTERNAL, CNIError
from cni.netns import NetnsNotFoundError, in_netns
from cni.skel import CmdArgs, Plugin
from cni.version import CURRENT
from plugins.linux.addr import list_addresses
from plugins.linux.link import get_link, set_down, set_up
from plugins.linux.netlink import AF_INET, AF_INET6
from plugins.linux.rtnl import iproute

if TYPE_CHECKING:
    from cni.result import Result
    from plugins.linux.rtnl import RtnlSocket


def _lo_index(ipr: RtnlSocket) -> int:
    found = get_link(ipr, name="lo")
    if found is None:
        raise CNIError(ERR_INTERNAL, "failed to find loopback interface: Link not found")
    return found.index


def _loopback_addresses(ipr: RtnlSocket, index: int) -> tuple[str | None, str | None]:
    """The first IPv4 and IPv6 address of lo, refusing any that is not a loopback address."""
    first: dict[int, str] = {}
    for family in (AF_INET, AF_INET6):
        for found in list_addresses(ipr, index, family):
            if not found.iface.ip.is_loopback:
                raise CNIError(
                    ERR_INTERNAL,
                    f'loopback interface found with non-loopback address "{found.iface.ip}"',
                )
            first.setdefault(family, str(found.iface))
    return first.get(AF_INET), first.get(AF_INET6)


def cmd_add(args: CmdArgs) -> Result:
    """Set lo up inside CNI_NETNS; return the prevResult, or lo and its loopback addresses."""
    # the result models load pydantic (tens of ms): only ADD needs them, VERSION must not pay
    from cni.result import Interface, IPConfig, new_result, parse_prev_result

    prev = parse_prev_result(args.config)
    with in_netns(args.netns):
        with iproute() as ipr:
            index = _lo_index(ipr)
            set_up(ipr, index)
            v4, v6 = _loopback_addresses(ipr, index)
    if prev is not None:
        return prev
    ips = [IPConfig(address=a, interface=0) for a in (v4, v6) if a]
    # Quirk kept from the reference: the 1.x-shaped result is labelled with the config's own
    # version, so 0.2.0-0.4.0 callers get `interfaces`/`ips` and no conversion happens.
    version = args.cni_version or "0.1.0"
    result = new_result(
        CURRENT,
        interfaces=[Interface(name="lo", mac="00:00:00:00:00:00", sandbox=args.netns)],
        ips=ips,
    )
    if args.cni_version:
        result.cni_version = version
    return result


def cmd_del(args: CmdArgs) -> None:
    """Set lo down; an empty or vanished CNI_NETNS is success, a path that is no netns is not."""
    if not args.netns:
        return
    try:
        with in_netns(args.netns):
            with iproute() as ipr:
                set_down(ipr, _lo_index(ipr))
    except NetnsNotFoundError:
        return  # only entering raises this: the namespace is already gone


def cmd_check(args: CmdArgs) -> None:
    """Fail unless lo is up inside CNI_NETNS."""
    with in_netns(args.netns):
        with iproute() as ipr:
            link = get_link(ipr, index=_lo_index(ipr))
            if link is None or not link.up:
                raise CNIError(ERR_INTERNAL, "loopback interface is down")


PLUGIN = Plugin(
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    about=f"CNI loopback plugin {__version__} (pycni)",
)

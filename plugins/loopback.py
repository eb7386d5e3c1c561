"""loopback: bring `lo` up in the container's namespace (docs/reference-behaviour.md §4).

CNI_IFNAME is validated by the skel but otherwise ignored, as in the reference: this plugin
always works on `lo`.
"""

from __future__ import annotations

from cni import __version__
from cni.errors import ERR_INTERNAL, CNIError
from cni.skel import CmdArgs, Plugin
from cni.version import CURRENT


def _iproute():
    from plugins.linux.netlink import iproute

    return iproute()


def _lo_index(ipr) -> int:
    found = ipr.link_lookup(ifname="lo")
    if not found:
        raise CNIError(ERR_INTERNAL, "failed to find loopback interface: Link not found")
    return found[0]


def _loopback_addresses(ipr, index: int) -> tuple[str | None, str | None]:
    """The first IPv4 and IPv6 address of lo, refusing any that is not a loopback address."""
    import ipaddress

    first: dict[int, str] = {}
    for family in (2, 10):
        for msg in ipr.get_addr(index=index, family=family):
            addr = msg.get("address")
            if addr is None:
                continue
            if not ipaddress.ip_address(addr).is_loopback:
                raise CNIError(
                    ERR_INTERNAL, f'loopback interface found with non-loopback address "{addr}"'
                )
            first.setdefault(family, f"{addr}/{msg['prefixlen']}")
    return first.get(2), first.get(10)


def cmd_add(args: CmdArgs):
    """Set lo up inside CNI_NETNS; return the prevResult, or lo and its loopback addresses."""
    from cni.netns import in_netns
    from cni.result import parse_prev_result

    prev = parse_prev_result(args.config)
    with in_netns(args.netns):
        with _iproute() as ipr:
            index = _lo_index(ipr)
            ipr.link("set", index=index, state="up")
            v4, v6 = _loopback_addresses(ipr, index)
    if prev is not None:
        return prev
    from cni.result import Interface, IPConfig, new_result

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
    from cni.netns import NetnsNotFoundError, in_netns

    if not args.netns:
        return
    try:
        with in_netns(args.netns):
            with _iproute() as ipr:
                ipr.link("set", index=_lo_index(ipr), state="down")
    except NetnsNotFoundError:
        return  # only entering raises this: the namespace is already gone


def cmd_check(args: CmdArgs) -> None:
    """Fail unless lo is up inside CNI_NETNS."""
    from cni.netns import in_netns

    with in_netns(args.netns):
        with _iproute() as ipr:
            link = ipr.get_links(_lo_index(ipr))[0]
            if not link["flags"] & 1:  # IFF_UP
                raise CNIError(ERR_INTERNAL, "loopback interface is down")


PLUGIN = Plugin(
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    about=f"CNI loopback plugin {__version__} (pycni)",
)


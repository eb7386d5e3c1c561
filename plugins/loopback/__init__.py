"""loopback: bring `lo` up in the container's namespace (docs/reference-behaviour.md §4).

CNI_IFNAME is validated by the skel but otherwise ignored, as in the reference: this plugin
always works on `lo`. The netlink steps live in `plugins.loopback.lo`.
"""

from __future__ import annotations

from types import ModuleType

from cni import __version__
from cni.skel import CmdArgs, Plugin
from cni.version import CURRENT

TYPE_CHECKING = False  # typing costs ms at start-up; type checkers honour this idiom
if TYPE_CHECKING:
    from cni.result import Result


def _steps() -> ModuleType:
    """The netlink steps, imported by the verbs that use them: a VERSION call (served in
    process when no worker runs) would otherwise load the netlink modules for nothing."""
    from plugins.loopback import lo

    return lo


def cmd_add(args: CmdArgs) -> Result:
    """Set lo up inside CNI_NETNS; return the prevResult, or lo and its loopback addresses."""
    # the result models load pydantic (tens of ms): only ADD needs them, VERSION must not pay
    from cni.result import Interface, IPConfig, new_result, parse_prev_result

    prev = parse_prev_result(args.config)
    v4, v6 = _steps().bring_up(args.netns)
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
    _steps().bring_down(args.netns)


def cmd_check(args: CmdArgs) -> None:
    """Fail unless lo is up inside CNI_NETNS."""
    _steps().check_up(args.netns)


PLUGIN = Plugin(
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    about=f"CNI loopback plugin {__version__} (pycni)",
)

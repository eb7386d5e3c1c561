"""flannel: turn flanneld's subnet.env into a bridge configuration and delegate
(docs/flannel-behaviour.md).

ADD   load the config and subnet.env (waiting `subnetFileWait` seconds for a file flanneld has
      not written yet, then code 11), generate the delegate configuration, save it atomically
      to `<dataDir>/<containerID>`, delegate ADD and return the delegate's result.
DEL   delegate DEL with the saved configuration and remove it only once that succeeded, so a
      retried DEL still releases the lease. When the saved file is missing or unusable and
      subnet.env is readable, the configuration is regenerated and DEL delegated anyway.
CHECK delegate CHECK with the saved configuration and the prevResult.
STATUS code 50 with the ADD diagnostic while subnet.env is missing or invalid (or the delegate
      is not installed); otherwise the delegate's STATUS.
GC    DEL and remove each saved configuration of this network whose container is not among
      the valid attachments, then forward GC to the delegate.

Delegation goes through `cni.invoke`: our own bridge/host-local run in this interpreter, any
other executable on CNI_PATH is executed. The verbs' work is in plugins/flannel/steps.py.
"""

from __future__ import annotations

from cni import __version__
from cni.skel import CmdArgs, plugin_of

TYPE_CHECKING = False  # typing costs ~2 ms to import; type checkers honour this idiom
if TYPE_CHECKING:
    from types import ModuleType

    from cni.result import Result

# The ifname used to DEL a stale attachment during GC: saved files are keyed by container ID
# only (the reference's layout), and Kubernetes pods always attach the cluster network as eth0.
GC_IFNAME = "eth0"


def _steps() -> ModuleType:
    """plugins.flannel.steps, imported on first use."""
    # The one lazy import of this thin main: the steps load pydantic (~120 ms) and the
    # delegation machinery, which VERSION never needs.
    from plugins.flannel import steps

    return steps


def cmd_add(args: CmdArgs) -> Result:
    """Generate and save the delegate configuration, delegate ADD, return the delegate's result."""
    return _steps().add(args)


def cmd_del(args: CmdArgs) -> None:
    """Delegate DEL with the saved (or regenerated) configuration, then remove the saved one."""
    _steps().delete(args)


def cmd_check(args: CmdArgs) -> None:
    """Delegate CHECK with the saved configuration and the prevResult."""
    _steps().check(args)


def cmd_status(args: CmdArgs) -> None:
    """Code 50 while subnet.env or the delegate is unusable; else the delegate's STATUS."""
    _steps().status(args)


def cmd_gc(args: CmdArgs) -> None:
    """Release the saved configurations of containers that are gone, then forward GC."""
    _steps().gc(args, GC_IFNAME)


PLUGIN = plugin_of(globals(), f"CNI Plugin flannel version {__version__} (pycni)")

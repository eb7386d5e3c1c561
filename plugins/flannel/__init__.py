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
from cni.skel import deferred, deferred_plugin

# The ifname used to DEL a stale attachment during GC: saved files are keyed by container ID
# only (the reference's layout), and Kubernetes pods always attach the cluster network as eth0.
GC_IFNAME = "eth0"

# The verbs are plugins.flannel.steps' functions of the same names, imported on a verb's first
# call: the steps load pydantic (~120 ms) and the delegation machinery, which VERSION never needs.
PLUGIN = deferred_plugin(
    "plugins.flannel.steps",
    f"CNI Plugin flannel version {__version__} (pycni)",
    gc=deferred("plugins.flannel.steps", "gc", GC_IFNAME),
)

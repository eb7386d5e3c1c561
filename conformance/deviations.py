"""The one list of expected deviations between the implementations the suite runs against.

Two kinds:

* ``release``: the reference binaries on this machine are v1.1.1; the suite targets upstream
  HEAD (plugins-notes §0.9, spec-notes header). A directory that does not speak spec 1.1.0 is
  held to the v1.1.1 side.
* ``improve``: a deliberate difference of this project from the Go reference (README "Where we
  differ", the [improve] items of the notes). A directory whose executables are not ours is
  held to the reference side.

A case never weakens itself for a deviation: it asks `pick()` which side's outcome to assert,
so the reference must show exactly the listed old behaviour and ours exactly the new one.
Everything not listed here must agree. Each use is counted and shown in the run summary.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

USED: Counter[str] = Counter()
"""How often each deviation picked the old (reference) side in this session."""


@dataclass(frozen=True)
class Deviation:
    """One known difference: `new` is HEAD / ours, `old` is the v1.1.1 / Go reference side."""

    id: str
    kind: str  # "release" or "improve"
    source: str
    summary: str

    def old_side(self, cni: Any) -> bool:
        """True when directory `cni` (a CniDir) is expected to show the old behaviour."""
        if self.kind == "release":
            return not cni.speaks_1_1
        return not cni.is_ours

    def pick(self, cni: Any, *, new: T, old: T) -> T:
        """The outcome `cni` must show: `old` on the reference side of this deviation, else `new`."""
        if self.old_side(cni):
            USED[self.id] += 1
            return old
        return new


_ALL = [
    # ------------------------------------------------------------ release: HEAD vs v1.1.1
    Deviation(
        "R1-result-1x-format",
        "release",
        "plugins-notes §0.3, §0.9 #1",
        "1.x results: HEAD sorts keys and omits an empty dns; v1.1.1 prints struct order and "
        '"dns": {}',
    ),
    Deviation(
        "R2-version-list",
        "release",
        "plugins-notes §0.1, §0.9 #1",
        'VERSION / about: HEAD lists 0.1.0..1.1.0 with "cniVersion":"1.1.0"; v1.1.1 stops at 1.0.0',
    ),
    Deviation(
        "R3-gc-status-verbs",
        "release",
        "plugins-notes §0.1, §0.9 #2",
        "GC and STATUS exist at HEAD (silent success without a handler, gated at 1.1.0, CNI_PATH "
        "required); v1.1.1 answers code 4 `unknown CNI_COMMAND: GC`",
    ),
    Deviation(
        "R4-lease-file-mode",
        "release",
        "plugins-notes §1.5, §0.9 #3, §5 #42",
        "host-local lease and last_reserved_ip files: 0600 at HEAD, 0644 in v1.1.1",
    ),
    Deviation(
        "R5-keep-addr-on-down",
        "release",
        "plugins-notes §0.9 #4, §5 #69",
        "IPv6 container interface: HEAD sets keep_addr_on_down=1, v1.1.1 leaves 0",
    ),
    Deviation(
        "R6-portmap-check-family",
        "release",
        "plugins-notes §0.9 #5, §5 #95",
        "portmap CHECK of a v4-only container: HEAD checks the v4 table only; v1.1.1 also checks "
        "ip6tables and fails `could not check ipv6 dnat: chain CNI-DN-... not found`",
    ),
    Deviation(
        "R7-head-only-config",
        "release",
        "plugins-notes §0.9 #6",
        "HEAD-only keys (bridge vlanTrunk, preserveDefaultVlan, disableContainerInterface, "
        "portIsolation, ipMasqBackend; portmap backend, masqAll) are ignored by v1.1.1",
    ),
    Deviation(
        "R8-message-wording",
        "release",
        "plugins-notes §0.9 #7",
        "v1.1.1 wording: hairpin/promisc message ends with '.', veth-exists message "
        "`container veth name provided (eth0) already exists`, route-add and bridge-address "
        "errors in their older form",
    ),
    Deviation(
        "R9-check-route-text",
        "release",
        "plugins-notes §0.9 #10",
        "route text in bridge CHECK errors: HEAD adds MTU/AdvMSS/Priority/Table/Scope fields",
    ),
    Deviation(
        "R10-own-netns-check",
        "release",
        "spec-notes §1.3, §10 #37 (observed on v1.1.1)",
        "HEAD skel rejects CNI_NETNS equal to the plugin's own netns with code 8; v1.1.1 has no "
        "such check and succeeds",
    ),
    Deviation(
        "R11-ifname-unchecked-verbs",
        "release",
        "spec-notes §10 #17",
        "an invalid CNI_IFNAME is ignored on GC/STATUS at HEAD; the v1.1.1 skel validates it "
        "for every command but VERSION (code 4 before `unknown CNI_COMMAND`)",
    ),
    Deviation(
        "R12-route-extras",
        "release",
        "spec-notes §4.4 (1.1.0 route fields); observed on v1.1.1",
        "route `mtu`, `advmss`, `priority`, `table`, `scope` are kept in results at HEAD; "
        "v1.1.1 (libcni 1.1 types) drops them, e.g. host-local echoes routes without `priority`",
    ),
    Deviation(
        "R13-bridge-ipam-dns",
        "release",
        "plugins-notes §2.3 step 8b / §2.4 (HEAD); observed on v1.1.1",
        "bridge copies the IPAM result's dns into its result at HEAD; v1.1.1 drops it (only a "
        "config `dns` reaches the result)",
    ),
    # ------------------------------------------------------------ improve: ours vs the Go code
    Deviation(
        "I1-error-cniversion",
        "improve",
        "README 'Where we differ'; spec-notes §2.1",
        "error JSON carries `cniVersion` as the spec asks; the Go skel omits it",
    ),
    Deviation(
        "I2-version-echo",
        "improve",
        "README 'Where we differ'",
        "VERSION echoes the request's cniVersion where the Go skel prints its own",
    ),
    Deviation(
        "I3-delegate-del-after-failed-add",
        "improve",
        "spec-notes §6 (ADD: SHOULD run the delegate's DEL when it fails)",
        "when the IPAM delegate's ADD fails, ours runs the delegate's DEL before reporting; the "
        "Go bridge returns the error without it",
    ),
    Deviation(
        "I4-about-text",
        "improve",
        "plugins-notes §0.1",
        "about text names the suite and version (`CNI <p> plugin <v> (pycni)`) instead of "
        "`CNI <p> plugin version unknown`",
    ),
    Deviation(
        "I5-host-local-index",
        "improve",
        "brief: flat cost at scale; ipam/index.py",
        "our host-local keeps an owner index under `<dataDir>/<network>/.pycni-index/` (a cache "
        "of the lease files, never holding lease-like content); the reference has none",
    ),
    Deviation(
        "I6-host-local-gc",
        "improve",
        "spec-notes §3.6, §10 #53-54; flannel-notes §7 #4",
        "our host-local implements GC (frees leases of attachments missing from "
        "cni.dev/valid-attachments); the Go host-local has none (HEAD: silent no-op)",
    ),
]

INDEX_DIR = ".pycni-index"
"""Our host-local's owner index directory inside `<dataDir>/<network>/` (I5)."""

DEVIATIONS: dict[str, Deviation] = {d.id: d for d in _ALL}


def get(dev_id: str) -> Deviation:
    """The deviation with this id (KeyError for an unknown id: a typo must not pass silently)."""
    return DEVIATIONS[dev_id]


def pick(cni: Any, dev_id: str, *, new: T, old: T) -> T:
    """Shorthand for `get(dev_id).pick(cni, new=new, old=old)`."""
    return get(dev_id).pick(cni, new=new, old=old)


def old_side(cni: Any, dev_id: str) -> bool:
    """Shorthand for `get(dev_id).old_side(cni)` (counted as a use when True)."""
    if get(dev_id).old_side(cni):
        USED[dev_id] += 1
        return True
    return False

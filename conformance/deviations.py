"""The one list of expected deviations between the implementations the suite runs against.

Three kinds:

* ``release``: the reference binaries on this machine are v1.1.1; the suite targets the newer
  upstream code named in docs/reference-behaviour.md ("Versions": plugins at commit 3d27709f,
  with containernetworking/cni 3f51e880 for the skel and libcni; the differences are its §0.9).
  A directory that does not speak spec 1.1.0 is held to the v1.1.1 side.
* ``improve``: a deliberate difference of this project from the Go reference (README "Where we
  differ", the [improve] items of docs/flannel-behaviour.md). A directory whose executables are
  not ours is held to the reference side.
* ``limitation``: a known limit of this project that the Go reference does not have (its cause
  lies below our code, e.g. in the Python interpreter's start-up). Like ``improve``, a directory
  whose executables are not ours is held to the reference side; ours is held to exactly what the
  limit produces, asserted as precisely as for any other behaviour.

A case never weakens itself for a deviation: it asks `pick()` which side's outcome to assert,
so the reference must show exactly the listed old behaviour and ours exactly the new one.
Everything not listed here must agree. Each use is counted and shown in the run summary.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

USED: Counter[str] = Counter()
"""How often each deviation picked the old (reference) side in this session."""


@dataclass(frozen=True)
class Deviation:
    """One known difference: `new` is upstream 3d27709f / ours, `old` is the v1.1.1 / Go reference
    side."""

    id: str
    kind: str  # "release", "improve" or "limitation"
    source: str
    summary: str

    def old_side(self, cni: Any) -> bool:
        """True when directory `cni` (a CniDir) is expected to show the old behaviour."""
        if self.kind == "release":
            return not cni.speaks_1_1
        if self.kind in ("improve", "limitation"):
            return not cni.is_ours
        raise ValueError(f"deviation {self.id}: unknown kind {self.kind!r}")

    def pick(self, cni: Any, *, new: T, old: T) -> T:
        """The outcome `cni` must show: `old` on the reference side of this deviation, else
        `new`."""
        if self.old_side(cni):
            USED[self.id] += 1
            return old
        return new


_ALL = [
    # ------------------------------------------------------------ release: upstream 3d27709f vs
    # v1.1.1
    Deviation(
        "R1-result-1x-format",
        "release",
        "docs/reference-behaviour.md §0.3, §0.9 #1",
        "1.x results: upstream 3d27709f sorts keys and omits an empty dns; v1.1.1 prints struct "
        'order and "dns": {}',
    ),
    Deviation(
        "R2-version-list",
        "release",
        "docs/reference-behaviour.md §0.1, §0.9 #1",
        'VERSION / about: upstream 3d27709f lists 0.1.0..1.1.0 with "cniVersion":"1.1.0"; '
        "v1.1.1 stops at 1.0.0",
    ),
    Deviation(
        "R3-gc-status-verbs",
        "release",
        "docs/reference-behaviour.md §0.1, §0.9 #2",
        "GC and STATUS exist at upstream 3d27709f (silent success without a handler, gated at "
        "1.1.0, CNI_PATH required); v1.1.1 answers code 4 `unknown CNI_COMMAND: GC`",
    ),
    Deviation(
        "R4-lease-file-mode",
        "release",
        "docs/reference-behaviour.md §1.5, §0.9 #3, P42",
        "host-local lease and last_reserved_ip files: 0600 at upstream 3d27709f, 0644 in v1.1.1",
    ),
    Deviation(
        "R5-keep-addr-on-down",
        "release",
        "docs/reference-behaviour.md §0.9 #4, P69",
        "IPv6 container interface: upstream 3d27709f sets keep_addr_on_down=1, v1.1.1 leaves 0",
    ),
    Deviation(
        "R6-portmap-check-family",
        "release",
        "docs/reference-behaviour.md §0.9 #5, P95",
        "portmap CHECK of a v4-only container: upstream 3d27709f checks the v4 table only; "
        "v1.1.1 also checks ip6tables and fails `could not check ipv6 dnat: chain CNI-DN-... not "
        "found`",
    ),
    Deviation(
        "R7-upstream-only-config",
        "release",
        "docs/reference-behaviour.md §0.9 #6",
        "keys only upstream 3d27709f has (bridge vlanTrunk, preserveDefaultVlan, "
        "disableContainerInterface, portIsolation, ipMasqBackend; portmap backend, masqAll) are "
        "ignored by v1.1.1",
    ),
    Deviation(
        "R8-message-wording",
        "release",
        "docs/reference-behaviour.md §0.9 #7",
        "v1.1.1 wording: hairpin/promisc message ends with '.', veth-exists message "
        "`container veth name provided (eth0) already exists`, route-add and bridge-address "
        "errors in their older form",
    ),
    Deviation(
        "R9-check-route-text",
        "release",
        "docs/reference-behaviour.md §0.9 #10",
        "route text in bridge CHECK errors: upstream 3d27709f adds MTU/AdvMSS/Priority/Table/Scope "
        "fields",
    ),
    Deviation(
        "R10-own-netns-check",
        "release",
        "docs/spec-rules.md §1.3, C37 (observed on v1.1.1)",
        "the cni 3f51e880 skel rejects CNI_NETNS equal to the plugin's own netns with code 8; "
        "v1.1.1 has no such check and succeeds",
    ),
    Deviation(
        "R11-ifname-unchecked-verbs",
        "release",
        "docs/spec-rules.md C17",
        "an invalid CNI_IFNAME is ignored on GC/STATUS by the cni 3f51e880 skel; the v1.1.1 skel "
        "validates it for every command but VERSION (code 4 before `unknown CNI_COMMAND`)",
    ),
    Deviation(
        "R12-route-extras",
        "release",
        "docs/spec-rules.md §4.4 (1.1.0 route fields); observed on v1.1.1",
        "route `mtu`, `advmss`, `priority`, `table`, `scope` are kept in results at upstream "
        "3d27709f; v1.1.1 (libcni 1.1 types) drops them, e.g. host-local echoes routes without "
        "`priority`",
    ),
    Deviation(
        "R13-bridge-ipam-dns",
        "release",
        "docs/reference-behaviour.md §2.3 step 8b / §2.4; observed on v1.1.1",
        "bridge copies the IPAM result's dns into its result at upstream 3d27709f; v1.1.1 drops "
        "it (only a config `dns` reaches the result)",
    ),
    # ------------------------------------------------------------ improve: ours vs the Go code
    Deviation(
        "I1-error-cniversion",
        "improve",
        "README 'Where we differ'; docs/spec-rules.md §2.1",
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
        "docs/spec-rules.md §6 (ADD: SHOULD run the delegate's DEL when it fails)",
        "when the IPAM delegate's ADD fails, ours runs the delegate's DEL before reporting; the "
        "Go bridge returns the error without it",
    ),
    Deviation(
        "I4-about-text",
        "improve",
        "docs/reference-behaviour.md §0.1",
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
        "docs/spec-rules.md §3.6, C53-C54; docs/flannel-behaviour.md §7 #4",
        "our host-local implements GC (frees leases of attachments missing from "
        "cni.dev/valid-attachments); the Go host-local has none (upstream 3d27709f: silent no-op)",
    ),
    Deviation(
        "I7-error-codes",
        "improve",
        "docs/spec-rules.md §2.2 (well-known codes 1-11; 999 is the Go skel's wrapper for "
        "untyped errors)",
        "errors the Go plugins return untyped (code 999) carry the well-known code in ours: 7 "
        "invalid configuration (host-local ranges, 0.2.0 address limit, bridge hairpin+promisc, "
        "VLAN range, bad MAC, portmap markMasqBit), 4 bad CNI_ARGS, 1 prevResult version "
        "mismatch; the message text is the reference's",
    ),
    Deviation(
        "I8-bridge-mtu-range",
        "improve",
        "plugins/bridge/config.py (config errors needing no kernel: code 7, before any change); "
        "docs/flannel-behaviour.md §2.2 [improve] MTU range",
        "bridge refuses an `mtu` outside 0 or 68..65535 before touching the node: code 7 "
        "`invalid MTU N (must be 0 or between 68 and 65535)`; the Go bridge relays the kernel's "
        "EINVAL from link creation (999 `failed to create bridge ...: invalid argument` or "
        "`failed to make veth pair: invalid argument`)",
    ),
    Deviation(
        "I9-portmap-host-port-range",
        "improve",
        "brief: bad input never half-configures the node; plugins/portmap/config.py",
        "portmap refuses a hostPort outside 1..65535 while parsing (code 7 `failed to parse "
        "config: Invalid host port number: N`, no rule written); the Go portmap accepts it and "
        "relays iptables' error (999 `unable to setup DNAT: ...`)",
    ),
    Deviation(
        "I10-json-syntax-message",
        "improve",
        "docs/spec-rules.md §2.3 (code 6 for an undecodable config); our decoder is Python's",
        "undecodable stdin: same code 6 and the same `error unmarshall network config: ` / "
        "`failed to load netconf: ` prefix, then Python's decoder wording (`Expecting value: "
        "line 1 column 1 (char 0)`) instead of Go's (`unexpected end of JSON input`)",
    ),
    Deviation(
        "I11-failed-add-rollback",
        "improve",
        "plugins/bridge/add.py (a failed ADD undoes what it created); docs/reference-behaviour.md "
        "P52-P60, P108",
        "a bridge ADD that fails after creating links undoes them: no host veth, no container "
        "interface, no lease, and a bridge this ADD created is removed (a pre-existing one "
        "stays); the Go bridge leaves bridge, veth pair and container addresses behind",
    ),
    Deviation(
        "I12-host-local-failed-add-writes-nothing",
        "improve",
        "brief: nothing left behind after a failed ADD; docs/reference-behaviour.md P23, P29, P32",
        "a host-local ADD that fails writes nothing: no lease and no `last_reserved_ip.N` "
        "advance; the Go host-local advances (or creates) `last_reserved_ip.N` for addresses it "
        "reserved and then released",
    ),
    Deviation(
        "I15-host-local-exhaustion-counts",
        "improve",
        "docs/self-healing.md (host-local heals what is provably safe); ipam/liveness.py",
        "an exhausted range set first frees the provably dead leases (written in an earlier "
        "boot, or for a CNI_NETNS gone or naming another namespace) and tries again; if it "
        "still fails, the reference's message is followed by `; leases held: N, provably dead: "
        "N, cannot be judged: N (no liveness record or namespace); free dead leases with "
        "`cnitool doctor --fix --network NAME``",
    ),
    Deviation(
        "I16-bridge-readdress",
        "improve",
        "docs/self-healing.md (bridge heals what is provably safe); plugins/bridge/readdress.py",
        "a bridge holding an address of another subnet with no port but the ADD's own is "
        "re-addressed (old address and the routes through it removed, stderr says so) and the "
        "ADD succeeds; with ports attached the reference's `failed to set bridge addr: ...` is "
        "followed by `; ports still attached: <port> (<pod addresses>); fix: ...`",
    ),
    Deviation(
        "I13-masq-del-iface-gone",
        "improve",
        "plugins/bridge/delete.py (DEL removes masquerade rules whatever the pod state); "
        "docs/reference-behaviour.md P65",
        "bridge DEL removes the ipMasq chain and jump even when the container interface is "
        "already gone (ours finds them by chain name and comment); the Go bridge reads the "
        "addresses from the vanished interface and leaks them",
    ),
    Deviation(
        "I14-portmap-del-no-empty-table",
        "improve",
        "docs/reference-behaviour.md P94",
        "portmap DEL of a v4-only attachment leaves the IPv6 side untouched; the Go portmap's "
        "cleanup creates an empty `ip6 nat` table (ip6tables-save shows `*nat` with the base "
        "chains)",
    ),
    # ------------------------------------------------------------ limitation: ours only
    Deviation(
        "L1-stdin-directory",
        "limitation",
        "docs/spec-rules.md C22; CPython Python/pylifecycle.c init_sys_streams",
        "stdin that is a directory: the Python interpreter aborts in its own start-up (`Fatal "
        "Python error: init_sys_streams: <stdin> is a directory`) before any code of ours runs, "
        "so there is no error JSON: non-zero exit, empty stdout, nothing changed; the Go skel "
        "answers code 5 `error reading from stdin: ...`",
    ),
]

EXHAUSTION_COUNTS = re.compile(
    r"; leases held: \d+, provably dead: \d+, cannot be judged: \d+ \(no liveness record or "
    r"namespace\); free dead leases with `cnitool doctor --fix --network [^`]+`$"
)
"""What our host-local adds to the reference's exhaustion message (I15)."""


def exhaustion_counts(held: int, dead: int, unknown: int, network: str) -> str:
    """The text our host-local adds after the reference's exhaustion message (I15)."""
    return (
        f"; leases held: {held}, provably dead: {dead}, cannot be judged: {unknown} "
        f"(no liveness record or namespace); free dead leases with "
        f"`cnitool doctor --fix --network {network}`"
    )


PORTS_ATTACHED = re.compile(r"; ports still attached: .*; fix: [^;]*$")
"""What our bridge adds to the reference's `failed to set bridge addr` message (I16)."""

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

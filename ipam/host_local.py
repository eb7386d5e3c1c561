"""host-local IPAM: addresses from configured ranges, leases as files (docs/reference-behaviour.md
§1).

A drop-in for the reference host-local: same configuration, results, messages and files, so
a node can switch between the two (or run both) without losing a lease. Beyond the
reference: GC frees leases of attachments the runtime no longer knows, STATUS says whether an
address can be handed out, ADD/DEL/CHECK cost the same at any number of leases (owner index,
ipam/index.py), lease files are never visible half-written, and a failed ADD writes nothing.

ADD    lease one address per range set to (CNI_CONTAINERID, CNI_IFNAME) and return them.
DEL    release every lease of (CNI_CONTAINERID, CNI_IFNAME) (legacy ID-only leases when there is
       none). Idempotent; a data directory that does not exist and cannot be created is success.
CHECK  succeed when (CNI_CONTAINERID, CNI_IFNAME) holds a lease, and when every prevResult
       address inside this plugin's ranges is leased to exactly that attachment.
STATUS succeed when an ADD could get an address from every range set; else code 50. Read-only:
       the data directory must exist and be writable (or be creatable), and every range set
       must have a free address. Nothing is created or locked.
GC     free every lease whose holder is not among the valid attachments (spec 1.1.0 GC), from
       `cni.dev/valid-attachments` (or the older `cni.dev/attachments`); null or missing means
       none is valid. A lease file with empty or unreadable owner content is freed too.
       Failures are collected and reported after the whole directory was handled.

The verbs' work is in ipam/steps.py, imported on a verb's first call: it loads pydantic
(~120 ms) and the lease store, which VERSION never needs.
"""

from __future__ import annotations

from cni import __version__
from cni.skel import deferred_plugin

PLUGIN = deferred_plugin("ipam.steps", f"CNI host-local plugin {__version__} (pycni)")

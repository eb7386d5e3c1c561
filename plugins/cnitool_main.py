"""The `cnitool` executable: `cnitool doctor ...` runs the node doctor (plugins/doctor/), every
other command is cni.libcni.cnitool's.

The doctor lives outside cni/ because it reads plugin and IPAM state (flannel's subnet.env and
saved files, host-local leases, firewall rules), and cni/ imports nothing from plugins/ or ipam/.
"""

from __future__ import annotations

import sys
from typing import NoReturn


def main(argv: list[str] | None = None) -> NoReturn:
    """Dispatch on the first argument: `doctor` to plugins.doctor.cli, anything else to cnitool."""
    args = sys.argv[1:] if argv is None else argv
    # One dispatch point, each tool imported only when run: the doctor reads every plugin's
    # modules (pydantic, netlink), which a plain `cnitool add` never needs.
    if args and args[0] == "doctor":
        from plugins.doctor.cli import main as doctor_main

        doctor_main(args[1:])
    from cni.libcni.cnitool import main as cnitool_main

    cnitool_main(args)

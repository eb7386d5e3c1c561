"""The bridge's STATUS: ready when its IPAM plugin (if any) says so."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cni import invoke
from plugins.bridge import config

if TYPE_CHECKING:
    from cni.skel import CmdArgs


def cmd_status(args: CmdArgs) -> None:
    """Ready when the IPAM plugin (if any) says so; its error passes up with its code."""
    conf = config.load(args.config, "").conf
    if conf.ipam_type:
        invoke.delegate_status(conf.ipam_type, args.stdin, args.env)

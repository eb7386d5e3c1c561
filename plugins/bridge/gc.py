"""The bridge's GC (the reference's bridge has none): forward it to the IPAM plugin and drop
the masquerade rules of attachments not in the valid list."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cni import invoke
from cni.config import valid_attachments
from cni.errors import CNIError
from plugins.bridge import config
from plugins.bridge.common import internal
from plugins.linux import ipmasq

if TYPE_CHECKING:
    from cni.skel import CmdArgs


def cmd_gc(args: CmdArgs) -> None:
    """Forward GC to IPAM, then drop masquerade rules of attachments not in the valid list.

    Both run even when one fails; the errors are reported together.
    """
    conf = config.load(args.config, "").conf
    valid = valid_attachments(args.config)
    errors: list[str] = []
    if conf.ipam_type:
        try:
            invoke.delegate_gc(conf.ipam_type, args.stdin, args.env)
        except CNIError as e:
            errors.append(e.msg)
    try:
        ipmasq.gc(conf.name, valid)
    except CNIError as e:
        errors.append(e.msg)
    if errors:
        raise internal("; ".join(errors))

"""The pydantic model of a plugin object as the runtime reads it (Go `types.PluginConf`).

Kept apart from cni.libcni.conflist so that code handling already-loaded lists (the runtime, the
cache) never imports pydantic; only parsing a plugin object does.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cni.config import CNIModel, DNSConfig, IPAMConfig, load


class GCAttachment(CNIModel):
    """One entry of `cni.dev/valid-attachments`."""

    containerID: str
    ifname: str


class PluginConf(CNIModel):
    """What a runtime reads from a plugin object; every other key is kept and passed through.

    Same fields and JSON types as the reference's `types.PluginConf`. A JSON null leaves a
    field unset, as Go's decoder does.
    """

    cniVersion: str | None = None
    name: str | None = None
    type: str | None = None
    capabilities: dict[str, bool] | None = None
    ipam: IPAMConfig | None = None
    dns: DNSConfig | None = None
    prevResult: dict[str, Any] | None = None
    valid_attachments: list[GCAttachment] | None = Field(
        default=None, alias="cni.dev/valid-attachments"
    )


def validate_plugin(obj: Any) -> PluginConf:
    """`obj` (decoded JSON) as a PluginConf; CNIError 6/7 naming the bad key and value."""
    return load(PluginConf, obj)

"""Configuration of the flannel meta-plugin (docs/flannel-behaviour.md §1): the model and how it is
loaded.

The reference keys (`subnetFile`, `dataDir`, `delegate`, `ipam`, `runtimeConfig` plus the
standard ones) keep their meaning. Two keys are ours, ignored by the reference:

* `subnetFileWait` (seconds, default 3): how long ADD waits for a subnet.env that does not exist
  yet (flanneld still starting) before failing with code 11. 0 fails at once.
* `subnetFileLenient` (default false): also accept blanks around keys, values and list items and
  quoted values in subnet.env.

An empty `subnetFile` or `dataDir` means the default (the reference would try to open ""), with
a warning on stderr.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from cni.config import DNSConfig, NullsKeepDefaults
from cni.config import load as load_model
from cni.errors import CNIError
from cni.validate import path_problem
from plugins.flannel.subnet import DEFAULT_SUBNET_FILE

DEFAULT_DATA_DIR = "/var/lib/cni/flannel"
DEFAULT_SUBNET_FILE_WAIT = 3.0
MAX_SUBNET_FILE_WAIT = 600.0

# Keys that only mean something inside `delegate`; seen at the top level they are a common
# misconfiguration (docs/flannel-behaviour.md §7 #10), worth a warning.
BRIDGE_KEYS = frozenset(
    {
        "bridge",
        "isGateway",
        "isDefaultGateway",
        "forceAddress",
        "ipMasq",
        "ipMasqBackend",
        "hairpinMode",
        "promiscMode",
        "vlan",
        "vlanTrunk",
        "preserveDefaultVlan",
        "mtu",
        "macspoofchk",
        "enabledad",
        "disableContainerInterface",
        "portIsolation",
    }
)


class Settings(NullsKeepDefaults):
    """The validated flannel configuration (one element of a conflist, or a .conf), as `load`
    returns it: flannel resolves nothing beyond the model, so the model is its Settings."""

    cniVersion: StrictStr = ""
    name: StrictStr = ""
    type: StrictStr = ""
    capabilities: dict[str, StrictBool] | None = None
    ipam: dict[str, Any] | None = None
    dns: DNSConfig | None = None
    prevResult: dict[str, Any] | None = None
    valid_attachments: list[dict[str, Any]] | None = Field(
        default=None, alias="cni.dev/valid-attachments"
    )
    subnetFile: StrictStr = DEFAULT_SUBNET_FILE
    dataDir: StrictStr = DEFAULT_DATA_DIR
    delegate: dict[str, Any] | None = None
    runtimeConfig: dict[str, Any] | None = None
    subnetFileWait: StrictFloat | StrictInt = Field(
        default=DEFAULT_SUBNET_FILE_WAIT, ge=0, le=MAX_SUBNET_FILE_WAIT
    )
    subnetFileLenient: StrictBool = False

    @field_validator("subnetFile", "dataDir")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        problem = path_problem(value)
        if problem is not None:
            raise ValueError(f"unsafe path: {problem}")
        return value

    def subnet_file(self) -> str:
        """The subnet.env path: `subnetFile`, or the default when it is empty."""
        if self.subnetFile == "":
            _warn(f'"subnetFile" is empty; using {DEFAULT_SUBNET_FILE}')
            return DEFAULT_SUBNET_FILE
        return self.subnetFile

    def data_dir(self) -> str:
        """Where saved delegate configurations live: `dataDir`, or the default when empty."""
        if self.dataDir == "":
            _warn(f'"dataDir" is empty; using {DEFAULT_DATA_DIR}')
            return DEFAULT_DATA_DIR
        return self.dataDir

    def misplaced_keys(self) -> list[str]:
        """Top-level keys that only work inside `delegate` (they are ignored where they are)."""
        extra = self.model_extra or {}
        return sorted(k for k, v in extra.items() if k in BRIDGE_KEYS and v is not None)


def _warn(text: str) -> None:
    sys.stderr.write(f"flannel: warning: {text}\n")


def load(config: dict, *, for_add: bool) -> Settings:
    """Validate the decoded config; CNIError 6 (wrong JSON type) or 7 with the reference's wording.

    ADD says `failed to load flannel netconf file: failed to load netconf: ...`, the other
    commands `failed to load netconf: ...`, as the reference does.
    """
    try:
        conf = load_model(Settings, config)
    except CNIError as e:
        msg = f"failed to load netconf: {e.msg}"
        if for_add:
            msg = f"failed to load flannel netconf file: {msg}"
        raise CNIError(e.code, msg, e.details) from None
    if for_add:
        if not conf.cniVersion:
            _warn('the configuration has no "cniVersion"; results are 0.1.0-shaped')
        misplaced = conf.misplaced_keys()
        if misplaced:
            _warn(
                f"top-level keys {', '.join(misplaced)} are ignored; "
                'bridge options belong inside "delegate"'
            )
    return conf

"""The result families (docs/spec-rules.md §4): one class per group of versions sharing a shape.

``Result100`` (1.0.0, 1.1.0), ``Result040`` (0.3.0, 0.3.1, 0.4.0) and ``Result020`` (0.1.0,
0.2.0) are built from the element models of cni.result.models; ``family_of`` picks the class
for a version. Conversion between families is cni.result.convert's, which gets ``family_of``
from here, so neither module imports the other's caller.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, StrictStr

from cni.gocompat.json import marshal_indent
from cni.result.convert import convert
from cni.result.models import (
    DNS,
    Emit,
    Interface,
    Interface040,
    IPConfig,
    IPConfig020,
    IPConfig040,
    ResultModel,
    Route,
    emit,
)
from cni.version import CURRENT


class Result(ResultModel):
    """Base of every result family. ``cni_version`` is the ``cniVersion`` label."""

    cni_version: StrictStr = ""

    _JSON_KEYS: ClassVar[dict[str, str]] = {"cni_version": "cniVersion"}
    # Versions this family parses, the version assumed when cni_version is "", and the
    # %v text of the version list used in the reference's mismatch error.
    VERSIONS: ClassVar[tuple[str, ...]] = ()
    IMPLEMENTED: ClassVar[str] = ""
    VERSIONS_TEXT: ClassVar[str] = "[]"

    def convert(self, to_version: str) -> Result:
        """A new result in `to_version` under the reference conversion rules
        (docs/spec-rules.md §4.7).

        ``""`` as target means 0.1.0; an unset ``cni_version`` counts as the family's
        implemented version. Raises CNIError code 1 ``no converter for CNI result version X to Y``
        for unknown versions and CNIError ``cannot convert: no valid IP addresses`` when a
        0.1.0/0.2.0 target would have no IP.
        """
        return convert(self, to_version, family_of)

    def to_json(self) -> str:
        """``to_dict()`` as the reference prints it: 4-space indent, no trailing newline.

        Like Go's encoder, non-ASCII text is written as is and ``<``, ``>``, ``&``, U+2028 and
        U+2029 are escaped.
        """
        return marshal_indent(self.to_dict())


class Result100(Result):
    """A 1.0.0/1.1.0 result (also the abbreviated IPAM form: no interfaces, no indexes)."""

    cni_version: StrictStr = CURRENT
    interfaces: list[Interface] = Field(default_factory=list)
    ips: list[IPConfig] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    dns: DNS = Field(default_factory=DNS)

    VERSIONS: ClassVar[tuple[str, ...]] = ("1.0.0", CURRENT)
    IMPLEMENTED: ClassVar[str] = CURRENT
    VERSIONS_TEXT: ClassVar[str] = f"[1.0.0 {CURRENT}]"

    _EMIT: ClassVar[Emit] = emit("cni_version interfaces ips routes dns")

    def to_dict(self) -> dict:
        """The 1.x object. Empty lists and an empty ``dns`` are left out.

        The reference marshals 1.x results through a generic map, so every object's keys come
        out sorted; this dict is sorted the same way.
        """
        return _sorted(super().to_dict())


class Result040(Result):
    """A 0.3.0/0.3.1/0.4.0 result."""

    cni_version: StrictStr = "0.4.0"
    interfaces: list[Interface040] = Field(default_factory=list)
    ips: list[IPConfig040] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    dns: DNS = Field(default_factory=DNS)

    VERSIONS: ClassVar[tuple[str, ...]] = ("0.3.0", "0.3.1", "0.4.0")
    IMPLEMENTED: ClassVar[str] = "0.4.0"
    VERSIONS_TEXT: ClassVar[str] = "[0.3.0 0.3.1 0.4.0]"

    # Struct order; empty lists left out; ``dns`` always present (``{}`` when empty).
    _EMIT: ClassVar[Emit] = emit("cni_version interfaces ips routes dns!")


class Result020(Result):
    """A 0.1.0/0.2.0 result: at most one ``ip4`` and one ``ip6``."""

    cni_version: StrictStr = "0.2.0"
    ip4: IPConfig020 | None = None
    ip6: IPConfig020 | None = None
    dns: DNS = Field(default_factory=DNS)

    # "" parses too (and is relabelled 0.1.0); the reference prints the list with it.
    VERSIONS: ClassVar[tuple[str, ...]] = ("0.1.0", "0.2.0")
    IMPLEMENTED: ClassVar[str] = "0.2.0"
    VERSIONS_TEXT: ClassVar[str] = "[ 0.1.0 0.2.0]"

    # ``cniVersion``, ``ip4``/``ip6`` when present, ``dns`` always (``{}`` when empty).
    _EMIT: ClassVar[Emit] = emit("cni_version ip4? ip6? dns!")


# --------------------------------------------------------------------------------------------
# Output helpers


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def family_of(version: str) -> type[Result] | None:
    """The result class that parses `version` ("" is the legacy 0.1.0 family), or None."""
    if version in ("", "0.1.0", "0.2.0"):
        return Result020
    if version in Result040.VERSIONS:
        return Result040
    if version in Result100.VERSIONS:
        return Result100
    return None

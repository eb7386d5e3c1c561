"""Configuration models (pydantic v2): the single source of truth for configuration shapes.

Every model keeps unknown keys (`extra="allow"`), so a delegate receives them untouched, and is
strict about JSON types as the reference's Go decoding is. `load()` turns validation failures
into CNI errors with a one-line message naming the key and the bad value.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cni import pydantic_boot  # noqa: F401 - before any model is built
from cni.errors import ERR_DECODING_FAILURE, CNIError, one_line
from cni.gocompat import decode
from cni.gocompat.decode import short_text as _short

M = TypeVar("M", bound=BaseModel)


class CNIModel(BaseModel):
    """Base of every configuration model: strict JSON types, unknown keys preserved."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _match_keys_case_insensitively(cls, data: Any) -> Any:
        # Configs written for the reference rely on Go's key matching ("IPAM", "Bridge").
        if not isinstance(data, dict):
            return data
        return decode.match_keys(data, decode.key_table(cls), keep_unknown=True)

    def dump(self) -> dict[str, Any]:
        """The model as JSON-ready data, with the config's own key names, unset keys left out."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


class NullsKeepDefaults(CNIModel):
    """A model decoded wholly as Go does: besides CNIModel's key matching, a JSON null on a field
    that has a default leaves the default (a plain CNIModel refuses it as a wrong JSON type)."""

    @model_validator(mode="before")
    @classmethod
    def _null_keeps_default(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return decode.nulls_keep_defaults(cls, data)


class IPAMConfig(CNIModel):
    """The `ipam` object: a `type` plus IPAM-specific keys."""

    type: str = ""


class DNSConfig(CNIModel):
    """The well-known `dns` object."""

    nameservers: list[str] | None = None
    domain: str | None = None
    search: list[str] | None = None
    options: list[str] | None = None


class NetConf(CNIModel):
    """The plugin configuration every plugin receives (docs/spec-rules.md §5.2)."""

    cniVersion: str = ""
    cniVersions: list[str] | None = None
    name: str = ""
    type: str = ""
    capabilities: dict[str, bool] | None = None
    ipMasq: bool = False
    ipam: IPAMConfig | None = None
    dns: DNSConfig | None = None
    args: dict[str, Any] | None = None
    runtimeConfig: dict[str, Any] | None = None
    prevResult: dict[str, Any] | None = None
    valid_attachments: list[dict[str, Any]] | None = Field(
        default=None, alias="cni.dev/valid-attachments"
    )
    attachments: list[dict[str, Any]] | None = Field(default=None, alias="cni.dev/attachments")


def load(model: type[M], data: Any) -> M:
    """Validate `data` (a decoded JSON object) as `model`; CNIError 6 (wrong JSON type) or 7.

    The message names the first offending key and its value, on one line.
    """
    if not isinstance(data, dict):
        raise CNIError(
            ERR_DECODING_FAILURE,
            f"network config must be a JSON object, not {one_line(_short(data))}",
        )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise decode.config_error(e) from None


def valid_attachments(conf: dict) -> set[tuple[str, str]]:
    """The GC attachment set: `cni.dev/valid-attachments`, else `cni.dev/attachments`.

    A missing key or null means no attachment is valid (docs/spec-rules.md §3.6).
    """
    raw = conf.get("cni.dev/valid-attachments")
    if raw is None:
        raw = conf.get("cni.dev/attachments")
    out: set[tuple[str, str]] = set()
    if not isinstance(raw, list):
        if raw is not None:
            raise CNIError(
                ERR_DECODING_FAILURE,
                f"invalid cni.dev/valid-attachments {one_line(_short(raw))}: not a list",
            )
        return out
    for item in raw:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("containerID"), str)
            or not isinstance(item.get("ifname"), str)
        ):
            raise CNIError(
                ERR_DECODING_FAILURE,
                f"invalid attachment {one_line(_short(item))}: need containerID and ifname strings",
            )
        out.add((item["containerID"], item["ifname"]))
    return out

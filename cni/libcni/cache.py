"""The runtime's result cache, byte-compatible with Go libcni's (docs/spec-rules.md §8.6).

Layout: `<cache dir>/results/<network>-<containerID>-<ifname>` (dir 0700, file 0600), one
compact JSON object per attachment, written as Go's `json.Marshal` writes libcni's
`cachedInfo` struct: fields in struct order, `config` as standard base64 of the network
config bytes, maps with sorted keys, empty `netns`/`cniArgs`/`capabilityArgs`/`result` left
out. Either runtime can therefore DEL, CHECK or GC what the other added.

Differences from libcni, on purpose: files are written to a temporary name and renamed into
place, so a concurrent reader never sees a half-written file.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cni import fileutil
from cni.errors import ERR_DECODING_FAILURE, ERR_INTERNAL, ERR_IO_FAILURE, CNIError
from cni.gocompat import json as gojson
from cni.gocompat.decode import match_keys

if TYPE_CHECKING:
    from cni.result import Result

DEFAULT_CACHE_DIR = "/var/lib/cni"
KIND_V1 = "cniCacheV1"


class CacheError(CNIError):
    """A cache file that cannot be named, written, decoded or converted."""


@dataclass
class CachedInfo:
    """A decoded cniCacheV1 file."""

    kind: str
    container_id: str
    config: bytes
    ifname: str
    network_name: str
    netns: str = ""
    cni_args: list[tuple[str, str]] | None = None
    capability_args: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


@dataclass
class Attachment:
    """One cached attachment (libcni NetworkAttachment), as GC and runtimes enumerate them."""

    container_id: str
    network: str
    ifname: str
    config: bytes
    netns: str
    cni_args: list[tuple[str, str]] | None
    capability_args: dict[str, Any] | None


def _b64decode(text: str) -> bytes:
    # Go's StdEncoding ignores \r and \n and insists on correct padding.
    cleaned = text.replace("\r", "").replace("\n", "")
    return base64.b64decode(cleaned, validate=True)


def _expect(value: Any, kind: type, key: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, kind):
        raise ValueError(
            f"json: cannot unmarshal {gojson.kind(value)} into Go struct field cachedInfo.{key}"
        )
    return value


# cachedInfo's JSON keys, lower-cased -> as written.
_CACHED_INFO_KEYS = {
    k.lower(): k
    for k in (
        "kind",
        "containerId",
        "config",
        "ifName",
        "networkName",
        "netns",
        "cniArgs",
        "capabilityArgs",
        "result",
    )
}


def decode(data: bytes) -> CachedInfo:
    """Decode a cache file as Go decodes it into libcni's `cachedInfo`; ValueError if not possible.

    Field names match case-insensitively (Go), JSON nulls leave fields empty, and `config`
    must be valid base64. The kind is not checked here.
    """
    obj = gojson.loads(data)
    if not isinstance(obj, dict):
        raise ValueError(
            f"json: cannot unmarshal {gojson.kind(obj)} into Go value of type libcni.cachedInfo"
        )
    vals = match_keys(obj, _CACHED_INFO_KEYS, keep_unknown=False)
    config_text = _expect(vals.get("config"), str, "config")
    try:
        config = _b64decode(config_text) if config_text else b""
    except ValueError as e:
        raise ValueError(f"illegal base64 data in cachedInfo.config: {e}") from None
    cni_args = _expect(vals.get("cniArgs"), list, "cniArgs")
    pairs: list[tuple[str, str]] | None = None
    if cni_args is not None:
        pairs = []
        for pair in cni_args:
            pair = _expect(pair, list, "cniArgs") or []
            items = [_expect(p, str, "cniArgs") or "" for p in pair[:2]]
            items += [""] * (2 - len(items))
            pairs.append((items[0], items[1]))
    return CachedInfo(
        kind=_expect(vals.get("kind"), str, "kind") or "",
        container_id=_expect(vals.get("containerId"), str, "containerId") or "",
        config=config,
        ifname=_expect(vals.get("ifName"), str, "ifName") or "",
        network_name=_expect(vals.get("networkName"), str, "networkName") or "",
        netns=_expect(vals.get("netns"), str, "netns") or "",
        cni_args=pairs,
        capability_args=_expect(vals.get("capabilityArgs"), dict, "capabilityArgs"),
        result=_expect(vals.get("result"), dict, "result"),
    )


def encode(info: CachedInfo) -> bytes:
    """The file bytes Go's json.Marshal writes for this cachedInfo (struct field order)."""
    parts = [
        f'"kind":{gojson.marshal_str(info.kind)}',
        f'"containerId":{gojson.marshal_str(info.container_id)}',
        f'"config":"{base64.b64encode(info.config).decode("ascii")}"',
        f'"ifName":{gojson.marshal_str(info.ifname)}',
        f'"networkName":{gojson.marshal_str(info.network_name)}',
    ]
    if info.netns:
        parts.append(f'"netns":{gojson.marshal_str(info.netns)}')
    if info.cni_args:
        parts.append(f'"cniArgs":{gojson.marshal_str([list(p) for p in info.cni_args])}')
    if info.capability_args:
        parts.append(f'"capabilityArgs":{gojson.marshal_str(info.capability_args)}')
    if info.result:
        parts.append(f'"result":{gojson.marshal_str(info.result)}')
    return ("{" + ",".join(parts) + "}").encode("utf-8")


class ResultCache:
    """The cache under one directory (`/var/lib/cni` by default)."""

    def __init__(self, cache_dir: str = "") -> None:
        self.dir = cache_dir or DEFAULT_CACHE_DIR

    @property
    def results_dir(self) -> str:
        """`<cache dir>/results`."""
        return os.path.join(self.dir, "results")

    def path(self, network: str, container_id: str, ifname: str) -> str:
        """The attachment's cache file; CacheError (libcni's text) when any part is empty."""
        if not network or not container_id or not ifname:
            q = gojson.quote
            raise CacheError(
                ERR_INTERNAL,
                f"cache file path requires network name ({q(network)}), container ID "
                f"({q(container_id)}), and interface name ({q(ifname)})",
            )
        return os.path.join(self.results_dir, f"{network}-{container_id}-{ifname}")

    def check_writable(self) -> None:
        """Raise CacheError (code 5) when a cache file could not be written: a component of
        the results directory exists but is not a directory, or the deepest existing one is
        not writable. Creates nothing; a missing directory is fine (write creates it)."""
        head = self.results_dir
        while True:
            try:
                is_dir = os.path.isdir(head) if os.path.lexists(head) else None
            except OSError as e:
                raise CacheError(ERR_IO_FAILURE, f"{e.strerror}: {head}") from None
            if is_dir is None:  # missing (or under a non-directory): look at its parent
                parent = os.path.dirname(head.rstrip("/"))
                if not parent or parent == head:
                    return
                head = parent
                continue
            if not is_dir:
                raise CacheError(ERR_IO_FAILURE, f"not a directory: {head}")
            if not os.access(head, os.W_OK | os.X_OK):
                raise CacheError(ERR_IO_FAILURE, f"directory not writable: {head}")
            return

    def write(
        self,
        network: str,
        container_id: str,
        ifname: str,
        *,
        config: bytes,
        result: Mapping[str, Any] | None,
        netns: str = "",
        cni_args: list[tuple[str, str]] | None = None,
        capability_args: Mapping[str, Any] | None = None,
    ) -> str:
        """Store an attachment after a successful ADD; returns the file path.

        `result` is the final result as its JSON object (Result.to_dict()). Raises CacheError
        (code 5) when the file cannot be written.
        """
        fname = self.path(network, container_id, ifname)
        data = encode(
            CachedInfo(
                kind=KIND_V1,
                container_id=container_id,
                config=config,
                ifname=ifname,
                network_name=network,
                netns=netns,
                cni_args=cni_args,
                capability_args=dict(capability_args) if capability_args else None,
                result=dict(result) if result else None,
            )
        )
        try:
            fileutil.ensure_dir(self.results_dir, 0o700)
        except OSError as e:
            raise CacheError(ERR_IO_FAILURE, f"{e.strerror}: {e.filename}") from None
        try:
            # The temporary file lives beside results/, not in it, so a concurrent
            # attachment listing never sees it.
            fileutil.atomic_write(fname, data, 0o600, temp_dir=self.dir, durable=False)
        except OSError as e:
            if e.filename is not None and e.filename2 is None:  # the temporary file's creation
                raise CacheError(ERR_IO_FAILURE, f"{e.strerror}: {e.filename}") from None
            raise CacheError(ERR_IO_FAILURE, f"write {fname}: {e.strerror}") from None
        return fname

    def delete(self, network: str, container_id: str, ifname: str) -> None:
        """Remove the attachment's file; a missing file or an unbuildable path is ignored."""
        try:
            os.remove(self.path(network, container_id, ifname))
        except (CacheError, OSError):
            pass

    def _read(self, network: str, container_id: str, ifname: str) -> bytes | None:
        fname = self.path(network, container_id, ifname)
        try:
            with open(fname, "rb") as f:
                return f.read()
        except OSError:
            return None  # libcni: the cached result may simply not exist

    def read_result(
        self, network: str, container_id: str, ifname: str
    ) -> dict[str, Any] | bytes | None:
        """The cached result: a dict from a cniCacheV1 file, the whole file's bytes from a
        legacy cache (or any file that is not cniCacheV1), None when there is no file.

        Raises CacheError only when the path cannot be built.
        """
        data = self._read(network, container_id, ifname)
        if data is None:
            return None
        try:
            info = decode(data)
        except ValueError:
            return data
        if info.kind != KIND_V1:
            return data
        return info.result if info.result is not None else {}

    def get_result(self, network: str, version: str, container_id: str, ifname: str):
        """The cached result as a cni.result Result converted to `version`, or None.

        Raises CacheError for a result that cannot be decoded or converted (libcni texts).
        """
        raw = self.read_result(network, container_id, ifname)
        if raw is None:
            return None
        result = decode_result(raw)
        try:
            return result.convert(version)
        except CNIError as e:
            raise CacheError(
                e.code,
                f"failed to convert cached result to config version {gojson.quote(version)}: {e}",
            ) from None

    def get_config(self, network: str, container_id: str, ifname: str) -> CachedInfo | None:
        """The decoded cniCacheV1 file (config bytes, cached args), or None when there is none.

        Raises CacheError `failed to unmarshal cached network "<n>" config: ...` or
        `read cached network "<n>" config has wrong kind: <kind>`.
        """
        data = self._read(network, container_id, ifname)
        if data is None:
            return None
        try:
            info = decode(data)
        except ValueError as e:
            raise CacheError(
                ERR_DECODING_FAILURE,
                f"failed to unmarshal cached network {gojson.quote(network)} config: {e}",
            ) from None
        if info.kind != KIND_V1:
            raise CacheError(
                ERR_DECODING_FAILURE,
                f"read cached network {gojson.quote(network)} config has wrong kind: {info.kind}",
            )
        return info

    def attachments(self, container_id: str = "") -> list[Attachment]:
        """Every readable cniCacheV1 attachment, in file-name order (libcni GetCachedAttachments).

        With `container_id`, only files named `*-<id>-*` whose stored containerId is exactly
        it. Files that cannot be read or decoded, have another kind, or lack ifName or
        networkName are skipped; a missing results dir gives []. Other listing errors raise
        OSError.
        """
        try:
            names = sorted(os.listdir(self.results_dir), key=os.fsencode)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if container_id:
                part = f"-{container_id}-"
                pos = name.find(part)
                if pos <= 0 or pos + len(part) >= len(name):
                    continue
            try:
                with open(os.path.join(self.results_dir, name), "rb") as f:
                    info = decode(f.read())
            except (OSError, ValueError):
                continue
            if info.kind != KIND_V1:
                continue
            if container_id and info.container_id != container_id:
                continue
            if not info.ifname or not info.network_name:
                continue
            out.append(
                Attachment(
                    container_id=info.container_id,
                    network=info.network_name,
                    ifname=info.ifname,
                    config=info.config,
                    netns=info.netns,
                    cni_args=info.cni_args,
                    capability_args=info.capability_args,
                )
            )
        return out


def decode_result(raw: Mapping[str, Any] | bytes) -> Result:
    """A result JSON (object or bytes) as a cni.result Result of its own `cniVersion`.

    A missing or empty cniVersion means 0.1.0 (libcni create.CreateFromBytes). Raises
    CNIError for bad JSON, a non-string version, or a result that does not parse.
    """
    from cni.result import parse_result  # lazy: pydantic (~120 ms), for reading a result only

    if isinstance(raw, (bytes, bytearray)):
        try:
            obj = gojson.loads(bytes(raw))
        except ValueError as e:
            raise CacheError(
                ERR_DECODING_FAILURE, f"decoding version from network config: {e}"
            ) from None
    else:
        obj = dict(raw)
    if not isinstance(obj, dict):
        raise CacheError(
            ERR_DECODING_FAILURE,
            f"decoding version from network config: json: cannot unmarshal {gojson.kind(obj)} "
            f"into Go value",
        )
    version = obj.get("cniVersion")
    if version is None:
        version = ""
    if not isinstance(version, str):
        raise CacheError(
            ERR_DECODING_FAILURE,
            "decoding version from network config: json: cannot unmarshal "
            f"{gojson.kind(version)} into Go struct field .cniVersion of type string",
        )
    return parse_result(obj, version or "0.1.0")

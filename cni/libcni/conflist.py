"""Network configuration lists: parsing, version selection, and lookup in a conf dir.

Follows libcni's `conf.go` (docs/spec-rules.md §5.1, §5.3, §8.1): the same file ordering, the
same `.conflist` > `.conf`/`.json` priority, sibling `<dir>/<name>/*.conf` plugins unless
`loadOnlyInlinedPlugins`, string booleans, `cniVersions` selection, and the same error texts.

Each plugin object is checked against `PluginConf`, the pydantic model of what the runtime
reads from a plugin object (Go's `types.PluginConf`: strict JSON types, keys matched
case-insensitively, unknown keys kept). The list level is parsed by hand because libcni's
rules there (string booleans, version selection, exact messages) are not a plain shape.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cni import version
from cni.errors import (
    ERR_DECODING_FAILURE,
    ERR_INVALID_NETWORK_CONFIG,
    CNIError,
    one_line,
    os_error_text,
)
from cni.gocompat import json as gojson

if TYPE_CHECKING:
    from cni.libcni.conflist_model import PluginConf

DEFAULT_CONF_DIR = "/etc/cni/net.d"


class ConfError(CNIError):
    """A configuration that cannot be loaded (libcni's untyped errors; code 6 or 7)."""


class NoConfigsFoundError(ConfError):
    """The conf dir has no `.conflist`, `.conf` or `.json` file at all."""

    def __init__(self, directory: str) -> None:
        super().__init__(ERR_INVALID_NETWORK_CONFIG, f"no net configurations found in {directory}")
        self.directory = directory


class NotFoundError(ConfError):
    """Configurations exist in the conf dir, but none has the requested name."""

    def __init__(self, directory: str, name: str) -> None:
        super().__init__(
            ERR_INVALID_NETWORK_CONFIG, f'no net configuration with name "{name}" in {directory}'
        )
        self.directory = directory
        self.name = name


@dataclass
class PluginConfig:
    """One plugin object of a list: its decoded JSON, its bytes, and its validated view."""

    conf: dict[str, Any]
    bytes: bytes
    parsed: PluginConf

    @property
    def type(self) -> str:
        """The plugin's `type` (executable name)."""
        return self.parsed.type or ""

    @property
    def capabilities(self) -> dict[str, bool]:
        """The plugin's `capabilities` map (empty when absent)."""
        return dict(self.parsed.capabilities or {})

    def description(self) -> str:
        """`type="<t>"`, plus ` name="<n>"` when the plugin object has its own name (libcni)."""
        out = f"type={gojson.quote(self.type)}"
        if self.parsed.name:
            out += f" name={gojson.quote(self.parsed.name)}"
        return out


@dataclass
class NetworkConfigList:
    """A loaded network configuration list (libcni's NetworkConfigList).

    `cni_version` is the selected version (docs/spec-rules.md §5.3). `bytes` are the file's bytes
    exactly as read (or libcni's re-serialisation for an up-converted single-plugin file): they
    are what the result cache stores as `config`.
    """

    name: str
    cni_version: str
    disable_check: bool = False
    disable_gc: bool = False
    load_only_inlined_plugins: bool = False
    plugins: list[PluginConfig] = field(default_factory=list)
    bytes: bytes = b""


def _list_error(msg: str, code: int = ERR_INVALID_NETWORK_CONFIG) -> ConfError:
    return ConfError(code, f"error parsing configuration list: {msg}")


def plugin_from_bytes(data: bytes) -> PluginConfig:
    """Parse one plugin object (libcni NetworkPluginConfFromBytes); it must have a `type`."""
    # Lazy: the model loads pydantic (~120 ms), which code holding loaded lists never needs.
    from cni.libcni.conflist_model import validate_plugin

    try:
        conf = gojson.loads(data)
    except ValueError as e:
        raise ConfError(
            ERR_DECODING_FAILURE, f"error parsing configuration: {one_line(e)}"
        ) from None
    try:
        parsed = validate_plugin(conf)
    except CNIError as e:
        raise ConfError(e.code, f"error parsing configuration: {e.msg}") from None
    if not parsed.type:
        raise ConfError(ERR_INVALID_NETWORK_CONFIG, "error parsing configuration: missing 'type'")
    return PluginConfig(conf=conf, bytes=data, parsed=parsed)


def _read_bool(raw: dict, key: str) -> bool:
    if key not in raw:
        return False
    value = raw[key]
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise _list_error(f"invalid type {gojson.kind(value)} for {key}", ERR_DECODING_FAILURE)
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    raise _list_error(f"invalid value {gojson.quote(low)} for {key}")


def _parse_version(text: str, what: str) -> tuple[int, int, int]:
    try:
        return version.parse(text)
    except CNIError as e:
        raise _list_error(f"invalid {what}: {e.msg}") from None


def select_version(cni_version: str, cni_versions: Any) -> str:
    """The list's version: the highest of `cniVersion` and `cniVersions` not above 1.1.0.

    Without `cniVersions`, `cniVersion` is used as it is (docs/spec-rules.md §5.3). Raises
    ConfError for a non-list `cniVersions`, a non-string entry, or an unparsable version.
    """
    if not isinstance(cni_versions, list):
        raise _list_error(
            f"invalid type for cniVersions: {gojson.kind(cni_versions)}", ERR_DECODING_FAILURE
        )
    current = version.parse(version.CURRENT)
    kept: list[tuple[tuple[int, int, int], str]] = []
    for i, v in enumerate(cni_versions):
        if not isinstance(v, str):
            raise _list_error(
                f"invalid type for cniVersions index {i}: {gojson.kind(v)}", ERR_DECODING_FAILURE
            )
        parsed = _parse_version(v, f"cniVersions entry {v} at index {i}")
        if parsed <= current:
            kept.append((parsed, v))
    if cni_version:
        parsed = _parse_version(cni_version, f"cniVersion {cni_version}")
        if parsed <= current:
            kept.append((parsed, cni_version))
    if not kept:
        return cni_version
    return max(kept, key=lambda item: item[0])[1]


def list_from_bytes(data: bytes) -> NetworkConfigList:
    """Parse a conflist (libcni NetworkConfFromBytes): name, version, flags, inlined plugins.

    Sibling-directory plugins are not loaded here (see `list_from_file`); a list without a
    `plugins` key (and loadOnlyInlinedPlugins false) comes back with no plugins.
    """
    try:
        raw = gojson.loads(data)
    except ValueError as e:
        raise _list_error(one_line(e), ERR_DECODING_FAILURE) from None
    if not isinstance(raw, dict):
        raise _list_error(
            f"json: cannot unmarshal {gojson.json_kind(raw)} into Go value of type "
            f"map[string]interface {{}}",
            ERR_DECODING_FAILURE,
        )
    if "name" not in raw:
        raise _list_error("no name")
    name = raw["name"]
    if not isinstance(name, str):
        raise _list_error(f"invalid name type {gojson.kind(name)}", ERR_DECODING_FAILURE)
    cni_version = ""
    if "cniVersion" in raw:
        cni_version = raw["cniVersion"]
        if not isinstance(cni_version, str):
            raise _list_error(
                f"invalid cniVersion type {gojson.kind(cni_version)}", ERR_DECODING_FAILURE
            )
    if "cniVersions" in raw:
        cni_version = select_version(cni_version, raw["cniVersions"])
    conf = NetworkConfigList(
        name=name,
        cni_version=cni_version,
        disable_check=_read_bool(raw, "disableCheck"),
        disable_gc=_read_bool(raw, "disableGC"),
        load_only_inlined_plugins=_read_bool(raw, "loadOnlyInlinedPlugins"),
        bytes=data,
    )
    if "plugins" not in raw:
        if conf.load_only_inlined_plugins:
            raise _list_error("`loadOnlyInlinedPlugins` is true, and no 'plugins' key")
        return conf
    plugins = raw["plugins"]
    if not isinstance(plugins, list):
        raise _list_error(f"invalid 'plugins' type {gojson.kind(plugins)}", ERR_DECODING_FAILURE)
    if not plugins:
        raise _list_error("no plugins in list")
    for i, obj in enumerate(plugins):
        try:
            conf.plugins.append(plugin_from_bytes(gojson.marshal(obj)))
        except ConfError as e:
            raise ConfError(e.code, f"failed to parse plugin config {i}: {e.msg}") from None
    return conf


def go_ext(filename: str) -> str:
    """Go's filepath.Ext: the suffix from the last `.` of the name (the whole name if it starts
    so)."""
    i = filename.rfind(".")
    return filename[i:] if i >= 0 else ""


def conf_files(directory: str, extensions: list[str] | tuple[str, ...]) -> list[str]:
    """Paths of the non-directory entries of `directory` whose extension is one of `extensions`.

    Case-sensitive, no recursion, in directory-name order; a missing directory gives [].
    Other read errors raise ConfError.
    """
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ConfError(
            ERR_INVALID_NETWORK_CONFIG, f"open {directory}: {os_error_text(e)}"
        ) from None
    out = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            pass
        if go_ext(entry.name) in extensions:
            out.append(os.path.join(directory, entry.name))
    return out


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfError(
            ERR_INVALID_NETWORK_CONFIG,
            f"error reading {path}: read {path}: {os_error_text(e)}"
            if isinstance(e, IsADirectoryError)
            else f"error reading {path}: open {path}: {os_error_text(e)}",
        ) from None


def sibling_plugins(conf_dir: str, network_name: str) -> list[PluginConfig]:
    """The plugin objects in `<conf_dir>/<network_name>/*.conf`, in file-name order."""
    plugin_dir = os.path.join(conf_dir, network_name)
    try:
        files = conf_files(plugin_dir, (".conf",))
    except ConfError as e:
        raise ConfError(
            e.code, f"failed to read plugin config files in {plugin_dir}: {e.msg}"
        ) from None
    return [plugin_from_bytes(_read(path)) for path in files]


def list_from_file(path: str) -> NetworkConfigList:
    """Load a `.conflist` file, with its sibling-directory plugins unless loadOnlyInlinedPlugins.

    Raises ConfError `no plugin configs found` when the final list is empty.
    """
    conf = list_from_bytes(_read(path))
    if not conf.load_only_inlined_plugins:
        conf.plugins.extend(sibling_plugins(os.path.dirname(path), conf.name))
    if not conf.plugins:
        raise ConfError(ERR_INVALID_NETWORK_CONFIG, "no plugin configs found")
    return conf


def list_from_plugin(plugin: PluginConfig) -> NetworkConfigList:
    """Up-convert a single-plugin config to a one-plugin list, as libcni ConfListFromConf.

    The list bytes are libcni's re-serialisation `{"cniVersion","name","plugins":[<object>]}`,
    so a cache written for it matches the Go runtime's byte for byte.
    """
    wrapper = {
        "name": plugin.parsed.name or "",
        "cniVersion": plugin.parsed.cniVersion or "",
        "plugins": [plugin.conf],
    }
    return list_from_bytes(gojson.marshal(wrapper))


def load_single(conf_dir: str, name: str) -> PluginConfig:
    """The first `.conf`/`.json` single-plugin file whose own `name` is `name` (libcni LoadConf)."""
    files = conf_files(conf_dir, (".conf", ".json"))
    if not files:
        raise NoConfigsFoundError(conf_dir)
    files.sort(key=os.fsencode)
    for path in files:
        plugin = plugin_from_bytes(_read(path))
        if plugin.parsed.name == name:
            return plugin
    raise NotFoundError(conf_dir, name)


def load(conf_dir: str, name: str) -> NetworkConfigList:
    """Find network `name` in `conf_dir` (libcni LoadNetworkConf, which cnitool uses).

    `.conflist` files first, in byte order of their paths; any file that fails to parse stops
    the search. Then single-plugin `.conf`/`.json` files, up-converted to a one-plugin list.
    Raises NoConfigsFoundError / NotFoundError with the reference texts.
    """
    files = conf_files(conf_dir, (".conflist",))
    files.sort(key=os.fsencode)
    for path in files:
        conf = list_from_file(path)
        if conf.name == name:
            return conf
    try:
        single = load_single(conf_dir, name)
    except NoConfigsFoundError:
        if files:
            raise NotFoundError(conf_dir, name) from None
        raise
    return list_from_plugin(single)

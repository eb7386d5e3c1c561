"""The runtime side of CNI (Go libcni's CNIConfig): run a network list's plugins.

ADD runs the plugins in order, each getting the previous one's result as `prevResult`, and
caches the final result; DEL runs them in reverse with the cached result; CHECK in order with
it; STATUS stops at the first failure and keeps its code; GC first DELs stale cached
attachments, then sends GC with the valid ones (docs/spec-rules.md §3, §5.4, §5.5, §8.3).

Plugins are found on the search path and executed through cni.invoke (our own executables
run in-process, anything else is exec'd, with the ETXTBSY retry). Errors are CNIErrors whose
text is libcni's and whose code is the plugin's own when a plugin failed.

Deliberate differences from libcni (docs/spec-rules.md §5.4, §8.7):
* `capabilities`, `prevResult` and `cni.dev/*` keys of the plugin object are not forwarded
  (the spec reserves them); the runtime sets `prevResult` and the GC keys itself.
* The GC request's attachment list is `[]`, never `null`, when the caller passes an empty list.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from cni import validate, version
from cni.errors import (
    ERR_INCOMPATIBLE_CNI_VERSION,
    ERR_INVALID_ENVIRONMENT_VARIABLES,
    CNIError,
)
from cni.gocompat import json as gojson
from cni.invoke import exec_plugin, find_in_path
from cni.libcni.cache import ResultCache
from cni.libcni.request import RuntimeConf, build_request, decode_version_info, parse_add_output

if TYPE_CHECKING:
    from cni.libcni.conflist import NetworkConfigList, PluginConfig


class MultiError(CNIError):
    """Several errors at once (GC); the text is every error's, one per line."""

    def __init__(self, errors: list[CNIError]) -> None:
        super().__init__(errors[0].code, "\n".join(str(e) for e in errors))
        self.errors = errors


def _wrap(err: CNIError, prefix: str) -> CNIError:
    """`prefix` + err's text, keeping err's code (Go's %w wrapping keeps errors.As working)."""
    wrapped = CNIError(err.code, prefix + err.msg, err.details)
    wrapped.__cause__ = err
    return wrapped


def _version_at_least(v: str, minimum: str) -> bool:
    return version.greater_than_or_equal(v, minimum)


class CNIConfig:
    """Runs network lists: the plugin search path, the result cache, the base environment."""

    def __init__(
        self,
        path: Iterable[str],
        cache_dir: str = "",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """`path`: plugin directories; `cache_dir`: default /var/lib/cni; `environ`: the
        environment plugins inherit (default: this process's, read at each call)."""
        self.path = list(path)
        self.cache = ResultCache(cache_dir)
        self._environ = environ

    # ---------------------------------------------------------------- execution

    def _env(self, command: str, rt: RuntimeConf) -> dict[str, str]:
        env = dict(os.environ if self._environ is None else self._environ)
        env.update(
            CNI_COMMAND=command,
            CNI_CONTAINERID=rt.container_id,
            CNI_NETNS=rt.netns,
            CNI_ARGS=";".join(f"{k}={v}" for k, v in rt.args),
            CNI_IFNAME=rt.ifname,
            CNI_PATH=os.pathsep.join(self.path),
        )
        return env

    def _find(self, plugin_type: str) -> str:
        return find_in_path(plugin_type, self.path)

    def _exec(self, plugin_path: str, command: str, stdin: bytes, rt: RuntimeConf) -> bytes:
        return exec_plugin(plugin_path, self._env(command, rt), stdin)

    # ---------------------------------------------------------------- ADD

    def _run_one(
        self, net: NetworkConfigList, plugin: PluginConfig, command: str, prev, rt: RuntimeConf
    ) -> bytes:
        """Find the plugin, build its request (`prev` as prevResult) and run `command`: stdout.

        ADD also validates the container ID, network name and interface name, after the
        plugin is found and before it runs (libcni's order).
        """
        plugin_path = self._find(plugin.type)
        if command == "ADD":
            validate.container_id(rt.container_id)
            validate.network_name(net.name)
            validate.interface_name(rt.ifname)
        stdin = build_request(
            plugin,
            net.name,
            net.cni_version,
            prev_result=prev.to_dict() if prev is not None else None,
            rt=rt,
        )
        return self._exec(plugin_path, command, stdin, rt)

    def _add_one(self, net: NetworkConfigList, plugin: PluginConfig, prev, rt: RuntimeConf):
        out = self._run_one(net, plugin, "ADD", prev, rt)
        return parse_add_output(out, net.cni_version)

    def add_network_list(self, net: NetworkConfigList, rt: RuntimeConf):
        """ADD every plugin in order, chaining results; cache and return the final Result.

        Stops at the first failure with `plugin type="<t>" failed (add): <err>` (the plugin's
        code kept); nothing is cached then and no DEL is run: the caller owes one. A cache
        write failure fails the ADD: `failed to set network "<n>" cached result: ...`.
        """
        # The cache file must be writable once the pod is configured: a path the kernel would
        # refuse (a `..`, a name over 255 bytes, PATH_MAX) is refused before any plugin runs ...
        if rt.container_id and rt.ifname and net.name:
            cache_path = self.cache.path(net.name, rt.container_id, rt.ifname)
            validate.safe_path(cache_path, "result cache path", ERR_INVALID_ENVIRONMENT_VARIABLES)
            try:  # ... and so is a cache directory that is a file or read-only
                self.cache.check_writable()
            except CNIError as e:
                raise _wrap(
                    e, f"failed to set network {gojson.quote(net.name)} cached result: "
                ) from None
        result = None
        for plugin in net.plugins:
            try:
                result = self._add_one(net, plugin, result, rt)
            except CNIError as e:
                raise _wrap(e, f"plugin {plugin.description()} failed (add): ") from None
        try:
            self.cache.write(
                net.name,
                rt.container_id,
                rt.ifname,
                config=net.bytes,
                result=result.to_dict() if result is not None else None,
                netns=rt.netns,
                cni_args=rt.args,
                capability_args=rt.capability_args,
            )
        except CNIError as e:
            raise _wrap(
                e, f"failed to set network {gojson.quote(net.name)} cached result: "
            ) from None
        return result

    # ---------------------------------------------------------------- CHECK / DEL

    def cached_result(self, net: NetworkConfigList, rt: RuntimeConf):
        """The attachment's cached result converted to the list's version, or None."""
        return self.cache.get_result(net.name, net.cni_version, rt.container_id, rt.ifname)

    def check_network_list(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        """CHECK every plugin in order with the cached result; the first error is raised as is.

        Refused for lists below 0.4.0; a no-op when `disableCheck`. A cached result that cannot
        be decoded or converted is an error.
        """
        if not _version_at_least(net.cni_version, version.SINCE["CHECK"]):
            raise CNIError(
                ERR_INCOMPATIBLE_CNI_VERSION,
                f"configuration version {gojson.quote(net.cni_version)} does not support the "
                f"CHECK command",
            )
        if net.disable_check:
            return
        try:
            cached = self.cached_result(net, rt)
        except CNIError as e:
            raise _wrap(
                e, f"failed to get network {gojson.quote(net.name)} cached result: "
            ) from None
        for plugin in net.plugins:
            self._run_one(net, plugin, "CHECK", cached, rt)

    def del_network_list(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        """DEL every plugin in reverse order, then drop the cache file.

        Lists from 0.4.0 on get the cached result as prevResult; an undecodable cache file is
        removed and DEL goes on without it. Stops at the first failure with
        `plugin type="<t>" failed (delete): <err>` and keeps the cache file.
        """
        cached = None
        if _version_at_least(net.cni_version, "0.4.0"):
            try:
                cached = self.cached_result(net, rt)
            except CNIError:
                self.cache.delete(net.name, rt.container_id, rt.ifname)
                cached = None
        for plugin in reversed(net.plugins):
            try:
                self._run_one(net, plugin, "DEL", cached, rt)
            except CNIError as e:
                raise _wrap(e, f"plugin {plugin.description()} failed (delete): ") from None
        self.cache.delete(net.name, rt.container_id, rt.ifname)

    # ---------------------------------------------------------------- STATUS / GC

    def _run_bare(
        self, net: NetworkConfigList, plugin: PluginConfig, command: str, stdin: bytes
    ) -> None:
        self._exec(self._find(plugin.type), command, stdin, RuntimeConf())

    def status_network_list(self, net: NetworkConfigList) -> None:
        """STATUS every plugin in order; the first failure is raised unchanged (its code kept).

        Lists below 1.1.0 succeed without running anything.
        """
        try:
            if not _version_at_least(net.cni_version, version.SINCE["STATUS"]):
                return
        except CNIError:
            return
        for plugin in net.plugins:
            stdin = build_request(plugin, net.name, net.cni_version)
            self._run_bare(net, plugin, "STATUS", stdin)

    def gc_network_list(
        self, net: NetworkConfigList, valid_attachments: Sequence[tuple[str, str]] | None
    ) -> None:
        """Garbage-collect network `net`: DEL stale cached attachments, then GC each plugin.

        `valid_attachments` lists the (containerID, ifname) pairs still in use; None means
        "no information", so every cached attachment of the network is DELeted and GC goes
        out without the attachment keys (cnitool). Nothing runs when `disableGC`. GC is sent
        only to lists from 1.1.0 on. Every error is collected; raises MultiError at the end.
        """
        if net.disable_gc:
            return
        try:
            cached = self.cache.attachments("")
        except OSError:
            return
        valid = None if valid_attachments is None else set(valid_attachments)
        errors: list[CNIError] = []
        for att in cached:
            if att.network != net.name:
                continue
            if valid is not None and (att.container_id, att.ifname) in valid:
                continue
            rt = RuntimeConf(
                container_id=att.container_id,
                netns=att.netns,
                ifname=att.ifname,
                args=list(att.cni_args or []),
                capability_args=att.capability_args,
            )
            try:
                self.del_network_list(net, rt)
            except CNIError as e:
                errors.append(
                    _wrap(e, f"failed to delete stale attachment {rt.container_id} {rt.ifname}: ")
                )
        try:
            send_gc = _version_at_least(net.cni_version, version.SINCE["GC"])
        except CNIError:
            send_gc = False
        if send_gc:
            listed = list(valid_attachments) if valid_attachments is not None else None
            for plugin in net.plugins:
                stdin = build_request(plugin, net.name, net.cni_version, gc_attachments=listed)
                try:
                    self._run_bare(net, plugin, "GC", stdin)
                except CNIError as e:
                    errors.append(_wrap(e, f"failed to GC plugin {plugin.type}: "))
        if errors:
            raise MultiError(errors)

    # ---------------------------------------------------------------- cache views

    def cached_config(
        self, net: NetworkConfigList, rt: RuntimeConf
    ) -> tuple[bytes, RuntimeConf] | None:
        """The cached config bytes and `rt` with the cached CNI args and capability args, or None.

        (libcni GetNetworkListCachedConfig: args are replaced only when cached, capability
        args always.)
        """
        info = self.cache.get_config(net.name, rt.container_id, rt.ifname)
        if info is None:
            return None
        new_rt = RuntimeConf(
            container_id=rt.container_id,
            netns=rt.netns,
            ifname=rt.ifname,
            args=list(info.cni_args) if info.cni_args is not None else list(rt.args),
            capability_args=info.capability_args,
        )
        return info.config, new_rt

    def cached_attachments(self, container_id: str = ""):
        """The cached attachments, optionally of one container (cni.libcni.cache.Attachment
        list)."""
        return self.cache.attachments(container_id)

    # ---------------------------------------------------------------- VERSION

    def version_info(self, plugin_type: str) -> list[str]:
        """The spec versions the plugin supports, from a VERSION probe (docs/spec-rules.md §3.5).

        A plugin that answers `unknown CNI_COMMAND: VERSION` is taken to support 0.1.0 only.
        """
        plugin_path = self._find(plugin_type)
        rt = RuntimeConf(netns="dummy", ifname="dummy")
        env = self._env("VERSION", rt)
        env["CNI_PATH"] = "dummy"
        stdin = b'{"cniVersion":"' + version.CURRENT.encode() + b'"}'
        try:
            out = exec_plugin(plugin_path, env, stdin)
        except CNIError as e:
            if str(e) == "unknown CNI_COMMAND: VERSION":
                return ["0.1.0"]
            raise
        return decode_version_info(out)

    def _validate_plugin(self, plugin_type: str, expected: str) -> None:
        expected = expected or "0.1.0"
        if expected not in self.version_info(plugin_type):
            raise CNIError(
                ERR_INCOMPATIBLE_CNI_VERSION,
                f"plugin {plugin_type} does not support config version {gojson.quote(expected)}",
            )

    def validate_network_list(self, net: NetworkConfigList) -> list[str]:
        """Check every plugin exists and supports the list's version; return enabled capabilities.

        All problems are reported together as one error, `[err1 err2 ...]`.
        """
        errors: list[CNIError] = []
        caps: dict[str, None] = {}
        for plugin in net.plugins:
            try:
                self._validate_plugin(plugin.type, net.cni_version)
            except CNIError as e:
                errors.append(e)
            for cap, enabled in plugin.capabilities.items():
                if enabled:
                    caps[cap] = None
        if errors:
            raise CNIError(errors[0].code, "[" + " ".join(str(e) for e in errors) + "]")
        return list(caps)

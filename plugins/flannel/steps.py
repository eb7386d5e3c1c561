"""flannel's verbs at work (the thin main in plugins/flannel/__init__.py lists what each does):
the config and subnet.env read, the delegate configuration generated, saved and found again,
the delegate called through cni.invoke, MTU mismatches reported.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from cni import fileutil
from cni.config import valid_attachments
from cni.errors import (
    ERR_DECODING_FAILURE,
    ERR_INCOMPATIBLE_CNI_VERSION,
    ERR_INTERNAL,
    ERR_INVALID_NETWORK_CONFIG,
    ERR_PLUGIN_NOT_AVAILABLE,
    ERR_UNSUPPORTED_FIELD,
    CNIError,
    os_error_text,
)
from cni.invoke import (
    delegate_add,
    delegate_check,
    delegate_del,
    delegate_gc,
    delegate_status,
    find_in_path,
    split_path,
)
from cni.skel import CmdArgs
from cni.validate import container_id
from plugins.flannel import config as flannel_config
from plugins.flannel import delegate as flannel_delegate
from plugins.flannel import mtu as flannel_mtu
from plugins.flannel import subnet as flannel_subnet
from plugins.flannel.config import Settings
from plugins.flannel.subnet import SubnetEnv
from plugins.multicall import runs_here

if TYPE_CHECKING:
    from cni.result import Result

# A temporary file of an interrupted write older than this is removed by GC.
STALE_TEMP_SECONDS = 300.0


def _warn(text: str) -> None:
    sys.stderr.write(f"flannel: {text}\n")


def _conf(args: CmdArgs, *, for_add: bool = False) -> Settings:
    return flannel_config.load(args.config, for_add=for_add)


def _subnet_env(conf: Settings, *, wait: float = 0.0, code: int = ERR_INTERNAL) -> SubnetEnv:
    return flannel_subnet.load(
        conf.subnet_file(), lenient=conf.subnetFileLenient, wait=wait, code=code
    )


def _find_delegate(
    plugin_type: str, env: dict[str, str], prefix: str, code: int = ERR_INTERNAL
) -> None:
    """Fail early, like the reference's non-CNI errors, when the delegate is not on CNI_PATH."""
    try:
        find_in_path(plugin_type, split_path(env.get("CNI_PATH", "")))
    except CNIError as e:
        raise CNIError(code, f"{prefix}{e.msg}", e.details) from None


# Codes with which a delegate refuses the configuration itself, before it changes anything.
_CONFIG_REFUSED = frozenset(
    {
        ERR_INCOMPATIBLE_CNI_VERSION,
        ERR_UNSUPPORTED_FIELD,
        ERR_DECODING_FAILURE,
        ERR_INVALID_NETWORK_CONFIG,
    }
)


def add(args: CmdArgs) -> Result:
    """Generate and save the delegate configuration, delegate ADD, return the delegate's result."""
    conf = _conf(args, for_add=True)
    env = _subnet_env(conf, wait=float(conf.subnetFileWait))
    delegate = flannel_delegate.build(conf, env)
    data = flannel_delegate.encode(delegate)
    # Saved before the delegate runs: whatever it does, the runtime's DEL finds what to undo.
    path = flannel_delegate.save(conf.data_dir(), args.container_id, data)
    _find_delegate(delegate["type"], args.env, "failed to delegate add: ")
    try:
        result = delegate_add(delegate["type"], data, args.env)
    except CNIError as e:
        if e.code in _CONFIG_REFUSED or _delegate_is_ours(delegate["type"], args.env):
            # The delegate made nothing a DEL could release (it refused the configuration, or
            # it is ours and undid everything itself), and the saved file would only make a
            # later DEL act on nothing: a failed ADD leaves nothing behind.
            flannel_delegate.remove_saved(path)
        raise
    if delegate["type"] == "bridge" and env.mtu is not None and not _user_mtu(conf):
        _warn_mtu_mismatch(str(delegate.get("bridge") or "cni0"), env.mtu)
    return result


def _user_mtu(conf: Settings) -> bool:
    """True when the user's `delegate` sets `mtu` itself: pods then do not follow FLANNEL_MTU."""
    return isinstance(conf.delegate, dict) and "mtu" in conf.delegate


def _delegate_is_ours(plugin_type: str, env: dict[str, str]) -> bool:
    """True when the delegate runs in this interpreter (our own plugin, which rolls back a failed
    ADD completely)."""
    try:
        return runs_here(find_in_path(plugin_type, split_path(env.get("CNI_PATH", ""))))
    except CNIError:
        return False


def _warn_mtu_mismatch(bridge: str, mtu: int) -> None:
    """Say on stderr which of the bridge and its ports (other pods) are not at FLANNEL_MTU."""
    try:
        wrong = flannel_mtu.mismatches(bridge, mtu)
    except Exception as e:  # noqa: BLE001 - a warning must never fail an ADD that succeeded
        _warn(f"cannot compare MTUs with FLANNEL_MTU={mtu}: {e}")
        return
    if wrong:
        _warn(
            f"FLANNEL_MTU is {mtu} but {', '.join(wrong)} differ: large packets between this pod "
            f"and those may be dropped; recreate the pods on those ports (the bridge follows)"
        )


def _regenerate(conf: Settings) -> tuple[str, bytes] | None:
    """The delegate configuration ADD would generate now, or None (reason on stderr)."""
    try:
        env = _subnet_env(conf)
        delegate = flannel_delegate.build(conf, env)
        data = flannel_delegate.encode(delegate)
    except CNIError as e:
        _warn(f"cannot regenerate the delegate configuration: {e.msg}")
        return None
    if not flannel_delegate.usable_type(delegate["type"]):
        _warn(
            f"cannot regenerate the delegate configuration: bad delegate type {delegate['type']!r}"
        )
        return None
    return delegate["type"], data


def delete(args: CmdArgs) -> None:
    """Delegate DEL with the saved configuration (or a regenerated one); then remove the file.

    The file is removed only after the delegate's DEL succeeded, so a failed DEL can be retried.
    No saved file and no usable subnet.env is success: there is nothing this plugin can undo.
    """
    conf = _conf(args)
    path = flannel_delegate.saved_path(conf.data_dir(), args.container_id)
    # An ADD killed while saving left its temporary file; its pid is gone, so nobody owns it.
    fileutil.sweep_dead_temps(conf.data_dir(), f".{args.container_id}{fileutil.TMP_MARK}")
    read_error: OSError | None = None
    try:
        data = flannel_delegate.read_saved(path)
    except OSError as e:
        data, read_error = None, e
    saved = flannel_delegate.parse_saved(data) if data is not None else None
    if saved is not None:
        try:
            delegate_del(saved["type"], data, args.env)
        except CNIError as e:
            if e.code not in _CONFIG_REFUSED:
                raise  # kept, so that a retried DEL can still release what the delegate made
            # The delegate refuses this configuration outright, so it can never act on it: keeping
            # the file would fail every DEL of this pod forever.
            _warn(f"delegate refused the saved configuration {path} ({e}); removing it")
        flannel_delegate.remove_saved(path)
        return
    if data is not None:
        _warn(f"saved delegate configuration {path} is not usable (torn write?); regenerating it")
    regenerated = _regenerate(conf)
    if regenerated is None:
        if read_error is not None:
            raise CNIError(ERR_INTERNAL, f"failed to read {path}: {os_error_text(read_error)}")
        if data is not None:
            flannel_delegate.remove_saved(path)
        return
    delegate_del(regenerated[0], regenerated[1], args.env)
    if data is not None or read_error is not None:
        try:
            flannel_delegate.remove_saved(path)
        except CNIError as e:
            _warn(e.msg)


def check(args: CmdArgs) -> None:
    """Delegate CHECK with the saved configuration plus this call's prevResult."""

    conf = _conf(args)
    path = flannel_delegate.saved_path(conf.data_dir(), args.container_id)
    try:
        data = flannel_delegate.read_saved(path)
    except OSError as e:
        raise CNIError(ERR_INTERNAL, f"failed to read {path}: {os_error_text(e)}") from None
    if data is None:
        raise CNIError(
            ERR_INTERNAL,
            f"no saved delegate configuration {path}: ADD did not run for this container "
            "or its state was lost",
        )
    saved = flannel_delegate.parse_saved(data)
    if saved is None:
        raise CNIError(ERR_INTERNAL, f"saved delegate configuration {path} is not usable")
    try:
        env = _subnet_env(conf)
    except CNIError:
        env = None  # unreadable now: neither comparison below can be made
    _warn_if_lease_changed(env, saved)
    if conf.cniVersion:
        saved["cniVersion"] = conf.cniVersion
    if conf.prevResult is not None:
        saved["prevResult"] = args.config.get("prevResult", conf.prevResult)
    delegate_check(saved["type"], json.dumps(saved).encode(), args.env)
    _check_pod_mtu(env, conf, args)


def _check_pod_mtu(env: SubnetEnv, conf: Settings, args: CmdArgs) -> None:
    """Fail when the pod's interface is not at the current FLANNEL_MTU (an MTU change since the
    pod was made: its large packets to newer pods are dropped). Skipped while subnet.env is
    unreadable or the interface cannot be read (the delegate's CHECK reports that)."""
    if env is None or env.mtu is None or not args.netns or _user_mtu(conf):
        return
    mtu = flannel_mtu.interface_mtu(args.netns, args.ifname)
    if mtu is not None and mtu != env.mtu:
        raise CNIError(
            ERR_INTERNAL,
            f'"{args.ifname}" has MTU {mtu} but FLANNEL_MTU is {env.mtu}: the pod predates an '
            "MTU change; recreate it",
        )


def _warn_if_lease_changed(env: SubnetEnv, saved: dict[str, Any]) -> None:
    """Say so on stderr when subnet.env (`env`, None when unreadable) no longer gives the ranges
    the attachment was made with."""
    if env is None:
        return
    ipam = saved.get("ipam")
    ranges = ipam.get("ranges") if isinstance(ipam, dict) else None
    if ranges is not None and ranges != env.ranges():
        _warn(f"the node's flannel subnet changed since ADD: now {env.ranges()}, saved {ranges}")


def status(args: CmdArgs) -> None:
    """Code 50 while subnet.env is missing or invalid or the delegate is absent; else its STATUS."""
    conf = _conf(args)
    env = _subnet_env(conf, code=ERR_PLUGIN_NOT_AVAILABLE)
    delegate = flannel_delegate.build(conf, env)
    _find_delegate(delegate["type"], args.env, "", code=ERR_PLUGIN_NOT_AVAILABLE)
    delegate_status(delegate["type"], flannel_delegate.encode(delegate), args.env)


def gc(args: CmdArgs, gc_ifname: str) -> None:
    """DEL (as `gc_ifname`) every saved attachment of this network that is not valid, then
    forward GC.

    Every stale attachment is tried even when one fails; the first error is raised at the end.
    """
    conf = _conf(args)
    valid_ids = {cid for cid, _ in valid_attachments(args.config)}
    errors: list[CNIError] = []
    template: dict[str, Any] | None = None
    for name, path in _saved_entries(conf.data_dir()):
        try:
            data = flannel_delegate.read_saved(path)
        except OSError as e:
            _warn(f"GC: cannot read {path}: {os_error_text(e)}")
            continue
        saved = flannel_delegate.parse_saved(data) if data is not None else None
        if saved is None:
            if data is not None:
                _warn(f"GC: {path} is not usable; left for the DEL of its container")
            continue
        if saved.get("name") != conf.name:
            continue  # another network sharing this dataDir
        if name in valid_ids:
            template = saved
            continue
        env = dict(args.env)
        env.update(CNI_CONTAINERID=name, CNI_IFNAME=gc_ifname, CNI_NETNS="", CNI_ARGS="")
        try:
            delegate_del(saved["type"], data, env)
            flannel_delegate.remove_saved(path)
        except CNIError as e:
            errors.append(e)
            template = template or saved
    forwarded = _gc_delegate_conf(conf, template)
    if forwarded is None:
        _warn("GC: no delegate configuration available (subnet.env unreadable); GC not forwarded")
    else:
        listed = args.config.get("cni.dev/valid-attachments")
        if listed is None:
            listed = args.config.get("cni.dev/attachments")
        forwarded["cni.dev/valid-attachments"] = listed or []
        try:
            delegate_gc(forwarded["type"], flannel_delegate.encode(forwarded), args.env)
        except CNIError as e:
            errors.append(e)
    if errors:
        raise errors[0]


def _gc_delegate_conf(conf: Settings, template: dict[str, Any] | None) -> dict[str, Any] | None:
    """The delegate configuration for forwarding GC: generated now, else a saved one of this
    network."""
    try:
        return flannel_delegate.build(conf, _subnet_env(conf))
    except CNIError:
        pass
    if template is None:
        return None
    out = dict(template)
    if conf.cniVersion:
        out["cniVersion"] = conf.cniVersion
    return out


def _saved_entries(data_dir: str) -> list[tuple[str, str]]:
    """(containerID, path) of every saved configuration in `data_dir`, sorted; stale temps
    removed."""

    out: list[tuple[str, str]] = []
    fileutil.sweep_dead_temps(data_dir)  # those of killed writers at once, any others when old
    try:
        entries = list(os.scandir(data_dir))
    except FileNotFoundError:
        return out
    except OSError as e:
        raise CNIError(ERR_INTERNAL, f"failed to list {data_dir}: {e.strerror}") from None
    now = time.time()
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if fileutil.is_temp_name(entry.name):
                if now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS:
                    os.unlink(entry.path)
                continue
        except OSError:
            continue
        try:
            container_id(entry.name)
        except CNIError:
            continue
        out.append((entry.name, entry.path))
    return sorted(out)

"""Finding and running plugins: delegation (docs/spec-rules.md §6) and the runtime's exec (§2.4).

A delegate that is one of this suite's own executables (same inode as the file this process
started from) runs in this interpreter through `cni.skel.run`; anything else is executed. Both
paths take the same env and stdin and produce the same (status, stdout), so callers cannot tell.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Mapping

from cni.errors import ERR_INTERNAL, ERR_UNKNOWN, CNIError
from cni.version import config_version

_ETXTBSY_RETRIES = 6


def split_path(cni_path: str) -> list[str]:
    """CNI_PATH split on ':' with empty entries dropped."""
    return [p for p in cni_path.split(os.pathsep) if p]


def find_in_path(name: str, paths: list[str]) -> str:
    """The first regular file called `name` in `paths`; CNIError 999 with the reference wording."""
    if not name:
        raise CNIError(ERR_INTERNAL, "no plugin name provided")
    if "/" in name or "\x00" in name or name in (".", ".."):
        raise CNIError(ERR_INTERNAL, f"invalid plugin name: {name}")
    if not paths:
        raise CNIError(ERR_INTERNAL, "no paths provided")
    for d in paths:
        candidate = os.path.join(d, name)
        try:
            if stat.S_ISREG(os.stat(candidate).st_mode):
                return candidate
        except (OSError, ValueError):
            continue
    return _not_found(name, paths)


def _not_found(name: str, paths: list[str]) -> str:
    raise CNIError(ERR_INTERNAL, f'failed to find plugin "{name}" in path [{" ".join(paths)}]')


# () -> (descriptors to pass, variables to set or, with None, remove) for a delegate that is
# executed. Registered by the entry point (plugins/multicall.py): a call holding its
# attachment's lock hands the lock to the delegates it executes. `cni` itself holds no lock.
ExecExtras = Callable[[], "tuple[tuple[int, ...], dict[str, str | None]]"]
_exec_extras: ExecExtras | None = None


def set_exec_extras(provider: ExecExtras | None) -> None:
    """Ask `provider` before every executed delegate for descriptors to pass it and variables
    to change in its environment (None: pass nothing, change nothing)."""
    global _exec_extras
    _exec_extras = provider


def _exec(path: str, env: Mapping[str, str], stdin: bytes) -> tuple[int, bytes, bytes]:
    import subprocess  # lazy: ~5 ms that only a call executing a delegate pays

    child_env = dict(env)
    pass_fds: tuple[int, ...] = ()
    if _exec_extras is not None:
        pass_fds, changes = _exec_extras()
        for key, value in changes.items():
            if value is None:
                child_env.pop(key, None)
            else:
                child_env[key] = value
    for attempt in range(_ETXTBSY_RETRIES):
        try:
            proc = subprocess.run(
                [path],
                input=stdin,
                env=child_env,
                capture_output=True,
                check=False,
                pass_fds=pass_fds,
            )
            return proc.returncode, proc.stdout, proc.stderr
        except OSError as e:
            if e.errno == errno.ETXTBSY and attempt < _ETXTBSY_RETRIES - 1:
                time.sleep(1)
                continue
            raise CNIError(ERR_INTERNAL, f"fork/exec {path}: {e.strerror}") from None
    raise AssertionError("unreachable")


def plugin_error(rc: int, stdout: bytes, stderr: bytes) -> CNIError:
    """Turn a failed plugin's output into a CNIError as the reference runtime does
    (docs/spec-rules.md §2.4)."""
    exit_text = f"exit status {rc}" if rc >= 0 else f"signal: {-rc}"
    if stdout.strip():
        try:
            return CNIError.from_dict(json.loads(stdout))
        except (ValueError, UnicodeDecodeError) as e:
            return CNIError(
                ERR_UNKNOWN,
                f'netplugin failed but error parsing its diagnostic message '
                f'"{stdout.decode(errors="replace")}": {e}',
            )
    if stderr.strip():
        return CNIError(
            ERR_UNKNOWN, f'netplugin failed: "{stderr.decode(errors="replace")}": {exit_text}'
        )
    return CNIError(ERR_UNKNOWN, f"netplugin failed with no error message: {exit_text}")


# (path, env, stdin) -> (exit status, stdout) when the delegate at `path` can run in this
# interpreter, else None. Registered by the entry point that knows the executables
# (plugins/multicall.py), as libcni lets its caller inject the exec; `cni` itself knows no plugin.
LocalRunner = Callable[[str, Mapping[str, str], bytes], "tuple[int, str] | None"]
_local_runner: LocalRunner | None = None


def set_local_runner(runner: LocalRunner | None) -> None:
    """Use `runner` for every later delegate before executing it (None: always execute)."""
    global _local_runner
    _local_runner = runner


def exec_plugin(path: str, env: Mapping[str, str], stdin: bytes) -> bytes:
    """Run the plugin at `path` (in-process when the registered local runner takes it); its
    stdout on success.

    Raises the plugin's CNIError on failure. The plugin's stderr reaches this process's stderr.
    """
    local = _local_runner(path, env, stdin) if _local_runner is not None else None
    if local is not None:
        rc, out = local
        out_b = out.encode()
        if rc != 0:
            raise plugin_error(rc, out_b, b"")
        return out_b
    rc, out_b, err_b = _exec(path, env, stdin)
    if err_b:
        sys.stderr.write(err_b.decode(errors="replace"))
    if rc != 0:
        raise plugin_error(rc, out_b, err_b)
    return out_b


def _delegate(plugin_type: str, command: str, stdin: bytes, env: Mapping[str, str]) -> bytes:
    paths = split_path(env.get("CNI_PATH", ""))
    path = find_in_path(plugin_type, paths)
    child_env = dict(env)
    child_env["CNI_COMMAND"] = command
    return exec_plugin(path, child_env, stdin)


def delegate_add(plugin_type: str, stdin: bytes, env: Mapping[str, str]):
    """Run the delegate's ADD and return its result parsed in the config's cniVersion family.

    When the ADD fails, the delegate's DEL runs (best effort) before the ADD's error is raised,
    so a failed delegation leaves no lease behind.
    """
    try:
        out = _delegate(plugin_type, "ADD", stdin, env)
    except CNIError:
        try:
            _delegate(plugin_type, "DEL", stdin, env)
        except CNIError:
            pass
        raise
    from cni.result import parse_result  # lazy: pydantic (~120 ms), for delegation only

    try:
        conf = json.loads(stdin)
    except ValueError:
        conf = {}
    version = config_version(conf) if isinstance(conf, dict) else ""
    return parse_result(out, version)


def delegate_del(plugin_type: str, stdin: bytes, env: Mapping[str, str]) -> None:
    """Run the delegate's DEL; its error passes up with its code."""
    _delegate(plugin_type, "DEL", stdin, env)


def delegate_check(plugin_type: str, stdin: bytes, env: Mapping[str, str]) -> None:
    """Run the delegate's CHECK; its error passes up with its code."""
    _delegate(plugin_type, "CHECK", stdin, env)


def delegate_status(plugin_type: str, stdin: bytes, env: Mapping[str, str]) -> None:
    """Run the delegate's STATUS; its error passes up with its code."""
    _delegate(plugin_type, "STATUS", stdin, env)


def delegate_gc(plugin_type: str, stdin: bytes, env: Mapping[str, str]) -> None:
    """Run the delegate's GC; its error passes up with its code."""
    _delegate(plugin_type, "GC", stdin, env)

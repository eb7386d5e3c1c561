"""The plugin skeleton: validate env and stdin in the reference order, gate versions, dispatch.

`run()` is a pure function of (environment, stdin) that returns (exit status, stdout text): the
process entry `main()` and in-process delegation both go through it, so a delegate that runs in
this interpreter is indistinguishable from one that is executed (docs/spec-rules.md §1.6).
"""

from __future__ import annotations

import json
import os
import sys
import time

from cni import version as _version
from cni.errors import (
    ERR_DECODING_FAILURE,
    ERR_INTERNAL,
    ERR_INVALID_ENVIRONMENT_VARIABLES,
    ERR_INVALID_NETNS,
    ERR_INVALID_NETWORK_CONFIG,
    ERR_IO_FAILURE,
    CNIError,
    one_line,
)

# typing (~2 ms) stays off the start-up path of an in-process call: type checkers honour
# this idiom.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import NoReturn

    from cni.result import Result

    Reply = Result | dict | bytes | str | None  # what a callback returns (ADD's result)
    Callback = Callable[["CmdArgs"], Reply]
    StdinSource = bytes | Callable[[], bytes]

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")

# (variable, commands that require it, validator name)
_ENV_SPEC: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("CNI_COMMAND", (), None),
    ("CNI_CONTAINERID", ("ADD", "DEL", "CHECK"), "container_id"),
    ("CNI_NETNS", ("ADD", "CHECK"), None),
    ("CNI_IFNAME", ("ADD", "DEL", "CHECK"), "interface_name"),
    ("CNI_ARGS", (), None),
    ("CNI_PATH", ("ADD", "DEL", "CHECK", "STATUS", "GC"), None),
    ("CNI_NETNS_OVERRIDE", (), None),
)


class CmdArgs:
    """Everything one invocation was given: the protocol variables, stdin and the decoded config.

    A plain slotted class, not a dataclass: `dataclasses` pulls in `inspect` (~9 ms of CPU on an
    in-process VERSION, measured on the frozen build), and VERSION must stay cheap."""

    __slots__ = (
        "command", "container_id", "netns", "ifname", "args", "path", "netns_override",
        "stdin", "config", "env",
    )

    def __init__(
        self, variables: Mapping[str, str], stdin: bytes, config: dict, env: dict[str, str]
    ) -> None:
        """`variables`: the protocol variables as read from the environment (every CNI_* name
        of the skeleton's table present, "" when unset)."""
        self.command = variables["CNI_COMMAND"]
        self.container_id = variables["CNI_CONTAINERID"]
        self.netns = variables["CNI_NETNS"]
        self.ifname = variables["CNI_IFNAME"]
        self.args = variables["CNI_ARGS"]
        self.path = variables["CNI_PATH"]
        self.netns_override = variables["CNI_NETNS_OVERRIDE"].lower() in ("1", "true")
        self.stdin = stdin
        self.config = config
        self.env = env

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"CmdArgs({fields})"

    @property
    def cni_version(self) -> str:
        """The config's cniVersion as given ("" when absent)."""
        v = self.config.get("cniVersion", "")
        return v if isinstance(v, str) else ""


class Plugin:
    """A plugin's callbacks and identity. A callback left as None succeeds with no output.

    Slotted like CmdArgs, for the same start-up reason."""

    __slots__ = ("callbacks", "versions", "about")

    def __init__(
        self,
        add: Callback | None = None,
        delete: Callback | None = None,
        check: Callback | None = None,
        status: Callback | None = None,
        gc: Callback | None = None,
        versions: tuple[str, ...] = _version.ALL,
        about: str = "",
    ) -> None:
        # by CNI_COMMAND: the five verbs the skeleton dispatches (VERSION it answers itself)
        self.callbacks: dict[str, Callback | None] = {
            "ADD": add, "DEL": delete, "CHECK": check, "STATUS": status, "GC": gc,
        }
        self.versions = versions
        self.about = about

    def replacing(
        self, commands: tuple[str, ...], make: Callable[[Callback | None], Callback | None]
    ) -> Plugin:
        """A copy of this plugin whose callback for each of `commands` is `make(old callback)`;
        the other callbacks, the versions and the about line are the same."""
        copy = Plugin(versions=self.versions, about=self.about)
        copy.callbacks = {
            cmd: make(cb) if cmd in commands else cb for cmd, cb in self.callbacks.items()
        }
        return copy


# The callback each verb runs: the module function of that name (the Go skel's CNIFuncs fields).
VERB_FUNCTIONS = (
    ("add", "cmd_add"),
    ("delete", "cmd_del"),
    ("check", "cmd_check"),
    ("status", "cmd_status"),
    ("gc", "cmd_gc"),
)


def plugin_of(namespace: Mapping[str, object], about: str) -> Plugin:
    """The Plugin of a plugin module: each verb's callback is the function named in
    VERB_FUNCTIONS found in `namespace` (the module's `globals()`), None where there is none;
    `about` is the line a bare call prints. Every plugin module builds its `PLUGIN` this way."""
    callbacks = {verb: namespace.get(name) for verb, name in VERB_FUNCTIONS}
    return Plugin(**callbacks, about=about)  # type: ignore[arg-type]


def deferred(module: str, function: str, *extra: object) -> Callback:
    """A verb callback that imports `module` on its first call and returns
    `module.function(args, *extra)`: a thin main names its verbs without loading their steps
    (pydantic alone costs ~120 ms), which VERSION and the about line never need."""

    def verb(args: CmdArgs) -> Reply:
        return getattr(__import__(module, fromlist=[function]), function)(args, *extra)

    verb.__qualname__ = verb.__name__ = f"{module}.{function}"
    return verb


def deferred_plugin(module: str, about: str, **own: Callback) -> Plugin:
    """The Plugin of a thin main whose verbs are the functions of `module` named like Plugin's
    verb fields (add, delete, check, status, gc), each imported on its first call (`deferred`);
    `own` gives a verb the main's own callback instead."""
    callbacks = {verb: own.get(verb) or deferred(module, verb) for verb, _ in VERB_FUNCTIONS}
    return Plugin(**callbacks, about=about)  # type: ignore[arg-type]


def _parse_env(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Read the protocol variables in the reference order; the first invalid value raises."""
    cmd = env.get("CNI_COMMAND", "")
    values: dict[str, str] = {}
    missing: list[str] = []
    for var, required_for, validator in _ENV_SPEC:
        val = env.get(var, "")
        values[var] = val
        required = var == "CNI_COMMAND" or cmd in required_for
        if not required:
            continue
        if val == "":
            missing.append(var)
            continue
        if validator is not None:
            # Lazy here and below (cni.validate, cni.netns, select): VERSION needs none of
            # them, and together they cost ~0.6 ms of a 17 ms in-process VERSION (frozen build).
            from cni import validate

            getattr(validate, validator)(val)
    return values, missing


_UNMARSHAL = "error unmarshall network config: "


def _decode_config(stdin: bytes) -> dict:
    """Decode stdin and check `name` as the skel does before dispatch (codes 6 and 7)."""
    try:
        text = stdin.decode("utf-8")
        conf = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # RecursionError: too deep
        raise CNIError(ERR_DECODING_FAILURE, _UNMARSHAL + one_line(e)) from None
    if "\\u" in text:  # an escape may decode to half a surrogate pair: text no tool can encode
        lone = _lone_surrogate(conf)
        if lone is not None:
            raise CNIError(
                ERR_DECODING_FAILURE,
                f"{_UNMARSHAL}invalid Unicode: lone surrogate \\u{ord(lone):04x}",
            )
    if conf is None:
        conf = {}
    if not isinstance(conf, dict):
        raise CNIError(
            ERR_DECODING_FAILURE,
            f"{_UNMARSHAL}cannot unmarshal {type(conf).__name__} into an object",
        )
    name = conf.get("name")
    if name is not None and not isinstance(name, str):
        raise CNIError(ERR_DECODING_FAILURE, _UNMARSHAL + "name is not a string")
    if not name:
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, "missing network name")
    from cni import validate

    validate.network_name(name)
    return conf


def _lone_surrogate(obj: object) -> str | None:
    """The first unpaired UTF-16 surrogate in any string (key or value) of a decoded JSON value."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            for c in item:
                if "\ud800" <= c <= "\udfff":
                    return c
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _netns_check(args: CmdArgs) -> None:
    """Refuse CNI_NETNS naming the plugin's own namespace (code 8), unless overridden."""
    if args.netns_override or not args.netns:
        return
    from cni.netns import same_as_current

    if same_as_current(args.netns):
        raise CNIError(
            ERR_INVALID_NETNS, "plugin's netns and netns from CNI_NETNS should not be the same"
        )


def _format_result(result: Reply, conf_version: str) -> str:
    if result is None:
        return ""
    if isinstance(result, (bytes, str)):
        return result.decode() if isinstance(result, bytes) else result
    if isinstance(result, dict):
        # Lazy: cni.result loads pydantic (~120 ms), which VERSION and a callback without a
        # result never need.
        from cni.result import parse_result

        result = parse_result(result, conf_version)
    converted = result.convert(conf_version or "0.1.0")
    return converted.to_json()


def _dispatch(plugin: Plugin, env: Mapping[str, str], source: StdinSource, box: list) -> str:
    values, missing = _parse_env(env)
    cmd = values["CNI_COMMAND"]
    if missing:
        if cmd == "" and plugin.about:
            sys.stderr.write(plugin.about + "\n")
            supported = ", ".join(plugin.versions)
            sys.stderr.write(f"CNI protocol versions supported: {supported}\n")
            return ""
        raise CNIError(
            ERR_INVALID_ENVIRONMENT_VARIABLES,
            f"required env variables [{','.join(missing)}] missing",
        )
    stdin = source() if callable(source) else source
    box.append(stdin)
    if cmd == "VERSION":
        return _version.version_reply(_try_json(stdin), plugin.versions)
    conf = _decode_config(stdin)
    args = CmdArgs(values, stdin, conf, dict(env))
    callbacks = plugin.callbacks
    if cmd not in callbacks:
        raise CNIError(ERR_INVALID_ENVIRONMENT_VARIABLES, f"unknown CNI_COMMAND: {one_line(cmd)}")
    conf_version = _version.config_version(conf)
    _version.check_command(cmd, conf_version, plugin.versions)
    if cmd in ("ADD", "DEL"):
        _netns_check(args)
    callback = callbacks[cmd]
    if callback is None:
        return ""
    result = callback(args)
    if cmd != "ADD":
        return ""
    return _format_result(result, conf_version)


def _try_json(stdin: bytes) -> dict | None:
    try:
        obj = json.loads(stdin.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _error_version(stdin: bytes) -> str | None:
    conf = _try_json(stdin)
    if conf is not None and isinstance(conf.get("cniVersion"), str) and conf["cniVersion"]:
        return conf["cniVersion"]
    return _version.CURRENT


def run(plugin: Plugin, env: Mapping[str, str], stdin: StdinSource) -> tuple[int, str]:
    """Run one invocation; returns (exit status, stdout text) and never raises.

    `stdin` is the request bytes, or a callable that reads them, called only once the environment
    has passed its checks. Typed errors keep their code; anything unexpected becomes code 999
    with a one-line message.
    """
    box: list[bytes] = []
    try:
        return 0, _dispatch(plugin, env, stdin, box)
    except CNIError as e:
        return 1, e.to_json(_error_version(box[0] if box else b""))
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - the protocol wants JSON, never a traceback
        err = CNIError(ERR_INTERNAL, one_line(f"{type(e).__name__}: {e}"))
        if env.get("CNI_PY_DEBUG", "") not in ("", "0"):
            import traceback  # lazy: ~1.2 ms on every in-process call, for a debug switch

            traceback.print_exc(file=sys.stderr)
        return 1, err.to_json(_error_version(box[0] if box else b""))


def read_stdin() -> bytes:
    """All of stdin as bytes; CNIError 5 when it cannot be read (closed, a directory, ...)."""
    if sys.stdin is None:
        raise CNIError(ERR_IO_FAILURE, "error reading from stdin: stdin is closed")
    try:
        return sys.stdin.buffer.read()
    except (OSError, ValueError) as e:
        raise CNIError(ERR_IO_FAILURE, f"error reading from stdin: {e}") from None


def read_stdin_briefly(timeout: float = 0.2) -> bytes:
    """What stdin holds within `timeout` seconds, or b"": VERSION must answer even when its
    stdin is closed, unreadable or never closed by the caller."""
    try:
        fd = sys.stdin.fileno() if sys.stdin is not None else -1
    except (OSError, ValueError):
        return b""
    if fd < 0:
        return b""
    import select

    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return b""  # caller never finished writing: answer without it
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    except (OSError, ValueError):
        return b""


def main(plugin: Plugin) -> NoReturn:
    """Process entry point: run with os.environ and stdin, print stdout, exit 0 or 1."""
    env = os.environ

    def source() -> bytes:
        if env.get("CNI_COMMAND") == "VERSION":
            return read_stdin_briefly()
        return read_stdin()

    rc, out = run(plugin, env, source)
    if out:
        sys.stdout.write(out)
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit skips interpreter teardown (module GC, atexit) that costs milliseconds per call.
    os._exit(rc)

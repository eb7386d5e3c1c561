"""cnitool: run a network configuration against an existing network namespace by hand.

    cnitool <add|check|del|gc|status> <network-name> <netns> [-i|--ifname <name>]

Environment (docs/spec-rules.md §9):
  NETCONFPATH    directory of .conflist/.conf/.json files (default /etc/cni/net.d)
  CNI_PATH       plugin directories, ':'-separated
  CNI_ARGS       K=V;K=V pairs passed to the plugins as CNI_ARGS
  CAP_ARGS       JSON object of capability arguments (e.g. {"portMappings": [...]})
  CNI_IFNAME     interface name when -i is not given (default eth0)
  CNI_CACHE_DIR  result cache directory (default /var/lib/cni; not in the Go cnitool)

`check` and `del` without CAP_ARGS (or CNI_ARGS) use the values cached by `add`, so a `del`
cleans up what the `add` set up (the Go cnitool sends only what the environment holds now).

The container ID is `cnitool-` + the first 10 bytes of SHA-512 of the absolute netns path, in
hex, as the Go cnitool derives it, so both tools address the same cached attachment.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn, TextIO

from cni import __version__
from cni.errors import (
    ERR_DECODING_FAILURE,
    ERR_INVALID_ENVIRONMENT_VARIABLES,
    CNIError,
    one_line,
)
from cni.gocompat import json as gojson
from cni.version import ALL, version_reply

DEFAULT_NET_DIR = "/etc/cni/net.d"
COMMANDS = ("add", "check", "del", "gc", "status")

USAGE = """CNI Tool is a simple program that executes a CNI configuration.
It will add, check, remove, gc, or get status of an interface in an already-created \
network namespace.

Usage:
  cnitool <command> <network-name> <netns> [flags]

Commands:
  add     Add network interface to a network namespace
  check   Check network interface in a network namespace
  del     Delete network interface from a network namespace
  gc      Garbage collect network interfaces
  status  Get status of network interfaces
  doctor  Check this node's CNI set-up and say how to fix what is wrong (cnitool doctor --help)

Flags:
  -h, --help            help for cnitool
  -v, --version         print the suite version and the CNI versions spoken
  -i, --ifname string   Interface name (defaults to env var CNI_IFNAME or 'eth0')

Environment: NETCONFPATH, CNI_PATH, CNI_ARGS, CAP_ARGS, CNI_IFNAME, CNI_CACHE_DIR
"""


class UsageError(Exception):
    """Bad command line."""


def parse_cni_args(text: str) -> list[tuple[str, str]]:
    """CNI_ARGS as cnitool reads it: `K=V` pairs joined by `;`, key and value both non-empty."""
    pairs = []
    for pair in text.split(";"):
        kv = pair.split("=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise CNIError(
                ERR_INVALID_ENVIRONMENT_VARIABLES, f"invalid CNI_ARGS pair {gojson.quote(pair)}"
            )
        pairs.append((kv[0], kv[1]))
    return pairs


def parse_cap_args(text: str) -> dict | None:
    """CAP_ARGS: a JSON object (or null); anything else is an error."""
    try:
        value = gojson.loads(text)
    except ValueError as e:
        raise CNIError(ERR_DECODING_FAILURE, f"invalid CAP_ARGS: {e}") from None
    if value is not None and not isinstance(value, dict):
        raise CNIError(
            ERR_DECODING_FAILURE,
            f"json: cannot unmarshal {gojson.json_kind(value)} into Go value of type "
            f"map[string]interface {{}}",
        )
    return value


def _go_getwd(env: Mapping[str, str]) -> str:
    """Go's os.Getwd: $PWD when it is absolute and names the current directory."""
    pwd = env.get("PWD", "")
    if pwd.startswith("/"):
        try:
            if os.path.samefile(pwd, "."):
                return pwd
        except OSError:
            pass
    return os.getcwd()


def go_abs(path: str, env: Mapping[str, str]) -> str:
    """Go's filepath.Abs: joined to the working directory if relative, then lexically cleaned."""
    if not path.startswith("/"):
        path = posixpath.join(_go_getwd(env), path)
    clean = posixpath.normpath(path)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")  # Go keeps one leading slash, POSIX normpath two
    return clean


def container_id_for(netns_abs: str) -> str:
    """`cnitool-` + hex of the first 10 bytes of SHA-512(netns path) (the Go cnitool's ID)."""
    return (
        "cnitool-"
        + hashlib.sha512(netns_abs.encode("utf-8", "surrogateescape")).digest()[:10].hex()
    )


def about() -> str:
    """The version text `cnitool --version` prints, like the plugins' about text."""
    return f"cnitool {__version__} (pycni)\nCNI protocol versions supported: {', '.join(ALL)}\n"


def parse_argv(argv: Sequence[str]) -> tuple[str | None, list[str], str, bool]:
    """(command, positional args, ifname flag value, help requested) from the command line."""
    command: str | None = None
    positional: list[str] = []
    ifname = ""
    want_help = False
    i = 0
    only_args = False
    while i < len(argv):
        arg = argv[i]
        i += 1
        if only_args or not arg.startswith("-") or arg == "-":
            if command is None:
                command = arg
            else:
                positional.append(arg)
            continue
        if arg == "--":
            only_args = True
        elif arg in ("-h", "--help"):
            want_help = True
        elif arg in ("-v", "--version"):
            command = "version"
        elif arg in ("-i", "--ifname"):
            if i >= len(argv):
                raise UsageError(
                    f"flag needs an argument: {arg!r}"
                    if arg == "--ifname"
                    else "flag needs an argument: 'i' in -i"
                )
            ifname = argv[i]
            i += 1
        elif arg.startswith("--ifname="):
            ifname = arg[len("--ifname=") :]
        elif arg.startswith("-i") and not arg.startswith("--"):
            ifname = arg[2:].removeprefix("=")
        elif arg.startswith("--"):
            raise UsageError(f"unknown flag: {arg.split('=', 1)[0]}")
        else:
            raise UsageError(f"unknown shorthand flag: {arg[1]!r} in {arg}")
    return command, positional, ifname, want_help


def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    """Run one cnitool invocation; returns the exit status (0 ok, 1 error). Never raises
    CNIError."""
    if not argv and env.get("CNI_COMMAND") == "VERSION":
        stdout.write(version_reply(None, ALL))  # answers VERSION like every plugin of the suite
        return 0
    try:
        command, args, ifname_flag, want_help = parse_argv(argv)
    except UsageError as e:
        stderr.write(f"{e}\n")
        return 1
    if command == "version":
        stdout.write(about())
        return 0
    if command in (None, "help") or want_help:
        stdout.write(USAGE)
        return 0
    if command not in COMMANDS:
        stderr.write(
            f'unknown command "{command}" for "cnitool"\nRun \'cnitool --help\' for usage.\n'
        )
        return 1
    if len(args) < 2:
        stderr.write(f"requires at least 2 arg(s), only received {len(args)}\n")
        stderr.write(f"Usage: cnitool {command} <network-name> <netns> [-i <ifname>]\n")
        return 1
    try:
        result = _execute(command, args[0], args[1], ifname_flag, env)
    except CNIError as e:
        stderr.write(f"{e}\n")
        return 1
    except OSError as e:
        stderr.write(f"{e}\n")
        return 1
    if result is not None:
        stdout.write(result.to_json())
    return 0


def _execute(command: str, net_name: str, netns: str, ifname_flag: str, env: Mapping[str, str]):
    # Lazy: the runtime costs ~20 ms to import, which `cnitool VERSION` and usage errors
    # never need.
    from cni.libcni import conflist
    from cni.libcni.runtime import CNIConfig, RuntimeConf

    net_dir = env.get("NETCONFPATH", "") or DEFAULT_NET_DIR
    net = conflist.load(net_dir, net_name)
    cap_text = env.get("CAP_ARGS", "")
    capability_args = parse_cap_args(cap_text) if cap_text else None
    args_text = env.get("CNI_ARGS", "")
    cni_args = parse_cni_args(args_text) if args_text else []
    ifname = ifname_flag or env.get("CNI_IFNAME", "") or "eth0"
    netns_abs = go_abs(netns, env)
    rt = RuntimeConf(
        container_id=container_id_for(netns_abs),
        netns=netns_abs,
        ifname=ifname,
        args=cni_args,
        capability_args=capability_args,
    )
    cni_path = env.get("CNI_PATH", "")
    cni = CNIConfig(
        [p for p in cni_path.split(os.pathsep)] if cni_path else [],
        cache_dir=env.get("CNI_CACHE_DIR", ""),
        environ=env,
    )
    if command == "add":
        return cni.add_network_list(net, rt)
    if command in ("check", "del") and not (cap_text and args_text):
        _use_cached_args(cni, net, rt, use_caps=not cap_text, use_args=not args_text)
    if command == "check":
        cni.check_network_list(net, rt)
    elif command == "del":
        cni.del_network_list(net, rt)
    elif command == "gc":
        cni.gc_network_list(net, None)
    elif command == "status":
        cni.status_network_list(net)
    return None


def _use_cached_args(cni, net, rt, *, use_caps: bool, use_args: bool) -> None:
    """Fill CAP_ARGS / CNI_ARGS the caller did not give from the attachment's cache entry.

    The Go cnitool sends DEL and CHECK only what the environment holds now, so a `del`
    without the CAP_ARGS of the `add` leaves e.g. portmap's rules behind. The cache holds what
    ADD used (libcni GetNetworkListCachedConfig); an unreadable entry is ignored here.
    """
    try:
        cached = cni.cached_config(net, rt)
    except CNIError:
        return
    if cached is None:
        return
    _, cached_rt = cached
    if use_caps:
        rt.capability_args = cached_rt.capability_args
    if use_args:
        rt.args = cached_rt.args


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Process entry point: run with sys.argv and os.environ, exit with its status."""
    env = os.environ
    try:
        rc = run(sys.argv[1:] if argv is None else argv, env, sys.stdout, sys.stderr)
    except Exception as e:  # noqa: BLE001 - one line, not a traceback, unless debugging
        if env.get("CNI_PY_DEBUG", "") not in ("", "0"):
            import traceback  # lazy: for a debug switch

            traceback.print_exc(file=sys.stderr)
        sys.stderr.write(one_line(f"{type(e).__name__}: {e}") + "\n")
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)

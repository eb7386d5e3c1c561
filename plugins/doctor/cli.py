"""`cnitool doctor [--json] [--fix] [--network NAME]`: run the checks, print, repair.

Exit status: 0 when no check fails, 1 when one does, 2 on a usage error. With `--fix`, the
repairs the checks offered run in phase order (attachments of gone pods first, then rules,
leases, the bridge), each action is printed, and the checks run again on a fresh reading of the
node; the report and the exit status are those of that second run.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn, TextIO

from cni.errors import CNIError, one_line
from plugins.doctor import conf, flannel, ipam, kernel, netfilter, overlay, portmap, report
from plugins.doctor.node import Node

USAGE = """Usage: cnitool doctor [--json] [--fix] [--network NAME]

Check this node's CNI set-up (run it in the network namespace whose cni0 it examines) and say,
for each problem, the command or change that fixes it.

  --json          machine-readable report
  --fix           apply the provably safe repairs (leftovers of pods whose namespace is gone,
                  provably dead leases, a cni0 without pods that has the wrong address), then
                  check again; never touches a live pod
  --network NAME  only the configuration named NAME

Environment: NETCONFPATH (default /etc/cni/net.d), CNI_PATH (default /opt/cni/bin),
CNI_CACHE_DIR (default /var/lib/cni). Exit status: 0 nothing fails, 1 a check fails, 2 usage.
"""

# The groups of checks, in report order; each group's CHECKS run in their listed order.
GROUPS = (conf, flannel, ipam, kernel, netfilter, portmap, overlay)


def check_id(check: Callable[[Node], report.Check]) -> str:
    """A check's stable id: `<group>.<name>` for the function `check_<name>` of a group module,
    underscores written as hyphens (`kernel.check_ip_forward` is "kernel.ip-forward")."""
    group = check.__module__.rsplit(".", 1)[-1]
    return f"{group}.{check.__name__.removeprefix('check_').replace('_', '-')}"


# (stable id, check) in report order
CHECKS: list[tuple[str, Callable[[Node], report.Check]]] = [
    (check_id(check), check) for group in GROUPS for check in group.CHECKS
]


class UsageError(Exception):
    """Bad command line."""


def parse_argv(argv: Sequence[str]) -> tuple[bool, bool, str | None, bool]:
    """(json, fix, network, help) from the arguments after `doctor`; UsageError otherwise."""
    as_json = fix = want_help = False
    network: str | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--json":
            as_json = True
        elif arg == "--fix":
            fix = True
        elif arg in ("-h", "--help"):
            want_help = True
        elif arg == "--network":
            if i >= len(argv) or not argv[i]:
                raise UsageError("flag needs an argument: --network")
            network = argv[i]
            i += 1
        elif arg.startswith("--network="):
            network = arg.split("=", 1)[1]
            if not network:
                raise UsageError("flag needs an argument: --network")
        else:
            raise UsageError(f"unknown argument {arg!r}")
    return as_json, fix, network, want_help


def run_checks(node: Node) -> list[report.Check]:
    """Every check in report order; a check that breaks is reported as failed, never raised."""
    out = []
    for check_id, check in CHECKS:
        try:
            result = check(node)
        except Exception as e:  # noqa: BLE001 - one broken check must not hide the others
            if os.environ.get("CNI_PY_DEBUG", "") not in ("", "0"):
                traceback.print_exc(file=sys.stderr)
            result = report.Check(
                check_id, report.FAIL,
                f"the check could not run: {one_line(f'{type(e).__name__}: {e}')}",
                "run again with CNI_PY_DEBUG=1 and report the traceback",
            )
        result.id = check_id
        out.append(result)
    return out


def apply_repairs(checks: Sequence[report.Check]) -> list[str]:
    """Run every repair of the non-ok checks, in phase order; the sentences of what changed."""
    repairs = [r for c in checks if c.status != report.OK for r in c.repairs]
    done: list[str] = []
    for repair in sorted(repairs, key=lambda r: r.phase):
        try:
            done += repair.run()
        except (CNIError, OSError, RuntimeError, ValueError) as e:
            done.append(f"could not {repair.description}: {one_line(e)}")
    return done


def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    stdout: TextIO,
    stderr: TextIO,
    *,
    proc_root: str = "/proc",
) -> int:
    """Run `cnitool doctor` with `argv` (the arguments after `doctor`); the exit status.

    `proc_root` is where kernel settings are read (tests point it at a prepared tree).
    """
    try:
        as_json, fix, network, want_help = parse_argv(argv)
    except UsageError as e:
        stderr.write(f"cnitool doctor: {e}\n{USAGE}")
        return 2
    if want_help:
        stdout.write(USAGE)
        return 0
    node = Node(env, network=network, proc_root=proc_root)
    try:
        if network is not None and not any(
            cf.conf is not None and cf.conf.name == network for cf in node.conf_files
        ):
            stderr.write(f'cnitool doctor: no network configuration named "{network}" in '
                         f"{node.net_dir}\n")
            return 2
        checks = run_checks(node)
        actions: list[str] | None = None
        if fix:
            actions = apply_repairs(checks)
            after = Node(env, network=network, proc_root=proc_root)
            try:
                checks = run_checks(after)
            finally:
                after.close()
    finally:
        node.close()
    if as_json:
        stdout.write(report.to_json(checks, actions))
    else:
        if actions is not None:
            for action in actions or ["nothing to repair that is provably safe"]:
                stdout.write(f"fixed: {action}\n" if actions else f"--fix: {action}\n")
        stdout.write(report.render_text(checks))
    return report.exit_status(checks)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Process entry point for `cnitool doctor ...`: exit with its status (an unexpected error
    is one line on stderr and status 1; CNI_PY_DEBUG=1 adds the traceback)."""
    try:
        rc = run(sys.argv[2:] if argv is None else argv, os.environ, sys.stdout, sys.stderr)
    except Exception as e:  # noqa: BLE001 - one line, not a traceback, unless debugging
        if os.environ.get("CNI_PY_DEBUG", "") not in ("", "0"):
            traceback.print_exc(file=sys.stderr)
        sys.stderr.write(f"cnitool doctor: {one_line(f'{type(e).__name__}: {e}')}\n")
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)

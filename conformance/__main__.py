"""Runner: ``python -m conformance --cni-bin DIR [--reference DIR] [-k PATTERN] [--runtime]``.

Runs the cases of conformance/cases once per bin directory, each in its own pytest process:
first the reference (when given: this proves the suite itself on this machine), then every
--cni-bin directory, compared with the reference. Ends with one line per directory::

    reference: 180 passed, 0 failed
    ours: 170 passed, 10 failed

Exit status 0 only when nothing failed anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = Path(__file__).resolve().parent / "cases"
REPO = CASES.parent.parent


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m conformance", description=__doc__.split("\n")[0])
    p.add_argument("--cni-bin", action="append", required=True, metavar="DIR",
                   help="directory of CNI executables to check (repeatable)")
    p.add_argument("--reference", metavar="DIR",
                   help="reference directory: checked too, and compared against")
    p.add_argument("-k", dest="keyword", metavar="PATTERN", help="pytest -k expression")
    p.add_argument("--runtime", action="store_true",
                   help="also run the real container runtime scenario (needs containerd, runc)")
    p.add_argument("--worker", action="store_true",
                   help="run every call of our directories through the warm worker (PYCNI_WORKER=1)"
                        " and report how many it served")
    p.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    return p.parse_args(argv)


def _label(path: str, reference: str | None) -> str:
    if reference and os.path.realpath(path) == os.path.realpath(reference):
        return "reference"
    if os.path.realpath(path) == "/usr/lib/cni":
        return "reference"
    return "ours"


def run_one(path: str, reference: str | None, opts: argparse.Namespace) -> dict:
    """One pytest session against `path`; returns the summary the conftest wrote."""
    with tempfile.TemporaryDirectory(prefix="cnitest-conf-run-") as tmp:
        summary = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "pytest", str(CASES), "-p", "no:cacheprovider",
               "--rootdir", str(REPO), "-o", "addopts=", "-rfE",
               "--cni-bin", path, "--conformance-summary", str(summary)]
        if reference and os.path.realpath(reference) != os.path.realpath(path):
            cmd += ["--reference-bin", reference]
        if opts.keyword:
            cmd += ["-k", opts.keyword]
        if opts.runtime:
            cmd.append("--runtime")
        if opts.exitfirst:
            cmd.append("-x")
        cmd.append("-v" * opts.verbose if opts.verbose else "-q")
        cmd += opts.pytest_args
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        worker = opts.worker and _label(path, reference) == "ours"
        if worker:
            wdir = tempfile.mkdtemp(prefix="pwc-", dir="/tmp")  # short: a socket path's limit
            env["CNITEST_PLUGIN_ENV"] = json.dumps({
                "PYCNI_WORKER": "1", "PYCNI_WORKER_DIR": wdir, "PYCNI_WORKER_DEBUG": "1",
                "PYCNI_WORKER_IDLE": "20", "PYCNI_WORKER_LOG": f"{wdir}/log",
            })
            env["CNITEST_WORKER_TALLY"] = f"{tmp}/worker-tally"
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, check=False)
        finally:
            if worker:
                tally = _end_workers(wdir, f"{tmp}/worker-tally")
        took = time.monotonic() - start
        if summary.exists():
            data = json.loads(summary.read_text())
        else:  # pytest could not even collect
            data = {"counts": {"passed": 0, "failed": 0, "error": 1}, "failed": [],
                    "skipped": {}, "deviations": {}}
        data["returncode"] = proc.returncode
        data["seconds"] = took
        if worker:
            data["worker"] = tally
        return data


def _end_workers(wdir: str, tally_path: str) -> dict:
    """Stop the workers of `wdir`, remove it; {"served": n, "in-process": {reason: n}, "errors":
    text}."""
    import shutil
    from collections import Counter

    from conformance.workers import stop_workers

    stop_workers(wdir)
    lines = Path(tally_path).read_text().splitlines() if os.path.exists(tally_path) else []
    counts = Counter(lines)
    log = Path(wdir, "log")
    errors = log.read_text() if log.exists() else ""
    shutil.rmtree(wdir, ignore_errors=True)
    return {"served": counts.pop("served", 0), "in-process": dict(counts), "errors": errors}


def main(argv: list[str] | None = None) -> int:
    """Run every directory, print the per-directory closing lines, return the exit status."""
    opts = _args(argv)
    dirs: list[str] = []
    if opts.reference:
        dirs.append(opts.reference)
    for d in opts.cni_bin:
        if all(os.path.realpath(d) != os.path.realpath(x) for x in dirs):
            dirs.append(d)
    closing: list[str] = []
    details: list[str] = []
    bad = False
    for d in dirs:
        if not os.path.isdir(d):
            print(f"conformance: {d} is not a directory", file=sys.stderr)
            return 2
        label = _label(d, opts.reference)
        print(f"\n===== conformance: {label} ({os.path.realpath(d)}) =====", flush=True)
        data = run_one(d, opts.reference, opts)
        c = data["counts"]
        passed = c.get("passed", 0) + c.get("xfailed", 0)
        failed = c.get("failed", 0) + c.get("error", 0) + c.get("xpassed", 0)
        if data["returncode"] not in (0, 5) and failed == 0:
            failed = 1  # pytest itself failed (collection, usage): never report green
        bad = bad or failed > 0
        dev = data.get("deviations") or {}
        details.append(
            f"{label} ({os.path.realpath(d)}): {c.get('skipped', 0)} skipped, "
            f"{data['seconds']:.0f}s"
            + (f"; expected deviations exercised: {', '.join(sorted(dev))}" if dev else "")
        )
        for reason, n in sorted((data.get("skipped") or {}).items(), key=lambda kv: -kv[1]):
            details.append(f"  skipped {n}: {reason}")
        if "worker" in data:
            w = data["worker"]
            by_count = sorted(w["in-process"].items(), key=lambda kv: -kv[1])
            ways = ", ".join(f"{n} {why}" for why, n in by_count)
            details.append(f"  through the warm worker: {w['served']} calls served"
                           + (f"; {ways}" if ways else ""))
            if w["errors"]:
                bad = True
                details.append("  worker errors (PYCNI_WORKER_LOG):\n" + w["errors"])
        closing.append(f"{label}: {passed} passed, {failed} failed")
    print()
    for line in details:
        print(line)
    for line in closing:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

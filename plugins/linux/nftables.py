"""nftables through `nft`: one transaction per call (`nft -f -`), reads as JSON."""

from __future__ import annotations

import json
import shutil
import subprocess

from cni.errors import ERR_INTERNAL, CNIError, one_line
from plugins.linux.nfprobe import table_absent


def available() -> bool:
    """True when the nft binary exists and can list the ruleset."""
    if shutil.which("nft") is None:
        return False
    try:
        subprocess.run(["nft", "list", "tables"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


def apply(script: str, what: str = "nftables") -> None:
    """Apply `script` (nft syntax) as one atomic transaction; CNIError 999 naming `what` on
    failure."""
    try:
        proc = subprocess.run(
            ["nft", "-f", "-"], input=script, capture_output=True, text=True, check=False
        )
    except OSError as e:
        raise CNIError(ERR_INTERNAL, f"{what}: failed to run nft: {e.strerror}") from None
    if proc.returncode != 0:
        raise CNIError(ERR_INTERNAL, f"{what}: {one_line(proc.stderr.strip())}")


def list_table(family: str, table: str) -> list[dict] | None:
    """The `nftables` JSON items of one table (`nft -j list table`), or None when it does not
    exist."""
    if table_absent(family, table):  # the kernel says so: no `nft` process for nothing
        return None
    try:
        proc = subprocess.run(
            ["nft", "-j", "list", "table", family, table],
            capture_output=True, text=True, check=False,
        )
    except OSError as e:
        raise CNIError(ERR_INTERNAL, f"failed to run nft: {e.strerror}") from None
    if proc.returncode != 0:
        if "No such file or directory" in proc.stderr or "does not exist" in proc.stderr:
            return None
        raise CNIError(ERR_INTERNAL,
                       f"nft list table {family} {table}: {one_line(proc.stderr.strip())}")
    return json.loads(proc.stdout).get("nftables", [])


def rules(items: list[dict] | None, chain: str | None = None) -> list[dict]:
    """The rule objects of a listed table, optionally only those of `chain` (each has handle,
    comment)."""
    out = []
    for item in items or ():
        rule = item.get("rule")
        if rule is not None and (chain is None or rule.get("chain") == chain):
            out.append(rule)
    return out


def quote(text: str) -> str:
    """`text` as an nft double-quoted string (double quotes removed, as the reference does)."""
    return '"' + text.replace('"', "").replace("\\", "") + '"'

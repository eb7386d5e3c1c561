"""iptables through one save and one restore per table and family.

Rules are written in iptables-save's canonical form, so "does this rule exist" is a text
comparison against one `iptables-save` run, and every change of a call goes to one
`iptables-restore --noflush` process: no process per rule, one lock acquisition.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

from cni.errors import ERR_INTERNAL, CNIError, one_line

TYPE_CHECKING = False  # typing costs ~2 ms to import; type checkers honour this idiom
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")


def _binary(ipv6: bool, suffix: str) -> str:
    return ("ip6tables" if ipv6 else "iptables") + suffix


def available(ipv6: bool) -> bool:
    """True when iptables-save/-restore for this family exist and can read the nat table."""
    if shutil.which(_binary(ipv6, "-restore")) is None:
        return False
    try:
        save(ipv6, "nat")
    except CNIError:
        return False
    return True


def save(ipv6: bool, table: str) -> str:
    """The `iptables-save -t <table>` text for this family; CNIError 999 when it fails."""
    exe = _binary(ipv6, "-save")
    try:
        proc = subprocess.run([exe, "-t", table], capture_output=True, text=True, check=False)
    except OSError as e:
        raise CNIError(ERR_INTERNAL, f"failed to run {exe}: {e.strerror}") from None
    if proc.returncode != 0:
        raise CNIError(ERR_INTERNAL, f"{exe} -t {table} failed: {one_line(proc.stderr.strip())}")
    return proc.stdout


@dataclass
class TableState:
    """A parsed iptables-save table: chains and their rules in order (`-A` lines, minus
    `-A CHAIN `)."""

    chains: dict[str, list[str]] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)  # built-in chain -> ACCEPT/DROP

    def has_chain(self, chain: str) -> bool:
        """True when the chain exists (built-in or user-defined)."""
        return chain in self.chains

    def has_rule(self, chain: str, rule: str) -> bool:
        """True when `rule` (canonical save form, without `-A CHAIN`) is in `chain`."""
        return rule in self.chains.get(chain, ())


def parse_save(text: str) -> TableState:
    """Parse one table of iptables-save output."""
    state = TableState()
    for line in text.splitlines():
        if line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            state.chains.setdefault(name, [])
            policy = rest.split(" ", 1)[0]
            if policy and policy != "-":
                state.policies[name] = policy
        elif line.startswith("-A "):
            chain, _, rule = line[3:].partition(" ")
            state.chains.setdefault(chain, []).append(rule)
    return state


def load(ipv6: bool, table: str) -> TableState:
    """The current state of `table` for this family, from one iptables-save."""
    return parse_save(save(ipv6, table))


class Batch:
    """Changes to one table of one family, applied atomically by a single iptables-restore.

    Callers read the table once (`load`), decide against that state, queue changes here and
    `commit()`. New chains are declared only when absent, because a declaration of an existing
    chain in --noflush mode flushes it.
    """

    def __init__(
        self, ipv6: bool, table: str, state: TableState, *, exclusive_create: bool = False
    ) -> None:
        self.ipv6 = ipv6
        self.table = table
        self.state = state
        # exclusive_create: new chains are made with `-N`, which fails the whole restore when
        # a concurrent caller created the chain after our save (a `:CHAIN` line would flush
        # the other caller's rules instead). Use with `apply()`, which retries on such races.
        self.exclusive_create = exclusive_create
        self._new_chains: list[str] = []
        self._lines: list[str] = []

    def ensure_chain(self, chain: str) -> None:
        """Create `chain` unless it exists."""
        if not self.state.has_chain(chain) and chain not in self._new_chains:
            self._new_chains.append(chain)
            self.state.chains[chain] = []

    def flush_chain(self, chain: str) -> None:
        """Flush `chain` if it exists."""
        if self.state.has_chain(chain):
            self._lines.append(f"-F {chain}")
            self.state.chains[chain] = []

    def delete_chain(self, chain: str) -> None:
        """Flush and delete `chain` if it exists (its references must be gone first)."""
        if self.state.has_chain(chain):
            self.flush_chain(chain)
            self._lines.append(f"-X {chain}")
            del self.state.chains[chain]

    def append(self, chain: str, rule: str) -> None:
        """Append `rule` to `chain` unless an identical rule is already there."""
        if not self.state.has_rule(chain, rule):
            self._lines.append(f"-A {chain} {rule}")
            self.state.chains.setdefault(chain, []).append(rule)

    def insert_first(self, chain: str, rule: str) -> None:
        """Insert `rule` at position 1 of `chain` unless an identical rule is already there."""
        if not self.state.has_rule(chain, rule):
            self._lines.append(f"-I {chain} 1 {rule}")
            self.state.chains.setdefault(chain, []).insert(0, rule)

    def delete(self, chain: str, rule: str) -> None:
        """Delete every copy of `rule` from `chain` (no error when absent)."""
        rules = self.state.chains.get(chain, [])
        while rule in rules:
            self._lines.append(f"-D {chain} {rule}")
            rules.remove(rule)

    def empty(self) -> bool:
        """True when nothing is queued."""
        return not self._new_chains and not self._lines

    def script(self) -> str:
        """The iptables-restore input this batch will apply."""
        out = [f"*{self.table}"]
        if self.exclusive_create:
            out += [f"-N {c}" for c in self._new_chains]
        else:
            out += [f":{c} - [0:0]" for c in self._new_chains]
        out += self._lines
        out.append("COMMIT")
        return "\n".join(out) + "\n"

    def commit(self) -> None:
        """Apply the batch with one `iptables-restore --noflush -w`; CNIError 999 on failure."""
        if self.empty():
            return
        exe = _binary(self.ipv6, "-restore")
        try:
            proc = subprocess.run(
                [exe, "--noflush", "-w", "5"],
                input=self.script(),
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as e:
            raise CNIError(ERR_INTERNAL, f"failed to run {exe}: {e.strerror}") from None
        if proc.returncode != 0:
            text = one_line(proc.stderr.strip() or proc.stdout.strip())
            raise CNIError(ERR_INTERNAL, f"{exe} failed: {text}")
        self._new_chains.clear()
        self._lines.clear()


def apply(
    ipv6: bool, table: str, build: Callable[[Batch], T], *, attempts: int = 5
) -> T:
    """Read `table` once, let `build(batch)` queue changes against that state, commit atomically.

    New chains are created exclusively (`-N`). When the restore fails and the table changed
    since it was read (a concurrent writer won the race), the table is read again and `build`
    runs again on the fresh state, at most `attempts` times in all. Returns what the successful
    `build` returned; raises the restore's CNIError when the failure was not a race.
    """
    state = load(ipv6, table)
    for attempt in range(1, attempts + 1):
        batch = Batch(ipv6, table, TableState({k: list(v) for k, v in state.chains.items()}),
                      exclusive_create=True)
        value = build(batch)
        try:
            batch.commit()
            return value
        except CNIError:
            if attempt == attempts:
                raise
            fresh = load(ipv6, table)
            if fresh.chains == state.chains:
                raise
            state = fresh
    raise AssertionError("unreachable")


def save_quote(text: str) -> str:
    """`text` as iptables-save prints a string argument: bare, or double-quoted with escapes."""
    return _save_quote(text)


COMMENT_MAX_BYTES = 255  # xt_comment keeps 256 bytes, the terminating NUL included


def stored_comment(text: str) -> tuple[str, bool]:
    """The comment iptables stores for `text`: its first 255 bytes (a longer one is cut
    silently, by `iptables` and `iptables -C` alike), and whether that is certain (not when
    the cut splits a multi-byte character)."""
    data = text.encode()
    if len(data) <= COMMENT_MAX_BYTES:
        return text, True
    try:
        return data[:COMMENT_MAX_BYTES].decode(), True
    except UnicodeDecodeError:
        return text, False


def comment_arg(text: str) -> str:
    """A `-m comment --comment ...` argument as iptables-save prints it (cut as stored)."""
    return "-m comment --comment " + _save_quote(stored_comment(text)[0])


_SAVE_BARE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _save_quote(text: str) -> str:
    # xtables_save_string(): bare only when non-empty and every character is ASCII [A-Za-z0-9_-];
    # otherwise double quotes, with `"`, `\` and `'` backslash-escaped (verified, iptables 1.8.9).
    if text and all(c in _SAVE_BARE for c in text):
        return text
    return '"' + "".join("\\" + c if c in "\"\\'" else c for c in text) + '"'


def rule_exists(ipv6: bool, table: str, chain: str, args: list[str]) -> bool:
    """`iptables -C`: does a rule semantically equal to `args` exist in `chain`? (one process)

    For rules whose save form cannot be predicted (free-form match options from a config);
    everything else should compare canonical text against one `load()`.
    """
    exe = _binary(ipv6, "")
    try:
        proc = subprocess.run(
            [exe, "-w", "5", "-t", table, "-C", chain, *args], capture_output=True, check=False
        )
    except OSError:
        return False
    return proc.returncode == 0

"""One isolated run of a scenario, and the differential comparison of two runs.

A `Sandbox` owns the namespaces and temp directories of one run (built from the harness's
create_netns / make_state_dirs) and removes them on exit, whatever happened. `differential()`
runs a scenario in a fresh sandbox against the directory under test and, when a reference
directory is configured, again in another fresh sandbox against the reference, then compares
the two normalised observations. Only the listed deviations are folded before comparing.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance import deviations, harness, observe
from conformance.bindir import CniDir

Scenario = Callable[[CniDir, "Sandbox"], dict[str, Any]]


class Sandbox:
    """Namespaces and a temp dir for one run; `close()` (or `with`) removes them all."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="cnitest-conf-"))
        self._netns: list[harness.Netns] = []
        self._fixed: dict[str, str] = {str(self.tmp): "<tmp>"}
        self._roles: dict[str, int] = {}

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def netns(self, role: str = "node", *, lo_up: bool | None = None) -> harness.Netns:
        """A fresh namespace; `lo` is up for role "node" and down otherwise unless told.

        Its path and name normalise to ``<netns:ROLEn>`` (n counts per role), the same label in
        every sandbox that creates namespaces in the same order.
        """
        if lo_up is None:
            lo_up = role == "node"
        ns = harness.create_netns(role, lo_up=lo_up)
        self._netns.append(ns)
        n = self._roles[role] = self._roles.get(role, 0) + 1
        self._fixed[ns.path] = f"<netns:{role}{n}>"
        self._fixed[ns.name] = f"<netns-name:{role}{n}>"
        return ns

    def dir(self, name: str) -> Path:
        """A directory `name` under the sandbox's temp dir (created)."""
        p = self.tmp / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def state(self) -> harness.StateDirs:
        """The harness's private state layout under this sandbox."""
        return harness.make_state_dirs(self.tmp / "state")

    def fix(self, raw: str, label: str) -> None:
        """Also normalise the exact string `raw` to `label` (e.g. a random container id)."""
        self._fixed[raw] = label

    def normaliser(self) -> observe.Normaliser:
        """A Normaliser that knows this sandbox's paths and namespace names."""
        return observe.Normaliser(self._fixed)

    def close(self) -> None:
        """Delete every namespace (reverse order) and the temp dir; re-raise the first failure."""
        errors: list[BaseException] = []
        for ns in reversed(self._netns):
            try:
                harness.delete_netns(ns)
            except BaseException as exc:  # keep removing the others
                errors.append(exc)
        self._netns.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise errors[0]


def run_scenario(cni: CniDir, scenario: Scenario) -> dict[str, Any]:
    """`scenario(cni, sandbox)` in a fresh sandbox; its observation, normalised."""
    with Sandbox() as sb:
        sb.fix(str(cni.path), "<cni-bin>")
        raw = scenario(cni, sb)
        return sb.normaliser()(raw)


def differential(
    cni: CniDir,
    scenario: Scenario,
    *,
    needs: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
    fold: dict[str, Callable[[Any], Any]] | None = None,
    spec_1_1: bool = False,
) -> dict[str, Any]:
    """Run `scenario` against `cni`; with a reference configured, also against it and compare.

    Returns the target's normalised observation for the case's own assertions. The comparison
    folds only the listed deviations (see `canonical`); keys in `ignore` (dotted prefixes,
    each justified at the call site) are left out of the comparison. `fold` maps a deviation
    id to a function applied to *both* observations when the reference is on the old side of
    that deviation (e.g. dropping fields the old release cannot produce). `spec_1_1` marks a
    scenario that needs spec 1.1.0: it is not compared with a reference that lacks it (R2).
    Raises AssertionError listing every difference.
    """
    obs = run_scenario(cni, scenario)
    ref = cni.ref
    if ref is None or not all(ref.has(n) for n in needs):
        return obs
    if spec_1_1 and deviations.old_side(ref, "R2-version-list"):
        return obs
    ref_obs = run_scenario(ref, scenario)
    a = _drop(canonical(obs, cni), ignore)
    b = _drop(canonical(ref_obs, ref), ignore)
    for dev_id, fn in (fold or {}).items():
        if deviations.old_side(ref, dev_id):
            a, b = fn(a), fn(b)
    problems = observe.diff(a, b)
    if problems:
        raise AssertionError(
            f"differs from the reference {ref.path} ({len(problems)} differences):\n  "
            + "\n  ".join(problems)
        )
    return obs


def without(*paths: str) -> Callable[[Any], Any]:
    """A `fold` for `differential`: a copy of the observation without the given paths.

    A path is dotted, list items by index: ``steps.1.error.code`` drops the code of the second
    call's error, ``files.last_reserved_ip.0`` a file entry (a key that contains dots is
    matched whole before the path is split further); a whole list item becomes "<folded>" so
    the later items keep their indices. A path that is not there is ignored: the case asserts
    each side's exact value itself.
    """

    def fold(obs: Any) -> Any:
        for p in paths:
            obs = _without(obs, p)
        return obs

    return fold


def _without(obj: Any, path: str) -> Any:
    if isinstance(obj, dict):
        if path in obj:
            return {k: v for k, v in obj.items() if k != path}
        for k in obj:
            if path.startswith(f"{k}."):
                return {**obj, k: _without(obj[k], path[len(k) + 1:])}
        return obj
    if isinstance(obj, list):
        head, _, rest = path.partition(".")
        if head.isdigit() and int(head) < len(obj):
            i = int(head)
            item = _without(obj[i], rest) if rest else "<folded>"
            return [*obj[:i], item, *obj[i + 1:]]
    return obj


def _drop(obj: Any, prefixes: tuple[str, ...], path: str = "") -> Any:
    if not prefixes:
        return obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            p = f"{path}.{k}" if path else str(k)
            if any(p == x or p.startswith(x + ".") for x in prefixes):
                continue
            out[k] = _drop(v, prefixes, p)
        return out
    return obj


_LEASE_NAME = re.compile(
    r"(^|/)(\d{1,3}(\.\d{1,3}){3}|[0-9a-f:]*:[0-9a-f:]*|last_reserved_ip\.\d+)$"
)


def canonical(obs: Any, cni: CniDir) -> Any:
    """`obs` with the listed deviations folded to the upstream 3d27709f / ours form, for comparison
    only.

    * R1: an empty `dns` object of a 1.x result is dropped (upstream 3d27709f omits it).
    * I1: `cniVersion` inside an error object is dropped (ours adds it on purpose).
    * R4: on the v1.1.1 side, host-local lease / last_reserved files of mode 0644 read 0600.
    * I5: on our side, entries of the host-local owner index directory are left out.
    * I15: on our side, the lease counts after an exhaustion message are left out.
    * I16: on our side, the attached ports after a bridge address refusal are left out.
    """
    r4 = deviations.get("R4-lease-file-mode").old_side(cni)

    i5 = not deviations.get("I5-host-local-index").old_side(cni)
    i15 = not deviations.get("I15-host-local-exhaustion-counts").old_side(cni)
    i16 = not deviations.get("I16-bridge-readdress").old_side(cni)

    def walk(o: Any, key: str = "") -> Any:
        if isinstance(o, dict):
            d = {k: walk(v, k) for k, v in o.items()
                 if not (i5 and deviations.INDEX_DIR in k.split("/"))}
            if "code" in d and "msg" in d:
                d.pop("cniVersion", None)
                if i15 and isinstance(d["msg"], str):
                    d["msg"] = deviations.EXHAUSTION_COUNTS.sub("", d["msg"])
                if i16 and isinstance(d["msg"], str):
                    d["msg"] = deviations.PORTS_ATTACHED.sub("", d["msg"])
            ver = d.get("cniVersion")
            if isinstance(ver, str) and ver.startswith("1.") and d.get("dns") == {}:
                d.pop("dns")
            if r4 and d.get("mode") == "0644" and "data" in d and _LEASE_NAME.search(key):
                d["mode"] = "0600"
                deviations.USED["R4-lease-file-mode"] += 1
            return d
        if isinstance(o, list):
            return [walk(v, key) for v in o]
        return o

    return walk(obs)

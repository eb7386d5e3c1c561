"""The shape of the cni/ library, checked statically on its source (nothing is imported).

* no import cycle among cni/ modules, nor across cni/, ipam/ and plugins/, counting imports
  inside functions (they run too) and leaving out those under ``if TYPE_CHECKING:`` (they never
  run); dependencies point one way: cni <- ipam <- plugins;
* no module of cni/, plugins/ or ipam/ over 400 lines;
* the newest spec version is written in one place, cni/version.py; product code elsewhere
  names it through ``cni.version.CURRENT`` (tests may spell out the values they expect);
* one way to do each of these, in the modules ``ONE_PLACE`` lists (the one table to edit when a
  concern moves): the atomic file write (``os.replace``/``os.rename``), the netlink stack
  (``AF_NETLINK`` sockets, pyroute2 imports) and Go-style decoding (pydantic validation and the
  mapping of its errors to CNI errors).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("cni", "plugins", "ipam")
MAX_LINES = 400
NEWEST = "1.1.0"

# concern -> the only product modules (paths from the repository root) allowed to do it.
ONE_PLACE: dict[str, frozenset[str]] = {
    "atomic write": frozenset({"cni/fileutil.py"}),
    "netlink": frozenset(
        {"plugins/linux/netlink.py", "plugins/linux/rtnl.py", "plugins/linux/conntrack.py"}
    ),
    "go decoding": frozenset({"cni/gocompat/decode.py", "cni/config.py", "cni/result/models.py"}),
}
# What each concern's code looks like: names read as attributes or imported from a module.
_ATOMIC = {("os", "replace"), ("os", "rename"), ("os", "renames")}
_NETLINK_NAMES = {"AF_NETLINK"}
# Validating with pydantic and mapping its errors: everyone else goes through cni.config.load
# or cni.gocompat.decode.go_validate (whose key and null helpers anyone may call).
_DECODING_NAMES = {"model_validate", "model_validate_json", "ValidationError", "TypeAdapter"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((REPO / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.AST) -> list[tuple[str, list[str], int]]:
    """(module, names, line) for every import statement that can run."""
    out: list[tuple[str, list[str], int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, [a.name for a in node.names], node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def _import_graph(*packages: str) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports (a `from pkg import mod` names mod)."""
    modules = {name: path for package in packages for name, path in _modules(package).items()}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, names, _ in _imported(ast.parse(path.read_text(), str(path))):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            if len(targets) < len(names) or not names:
                targets.append(module)
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return groups


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The checker itself: a lazy two-module loop and a three-module ring are both reported."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(_cycles(graph)) == [["a", "b"], ["c", "d", "e"]]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\n"
        "def f():\n    from y import z\n"
    )
    assert [m for m, _, _ in _imported(tree)] == ["typing", "y"]


def test_no_import_cycle_in_cni() -> None:
    """No cni/ module reaches itself through imports, top-level or inside functions."""
    graph = _import_graph("cni")
    assert "cni.result.families" in graph["cni.result"]  # the graph sees the package's imports
    assert _cycles(graph) == []


def test_dependencies_point_one_way() -> None:
    """cni <- ipam <- plugins: cni/ imports nothing of ipam/ or plugins/, ipam/ nothing of
    plugins/ (counting imports inside functions), and no import cycle spans the three."""
    graph = _import_graph(*PRODUCT)
    upward = sorted(
        f"{name} -> {target}"
        for name, targets in graph.items()
        for target in targets
        if (name.startswith("cni") and target.split(".")[0] in ("ipam", "plugins"))
        or (name.startswith("ipam") and target.startswith("plugins"))
    )
    assert upward == []
    assert _cycles(graph) == []


def test_no_product_module_over_400_lines() -> None:
    """Every module of cni/, plugins/ and ipam/ stays small enough to read in one sitting."""
    sizes = {
        name: len(path.read_text().splitlines())
        for package in PRODUCT
        for name, path in _modules(package).items()
    }
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_newest_spec_version_is_defined_once() -> None:
    """"1.1.0" is written in cni/version.py (assigned to CURRENT once) and nowhere else in
    cni/, plugins/ or ipam/; a docstring or comment mentioning it does not count."""
    found = []
    assigned = []
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            tree = ast.parse(path.read_text(), rel)
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                    if node.value.value == NEWEST:
                        assigned.append((rel, [ast.unparse(t) for t in node.targets]))
                if (
                    isinstance(node, ast.Constant)
                    and node.value == NEWEST
                    and rel != "cni/version.py"
                ):
                    found.append(f"{rel}:{node.lineno}")
    assert assigned == [("cni/version.py", ["CURRENT"])]
    assert found == []


def _concerns(tree: ast.AST) -> dict[str, list[int]]:
    """concern -> the lines of `tree` that do it (every import and name use, whether it runs at
    start-up, inside a function or only under TYPE_CHECKING)."""
    found: dict[str, list[int]] = {name: [] for name in ONE_PLACE}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute):
            base = node.value.id if isinstance(node.value, ast.Name) else ""
            if (base, node.attr) in _ATOMIC:
                found["atomic write"].append(line)
            if node.attr in _NETLINK_NAMES:
                found["netlink"].append(line)
            if node.attr in _DECODING_NAMES:
                found["go decoding"].append(line)
        elif isinstance(node, ast.Name):
            if node.id in _NETLINK_NAMES:
                found["netlink"].append(line)
            if node.id in _DECODING_NAMES:
                found["go decoding"].append(line)
        elif isinstance(node, ast.Import):
            if any(a.name.split(".")[0] == "pyroute2" for a in node.names):
                found["netlink"].append(line)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if node.module.split(".")[0] == "pyroute2" or names & _NETLINK_NAMES:
                found["netlink"].append(line)
            if node.module == "os" and names & {attr for _, attr in _ATOMIC}:
                found["atomic write"].append(line)
            if names & _DECODING_NAMES:
                found["go decoding"].append(line)
    return found


def _outside_their_place() -> dict[str, list[str]]:
    """concern -> `path:line` of every product line doing it outside its ONE_PLACE modules."""
    out: dict[str, list[str]] = {name: [] for name in ONE_PLACE}
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for concern, lines in _concerns(ast.parse(path.read_text(), rel)).items():
                if rel not in ONE_PLACE[concern]:
                    out[concern] += [f"{rel}:{n}" for n in sorted(set(lines))]
    return out


def test_the_one_place_checker_sees_each_concern() -> None:
    """The checker itself: each way of doing a concern is seen."""
    tree = ast.parse(
        "import os, socket\nfrom os import replace\nfrom pyroute2 import IPRoute\n"
        "import pyroute2.netlink\nfrom pydantic import ValidationError\n"
        "def f(m, d):\n    os.rename('a', 'b')\n    socket.socket(socket.AF_NETLINK)\n"
        "    return m.model_validate(d)\n"
    )
    assert _concerns(tree) == {
        "atomic write": [2, 7],
        "netlink": [3, 4, 8],
        "go decoding": [5, 9],
    }
    for places in ONE_PLACE.values():
        assert all((REPO / p).is_file() for p in places), places


def test_each_concern_is_done_in_one_place() -> None:
    """One atomic write (cni/fileutil.py), one netlink stack (plugins/linux's netlink modules),
    one Go-decoding helper (cni/gocompat/decode.py, with the two model bases that call it):
    nothing else in cni/, plugins/ or ipam/ renames files into place, opens netlink sockets,
    imports pyroute2, or validates with pydantic and maps its errors by itself."""
    assert _outside_their_place() == {name: [] for name in ONE_PLACE}

"""Every reference in code, tests and docs resolves inside the repository.

* No file outside the repository is cited (the behaviour notes the project started from are
  not shipped; their facts live in docs/spec-rules.md, docs/reference-behaviour.md and
  docs/flannel-behaviour.md).
* Every `docs/<name>.md` mentioned exists; a `#anchor`, a `§N.N` section or a case id (`C12`,
  `P56`, `F41`) written after it exists in that file; a bare case id anywhere exists in the file
  its letter names; relative links between docs resolve.
* A reference version is named (v1.1.1, a commit, a release), never "HEAD".
* Code and tests cite the behaviour (a docs section), not the number of an issue or review
  finding that asked for it.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED_DIRS = ("cni", "plugins", "ipam", "tests", "conformance", "scripts", "docs", "packaging")
SCANNED_FILES = ("README.md", "Makefile", "build.spec", "pyproject.toml")
SELF = Path(__file__).resolve()

# Built from parts so that this file does not match itself.
NOTES = "-" + "notes"
OUTSIDE = [re.compile(p) for p in (
    r"\b(?:spec|plugins|flannel)" + NOTES,
    r"\.\./shared\b",
    r"\bshared/reference\b",
)]
HEAD_AS_VERSION = re.compile(r"\b" + "HE" + r"AD\b")
ISSUE_NUMBER = re.compile(r"\b(?:issue|finding)s?\s+#?\d+", re.I)

CASE_DOCS = {"C": "spec-rules.md", "P": "reference-behaviour.md", "F": "flannel-behaviour.md"}
DOC_REF = re.compile(r"\bdocs/([A-Za-z0-9_.-]+\.md)(#[A-Za-z0-9_.-]+)?")
# What may follow a doc path: sections and case ids, joined by commas, "and", ";" or "-".
SECTION = r"§\d+(?:\.\d+)*(?:-\d+(?:\.\d+)*)?"
CASE = r"[CPF]\d+(?:-[CPF]?\d+)?"
FOLLOW = re.compile(r"(?:,?\s+(?:and\s+)?|\s*;\s*)(" + SECTION + "|" + CASE + r")(?!\w)")
BARE_CASE = re.compile(r"(?<![\w/-])([CPF])(\d{1,3})(?![\w-])")
MD_LINK = re.compile(r"\]\(([^)#\s]+\.md)(#[^)\s]+)?\)")


def _files() -> list[Path]:
    out = [ROOT / f for f in SCANNED_FILES if (ROOT / f).is_file()]
    for d in SCANNED_DIRS:
        for p in sorted((ROOT / d).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.resolve() != SELF:
                out.append(p)
    return out


@cache
def _texts() -> dict[str, str]:
    texts = {}
    for p in _files():
        try:
            texts[str(p.relative_to(ROOT))] = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files carry no references
    return texts


@cache
def _doc_index(name: str) -> tuple[set[str], set[str], set[str]]:
    """(section numbers, case ids, anchors) of docs/<name>."""
    text = (ROOT / "docs" / name).read_text(encoding="utf-8")
    sections = set(re.findall(r"^#{2,4} (\d+(?:\.\d+)*)\.?\s", text, re.M))
    cases = set(re.findall(r"\*\*([CPF]\d+)\*\*", text))
    anchors = set(re.findall(r'<a id="([^"]+)"', text))
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).strip().replace(" ", "-")
        anchors.add(slug)
    return sections, cases, anchors


def _check_follow(name: str, token: str) -> str | None:
    """None when `token` (a section or case id written after docs/<name>) exists there."""
    sections, cases, _ = _doc_index(name)
    if token.startswith("§"):
        for part in token[1:].split("-"):
            if part not in sections:
                return f"§{part}"
        return None
    letter = token[0]
    for part in token.split("-"):
        ident = part if part[0] in "CPF" else letter + part
        if ident not in cases:
            return ident
    return None


def test_no_reference_to_files_outside_the_repository() -> None:
    bad = [f"{path}:{n}: {line.strip()[:100]}"
           for path, text in _texts().items()
           for n, line in enumerate(text.splitlines(), 1)
           if any(p.search(line) for p in OUTSIDE)]
    assert not bad, "references to files outside the repository:\n" + "\n".join(bad)


def test_no_head_as_a_reference_version() -> None:
    bad = [f"{path}:{n}: {line.strip()[:100]}"
           for path, text in _texts().items()
           for n, line in enumerate(text.splitlines(), 1)
           if HEAD_AS_VERSION.search(line)]
    assert not bad, ('name the version (v1.1.1, "upstream 3d27709f", a release), not HEAD:\n'
                     + "\n".join(bad))


def test_code_cites_behaviour_not_issue_numbers() -> None:
    bad = [f"{path}:{n}: {line.strip()[:100]}"
           for path, text in _texts().items() if path.endswith(".py")
           for n, line in enumerate(text.splitlines(), 1)
           if ISSUE_NUMBER.search(line)]
    assert not bad, "cite the behaviour (a docs section) instead:\n" + "\n".join(bad)


def test_every_docs_reference_resolves() -> None:
    bad = []
    for path, text in _texts().items():
        for n, line in enumerate(text.splitlines(), 1):
            for m in DOC_REF.finditer(line):
                name, anchor = m.group(1), m.group(2)
                where = f"{path}:{n}: docs/{name}"
                if not (ROOT / "docs" / name).is_file():
                    bad.append(f"{where}: no such file")
                    continue
                if anchor and anchor[1:] not in _doc_index(name)[2]:
                    bad.append(f"{where}{anchor}: no such anchor")
                pos = m.end()
                while (f := FOLLOW.match(line, pos)) is not None:
                    missing = _check_follow(name, f.group(1))
                    if missing:
                        bad.append(f"{where} {missing}: not in that file")
                    pos = f.end()
    assert not bad, "\n".join(bad)


def test_every_case_id_exists() -> None:
    bad = []
    for path, text in _texts().items():
        if not path.endswith(".py"):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if "noqa" in line:
                continue  # ruff codes (F401) look like flannel case ids
            for m in BARE_CASE.finditer(line):
                ident = m.group(1) + str(int(m.group(2)))
                if ident not in _doc_index(CASE_DOCS[m.group(1)])[1]:
                    bad.append(f"{path}:{n}: {ident} is not in docs/{CASE_DOCS[m.group(1)]}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_links_between_docs_resolve(name: str) -> None:
    text = (ROOT / "docs" / name).read_text(encoding="utf-8")
    bad = []
    for target, anchor in MD_LINK.findall(text):
        if "://" in target:
            continue
        resolved = (ROOT / "docs" / target).resolve()
        if not resolved.is_file():
            bad.append(target)
        elif anchor and resolved.parent == ROOT / "docs" and (
                anchor[1:] not in _doc_index(resolved.name)[2]):
            bad.append(target + anchor)
    assert not bad, f"docs/{name}: broken links {bad}"


def test_the_checks_see_what_they_look_for() -> None:
    """The scan covers the tree, and each pattern catches what it is meant to catch."""
    texts = _texts()
    assert "plugins/bridge/__init__.py" in texts and "docs/reference-behaviour.md" in texts
    assert any(p.search("see plugins" + NOTES + " §2.3") for p in OUTSIDE)
    assert HEAD_AS_VERSION.search("as upstream " + "HE" + "AD does")
    assert not HEAD_AS_VERSION.search("_HEADER = {")
    assert ISSUE_NUMBER.search("Crash consistency (" + "issue 11)")
    assert ISSUE_NUMBER.search("Finding" + " 7: the refusal")
    assert _check_follow("reference-behaviour.md", "P56") is None
    assert _check_follow("reference-behaviour.md", "P999") == "P999"
    assert _check_follow("spec-rules.md", "§3.7") is None
    assert _check_follow("spec-rules.md", "§3.99") == "§3.99"
    assert _check_follow("spec-rules.md", "C83-C98") is None

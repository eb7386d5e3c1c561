"""A directory of CNI executables under test: which plugins it has, whose they are, how to run them.

Only the protocol is used: an executable is "present" when the file exists, and what it is (our
suite or the Go reference, speaking spec 1.1.0 like upstream 3d27709f, or v1.1.1) is read from its
own VERSION answer and about text, never from its path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from conformance import harness as hl

PLUGINS = ("loopback", "host-local", "bridge", "portmap", "flannel")
"""Plugin executables the suite knows how to drive (cnitool is a runtime, not a plugin)."""

ALL_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
ALL_VERSIONS_V111 = ALL_VERSIONS[:-1]


@dataclass(frozen=True)
class Probe:
    """What an executable says about itself: VERSION reply and about text (CNI_COMMAND unset)."""

    version_rc: int
    version: dict[str, Any] | None
    version_stdout: str
    about_rc: int
    about: str

    @property
    def ok(self) -> bool:
        """True when VERSION answered with a JSON object listing supported versions."""
        return (
            self.version_rc == 0
            and isinstance(self.version, dict)
            and isinstance(self.version.get("supportedVersions"), list)
        )

    def failure(self) -> str:
        """One line saying why the probe is not ok."""
        return f"VERSION exited {self.version_rc}: {self.version_stdout.strip()[:200]!r}"


@dataclass
class CniDir:
    """One bin directory under test (`path`), labelled for reports (`label`)."""

    path: Path
    label: str
    ref: CniDir | None = None  # the reference directory to compare with, if any
    _probes: dict[str, Probe] = field(default_factory=dict)

    def exe(self, name: str) -> Path:
        """Absolute path of executable `name` in this directory (it may not exist)."""
        return self.path / name

    def has(self, name: str) -> bool:
        """True when `name` is a regular file in the directory."""
        return self.exe(name).is_file()

    def probe(self, name: str) -> Probe:
        """VERSION and about of `name`, cached. The executable must exist."""
        if name not in self._probes:
            ver = hl.run_plugin(self.exe(name), "VERSION", b"", containerid=None, netns=None,
                                ifname=None, args=None, cni_path=None)
            about = hl.run_plugin(self.exe(name), None, b"", containerid=None, netns=None,
                                  ifname=None, args=None, cni_path=None)
            self._probes[name] = Probe(
                ver.returncode,
                ver.result if isinstance(ver.result, dict) else None,
                ver.stdout,
                about.returncode,
                about.stderr,
            )
        return self._probes[name]

    def present(self) -> list[str]:
        """Known plugins present in the directory, in PLUGINS order."""
        return [p for p in PLUGINS if self.has(p)]

    @cached_property
    def is_ours(self) -> bool:
        """True when the executables are this project's (their about text says `pycni`)."""
        for name in self.present():
            if "pycni" in self.probe(name).about:
                return True
        return False

    @cached_property
    def speaks_1_1(self) -> bool:
        """True when the plugins accept spec 1.1.0 (as upstream 3d27709f); False for the v1.1.1
        reference."""
        for name in self.present():
            p = self.probe(name)
            if p.ok:
                return "1.1.0" in p.version["supportedVersions"]
        return False

    @property
    def flavour(self) -> str:
        """"ours" or "reference" (used to pick the side of an expected deviation)."""
        return "ours" if self.is_ours else "reference"

    def run(
        self,
        name: str,
        command: str | None,
        conf: Mapping[str, Any] | bytes | str | None = None,
        **kw: Any,
    ) -> hl.PluginRun:
        """Run plugin `name` of this directory through the protocol (harness.run_plugin).

        CNI_PATH defaults to this directory, so delegates come from the same place.
        """
        kw.setdefault("cni_path", str(self.path))
        return hl.run_plugin(self.exe(name), command, conf, **kw)


def parse_json(text: str) -> Any:
    """stdout parsed as JSON, or None."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def same_dir(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when two paths name the same directory."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False

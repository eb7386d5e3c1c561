"""The standalone build (docs/startup.md): layout, no Python needed, release tarball, delegation
identity.

Everything here runs the built dist/bin (`make build`) or the release tarball made from it. The
"no Python on the node" checks run the executables from a copy outside the repo, with an empty
environment, from `/`, inside a private mount namespace in which the repo (and so the venv),
the interpreter the build came from and every system Python are hidden under empty tmpfs
mounts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from cni import __version__
from conformance import harness
from plugins.multicall import ENTRY_POINTS

REPO = harness.REPO_ROOT
DIST_BIN = REPO / "dist" / "bin"
CONTENTS_DIR = "pycni-lib"
NODE_PATH = "/usr/bin:/bin"
TOOLS = {"cnitool"}  # entry points that are command-line tools, not CNI plugins
PLUGINS = sorted(set(ENTRY_POINTS) - TOOLS)


def _standalone_reason() -> str | None:
    """Why dist/bin is not a standalone build to test, or None when it is."""
    probe = DIST_BIN / "loopback"
    if not probe.exists():
        return "dist/bin not built: run `make build`"
    with open(probe, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return "dist/bin holds the dev launchers (`make dev`): run `make build`"
    return None


pytestmark = pytest.mark.skipif(_standalone_reason() is not None, reason=str(_standalone_reason()))


def _need_root() -> None:
    reason = harness.netns_unavailable_reason()
    if reason:
        pytest.skip(reason)


def _copy_tree(src: Path, dest: Path) -> Path:
    """`cp -a` (keeps the hard links between the executables)."""
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    return dest


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict[str, Path]:
    """The release tarball of dist/bin, made once, and an empty directory it was extracted into."""
    from scripts import make_release

    out = tmp_path_factory.mktemp("release")
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_release.py"),
            "--bin",
            str(DIST_BIN),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    tgz = out / make_release.tarball_name()
    extracted = tmp_path_factory.mktemp("opt-cni-bin")
    subprocess.run(["tar", "-xzf", str(tgz), "-C", str(extracted)], check=True)
    return {"out": out, "tgz": tgz, "bin": extracted}


def _hidden_paths() -> tuple[list[str], list[str]]:
    """(directories, files) to hide: the repo and venv, the build's interpreter, system Pythons."""
    dirs = {str(REPO), str(Path(sys.prefix).resolve()), str(Path(sys.base_prefix).resolve())}
    for pattern in ("/usr/lib/python3*", "/usr/local/lib/python3*"):
        dirs.update(str(p) for p in Path("/").glob(pattern.lstrip("/")) if p.is_dir())
    # a directory inside another hidden one is hidden already (and no longer mountable)
    dirs = {d for d in dirs if not any(d.startswith(o + "/") for o in dirs)}
    files = set()
    for pattern in ("usr/bin/python*", "usr/local/bin/python*"):
        for p in Path("/").glob(pattern):
            real = p.resolve()
            if real.is_file() and not any(str(real).startswith(d + "/") for d in dirs):
                files.add(str(real))
    return sorted(dirs), sorted(files)


def hidden(argv: list[str], env: dict[str, str], *, netns: str | None = None) -> list[str]:
    """argv run with exactly `env`, from /, in a mount namespace where Python cannot be found.

    With `netns` (a harness namespace name) the command runs inside that network namespace.
    """
    dirs, files = _hidden_paths()
    mounts = [f"mount -t tmpfs -o size=64k pycni-hidden '{d}'" for d in dirs]
    mounts += [f"mount --bind /dev/null '{f}'" for f in files]
    script = "set -e; " + "; ".join(mounts) + '; cd /; exec "$@"'
    inner = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
    if netns is not None:
        inner = ["ip", "netns", "exec", netns, *inner]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *inner]


def run_hidden(
    argv: list[str], env: dict[str, str], *, stdin: bytes = b"", netns: str | None = None
):
    """Run `hidden(...)`; the CompletedProcess (bytes)."""
    return subprocess.run(
        hidden(argv, env, netns=netns), input=stdin, capture_output=True, timeout=120,
        env={"PATH": harness.SAFE_PATH}, check=False,
    )


def _assert_outside(bindir: Path) -> None:
    dirs, _ = _hidden_paths()
    for d in dirs:
        assert not str(bindir).startswith(d + "/"), f"{bindir} would be hidden by {d}"


# ----------------------------------------------------------------------------------- layout


def test_dist_bin_is_one_executable_behind_hard_links():
    """Every entry point is a hard link of one ELF file; the contents dir sits beside them."""
    stats = {name: (DIST_BIN / name).stat() for name in ENTRY_POINTS}
    assert len({(s.st_dev, s.st_ino) for s in stats.values()}) == 1, stats
    assert all(s.st_mode & 0o111 for s in stats.values())
    info = json.loads((DIST_BIN / CONTENTS_DIR / "BUILD-INFO").read_text())
    assert info["version"] == __version__
    assert info["names"] == sorted(ENTRY_POINTS)
    assert (DIST_BIN / CONTENTS_DIR / "libpython3.11.so.1.0").exists()


def test_every_module_of_ours_is_in_the_build():
    """Each .py of cni/, plugins/, ipam/ is in the build as .pyc, so no import by computed name
    (ENTRY_POINTS, an IPAM type) can miss; and build.spec lists every entry point module."""
    lib = DIST_BIN / CONTENTS_DIR
    missing = []
    for pkg in ("cni", "plugins", "ipam"):
        for src in (REPO / pkg).rglob("*.py"):
            rel = src.relative_to(REPO).with_suffix(".pyc")
            if "__pycache__" not in rel.parts and not (lib / rel).exists():
                missing.append(str(rel))
    # a module created after the build is the build's staleness, not a packaging gap
    info_mtime = (lib / "BUILD-INFO").stat().st_mtime
    missing = [m for m in missing if (REPO / m).with_suffix(".py").stat().st_mtime < info_mtime]
    assert missing == []
    for module in ENTRY_POINTS.values():
        path = module.replace(".", "/")
        assert (lib / f"{path}.pyc").exists() or (lib / path / "__init__.pyc").exists(), module


def _imported_modules(tree) -> set[str]:
    """Absolute module names imported anywhere in an ast (functions included), except under
    `if TYPE_CHECKING:` and in a try that catches ImportError (optional dependencies)."""
    import ast

    found: set[str] = set()

    def optional(node) -> bool:
        for h in getattr(node, "handlers", ()):
            names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
            if any(
                isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError")
                for n in names
            ):
                return True
        return False

    def visit(node) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Try) and optional(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _in_build(module: str, lib: Path, base_names: set[str]) -> bool:
    """True when `module` can be imported from the contents dir of a standalone build."""
    if module in sys.builtin_module_names:
        return True
    rel = module.replace(".", "/")
    if (lib / f"{rel}.pyc").exists() or (lib / rel / "__init__.pyc").exists():
        return True
    if f"{rel}.pyc" in base_names or f"{rel}/__init__.pyc" in base_names:
        return True
    parent, _, leaf = rel.rpartition("/")
    for d in (lib / parent, lib / "python3.11" / "lib-dynload"):
        if list(d.glob(f"{leaf}.cpython-*.so")) if d.is_dir() else False:
            return True
    return False


def test_every_import_in_our_source_is_in_the_build():
    """Every module that any of our source files imports, at the top or lazily inside a
    function, is importable from the build: lazily-imported dependencies cannot go missing."""
    import ast
    import zipfile

    lib = DIST_BIN / CONTENTS_DIR
    base_names: set[str] = set()
    if (lib / "base_library.zip").exists():  # only in builds that use PyInstaller's PYZ
        with zipfile.ZipFile(lib / "base_library.zip") as z:
            base_names = set(z.namelist())
    info_mtime = (lib / "BUILD-INFO").stat().st_mtime
    missing = {}
    for pkg in ("cni", "plugins", "ipam"):
        for src in (REPO / pkg).rglob("*.py"):
            if "__pycache__" in src.parts or src.stat().st_mtime > info_mtime:
                continue  # changed after the build: the build is stale, not incomplete
            for module in _imported_modules(ast.parse(src.read_bytes())):
                if not _in_build(module, lib, base_names):
                    missing.setdefault(module, []).append(str(src.relative_to(REPO)))
    assert missing == {}


def test_third_party_dependencies_collected():
    """pyroute2's netlink entry point and pydantic (with its compiled core) are there; nothing
    declares or imports filelock any more (every lock is a blocking flock, README
    "Dependencies"), so it is not bundled."""
    lib = DIST_BIN / CONTENTS_DIR
    assert (lib / "pyroute2" / "iproute" / "linux.pyc").exists()
    assert (lib / "pydantic" / "main.pyc").exists()
    assert list((lib / "pydantic_core").glob("_pydantic_core*.so"))
    assert not (lib / "filelock").exists()


def test_unneeded_runtime_hooks_are_trimmed():
    """The executable runs only PyInstaller's bootstrap and our entry script: none of the
    runtime hooks build.spec trims (the inspect hook alone imports ~60 modules per call)."""
    from PyInstaller.archive.readers import CArchiveReader

    toc = list(CArchiveReader(str(DIST_BIN / "loopback")).toc)
    assert "frozen_main" in toc
    assert [n for n in toc if n.startswith("pyi_rth_")] == []


def _frozen_main() -> ModuleType:
    """packaging/frozen_main.py, loaded from its file: `packaging` is also a PyPI module's name."""
    spec = importlib.util.spec_from_file_location(
        "frozen_main", REPO / "packaging" / "frozen_main.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_restore_environment_undoes_the_bootloader():
    """The frozen entry script gives children the caller's LD_LIBRARY_PATH and no _PYI_*."""
    restore_environment = _frozen_main().restore_environment

    env = {
        "_PYI_ARCHIVE_FILE": "/x",
        "_PYI_PARENT_PROCESS_LEVEL": "1",
        "LD_LIBRARY_PATH": "/opt/x/pycni-lib",
        "PATH": "/bin",
    }
    restore_environment(env)
    assert env == {"PATH": "/bin"}
    env = {"LD_LIBRARY_PATH": "/opt/x/pycni-lib:/mine", "LD_LIBRARY_PATH_ORIG": "/mine"}
    restore_environment(env)
    assert env == {"LD_LIBRARY_PATH": "/mine"}


# ------------------------------------------------------------------------ no Python needed


@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_answers_version_and_about_without_python(name, release):
    """VERSION replies with the supported versions; no CNI_COMMAND prints the about text with
    the suite's version. Empty environment, run from /, repo/venv/system Python hidden."""
    _need_root()
    bindir = release["bin"]
    _assert_outside(bindir)
    exe = str(bindir / name)
    proc = run_hidden(
        [exe], {"CNI_COMMAND": "VERSION", **harness.IN_PROCESS_ENV}, stdin=b'{"cniVersion":"1.0.0"}'
    )
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout)
    assert reply["cniVersion"] == "1.0.0"
    assert {"0.1.0", "0.4.0", "1.0.0", "1.1.0"} <= set(reply["supportedVersions"])
    proc = run_hidden([exe], {})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""
    about = proc.stderr.decode()
    assert __version__ in about and "CNI protocol versions supported" in about, about


def test_cnitool_runs_without_python(release):
    """cnitool prints its usage (from /, empty environment, Python hidden)."""
    _need_root()
    proc = run_hidden([str(release["bin"] / "cnitool"), "--help"], {})
    assert proc.returncode == 0, proc.stderr
    assert b"cnitool <command> <network-name> <netns>" in proc.stdout + proc.stderr


def test_hiding_really_hides():
    """The mount-namespace trick itself: the venv's interpreter cannot start inside it."""
    _need_root()
    proc = run_hidden([str(Path(sys.executable)), "-c", "pass"], {})
    assert proc.returncode != 0


def _cnitool_env(
    tmp: Path, bindir: Path, plugins: list[dict], name: str = "pkgtest"
) -> dict[str, str]:
    netd = tmp / "net.d"
    netd.mkdir(exist_ok=True)
    conf = {"cniVersion": "1.1.0", "name": name, "plugins": plugins}
    (netd / f"10-{name}.conflist").write_text(json.dumps(conf))
    return {
        "PATH": NODE_PATH,
        **harness.IN_PROCESS_ENV,
        "NETCONFPATH": str(netd),
        "CNI_PATH": str(bindir),
        "CNI_CACHE_DIR": str(tmp / "cache"),
    }


def _lo_up(pod: harness.Netns) -> bool:
    return ",UP" in pod.ip("-o", "link", "show", "lo").stdout


def test_release_works_as_cni_path(release, node_ns, make_pod, tmp_path):
    """The tarball extracted into an empty directory is a working CNI_PATH: cnitool from it runs
    loopback, and bridge delegating to host-local (pydantic and pyroute2 in use), inside
    throwaway namespaces, with Python hidden."""
    bindir = release["bin"]
    pod = make_pod()
    data = tmp_path / "ipam"
    env = _cnitool_env(tmp_path, bindir, [
        {"type": "loopback"},
    ], name="lo")
    cnitool = str(bindir / "cnitool")
    proc = run_hidden([cnitool, "add", "lo", pod.path], env, netns=node_ns.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _lo_up(pod)
    br = [{
        "type": "bridge", "bridge": "cnipkg0", "isGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.99.7.0/24", "dataDir": str(data)},
    }]
    env = _cnitool_env(tmp_path, bindir, br, name="br")
    proc = run_hidden([cnitool, "add", "br", pod.path], env, netns=node_ns.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["ips"][0]["address"] == "10.99.7.2/24"
    assert "10.99.7.2/24" in pod.ip("-o", "addr", "show", "eth0").stdout
    proc = run_hidden([cnitool, "del", "br", pod.path], env, netns=node_ns.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "eth0" not in pod.ip("-o", "link", "show").stdout
    assert not [p for p in (data / "br").iterdir() if re.match(r"\d", p.name)]
    node_ns.ip("link", "del", "cnipkg0", check=False)


# ------------------------------------------------------------------------ release artifacts


def test_tarball_layout_and_checksum(release):
    """Contents dir first, executables as hard links of one file, root-owned, checksum valid,
    sample conflist beside it."""
    with tarfile.open(release["tgz"]) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == f"./{CONTENTS_DIR}"
    exes = [
        m for m in members if m.name.count("/") == 1 and not m.name.startswith(f"./{CONTENTS_DIR}")
    ]
    assert sorted(m.name[2:] for m in exes) == sorted(ENTRY_POINTS)
    assert names[-len(exes):] == [m.name for m in exes]
    assert exes[0].isfile() and all(m.islnk() and m.linkname == exes[0].name for m in exes[1:])
    assert {(m.uid, m.gid) for m in members} == {(0, 0)}
    sums = release["out"] / f"{release['tgz'].name}.sha256"
    digest, fname = sums.read_text().split()
    assert fname == release["tgz"].name
    assert digest == hashlib.sha256(release["tgz"].read_bytes()).hexdigest()
    subprocess.run(
        ["sha256sum", "-c", sums.name], cwd=release["out"], check=True, capture_output=True
    )
    assert (release["out"] / "10-flannel.conflist").read_bytes() == (
        REPO / "packaging" / "10-flannel.conflist"
    ).read_bytes()


def test_extracted_tarball_keeps_hard_links(release):
    inodes = {(release["bin"] / n).stat().st_ino for n in ENTRY_POINTS}
    assert len(inodes) == 1


def test_tarball_is_reproducible(release, tmp_path):
    """The same build gives the same bytes."""
    from scripts import make_release

    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_release.py"),
            "--bin",
            str(DIST_BIN),
            "--out",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    assert (tmp_path / make_release.tarball_name()).read_bytes() == release["tgz"].read_bytes()


def test_make_install_into_prefix(tmp_path):
    """`make install` lays the release out under DESTDIR/PREFIX, hard links kept."""
    dest = tmp_path / "root"
    proc = subprocess.run(
        ["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/opt/cni/bin"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = dest / "opt" / "cni" / "bin"
    assert {(installed / n).stat().st_ino for n in ENTRY_POINTS} == {
        (installed / "loopback").stat().st_ino
    }
    assert (installed / CONTENTS_DIR / "BUILD-INFO").exists()


def test_sample_conflist_is_valid():
    """packaging/10-flannel.conflist parses as a conflist and names only our plugins."""
    from cni.libcni.conflist import list_from_bytes

    data = (REPO / "packaging" / "10-flannel.conflist").read_bytes()
    conf = list_from_bytes(data)
    assert conf.name == "cbr0"
    raw = json.loads(data)
    types = [p["type"] for p in raw["plugins"]]
    assert types == ["flannel", "portmap"] and set(types) <= set(ENTRY_POINTS)
    assert raw["plugins"][1]["capabilities"] == {"portMappings": True}


# ------------------------------------------------------------------- delegation identity


def _execs(trace: str) -> list[str]:
    """Paths successfully exec'd in an `strace -f -e trace=execve` log."""
    found = []
    for line in trace.splitlines():
        m = re.match(r'\s*\d+\s+execve\("([^"]+)"', line)
        if m and " = 0" in line:
            found.append(m.group(1))
    return found


@pytest.mark.parametrize("variant", ["link", "copy"])
def test_frozen_delegate_in_process_only_when_same_inode(
    variant, release, node_ns, make_pod, tmp_path
):
    """cnitool (frozen) running loopback from CNI_PATH: a hard link of itself (same inode) runs in
    the cnitool process, never exec'd; a copy (another inode) is exec'd. Same result both ways."""
    strace = shutil.which("strace", path=harness.SAFE_PATH)
    if strace is None:
        pytest.skip(harness.missing_reason("strace", "strace"))
    bindir = _copy_tree(release["bin"], tmp_path / "bin")
    if variant == "copy":
        os.unlink(bindir / "loopback")
        shutil.copy2(bindir / "cnitool", bindir / "loopback")
    pod = make_pod()
    env = _cnitool_env(tmp_path, bindir, [{"type": "loopback"}], name="lo")
    log = tmp_path / "execve.log"
    proc = node_ns.exec(strace, "-f", "-qq", "-e", "trace=execve", "-o", str(log),
                        "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                        str(bindir / "cnitool"), "add", "lo", pod.path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _lo_up(pod)
    execs = [os.path.basename(p) for p in _execs(log.read_text())]
    if variant == "link":
        assert "loopback" not in execs, execs
    else:
        assert "loopback" in execs, execs


def test_frozen_start_runs_the_lean_bootstrap(release, tmp_path):
    """The build's bootstrap stand-ins (build.spec, packaging/pyi*.py) are what runs: a frozen
    VERSION call loads neither the zlib nor the _struct extension (the stock archive reader's)
    and does not stat every entry of the contents directory (the stock egg scan: ≈150 stats)."""
    strace = shutil.which("strace", path=harness.SAFE_PATH)
    if strace is None:
        pytest.skip(harness.missing_reason("strace", "strace"))
    exe = release["bin"] / "loopback"
    log = tmp_path / "trace.log"
    proc = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=openat,newfstatat,stat", "-o", str(log), str(exe)],
        input=b'{"cniVersion":"1.0.0"}', capture_output=True, timeout=60, check=False,
        env={"PATH": harness.SAFE_PATH, "CNI_COMMAND": "VERSION", **harness.IN_PROCESS_ENV},
    )
    assert proc.returncode == 0 and b"supportedVersions" in proc.stdout, proc.stderr
    trace = log.read_text()
    assert "zlib.cpython" not in trace and "_struct.cpython" not in trace, trace
    lib = str(release["bin"] / "pycni-lib") + "/"
    entries = {e.name for e in Path(lib).iterdir()}
    statted = re.findall(
        r'(?:newfstatat\(AT_FDCWD, |stat\()"' + re.escape(lib) + r'([^"/]+)"', trace
    )
    assert len(set(statted) & entries) < len(entries) / 2, sorted(set(statted))


def test_frozen_children_get_the_callers_environment(release, tmp_path):
    """A delegate exec'd by a frozen executable sees neither _PYI_* nor our LD_LIBRARY_PATH."""
    bindir = _copy_tree(release["bin"], tmp_path / "bin")
    dump = tmp_path / "env.txt"
    fake = bindir / "envdump"
    fake.write_text(f'#!/bin/sh\nenv > "{dump}"\necho \'{{"cniVersion":"1.1.0"}}\'\n')
    fake.chmod(0o755)
    env = _cnitool_env(tmp_path, bindir, [{"type": "envdump"}], name="dump")
    for ld in (None, "/caller/lib"):
        run_env = dict(env, **({"LD_LIBRARY_PATH": ld} if ld else {}))
        proc = subprocess.run([str(bindir / "cnitool"), "add", "dump", "/run/netns/pycni-none"],
                              env=run_env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        child = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
        assert not [k for k in child if k.startswith("_PYI_") or k == "LD_LIBRARY_PATH_ORIG"], child
        assert child.get("LD_LIBRARY_PATH") == ld


def test_launcher_identity_in_process_versus_copy(tmp_path):
    """cni.invoke.exec_plugin with set_self on a dev launcher: a hard link of it runs in-process
    (no child process), a copy of it is executed. Probed by counting subprocess starts."""
    bindir = tmp_path / "dev"
    subprocess.run(["sh", str(REPO / "scripts" / "dev-launchers.sh"), str(bindir)], check=True)
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy2(bindir / "loopback", copy / "loopback")
    probe = (
        "import json, subprocess, sys\n"
        "from cni import invoke\n"
        "from plugins import multicall\n"
        "starts = []\n"
        "real = subprocess.Popen.__init__\n"
        "def counting(self, *a, **k):\n"
        "    starts.append(a[0] if a else k.get('args'))\n"
        "    return real(self, *a, **k)\n"
        "subprocess.Popen.__init__ = counting\n"
        "multicall.set_self(sys.argv[1])\n"
        "env = {'PATH': '/usr/bin:/bin', 'CNI_COMMAND': 'VERSION', 'PYCNI_WORKER': '0'}\n"
        "out = invoke.exec_plugin(sys.argv[2], env, b'{\"cniVersion\":\"1.0.0\"}')\n"
        "print(json.dumps({'starts': len(starts), 'reply': json.loads(out)}))\n"
    )
    results = {}
    for label, target in (("link", bindir / "loopback"), ("copy", copy / "loopback")):
        proc = subprocess.run(
            [sys.executable, "-I", "-c", probe, str(bindir / "host-local"), str(target)],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
            env={"PATH": harness.SAFE_PATH},
        )
        assert proc.returncode == 0, proc.stderr
        results[label] = json.loads(proc.stdout)
    assert results["link"]["starts"] == 0
    assert results["copy"]["starts"] == 1
    assert results["link"]["reply"] == results["copy"]["reply"]

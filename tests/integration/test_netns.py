"""Tests for cni/netns.py and for the test harness itself (conformance/harness.py,
conformance/fixtures.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from cni.errors import CNIError
from cni.netns import (
    NetnsError,
    NetnsNotFoundError,
    NotANetnsError,
    current_netns_path,
    in_netns,
    netns_exists,
    same_as_current,
)
from conformance import harness
from conformance.harness import Netns

REF_LOOPBACK = harness.REFERENCE_BIN / "loopback"


def thread_ns_ino() -> int:
    """Inode of the calling thread's network namespace."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def ns_ino(path: str) -> int:
    return os.stat(path).st_ino


# =========================================================================== cni.netns


@pytest.mark.netns
class TestInNetns:
    def test_enters_and_returns(self, node_ns: Netns) -> None:
        orig = thread_ns_ino()
        assert orig != ns_ino(node_ns.path)
        with in_netns(node_ns.path):
            assert thread_ns_ino() == ns_ino(node_ns.path)
            assert same_as_current(node_ns.path)
            # the block really acts on that namespace: a child process sees its links only
            links = subprocess.run(
                ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True
            ).stdout
            assert [ln.split(":")[1].strip() for ln in links.splitlines()] == ["lo"]
        assert thread_ns_ino() == orig
        assert not same_as_current(node_ns.path)

    def test_returns_after_exception(self, node_ns: Netns) -> None:
        orig = thread_ns_ino()
        boom = ValueError("boom")
        with pytest.raises(ValueError) as info:
            with in_netns(node_ns.path):
                assert thread_ns_ino() == ns_ino(node_ns.path)
                raise boom
        assert info.value is boom  # propagated unchanged
        assert thread_ns_ino() == orig

    def test_returns_after_base_exception(self, node_ns: Netns) -> None:
        orig = thread_ns_ino()
        with pytest.raises(KeyboardInterrupt):
            with in_netns(node_ns.path):
                raise KeyboardInterrupt
        assert thread_ns_ino() == orig

    def test_nesting_returns_level_by_level(self, node_ns: Netns, make_pod) -> None:
        pod = make_pod()
        orig = thread_ns_ino()
        with in_netns(node_ns.path):
            with in_netns(pod.path):
                assert thread_ns_ino() == ns_ino(pod.path)
            assert thread_ns_ino() == ns_ino(node_ns.path)
        assert thread_ns_ino() == orig

    def test_same_object_is_not_reentrant(self, node_ns: Netns) -> None:
        orig = thread_ns_ino()
        cm = in_netns(node_ns.path)
        with pytest.raises(RuntimeError, match="re-entrant"):
            with cm:
                with cm:
                    pass  # pragma: no cover
        assert thread_ns_ino() == orig
        with cm:  # usable again afterwards
            assert thread_ns_ino() == ns_ino(node_ns.path)
        assert thread_ns_ino() == orig

    def test_returns_even_if_namespace_deleted_inside(self) -> None:
        ns = harness.create_netns("gone")
        orig = thread_ns_ino()
        try:
            with in_netns(ns.path):
                harness.delete_netns(ns)  # name and mount gone; we still hold the original
            assert thread_ns_ino() == orig
        finally:
            harness.delete_netns(ns)

    def test_only_the_calling_thread_moves(self, node_ns: Netns) -> None:
        main_ino = thread_ns_ino()
        seen: dict[str, int] = {}
        started_inside = threading.Event()

        def child() -> None:
            seen["child_started_in_block"] = thread_ns_ino()
            started_inside.set()

        def worker() -> None:
            with in_netns(node_ns.path):
                seen["worker_inside"] = thread_ns_ino()
                seen["main_while_worker_inside"] = ns_ino(f"/proc/self/task/{main_tid}/ns/net")
                t = threading.Thread(target=child)
                t.start()
                t.join()
            seen["worker_after"] = thread_ns_ino()

        main_tid = threading.get_native_id()
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert started_inside.is_set()
        assert seen["worker_inside"] == ns_ino(node_ns.path)
        assert seen["main_while_worker_inside"] == main_ino
        assert seen["child_started_in_block"] == ns_ino(node_ns.path)  # documented
        assert seen["worker_after"] == main_ino
        assert thread_ns_ino() == main_ino

    def test_leaving_on_another_thread_is_refused(self, node_ns: Netns) -> None:
        cm = in_netns(node_ns.path)
        entered = threading.Event()

        def enter_only() -> None:  # this thread ends inside the namespace; harmless
            cm.__enter__()
            entered.set()

        t = threading.Thread(target=enter_only)
        t.start()
        t.join()
        assert entered.is_set()
        orig = thread_ns_ino()
        with pytest.raises(RuntimeError, match="different thread"):
            cm.__exit__(None, None, None)
        assert thread_ns_ino() == orig  # the main thread was never moved

    def test_current_netns_path_is_per_thread(self, node_ns: Netns) -> None:
        with in_netns(node_ns.path):
            assert os.stat(current_netns_path()).st_ino == ns_ino(node_ns.path)


class TestUnopenable:
    def test_missing_path(self, tmp_path: Path) -> None:
        orig = thread_ns_ino()
        p = str(tmp_path / "nope")
        with pytest.raises(NetnsNotFoundError) as info:
            with in_netns(p):
                pytest.fail("entered a missing path")  # pragma: no cover
        err = info.value
        assert isinstance(err, CNIError) and isinstance(err, NetnsError)
        assert err.code == 999  # the reference's untyped error, as the skel reports it
        assert err.msg == f'failed to Statfs "{p}": no such file or directory'
        assert err.path == p
        assert thread_ns_ino() == orig

    def test_empty_path(self) -> None:
        with pytest.raises(NetnsNotFoundError) as info:
            with in_netns(""):
                pass  # pragma: no cover
        assert info.value.msg == 'failed to Statfs "": no such file or directory'

    def test_regular_file(self, tmp_path: Path) -> None:
        f = tmp_path / "file"
        f.write_text("x")
        with pytest.raises(NotANetnsError) as info:
            with in_netns(str(f)):
                pass  # pragma: no cover
        assert info.value.code == 999
        assert info.value.msg.startswith(f'unknown FS magic on "{f}": ')
        magic = info.value.msg.rsplit(": ", 1)[1]
        assert magic == magic.lower() and int(magic, 16) not in (0x6E736673, 0x9FA0)

    def test_quotes_like_go(self, tmp_path: Path) -> None:
        p = str(tmp_path) + '/a"b\n\x01é'
        with pytest.raises(NetnsNotFoundError) as info:
            with in_netns(p):
                pass  # pragma: no cover
        q = str(tmp_path) + '/a\\"b\\n\\x01é'
        assert info.value.msg == f'failed to Statfs "{q}": no such file or directory'

    @pytest.mark.skipif(os.geteuid() != 0, reason="setns needs CAP_SYS_ADMIN")
    def test_namespace_of_another_type(self) -> None:
        orig = thread_ns_ino()
        p = "/proc/self/ns/mnt"
        with pytest.raises(NetnsError) as info:
            with in_netns(p):
                pass  # pragma: no cover
        assert info.value.code == 999
        assert info.value.msg == (
            f"error switching to ns {p}: Error switching to ns {p}: invalid argument"
        )
        assert thread_ns_ino() == orig

    def test_error_json_names_path(self, tmp_path: Path) -> None:
        p = str(tmp_path / "missing-ns")
        with pytest.raises(CNIError) as info:
            with in_netns(p):
                pass  # pragma: no cover
        obj = json.loads(info.value.to_json())
        assert obj["code"] == 999 and p in obj["msg"]


class TestSameAsCurrent:
    def test_own_namespace(self) -> None:
        assert same_as_current("/proc/thread-self/ns/net")
        assert same_as_current("/proc/self/ns/net")  # the main thread, which we are
        assert same_as_current(f"/proc/{os.getpid()}/ns/net")

    @pytest.mark.netns
    def test_other_namespace(self, node_ns: Netns) -> None:
        assert not same_as_current(node_ns.path)

    @pytest.mark.netns
    def test_per_thread(self, node_ns: Netns) -> None:
        out: dict[str, bool] = {}

        def worker() -> None:
            with in_netns(node_ns.path):
                out["node"] = same_as_current(node_ns.path)
                out["proc_self"] = same_as_current("/proc/self/ns/net")  # main thread's

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert out == {"node": True, "proc_self": False}

    @pytest.mark.parametrize("path", ["", "/nonexistent/netns", "/proc/self/ns/mnt", "\x00"])
    def test_unopenable_or_other_is_false(self, path: str) -> None:
        assert same_as_current(path) is False

    def test_regular_file_is_false(self, tmp_path: Path) -> None:
        f = tmp_path / "f"
        f.write_text("")
        assert same_as_current(str(f)) is False


class TestNetnsExists:
    def test_true(self) -> None:
        assert netns_exists("/proc/self/ns/net")

    @pytest.mark.netns
    def test_named(self, node_ns: Netns) -> None:
        assert netns_exists(node_ns.path)

    @pytest.mark.parametrize("path", ["", "/nonexistent", "/proc/self/ns/mnt", "/proc", "\x00"])
    def test_false(self, path: str) -> None:
        assert netns_exists(path) is False

    def test_regular_file_false(self, tmp_path: Path) -> None:
        f = tmp_path / "f"
        f.write_text("")
        assert netns_exists(str(f)) is False


def test_import_is_light() -> None:
    code = (
        "import sys, cni.netns; "
        "print(sorted(m for m in ('pyroute2', 'asyncio', 'ctypes', 'threading') "
        "if m in sys.modules))"
    )
    env = {"PATH": harness.SAFE_PATH, "PYTHONPATH": str(harness.REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip() == "[]"


# =========================================================================== harness


@pytest.mark.netns
class TestNamespaceHelpers:
    def test_create_and_delete(self) -> None:
        ns = harness.create_netns("unit")
        try:
            assert ns.name.startswith(f"cnitest-unit-{os.getpid()}-")
            assert ns.path == f"/run/netns/{ns.name}"
            assert ns.name in harness.list_netns()
            assert netns_exists(ns.path)
            assert harness.netns_owner_pid(ns.name) == os.getpid()
        finally:
            harness.delete_netns(ns)
        assert ns.name not in harness.list_netns()
        assert not os.path.exists(ns.path)
        harness.delete_netns(ns)  # idempotent

    def test_node_ns_fixture(self, node_ns: Netns) -> None:
        assert node_ns.name.startswith(f"cnitest-node-{os.getpid()}-")
        assert node_ns.name in harness.list_netns()
        lo = node_ns.ip("-o", "link", "show", "lo").stdout
        assert "state UNKNOWN" in lo or ",UP" in lo
        assert "127.0.0.1/8" in node_ns.ip("-o", "addr", "show", "lo").stdout

    def test_make_pod_fixture(self, make_pod) -> None:
        a, b = make_pod(), make_pod("ctr", lo_up=True)
        assert a.name != b.name and a.name.startswith("cnitest-pod-")
        assert b.name.startswith("cnitest-ctr-")
        assert "state DOWN" in a.ip("-o", "link", "show", "lo").stdout  # as a runtime leaves it
        assert "127.0.0.1/8" in b.ip("-o", "addr", "show", "lo").stdout
        assert {a.name, b.name} <= set(harness.list_netns())

    def test_ns_exec_runs_inside(self, node_ns: Netns) -> None:
        out = harness.ns_exec(node_ns.name, "readlink", "/proc/self/ns/net").stdout.strip()
        assert out == f"net:[{ns_ino(node_ns.path)}]"
        out = harness.ns_exec(node_ns.path, "ls", "/sys/class/net").stdout.split()
        assert out == ["lo"]  # /sys is remounted for the namespace
        with pytest.raises(harness.HarnessError):
            harness.ns_exec(node_ns, "false")
        assert harness.ns_exec(node_ns, "false", check=False).returncode == 1

    @pytest.mark.parametrize("bad", ["", "/etc/passwd", "..", "/run/netns/"])
    def test_ns_exec_refuses_non_test_targets(self, bad: str) -> None:
        with pytest.raises(ValueError):
            harness.ns_exec(bad, "true")

    def test_snapshot_detects_changes(self, node_ns: Netns) -> None:
        before = harness.snapshot_ns(node_ns)
        assert set(before) == {
            "links", "addresses", "routes", "routes6", "rules", "rules6",
            "iptables", "ip6tables", "nft",
        }  # fmt: skip
        assert not any(v.startswith("<error") for v in before.values()), before
        assert harness.snapshot_ns(node_ns) == before  # stable
        node_ns.ip("link", "add", "cnitestd0", "type", "bridge")
        node_ns.exec("iptables", "-t", "nat", "-N", "CNI-TESTCHAIN")
        after = harness.snapshot_ns(node_ns)
        diff = harness.snapshot_diff(before, after)
        assert "cnitestd0" in diff["links"]
        assert "CNI-TESTCHAIN" in diff["iptables"]
        assert "nat" in diff["nft"]  # iptables-nft shows up in the ruleset too
        assert "routes" not in diff


class TestStateDir:
    def test_layout(self, state_dir: harness.StateDirs, tmp_path: Path) -> None:
        for d in (state_dir.networks, state_dir.flannel, state_dir.cache, state_dir.netconf):
            assert d.is_dir() and tmp_path in d.parents
        assert (state_dir.cache / "results").is_dir()
        assert state_dir.subnet_env.name == "subnet.env"
        assert state_dir.subnet_env.parent.is_dir() and not state_dir.subnet_env.exists()
        assert not str(state_dir.root).startswith(("/var/lib/cni", "/run/flannel", "/etc/cni"))


def _write_script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


class TestRunPlugin:
    def test_env_is_minimal_and_explicit(self, tmp_path: Path) -> None:
        exe = _write_script(tmp_path / "envdump", "env\n")
        rc, result, out, _ = harness.run_plugin(
            exe, "ADD", {"cniVersion": "1.0.0", "name": "n"},
            containerid="c1", netns="/run/netns/x", ifname="eth1", args={"A": "1", "B": "2"},
            extra_env={"CNI_NETNS_OVERRIDE": "1"},
        )  # fmt: skip
        assert rc == 0 and result is None
        env = dict(line.split("=", 1) for line in out.splitlines())
        env.pop("PWD", None)  # the shell adds these
        env.pop("SHLVL", None)
        env.pop("_", None)
        assert env == {
            "PATH": harness.SAFE_PATH,
            "PYCNI_WORKER": "0",
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "c1",
            "CNI_NETNS": "/run/netns/x",
            "CNI_IFNAME": "eth1",
            "CNI_ARGS": "A=1;B=2",
            "CNI_PATH": str(tmp_path),
            "CNI_NETNS_OVERRIDE": "1",
        }

    def test_none_omits_variables(self, tmp_path: Path) -> None:
        exe = _write_script(tmp_path / "envdump", "env\n")
        _, _, out, _ = harness.run_plugin(
            exe, None, b"", containerid=None, ifname=None, cni_path="",
            extra_env={"PATH": None, "PYCNI_WORKER": None},
        )  # fmt: skip
        keys = {line.split("=", 1)[0] for line in out.splitlines()} - {"PWD", "SHLVL", "_"}
        assert keys == {"CNI_NETNS", "CNI_ARGS", "CNI_PATH"}

    def test_stdin_and_json_stdout(self, tmp_path: Path) -> None:
        exe = _write_script(tmp_path / "echo", "cat\necho oops >&2\nexit 3\n")
        conf = {"cniVersion": "1.1.0", "name": "net", "type": "echo"}
        rc, result, out, err = harness.run_plugin(exe, "ADD", conf)
        assert (rc, result, err) == (3, conf, "oops\n")
        assert json.loads(out) == conf
        rc, result, out, _ = harness.run_plugin(exe, "ADD", b"{not json")
        assert result is None and out == "{not json"

    @pytest.mark.netns
    def test_runs_inside_given_namespace(self, node_ns: Netns, tmp_path: Path) -> None:
        exe = _write_script(tmp_path / "where", "readlink /proc/self/ns/net\nls /sys/class/net\n")
        for target in (node_ns.path, node_ns.name, node_ns):
            _, _, out, _ = harness.run_plugin(exe, "ADD", {}, in_netns=target)
            assert out.split() == [f"net:[{ns_ino(node_ns.path)}]", "lo"]

    @pytest.mark.netns
    def test_without_namespace_never_runs_in_root(self, tmp_path: Path) -> None:
        exe = _write_script(tmp_path / "where", "readlink /proc/self/ns/net\n")
        rc, _, out, _ = harness.run_plugin(exe, "VERSION", None)
        assert rc == 0
        assert out.strip() != f"net:[{ns_ino('/proc/self/ns/net')}]"
        assert not [n for n in harness.list_netns() if n.startswith("cnitest-run-")]

    @pytest.mark.reference
    @pytest.mark.skipif(
        not REF_LOOPBACK.exists(),
        reason=harness.missing_reason(str(REF_LOOPBACK), "containernetworking-plugins"),
    )
    def test_reference_loopback_version(self) -> None:
        rc, result, out, _ = harness.run_plugin(REF_LOOPBACK, "VERSION", {"cniVersion": "1.0.0"})
        assert rc == 0 and out.endswith("\n")
        assert "1.0.0" in result["supportedVersions"]

    @pytest.mark.reference
    @pytest.mark.skipif(
        not REF_LOOPBACK.exists(),
        reason=harness.missing_reason(str(REF_LOOPBACK), "containernetworking-plugins"),
    )
    def test_reference_loopback_add_in_pod(self, node_ns: Netns, make_pod) -> None:
        pod = make_pod()
        conf = {"cniVersion": "1.0.0", "name": "lo-net", "type": "loopback"}
        rc, result, _, err = harness.run_plugin(
            REF_LOOPBACK, "ADD", conf, netns=pod.path, ifname="lo", in_netns=node_ns.path
        )
        assert rc == 0, err
        assert result["interfaces"][0]["sandbox"] == pod.path
        assert "127.0.0.1/8" in pod.ip("-o", "addr", "show", "lo").stdout
        rc, result, _, _ = harness.run_plugin(
            REF_LOOPBACK, "ADD", conf, netns="/nonexistent", ifname="lo", in_netns=node_ns
        )
        assert rc == 1
        assert result == {
            "code": 999,
            "msg": 'failed to Statfs "/nonexistent": no such file or directory',
        }

    def test_format_cni_args(self) -> None:
        assert harness.format_cni_args("K=V") == "K=V"
        assert harness.format_cni_args({"A": "1", "B": "x=y"}) == "A=1;B=x=y"
        assert harness.format_cni_args([("A", "1"), ("A", "2")]) == "A=1;A=2"

    def test_netns_name_of(self) -> None:
        assert harness.netns_name_of("/run/netns/abc") == "abc"
        assert harness.netns_name_of("/var/run/netns/abc") == "abc"
        assert harness.netns_name_of("abc") == "abc"
        assert harness.netns_name_of(Netns("abc")) == "abc"
        with pytest.raises(ValueError):
            harness.netns_name_of("/proc/1/ns/net")


# =========================================================================== leak audit


def _state(**kw: set[str]) -> dict[str, frozenset[str]]:
    base = {"links": {"lo", "eth0"}, "netns": set(), "iptables": set(), "ip6tables": set(),
            "nft_tables": set()}  # fmt: skip
    base.update(kw)
    return {k: frozenset(v) for k, v in base.items()}


class TestLeakAudit:
    def test_clean(self) -> None:
        assert harness.audit_diff(_state(), _state()) == []

    def test_removed_things_are_not_leaks(self) -> None:
        assert harness.audit_diff(_state(links={"lo", "eth0", "x"}), _state()) == []

    def test_new_root_link(self) -> None:
        problems = harness.audit_diff(_state(), _state(links={"lo", "eth0", "cni0"}))
        assert problems == ["root namespace: new links entry 'cni0'"]

    def test_new_cni_chain_and_nft_table(self) -> None:
        after = _state(iptables={"nat:chain CNI-HOSTPORT-DNAT"}, nft_tables={"table ip cni"})
        problems = harness.audit_diff(_state(), after)
        assert len(problems) == 2
        assert any("CNI-HOSTPORT-DNAT" in p for p in problems)
        assert any("table ip cni" in p for p in problems)

    def test_own_namespace_left_behind(self) -> None:
        mine = f"cnitest-node-{os.getpid()}-00ff00ff"
        assert harness.audit_diff(_state(), _state(netns={mine})) == [
            f"root namespace: new netns entry {mine!r}"
        ]
        # still there from before the module: reported too
        assert harness.audit_diff(_state(netns={mine}), _state(netns={mine})) == [
            f"test namespace {mine!r} of this run still exists"
        ]

    def test_concurrent_run_is_ignored_but_dead_one_is_not(self) -> None:
        live = f"cnitest-node-{os.getppid()}-0000abcd"  # our parent: alive
        dead_pid = 2**22 + 12345  # above the default pid_max range
        while os.path.exists(f"/proc/{dead_pid}"):  # pragma: no cover
            dead_pid += 1
        dead = f"cnitest-node-{dead_pid}-0000abcd"
        demo_live, demo_dead = f"pycni-demo-node-{os.getppid()}", f"pycni-demo-pod-a-{dead_pid}"
        problems = harness.audit_diff(
            _state(), _state(netns={live, dead, "random", demo_live, demo_dead})
        )
        assert problems == [
            f"root namespace: new netns entry {dead!r}",
            f"root namespace: new netns entry {demo_dead!r}",
            "root namespace: new netns entry 'random'",
        ]

    def test_unavailable_categories_are_ignored(self) -> None:
        after = _state(iptables={harness.UNAVAILABLE})
        assert harness.audit_diff(_state(), after) == []

    def test_xtables_parsing(self) -> None:
        text = textwrap.dedent("""\
            # Generated by iptables-save
            *nat
            :PREROUTING ACCEPT [0:0]
            :CNI-HOSTPORT-DNAT - [0:0]
            -A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
            -A OUTPUT -j DOCKER
            COMMIT
            *filter
            :CNI-FORWARD - [3:4]
            COMMIT
        """)
        assert harness._xtables_cni_items(text) == {
            "nat:chain CNI-HOSTPORT-DNAT",
            "nat:rule -A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
            "filter:chain CNI-FORWARD",
        }

    def test_root_state_reads(self) -> None:
        state = harness.root_state()
        assert set(state) == {"links", "netns", "iptables", "ip6tables", "nft_tables"}
        assert "lo" in state["links"]


@pytest.mark.netns
def test_fixtures_clean_up_even_when_the_test_fails(pytester: pytest.Pytester) -> None:
    """Run an inner pytest session whose tests create namespaces and then fail."""
    tests_dir = Path(__file__).resolve().parents[1]
    shutil.copy(tests_dir / "conftest.py", pytester.path / "conftest.py")
    pytester.makeini("[pytest]\nmarkers =\n    netns: x\n    reference: x\n    slow: x\n")
    record = pytester.path / "names.txt"
    pytester.makepyfile(
        test_inner=f"""
        def test_fails(node_ns, make_pod):
            pods = [make_pod(), make_pod()]
            with open({str(record)!r}, "a") as f:
                f.write("\\n".join([node_ns.name] + [p.name for p in pods]) + "\\n")
            assert False, "deliberate failure"

        def test_passes(node_ns, make_pod):
            with open({str(record)!r}, "a") as f:
                f.write(node_ns.name + "\\n" + make_pod().name + "\\n")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    names = record.read_text().split()
    assert len(names) == 5
    assert all(n.startswith("cnitest-") for n in names)
    left = set(harness.list_netns())
    assert not left & set(names)


def test_netns_tests_skip_cleanly_when_not_root(pytester: pytest.Pytester) -> None:
    """An inner session with geteuid() faked to 1000: namespace tests skip, with the reason."""
    tests_dir = Path(__file__).resolve().parents[1]
    conftest = (tests_dir / "conftest.py").read_text()
    conftest = conftest.replace("from __future__ import annotations\n", "")
    pytester.makeconftest("import os\nos.geteuid = lambda: 1000\n" + conftest)
    pytester.makeini("[pytest]\nmarkers =\n    netns: x\n    reference: x\n    slow: x\n")
    pytester.makepyfile(
        test_inner="""
        import pytest

        def test_uses_fixture(node_ns):
            raise AssertionError("must not run")

        def test_uses_factory(make_pod):
            raise AssertionError("must not run")

        @pytest.mark.netns
        def test_marked():
            raise AssertionError("must not run")

        def test_plain(state_dir):
            assert state_dir.networks.is_dir()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["*needs root: creates network namespaces*"])

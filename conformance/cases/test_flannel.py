"""flannel: the cases of docs/flannel-behaviour.md §8 observable from outside (there is no Go
flannel binary to run, so these check against the exact expectations written there). Each case's
docstring starts with its ids (F1 ...).

Most cases hand the generated delegate to a recording stand-in (`fakeplug` on CNI_PATH, chosen
with `delegate.type`) that logs its environment and stdin and answers like a delegate would, so
subnet.env parsing and delegate generation are seen exactly as a delegate sees them, together
with the scratch file `<dataDir>/<containerID>`. The integration cases (F53-F55) run the real
bridge and host-local of the same directory; F53 also replays the saved delegate config
through the *reference* bridge and compares the resulting kernel state.
Not covered: F56 (fault injection mid-ADD) and F57 (latency budget, see conformance/bench).
"""

from __future__ import annotations

import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conformance import observe, targets
from conformance.bindir import CniDir
from conformance.cases.test_host_local import lease_dir
from conformance.checks import require
from conformance.deviations import DEVIATIONS
from conformance.sandbox import Sandbox, canonical, run_scenario

pytestmark = pytest.mark.usefixtures("_flannel")

SUBNET_V4 = targets.SUBNET_ENV_V4
SUBNET_V6 = "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:1::1/64\n" \
            "FLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n"
SUBNET_DUAL = SUBNET_V4 + "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\n"
ENV_ERR_PREFIX = "failed to load flannel 'subnet.env' file: "
ENV_ERR_SUFFIX = ". Check the flannel pod log for this node."

FAKE = r"""#!/usr/bin/python3 -I
import json, os, sys
base = os.path.dirname(os.path.abspath(__file__))
data = sys.stdin.buffer.read()
env = {k: v for k, v in os.environ.items() if k.startswith("CNI_")}
with open(os.path.join(base, "calls.log"), "a") as f:
    f.write(json.dumps({"env": env, "stdin": data.decode()}) + "\n")
mode_file = os.path.join(base, "mode")
mode = open(mode_file).read().strip() if os.path.exists(mode_file) else "ok"
cmd = env.get("CNI_COMMAND")
if cmd == "ADD" and mode == "fail-add":
    sys.stdout.write(json.dumps({"code": 11, "msg": "x"})); sys.exit(1)
if cmd == "DEL" and mode == "fail-del":
    sys.stdout.write(json.dumps({"code": 11, "msg": "del failed"})); sys.exit(1)
if cmd != "ADD":
    sys.exit(0)
ver = json.loads(data).get("cniVersion", "")
if ver in ("", "0.1.0", "0.2.0"):
    res = {"cniVersion": ver or "0.1.0", "ip4": {"ip": "10.1.17.2/24", "gateway": "10.1.17.1"},
           "dns": {}}
elif ver.startswith("0."):
    res = {"cniVersion": ver,
           "ips": [{"version": "4", "address": "10.1.17.2/24", "gateway": "10.1.17.1"}],
           "dns": {}}
else:
    res = {"cniVersion": ver, "ips": [{"address": "10.1.17.2/24", "gateway": "10.1.17.1"}]}
sys.stdout.write(json.dumps(res))
"""


@pytest.fixture
def _flannel(cni: CniDir) -> None:
    require(cni, "flannel")


class Fl:
    """flannel in one sandbox with the recording stand-in delegate `fakeplug`."""

    def __init__(self, cni: CniDir, sb: Sandbox, subnet_env: str | None = SUBNET_V4) -> None:
        self.cni, self.sb = cni, sb
        self.node = sb.netns("node")
        self.fakebin = sb.dir("fakebin")
        fake = self.fakebin / "fakeplug"
        fake.write_text(FAKE)
        fake.chmod(0o755)
        self.env_file = sb.dir("run-flannel") / "subnet.env"
        if subnet_env is not None:
            self.env_file.write_text(subnet_env)
        self.data = sb.tmp / "flannel-data"  # not created: flannel makes it
        self.steps: list[dict[str, Any]] = []

    def conf(self, version: str | None = "1.0.0", delegate: Any = "fake",
             **top: Any) -> dict[str, Any]:
        c: dict[str, Any] = {"name": "cni-flannel", "type": "flannel",
                             "subnetFile": str(self.env_file), "dataDir": str(self.data), **top}
        if version is not None:
            c["cniVersion"] = version
        if delegate == "fake":
            c["delegate"] = {"type": "fakeplug"}
        elif delegate is not None:
            c["delegate"] = delegate
        return c

    def mode(self, mode: str) -> None:
        (self.fakebin / "mode").write_text(mode)

    def call(self, command: str, conf: Any, cid: str = "ctr1", **kw: Any) -> dict[str, Any]:
        kw.setdefault("cni_path", f"{self.fakebin}:{self.cni.path}")
        kw.setdefault("netns", "/var/run/netns/cnitest-flannel-unused")
        run = self.cni.run("flannel", command, conf, in_netns=self.node, containerid=cid, **kw)
        out = observe.outcome(run)
        out["stderr"] = run.stderr
        self.steps.append(out)
        return out

    def calls(self) -> list[dict[str, Any]]:
        log = self.fakebin / "calls.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def delegate_conf(self, n: int = 0) -> dict[str, Any]:
        """The config the stand-in delegate received in call n."""
        return json.loads(self.calls()[n]["stdin"])

    def scratch(self, cid: str = "ctr1") -> Path:
        return self.data / cid


def compact(obj: Any) -> str:
    """Go's encoding of a map: sorted keys, compact separators (docs/flannel-behaviour.md §3.5)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def err(step: dict[str, Any]) -> dict[str, Any]:
    assert step["rc"] == 1 and "error" in step, step
    assert "Traceback" not in step.get("stderr", ""), step["stderr"]
    return step["error"]


def env_error(step: dict[str, Any]) -> str:
    """The inner text of a subnet.env error (prefix and suffix checked and removed)."""
    m = err(step)["msg"]
    assert m.startswith(ENV_ERR_PREFIX) and m.endswith(ENV_ERR_SUFFIX), m
    return m[len(ENV_ERR_PREFIX):-len(ENV_ERR_SUFFIX)]


def expected_delegate(name: str = "cni-flannel", **over: Any) -> dict[str, Any]:
    """docs/flannel-behaviour.md §3.4 worked example, with `over` applied on top."""
    d: dict[str, Any] = {"ipMasq": False,
                         "ipam": {"ranges": [[{"subnet": "10.1.17.0/24"}]],
                                  "routes": [{"dst": "10.1.0.0/16"}], "type": "host-local"},
                         "isGateway": True, "mtu": 1472, "name": name, "type": "bridge"}
    d.update(over)
    return d


# ------------------------------------------------------------------ config parsing (1-10)


def test_fl01_defaults(cni: CniDir, sb: Sandbox) -> None:
    """F1, F26: the minimal config uses /run/flannel/subnet.env (missing here: the exact error)."""
    if Path("/run/flannel/subnet.env").exists():
        pytest.skip("this machine runs flanneld: /run/flannel/subnet.env exists")
    fl = Fl(cni, sb)
    step = fl.call("ADD", {"cniVersion": "1.0.0", "name": "n", "type": "flannel"})
    assert env_error(step) == "open /run/flannel/subnet.env: no such file or directory"
    assert not Path("/var/lib/cni/flannel/ctr1").exists()


def test_fl03_empty_subnet_file(cni: CniDir, sb: Sandbox) -> None:
    """F3: `"subnetFile": ""` -> compat: `open : no such file...`; lenient: the default path."""
    if Path("/run/flannel/subnet.env").exists():
        pytest.skip("this machine runs flanneld: /run/flannel/subnet.env exists")
    fl = Fl(cni, sb)
    step = fl.call("ADD", fl.conf(subnetFile=""))
    assert env_error(step) in ("open : no such file or directory",
                               "open /run/flannel/subnet.env: no such file or directory")


def test_fl04_05_bad_types(cni: CniDir, sb: Sandbox) -> None:
    """F4, F5: `"delegate": "x"` -> ADD `failed to load flannel netconf file: failed to load
    netconf: ...` (999); DEL `failed to load netconf: ...` (no ADD prefix)."""
    fl = Fl(cni, sb)
    a = err(fl.call("ADD", fl.conf(delegate="x")))
    d = err(fl.call("DEL", fl.conf(delegate="x")))
    # I7: ours says 6 (a wrong JSON type) where the Go plugins say 999; same message.
    assert a["code"] == DEVIATIONS["I7-error-codes"].pick(cni, new=6, old=999) and a[
        "msg"
    ].startswith("failed to load flannel netconf file: failed to load netconf: "), a
    assert d["msg"].startswith("failed to load netconf: "), d
    assert not fl.scratch().exists()


def test_fl10_unknown_key_ignored(cni: CniDir, sb: Sandbox) -> None:
    """F10: a stray top-level key (`hairpinMode`) is ignored: not in the delegate, ADD works."""
    fl = Fl(cni, sb)
    step = fl.call("ADD", fl.conf(hairpinMode=True))
    assert step["rc"] == 0, step
    assert "hairpinMode" not in fl.delegate_conf()


# ------------------------------------------------------------------ subnet.env (11-26)


@pytest.mark.parametrize(
    "text, ranges, routes",
    [
        (SUBNET_V4, [[{"subnet": "10.1.17.0/24"}]], [{"dst": "10.1.0.0/16"}]),
        (SUBNET_V6, [[{"subnet": "fc00:0:0:1::/64"}]], [{"dst": "fc00::/48"}]),
        (SUBNET_DUAL, [[{"subnet": "10.1.17.0/24"}], [{"subnet": "fc00::/64"}]],
         [{"dst": "10.1.0.0/16"}, {"dst": "fc00::/48"}]),
        (SUBNET_V4.replace("10.1.0.0/16", "10.1.0.0/16,192.168.0.0/16"),
         [[{"subnet": "10.1.17.0/24"}]], [{"dst": "10.1.0.0/16"}, {"dst": "192.168.0.0/16"}]),
        (SUBNET_V4.replace("10.1.0.0/16", "10.1.0.0/16,10.1.5.0/16"),
         [[{"subnet": "10.1.17.0/24"}]], [{"dst": "10.1.0.0/16"}]),
        ("# comment\n\nexport FLANNEL_MTU=9000\nfoo=bar\n" + SUBNET_V4,
         [[{"subnet": "10.1.17.0/24"}]], [{"dst": "10.1.0.0/16"}]),
        (SUBNET_V4 + "FLANNEL_SUBNET=10.1.18.1/24\n", [[{"subnet": "10.1.18.0/24"}]],
         [{"dst": "10.1.0.0/16"}]),
        (SUBNET_V4.replace("\n", "\r\n"), [[{"subnet": "10.1.17.0/24"}]],
         [{"dst": "10.1.0.0/16"}]),
        ("FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1472\n"
         "FLANNEL_IPMASQ=true\n", [[{"subnet": "fc00::/64"}]], [{"dst": "10.1.0.0/16"}]),
    ],
    ids=["v4", "v6", "dual", "two-networks", "dup-network", "ignored-lines", "last-wins",
         "crlf", "v4net-v6subnet"],
)
def test_fl11_to_24_subnet_env(cni: CniDir, sb: Sandbox, text: str, ranges: Any,
                               routes: Any) -> None:
    """F11-F17, F21, F24, F39: subnet.env parsing seen in the delegate's ipam ranges/routes."""
    fl = Fl(cni, sb, text)
    step = fl.call("ADD", fl.conf())
    assert step["rc"] == 0, step
    ipam = fl.delegate_conf()["ipam"]
    assert ipam["ranges"] == ranges
    assert ipam["routes"] == routes


@pytest.mark.parametrize("value, masq", [("true", False), ("True", True), ("1", True),
                                         ("", True), ("false", True)])
def test_fl18_28_ipmasq(cni: CniDir, sb: Sandbox, value: str, masq: bool) -> None:
    """F18, F28: only the literal `true` counts as true; the delegate's ipMasq is its negation."""
    fl = Fl(cni, sb, SUBNET_V4.replace("FLANNEL_IPMASQ=true", f"FLANNEL_IPMASQ={value}"))
    assert fl.call("ADD", fl.conf())["rc"] == 0
    assert fl.delegate_conf()["ipMasq"] is masq


@pytest.mark.parametrize(
    "text, missing",
    [
        ("foo=bar\n", "FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, "
                      "FLANNEL_MTU, FLANNEL_IPMASQ"),
        (SUBNET_V4.replace("FLANNEL_MTU=1472\n", ""), "FLANNEL_MTU"),
    ],
    ids=["all", "mtu"],
)
def test_fl19_20_missing_keys(cni: CniDir, sb: Sandbox, text: str, missing: str) -> None:
    """F19, F20: incomplete files -> `<path> is missing <keys in upstream order>`; no scratch."""
    fl = Fl(cni, sb, text)
    assert env_error(fl.call("ADD", fl.conf())) == f"{fl.env_file} is missing {missing}"
    assert not fl.scratch().exists()


@pytest.mark.parametrize("mtu", ["abc", "-1", ""])
def test_fl22_bad_mtu(cni: CniDir, sb: Sandbox, mtu: str) -> None:
    """F22: FLANNEL_MTU `abc`, `-1`, empty -> an error wrapped in the subnet.env message."""
    fl = Fl(cni, sb, SUBNET_V4.replace("FLANNEL_MTU=1472", f"FLANNEL_MTU={mtu}"))
    inner = env_error(fl.call("ADD", fl.conf()))
    assert inner, inner
    assert not fl.scratch().exists()


def test_fl23_space_after_comma(cni: CniDir, sb: Sandbox) -> None:
    """F23: `10.1.0.0/16, 192.168.0.0/16` -> a CIDR error (compat) or both networks (lenient)."""
    fl = Fl(cni, sb, SUBNET_V4.replace("10.1.0.0/16", "10.1.0.0/16, 192.168.0.0/16"))
    step = fl.call("ADD", fl.conf())
    if step["rc"] == 0:
        assert fl.delegate_conf()["ipam"]["routes"] == [{"dst": "10.1.0.0/16"},
                                                        {"dst": "192.168.0.0/16"}]
    else:
        assert "192.168.0.0/16" in env_error(step)


def test_fl25_key_without_equals(cni: CniDir, sb: Sandbox) -> None:
    """F25: a known key without `=` -> a clean subnet.env error (the Go plugin panics)."""
    fl = Fl(cni, sb, SUBNET_V4 + "FLANNEL_MTU\n")
    env_error(fl.call("ADD", fl.conf()))
    assert not fl.scratch().exists()


def test_fl26_missing_file(cni: CniDir, sb: Sandbox) -> None:
    """F26, F44: a missing subnet.env -> the exact message; no scratch file, no dataDir."""
    fl = Fl(cni, sb, None)
    assert env_error(fl.call("ADD", fl.conf())) == (
        f"open {fl.env_file}: no such file or directory")
    assert not fl.data.exists()
    assert fl.calls() == []


# ------------------------------------------------------------------ delegate generation (27-40)


def test_fl27_default_delegate_bytes(cni: CniDir, sb: Sandbox) -> None:
    """F27, F41: the default v4 delegate is byte-for-byte the upstream JSON (sorted, compact);
    the scratch file (dir 0700, file 0600) holds exactly what the delegate received; the
    delegate saw CNI_COMMAND=ADD and the other CNI_* unchanged; flannel prints its result."""
    fl = Fl(cni, sb)
    conf = fl.conf(version=None, delegate=None)
    (fl.fakebin / "bridge").symlink_to(fl.fakebin / "fakeplug")
    step = fl.call("ADD", conf, args="IgnoreUnknown=1;K8S_POD_NAME=p")
    assert step["rc"] == 0, step
    call = fl.calls()[0]
    assert call["stdin"] == compact(expected_delegate())
    assert fl.scratch().read_text() == call["stdin"]
    assert stat.S_IMODE(fl.data.stat().st_mode) == 0o700
    assert stat.S_IMODE(fl.scratch().stat().st_mode) == 0o600
    assert call["env"] == {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "ctr1",
                           "CNI_NETNS": "/var/run/netns/cnitest-flannel-unused",
                           "CNI_IFNAME": "eth0", "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=p",
                           "CNI_PATH": f"{fl.fakebin}:{cni.path}"}
    assert step["result"] == {"cniVersion": "0.1.0",
                              "ip4": {"ip": "10.1.17.2/24", "gateway": "10.1.17.1"}, "dns": {}}


@pytest.mark.parametrize(
    "delegate, top, want",
    [
        (
            {"type": "fakeplug", "mtu": 1400, "ipMasq": True},
            {},
            {"mtu": 1400, "ipMasq": True, "isGateway": None},
        ),
        ({"type": "fakeplug", "isGateway": False}, {}, {"isGateway": False}),
        (
            {"type": "fakeplug", "cniVersion": "0.3.1"},
            {"cniVersion": "1.0.0"},
            {"cniVersion": "1.0.0"},
        ),
        (
            {"type": "fakeplug", "runtimeConfig": {"a": 1}},
            {"runtimeConfig": {"ips": ["10.1.17.9/24"]}},
            {"runtimeConfig": {"ips": ["10.1.17.9/24"]}},
        ),
        (
            {"type": "fakeplug"},
            {
                "dns": {"nameservers": ["1.1.1.1"]},
                "args": {"cni": {}},
                "capabilities": {"portMappings": True},
                "prevResult": {"cniVersion": "1.0.0"},
            },
            {"dns": None, "args": None, "capabilities": None, "prevResult": None},
        ),
    ],
    ids=[
        "user-mtu-masq",
        "isgateway-false",
        "cniversion-override",
        "runtimeconfig-replaced",
        "not-forwarded",
    ],
)
def test_fl29_to_40_delegate_fields(cni: CniDir, sb: Sandbox, delegate: dict[str, Any],
                                    top: dict[str, Any], want: dict[str, Any]) -> None:
    """F29-F31, F33, F34, F40: user delegate keys win for mtu/ipMasq/isGateway; top-level cniVersion
    overrides; top-level runtimeConfig replaces; dns/args/capabilities/prevResult not forwarded.
    (isGateway is only added for type `bridge`, so a stand-in type shows it absent.)"""
    fl = Fl(cni, sb)
    c = fl.conf(delegate=delegate, **top)
    if "cniVersion" in top:
        c["cniVersion"] = top["cniVersion"]
    step = fl.call("ADD", c)
    assert step["rc"] == 0, step
    got = fl.delegate_conf()
    for k, v in want.items():
        if v is None:
            assert k not in got, got
        else:
            assert got.get(k) == v, got


def test_fl30_non_bridge_type(cni: CniDir, sb: Sandbox) -> None:
    """F30: `delegate.type: ipvlan` -> no isGateway added; the type is kept."""
    fl = Fl(cni, sb)
    (fl.fakebin / "ipvlan").symlink_to(fl.fakebin / "fakeplug")
    assert fl.call("ADD", fl.conf(delegate={"type": "ipvlan"}))["rc"] == 0
    got = fl.delegate_conf()
    assert got["type"] == "ipvlan" and "isGateway" not in got


@pytest.mark.parametrize(
    "delegate, msg",
    [
        ({"type": 5}, "'delegate' dictionary, if present, must have (string) 'type' field"),
        ({"type": None}, "'delegate' dictionary, if present, must have (string) 'type' field"),
        ({"type": 5, "name": "x", "ipam": {}},
         "'delegate' dictionary, if present, must have (string) 'type' field"),
        ({"name": "x", "ipam": {}},
         "'delegate' dictionary must not have 'name' field, it'll be set by flannel"),
        ({"ipam": {}}, "'delegate' dictionary must not have 'ipam' field, it'll be set by flannel"),
    ],
    ids=["type-int", "type-null", "type-first", "name-before-ipam", "ipam"],
)
def test_fl32_delegate_validation(cni: CniDir, sb: Sandbox, delegate: Any, msg: str) -> None:
    """F32: delegate validation messages and their precedence type -> name -> ipam."""
    fl = Fl(cni, sb)
    e = err(fl.call("ADD", fl.conf(delegate=delegate)))
    # I7: ours says 7 (invalid config) where the Go plugin says 999; same message.
    assert (e["code"], e["msg"]) == (DEVIATIONS["I7-error-codes"].pick(cni, new=7, old=999), msg)


def test_fl35_37_user_ipam(cni: CniDir, sb: Sandbox) -> None:
    """F35, F37: top-level ipam keeps type and unknown keys, user routes first then the flannel
    networks, user ranges overwritten."""
    fl = Fl(cni, sb)
    ipam = {"type": "fakeplug", "unknown-param": "unknown-value",
            "ranges": [[{"subnet": "192.168.99.0/24"}]],
            "routes": [{"dst": "10.96.0.0/12"}, {"dst": "192.168.244.0/24", "gw": "10.1.17.20"}]}
    assert fl.call("ADD", fl.conf(ipam=ipam))["rc"] == 0
    got = fl.delegate_conf()["ipam"]
    assert got == {"type": "fakeplug", "unknown-param": "unknown-value",
                   "ranges": [[{"subnet": "10.1.17.0/24"}]],
                   "routes": [{"dst": "10.96.0.0/12"},
                              {"dst": "192.168.244.0/24", "gw": "10.1.17.20"},
                              {"dst": "10.1.0.0/16"}]}


def test_fl36_ipam_type_default(cni: CniDir, sb: Sandbox) -> None:
    """F36: top-level ipam without `type` -> host-local; `"type": ""` is kept."""
    fl = Fl(cni, sb)
    fl.call("ADD", fl.conf(ipam={"dataDir": "/x"}), cid="c1")
    fl.call("ADD", fl.conf(ipam={"type": ""}), cid="c2")
    assert fl.delegate_conf(0)["ipam"]["type"] == "host-local"
    assert fl.delegate_conf(1)["ipam"]["type"] == ""


def test_fl38_bad_routes(cni: CniDir, sb: Sandbox) -> None:
    """F38: malformed ipam.routes -> `failed to assemble Delegate IPAM: failed to read IPAM
    routes: failed to parse ipam.routes: ...`."""
    fl = Fl(cni, sb)
    e = err(fl.call("ADD", fl.conf(ipam={"routes": [{"dst": "nope"}]})))
    assert e["msg"].startswith("failed to assemble Delegate IPAM: failed to read IPAM routes: "
                               "failed to parse ipam.routes: "), e


# ------------------------------------------------------------------ ADD/DEL/CHECK/STATUS/GC


def test_fl42_43_delegate_failures(cni: CniDir, sb: Sandbox) -> None:
    """F42, F43: a delegate CNI error is passed through (code 11, msg x) with the scratch file
    kept; a missing delegate -> 999 `failed to delegate add: failed to find plugin ...`."""
    fl = Fl(cni, sb)
    fl.mode("fail-add")
    e = err(fl.call("ADD", fl.conf()))
    assert (e["code"], e["msg"]) == (11, "x")
    assert fl.scratch().exists()
    e = err(fl.call("ADD", fl.conf(delegate={"type": "nosuchplug"}), cid="c2",
                    cni_path=str(fl.fakebin)))
    assert e["code"] == 999
    assert (
        e["msg"]
        == f'failed to delegate add: failed to find plugin "nosuchplug" in path [{fl.fakebin}]'
    )
    assert fl.scratch("c2").exists()


def test_fl45_46_del(cni: CniDir, sb: Sandbox) -> None:
    """F45, F46, F49: DEL runs the delegate's DEL with the saved ADD-time JSON (even when the DEL
    config differs) and removes the file; a second DEL does not call the delegate; DEL without
    scratch file and without subnet.env succeeds."""
    fl = Fl(cni, sb)
    fl.call("ADD", fl.conf())
    saved = fl.scratch().read_text()
    fl.env_file.unlink()
    fl.call("DEL", fl.conf(delegate={"type": "fakeplug", "mtu": 1}))
    fl.call("DEL", fl.conf())
    assert [s["rc"] for s in fl.steps] == [0, 0, 0]
    calls = fl.calls()
    assert [c["env"]["CNI_COMMAND"] for c in calls] == ["ADD", "DEL"]
    assert calls[1]["stdin"] == saved
    assert not fl.scratch().exists()


def test_fl47_garbage_scratch(cni: CniDir, sb: Sandbox) -> None:
    """F47: an empty / garbage scratch file does not make DEL fail."""
    fl = Fl(cni, sb)
    fl.data.mkdir(mode=0o700)
    fl.scratch().write_text("")
    assert fl.call("DEL", fl.conf())["rc"] == 0


def test_fl48_delegate_del_fails(cni: CniDir, sb: Sandbox) -> None:
    """F48 (improved): when the delegate's DEL fails, the error is returned and the scratch file
    kept for the runtime's retry (upstream removes it and leaks the lease)."""
    fl = Fl(cni, sb)
    fl.call("ADD", fl.conf())
    fl.mode("fail-del")
    e = err(fl.call("DEL", fl.conf()))
    assert (e["code"], e["msg"]) == (11, "del failed")
    assert fl.scratch().exists()


def test_fl50_check(cni: CniDir, sb: Sandbox) -> None:
    """F50: CHECK at 0.3.1 -> code 1; at 1.0.0 after an ADD -> success."""
    fl = Fl(cni, sb)
    assert err(fl.call("CHECK", fl.conf("0.3.1")))["code"] == 1
    add = fl.call("ADD", fl.conf())
    step = fl.call("CHECK", dict(fl.conf(), prevResult=add["result"]))
    assert step["rc"] == 0, step


def test_fl52_status_and_gc(cni: CniDir, sb: Sandbox) -> None:
    """F52 (improved): STATUS 1.1.0 with subnet.env missing -> code 50; present -> success;
    GC removes the scratch files of attachments not in cni.dev/valid-attachments after running
    the delegate's DEL for them, keeps listed ones; GC at 1.0.0 -> code 1."""
    fl = Fl(cni, sb, None)
    e = err(fl.call("STATUS", fl.conf("1.1.0")))
    assert e["code"] == 50, e
    fl.env_file.write_text(SUBNET_V4)
    assert fl.call("STATUS", fl.conf("1.1.0"))["rc"] == 0
    fl.call("ADD", fl.conf("1.1.0"), cid="keep")
    fl.call("ADD", fl.conf("1.1.0"), cid="stale")
    gc = fl.conf("1.1.0")
    gc["cni.dev/valid-attachments"] = [{"containerID": "keep", "ifname": "eth0"}]
    step = fl.call("GC", gc, cid=None, netns=None, ifname=None)
    assert step == {"rc": 0, "stdout": "", "stderr": step["stderr"]}, step
    assert fl.scratch("keep").exists() and not fl.scratch("stale").exists()
    dels = [c for c in fl.calls() if c["env"]["CNI_COMMAND"] == "DEL"]
    assert len(dels) == 1 and dels[0]["env"].get("CNI_CONTAINERID") == "stale"
    assert err(fl.call("GC", fl.conf("1.0.0"), cid=None, netns=None, ifname=None))["code"] == 1


# ------------------------------------------------------------------ integration (53-55)


def _integration(cni: CniDir, sb: Sandbox, subnet: str, version: str = "1.0.0") -> dict[str, Any]:
    node = sb.netns("node")
    pod = sb.netns("pod")
    env = sb.dir("run-flannel") / "subnet.env"
    env.write_text(subnet)
    data = sb.dir("ipam")
    conf = {"cniVersion": version, "name": "cni-flannel", "type": "flannel",
            "subnetFile": str(env), "dataDir": str(sb.tmp / "flannel"),
            "ipam": {"dataDir": str(data)}, "delegate": {"bridge": "cni0"}}
    kw = {"in_netns": node, "netns": pod.path, "containerid": "ctr1"}
    add = cni.run("flannel", "ADD", conf, **kw)
    saved = (
        (sb.tmp / "flannel" / "ctr1").read_text()
        if (sb.tmp / "flannel" / "ctr1").exists()
        else None
    )
    state = {"node": observe.kernel(node), "pod": observe.kernel(pod),
             "leases": lease_dir(cni, data / "cni-flannel")}
    del1 = cni.run("flannel", "DEL", conf, **kw)
    del2 = cni.run("flannel", "DEL", conf, **kw)
    return {"add": observe.outcome(add), "saved": saved, "state": state,
            "dels": [observe.outcome(del1), observe.outcome(del2)],
            "leases_after": lease_dir(cni, data / "cni-flannel")}


def test_fl53_v4_integration(cni: CniDir, sb: Sandbox) -> None:
    """F53: v4 ADD through the real bridge + host-local: pod 10.1.17.2/24 with a route to
    10.1.0.0/16 via 10.1.17.1, cni0 10.1.17.1/24 at MTU 1472; DEL twice releases the lease.
    With a reference configured, its bridge replays the saved delegate config and the kernel
    state must match ours."""
    require(cni, "bridge", "host-local")
    obs = _integration(cni, sb, SUBNET_V4)
    assert obs["add"]["rc"] == 0, obs["add"]
    res = obs["add"]["result"]
    assert [i["address"] for i in res["ips"]] == ["10.1.17.2/24"]
    assert res["routes"] == [{"dst": "10.1.0.0/16"}]
    pod, node = obs["state"]["pod"], obs["state"]["node"]
    assert [f"{a['local']}/{a['prefixlen']}" for a in pod["addresses"] if a["dev"] == "eth0"
            and a["family"] == "inet"] == ["10.1.17.2/24"]
    assert {"dst": "10.1.0.0/16", "gateway": "10.1.17.1", "dev": "eth0", "flags": []} in \
        pod["routes"]["v4"]
    cni0 = next(li for li in node["links"] if li["ifname"] == "cni0")
    assert cni0["mtu"] == 1472
    assert "10.1.17.1" in [a["local"] for a in node["addresses"] if a["dev"] == "cni0"]
    assert [o["rc"] for o in obs["dels"]] == [0, 0]
    assert [f for f in obs["leases_after"] if f.startswith("10.")] == []
    assert json.loads(obs["saved"]) == expected_delegate(
        cniVersion="1.0.0", bridge="cni0",
        ipam={"dataDir": str(sb.tmp / "ipam"), "ranges": [[{"subnet": "10.1.17.0/24"}]],
              "routes": [{"dst": "10.1.0.0/16"}], "type": "host-local"})
    if cni.ref is None or not (cni.ref.has("bridge") and cni.ref.has("host-local")):
        return

    def ours(cni_: CniDir, sb_: Sandbox) -> dict[str, Any]:
        o = _integration(cni_, sb_, SUBNET_V4)
        return {"add": o["add"], "state": o["state"]}

    def replay(ref: CniDir, sb_: Sandbox) -> dict[str, Any]:
        """The reference bridge fed the delegate config flannel saved (paths re-rooted)."""
        node, pod = sb_.netns("node"), sb_.netns("pod")
        delegate = json.loads(obs["saved"])
        data = sb_.dir("ipam")
        delegate["ipam"]["dataDir"] = str(data)
        add = ref.run("bridge", "ADD", delegate, in_netns=node, netns=pod.path,
                      containerid="ctr1")
        return {"add": observe.outcome(add),
                "state": {"node": observe.kernel(node), "pod": observe.kernel(pod),
                          "leases": lease_dir(ref, data / "cni-flannel")}}

    a = canonical(run_scenario(cni, ours), cni)
    b = canonical(run_scenario(cni.ref, replay), cni.ref)
    problems = observe.diff(a, b)
    assert not problems, "ours flannel vs reference bridge on the same delegate config:\n  " + \
        "\n  ".join(problems)


def test_fl54_dual_stack_integration(cni: CniDir, sb: Sandbox) -> None:
    """F54: dual-stack ADD returns two IPs; DEL twice succeeds."""
    require(cni, "bridge", "host-local")
    obs = _integration(cni, sb, SUBNET_DUAL)
    assert obs["add"]["rc"] == 0, obs["add"]
    assert [i["address"] for i in obs["add"]["result"]["ips"]] == ["10.1.17.2/24", "fc00::2/64"]
    assert [o["rc"] for o in obs["dels"]] == [0, 0]


def test_fl55_concurrent_adds(cni: CniDir, sb: Sandbox) -> None:
    """F55: N concurrent ADDs with distinct container ids (N = CONFORMANCE_CONCURRENCY, default
    10; F55 asks 50) -> N distinct IPs and N scratch files; concurrent DELs leave only
    lock / last_reserved_ip.* in the host-local directory and no scratch file."""
    require(cni, "bridge", "host-local")
    n = int(os.environ.get("CONFORMANCE_CONCURRENCY", "10"))
    node = sb.netns("node")
    pods = [sb.netns("pod") for _ in range(n)]
    env = sb.dir("run-flannel") / "subnet.env"
    env.write_text(SUBNET_V4)
    data = sb.dir("ipam")
    fdata = sb.tmp / "flannel"
    conf = {"cniVersion": "1.0.0", "name": "cni-flannel", "type": "flannel",
            "subnetFile": str(env), "dataDir": str(fdata), "ipam": {"dataDir": str(data)}}

    def go(cmd: str, i: int) -> Any:
        return cni.run("flannel", cmd, conf, in_netns=node, netns=pods[i].path,
                       containerid=f"c{i}")

    with ThreadPoolExecutor(max_workers=n) as pool:
        adds = list(pool.map(lambda i: go("ADD", i), range(n)))
    assert all(r.returncode == 0 for r in adds), [r.stdout for r in adds if r.returncode]
    addrs = {r.result["ips"][0]["address"] for r in adds}
    assert len(addrs) == n
    assert len(list(fdata.iterdir())) == n
    with ThreadPoolExecutor(max_workers=n) as pool:
        dels = list(pool.map(lambda i: go("DEL", i), range(n)))
    assert all(r.returncode == 0 for r in dels), [r.stdout for r in dels if r.returncode]
    left = [f for f in lease_dir(cni, data / "cni-flannel")
            if f != "lock" and not f.startswith("last_reserved_ip.")]
    assert left == [], left
    assert list(fdata.iterdir()) == []


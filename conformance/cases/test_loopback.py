"""loopback: docs/reference-behaviour.md P101-P107, plus docs/spec-rules.md C40-C44 and C47."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance import deviations as dev
from conformance import observe
from conformance.bindir import CniDir
from conformance.checks import require
from conformance.sandbox import Sandbox, differential

pytestmark = pytest.mark.usefixtures("_loopback")


@pytest.fixture
def _loopback(cni: CniDir) -> None:
    require(cni, "loopback")


def conf(version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "lonet", "type": "loopback", **extra}


def lo_state(pod: Any) -> dict[str, Any]:
    """`lo` only: flags and addresses."""
    k = observe.kernel(pod)
    link = next(li for li in k["links"] if li["ifname"] == "lo")
    return {"up": "UP" in link["flags"],
            "addresses": sorted(f"{a['local']}/{a['prefixlen']}" for a in k["addresses"]
                                if a["dev"] == "lo")}


def drop_empty_dns(obj: Any) -> Any:
    """Results without an empty dns (fold for R1 on 0.x-labelled 1.x-shaped loopback output)."""
    if isinstance(obj, dict):
        return {k: drop_empty_dns(v) for k, v in obj.items() if not (k == "dns" and v == {})}
    if isinstance(obj, list):
        return [drop_empty_dns(v) for v in obj]
    return obj


def sorted_keys_everywhere(text: str) -> bool:
    """True when every JSON object in `text` lists its keys in sorted order."""
    ok = True

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal ok
        keys = [k for k, _ in pairs]
        ok = ok and keys == sorted(keys)
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return ok


def test_lo101_add(cni: CniDir) -> None:
    """P101, C47: ADD in a fresh netns sets lo up; result lists lo (MAC zero, sandbox =
    CNI_NETNS) with 127.0.0.1/8 and ::1/128 at `"interface": 0`, whatever CNI_IFNAME says.
    upstream 3d27709f prints 1.x results with sorted keys and no empty dns (R1)."""
    raw: dict[str, str] = {}

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        node, pod = sb.netns("node"), sb.netns("pod")
        before = lo_state(pod)
        run = cni.run("loopback", "ADD", conf(), in_netns=node, netns=pod.path, ifname="eth7")
        raw[str(cni.path)] = run.stdout
        return {"add": observe.outcome(run), "before": before, "after": lo_state(pod)}

    obs = differential(cni, sc)
    assert obs["before"] == {"up": False, "addresses": []}
    assert obs["after"] == {"up": True, "addresses": ["127.0.0.1/8", "::1/128"]}
    res = obs["add"]["result"]
    assert res["interfaces"] == [{"name": "lo", "mac": "00:00:00:00:00:00",
                                  "sandbox": "<netns:pod1>"}]
    assert res["ips"] == [{"interface": 0, "address": "127.0.0.1/8"},
                          {"interface": 0, "address": "::1/128"}]
    text = raw[str(cni.path)]
    assert '"interface": 0' in text
    if dev.old_side(cni, "R1-result-1x-format"):
        assert res["dns"] == {}
    else:
        assert "dns" not in res and sorted_keys_everywhere(text), text


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0"])
def test_lo102_old_version_keeps_1x_shape(cni: CniDir, version: str) -> None:
    """P102: at 0.1.0 to 0.4.0 the output keeps the 1.x shape (no `version` fields, no
    ip4) labelled with the requested version."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        node, pod = sb.netns("node"), sb.netns("pod")
        run = cni.run("loopback", "ADD", conf(version), in_netns=node, netns=pod.path)
        return {"add": observe.outcome(run)}

    obs = differential(cni, sc, fold={"R1-result-1x-format": drop_empty_dns})
    res = obs["add"]["result"]
    assert res["cniVersion"] == version
    assert res["ips"] == [{"interface": 0, "address": "127.0.0.1/8"},
                          {"interface": 0, "address": "::1/128"}]
    assert "ip4" not in res



def test_lo102_no_version_is_converted_to_010(cni: CniDir) -> None:
    """P102, C23: without cniVersion the result really is 0.1.0-shaped (`ip4`, `ip6`)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        node, pod = sb.netns("node"), sb.netns("pod")
        c = conf()
        del c["cniVersion"]
        run = cni.run("loopback", "ADD", c, in_netns=node, netns=pod.path)
        return {"add": observe.outcome(run)}

    res = differential(cni, sc)["add"]["result"]
    assert res["ip4"] == {"ip": "127.0.0.1/8"} and res["ip6"] == {"ip": "::1/128"}


def test_lo101_add_at_110(cni: CniDir) -> None:
    """P101 at spec 1.1.0 (a directory that lists it, R2): the same result, labelled 1.1.0."""
    if dev.old_side(cni, "R2-version-list"):
        pytest.skip("this directory does not list 1.1.0 (R2)")

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        node, pod = sb.netns("node"), sb.netns("pod")
        run = cni.run("loopback", "ADD", conf("1.1.0"), in_netns=node, netns=pod.path)
        return {"add": observe.outcome(run)}

    res = differential(cni, sc, spec_1_1=True)["add"]["result"]
    assert res["cniVersion"] == "1.1.0"
    assert res["ips"] == [{"interface": 0, "address": "127.0.0.1/8"},
                          {"interface": 0, "address": "::1/128"}]

def test_lo103_prev_result_echoed(cni: CniDir) -> None:
    """P103, C40: with a prevResult the output is the prevResult (0.4.0, dns kept)."""
    prev = {"cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:02", "sandbox": "/x"}],
            "ips": [{"version": "4", "interface": 0, "address": "10.250.1.2/24",
                     "gateway": "10.250.1.1"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.250.1.1"}],
            "dns": {"nameservers": ["10.0.0.53"]}}

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        node, pod = sb.netns("node"), sb.netns("pod")
        run = cni.run("loopback", "ADD", conf("0.4.0", prevResult=prev), in_netns=node,
                      netns=pod.path)
        return {"add": observe.outcome(run)}

    obs = differential(cni, sc)
    assert obs["add"]["result"] == observe.Normaliser()(prev)


def test_lo104_non_loopback_address(cni: CniDir) -> None:
    """P104: lo carrying 10.250.9.9/24 -> `loopback interface found with non-loopback address`."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        node, pod = sb.netns("node"), sb.netns("pod")
        pod.ip("addr", "add", "10.250.9.9/24", "dev", "lo")
        run = cni.run("loopback", "ADD", conf(), in_netns=node, netns=pod.path)
        return {"add": observe.outcome(run)}

    obs = differential(cni, sc)
    assert (
        obs["add"]["error"]["msg"]
        == 'loopback interface found with non-loopback address "10.250.9.9"'
    )


def test_lo105_check(cni: CniDir) -> None:
    """P105, C44: CHECK before ADD -> `loopback interface is down`; after ADD -> success."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        node, pod = sb.netns("node"), sb.netns("pod")
        kw = {"in_netns": node, "netns": pod.path}
        c1 = cni.run("loopback", "CHECK", conf(), **kw)
        cni.run("loopback", "ADD", conf(), **kw)
        c2 = cni.run("loopback", "CHECK", conf(), **kw)
        return {"before": observe.outcome(c1), "after": observe.outcome(c2)}

    obs = differential(cni, sc)
    assert obs["before"]["error"]["msg"] == "loopback interface is down"
    assert obs["after"] == {"rc": 0, "stdout": ""}


def test_lo106_del(cni: CniDir) -> None:
    """P106, C41-C43: DEL sets lo down (127.0.0.1 kept, ::1 gone); DEL twice, with a missing
    netns or with CNI_NETNS empty succeeds; a regular file as netns -> `unknown FS magic`."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        node, pod = sb.netns("node"), sb.netns("pod")
        kw = {"in_netns": node, "netns": pod.path}
        cni.run("loopback", "ADD", conf(), **kw)
        d1 = cni.run("loopback", "DEL", conf(), **kw)
        state = lo_state(pod)
        d2 = cni.run("loopback", "DEL", conf(), **kw)
        d3 = cni.run("loopback", "DEL", conf(), in_netns=node, netns="/var/run/netns/cnitest-gone")
        d4 = cni.run("loopback", "DEL", conf(), in_netns=node, netns="")
        f = sb.dir("x") / "plainfile"
        f.write_text("")
        d5 = cni.run("loopback", "DEL", conf(), in_netns=node, netns=str(f))
        return {"del": [observe.outcome(r) for r in (d1, d2, d3, d4)], "state": state,
                "file": observe.outcome(d5)}

    obs = differential(cni, sc)
    assert obs["del"] == [{"rc": 0, "stdout": ""}] * 4
    assert obs["state"] == {"up": False, "addresses": ["127.0.0.1/8"]}
    assert obs["file"]["error"]["msg"] == 'unknown FS magic on "<tmp>/x/plainfile": ef53'


def test_lo107_add_missing_netns(cni: CniDir) -> None:
    """P107: ADD with a missing netns -> `failed to Statfs "<p>": no such file or directory`."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        node = sb.netns("node")
        run = cni.run("loopback", "ADD", conf(), in_netns=node,
                      netns="/var/run/netns/cnitest-gone")
        return {"add": observe.outcome(run)}

    obs = differential(cni, sc)
    assert obs["add"]["error"]["msg"] == (
        'failed to Statfs "/var/run/netns/cnitest-gone": no such file or directory')

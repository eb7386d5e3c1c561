"""host-local: docs/reference-behaviour.md P13-P43 and P110, plus docs/spec-rules.md C39, C41,
C43, C45. Each case's docstring starts with its ids.

Each case is a scenario (a sequence of calls in a fresh sandbox) whose observation - every
call's exit status and parsed output, and every file under the data dir with its mode and
bytes - is checked against docs/reference-behaviour.md and, with a reference configured, compared
with the reference's. P34 (a container id with surrounding whitespace) cannot pass the skel's
container-id check from outside and is left to unit tests.
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance import deviations as dev
from conformance import observe
from conformance.bindir import CniDir
from conformance.checks import require
from conformance.sandbox import Sandbox, differential, without

pytestmark = pytest.mark.usefixtures("_host_local")


@pytest.fixture
def _host_local(cni: CniDir) -> None:
    require(cni, "host-local")


class HL:
    """Drives host-local in one sandbox and records every call."""

    def __init__(self, cni: CniDir, sb: Sandbox, name: str = "hlnet") -> None:
        self.cni, self.sb, self.name = cni, sb, name
        self.data = sb.dir("ipam")
        self.node = sb.netns("node")
        self.steps: list[dict[str, Any]] = []

    def conf(self, ipam: dict[str, Any] | None, version: str | None = "1.0.0",
             **top: Any) -> dict[str, Any]:
        c: dict[str, Any] = {"name": self.name, "type": "host-local", **top}
        if version is not None:
            c["cniVersion"] = version
        if ipam is not None:
            c["ipam"] = {"type": "host-local", "dataDir": str(self.data), **ipam}
        return c

    def call(self, command: str, conf: dict[str, Any], cid: str = "r1", ifname: str = "eth0",
             args: str = "") -> dict[str, Any]:
        run = self.cni.run("host-local", command, conf, in_netns=self.node, containerid=cid,
                           ifname=ifname, args=args, netns="/var/run/netns/unused")
        out = observe.outcome(run)
        self.steps.append(out)
        return out

    def obs(self) -> dict[str, Any]:
        return {"steps": self.steps, "files": lease_dir(self.cni, self.data / self.name)}


def lease_dir(cni: CniDir, path: Any) -> dict[str, Any]:
    """observe.files of a network directory without our owner index (I5, checked apart)."""
    files = observe.files(path)
    if dev.pick(cni, "I5-host-local-index", new=True, old=False):
        files = {k: v for k, v in files.items() if dev.INDEX_DIR not in k.split("/")}
    return files


def ips(step: dict[str, Any]) -> list[str]:
    assert step["rc"] == 0, step
    return [i["address"] for i in step["result"].get("ips", [])]


def err(step: dict[str, Any]) -> str:
    assert step["rc"] == 1 and "error" in step, step
    return step["error"]["msg"]


def drop_route_extras(obj: Any) -> Any:
    """Routes reduced to dst/gw (fold for R12)."""
    if isinstance(obj, dict):
        if "dst" in obj and set(obj) - {"dst", "gw"} <= {"mtu", "advmss", "priority", "table",
                                                         "scope"}:
            return {k: v for k, v in obj.items() if k in ("dst", "gw")}
        return {k: drop_route_extras(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [drop_route_extras(v) for v in obj]
    return obj


def lease_mode(cni: CniDir) -> str:
    return dev.pick(cni, "R4-lease-file-mode", new="0600", old="0644")


def config_error_code(cni: CniDir) -> int:
    """The code of a configuration error the Go plugins return untyped (I7: ours says 7)."""
    return dev.pick(cni, "I7-error-codes", new=7, old=999)


CODE0 = {"I7-error-codes": without("steps.0.error.code")}
"""fold: the first call's error code (asserted per side by the case)."""


V4 = {"subnet": "10.250.3.0/24"}


def test_hl13_fresh_add_files(cni: CniDir) -> None:
    """P13, P42, C45: fresh ADD -> 10.250.3.2/24 gw .1, no interfaces / ips[].interface;
    files: lease `r1\\r\\neth0`, last_reserved_ip.0, empty lock; dir 0755, lock 0750,
    lease files 0600 (v1.1.1 0644, R4)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        h.call("ADD", h.conf(V4))
        return h.obs()

    obs = differential(cni, sc)
    res = obs["steps"][0]["result"]
    assert res["ips"] == [{"address": "10.250.3.2/24", "gateway": "10.250.3.1"}]
    assert "interfaces" not in res
    f = obs["files"]
    assert f["10.250.3.2"] == {"mode": lease_mode(cni), "data": "r1\r\neth0"}
    assert f["last_reserved_ip.0"] == {"mode": lease_mode(cni), "data": "10.250.3.2"}
    assert f["lock"] == {"mode": "0750", "data": ""}
    assert set(f) == {"10.250.3.2", "last_reserved_ip.0", "lock"}


def test_hl14_round_robin_after_release(cni: CniDir) -> None:
    """P14: ADD r1, DEL r1, ADD r2 -> r2 gets .3 (the pointer is not reset by a release)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        c = h.conf(V4)
        h.call("ADD", c, "r1")
        h.call("DEL", c, "r1")
        h.call("ADD", c, "r2")
        return h.obs()

    obs = differential(cni, sc)
    assert obs["steps"][1] == {"rc": 0, "stdout": ""}
    assert ips(obs["steps"][2]) == ["10.250.3.3/24"]
    assert "10.250.3.2" not in obs["files"]


def test_hl15_wraps_to_lowest_free(cni: CniDir) -> None:
    """P15: /29: .2 .3 .4 then .5, .6; after freeing .2 the next ADD wraps to .2."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        c = h.conf({"subnet": "10.250.15.0/29"})
        for i in range(1, 6):
            h.call("ADD", c, f"r{i}")
        h.call("DEL", c, "r1")
        h.call("ADD", c, "r6")
        return h.obs()

    obs = differential(cni, sc)
    got = [ips(s)[0] for i, s in enumerate(obs["steps"]) if i != 5]
    assert got == ["10.250.15.2/29", "10.250.15.3/29", "10.250.15.4/29", "10.250.15.5/29",
                   "10.250.15.6/29", "10.250.15.2/29"]


def test_hl16_slash30_exhaustion(cni: CniDir) -> None:
    """P16: /30 has exactly one allocatable address; the second ADD reports the range set."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        c = h.conf({"subnet": "10.250.15.0/30"})
        h.call("ADD", c, "r1")
        h.call("ADD", c, "r2")
        return h.obs()

    obs = differential(cni, sc)
    assert ips(obs["steps"][0]) == ["10.250.15.2/30"]
    base = ("failed to allocate for range 0: no IP addresses available in range set: "
            "10.250.15.1-10.250.15.2")
    # CNI_NETNS names no namespace here: the lease cannot be judged (I15).
    assert err(obs["steps"][1]) == dev.pick(
        cni, "I15-host-local-exhaustion-counts",
        new=base + dev.exhaustion_counts(1, 0, 1, "hlnet"), old=base)


@pytest.mark.parametrize(
    "ipam, msg",
    [
        ({"subnet": "10.250.5.0/31"},
         "invalid range set 0: Network 10.250.5.0/31 too small to allocate from"),
        ({"subnet": "10.250.5.1/24"},
         "invalid range set 0: Network has host bits set. For a subnet mask of length 24 the "
         "network address is 10.250.5.0"),
        ({"subnet": "10.250.5.0/24", "rangeStart": "10.250.5.50", "rangeEnd": "10.250.5.40"},
         "invalid range set 0: RangeStart 10.250.5.50 not in network 10.250.5.0/24"),
        ({"subnet": "10.250.5.0/24", "rangeStart": "10.250.6.1"},
         "invalid range set 0: RangeStart 10.250.6.1 not in network 10.250.5.0/24"),
        ({"subnet": "10.250.5.0/24", "rangeEnd": "10.250.7.0"},
         "invalid range set 0: RangeEnd 10.250.7.0 not in network 10.250.5.0/24"),
        ({"ranges": [[{"subnet": "10.1.0.0/22"}], [{"subnet": "10.1.2.0/24"}]]},
         "range set 0 overlaps with 1"),
        ({"ranges": [[{"subnet": "10.1.0.0/22"}, {"subnet": "10.1.2.0/24"}]]},
         "invalid range set 0: subnets 10.1.0.1-10.1.3.254 and 10.1.2.1-10.1.2.254 overlap"),
        ({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]},
         "invalid range set 0: mixed address families"),
        ({"ranges": [[]]}, "invalid range set 0: empty range set"),
        ({}, "no IP ranges specified"),
    ],
    ids=["slash31", "hostbits", "start-gt-end", "start-outside", "end-outside",
         "sets-overlap", "ranges-overlap", "mixed-families", "empty-set", "no-ranges"],
)
def test_hl17_to_26_range_errors(cni: CniDir, ipam: dict[str, Any], msg: str) -> None:
    """P17-P20, P25, P26: range validation errors, exact messages, nothing leased; code 7 on ours,
    999 on the Go plugin (I7)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        h.call("ADD", h.conf(ipam))
        return h.obs()

    obs = differential(cni, sc, fold=CODE0)
    assert obs["steps"][0]["error"]["code"] == config_error_code(cni)
    assert err(obs["steps"][0]) == msg
    assert not [f for f in obs["files"] if f not in ("lock", "<absent>")]


def test_hl26_missing_ipam(cni: CniDir) -> None:
    """P26: no `ipam` key -> `IPAM config missing 'ipam' key` (code 7 on ours, 999, I7)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        h.call("ADD", h.conf(None))
        return h.obs()

    obs = differential(cni, sc, fold=CODE0)
    assert err(obs["steps"][0]) == "IPAM config missing 'ipam' key"
    assert obs["steps"][0]["error"]["code"] == config_error_code(cni)


def test_hl21_explicit_network_and_broadcast(cni: CniDir) -> None:
    """P21: /30 with rangeStart = network, rangeEnd = broadcast, gateway .2 -> .0, .1, .3, full."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        c = h.conf({"subnet": "10.250.7.0/30", "rangeStart": "10.250.7.0",
                    "rangeEnd": "10.250.7.3", "gateway": "10.250.7.2"})
        for i in range(1, 5):
            h.call("ADD", c, f"r{i}")
        return h.obs()

    obs = differential(cni, sc)
    assert [ips(s)[0] for s in obs["steps"][:3]] == ["10.250.7.0/30", "10.250.7.1/30",
                                                     "10.250.7.3/30"]
    assert err(obs["steps"][3]).startswith("failed to allocate for range 0: no IP addresses")


def test_hl22_ipv6_default_range_end(cni: CniDir) -> None:
    """P22: an IPv6 /64 without rangeEnd starts at ::2 and ends at the last address of the
    prefix (shown in the exhaustion message)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb, "hl6a")
        h.call("ADD", h.conf({"subnet": "fd00:22::/64"}), "r1")
        h2 = HL(cni, sb, "hl6b")
        c = h2.conf({"subnet": "fd00:23::/64", "rangeStart": "fd00:23::ffff:ffff:ffff:fffe"})
        for i in range(1, 4):
            h2.call("ADD", c, f"r{i}")
        return {"a": h.obs(), "b": h2.obs()}

    obs = differential(cni, sc)
    assert ips(obs["a"]["steps"][0]) == ["fd00:22::2/64"]
    assert [ips(s)[0] for s in obs["b"]["steps"][:2]] == [
        "fd00:23::ffff:ffff:ffff:fffe/64", "fd00:23::ffff:ffff:ffff:ffff/64"]
    base = ("failed to allocate for range 0: no IP addresses available in range set: "
            "fd00:23::ffff:ffff:ffff:fffe-fd00:23::ffff:ffff:ffff:ffff")
    assert err(obs["b"]["steps"][2]) == dev.pick(
        cni, "I15-host-local-exhaustion-counts",
        new=base + dev.exhaustion_counts(2, 0, 2, "hl6b"), old=base)


def test_hl23_dual_stack_partial_failure(cni: CniDir) -> None:
    """P23: [[v4],[v6 ::10-::12]] -> two IPs in set order; the 4th ADD fails on range 1, its
    v4 lease is released; the Go host-local still advances last_reserved_ip.0 to the released
    .5, ours leaves it at .4 (I12)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        c = h.conf({"ranges": [[{"subnet": "10.250.23.0/24"}],
                               [{"subnet": "fd00:250::/64", "rangeStart": "fd00:250::10",
                                 "rangeEnd": "fd00:250::12"}]]})
        for i in range(1, 5):
            h.call("ADD", c, f"r{i}")
        return h.obs()

    obs = differential(cni, sc, fold={
        "I12-host-local-failed-add-writes-nothing": without("files.last_reserved_ip.0")})
    assert obs["steps"][0]["result"]["ips"] == [
        {"address": "10.250.23.2/24", "gateway": "10.250.23.1"},
        {"address": "fd00:250::10/64", "gateway": "fd00:250::1"}]
    assert err(obs["steps"][3]).startswith("failed to allocate for range 1: ")
    f = obs["files"]
    assert "10.250.23.5" not in f
    assert not [k for k, v in f.items() if v.get("data", "").startswith("r4")], f
    assert f["last_reserved_ip.0"]["data"] == dev.pick(
        cni, "I12-host-local-failed-add-writes-nothing", new="10.250.23.4", old="10.250.23.5")
    assert f["last_reserved_ip.1"]["data"] == "fd00:250::12"


def test_hl24_legacy_version_one_address_per_family(cni: CniDir) -> None:
    """P24, P80-ish: two v4 sets at 0.2.0 -> refused (code 7 on ours, 999, I7); one v4 + one v6
    at 0.2.0 -> ip4 + ip6."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        h.call("ADD", h.conf({"ranges": [[{"subnet": "10.250.24.0/24"}],
                                         [{"subnet": "10.250.25.0/24"}]]}, version="0.2.0"))
        h.call("ADD", h.conf({"ranges": [[{"subnet": "10.250.24.0/24"}],
                                         [{"subnet": "fd00:24::/64"}]]}, version="0.2.0"), "r2")
        return h.obs()

    obs = differential(cni, sc, fold=CODE0)
    assert (
        err(obs["steps"][0]) == "CNI version 0.2.0 does not support more than 1 address per family"
    )
    assert obs["steps"][0]["error"]["code"] == config_error_code(cni)
    res = obs["steps"][1]["result"]
    assert res["cniVersion"] == "0.2.0"
    assert res["ip4"] == {"ip": "10.250.24.2/24", "gateway": "10.250.24.1"}
    assert res["ip6"] == {"ip": "fd00:24::2/64", "gateway": "fd00:24::1"}
    assert res["dns"] == {}


def test_hl27_28_requested_ip(cni: CniDir) -> None:
    """P27, P28: CNI_ARGS IP=.77 -> exactly .77; again for another id -> not available;
    IP=<gateway> -> `requested ip ... is subnet's gateway`."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        c = h.conf(V4)
        h.call("ADD", c, "r1", args="IP=10.250.3.77")
        h.call("ADD", c, "r2", args="IP=10.250.3.77")
        h.call("ADD", c, "r3", args="IP=10.250.3.1")
        return h.obs()

    obs = differential(cni, sc)
    assert ips(obs["steps"][0]) == ["10.250.3.77/24"]
    assert err(obs["steps"][1]) == ("failed to allocate for range 0: requested IP address "
                                    "10.250.3.77 is not available in range set "
                                    "10.250.3.1-10.250.3.254")
    assert err(obs["steps"][2]) == ("failed to allocate for range 0: requested ip 10.250.3.1 "
                                    "is subnet's gateway")


def test_hl29_requested_ip_outside(cni: CniDir) -> None:
    """P29: IP outside every range -> error `failed to allocate all requested IPs: <ip>`, no
    lease. The Go host-local reserved a dynamic .2 on the way and leaves last_reserved_ip.0 at
    it; ours writes no last_reserved_ip.0 at all (I12)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        h.call("ADD", h.conf(V4), "r1", args="IP=10.99.0.5")
        return h.obs()

    obs = differential(cni, sc, fold={
        "I12-host-local-failed-add-writes-nothing": without("files.last_reserved_ip.0")})
    assert err(obs["steps"][0]) == "failed to allocate all requested IPs: 10.99.0.5"
    assert "10.250.3.2" not in obs["files"]
    assert obs["files"].get("last_reserved_ip.0") == dev.pick(
        cni, "I12-host-local-failed-add-writes-nothing",
        new=None, old={"mode": lease_mode(cni), "data": "10.250.3.2"})


@pytest.mark.parametrize(
    "args, msg",
    [
        ("FOO=bar", 'ARGS: unknown args ["FOO=bar"]'),
        ("IgnoreUnknown=1;FOO=bar", None),
        ("ignoreunknown=1;FOO=bar", 'ARGS: unknown args ["ignoreunknown=1" "FOO=bar"]'),
        ("IP", 'ARGS: invalid pair "IP"'),
        ("IP=abc", 'ARGS: error parsing value of pair "IP=abc": invalid IP address abc'),
    ],
    ids=["unknown", "ignore-unknown", "key-case", "no-value", "bad-ip"],
)
def test_hl30_cni_args(cni: CniDir, args: str, msg: str | None) -> None:
    """P30: CNI_ARGS parsing: unknown keys, IgnoreUnknown (case-sensitive key), bad pairs; the
    errors carry code 4 (invalid environment) on ours, 999 on the Go plugin (I7)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        h.call("ADD", h.conf(V4), args=args)
        return h.obs()

    obs = differential(cni, sc, fold=CODE0)
    if msg is None:
        assert ips(obs["steps"][0]) == ["10.250.3.2/24"]
    else:
        assert err(obs["steps"][0]) == msg
        assert obs["steps"][0]["error"]["code"] == dev.pick(cni, "I7-error-codes", new=4, old=999)


def test_hl31_requested_ips_in_config(cni: CniDir) -> None:
    """P31: args.cni.ips `10.250.3.90/24` and runtimeConfig.ips `10.250.3.91` are honoured, the
    result carrying the subnet's prefix."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        h.call("ADD", h.conf(V4, args={"cni": {"ips": ["10.250.3.90/24"]}}), "r1")
        h.call("ADD", h.conf(V4, runtimeConfig={"ips": ["10.250.3.91"]}), "r2")
        return h.obs()

    obs = differential(cni, sc)
    assert ips(obs["steps"][0]) == ["10.250.3.90/24"]
    assert ips(obs["steps"][1]) == ["10.250.3.91/24"]


def test_hl32_two_requests_one_set(cni: CniDir) -> None:
    """P32: two requested IPs in one range set -> error naming the unconsumed one, no lease.
    The Go host-local leaves last_reserved_ip.0 at the one it consumed and released; ours
    writes none (I12)."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        h.call("ADD", h.conf(V4, runtimeConfig={"ips": ["10.250.3.90", "10.250.3.91"]}))
        return h.obs()

    # which one is consumed is Go map order: the message and last_reserved_ip.0 follow it
    obs = differential(cni, sc, ignore=("steps",), fold={
        "I12-host-local-failed-add-writes-nothing": without("files.last_reserved_ip.0")})
    m = err(obs["steps"][0])
    assert m in ("failed to allocate all requested IPs: 10.250.3.91",
                 "failed to allocate all requested IPs: 10.250.3.90"), m
    assert not [f for f in obs["files"] if f.startswith("10.250.3.9")]
    consumed = "10.250.3.90" if m.endswith(".91") else "10.250.3.91"
    assert obs["files"].get("last_reserved_ip.0") == dev.pick(
        cni, "I12-host-local-failed-add-writes-nothing",
        new=None, old={"mode": lease_mode(cni), "data": consumed})


def test_hl33_duplicates(cni: CniDir) -> None:
    """P33: same id+ifname twice -> duplicate refused; other ifname fine; a requested IP for the
    same owner gives a second lease; one DEL removes both."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        c = h.conf(V4)
        h.call("ADD", c, "r1")
        h.call("ADD", c, "r1")
        h.call("ADD", c, "r1", ifname="eth1")
        h.call("ADD", c, "r1", args="IP=10.250.3.50")
        files_before = lease_dir(cni, h.data / h.name)
        h.call("DEL", c, "r1")
        return {**h.obs(), "before_del": files_before}

    obs = differential(cni, sc)
    s = obs["steps"]
    assert err(s[1]) == ("failed to allocate for range 0: 10.250.3.2 has been allocated to r1, "
                         "duplicate allocation is not allowed")
    assert ips(s[2]) == ["10.250.3.3/24"]
    assert ips(s[3]) == ["10.250.3.50/24"]
    assert obs["before_del"]["10.250.3.50"]["data"] == "r1\r\neth0"
    leases = [f for f in obs["files"] if f.startswith("10.")]
    assert leases == ["10.250.3.3"], leases  # the eth1 lease stays


def test_hl35_del_unknown_and_missing_dir(cni: CniDir) -> None:
    """P35: DEL of an unknown id succeeds; DEL with a data dir that does not exist succeeds and
    creates `<dataDir>/<name>/lock`."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        h.call("DEL", h.conf(V4), "nobody")
        return h.obs()

    obs = differential(cni, sc)
    assert obs["steps"][0] == {"rc": 0, "stdout": ""}
    assert obs["files"] == {"lock": {"mode": "0750", "data": ""}}


def test_hl36_legacy_lease(cni: CniDir) -> None:
    """P36: a legacy lease holding only the id: CHECK finds it, DEL removes it."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        d = h.data / h.name
        d.mkdir(parents=True)
        (d / "10.250.3.9").write_text("r1")
        c = h.conf(V4)
        h.call("CHECK", c, "r1")
        h.call("DEL", c, "r1")
        return h.obs()

    obs = differential(cni, sc)
    assert obs["steps"] == [{"rc": 0, "stdout": ""}, {"rc": 0, "stdout": ""}]
    assert "10.250.3.9" not in obs["files"]


def test_hl36_del_two_range_sets_frees_legacy_lease(cni: CniDir) -> None:
    """P36: under a config of two range sets, DEL frees the owner's legacy lease (id only) and
    its id + ifname lease alike."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        d = h.data / h.name
        d.mkdir(parents=True)
        (d / "10.250.3.20").write_text("r1")
        (d / "10.250.3.21").write_text("r1\r\neth0")
        ipam = {"ranges": [[{"subnet": "10.250.3.0/24"}], [{"subnet": "fd00:3::/64"}]]}
        h.call("DEL", h.conf(ipam), "r1")
        return h.obs()

    obs = differential(cni, sc)
    assert obs["steps"] == [{"rc": 0, "stdout": ""}]
    assert not {"10.250.3.20", "10.250.3.21"} & set(obs["files"])


def test_hl37_check(cni: CniDir) -> None:
    """P37: CHECK of an existing owner -> exit 0, no output; wrong ifname -> error."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        c = h.conf(V4)
        h.call("ADD", c, "r1")
        h.call("CHECK", c, "r1")
        h.call("CHECK", c, "r1", ifname="eth9")
        return h.obs()

    obs = differential(cni, sc)
    assert obs["steps"][1] == {"rc": 0, "stdout": ""}
    assert err(obs["steps"][2]) == "host-local: Failed to find address added by container r1"


RESOLV = """# comment
; another comment
nameserver 10.0.0.53 extra
nameserver
domain first.example
nameserver fd00::53
search a.example b.example
search c.example
domain example.com
options ndots:2 timeout:1
sortlist 10.0.0.0/8
"""


def test_hl38_resolv_conf(cni: CniDir) -> None:
    """P38: resolvConf parsing exactly as docs/reference-behaviour.md §1.6; an unreadable path ->
    the OS error and no lease."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        rc = sb.dir("etc") / "resolv.conf"
        rc.write_text(RESOLV)
        h.call("ADD", h.conf({**V4, "resolvConf": str(rc)}), "r1")
        h.call("ADD", h.conf({**V4, "resolvConf": str(sb.tmp / "nope.conf")}), "r2")
        return h.obs()

    obs = differential(cni, sc)
    assert obs["steps"][0]["result"]["dns"] == {
        "nameservers": ["10.0.0.53", "fd00::53"], "domain": "example.com",
        "search": ["a.example", "b.example", "c.example"], "options": ["ndots:2", "timeout:1"]}
    assert err(obs["steps"][1]) == "open <tmp>/nope.conf: no such file or directory"
    assert [f for f in obs["files"] if f.startswith("10.")] == ["10.250.3.2"]


def test_hl39_routes_echoed(cni: CniDir) -> None:
    """P39, P110: routes are echoed verbatim (0.3+); at 0.2.0 they are split into ip4/ip6 with
    extras dropped, and an IPv4 route under a v6-only config disappears."""
    routes = [{"dst": "10.250.99.0/24", "gw": "10.250.2.6", "priority": 5},
              {"dst": "fd00:99::/64"}]

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        h.call("ADD", h.conf({"subnet": "10.250.2.0/24", "routes": routes}), "r1")
        h.call("ADD", h.conf({"subnet": "10.250.2.0/24", "routes": routes}, version="0.2.0"),
               "r2")
        h.call("ADD", h.conf({"subnet": "fd00:2::/64", "routes": routes}, version="0.2.0"), "r3")
        return h.obs()

    obs = differential(cni, sc, fold={"R12-route-extras": drop_route_extras})
    want = dev.pick(cni, "R12-route-extras", new=routes,
                    old=[{"dst": "10.250.99.0/24", "gw": "10.250.2.6"}, {"dst": "fd00:99::/64"}])
    assert obs["steps"][0]["result"]["routes"] == want
    assert obs["steps"][1]["result"]["ip4"]["routes"] == [{"dst": "10.250.99.0/24",
                                                          "gw": "10.250.2.6"}]
    assert "ip6" not in obs["steps"][1]["result"]
    assert obs["steps"][2]["result"]["ip6"]["routes"] == [{"dst": "fd00:99::/64"}]
    assert "ip4" not in obs["steps"][2]["result"]


def test_hl40_last_reserved_with_newline(cni: CniDir) -> None:
    """P40: `last_reserved_ip.0` with a trailing newline is ignored: allocation restarts."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        d = h.data / h.name
        d.mkdir(parents=True)
        (d / "last_reserved_ip.0").write_text("10.250.3.50\n")
        h.call("ADD", h.conf(V4))
        return h.obs()

    obs = differential(cni, sc)
    assert ips(obs["steps"][0]) == ["10.250.3.2/24"]


def test_hl41_runtime_ip_ranges_first(cni: CniDir) -> None:
    """P41: runtimeConfig.ipRanges come first: the runtime range is set 0, static ranges set 1."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        c = h.conf({"ranges": [[{"subnet": "10.250.41.0/24"}]]},
                   runtimeConfig={"ipRanges": [[{"subnet": "10.250.141.0/24"}]]})
        h.call("ADD", c)
        return h.obs()

    obs = differential(cni, sc)
    assert ips(obs["steps"][0]) == ["10.250.141.2/24", "10.250.41.2/24"]
    assert obs["files"]["last_reserved_ip.0"]["data"] == "10.250.141.2"
    assert obs["files"]["last_reserved_ip.1"]["data"] == "10.250.41.2"


def test_hl43_no_version_is_010(cni: CniDir) -> None:
    """P43: no cniVersion -> 0.1.0 output: `ip4` block and `"dns": {}`."""

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        h.call("ADD", h.conf(V4, version=None))
        return h.obs()

    obs = differential(cni, sc)
    assert obs["steps"][0]["result"] == {"cniVersion": "0.1.0",
                                         "ip4": {"ip": "10.250.3.2/24", "gateway": "10.250.3.1"},
                                         "dns": {}}


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0",
                                     "1.1.0"])
def test_p39_result_version_follows_config(cni: CniDir, version: str) -> None:
    """C39 (P80): the ADD result's cniVersion equals the config's, in that version's
    shape (ip4 for 0.1/0.2, `version` fields for 0.3/0.4, plain ips for 1.x)."""
    if version == "1.1.0" and dev.old_side(cni, "R2-version-list"):
        pytest.skip("v1.1.1 does not speak 1.1.0 (R2/R3)")

    def sc(cni: CniDir, sb: Sandbox) -> dict[str, Any]:
        h = HL(cni, sb)
        h.call("ADD", h.conf(V4, version=version))
        return h.obs()

    obs = differential(cni, sc, spec_1_1=version == "1.1.0")
    res = obs["steps"][0]["result"]
    assert res["cniVersion"] == version
    if version in ("0.1.0", "0.2.0"):
        assert res["ip4"]["ip"] == "10.250.3.2/24"
    elif version.startswith("0."):
        assert res["ips"] == [{"version": "4", "address": "10.250.3.2/24",
                               "gateway": "10.250.3.1"}]
        assert res["dns"] == {}
    else:
        assert res["ips"] == [{"address": "10.250.3.2/24", "gateway": "10.250.3.1"}]

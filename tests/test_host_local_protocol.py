"""host-local through the CNI protocol, ours next to the reference (docs/reference-behaviour.md §1,
P13-P43).

Every differential test runs the same steps with dist/bin/host-local and the reference
binary, each on its own temp data directory, and compares exit status, result (as data) or
error message, and the files left in the network directory (name and bytes). Where the
reference v1.1.1 differs from upstream 3d27709f (file modes, `dns: {}` in 1.x output, GC/STATUS) or
where we differ on purpose (error codes; a failed ADD writes nothing), the test says so and checks
our behaviour on its own.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.host_local_testlib import (
    NET,
    OURS,
    REF,
    call,
    exhaustion_hint,
    files,
    leases,
    netconf,
    node_namespace,
    outcome,
    reference,
    write_leases,
)


@pytest.fixture(scope="module")
def node():
    """The node namespace every call of this module runs in."""
    yield from node_namespace()


V4 = {"subnet": "10.250.3.0/24"}


class Pair:
    """Two data directories, one per implementation, driven in lockstep."""

    def __init__(self, tmp_path: Path, node) -> None:
        self.node = node
        self.dirs = {"ours": tmp_path / "ours", "ref": tmp_path / "ref"}

    def netdir(self, which: str) -> Path:
        return self.dirs[which] / NET

    def both(self, fn) -> None:
        """Apply `fn(netdir)` to both network directories (to seed files)."""
        for which in self.dirs:
            fn(self.netdir(which))

    def run(
        self,
        command: str,
        ipam: dict[str, Any] | None = None,
        *,
        version: str | None = "1.0.0",
        top: dict[str, Any] | None = None,
        cid: str = "ctr1",
        ifname: str = "eth0",
        cni_args: str = "",
        same_files: bool = True,
        same_outcome: bool = True,
    ):
        """Run one command on both; assert equal outcomes (and files); return ours' outcome.

        `same_outcome=False` is for the cases where the reference's answer is random (Go map
        order): the caller asserts the allowed outcomes itself."""
        runs = {}
        for which, exe in (("ours", OURS), ("ref", REF)):
            conf = netconf(self.dirs[which], ipam if ipam is not None else V4, version, **(top or {}))
            runs[which] = call(exe, self.node, command, conf, cid=cid, ifname=ifname, args=cni_args)
        o, r = outcome(runs["ours"]), outcome(runs["ref"])
        if same_outcome:
            assert o == r, f"ours {runs['ours'].stdout!r} vs reference {runs['ref'].stdout!r}"
        if same_files:
            assert files(self.netdir("ours")) == files(self.netdir("ref"))
        return o, runs


@pytest.fixture
def pair(tmp_path, node):
    return Pair(tmp_path, node)


def ips(result: dict) -> list[str]:
    return [ip["address"] for ip in result["ips"]]


# ---------------------------------------------------------------------------- allocation


@reference
def test_13_fresh_add_result_and_files(pair):
    (rc, res), _ = pair.run("ADD")
    assert rc == 0
    assert res == {"cniVersion": "1.0.0", "ips": [{"address": "10.250.3.2/24", "gateway": "10.250.3.1"}]}
    assert files(pair.netdir("ours")) == {
        "10.250.3.2": b"ctr1\r\neth0",
        "last_reserved_ip.0": b"10.250.3.2",
        "lock": b"",
    }


@reference
def test_13_our_output_is_upstream_shaped(pair):
    _, runs = pair.run("ADD")
    # upstream 3d27709f sorts keys and leaves out an empty dns (v1.1.1 prints struct order and
    # "dns": {})
    assert runs["ours"].stdout == (
        '{\n    "cniVersion": "1.0.0",\n    "ips": [\n        {\n            "address": "10.250.3.2/24",'
        '\n            "gateway": "10.250.3.1"\n        }\n    ]\n}'
    )


@reference
def test_14_round_robin_pointer_survives_release(pair):
    pair.run("ADD", cid="r1")
    pair.run("DEL", cid="r1")
    (rc, res), _ = pair.run("ADD", cid="r2")
    assert ips(res) == ["10.250.3.3/24"]


@reference
def test_15_continue_after_last_reserved_and_wrap(pair):
    ipam = {"subnet": "10.250.4.0/29"}
    pair.both(lambda d: write_leases(d, {f"10.250.4.{i}": f"old{i}\r\neth0" for i in (2, 3, 4)}, "10.250.4.4"))
    (rc, res), _ = pair.run("ADD", ipam, cid="a")
    assert ips(res) == ["10.250.4.5/29"]
    pair.run("ADD", ipam, cid="b")
    pair.run("DEL", ipam, cid="old3")
    (rc, res), _ = pair.run("ADD", ipam, cid="c")
    assert ips(res) == ["10.250.4.3/29"]  # wrapped to the lowest free address


@reference
def test_16_exhaustion_message(pair):
    ipam = {"subnet": "10.250.15.0/30"}
    pair.run("ADD", ipam, cid="a")
    (rc, msg), runs = pair.run("ADD", ipam, cid="b")
    assert rc == 1
    base = "failed to allocate for range 0: no IP addresses available in range set: 10.250.15.1-10.250.15.2"
    assert msg == base
    assert runs["ref"].result["msg"] == base
    # Ours adds the counts (CNI_NETNS does not exist here: the lease cannot be judged) and the fix.
    assert runs["ours"].result["msg"] == base + exhaustion_hint(1, 0, 1)
    assert runs["ours"].result["code"] == 999


@reference
@pytest.mark.parametrize(
    "ipam, msg",
    [
        ({"subnet": "10.250.5.0/31"}, "invalid range set 0: Network 10.250.5.0/31 too small to allocate from"),
        (
            {"subnet": "10.250.5.1/24"},
            "invalid range set 0: Network has host bits set. For a subnet mask of length 24 the network address is 10.250.5.0",
        ),
        (
            {"subnet": "10.250.5.0/24", "rangeStart": "10.250.5.50", "rangeEnd": "10.250.5.40"},
            "invalid range set 0: RangeStart 10.250.5.50 not in network 10.250.5.0/24",
        ),
        (
            {"subnet": "10.250.5.0/24", "rangeStart": "10.250.6.1"},
            "invalid range set 0: RangeStart 10.250.6.1 not in network 10.250.5.0/24",
        ),
        (
            {"subnet": "10.250.5.0/24", "rangeEnd": "10.250.6.1"},
            "invalid range set 0: RangeEnd 10.250.6.1 not in network 10.250.5.0/24",
        ),
        (
            {"ranges": [[{"subnet": "10.250.5.0/24"}], [{"subnet": "10.250.5.0/25"}]]},
            "range set 0 overlaps with 1",
        ),
        (
            {"ranges": [[{"subnet": "10.1.0.0/22"}, {"subnet": "10.1.2.0/24"}]]},
            "invalid range set 0: subnets 10.1.0.1-10.1.3.254 and 10.1.2.1-10.1.2.254 overlap",
        ),
        (
            {"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]},
            "invalid range set 0: mixed address families",
        ),
        ({"ranges": [[]]}, "invalid range set 0: empty range set"),
        ({"ranges": [[{}]]}, "invalid range set 0: IP <nil> not v4 nor v6"),
        ({}, "no IP ranges specified"),
        ({"subnet": "10.0.0.0/33"}, "invalid CIDR address: 10.0.0.0/33"),
        ({"subnet": "10.0.0.0/24", "gateway": "abc"}, "invalid IP address: abc"),
        ({"subnet": "10.0.0.0/24", "routes": [{"dst": "x"}]}, "invalid CIDR address: x"),
    ],
)
def test_17_to_26_invalid_configs_write_nothing(pair, ipam, msg):
    (rc, got), runs = pair.run("ADD", ipam, same_files=False)
    assert (rc, got) == (1, msg)
    assert runs["ours"].result["code"] in (6, 7)
    assert not pair.dirs["ours"].exists()  # nothing written, not even the directory


@reference
def test_26_missing_ipam_key(pair, tmp_path, node):
    conf = {"cniVersion": "1.0.0", "name": NET}
    o, r = (call(exe, node, "ADD", conf) for exe in (OURS, REF))
    assert outcome(o) == outcome(r) == (1, "IPAM config missing 'ipam' key")


@reference
def test_21_explicit_network_and_broadcast(pair):
    ipam = {"ranges": [[{"subnet": "10.250.7.0/30", "rangeStart": "10.250.7.0", "rangeEnd": "10.250.7.3",
                         "gateway": "10.250.7.2"}]]}
    got = [ips(pair.run("ADD", ipam, cid=f"c{i}")[0][1]) for i in range(3)]
    assert got == [["10.250.7.0/30"], ["10.250.7.1/30"], ["10.250.7.3/30"]]
    (rc, msg), _ = pair.run("ADD", ipam, cid="c4")
    assert msg == "failed to allocate for range 0: no IP addresses available in range set: 10.250.7.0-10.250.7.3"


@reference
def test_22_ipv6_default_range_end(pair):
    ipam = {"ranges": [[{"subnet": "fd00:250::/64"}]]}
    (rc, res), _ = pair.run("ADD", ipam, cid="a")
    assert ips(res) == ["fd00:250::2/64"] and res["ips"][0]["gateway"] == "fd00:250::1"
    (rc, msg), _ = pair.run("ADD", ipam, cid="b", cni_args="IP=fd00:250::2", same_files=False)
    assert msg == (
        "failed to allocate for range 0: requested IP address fd00:250::2 is not available in "
        "range set fd00:250::1-fd00:250::ffff:ffff:ffff:ffff"
    )


@reference
def test_23_dual_stack_and_partial_failure(pair):
    ipam = {"ranges": [[{"subnet": "10.250.2.0/29"}],
                       [{"subnet": "fd00:250::/64", "rangeStart": "fd00:250::10", "rangeEnd": "fd00:250::12"}]]}
    (rc, res), _ = pair.run("ADD", ipam, cid="a")
    assert res["ips"] == [
        {"address": "10.250.2.2/29", "gateway": "10.250.2.1"},
        {"address": "fd00:250::10/64", "gateway": "fd00:250::1"},
    ]
    pair.run("ADD", ipam, cid="b")
    pair.run("ADD", ipam, cid="c")
    before = files(pair.netdir("ours"))
    # The reference leaves last_reserved_ip.0 advanced after this failure; ours writes nothing.
    (rc, msg), _ = pair.run("ADD", ipam, cid="d", same_files=False)
    assert msg == (
        "failed to allocate for range 1: no IP addresses available in range set: fd00:250::10-fd00:250::12"
    )
    assert leases(pair.netdir("ours")) == leases(pair.netdir("ref"))
    assert files(pair.netdir("ours")) == before
    assert files(pair.netdir("ref"))["last_reserved_ip.0"] == b"10.250.2.5"


@reference
def test_24_legacy_versions_and_address_families(pair):
    two_v4 = {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]}
    (rc, msg), _ = pair.run("ADD", two_v4, version="0.2.0", same_files=False)
    assert msg == "CNI version 0.2.0 does not support more than 1 address per family"
    v4v6 = {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:1::/64"}]]}
    (rc, res), _ = pair.run("ADD", v4v6, version="0.2.0")
    assert res["ip4"]["ip"] == "10.1.0.2/24" and res["ip6"]["ip"] == "fd00:1::2/64"


@reference
def test_27_28_requested_ip_via_cni_args(pair):
    (rc, res), _ = pair.run("ADD", cid="a", cni_args="IP=10.250.3.77")
    assert ips(res) == ["10.250.3.77/24"]
    (rc, msg), _ = pair.run("ADD", cid="b", cni_args="IP=10.250.3.77")
    assert msg == ("failed to allocate for range 0: requested IP address 10.250.3.77 is not available "
                   "in range set 10.250.3.1-10.250.3.254")
    (rc, msg), _ = pair.run("ADD", cid="b", cni_args="IP=10.250.3.1")
    assert msg == "failed to allocate for range 0: requested ip 10.250.3.1 is subnet's gateway"


@reference
def test_29_requested_ip_outside_every_range(pair):
    before = files(pair.netdir("ours"))
    (rc, msg), _ = pair.run("ADD", cid="a", cni_args="IP=10.9.9.9", same_files=False)
    assert msg == "failed to allocate all requested IPs: 10.9.9.9"
    assert leases(pair.netdir("ours")) == leases(pair.netdir("ref")) == {}
    # The reference reserved and released a dynamic address (last_reserved moved); ours wrote nothing.
    assert leases(pair.netdir("ours")) == {} and not (pair.netdir("ours") / "last_reserved_ip.0").exists()
    assert before == {}


@reference
@pytest.mark.parametrize(
    "cni_args, msg",
    [
        ("FOO=bar", 'ARGS: unknown args ["FOO=bar"]'),
        ("IgnoreUnknown=1;FOO=bar", None),
        ("ignoreunknown=1;FOO=bar", 'ARGS: unknown args ["ignoreunknown=1" "FOO=bar"]'),
        ("IP", 'ARGS: invalid pair "IP"'),
        ("IP=abc", 'ARGS: error parsing value of pair "IP=abc": invalid IP address abc'),
        ("IP=", None),
        ("IP=10.250.3.44/24", None),
    ],
)
def test_30_cni_args(pair, cni_args, msg):
    (rc, got), runs = pair.run("ADD", cni_args=cni_args)
    if msg is None:
        assert rc == 0
    else:
        assert (rc, got) == (1, msg)
        assert runs["ours"].result["code"] == 4


@reference
def test_31_requested_ips_from_args_and_runtime_config(pair):
    (rc, res), _ = pair.run("ADD", cid="a", top={"args": {"cni": {"ips": ["10.250.3.90/24"]}}})
    assert ips(res) == ["10.250.3.90/24"]
    (rc, res), _ = pair.run("ADD", cid="b", top={"runtimeConfig": {"ips": ["10.250.3.91"]}})
    assert ips(res) == ["10.250.3.91/24"]
    (rc, msg), _ = pair.run("ADD", cid="c", top={"runtimeConfig": {"ips": [""]}}, same_files=False)
    assert msg == "cannot understand ip: IP <nil> not v4 nor v6"


@reference
def test_32_two_requested_ips_in_one_set(pair):
    top = {"runtimeConfig": {"ips": ["10.250.3.90", "10.250.3.91"]}}
    _, runs = pair.run("ADD", top=top, same_files=False, same_outcome=False)
    ours, ref = outcome(runs["ours"]), outcome(runs["ref"])
    # The reference picks one in Go map order (random); ours takes the first given.
    assert ours == (1, "failed to allocate all requested IPs: 10.250.3.91")
    assert ref[1] in ("failed to allocate all requested IPs: 10.250.3.91",
                      "failed to allocate all requested IPs: 10.250.3.90")
    assert leases(pair.netdir("ours")) == leases(pair.netdir("ref")) == {}


@reference
def test_33_duplicates(pair):
    pair.run("ADD", cid="a")
    (rc, msg), _ = pair.run("ADD", cid="a")
    assert msg == "failed to allocate for range 0: 10.250.3.2 has been allocated to a, duplicate allocation is not allowed"
    (rc, res), _ = pair.run("ADD", cid="a", ifname="eth1")
    assert ips(res) == ["10.250.3.3/24"]
    (rc, res), _ = pair.run("ADD", cid="a", cni_args="IP=10.250.3.50")
    assert rc == 0  # no duplicate check on the requested-IP path
    pair.run("DEL", cid="a")
    assert set(leases(pair.netdir("ours"))) == {"10.250.3.3"}


@reference
def test_35_del_is_idempotent_and_creates_the_directory(pair):
    (rc, _), _ = pair.run("DEL", cid="nobody")
    assert rc == 0
    assert files(pair.netdir("ours")) == {"lock": b""}
    pair.run("DEL", cid="nobody")


@reference
def test_36_legacy_lease(pair):
    pair.both(lambda d: write_leases(d, {"10.250.3.20": "r1", "10.250.3.21": "r2\r\neth0"}))
    (rc, _), _ = pair.run("CHECK", cid="r1")
    assert rc == 0
    pair.run("DEL", cid="r1")
    assert set(leases(pair.netdir("ours"))) == {"10.250.3.21"}


@reference
def test_37_check(pair):
    pair.run("ADD", cid="a")
    (rc, _), _ = pair.run("CHECK", cid="a")
    assert rc == 0
    (rc, msg), _ = pair.run("CHECK", cid="a", ifname="eth1")
    assert (rc, msg) == (1, "host-local: Failed to find address added by container a")
    (rc, msg), _ = pair.run("CHECK", cid="b")
    assert msg == "host-local: Failed to find address added by container b"


@reference
def test_38_resolv_conf(pair, tmp_path):
    rc_path = tmp_path / "resolv.conf"
    rc_path.write_text(
        "# c\n; c\nnameserver 10.0.0.53 extra\nnameserver\nnameserver fd00::53\ndomain example.org\n"
        "search a.example b.example\nsearch c.example\noptions ndots:2 edns0\n"
    )
    (rc, res), _ = pair.run("ADD", {**V4, "resolvConf": str(rc_path)})
    assert res["dns"] == {
        "nameservers": ["10.0.0.53", "fd00::53"],
        "domain": "example.org",
        "search": ["a.example", "b.example", "c.example"],
        "options": ["ndots:2", "edns0"],
    }
    missing = tmp_path / "nope"
    (rc, msg), _ = pair.run("ADD", {**V4, "resolvConf": str(missing)}, cid="b")
    assert msg == f"open {missing}: no such file or directory"


@reference
def test_39_routes(pair):
    routes = [{"dst": "10.250.99.0/24", "gw": "10.250.2.6"}, {"dst": "fd00:99::/64"}]
    ipam = {"ranges": [[{"subnet": "10.250.2.0/24"}]], "routes": routes}
    (rc, res), _ = pair.run("ADD", ipam, cid="a")
    assert res["routes"] == routes
    (rc, res), _ = pair.run("ADD", ipam, cid="b", version="0.2.0")
    assert res["ip4"]["routes"] == [{"dst": "10.250.99.0/24", "gw": "10.250.2.6"}]
    assert "ip6" not in res


def test_39_route_extras_are_echoed_like_upstream(tmp_path, node):
    # v1.1.1 predates the route extras and drops them; upstream 3d27709f echoes them.
    routes = [{"dst": "10.250.99.0/24", "gw": "10.250.2.6", "priority": 5, "mtu": 1400, "table": 7}]
    run = call(OURS, node, "ADD", netconf(tmp_path, {"subnet": "10.250.2.0/24", "routes": routes}))
    assert run.result["routes"] == routes


@reference
def test_40_last_reserved_with_newline_is_ignored(pair):
    pair.both(lambda d: write_leases(d, {}, "10.250.3.50\n"))
    (rc, res), _ = pair.run("ADD")
    assert ips(res) == ["10.250.3.2/24"]


@reference
def test_41_runtime_ip_ranges_come_first(pair):
    top = {"runtimeConfig": {"ipRanges": [[{"subnet": "10.250.8.0/24"}]]}}
    (rc, res), _ = pair.run("ADD", {"ranges": [[{"subnet": "fd00:8::/64"}]]}, top=top)
    assert ips(res) == ["10.250.8.2/24", "fd00:8::2/64"]
    assert files(pair.netdir("ours"))["last_reserved_ip.0"] == b"10.250.8.2"


@reference
def test_43_no_cni_version_gives_010_output(pair):
    (rc, res), _ = pair.run("ADD", version=None)
    assert res == {"cniVersion": "0.1.0", "ip4": {"ip": "10.250.3.2/24", "gateway": "10.250.3.1"}, "dns": {}}


# ---------------------------------------------------------------------------- ours only


def test_42_file_modes_follow_upstream(tmp_path, node):
    old = os.umask(0o022)
    try:
        run = call(OURS, node, "ADD", netconf(tmp_path, V4))
    finally:
        os.umask(old)
    assert run.returncode == 0, run.stdout
    netdir = tmp_path / NET
    mode = {p.name: stat.S_IMODE(p.stat().st_mode) for p in netdir.iterdir()}
    assert mode["10.250.3.2"] == 0o600 and mode["last_reserved_ip.0"] == 0o600
    assert mode["lock"] & 0o700 == 0o700 and stat.S_IMODE(netdir.stat().st_mode) & 0o700 == 0o700


def test_error_output_is_one_cni_error(tmp_path, node):
    run = call(OURS, node, "ADD", netconf(tmp_path, {"subnet": "10.0.0.0/31"}))
    assert run.returncode == 1
    assert set(run.result) <= {"cniVersion", "code", "msg", "details"}
    assert run.stderr == ""


def test_version_and_bad_env(tmp_path, node):
    run = call(OURS, node, "VERSION", {"cniVersion": "1.1.0"})
    assert run.result["supportedVersions"][-1] == "1.1.0"
    run = call(OURS, node, "ADD", netconf(tmp_path, V4), cid="a/../b")
    assert run.returncode == 1 and run.result["code"] == 4
    assert not tmp_path.joinpath(NET).exists()


def test_unwritable_data_dir_is_a_clean_error(tmp_path, node):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    run = call(OURS, node, "ADD", netconf(blocker / "sub", V4))
    assert run.returncode == 1
    assert run.result["code"] == 5
    assert str(blocker) in run.result["msg"] and "not a directory" in run.result["msg"]
    # DEL with a data directory that does not exist (and cannot be made) is success
    run = call(OURS, node, "DEL", netconf(blocker / "sub", V4))
    assert run.returncode == 0, run.stdout


def test_check_verifies_prev_result_addresses(tmp_path, node):
    """Beyond the reference (which only looks for any lease of the owner): every prevResult
    address inside our ranges must be leased to this very attachment."""
    conf = netconf(tmp_path, V4)
    a = call(OURS, node, "ADD", conf, cid="a").result
    call(OURS, node, "ADD", conf, cid="b")
    check = dict(conf, cniVersion="1.0.0", prevResult=a)
    assert call(OURS, node, "CHECK", check, cid="a").returncode == 0
    # an address outside every range (e.g. another plugin's) is not ours to judge
    outside = dict(a, ips=a["ips"] + [{"address": "192.168.77.5/24"}])
    assert call(OURS, node, "CHECK", dict(check, prevResult=outside), cid="a").returncode == 0
    # the lease of a's address now belongs to b (an operator edited it): CHECK fails
    (tmp_path / NET / "10.250.3.2").write_bytes(b"b\r\neth0")
    run = call(OURS, node, "CHECK", check, cid="a")
    assert run.returncode == 1
    assert run.result["msg"] == (
        "host-local: Failed to find address added by container a"
    )
    call(OURS, node, "ADD", conf, cid="a", args="IP=10.250.3.9")
    run = call(OURS, node, "CHECK", check, cid="a")
    assert run.returncode == 1
    assert run.result["msg"] == (
        "host-local: address 10.250.3.2 of container a (eth0) is not leased to it (lease holder: b eth0)"
    )


def test_names_that_would_escape_the_data_dir(tmp_path, node):
    for name in ("../escape", "a/b", ".."):
        run = call(OURS, node, "ADD", dict(netconf(tmp_path, V4), name=name))
        assert run.returncode == 1 and run.result["code"] == 7, run.stdout
    assert list(tmp_path.iterdir()) == []


@reference
def test_36_del_with_two_range_sets_frees_legacy_leases_too(pair):
    ipam = {"ranges": [[{"subnet": "10.250.3.0/24"}], [{"subnet": "fd00:3::/64"}]]}
    pair.both(lambda d: write_leases(d, {"10.250.3.20": "r1", "10.250.3.21": "r1\r\neth0"}))
    pair.run("DEL", ipam, cid="r1")
    assert leases(pair.netdir("ours")) == {}

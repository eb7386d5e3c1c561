"""host-local unit tests: addresses, ranges, configuration, resolv.conf, store and owner index.

No root and no namespaces needed: the store works on a temp directory.
"""

from __future__ import annotations

import os

import pytest

from cni.errors import CNIError
from ipam import addr
from ipam.addr import Addr
from ipam.allocator import AllocationError, commit_plan, first_free, plan
from ipam.config import load
from ipam.dns import parse_resolv_conf
from ipam.index import INDEX_DIR, STATE, owner_of
from ipam.range import RangeError, RawRange, candidates, canonicalize, canonicalize_set
from ipam.store import Store


def A(text: str) -> Addr:
    a = addr.parse(text)
    assert a is not None, text
    return a


def raw(subnet: str, start: str | None = None, end: str | None = None, gw: str | None = None):
    return RawRange(
        subnet=addr.parse_cidr(subnet),
        range_start=A(start) if start else None,
        range_end=A(end) if end else None,
        gateway=A(gw) if gw else None,
    )


# ---------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    "text, bits, out",
    [
        ("10.1.2.3", 32, "10.1.2.3"),
        ("::ffff:10.1.2.3", 32, "10.1.2.3"),
        ("2001:db8:0:0:1:0:0:1", 128, "2001:db8::1:0:0:1"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", 128, "2001:db8::1"),
        ("fd00:0:0:1:0:0:0:0", 128, "fd00:0:0:1::"),
        ("fd00::1:0:0:0", 128, "fd00::1:0:0:0"),
        ("::", 128, "::"),
        ("::1.2.3.4", 128, "::102:304"),
        ("1:0:1:0:1:0:1:0", 128, "1:0:1:0:1:0:1:0"),
    ],
)
def test_parse_and_print_like_go(text, bits, out):
    a = A(text)
    assert a.bits == bits
    assert addr.text(a) == out


@pytest.mark.parametrize(
    "bad", ["", "010.1.1.1", "1.2.3", "1.2.3.4.5", "fe80::1%eth0", "abc", "1.2.3.4/24"]
)
def test_parse_rejects_what_go_rejects(bad):
    assert addr.parse(bad) is None


def test_parse_cidr_keeps_host_bits_and_mask_width():
    assert addr.parse_cidr("10.1.2.3/24") == (A("10.1.2.3"), 24, 32)
    assert addr.parse_cidr("::ffff:10.0.0.0/120") == (A("10.0.0.0"), 120, 128)
    assert addr.parse_cidr("10.0.0.0/33") is None
    assert addr.parse_cidr("10.0.0.0") is None
    assert addr.parse_cidr("x/24") is None


# ---------------------------------------------------------------------------- ranges


def test_range_defaults_ipv4_and_ipv6():
    r = canonicalize(raw("10.250.3.0/24"))
    assert str(r) == "10.250.3.1-10.250.3.254"
    assert addr.text(r.gateway) == "10.250.3.1"
    r6 = canonicalize(raw("2001:db8:1::/64"))
    assert str(r6) == "2001:db8:1::1-2001:db8:1:0:ffff:ffff:ffff:ffff"
    assert str(canonicalize(raw("10.0.0.0/25"))).endswith(".126")
    assert str(canonicalize(raw("10.0.0.0/30"))) == "10.0.0.1-10.0.0.2"


@pytest.mark.parametrize(
    "r, msg",
    [
        (raw("10.250.5.0/31"), "Network 10.250.5.0/31 too small to allocate from"),
        (raw("10.250.5.0/32"), "Network 10.250.5.0/32 too small to allocate from"),
        (raw("fd00::/127"), "Network fd00::/127 too small to allocate from"),
        (
            raw("10.250.5.1/24"),
            "Network has host bits set. For a subnet mask of length 24 the network address is "
            "10.250.5.0",
        ),
        (
            raw("192.0.2.0/24", "192.0.2.50", "192.0.2.40"),
            "RangeStart 192.0.2.50 not in network 192.0.2.0/24",
        ),
        (raw("10.250.5.0/24", "10.250.6.1"), "RangeStart 10.250.6.1 not in network 10.250.5.0/24"),
        (raw("192.0.2.0/24", None, "192.0.4.0"), "RangeEnd 192.0.4.0 not in network 192.0.2.0/24"),
        (RawRange(subnet=None), "IP <nil> not v4 nor v6"),
        (raw("::ffff:10.0.0.0/120"), "IPNet IP and Mask version mismatch"),
    ],
)
def test_range_errors_use_reference_text(r, msg):
    with pytest.raises(RangeError) as e:
        canonicalize(r)
    assert str(e.value) == msg


def test_explicit_gateway_outside_subnet_is_accepted_like_the_reference():
    r = canonicalize(raw("10.250.3.0/24", gw="10.9.9.9"))
    assert addr.text(r.gateway) == "10.9.9.9"
    assert r.contains(A("10.250.3.1"))


def test_range_set_errors():
    with pytest.raises(RangeError, match="^empty range set$"):
        canonicalize_set([])
    with pytest.raises(RangeError, match="^mixed address families$"):
        canonicalize_set([raw("10.0.0.0/24"), raw("fd00::/64")])
    with pytest.raises(RangeError) as e:
        canonicalize_set([raw("10.1.0.0/22"), raw("10.1.2.0/24")])
    assert str(e.value) == "subnets 10.1.0.1-10.1.3.254 and 10.1.2.1-10.1.2.254 overlap"


def order(rs_raws, last=None, limit=100):
    rs = canonicalize_set(rs_raws)
    return [addr.text(a) for _, a in list(candidates(rs, A(last) if last else None))[:limit]]


def test_iterator_order_examples_from_the_reference():
    # allocator_test.go: 10.0.0.0/29 fresh -> .2; last .5 -> .6 then wrap to .2 ...
    assert order([raw("10.0.0.0/29")]) == [f"10.0.0.{i}" for i in (2, 3, 4, 5, 6)]
    assert order([raw("10.0.0.0/29")], "10.0.0.5") == [f"10.0.0.{i}" for i in (6, 2, 3, 4, 5)]
    # last reserved outside the set: start from the beginning
    assert order([raw("10.0.0.0/29")], "10.0.0.128")[0] == "10.0.0.2"
    # two /30 ranges in one set: after the end of the first comes the second (gateway skipped)
    assert order([raw("10.0.0.0/30"), raw("10.0.1.0/30")], "10.0.0.2") == ["10.0.1.2", "10.0.0.2"]


def test_iterator_explicit_network_and_broadcast_are_allocatable():
    # docs/reference-behaviour.md §1.3: 10.250.7.0/30 start .0 end .3 gateway .2 hands out .0, .1,
    # .3
    assert order([raw("10.250.7.0/30", "10.250.7.0", "10.250.7.3", "10.250.7.2")]) == [
        "10.250.7.0",
        "10.250.7.1",
        "10.250.7.3",
    ]


def test_iterator_is_lazy_on_huge_ipv6_ranges():
    it = candidates(canonicalize_set([raw("fd00::/64")]), None)
    assert [addr.text(next(it)[1]) for _ in range(2)] == ["fd00::2", "fd00::3"]


def test_first_free_switches_to_one_listing_and_is_bounded():
    rs = canonicalize_set([raw("10.0.0.0/16")])
    taken = {f"10.0.{v >> 8}.{v & 255}" for v in range(2, 5002)}
    calls = {"free": 0, "names": 0}

    def is_free(name):
        calls["free"] += 1
        return name not in taken

    def names():
        calls["names"] += 1
        return set(taken)

    r, a = first_free(rs, None, is_free, names)
    assert addr.text(a) == "10.0.19.138"  # 5002 = 19*256 + 138
    assert calls["names"] == 1 and calls["free"] <= 70
    # exhausted: a /30 with its only address taken
    rs30 = canonicalize_set([raw("10.0.0.0/30")])
    assert first_free(rs30, None, lambda n: n != "10.0.0.2", lambda: {"10.0.0.2"}) is None


# ---------------------------------------------------------------------------- configuration


def conf(ipam: dict, **top) -> dict:
    c = {"cniVersion": "1.0.0", "name": "net1", "ipam": {"type": "host-local", **ipam}}
    c.update(top)
    return c


def load_err(c: dict, cni_args: str = "") -> CNIError:
    with pytest.raises(CNIError) as e:
        load(c, cni_args)
    return e.value


def test_range_set_order_runtime_legacy_static():
    s = load(
        conf(
            {"subnet": "10.1.0.0/24", "ranges": [[{"subnet": "10.3.0.0/24"}]]},
            runtimeConfig={"ipRanges": [[{"subnet": "10.2.0.0/24"}]]},
        ),
        "",
    )
    assert [str(rs) for rs in s.range_sets] == [
        "10.2.0.1-10.2.0.254",
        "10.1.0.1-10.1.0.254",
        "10.3.0.1-10.3.0.254",
    ]
    assert s.data_dir == "/var/lib/cni/networks" and s.name == "net1"


def test_legacy_keys_without_subnet_are_ignored():
    s = load(conf({"rangeStart": "10.9.9.9", "ranges": [[{"subnet": "10.3.0.0/24"}]]}), "")
    assert len(s.range_sets) == 1


def test_requested_ip_order_and_prefix_ignored():
    s = load(
        conf(
            {"subnet": "10.1.0.0/16"},
            args={"cni": {"ips": ["10.1.0.90/24"]}},
            runtimeConfig={"ips": ["10.1.0.91", "10.1.0.90"]},
        ),
        "IP=10.1.0.77",
    )
    assert [addr.text(a) for a in s.requested] == ["10.1.0.77", "10.1.0.90", "10.1.0.91"]


@pytest.mark.parametrize(
    "c, args, code, msg",
    [
        ({"cniVersion": "1.0.0", "name": "n"}, "", 7, "IPAM config missing 'ipam' key"),
        (conf({}), "", 7, "no IP ranges specified"),
        (conf({"ranges": [[]]}), "", 7, "invalid range set 0: empty range set"),
        (conf({"ranges": [[{}]]}), "", 7, "invalid range set 0: IP <nil> not v4 nor v6"),
        (conf({"subnet": "10.0.0.0/33"}), "", 6, "invalid CIDR address: 10.0.0.0/33"),
        (conf({"subnet": "10.0.0.0/24", "gateway": "abc"}), "", 6, "invalid IP address: abc"),
        (
            conf({"subnet": "10.0.0.0/24"}, args={"cni": {"ips": ["abc"]}}),
            "",
            6,
            "invalid IP address abc",
        ),
        (
            conf({"subnet": "10.0.0.0/24"}, runtimeConfig={"ips": [""]}),
            "",
            7,
            "cannot understand ip: IP <nil> not v4 nor v6",
        ),
        (
            conf({"subnet": "10.0.0.0/24", "routes": [{"dst": "x"}]}),
            "",
            6,
            "invalid CIDR address: x",
        ),
        (
            conf({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}),
            "",
            7,
            "range set 0 overlaps with 1",
        ),
        (
            conf(
                {"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24"}]]},
                cniVersion="0.2.0",
            ),
            "",
            7,
            "CNI version 0.2.0 does not support more than 1 address per family",
        ),
        (conf({"subnet": "10.0.0.0/24"}), "FOO=bar", 4, 'ARGS: unknown args ["FOO=bar"]'),
        (conf({"subnet": "10.0.0.0/24"}), "IP", 4, 'ARGS: invalid pair "IP"'),
        (
            conf({"subnet": "10.0.0.0/24"}),
            "IP=abc",
            4,
            'ARGS: error parsing value of pair "IP=abc": invalid IP address abc',
        ),
        (conf({"subnet": 5}), "", 6, None),
        (conf({"subnet": "10.0.0.0/24", "dataDir": "/x\x00y"}), "", 7, None),
    ],
)
def test_config_errors(c, args, code, msg):
    e = load_err(c, args)
    assert e.code == code
    if msg is not None:
        assert e.msg == msg
    assert "\n" not in e.msg


def test_config_accepts_one_v4_and_one_v6_with_020_and_ignores_empty_cni_args_ip():
    s = load(
        conf(
            {"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/64"}]]}, cniVersion="0.2.0"
        ),
        "IgnoreUnknown=1;K8S_POD_NAME=x;IP=",
    )
    assert [rs.bits for rs in s.range_sets] == [32, 128] and s.requested == []


def test_config_keys_are_case_insensitive():
    s = load(
        {
            "cniVersion": "1.0.0",
            "name": "n",
            "IPAM": {"TYPE": "host-local", "SUBNET": "10.5.0.0/24"},
        },
        "",
    )
    assert str(s.range_sets[0]) == "10.5.0.1-10.5.0.254"


# ---------------------------------------------------------------------------- resolv.conf


def test_resolv_conf_parsing(tmp_path):
    p = tmp_path / "resolv.conf"
    p.write_text(
        "# comment\n; other comment\n\nnameserver 10.0.0.1 extra\nnameserver\n"
        "nameserver fd00::53\ndomain a.example\ndomain b.example\n"
        "search x.example y.example\nsearch z.example\noptions ndots:5 edns0\nsortlist 1.2.3.4\n"
    )
    assert parse_resolv_conf(str(p)) == {
        "nameservers": ["10.0.0.1", "fd00::53"],
        "domain": "b.example",
        "search": ["x.example", "y.example", "z.example"],
        "options": ["ndots:5", "edns0"],
    }
    with pytest.raises(CNIError) as e:
        parse_resolv_conf(str(tmp_path / "missing"))
    assert e.value.msg == f"open {tmp_path}/missing: no such file or directory"


# ---------------------------------------------------------------------------- store and index


def test_owner_of_lease_contents():
    assert owner_of(b"ctr1\r\neth0") == ("ctr1", "eth0")
    assert owner_of(b"  ctr1\r\neth0\n") == ("ctr1", "eth0")
    assert owner_of(b"ctr1") == ("ctr1", None)
    assert owner_of(b"") is None and owner_of(b" \n") is None
    assert owner_of(b"a b\r\neth0") is None
    assert owner_of(b"a\r\nb\r\nc") is None


def lease_files(netdir) -> dict[str, bytes]:
    out = {}
    for name in os.listdir(netdir):
        if name[0].isdigit() or ":" in name:
            with open(os.path.join(netdir, name), "rb") as f:
                out[name] = f.read()
    return out


def settings(tmp_path, ipam=None, **top):
    base = {"ranges": [[{"subnet": "10.0.0.0/29"}]], "dataDir": str(tmp_path)}
    base.update(ipam or {})
    return load(conf(base, **top), "")


def add(s, cid, ifname="eth0", requested=None):
    with Store.open(s.data_dir, s.name) as st:
        choices = plan(
            st, s.range_sets, requested if requested is not None else s.requested, cid, ifname
        )
        commit_plan(st, choices, cid, ifname)
    return [c.name for c in choices]


def test_store_reserve_release_and_files(tmp_path):
    s = settings(tmp_path)
    assert add(s, "c1") == ["10.0.0.2"]
    netdir = tmp_path / "net1"
    assert lease_files(netdir) == {"10.0.0.2": b"c1\r\neth0"}
    assert (netdir / "last_reserved_ip.0").read_bytes() == b"10.0.0.2"
    assert (netdir / "lock").stat().st_size == 0
    assert oct((netdir / "10.0.0.2").stat().st_mode & 0o777) == "0o600"
    with Store.open(s.data_dir, s.name) as st:
        assert st.has_owner("c1", "eth0") and not st.has_owner("c1", "eth1")
        assert st.release_owner("c1", "eth0") == ["10.0.0.2"]
        assert st.release_owner("c1", "eth0") == []
    assert lease_files(netdir) == {}
    assert add(s, "c2") == ["10.0.0.3"]  # round robin survives the release


def test_failed_add_writes_nothing(tmp_path):
    s = settings(tmp_path, {"ranges": [[{"subnet": "10.0.0.0/30"}], [{"subnet": "10.1.0.0/30"}]]})
    add(s, "c1")
    netdir = tmp_path / "net1"
    before = {n: (netdir / n).read_bytes() for n in os.listdir(netdir) if n != ".pycni-index"}
    with pytest.raises(AllocationError) as e:
        add(s, "c2")
    assert (
        str(e.value)
        == "failed to allocate for range 0: no IP addresses available in range set: "
           "10.0.0.1-10.0.0.2"
    )
    with pytest.raises(AllocationError) as e:
        add(s, "c3", requested=[A("10.9.9.9")])
    assert str(e.value).startswith("failed to allocate for range 0: no IP addresses")
    after = {n: (netdir / n).read_bytes() for n in os.listdir(netdir) if n != ".pycni-index"}
    assert after == before


def test_requested_ip_errors(tmp_path):
    s = settings(tmp_path)
    assert add(s, "c1", requested=[A("10.0.0.5")]) == ["10.0.0.5"]
    with pytest.raises(AllocationError) as e:
        add(s, "c2", requested=[A("10.0.0.5")])
    assert str(e.value) == (
        "failed to allocate for range 0: requested IP address 10.0.0.5 is not available in "
        "range set 10.0.0.1-10.0.0.6"
    )
    with pytest.raises(AllocationError) as e:
        add(s, "c2", requested=[A("10.0.0.1")])
    assert (
        str(e.value) == "failed to allocate for range 0: requested ip 10.0.0.1 is subnet's gateway"
    )
    with pytest.raises(AllocationError) as e:
        add(s, "c2", requested=[A("10.0.0.3"), A("10.0.0.4")])
    assert str(e.value) == "failed to allocate all requested IPs: 10.0.0.4"
    # no duplicate check on the requested path: one owner, two leases
    assert add(s, "c1", requested=[A("10.0.0.6")]) == ["10.0.0.6"]
    with pytest.raises(AllocationError, match="10.0.0.5 has been allocated to c1, duplicate"):
        add(s, "c1")


def test_index_follows_changes_made_behind_its_back(tmp_path):
    s = settings(tmp_path)
    add(s, "c1")
    netdir = tmp_path / "net1"
    # a foreign writer (the reference, an operator) adds a lease and removes ours
    (netdir / "10.0.0.4").write_bytes(b"other\r\neth0")
    (netdir / "10.0.0.2").unlink()
    with Store.open(s.data_dir, s.name) as st:
        assert st.has_owner("other", "eth0")
        assert not st.has_owner("c1", "eth0")
    # an in-place rewrite keeps the directory mtime: caught by checking the indexed file
    (netdir / "10.0.0.4").write_bytes(b"third\r\neth0")
    with Store.open(s.data_dir, s.name) as st:
        assert not st.has_owner("other", "eth0")
    with Store.open(s.data_dir, s.name) as st:
        assert st.has_owner("third", "eth0")


def test_index_state_is_sealed_and_any_change_invalidates_it(tmp_path):
    s = settings(tmp_path)
    add(s, "c1")
    netdir = tmp_path / "net1"
    with Store.open(s.data_dir, s.name) as st:
        assert st.index.is_current()
    (netdir / "stray").write_bytes(b"")
    with Store.open(s.data_dir, s.name) as st:
        assert not st.index.is_current()
        assert st.has_owner("c1", "eth0")  # rebuilds
    with Store.open(s.data_dir, s.name) as st:
        assert st.index.is_current()
    (netdir / INDEX_DIR / STATE).unlink()
    with Store.open(s.data_dir, s.name) as st:
        assert not st.index.is_current()


def test_legacy_lease_release_and_lookup(tmp_path):
    s = settings(tmp_path)
    netdir = tmp_path / "net1"
    netdir.mkdir()
    (netdir / "10.0.0.3").write_bytes(b"old")
    (netdir / "10.0.0.4").write_bytes(b"old\r\neth1")
    with Store.open(s.data_dir, s.name) as st:
        assert st.has_owner("old", "eth0")  # legacy content matches any ifname
        assert st.owned("old", "eth0") == [A("10.0.0.3")]
        # new-format match first; legacy only when there is none
        assert st.release_owner("old", "eth1") == ["10.0.0.4"]
        assert st.release_owner("old", "eth1") == ["10.0.0.3"]


def test_lease_temp_files_are_written_before_the_lock(tmp_path) -> None:
    """Store.open(lease=...) writes and syncs the lease temp files while another ADD still
    holds the network's lock, so ADDs do not queue behind each other's fdatasync; a reserve
    then only links one, and nothing of them is left once the store is closed."""
    import threading
    import time

    data = str(tmp_path)
    index = tmp_path / "net" / INDEX_DIR
    opened: list[Store] = []
    with Store.open(data, "net"):  # holds the lock, as a concurrent ADD would
        waiter = threading.Thread(
            target=lambda: opened.append(Store.open(data, "net", lease=("c2", "eth0", 2)))
        )
        waiter.start()
        deadline = time.monotonic() + 5
        while len(list(index.glob(".lease.tmp-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        temps = sorted(p.name for p in index.glob(".lease.tmp-*"))
        assert len(temps) == 2 and all(t.startswith(f".lease.tmp-{os.getpid()}-") for t in temps), (
            temps
        )
        assert waiter.is_alive() and not opened  # still waiting for the lock
    waiter.join(5)
    with opened[0] as second:
        assert second.reserve("10.1.0.5", "c2", "eth0")
        assert (tmp_path / "net" / "10.1.0.5").read_bytes() == b"c2\r\neth0"
        assert len(list(index.glob(".lease.tmp-*"))) == 1  # the spare, dropped at close
    assert list(index.glob(".lease.tmp-*")) == []

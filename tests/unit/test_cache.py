"""The result cache (docs/spec-rules.md §8.6; C99-C106) and its byte compatibility with Go libcni.

The files in tests/data/libcni_cache/golden/ were written by the reference Go libcni
(Debian's golang-github-appc-cni-dev 1.1.2, Go 1.19) through the small driver in
tests/data/libcni_cache/gocnitool/main.go, for the configs in net.d/ and the fake plugins of
tests/fakes_testlib.py, with:

    gocnitool add <net.d> rich ctr-1 "" eth0    CAP_ARGS=<CAP_ARGS below> RT_ARGS=<RICH_ARGS>
    gocnitool add <net.d> single c2 "" net1
    gocnitool add <net.d> old c3 "" eth9        CAP_ARGS=null RT_ARGS='A=é'

(netns is empty because libcni 1.1.2 predates the `netns` field of cni 3f51e880; its place is
checked separately.) The same operations through cni.libcni.runtime must produce the same bytes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from cni.errors import CNIError
from cni.gocompat import json as gojson
from cni.libcni import cache as cache_mod
from cni.libcni import conflist
from cni.libcni.cache import CachedInfo, CacheError, ResultCache
from cni.libcni.runtime import CNIConfig, RuntimeConf
from tests.fakes_testlib import fake_environ, make_fake, read_log

DATA = Path(__file__).parent / "data" / "libcni_cache"
CAP_ARGS = (
    '{"portMappings":[{"hostPort":8080,"containerPort":80.0,"protocol":"tcp","hostIP":"1.2.3.4"}],'
    '"zz":{"b":2,"a":[1.5,1e-7,1e22]},"html":"<a&b>"}'
)
GOLDEN_CASES = [
    (
        "rich",
        RuntimeConf(
            "ctr-1",
            "",
            "eth0",
            [("K8S_POD_NAME", "x"), ("IgnoreUnknown", "1")],
            json.loads(CAP_ARGS),
        ),
    ),
    ("single", RuntimeConf("c2", "", "net1")),
    ("old", RuntimeConf("c3", "", "eth9", [("A", "é")], None)),
]


@pytest.fixture
def fakes(tmp_path):
    bindir = tmp_path / "bin"
    make_fake(bindir, "a")
    make_fake(bindir, "b")
    shutil.copy(DATA / "rich-result.json", bindir / "b.ADD")
    log = tmp_path / "log"
    cni = CNIConfig([str(bindir)], cache_dir=str(tmp_path / "cache"), environ=fake_environ(log))
    return cni, log, tmp_path / "cache"


# ------------------------------------------------------------------ byte compatibility


@pytest.mark.parametrize("net,rt", GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES])
def test_cache_file_is_byte_identical_to_go_libcni(fakes, net, rt):
    cni, _, cache_dir = fakes
    conf = conflist.load(str(DATA / "net.d"), net)
    cni.add_network_list(conf, rt)
    name = f"{net}-{rt.container_id}-{rt.ifname}"
    ours = (cache_dir / "results" / name).read_bytes()
    assert ours == (DATA / "golden" / name).read_bytes()


@pytest.mark.parametrize("net,rt", GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES])
def test_go_written_cache_is_used_for_check_and_del(fakes, net, rt):
    cni, log, cache_dir = fakes
    name = f"{net}-{rt.container_id}-{rt.ifname}"
    (cache_dir / "results").mkdir(parents=True)
    shutil.copy(DATA / "golden" / name, cache_dir / "results" / name)
    conf = conflist.load(str(DATA / "net.d"), net)
    golden = json.loads((DATA / "golden" / name).read_bytes())
    cni.check_network_list(conf, rt)
    cni.del_network_list(conf, rt)
    calls = [c for c in read_log(log) if c["command"] in ("CHECK", "DEL")]
    assert len(calls) == 2 * len(conf.plugins)
    for call in calls:
        assert call["conf"]["prevResult"] == golden["result"]
    assert [c["command"] for c in calls if c["command"] == "DEL"]
    del_args = [c["env"]["CNI_ARGS"] for c in calls]
    assert set(del_args) == {";".join(f"{k}={v}" for k, v in rt.args)}
    assert not (cache_dir / "results" / name).exists()
    assert base64.b64decode(golden["config"]) == conf.bytes


def test_netns_field_sits_after_network_name():
    info = CachedInfo(
        kind="cniCacheV1", container_id="c", config=b"{}", ifname="eth0", network_name="n",
        netns="/run/netns/p", cni_args=[("A", "B")],
    )
    assert cache_mod.encode(info) == (
        b'{"kind":"cniCacheV1","containerId":"c","config":"e30=","ifName":"eth0",'
        b'"networkName":"n","netns":"/run/netns/p","cniArgs":[["A","B"]]}'
    )
    back = cache_mod.decode(cache_mod.encode(info))
    assert back == info


# ------------------------------------------------------------------ C99-C101


def test_add_creates_v1_file_with_modes(fakes):
    cni, _, cache_dir = fakes
    conf = conflist.load(str(DATA / "net.d"), "old")
    cni.add_network_list(
        conf, RuntimeConf("cid", "/run/netns/p1", "eth0", [("K", "V")], {"portMappings": []})
    )
    f = cache_dir / "results" / "old-cid-eth0"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE((cache_dir / "results").stat().st_mode) == 0o700
    obj = json.loads(f.read_bytes())
    assert list(obj) == [
        "kind",
        "containerId",
        "config",
        "ifName",
        "networkName",
        "netns",
        "cniArgs",
        "capabilityArgs",
        "result",
    ]
    assert obj["kind"] == "cniCacheV1"
    assert base64.b64decode(obj["config"]) == conf.bytes
    assert obj["netns"] == "/run/netns/p1" and obj["cniArgs"] == [["K", "V"]]
    assert obj["capabilityArgs"] == {"portMappings": []}
    assert obj["result"]["cniVersion"] == "0.4.0"
    assert [p.name for p in cache_dir.iterdir()] == ["results"]  # no temporary file left


def test_two_ifnames_two_files(fakes):
    cni, _, cache_dir = fakes
    conf = conflist.load(str(DATA / "net.d"), "old")
    r0 = cni.add_network_list(conf, RuntimeConf("cid", "/n", "eth0")).to_dict()
    r1 = cni.add_network_list(conf, RuntimeConf("cid", "/n", "eth1")).to_dict()
    assert r0 != r1
    for ifname, res in (("eth0", r0), ("eth1", r1)):
        assert (
            json.loads((cache_dir / "results" / f"old-cid-{ifname}").read_bytes())["result"] == res
        )


def test_del_removes_only_after_success(fakes, tmp_path):
    cni, _, cache_dir = fakes
    conf = conflist.load(str(DATA / "net.d"), "old")
    rt = RuntimeConf("cid", "/n", "eth0")
    cni.add_network_list(conf, rt)
    (tmp_path / "bin" / "a.DEL").write_text(
        json.dumps({"stdout": '{"code":11,"msg":"later"}', "exit": 1})
    )
    with pytest.raises(CNIError):
        cni.del_network_list(conf, rt)
    assert (cache_dir / "results" / "old-cid-eth0").exists()
    (tmp_path / "bin" / "a.DEL").unlink()
    cni.del_network_list(conf, rt)
    assert not (cache_dir / "results" / "old-cid-eth0").exists()
    cni.del_network_list(conf, rt)


# ------------------------------------------------------------------ C102-C104


def test_corrupt_cache_check_errors_del_tolerates(fakes):
    cni, log, cache_dir = fakes
    conf = conflist.load(str(DATA / "net.d"), "old")
    rt = RuntimeConf("cid", "/n", "eth0")
    f = cache_dir / "results" / "old-cid-eth0"
    f.parent.mkdir(parents=True)
    f.write_bytes(b'{"kind":"cniCacheV1","containerId":"cid","ifName":"eth0","networkName":"old","result":{"cniVersion":"0.4.0","ips":[{"address":"nope"}]}}')
    with pytest.raises(CNIError, match='^failed to get network "old" cached result: '):
        cni.check_network_list(conf, rt)
    cni.del_network_list(conf, rt)
    assert [("prevResult" in c["conf"]) for c in read_log(log) if c["command"] == "DEL"] == [False]
    assert not f.exists()


def test_unparsable_file_is_tried_as_legacy_result(fakes):
    cni, log, cache_dir = fakes
    conf = conflist.load(str(DATA / "net.d"), "old")
    rt = RuntimeConf("cid", "/n", "eth0")
    f = cache_dir / "results" / "old-cid-eth0"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"garbage")
    with pytest.raises(CNIError, match="cached result"):
        cni.check_network_list(conf, rt)
    legacy = {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.9.9.9/24"}], "dns": {}}
    f.write_bytes(json.dumps(legacy).encode())
    cni.check_network_list(conf, rt)
    assert read_log(log)[-1]["conf"]["prevResult"]["ips"][0]["address"] == "10.9.9.9/24"


def test_cached_result_is_converted_to_the_list_version(fakes):
    cni, log, cache_dir = fakes
    conf = conflist.load(str(DATA / "net.d"), "old")  # 0.4.0
    rt = RuntimeConf("cid", "/n", "eth0")
    cached = {"cniVersion": "1.0.0", "interfaces": [{"name": "x"}],
              "ips": [{"address": "10.1.1.1/24", "interface": 0}]}
    ResultCache(str(cache_dir)).write("old", "cid", "eth0", config=b"{}", result=cached)
    cni.check_network_list(conf, rt)
    prev = read_log(log)[-1]["conf"]["prevResult"]
    assert prev["cniVersion"] == "0.4.0" and prev["ips"][0]["version"] == "4"
    # a 0.2.0 list cannot take a result without IPs
    old020 = conflist.list_from_bytes(
        b'{"name":"old","cniVersion":"0.2.0","plugins":[{"type":"a"}]}'
    )
    ResultCache(str(cache_dir)).write(
        "old", "cid", "eth0", config=b"{}", result={"cniVersion": "1.0.0"}
    )
    cache = ResultCache(str(cache_dir))
    with pytest.raises(
        CacheError, match='failed to convert cached result to config version "0.2.0"'
    ):
        cache.get_result("old", old020.cni_version, "cid", "eth0")


# ------------------------------------------------------------------ C105-C106


def test_path_requires_all_parts_and_missing_file_is_none(tmp_path):
    cache = ResultCache(str(tmp_path))
    with pytest.raises(CacheError) as info:
        cache.path("net", "", "eth0")
    assert str(info.value) == (
        'cache file path requires network name ("net"), container ID (""), and interface name '
        '("eth0")'
    )
    assert cache.get_config("net", "cid", "eth0") is None
    with pytest.raises(CacheError, match="cache file path requires"):
        cache.get_config("", "cid", "eth0")
    assert cache.get_result("net", "1.0.0", "cid", "eth0") is None
    cache.delete("net", "", "eth0")  # ignored


def test_cached_config_errors(tmp_path):
    cache = ResultCache(str(tmp_path))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "n-c-e").write_bytes(b"{bad")
    with pytest.raises(CacheError, match='^failed to unmarshal cached network "n" config: '):
        cache.get_config("n", "c", "e")
    (tmp_path / "results" / "n-c-e").write_bytes(b'{"kind":"other"}')
    with pytest.raises(CacheError, match='^read cached network "n" config has wrong kind: other$'):
        cache.get_config("n", "c", "e")


def test_attachments_filtering(tmp_path):
    cache = ResultCache(str(tmp_path))
    cache.write(
        "net",
        "abc",
        "eth0",
        config=b"1",
        result={"cniVersion": "1.0.0"},
        netns="/n",
        cni_args=[("A", "1")],
    )
    cache.write("net", "abc-def", "eth0", config=b"2", result=None)
    cache.write("other", "xabc", "eth1", config=b"3", result=None)
    results = tmp_path / "results"
    (results / "net-abc-bad").write_bytes(
        b'{"kind":"cniCacheV2","containerId":"abc","ifName":"x","networkName":"net"}'
    )
    (results / "net-abc-noif").write_bytes(
        b'{"kind":"cniCacheV1","containerId":"abc","networkName":"net"}'
    )
    (results / "net-abc-badjson").write_bytes(b"{")
    (results / "mismatch-abc-eth0").write_bytes(
        b'{"kind":"cniCacheV1","containerId":"zzz","ifName":"eth0","networkName":"m"}'
    )
    allatt = cache.attachments()
    assert [(a.network, a.container_id, a.ifname) for a in allatt] == [
        ("m", "zzz", "eth0"),
        ("net", "abc-def", "eth0"),
        ("net", "abc", "eth0"),
        ("other", "xabc", "eth1"),
    ]
    only = cache.attachments("abc")
    assert [(a.network, a.container_id, a.ifname, a.config, a.netns, a.cni_args) for a in only] == [
        ("net", "abc", "eth0", b"1", "/n", [("A", "1")])
    ]
    assert ResultCache(str(tmp_path / "missing")).attachments() == []


# ------------------------------------------------------------------ Go JSON details


@pytest.mark.parametrize(
    "value,text",
    [
        (1.0, "1"),
        (1.5, "1.5"),
        (100.0, "100"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-10, "1.5e-10"),
        (-0.0, "-0"),
        (123456789.125, "123456789.125"),
        (2**53 + 1, "9007199254740992"),
        (12345678901234567890, "12345678901234567000"),
        (7, "7"),
    ],
)
def test_go_numbers(value, text):
    assert gojson.marshal(value) == text.encode()


def test_go_strings_and_order():
    assert gojson.marshal({"b": "<&>\u2028é\x01\t", "a": [True, None], "B": 1}) == (
        '{"B":1,"a":[true,null],"b":"\\u003c\\u0026\\u003e\\u2028é\\u0001\\t"}'.encode()
    )


def test_tempfile_not_in_results_dir(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.dirname(src))
        return real_replace(src, dst)

    monkeypatch.setattr(cache_mod.os, "replace", spy)
    ResultCache(str(tmp_path)).write("n", "c", "e", config=b"", result=None)
    assert seen == [str(tmp_path)]


@pytest.mark.parametrize("layout", ["dir-is-file", "parent-is-file", "results-is-file"])
def test_check_writable_names_the_component_that_is_not_a_directory(tmp_path, layout):
    """A cache that could never be written is found before anything runs, naming the culprit;
    a cache directory that does not exist yet is fine and is not created."""
    blocker = {"dir-is-file": tmp_path / "c", "parent-is-file": tmp_path / "p",
               "results-is-file": tmp_path / "c" / "results"}[layout]  # fmt: skip
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("x\n")
    cache_dir = tmp_path / "p" / "c" if layout == "parent-is-file" else tmp_path / "c"
    with pytest.raises(CacheError) as err:
        ResultCache(str(cache_dir)).check_writable()
    assert err.value.code == 5 and err.value.msg == f"not a directory: {blocker}"
    fresh = tmp_path / "new" / "cache"
    ResultCache(str(fresh)).check_writable()
    assert not (tmp_path / "new").exists()

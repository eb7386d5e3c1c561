"""The runtime: request derivation and list execution (docs/spec-rules.md §3, §5.4, §5.5,
§8.3-8.5; C83-C98 and C107-C111), against small fake plugins."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cni.errors import CNIError
from cni.libcni import conflist
from cni.libcni.request import RuntimeConf, build_request
from cni.libcni.runtime import CNIConfig, MultiError
from tests.fakes_testlib import fail_with, fake_environ, make_fake, read_log, set_behaviour


class Env:
    """Fake plugins a, b, c in a bin dir, a call log, a private cache, and a CNIConfig."""

    def __init__(self, tmp: Path) -> None:
        self.bin = tmp / "bin"
        self.log = tmp / "calls.log"
        self.cache_dir = tmp / "cache"
        self.plugins = {n: make_fake(self.bin, n) for n in ("a", "b", "c")}
        self.cni = CNIConfig(
            [str(self.bin)], cache_dir=str(self.cache_dir), environ=fake_environ(self.log)
        )

    def calls(self, command: str | None = None) -> list[dict]:
        return [c for c in read_log(self.log) if command is None or c["command"] == command]

    def reset(self) -> None:
        if self.log.exists():
            self.log.unlink()

    def cache_file(self, net: str = "net1", cid: str = "ctr1", ifname: str = "eth0") -> Path:
        return self.cache_dir / "results" / f"{net}-{cid}-{ifname}"


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def netlist(version: str = "1.1.0", plugins=None, **kw) -> conflist.NetworkConfigList:
    obj = {
        "name": "net1",
        "cniVersion": version,
        "plugins": plugins or [{"type": "a"}, {"type": "b"}],
    }
    obj.update(kw)
    return conflist.list_from_bytes(json.dumps(obj).encode())


RT = RuntimeConf(
    container_id="ctr1",
    netns="/run/netns/x",
    ifname="eth0",
    args=[("K", "V"), ("IgnoreUnknown", "1")],
)


# ------------------------------------------------------------------ request derivation (83-85)


def test_name_and_version_override_plugin_values(env):
    net = netlist(
        plugins=[{"type": "a", "name": "own", "cniVersion": "0.1.0", "custom": {"x": [1, 2]}}]
    )
    env.cni.add_network_list(net, RT)
    conf = env.calls("ADD")[0]["conf"]
    assert conf["name"] == "net1" and conf["cniVersion"] == "1.1.0"
    assert conf["custom"] == {"x": [1, 2]}  # C84: unknown keys unchanged


def test_runtime_config_is_the_capability_intersection(env):
    caps = {"portMappings": True, "somethingElse": True, "noCapability": False}
    net = netlist(plugins=[{"type": "a", "capabilities": caps}, {"type": "b"}])
    rt = RuntimeConf(
        container_id="ctr1",
        netns="/x",
        ifname="eth0",
        capability_args={
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "somethingElse": {"a": 1},
            "noCapability": "nope",
            "notAdded": True,
        },
    )
    env.cni.add_network_list(net, rt)
    first, second = env.calls("ADD")
    assert first["conf"]["runtimeConfig"] == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
        "somethingElse": {"a": 1},
    }
    assert "runtimeConfig" not in second["conf"]  # nothing matched: no key at all
    assert "capabilities" not in first["conf"]  # spec: capabilities must not be set


def test_file_runtime_config_kept_unless_a_capability_matches():
    net = netlist(
        plugins=[{"type": "a", "capabilities": {"mac": True}, "runtimeConfig": {"static": 1}}]
    )
    plugin = net.plugins[0]
    no_match = json.loads(
        build_request(plugin, "net1", "1.1.0", rt=RuntimeConf(capability_args={"x": 1}))
    )
    assert no_match["runtimeConfig"] == {"static": 1}
    match = json.loads(
        build_request(plugin, "net1", "1.1.0", rt=RuntimeConf(capability_args={"mac": "m"}))
    )
    assert match["runtimeConfig"] == {"mac": "m"}


def test_reserved_keys_not_forwarded():
    net = netlist(
        plugins=[
            {"type": "a", "prevResult": {"x": 1}, "cni.dev/valid-attachments": [], "cni.dev/foo": 1}
        ]
    )
    req = json.loads(build_request(net.plugins[0], "net1", "1.1.0"))
    assert req == {"type": "a", "name": "net1", "cniVersion": "1.1.0"}


def test_request_is_go_marshalled(env):
    net = netlist(plugins=[{"type": "a", "mtu": 1500.0, "zeta": "<&>", "alpha": 1}])
    assert build_request(net.plugins[0], "net1", "1.1.0") == (
        b'{"alpha":1,"cniVersion":"1.1.0","mtu":1500,"name":"net1","type":"a","zeta":"\\u003c\\u0026\\u003e"}'
    )


# ------------------------------------------------------------------ ADD chain (86, 89, 90, 94, 95)


def test_add_chains_prev_results_and_caches(env):
    net = netlist(plugins=[{"type": "a"}, {"type": "b"}, {"type": "c"}])
    result = env.cni.add_network_list(net, RT)
    adds = env.calls("ADD")
    assert [c["plugin"] for c in adds] == ["a", "b", "c"]
    assert "prevResult" not in adds[0]["conf"]
    assert adds[1]["conf"]["prevResult"]["interfaces"] == [{"name": "a-eth0"}]
    assert adds[2]["conf"]["prevResult"]["interfaces"] == [{"name": "a-eth0"}, {"name": "b-eth0"}]
    assert [i["name"] for i in result.to_dict()["interfaces"]] == ["a-eth0", "b-eth0", "c-eth0"]
    assert env.cache_file().exists()


def test_plugin_env_has_all_six_vars_plus_runtime_env(env):
    env.cni.add_network_list(netlist(), RT)
    e = env.calls("ADD")[0]["env"]
    assert e["CNI_COMMAND"] == "ADD"
    assert e["CNI_CONTAINERID"] == "ctr1"
    assert e["CNI_NETNS"] == "/run/netns/x"
    assert e["CNI_IFNAME"] == "eth0"
    assert e["CNI_ARGS"] == "K=V;IgnoreUnknown=1"
    assert e["CNI_PATH"] == str(env.bin)
    assert e["FAKE_LOG"] == str(env.log)  # inherited from the runtime's environment


def test_plugin_env_overrides_inherited_cni_vars(tmp_path):
    e = Env(tmp_path)
    e.cni = CNIConfig([str(e.bin)], cache_dir=str(e.cache_dir),
                      environ={**fake_environ(e.log), "CNI_IFNAME": "bogus", "CNI_COMMAND": "DEL"})
    e.cni.status_network_list(netlist())
    call = e.calls()[0]
    assert call["command"] == "STATUS"
    for var in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"):
        assert call["env"][var] == ""


def test_add_stops_at_first_failure_keeps_code_and_writes_no_cache(env):
    fail_with(env.plugins["b"], "ADD", 11, "try again", "busy")
    net = netlist(plugins=[{"type": "a"}, {"type": "b"}, {"type": "c"}])
    with pytest.raises(CNIError) as info:
        env.cni.add_network_list(net, RT)
    assert info.value.code == 11
    assert str(info.value) == 'plugin type="b" failed (add): try again; busy'
    assert [c["plugin"] for c in env.calls()] == ["a", "b"]  # no c, no automatic DEL
    assert not env.cache_file().exists()


@pytest.mark.parametrize(
    "rt,code,text",
    [
        (RuntimeConf(container_id="", ifname="eth0"), 3, "missing containerID"),
        (RuntimeConf(container_id="bad%id", ifname="eth0"), 4, "invalid characters in containerID"),
        (
            RuntimeConf(container_id="ok", ifname="waytoolonginterface"),
            4,
            "interface name is too long",
        ),
        (RuntimeConf(container_id="ok", ifname=""), 4, "interface name is empty"),
    ],
)
def test_add_validates_before_running_anything(env, rt, code, text):
    with pytest.raises(CNIError) as info:
        env.cni.add_network_list(netlist(), rt)
    assert info.value.code == code and text in str(info.value)
    assert env.calls() == []


def test_add_validates_network_name(env):
    net = conflist.list_from_bytes(
        b'{"name":"bad name","cniVersion":"1.1.0","plugins":[{"type":"a"}]}'
    )
    with pytest.raises(CNIError) as info:
        env.cni.add_network_list(net, RT)
    assert info.value.code == 7 and "invalid characters found in network name" in str(info.value)
    assert env.calls() == []


def test_missing_plugin_and_bad_type(env):
    with pytest.raises(CNIError) as info:
        env.cni.add_network_list(netlist(plugins=[{"type": "nope"}]), RT)
    assert (
        str(info.value)
        == f'plugin type="nope" failed (add): failed to find plugin "nope" in path [{env.bin}]'
    )
    with pytest.raises(CNIError, match="invalid plugin name: ../a"):
        env.cni.add_network_list(netlist(plugins=[{"type": "../a"}]), RT)
    empty = CNIConfig([], cache_dir=str(env.cache_dir), environ=fake_environ(env.log))
    with pytest.raises(CNIError, match="no paths provided"):
        empty.add_network_list(netlist(), RT)


def test_plugin_failure_texts(env):
    set_behaviour(env.plugins["a"], "ADD", stderr="boom\n", exit=3)
    with pytest.raises(CNIError) as info:
        env.cni.add_network_list(netlist(), RT)
    assert (
        str(info.value) == 'plugin type="a" failed (add): netplugin failed: "boom\n": exit status 3'
    )
    set_behaviour(env.plugins["a"], "ADD", stdout="not json", exit=1)
    with pytest.raises(CNIError) as info:
        env.cni.add_network_list(netlist(), RT)
    assert 'netplugin failed but error parsing its diagnostic message "not json"' in str(info.value)
    set_behaviour(env.plugins["a"], "ADD", exit=1)
    with pytest.raises(CNIError, match="netplugin failed with no error message: exit status 1"):
        env.cni.add_network_list(netlist(), RT)


def test_result_without_version_gets_the_config_version(env):
    set_behaviour(env.plugins["b"], "ADD", stdout='{"ips":[{"address":"10.0.0.9/24"}]}')
    result = env.cni.add_network_list(netlist(version="1.0.0"), RT)
    assert result.to_dict()["cniVersion"] == "1.0.0"


def test_empty_add_output_is_an_error(env):
    set_behaviour(env.plugins["a"], "ADD", stdout="")
    with pytest.raises(CNIError, match="failed to unmarshal raw result"):
        env.cni.add_network_list(netlist(), RT)
    assert not env.cache_file().exists()


def test_add_result_in_older_version_chain(env):
    result = env.cni.add_network_list(netlist(version="0.3.1"), RT)
    d = result.to_dict()
    assert d["cniVersion"] == "0.3.1" and d["ips"][0]["version"] == "4"


# ------------------------------------------------------------------ DEL / CHECK (87, 88)


def test_del_reverse_order_with_cached_result_then_cache_removed(env):
    net = netlist(plugins=[{"type": "a"}, {"type": "b"}, {"type": "c"}])
    added = env.cni.add_network_list(net, RT).to_dict()
    env.reset()
    env.cni.del_network_list(net, RT)
    dels = env.calls("DEL")
    assert [c["plugin"] for c in dels] == ["c", "b", "a"]
    for call in dels:
        assert call["conf"]["prevResult"] == added
        assert call["env"]["CNI_ARGS"] == "K=V;IgnoreUnknown=1"
    assert not env.cache_file().exists()


def test_del_below_040_sends_no_prev_result(env):
    net = netlist(version="0.3.1")
    env.cni.add_network_list(net, RT)
    env.reset()
    env.cni.del_network_list(net, RT)
    assert all("prevResult" not in c["conf"] for c in env.calls("DEL"))


def test_del_without_cache_sends_no_prev_result(env):
    env.cni.del_network_list(netlist(), RT)
    assert [("prevResult" in c["conf"]) for c in env.calls("DEL")] == [False, False]


def test_failed_del_keeps_cache_and_second_del_succeeds(env):
    net = netlist()
    env.cni.add_network_list(net, RT)
    fail_with(env.plugins["a"], "DEL", 999, "cannot")
    with pytest.raises(CNIError) as info:
        env.cni.del_network_list(net, RT)
    assert str(info.value) == 'plugin type="a" failed (delete): cannot'
    assert env.cache_file().exists()
    os.unlink(f"{env.plugins['a']}.DEL")
    env.cni.del_network_list(net, RT)
    assert not env.cache_file().exists()
    env.cni.del_network_list(net, RT)  # idempotent


def test_check_in_order_with_cached_result(env):
    net = netlist()
    added = env.cni.add_network_list(net, RT).to_dict()
    env.reset()
    env.cni.check_network_list(net, RT)
    checks = env.calls("CHECK")
    assert [c["plugin"] for c in checks] == ["a", "b"]
    assert all(c["conf"]["prevResult"] == added for c in checks)


def test_check_error_unwrapped_and_stops(env):
    net = netlist()
    env.cni.add_network_list(net, RT)
    env.reset()
    fail_with(env.plugins["a"], "CHECK", 7, "wrong")
    with pytest.raises(CNIError) as info:
        env.cni.check_network_list(net, RT)
    assert str(info.value) == "wrong" and info.value.code == 7
    assert [c["plugin"] for c in env.calls()] == ["a"]


def test_check_without_cache_sends_no_prev_result(env):
    env.cni.check_network_list(netlist(), RT)
    assert [("prevResult" in c["conf"]) for c in env.calls("CHECK")] == [False, False]


def test_check_disabled_runs_nothing(env):
    env.cni.check_network_list(netlist(disableCheck=True), RT)
    env.cni.check_network_list(netlist(disableCheck="true"), RT)
    assert env.calls() == []


def test_check_refused_below_040(env):
    with pytest.raises(CNIError) as info:
        env.cni.check_network_list(netlist(version="0.3.1", disableCheck=True), RT)
    assert str(info.value) == 'configuration version "0.3.1" does not support the CHECK command'
    with pytest.raises(CNIError):
        env.cni.check_network_list(netlist(version="1.x"), RT)
    assert env.calls() == []


# ------------------------------------------------------------------ VERSION / validate (96-98)


def test_version_probe_request(env):
    assert env.cni.version_info("a")[-1] == "1.1.0"
    call = env.calls("VERSION")[0]
    assert call["conf"] == {"cniVersion": "1.1.0"}
    assert call["env"]["CNI_NETNS"] == "dummy" and call["env"]["CNI_IFNAME"] == "dummy"
    assert call["env"]["CNI_PATH"] == "dummy"


def test_version_probe_old_plugin_and_decoding(env):
    fail_with(env.plugins["a"], "VERSION", 4, "unknown CNI_COMMAND: VERSION")
    assert env.cni.version_info("a") == ["0.1.0"]
    set_behaviour(env.plugins["a"], "VERSION", stdout='{"cniVersion":"0.2.0"}')
    assert env.cni.version_info("a") == ["0.1.0", "0.2.0"]
    set_behaviour(env.plugins["a"], "VERSION", stdout='{"cniVersion":"0.3.0"}')
    with pytest.raises(CNIError, match="decoding version info: missing field supportedVersions"):
        env.cni.version_info("a")
    set_behaviour(env.plugins["a"], "VERSION", stdout='{"supportedVersions":["1.0.0"]}')
    with pytest.raises(CNIError, match="decoding version info: missing field cniVersion"):
        env.cni.version_info("a")
    set_behaviour(env.plugins["a"], "VERSION", stdout="garbage")
    with pytest.raises(CNIError, match="^decoding version info: "):
        env.cni.version_info("a")


def test_validate_network_list(env):
    net = netlist(plugins=[
        {"type": "a", "capabilities": {"portMappings": True, "mac": False}},
        {"type": "b", "capabilities": {"portMappings": True, "ips": True}},
    ])
    assert sorted(env.cni.validate_network_list(net)) == ["ips", "portMappings"]
    set_behaviour(
        env.plugins["a"], "VERSION", stdout='{"cniVersion":"0.4.0","supportedVersions":["0.4.0"]}'
    )
    bad = netlist(plugins=[{"type": "a"}, {"type": "missing"}])
    with pytest.raises(CNIError) as info:
        env.cni.validate_network_list(bad)
    assert str(info.value) == (
        f'[plugin a does not support config version "1.1.0" failed to find plugin "missing" in '
        f'path [{env.bin}]]'
    )


# ------------------------------------------------------------------ GC / STATUS (107-111)


def _add_two(env, net):
    env.cni.add_network_list(net, RuntimeConf(container_id="keep", netns="/n1", ifname="eth0"))
    env.cni.add_network_list(net, RuntimeConf(container_id="stale", netns="/n2", ifname="eth0",
                                              args=[("A", "1")], capability_args={"mac": "x"}))
    other = netlist(name="other")
    env.cni.add_network_list(other, RuntimeConf(container_id="stale", netns="/n2", ifname="eth0"))
    env.reset()


def test_gc_disabled_runs_nothing(env):
    net = netlist(disableGC=True)
    _add_two(env, net)
    env.cni.gc_network_list(net, [])
    env.cni.gc_network_list(net, None)
    assert env.calls() == []


def test_gc_with_all_valid_sends_gc_with_both_keys(env):
    net = netlist()
    _add_two(env, net)
    env.cni.gc_network_list(net, [("keep", "eth0"), ("stale", "eth0")])
    calls = env.calls()
    assert [(c["command"], c["plugin"]) for c in calls] == [("GC", "a"), ("GC", "b")]
    expected = [
        {"containerID": "keep", "ifname": "eth0"},
        {"containerID": "stale", "ifname": "eth0"},
    ]
    for c in calls:
        assert c["conf"]["cni.dev/valid-attachments"] == expected
        assert c["conf"]["cni.dev/attachments"] == expected
        assert c["conf"]["name"] == "net1" and c["conf"]["cniVersion"] == "1.1.0"
        assert "runtimeConfig" not in c["conf"] and "prevResult" not in c["conf"]
        assert c["env"]["CNI_CONTAINERID"] == "" and c["env"]["CNI_IFNAME"] == ""


def test_gc_dels_stale_attachment_with_cached_args_then_gc(env):
    net = netlist(plugins=[{"type": "a", "capabilities": {"mac": True}}, {"type": "b"}])
    _add_two(env, net)
    env.cni.gc_network_list(net, [("keep", "eth0")])
    calls = env.calls()
    assert [(c["command"], c["plugin"]) for c in calls] == [
        ("DEL", "b"),
        ("DEL", "a"),
        ("GC", "a"),
        ("GC", "b"),
    ]
    dela = calls[1]
    assert dela["env"]["CNI_CONTAINERID"] == "stale" and dela["env"]["CNI_NETNS"] == "/n2"
    assert dela["env"]["CNI_ARGS"] == "A=1"
    assert dela["conf"]["runtimeConfig"] == {"mac": "x"}
    assert "prevResult" in dela["conf"]
    assert calls[2]["conf"]["cni.dev/valid-attachments"] == [
        {"containerID": "keep", "ifname": "eth0"}
    ]
    assert not env.cache_file(cid="stale").exists()
    assert env.cache_file(cid="keep").exists()
    assert env.cache_file(net="other", cid="stale").exists()  # other networks untouched


def test_gc_with_empty_list_dels_everything(env):
    net = netlist()
    _add_two(env, net)
    env.cni.gc_network_list(net, [])
    dels = env.calls("DEL")
    assert sorted({c["env"]["CNI_CONTAINERID"] for c in dels}) == ["keep", "stale"]
    gcs = env.calls("GC")
    assert all(c["conf"]["cni.dev/valid-attachments"] == [] for c in gcs)


def test_gc_without_args_sends_no_keys(env):
    net = netlist()
    _add_two(env, net)
    env.cni.gc_network_list(net, None)
    assert len(env.calls("DEL")) == 4
    for c in env.calls("GC"):
        assert (
            "cni.dev/valid-attachments" not in c["conf"] and "cni.dev/attachments" not in c["conf"]
        )


def test_gc_below_110_dels_but_sends_no_gc(env):
    net = netlist(version="1.0.0")
    _add_two(env, net)
    env.cni.gc_network_list(net, [])
    assert {c["command"] for c in env.calls()} == {"DEL"}


def test_gc_keeps_going_and_reports_every_error(env):
    net = netlist()
    _add_two(env, net)
    fail_with(env.plugins["a"], "GC", 50, "gc-a failed")
    fail_with(env.plugins["b"], "DEL", 11, "del-b failed")
    with pytest.raises(MultiError) as info:
        env.cni.gc_network_list(net, [("keep", "eth0")])
    assert str(info.value) == (
        'failed to delete stale attachment stale eth0: plugin type="b" failed (delete): del-b '
        'failed\n'
        "failed to GC plugin a: gc-a failed"
    )
    assert [(c["command"], c["plugin"]) for c in env.calls()] == [
        ("DEL", "b"),
        ("GC", "a"),
        ("GC", "b"),
    ]


def test_status_stops_at_first_failure_and_keeps_code(env):
    net = netlist(plugins=[{"type": "a"}, {"type": "b"}, {"type": "c"}])
    fail_with(env.plugins["b"], "STATUS", 50, "plugin not available")
    with pytest.raises(CNIError) as info:
        env.cni.status_network_list(net)
    assert info.value.code == 50 and str(info.value) == "plugin not available"
    assert [c["plugin"] for c in env.calls()] == ["a", "b"]
    assert env.calls()[0]["conf"] == {"type": "a", "name": "net1", "cniVersion": "1.1.0"}


def test_status_below_110_runs_nothing(env):
    env.cni.status_network_list(netlist(version="1.0.0"))
    env.cni.status_network_list(netlist(version="garbage"))
    assert env.calls() == []


def test_cached_config_view(env):
    net = netlist()
    rt = RuntimeConf(
        container_id="c9",
        netns="/n",
        ifname="eth1",
        args=[("X", "y")],
        capability_args={"mac": "m"},
    )
    env.cni.add_network_list(net, rt)
    config, cached_rt = env.cni.cached_config(
        net, RuntimeConf(container_id="c9", ifname="eth1", args=[("Q", "1")])
    )
    assert config == net.bytes
    assert cached_rt.args == [("X", "y")] and cached_rt.capability_args == {"mac": "m"}
    assert env.cni.cached_config(net, RuntimeConf(container_id="zz", ifname="eth1")) is None
    atts = env.cni.cached_attachments("c9")
    assert [(a.container_id, a.network, a.ifname) for a in atts] == [("c9", "net1", "eth1")]


# ------------------------------------------------------------------ exec details
# (docs/spec-rules.md §2.4)


def test_text_file_busy_is_retried(env):
    """A plugin binary still open for writing (ETXTBSY) is retried once a second, as libcni does."""
    import threading

    writer = open(env.plugins["a"], "a")  # noqa: SIM115 - closed by the timer below
    timer = threading.Timer(1.2, writer.close)
    timer.start()
    try:
        result = env.cni.add_network_list(netlist(plugins=[{"type": "a"}]), RT)
    finally:
        timer.cancel()
        writer.close()
    assert [i["name"] for i in result.to_dict()["interfaces"]] == ["a-eth0"]
    assert len(env.calls("ADD")) == 1

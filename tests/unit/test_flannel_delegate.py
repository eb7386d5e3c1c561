"""Config loading and delegate generation (docs/flannel-behaviour.md §1, §3; F1-F4, F10, F27-F40).

Expected delegate configurations are written out verbatim as the reference's json.Marshal
produces them (keys sorted, compact; route objects in libcni's field order).
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from cni import fileutil
from cni.errors import ERR_DECODING_FAILURE, ERR_INVALID_NETWORK_CONFIG, CNIError
from plugins.flannel import config as flannel_config
from plugins.flannel import delegate as flannel_delegate
from plugins.flannel.subnet import parse

V4 = parse(
    "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n",
    "p",
)
V6 = parse(
    "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n",
    "p",
)
DUAL = parse(
    "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\n"
    "FLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n",
    "p",
)
TWO_NETS = parse(
    "FLANNEL_NETWORK=10.1.0.0/16,192.168.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n",
    "p",
)
BASE = {
    "name": "cni-flannel",
    "type": "flannel",
    "subnetFile": "/x/subnet.env",
    "dataDir": "/x/data",
}
USER_IPAM = {
    "type": "my-ipam",
    "unknown-param": "unknown-value",
    "routes": [{"dst": "10.96.0.0/12"}, {"dst": "192.168.244.0/24", "gw": "10.1.17.20"}],
}


def gen(env=V4, **extra) -> bytes:
    conf = flannel_config.load({**BASE, **extra}, for_add=True)
    return flannel_delegate.encode(flannel_delegate.build(conf, env))


def gen_error(env=V4, **extra) -> CNIError:
    with pytest.raises(CNIError) as info:
        gen(env, **extra)
    return info.value


# --------------------------------------------------------------------------- config (1-4, 10)


def test_defaults():  # F1
    conf = flannel_config.load({"name": "n", "type": "flannel"}, for_add=False)
    assert conf.subnet_file() == "/run/flannel/subnet.env"
    assert conf.data_dir() == "/var/lib/cni/flannel"
    assert conf.subnetFileWait == 3.0 and conf.subnetFileLenient is False


def test_explicit_paths_verbatim():  # F2
    conf = flannel_config.load({**BASE, "subnetFileWait": 0.5}, for_add=False)
    assert (conf.subnet_file(), conf.data_dir()) == ("/x/subnet.env", "/x/data")
    assert conf.subnetFileWait == 0.5


def test_empty_paths_fall_back_with_warning(capsys):  # F3 (improved mode)
    conf = flannel_config.load({"name": "n", "subnetFile": "", "dataDir": ""}, for_add=False)
    assert conf.subnet_file() == "/run/flannel/subnet.env"
    assert conf.data_dir() == "/var/lib/cni/flannel"
    err = capsys.readouterr().err
    assert '"subnetFile" is empty' in err and '"dataDir" is empty' in err


def test_null_values_keep_defaults():
    conf = flannel_config.load(
        {"name": "n", "subnetFile": None, "delegate": None, "ipam": None}, for_add=False
    )
    assert conf.subnet_file() == "/run/flannel/subnet.env" and conf.delegate is None


def test_keys_match_case_insensitively_like_go():
    conf = flannel_config.load({"name": "n", "SubnetFile": "/a", "DATADIR": "/b"}, for_add=False)
    assert (conf.subnet_file(), conf.data_dir()) == ("/a", "/b")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("delegate", "x"),
        ("ipam", []),
        ("subnetFile", 5),
        ("runtimeConfig", 1),
        ("dns", "x"),
        ("capabilities", {"a": 1}),
        ("subnetFileWait", -1),
        ("subnetFileWait", "3"),
        ("subnetFileLenient", 1),
    ],
)
def test_wrong_types_add_and_del_prefixes(key, value):  # F4 and F5
    for for_add, prefix in (
        (True, "failed to load flannel netconf file: failed to load netconf: "),
        (False, "failed to load netconf: "),
    ):
        with pytest.raises(CNIError) as info:
            flannel_config.load({"name": "n", key: value}, for_add=for_add)
        # 6 for a wrong JSON type, 7 for a bad value; the reference says 999 for both.
        assert info.value.code in (ERR_DECODING_FAILURE, ERR_INVALID_NETWORK_CONFIG)
        assert info.value.msg.startswith(prefix)
        assert key in info.value.msg
        assert "\n" not in info.value.msg


def test_misplaced_bridge_keys_warn_and_are_ignored(capsys):  # F10
    out = gen(bridge="cni9", hairpinMode=True, custom="x")
    err = capsys.readouterr().err
    assert "bridge, hairpinMode" in err and "custom" not in err
    assert b"cni9" not in out and b"hairpinMode" not in out and b"custom" not in out


# --------------------------------------------------------------------------- generation (27-40)

EXPECTED_V4 = (
    b'{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.1.0.0/16"}],'
    b'"type":"host-local"},"isGateway":true,"mtu":1472,"name":"cni-flannel","type":"bridge"}'
)


def test_default_v4_byte_equal():  # F27
    assert gen() == EXPECTED_V4


def test_ipmasq_false_gives_bridge_masquerade():  # F28
    env = parse(
        "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n",
        "p",
    )
    assert json.loads(gen(env))["ipMasq"] is True


def test_user_mtu_and_ipmasq_kept():  # F29
    out = json.loads(gen(delegate={"mtu": 1400, "ipMasq": True}))
    assert (out["mtu"], out["ipMasq"]) == (1400, True)
    out = json.loads(gen(delegate={"mtu": 0, "ipMasq": "weird"}))
    assert (out["mtu"], out["ipMasq"]) == (0, "weird")


def test_other_type_gets_no_isgateway():  # F30
    out = json.loads(gen(delegate={"type": "ipvlan", "master": "eth0"}))
    assert out["type"] == "ipvlan" and out["master"] == "eth0"
    assert "isGateway" not in out


def test_isgateway_false_kept():  # F31
    assert json.loads(gen(delegate={"isGateway": False}))["isGateway"] is False


@pytest.mark.parametrize(
    ("delegate", "message"),
    [
        ({"type": 5}, "'delegate' dictionary, if present, must have (string) 'type' field"),
        ({"type": None}, "'delegate' dictionary, if present, must have (string) 'type' field"),
        (
            {"type": 5, "name": "x", "ipam": {}},
            "'delegate' dictionary, if present, must have (string) 'type' field",
        ),
        (
            {"name": "x", "ipam": {}},
            "'delegate' dictionary must not have 'name' field, it'll be set by flannel",
        ),
        ({"ipam": {}}, "'delegate' dictionary must not have 'ipam' field, it'll be set by flannel"),
        (
            {"name": None},
            "'delegate' dictionary must not have 'name' field, it'll be set by flannel",
        ),
    ],
)
def test_delegate_validation_and_precedence(delegate, message):  # F32
    e = gen_error(delegate=delegate)
    assert (e.code, e.msg) == (ERR_INVALID_NETWORK_CONFIG, message)  # 999 in the reference


def test_cniversion_copy_rules():  # F33
    assert (
        json.loads(gen(cniVersion="1.0.0", delegate={"cniVersion": "0.3.1"}))["cniVersion"]
        == "1.0.0"
    )
    assert json.loads(gen(delegate={"cniVersion": "0.3.1"}))["cniVersion"] == "0.3.1"
    assert "cniVersion" not in json.loads(gen())


def test_runtimeconfig_replaces_delegates():  # F34
    out = json.loads(
        gen(runtimeConfig={"ips": ["10.1.17.9/24"]}, delegate={"runtimeConfig": {"mac": "x"}})
    )
    assert out["runtimeConfig"] == {"ips": ["10.1.17.9/24"]}
    assert json.loads(gen(delegate={"runtimeConfig": {"mac": "x"}}))["runtimeConfig"] == {
        "mac": "x"
    }


def test_user_ipam_v4():  # F35 (upstream specs 17)
    assert gen(ipam=USER_IPAM) == (
        b'{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.96.0.0/12"},'
        b'{"dst":"192.168.244.0/24","gw":"10.1.17.20"},{"dst":"10.1.0.0/16"}],"type":"my-ipam",'
        b'"unknown-param":"unknown-value"},"isGateway":true,"mtu":1472,"name":"cni-flannel","type":"bridge"}'
    )


def test_user_ipam_v6_and_dual():  # upstream specs 18, 19
    out = json.loads(gen(V6, ipam=USER_IPAM))["ipam"]
    assert out["ranges"] == [[{"subnet": "fc00::/64"}]]
    assert out["routes"][-1] == {"dst": "fc00::/48"}
    out = json.loads(gen(DUAL, ipam=USER_IPAM))["ipam"]
    assert out["routes"][2:] == [{"dst": "10.1.0.0/16"}, {"dst": "fc00::/48"}]


def test_ipam_type_defaults_and_empty_kept():  # F36 (upstream specs 21-23)
    ipam = {k: v for k, v in USER_IPAM.items() if k != "type"}
    assert json.loads(gen(ipam=ipam))["ipam"]["type"] == "host-local"
    assert json.loads(gen(ipam={"type": ""}))["ipam"]["type"] == ""


def test_user_ranges_overwritten():  # F37
    out = json.loads(
        gen(ipam={"ranges": [[{"subnet": "192.168.9.0/24", "gateway": "192.168.9.9"}]]})
    )
    assert out["ipam"]["ranges"] == [[{"subnet": "10.1.17.0/24"}]]


@pytest.mark.parametrize(
    "routes",
    [
        [{"dst": "nope"}],
        "x",
        [5],
        [{"dst": "10.0.0.0/8", "gw": "bad"}],
        [{"dst": "10.0.0.0/8", "mtu": 1.5}],
        [{}],
    ],
)
def test_malformed_routes(routes):  # F38
    e = gen_error(ipam={"routes": routes})
    assert e.code == ERR_INVALID_NETWORK_CONFIG  # 999 in the reference: README "Where we differ"
    assert e.msg.startswith(
        "failed to assemble Delegate IPAM: failed to read IPAM routes: failed to parse "
        "ipam.routes: "
    )
    assert "\n" not in e.msg


def test_route_fields_in_libcni_order_unknown_dropped_host_bits_kept():
    routes = [
        {
            "scope": 0,
            "table": 100,
            "priority": 5,
            "advmss": 1300,
            "mtu": 1400,
            "gw": "10.1.17.20",
            "dst": "10.96.0.1/12",
            "bogus": 1,
        }
    ]
    out = gen(ipam={"routes": routes})
    assert (
        b'"routes":[{"dst":"10.96.0.1/12","gw":"10.1.17.20","mtu":1400,"advmss":1300,"priority":5,'
        b'"table":100,"scope":0},{"dst":"10.1.0.0/16"}]'
    ) in out


def test_dual_stack_ranges_and_routes():  # F39 (upstream spec 4)
    out = json.loads(gen(DUAL))["ipam"]
    assert out["ranges"] == [[{"subnet": "10.1.17.0/24"}], [{"subnet": "fc00::/64"}]]
    assert out["routes"] == [{"dst": "10.1.0.0/16"}, {"dst": "fc00::/48"}]


def test_two_networks_two_routes():  # upstream spec 2
    assert json.loads(gen(TWO_NETS))["ipam"]["routes"] == [
        {"dst": "10.1.0.0/16"},
        {"dst": "192.168.0.0/16"},
    ]


def test_top_level_keys_not_forwarded():  # F40
    out = json.loads(gen(
        dns={"nameservers": ["1.1.1.1"]}, args={"cni": {"ips": ["1.2.3.4"]}},
        capabilities={"portMappings": True}, prevResult={"cniVersion": "1.0.0"},
    ))
    for key in ("dns", "args", "capabilities", "prevResult", "subnetFile", "dataDir"):
        assert key not in out


def test_kube_flannel_defaults():
    out = gen(cniVersion="0.3.1", delegate={"hairpinMode": True, "isDefaultGateway": True})
    assert out == (
        b'{"cniVersion":"0.3.1","hairpinMode":true,"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],'
        b'"routes":[{"dst":"10.1.0.0/16"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,'
        b'"mtu":1472,"name":"cni-flannel","type":"bridge"}'
    )


def test_go_marshal_details():
    # Go: numbers through float64, HTML characters escaped, non-ASCII raw, map keys sorted.
    out = gen(delegate={"z": 1.0, "a": "<&>", "é": "ü", "big": 12345678901234567890, "f": 0.00001})
    assert b'"a":"\\u003c\\u0026\\u003e"' in out
    assert b'"big":12345678901234567000' in out
    assert b'"f":0.00001' in out and b'"z":1' in out
    assert '"é":"ü"'.encode() in out
    assert out.index(b'"a"') < out.index(b'"big"') < out.index(b'"z"') < out.index('"é"'.encode())


def test_build_does_not_mutate_the_config():
    conf = flannel_config.load(
        {**BASE, "delegate": {"x": {"y": 1}}, "ipam": dict(USER_IPAM)}, for_add=True
    )
    before = conf.model_dump()
    flannel_delegate.build(conf, V4)
    assert conf.model_dump() == before


# --------------------------------------------------------------------------- saved files


def test_save_is_atomic_with_modes(tmp_path):
    data_dir = tmp_path / "a" / "flannel"
    path = flannel_delegate.save(str(data_dir), "ctr1", EXPECTED_V4)
    assert path == str(data_dir / "ctr1")
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert open(path, "rb").read() == EXPECTED_V4
    flannel_delegate.save(str(data_dir), "ctr1", b"{}")  # overwrite
    assert open(path, "rb").read() == b"{}"
    assert os.listdir(data_dir) == ["ctr1"]  # no temporary file left


def test_failed_write_leaves_old_content_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "ctr1"
    path.write_bytes(b"old")

    def boom(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        fileutil.atomic_write(str(path), b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["ctr1"]


def test_save_error_names_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CNIError) as info:
        flannel_delegate.save(str(blocker / "sub"), "ctr1", b"{}")
    assert str(blocker / "sub" / "ctr1") in info.value.msg


def test_saved_path_refuses_unsafe_ids(tmp_path):
    for bad in ("..", "a/b", ""):
        with pytest.raises(CNIError):
            flannel_delegate.saved_path(str(tmp_path), bad)


def test_parse_saved():
    # A reference-written file (with Go's HTML escapes) reads back; torn or typeless files do not.
    go_file = EXPECTED_V4.replace(b'"name":"cni-flannel"', b'"name":"a\\u003cb"')
    assert flannel_delegate.parse_saved(go_file)["name"] == "a<b"
    for bad in (b"", b"{", b"[]", b'{"name":"x"}', b'{"type":""}', b'{"type":5}', b"\xff"):
        assert flannel_delegate.parse_saved(bad) is None

"""subnet.env parsing and loading (docs/flannel-behaviour.md §2, F11-F26, plus the ADD wait)."""

from __future__ import annotations

import threading
import time

import pytest

from cni.errors import ERR_INTERNAL, ERR_PLUGIN_NOT_AVAILABLE, ERR_TRY_AGAIN_LATER, CNIError
from plugins.flannel import subnet as fs
from plugins.flannel.subnet import SubnetEnvError, parse

V4 = (
    "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\n"
    "FLANNEL_IPMASQ=true\n"
)
V6 = (
    "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1472\n"
    "FLANNEL_IPMASQ=true\n"
)
DUAL = (
    "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\n"
    "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\n"
    "FLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n"
)
ALL_MISSING = (
    "FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, "
    "FLANNEL_MTU, FLANNEL_IPMASQ"
)


def err(text: str, **kw) -> str:
    with pytest.raises(SubnetEnvError) as info:
        parse(text, "/run/flannel/subnet.env", **kw)
    return str(info.value)


# F11
def test_readme_v4_file():
    env = parse(V4, "p")
    assert env.networks == ["10.1.0.0/16"]
    assert env.subnet == "10.1.17.0/24"
    assert env.ip6_networks == [] and env.ip6_subnet is None
    assert env.mtu == 1472 and env.ipmasq is True
    assert env.ranges() == [[{"subnet": "10.1.17.0/24"}]]
    assert env.route_dsts() == ["10.1.0.0/16"]


# F12
def test_v6_only_file():
    env = parse(V6, "p")
    assert env.networks == [] and env.subnet is None
    assert env.ip6_networks == ["fc00::/48"]
    assert env.ip6_subnet == "fc00::/64"
    assert env.ranges() == [[{"subnet": "fc00::/64"}]]


# F13
def test_dual_stack_file():
    env = parse(DUAL, "p")
    assert env.networks == ["10.1.0.0/16"] and env.subnet == "10.1.17.0/24"
    assert env.ip6_networks == ["fc00::/48"] and env.ip6_subnet == "fc00::/64"
    assert env.ranges() == [[{"subnet": "10.1.17.0/24"}], [{"subnet": "fc00::/64"}]]
    assert env.route_dsts() == ["10.1.0.0/16", "fc00::/48"]


# F14
def test_network_list_keeps_order():
    env = parse(V4.replace("10.1.0.0/16", "10.1.0.0/16,192.168.0.0/16"), "p")
    assert env.networks == ["10.1.0.0/16", "192.168.0.0/16"]


# F15
def test_network_list_deduplicates_after_masking():
    env = parse(
        V4.replace("10.1.0.0/16", "10.1.0.0/16,10.1.5.0/16,192.168.0.0/16,10.1.0.0/16"), "p"
    )
    assert env.networks == ["10.1.0.0/16", "192.168.0.0/16"]


def test_networks_and_subnets_are_normalised():
    env = parse(
        DUAL.replace("10.1.0.0/16", "10.1.2.3/16").replace("fc00::/48", "FC00:0:0::7/48"), "p"
    )
    assert env.networks == ["10.1.0.0/16"]
    assert env.ip6_networks == ["fc00::/48"]


# F16
def test_comments_blank_unknown_and_export_lines_ignored():
    text = "# written by flanneld\n\nFOO=bar\nexport FLANNEL_MTU=9000\n FLANNEL_MTU=9000\n" + V4
    env = parse(text, "p")
    assert env.mtu == 1472


# F17
def test_repeated_key_last_wins():
    env = parse(V4 + "FLANNEL_SUBNET=10.1.18.1/24\nFLANNEL_NETWORK=10.2.0.0/16\n", "p")
    assert env.subnet == "10.1.18.0/24"
    assert env.networks == ["10.2.0.0/16"]  # the whole list is replaced


# F18
@pytest.mark.parametrize("value", ["True", "1", "", "yes", "true "])
def test_ipmasq_only_exact_true(value):
    env = parse(V4.replace("FLANNEL_IPMASQ=true", f"FLANNEL_IPMASQ={value}"), "p")
    assert env.ipmasq is False  # present, so not reported missing


# F19
def test_only_unknown_key_lists_all_six_missing():
    assert err("foo=bar\n") == f"/run/flannel/subnet.env is missing {ALL_MISSING}"


# F20
def test_only_mtu_missing():
    text = V4.replace("FLANNEL_MTU=1472\n", "")
    assert err(text) == "/run/flannel/subnet.env is missing FLANNEL_MTU"


def test_missing_subnets_only():
    text = "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n"
    assert err(text) == "/run/flannel/subnet.env is missing FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET"


# F21
def test_v4_network_with_only_v6_subnet_accepted_with_warning():
    text = (
        "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1472\n"
        "FLANNEL_IPMASQ=true\n"
    )
    env = parse(text, "p")
    assert env.ranges() == [[{"subnet": "fc00::/64"}]]
    assert env.route_dsts() == ["10.1.0.0/16"]
    assert any("no FLANNEL_IPV6_NETWORK" in w for w in env.warnings())


def test_subnet_outside_network_warns():
    env = parse(V4.replace("10.1.17.1/24", "10.9.17.1/24"), "p")
    assert any("not inside" in w for w in env.warnings())
    assert parse(V4, "p").warnings() == []
    assert parse(DUAL, "p").warnings() == []


# F22
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", 'strconv.ParseUint: parsing "abc": invalid syntax'),
        ("-1", 'strconv.ParseUint: parsing "-1": invalid syntax'),
        ("", 'strconv.ParseUint: parsing "": invalid syntax'),
        ("99999999999", 'strconv.ParseUint: parsing "99999999999": value out of range'),
        ("0", "FLANNEL_MTU=0 is not a usable MTU (68..65535)"),
        ("65536", "FLANNEL_MTU=65536 is not a usable MTU (68..65535)"),
    ],
)
def test_bad_mtu(value, message):
    assert err(V4.replace("FLANNEL_MTU=1472", f"FLANNEL_MTU={value}")) == message


def test_bad_cidrs_use_go_message():
    assert err(V4.replace("10.1.17.1/24", "10.1.17.1")) == "invalid CIDR address: 10.1.17.1"
    assert err(V4.replace("10.1.0.0/16", "")) == "invalid CIDR address: "
    assert (
        err(V4.replace("10.1.0.0/16", "10.1.0.0/255.255.0.0"))
        == "invalid CIDR address: 10.1.0.0/255.255.0.0"
    )
    assert err(V4.replace("10.1.0.0/16", "10.1.0.0/33")) == "invalid CIDR address: 10.1.0.0/33"
    assert (
        err(V4.replace("10.1.0.0/16", "fe80::%eth0/64")) == "invalid CIDR address: fe80::%eth0/64"
    )


# F23
def test_space_after_comma_strict_vs_lenient():
    text = V4.replace("10.1.0.0/16", "10.1.0.0/16, 192.168.0.0/16")
    assert err(text) == "invalid CIDR address:  192.168.0.0/16"
    assert parse(text, "p", lenient=True).networks == ["10.1.0.0/16", "192.168.0.0/16"]


# F24
def test_crlf_parsed_in_both_modes():
    text = V4.replace("\n", "\r\n")
    assert parse(text, "p").mtu == 1472
    assert parse(text, "p", lenient=True).mtu == 1472


def test_last_line_without_newline():
    assert parse(V4.rstrip("\n"), "p").ipmasq is True


def test_trailing_blank_strict_vs_lenient():
    text = V4.replace("FLANNEL_MTU=1472", "FLANNEL_MTU=1450 ")
    assert err(text) == 'strconv.ParseUint: parsing "1450 ": invalid syntax'
    assert parse(text, "p", lenient=True).mtu == 1450


def test_lenient_quotes_and_blanks_around_keys():
    text = (
        ' FLANNEL_NETWORK = "10.1.0.0/16"\nFLANNEL_SUBNET=\'10.1.17.1/24\'\nFLANNEL_MTU="1472"\n'
        'FLANNEL_IPMASQ="true"\n'
    )
    env = parse(text, "p", lenient=True)
    assert (env.networks, env.subnet, env.mtu, env.ipmasq) == (
        ["10.1.0.0/16"],
        "10.1.17.0/24",
        1472,
        True,
    )
    with pytest.raises(SubnetEnvError):
        parse(text.replace(" FLANNEL_NETWORK = ", "FLANNEL_NETWORK="), "p")


# F25
@pytest.mark.parametrize("line", ["FLANNEL_MTU", "FLANNEL_NETWORK", "FLANNEL_IPMASQ"])
def test_known_key_without_equals_is_a_clean_error(line):
    assert err(V4 + line + "\n") == f'invalid line "{line}": expected {line}=<value>'


def test_overlong_line():
    assert err("X=" + "a" * 70000 + "\n" + V4) == "bufio.Scanner: token too long"


# F26
def test_missing_file_message(tmp_path):
    path = tmp_path / "nope" / "subnet.env"
    with pytest.raises(CNIError) as info:
        fs.load(str(path))
    assert info.value.code == ERR_INTERNAL
    assert info.value.msg == (
        f"failed to load flannel 'subnet.env' file: open {path}: no such file or directory. "
        "Check the flannel pod log for this node."
    )


def test_directory_and_unreadable(tmp_path):
    with pytest.raises(CNIError) as info:
        fs.load(str(tmp_path))
    assert f"read {tmp_path}: is a directory" in info.value.msg


def test_incomplete_file_message_wrapped(tmp_path):
    path = tmp_path / "subnet.env"
    path.write_text("foo=bar\n")
    with pytest.raises(CNIError) as info:
        fs.load(str(path), code=ERR_PLUGIN_NOT_AVAILABLE)
    assert info.value.code == ERR_PLUGIN_NOT_AVAILABLE
    assert info.value.msg == (
        f"failed to load flannel 'subnet.env' file: {path} is missing {ALL_MISSING}. "
        "Check the flannel pod log for this node."
    )


def test_wait_times_out_with_code_11(tmp_path):
    path = tmp_path / "subnet.env"
    start = time.monotonic()
    with pytest.raises(CNIError) as info:
        fs.load(str(path), wait=0.3)
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 2.0
    assert info.value.code == ERR_TRY_AGAIN_LATER
    assert f"open {path}: no such file or directory" in info.value.msg
    assert str(path) in info.value.details


def test_wait_returns_as_soon_as_the_file_appears(tmp_path):
    path = tmp_path / "run" / "subnet.env"

    def writer():
        time.sleep(0.2)
        path.parent.mkdir()
        tmp = path.parent / ".subnet.env.tmp"
        tmp.write_text(V4)
        tmp.rename(path)

    t = threading.Thread(target=writer)
    start = time.monotonic()
    t.start()
    try:
        env = fs.load(str(path), wait=10)
    finally:
        t.join()
    assert env.subnet == "10.1.17.0/24"
    assert time.monotonic() - start < 3


def test_wait_does_not_apply_to_a_bad_file(tmp_path):
    path = tmp_path / "subnet.env"
    path.write_text("FLANNEL_MTU=abc\n")
    start = time.monotonic()
    with pytest.raises(CNIError) as info:
        fs.load(str(path), wait=5)
    assert time.monotonic() - start < 1
    assert info.value.code == ERR_INTERNAL

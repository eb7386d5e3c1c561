"""plugins/linux/link.get_link through RtnlSocket.get_link_raw (the request built by hand, only
the Link fields decoded) against pyroute2's own request and decoding of the same link.

Real links of several kinds in a throwaway namespace: every field of every link must be what
`_link_from_msg` of pyroute2's answer gives, by index and by name, the request bytes must be
IPRoute's, and errors must be the same NetlinkError.
"""

from __future__ import annotations

import pytest

from cni.netns import in_netns
from plugins.linux import link, netlink, rtnl
from plugins.linux.addr import (
    _address_from_raw,
    add_address,
    broadcast_for,
    del_address,
    list_addresses,
)
from plugins.linux.netlink import netlink_error
from plugins.linux.routes import Route, add_route

pytestmark = pytest.mark.netns

LINKS = [
    ("va", "type", "veth", "peer", "name", "vb"),
    ("br0", "type", "bridge"),
    ("d0", "type", "veth", "peer", "name", "v\u00e9"),  # a UTF-8 name
]


def _slow(ipr, name=None, index=None):
    """get_link the way it was before the raw path: pyroute2's request and decoding."""
    try:
        msgs = ipr.link("get", index=index) if index is not None else ipr.link("get", ifname=name)
    except netlink_error() as e:
        if netlink.errno_of(e) in (netlink.ENODEV, netlink.ENOENT):
            return None
        raise
    return link._link_from_msg(msgs[0]) if msgs else None


def _capture(ipr) -> list[bytes]:
    """Every request `ipr` sends from now on, as bytes (in a list that grows)."""
    sent: list[bytes] = []
    send = ipr._send

    def capture(data):
        sent.append(bytes(data))
        return send(data)

    ipr._send = capture
    return sent


def _made(node_ns) -> list[str]:
    made = []
    for spec in LINKS:
        if node_ns.ip("link", "add", spec[0], *spec[1:], check=False).returncode == 0:
            made.append(spec[0])
    node_ns.ip("link", "set", "va", "master", "br0", "up")
    node_ns.ip("link", "set", "br0", "up")
    node_ns.ip("link", "set", "d0", "address", "02:00:00:00:00:01", "mtu", "1400")
    return made


def test_raw_get_link_matches_pyroute2(node_ns):
    made = _made(node_ns)
    assert {"va", "br0", "d0"} <= set(made)
    with in_netns(node_ns.path):
        with rtnl.iproute() as ipr:
            links = link.list_links(ipr)
            assert {lk.name for lk in links} >= {"lo", "va", "vb", "br0", "d0", "v\u00e9"}
            for lk in links:
                by_index = link.get_link(ipr, index=lk.index)
                assert by_index == _slow(ipr, index=lk.index) == lk
                assert link.get_link(ipr, lk.name) == _slow(ipr, lk.name) == lk
            assert link.get_link(ipr, "nosuchlink") is None
            assert link.get_link(ipr, index=99999) is None


def _with_name(raw: bytes, name: bytes) -> bytes:
    """`raw` (an RTM_NEWLINK message) with its IFLA_IFNAME value replaced by `name`."""
    import struct

    out, off = bytearray(raw[:32]), 32
    while off + 4 <= len(raw):
        length, kind = struct.unpack_from("=HH", raw, off)
        value = raw[off + 4:off + length]
        if kind == 3:
            value = name + b"\0"
        out += struct.pack("=HH", 4 + len(value), kind) + value + bytes(-len(value) % 4)
        off += (length + 3) & ~3
    struct.pack_into("=I", out, 0, len(out))
    return bytes(out)


def test_raw_path_falls_back_to_pyroute2_for_unusual_links(node_ns, monkeypatch):
    _made(node_ns)
    with in_netns(node_ns.path):
        with rtnl.iproute() as ipr:
            raw = ipr.get_link_raw(name="va")
            assert link._link_from_raw(_with_name(raw, b"va")) == link.get_link(ipr, "va")
            odd = _with_name(raw, b"v\xff")  # not UTF-8: pyroute2 keeps the bytes
            assert link._link_from_raw(odd) is None
            monkeypatch.setattr(ipr, "get_link_raw", lambda index=0, name=None: odd, raising=False)
            assert link.get_link(ipr, "va") == link._link_from_msg(ipr.parse(odd)[0])
            assert link.get_link(ipr, "va").name == b"v\xff"
            for cut in (0, 20, 31, 40):  # truncated messages are never decoded by hand
                assert link._link_from_raw(raw[:cut]) is None


def test_raw_request_bytes_and_errors_are_ipr_ones(node_ns):
    _made(node_ns)
    with in_netns(node_ns.path):
        with rtnl.iproute() as ipr:
            sent = _capture(ipr)
            for kwargs in ({"index": 1}, {"ifname": "va"}, {"ifname": "a" * 15}):
                raw_kwargs = (
                    {"index": kwargs["index"]} if "index" in kwargs else {"name": kwargs["ifname"]}
                )
                try:
                    ipr.link("get", **kwargs)
                except netlink_error():
                    pass
                try:
                    ipr.get_link_raw(**raw_kwargs)
                except netlink_error():
                    pass
                old, new = sent[-2], sent[-1]
                # the same bytes apart from the sequence number (bytes 8-11)
                assert old[:8] + old[12:] == new[:8] + new[12:]
            errors = []
            for call in (
                lambda: ipr.link("get", ifname="a" * 16),
                lambda: ipr.get_link_raw(name="a" * 16),
            ):
                with pytest.raises(netlink_error()) as info:
                    call()
                errors.append((info.value.code, str(info.value)))
            assert errors[0] == errors[1]
            with pytest.raises(netlink_error()):
                link.get_link(ipr, "a" * 16)  # ERANGE is not "no such link"


def test_raw_set_requests_are_ipr_ones(node_ns):
    _made(node_ns)
    with in_netns(node_ns.path):
        with rtnl.iproute() as ipr:
            va, br = link.get_link(ipr, "va").index, link.get_link(ipr, "br0").index
            node_ns.ip("link", "set", "va", "nomaster")
            sent = _capture(ipr)
            pairs = [
                (lambda: ipr.link("set", index=va, state="up"), lambda: link.set_up(ipr, va)),
                (
                    lambda: ipr.link("set", index=va, master=br),
                    lambda: link.set_master(ipr, va, br),
                ),
                (
                    lambda: ipr.link("set", index=va, master=br, state="up"),
                    lambda: link.set_master(ipr, va, br, up=True),
                ),
            ]
            for name in ("mode", "isolated"):
                for value in (True, False):
                    pairs.append(
                        (
                            lambda n=name, v=value: ipr.brport("set", index=va, **{n: int(v)}),
                            lambda n=name, v=value: link.set_port_flag(ipr, va, n, v),
                        )
                    )
            for old, new in pairs:
                old()
                new()
                a, b = sent[-2], sent[-1]
                assert a[:8] + a[12:] == b[:8] + b[12:]  # all but the sequence number
            assert (
                link.port_flags(ipr, va)["mode"] == 0 and link.port_flags(ipr, va)["isolated"] == 0
            )
            link.set_port_flag(ipr, va, "mode", True)
            assert link.port_flags(ipr, va)["mode"] == 1
            errors = []
            for call in (
                lambda: ipr.link("set", index=va, master=99999),
                lambda: link.set_master(ipr, va, 99999),
                lambda: ipr.link("set", index=99999, state="up"),
                lambda: link.set_up(ipr, 99999),
            ):
                with pytest.raises(netlink_error()) as info:
                    call()
                errors.append((info.value.code, str(info.value)))
            assert errors[0] == errors[1] and errors[2] == errors[3]


def test_raw_address_add_is_ipr_one(node_ns):
    import ipaddress

    _made(node_ns)
    with in_netns(node_ns.path):
        with rtnl.iproute() as ipr:
            va = link.get_link(ipr, "va").index
            sent = _capture(ipr)
            for text in (
                "10.22.0.5/16",
                "10.23.0.5/32",
                "10.24.0.4/31",
                "10.25.0.9/24",
                "fd00::5/64",
            ):
                iface = ipaddress.ip_interface(text)
                kwargs = {
                    "index": va,
                    "address": str(iface.ip),
                    "prefixlen": iface.network.prefixlen,
                }
                if broadcast_for(iface) is not None:
                    kwargs["broadcast"] = broadcast_for(iface)
                ipr.addr("add", **kwargs)  # what add_address sent before the raw path
                del_address(ipr, va, iface)
                add_address(ipr, va, iface)
                old, new = sent[-3], sent[-1]
                assert old[:8] + old[12:] == new[:8] + new[12:], text  # all but the sequence number
                assert iface in [a.iface for a in list_addresses(ipr, va)]
                errors = []
                for call in (
                    lambda k=kwargs: ipr.addr("add", **k),
                    lambda i=iface: add_address(ipr, va, i),
                ):
                    with pytest.raises(netlink_error()) as info:
                        call()
                    errors.append((info.value.code, str(info.value)))
                assert errors[0] == errors[1] and errors[0][0] == netlink.EEXIST


def test_raw_route_add_is_ipr_one(node_ns, monkeypatch):
    import ipaddress

    from plugins.linux.rtnl import RtnlSocket

    _made(node_ns)
    node_ns.ip("link", "set", "va", "nomaster")
    node_ns.ip("link", "set", "va", "up")
    node_ns.ip("link", "set", "vb", "up")
    node_ns.ip("addr", "add", "10.22.0.5/16", "dev", "va")
    node_ns.ip("-6", "addr", "add", "fd00::5/64", "dev", "va", "nodad")
    net, addr = ipaddress.ip_network, ipaddress.ip_address
    routes = [
        Route(net("0.0.0.0/0"), addr("10.22.0.1")),
        Route(net("10.244.0.0/16"), addr("10.22.0.1")),
        Route(net("10.30.0.0/16")),
        Route(net("::/0"), addr("fd00::1")),
        Route(net("fd01::/64")),
        Route(net("10.31.0.0/16"), addr("10.22.0.1"), priority=7),
    ]
    with in_netns(node_ns.path):
        with rtnl.iproute() as ipr:
            va = link.get_link(ipr, "va").index
            sent = _capture(ipr)
            for route in routes:
                with monkeypatch.context() as m:  # the pyroute2 path, as before the raw one
                    m.delattr(RtnlSocket, "add_route_raw")
                    add_route(ipr, va, route)
                node_ns.ip("route", "del", str(route.dst), "dev", "va")
                add_route(ipr, va, route)
                old, new = sent[-2], sent[-1]
                assert old[:8] + old[12:] == new[:8] + new[12:], (
                    route
                )  # all but the sequence number
            assert (
                "10.244.0.0/16 via 10.22.0.1 dev va \n" in node_ns.ip("route").stdout
            )  # proto boot
            errors = []
            for raw in (False, True):
                with monkeypatch.context() as m:
                    if not raw:
                        m.delattr(RtnlSocket, "add_route_raw")
                    with pytest.raises(netlink_error()) as info:
                        add_route(ipr, va, routes[1])  # the same IPv4 route again
                errors.append((info.value.code, str(info.value)))
            assert errors[0] == errors[1] and errors[0][0] == netlink.EEXIST


def test_raw_address_dump_matches_pyroute2(node_ns, monkeypatch):
    from plugins.linux.rtnl import RtnlSocket

    _made(node_ns)
    node_ns.ip("link", "set", "va", "up")
    node_ns.ip("link", "set", "vb", "up")
    for args in (
        ("10.22.0.5/16", "dev", "va"),
        ("10.23.0.5/32", "dev", "va"),
        ("10.24.0.1/24", "dev", "br0"),
        ("10.24.0.2/24", "dev", "br0"),
    ):
        node_ns.ip("addr", "add", *args)
    node_ns.ip("-6", "addr", "add", "fd00::5/64", "dev", "va", "nodad")
    node_ns.ip("-6", "addr", "add", "fd00::6/64", "dev", "va")  # tentative for a while: flags
    with in_netns(node_ns.path):
        with rtnl.iproute() as ipr:
            sent = _capture(ipr)
            seen = 0
            for lk in link.list_links(ipr):
                for family in (None, netlink.AF_INET, netlink.AF_INET6):
                    with monkeypatch.context() as m:  # the pyroute2 path, as before the raw one
                        m.delattr(RtnlSocket, "dump_addr_raw")
                        old = list_addresses(ipr, lk.index, family)
                    new = list_addresses(ipr, lk.index, family)
                    assert new == old, (lk.name, family)
                    a, b = sent[-2], sent[-1]
                    assert a[:8] + a[12:] == b[:8] + b[12:]  # the same dump request
                    seen += len(new)
            assert seen >= 2 * 8  # every address above (and lo's), each in two family views
            raw = ipr.dump_addr_raw()[0]
            assert _address_from_raw(raw[:20]) is None  # truncated: left to pyroute2

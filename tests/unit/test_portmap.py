"""portmap without a kernel: config resolution, rule generation, rule canonical text, GC selection.

Expected values come from the reference's own tests (plugins/meta/portmap/*_test.go at upstream
3d27709f, as recorded in docs/reference-behaviour.md §3) and from iptables-save output recorded
there [verified v1.1.1].
"""

from __future__ import annotations

import ipaddress

import pytest

from cni.errors import CNIError
from cni.result import parse_result
from plugins.linux.conntrack import _deleted_count
from plugins.linux.iptables import Batch, parse_save, save_quote
from plugins.linux.iptables_rules import canonical, ntop, split_saved
from plugins.portmap import iptables as pi
from plugins.portmap import nftables as pn
from plugins.portmap.config import PortMapNetConf, resolve
from plugins.portmap.steps import container_addresses

# The container id and mappings of the reference's own portmap tests (Go).
GO_ID = (
    "icee6giejonei6sohng6ahngee7laquohquee9shiGo7fohferakah3Feiyoolu2pei7ciPhoh7shaoX6vai3vuf0"
    "ahfaeng8yohb9ceu0daez5hashee8ooYai5wa3y"
)
GO_MAPPINGS = [
    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
    {"hostPort": 8081, "containerPort": 80, "protocol": "tcp"},
    {"hostPort": 8080, "containerPort": 81, "protocol": "udp"},
    {"hostPort": 8082, "containerPort": 82, "protocol": "udp"},
    {"hostPort": 8083, "containerPort": 83, "protocol": "tcp", "hostIP": "192.168.0.2"},
    {"hostPort": 8084, "containerPort": 84, "protocol": "tcp", "hostIP": "0.0.0.0"},
    {"hostPort": 8085, "containerPort": 85, "protocol": "tcp", "hostIP": "2001:db8:a::1"},
    {"hostPort": 8086, "containerPort": 86, "protocol": "tcp", "hostIP": "::"},
]


def settings(backend="iptables", mappings=GO_MAPPINGS, name="test", strict=True, **keys):
    conf = PortMapNetConf.model_validate(
        {"cniVersion": "1.0.0", "name": name, "type": "portmap", "backend": backend,
         "runtimeConfig": {"portMappings": mappings}, **keys}
    )  # fmt: skip
    return resolve(conf, lambda: "iptables", strict=strict)


def net(text):
    return ipaddress.ip_interface(text)


# ------------------------------------------------------------------ iptables: reference vectors


def test_chain_names_match_reference():
    assert pi.dnat_chain_name("testNetName", GO_ID) == "CNI-DN-bfd599665540dd91d5d28"
    assert pi.dnat_chain_name("test", GO_ID) == "CNI-DN-67e92b96e692a494b6b85"
    assert pi.dnat_chain_name("refnet1", "ctr1") == "CNI-DN-e58756d01a2a07fa56615"


def test_dnat_chain_v4_equals_reference_test_vectors():
    s = settings(conditionsV4=["-a", "b"], conditionsV6=["-c", "d"], snat=True)
    ch = pi.dnat_chain(s, GO_ID, net("10.0.0.2/24"))
    comment = f'dnat name: "test" id: "{GO_ID}"'
    assert ch.name == "CNI-DN-67e92b96e692a494b6b85"
    assert ch.entry_chains == ["CNI-HOSTPORT-DNAT"]
    assert ch.entry_rules == [
        ["-m", "comment", "--comment", comment, "-m", "multiport", "-p", "tcp",
         "--destination-ports", "8080,8081,8083,8084,8085,8086", "-a", "b"],
        ["-m", "comment", "--comment", comment, "-m", "multiport", "-p", "udp",
         "--destination-ports", "8080,8082", "-a", "b"],
    ]  # fmt: skip
    sm = "CNI-HOSTPORT-SETMARK"
    assert ch.rules == [
        ["-p", "tcp", "--dport", "8080", "-s", "10.0.0.2/24", "-j", sm],
        ["-p", "tcp", "--dport", "8080", "-s", "127.0.0.1", "-j", sm],
        ["-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.0.0.2:80"],
        ["-p", "tcp", "--dport", "8081", "-s", "10.0.0.2/24", "-j", sm],
        ["-p", "tcp", "--dport", "8081", "-s", "127.0.0.1", "-j", sm],
        ["-p", "tcp", "--dport", "8081", "-j", "DNAT", "--to-destination", "10.0.0.2:80"],
        ["-p", "udp", "--dport", "8080", "-s", "10.0.0.2/24", "-j", sm],
        ["-p", "udp", "--dport", "8080", "-s", "127.0.0.1", "-j", sm],
        ["-p", "udp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.0.0.2:81"],
        ["-p", "udp", "--dport", "8082", "-s", "10.0.0.2/24", "-j", sm],
        ["-p", "udp", "--dport", "8082", "-s", "127.0.0.1", "-j", sm],
        ["-p", "udp", "--dport", "8082", "-j", "DNAT", "--to-destination", "10.0.0.2:82"],
        ["-p", "tcp", "--dport", "8083", "-d", "192.168.0.2", "-s", "10.0.0.2/24", "-j", sm],
        ["-p", "tcp", "--dport", "8083", "-d", "192.168.0.2", "-s", "127.0.0.1", "-j", sm],
        [
            "-p",
            "tcp",
            "--dport",
            "8083",
            "-d",
            "192.168.0.2",
            "-j",
            "DNAT",
            "--to-destination",
            "10.0.0.2:83",
        ],
        ["-p", "tcp", "--dport", "8084", "-s", "10.0.0.2/24", "-j", sm],
        ["-p", "tcp", "--dport", "8084", "-s", "127.0.0.1", "-j", sm],
        ["-p", "tcp", "--dport", "8084", "-j", "DNAT", "--to-destination", "10.0.0.2:84"],
    ]


def test_dnat_chain_v6_and_no_snat_equal_reference_test_vectors():
    s = settings(conditionsV4=["-a", "b"], conditionsV6=["-c", "d"])
    ch = pi.dnat_chain(s, GO_ID, net("2001:db8::2/64"))
    sm = "CNI-HOSTPORT-SETMARK"
    assert ch.entry_rules[0][-2:] == ["-c", "d"]
    assert ch.rules == [
        ["-p", "tcp", "--dport", "8080", "-s", "2001:db8::2/64", "-j", sm],
        ["-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "[2001:db8::2]:80"],
        ["-p", "tcp", "--dport", "8081", "-s", "2001:db8::2/64", "-j", sm],
        ["-p", "tcp", "--dport", "8081", "-j", "DNAT", "--to-destination", "[2001:db8::2]:80"],
        ["-p", "udp", "--dport", "8080", "-s", "2001:db8::2/64", "-j", sm],
        ["-p", "udp", "--dport", "8080", "-j", "DNAT", "--to-destination", "[2001:db8::2]:81"],
        ["-p", "udp", "--dport", "8082", "-s", "2001:db8::2/64", "-j", sm],
        ["-p", "udp", "--dport", "8082", "-j", "DNAT", "--to-destination", "[2001:db8::2]:82"],
        ["-p", "tcp", "--dport", "8085", "-d", "2001:db8:a::1", "-s", "2001:db8::2/64", "-j", sm],
        [
            "-p",
            "tcp",
            "--dport",
            "8085",
            "-d",
            "2001:db8:a::1",
            "-j",
            "DNAT",
            "--to-destination",
            "[2001:db8::2]:85",
        ],
        ["-p", "tcp", "--dport", "8086", "-s", "2001:db8::2/64", "-j", sm],
        ["-p", "tcp", "--dport", "8086", "-j", "DNAT", "--to-destination", "[2001:db8::2]:86"],
    ]
    s.snat = False
    ch = pi.dnat_chain(s, GO_ID, net("10.0.0.2/24"))
    assert [r[3] for r in ch.rules] == ["8080", "8081", "8080", "8082", "8083", "8084"]
    assert all(r[-3:-1] == ["DNAT", "--to-destination"] for r in ch.rules)


def test_external_set_mark_chain_and_shared_chains():
    s = settings(mappings=GO_MAPPINGS[:1], externalSetMarkChain="PLZ-SET-MARK")
    ch = pi.dnat_chain(s, GO_ID, net("10.0.0.2/24"))
    assert ch.rules == [
        ["-p", "tcp", "--dport", "8080", "-s", "10.0.0.2/24", "-j", "PLZ-SET-MARK"],
        ["-p", "tcp", "--dport", "8080", "-s", "127.0.0.1", "-j", "PLZ-SET-MARK"],
        ["-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.0.0.2:80"],
    ]
    assert [c.name for c in pi.plan(s, "x", net("10.0.0.2/24"))] == [
        "CNI-HOSTPORT-DNAT", pi.dnat_chain_name("test", "x")
    ]
    top = pi.top_level_dnat_chain()
    assert (top.entry_chains, top.entry_rules) == (
        ["PREROUTING", "OUTPUT"], [["-m", "addrtype", "--dst-type", "LOCAL"]]
    )
    assert pi.set_mark_chain(5).rules == [
        [
            "-m",
            "comment",
            "--comment",
            "CNI portfwd masquerade mark",
            "-j",
            "MARK",
            "--set-xmark",
            "0x20/0x20",
        ]
    ]
    masq = pi.mark_masq_chain(5)
    assert masq.rules == [["-m", "mark", "--mark", "0x20/0x20", "-j", "MASQUERADE"]]
    assert masq.prepend_entry and masq.entry_chains == ["POSTROUTING"]
    assert masq.entry_rules == [["-m", "comment", "--comment", "CNI portfwd requiring masquerade"]]


def test_masq_all():
    s = settings(mappings=GO_MAPPINGS[:1], masqAll=True)
    assert pi.dnat_chain(s, "c", net("10.0.0.2/24")).rules[0][4:6] == ["-s", "0.0.0.0/0"]
    assert len(pi.dnat_chain(s, "c", net("10.0.0.2/24")).rules) == 2  # no localhost rule
    assert pi.dnat_chain(s, "c", net("fd00::2/64")).rules[0][4:6] == ["-s", "::/0"]
    # iptables-save does not print a /0 source at all
    assert canonical(pi.dnat_chain(s, "c", net("10.0.0.2/24")).rules[0]).text == (
        "-p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK"
    )


def test_save_lines_match_notes_observation():
    """docs/reference-behaviour.md §3.3, observed iptables-save output of v1.1.1 for
    refnet1/ctr1."""
    maps = [
        {"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 18081, "containerPort": 81, "protocol": "udp"},
        {"hostPort": 18082, "containerPort": 82, "protocol": "tcp", "hostIP": "10.250.1.1"},
        {"hostPort": 18083, "containerPort": 83, "protocol": "tcp", "hostIP": "fd00::1"},
    ]
    s = settings(mappings=maps, name="refnet1")
    lines = pi.save_lines(pi.plan(s, "ctr1", net("10.250.1.3/24")), ipv6=False)
    dn = "CNI-DN-e58756d01a2a07fa56615"
    comment = '"dnat name: \\"refnet1\\" id: \\"ctr1\\""'
    expected = [
        "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j '
        'CNI-HOSTPORT-MASQ',
        f"-A {dn} -s 10.250.1.0/24 -p tcp -m tcp --dport 18080 -j CNI-HOSTPORT-SETMARK",
        f"-A {dn} -s 127.0.0.1/32 -p tcp -m tcp --dport 18080 -j CNI-HOSTPORT-SETMARK",
        f"-A {dn} -p tcp -m tcp --dport 18080 -j DNAT --to-destination 10.250.1.3:80",
        f"-A {dn} -s 10.250.1.0/24 -d 10.250.1.1/32 -p tcp -m tcp --dport 18082 -j "
        f"CNI-HOSTPORT-SETMARK",
        f"-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment {comment} -m multiport --dports "
        f"18080,18082,18083 -j {dn}",
        f"-A CNI-HOSTPORT-DNAT -p udp -m comment --comment {comment} -m multiport --dports 18081 "
        f"-j {dn}",
        "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
        '-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK '
        '--set-xmark 0x2000/0x2000',
    ]
    for line in expected:
        assert line in lines
    assert not any("18083" in ln for ln in lines if ln.startswith(f"-A {dn}"))


def test_multiport_chunks_of_15_and_protocol_case_groups():
    maps = [{"hostPort": 9000 + i, "containerPort": 80, "protocol": "tcp"} for i in range(16)]
    maps.append({"hostPort": 7000, "containerPort": 80, "protocol": "TCP"})
    ch = pi.dnat_chain(settings(mappings=maps), "c", net("10.0.0.2/24"))
    specs = [(r[7], r[9]) for r in ch.entry_rules]
    assert specs == [
        ("TCP", "7000"),
        ("tcp", ",".join(str(9000 + i) for i in range(15))),
        ("tcp", "9015"),
    ]
    assert canonical([*ch.entry_rules[0], "-j", ch.name]).text.startswith("-p tcp -m comment")


def test_comment_truncated_like_reference():
    long_id = "a" * 300
    text = pi.dnat_comment("net", long_id)
    assert (
        len(text) == 256
        and text.endswith("...")
        and text[:253] == f'dnat name: "net" id: "{long_id}'[:253]
    )
    assert pi.dnat_comment("net", "c") == 'dnat name: "net" id: "c"'


def test_repeated_add_with_long_container_id_adds_nothing_again():
    """iptables keeps only the first 255 bytes of the 256-character comment the reference
    passes; the existence check must compare against that stored form, or every ADD of such a
    container appends its CNI-HOSTPORT-DNAT entry rule once more."""
    cid = "a" * 240
    conf = settings(name="pmnet", mappings=GO_MAPPINGS[:1])
    chain = pi.dnat_chain(conf, cid, net("10.0.0.2/24"))
    # the reference's 253 characters and "...", of which iptables stores 255
    stored = 'dnat name: \\"pmnet\\" id: \\"' + "a" * 229 + ".."
    port = GO_MAPPINGS[0]["hostPort"]
    saved = parse_save("\n".join([
        "*nat",
        ":CNI-HOSTPORT-DNAT - [0:0]",
        f":{chain.name} - [0:0]",
        f'-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "{stored}" -m multiport '
        f"--dports {port} -j {chain.name}",
        *(f"-A {chain.name} {canonical(r).text}" for r in chain.rules),
        "COMMIT",
    ]))  # fmt: skip
    batch = Batch(False, "nat", saved)
    pi._setup(batch, chain)
    assert batch.empty(), batch.script()


def test_canonical_comment_is_the_stored_255_bytes():
    assert canonical(["-m", "comment", "--comment", "x" * 300, "-j", "X"]) == (
        "-m comment --comment " + "x" * 255 + " -j X",
        True,
    )
    # a cut inside a multi-byte character cannot be predicted: ask iptables instead
    assert canonical(["-m", "comment", "--comment", "x" * 254 + "é", "-j", "X"]).exact is False
    assert canonical(["-m", "comment", "--comment", "x" * 253 + "é", "-j", "X"]).exact is True


def test_check_message_format_is_go_slice_of_slices():
    assert pi.go_rules([["-p", "tcp"], ["-j", "X"]]) == "[[-p tcp] [-j X]]"


# ------------------------------------------------------------------ canonical text


@pytest.mark.parametrize(
    ("args", "ipv6", "text", "exact"),
    [
        (["-p", "TCP", "--dport", "1", "-d", "10.1.2.3", "-s", "10.0.0.9/8", "-j", "X"], False,
         "-s 10.0.0.0/8 -d 10.1.2.3/32 -p tcp -m tcp --dport 1 -j X", True),
        (["-p", "6", "-m", "multiport", "--destination-ports", "1,2", "-i", "eth+", "!", "-o", "lo",
          "-m", "addrtype", "--dst-type", "local", "-j", "RETURN"], False,
         "-i eth+ ! -o lo -p tcp -m multiport --dports 1,2 -m addrtype --dst-type LOCAL "
         "-j RETURN", True),
        (["-m", "mark", "--mark", "1", "-j", "MARK", "--set-mark", "5"], False,
         "-m mark --mark 0x1 -j MARK --set-xmark 0x5/0xffffffff", True),
        (["-s", "::ffff:1.2.3.4", "-p", "udp", "!", "--dport", "80:90", "-j", "DNAT",
          "--to-destination", "[2001:db8:0:0:1:0:0:1]:80"], True,
         "-s ::ffff:1.2.3.4/128 -p udp -m udp ! --dport 80:90 -j DNAT "
         "--to-destination [2001:db8::1:0:0:1]:80", True),
        (["-m", "conntrack", "--ctstate", "new", "-j", "RETURN"], False,
         "-m conntrack --ctstate new -j RETURN", False),
        (["-s", "example.com", "-j", "RETURN"], False, "-s example.com -j RETURN", False),
    ],
)  # fmt: skip
def test_canonical(args, ipv6, text, exact):
    assert tuple(canonical(args, ipv6)) == (text, exact)


def test_save_quote_and_split_round_trip():
    for text in ["abc", "a-b_c", "a.b", "", "a b", "a'b", 'a\\b"c', "é", 'dnat name: "n" id: "c"']:
        quoted = save_quote(text)
        assert split_saved(f"-m comment --comment {quoted} -j X") == [
            "-m",
            "comment",
            "--comment",
            text,
            "-j",
            "X",
        ]
    assert (
        save_quote("a.b") == '"a.b"'
        and save_quote("a-b") == "a-b"
        and save_quote("a'b") == '"a\\\'b"'
    )


def test_ntop_like_glibc():
    assert ntop(ipaddress.ip_address("::ffff:10.0.0.1")) == "::ffff:10.0.0.1"
    assert ntop(ipaddress.ip_address("::10.0.0.1")) == "::10.0.0.1"
    assert ntop(ipaddress.ip_address("::1")) == "::1"
    assert ntop(ipaddress.ip_address("2001:db8:0:0:1:0:0:1")) == "2001:db8::1:0:0:1"


# ------------------------------------------------------------------ GC attribution (iptables)


def test_owned_chains_only_this_network():
    a = pi.dnat_chain_name("net-a", "c1")
    b = pi.dnat_chain_name("net-b", "c1")
    long_id = "x" * 300
    c = pi.dnat_chain_name("net-a", long_id)

    def entry(name: str, cid: str, chain: str) -> str:
        conf = settings(name=name, mappings=GO_MAPPINGS[:1])
        mapped = pi.dnat_chain(conf, cid, net("10.0.0.2/24"))
        return "-A CNI-HOSTPORT-DNAT " + canonical([*mapped.entry_rules[0], "-j", chain]).text

    lines = [
        "*nat",
        f":{a} - [0:0]",
        f":{b} - [0:0]",
        f":{c} - [0:0]",
        entry("net-a", "c1", a),
        entry("net-b", "c1", b),
        entry("net-a", long_id, c),
        "-A CNI-HOSTPORT-DNAT -p tcp -m multiport --dports 1 -j CNI-DN-000000000000000000000",
        "COMMIT",
    ]  # fmt: skip
    state = parse_save("\n".join(lines))
    assert pi.owned_chains(state, "net-a") == {a, c}
    assert pi.owned_chains(state, "net-b") == {b}
    assert pi.owned_chains(state, "net") == set()


# ------------------------------------------------------------------ nftables


def _fake_dump(lines):
    """What knftables' Fake dumps after running `lines`: table, sorted chains, rules per chain."""
    table, chains, rules = None, {}, {}
    for line in lines:
        words = line.split()
        if words[:2] == ["add", "table"]:
            table = line
        elif words[:2] == ["add", "chain"]:
            chains.setdefault(words[4], line)
            rules.setdefault(words[4], [])
        elif words[:2] == ["flush", "chain"]:
            rules[words[4]] = []
        elif words[:2] == ["add", "rule"]:
            rules[words[4]].append(line)
    out = [table] + [chains[c] for c in sorted(chains)]
    for c in sorted(rules):
        out += rules[c]
    return out


def test_nft_rules_equal_reference_dump():
    s = settings(backend="nftables", conditionsV4=["a", "b"], conditionsV6=["c", "d"])
    cid = "icee6giejonei6so"
    marker = pn.attachments_chain("test")
    dump = [ln for ln in _fake_dump(pn.add_lines(s, cid, net("10.0.0.2/24"))) if marker not in ln]
    c = f'comment "{cid}"'
    assert dump == [
        'add table ip cni_hostport { comment "CNI portmap plugin" ; }',
        "add chain ip cni_hostport hostip_hostports",
        "add chain ip cni_hostport hostports",
        "add chain ip cni_hostport hostports_all",
        "add chain ip cni_hostport masquerading { type nat hook postrouting priority 100 ; }",
        "add chain ip cni_hostport output { type nat hook output priority -100 ; }",
        "add chain ip cni_hostport prerouting { type nat hook prerouting priority -100 ; }",
        f"add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.0.0.2:80 {c}",
        f"add rule ip cni_hostport hostports tcp dport 8081 dnat to 10.0.0.2:80 {c}",
        f"add rule ip cni_hostport hostports udp dport 8080 dnat to 10.0.0.2:81 {c}",
        f"add rule ip cni_hostport hostports udp dport 8082 dnat to 10.0.0.2:82 {c}",
        f"add rule ip cni_hostport hostports ip daddr 192.168.0.2 tcp dport 8083 dnat to "
        f"10.0.0.2:83 {c}",
        f"add rule ip cni_hostport hostports tcp dport 8084 dnat to 10.0.0.2:84 {c}",
        "add rule ip cni_hostport hostports_all jump hostip_hostports",
        "add rule ip cni_hostport hostports_all jump hostports",
        f"add rule ip cni_hostport masquerading ip saddr 10.0.0.2 ip daddr 10.0.0.2 masquerade {c}",
        f"add rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.0.0.2 masquerade "
        f"{c}",
        "add rule ip cni_hostport output a b fib daddr type local jump hostports_all",
        "add rule ip cni_hostport prerouting a b fib daddr type local jump hostports_all",
    ]
    s.snat = False
    dump6 = [
        ln for ln in _fake_dump(pn.add_lines(s, cid, net("2001:db8::2/64"))) if marker not in ln
    ]
    assert dump6 == [
        'add table ip6 cni_hostport { comment "CNI portmap plugin" ; }',
        "add chain ip6 cni_hostport hostip_hostports",
        "add chain ip6 cni_hostport hostports",
        "add chain ip6 cni_hostport hostports_all",
        "add chain ip6 cni_hostport output { type nat hook output priority -100 ; }",
        "add chain ip6 cni_hostport prerouting { type nat hook prerouting priority -100 ; }",
        f"add rule ip6 cni_hostport hostports tcp dport 8080 dnat to [2001:db8::2]:80 {c}",
        f"add rule ip6 cni_hostport hostports tcp dport 8081 dnat to [2001:db8::2]:80 {c}",
        f"add rule ip6 cni_hostport hostports udp dport 8080 dnat to [2001:db8::2]:81 {c}",
        f"add rule ip6 cni_hostport hostports udp dport 8082 dnat to [2001:db8::2]:82 {c}",
        f"add rule ip6 cni_hostport hostports ip6 daddr 2001:db8:a::1 tcp dport 8085 dnat to "
        f"[2001:db8::2]:85 {c}",
        f"add rule ip6 cni_hostport hostports tcp dport 8086 dnat to [2001:db8::2]:86 {c}",
        "add rule ip6 cni_hostport hostports_all jump hostip_hostports",
        "add rule ip6 cni_hostport hostports_all jump hostports",
        "add rule ip6 cni_hostport output c d fib daddr type local jump hostports_all",
        "add rule ip6 cni_hostport prerouting c d fib daddr type local jump hostports_all",
    ]


def test_nft_marker_and_masq_all_and_uppercase_protocol():
    s = settings(
        backend="nftables",
        mappings=[{"hostPort": 1, "containerPort": 2, "protocol": "TCP"}],
        masqAll=True,
    )
    lines = pn.add_lines(s, "c1", net("10.0.0.2/24"))
    marker = pn.attachments_chain("test")
    assert (
        marker
        == "attachments_" + "ee26b0dd4af7e749aa1a8ee3c10ae9923f618980772e473f8819a5d4940e0db2"[:16]
    )
    assert lines[-2:] == [
        f"add chain ip cni_hostport {marker}",
        f'add rule ip cni_hostport {marker} return comment "c1"',
    ]
    assert 'add rule ip cni_hostport hostports tcp dport 1 dnat to 10.0.0.2:2 comment "c1"' in lines
    masq = [ln for ln in lines if " masquerading " in ln and ln.startswith("add rule")]
    assert masq == [
        'add rule ip cni_hostport masquerading ip saddr 0.0.0.0/0 ip daddr 10.0.0.2 masquerade '
        'comment "c1"'
    ]
    assert pn.expected_counts(s, net("10.0.0.2/24")) == (1, 1)
    assert pn.expected_counts(settings(backend="nftables"), net("10.0.0.2/24")) == (6, 2)
    assert pn.expected_counts(settings(backend="nftables", snat=False), net("fd00::2/64")) == (6, 0)


def test_nft_gc_scoping():
    mine, other = pn.attachments_chain("mine"), pn.attachments_chain("other")

    def rule(chain, cid, handle):
        return {
            "family": "ip",
            "table": "cni_hostport",
            "chain": chain,
            "comment": cid,
            "handle": handle,
        }

    rules = [
        rule("hostports", "gone", 1), rule("masquerading", "gone", 2), rule(mine, "gone", 3),
        rule("hostports", "live", 4), rule(mine, "live", 5),
        rule("hostports", "shared", 6), rule(mine, "shared", 7), rule(other, "shared", 8),
        rule("hostports", "foreign", 9),  # no marker: made by someone else, never touched
        rule("prerouting", None, 10),
    ]  # fmt: skip
    lines, stale = pn.gc_lines(rules, "mine", {"live"})
    assert stale == ["gone", "shared"]
    handles = sorted(int(ln.rsplit(" ", 1)[1]) for ln in lines)
    assert handles == [1, 2, 3, 7]


# ------------------------------------------------------------------ config


def _err(**keys):
    with pytest.raises(CNIError) as e:
        settings(**keys)
    return e.value.code, e.value.msg


def test_config_defaults():
    s = settings(backend=None, mappings=[])
    assert (s.backend, s.snat, s.mark_bit, s.masq_all, s.mappings) == (
        "iptables",
        True,
        13,
        False,
        [],
    )


@pytest.mark.parametrize(
    ("keys", "msg"),
    [
        ({"markMasqBit": 32}, "MasqMarkBit must be between 0 and 31"),
        ({"markMasqBit": -1}, "MasqMarkBit must be between 0 and 31"),
        ({"markMasqBit": 5, "externalSetMarkChain": "X"},
         "Cannot specify externalSetMarkChain and markMasqBit"),
        ({"backend": "bogus"}, 'unrecognized backend "bogus"'),
        ({"backend": "iptables", "conditionsV4": ["ip", "saddr", "1.2.3.4"]},
         "iptables backend was requested but configuration contains nftables-specific options "
         "[conditionsV4]"),
        ({"backend": "nftables", "externalSetMarkChain": "X", "conditionsV4": ["-s", "1.2.3.4"],
          "conditionsV6": ["!", "-s", "::1"]},
         "nftables backend was requested but configuration contains iptables-specific options "
         "[externalSetMarkChain conditionsV4 conditionsV6]"),
        ({"mappings": [{"hostPort": 1, "containerPort": 0, "protocol": "tcp"}]},
         "Invalid container port number: 0"),
        ({"mappings": [{"hostPort": 0, "containerPort": 1, "protocol": "tcp"}]},
         "Invalid host port number: 0"),
        ({"mappings": [{"hostPort": 70000, "containerPort": 1, "protocol": "tcp"}]},
         "Invalid host port number: 70000"),
        ({"mappings": [{"hostPort": 1, "containerPort": 65536, "protocol": "tcp"}]},
         "Invalid container port number: 65536"),
        ({"mappings": [{"hostPort": 1, "containerPort": 1, "protocol": "icmp"}]},
         'Invalid protocol: "icmp" (must be tcp, udp or sctp)'),
        ({"mappings": [{"hostPort": 1, "containerPort": 1}]}, 'Invalid protocol: "" (must be tcp, '
                                                              'udp or sctp)'),
        ({"mappings": [{"hostPort": 1, "containerPort": 1, "protocol": "tcp", "hostIP": "1.2.3"}]},
         'Invalid host IP: "1.2.3"'),
        ({"mappings": [{"hostPort": 1, "containerPort": 1, "protocol": "tcp",
                        "hostIP": "fe80::1%eth0"}]},
         'Invalid host IP: "fe80::1%eth0"'),
    ],
)  # fmt: skip
def test_config_errors(keys, msg):
    assert _err(**keys) == (7, msg)


def test_iptables_style_conditions_without_backend_default_to_iptables():
    assert settings(backend=None, conditionsV4=["-s", "1.2.3.4"]).backend == "iptables"
    assert _err(backend=None, conditionsV4=["ip", "saddr", "1.2.3.4"])[1].startswith(
        "iptables backend was requested"
    )
    assert settings(backend="nftables", conditionsV4=[""]).backend == "nftables"


def test_del_does_not_judge_mapping_values():
    s = settings(
        mappings=[{"hostPort": 70000, "containerPort": 0, "protocol": "icmp", "hostIP": "x"}],
        strict=False,
    )
    assert len(s.mappings) == 1


def test_mapping_host_ip_families():
    s = settings(mappings=[
        {"hostPort": 1, "containerPort": 1, "protocol": "tcp", "hostIP": "::ffff:10.0.0.1"},
        {"hostPort": 2, "containerPort": 1, "protocol": "tcp", "hostIP": "::"},
    ])  # fmt: skip
    m1, m2 = s.mappings
    assert (m1.host_ip, m1.applies_to(4), m1.applies_to(6), m1.destination(4)) == (
        "10.0.0.1",
        True,
        False,
        "10.0.0.1",
    )
    assert (m2.applies_to(6), m2.destination(6), m2.applies_to(4)) == (True, "", False)


def test_wrong_json_types_are_decoding_errors():
    from cni.config import load

    with pytest.raises(CNIError) as e:
        load(PortMapNetConf, {"name": "n", "runtimeConfig": {"portMappings": [{"hostPort": "80"}]}})
    assert e.value.code == 6 and "hostPort" in e.value.msg


# ------------------------------------------------------------------ container address selection
# (P92)


def test_container_address_selection():
    result = parse_result({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "br0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/n"},
                       {"name": "eth1", "sandbox": "/n"}],
        "ips": [
            {"address": "10.0.0.1/24", "interface": 0},
            {"address": "10.0.1.5/24", "interface": 3},
            {"address": "10.0.0.5/24", "interface": 2},
            {"address": "10.0.0.6/24", "interface": 2},
            {"address": "fd00::5/64", "interface": 7},
            {"address": "fd00::6/64"},
        ],
    }, "1.0.0")  # fmt: skip
    assert [str(n) for n in container_addresses(result, "eth0")] == ["10.0.0.5/24", "fd00::5/64"]
    assert [str(n) for n in container_addresses(result, "eth9")] == ["fd00::5/64"]


def test_conntrack_tool_output_parsing():
    assert (
        _deleted_count("conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted.") == 2
    )
    assert (
        _deleted_count("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.") == 0
    )
    assert _deleted_count("something else") is None


def test_json_null_leaves_zero_values_like_go():
    mapping = {"hostPort": 80, "containerPort": 81, "protocol": "tcp", "hostIP": None}
    s = settings(mappings=[mapping], masqAll=None, snat=None, markMasqBit=None, conditionsV4=None,
                 backend=None)
    assert (s.masq_all, s.snat, s.mark_bit, s.mappings[0].host_ip) == (False, True, 13, "")
    assert _err(mappings=[{"hostPort": None, "containerPort": 81, "protocol": "tcp"}]) == (
        7,
        "Invalid host port number: 0",
    )


def test_del_fast_path_detects_mappings_like_go_decoding():
    from plugins.portmap import _has_raw_mappings

    assert not _has_raw_mappings({"name": "n"})
    assert not _has_raw_mappings({"runtimeConfig": {"portMappings": []}})
    assert not _has_raw_mappings({"runtimeConfig": {"portMappings": None}})
    assert not _has_raw_mappings({"runtimeConfig": None, "snat": "not a bool"})
    assert _has_raw_mappings({"RuntimeConfig": {"PORTMAPPINGS": [{}]}})
    # then refused by the model
    assert _has_raw_mappings({"runtimeConfig": {"portMappings": "bad"}})


# --------------------------------------------------------------------------- mappings in place


def test_mappings_in_place_from_iptables_save():
    from plugins.portmap.holders import Mapped, from_iptables

    net = ipaddress.ip_interface("10.1.0.2/24")
    lines = pi.save_lines(pi.plan(settings(), "ctr-a", net), False)
    state = parse_save("*nat\n" + "\n".join(lines) + "\nCOMMIT\n")
    got = from_iptables(state.chains, pi.TOP_LEVEL_DNAT)
    wanted = {
        (m.proto, m.host_port, m.destination(4)) for m in settings().mappings if m.applies_to(4)
    }
    assert {(g.protocol, g.host_port, g.host_ip) for g in got} == wanted
    assert {(g.container_id, g.network) for g in got} == {("ctr-a", "test")}
    assert isinstance(got[0], Mapped)


def test_mappings_in_place_from_nft_json_and_clashes():
    from plugins.portmap.holders import Mapped, clashes, from_nftables

    rule = {  # as `nft -j list table ip cni_hostport` prints it
        "family": "ip",
        "table": "cni_hostport",
        "chain": "hostports",
        "handle": 2,
        "comment": "abc",
        "expr": [
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "right": "10.0.0.5",
                }
            },
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                    "right": 8080,
                }
            },
            {"dnat": {"addr": "10.1.0.2", "port": 80}},
        ],
    }
    assert from_nftables([rule]) == [Mapped("abc", "", "tcp", 8080, "10.0.0.5")]
    held = [Mapped("abc", "", "tcp", 8080, "10.0.0.5"), Mapped("def", "n", "udp", 53, "")]
    assert clashes([("tcp", 8080, "")], held, "me") == [
        "hostPort 8080/tcp on every address is already mapped by container abc"
    ]
    assert clashes([("tcp", 8080, "10.0.0.6"), ("udp", 8080, "")], held, "me") == []
    assert clashes([("udp", 53, "10.0.0.6")], held, "me") == [
        "hostPort 53/udp on 10.0.0.6 is already mapped by container def of network n"
    ]
    assert clashes([("tcp", 8080, "")], held, "abc") == []  # its own mappings (a re-ADD)

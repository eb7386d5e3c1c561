"""The leak rules the fuzz, crash, concurrency and path tests judge leftovers by."""

from __future__ import annotations

from tests.reliability import nsstate

# What the plugins (ours and the reference) keep after ADD+DEL: seen in a node namespace after
# bridge (iptables and nftables masquerading, spoof check) and portmap (both backends, snat,
# conditions) attachments were added and deleted again.
SHARED = """
table ip nat {
\tchain PREROUTING {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local counter packets 3 bytes 180 jump CNI-HOSTPORT-DNAT
\t}
\tchain POSTROUTING {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tcounter packets 0 bytes 0 jump CNI-HOSTPORT-MASQ
\t}
\tchain CNI-HOSTPORT-DNAT {
\t}
\tchain CNI-HOSTPORT-MASQ {
\t\tmeta mark & 0x00002000 == 0x00002000 counter packets 0 bytes 0 masquerade
\t}
\tchain CNI-HOSTPORT-SETMARK {
\t\tcounter packets 0 bytes 0 meta mark set mark or 0x2000
\t}
}
table ip cni_hostport {
\tcomment "CNI portmap plugin"
\tchain hostports {
\t}
\tchain hostports_all {
\t\tjump hostip_hostports
\t\tjump hostports
\t}
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip saddr 10.0.0.0/8 fib daddr type local jump hostports_all
\t}
\tchain attachments_e918fedfee17b184 {
\t}
}
table inet cni_plugins_masquerade {
\tcomment "Masquerading for plugins from github.com/containernetworking/plugins"
\tchain masq_checks {
\t\tcomment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet"
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip daddr 224.0.0.0/4 return
\t\tip6 daddr ff00::/8 return
\t\tgoto masq_checks
\t}
}
"""


def _leaks(
    extra_nft: str = "", extra_items: tuple = (), ids=("c1",), ips=("10.77.0.9",)
) -> list[str]:
    items = sorted(nsstate.nft_items(SHARED + extra_nft), key=repr) + list(extra_items)
    att = nsstate.Attachment(ids=set(ids), ips=set(ips), bridges={"fzbr0"})
    return nsstate.leaks(items, att)


def test_shared_infrastructure_is_not_a_leak() -> None:
    """Everything the plugins keep on purpose passes: tables, shared chains, their shared rules,
    a configured bridge with its address, host-local's lock / last_reserved / index files."""
    extra = (
        ("link", "fzbr0", "bridge", "", ""),
        ("addr", "fzbr0", "10.77.0.1/24"),
        ("route", 2, 254, "10.77.0.0/24", "", "fzbr0", "unicast"),
        ("file", "s", "networks/fznet/lock", "file", 0, ""),
        ("file", "s", "networks/fznet/last_reserved_ip.0", "file", 9, "x"),
        ("file", "s", "networks/fznet/.pycni-index/state", "file", 9, "x"),
        ("file", "s", "networks/fznet", "dir", 0, ""),
    )
    assert _leaks(extra_items=extra) == []
    # a gateway address (and its route) added to a configured bridge that was already there
    on_existing = (
        ("addr", "fzbr0", "fd77::1/120"),
        ("route", 10, 254, "fd77::/120", "", "fzbr0", "unicast"),
    )
    assert _leaks(extra_items=on_existing) == []
    # ... but not to any other link
    assert _leaks(extra_items=(("addr", "eth9", "fd77::1/120"),)) == ["address fd77::1/120 on eth9"]
    # markMasqBit 31: nft prints the mask of leading ones as a prefix
    bit31 = (
        "table ip6 nat {\n\tchain CNI-HOSTPORT-MASQ {\n"
        "\t\tmeta mark 0x80000000/1 counter packets 0 bytes 0 masquerade\n\t}\n}\n"
    )
    assert _leaks(extra_nft=bit31) == []


def test_per_attachment_leftovers_are_leaks() -> None:
    """A veth, a pod address, a lease, a temp file, and rules naming the container are leaks."""
    extra = (
        ("link", "veth1234", "veth", "fzbr0", "other"),
        ("addr", "eth0", "10.77.0.9/24"),
        ("file", "s", "networks/fznet/10.77.0.9", "file", 8, "x"),
        ("file", "s", "networks/fznet/.pycni-index/.lease.tmp-99", "file", 8, "x"),
        ("file", "s", "flannel/c1", "file", 80, "x"),
    )
    nft = """
table ip nat {
\tchain CNI-0123456789abcdef01234567 {
\t\tip daddr 10.77.0.0/24 counter accept
\t}
\tchain POSTROUTING {
\t\tip saddr 10.77.0.9 counter jump CNI-0123456789abcdef01234567
\t}
}
table ip cni_hostport {
\tchain hostports {
\t\ttcp dport 8080 dnat to 10.77.0.9:80 comment "c1"
\t}
}
"""
    problems = _leaks(nft, extra)
    text = "\n".join(problems)
    for needle in (
        "link veth1234",
        "address 10.77.0.9/24 on eth0",
        "networks/fznet/10.77.0.9",
        ".lease.tmp-99",
        "flannel/c1",
        "CNI-0123456789abcdef01234567",
        "dnat to 10.77.0.9",
    ):
        assert needle in text, (needle, problems)


def test_rules_injected_into_shared_places_are_leaks() -> None:
    """Rules naming no container (what a newline smuggled into a config could add) in base or
    shared chains, and chains or tables that are not shared, are leaks all the same."""
    nft = """
table ip filter {
\tchain INPUT {
\t\ttype filter hook input priority filter; policy accept;
\t\tcounter drop
\t}
}
table ip nat {
\tchain PREROUTING {
\t\tcounter accept
\t}
\tchain CNI-HOSTPORT-DNAT {
\t\ttcp dport 22 dnat to 192.0.2.9:22
\t}
\tchain EVIL {
\t}
}
table ip evil {
}
"""
    text = "\n".join(_leaks(nft))
    for needle in ("chain INPUT / counter drop", "chain PREROUTING / counter accept",
                   "dnat to 192.0.2.9:22", "chain EVIL", "table ip evil"):
        assert needle in text, (needle, text)


def test_a_failed_command_may_not_even_leave_a_bridge() -> None:
    """kernel=False (a failed ADD): a new bridge is a leak too."""
    att = nsstate.Attachment(bridges={"fzbr0"})
    assert nsstate.leaks([("link", "fzbr0", "bridge", "", "")], att, kernel=False)
    assert nsstate.leaks([("link", "fzbr0", "bridge", "", "")], att) == []

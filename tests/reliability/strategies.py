"""Hypothesis strategies for fuzz cases: a CNI environment, a stdin and a node pre-state.

A case is mostly a *plausible* input with a few things wrong (so it reaches deep code: a bridge,
a veth, a lease, firewall rules), sometimes garbage (random bytes, any JSON). Paths are written
with placeholders the runner fills in per case:

    {CASE}  the case's private directory (state dirs, subnet.env, conflists live here)
    {POD0} {POD1}  the two pod namespaces        {BIN}  dist/bin
    {FIFO}  a FIFO in the case directory (opening it for reading blocks)

Env values never contain NUL: an exec'd process cannot receive one, so it is not an input a
plugin can ever see. Stdin strings can (JSON "\\u0000").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

EXECUTABLES = ("loopback", "host-local", "bridge", "portmap", "flannel", "cnitool")
VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
ENV_KEYS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
VALID_IDS = ("fz-0", "fz-1", "fz-pre")
BRIDGES = ("fzbr0", "fzbr1", "cni0")


@dataclass
class Case:
    """One generated input. `stdin` is bytes; env values None mean "unset"."""

    exe: str
    env: dict[str, str | None]
    stdin: bytes
    pre: str = "none"  # none | attachment | link | files
    files: dict[str, bytes] = field(default_factory=dict)  # relative to {CASE}, written first
    argv: list[str] = field(default_factory=list)  # cnitool only

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (stdin as text when it decodes, else hex)."""
        try:
            stdin: Any = self.stdin.decode("utf-8")
        except UnicodeDecodeError:
            stdin = {"hex": self.stdin.hex()}
        return {
            "exe": self.exe, "env": self.env, "stdin": stdin, "pre": self.pre,
            "files": {k: v.decode("utf-8", "replace")[:500] for k, v in self.files.items()},
            "argv": self.argv,
        }


# --------------------------------------------------------------------------- leaves

_env_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)
_odd_names = st.sampled_from(
    ["", ".", "..", "../x", "../../etc", "/abs", "/etc/passwd", "a/b", "a b", "a\tb", "a\nb",
     "-a", "_a", "a..b", "x" * 16, "x" * 255, "x" * 256, "x" * 5000, "é" * 8, "\udcff",
     "a:b", "eth0 ", "a%b", "CON", "fz-0/../fz-1"]
)


# Decisions with a wanted probability: hypothesis draws small integers with a strong bias
# towards boundary values (0, 1, the maximum), so `integers(0, n) == 0` fires far more often
# than 1/(n+1). A 16-bit draw scrambled by a fixed bijection spreads those favourite values over
# the range, and three of them are combined; the choice stays a pure function of hypothesis's data
# (its replay checks need that).
_BITS = st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)).map(
    lambda t: _scramble(t[0]) ^ _scramble(t[1] ^ 0x1234) ^ _scramble(t[2] ^ 0xBEEF)
)


def _scramble(x: int) -> int:
    return (((x ^ 0x5BD1) * 40503) + 0x3A7) & 0xFFFF


def _uniform(x: int) -> float:
    return x / 0x10000


def _weighted(
    common: st.SearchStrategy, rare: st.SearchStrategy, p_rare: int = 4
) -> st.SearchStrategy:
    """`common` most of the time, `rare` with probability about 1/`p_rare`."""
    return _BITS.flatmap(lambda x: rare if _uniform(x) < 1 / p_rare else common)


def _choice(items: list[Any]) -> st.SearchStrategy:
    """A near-uniform choice among `items` (st.sampled_from favours the first ones)."""
    return _BITS.map(lambda x: items[int(_uniform(x) * len(items))])


def _maybe(draw, p: int = 2) -> bool:
    """True with probability about 1/`p`."""
    return _uniform(draw(_BITS)) < 1 / p


def _pick(draw, n: int) -> int:
    """A near-uniform integer in [0, n)."""
    return int(_uniform(draw(_BITS)) * n)


container_ids = _weighted(st.sampled_from(VALID_IDS), st.one_of(_odd_names, _env_text), p_rare=16)
ifnames = _weighted(st.sampled_from(["eth0", "net1"]), st.one_of(_odd_names, _env_text), p_rare=16)
netns_values = _weighted(
    st.sampled_from(["{POD0}", "{POD1}"]),
    st.one_of(
        st.sampled_from(
            ["/proc/self/ns/net", "/proc/thread-self/ns/net", "/run/netns/pycni-fuzz-absent",
             "{CASE}", "{CASE}/plain-file", "/dev/null", "", "relative/netns", "{POD0}/..",
             "/proc/self/ns/mnt", "/proc/self/ns/uts", "{FIFO}"]
        ),
        _env_text,
    ),
    p_rare=16,
)
cni_args = _weighted(
    st.sampled_from(["", "IgnoreUnknown=1", "IgnoreUnknown=1;K8S_POD_NAME=p;K8S_POD_NAMESPACE=n"]),
    st.one_of(
        st.sampled_from(
            [
                "IP=10.77.0.9",
                "IP=10.77.0.9/24",
                "IP=bad",
                "IP=fd77::9",
                "IgnoreUnknown=true;IP=10.77.0.300",
                "a=b=c",
                ";;",
                "=",
                "K8S_POD_NAME=p",
                "MAC=02:00:00:00:00:01",
                "IgnoreUnknown=1;MAC=zz",
            ]
        ),
        _env_text,
    ),
    p_rare=16,
)
cni_paths = _weighted(
    st.just("{BIN}"),
    st.sampled_from(
        ["", "{CASE}/nobin", "/run/pycni-fuzz-absent", "{BIN}:{CASE}", ":", "{CASE}:{BIN}"]
    ),
    p_rare=16,
)
commands = _weighted(
    _choice(["ADD"] * 8 + ["DEL", "DEL", "CHECK", "STATUS", "GC", "VERSION"]),
    st.one_of(st.sampled_from(["add", "", "ADD ", "UNKNOWN"]), _env_text),
    p_rare=12,
)


@st.composite
def envs(draw, *, netns: bool = True) -> dict[str, str | None]:
    """The CNI_* variables; each one is sometimes unset, CNI_NETNS_OVERRIDE sometimes set."""
    env: dict[str, str | None] = {
        "CNI_COMMAND": draw(commands),
        "CNI_CONTAINERID": draw(container_ids),
        "CNI_NETNS": draw(netns_values) if netns else "{POD0}",
        "CNI_IFNAME": draw(ifnames),
        "CNI_ARGS": draw(cni_args),
        "CNI_PATH": draw(cni_paths),
    }
    for key in ENV_KEYS:
        if _maybe(draw, 60):
            env[key] = None
    if _maybe(draw, 10):
        env["CNI_NETNS_OVERRIDE"] = draw(st.sampled_from(["1", "true", "0", "yes"]))
    return env


json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64), st.floats(allow_nan=False),
    st.text(max_size=20),
)
any_json = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
versions = _weighted(
    _choice(["1.0.0", "1.0.0", "1.1.0", "1.1.0", "0.4.0", "0.3.1", "0.3.0", "0.2.0", "0.1.0"]),
    st.one_of(st.sampled_from(["", "1.0", "1", "2.0.0", "0.5.0", "1.0.0.0", "x"]), json_leaf),
    p_rare=14,
)
net_names = _weighted(
    st.sampled_from(["fznet", "fznet2"]), st.one_of(_odd_names, st.text(max_size=30)), p_rare=16
)
bools = _weighted(st.booleans(), json_leaf, p_rare=24)

subnets4 = st.sampled_from(
    ["10.77.0.0/24", "10.77.0.0/30", "10.77.1.0/28", "10.77.0.0/16", "192.168.77.0/24"]
)
subnets6 = st.sampled_from(["fd77::/120", "fd77::/64", "fd77:1::/126"])
addresses = st.one_of(
    st.sampled_from(
        [
            "10.77.0.1",
            "10.77.0.9",
            "10.77.0.255",
            "10.77.1.1",
            "fd77::1",
            "fd77::9",
            "0.0.0.0",
            "::",
        ]
    ),
    st.ip_addresses().map(str),
    st.text(max_size=12),
)


def _mutate_dict(base: dict[str, Any], draw) -> dict[str, Any]:
    """Drop, retype or add a few keys of `base` (one level)."""
    out = dict(base)
    for _ in range(_pick(draw, 4)):
        op = _pick(draw, 4)
        keys = sorted(out)
        if op == 0 and keys:
            out.pop(draw(st.sampled_from(keys)))
        elif op == 1 and keys:
            out[draw(st.sampled_from(keys))] = draw(any_json)
        elif op == 2:
            out[draw(st.text(max_size=12))] = draw(any_json)
        elif op == 3 and keys:  # Go matches keys case-insensitively
            k = draw(st.sampled_from(keys))
            out[k.upper()] = out.pop(k)
    return out


@st.composite
def range_objs(draw, six: bool | None = None) -> dict[str, Any]:
    """One host-local range (IPv6 when `six`, random family when None)."""
    if six is None:
        six = _maybe(draw, 4)
    r: dict[str, Any] = {"subnet": draw(subnets6 if six else subnets4)}
    if _maybe(draw, 10):
        r["rangeStart"] = draw(addresses)
    if _maybe(draw, 10):
        r["rangeEnd"] = draw(addresses)
    if _maybe(draw, 10):
        r["gateway"] = draw(addresses)
    return r


@st.composite
def range_sets(draw) -> list[list[dict[str, Any]]]:
    """`ranges`: usually one IPv4 set, sometimes a dual-stack pair, rarely anything."""
    if _maybe(draw, 8):
        return draw(
            st.lists(st.lists(range_objs(), min_size=1, max_size=2), min_size=1, max_size=3)
        )
    sets = [[draw(range_objs(six=False))]]
    if _maybe(draw, 3):
        sets.append([draw(range_objs(six=True))])
    return sets


path_values = _weighted(
    st.sampled_from(["{CASE}/networks", "{CASE}/networks"]),
    st.sampled_from(
        ["{CASE}/networks/../networks2", "{CASE}/../escaped", "rel-data", "../rel-escaped", "",
         "{CASE}/plain-file", "{CASE}/" + "d" * 300, "{CASE}/" + "/d" * 2100, "{CASE}/nul\x00x",
         "/dev/null", "{CASE}/networks/", "{CASE}//networks", "{FIFO}"]
    ),
    p_rare=12,
)


@st.composite
def host_local_ipam(draw) -> dict[str, Any]:
    """An `ipam` object for host-local."""
    ipam: dict[str, Any] = {"type": "host-local", "dataDir": draw(path_values)}
    form = _pick(draw, 3)
    if form == 0:
        ipam.update(draw(range_objs()))
    else:
        ipam["ranges"] = draw(range_sets())
    if _maybe(draw, 3):
        ipam["routes"] = draw(
            st.lists(
                st.one_of(
                    st.fixed_dictionaries(
                        {"dst": st.sampled_from(["0.0.0.0/0", "::/0", "10.0.0.0/8", "bad"])}
                    ),
                    st.fixed_dictionaries({"dst": st.just("10.9.0.0/16"), "gw": addresses}),
                ),
                max_size=3,
            )
        )
    if _maybe(draw, 7):
        # FIFO and /dev/zero hit a known bug (known_bugs.py) that costs a hang timeout: rarer.
        ipam["resolvConf"] = draw(_weighted(
            _choice(["{CASE}/resolv.conf", "{CASE}/absent", "{CASE}", "/dev/null"]),
            st.sampled_from(["{FIFO}", "/dev/zero"]), p_rare=25,
        ))
    if _maybe(draw, 10):
        ipam = _mutate_dict(ipam, draw)
    return ipam


@st.composite
def runtime_config(draw) -> dict[str, Any]:
    """`args` / `runtimeConfig` extras: requested IPs, ipRanges, a MAC."""
    rc: dict[str, Any] = {}
    if _maybe(draw, 4):
        rc["ips"] = draw(st.lists(st.one_of(addresses, st.just("10.77.0.9/24")), max_size=2))
    if _maybe(draw, 6):
        rc["ipRanges"] = [[draw(range_objs())]]
    if _maybe(draw, 6):
        rc["mac"] = draw(
            st.sampled_from(["02:00:00:00:00:09", "zz", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"])
        )
    return rc


@st.composite
def result_objs(draw, version: Any) -> dict[str, Any]:
    """A prevResult as a bridge would return it for {POD0}, sometimes odd."""
    four = "10.77.0.9/24"
    six = "fd77::9/120"
    ips = [
        {
            "address": four,
            "gateway": "10.77.0.1",
            "interface": draw(st.sampled_from([2, 0, 7, None])),
        }
    ]
    if _maybe(draw, 3):
        ips.append({"address": six, "gateway": "fd77::1", "interface": 2})
    res: dict[str, Any] = {
        "cniVersion": version if isinstance(version, str) else "1.0.0",
        "interfaces": [
            {"name": "fzbr0", "mac": "02:00:00:00:00:01"},
            {"name": "vethfz", "mac": "02:00:00:00:00:02"},
            {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": "{POD0}"},
        ],
        "ips": [{k: v for k, v in ip.items() if v is not None} for ip in ips],
    }
    if _maybe(draw, 8):
        res = _mutate_dict(res, draw)
    if _maybe(draw, 10):
        return {"cniVersion": "0.2.0", "ip4": {"ip": four}}
    return res


def _common(draw, type_name: str) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": draw(versions),
        "name": draw(net_names),
        "type": type_name,
    }
    if _maybe(draw, 5):
        extra = draw(runtime_config())
        if extra:
            if _maybe(draw):
                conf["runtimeConfig"] = extra
            else:
                conf["args"] = {"cni": extra}
    return conf


@st.composite
def bridge_confs(draw, *, with_ipam: bool = True) -> dict[str, Any]:
    """A bridge configuration with host-local IPAM (or none: L2)."""
    conf = _common(draw, "bridge")
    conf["bridge"] = draw(
        _weighted(st.sampled_from(BRIDGES[:2]), st.one_of(_odd_names, st.just("lo")), p_rare=10)
    )
    for key, p in (
        ("isGateway", 2), ("isDefaultGateway", 3), ("forceAddress", 4), ("ipMasq", 2),
        ("hairpinMode", 4), ("promiscMode", 4), ("macspoofchk", 4), ("enabledad", 4),
        ("portIsolation", 4), ("preserveDefaultVlan", 6), ("disableContainerInterface", 24),
    ):
        if _maybe(draw, p):
            conf[key] = draw(bools)
    if _maybe(draw, 5):
        conf["ipMasqBackend"] = draw(
            _weighted(_choice(["iptables", "nftables"]), st.sampled_from(["", "pf"]), p_rare=10)
        )
    if _maybe(draw, 5):
        conf["mtu"] = draw(
            _weighted(_choice([0, 1400, 9000]), st.sampled_from([67, 70000, -1]), p_rare=8)
        )
    # This kernel may lack bridge VLAN filtering: every VLAN setting then ends in its refusal.
    if _maybe(draw, 20):
        conf["vlan"] = draw(st.sampled_from([0, 1, 100, 4094, 4095, -1]))
    if _maybe(draw, 24):
        conf["vlanTrunk"] = draw(
            st.lists(
                st.one_of(
                    st.fixed_dictionaries({"id": st.integers(-1, 4096)}),
                    st.fixed_dictionaries(
                        {"minID": st.integers(0, 50), "maxID": st.integers(0, 50)}
                    ),
                ),
                max_size=2,
            )
        )
    if _maybe(draw, 8):
        conf["dns"] = {"nameservers": ["10.77.0.53"], "search": ["fz.local"]}
    if with_ipam and not _maybe(draw, 10):
        conf["ipam"] = draw(host_local_ipam())
    if _maybe(draw, 10):
        conf = _mutate_dict(conf, draw)
    return conf


@st.composite
def host_local_confs(draw) -> dict[str, Any]:
    """A network configuration as host-local receives it (its parent's, with `ipam`)."""
    conf = _common(draw, "bridge")
    conf["ipam"] = draw(host_local_ipam())
    if _maybe(draw, 6):
        conf["prevResult"] = draw(result_objs(conf["cniVersion"]))
    if _maybe(draw, 10):
        conf["cni.dev/valid-attachments"] = [{"containerID": "fz-pre", "ifname": "eth0"}]
    if _maybe(draw, 10):
        conf = _mutate_dict(conf, draw)
    return conf


@st.composite
def loopback_confs(draw) -> dict[str, Any]:
    """A loopback configuration."""
    conf = _common(draw, "loopback")
    if _maybe(draw, 5):
        conf["prevResult"] = draw(result_objs(conf["cniVersion"]))
    if _maybe(draw, 10):
        conf = _mutate_dict(conf, draw)
    return conf


_conditions = st.lists(
    st.sampled_from(
        ["-s", "10.0.0.0/8", "! -d 10.9.0.0/16", "-m comment --comment x", "ip saddr 10.0.0.0/8",
         "--bogus", "x\n-A INPUT -j DROP", "x\n*filter", "\"", "'", ";", "# c"]
    ),
    max_size=3,
)


@st.composite
def port_mappings(draw) -> list[Any]:
    """runtimeConfig.portMappings entries."""
    one = st.fixed_dictionaries(
        {
            "hostPort": _weighted(
                _choice([8080, 8081, 1, 65535]), st.integers(-5, 70000), p_rare=10
            ),
            "containerPort": _weighted(_choice([80, 53]), st.integers(-5, 70000), p_rare=10),
            "protocol": _weighted(
                _choice(["tcp", "udp", "sctp", "TCP"]),
                st.sampled_from(["icmp", "", "tcp\n-A INPUT -j DROP"]),
                p_rare=10,
            ),
        },
        optional={
            "hostIP": _weighted(
                _choice(["", "0.0.0.0", "::", "127.0.0.1", "10.77.0.1", "fd77::1"]),
                st.sampled_from(["bad", "1.2.3.4\n"]),
                p_rare=8,
            )
        },
    )
    return draw(st.lists(_weighted(one, json_leaf, p_rare=16), min_size=1, max_size=3))


@st.composite
def portmap_confs(draw) -> dict[str, Any]:
    """A portmap configuration chained after a bridge result."""
    conf = _common(draw, "portmap")
    conf["capabilities"] = {"portMappings": True}
    conf["runtimeConfig"] = {"portMappings": draw(port_mappings())}
    if not _maybe(draw, 8):
        conf["prevResult"] = draw(result_objs(conf["cniVersion"]))
    if _maybe(draw, 3):
        conf["snat"] = draw(bools)
    if _maybe(draw, 3):
        conf["backend"] = draw(
            _weighted(_choice(["iptables", "nftables"]), st.sampled_from(["", "pf"]), p_rare=10)
        )
    if _maybe(draw, 8):
        conf["markMasqBit"] = draw(st.sampled_from([13, 0, 31, 32, -1]))
    if _maybe(draw, 10):
        conf["externalSetMarkChain"] = draw(
            st.sampled_from(
                ["KUBE-MARK-MASQ", "", "CNI-HOSTPORT-SETMARK", "x y", "X\n-A INPUT -j DROP"]
            )
        )
    if _maybe(draw, 8):
        conf["conditionsV4"] = draw(_conditions)
    if _maybe(draw, 10):
        conf["conditionsV6"] = draw(_conditions)
    if _maybe(draw, 6):
        conf["masqAll"] = draw(bools)
    if _maybe(draw, 10):
        conf["cni.dev/valid-attachments"] = [{"containerID": "fz-pre", "ifname": "eth0"}]
    if _maybe(draw, 10):
        conf = _mutate_dict(conf, draw)
    return conf


subnet_env_lines = st.lists(
    st.one_of(
        st.sampled_from(
            ["FLANNEL_NETWORK=10.244.0.0/16", "FLANNEL_SUBNET=10.244.3.1/24", "FLANNEL_MTU=1450",
             "FLANNEL_IPMASQ=true", "FLANNEL_IPMASQ=false", "FLANNEL_IPV6_NETWORK=fd44::/56",
             "FLANNEL_IPV6_SUBNET=fd44:0:0:3::1/64", "FLANNEL_MTU=0", "FLANNEL_MTU=70000",
             "FLANNEL_MTU", "FLANNEL_SUBNET=bad", "FLANNEL_NETWORK=10.244.0.0/16,10.245.0.0/16",
             "FLANNEL_SUBNET=10.244.3.1/32", " FLANNEL_MTU = 1450", 'FLANNEL_IPMASQ="true"', "#x"]
        ),
        st.text(max_size=30),
    ),
    max_size=8,
)
_GOOD_ENV = [
    "FLANNEL_NETWORK=10.244.0.0/16",
    "FLANNEL_SUBNET=10.244.3.1/24",
    "FLANNEL_MTU=1450",
    "FLANNEL_IPMASQ=true",
]


@st.composite
def subnet_envs(draw) -> bytes:
    """subnet.env content: mostly complete, sometimes anything."""
    if _maybe(draw, 8):
        lines = draw(subnet_env_lines)
    else:
        lines = list(_GOOD_ENV)
        if _maybe(draw, 3):
            lines += ["FLANNEL_IPV6_NETWORK=fd44::/56", "FLANNEL_IPV6_SUBNET=fd44:0:0:3::1/64"]
    return ("\n".join(lines) + "\n").encode()


@st.composite
def flannel_confs(draw) -> dict[str, Any]:
    """A flannel configuration whose delegate is our bridge with host-local."""
    conf = _common(draw, "flannel")
    conf["subnetFile"] = draw(
        _weighted(
            st.just("{CASE}/subnet.env"),
            _weighted(
                st.sampled_from(
                    [
                        "{CASE}/absent.env",
                        "{CASE}",
                        "{CASE}/../x/../subnet.env",
                        "/dev/null",
                        "{CASE}/nul\x00",
                    ]
                ),
                st.sampled_from(["/dev/zero", "{FIFO}"]),
                p_rare=6,
            ),
            p_rare=12,
        )
    )
    conf["dataDir"] = draw(
        _weighted(
            st.just("{CASE}/flannel"),
            st.sampled_from(
                [
                    "{CASE}/../escaped-flannel",
                    "{CASE}/plain-file",
                    "rel-flannel",
                    "{CASE}/" + "f" * 300,
                    "{CASE}/f\x00",
                    "/dev/null",
                ]
            ),
            p_rare=12,
        )
    )
    conf["subnetFileWait"] = draw(
        _weighted(st.just(0), st.sampled_from([0.05, -1, 601, "1", None]), p_rare=12)
    )
    if _maybe(draw, 4):
        conf["subnetFileLenient"] = draw(bools)
    delegate: dict[str, Any] = {}
    if not _maybe(draw, 6):
        delegate["bridge"] = draw(_weighted(st.sampled_from(BRIDGES[:2]), _odd_names, p_rare=10))
    for key in ("isGateway", "isDefaultGateway", "ipMasq", "hairpinMode", "forceAddress"):
        if _maybe(draw, 5):
            delegate[key] = draw(bools)
    if _maybe(draw, 8):
        delegate["type"] = draw(
            st.sampled_from(
                [
                    "bridge",
                    "host-local",
                    "loopback",
                    "portmap",
                    "absent",
                    "flannel",
                    "../bin/bridge",
                ]
            )
        )
    if _maybe(draw, 8):
        delegate["mtu"] = draw(st.sampled_from([1400, 67, 70000]))
    if delegate or _maybe(draw):
        conf["delegate"] = delegate
    ipam: dict[str, Any] = {"dataDir": draw(path_values)}
    if _maybe(draw, 10):
        ipam["routes"] = [{"dst": draw(st.sampled_from(["10.9.0.0/16", "bad", "fd99::/64"]))}]
    conf["ipam"] = ipam
    if _maybe(draw, 8):
        conf["runtimeConfig"] = {
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
        }
    if _maybe(draw, 10):
        conf["cni.dev/valid-attachments"] = [{"containerID": "fz-pre", "ifname": "eth0"}]
    if _maybe(draw, 10):
        conf = _mutate_dict(conf, draw)
    return conf


CONF_STRATEGIES = {
    "loopback": loopback_confs,
    "host-local": host_local_confs,
    "bridge": bridge_confs,
    "portmap": portmap_confs,
    "flannel": flannel_confs,
}


@st.composite
def stdins(draw, exe: str) -> bytes:
    """Stdin for a plugin: usually its JSON config, sometimes damaged or random."""
    kind = _pick(draw, 30)
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return json.dumps(draw(any_json)).encode()
    conf = draw(CONF_STRATEGIES[exe]())
    data = json.dumps(conf).encode()
    if kind == 2:
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == 3:
        at = draw(st.integers(0, len(data)))
        return data[:at] + b"\xff" + data[at:]
    if kind == 4:
        return b"[" * 2000 + b"]" * 2000  # deep nesting
    return data


_STRAY_FILES = st.sampled_from(
    [
        {"networks/fznet/10.77.0.2": b""},
        {"networks/fznet/10.77.0.3": b"fz-0\r\n"},
        {"networks/fznet/last_reserved_ip.0": b"garbage"},
        {"networks/fznet/lock/x": b""},
        {"networks/fznet/.pycni-index/state": b"{torn"},
        {"networks/fznet/.pycni-index/00": b"\x00\x00"},
        {"flannel/fz-0": b""},
        {"flannel/fz-0": b'{"type":"bridge","name":"fznet"'},
        {"flannel/fz-1": b'{"cniVersion":"1.0.0","name":"fznet","type":"absent"}'},
        {"cache/results/fznet-fz-0-eth0": b"{torn"},
    ]
)


@st.composite
def cases(draw, exe: str) -> Case:
    """A whole case for plugin executable `exe` (not cnitool)."""
    env = draw(envs())
    stdin = draw(stdins(exe))
    files: dict[str, bytes] = {
        "plain-file": b"not a namespace\n",
        "resolv.conf": b"nameserver 10.77.0.53\nsearch fz.local\n",
    }
    if exe == "flannel":
        files["subnet.env"] = draw(subnet_envs())
    pre = ["none"] * 5 + ["attachment", "attachment", "link", "files"]
    pre = pre[_pick(draw, len(pre))]
    if exe == "loopback" and pre in ("attachment", "link"):
        pre = "none"
    if pre == "files":
        files.update(draw(_STRAY_FILES))
    return Case(exe=exe, env=env, stdin=stdin, pre=pre, files=files)


# --------------------------------------------------------------------------- cnitool


@st.composite
def conflists(draw) -> dict[str, Any]:
    """A network list of our plugins (loopback, bridge+host-local, portmap, flannel)."""
    version = draw(versions)
    plugins: list[Any] = []
    first = draw(st.sampled_from(["bridge", "flannel", "loopback", "host-local-alone"]))
    if first == "bridge":
        plugins.append(
            {k: v for k, v in draw(bridge_confs()).items() if k not in ("cniVersion", "name")}
        )
    elif first == "flannel":
        plugins.append(
            {k: v for k, v in draw(flannel_confs()).items() if k not in ("cniVersion", "name")}
        )
    elif first == "loopback":
        plugins.append({"type": "loopback"})
    else:
        plugins.append({"type": "host-local", "ipam": draw(host_local_ipam())})
    if _maybe(draw):
        pm = {"type": "portmap", "capabilities": {"portMappings": True}}
        if _maybe(draw, 3):
            pm["backend"] = draw(st.sampled_from(["iptables", "nftables"]))
        plugins.append(pm)
    if _maybe(draw, 8):
        plugins.append(draw(any_json))
    net: dict[str, Any] = {"cniVersion": version, "name": "fznet", "plugins": plugins}
    if _maybe(draw, 8):
        net["disableCheck"] = draw(bools)
    if _maybe(draw, 5):
        net = _mutate_dict(net, draw)
    return net


@st.composite
def cnitool_cases(draw) -> Case:
    """A cnitool run: argv, environment and the files in its NETCONFPATH."""
    cmd = draw(_weighted(st.sampled_from(["add", "add", "del", "check", "status", "gc"]),
                         st.sampled_from(["", "help", "--help", "bogus", "ADD"]), p_rare=10))
    name = draw(_weighted(st.just("fznet"), st.one_of(_odd_names, st.just("absent")), p_rare=8))
    netns = draw(_weighted(st.sampled_from(["{POD0}", "{POD1}"]), netns_values, p_rare=6))
    argv = [cmd, name, netns]
    if _maybe(draw, 4):
        argv += draw(
            st.sampled_from(
                [
                    ["-i", "net1"],
                    ["--ifname=eth1"],
                    ["-i"],
                    ["-i", "x" * 20],
                    ["--bogus"],
                    ["extra"],
                ]
            )
        )
    if _maybe(draw, 12):
        argv = draw(st.lists(_env_text, max_size=4))
    env: dict[str, str | None] = {
        "NETCONFPATH": draw(
            _weighted(
                st.just("{CASE}/net.d"),
                st.sampled_from(["", "{CASE}/absent", "{CASE}/plain-file", "{FIFO}"]),
                p_rare=10,
            )
        ),
        "CNI_PATH": draw(cni_paths),
        "CNI_CACHE_DIR": draw(
            _weighted(
                st.just("{CASE}/cache"),
                st.sampled_from(
                    ["", "{CASE}/plain-file", "{CASE}/../escaped-cache", "{CASE}/" + "c" * 300]
                ),
                p_rare=10,
            )
        ),
    }
    if _maybe(draw, 4):
        env["CAP_ARGS"] = draw(st.one_of(
            st.just('{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}'),
            st.sampled_from(["", "null", "[]", "{", '{"portMappings":"x"}']), _env_text))
    if _maybe(draw, 5):
        env["CNI_ARGS"] = draw(cni_args)
    if _maybe(draw, 8):
        env["CNI_IFNAME"] = draw(ifnames)
    kind = _pick(draw, 10)
    if kind == 0:
        content = draw(st.binary(max_size=64))
    elif kind == 1:
        content = json.dumps(draw(any_json)).encode()
    else:
        content = json.dumps(draw(conflists())).encode()
    files = {
        "plain-file": b"x\n",
        "net.d/10-fznet.conflist": content,
        "subnet.env": ("\n".join(_GOOD_ENV) + "\n").encode(),
        "resolv.conf": b"nameserver 10.77.0.53\n",
    }
    if _maybe(draw, 6):
        files["net.d/20-other.conf"] = draw(
            st.sampled_from(
                [b"{", b'{"name":"fznet","type":"loopback","cniVersion":"1.0.0"}', b"\xff"]
            )
        )
    pre = "files" if _maybe(draw, 7) else "none"
    if pre == "files":
        files.update(draw(_STRAY_FILES))
    return Case(exe="cnitool", env=env, stdin=b"", pre=pre, files=files, argv=argv)


def case_strategy(exe: str) -> st.SearchStrategy[Case]:
    """The case strategy for one executable."""
    return cnitool_cases() if exe == "cnitool" else cases(exe)

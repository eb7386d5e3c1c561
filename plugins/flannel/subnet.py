"""flanneld's subnet.env: parsing with the reference rules (docs/flannel-behaviour.md §2), loading,
waiting.

The file is `KEY=VALUE` lines. Strict mode (the default) is the reference: keys matched exactly,
values used raw, unknown lines ignored, last occurrence wins. Lenient mode also strips blanks
around keys, values and list items, and one level of matching quotes around a value. Inputs
that crash the reference (a known key without `=`) are clean errors here, and FLANNEL_MTU must be
a usable MTU (68..65535).

Every failure is a `SubnetEnvError` whose text is the reference's inner message; `load()` wraps
it into the CNI error the plugin prints.
"""

from __future__ import annotations

import ipaddress
import sys
import time
from dataclasses import dataclass, field

from cni.errors import ERR_INTERNAL, ERR_TRY_AGAIN_LATER, CNIError, one_line, os_error_text
from cni.fileutil import read_small_file
from cni.gocompat.cidr import canonical_cidr
from cni.gocompat.json import quote

DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env"

KEYS = (
    "FLANNEL_NETWORK",
    "FLANNEL_SUBNET",
    "FLANNEL_IPV6_NETWORK",
    "FLANNEL_IPV6_SUBNET",
    "FLANNEL_MTU",
    "FLANNEL_IPMASQ",
)
_MAX_LINE = 64 * 1024  # Go's bufio.Scanner token limit
MTU_MIN, MTU_MAX = 68, 65535


class SubnetEnvError(Exception):
    """subnet.env could not be used; str() is the reference's inner message."""

    def __init__(self, msg: str, *, missing_file: bool = False) -> None:
        super().__init__(msg)
        self.missing_file = missing_file


@dataclass
class SubnetEnv:
    """What flanneld published: networks (in file order, de-duplicated), node subnets, MTU, masq.

    Networks and subnets are canonical network texts (host bits cleared, e.g. "10.1.17.0/24").
    """

    networks: list[str] = field(default_factory=list)
    subnet: str | None = None
    ip6_networks: list[str] = field(default_factory=list)
    ip6_subnet: str | None = None
    mtu: int | None = None
    ipmasq: bool | None = None

    def missing(self) -> list[str]:
        """Missing keys, in the reference's order and grouping (empty when complete)."""
        out: list[str] = []
        if not self.networks and not self.ip6_networks:
            out += ["FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK"]
        if self.subnet is None and self.ip6_subnet is None:
            out += ["FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET"]
        if self.mtu is None:
            out.append("FLANNEL_MTU")
        if self.ipmasq is None:
            out.append("FLANNEL_IPMASQ")
        return out

    def ranges(self) -> list[list[dict[str, str]]]:
        """host-local range sets: the IPv4 subnet's set first, then the IPv6 one."""
        return [[{"subnet": sn}] for sn in (self.subnet, self.ip6_subnet) if sn]

    def route_dsts(self) -> list[str]:
        """Route destinations: every IPv4 network, then every IPv6 network, in file order."""
        return [*self.networks, *self.ip6_networks]

    def warnings(self) -> list[str]:
        """Oddities the reference accepts silently (cross-family values, subnet outside
        networks)."""
        out: list[str] = []
        for key, values, want in (
            ("FLANNEL_NETWORK", self.networks, 4),
            ("FLANNEL_SUBNET", [self.subnet] if self.subnet else [], 4),
            ("FLANNEL_IPV6_NETWORK", self.ip6_networks, 6),
            ("FLANNEL_IPV6_SUBNET", [self.ip6_subnet] if self.ip6_subnet else [], 6),
        ):
            for v in values:
                if ipaddress.ip_network(v).version != want:
                    out.append(f"{key}={v} is not an IPv{want} network")
        for sn, nws in ((self.subnet, self.networks), (self.ip6_subnet, self.ip6_networks)):
            if sn and nws:
                net = ipaddress.ip_network(sn)
                inside = any(
                    net.version == n.version and net.subnet_of(n)
                    for n in map(ipaddress.ip_network, nws)
                )
                if not inside:
                    out.append(f"subnet {sn} is not inside any of the networks {', '.join(nws)}")
        if self.ip6_subnet and not self.ip6_networks and self.networks:
            out.append(f"IPv6 subnet {self.ip6_subnet} has no FLANNEL_IPV6_NETWORK")
        if self.subnet and not self.networks and self.ip6_networks:
            out.append(f"IPv4 subnet {self.subnet} has no FLANNEL_NETWORK")
        return out


def _network(text: str) -> str:
    """`text` parsed like Go's net.ParseCIDR, returned as the network (host bits cleared)."""
    try:
        canon = canonical_cidr(text)
    except ValueError as e:
        raise SubnetEnvError(str(e)) from None
    return str(ipaddress.ip_network(canon, strict=False))


def _network_list(value: str, lenient: bool) -> list[str]:
    out: list[str] = []
    for item in value.split(","):
        nw = _network(item.strip() if lenient else item)
        if nw not in out:  # same address and mask: listed once, first position kept
            out.append(nw)
    return out


def _mtu(value: str) -> int:
    # strconv.ParseUint(value, 10, 32): ASCII digits only, no sign, fits in 32 bits.
    if not value or not value.isascii() or not value.isdigit():
        raise SubnetEnvError(f"strconv.ParseUint: parsing {quote(value)}: invalid syntax")
    mtu = int(value)
    if mtu > 0xFFFFFFFF:
        raise SubnetEnvError(f"strconv.ParseUint: parsing {quote(value)}: value out of range")
    if not MTU_MIN <= mtu <= MTU_MAX:
        raise SubnetEnvError(f"FLANNEL_MTU={value} is not a usable MTU ({MTU_MIN}..{MTU_MAX})")
    return mtu


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _lines(text: str) -> list[str]:
    """Lines as Go's bufio.Scanner (ScanLines) yields them: split on \\n, one trailing \\r
    dropped."""
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    out = []
    for line in parts:
        if len(line) >= _MAX_LINE:
            raise SubnetEnvError("bufio.Scanner: token too long")
        out.append(line[:-1] if line.endswith("\r") else line)
    return out


def parse(text: str, path: str, *, lenient: bool = False) -> SubnetEnv:
    """Parse subnet.env content read from `path`; raises SubnetEnvError with the reference text.

    The result is complete (every required key present); `path` is only used in messages.
    """
    env = SubnetEnv()
    for line in _lines(text):
        key, sep, value = line.partition("=")
        if lenient:
            key, value = key.strip(), _unquote(value.strip())
        if key not in KEYS:
            continue
        if not sep:
            raise SubnetEnvError(f"invalid line {quote(line)}: expected {key}=<value>")
        if key == "FLANNEL_NETWORK":
            env.networks = _network_list(value, lenient)
        elif key == "FLANNEL_IPV6_NETWORK":
            env.ip6_networks = _network_list(value, lenient)
        elif key == "FLANNEL_SUBNET":
            env.subnet = _network(value)
        elif key == "FLANNEL_IPV6_SUBNET":
            env.ip6_subnet = _network(value)
        elif key == "FLANNEL_MTU":
            env.mtu = _mtu(value)
        else:  # FLANNEL_IPMASQ: only the exact word "true" is true, but the key counts as given
            env.ipmasq = value == "true"
    missing = env.missing()
    if missing:
        raise SubnetEnvError(f"{path} is missing {', '.join(missing)}")
    return env


def read(path: str, *, lenient: bool = False) -> SubnetEnv:
    """Read and parse the file at `path`; SubnetEnvError (missing_file=True when it does not
    exist)."""
    try:
        raw = read_small_file(path)
    except FileNotFoundError as e:
        raise SubnetEnvError(f"open {path}: {os_error_text(e)}", missing_file=True) from None
    except IsADirectoryError as e:
        raise SubnetEnvError(f"read {path}: {os_error_text(e)}") from None
    except OSError as e:
        raise SubnetEnvError(f"open {path}: {os_error_text(e)}") from None
    return parse(raw.decode("utf-8", "surrogateescape"), path, lenient=lenient)


def message(inner: str) -> str:
    """The reference's full diagnostic around an inner subnet.env message."""
    return (
        f"failed to load flannel 'subnet.env' file: {one_line(inner, 1000)}. "
        "Check the flannel pod log for this node."
    )


def load(
    path: str, *, lenient: bool = False, wait: float = 0.0, code: int = ERR_INTERNAL
) -> SubnetEnv:
    """Read subnet.env, waiting up to `wait` seconds for it to appear; CNIError on failure.

    A file that is still missing after the wait is CNIError 11 (try again later: flanneld has
    not written it yet) when `wait` > 0, else `code`; any other problem is `code`. The message is
    the reference's. Warnings about odd but accepted content go to stderr.
    """
    deadline = time.monotonic() + max(0.0, wait)
    delay = 0.02
    while True:
        try:
            env = read(path, lenient=lenient)
            break
        except SubnetEnvError as e:
            remaining = deadline - time.monotonic()
            if e.missing_file and remaining > 0:
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 0.25)
                continue
            if e.missing_file and wait > 0:
                raise CNIError(
                    ERR_TRY_AGAIN_LATER,
                    message(str(e)),
                    f"waited {wait:g}s for flanneld to write {path}",
                ) from None
            raise CNIError(code, message(str(e))) from None
    for text in env.warnings():
        sys.stderr.write(f"flannel: warning: {path}: {text}\n")
    return env

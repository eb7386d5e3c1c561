"""Configuration of the bridge plugin (docs/reference-behaviour.md §2.1): the model and its checks.

`load(config, cni_args)` is the one way in: it decodes the config, checks the VLAN settings and
resolves the container MAC from runtimeConfig, args and CNI_ARGS into a `Settings`;
`preflight(settings)` runs the reference's ADD checks that need no kernel
(docs/reference-behaviour.md §2.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from cni.args import load_args
from cni.config import NetConf, NullsKeepDefaults
from cni.config import load as load_model
from cni.errors import ERR_INVALID_NETWORK_CONFIG, CNIError
from plugins.linux.link import parse_mac

DEFAULT_BRIDGE = "cni0"
IPMASQ_BACKENDS = ("iptables", "nftables")
# ETH_MIN_MTU / ETH_MAX_MTU: what the kernel accepts for a bridge or a veth.
MTU_MIN = 68
MTU_MAX = 65535


class VlanTrunk(NullsKeepDefaults):
    """One `vlanTrunk` entry: a single `id` and/or a `minID`..`maxID` range."""

    minID: int | None = None
    maxID: int | None = None
    id: int | None = None


class BridgeCNIArgs(NullsKeepDefaults):
    """`args.cni`: the bridge reads only `mac`."""

    mac: str = ""


class BridgeArgs(NullsKeepDefaults):
    """The `args` object; only `args.cni` matters to the bridge."""

    cni: BridgeCNIArgs | None = None


class BridgeRuntimeConfig(NullsKeepDefaults):
    """`runtimeConfig`: capability `mac`."""

    mac: str = ""


class BridgeNetConf(NetConf, NullsKeepDefaults):
    """The bridge plugin's configuration (docs/reference-behaviour.md §2.1)."""

    bridge: str = DEFAULT_BRIDGE
    isGateway: bool = False
    isDefaultGateway: bool = False
    forceAddress: bool = False
    ipMasq: bool = False
    ipMasqBackend: str | None = None
    mtu: int = 0
    hairpinMode: bool = False
    promiscMode: bool = False
    vlan: int = 0
    vlanTrunk: list[VlanTrunk | None] | None = None
    preserveDefaultVlan: bool = False
    macspoofchk: bool = False
    enabledad: bool = False
    disableContainerInterface: bool = False
    portIsolation: bool = False
    args: BridgeArgs | None = None
    runtimeConfig: BridgeRuntimeConfig | None = None

    @property
    def ipam_type(self) -> str:
        """The IPAM plugin type; "" means L2 mode."""
        return self.ipam.type if self.ipam is not None else ""

    @property
    def is_layer3(self) -> bool:
        """True when an IPAM plugin assigns addresses."""
        return self.ipam_type != ""

    @property
    def vlan_filtering(self) -> bool:
        """Whether a newly created bridge gets VLAN filtering (a present trunk list counts,
        even empty)."""
        return self.vlan != 0 or self.vlanTrunk is not None

    def dns_set(self) -> bool:
        """The reference's dnsConfSet: any list present (even empty) or a non-empty domain."""
        d = self.dns
        if d is None:
            return False
        lists = (d.nameservers, d.search, d.options)
        return any(x is not None for x in lists) or bool(d.domain)


def _invalid(msg: str) -> CNIError:
    return CNIError(ERR_INVALID_NETWORK_CONFIG, msg)


def trunk_vlans(trunk: list[VlanTrunk | None] | None) -> list[int]:
    """The reference's collectVlanTrunk: the sorted, de-duplicated VIDs; CNIError 7 naming the
    problem."""
    if trunk is None:
        return []
    vids: set[int] = set()
    for item in trunk:
        if item is None:
            continue
        if item.minID is not None and item.maxID is not None:
            if not 0 < item.minID <= 4094:
                raise _invalid("incorrect trunk minID parameter")
            if not 0 < item.maxID <= 4094:
                raise _invalid("incorrect trunk maxID parameter")
            if item.maxID < item.minID:
                raise _invalid("minID is greater than maxID in trunk parameter")
            vids.update(range(item.minID, item.maxID + 1))
        elif item.maxID is not None:
            raise _invalid("minID and maxID should be configured simultaneously, minID is missing")
        elif item.minID is not None:
            raise _invalid("minID and maxID should be configured simultaneously, maxID is missing")
        if item.id is not None:
            if not 0 < item.id <= 4094:
                raise _invalid("incorrect trunk id parameter")
            vids.add(item.id)
    return sorted(vids)


@dataclass(slots=True)
class Settings:
    """A decoded bridge config plus what is derived from it and CNI_ARGS: the container MAC
    ("" for the kernel's choice) and the trunk VLAN IDs."""

    conf: BridgeNetConf
    mac: str
    vlans: list[int]


def load(config: dict, cni_args: str) -> Settings:
    """Decode and check the config as the reference's loadNetConf does, in its order.

    Order: decode, VLAN range, trunk list, CNI_ARGS (`MAC`, `IgnoreUnknown`). The container MAC
    precedence is runtimeConfig.mac > args.cni.mac > CNI_ARGS MAC.
    """
    conf = load_model(BridgeNetConf, config)
    if not 0 <= conf.vlan <= 4094:
        raise _invalid(f"invalid VLAN ID {conf.vlan} (must be between 0 and 4094)")
    vlans = trunk_vlans(conf.vlanTrunk)
    mac = ""
    if cni_args:
        mac = load_args(cni_args, {"MAC"}).get("MAC", "")
    if conf.args is not None and conf.args.cni is not None and conf.args.cni.mac:
        mac = conf.args.cni.mac
    if conf.runtimeConfig is not None and conf.runtimeConfig.mac:
        mac = conf.runtimeConfig.mac
    return Settings(conf, mac, vlans)


def preflight(settings: Settings) -> None:
    """The ADD-only checks that precede any side effect (§2.2 steps 2-4 of
    docs/reference-behaviour.md, plus our own range checks).

    Normalises isDefaultGateway => isGateway. Beyond the reference: the MTU range and the
    masquerade backend name are checked here, before anything is created, instead of failing
    half-way (the reference reports a bad backend only after configuring everything else).
    """
    conf = settings.conf
    if conf.is_layer3 and conf.disableContainerInterface:
        raise _invalid("cannot use IPAM when DisableContainerInterface flag is set")
    if conf.isDefaultGateway:
        conf.isGateway = True
    if conf.hairpinMode and conf.promiscMode:
        raise _invalid("cannot set hairpin mode and promiscuous mode at the same time")
    if conf.mtu != 0 and not MTU_MIN <= conf.mtu <= MTU_MAX:
        raise _invalid(f"invalid MTU {conf.mtu} (must be 0 or between {MTU_MIN} and {MTU_MAX})")
    if conf.ipMasq and conf.ipMasqBackend is not None and conf.ipMasqBackend not in IPMASQ_BACKENDS:
        raise _invalid(f'unknown ipmasq backend "{conf.ipMasqBackend}"')
    if settings.mac:
        _check_mac(settings.mac)


def _check_mac(mac: str) -> None:
    if parse_mac(mac) is None:
        raise _invalid(f"failed to make veth pair: address {mac}: invalid MAC address")

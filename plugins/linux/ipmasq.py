"""Source NAT for container addresses (the bridge's ipMasq), as the reference's
ipmasq_linux.go: pick the backend, then hand the work to its half, ipmasq_iptables.py or
ipmasq_nftables.py, which keep the reference's layout (docs/reference-behaviour.md §2.5) so
its own DEL and operators' tooling keep working.

Teardown and GC try both backends (an attachment may predate a backend change) and report
errors only for a backend that is usable here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from cni.errors import ERR_INTERNAL, CNIError
from plugins.linux import ipmasq_iptables, ipmasq_nftables, netfilter

TYPE_CHECKING = False  # typing costs ms at start-up; type checkers honour this idiom
if TYPE_CHECKING:
    import ipaddress

    IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def choose_backend(requested: str | None) -> str:
    """The backend to use: the requested one, else netfilter.default_backend().

    Raises CNIError 999 `unknown ipmasq backend "<x>"` for another name.
    """
    if requested is not None:
        if requested not in netfilter.BACKENDS:
            raise CNIError(ERR_INTERNAL, f'unknown ipmasq backend "{requested}"')
        return requested
    return netfilter.default_backend()


def setup(
    backend: str | None,
    ips: Sequence[IPInterface],
    network: str,
    ifname: str,
    container_id: str,
) -> None:
    """Masquerade traffic from `ips` leaving their subnets, for one attachment; idempotent.

    `backend` None chooses as the reference does: iptables, unless iptables is unusable here
    and nftables is. Raises CNIError 999 when the firewall refuses the change.
    """
    if choose_backend(backend) == "nftables":
        ipmasq_nftables.setup(ips, network, ifname, container_id)
        return
    try:
        ipmasq_iptables.setup(ips, network, container_id)
    except CNIError:
        if (backend is None and not netfilter.usable("iptables")
                and netfilter.usable("nftables")):
            ipmasq_nftables.setup(ips, network, ifname, container_id)
            return
        raise


def _each(steps: list[tuple[Callable[[], None], Callable[[], bool]]]) -> None:
    """Run every step; raise one CNIError 999 joining the messages of the steps that failed
    where their `counts()` says the failure matters (the backend is usable here)."""
    errors = []
    for step, counts in steps:
        try:
            step()
        except CNIError as e:
            if counts():
                errors.append(e.msg)
    if errors:
        raise CNIError(ERR_INTERNAL, "; ".join(errors))


def teardown(
    ips: Sequence[IPInterface] | None, network: str, ifname: str, container_id: str
) -> None:
    """Remove one attachment's masquerade rules from both backends; idempotent.

    `ips` None means the addresses are unknown: the iptables jumps are then found by chain name
    in both families. Errors are reported only for a backend that is usable here.
    """
    _each([
        (lambda: ipmasq_iptables.teardown(ips, network, container_id), lambda: True),
        (lambda: ipmasq_nftables.teardown(network, ifname, container_id),
         lambda: netfilter.usable("nftables")),
    ])


def gc(network: str, valid: Collection[tuple[str, str]]) -> None:
    """Remove the masquerade rules of `network` whose attachment is not in `valid`.

    `valid` holds (containerID, ifname) pairs. iptables rules carry no ifname, so a container
    ID with any valid attachment keeps its chain. Both backends are tried; errors are reported
    (joined) only for a backend usable here.
    """
    valid_ids = {cid for cid, _ in valid}
    _each([
        (lambda: ipmasq_iptables.gc_family(False, network, valid_ids),
         lambda: netfilter.usable("iptables", False)),
        (lambda: ipmasq_iptables.gc_family(True, network, valid_ids),
         lambda: netfilter.usable("iptables", True)),
        (lambda: ipmasq_nftables.gc(network, valid), lambda: netfilter.usable("nftables")),
    ])

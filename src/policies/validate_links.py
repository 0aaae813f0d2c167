"""Rules for the Cell's own links (`links:` and each VLAN's `port` and `probe` in network.yaml).

A name may mean one link only: the trunk, a VLAN's port, its interface (the macvlan that holds the
gateway address) and the WAN link are all distinct. A reserved probe address is the Cell's own on
the VLAN's segment, so no host may use it and it is neither the gateway nor the subnet's edges.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from policies.errors import Diagnostic

if TYPE_CHECKING:
    from policies.model import Policy

NET = "network.yaml"


_INTERFACES = {"the WAN link", "a VLAN's interface"}


def port_name(policy: Policy, vlan: str) -> str:
    """The link that carries a VLAN's frames: its `port`, else the 802.1Q subinterface `vlanID`
    (of `links.trunk`; in the lab, the veth that stands in for it)."""
    v = policy.vlans[vlan]
    return v.port or f"vlan{v.id}"


def validate_links(p: Policy, out: list[Diagnostic]) -> None:
    src = p.sources[NET]
    links = p.network.links
    owner: dict[str, tuple[str, tuple[str | int, ...]]] = {}

    def claim(name: str, what: str, where: tuple[str | int, ...]) -> None:
        held = owner.get(name)
        if held is None:
            owner[name] = (what, where)
            return
        # Two interfaces (the WAN's, a VLAN's) of one name are `validate`'s duplicate already.
        if held[0] == what or {held[0], what} <= _INTERFACES:
            return
        line = src.at(held[1])[0]
        out.append(
            src.diag(where, f"link {name} is already {held[0]} (line {line}); a link has one role")
        )

    claim(p.network.wan.interface, "the WAN link", ("wan", "interface"))
    if links.trunk:
        claim(links.trunk, "the trunk", ("links", "trunk"))
    for i, v in enumerate(p.network.vlans):
        claim(v.interface, "a VLAN's interface", ("vlans", i, "interface"))
    for i, v in enumerate(p.network.vlans):
        where: tuple[str | int, ...] = ("vlans", i, "port") if v.port else ("vlans", i, "id")
        port = port_name(p, v.name)
        if v.port and any(v.port == w.port for w in p.network.vlans[:i]):
            out.append(
                src.diag(where, f"port {v.port} carries another VLAN already; use the trunk")
            )
        claim(port, "a VLAN's port", where)
        if v.probe:
            _probe(p, i, out)
    if links.wan:
        w = links.wan
        net = ipaddress.IPv4Network(f"{w.address}/{w.prefixlen}", strict=False)
        if ipaddress.IPv4Address(w.gateway) not in net or w.gateway == w.address:
            out.append(
                src.diag(
                    ("links", "wan", "gateway"),
                    f"gateway {w.gateway} must be another address of {net} (the WAN subnet)",
                )
            )
        for v in p.network.vlans:
            if net.overlaps(ipaddress.IPv4Network(v.subnet)):
                out.append(
                    src.diag(
                        ("links", "wan", "address"),
                        f"the WAN subnet {net} overlaps VLAN '{v.name}' ({v.subnet})",
                    )
                )


def _probe(p: Policy, i: int, out: list[Diagnostic]) -> None:
    src = p.sources[NET]
    v = p.network.vlans[i]
    ip = ipaddress.IPv4Address(str(v.probe))
    net = ipaddress.IPv4Network(v.subnet)
    where = ("vlans", i, "probe")
    used = {h.address: h.name for h in p.network.hosts}
    if ip not in net:
        out.append(src.diag(where, f"probe address {ip} is outside VLAN '{v.name}' ({v.subnet})"))
    elif net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
        out.append(src.diag(where, f"probe address {ip} is the network or broadcast address"))
    elif str(ip) == v.gateway:
        out.append(src.diag(where, f"probe address {ip} is the VLAN's gateway address"))
    elif str(ip) in used:
        out.append(
            src.diag(
                where,
                f"probe address {ip} is host {used[str(ip)]}'s; reserve an address no host uses",
            )
        )

"""Rules that span fields and files: references, uniqueness, subnets, egress and DNS.

Each check appends `Diagnostic`s and carries on, so one run reports every problem. MQTT topic
rules live in `validate_mqtt`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from policies.errors import Diagnostic
from policies.flows import GATEWAY, HUB_BRIDGE, HUB_MANAGEMENT, OUTSIDE, RESERVED, WAN, flow_ports
from policies.validate_links import validate_links
from policies.validate_mqtt import validate_mqtt
from policies.validate_sealed import validate_sealed

if TYPE_CHECKING:
    from policies.model import Policy
    from policies.yamlsrc import Source

NET = "network.yaml"


def validate_policy(policy: Policy) -> list[Diagnostic]:
    """Every cross-field problem of a shape-valid policy (warnings included)."""
    out: list[Diagnostic] = []
    _site(policy, out)
    _vlans(policy, out)
    validate_links(policy, out)
    _resolvers(policy, out)
    _hosts(policy, out)
    _services(policy, out)
    _flows(policy, out)
    _dns(policy, out)
    out.extend(validate_mqtt(policy))
    out.extend(validate_sealed(policy))
    return out


def _dupes(
    src: Source,
    items: Iterable[tuple[str, tuple[str | int, ...]]],
    what: str,
    out: list[Diagnostic],
) -> None:
    first: dict[str, tuple[str | int, ...]] = {}
    for value, path in items:
        if value in first:
            line, _ = src.at(first[value])
            out.append(src.diag(path, f"duplicate {what} '{value}' (first at line {line})"))
        else:
            first[value] = path


def _site(p: Policy, out: list[Diagnostic]) -> None:
    src = p.sources["site.yaml"]
    if p.site.hub is None:  # a sealed site (validate_sealed)
        return
    if p.site.hub.bridge.insecure:
        out.append(
            src.diag(
                ("hub", "bridge", "insecure"),
                "the bridge runs without TLS; never on a real site",
                warning=True,
            )
        )
    for i, ep in enumerate([p.site.hub.bridge, *p.site.hub.management]):
        path: tuple[str | int, ...] = ("hub", "bridge") if i == 0 else ("hub", "management", i - 1)
        try:
            ip = ipaddress.IPv4Address(ep.address)
        except ValueError:
            continue
        if _unusable(ip):
            out.append(
                src.diag(
                    (*path, "address"),
                    f"{ip} is not a usable hub address (loopback, unspecified, broadcast, "
                    "link-local, multicast or reserved)",
                )
            )
        for v in p.network.vlans:
            if ip in ipaddress.IPv4Network(v.subnet):
                out.append(
                    src.diag(
                        (*path, "address"),
                        f"{ip} is inside VLAN '{v.name}' ({v.subnet}); the hub is outside the site",
                    )
                )


def _unusable(ip: ipaddress.IPv4Address) -> bool:
    return (
        ip.is_loopback
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_link_local
        or ip.is_reserved
        or ip == ipaddress.IPv4Address("255.255.255.255")
    )


def _resolvers(p: Policy, out: list[Diagnostic]) -> None:
    src = p.sources[NET]
    for i, r in enumerate(p.network.wan.resolvers):
        ip = ipaddress.IPv4Address(r)
        if _unusable(ip):
            out.append(src.diag(("wan", "resolvers", i), f"{ip} is not a usable resolver address"))
        for v in p.network.vlans:
            if ip in ipaddress.IPv4Network(v.subnet):
                out.append(
                    src.diag(
                        ("wan", "resolvers", i),
                        f"{ip} is inside VLAN '{v.name}' ({v.subnet}); upstream resolvers are outside the site",
                    )
                )


def _vlans(p: Policy, out: list[Diagnostic]) -> None:
    src = p.sources[NET]
    vl = p.network.vlans
    _dupes(src, ((v.name, ("vlans", i, "name")) for i, v in enumerate(vl)), "VLAN name", out)
    _dupes(src, ((str(v.id), ("vlans", i, "id")) for i, v in enumerate(vl)), "VLAN id", out)
    ifaces: list[tuple[str, tuple[str | int, ...]]] = [
        (p.network.wan.interface, ("wan", "interface"))
    ]
    ifaces += [(v.interface, ("vlans", i, "interface")) for i, v in enumerate(vl)]
    _dupes(src, ifaces, "interface", out)
    nets = [ipaddress.IPv4Network(v.subnet) for v in vl]
    for i, v in enumerate(vl):
        if v.name in RESERVED:
            out.append(
                src.diag(
                    ("vlans", i, "name"),
                    f"'{v.name}' is a reserved word in flows; pick another name",
                )
            )
        gw = ipaddress.IPv4Address(v.gateway)
        if gw not in nets[i]:
            out.append(
                src.diag(
                    ("vlans", i, "gateway"), f"gateway {gw} is outside the VLAN's subnet {v.subnet}"
                )
            )
        elif nets[i].prefixlen < 31 and gw in (nets[i].network_address, nets[i].broadcast_address):
            out.append(
                src.diag(
                    ("vlans", i, "gateway"),
                    f"gateway {gw} is the subnet's network or broadcast address",
                )
            )
        for j in range(i):
            if nets[i].overlaps(nets[j]):
                out.append(
                    src.diag(
                        ("vlans", i, "subnet"),
                        f"subnet {v.subnet} overlaps VLAN '{vl[j].name}' ({vl[j].subnet})",
                    )
                )


def _hosts(p: Policy, out: list[Diagnostic]) -> None:
    src = p.sources[NET]
    hs = p.network.hosts
    _dupes(src, ((h.name, ("hosts", i, "name")) for i, h in enumerate(hs)), "host name", out)
    addrs: list[tuple[str, tuple[str | int, ...]]] = [
        (v.gateway, ("vlans", i, "gateway")) for i, v in enumerate(p.network.vlans)
    ]
    addrs += [(h.address, ("hosts", i, "address")) for i, h in enumerate(hs)]
    _dupes(src, addrs, "address", out)
    nets = {v.name: ipaddress.IPv4Network(v.subnet) for v in p.network.vlans}
    for i, h in enumerate(hs):
        if h.name in RESERVED or h.name in p.vlans:
            what = "a reserved word in flows" if h.name in RESERVED else "also a VLAN name"
            out.append(
                src.diag(
                    ("hosts", i, "name"),
                    f"host name '{h.name}' is {what}; flows could not tell them apart",
                )
            )
        vlan = p.vlans.get(h.vlan)
        if vlan is None:
            out.append(
                src.diag(
                    ("hosts", i, "vlan"), f"unknown VLAN '{h.vlan}'; known: {', '.join(p.vlans)}"
                )
            )
            continue
        net = nets[vlan.name]
        ip = ipaddress.IPv4Address(h.address)
        if ip not in net:
            out.append(
                src.diag(
                    ("hosts", i, "address"), f"{ip} is outside VLAN '{vlan.name}' ({vlan.subnet})"
                )
            )
        elif net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
            out.append(
                src.diag(
                    ("hosts", i, "address"),
                    f"{ip} is the network or broadcast address of {vlan.subnet}",
                )
            )


def _services(p: Policy, out: list[Diagnostic]) -> None:
    src = p.sources[NET]
    for name, ports in p.network.services.items():
        if not ports:
            out.append(src.diag(("services", name), f"service '{name}' lists no PORT/PROTO"))
        _dupes(
            src,
            ((pp, ("services", name, i)) for i, pp in enumerate(ports)),
            f"port in service '{name}':",
            out,
        )


def _endpoint_ok(p: Policy, word: str) -> bool:
    return word in RESERVED or word in p.vlans or word in p.hosts


def _vlan_of(p: Policy, word: str) -> str | None:
    if word in p.vlans:
        return word
    h = p.hosts.get(word)
    return h.vlan if h else None


def _flows(p: Policy, out: list[Diagnostic]) -> None:
    src = p.sources[NET]
    known = "a VLAN, a host, gateway, wan, hub.bridge or hub.management"
    for i, f in enumerate(p.network.flows):
        at = ("flows", i)
        bad = False
        for key, word in (("from", f.source), ("to", f.to)):
            if not _endpoint_ok(p, word):
                out.append(
                    src.diag(
                        (*at, key),
                        f"flows[{i}].{key}: unknown endpoint '{word[:64]}'; expected {known}",
                    )
                )
                bad = True
        if bad:
            continue
        if f.source in OUTSIDE:
            out.append(
                src.diag(
                    (*at, "from"),
                    f"flows[{i}]: connections from '{f.source}' into the site are not supported; only the site opens connections",
                )
            )
        if f.source == f.to or (f.source == GATEWAY and f.to == GATEWAY):
            out.append(
                src.diag(
                    at,
                    f"flows[{i}]: from and to are both '{f.to}'; traffic inside one place does not cross the Cell",
                )
            )
        elif _vlan_of(p, f.source) is not None and _vlan_of(p, f.source) == _vlan_of(p, f.to):
            out.append(
                src.diag(
                    at,
                    f"flows[{i}]: both ends are on VLAN '{_vlan_of(p, f.to)}'; traffic inside a VLAN does not cross the Cell",
                )
            )
        if f.to in (HUB_BRIDGE, HUB_MANAGEMENT):
            if f.service is not None:
                out.append(
                    src.diag(
                        (*at, "service"),
                        f"flows[{i}]: '{f.to}' carries its own port (site.yaml); remove `service`",
                    )
                )
            if f.to == HUB_MANAGEMENT and p.site.hub is not None and not p.site.hub.management:
                out.append(
                    src.diag((*at, "to"), f"flows[{i}]: site.yaml lists no hub.management endpoint")
                )
        elif f.service is None:
            out.append(
                src.diag(
                    at,
                    f"flows[{i}]: missing `service` (one of: {', '.join(p.network.services) or 'none defined'})",
                )
            )
        elif f.service not in p.network.services:
            out.append(
                src.diag(
                    (*at, "service"),
                    f"flows[{i}]: unknown service '{f.service}'; defined: {', '.join(p.network.services) or 'none'}",
                )
            )
        vlan = _vlan_of(p, f.source)
        if vlan and f.to in OUTSIDE and not p.vlans[vlan].internet:
            out.append(
                src.diag(
                    at,
                    f"flows[{i}]: VLAN '{vlan}' has `internet: false`; no flow from it may leave the site (to '{f.to}')",
                )
            )


def _dns(p: Policy, out: list[Diagnostic]) -> None:
    src = p.sources[NET]
    sink = p.network.dns.sinkhole
    _dupes(src, ((n, ("dns", "sinkhole", i)) for i, n in enumerate(sink)), "sinkhole VLAN", out)
    dns_from: set[str] = set()
    for f in p.network.flows:
        if f.to == GATEWAY and f.service in p.network.services and (53, "udp") in flow_ports(p, f):
            vlan = _vlan_of(p, f.source)
            if vlan:
                dns_from.add(vlan)
    for i, name in enumerate(sink):
        if name not in p.vlans:
            out.append(
                src.diag(
                    ("dns", "sinkhole", i), f"unknown VLAN '{name}'; known: {', '.join(p.vlans)}"
                )
            )
        elif name not in dns_from:
            out.append(
                src.diag(
                    ("dns", "sinkhole", i),
                    f"VLAN '{name}' is sinkholed but no flow lets it reach the gateway on 53/udp; add {{from: {name}, to: gateway, service: dns}}",
                )
            )
    for i, f in enumerate(p.network.flows):
        vlan = _vlan_of(p, f.source)
        dns_out = {(53, "udp"), (53, "tcp")} & set(flow_ports(p, f))
        if vlan in sink and f.to == WAN and f.service in p.network.services and dns_out:
            out.append(
                src.diag(
                    ("flows", i),
                    f"flows[{i}]: VLAN '{vlan}' is in dns.sinkhole, yet this flow lets it ask "
                    "an outside resolver on port 53; the sinkhole would be bypassed",
                )
            )
    for name in sorted(dns_from - set(sink)):
        if not p.vlans[name].internet:
            out.append(
                src.diag(
                    ("dns",),
                    f"VLAN '{name}' has `internet: false` and reaches the gateway's DNS but is not in dns.sinkhole: its queries would leave the site",
                )
            )
    if p.network.dns.local_names and not sink:
        out.append(
            src.diag(
                ("dns", "local_names"),
                "local_names are only answered by the sinkhole, and dns.sinkhole is empty",
                warning=True,
            )
        )

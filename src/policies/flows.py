"""What a flow endpoint means, and which flow (if any) admits a given connection.

One definition shared by validation, `cell explain flow`, the firewall compiler and the probe
matrix, so that what the Cell says about a flow and what its firewall does cannot disagree.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from policies.model import Flow, Policy, Vlan

GATEWAY = "gateway"
WAN = "wan"
HUB_BRIDGE = "hub.bridge"
HUB_MANAGEMENT = "hub.management"
RESERVED = frozenset({GATEWAY, WAN, HUB_BRIDGE, HUB_MANAGEMENT})
OUTSIDE = frozenset({WAN, HUB_BRIDGE, HUB_MANAGEMENT})

Kind = Literal["vlan", "host", "gateway", "wan", "hub.bridge", "hub.management", "address"]
PortProto = tuple[int, str]


@dataclass(frozen=True)
class Endpoint:
    """A resolved flow endpoint. `vlan` is set for VLANs, hosts and site addresses."""

    kind: Kind
    name: str
    vlan: str | None = None
    address: str | None = None


def resolve(policy: Policy, text: str) -> Endpoint | None:
    """A host, VLAN, reserved word or IPv4 address, as an `Endpoint`; None if unknown."""
    if text in RESERVED:
        return Endpoint(text, text)  # type: ignore[arg-type]
    if text in policy.hosts:
        h = policy.hosts[text]
        return Endpoint("host", text, h.vlan, h.address)
    if text in policy.vlans:
        return Endpoint("vlan", text, text)
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        return None
    for v in policy.network.vlans:
        if str(ip) == v.gateway:
            return Endpoint("gateway", GATEWAY, v.name, str(ip))
    for h in policy.network.hosts:
        if h.address == str(ip):
            return Endpoint("host", h.name, h.vlan, h.address)
    for v in policy.network.vlans:
        if ip in ipaddress.IPv4Network(v.subnet):
            return Endpoint("address", str(ip), v.name, str(ip))
    hub = policy.site.hub
    if hub is not None and hub.bridge.address == str(ip):
        return Endpoint("hub.bridge", HUB_BRIDGE, None, str(ip))
    if hub is not None and any(m.address == str(ip) for m in hub.management):
        return Endpoint("hub.management", HUB_MANAGEMENT, None, str(ip))
    return Endpoint("address", str(ip), None, str(ip))


def probe_address(policy: Policy, vlan: str) -> str:
    """An address to probe from on a VLAN without hosts: the highest one that is neither the
    gateway, nor a listed host, nor the VLAN's reserved in-place probe address. The lab puts it
    in the VLAN's namespace; probes send from it."""
    v = policy.vlans[vlan]
    return _free(v, {v.gateway, *(h.address for h in policy.network.hosts), *_given(v)})


def reserved_probe(policy: Policy, vlan: str) -> str:
    """The address `cell probe` sends from inside a VLAN's own segment (docs/links.md): the
    VLAN's `probe`, else the highest address that is neither the gateway, a listed host, nor
    the lab's stand-in (`probe_address`), so the lab can hold both at once."""
    v = policy.vlans[vlan]
    if v.probe:
        return v.probe
    hosts = {h.address for h in policy.network.hosts}
    return _free(v, {v.gateway, *hosts, probe_address(policy, vlan)})


def _given(v: Vlan) -> list[str]:
    return [v.probe] if v.probe else []


def _free(v: Vlan, taken: set[str]) -> str:
    net = ipaddress.IPv4Network(v.subnet)
    for candidate in reversed(list(net.hosts())[-256:]):
        if str(candidate) not in taken:
            return str(candidate)
    raise ValueError(f"VLAN {v.name} has no free address to probe from")


def flow_ports(policy: Policy, flow: Flow) -> list[PortProto]:
    """The (port, proto) pairs a flow opens: its service's, or the hub endpoint's own ports."""
    hub = policy.site.hub
    if flow.to == HUB_BRIDGE:
        return [(hub.bridge.port, "tcp")] if hub is not None else []
    if flow.to == HUB_MANAGEMENT:
        return sorted({(m.port, "tcp") for m in hub.management}) if hub is not None else []
    if flow.service is None:
        return []
    return [parse_port(p) for p in policy.network.services.get(flow.service, [])]


def parse_port(text: str) -> PortProto:
    port, proto = text.split("/")
    return int(port), proto


def covers(policy: Policy, spec: str, ep: Endpoint) -> bool:
    """Does the flow endpoint word `spec` include the endpoint `ep` entirely?"""
    if spec in policy.vlans:
        return ep.vlan == spec and ep.kind in ("vlan", "host", "address")
    if spec in policy.hosts:
        return ep.kind == "host" and ep.name == spec
    if spec == WAN:
        return ep.kind == WAN or (ep.kind == "address" and ep.vlan is None)
    return ep.kind == spec


@dataclass(frozen=True)
class Decision:
    verdict: Literal["accept", "drop"]
    flow: int | None
    ports: tuple[PortProto, ...] = ()


def _words(ep: Endpoint) -> set[str]:
    """Every flow endpoint word that could include `ep` (a superset; `covers` decides)."""
    words = {ep.name, ep.kind}
    if ep.vlan:
        words.add(ep.vlan)
    if ep.kind == "address" and ep.vlan is None:
        words.add(WAN)
    return words


def _index(policy: Policy) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Flow indexes by `from` word and by `to` word, built once per policy (sites with a flow
    per camera would otherwise make probe compilation quadratic)."""
    cached = policy.__dict__.get("_flow_index")
    if cached is None:
        by_src: dict[str, list[int]] = {}
        by_dst: dict[str, list[int]] = {}
        for i, f in enumerate(policy.network.flows):
            by_src.setdefault(f.source, []).append(i)
            by_dst.setdefault(f.to, []).append(i)
        cached = (by_src, by_dst)
        object.__setattr__(policy, "_flow_index", cached)
    return cached


def decide(policy: Policy, src: Endpoint, dst: Endpoint, port: PortProto | None = None) -> Decision:
    """The first flow that admits `src` -> `dst` (on `port`, if given); else default deny."""
    by_src, by_dst = _index(policy)
    from_src = {i for w in _words(src) for i in by_src.get(w, ())}
    candidates = sorted(from_src.intersection(i for w in _words(dst) for i in by_dst.get(w, ())))
    if dst.kind == "gateway" and dst.vlan and src.vlan and dst.vlan != src.vlan:
        # A site host reaches the gateway only at its own VLAN's gateway address: another VLAN's
        # gateway address may carry a service it must not reach (the forwarding resolver).
        return Decision("drop", None)
    for i in candidates:
        flow = policy.network.flows[i]
        if not (covers(policy, flow.source, src) and covers(policy, flow.to, dst)):
            continue
        ports = flow_ports(policy, flow)
        if port is None or port in ports:
            return Decision("accept", i, tuple(ports))
    return Decision("drop", None)

"""The lab's plan: namespace names, addresses and what answers where. Pure: the policy alone.

Everything `lab up` builds is decided here first, so the same policy always gives the same lab and a
test can read the plan without touching the kernel.

Addressing (nothing of it is routed off the machine: the WAN namespace has no other link):

- VLANs: exactly the policy's subnets, gateway addresses and host addresses. A VLAN without hosts
  gets one probe address, `policies.flows.probe_address` (what `firewall.probes` uses too).
- The gateway's WAN link: the policy's static `links.wan` when it has one (set by `cell apply`),
  else 198.18.0.0/30 (RFC 2544 benchmarking range): .1 in the WAN namespace, .2 on the gateway's
  `wan.interface` and its default route, set by the lab as an uplink's DHCP server would.
- The gateway's VLAN links: a veth per VLAN named after the VLAN's port (`vlan10`: the stand-in
  for the trunk's 802.1Q subinterface), without addresses; `cell apply` puts the VLAN's
  interface (a macvlan) with the gateway address on it, exactly as on a box.
- "Outside" addresses, on the WAN namespace's loopback: the policy's own IPs where it gives IPs
  (`wan.resolvers`, a hub or management IP), else lab addresses from 198.19.0.0/24: hub .10,
  management .20, .21, ..., resolver .53, "the Internet" .80, the phone-home server .99.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from policies import Policy
from policies.flows import GATEWAY, WAN, flow_ports, probe_address
from policies.types import ipv4_or_none
from policies.validate_links import port_name

if TYPE_CHECKING:
    from firewall.probes import Probe

LAB_BASE = "/run/cell-lab"
WAN_SIDE = "198.18.0.1"
GW_SIDE = "198.18.0.2"
WAN_PREFIXLEN = 30
HUB_LAB_IP = "198.19.0.10"
MGMT_LAB_BASE = 20
RESOLVER_LAB_IP = "198.19.0.53"
INTERNET_IP = "198.19.0.80"
PHONE_HOME_IP = "198.19.0.99"
SEALED_HUB_PORT = 8883
"""A sealed site names no hub; its lab's hub broker listens here, for probes to fail to reach."""
VLAN_LINK = "eth0"
"""Each VLAN namespace's link to the gateway (the gateway's end is named after the VLAN)."""
WAN_LINK = "site"
"""The WAN namespace's link to the gateway; its only link besides loopback."""

PortProto = tuple[int, str]
PHONE_HOME_PORTS: tuple[PortProto, ...] = (
    (22, "tcp"),
    (80, "tcp"),
    (443, "tcp"),
    (8080, "tcp"),
    (8883, "tcp"),
    (53, "udp"),
    (123, "udp"),
    (443, "udp"),
    (9999, "udp"),
)
LAB_PROBE_PORTS: tuple[PortProto, ...] = (
    (22, "tcp"),
    (80, "tcp"),
    (443, "tcp"),
    (554, "tcp"),
    (8883, "tcp"),
    (9999, "udp"),
)
"""Answered by every VLAN and by "the Internet", so a leaked probe gets an answer, not a timeout.
The same ports as `firewall.probes.PROBE_PORTS`, kept here so the lab works while that changes."""


def ns_prefix(site_id: str) -> str:
    """The prefix of every namespace of a site's lab. Site ids have no '.', so two sites'
    prefixes never overlap (`cell-lisbon.` is not a prefix of `cell-lisbon-01.gw`)."""
    return f"cell-{site_id}."


def lab_root(site_id: str) -> str:
    return f"{LAB_BASE}/{site_id}"


@dataclass(frozen=True)
class VlanPlan:
    name: str
    netns: str
    interface: str
    """The gateway's interface on the VLAN (a macvlan on `port`, made by `cell apply`)."""
    port: str
    """The gateway's end of the veth to the VLAN's namespace: the 802.1Q subinterface's stand-in."""
    subnet: str
    gateway: str
    prefixlen: int
    addresses: tuple[str, ...]
    ports: tuple[PortProto, ...]
    """What the VLAN namespace's responder answers, on every one of its addresses."""


@dataclass(frozen=True)
class LabPlan:
    site: str
    gateway: str
    wan: str
    wan_interface: str
    vlans: tuple[VlanPlan, ...]
    hosts: dict[str, tuple[str, str]] = field(hash=False)
    """host name -> (vlan name, address)."""
    resolvers: tuple[str, ...]
    names: dict[str, str] = field(hash=False)
    """Hostname -> lab address, as the outside resolver answers it."""
    hub: tuple[str, int]
    hub_hostname: str | None
    management: tuple[tuple[str, int], ...]
    gateway_ports: tuple[PortProto, ...]
    internet_ports: tuple[PortProto, ...]
    wan_gateway_side: str = GW_SIDE
    """The gateway's WAN address: the policy's static one (`links.wan`), else the lab's, which
    the lab sets itself as an uplink's DHCP would."""
    wan_side: str = WAN_SIDE
    wan_prefixlen: int = WAN_PREFIXLEN
    wan_static: bool = False
    """The policy sets the WAN address (`cell apply` does); else the lab plays the DHCP server."""

    @property
    def root(self) -> str:
        return lab_root(self.site)

    @property
    def layout_root(self) -> str:
        """The gateway's file root: the policy's absolute paths are prefixed with it."""
        return f"{self.root}/gw"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.gateway, self.wan, *(v.netns for v in self.vlans))

    @property
    def outside_addresses(self) -> tuple[str, ...]:
        addrs = {*self.resolvers, self.hub[0], *(a for a, _ in self.management)}
        addrs |= {INTERNET_IP, PHONE_HOME_IP}
        return tuple(sorted(addrs, key=ipaddress.IPv4Address))


def plan_lab(policy: Policy) -> LabPlan:
    site = policy.site.site.id
    prefix = ns_prefix(site)
    ports = _target_ports(policy)
    vlans = tuple(
        _vlan(policy, v.name, f"{prefix}v-{v.name}", ports[v.name]) for v in policy.network.vlans
    )
    names: dict[str, str] = {}
    # A sealed site has no hub; its lab still runs one, as a target that nothing may reach.
    address, port = (
        (policy.site.hub.bridge.address, policy.site.hub.bridge.port)
        if policy.site.hub
        else (HUB_LAB_IP, SEALED_HUB_PORT)
    )
    hub_ip = ipv4_or_none(address) or names.setdefault(address, HUB_LAB_IP)
    management = []
    for i, m in enumerate(policy.site.hub.management if policy.site.hub else []):
        addr = ipv4_or_none(m.address) or names.setdefault(
            m.address, f"198.19.0.{MGMT_LAB_BASE + i}"
        )
        management.append((addr, m.port))
    skip = {(53, "udp"), (53, "tcp"), (policy.mqtt.listener.port, "tcp")}
    plan = LabPlan(
        site=site,
        gateway=f"{prefix}gw",
        wan=f"{prefix}wan",
        wan_interface=policy.network.wan.interface,
        vlans=vlans,
        hosts={h.name: (h.vlan, h.address) for h in policy.network.hosts},
        resolvers=tuple(policy.network.wan.resolvers) or (RESOLVER_LAB_IP,),
        names=names,
        hub=(hub_ip, port),
        hub_hostname=None if ipv4_or_none(address) else address,
        management=tuple(management),
        gateway_ports=tuple(sorted(ports[GATEWAY] - skip)),
        internet_ports=tuple(sorted(ports[WAN] | set(LAB_PROBE_PORTS))),
    )
    static = policy.network.links.wan
    if static is None:
        return plan
    return replace(
        plan,
        wan_gateway_side=static.address,
        wan_side=static.gateway,
        wan_prefixlen=static.prefixlen,
        wan_static=True,
    )


def _vlan(policy: Policy, name: str, netns: str, ports: set[PortProto]) -> VlanPlan:
    v = policy.vlans[name]
    net = ipaddress.IPv4Network(v.subnet)
    addrs = tuple(h.address for h in policy.network.hosts if h.vlan == name)
    return VlanPlan(
        name=name,
        netns=netns,
        interface=v.interface,
        port=port_name(policy, name),
        subnet=v.subnet,
        gateway=v.gateway,
        prefixlen=net.prefixlen,
        addresses=addrs or (probe_address(policy, name),),
        ports=tuple(sorted(ports | set(LAB_PROBE_PORTS))),
    )


def _target_ports(policy: Policy) -> defaultdict[str, set[PortProto]]:
    """(port, proto) that must be answered, by where: a VLAN name, `gateway` or `wan`.

    Every allowed flow's target, and every probe target (allowed or dropped): a dropped probe whose
    target answers when the firewall leaks is what proves the leak.
    """
    out: defaultdict[str, set[PortProto]] = defaultdict(set)
    for f in policy.network.flows:
        where = _where(policy, f.to)
        if where:
            out[where].update(flow_ports(policy, f))
    for p in _probes(policy):
        dst = p.to
        where = GATEWAY if dst.name == GATEWAY else dst.vlan or (WAN if dst.name == WAN else None)
        if where:
            out[where].add((p.port, p.proto))
    return out


def _where(policy: Policy, to: str) -> str | None:
    if to in policy.hosts:
        return policy.hosts[to].vlan
    if to in policy.vlans or to in (GATEWAY, WAN):
        return to
    return None


def _probes(policy: Policy) -> list[Probe]:
    """The probe matrix: the lab answers on every port a probe uses."""
    from firewall.probes import compile_probes

    return compile_probes(policy)

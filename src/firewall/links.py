"""The Cell's own links, addresses, routes and sysctls, as network.yaml says: pure.

`compile_links` turns the policy into the wanted state (`LinkPlan`, rendered as links/links.json
and journalled with the other artifacts); `compare_links` says, line by line, where a live state
(`LiveNet`, read by `cell.deploy.netlink`) differs from it. The apply's read-back and `cell drift`
both use `compare_links`, so they never judge differently.

Per VLAN there are two links (docs/links.md): its *port*, which carries the VLAN's frames (the
trunk's 802.1Q subinterface `vlanID`, or the VLAN's own `port`), and on it the VLAN's `interface`,
a macvlan in bridge mode holding the gateway address. The firewall matches `interface`; the probe
namespace of `cell probe` joins the same segment with a second macvlan of the port. In the lab,
a veth made by the lab stands in for each 802.1Q subinterface (this kernel has no 802.1Q module);
everything else is the same code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from policies import Policy
from policies.record import Record
from policies.validate_links import port_name

ALIAS = "cell: "
"""The alias (IFLA_IFALIAS) of every link `cell apply` made: what it may remove again."""
MACVLAN_MODE = "bridge"
Kind = Literal["given", "vlan", "macvlan"]


class LinkSpec(Record):
    """One link the Cell needs."""

    name: str = Field(description="Interface name.")
    role: str = Field(description="trunk, port, interface or wan.")
    kind: Kind = Field(
        description="given: must exist (the Cell only brings it up); vlan: an 802.1Q "
        "subinterface of `parent`; macvlan: a macvlan in bridge mode on `parent`."
    )
    vlan: str | None = Field(default=None, description="The VLAN it serves, if any.")
    parent: str | None = Field(default=None, description="The lower link (vlan, macvlan).")
    vlan_id: int | None = Field(default=None, description="The 802.1Q id (vlan only).")
    addresses: list[str] | None = Field(
        description="Exactly these IPv4 addresses (ADDR/LEN); None: not the Cell's to set."
    )


class RouteSpec(Record):
    """A route the Cell sets in the main table."""

    dst: str = Field(description="Destination (default or NET/LEN).")
    gateway: str = Field(description="Next hop.")
    dev: str = Field(description="Out interface.")


class LinkPlan(Record):
    """The wanted link state of the gateway (links/links.json)."""

    links: list[LinkSpec] = Field(description="In creation order: lower links first.")
    routes: list[RouteSpec] = Field(description="Routes the Cell sets (a static WAN's default).")
    sysctls: dict[str, str] = Field(description="Path under /proc/sys -> value.")
    wan: str = Field(description="The WAN link.")
    trunk: str | None = Field(description="The 802.1Q trunk, if the VLANs arrive on one.")

    def by_name(self) -> dict[str, LinkSpec]:
        return {link.name: link for link in self.links}

    def vlan_interfaces(self) -> dict[str, str]:
        """VLAN name -> its interface (where the gateway address sits)."""
        return {s.vlan: s.name for s in self.links if s.role == "interface" and s.vlan}

    def ports(self) -> dict[str, str]:
        """VLAN name -> its port (the lower link a probe's macvlan joins)."""
        return {s.vlan: s.name for s in self.links if s.role == "port" and s.vlan}


def compile_links(policy: Policy) -> LinkPlan:
    net = policy.network
    trunk = net.links.trunk
    links: list[LinkSpec] = []
    if trunk and any(not v.port for v in net.vlans):
        links.append(LinkSpec(name=trunk, role="trunk", kind="given", addresses=[]))
    for v in net.vlans:
        port = port_name(policy, v.name)
        if v.port or not trunk:
            links.append(LinkSpec(name=port, role="port", kind="given", vlan=v.name, addresses=[]))
        else:
            links.append(
                LinkSpec(
                    name=port, role="port", kind="vlan", vlan=v.name, parent=trunk,
                    vlan_id=v.id, addresses=[],
                )
            )  # fmt: skip
    for v in net.vlans:
        prefix = v.subnet.split("/")[1]
        links.append(
            LinkSpec(
                name=v.interface, role="interface", kind="macvlan", vlan=v.name,
                parent=port_name(policy, v.name), addresses=[f"{v.gateway}/{prefix}"],
            )
        )  # fmt: skip
    w = net.links.wan
    links.append(
        LinkSpec(
            name=net.wan.interface,
            role="wan",
            kind="given",
            addresses=[f"{w.address}/{w.prefixlen}"] if w else None,
        )
    )
    routes = [RouteSpec(dst="default", gateway=w.gateway, dev=net.wan.interface)] if w else []
    sysctls = {"net/ipv4/ip_forward": "1"}
    for v in net.vlans:
        sysctls[f"net/ipv4/conf/{v.interface}/rp_filter"] = "1"
        # A port holds no address, but Linux answers ARP for any local address on any link:
        # a port that answered for the gateway would take the VLAN's traffic past `interface`.
        sysctls[f"net/ipv4/conf/{port_name(policy, v.name)}/arp_ignore"] = "1"
    sysctls["net/ipv6/conf/all/forwarding"] = "1" if net.links.ipv6_forwarding else "0"
    return LinkPlan(links=links, routes=routes, sysctls=sysctls, wan=net.wan.interface, trunk=trunk)


def render_links(policy: Policy) -> bytes:
    return (json.dumps(compile_links(policy).to_doc(), indent=2, sort_keys=True) + "\n").encode()


def load_links(data: bytes) -> LinkPlan:
    return LinkPlan.model_validate_json(data)


@dataclass
class LiveLink:
    """What the kernel says of one link."""

    name: str
    kind: str | None
    parent: str | None
    vlan_id: int | None = None
    mode: str | None = None
    addresses: list[str] = field(default_factory=list)
    up: bool = False
    alias: str | None = None
    master: str | None = None
    netns_peer: bool = False
    """Its lower link (a veth's peer) lives in another namespace."""
    xdp: int | None = None
    """The id of an XDP program attached, if any."""


@dataclass
class LiveNet:
    """The gateway's links, main-table routes and the plan's sysctls, as read."""

    links: dict[str, LiveLink]
    default_routes: list[tuple[str | None, str | None]] = field(default_factory=list)
    """(gateway, dev) of every default route of the main table."""
    sysctls: dict[str, str | None] = field(default_factory=dict)


def compare_links(plan: LinkPlan, live: LiveNet, stand_in: str | None) -> list[str]:
    """Every way `live` differs from `plan`, one line each ([] when it matches).

    `stand_in`: the link kind that stands in for an 802.1Q subinterface (the lab: veth), whose
    trunk then does not exist at all."""
    out: list[str] = []
    for spec in plan.links:
        if spec.role == "trunk" and stand_in:
            continue
        have = live.links.get(spec.name)
        label = f"{spec.name} ({_label(spec)})"
        if have is None:
            out.append(f"link {label} is missing")
            continue
        out += [f"link {label}: {d}" for d in _link_differs(spec, have, stand_in)]
        if spec.addresses is not None and sorted(have.addresses) != sorted(spec.addresses):
            want = ", ".join(spec.addresses) or "none"
            out.append(
                f"link {label} has addresses {', '.join(sorted(have.addresses)) or 'none'}, "
                f"not {want}"
            )
    for route in plan.routes:
        if (route.gateway, route.dev) not in live.default_routes:
            out.append(f"the default route via {route.gateway} dev {route.dev} is missing")
    for path, value in plan.sysctls.items():
        got = live.sysctls.get(path)
        if got != value:
            out.append(f"sysctl {path.replace('/', '.')} is {got}, not {value}")
    return out


def _label(spec: LinkSpec) -> str:
    if spec.role == "wan":
        return "the WAN link"
    if spec.role == "trunk":
        return "the trunk"
    return f"VLAN {spec.vlan}'s {spec.role}"


def kind_matches(spec: LinkSpec, have: LiveLink, stand_in: str | None) -> bool:
    """Whether `have` is the kind of link `spec` wants (a given link may be anything)."""
    if spec.kind == "vlan":
        if stand_in and have.kind == stand_in:
            return True
        return have.kind == "vlan" and have.parent == spec.parent and have.vlan_id == spec.vlan_id
    if spec.kind == "macvlan":
        return have.kind == "macvlan" and have.parent == spec.parent and have.mode == MACVLAN_MODE
    return True


def _link_differs(spec: LinkSpec, have: LiveLink, stand_in: str | None) -> list[str]:
    out = []
    if not kind_matches(spec, have, stand_in):
        if spec.kind == "vlan":
            out.append(
                f"is {_kind(have)}, not the 802.1Q subinterface {spec.vlan_id} of {spec.parent}"
            )
        else:
            out.append(f"is {_kind(have)}, not a macvlan ({MACVLAN_MODE}) on {spec.parent}")
    if have.master:
        out.append(f"is enslaved to {have.master}")
    if not have.up:
        out.append("is down")
    return out


def _kind(have: LiveLink) -> str:
    what = have.kind or "a plain link"
    if have.kind == "vlan":
        what = f"vlan {have.vlan_id}"
    elif have.kind == "macvlan":
        what = f"macvlan ({have.mode})"
    return f"{what} on {have.parent}" if have.parent else what


@dataclass
class Route:
    table: int
    dst: str
    gateway: str | None
    dev: str | None
    kernel: bool


@dataclass
class Tc:
    dev: str
    qdiscs: list[str] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)
    """One line each: kind, and what its actions do."""


@dataclass
class Stack:
    """The gateway's network stack as read for drift."""

    net: LiveNet
    routes: list[Route]
    rules: list[tuple[int, int, str]]
    """(table, priority, what it selects) of every IPv4 rule."""
    tc: dict[str, Tc]

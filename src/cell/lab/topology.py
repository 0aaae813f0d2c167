"""The lab's namespaces, links, addresses and routes, through pyroute2 (never `ip`).

Every veth is created from inside the gateway namespace with its peer placed directly in its target
namespace, so no lab link ever exists in the host's namespace, not even for an instant: nothing can
collide there, and a crash can leave nothing there. Removing a namespace removes its links.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cell.lab.errors import LabError
from cell.lab.plan import VLAN_LINK, WAN_LINK, LabPlan
from firewall import netns


def build(plan: LabPlan) -> None:
    """Create the namespaces and wire them: gateway <-> each VLAN, gateway <-> WAN."""
    for ns in plan.namespaces:
        netns.create(ns)
        netns.with_ns(ns, _sysctls)
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    step = f"wiring the gateway {plan.gateway}"
    try:
        with IPRoute(netns=plan.gateway) as ipr:
            for v in plan.vlans:
                # No address: the gateway's side of a VLAN is `cell apply`'s (a macvlan on it).
                step = f"creating {v.port} (VLAN {v.name}) between {plan.gateway} and {v.netns}"
                _veth(ipr, v.port, VLAN_LINK, v.netns)
                _addr_up(ipr, v.port, [])
            step = f"creating {plan.wan_interface} between {plan.gateway} and {plan.wan}"
            _veth(ipr, plan.wan_interface, WAN_LINK, plan.wan)
            if plan.wan_static:
                _addr_up(ipr, plan.wan_interface, [])
            else:  # the uplink's DHCP, played by the lab
                _addr_up(ipr, plan.wan_interface, [(plan.wan_gateway_side, plan.wan_prefixlen)])
                ipr.route("add", dst="0.0.0.0/0", gateway=plan.wan_side)
        for v in plan.vlans:
            step = f"addressing {v.netns}"
            with IPRoute(netns=v.netns) as ipr:
                _addr_up(ipr, VLAN_LINK, [(a, v.prefixlen) for a in v.addresses])
                ipr.route("add", dst="0.0.0.0/0", gateway=v.gateway)
        step = f"addressing {plan.wan}"
        with IPRoute(netns=plan.wan) as ipr:
            _addr_up(ipr, WAN_LINK, [(plan.wan_side, plan.wan_prefixlen)])
            _addr_up(ipr, "lo", [(a, 32) for a in plan.outside_addresses])
            # No route to the site's subnets, like a real ISP uplink: what leaves the site
            # reaches the WAN only with the Cell's WAN address (NAT, firewall.nat).
    except NetlinkError as e:
        raise LabError(f"{step}: {e.args[-1] if e.args else e}") from e


def _veth(ipr: Any, name: str, peer: str, peer_ns: str) -> None:
    ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer, "net_ns_fd": peer_ns})


def _addr_up(ipr: Any, ifname: str, addrs: Iterable[tuple[str, int]]) -> None:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"link {ifname} is missing in {ipr.status.get('netns')}")
    for address, prefixlen in addrs:
        ipr.addr("add", index=found[0], address=address, prefixlen=prefixlen)
    ipr.link("set", index=found[0], state="up")


def _sysctls() -> None:
    """Written from inside a namespace (/proc/sys/net is the writer's own namespace's).

    New links get no IPv6: the policy is IPv4, and router solicitations would be noise on the WAN
    capture. The gateway's forwarding and rp_filter are `cell apply`'s (the policy's sysctls).
    """
    Path("/proc/sys/net/ipv6/conf/default/disable_ipv6").write_text("1\n")


def links(ns: str) -> dict[str, list[str]]:
    """Link name -> its IPv4 addresses (with prefix) in namespace `ns`. For status and tests."""
    from pyroute2 import IPRoute

    out: dict[str, list[str]] = {}
    if ns not in netns.names():
        return out
    with IPRoute(netns=ns) as ipr:
        names = {link["index"]: link.get("ifname") for link in ipr.get_links()}
        for _index, name in names.items():
            out[str(name)] = []
        for a in ipr.get_addr(family=2):
            out[str(names.get(a["index"]))].append(f"{a.get('address')}/{a['prefixlen']}")
    return out

"""Anti-spoofing: a source address must belong to the link it arrives on (pure).

The check runs in its own base chain, `prerouting` at priority raw (-300): before connection
tracking, so a forged packet creates no conntrack entry and can match none, and before routing.
It uses per-link source sets taken from the policy, not the kernel's reverse-path lookup
(`fib saddr . iif oif missing`): the answer then depends only on the signed policy, never on
the routing table, which is exactly what a hostile change of routes or rules would alter.

- a VLAN's link: the source must lie inside the VLAN's subnet;
- the WAN link: the source must not lie inside any of the site's subnets (an address of the
  site can only ever come from the site).

Each drop is counted (`drop_spoofed_VLAN`, `drop_spoofed_wan`) and logged at a limited rate.
Only IPv4 is checked here; every IPv6 packet ends in the filter chains' counted drops anyway.
What this cannot see: a host forging another address *inside its own VLAN's subnet* (that
needs layer-2 binding on the switch); the forward chain's pair rules still confine such a
packet to the interfaces of the connection it pretends to belong to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from firewall.counters import dropped, spoof_counter
from firewall.nftjson import (
    ACCEPT,
    IF_ADDR,
    IIFNAME,
    SADDR,
    Json,
    base_chain,
    key,
    match,
    rule,
    set_,
)
from firewall.ruleset import address_json, site_endpoint
from policies.flows import WAN

if TYPE_CHECKING:
    from policies.model import Policy

CHAIN = "prerouting"
PRIORITY = -300  # raw: before conntrack (-200)
SITE_NETS = "site_nets"
"""Every VLAN subnet (type ipv4_addr): what may never arrive from the WAN, and what NAT rewrites."""
VLAN_NETS = "vlan_nets"
"""Each VLAN's interface and subnet (ifname . ipv4_addr): where a site address lives."""


def antispoof_sets(policy: Policy) -> list[Json]:
    nets = [(v.interface, _subnet(policy, v.name)) for v in _vlans(policy)]
    return [
        set_(SITE_NETS, ["ipv4_addr"], [address_json(iv) for iv in sorted(n for _, n in nets)]),
        set_(VLAN_NETS, IF_ADDR, [{"concat": [i, address_json(n)]} for i, n in sorted(nets)]),
    ]


def antispoof_chain() -> Json:
    return base_chain(CHAIN, CHAIN, PRIORITY, "accept")


def antispoof_rules(policy: Policy) -> list[Json]:
    wan = policy.network.wan.interface
    # The common case first, in two lookups: a VLAN's own source, an outside source on the WAN
    # (accept ends this chain only; the filter chains still decide).
    out = [
        rule(CHAIN, match(key(IIFNAME, SADDR), f"@{VLAN_NETS}"), ACCEPT),
        rule(CHAIN, match(IIFNAME, wan), match(SADDR, f"@{SITE_NETS}", "!="), ACCEPT),
    ]
    for v in _vlans(policy):
        subnet = address_json(_subnet(policy, v.name))
        out.append(
            dropped(
                CHAIN,
                spoof_counter(v.name),
                f"spoofed>{v.name}",
                match(IIFNAME, v.interface),
                match(SADDR, subnet, "!="),
            )
        )
    out.append(
        dropped(
            CHAIN,
            spoof_counter(WAN),
            f"spoofed>{WAN}",
            match(IIFNAME, wan),
            match(SADDR, f"@{SITE_NETS}"),
        )
    )
    return out


def _subnet(policy: Policy, vlan: str) -> Any:
    end = site_endpoint(policy, vlan)
    assert end is not None
    return end[1]


def _vlans(policy: Policy) -> list[Any]:
    return sorted(policy.network.vlans, key=lambda v: v.name)

"""Address translation to the WAN (pure): what a flow lets out leaves with the Cell's WAN address.

One base chain in the Cell's own table, `postrouting` (type nat, priority srcnat = 100):
`oifname WAN ip saddr @site_nets masquerade`. Only packets that the forward chain accepted out
of the WAN link get there, so NAT adds no path: it changes the source of what already leaves.
Replies find their way back through connection tracking (the kernel undoes the translation
before the forward chain sees them, so the pair rules see the real site host). The Cell's own
traffic already has the WAN address and is not touched (`ip saddr @site_nets`).

Masquerade, not SNAT to a fixed address: the WAN address may come from DHCP, and masquerade
follows it (connections of a vanished address are dropped, as they should be).

`wan.nat: false` (an extension of the format) leaves the chain out, for an uplink that routes
the site's subnets itself. A sealed site has no NAT: nothing leaves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from firewall.antispoof import SITE_NETS
from firewall.nftjson import OIFNAME, SADDR, Json, base_chain, match, rule

if TYPE_CHECKING:
    from policies.model import Policy

CHAIN = "postrouting"
PRIORITY = 100  # srcnat


def nat_enabled(policy: Policy) -> bool:
    return policy.network.wan.nat and not policy.sealed


def nat_chain() -> Json:
    return base_chain(CHAIN, CHAIN, PRIORITY, "accept", kind="nat")


def nat_rules(policy: Policy) -> list[Json]:
    wan = policy.network.wan.interface
    return [
        rule(
            CHAIN,
            match(OIFNAME, wan),
            match(SADDR, f"@{SITE_NETS}"),
            {"masquerade": None},
            comment="site -> wan leaves with the Cell's WAN address",
        )
    ]

"""What the verifier needs to know of the site's policy (pure): who an address is, which logs to
read, the site's zone."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from cell.store.db import Retention
from cell.verify.sinkhole import LogSource
from policies.types import duration_seconds

if TYPE_CHECKING:
    from policies import Policy
    from policies.layout import Layout


def site_zone(policy: Policy) -> ZoneInfo:
    return ZoneInfo(policy.site.site.timezone)


def retention_of(policy: Policy) -> Retention:
    """The store's retention: `dns.retention` of network.yaml, the defaults for the rest."""
    r = policy.network.dns.retention
    return Retention(dns_events=duration_seconds(r.events), daily=duration_seconds(r.daily))


def attribute(policy: Policy, address: str) -> tuple[str | None, str | None]:
    """(host, VLAN) of a client address by network.yaml; None where the policy does not know it.

    A gateway address is the Cell itself (`gateway`)."""
    host = next((h for h in policy.network.hosts if h.address == address), None)
    if host is not None:
        return host.name, host.vlan
    try:
        a = ipaddress.IPv4Address(address)
    except ValueError:
        return None, None
    for v in policy.network.vlans:
        if a in ipaddress.IPv4Network(v.subnet):
            return ("gateway" if address == v.gateway else None), v.name
    return None, None


def log_sources(policy: Policy, layout: Layout) -> list[LogSource]:
    """The sinkhole's query log, and the resolver's (where a sinkhole client's forward shows)."""
    nets = tuple(
        ipaddress.IPv4Network(policy.vlans[name].subnet) for name in policy.network.dns.sinkhole
    )
    return [
        LogSource("sinkhole", Path(layout.dns_log("sinkhole")), sinkhole=True),
        LogSource("resolver", Path(layout.dns_log("resolver")), sinkhole=False, sinkhole_nets=nets),
    ]

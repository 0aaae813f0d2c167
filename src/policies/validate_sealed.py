"""Sealed mode (`site.mode: sealed`): an air-gapped site, from which nothing at all leaves.

A sealed policy may say nothing that would need the outside: no hub (site.yaml `hub:`, hence no
bridge and no management endpoint), no bridge section in mqtt.yaml, no `up` or `down` topic, no
flow to `wan`, `hub.bridge` or `hub.management` (from a VLAN, a host or the gateway), no upstream
resolver, and DNS from the VLANs only through the sinkhole (the Cell forwards no query). The
firewall then has no path to the WAN at all (`firewall.compile`), and `cell probe` proves that
nothing leaves from any VLAN or from the Cell itself (`firewall.probes`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from policies.errors import Diagnostic
from policies.flows import OUTSIDE, flow_ports

if TYPE_CHECKING:
    from policies.model import Policy

WHY = "the site is sealed (site.yaml site.mode: sealed): nothing may leave it"


def validate_sealed(p: Policy) -> list[Diagnostic]:
    if not p.sealed:
        return []
    out: list[Diagnostic] = []
    site, net, mqtt = p.sources["site.yaml"], p.sources["network.yaml"], p.sources["mqtt.yaml"]
    if p.site.hub is not None:
        out.append(
            site.diag(("hub",), f"hub: {WHY}; remove `hub:` (no bridge, no management)", key=True)
        )
    if "bridge" in p.mqtt.model_fields_set:
        out.append(mqtt.diag(("bridge",), f"bridge: {WHY}; remove the `bridge:` section", key=True))
    for i, rule in enumerate(p.mqtt.topics):
        if rule.direction in ("up", "down"):
            out.append(
                mqtt.diag(
                    ("topics", i, "direction"),
                    f"topics[{i}].direction: '{rule.direction}' crosses the bridge, and {WHY};"
                    " use local or never",
                )
            )
    for i, f in enumerate(p.network.flows):
        vlan = _vlan_of(p, f.source)
        if f.to in OUTSIDE and (vlan is None or p.vlans[vlan].internet):
            # (a VLAN with `internet: false` gets its own error from validate._flows)
            out.append(
                net.diag(
                    ("flows", i, "to"),
                    f"flows[{i}].to: '{f.to}' is outside the site, and {WHY}; remove this flow",
                )
            )
    if p.network.wan.resolvers:
        out.append(
            net.diag(
                ("wan", "resolvers"),
                f"wan.resolvers: {WHY}, so the Cell asks no outside resolver; remove them",
            )
        )
    sink = set(p.network.dns.sinkhole)
    for i, f in enumerate(p.network.flows):
        vlan = _vlan_of(p, f.source)
        dns = f.to == "gateway" and (53, "udp") in flow_ports(p, f)
        if vlan and dns and vlan not in sink and p.vlans[vlan].internet:
            # (`internet: false` VLANs get the same error from validate._dns already.)
            out.append(
                net.diag(
                    ("flows", i),
                    f"flows[{i}]: VLAN '{vlan}' asks the gateway's DNS, and {WHY}: put it in"
                    " dns.sinkhole (answered locally, forwarded nowhere)",
                )
            )
    return out


def _vlan_of(p: Policy, word: str) -> str | None:
    if word in p.vlans:
        return word
    host = p.hosts.get(word)
    return host.vlan if host is not None else None

"""The expected-flow matrix: flows that must pass and representative flows that must be dropped.

Pure: derived from the policy alone. Every allowed flow is probed on each of its ports from a
representative source; the dropped set covers each VLAN to the WAN, each sinkhole VLAN to an
outside resolver and to DNS at every other VLAN's gateway address, each VLAN to each gateway port it is not allowed, each VLAN to each other VLAN
on a port it is not allowed, and the gateway's own egress to a non-allowlisted address. A sealed
site (`site.mode: sealed`) is probed towards the WAN on every probe port, from every VLAN and
from the Cell itself, plus the Cell's own DNS to an outside resolver: nothing may leave. A dropped
probe names the counter that must rise, because a timeout alone proves nothing.

Endpoints outside the site (`wan`, `hub.*` by hostname) have `"address": null`: the runner fills
them in from its environment (the lab's WAN namespace), since the policy does not know them.
"""

from __future__ import annotations

import json

from pydantic import ConfigDict, Field

from firewall.compile import drop_counter_for
from policies import Policy
from policies.flows import (
    GATEWAY,
    HUB_BRIDGE,
    HUB_MANAGEMENT,
    WAN,
    Endpoint,
    decide,
    flow_ports,
    probe_address,
    reserved_probe,
)
from policies.record import Record
from policies.types import ipv4_or_none


class ProbeEnd(Record):
    """One end of a probe: a concrete representative of a flow endpoint."""

    name: str = Field(description="A host, VLAN-probe, gateway, wan, hub.* or outside name.")
    vlan: str | None = Field(description="Its VLAN (None: outside the site).")
    address: str | None = Field(description="Its address; None: the runner fills it in.")
    hostname: str | None = Field(default=None, description="A hub endpoint's hostname.")
    resolver: str | None = Field(
        default=None, description="Where the source resolves `hostname` (its own resolver)."
    )

    def doc(self) -> dict[str, object]:
        """As probes.json spells it: `hostname` and `resolver` only where they are set."""
        return self.model_dump(mode="json", exclude_unset=True)


class Probe(Record):
    """One flow of the matrix: what to send, and what must happen to it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(description="SOURCE>TARGET:PORT/PROTO, unique in the matrix.")
    source: ProbeEnd = Field(alias="from", description="Where the probe is sent from.")
    to: ProbeEnd = Field(description="Where it is sent to.")
    port: int = Field(description="Destination port.")
    proto: str = Field(description="tcp or udp.")
    kind: str = Field(description="tcp, udp or dns (a DNS query on port 53).")
    expect: str = Field(description="accept or drop, as the policy decides.")
    flow: int | None = Field(description="Index of the flow in network.yaml that allows it.")
    counter: str | None = Field(description="The drop counter that must rise (drops only).")
    why: str = Field(description="Why this probe is in the matrix.")

    def doc(self) -> dict[str, object]:
        return {
            **self.model_dump(mode="json", by_alias=True, exclude={"source", "to"}),
            "from": self.source.doc(),
            "to": self.to.doc(),
        }


PROBE_PORTS = [(443, "tcp"), (80, "tcp"), (22, "tcp"), (8883, "tcp"), (554, "tcp"), (9999, "udp")]


def _rep(policy: Policy, word: str, peer_vlan: str | None) -> ProbeEnd:
    """A concrete representative of a flow endpoint: a host address where there is one."""
    if word in policy.hosts:
        h = policy.hosts[word]
        return ProbeEnd(name=h.name, vlan=h.vlan, address=h.address)
    if word in policy.vlans:
        hosts = [h for h in policy.network.hosts if h.vlan == word]
        if hosts:
            return ProbeEnd(name=hosts[0].name, vlan=word, address=hosts[0].address)
        return ProbeEnd(name=f"{word}-probe", vlan=word, address=probe_address(policy, word))
    if word == GATEWAY:
        addr = policy.vlans[peer_vlan].gateway if peer_vlan else None
        return ProbeEnd(name=GATEWAY, vlan=peer_vlan, address=addr)
    hub = policy.site.hub
    if word == HUB_BRIDGE and hub is not None:
        return ProbeEnd(
            name=HUB_BRIDGE,
            vlan=None,
            address=ipv4_or_none(hub.bridge.address),
            hostname=hub.bridge.address,
        )
    if word == HUB_MANAGEMENT and hub is not None:
        m = hub.management[0]
        return ProbeEnd(
            name=HUB_MANAGEMENT, vlan=None, address=ipv4_or_none(m.address), hostname=m.address
        )
    return ProbeEnd(name=word, vlan=None, address=None)


def _kind(port: int, proto: str) -> str:
    return "dns" if port == 53 else proto


def _ep(policy: Policy, d: ProbeEnd) -> Endpoint:
    if d.name == GATEWAY:
        return Endpoint("gateway", GATEWAY, d.vlan, d.address)
    if d.name in (HUB_BRIDGE, HUB_MANAGEMENT):
        return Endpoint(d.name, d.name)  # type: ignore[arg-type]
    if d.vlan is None:
        return Endpoint("wan", WAN)
    if d.name in policy.hosts:
        return Endpoint("host", d.name, d.vlan, d.address)
    return Endpoint("address", d.name, d.vlan, d.address)


def compile_probes(policy: Policy) -> list[Probe]:
    probes: list[Probe] = []

    def add(src: ProbeEnd, dst: ProbeEnd, port: int, proto: str, why: str, dst_class: str) -> None:
        verdict = decide(policy, _ep(policy, src), _ep(policy, dst), (port, proto))
        src_class = src.vlan if src.name != GATEWAY else GATEWAY
        if dst.hostname and not dst.address:  # resolved first, as the source would
            own = policy.vlans[str(src.vlan)].gateway if src_class != GATEWAY else "127.0.0.1"
            dst = dst.model_copy(update={"resolver": own})
        probes.append(
            Probe(
                id=f"{src.name}>{_label(src, dst)}:{port}/{proto}",
                source=src,
                to=dst,
                port=port,
                proto=proto,
                kind=_kind(port, proto),
                expect=verdict.verdict,
                flow=verdict.flow,
                counter=None
                if verdict.verdict == "accept"
                else drop_counter_for(policy, str(src_class), dst_class),
                why=why,
            )
        )

    for i, f in enumerate(policy.network.flows):
        src = _rep(policy, f.source, None)
        dst = _rep(policy, f.to, src.vlan)
        for port, proto in flow_ports(policy, f):
            add(src, dst, port, proto, f"flows[{i}] must pass", _dst_class(dst))

    gw_ports = sorted(
        {pp for f in policy.network.flows if f.to == GATEWAY for pp in flow_ports(policy, f)}
    )
    wan = ProbeEnd(name=WAN, vlan=None, address=None)
    for v in policy.network.vlans:
        src = _rep(policy, v.name, None)
        for port, proto in PROBE_PORTS:
            if (
                decide(policy, _ep(policy, src), Endpoint("wan", WAN), (port, proto)).verdict
                == "drop"
            ):
                add(
                    src,
                    wan,
                    port,
                    proto,
                    f"VLAN {v.name} must not reach the Internet on this port",
                    WAN,
                )
                if not policy.sealed:
                    break  # sealed: every port, the proof that nothing leaves
        if v.name in policy.network.dns.sinkhole:
            for other in policy.network.vlans:
                if other.name != v.name:  # the Cell's resolver may listen there: never for us
                    gw_other = _rep(policy, GATEWAY, other.name)
                    add(
                        src,
                        gw_other,
                        53,
                        "udp",
                        f"sinkhole VLAN {v.name} must not use DNS on VLAN {other.name}'s gateway address",
                        GATEWAY,
                    )
            resolver = ProbeEnd(
                name="outside-resolver",
                vlan=None,
                address=policy.network.wan.resolvers[0] if policy.network.wan.resolvers else None,
            )
            add(
                src,
                resolver,
                53,
                "udp",
                f"sinkhole VLAN {v.name} must not reach an outside resolver",
                WAN,
            )
        gw = _rep(policy, GATEWAY, v.name)
        for port, proto in gw_ports:
            if decide(policy, _ep(policy, src), _ep(policy, gw), (port, proto)).verdict == "drop":
                add(
                    src, gw, port, proto, f"VLAN {v.name} is not allowed this gateway port", GATEWAY
                )
        for other in policy.network.vlans:
            if other.name == v.name:
                continue
            dst = _rep(policy, other.name, None)
            for port, proto in PROBE_PORTS:
                if (
                    decide(policy, _ep(policy, src), _ep(policy, dst), (port, proto)).verdict
                    == "drop"
                ):
                    add(
                        src,
                        dst,
                        port,
                        proto,
                        f"VLAN {v.name} must not reach VLAN {other.name} on this port",
                        other.name,
                    )
                    break
    gw_src = ProbeEnd(name=GATEWAY, vlan=None, address=None)
    phone_home = ProbeEnd(name="phone-home", vlan=None, address=None)
    if not policy.sealed:
        why = "the gateway's own egress is allowlisted: hub and management only"
        add(gw_src, phone_home, 443, "tcp", why, WAN)
        return probes
    why = "the site is sealed: the Cell itself sends nothing out"
    for port, proto in PROBE_PORTS:
        add(gw_src, phone_home, port, proto, why, WAN)
    outside = ProbeEnd(name="outside-resolver", vlan=None, address=None)
    add(gw_src, outside, 53, "udp", f"{why}, not even a DNS query", WAN)
    return probes


def _label(src: ProbeEnd, dst: ProbeEnd) -> str:
    """How a probe names its target: a gateway address on another VLAN shows its address."""
    if dst.name == GATEWAY and dst.vlan and dst.vlan != src.vlan:
        return f"gateway@{dst.address}"
    return dst.name


def _dst_class(dst: ProbeEnd) -> str:
    if dst.name == GATEWAY:
        return GATEWAY
    return dst.vlan or WAN


def inplace_probes(policy: Policy) -> list[Probe]:
    """The matrix as `cell probe` runs it in place (docs/links.md): a VLAN's probes are sent
    from that VLAN's reserved probe address, never from a host's (a real host has it), so each
    one's verdict, flow and drop counter are decided again for that source. Probes that become
    the same (two hosts of one VLAN to one target) are sent once."""
    out: list[Probe] = []
    seen: set[str] = set()
    for probe in compile_probes(policy):
        p = probe
        if p.source.vlan is not None and p.source.name != GATEWAY:
            vlan = p.source.vlan
            src = ProbeEnd(name=f"probe@{vlan}", vlan=vlan, address=reserved_probe(policy, vlan))
            verdict = decide(policy, _ep(policy, src), _ep(policy, p.to), (p.port, p.proto))
            counter = None
            if verdict.verdict != "accept":
                counter = drop_counter_for(policy, vlan, _dst_class(p.to))
            p = p.model_copy(
                update={
                    "id": f"{src.name}>{p.id.split('>', 1)[1]}",
                    "source": src,
                    "expect": verdict.verdict,
                    "flow": verdict.flow,
                    "counter": counter,
                    "why": f"{p.why} (sent from the VLAN's probe address)",
                }
            )
        if p.id not in seen:
            seen.add(p.id)
            out.append(p)
    return out


def render_probes(policy: Policy) -> bytes:
    """probes.json: one probe per line, so a diff of two renders reads probe by probe."""
    lines = ",\n".join(json.dumps(p.doc(), sort_keys=True) for p in compile_probes(policy))
    return f'{{"site": {json.dumps(policy.site.site.id)}, "probes": [\n{lines}\n]}}\n'.encode()

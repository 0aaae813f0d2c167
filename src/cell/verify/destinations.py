"""`cell pcap destinations`: every remote endpoint seen on the WAN in a window, against the policy.

Pure: packets in (from `pcapread`), a document out. Each connection is put on its site side
(the gateway's own WAN addresses, or an address in a VLAN subnet, seen as they are when
`wan.nat: false`) and its remote side. With NAT on (the default), everything the site sends
leaves with the Cell's WAN address, and the capture cannot tell which host sent it: a connection
from that address that the gateway's own flows do not admit is judged against every site
source (each host, and an unlisted address of each VLAN), and is allowed when one of them may
open it; its `source` is then `site (NAT)`, and `rule` the flow that admits it. Who opened it: the sender of a TCP SYN, the receiver of a SYN-ACK,
else (seen mid-stream) the side on the higher, ephemeral port, else the first sender.
Connections the site opened are decided by `policies.flows.decide`, the function behind
`cell explain flow` and the firewall compiler, so the verdict here and the firewall's cannot
disagree (plus the one implied rule, the Cell's own DNS to `wan.resolvers`). Hub endpoints named by hostname are known by
the addresses the Cell's resolver put in the firewall's sets (`hub_addresses`).

Connections opened from outside are listed apart (`inbound`): Internet noise is not a leak,
unless the site answered one, which is then `unexpected` as well.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from socket import inet_ntoa
from typing import Any

from cell.verify.pcapread import Packet
from policies import Policy
from policies.flows import GATEWAY, Decision, Endpoint, decide, probe_address, resolve

_PROTO = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
_SYN, _ACK = 0x02, 0x10


def parse_ip(
    link: int, head: bytes
) -> tuple[str, str, str, int | None, int | None, int, int] | None:
    """(src, dst, proto, sport, dport, tcp flags, offset of the payload) of an IP packet; None
    for anything else."""
    if link == 1:  # Ethernet
        off, etype = 14, int.from_bytes(head[12:14], "big") if len(head) >= 14 else 0
        while etype in (0x8100, 0x88A8) and len(head) >= off + 4:
            etype, off = int.from_bytes(head[off + 2 : off + 4], "big"), off + 4
    elif link == 113:  # Linux cooked
        off, etype = 16, int.from_bytes(head[14:16], "big") if len(head) >= 16 else 0
    elif link == 276:  # Linux cooked v2
        off, etype = 20, int.from_bytes(head[0:2], "big") if len(head) >= 20 else 0
    elif link in (12, 101, 228):  # raw IPv4
        off, etype = 0, 0x0800
    else:
        return None
    if etype == 0x0800 and len(head) >= off + 20:
        ihl = (head[off] & 0x0F) * 4
        proto = head[off + 9]
        src, dst = inet_ntoa(head[off + 12 : off + 16]), inet_ntoa(head[off + 16 : off + 20])
        l4 = off + ihl
        fragment = int.from_bytes(head[off + 6 : off + 8], "big") & 0x1FFF
        if fragment:
            proto = -1  # a later fragment has no ports; it belongs to a flow seen already
    elif etype == 0x86DD and len(head) >= off + 40:
        proto = head[off + 6]
        src = str(ipaddress.IPv6Address(head[off + 8 : off + 24]))
        dst = str(ipaddress.IPv6Address(head[off + 24 : off + 40]))
        l4 = off + 40
    else:
        return None
    name = _PROTO.get(proto, str(proto))
    if proto in (6, 17) and len(head) >= l4 + 4:
        sport, dport = struct.unpack_from("!HH", head, l4)
        flags = head[l4 + 13] if proto == 6 and len(head) >= l4 + 14 else 0
        return src, dst, name, sport, dport, flags, l4 + 8
    return src, dst, name, None, None, 0, l4


@dataclass
class _Conn:
    opened_by_site: bool
    packets_out: int = 0
    packets_in: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    first_ns: int = 0
    last_ns: int = 0


@dataclass
class Sites:
    """What is the site's side of the WAN: the gateway's WAN addresses and the VLAN subnets."""

    gateway: set[str]
    subnets: list[ipaddress.IPv4Network] = field(default_factory=list)
    _seen: dict[str, bool] = field(default_factory=dict)

    def __contains__(self, address: str) -> bool:
        known = self._seen.get(address)
        if known is None:
            known = self._seen[address] = self._lookup(address)
        return known

    def _lookup(self, address: str) -> bool:
        if address in self.gateway:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in n for n in self.subnets if ip.version == n.version)


def sites_of(policy: Policy, gateway: Iterable[str]) -> Sites:
    return Sites(set(gateway), [ipaddress.IPv4Network(v.subnet) for v in policy.network.vlans])


def dns_answers(payload: bytes) -> tuple[str, list[str]] | None:
    """(question name, IPv4 addresses answered) of a DNS response; None if it is not one."""
    if len(payload) < 12 or not payload[2] & 0x80:
        return None
    qd, an = struct.unpack_from("!HH", payload, 4)
    if qd < 1:
        return None
    qname, off = _name(payload, 12)
    off += 4
    for _ in range(qd - 1):
        off = _name(payload, off)[1] + 4
    out = []
    for _ in range(an):
        off = _name(payload, off)[1]
        if off + 10 > len(payload):
            break
        rtype, _cls, _ttl, size = struct.unpack_from("!HHIH", payload, off)
        off += 10
        if rtype == 1 and size == 4 and off + 4 <= len(payload):
            out.append(inet_ntoa(payload[off : off + 4]))
        off += size
    return qname, out


def _name(payload: bytes, at: int) -> tuple[str, int]:
    """A DNS name at `at` (compression pointers followed) and the offset after it."""
    labels: list[str] = []
    end: int | None = None
    hops = 0
    while at < len(payload) and hops < 32:
        n = payload[at]
        if n & 0xC0 == 0xC0:
            if at + 1 >= len(payload):
                break
            end = end or at + 2
            at, hops = ((n & 0x3F) << 8) | payload[at + 1], hops + 1
            continue
        if n == 0:
            break
        labels.append(payload[at + 1 : at + 1 + n].decode("ascii", "replace"))
        at += 1 + n
    return ".".join(labels).lower(), end or at + 1


def connections(
    packets: Iterable[Packet], sites: Sites, names: dict[str, set[str]] | None = None
) -> tuple[dict[tuple[Any, ...], _Conn], int]:
    """Connections keyed (site address, site port, remote address, remote port, proto), and the
    count of IP packets with no site side (neither end is the site's). DNS answers to the
    gateway itself (its resolver fills the firewall's hub sets from them) go into `names`."""
    conns: dict[tuple[Any, ...], _Conn] = {}
    stray = 0
    for ts, link, head, wire in packets:
        p = parse_ip(link, head)
        if p is None:
            continue
        src, dst, proto, sport, dport, flags, at = p
        if names is not None and sport == 53 and proto == "udp" and dst in sites.gateway:
            answer = dns_answers(head[at:])
            if answer:
                names.setdefault(answer[0], set()).update(answer[1])
        if src in sites and dst not in sites:
            key, out = (src, sport, dst, dport, proto), True
        elif dst in sites and src not in sites:
            key, out = (dst, dport, src, sport, proto), False
        else:
            stray += 1
            continue
        c = conns.get(key)
        if c is None:
            if proto == "tcp" and flags & _SYN:
                by_site = out if not flags & _ACK else not out
            elif sport is not None and dport is not None and sport != dport:
                # Seen mid-stream: the opener is the side on the ephemeral (higher) port.
                site_port, remote_port = (sport, dport) if out else (dport, sport)
                by_site = site_port > remote_port
            else:
                by_site = out
            c = conns[key] = _Conn(by_site, first_ns=ts)
        c.last_ns = ts
        if out:
            c.packets_out += 1
            c.bytes_out += wire
        else:
            c.packets_in += 1
            c.bytes_in += wire
    return conns, stray


def _endpoint(policy: Policy, address: str, sites: Sites) -> Endpoint:
    ep = resolve(policy, GATEWAY) if address in sites.gateway else resolve(policy, address)
    return ep or Endpoint("address", address, None, address)


def _remote(policy: Policy, address: str, hubs: dict[str, str]) -> tuple[Endpoint, str | None]:
    """The remote endpoint, known as a hub endpoint when the Cell's resolver gave it that address."""
    kind = hubs.get(address)
    if kind in ("hub.bridge", "hub.management"):
        return Endpoint(kind, kind, None, address), kind  # type: ignore[arg-type]
    ep = resolve(policy, address) if ":" not in address else None
    return ep or Endpoint("address", address, None, address), None


def _hubs_by_name(policy: Policy, names: dict[str, set[str]]) -> dict[str, str]:
    hub = policy.site.hub
    if hub is None:  # a sealed site
        return {}
    wanted = [(hub.bridge.address, "hub.bridge")]
    wanted += [(m.address, "hub.management") for m in hub.management]
    out = {}
    for host, kind in wanted:
        for address in names.get(host.lower().rstrip("."), ()):
            out[address] = kind
    return out


def _rule(policy: Policy, flow: int | None) -> dict[str, Any] | None:
    if flow is None:
        return None
    f = policy.network.flows[flow]
    file, line, _ = policy.where("network.yaml", ("flows", flow))
    return {"file": file, "line": line, "from": f.source, "to": f.to, "service": f.service}


def _implied_dns(
    policy: Policy, src: Endpoint, raddr: str, pp: tuple[int, str] | None
) -> dict[str, Any] | None:
    """The Cell's own DNS to `wan.resolvers` (any WAN address when none are listed): implied,
    like the firewall's rule for it (`firewall.compile`); the rule points at `wan.resolvers`."""
    resolvers = policy.network.wan.resolvers
    if src.kind != "gateway" or pp is None or pp[0] != 53 or (resolvers and raddr not in resolvers):
        return None
    path: tuple[str | int, ...] = ("wan", "resolvers") if resolvers else ("wan",)
    file, line, _ = policy.where("network.yaml", path)
    return {"file": file, "line": line, "from": "gateway", "to": "wan.resolvers", "service": "dns"}


def _who(ep: Endpoint, address: str) -> dict[str, Any]:
    return {"address": address, "name": ep.name, "vlan": ep.vlan}


NAT_SOURCE = "site (NAT)"


def _behind_nat(policy: Policy, dst: Endpoint, pp: tuple[int, str] | None) -> Decision | None:
    """The decision for the first site source that may open this connection, if one may."""
    candidates = [h.address for h in policy.network.hosts]
    candidates += [probe_address(policy, v.name) for v in policy.network.vlans]
    for address in candidates:
        ep = resolve(policy, address)
        if ep is not None:
            d = decide(policy, ep, dst, pp)
            if d.verdict == "accept":
                return d
    return None


def decide_destinations(
    policy: Policy, packets: Iterable[Packet], sites: Sites, hubs: dict[str, str]
) -> dict[str, Any]:
    """The destinations document (see the module docstring). Pure.

    `hubs`: address -> hub.bridge / hub.management, as the firewall's sets hold them now; the
    answers the Cell's resolver got for the hub names inside the window are added to them."""
    names: dict[str, set[str]] = {}
    conns, stray = connections(packets, sites, names)
    hubs = {**_hubs_by_name(policy, names), **hubs}
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    inbound: dict[tuple[Any, ...], dict[str, Any]] = {}
    for (saddr, sport, raddr, rport, proto), c in conns.items():
        src = _endpoint(policy, saddr, sites)
        if c.opened_by_site:
            key, port = (saddr, raddr, rport, proto), rport
            table = out
        else:
            key, port = (saddr, raddr, sport, proto), sport
            table = inbound
        row = table.get(key)
        if row is None:
            dst, hub = _remote(policy, raddr, hubs)
            pp = (port, proto) if port is not None and proto in ("tcp", "udp") else None
            implied = _implied_dns(policy, src, raddr, pp) if c.opened_by_site else None
            if ":" in saddr or ":" in raddr:
                d_verdict, flow = "drop", None  # the policy is IPv4 only: nothing admits IPv6
            elif implied is not None:
                d_verdict, flow = "accept", None
            else:
                d = (
                    decide(policy, src, dst, pp)
                    if c.opened_by_site
                    else decide(policy, dst, src, pp)
                )
                d_verdict, flow = d.verdict, d.flow
            nat = None
            if c.opened_by_site and d_verdict != "accept" and src.kind == "gateway":
                nat = _behind_nat(policy, dst, pp) if policy.network.wan.nat else None
                if nat is not None:
                    d_verdict, flow = nat.verdict, nat.flow
            row = table[key] = {
                "address": raddr,
                "port": port,
                "proto": proto,
                "packets": 0,
                "bytes": 0,
                "packets_out": 0,
                "bytes_out": 0,
                "connections": 0,
                "verdict": "allowed" if d_verdict == "accept" else "unexpected",
                "rule": implied or _rule(policy, flow),
                "endpoint": hub
                or ("wan.resolvers" if implied else None)
                or ("wan" if dst.kind == "address" and dst.vlan is None else dst.name),
                "source": (
                    {"address": saddr, "name": NAT_SOURCE, "vlan": None}
                    if nat is not None
                    else _who(src, saddr)
                ),
                "first": c.first_ns,
                "last": c.last_ns,
            }
        row["packets"] += c.packets_in + c.packets_out
        row["bytes"] += c.bytes_in + c.bytes_out
        row["packets_out"] += c.packets_out
        row["bytes_out"] += c.bytes_out
        row["connections"] += 1
        row["first"], row["last"] = min(row["first"], c.first_ns), max(row["last"], c.last_ns)
    for row in inbound.values():
        # Noise from outside is no leak; an answer from the site that no flow admits is one.
        if row["verdict"] == "unexpected" and row["packets_out"] == 0:
            row["verdict"] = "ignored"

    def order(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["verdict"] != "unexpected", -r["bytes"], r["address"], r["port"] or 0, r["proto"])

    dests = sorted(out.values(), key=order)
    ins = sorted(inbound.values(), key=order)
    unexpected = sum(r["verdict"] == "unexpected" for r in dests + ins)
    return {
        "destinations": dests,
        "inbound": ins,
        "unexpected": unexpected,
        "stray_packets": stray,
    }

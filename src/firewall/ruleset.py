"""What the flows of a policy allow, as the elements of the firewall's named sets (pure).

The ruleset's rules are fixed by the VLANs and the hub endpoints; everything a flow says lands
here, as set elements. That is what keeps the rule count flat as hosts are added: 600 cameras
are 600 elements (when flows name them one by one), never 600 rules.

An element is a tuple of fields in the set's key order: interface names and protocols as str,
ports as int, addresses as inclusive `(first, last)` integer intervals, so that a VLAN subnet and
a host /32 are one kind of value and containment is a comparison.

The kernel refuses a concatenated interval element whose ends fall inside an element already in
the set, so `minimal` drops every element that another one contains (a host flow that its VLAN's
flow already allows). Elements are sorted: same policy, same bytes.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from policies.flows import GATEWAY, HUB_BRIDGE, HUB_MANAGEMENT, WAN, flow_ports

if TYPE_CHECKING:
    from policies.model import Policy

Interval = tuple[int, int]
Field = str | int | Interval
Element = tuple[Field, ...]

ALL_V4: Interval = (0, 2**32 - 1)


@dataclass
class Allowed:
    """The allow sets' contents, plus which gateway-to-hub rules the flows ask for."""

    in_allow: set[Element] = field(default_factory=set)  # iif, saddr, daddr, proto, port
    fwd_allow: set[Element] = field(default_factory=set)  # iif, saddr, daddr, proto, port
    fwd_wan: set[Element] = field(default_factory=set)  # iif, saddr, proto, port
    fwd_hub_bridge: set[Element] = field(default_factory=set)  # iif, saddr
    fwd_hub_mgmt: set[Element] = field(default_factory=set)  # iif, saddr
    out_allow: set[Element] = field(default_factory=set)  # oif, daddr, proto, port
    out_wan: set[Element] = field(default_factory=set)  # proto, port
    gateway_hub_bridge: bool = False
    gateway_hub_mgmt: bool = False


def compile_allowed(policy: Policy) -> Allowed:
    """Sort every flow into the set (or the hub rule) that admits it.

    Flows only ever accept, so their order does not matter here: a connection is admitted iff
    some flow covers it, which is exactly `policies.flows.decide`.
    """
    out = Allowed()
    for flow in policy.network.flows:
        ports = [(proto, port) for port, proto in flow_ports(policy, flow)]
        src, dst = site_endpoint(policy, flow.source), site_endpoint(policy, flow.to)
        if flow.source == GATEWAY:
            if dst is not None:
                out.out_allow.update((*dst, *pp) for pp in ports)
            elif flow.to == WAN:
                out.out_wan.update(ports)
            elif flow.to == HUB_BRIDGE:
                out.gateway_hub_bridge = True
            elif flow.to == HUB_MANAGEMENT:
                out.gateway_hub_mgmt = True
            else:
                raise ValueError(f"unsupported flow {flow.source} -> {flow.to}")
        elif src is not None:
            if flow.to == GATEWAY:
                # Only the gateway's address on the source's own VLAN: another VLAN's gateway
                # address may carry a service this VLAN must not reach (the forwarding resolver
                # listens on non-sinkhole VLANs' gateways; a camera must never query it).
                gw = own_gateway(policy, flow.source)
                out.in_allow.update((*src, gw, *pp) for pp in ports)
            elif dst is not None:
                out.fwd_allow.update((*src, dst[1], *pp) for pp in ports)
            elif flow.to == WAN:
                out.fwd_wan.update((*src, *pp) for pp in ports)
            elif flow.to == HUB_BRIDGE:
                out.fwd_hub_bridge.add(src)
            elif flow.to == HUB_MANAGEMENT:
                out.fwd_hub_mgmt.add(src)
            else:
                raise ValueError(f"unsupported flow {flow.source} -> {flow.to}")
        else:
            raise ValueError(f"unsupported flow {flow.source} -> {flow.to} (not validated?)")
    return out


def own_gateway(policy: Policy, word: str) -> Interval:
    """The gateway address (as an interval) on the VLAN of a VLAN or host flow endpoint."""
    vlan = policy.vlans.get(word) or policy.vlans[policy.hosts[word].vlan]
    addr = ip_int(vlan.gateway)
    return (addr, addr)


def site_endpoint(policy: Policy, word: str) -> tuple[str, Interval] | None:
    """(interface, address interval) of a VLAN or host flow endpoint; None for other words."""
    vlan = policy.vlans.get(word)
    if vlan is not None:
        addr, n = vlan.subnet.split("/")
        first = ip_int(addr)
        return vlan.interface, (first, first | (ALL_V4[1] >> int(n)))
    host = policy.hosts.get(word)
    if host is not None:
        first = ip_int(host.address)
        return policy.vlans[host.vlan].interface, (first, first)
    return None


def ip_int(text: str) -> int:
    """A dotted quad (validated upstream) as an integer; ipaddress is 5x slower at scale."""
    return int.from_bytes(socket.inet_aton(text), "big")


def ip_text(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, "big"))


def is_ipv4(text: str) -> bool:
    """Is a hub address an IPv4 literal (the model normalised it) rather than a hostname?"""
    try:
        return str(ipaddress.IPv4Address(text)) == text
    except ValueError:
        return False


def minimal(elements: Iterable[Element]) -> list[Element]:
    """The elements, sorted, without those that another element contains.

    Containment is per field: equal, or an interval inside the other's. Candidate containers
    are found by masking to each prefix length present (addresses come as prefixes) plus a scan
    of the few non-prefix ranges, so this stays linear in the number of elements.
    """
    elems = set(elements)
    if not elems:
        return []
    width = len(next(iter(elems)))
    spans = [i for i in range(width) if isinstance(next(iter(elems))[i], tuple)]
    index = {i: _IntervalIndex(_interval(e[i]) for e in elems) for i in spans}
    keep = []
    for e in elems:
        options = [
            index[i].containers(_interval(e[i])) if i in index else [e[i]] for i in range(width)
        ]
        covered = any(c != e and c in elems for c in itertools.product(*options))
        if not covered:
            keep.append(e)
    return sorted(keep)


def _interval(f: Field) -> Interval:
    assert isinstance(f, tuple)
    return f


class _IntervalIndex:
    """The distinct intervals of one field, to find those containing a given one quickly."""

    def __init__(self, intervals: Iterable[Interval]) -> None:
        self.all = set(intervals)
        self.lengths = sorted({n for iv in self.all if (n := prefix_len(iv)) is not None})
        self.ranges = [iv for iv in self.all if prefix_len(iv) is None]

    def containers(self, iv: Interval) -> list[Field]:
        found: set[Interval] = {iv}
        for n in self.lengths:
            mask = (ALL_V4[1] << (32 - n)) & ALL_V4[1]
            cand = (iv[0] & mask, (iv[0] & mask) | (~mask & ALL_V4[1]))
            if cand[0] <= iv[0] and iv[1] <= cand[1] and cand in self.all:
                found.add(cand)
        found.update(r for r in self.ranges if r[0] <= iv[0] and iv[1] <= r[1])
        return sorted(found)


def prefix_len(iv: Interval) -> int | None:
    """n if the interval is exactly the prefix a.b.c.d/n, else None."""
    size = iv[1] - iv[0] + 1
    if size & (size - 1) or iv[0] % size:
        return None
    return 32 - (size.bit_length() - 1)


def address_json(iv: Interval) -> Any:
    """An interval as libnftables JSON, in the form `nft list` prints it back.

    A single address stays an address, an aligned block a prefix, anything else a range; the
    same shapes the kernel read-back takes, so a live listing compares without translation.
    """
    first = ip_text(iv[0])
    if iv[0] == iv[1]:
        return first
    n = prefix_len(iv)
    if n is not None:
        return {"prefix": {"addr": first, "len": n}}
    return {"range": [first, ip_text(iv[1])]}


def element_json(elem: Element) -> Any:
    """One set element as libnftables JSON: a scalar, or a `concat` of the fields."""
    fields = [address_json(f) if isinstance(f, tuple) else f for f in elem]
    return fields[0] if len(fields) == 1 else {"concat": fields}

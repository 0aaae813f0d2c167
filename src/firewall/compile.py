"""Compile a validated `Policy` into the nftables ruleset of table `inet cell` (pure).

The output is a list of libnftables JSON objects (libnftables-json(5)) in one canonical order:
the table, its counters (by name), its sets and maps, the chains prerouting, mark_input,
mark_forward, mark_output, input, forward, output (and postrouting, for NAT), then their rules. `render_json` wraps them in one document
that replaces the table atomically; `nfttext` prints the same objects as nft syntax. Loaded, the
kernel lists back exactly these objects (plus handles and counter values), which is what drift
detection compares. The parts live in their own modules:

  prerouting   anti-spoofing: a source must belong to the link it arrives on (`antispoof`)
  mark_input, mark_forward, mark_output   a new connection's ct mark: its interface pair (`ctpairs`)
  input/forward/output (filter, priority 0, policy drop), in order:
    1. forward: every VLAN without Internet (every VLAN, sealed) is counted and dropped towards
       the WAN link before anything else, whatever conntrack says; output of a sealed site: the
       same for the Cell itself;
    2. `ct state established,related` accepted only on the interface pair of the connection
       (`ctpairs`: the ct mark set when it was opened); `ct state invalid` counted and dropped;
    3. input/output: `iif lo` / `oif lo` accept (the Cell's own services talk over loopback);
    4. the allows, each one lookup in a named set that the flows fill (`ruleset.compile_allowed`):
       input    iifname . ip saddr . ip daddr . meta l4proto . th dport @in_allow   site -> own gateway address
       forward  oifname . ip daddr @vlan_nets, iifname . ip saddr . ip daddr . meta l4proto . th dport @fwd_allow  site -> site
                oifname WAN, daddr not a hub's, iifname . ip saddr . proto . port @fwd_wan  -> wan
                oifname WAN, ip daddr @hub_bridge (@hub_mgmt_N), iifname . ip saddr
                @fwd_hub_bridge (@fwd_hub_mgmt), tcp dport PORT            site -> hub.*
       output   oifname . ip daddr . meta l4proto . th dport @out_allow     gateway -> site
                oifname WAN, daddr not a hub's, meta l4proto . th dport @out_wan  gateway -> wan
                oifname WAN ip daddr @resolvers, udp/tcp 53                 implied, see below
                oifname WAN ip daddr @hub_bridge tcp dport PORT             gateway -> hub.bridge
                oifname WAN ip daddr @hub_mgmt_N tcp dport PORT_N  gateway -> hub.management
    5. counted drops, one rule per (source class, destination class), matched by interface
       (`counters`); then a catch-all before the policy.
  postrouting  masquerade out of the WAN link (`nat`), unless `wan.nat: false` or sealed.
Every accept names its output interface: a site-to-site accept requires the destination's own
VLAN link (`oifname . ip daddr @vlan_nets`), so a changed route cannot carry an allowed flow out
of the WAN. The hub rules exist only when a flow asks for them. So the rule count depends on the
VLANs, the management endpoints and which kinds of hub flow exist, never on hosts or on how many
flows: those are set elements.

Forward keys have five fields, not six with `oifname`: nft 1.0.6 packs a set's key type in 32
bits, six fields overflow it and the set no longer lists back (hence the second lookup).

`wan` is every address but the hub's (`policies.flows.decide` gives hub endpoints their own kind,
which `wan` does not cover). Hub endpoints: an IPv4 literal is the static element of its set; a
hostname's set starts empty and the Cell's dnsmasq fills it (`nftset=/NAME/4#inet#cell#SET`), so
only addresses the Cell itself resolved are admitted.

Implied, not written in network.yaml: the gateway's own DNS, to `wan.resolvers` (set `resolvers`)
on 53/udp and 53/tcp out the WAN, or to any WAN address when no resolver is listed. The Cell has
to resolve the hub's names to reach the hub at all. A sealed site has no hub and no such rule.

IPv6: the table is inet but every allow matches IPv4 only, so IPv6 packets end in the counted
drops. That is deliberate: the policy format is IPv4-only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from firewall import antispoof, ctpairs, nat
from firewall.counters import (
    LOG_LIMIT,
    LOG_PREFIX,
    DropCounter,
    catch_all,
    drop,
    drop_counter_for,
    drop_counters,
    dropped,
    invalid_counter,
    log_limited,
    other_counter,
    pair_counter,
    spoof_counter,
    spoof_counters,
)
from firewall.nftjson import (
    ACCEPT,
    DADDR,
    DPORT,
    IF_ADDR,
    IIFNAME,
    OIFNAME,
    PROTO,
    PROTO_PORT,
    SADDR,
    TABLE,
    TABLE_FAMILY,
    Json,
    base_chain,
    ct,
    fresh,
    key,
    match,
    meta,
    rule,
    set_,
    tcp,
)
from firewall.ruleset import (
    ALL_V4,
    Allowed,
    compile_allowed,
    element_json,
    ip_int,
    is_ipv4,
    minimal,
)
from policies.flows import GATEWAY, HUB_BRIDGE, HUB_MANAGEMENT, WAN

if TYPE_CHECKING:
    from policies.model import Policy, Vlan

__all__ = [
    "CHAINS",
    "HUB_BRIDGE_SET",
    "LOG_LIMIT",
    "LOG_PREFIX",
    "RESOLVERS_SET",
    "TABLE",
    "TABLE_FAMILY",
    "DropCounter",
    "compile_ruleset",
    "drop_counter_for",
    "drop_counters",
    "hub_mgmt_set",
    "invalid_counter",
    "other_counter",
    "pair_counter",
    "render_json",
    "rule_count",
    "spoof_counter",
    "spoof_counters",
]

HUB_BRIDGE_SET = "hub_bridge"
RESOLVERS_SET = "resolvers"
CHAINS = ("input", "forward", "output")
"""The filter chains (policy drop); prerouting (anti-spoofing) and postrouting (NAT) accept."""


def hub_mgmt_set(i: int) -> str:
    """The address set of site.yaml's management endpoint number `i` (0-based)."""
    return f"hub_mgmt_{i}"


# --- the ruleset --------------------------------------------------------------------------------


def compile_ruleset(policy: Policy) -> list[Json]:
    """The `inet cell` table for `policy`, as libnftables JSON objects in canonical order."""
    allowed = compile_allowed(policy)
    sets = _sets(policy, allowed)
    chains = [antispoof.antispoof_chain(), *ctpairs.mark_chains()]
    chains += [base_chain(c, c, 0, "drop") for c in CHAINS]
    built = antispoof.antispoof_rules(policy) + ctpairs.mark_rules()
    built += _input(policy) + _forward(policy, allowed) + _output(policy, allowed)
    if nat.nat_enabled(policy):
        chains.append(nat.nat_chain())
        built += nat.nat_rules(policy)
    # Rules share expression dicts while being built; copies keep callers' edits to themselves.
    rules = [fresh(r) for one in built for r in log_limited(one)]
    counters = sorted({e["counter"] for r in rules for e in r["rule"]["expr"] if "counter" in e})
    table: Json = {"table": {"family": TABLE_FAMILY, "name": TABLE}}
    counter_objs = [
        {"counter": {"family": TABLE_FAMILY, "table": TABLE, "name": n}} for n in counters
    ]
    return [table, *counter_objs, *sets, *chains, *rules]


def _sets(policy: Policy, allowed: Allowed) -> list[Json]:
    def elems(items: set[Any]) -> list[Any]:
        return [element_json(e) for e in minimal(items)]

    out = [
        set_("in_allow", [*IF_ADDR, "ipv4_addr", *PROTO_PORT], elems(allowed.in_allow)),
        set_("fwd_allow", [*IF_ADDR, "ipv4_addr", *PROTO_PORT], elems(allowed.fwd_allow)),
        set_("fwd_wan", [*IF_ADDR, *PROTO_PORT], elems(allowed.fwd_wan)),
    ]
    if allowed.fwd_hub_bridge:
        out.append(set_("fwd_hub_bridge", IF_ADDR, elems(allowed.fwd_hub_bridge)))
    if allowed.fwd_hub_mgmt:
        out.append(set_("fwd_hub_mgmt", IF_ADDR, elems(allowed.fwd_hub_mgmt)))
    out.append(set_("out_allow", [*IF_ADDR, *PROTO_PORT], elems(allowed.out_allow)))
    out.append(set_("out_wan", PROTO_PORT, elems(allowed.out_wan)))
    if not policy.sealed:
        resolvers = {(a, a) for a in map(ip_int, policy.network.wan.resolvers)} or {ALL_V4}
        out.append(set_(RESOLVERS_SET, ["ipv4_addr"], elems({(r,) for r in resolvers})))
    hub = policy.site.hub
    if hub is not None:
        endpoints = (hub.bridge, *hub.management)
        for (name, _, _), ep in zip(_hub_endpoints(policy), endpoints, strict=True):
            literal = [ep.address] if is_ipv4(ep.address) else []  # else dnsmasq fills it
            out.append(set_(name, ["ipv4_addr"], literal, interval=False))
    return [*out, *antispoof.antispoof_sets(policy), *ctpairs.ct_objects(policy)]


def _head(chain: str, lo: str | None) -> list[Json]:
    out = [
        ctpairs.established(chain),
        dropped(chain, invalid_counter(chain), f"invalid>{chain}", match(ct("state"), "invalid", "in")),
    ]  # fmt: skip
    if lo is not None:
        out.append(rule(chain, match(meta(lo), "lo"), ACCEPT))
    return out


def _lookup(chain: str, fields: Sequence[Json], name: str, *more: Json, comment: str) -> Json:
    return rule(chain, *more, match(key(*fields), f"@{name}"), ACCEPT, comment=comment)


def _input(policy: Policy) -> list[Json]:
    c, wan = "input", policy.network.wan.interface
    out = _head(c, "iif")
    fields = [IIFNAME, SADDR, DADDR, PROTO, DPORT]
    out.append(_lookup(c, fields, "in_allow", comment="flows: site -> gateway"))
    for v in _vlans(policy):
        out.append(drop(c, v.name, GATEWAY, match(IIFNAME, v.interface)))
    out.append(drop(c, WAN, GATEWAY, match(IIFNAME, wan)))
    out.append(catch_all(c))
    return out


def _forward(policy: Policy, allowed: Allowed) -> list[Json]:
    c, wan = "forward", policy.network.wan.interface
    to_wan = match(OIFNAME, wan)
    vlans = _vlans(policy)
    # Before conntrack is asked: no packet of a VLAN without Internet leaves by the WAN link.
    # (The output link first: it fails at once for traffic inside the site.)
    out = [
        drop(c, v.name, WAN, to_wan, match(IIFNAME, v.interface))
        for v in vlans
        if policy.sealed or not v.internet
    ]
    out += _head(c, None)
    site_dst = match(key(OIFNAME, DADDR), f"@{antispoof.VLAN_NETS}")
    fields = [IIFNAME, SADDR, DADDR, PROTO, DPORT]
    out.append(_lookup(c, fields, "fwd_allow", site_dst, comment="flows: site -> site"))
    if not policy.sealed:
        fields = [IIFNAME, SADDR, PROTO, DPORT]
        out.append(
            _lookup(c, fields, "fwd_wan", to_wan, *_not_hub(policy), comment="flows: site -> wan")
        )
    for hub_set, port, label in _hub_endpoints(policy):
        sources = "fwd_hub_bridge" if hub_set == HUB_BRIDGE_SET else "fwd_hub_mgmt"
        if getattr(allowed, sources):
            daddr = match(DADDR, f"@{hub_set}")
            note = f"flows: site -> {label}"
            out.append(
                _lookup(c, [IIFNAME, SADDR], sources, to_wan, daddr, tcp(port), comment=note)
            )
    for s in vlans:
        from_s = match(IIFNAME, s.interface)
        for d in vlans:
            if d.name != s.name:
                out.append(drop(c, s.name, d.name, from_s, match(OIFNAME, d.interface)))
        out.append(drop(c, s.name, WAN, from_s, to_wan))
    for d in vlans:
        out.append(drop(c, WAN, d.name, match(IIFNAME, wan), match(OIFNAME, d.interface)))
    out.append(catch_all(c))
    return out


def _output(policy: Policy, allowed: Allowed) -> list[Json]:
    c, wan = "output", policy.network.wan.interface
    to_wan = match(OIFNAME, wan)
    # A sealed Cell sends nothing out of the WAN link itself, whatever conntrack says.
    out = [drop(c, GATEWAY, WAN, to_wan)] if policy.sealed else []
    out += _head(c, "oif")
    fields = [OIFNAME, DADDR, PROTO, DPORT]
    out.append(_lookup(c, fields, "out_allow", comment="flows: gateway -> site"))
    if not policy.sealed:
        note = "flows: gateway -> wan"
        out.append(_lookup(c, [PROTO, DPORT], "out_wan", to_wan, *_not_hub(policy), comment=note))
        dns = [match(PROTO, {"set": ["tcp", "udp"]}), match(DPORT, 53)]
        resolvers = match(DADDR, f"@{RESOLVERS_SET}")
        note = "implied: gateway -> wan.resolvers, DNS"
        out.append(rule(c, to_wan, resolvers, *dns, ACCEPT, comment=note))
    for hub_set, port, label in _hub_endpoints(policy):
        wanted = (
            allowed.gateway_hub_bridge if hub_set == HUB_BRIDGE_SET else allowed.gateway_hub_mgmt
        )
        if wanted:
            daddr, note = match(DADDR, f"@{hub_set}"), f"flows: gateway -> {label}"
            out.append(rule(c, to_wan, daddr, tcp(port), ACCEPT, comment=note))
    for v in _vlans(policy):
        out.append(drop(c, GATEWAY, v.name, match(OIFNAME, v.interface)))
    out.append(drop(c, GATEWAY, WAN, to_wan))
    out.append(catch_all(c))
    return out


def _vlans(policy: Policy) -> list[Vlan]:
    """VLANs by name, so that reordering network.yaml does not change the ruleset."""
    return sorted(policy.network.vlans, key=lambda v: v.name)


def _hub_endpoints(policy: Policy) -> list[tuple[str, int, str]]:
    """(address set, TCP port, label) of hub.bridge and of each management endpoint."""
    hub = policy.site.hub
    if hub is None:
        return []
    mgmt = [
        (hub_mgmt_set(i), m.port, f"{HUB_MANAGEMENT} #{i}") for i, m in enumerate(hub.management)
    ]
    return [(HUB_BRIDGE_SET, hub.bridge.port, HUB_BRIDGE), *mgmt]


def _not_hub(policy: Policy) -> list[Json]:
    """`wan` is every address but the hub's: `decide` gives hub endpoints their own kind."""
    return [match(DADDR, f"@{name}", "!=") for name, _, _ in _hub_endpoints(policy)]


# --- documents ----------------------------------------------------------------------------------


def render_json(objects: Sequence[Json]) -> bytes:
    """One libnftables JSON document that atomically replaces table `inet cell`.

    `add table` then `delete table` makes the delete succeed whether or not the table exists;
    then every object is added. It names no other table, so other tables are never touched.
    Keys are sorted (libnftables reads objects by key); list order, which matters, is kept.
    """
    table = {"table": {"family": TABLE_FAMILY, "name": TABLE}}
    cmds: list[Json] = [{"metainfo": {"json_schema_version": 1}}, {"add": table}]
    cmds += [{"delete": table}, *({"add": o} for o in objects)]
    return (json.dumps({"nftables": cmds}, indent=2, sort_keys=True) + "\n").encode()


def rule_count(objects: Sequence[Json]) -> int:
    """How many rules the ruleset has (the number that must not grow with hosts)."""
    return sum(1 for o in objects if "rule" in o)

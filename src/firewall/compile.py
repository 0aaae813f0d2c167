"""Compile a validated `Policy` into the nftables ruleset of table `inet cell` (pure).

The output is a list of libnftables JSON objects (libnftables-json(5)) in one canonical order:
the table, its counters (by name), its sets, the chains input, forward, output, then their rules.
`render_json` wraps them in one document that replaces the table atomically; `nfttext` prints the
same objects as nft syntax. Loaded, the kernel lists back exactly these objects (plus handles and
counter values), which is what drift detection compares.

Each base chain (filter hook, priority 0, policy drop) runs, in order:
  1. `ct state established,related accept`: flows say who may *open* a connection; replies
     follow by connection tracking. `ct state invalid` is counted, logged and dropped.
  2. input/output: `iif lo` / `oif lo` accept (the Cell's own services talk over loopback).
  3. the allows, each one lookup in a named set that the flows fill (`ruleset.compile_allowed`):
       input    iifname . ip saddr . ip daddr . meta l4proto . th dport @in_allow   site -> own gateway address
       forward  iifname . ip saddr . ip daddr . meta l4proto . th dport @fwd_allow  site -> site
                oifname WAN, daddr not a hub's, iifname . ip saddr . proto . port @fwd_wan  -> wan
                oifname WAN, ip daddr @hub_bridge (@hub_mgmt_N), iifname . ip saddr
                @fwd_hub_bridge (@fwd_hub_mgmt), tcp dport PORT            site -> hub.*
       output   oifname . ip daddr . meta l4proto . th dport @out_allow     gateway -> site
                oifname WAN, daddr not a hub's, meta l4proto . th dport @out_wan  gateway -> wan
                oifname WAN ip daddr @resolvers, udp/tcp 53                 implied, see below
                oifname WAN ip daddr @hub_bridge tcp dport PORT             gateway -> hub.bridge
                oifname WAN ip daddr @hub_mgmt_N tcp dport PORT_N  gateway -> hub.management
  4. counted drops, one rule per (source class, destination class), matched by interface, with a
     named counter and the log prefix "cell drop SRC>DST: " (the log rate-limited, the counter
     exact: `_log_limited`); then a catch-all before the policy.
The hub rules exist only when a flow asks for them. So the rule count depends on the VLANs, the
management endpoints and which kinds of hub flow exist, never on hosts or on how many flows:
those are set elements.

Forward keys have five fields, not six with `oifname`: nft 1.0.6 packs a set's key type in 32
bits, six fields overflow it and the set no longer lists back. A site destination is an address
in a VLAN's subnet, which its connected route sends out that VLAN's interface anyway.

`wan` is every address but the hub's (`policies.flows.decide` gives hub endpoints their own kind,
which `wan` does not cover). Hub endpoints: an IPv4 literal is the static element of its set; a
hostname's set starts empty and the Cell's dnsmasq fills it (`nftset=/NAME/4#inet#cell#SET`), so
only addresses the Cell itself resolved are admitted.

Implied, not written in network.yaml: the gateway's own DNS, to `wan.resolvers` (set `resolvers`)
on 53/udp and 53/tcp out the WAN, or to any WAN address when no resolver is listed. The Cell has
to resolve the hub's names to reach the hub at all.

IPv6: the table is inet but every allow matches IPv4 only, so IPv6 packets end in the counted
drops. That is deliberate: the policy format is IPv4-only.

Counter names: `drop_SRC.DST` for a (source, destination class) pair, SRC and DST being VLAN
names, `gateway` or `wan`; `drop_other_CHAIN` (catch-all) and `drop_invalid_CHAIN` (ct invalid).
VLAN names may hold '_' and '-' but never '.', so the dot keeps every name distinct (joined by
'_', VLANs `a_b`->`c` and `a`->`b_c` would share a counter) and the fixed names, having no dot,
cannot meet a pair. Each is a plain nft identifier, so it loads unquoted in the .nft text too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

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

Json = dict[str, Any]

TABLE_FAMILY = "inet"
TABLE = "cell"
HUB_BRIDGE_SET = "hub_bridge"
RESOLVERS_SET = "resolvers"
CHAINS = ("input", "forward", "output")
LOG_PREFIX = "cell drop "

_BASE = {"family": TABLE_FAMILY, "table": TABLE}
_IF_ADDR = ["ifname", "ipv4_addr"]
_PROTO_PORT = ["inet_proto", "inet_service"]


def hub_mgmt_set(i: int) -> str:
    """The address set of site.yaml's management endpoint number `i` (0-based)."""
    return f"hub_mgmt_{i}"


def pair_counter(src: str, dst: str) -> str:
    return f"drop_{src}.{dst}"


def other_counter(chain: str) -> str:
    return f"drop_other_{chain}"


def invalid_counter(chain: str) -> str:
    return f"drop_invalid_{chain}"


class DropCounter(NamedTuple):
    """A counted drop: its counter, the source class and the destination class it counts."""

    name: str
    source: str
    dest: str


def drop_counters(policy: Policy) -> list[DropCounter]:
    """Every (source, destination class) drop counter, in the order their rules appear.

    Classes are VLAN names, `gateway` and `wan`. The catch-all and ct-invalid counters of each
    chain (`other_counter`, `invalid_counter`) are not pairs and are not listed here.
    """
    vlans = sorted(policy.vlans)
    out = [DropCounter(pair_counter(v, GATEWAY), v, GATEWAY) for v in vlans]
    out.append(DropCounter(pair_counter(WAN, GATEWAY), WAN, GATEWAY))
    for s in vlans:
        out += [DropCounter(pair_counter(s, d), s, d) for d in [*vlans, WAN] if d != s]
    out += [DropCounter(pair_counter(WAN, d), WAN, d) for d in vlans]
    out += [DropCounter(pair_counter(GATEWAY, d), GATEWAY, d) for d in [*vlans, WAN]]
    return out


def drop_counter_for(policy: Policy, src: str, dst: str) -> str:
    """The counter that rises when a packet from `src` to `dst` is dropped.

    `src`: a VLAN or host name, `gateway` or `wan`. `dst`: the same, or `hub.bridge` /
    `hub.management` (both leave by the WAN). Raises ValueError for a pair that never crosses
    the Cell (e.g. inside one VLAN).
    """

    def cls(word: str) -> str:
        if word in (HUB_BRIDGE, HUB_MANAGEMENT):
            return WAN
        host = policy.hosts.get(word)
        return host.vlan if host is not None else word

    pairs = {(c.source, c.dest): c.name for c in drop_counters(policy)}
    name = pairs.get((cls(src), cls(dst)))
    if name is None:
        raise ValueError(
            f"no drop counter for {src} -> {dst}: that traffic does not cross the Cell"
        )
    return name


# --- JSON expression builders -------------------------------------------------------------------


def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _payload(protocol: str, name: str) -> Json:
    return {"payload": {"protocol": protocol, "field": name}}


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _key(*exprs: Json) -> Json:
    return exprs[0] if len(exprs) == 1 else {"concat": list(exprs)}


_IIFNAME, _OIFNAME = _meta("iifname"), _meta("oifname")
_SADDR, _DADDR = _payload("ip", "saddr"), _payload("ip", "daddr")
_PROTO, _DPORT = _meta("l4proto"), _payload("th", "dport")
_ACCEPT: Json = {"accept": None}


def _rule(chain: str, *expr: Json, comment: str | None = None) -> Json:
    body: Json = {**_BASE, "chain": chain, "expr": list(expr)}
    if comment is not None:
        body["comment"] = comment
    return {"rule": body}


def _set(name: str, types: Sequence[str], elems: Sequence[Any], *, interval: bool = True) -> Json:
    body: Json = {**_BASE, "name": name, "type": types[0] if len(types) == 1 else list(types)}
    if interval:
        body["flags"] = ["interval"]
    if elems:
        body["elem"] = list(elems)
    return {"set": body}


def _drop(chain: str, src: str, dst: str, *matches: Json) -> Json:
    """Count, log and drop what comes from class `src` and goes to class `dst`."""
    return _dropped(chain, pair_counter(src, dst), f"{src}>{dst}", *matches)


def _catch_all(chain: str) -> Json:
    return _dropped(chain, other_counter(chain), f"other>{chain}")


def _dropped(chain: str, counter: str, label: str, *matches: Json) -> Json:
    log = {"log": {"prefix": f"{LOG_PREFIX}{label}: "}}
    return _rule(chain, *matches, {"counter": counter}, log, {"drop": None})


LOG_LIMIT: Json = {"rate": 10, "burst": 5, "per": "minute"}
"""Kernel log lines per counted drop rule: a chatty device must not flood the log."""


def _log_limited(rule: Json) -> list[Json]:
    """A counted drop as two rules: log at most LOG_LIMIT, then count and drop every packet.

    One rule cannot do both: a `limit` that does not match ends the rule, so the packets over
    the rate would skip its counter and drop. The counter and the drop stay exact."""
    expr = rule["rule"]["expr"]
    logs = [e for e in expr if "log" in e]
    if not logs:
        return [rule]
    matches = [e for e in expr if "match" in e]
    logged = {"rule": {**rule["rule"], "expr": [*matches, {"limit": dict(LOG_LIMIT)}, *logs]}}
    return [logged, {"rule": {**rule["rule"], "expr": [e for e in expr if "log" not in e]}}]


# --- the ruleset --------------------------------------------------------------------------------


def compile_ruleset(policy: Policy) -> list[Json]:
    """The `inet cell` table for `policy`, as libnftables JSON objects in canonical order."""
    allowed = compile_allowed(policy)
    sets = _sets(policy, allowed)
    # Rules share expression dicts while being built; copies keep callers' edits to themselves.
    rules = [
        _fresh(r)
        for rule in _input(policy) + _forward(policy, allowed) + _output(policy, allowed)
        for r in _log_limited(rule)
    ]
    counters = sorted({e["counter"] for r in rules for e in r["rule"]["expr"] if "counter" in e})
    chains = [
        {"chain": {**_BASE, "name": c, "type": "filter", "hook": c, "prio": 0, "policy": "drop"}}
        for c in CHAINS
    ]
    table: Json = {"table": {"family": TABLE_FAMILY, "name": TABLE}}
    return [table, *({"counter": {**_BASE, "name": n}} for n in counters), *sets, *chains, *rules]


def _sets(policy: Policy, allowed: Allowed) -> list[Json]:
    def elems(items: set[Any]) -> list[Any]:
        return [element_json(e) for e in minimal(items)]

    resolvers = {(a, a) for a in map(ip_int, policy.network.wan.resolvers)} or {ALL_V4}
    out = [
        _set("in_allow", [*_IF_ADDR, "ipv4_addr", *_PROTO_PORT], elems(allowed.in_allow)),
        _set("fwd_allow", [*_IF_ADDR, "ipv4_addr", *_PROTO_PORT], elems(allowed.fwd_allow)),
        _set("fwd_wan", [*_IF_ADDR, *_PROTO_PORT], elems(allowed.fwd_wan)),
    ]
    if allowed.fwd_hub_bridge:
        out.append(_set("fwd_hub_bridge", _IF_ADDR, elems(allowed.fwd_hub_bridge)))
    if allowed.fwd_hub_mgmt:
        out.append(_set("fwd_hub_mgmt", _IF_ADDR, elems(allowed.fwd_hub_mgmt)))
    out.append(_set("out_allow", [*_IF_ADDR, *_PROTO_PORT], elems(allowed.out_allow)))
    out.append(_set("out_wan", _PROTO_PORT, elems(allowed.out_wan)))
    out.append(_set(RESOLVERS_SET, ["ipv4_addr"], elems({(r,) for r in resolvers})))
    hub = policy.site.hub
    for (name, _, _), ep in zip(_hub_endpoints(policy), (hub.bridge, *hub.management), strict=True):
        literal = [ep.address] if is_ipv4(ep.address) else []  # else dnsmasq fills it
        out.append(_set(name, ["ipv4_addr"], literal, interval=False))
    return out


def _head(chain: str, lo: str | None) -> list[Json]:
    state = {"ct": {"key": "state"}}
    out = [
        _rule(chain, _match(state, ["established", "related"], "in"), _ACCEPT),
        _dropped(chain, invalid_counter(chain), f"invalid>{chain}", _match(state, "invalid", "in")),
    ]
    if lo is not None:
        out.append(_rule(chain, _match(_meta(lo), "lo"), _ACCEPT))
    return out


def _lookup(chain: str, key: Sequence[Json], name: str, *more: Json, comment: str) -> Json:
    return _rule(chain, *more, _match(_key(*key), f"@{name}"), _ACCEPT, comment=comment)


def _input(policy: Policy) -> list[Json]:
    c, wan = "input", policy.network.wan.interface
    out = _head(c, "iif")
    key = [_IIFNAME, _SADDR, _DADDR, _PROTO, _DPORT]
    out.append(_lookup(c, key, "in_allow", comment="flows: site -> gateway"))
    for v in _vlans(policy):
        out.append(_drop(c, v.name, GATEWAY, _match(_IIFNAME, v.interface)))
    out.append(_drop(c, WAN, GATEWAY, _match(_IIFNAME, wan)))
    out.append(_catch_all(c))
    return out


def _forward(policy: Policy, allowed: Allowed) -> list[Json]:
    c, wan = "forward", policy.network.wan.interface
    to_wan = _match(_OIFNAME, wan)
    out = _head(c, None)
    key = [_IIFNAME, _SADDR, _DADDR, _PROTO, _DPORT]
    out.append(_lookup(c, key, "fwd_allow", comment="flows: site -> site"))
    key = [_IIFNAME, _SADDR, _PROTO, _DPORT]
    out.append(_lookup(c, key, "fwd_wan", to_wan, *_not_hub(policy), comment="flows: site -> wan"))
    for hub_set, port, label in _hub_endpoints(policy):
        sources = "fwd_hub_bridge" if hub_set == HUB_BRIDGE_SET else "fwd_hub_mgmt"
        if getattr(allowed, sources):
            daddr = _match(_DADDR, f"@{hub_set}")
            note = f"flows: site -> {label}"
            out.append(
                _lookup(c, [_IIFNAME, _SADDR], sources, to_wan, daddr, _tcp(port), comment=note)
            )
    vlans = _vlans(policy)
    for s in vlans:
        from_s = _match(_IIFNAME, s.interface)
        for d in vlans:
            if d.name != s.name:
                out.append(_drop(c, s.name, d.name, from_s, _match(_OIFNAME, d.interface)))
        out.append(_drop(c, s.name, WAN, from_s, to_wan))
    for d in vlans:
        out.append(_drop(c, WAN, d.name, _match(_IIFNAME, wan), _match(_OIFNAME, d.interface)))
    out.append(_catch_all(c))
    return out


def _output(policy: Policy, allowed: Allowed) -> list[Json]:
    c, wan = "output", policy.network.wan.interface
    to_wan = _match(_OIFNAME, wan)
    out = _head(c, "oif")
    key = [_OIFNAME, _DADDR, _PROTO, _DPORT]
    out.append(_lookup(c, key, "out_allow", comment="flows: gateway -> site"))
    note = "flows: gateway -> wan"
    out.append(_lookup(c, [_PROTO, _DPORT], "out_wan", to_wan, *_not_hub(policy), comment=note))
    dns = [_match(_PROTO, {"set": ["tcp", "udp"]}), _match(_DPORT, 53)]
    resolvers = _match(_DADDR, f"@{RESOLVERS_SET}")
    note = "implied: gateway -> wan.resolvers, DNS"
    out.append(_rule(c, to_wan, resolvers, *dns, _ACCEPT, comment=note))
    for hub_set, port, label in _hub_endpoints(policy):
        wanted = (
            allowed.gateway_hub_bridge if hub_set == HUB_BRIDGE_SET else allowed.gateway_hub_mgmt
        )
        if wanted:
            daddr, note = _match(_DADDR, f"@{hub_set}"), f"flows: gateway -> {label}"
            out.append(_rule(c, to_wan, daddr, _tcp(port), _ACCEPT, comment=note))
    for v in _vlans(policy):
        out.append(_drop(c, GATEWAY, v.name, _match(_OIFNAME, v.interface)))
    out.append(_drop(c, GATEWAY, WAN, to_wan))
    out.append(_catch_all(c))
    return out


def _vlans(policy: Policy) -> list[Vlan]:
    """VLANs by name, so that reordering network.yaml does not change the ruleset."""
    return sorted(policy.network.vlans, key=lambda v: v.name)


def _hub_endpoints(policy: Policy) -> list[tuple[str, int, str]]:
    """(address set, TCP port, label) of hub.bridge and of each management endpoint."""
    hub = policy.site.hub
    mgmt = [
        (hub_mgmt_set(i), m.port, f"{HUB_MANAGEMENT} #{i}") for i, m in enumerate(hub.management)
    ]
    return [(HUB_BRIDGE_SET, hub.bridge.port, HUB_BRIDGE), *mgmt]


def _not_hub(policy: Policy) -> list[Json]:
    """`wan` is every address but the hub's: `decide` gives hub endpoints their own kind."""
    return [_match(_DADDR, f"@{name}", "!=") for name, _, _ in _hub_endpoints(policy)]


def _fresh(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    return value


def _tcp(port: int) -> Json:
    return _match(_payload("tcp", "dport"), port)


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

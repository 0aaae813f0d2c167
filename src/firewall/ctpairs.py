"""Connection tracking bound to interfaces: a reply is accepted only where its connection runs (pure).

`ct state established,related accept` alone trusts conntrack whatever the interfaces: a forged
ICMP error that quotes the Cell's own bridge connection is RELATED, and a forged packet of
another host's connection is ESTABLISHED, so either would cross to any interface. Instead:

- when a connection is opened (`ct state new`), its ct mark is set to the pair of classes it
  runs between, looked up from the interfaces: `ct mark set iifname . oifname map @ct_mark_fwd`
  (forward), `iifname map @ct_mark_in` (to the Cell), `oifname map @ct_mark_out` (from it).
  That happens in base chains of their own (`mark_input`, `mark_forward`, `mark_output`, at
  priority mangle, -150, before the filter chains), so the mark says where a connection runs
  whatever the filter decides: a rule someone inserts at the top of a filter chain cannot leave
  its connections unmarked (and so its replies unseen by `cell probe`). A packet that is then
  dropped leaves no connection behind (conntrack confirms only what is accepted);
- an established or related packet is accepted only if its connection's mark and its own
  interfaces are one of that pair's two directions: `ct mark . iifname . oifname @ct_fwd`,
  `ct mark . iifname @ct_in`, `ct mark . oifname @ct_out`. Everything else goes on down the chain
  to the allows and then to the counted drops, so a forged packet is counted where it tried to go.

A mark is `MARK_TAG | SRC << 12 | DST`, a class being a VLAN's 802.1Q id, 0 for the gateway and
4095 for the WAN: stable across re-applies as long as VLAN ids are, so live connections keep
their mark when the policy changes (a connection opened before this scheme has mark 0 and must
be opened again). Related connections created by conntrack helpers inherit their master's mark.

`ct_out` also holds the forward pairs, so the ICMP errors the Cell itself sends about a forwarded
connection (fragmentation needed, TTL exceeded) still reach its two ends. A VLAN without
Internet, and every VLAN of a sealed site, has no pair with the WAN at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from firewall.nftjson import (
    IIFNAME,
    OIFNAME,
    Json,
    base_chain,
    concat,
    ct,
    key,
    map_,
    match,
    rule,
    set_,
)
from policies.flows import GATEWAY, WAN

if TYPE_CHECKING:
    from policies.model import Policy

HOOKS = ("input", "forward", "output")
MARK_TAG = 1 << 24
GATEWAY_ID, WAN_ID = 0, 4095
_STATE = ct("state")


def mark(src: int, dst: int) -> int:
    return MARK_TAG | src << 12 | dst


class Pairs:
    """The classes' interfaces and ids, and which pairs may carry connections."""

    def __init__(self, policy: Policy) -> None:
        vlans = sorted(policy.network.vlans, key=lambda v: v.name)
        wan = policy.network.wan.interface
        self.ids = {v.name: v.id for v in vlans} | {GATEWAY: GATEWAY_ID, WAN: WAN_ID}
        self.ifname = {v.name: v.interface for v in vlans} | {WAN: wan}
        outside = [] if policy.sealed else [WAN]
        online = [v.name for v in vlans if v.internet and not policy.sealed]
        # Connections are opened by the site (flows from outside are refused), from a VLAN to
        # another VLAN or, for a VLAN with Internet, to the WAN; and by or to the Cell itself.
        self.forward = [
            (s.name, d)
            for s in vlans
            for d in [v.name for v in vlans] + (outside if s.name in online else [])
            if d != s.name
        ]
        self.to_gateway = [v.name for v in vlans]  # the WAN never opens one (flows refuse it)
        self.from_gateway = [v.name for v in vlans] + outside

    def mark(self, src: str, dst: str) -> int:
        return mark(self.ids[src], self.ids[dst])


MARK_IN, MARK_OUT, MARK_FWD = "ct_mark_in", "ct_mark_out", "ct_mark_fwd"
CT_IN, CT_OUT, CT_FWD = "ct_in", "ct_out", "ct_fwd"


def ct_objects(policy: Policy) -> list[Json]:
    """The maps that mark new connections and the sets that admit their later packets."""
    p = Pairs(policy)
    local = [(p.mark(x, GATEWAY), p.ifname[x]) for x in p.to_gateway]
    local += [(p.mark(GATEWAY, y), p.ifname[y]) for y in p.from_gateway]
    fwd = [(p.mark(s, d), p.ifname[s], p.ifname[d]) for s, d in p.forward]
    both = sorted({e for m, a, b in fwd for e in ((m, a, b), (m, b, a))})
    errors = sorted({(m, i) for m, a, b in fwd for i in (a, b)})
    return [
        set_(CT_IN, ["mark", "ifname"], [concat(*e) for e in sorted(local)]),
        set_(CT_OUT, ["mark", "ifname"], [concat(*e) for e in sorted({*local, *errors})]),
        set_(CT_FWD, ["mark", "ifname", "ifname"], [concat(*e) for e in both]),
        map_(MARK_IN, ["ifname"], "mark", sorted((p.ifname[x], p.mark(x, GATEWAY)) for x in p.to_gateway)),
        map_(MARK_OUT, ["ifname"], "mark", sorted((p.ifname[y], p.mark(GATEWAY, y)) for y in p.from_gateway)),
        map_(
            MARK_FWD,
            ["ifname", "ifname"],
            "mark",
            [(concat(a, b), m) for m, a, b in sorted(fwd, key=lambda f: (f[1], f[2]))],
        ),
    ]  # fmt: skip


def established(chain: str) -> Json:
    """Accept a packet of a known connection only on that connection's interfaces."""
    ifs = {"input": [IIFNAME], "output": [OIFNAME], "forward": [IIFNAME, OIFNAME]}[chain]
    ok = {"input": CT_IN, "output": CT_OUT, "forward": CT_FWD}[chain]
    return rule(
        chain,
        match(_STATE, ["established", "related"], "in"),
        match(key(ct("mark"), *ifs), f"@{ok}"),
        {"accept": None},
    )


MARK_PRIORITY = -150  # mangle: after conntrack (-200), before the filter chains (0)


def mark_chains() -> list[Json]:
    return [base_chain(f"mark_{h}", h, MARK_PRIORITY, "accept") for h in HOOKS]


def mark_rules() -> list[Json]:
    """Give each new connection the mark of the pair it runs between (a miss leaves it 0)."""
    out = []
    for hook in HOOKS:
        ifs = {"input": [IIFNAME], "output": [OIFNAME], "forward": [IIFNAME, OIFNAME]}[hook]
        name = {"input": MARK_IN, "output": MARK_OUT, "forward": MARK_FWD}[hook]
        value = {"map": {"key": key(*ifs), "data": f"@{name}"}}
        mangle = {"mangle": {"key": ct("mark"), "value": value}}
        out.append(rule(f"mark_{hook}", match(_STATE, "new", "in"), mangle))
    return out

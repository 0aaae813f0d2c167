"""The firewall's named drop counters and the counted-drop rules that feed them (pure).

Counter names: `drop_SRC.DST` for a (source, destination class) pair, SRC and DST being VLAN
names, `gateway` or `wan`; `drop_other_CHAIN` (catch-all), `drop_invalid_CHAIN` (ct invalid) and
`drop_spoofed_CLASS` (a source address that does not belong where it arrived: a VLAN, or `wan`).
VLAN names may hold '_' and '-' but never '.', so the dot keeps every pair distinct (joined by
'_', VLANs `a_b`->`c` and `a`->`b_c` would share a counter) and the fixed names, having no dot,
cannot meet a pair. Each is a plain nft identifier, so it loads unquoted in the .nft text too.

Every counted drop is logged with the prefix "cell drop LABEL: ", at most LOG_LIMIT lines per
rule; the counter and the drop stay exact (`log_limited`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from firewall.nftjson import DROP, Json, rule
from policies.flows import GATEWAY, HUB_BRIDGE, HUB_MANAGEMENT, WAN

if TYPE_CHECKING:
    from policies.model import Policy

LOG_PREFIX = "cell drop "
LOG_LIMIT: Json = {"rate": 10, "burst": 5, "per": "minute"}
"""Kernel log lines per counted drop rule: a chatty device must not flood the log."""


def pair_counter(src: str, dst: str) -> str:
    return f"drop_{src}.{dst}"


def other_counter(chain: str) -> str:
    return f"drop_other_{chain}"


def invalid_counter(chain: str) -> str:
    return f"drop_invalid_{chain}"


def spoof_counter(where: str) -> str:
    """Packets dropped in prerouting because their source address cannot come from `where`."""
    return f"drop_spoofed_{where}"


class DropCounter(NamedTuple):
    """A counted drop: its counter, the source class and the destination class it counts."""

    name: str
    source: str
    dest: str


def drop_counters(policy: Policy) -> list[DropCounter]:
    """Every (source, destination class) drop counter, in the order their rules appear.

    Classes are VLAN names, `gateway` and `wan`. The catch-all, ct-invalid and spoofing
    counters (`other_counter`, `invalid_counter`, `spoof_counter`) are not pairs: not listed.
    """
    vlans = sorted(policy.vlans)
    out = [DropCounter(pair_counter(v, GATEWAY), v, GATEWAY) for v in vlans]
    out.append(DropCounter(pair_counter(WAN, GATEWAY), WAN, GATEWAY))
    for s in vlans:
        out += [DropCounter(pair_counter(s, d), s, d) for d in [*vlans, WAN] if d != s]
    out += [DropCounter(pair_counter(WAN, d), WAN, d) for d in vlans]
    out += [DropCounter(pair_counter(GATEWAY, d), GATEWAY, d) for d in [*vlans, WAN]]
    return out


def spoof_counters(policy: Policy) -> list[str]:
    """The anti-spoofing counters: one per VLAN (by name), then the WAN's."""
    return [spoof_counter(v) for v in sorted(policy.vlans)] + [spoof_counter(WAN)]


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


def drop(chain: str, src: str, dst: str, *matches: Json) -> Json:
    """Count, log and drop what comes from class `src` and goes to class `dst`."""
    return dropped(chain, pair_counter(src, dst), f"{src}>{dst}", *matches)


def catch_all(chain: str) -> Json:
    return dropped(chain, other_counter(chain), f"other>{chain}")


def dropped(chain: str, counter: str, label: str, *matches: Json) -> Json:
    log = {"log": {"prefix": f"{LOG_PREFIX}{label}: "}}
    return rule(chain, *matches, {"counter": counter}, log, DROP)


def log_limited(one: Json) -> list[Json]:
    """A counted drop as two rules: log at most LOG_LIMIT, then count and drop every packet.

    One rule cannot do both: a `limit` that does not match ends the rule, so the packets over
    the rate would skip its counter and drop. The counter and the drop stay exact."""
    expr = one["rule"]["expr"]
    logs = [e for e in expr if "log" in e]
    if not logs:
        return [one]
    matches = [e for e in expr if "match" in e]
    logged = {"rule": {**one["rule"], "expr": [*matches, {"limit": dict(LOG_LIMIT)}, *logs]}}
    return [logged, {"rule": {**one["rule"], "expr": [e for e in expr if "log" not in e]}}]

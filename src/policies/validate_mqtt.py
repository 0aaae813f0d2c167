"""Rules of the bridge's topic policy and the local clients' ACL.

The bridge cannot say "all of `site/+/events/#` except X", so any topic that two rules of
different bridging could both match is an error naming both rules. Overlap is decided by exact
topic-filter intersection (`policies.topics`), found through a trie, not by a pairwise loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from policies.busnames import STATUS_BUS, bridge_state_topic
from policies.errors import Diagnostic
from policies.topics import FilterTrie, intersects, witness

if TYPE_CHECKING:
    from policies.model import Policy, TopicRule

MQTT = "mqtt.yaml"
RESERVED_USERS = frozenset({"cell"})
RESERVED_PREFIXES = ("local.",)
BRIDGED = frozenset({"up", "down"})


def validate_mqtt(p: Policy) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    src = p.sources[MQTT]
    rules = p.mqtt.topics
    first: dict[str, int] = {}
    for i, r in enumerate(rules):
        at = ("topics", i)
        if r.pattern in first:
            out.append(
                src.diag(
                    (*at, "pattern"),
                    f"duplicate rule for '{r.pattern}' (first at {_where(p, first[r.pattern])})",
                )
            )
            continue
        first[r.pattern] = i
        if r.tier == 1 and r.direction in BRIDGED:
            out.append(
                src.diag(
                    (*at, "direction"),
                    f"'{r.pattern}' is tier 1 (raw video, audio, imagery): direction must be never or local, not {r.direction}",
                )
            )
        if r.direction in BRIDGED and r.pattern.startswith("$"):
            out.append(
                src.diag(
                    (*at, "pattern"),
                    f"'{r.pattern}': broker-internal '$' topics are never bridged; use direction never",
                )
            )
    unique = list(first.values())
    _overlaps(p, unique, {"never", "local"}, BRIDGED, out)
    _overlaps(p, unique, {"up"}, {"down"}, out)
    _clients(p, out)
    return out


def _where(p: Policy, i: int) -> str:
    file, line, col = p.where(MQTT, ("topics", i))
    return f"{file}:{line}:{col}"


def _label(r: TopicRule) -> str:
    return f"{r.direction} rule '{r.pattern}'"


def _overlaps(
    p: Policy,
    idx: list[int],
    stored: set[str],
    queried: frozenset[str] | set[str],
    out: list[Diagnostic],
) -> None:
    rules = p.mqtt.topics
    trie: FilterTrie[int] = FilterTrie()
    for i in idx:
        if rules[i].direction in stored:
            trie.add(rules[i].pattern, i)
    for i in idx:
        r = rules[i]
        if r.direction not in queried:
            continue
        for j in trie.intersecting(r.pattern):
            a, b = sorted((i, j))
            ra, rb = rules[a], rules[b]
            example = witness(ra.pattern, rb.pattern)
            out.append(
                p.sources[MQTT].diag(
                    ("topics", b, "pattern"),
                    f"{_label(rb)} overlaps {_label(ra)} at {_where(p, a)}: a topic like '{example}' "
                    "would match both, and the bridge cannot carve exceptions; narrow one of them",
                )
            )


def _clients(p: Policy, out: list[Diagnostic]) -> None:
    src = p.sources[MQTT]
    down: FilterTrie[int] = FilterTrie()
    for i, r in enumerate(p.mqtt.topics):
        if r.direction == "down":
            down.add(r.pattern, i)
    seen: dict[str, int] = {}
    state = bridge_state_topic(p)
    for ci, c in enumerate(p.mqtt.clients):
        at = ("clients", ci)
        if c.username in RESERVED_USERS:
            out.append(
                src.diag(
                    (*at, "username"),
                    f"username '{c.username}' is reserved for the Cell's own monitor",
                )
            )
        elif c.username.startswith(RESERVED_PREFIXES) or c.username == f"cell-{p.site.site.id}":
            # A login is a client id (use_username_as_clientid): the bridge's ids stay its own.
            out.append(
                src.diag(
                    (*at, "username"),
                    f"username '{c.username}' is reserved: 'local.' names and 'cell-SITE' are "
                    "the bridge's client ids; pick another login",
                )
            )
        if c.username in seen:
            line, _ = src.at(("clients", seen[c.username]))
            out.append(
                src.diag(
                    (*at, "username"), f"duplicate client '{c.username}' (first at line {line})"
                )
            )
        seen.setdefault(c.username, ci)
        for fi, f in enumerate(c.publish):
            for why in _cells_own(f, state):
                out.append(
                    src.diag(
                        (*at, "publish", fi), f"client '{c.username}' may publish to '{f}', {why}"
                    )
                )
            reserved = _reserved_publish(f)
            if reserved:
                out.append(src.diag((*at, "publish", fi), f"client '{c.username}' {reserved}"))
            for ri in down.intersecting(f):
                r = p.mqtt.topics[ri]
                out.append(
                    src.diag(
                        (*at, "publish", fi),
                        f"client '{c.username}' may publish to '{f}', which overlaps down rule '{r.pattern}' at "
                        f"{_where(p, ri)}: only the bridge publishes hub commands (e.g. '{witness(f, r.pattern)}')",
                    )
                )


def _cells_own(f: str, state: str) -> list[str]:
    """Why a publish filter reaches what only the Cell or its broker write: the status bus, and
    the bridge's link state `state` (which the monitor and the hub believe)."""
    out = []
    if intersects(f, STATUS_BUS):
        out.append(
            f"which overlaps the Cell's status bus '{STATUS_BUS}' (e.g. "
            f"'{witness(f, STATUS_BUS)}'): only the Cell publishes there; a client may subscribe "
            "to it"
        )
    if intersects(f, state):
        out.append(
            f"which covers the bridge's link state '{state}': only the broker writes it (a "
            "forged 1 would show a dead bridge as up); narrow the filter"
        )
    return out


def _reserved_publish(f: str) -> str | None:
    """Why a client may not publish to `f`: the broker's `$` topics hold what the monitor reads
    to know the bridge (its link state); forging them is passing for the bridge (issue 10,
    class 6). mosquitto delivers a client's `$SYS` publish when the ACL allows it."""
    if f.startswith("$"):
        return (
            f"may not publish to '{f}': '$' topics are the broker's own (the bridge's link "
            "state is there); no client writes them"
        )
    return None

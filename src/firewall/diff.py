"""The canonical diff of two rulesets (pure): expected against live, in nft syntax.

Both sides are put in canonical form first (no handles, no counter values, no resolver-filled
elements: `firewall.document.canonical_objects`), then printed one line per chain, rule, set
element and counter (`firewall.nfttext.object_lines`), in reading order: counters and sets, then
each chain followed by its rules. An object the printer cannot write (a rule made by hand in
syntax it does not know) is shown as nft itself printed it, found by handle in `fallback`
(see `handles_of`), or else as its canonical JSON.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping

from firewall.document import Json, canonical_objects
from firewall.nfttext import object_lines

_HANDLE = re.compile(r"^\s*(.*?)\s*# handle (\d+)$", re.M)


def printable(objects: list[Json]) -> bool:
    """Whether every object prints without nft's help (else fetch a `fallback` listing)."""
    return all(_printed(o, _chains(objects)) is not None for o in objects)


def handles_of(listing: str) -> dict[int, str]:
    """Handle -> statement text from nft's own listing (`list table` with handles shown)."""
    return {int(m.group(2)): m.group(1).rstrip(" {") for m in _HANDLE.finditer(listing)}


def ruleset_lines(objects: list[Json], fallback: Mapping[int, str] | None = None) -> list[str]:
    """The objects as the diff's lines, in reading order."""
    chains = _chains(objects)
    rules = [o for o in objects if "rule" in o]
    ordered = [o for o in objects if "chain" not in o and "rule" not in o]
    for name, chain in chains.items():
        ordered += [chain, *(r for r in rules if r["rule"].get("chain") == name)]
    ordered += [r for r in rules if r["rule"].get("chain") not in chains]
    out: list[str] = []
    for obj in ordered:
        printed = _printed(obj, chains)
        if printed is None:
            ((kind, body),) = obj.items()
            handle = body.get("handle")
            shown = (fallback or {}).get(handle) if isinstance(handle, int) else None
            where = f"chain {body.get('chain')}: " if kind == "rule" else f"{kind} "
            printed = [where + (shown or json.dumps(canonical_objects([obj])[0], sort_keys=True))]
        out += printed
    return out


def diff_lines(
    expected: list[Json],
    live: list[Json],
    *,
    expected_label: str = "expected",
    live_label: str = "live",
    fallback: Mapping[int, str] | None = None,
) -> list[str]:
    """A unified diff (one line of context) from the expected table to the live one; no lines
    when they enforce the same thing. `fallback` prints the live side's unprintable objects."""
    return list(
        difflib.unified_diff(
            ruleset_lines(expected),
            ruleset_lines(live, fallback),
            expected_label,
            live_label,
            n=1,
            lineterm="",
        )
    )


def _chains(objects: list[Json]) -> dict[str, Json]:
    return {o["chain"]["name"]: o for o in objects if "chain" in o}


def _printed(obj: Json, chains: Mapping[str, Json]) -> list[str] | None:
    (canon,) = canonical_objects([obj])
    rule = canon.get("rule")
    try:
        return object_lines(canon, chains.get(rule.get("chain")) if rule else None)
    except ValueError:
        return None

"""The checks a verdict is made of: each says whether one part of the promise holds, since when,
and for how long that answer may be believed.

A check is established by one service of the daemon (the drift watcher, the probe schedule, ...)
and goes stale when that service stops renewing it: `ts + fresh_for` is its deadline. A stale
check is never read as its last value (see `cell.status.verdict`).
"""

from __future__ import annotations

from typing import Final

from pydantic import ConfigDict, Field

from policies.clock import parse_iso
from policies.record import Record

CHECK_NAMES: Final = ("trust", "drift", "segregation", "bridge", "sinkhole", "capture")
"""Every check a sovereign verdict needs, in the order people read them (and reasons are given)."""

CHECK_MEANS: Final = {
    "trust": "the applied commit is signed by a trusted key and is the one running",
    "drift": "the live configuration equals the applied one (nftables, broker, resolver, links)",
    "segregation": "the last probe run held every flow of the matrix, with proof",
    "bridge": "the bridge link is as the policy wants, and nothing unexpected or `never` crossed it",
    "sinkhole": "no query from a sinkholed VLAN was forwarded upstream",
    "capture": "the WAN capture ring runs, covers the window and lost no packets (when enabled)",
}
"""What each check being ok means, for people (docs, `cell status`, the console's help)."""


class Check(Record):
    """One check, as the status document carries it. Consumers ignore keys they do not know."""

    model_config = ConfigDict(extra="ignore")

    ok: bool = Field(description="This part of the promise held when last established.")
    ts: str = Field(description="When it was last established (ISO 8601, UTC, `Z`).")
    detail: str = Field(
        description="One line for people: what holds, or the first thing that does not. In the "
        "summary document it names no client address and no DNS name."
    )
    fresh_for: float = Field(
        gt=0,
        description="Seconds after `ts` for which this answer may be believed; after that the "
        "check is stale and the verdict cannot be sovereign.",
    )
    since: str | None = Field(
        default=None,
        description="When the check last changed between ok and failed (ISO 8601), if known.",
    )
    evidence: list[str] = Field(
        default_factory=list,
        description="What backs the answer (counter deltas, log lines, findings). Only in the "
        "full detail on `cell/check/<name>`, which stays on site; empty in the summary.",
    )

    @property
    def established(self) -> float:
        """`ts` as seconds since the epoch."""
        return parse_iso(self.ts).timestamp()

    @property
    def deadline(self) -> float:
        """The moment (seconds since the epoch) after which this check is stale."""
        return self.established + self.fresh_for

    def is_fresh(self, now: float) -> bool:
        return now <= self.deadline

    def summary(self) -> Check:
        """The check as the bridged summary carries it: no evidence."""
        return self.model_copy(update={"evidence": []})

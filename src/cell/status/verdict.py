"""The verdict: a pure function of the checks and the time, and nothing else.

- `sovereign`: every required check is present, ok and fresh.
- `at_risk`: at least one check failed (whatever the others say).
- `unknown`: none failed, but one is stale or missing: a stale green is never shown as green.

Reasons come in the order of `CHECK_NAMES`: failures first, then stale checks, then missing
ones; each starts with the check's name and a colon (`drift: rule added to chain forward ...`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import Field

from policies.clock import iso
from policies.record import Record

from .checks import CHECK_NAMES, Check

VerdictName = Literal["sovereign", "at_risk", "unknown"]


class Verdict(Record):
    """What the Cell says about itself at one moment, and why."""

    verdict: VerdictName = Field(description="sovereign, at_risk or unknown (see module doc).")
    reasons: list[str] = Field(
        description="Why it is not sovereign, each `check: what`; empty when sovereign."
    )


def verdict(
    checks: Mapping[str, Check], now: float, required: Iterable[str] = CHECK_NAMES
) -> Verdict:
    """Decide. `required` is every check the verdict needs (all of `CHECK_NAMES` by default)."""
    names = list(required)
    failed = [f"{n}: {checks[n].detail}" for n in names if n in checks and not checks[n].ok]
    stale = [
        f"{n}: stale since {iso(checks[n].deadline, 'seconds')} (last: {checks[n].detail})"
        for n in names
        if n in checks and checks[n].ok and not checks[n].is_fresh(now)
    ]
    # A failed check stays a failure even when stale: nothing has shown it recovered.
    missing = [f"{n}: no result yet" for n in names if n not in checks]
    if failed:
        return Verdict(verdict="at_risk", reasons=failed + stale + missing)
    if stale or missing:
        return Verdict(verdict="unknown", reasons=stale + missing)
    return Verdict(verdict="sovereign", reasons=[])

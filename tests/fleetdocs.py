"""Status documents of simulated sites, as the daemon publishes them (`cell.status.document`)."""

from __future__ import annotations

import json
import time

from cell.status.checks import CHECK_NAMES, Check
from cell.status.document import Availability, StatusDoc
from cell.status.verdict import verdict
from policies.clock import iso

COMMIT = "a" * 40


def status(
    site: str,
    *,
    ts: float | None = None,
    failed: str | None = None,
    missing: str | None = None,
    fresh_for: float = 60.0,
    commit: str | None = COMMIT,
    blocked: int = 0,
) -> StatusDoc:
    """A site's document made at `ts` (default now): every check ok, but `failed` (at risk) or
    `missing` (unknown); the verdict is the real `verdict()` of those checks."""
    t = time.time() if ts is None else ts
    checks = {
        n: Check(
            ok=n != failed,
            ts=iso(t),
            detail=f"{n} {'broken' if n == failed else 'ok'}",
            fresh_for=fresh_for,
        )
        for n in CHECK_NAMES
        if n != missing
    }
    v = verdict(checks, t)
    return StatusDoc(
        site=site,
        ts=iso(t),
        verdict=v.verdict,
        reasons=v.reasons,
        commit=commit,
        dns_blocked_today=blocked,
        checks=checks,
        fresh_for=fresh_for,
    )


def payload(doc: StatusDoc | Availability) -> bytes:
    return json.dumps(doc.to_doc()).encode()


def online(ts: float | None = None) -> Availability:
    return Availability(state="online", ts=iso(ts), session="s-1")


def offline(ts: float | None = None) -> Availability:
    return Availability(state="offline", ts=iso(ts), session="s-1")

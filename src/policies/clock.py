"""Time as the Cell writes it: UTC, ISO 8601 with a `Z` (records), or a line for people."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso(t: float | None = None, timespec: str = "milliseconds") -> str:
    """`t` (seconds since the epoch; None: now) as `2026-12-02T03:10:00.000Z`."""
    when = datetime.fromtimestamp(time.time() if t is None else t, UTC)
    return when.isoformat(timespec=timespec).replace("+00:00", "Z")


def now_iso() -> str:
    return iso()


def parse_iso(text: str) -> datetime:
    """The inverse of `iso` (and any ISO 8601 time with an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def human(t: float) -> str:
    """`2026-12-02 03:10:00 UTC`, for text output."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

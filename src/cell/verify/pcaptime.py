"""Times on the command line: ISO 8601 (`2026-12-02T10:00`, `...Z`, `...+01:00`, a bare date) or
relative to now (`-2h`, `-30m`, `-1d`, `-90s`, `now`). A time without a zone is UTC.

The lead unifies this with `cell.timeparse` at merge; the interface is the same:
`parse_time(text, now) -> datetime` (aware, UTC), raising `TimeError` (exit 2).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from cell.errors import UsageError

_RELATIVE = re.compile(r"-(?P<n>\d{1,7})(?P<unit>[smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class TimeError(UsageError):
    """A time that is neither ISO 8601 nor a relative form."""


def parse_time(text: str, now: datetime) -> datetime:
    value = text.strip()
    if value == "now":
        return now.astimezone(UTC)
    m = _RELATIVE.fullmatch(value)
    if m:
        return (now - timedelta(seconds=int(m["n"]) * _UNITS[m["unit"]])).astimezone(UTC)
    try:
        ts = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise TimeError(
            f"'{text[:40]}' is not a time: use ISO 8601 (2026-12-02T10:00:00Z) or a relative "
            "form (-2h, -30m, -1d, now)"
        ) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)

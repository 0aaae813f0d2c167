"""Times on the command line: ISO 8601 (`2026-12-02T03:10`, `...Z`, `+01:00`, a bare date) and
relative forms (`-2h`, `-30m`, `-1d`, `-90s`, `now`).

A time without an offset is in the site's zone (`tz`, default UTC): an operator types the clock
on the wall of the site. Every result is an aware datetime in UTC. Pure: `now` is a parameter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo

from cell.errors import UsageError

_RELATIVE = re.compile(r"-?([0-9]{1,7})([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
EXPECTED = "ISO 8601 (2026-12-02T03:10:00Z, 2026-12-02) or relative (-2h, -30m, -1d, now)"


class TimeError(UsageError):
    """A time on the command line that is neither ISO 8601 nor a relative form."""


def parse_time(
    text: str, *, now: datetime | None = None, tz: tzinfo = UTC, what: str = "time"
) -> datetime:
    """`text` as an aware UTC datetime; relative forms count back from `now`."""
    value = text.strip()
    now = now or datetime.now(UTC)
    if value == "now":
        return now.astimezone(UTC)
    m = _RELATIVE.fullmatch(value)
    if m:
        return (now - timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])).astimezone(UTC)
    iso = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        raise TimeError(f"{what} '{text}': not a time; expected {EXPECTED}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz)
    return t.astimezone(UTC)


def parse_day(text: str, what: str = "--day") -> date:
    """A calendar day `YYYY-MM-DD`."""
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{what} '{text}': not a day; expected YYYY-MM-DD, e.g. 2026-12-02"
        ) from None


def iso_z(t: datetime) -> str:
    """`2026-12-02T03:10:00Z`: how every command prints a time."""
    return t.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


TIME_FLAGS = ("--since", "--until")


def join_time_flags(argv: Sequence[str]) -> list[str]:
    """`--since -2h` as `--since=-2h`: argparse would take `-2h` for an option of its own."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in TIME_FLAGS:
            value = next(it, None)
            out.append(arg if value is None else f"{arg}={value}")
        else:
            out.append(arg)
    return out

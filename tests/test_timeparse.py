from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from cell.errors import UsageError
from cell.timeparse import iso_z, parse_day, parse_time

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-2h", "2026-12-02T10:00:00Z"),
        ("-30m", "2026-12-02T11:30:00Z"),
        ("-1d", "2026-12-01T12:00:00Z"),
        ("-90s", "2026-12-02T11:58:30Z"),
        ("2h", "2026-12-02T10:00:00Z"),
        ("now", "2026-12-02T12:00:00Z"),
        ("2026-12-02T03:10:00Z", "2026-12-02T03:10:00Z"),
        ("2026-12-02T03:10", "2026-12-02T03:10:00Z"),
        ("2026-12-02T04:10:00+01:00", "2026-12-02T03:10:00Z"),
        ("2026-12-02", "2026-12-02T00:00:00Z"),
    ],
)
def test_parse_time(text: str, expected: str) -> None:
    assert iso_z(parse_time(text, now=NOW)) == expected


def test_naive_time_is_in_the_site_zone() -> None:
    t = parse_time("2026-07-01T12:00", tz=ZoneInfo("Europe/Lisbon"))
    assert iso_z(t) == "2026-07-01T11:00:00Z"


@pytest.mark.parametrize("text", ["yesterday", "-2y", "2026-13-01", "", "12:00:00x"])
def test_bad_time_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="expected ISO 8601") as e:
        parse_time(text, what="--since")
    assert e.value.exit_code == 2
    assert "--since" in str(e.value)


def test_parse_day() -> None:
    assert parse_day("2026-12-02") == date(2026, 12, 2)
    for bad in ("2026-12-32", "2026-1-2", "today"):
        with pytest.raises(UsageError, match="YYYY-MM-DD"):
            parse_day(bad)


def test_relative_times_survive_argparse() -> None:
    from cell.timeparse import join_time_flags

    assert join_time_flags(["pcap", "--since", "-2h", "--until", "-1h", "--json"]) == [
        "pcap",
        "--since=-2h",
        "--until=-1h",
        "--json",
    ]
    assert join_time_flags(["log", "--since"]) == ["log", "--since"]

"""The store and the sinkhole reader, on log files written here (no root, no dnsmasq).

The lab tests (tests/test_verify_lab.py) do the same with a real dnsmasq and real packets.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cell.status.probe import ProbeResult
from cell.store import Retention, open_store
from cell.store.dns import day_clients, day_names, day_totals, recent_events
from cell.store.drops import CounterValue, day_drops, record_drops, split_counter
from cell.store.probes import probe_changes, probe_runs, record_probe_run
from cell.verify.dnslog import Clock, parse_line
from cell.verify.sinkhole import LogSource, ingest

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _utc_box(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")  # the zone dnsmasq stamps its lines in


def line(serial: int, client: str, name: str, qtype: str = "A", t: str = "09:50:59") -> str:
    return (
        f"Dec  2 {t} dnsmasq[7116]: {serial} {client}/4000{serial % 10} query[{qtype}] {name}"
        f" from {client}\n"
        f"Dec  2 {t} dnsmasq[7116]: {serial} {client}/4000{serial % 10} config {name} is 0.0.0.0\n"
    )


def test_parse_lines() -> None:
    clock = Clock(NOW, UTC)
    q = parse_line(line(6, "10.10.0.11", "4.3.2.1.in-addr.arpa", "PTR").splitlines()[0], clock)
    assert q is not None
    assert (q.client, q.name, q.qtype, q.forwarded) == (
        "10.10.0.11",
        "4.3.2.1.in-addr.arpa",
        "PTR",
        False,
    )
    assert q.ts == datetime(2026, 12, 2, 9, 50, 59, tzinfo=UTC).timestamp()
    f = parse_line(
        "Dec  2 09:50:59 dnsmasq[7118]: 1 10.10.0.11/45576 forwarded X.example to 10.99.0.2", clock
    )
    assert f is not None and f.forwarded and f.name == "x.example" and f.server == "10.99.0.2"
    for other in (
        "Dec  2 09:50:58 dnsmasq[7116]: started, version 2.90 cachesize 150",
        "Dec  2 09:50:59 dnsmasq[7116]: 1 10.10.0.1/57583 config telemetry.vendor.example is ::",
        "garbage",
    ):
        assert parse_line(other, clock) is None


def test_a_december_line_read_in_january_is_last_year() -> None:
    clock = Clock(datetime(2027, 1, 1, 0, 5, tzinfo=UTC), UTC)
    q = parse_line(line(1, "10.10.0.11", "a.example", t="23:59:59").splitlines()[0], clock)
    assert q is not None and datetime.fromtimestamp(q.ts, UTC).year == 2026


def sources(tmp_path: Path) -> list[LogSource]:
    return [LogSource("sinkhole", tmp_path / "sinkhole.log", sinkhole=True)]


def test_counts_survive_restart_rotation_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "sinkhole.log"
    log.write_text(
        line(1, "10.10.0.11", "telemetry.vendor.example")
        + line(2, "10.10.0.11", "t.example", "AAAA")
    )
    with open_store(tmp_path) as store:
        got = ingest(store, sources(tmp_path), UTC)
        assert (got.queries, got.forwarded) == (2, 0)
        assert [(p.client, p.name) for p in got.new_pairs] == [
            ("10.10.0.11", "telemetry.vendor.example"),
            ("10.10.0.11", "t.example"),
        ]
        # Nothing new: nothing counted. A half-written line waits for its end.
        with log.open("a") as f:
            f.write("Dec  2 09:51:00 dnsmasq[7116]: 3 10.10.0.12/1 query[TXT] telemetry.vendor.exa")
        assert ingest(store, sources(tmp_path), UTC).queries == 0
        with log.open("a") as f:
            f.write("mple from 10.10.0.12\n")
        got = ingest(store, sources(tmp_path), UTC)
        assert got.queries == 1 and [p.client for p in got.new_pairs] == ["10.10.0.12"]
    # A restart of the reader: a new connection, the position is in the store.
    with open_store(tmp_path) as store:
        assert ingest(store, sources(tmp_path), UTC).queries == 0
        # Rotation: renamed to .1 (more lines land there before dnsmasq reopens), a new file.
        with log.open("a") as f:
            f.write(line(4, "10.10.0.11", "telemetry.vendor.example"))
        log.rename(tmp_path / "sinkhole.log.1")
        with (tmp_path / "sinkhole.log.1").open("a") as f:
            f.write(line(5, "10.10.0.11", "telemetry.vendor.example"))
        log.write_text(line(1, "10.10.0.11", "telemetry.vendor.example"))
        got = ingest(store, sources(tmp_path), UTC)
        assert got.queries == 3 and not got.new_pairs and not got.lost
        # Copy-truncate: the file shrinks under the position; read again from 0.
        log.write_text(line(2, "10.10.0.13", "x.example"))
        got = ingest(store, sources(tmp_path), UTC)
        assert got.queries == 1 and got.lost
        assert day_totals(store, "2026-12-02") == (7, 0)
        assert day_clients(store, "2026-12-02")[0] == ("10.10.0.11", 5, 0)
        names = day_names(store, "2026-12-02")
        assert names[0][:3] == ("telemetry.vendor.example", 5, 0)
        events = recent_events(store, 0, ["10.10.0.13"], 10)
        assert [(e.name, e.qtype) for e in events] == [("x.example", "A")]


def test_a_crash_between_batches_neither_loses_nor_double_counts(tmp_path: Path) -> None:
    log = tmp_path / "sinkhole.log"
    log.write_text("".join(line(i, "10.10.0.11", f"n{i % 7}.example") for i in range(3000)))
    from cell.verify import sinkhole

    calls = 0
    real = sinkhole.record_dns

    def crash_on_third(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # as a SIGKILL would, mid-run
        return real(*args, **kwargs)

    sinkhole.CHUNK, old = 40_000, sinkhole.CHUNK
    try:
        sinkhole.record_dns = crash_on_third  # type: ignore[assignment]
        with open_store(tmp_path) as store, pytest.raises(KeyboardInterrupt):
            ingest(store, sources(tmp_path), UTC)
        sinkhole.record_dns = real
        with open_store(tmp_path) as store:
            ingest(store, sources(tmp_path), UTC)
            assert day_totals(store, "2026-12-02") == (3000, 0)
    finally:
        sinkhole.CHUNK, sinkhole.record_dns = old, real


def test_resolver_forwards_from_a_sinkhole_vlan_are_findings(tmp_path: Path) -> None:
    import ipaddress

    (tmp_path / "resolver.log").write_text(
        "Dec  2 09:50:59 dnsmasq[9]: 1 127.0.0.1/1 query[A] hub.example.eu from 127.0.0.1\n"
        "Dec  2 09:50:59 dnsmasq[9]: 1 127.0.0.1/1 forwarded hub.example.eu to 203.0.113.53\n"
        "Dec  2 09:51:00 dnsmasq[9]: 2 10.10.0.11/5 query[TXT] leak.example from 10.10.0.11\n"
        "Dec  2 09:51:00 dnsmasq[9]: 2 10.10.0.11/5 forwarded leak.example to 203.0.113.53\n"
    )
    src = LogSource(
        "resolver", tmp_path / "resolver.log", False, (ipaddress.IPv4Network("10.10.0.0/24"),)
    )
    with open_store(tmp_path) as store:
        got = ingest(store, [src], UTC)
        assert (got.queries, got.forwarded) == (0, 1)
        assert day_totals(store, "2026-12-02") == (0, 1)
        (e,) = recent_events(store, 0, None, 10)
        assert (e.client, e.name, e.qtype, e.forwarded) == (
            "10.10.0.11",
            "leak.example",
            "TXT",
            True,
        )


def test_day_is_the_site_calendar_day(tmp_path: Path) -> None:
    # 23:30 UTC on Dec 1 is already Dec 2 in Tokyo.
    (tmp_path / "sinkhole.log").write_text(
        "Dec  1 23:30:00 dnsmasq[1]: 1 10.10.0.11/1 query[A] a.example from 10.10.0.11\n"
    )
    with open_store(tmp_path) as store:
        ingest(store, sources(tmp_path), ZoneInfo("Asia/Tokyo"))
        assert day_totals(store, "2026-12-02") == (1, 0)
        assert day_totals(store, "2026-12-01") == (0, 0)


def test_retention_bounds_the_events(tmp_path: Path) -> None:
    (tmp_path / "sinkhole.log").write_text(
        "".join(line(i, "10.10.0.11", f"n{i}.example") for i in range(50))
    )
    with open_store(tmp_path, Retention(dns_events_max=10)) as store:
        ingest(store, sources(tmp_path), UTC)
        store.prune()
        assert len(recent_events(store, 0, None, 1000)) == 10
        assert day_totals(store, "2026-12-02") == (50, 0)  # rollups stay
        store.prune(now=NOW.timestamp() + 8 * 86400)
        assert recent_events(store, 0, None, 1000) == []


def test_drop_deltas_survive_a_reapply(tmp_path: Path) -> None:
    assert split_counter("drop_cameras.wan") == ("cameras", "wan")
    assert split_counter("drop_other_forward") == ("other", "forward")
    assert split_counter("drop_spoofed_cameras") == ("spoofed", "cameras")
    assert split_counter("drop_spoofed_wan") == ("spoofed", "wan")
    assert split_counter("drop_invalid_input") == ("invalid", "input")
    t = NOW.timestamp()
    with open_store(tmp_path) as store:
        record_drops(store, 7, {"drop_cameras.wan": CounterValue(5, 300)}, UTC, t)
        record_drops(store, 7, {"drop_cameras.wan": CounterValue(9, 500)}, UTC, t)
        # A re-apply: a new table (generation), counters from zero.
        d = record_drops(store, 8, {"drop_cameras.wan": CounterValue(2, 100)}, UTC, t)
        assert d == {("cameras", "wan"): 2}
    with open_store(tmp_path) as store:
        record_drops(store, 8, {"drop_cameras.wan": CounterValue(2, 100)}, UTC, t)
        assert day_drops(store, "2026-12-02") == [("cameras", "wan", 11, 600)]


def test_probe_history_keeps_runs_and_changes(tmp_path: Path) -> None:
    ok = ProbeResult(
        id="cameras>wan:443/tcp",
        source="cameras",
        to="wan:443/tcp",
        expect="drop",
        got="drop",
        ok=True,
        evidence="counter +1",
    )
    bad = ok.model_copy(update={"got": "accept", "ok": False, "evidence": "LEAK"})
    with open_store(tmp_path) as store:
        record_probe_run(store, 100.0, "abc", [ok])
        record_probe_run(store, 200.0, "abc", [ok])
        _, changes = record_probe_run(store, 300.0, "def", [bad])
        assert changes == [("cameras>wan:443/tcp", False)]
        runs = probe_runs(store, 0)
        assert [(r.ts, r.ok, r.failed) for r in runs] == [
            (300.0, False, ["cameras>wan:443/tcp"]),
            (200.0, True, []),
            (100.0, True, []),
        ]
        assert [c[:3] for c in probe_changes(store, 0)] == [
            (300.0, "cameras>wan:443/tcp", False),
            (100.0, "cameras>wan:443/tcp", True),
        ]


def test_the_store_is_wal_and_versioned(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == 1
        store.conn.execute("PRAGMA user_version=99")
    from cell.store import StoreError

    with pytest.raises(StoreError, match="newer"):
        open_store(tmp_path)
    assert (tmp_path / "cell.db").exists()


def test_retention_comes_from_network_yaml() -> None:
    from cell.verify.site import retention_of
    from conftest import EXAMPLE
    from policies import load_policy

    r = retention_of(load_policy(EXAMPLE))
    assert (r.dns_events, r.daily) == (7 * 86400, 400 * 86400)


def test_a_table_restored_with_its_values_is_not_counted_twice(tmp_path: Path) -> None:
    from cell.store.drops import rebase_drops

    t = NOW.timestamp()
    with open_store(tmp_path) as store:
        record_drops(store, 7, {"drop_cameras.wan": CounterValue(5, 300)}, UTC, t)
        # A failed apply puts the old table back (a new handle) with the values it had.
        rebase_drops(store, 9, {"drop_cameras.wan": CounterValue(5, 300)}, t)
        record_drops(store, 9, {"drop_cameras.wan": CounterValue(9, 500)}, UTC, t)
        assert day_drops(store, "2026-12-02") == [("cameras", "wan", 9, 500)]

"""Unit tests (no root) of the capture ring's pure parts: names, spans, the pruner's decisions,
coverage and gaps, window selection, times; and of the window cut with the real editcap."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cell.timeparse import TimeError, parse_time
from cell.verify.coverage import CoverageLog, coverage_of, iso
from cell.verify.pcapread import complete_length, read_packets
from cell.verify.pcapwindow import extract, select_files
from cell.verify.pruner import Limits, chunk_for, plan_prune, prune, ring_files
from cell.verify.ring import RingFile, list_ring, parse_name, spans
from pcapgen import frame, write_pcapng

T0 = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)
MIB = 1 << 20


def rf(
    run: str, seq: int, start: datetime, size: int = MIB, mtime: datetime | None = None
) -> RingFile:
    name = f"wan.{run}_{seq:05d}_{start:%Y%m%d%H%M%S}.pcapng"
    return RingFile(name, run, seq, start, size, mtime or start + H)


def limits(retention: timedelta = 24 * H, max_disk: int = 10 * MIB, floor: int = 0) -> Limits:
    return Limits(retention, max_disk, floor, MIB)


# --- names and spans ------------------------------------------------------------------------


def test_ring_names_are_utc_stamps_and_other_files_are_not_the_rings(tmp_path: Path) -> None:
    assert parse_name("wan.0a1b2c3d_00007_20261202130000.pcapng") == (
        "0a1b2c3d",
        7,
        datetime(2026, 12, 2, 13, 0, tzinfo=UTC),
    )
    for name in ("coverage.jsonl", "wan.pcapng", "wan.0a1b2c3d_00007_20261302130000.pcapng"):
        assert parse_name(name) is None
    (tmp_path / "coverage.jsonl").write_text("")
    (tmp_path / "wan.0a1b2c3d_00002_20261202010000.pcapng").write_bytes(b"x")
    (tmp_path / "wan.0a1b2c3d_00001_20261202000000.pcapng").write_bytes(b"xx")
    assert [f.seq for f in list_ring(tmp_path)] == [1, 2]
    assert list_ring(tmp_path / "missing") == []


def test_a_file_ends_where_the_next_of_its_run_starts_or_at_the_run_end_or_last_write() -> None:
    a1, a2 = rf("aaaaaaaa", 1, T0), rf("aaaaaaaa", 2, T0 + H, mtime=T0 + H + timedelta(minutes=5))
    b1, b3 = rf("bbbbbbbb", 1, T0 + 2 * H), rf("bbbbbbbb", 3, T0 + 4 * H)
    ends = {f.name: e for f, e in spans([a1, a2, b1, b3], {"bbbbbbbb": T0 + 5 * H})}
    assert ends[a1.name] == T0 + H
    assert ends[a2.name] == T0 + H + timedelta(minutes=5)  # killed run: its last write
    assert ends[b1.name] == b1.mtime  # its successor was deleted
    assert ends[b3.name] == T0 + 5 * H  # the run's recorded stop


# --- the pruner -----------------------------------------------------------------------------


def test_retention_removes_files_whose_every_packet_is_too_old() -> None:
    files = [rf("aaaaaaaa", i + 1, T0 + i * H) for i in range(30)]
    plan = plan_prune(files, now=T0 + 30 * H, limits=limits(max_disk=1 << 40), free=1 << 40)
    assert [d.reason for d in plan.delete] == ["retention"] * 6
    assert [d.name for d in plan.delete] == [f.name for f in files[:6]]


def test_max_disk_keeps_closed_files_under_max_disk_minus_the_live_chunk() -> None:
    files = [rf("aaaaaaaa", i + 1, T0 + i * H, size=2 * MIB) for i in range(8)]
    live = frozenset({files[-1].name})
    plan = plan_prune(
        files, now=T0 + 8 * H, limits=limits(max_disk=10 * MIB), free=1 << 40, live=live
    )
    assert all(d.reason == "max_disk" for d in plan.delete)
    kept = [f for f in files if f.name not in {d.name for d in plan.delete}]
    assert sum(f.size for f in kept if f.name not in live) <= 10 * MIB - 2 * MIB
    assert files[-1] in kept


def test_files_of_an_earlier_run_are_pruned_too(tmp_path: Path) -> None:
    old = [rf("01d01d00", i + 1, T0 + i * H, size=3 * MIB) for i in range(3)]
    new = [rf("9e99e99e", 1, T0 + 3 * H, size=3 * MIB)]
    for f in old + new:
        (tmp_path / f.name).write_bytes(b"\0" * f.size)
    plan = prune(tmp_path, limits(max_disk=8 * MIB), now=T0 + 4 * H, live=frozenset({new[0].name}))
    left = [f.name for f in list_ring(tmp_path)]
    assert [d.name for d in plan.delete] == [old[0].name, old[1].name]
    assert left == [old[2].name, new[0].name]
    assert sum(f.size for f in list_ring(tmp_path)) <= 8 * MIB


def test_free_space_floor_gives_way_first_and_an_unmet_floor_is_said() -> None:
    files = [rf("aaaaaaaa", i + 1, T0 + i * H) for i in range(4)]
    plan = plan_prune(files, now=T0 + 4 * H, limits=limits(floor=10 * MIB), free=8 * MIB)
    assert [d.reason for d in plan.delete] == ["free_space", "free_space"] and plan.floor_met
    live = frozenset({files[-1].name})
    plan = plan_prune(files, now=T0 + 4 * H, limits=limits(floor=100 * MIB), free=0, live=live)
    assert len(plan.delete) == 3 and not plan.floor_met  # the live file is never deleted


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 4 * MIB), min_size=1, max_size=40),
    max_disk=st.integers(2 * MIB, 64 * MIB),
    live_size=st.integers(0, MIB),
)
def test_the_ring_never_exceeds_max_disk(sizes: list[int], max_disk: int, live_size: int) -> None:
    files = [rf("aaaaaaaa", i + 1, T0 + i * H, size=s) for i, s in enumerate(sizes)]
    live_file = rf("aaaaaaaa", len(sizes) + 1, T0 + len(sizes) * H, size=live_size)
    lim = Limits(1000 * H, max_disk, 0, MIB)
    plan = plan_prune(
        [*files, live_file], now=T0, limits=lim, free=1 << 40, live=frozenset({live_file.name})
    )
    gone = {d.name for d in plan.delete}
    assert [f.name for f in files if f.name in gone] == [f.name for f in files[: len(gone)]]
    closed = sum(f.size for f in files if f.name not in gone)
    # The live file grows to `chunk` at most, and the next may start before the pruner runs.
    assert closed + 2 * lim.chunk <= max_disk
    assert live_file.name not in gone


def test_chunk_and_file_count_cover_retention_quiet_and_max_disk_busy() -> None:
    # 24 h of hourly files (+2) fit in dumpcap's ring on a quiet link, and in max_disk on a busy one.
    assert chunk_for(2 << 30, 86400, 3600) == (2 << 30) // 26
    assert chunk_for(64 << 30, 86400, 3600) == 256 * MIB
    assert chunk_for(2 * MIB, 86400, 3600) == MIB
    assert ring_files(2 << 30, (2 << 30) // 26, 0) == 26
    assert ring_files(10 * MIB, MIB, 9 * MIB) == 2


# --- coverage -------------------------------------------------------------------------------


def _ev(event: str, ts: datetime, **kw: object) -> dict[str, object]:
    return {"event": event, "ts": iso(ts), **kw}


def test_a_killed_run_a_pruned_file_and_a_restart_are_gaps() -> None:
    a = [rf("aaaaaaaa", i + 1, T0 + i * H) for i in range(3)]
    a[2] = rf("aaaaaaaa", 3, T0 + 2 * H, mtime=T0 + 2 * H + timedelta(minutes=20))  # SIGKILL
    b = [rf("bbbbbbbb", 1, T0 + 4 * H), rf("bbbbbbbb", 2, T0 + 5 * H)]
    events = [
        _ev("start", T0, run="aaaaaaaa"),
        _ev("start", T0 + 4 * H, run="bbbbbbbb"),
        _ev(
            "stop",
            T0 + 5 * H + timedelta(minutes=30),
            run="bbbbbbbb",
            received=10,
            dropped=2,
            clean=True,
        ),
    ]
    files = [a[0], a[2], *b]  # a[1] was pruned
    cov = coverage_of(events, files, T0, T0 + 6 * H, now=T0 + 7 * H)
    assert cov.gaps == [
        (T0 + H, T0 + 2 * H),
        (T0 + 2 * H + timedelta(minutes=20), T0 + 4 * H),
        (T0 + 5 * H + timedelta(minutes=30), T0 + 6 * H),
    ]
    assert cov.dropped is None  # run a never reported its drops
    doc = cov.to_json()
    assert doc["complete"] is False and doc["kernel_drops"] is None
    later = coverage_of(events, b, T0 + 4 * H, T0 + 5 * H, now=T0 + 7 * H)
    assert later.gaps == [] and later.dropped == 2


def test_the_live_run_covers_up_to_now() -> None:
    f = rf("aaaaaaaa", 1, T0, mtime=T0 + timedelta(seconds=1))
    events = [_ev("start", T0, run="aaaaaaaa")]
    now = T0 + timedelta(minutes=10)
    assert coverage_of(events, [f], T0, now, now=now, live_run="aaaaaaaa").gaps == []
    dead = coverage_of(events, [f], T0, now, now=now)
    assert dead.gaps == [(T0 + timedelta(seconds=1), now)]


def test_coverage_log_skips_a_torn_last_line(tmp_path: Path) -> None:
    log = CoverageLog(tmp_path)
    log.append("start", run="aaaaaaaa")
    with (tmp_path / "coverage.jsonl").open("a") as f:
        f.write('{"event": "stop", "ru')
    assert [e["event"] for e in log.read()] == ["start"]


# --- windows and times ----------------------------------------------------------------------


def test_select_files_takes_overlapping_files_with_slack_for_a_late_switch() -> None:
    files = [rf("aaaaaaaa", i + 1, T0 + i * H) for i in range(4)]
    sp = spans(files, {"aaaaaaaa": T0 + 4 * H})
    pick = select_files(sp, T0 + H + timedelta(seconds=1), T0 + 2 * H)
    assert [f.seq for f in pick] == [1, 2]  # file 1 may hold packets of the first ~0.3 s
    assert [f.seq for f in select_files(sp, T0 + H + timedelta(minutes=5), T0 + 2 * H)] == [2]
    assert select_files(sp, T0 + 5 * H, T0 + 6 * H) == []


def test_times_iso_and_relative() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert parse_time("-2h", now=now) == now - 2 * H
    assert parse_time("2026-12-02T10:00:00+01:00", now=now) == datetime(2026, 12, 2, 9, tzinfo=UTC)
    assert parse_time("2026-12-02T10:00", now=now) == datetime(2026, 12, 2, 10, tzinfo=UTC)
    for bad in ("yesterday", "-2x", "2026-13-01", ""):
        with pytest.raises(TimeError) as e:
            parse_time(bad, now=now)
        assert e.value.exit_code == 2 and "ISO 8601" in str(e.value)


@pytest.mark.skipif(shutil.which("editcap") is None, reason="needs wireshark-common")
def test_extract_keeps_exactly_the_window_across_files(tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    ring.mkdir()
    s = int(T0.timestamp()) * 10**9
    pkt = frame("198.18.0.2", "198.19.0.10", "tcp", 40000, 8883)
    files = []
    for i in range(3):  # one file per hour, one packet per second
        f = rf("aaaaaaaa", i + 1, T0 + i * H)
        write_pcapng(ring / f.name, ((s + (i * 3600 + k) * 10**9, pkt) for k in range(3600)))
        files.append(f)
    since, until = T0 + timedelta(minutes=30), T0 + H + timedelta(minutes=30)
    got = extract(ring, files[:2], since, until, tmp_path / "w.pcapng")
    stamps = [ts for ts, *_ in read_packets(got.out)]
    assert got.packets == len(stamps) == 3600
    assert stamps[0] == int(since.timestamp()) * 10**9  # since is inclusive
    assert stamps[-1] == int(until.timestamp()) * 10**9 - 10**9  # until is exclusive
    # A file cut short in the middle of a block (the live file) is read up to its last whole one.
    live = ring / files[2].name
    with live.open("r+b") as fh:
        fh.truncate(live.stat().st_size - 7)
    assert complete_length(live) < live.stat().st_size
    got = extract(ring, files[2:], T0 + 2 * H, T0 + 3 * H, tmp_path / "l.pcapng")
    assert got.packets == 3599
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cell-pcap-")]


def test_a_run_that_died_ends_at_its_last_write_not_when_its_death_was_noticed() -> None:
    f = rf("aaaaaaaa", 1, T0, mtime=T0 + timedelta(minutes=3))
    events = [
        _ev("start", T0, run="aaaaaaaa"),
        _ev("stop", T0 + timedelta(minutes=10), run="aaaaaaaa", clean=False, dropped=None),
    ]
    cov = coverage_of(events, [f], T0, T0 + timedelta(minutes=10), now=T0 + H)
    assert cov.gaps == [(T0 + timedelta(minutes=3), T0 + timedelta(minutes=10))]


@pytest.mark.skipif(shutil.which("editcap") is None, reason="needs wireshark-common")
def test_the_reader_reads_classic_pcap_as_editcap_writes_it(tmp_path: Path) -> None:
    import subprocess

    src = tmp_path / "a.pcapng"
    stamps = [10**18 + k * 1_000_000 for k in range(5)]  # whole microseconds survive pcap
    write_pcapng(src, ((ts, frame("10.10.0.11", "198.19.0.99", "udp", 1, 2)) for ts in stamps))
    for fmt in ("pcap", "nsecpcap"):
        out = tmp_path / f"a.{fmt}"
        subprocess.run(["editcap", "-F", fmt, str(src), str(out)], check=True, capture_output=True)
        got = list(read_packets(out))
        assert [ts for ts, *_ in got] == stamps
        assert {link for _, link, _, _ in got} == {1}

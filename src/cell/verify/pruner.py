"""Keep the capture ring inside `retention`, `max_disk` and a free-space floor.

`plan_prune` is pure: a listing in, the files to delete (oldest first, each with its reason) out.
`prune` is the thin I/O around it. Files left by an earlier run are in the listing like any
other, so a restart never leaves an orphan ring behind. The file dumpcap is writing is never
deleted (it would keep writing to an unlinked file: disk used and no evidence).

How the ring never exceeds `max_disk`, however fast packets come: dumpcap switches files at
`chunk` bytes (less a margin for the packet that crosses the limit, `dumpcap_kb`) and keeps at
most N of its own files (`-b files:N`, deleting its oldest before it opens a new one, in its own
process: no race with this one). At start, the pruner first brings earlier runs' files within
`max_disk - 2 * chunk`, and N is what fits beside them (`ring_files`). While running, the pruner
(at each new file and every minute) keeps closed files within `max_disk - 2 * chunk` too, and
applies retention and the free-space floor, which dumpcap knows nothing of.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from cell.verify.ring import RingFile, list_ring, spans

Reason = Literal["retention", "max_disk", "free_space"]

MIN_CHUNK = 1 << 20
MAX_CHUNK = 256 << 20


def chunk_for(max_disk: int, retention: int = 86400, rotate: int = 3600) -> int:
    """The size at which dumpcap starts a new file. dumpcap's own ring (`-b files:N`) keeps N
    files whatever their size, so N must cover `retention` on a quiet link (one file per
    `rotate`, plus two) and N files of `chunk` must fit in `max_disk` on a busy one."""
    files = retention // max(1, rotate) + 2
    return max(MIN_CHUNK, min(MAX_CHUNK, max_disk // files))


def ring_files(max_disk: int, chunk: int, used: int) -> int:
    """dumpcap's `-b files:N` for a run that starts with `used` bytes of earlier files on disk:
    N files of at most `chunk` bytes fit beside them in `max_disk` (at least 2)."""
    return max(2, (max_disk - used) // chunk)


MAX_PACKET = 256 << 10
"""dumpcap's default snap length: the most one packet can add past the file size limit."""


def dumpcap_kb(chunk: int) -> int:
    """dumpcap's `-b filesize:` (kB; 1000 or 1024, the smaller bound is safe) so that a file,
    with the packet that crosses the limit, stays within `chunk` bytes."""
    return max(64, (chunk - MAX_PACKET) // 1024)


@dataclass(frozen=True)
class Limits:
    retention: timedelta
    max_disk: int
    floor: int
    """Free bytes the file system must keep; the ring gives way first."""
    chunk: int
    """The live file's size limit (dumpcap `-b filesize:`)."""


@dataclass(frozen=True)
class Deletion:
    name: str
    size: int
    reason: Reason


@dataclass(frozen=True)
class Plan:
    delete: list[Deletion]
    kept_bytes: int
    floor_met: bool
    """False when even an emptied ring leaves less than `floor` free: something else fills the
    disk, and the capture may lose packets for want of space (a finding, not hidden)."""


def plan_prune(
    files: list[RingFile],
    *,
    now: datetime,
    limits: Limits,
    free: int,
    live: frozenset[str] = frozenset(),
    run_end: dict[str, datetime] | None = None,
) -> Plan:
    """Which ring files to delete, oldest first. Pure.

    A file goes when all of its packets are older than `retention`, when the closed files would
    take more than `max_disk - 2 * chunk`, or while the file system has less than `floor` free.
    """
    ends = {f.name: end for f, end in spans(files, run_end or {})}
    closed = [f for f in files if f.name not in live]
    live_bytes = sum(f.size for f in files if f.name in live)
    budget = max(0, limits.max_disk - limits.chunk - max(limits.chunk, live_bytes))
    cutoff = now - limits.retention
    total = sum(f.size for f in closed)
    deletions: list[Deletion] = []
    for f in closed:  # oldest first
        reason: Reason | None = None
        if ends[f.name] <= cutoff:
            reason = "retention"
        elif total > budget:
            reason = "max_disk"
        elif free < limits.floor:
            reason = "free_space"
        if reason is None:
            break
        deletions.append(Deletion(f.name, f.size, reason))
        total -= f.size
        free += f.size
    return Plan(deletions, total + live_bytes, free >= limits.floor)


def free_bytes(directory: str | Path) -> int:
    return shutil.disk_usage(directory).free


def prune(
    directory: str | Path,
    limits: Limits,
    *,
    now: datetime,
    live: frozenset[str] = frozenset(),
    run_end: dict[str, datetime] | None = None,
) -> Plan:
    """Delete what `plan_prune` says; a file already gone is fine (another pruner got it)."""
    plan = plan_prune(
        list_ring(directory),
        now=now,
        limits=limits,
        free=free_bytes(directory),
        live=live,
        run_end=run_end,
    )
    for d in plan.delete:
        try:
            (Path(directory) / d.name).unlink()
        except FileNotFoundError:
            continue
    return plan

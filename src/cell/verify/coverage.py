"""What the ring can prove about a window: when the capture ran, what it dropped, where the gaps are.

The capture appends one JSON object per line to `coverage.jsonl` in the ring's directory:

    {"event": "start", "ts", "run", "interface", "netns", "addresses", "pid", "tool"}
    {"event": "file",  "ts", "run", "name"}          a new ring file was opened
    {"event": "closed", "ts", "run", "name"}         that file is complete
    {"event": "stop",  "ts", "run", "received", "dropped", "clean", "exit"}
    {"event": "prune", "ts", "deleted": [{"name", "size", "reason"}]}

`coverage_of` (pure) turns those and the files still on disk into the covered intervals of a
window. Only files that still exist count: a pruned file is a gap, and so is a run that died
without a `stop` after its last sign of life (its last file's last write). Kernel drops are
dumpcap's own counts, which it reports when it stops; a run that has not stopped cleanly has
unknown drops, and says so (`dropped: null`).

The store (issue 11, part 1) may take these records later; `CoverageLog` is the one seam.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cell.verify.ring import RingFile, opened_at, spans

LOG = "coverage.jsonl"


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class CoverageLog:
    """Append-only JSON lines; each line is written whole with one `write` (O_APPEND)."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / LOG

    def append(self, event: str, **fields: Any) -> None:
        doc = {"event": event, "ts": iso(fields.pop("ts", None) or datetime.now(UTC)), **fields}
        line = (json.dumps(doc, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """Every well-formed record; a torn last line (a crash mid-write) is skipped."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and "event" in doc and "ts" in doc:
                out.append(doc)
        return out


@dataclass
class Run:
    run: str
    start: datetime
    stop: datetime | None = None
    received: int | None = None
    dropped: int | None = None
    clean: bool = False
    addresses: list[str] = field(default_factory=list)
    interface: str = ""


def runs_of(events: list[dict[str, Any]]) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    for e in events:
        run = e.get("run")
        if not isinstance(run, str):
            continue
        if e["event"] == "start":
            runs[run] = Run(
                run,
                parse_iso(e["ts"]),
                addresses=list(e.get("addresses", [])),
                interface=str(e.get("interface", "")),
            )
        elif e["event"] == "stop" and run in runs:
            r = runs[run]
            r.stop = parse_iso(e["ts"])
            r.received, r.dropped = e.get("received"), e.get("dropped")
            r.clean = bool(e.get("clean"))
    return runs


def live_run(events: list[dict[str, Any]]) -> str | None:
    """The run that is capturing now: the last started one, not stopped, whose dumpcap (same pid,
    same start time) is alive. I/O: reads /proc."""
    stopped = {e.get("run") for e in events if e["event"] == "stop"}
    for e in reversed(events):
        if e["event"] != "start":
            continue
        if e.get("run") in stopped or not e.get("pid"):
            return None
        try:
            fields = Path(f"/proc/{int(e['pid'])}/stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError, ValueError):
            return None
        alive = fields[0] not in ("Z", "X")
        return str(e["run"]) if alive and int(fields[19]) == e.get("pid_start") else None
    return None


def file_opened(events: list[dict[str, Any]]) -> dict[str, datetime]:
    """Ring file name -> when the capture saw dumpcap open it (`file` records)."""
    return {
        str(e["name"]): parse_iso(e["ts"]) for e in events if e["event"] == "file" and "name" in e
    }


def run_ends(runs: dict[str, Run], *, now: datetime, live_run: str | None) -> dict[str, datetime]:
    """Where each run's evidence ends, when the log knows: now for the live run, the stop of a
    clean stop. A run that died (SIGKILL, a crash) ends at its last file's last write, which
    `spans` takes by itself: what dumpcap still held in its buffers then is lost."""
    ends: dict[str, datetime] = {}
    for name, r in runs.items():
        if name == live_run:
            ends[name] = now
        elif r.stop is not None and r.clean:
            ends[name] = r.stop
    return ends


@dataclass(frozen=True)
class Coverage:
    since: datetime
    until: datetime
    covered: list[tuple[datetime, datetime]]
    gaps: list[tuple[datetime, datetime]]
    runs: list[Run]
    """The runs whose files overlap the window."""

    @property
    def dropped(self) -> int | None:
        """Kernel drops of those runs; None when any of them has not reported (yet)."""
        counts = [r.dropped for r in self.runs]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)

    def to_json(self) -> dict[str, Any]:
        seconds = (self.until - self.since).total_seconds()
        gap_s = sum((b - a).total_seconds() for a, b in self.gaps)
        return {
            "since": iso(self.since),
            "until": iso(self.until),
            "complete": not self.gaps,
            "covered_fraction": round(1 - gap_s / seconds, 6) if seconds > 0 else 0.0,
            "gaps": [
                {"from": iso(a), "to": iso(b), "seconds": (b - a).total_seconds()}
                for a, b in self.gaps
            ],
            "runs": [
                {
                    "run": r.run,
                    "start": iso(r.start),
                    "stop": iso(r.stop) if r.stop else None,
                    "received": r.received,
                    "dropped": r.dropped,
                    "clean": r.clean,
                }
                for r in self.runs
            ],
            "kernel_drops": self.dropped,
        }


def coverage_of(
    events: list[dict[str, Any]],
    files: list[RingFile],
    since: datetime,
    until: datetime,
    *,
    now: datetime,
    live_run: str | None = None,
) -> Coverage:
    """The covered intervals and gaps of [since, until) from the log and the files on disk. Pure.

    `live_run`: the run that is capturing right now (its last file is covered up to `now`).
    """
    runs = runs_of(events)
    ends = run_ends(runs, now=now, live_run=live_run)
    opened = file_opened(events)
    pieces = sorted((opened_at(f, opened), end) for f, end in spans(files, ends, opened))
    merged: list[tuple[datetime, datetime]] = []
    for a, b in pieces:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    covered = [(max(a, since), min(b, until)) for a, b in merged if b > since and a < until]
    gaps, cursor = [], since
    for a, b in covered:
        if a > cursor:
            gaps.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < until:
        gaps.append((cursor, until))
    used = {f.run for f, end in spans(files, ends, opened) if end > since and f.start < until}
    known = [runs[r] for r in sorted(used) if r in runs]
    unknown = [Run(r, min(f.start for f in files if f.run == r)) for r in sorted(used - set(runs))]
    return Coverage(since, until, covered, gaps, sorted(known + unknown, key=lambda r: r.start))

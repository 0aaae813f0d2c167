"""`cell pcap --since --until --out FILE`: exactly the ring's packets of [since, until) in one file.

`select_files` (pure) picks the ring files whose time overlaps the window, with a little slack:
dumpcap switches files a few milliseconds after the boundary, so a file may hold packets stamped
just after the next file's name. `extract` hands them to Wireshark's own tools: `editcap -A since -B
until` cuts each file (exact, to the nanosecond) and `mergecap` merges the pieces by timestamp
into one interface list; both are C and read a 1 GiB ring at disk speed (bench/capture.py). A ring file still
being written (or left cut short by a killed run) is read up to its last whole block. The output
is pcapng, written next to `--out` and renamed into place: never half a file.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cell.verify.coverage import (
    Coverage,
    CoverageLog,
    coverage_of,
    iso,
    live_run,
    run_ends,
    runs_of,
)
from cell.verify.errors import CaptureError, NoCapture, PcapUsage
from cell.verify.pcapread import complete_length, read_packets
from cell.verify.ring import RingFile, list_ring, spans

SLACK = timedelta(seconds=2)


def select_files(
    spans: list[tuple[RingFile, datetime]], since: datetime, until: datetime
) -> list[RingFile]:
    """The files that may hold packets of [since, until), oldest first. Pure."""
    return [f for f, end in spans if f.start < until and end + SLACK > since]


@dataclass(frozen=True)
class RingWindow:
    """What the ring holds for [since, until): the files to cut, how well they cover it, and the
    capture's coverage log (its runs and the gateway addresses each one captured on)."""

    ring: Path
    since: datetime
    until: datetime
    files: list[RingFile]
    coverage: Coverage
    events: list[dict[str, Any]]

    @property
    def gateway_addresses(self) -> set[str]:
        return {a for e in self.events if e["event"] == "start" for a in e.get("addresses", [])}


def ring_window(ring: Path, since: datetime, until: datetime, now: datetime) -> RingWindow:
    """The ring's files for [since, until) and their coverage (`cell pcap`, `cell incident`)."""
    files = list_ring(ring)
    if not files:
        raise NoCapture(
            f"no capture ring in {ring}: capture.wan.enabled is off, or the capture never ran",
            empty=True,
        )
    events = CoverageLog(ring).read()
    live = live_run(events)
    ends = run_ends(runs_of(events), now=now, live_run=live)
    chosen = select_files(spans(files, ends), since, until)
    if not chosen:
        first, last = files[0].start, max(f.mtime for f in files)
        raise NoCapture(
            f"no capture covers {iso(since)}..{iso(until)}: the ring holds {iso(first)}..{iso(last)}",
            empty=False,
        )
    cov = coverage_of(events, files, since, until, now=now, live_run=live)
    return RingWindow(ring, since, until, chosen, cov, events)


@dataclass(frozen=True)
class Extracted:
    out: Path
    files: list[str]
    packets: int
    bytes: int


def _epoch(ts: datetime) -> str:
    return f"{ts.timestamp():.9f}"


def _whole(path: Path, scratch: Path) -> Path:
    """`path` itself, or a copy of its whole blocks when its tail is cut short."""
    length = complete_length(path)
    if length == path.stat().st_size:
        return path
    copy = scratch / path.name
    with path.open("rb") as src, copy.open("wb") as dst:
        remaining = length
        while remaining:
            chunk = src.read(min(remaining, 1 << 20))
            if not chunk:
                break
            dst.write(chunk)
            remaining -= len(chunk)
    return copy


def _run(argv: list[str]) -> None:
    try:
        r = subprocess.run(argv, capture_output=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CaptureError(f"{argv[0]} failed: {e}") from e
    if r.returncode != 0:
        why = r.stderr.decode(errors="replace").strip().splitlines()
        raise CaptureError(f"{argv[0]} failed (exit {r.returncode}): {' | '.join(why[-2:])}")


def extract(
    directory: Path,
    files: list[RingFile],
    since: datetime,
    until: datetime,
    out: Path,
    *,
    comment: str | None = None,
    count: bool = True,
) -> Extracted:
    """Write the packets of [since, until) from `files` to `out` (pcapng); `comment` goes into
    the file's section header (what the window is and what it cannot show: its gaps). With
    `count` False the packets are not counted (`packets` and `bytes` are 0): a caller that
    reads the file anyway counts them there, and a 1 GiB window is read once, not twice."""
    if not files:
        raise PcapUsage("no capture file covers the window")
    for tool in ("mergecap", "editcap"):
        if shutil.which(tool) is None:
            raise CaptureError(f"{tool} is not installed (Debian package wireshark-common)")
    out = out.absolute()
    if not out.parent.is_dir():
        raise PcapUsage(f"--out {out}: directory {out.parent} does not exist")
    with tempfile.TemporaryDirectory(prefix=".cell-pcap-", dir=out.parent) as tmp:
        scratch = Path(tmp)
        # Cut each file first, then merge the (small) pieces: the ring is read once.
        pieces = []
        for i, f in enumerate(files):
            piece = scratch / f"piece-{i:05d}.pcapng"
            argv = ["editcap", "-F", "pcapng", "-A", _epoch(since), "-B", _epoch(until)]
            if comment and len(files) == 1:
                argv += ["--capture-comment", comment]
            _run([*argv, str(_whole(directory / f.name, scratch)), str(piece)])
            pieces.append(str(piece))
        cut = Path(pieces[0])
        if len(pieces) > 1:
            merged = scratch / "merged.pcapng"
            _run(["mergecap", "-F", "pcapng", "-w", str(merged), *pieces])
            cut = merged
            if comment:
                cut = scratch / "window.pcapng"
                _run(
                    ["editcap", "-F", "pcapng", "--capture-comment", comment, str(merged), str(cut)]
                )
        packets = size = 0
        for _, _, _, wire in read_packets(cut) if count else ():
            packets += 1
            size += wire
        cut.chmod(0o640)
        with contextlib.suppress(FileNotFoundError):
            if out.is_dir():
                raise PcapUsage(f"--out {out} is a directory; name a file")
        cut.replace(out)
    return Extracted(out, [f.name for f in files], packets, size)

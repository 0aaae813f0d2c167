"""The files of the capture ring: their names, what each one holds, and a listing of a directory.

dumpcap names ring files `PREFIX_NNNNN_YYYYMMDDHHMMSS.pcapng` in its own time zone; the Cell runs
it with TZ=UTC, so the stamp is the UTC second at which the file was opened. The prefix is
`wan.RUN` (RUN: 8 hex digits per start of dumpcap), so two runs never share a name and every file
says which run made it. A file holds the packets from its own stamp until the next file of the
same run was opened (or the run ended). Anything else in the directory is not the ring's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PREFIX = "wan"
CAPTURE_DIR = "capture"
"""The ring's directory inside the state directory."""
_NAME = re.compile(r"wan\.(?P<run>[0-9a-f]{8})_(?P<seq>\d{5,})_(?P<ts>\d{14})\.pcapng")


@dataclass(frozen=True)
class RingFile:
    name: str
    run: str
    seq: int
    start: datetime
    """When dumpcap opened the file (UTC, whole seconds: the name's stamp)."""
    size: int
    mtime: datetime
    """The last write: dumpcap was alive and capturing then."""


def parse_name(name: str) -> tuple[str, int, datetime] | None:
    """(run, seq, start) of a ring file name; None for a file that is not the ring's."""
    m = _NAME.fullmatch(name)
    if m is None:
        return None
    try:
        start = datetime.strptime(m["ts"], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return m["run"], int(m["seq"]), start


def ring_path(directory: str | Path, run: str) -> Path:
    """The `-w` argument of a dumpcap run: dumpcap inserts `_NNNNN_STAMP` before the suffix."""
    return Path(directory) / f"{PREFIX}.{run}.pcapng"


def list_ring(directory: str | Path) -> list[RingFile]:
    """The ring files in `directory`, oldest first (by start, then run and sequence)."""
    out = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for e in entries:
        parsed = parse_name(e.name)
        if parsed is None or not e.is_file(follow_symlinks=False):
            continue
        try:
            st = e.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # pruned while we looked
        run, seq, start = parsed
        mtime = datetime.fromtimestamp(st.st_mtime, UTC)
        out.append(RingFile(e.name, run, seq, start, st.st_size, mtime))
    return sorted(out, key=lambda f: (f.start, f.run, f.seq))


def opened_at(f: RingFile, opened: dict[str, datetime] | None) -> datetime:
    """When `f` was opened: the coverage log's record of it (to the millisecond), else its
    name's stamp (to the second: several files a second are possible when they fill fast)."""
    return max(f.start, opened[f.name]) if opened and f.name in opened else f.start


def spans(
    files: list[RingFile],
    run_end: dict[str, datetime],
    opened: dict[str, datetime] | None = None,
) -> list[tuple[RingFile, datetime]]:
    """Each file with the end of the time it covers: the opening of the next file of its run,
    else the run's end (`run_end[run]`, when known), else its last write. Pure."""
    by_run: dict[str, list[RingFile]] = {}
    for f in files:
        by_run.setdefault(f.run, []).append(f)
    out = []
    for run, fs in by_run.items():
        fs.sort(key=lambda f: f.seq)
        for f, nxt in zip(fs, [*fs[1:], None], strict=True):
            if nxt is not None and nxt.seq == f.seq + 1:
                end = opened_at(nxt, opened)
            elif nxt is not None:
                end = f.mtime  # the files between were deleted: this one ends at its last write
            else:
                end = run_end.get(run, f.mtime)
            out.append((f, max(end, opened_at(f, opened))))
    return sorted(out, key=lambda p: (p[0].start, p[0].run, p[0].seq))

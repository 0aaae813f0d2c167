"""The DNS sinkhole counter: read dnsmasq's query logs into the store, exactly once.

Sources (both rendered by `firewall.dns` with `log-queries=extra` and `log-facility=FILE`):

- the sinkhole's log: every `query[...]` line is a phone-home attempt answered locally (blocked);
  a `forwarded` line there would be a query that left (the config has no server, so never);
- the resolver's log: a `forwarded` line whose client is in a sinkhole VLAN is a query from a
  sinkhole VLAN that left for an upstream (the firewall should make it impossible): a finding.

Position: per source, the file's inode and the offset after the last whole line read, written in
the same transaction as the counts of those lines. A crash of the reader between batches loses
nothing (the next run starts at the stored offset) and counts nothing twice (the counts and the
offset commit together). dnsmasq appends on restart (same inode, offset still valid). A log
renamed to `FILE.1` (by `rotate_log`, or logrotate with `create`) is finished first, then the new
file is read from 0; a truncated file (copy-truncate) is read again from 0.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import BinaryIO

from cell.store.db import Store
from cell.store.dns import DnsEvent, NewPair, Position, read_position, record_dns
from cell.verify.dnslog import Clock, LogQuery, parse_chunk

CHUNK = 4 << 20
"""Bytes read per transaction: some 40,000 queries, a write well under a second."""
ROTATE_AT = 64 << 20
"""The size at which `rotate_log` starts a new file (when asked to, by the daemon)."""


@dataclass(frozen=True)
class LogSource:
    """A dnsmasq query log: `sinkhole` counts every query; otherwise only forwards from
    `sinkhole_nets` count (as forwarded)."""

    key: str
    path: Path
    sinkhole: bool
    sinkhole_nets: tuple[ipaddress.IPv4Network, ...] = ()


@dataclass
class Ingested:
    """What one ingest added."""

    queries: int = 0
    forwarded: int = 0
    new_pairs: list[NewPair] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    """Why lines may have been missed (a rotated file that was gone), for the operator."""


def _open(path: Path) -> BinaryIO | None:
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None


def _reads(
    source: LogSource, pos: Position | None, out: Ingested
) -> Iterator[tuple[BinaryIO, int]]:
    """(open file, offset to start at): the rest of a rotated file, then the current one."""
    current = _open(source.path)
    inode = os.fstat(current.fileno()).st_ino if current else None
    if pos is not None and inode != pos.inode:
        old = _open(source.path.with_name(source.path.name + ".1"))
        if old is not None and os.fstat(old.fileno()).st_ino == pos.inode:
            yield old, pos.offset
        else:
            if old is not None:
                old.close()
            out.lost.append(f"{source.path}: the file read up to offset {pos.offset} is gone")
        pos = None
    if current is not None:
        size = os.fstat(current.fileno()).st_size
        start = pos.offset if pos is not None and pos.offset <= size else 0
        if pos is not None and pos.offset > size:
            out.lost.append(f"{source.path}: truncated below offset {pos.offset}; read from 0")
        yield current, start


def _events(source: LogSource, queries: Sequence[LogQuery]) -> list[DnsEvent]:
    types = {(q.pid, q.serial): q.qtype for q in queries if not q.forwarded}
    out = []
    for q in queries:
        if source.sinkhole or (q.forwarded and _in(q.client, source.sinkhole_nets)):
            qtype = q.qtype or types.get((q.pid, q.serial), "?")
            out.append(DnsEvent(q.ts, q.client, q.name, qtype, q.forwarded))
    return out


def _in(address: str, nets: Sequence[ipaddress.IPv4Network]) -> bool:
    try:
        a = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(a in n for n in nets)


def ingest(
    store: Store, sources: Sequence[LogSource], tz: tzinfo, now: float | None = None
) -> Ingested:
    """Read what is new in each source into the store; return what it added."""
    out = Ingested()
    wall = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
    clock = Clock(wall, local_zone())

    for source in sources:
        pos = saved = read_position(store, source.key)
        for f, start in _reads(source, pos, out):
            with f:
                st = os.fstat(f.fileno())
                here = Position(st.st_ino, start)
                f.seek(start)
                while here.offset < st.st_size:  # what is there now: a pass ends under load
                    chunk = f.read(min(CHUNK, st.st_size - here.offset))
                    end = chunk.rfind(b"\n") + 1
                    if end == 0:
                        break
                    here = Position(here.inode, here.offset + end)
                    f.seek(here.offset)
                    text = chunk[: end - 1].decode("utf-8", errors="replace")
                    events = _events(source, parse_chunk(text, clock))
                    out.new_pairs += record_dns(store, source.key, events, here, tz, _now())
                    out.queries += sum(1 for e in events if not e.forwarded)
                    out.forwarded += sum(1 for e in events if e.forwarded)
                    saved = here
                if saved != here:  # a new file, nothing whole in it yet: remember it
                    record_dns(store, source.key, [], here, tz, _now())
                    saved = here
    return out


def local_zone() -> tzinfo:
    """The zone dnsmasq stamps its lines in: the box's local time ($TZ, else /etc/localtime)."""
    from zoneinfo import ZoneInfo

    with contextlib.suppress(Exception):
        name = os.environ.get("TZ", "").lstrip(":")
        if name:
            return ZoneInfo(name)
    with contextlib.suppress(Exception), Path("/etc/localtime").open("rb") as f:
        return ZoneInfo.from_file(f)
    return UTC


def _now() -> float:
    return time.time()


def rotate_log(
    store: Store, source: LogSource, pid: int, *, at: int = ROTATE_AT, timeout: float = 2.0
) -> bool:
    """Start a new log file if the current one is past `at` bytes and fully read.

    dnsmasq's documented way: rename the file, create the new one with the old owner, SIGUSR2
    (dnsmasq reopens its log-facility file). The reader finishes `FILE.1` before the new file.
    Returns whether it rotated. Waits until dnsmasq has the new file open, so the next rotation
    never replaces a `FILE.1` still being written.
    """
    try:
        st = source.path.stat()
    except FileNotFoundError:
        return False
    pos = read_position(store, source.key)
    if st.st_size < at or pos is None or (pos.inode, pos.offset) != (st.st_ino, st.st_size):
        return False
    source.path.replace(source.path.with_name(source.path.name + ".1"))
    fd = os.open(source.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, st.st_mode & 0o777)
    with contextlib.suppress(OSError):
        os.fchown(fd, st.st_uid, st.st_gid)
    new = os.fstat(fd).st_ino
    os.close(fd)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if new in _open_inodes(pid):
            return True
        time.sleep(0.01)
    return True


def _open_inodes(pid: int) -> set[int]:
    out = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                out.add(fd.stat().st_ino)
    return out

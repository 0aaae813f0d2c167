"""The Cell's SQLite store: counts and history (DNS events and rollups, drop deltas, probe runs).

One file, `STATE/cell.db`, in WAL mode: one writer (the daemon, or a one-shot command when no
daemon runs) and any number of readers, who never block it. Writers take the write lock at the
start of each transaction (`BEGIN IMMEDIATE`) and keep transactions short; a second writer
waits up to `BUSY_MS` for it. Every write that consumes input (a log position, a counter value)
records how far it got in the same transaction as what it counted, so a crash or restart at any
instant neither loses nor double-counts.

The schema is versioned (`PRAGMA user_version`); `open_store` creates or migrates it. The file
never grows without bound: `prune` deletes what is older than `Retention` and hands the pages
back (incremental auto-vacuum), and raw DNS events are also capped by count.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from policies.errors import CellError

FILE = "cell.db"
VERSION = 1
BUSY_MS = 10_000
DAY = 86_400

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE position (
    source TEXT PRIMARY KEY, inode INTEGER NOT NULL, offset INTEGER NOT NULL, ts REAL NOT NULL
);
CREATE TABLE dns_name (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE dns_event (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, client TEXT NOT NULL, name INTEGER NOT NULL,
    qtype TEXT NOT NULL, forwarded INTEGER NOT NULL, n INTEGER NOT NULL
);
CREATE INDEX dns_event_ts ON dns_event (ts);
CREATE TABLE dns_daily (
    day TEXT NOT NULL, client TEXT NOT NULL, name INTEGER NOT NULL,
    blocked INTEGER NOT NULL, forwarded INTEGER NOT NULL, PRIMARY KEY (day, client, name)
) WITHOUT ROWID;
CREATE TABLE dns_first_seen (
    client TEXT NOT NULL, name INTEGER NOT NULL, first REAL NOT NULL, last REAL NOT NULL,
    PRIMARY KEY (client, name)
) WITHOUT ROWID;
CREATE TABLE drop_last (
    counter TEXT PRIMARY KEY, generation INTEGER NOT NULL, packets INTEGER NOT NULL,
    bytes INTEGER NOT NULL, ts REAL NOT NULL
);
CREATE TABLE drop_daily (
    day TEXT NOT NULL, source TEXT NOT NULL, dest TEXT NOT NULL,
    packets INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (day, source, dest)
) WITHOUT ROWID;
CREATE TABLE probe_run (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, commit_sha TEXT, ok INTEGER NOT NULL,
    flows INTEGER NOT NULL, failed TEXT NOT NULL, results TEXT NOT NULL
);
CREATE INDEX probe_run_ts ON probe_run (ts);
CREATE TABLE probe_state (flow TEXT PRIMARY KEY, holds INTEGER NOT NULL, since REAL NOT NULL);
CREATE TABLE probe_change (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, flow TEXT NOT NULL, holds INTEGER NOT NULL,
    run INTEGER NOT NULL, evidence TEXT NOT NULL
);
CREATE INDEX probe_change_ts ON probe_change (ts);
"""


class StoreError(CellError):
    """The store cannot be opened or is from a newer Cell."""

    exit_code = 1


@dataclass(frozen=True)
class Retention:
    """How long each kind of record is kept (seconds), and the cap on raw DNS events.

    The defaults keep a week of raw queries (enough for an incident search), 400 days of daily
    counts and state changes (a year and its anniversary), 30 days of probe runs.
    """

    dns_events: float = 7 * DAY
    dns_events_max: int = 5_000_000
    daily: float = 400 * DAY
    probe_runs: float = 30 * DAY
    probe_changes: float = 400 * DAY


class Store:
    """An open store. Not thread-safe: one per thread (open another for a reader thread)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, retention: Retention) -> None:
        self.conn = conn
        self.path = path
        self.retention = retention

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction, taken at the start (no lock upgrade deadlocks)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def prune(self, now: float | None = None) -> int:
        """Delete what retention no longer keeps; return the rows deleted."""
        now = time.time() if now is None else now
        r = self.retention
        old_day = time.strftime("%Y-%m-%d", time.gmtime(now - r.daily))
        with self.write() as c:
            n = c.execute("DELETE FROM dns_event WHERE ts < ?", (now - r.dns_events,)).rowcount
            (low, high) = c.execute("SELECT min(id), max(id) FROM dns_event").fetchone()
            if high is not None and high - low + 1 > r.dns_events_max:  # ids only grow: O(1)
                n += c.execute(
                    "DELETE FROM dns_event WHERE id <= ?", (high - r.dns_events_max,)
                ).rowcount
            # Days are the site's; a UTC day string a day off at the edge is of no consequence.
            for table in ("dns_daily", "drop_daily"):
                n += c.execute(f"DELETE FROM {table} WHERE day < ?", (old_day,)).rowcount
            pairs = c.execute(
                "DELETE FROM dns_first_seen WHERE last < ?", (now - r.daily,)
            ).rowcount
            if pairs:  # rare: only then can a name have lost its last reference
                n += (
                    pairs
                    + c.execute(
                        "DELETE FROM dns_name WHERE id NOT IN (SELECT name FROM dns_first_seen)"
                        " AND id NOT IN (SELECT name FROM dns_event)"
                        " AND id NOT IN (SELECT name FROM dns_daily)"
                    ).rowcount
                )
            n += c.execute("DELETE FROM probe_run WHERE ts < ?", (now - r.probe_runs,)).rowcount
            n += c.execute(
                "DELETE FROM probe_change WHERE ts < ?", (now - r.probe_changes,)
            ).rowcount
        self.conn.execute("PRAGMA incremental_vacuum")
        return n

    def created(self) -> float:
        """When this store was created (epoch seconds): no day before it can have data."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'created'").fetchone()
        return float(row[0]) if row else 0.0

    def size(self) -> int:
        """Bytes on disk: the database and its WAL."""
        return sum(
            p.stat().st_size
            for p in (self.path, self.path.with_name(self.path.name + "-wal"))
            if p.exists()
        )


def open_store(state_dir: str | Path, retention: Retention | None = None) -> Store:
    """Open (creating or migrating) `STATE/cell.db`."""
    path = Path(state_dir) / FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=BUSY_MS / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        _migrate(conn, path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        conn.execute("PRAGMA foreign_keys=ON")
    except (OSError, sqlite3.Error) as e:
        raise StoreError(f"{path}: cannot open the store ({e})") from None
    return Store(conn, path, retention or Retention())


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version == VERSION:
        return
    if version > VERSION:
        raise StoreError(f"{path}: schema version {version} is newer than this Cell's {VERSION}")
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect only before the first table
    conn.execute("BEGIN IMMEDIATE")
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()  # another may have won
        if version == 0:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO meta VALUES ('created', ?)", (str(time.time()),))
            conn.execute(f"PRAGMA user_version={VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise

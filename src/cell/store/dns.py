"""DNS sinkhole counts in the store: raw events, daily rollups per (client, name), first seen.

`record_dns` writes one batch and the log position it reached in one transaction, and returns
the (client, name) pairs never seen before: "a camera started phoning a new name" is an event.
Days are the site's calendar days (`tz`), fixed when an event is recorded.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from cell.store.db import Store


@dataclass(frozen=True)
class DnsEvent:
    """One query from a client, as dnsmasq logged it."""

    ts: float
    client: str
    name: str
    qtype: str
    forwarded: bool = False
    """True for a query that dnsmasq forwarded upstream (from a sinkhole VLAN: a finding)."""
    count: int = 1
    """How many identical queries (same second, client, name, type) this event stands for."""


@dataclass(frozen=True)
class Position:
    """How far a log file has been read: its inode and the offset after the last whole line."""

    inode: int
    offset: int


@dataclass(frozen=True)
class NewPair:
    """A (client, name) seen for the first time."""

    client: str
    name: str
    ts: float


def read_position(store: Store, source: str) -> Position | None:
    row = store.conn.execute(
        "SELECT inode, offset FROM position WHERE source = ?", (source,)
    ).fetchone()
    return Position(int(row[0]), int(row[1])) if row else None


def _save_position(c: sqlite3.Connection, source: str, pos: Position, now: float) -> None:
    c.execute(
        "INSERT INTO position VALUES (?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET"
        " inode = excluded.inode, offset = excluded.offset, ts = excluded.ts",
        (source, pos.inode, pos.offset, now),
    )


def _name_ids(c: sqlite3.Connection, names: set[str]) -> dict[str, int]:
    c.executemany("INSERT OR IGNORE INTO dns_name (name) VALUES (?)", [(n,) for n in names])
    rows = c.execute(
        "SELECT name, id FROM dns_name WHERE name IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted(names)),),
    )
    return {str(n): int(i) for n, i in rows}


def _known_pairs(c: sqlite3.Connection, pairs: Iterable[tuple[str, int]]) -> set[tuple[str, int]]:
    rows = c.execute(
        "SELECT f.client, f.name FROM json_each(?) j JOIN dns_first_seen f"
        " ON f.client = j.value ->> 0 AND f.name = j.value ->> 1",
        (json.dumps(list(pairs)),),
    )
    return {(str(a), int(b)) for a, b in rows}


def record_dns(
    store: Store, source: str, events: Sequence[DnsEvent], pos: Position, tz: tzinfo, now: float
) -> list[NewPair]:
    """Count `events` and move `source`'s position to `pos`, all or nothing.

    Identical queries in the same second (same client, name, type) are one row with a count:
    dnsmasq stamps to the second, so nothing is lost, and a device hammering one name costs a
    row per second, not per query."""
    days: dict[int, str] = {}

    def day_of(ts: float) -> str:
        minute = int(ts) // 60  # zone offsets are whole minutes
        if minute not in days:
            days[minute] = datetime.fromtimestamp(minute * 60, tz).date().isoformat()
        return days[minute]

    same: Counter[tuple[float, str, str, str, bool]] = Counter(
        (e.ts, e.client, e.name, e.qtype, e.forwarded) for e in events
    )
    with store.write() as c:
        ids = _name_ids(c, {e.name for e in events})
        c.executemany(
            "INSERT INTO dns_event (ts, client, name, qtype, forwarded, n) VALUES (?, ?, ?, ?, ?, ?)",
            [(ts, cl, ids[nm], qt, int(fw), n) for (ts, cl, nm, qt, fw), n in same.items()],
        )
        blocked: Counter[tuple[str, str, int]] = Counter()
        forwarded: Counter[tuple[str, str, int]] = Counter()
        seen: dict[tuple[str, int], tuple[float, float]] = {}
        for (ts, client, name, _, fw), n in same.items():
            key = (day_of(ts), client, ids[name])
            (forwarded if fw else blocked)[key] += n
            first, last = seen.get((client, ids[name]), (ts, ts))
            seen[(client, ids[name])] = (min(first, ts), max(last, ts))
        c.executemany(
            "INSERT INTO dns_daily VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
            " blocked = blocked + excluded.blocked, forwarded = forwarded + excluded.forwarded",
            [(*k, blocked[k], forwarded[k]) for k in blocked.keys() | forwarded.keys()],
        )
        names = {i: n for n, i in ids.items()}
        known = _known_pairs(c, seen)
        new = [
            NewPair(client, names[name_id], first)
            for (client, name_id), (first, _) in seen.items()
            if (client, name_id) not in known
        ]
        c.executemany(
            "INSERT INTO dns_first_seen VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
            " last = max(last, excluded.last)",
            [(client, name_id, first, last) for (client, name_id), (first, last) in seen.items()],
        )
        _save_position(c, source, pos, now)
    return sorted(new, key=lambda p: p.ts)


def day_totals(store: Store, day: str) -> tuple[int, int]:
    """(blocked, forwarded) on `day`."""
    row = store.conn.execute(
        "SELECT coalesce(sum(blocked), 0), coalesce(sum(forwarded), 0) FROM dns_daily"
        " WHERE day = ?",
        (day,),
    ).fetchone()
    return int(row[0]), int(row[1])


def day_clients(store: Store, day: str) -> list[tuple[str, int, int]]:
    """(client, blocked, forwarded) on `day`, most blocked first."""
    rows = store.conn.execute(
        "SELECT client, sum(blocked) AS b, sum(forwarded) FROM dns_daily WHERE day = ?"
        " GROUP BY client ORDER BY b DESC, client",
        (day,),
    ).fetchall()
    return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]


def day_names(store: Store, day: str) -> list[tuple[str, int, int, float]]:
    """(name, blocked, forwarded, first seen by any client) on `day`, most blocked first."""
    rows = store.conn.execute(
        "SELECT n.name, sum(d.blocked) AS b, sum(d.forwarded),"
        " (SELECT min(f.first) FROM dns_first_seen f WHERE f.name = d.name)"
        " FROM dns_daily d JOIN dns_name n ON n.id = d.name WHERE d.day = ?"
        " GROUP BY d.name ORDER BY b DESC, n.name",
        (day,),
    ).fetchall()
    return [(str(r[0]), int(r[1]), int(r[2]), float(r[3] or 0)) for r in rows]


def day_pairs(store: Store, day: str, limit: int = 500) -> list[tuple[str, str, int, int]]:
    """(client, name, blocked, forwarded) on `day`, most blocked first: who phones what."""
    rows = store.conn.execute(
        "SELECT d.client, n.name, d.blocked, d.forwarded FROM dns_daily d"
        " JOIN dns_name n ON n.id = d.name WHERE d.day = ?"
        " ORDER BY d.blocked DESC, d.client, n.name LIMIT ?",
        (day, limit),
    ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]


def recent_events(
    store: Store, since: float, clients: Sequence[str] | None, limit: int
) -> list[DnsEvent]:
    """Raw events since `since`, newest first (only as far back as retention keeps them)."""
    sql = (
        "SELECT e.ts, e.client, n.name, e.qtype, e.forwarded, e.n FROM dns_event e"
        " JOIN dns_name n ON n.id = e.name WHERE e.ts >= ?"
    )
    params: list[object] = [since]
    if clients is not None:
        sql += f" AND e.client IN ({','.join('?' * len(clients))})"
        params += list(clients)
    sql += " ORDER BY e.ts DESC, e.id DESC LIMIT ?"
    rows = store.conn.execute(sql, (*params, limit)).fetchall()
    return [
        DnsEvent(float(r[0]), str(r[1]), str(r[2]), str(r[3]), bool(r[4]), int(r[5])) for r in rows
    ]


def window_counts(store: Store, since: float, until: float) -> list[tuple[str, str, int, int]]:
    """(client, name, blocked, forwarded) of the raw events in [since, until), most first: what
    an incident search reports (only as far back as retention keeps raw events)."""
    rows = store.conn.execute(
        "SELECT e.client, n.name, sum(CASE WHEN e.forwarded THEN 0 ELSE e.n END) AS b,"
        " sum(CASE WHEN e.forwarded THEN e.n ELSE 0 END) AS f FROM dns_event e"
        " JOIN dns_name n ON n.id = e.name WHERE e.ts >= ? AND e.ts < ?"
        " GROUP BY e.client, e.name ORDER BY f DESC, b DESC, e.client, n.name",
        (since, until),
    ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]

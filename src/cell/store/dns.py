"""DNS sinkhole counts in the store: raw events, daily rollups per (client, name), first seen.

`record_dns` writes one batch and the log position it reached in one transaction, and returns
the (client, name) pairs never seen before: "a camera started phoning a new name" is an event.
Days are the site's calendar days (`tz`), fixed when an event is recorded.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
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
    out: dict[str, int] = {}
    for name in names:
        (i,) = c.execute("SELECT id FROM dns_name WHERE name = ?", (name,)).fetchone()
        out[name] = int(i)
    return out


def record_dns(
    store: Store, source: str, events: Sequence[DnsEvent], pos: Position, tz: tzinfo, now: float
) -> list[NewPair]:
    """Count `events` and move `source`'s position to `pos`, all or nothing."""
    days: dict[int, str] = {}

    def day_of(ts: float) -> str:
        minute = int(ts) // 60  # zone offsets are whole minutes
        if minute not in days:
            days[minute] = datetime.fromtimestamp(minute * 60, tz).date().isoformat()
        return days[minute]

    new: list[NewPair] = []
    with store.write() as c:
        ids = _name_ids(c, {e.name for e in events})
        c.executemany(
            "INSERT INTO dns_event (ts, client, name, qtype, forwarded) VALUES (?, ?, ?, ?, ?)",
            [(e.ts, e.client, ids[e.name], e.qtype, int(e.forwarded)) for e in events],
        )
        blocked: Counter[tuple[str, str, int]] = Counter()
        forwarded: Counter[tuple[str, str, int]] = Counter()
        seen: dict[tuple[str, int], tuple[float, float]] = {}
        for e in events:
            key = (day_of(e.ts), e.client, ids[e.name])
            (forwarded if e.forwarded else blocked)[key] += 1
            first, last = seen.get((e.client, ids[e.name]), (e.ts, e.ts))
            seen[(e.client, ids[e.name])] = (min(first, e.ts), max(last, e.ts))
        c.executemany(
            "INSERT INTO dns_daily VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
            " blocked = blocked + excluded.blocked, forwarded = forwarded + excluded.forwarded",
            [(*k, blocked[k], forwarded[k]) for k in blocked.keys() | forwarded.keys()],
        )
        names = {i: n for n, i in ids.items()}
        for (client, name), (first, last) in seen.items():
            inserted = c.execute(
                "INSERT INTO dns_first_seen VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (client, name, first, last),
            ).rowcount
            if inserted:
                new.append(NewPair(client, names[name], first))
            else:
                c.execute(
                    "UPDATE dns_first_seen SET last = max(last, ?) WHERE client = ? AND name = ?",
                    (last, client, name),
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


def recent_events(
    store: Store, since: float, clients: Sequence[str] | None, limit: int
) -> list[DnsEvent]:
    """Raw events since `since`, newest first (only as far back as retention keeps them)."""
    sql = (
        "SELECT e.ts, e.client, n.name, e.qtype, e.forwarded FROM dns_event e"
        " JOIN dns_name n ON n.id = e.name WHERE e.ts >= ?"
    )
    params: list[object] = [since]
    if clients is not None:
        sql += f" AND e.client IN ({','.join('?' * len(clients))})"
        params += list(clients)
    sql += " ORDER BY e.ts DESC, e.id DESC LIMIT ?"
    rows = store.conn.execute(sql, (*params, limit)).fetchall()
    return [DnsEvent(float(r[0]), str(r[1]), str(r[2]), str(r[3]), bool(r[4])) for r in rows]

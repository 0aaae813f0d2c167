"""Drop counts in the store: deltas of the named nft counters, per (source, destination class).

A re-apply replaces `table inet cell`, and with it every counter, back to zero. So the store
keeps, per counter, the last value it saw and the generation of the table it saw it in (the
table's kernel handle, new for each table); a poll adds the rise since then, or the whole
value when the table is new or the counter went down. Totals then survive applies and restarts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo

from cell.store.db import Store


@dataclass(frozen=True)
class CounterValue:
    packets: int
    bytes: int


def split_counter(name: str) -> tuple[str, str] | None:
    """`drop_cameras.wan` -> (cameras, wan); `drop_other_forward` -> (other, forward);
    `drop_spoofed_cameras` -> (spoofed, cameras): a forged source arriving on that VLAN."""
    if not name.startswith("drop_"):
        return None
    rest = name[len("drop_") :]
    if "." in rest:
        src, _, dst = rest.partition(".")
        return src, dst
    for kind in ("other", "invalid", "spoofed"):
        if rest.startswith(kind + "_"):
            return kind, rest[len(kind) + 1 :]
    return None


def record_drops(
    store: Store, generation: int, values: Mapping[str, CounterValue], tz: tzinfo, now: float
) -> dict[tuple[str, str], int]:
    """Add the rise of each counter since the last poll to today's counts; return the deltas."""
    day = datetime.fromtimestamp(now, tz).date().isoformat()
    deltas: dict[tuple[str, str], int] = {}
    with store.write() as c:
        last = {
            str(r[0]): (int(r[1]), int(r[2]), int(r[3]))
            for r in c.execute("SELECT counter, generation, packets, bytes FROM drop_last")
        }
        rows = []
        for name, v in values.items():
            pair = split_counter(name)
            if pair is None:
                continue
            gen, packets, nbytes = last.get(name, (None, 0, 0))
            if gen == generation and v.packets >= packets and v.bytes >= nbytes:
                dp, db = v.packets - packets, v.bytes - nbytes
            else:
                dp, db = v.packets, v.bytes
            c.execute(
                "INSERT INTO drop_last VALUES (?, ?, ?, ?, ?) ON CONFLICT (counter) DO UPDATE SET"
                " generation = excluded.generation, packets = excluded.packets,"
                " bytes = excluded.bytes, ts = excluded.ts",
                (name, generation, v.packets, v.bytes, now),
            )
            if dp or db:
                rows.append((day, *pair, dp, db))
                deltas[pair] = deltas.get(pair, 0) + dp
        c.executemany(
            "INSERT INTO drop_daily VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
            " packets = packets + excluded.packets, bytes = bytes + excluded.bytes",
            rows,
        )
    return deltas


def rebase_drops(
    store: Store, generation: int, values: Mapping[str, CounterValue], now: float
) -> None:
    """Take `values` as the new starting point without counting them: a table restored with the
    counter values it had (an apply that failed and put the old table back) counts nothing new."""
    with store.write() as c:
        c.executemany(
            "INSERT INTO drop_last VALUES (?, ?, ?, ?, ?) ON CONFLICT (counter) DO UPDATE SET"
            " generation = excluded.generation, packets = excluded.packets,"
            " bytes = excluded.bytes, ts = excluded.ts",
            [(n, generation, v.packets, v.bytes, now) for n, v in values.items()],
        )


def day_drops(store: Store, day: str) -> list[tuple[str, str, int, int]]:
    """(source, destination class, packets, bytes) on `day`, most packets first."""
    rows = store.conn.execute(
        "SELECT source, dest, packets, bytes FROM drop_daily WHERE day = ?"
        " ORDER BY packets DESC, source, dest",
        (day,),
    ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]

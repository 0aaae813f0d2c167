"""The drop poller: read the named drop counters of `table inet cell` and store their deltas.

Thin: one libnftables listing (packets and bytes of every named counter, and the table's
handle, which changes when an apply replaces the table) handed to `cell.store.drops`.
"""

from __future__ import annotations

import time
from datetime import tzinfo

from cell.store.db import Store
from cell.store.drops import CounterValue, record_drops
from firewall import apply as fw


def read_drop_counters(netns: str | None) -> tuple[int, dict[str, CounterValue]]:
    """(table generation, counter -> value); (0, {}) when the table is absent."""
    objects = fw.read_table(netns) or []
    generation = 0
    values: dict[str, CounterValue] = {}
    for o in objects:
        if "table" in o:
            generation = int(o["table"].get("handle", 0))
        elif "counter" in o:
            c = o["counter"]
            values[str(c["name"])] = CounterValue(int(c.get("packets", 0)), int(c.get("bytes", 0)))
    return generation, values


def poll_drops(
    store: Store, netns: str | None, tz: tzinfo, now: float | None = None
) -> dict[tuple[str, str], int]:
    """Add what each drop counter counted since the last poll; return the packet deltas."""
    generation, values = read_drop_counters(netns)
    if not values:
        return {}
    return record_drops(store, generation, values, tz, time.time() if now is None else now)

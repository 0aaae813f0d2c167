"""The drop poller: read the named drop counters of `table inet cell` and store their deltas.

Thin: one libnftables listing (packets and bytes of every named counter, and the table's
handle, which changes when an apply replaces the table) handed to `cell.store.drops`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from cell.store.db import Store
from cell.store.drops import CounterValue, rebase_drops, record_drops
from firewall import nft as fw

if TYPE_CHECKING:
    from policies import Policy


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


class DropKeeper:
    """The apply's `CounterKeeper` (cell.deploy.install): drop history across a new table."""

    def __init__(self, state_dir: str | Path, policy: Policy) -> None:
        self.state_dir, self.policy = state_dir, policy

    def before_replace(self, netns: str | None) -> None:
        poll_before_apply(self.state_dir, netns, self.policy)

    def after_restore(self, netns: str | None) -> None:
        rebase_after_restore(self.state_dir, netns, self.policy)


def poll_before_apply(state_dir: str | Path, netns: str | None, policy: Policy) -> None:
    """Best effort, right before an apply replaces the table: store what its counters counted
    since the last poll, which the new table would otherwise lose. History never blocks an
    apply: a store that cannot be written is skipped."""
    from cell.store import StoreError, open_store
    from cell.verify.site import retention_of, site_zone

    with (
        contextlib.suppress(StoreError, sqlite3.Error, OSError),
        open_store(state_dir, retention_of(policy)) as store,
    ):
        poll_drops(store, netns, site_zone(policy))


def rebase_after_restore(state_dir: str | Path, netns: str | None, policy: Policy) -> None:
    """Best effort, right after a failed apply put the old table back with its counter values
    (counted already, up to `poll_before_apply`): start from them without counting them again."""
    from cell.store import StoreError, open_store
    from cell.verify.site import retention_of

    with (
        contextlib.suppress(StoreError, sqlite3.Error, OSError),
        open_store(state_dir, retention_of(policy)) as store,
    ):
        generation, values = read_drop_counters(netns)
        if values:
            rebase_drops(store, generation, values, time.time())

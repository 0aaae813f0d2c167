"""What the console shows beyond the bus: the Cell's own records, read through the same models
the CLI uses (journal, ledger, the SQLite store, the bridge monitor's snapshot, the policy).

`read_records` blocks (files, SQLite): the app calls it in a thread worker. It never writes and
never creates anything: a missing store or journal is shown as missing, not made.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bridge.status import BridgeStatus
from cell.store import FILE, open_store
from cell.store import ledger as ledger_store
from cell.store.dns import day_clients, day_names, day_pairs, day_totals
from cell.store.drops import day_drops
from cell.store.journal import Entry, read_journal
from cell.store.probes import ProbeRun, probe_changes, probe_runs
from cell.store.statedir import State
from policies.errors import CellError
from policies.layout import BRIDGE_SNAPSHOT

if TYPE_CHECKING:
    from policies import Policy

LEDGER_SHOWN = 300
WEEK = 7 * 86_400


@dataclass(frozen=True)
class DnsToday:
    blocked: int = 0
    forwarded: int = 0
    clients: list[tuple[str, int, int]] = field(default_factory=list)
    """(address, blocked, forwarded)."""
    names: list[tuple[str, int, int, float]] = field(default_factory=list)
    """(name, blocked, forwarded, first seen by any client)."""
    pairs: list[tuple[str, str, int, int]] = field(default_factory=list)
    """(client address, name, blocked, forwarded)."""


@dataclass(frozen=True)
class Records:
    """Everything the panels show that is not on the bus, read at `read_at`."""

    state_dir: str
    read_at: float = 0.0
    day: str = ""
    timezone: str = "UTC"
    day_start: float = 0.0
    applied: Entry | None = None
    pending: Entry | None = None
    ledger: list[dict[str, Any]] = field(default_factory=list)
    """The newest entries, newest first."""
    dns: DnsToday = field(default_factory=DnsToday)
    drops: list[tuple[str, str, int, int]] = field(default_factory=list)
    runs: list[ProbeRun] = field(default_factory=list)
    changes: list[tuple[float, str, bool, str]] = field(default_factory=list)
    policy: Policy | None = None
    policy_from: str = ""
    bridge: BridgeStatus | None = None
    problems: list[str] = field(default_factory=list)

    def host_of(self, address: str) -> str:
        """A client address as people know it: `cam-01 (10.10.0.11)`, or the address."""
        if self.policy is not None:
            for h in self.policy.network.hosts:
                if h.address == address:
                    return f"{h.name} ({address})"
        return address


def _policy(state: State, applied: Entry | None, repo: str | None) -> tuple[Policy | None, str]:
    """The policy in force: the Cell's stored copy of the applied commit, else the repo."""
    places = []
    if applied is not None:
        places.append((state.trees / applied.commit, f"applied commit {applied.commit[:12]}"))
    if repo:
        places.append((Path(repo), f"repo {repo}"))
    for path, label in places:
        if (path / "site.yaml").is_file():
            from policies import load_policy  # the model costs start-up time: read in the worker

            return load_policy(path), label
    return None, ""


def read_records(state_dir: str, repo: str | None = None, now: float | None = None) -> Records:
    """Read every record the panels show. Problems (an unreadable journal, a broken policy) are
    collected, not raised: one bad record must not blank the rest of the console."""
    now = time.time() if now is None else now
    state = State(state_dir)
    problems: list[str] = []
    applied = pending = None
    try:
        journal = read_journal(state)
        applied, pending = journal.applied, journal.pending
    except CellError as e:
        problems.append(str(e))
    policy, policy_from = None, ""
    try:
        policy, policy_from = _policy(state, applied, repo)
    except CellError as e:
        problems.append(f"policy: {str(e).splitlines()[0]}")
    tzname = policy.site.site.timezone if policy is not None else "UTC"
    tz = ZoneInfo(tzname)
    today = datetime.fromtimestamp(now, tz)
    day = today.date().isoformat()
    day_start = today.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    entries = ledger_store.read(state)[-LEDGER_SHOWN:]
    entries.reverse()
    dns, drops, runs, changes = DnsToday(), [], [], []
    if (Path(state_dir) / FILE).is_file():
        try:
            with open_store(state_dir) as store:
                blocked, forwarded = day_totals(store, day)
                dns = DnsToday(
                    blocked,
                    forwarded,
                    day_clients(store, day),
                    day_names(store, day),
                    day_pairs(store, day),
                )
                drops = day_drops(store, day)
                runs = probe_runs(store, now - WEEK, limit=200)
                changes = probe_changes(store, now - 400 * 86_400)
        except CellError as e:
            problems.append(str(e))
    else:
        problems.append(f"{Path(state_dir) / FILE}: no store yet (the daemon creates it)")
    return Records(
        state_dir=state_dir,
        read_at=now,
        day=day,
        timezone=tzname,
        day_start=day_start,
        applied=applied,
        pending=pending,
        ledger=entries,
        dns=dns,
        drops=drops,
        runs=runs,
        changes=changes,
        policy=policy,
        policy_from=policy_from,
        bridge=_bridge(Path(state_dir) / BRIDGE_SNAPSHOT),
        problems=problems,
    )


def _bridge(path: Path) -> BridgeStatus | None:
    try:
        return BridgeStatus.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None

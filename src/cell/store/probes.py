"""Probe history in the store: every `cell probe` run, and every change of a flow's state.

A run keeps each flow's expectation, result and evidence (the counter delta of a drop). Runs
are kept for `Retention.probe_runs`; a change (a flow that starts or stops holding) for much
longer, so "when did the VLAN segregation test last fail" has an answer a year on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cell.status.probe import ProbeResult
from cell.store.db import Store


@dataclass(frozen=True)
class ProbeRun:
    id: int
    ts: float
    commit: str | None
    ok: bool
    flows: int
    failed: list[str]
    results: list[dict[str, Any]]


def flow_id(result: Mapping[str, Any]) -> str:
    return str(result.get("id") or f"{result.get('from')}>{result.get('to')}")


def record_probe_run(
    store: Store, ts: float, commit: str | None, probed: Sequence[ProbeResult]
) -> tuple[int, list[tuple[str, bool]]]:
    """Store a run; return its id and the flows whose state changed with it."""
    results = [r.to_doc() for r in probed]
    failed = [flow_id(r) for r in results if not r.get("ok")]
    kept = [
        {k: r.get(k) for k in ("id", "from", "to", "expect", "got", "ok", "evidence", "counter")}
        for r in results
    ]
    changes: list[tuple[str, bool]] = []
    with store.write() as c:
        cur = c.execute(
            "INSERT INTO probe_run (ts, commit_sha, ok, flows, failed, results)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (ts, commit, int(not failed), len(results), json.dumps(failed), json.dumps(kept)),
        )
        run = int(cur.lastrowid or 0)
        state = {str(r[0]): bool(r[1]) for r in c.execute("SELECT flow, holds FROM probe_state")}
        for r in results:
            flow, holds = flow_id(r), bool(r.get("ok"))
            if state.get(flow) == holds:
                continue
            c.execute(
                "INSERT INTO probe_state VALUES (?, ?, ?) ON CONFLICT (flow) DO UPDATE SET"
                " holds = excluded.holds, since = excluded.since",
                (flow, int(holds), ts),
            )
            c.execute(
                "INSERT INTO probe_change (ts, flow, holds, run, evidence) VALUES (?, ?, ?, ?, ?)",
                (ts, flow, int(holds), run, str(r.get("evidence", ""))),
            )
            changes.append((flow, holds))
    return run, changes


def probe_runs(store: Store, since: float, limit: int = 1000) -> list[ProbeRun]:
    """Runs since `since`, newest first."""
    rows = store.conn.execute(
        "SELECT id, ts, commit_sha, ok, flows, failed, results FROM probe_run WHERE ts >= ?"
        " ORDER BY ts DESC, id DESC LIMIT ?",
        (since, limit),
    ).fetchall()
    return [
        ProbeRun(
            int(r[0]), float(r[1]), r[2], bool(r[3]), int(r[4]), json.loads(r[5]), json.loads(r[6])
        )
        for r in rows
    ]


def probe_changes(store: Store, since: float) -> list[tuple[float, str, bool, str]]:
    """(ts, flow, holds, evidence) of each change since `since`, newest first."""
    rows = store.conn.execute(
        "SELECT ts, flow, holds, evidence FROM probe_change WHERE ts >= ? ORDER BY ts DESC, id DESC",
        (since,),
    ).fetchall()
    return [(float(r[0]), str(r[1]), bool(r[2]), str(r[3])) for r in rows]


def probe_runs_between(store: Store, since: float, until: float) -> list[ProbeRun]:
    """Every run in [since, until), oldest first (no cap: an incident window wants them all)."""
    rows = store.conn.execute(
        "SELECT id, ts, commit_sha, ok, flows, failed, results FROM probe_run"
        " WHERE ts >= ? AND ts < ? ORDER BY ts, id",
        (since, until),
    ).fetchall()
    return [
        ProbeRun(
            int(r[0]), float(r[1]), r[2], bool(r[3]), int(r[4]), json.loads(r[5]), json.loads(r[6])
        )
        for r in rows
    ]

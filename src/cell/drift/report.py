"""Telling people about drift: the text of `cell drift` and of each `--watch` event, and the
ledger record of drift (one entry per change of state, never one per poll)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cell.drift.compare import Finding, Report
from cell.store import ledger
from cell.store.statedir import State
from policies.clock import iso, now_iso

if TYPE_CHECKING:
    from firewall.monitor import Change


def record(state: State, findings: list[Finding], source: str) -> None:
    """Ledger the drift state when it differs from the last one recorded (no entry per poll)."""
    keys = sorted(f.key for f in findings)
    last = ledger.last_of(state, ("drift", "drift-resolved"))
    if last is None and not keys:
        return
    if last is not None and sorted(last.get("keys", [])) == keys:
        return
    if keys:
        ledger.append(
            state, "drift", source=source, keys=keys, findings=[f.to_doc() for f in findings]
        )
    elif last is not None and last.get("kind") == "drift":
        ledger.append(state, "drift-resolved", source=source, keys=[])


def format_event(e: dict[str, Any]) -> str:
    status = str(e.get("status", "")).upper()
    if status in ("ROLLBACK", "RECONCILED", "RECONCILE-FAILED", "ERROR"):
        return f"{e['time']} {status}: {e.get('note') or e.get('error') or e.get('commit')}"
    lines = [f"{e['time']} {status} ({e['kind']}, {e['source']})"]
    for f in e.get("new", []):
        by = f.get("by")
        who = f" [by {by['name']}, pid {by['pid']}]" if by else ""
        since = f" [changed {f['since']}]" if f.get("since") else ""
        lines.append(f"  {f['kind']}: {f['what']}{who}{since}")
        lines += [f"      {ln}" for ln in str(f.get("diff", "")).splitlines()]
    lines += [f"  resolved: {what}" for what in e.get("resolved", [])]
    return "\n".join(lines)


def format_report(r: Report) -> str:
    assert r.applied is not None
    a = r.applied
    head = f'commit {a.commit[:12]} "{a.subject}" (signed by {a.signer}; {a.via} at {a.time})'
    table = r.table
    where = {
        "applied": f"wholly the applied commit {a.commit[:12]}",
        "pending": f"wholly the interrupted apply's commit {((table and table.commit) or '')[:12]}",
        "other": "neither the applied commit nor a pending one",
        "absent": "absent",
    }[table.state if table else "absent"]
    lines = [("in sync with " if r.in_sync else "DRIFT from ") + head, f"  table: {where}"]
    if r.pending is not None:
        lines.append(f"  an apply of {r.pending.commit[:12]} was interrupted (journal: pending)")
    for f in r.findings:
        lines.append(f"  {f.kind}: {f.what}")
        lines += [f"      {ln}" for ln in f.diff.splitlines()]
    return "\n".join(lines)


def transaction_finding(change: Change) -> Finding:
    """An nftables transaction the Cell did not make, as a finding (the watcher's)."""
    who = f"{change.process or '?'} (pid {change.pid})" if change.pid else "an unknown process"
    return Finding(
        "transaction",
        f"nftables transaction by {who}: {', '.join(change.what[:5]) or 'no details'}",
        by=change.by(),
        since=iso(change.at),
    )


def transaction_event(f: Finding, commit: str) -> dict[str, Any]:
    return {
        "time": now_iso(),
        "status": "drift",
        "kind": "transaction",
        "source": "netlink",
        "commit": commit,
        "new": [f.to_doc()],
        "resolved": [],
    }

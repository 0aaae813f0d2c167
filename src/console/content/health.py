"""HEALTH: VLAN segregation (the daemon's check, and the probe runs as a timeline), each failed
flow with its evidence, and capture coverage."""

from __future__ import annotations

from typing import Any

from cell.store.probes import ProbeRun
from console.content.synopsis import check_evidence, check_state
from console.view import MARKS, Row, View, clock, head, stamp

TIMELINE = 48


def _flow(r: dict[str, Any]) -> str:
    return str(r.get("id") or f"{r.get('from')}>{r.get('to')}")


def _run_evidence(run: ProbeRun) -> str:
    lines = [
        f"probe run {run.id} at {stamp(run.ts)} on commit {run.commit or 'unknown'}",
        f"{run.flows} flows, {len(run.failed)} failed",
        "",
    ]
    bad = [r for r in run.results if not r.get("ok")]
    for r in bad or run.results[:20]:
        mark = MARKS["ok"] if r.get("ok") else MARKS["bad"]
        lines.append(f"{mark} {_flow(r)}: expected {r.get('expect')}, got {r.get('got')}")
        if r.get("counter"):
            lines.append(f"    counter {r['counter']}")
        if r.get("evidence"):
            lines.append(f"    evidence: {r['evidence']}")
    return "\n".join(lines)


def rows(view: View) -> list[Row]:
    rec, bus, now = view.records, view.bus, view.now
    out: list[Row] = []
    check = bus.check("segregation")
    tone, word = check_state(check, now)
    if tone == "ok":
        headline = f"VLAN segregation · DENIED {MARKS['ok']}"
    elif tone == "bad":
        headline = f"VLAN segregation · FAILED {MARKS['bad']}"
    else:
        headline = f"VLAN segregation · {word} {MARKS['stale']}"
    detail = check.detail if check else "no result from the daemon yet"
    out.append(
        Row(
            f"{headline}  {detail}",
            tone,
            check_evidence("segregation", check, now),
            "check segregation",
        )
    )
    runs = rec.runs if rec else []
    out.append(head(f"probe runs, last 7 days (oldest → newest): {len(runs)}"))
    if runs:
        line = "".join(MARKS["ok"] if r.ok else MARKS["bad"] for r in reversed(runs[:TIMELINE]))
        out.append(Row(f"  {line}"))
    for run in runs[:20]:
        state = "all hold" if run.ok else f"{len(run.failed)} FAILED: {', '.join(run.failed)[:100]}"
        out.append(
            Row(
                f"  {MARKS['ok'] if run.ok else MARKS['bad']} {stamp(run.ts)}  "
                f"{(run.commit or 'unknown')[:12]:<12}  {run.flows} flows  {state}",
                "ok" if run.ok else "bad",
                _run_evidence(run),
                f"probe run {run.id}",
            )
        )
    if not runs:
        out.append(Row("  no probe runs recorded", "dim"))
    changes = rec.changes if rec else []
    out.append(head("flow changes (a flow that stopped or started holding)"))
    for ts, flow, holds, ev in changes[:20]:
        out.append(
            Row(
                f"  {MARKS['ok'] if holds else MARKS['bad']} {stamp(ts)}  {flow}  "
                + ("holds again" if holds else "STOPPED holding"),
                "ok" if holds else "bad",
                f"{flow} {'holds' if holds else 'stopped holding'} at {stamp(ts)}\n\nevidence: {ev or '-'}",
                f"flow {flow}",
            )
        )
    if not changes:
        out.append(Row("  none recorded", "dim"))
    out.append(head("capture"))
    cap = bus.check("capture")
    ct, cw = check_state(cap, now)
    out.append(
        Row(
            f"  {MARKS.get(ct, '?')} capture {cw}: {cap.detail if cap else 'no result yet'}",
            ct,
            check_evidence("capture", cap, now),
            "check capture",
        )
    )
    for name in ("drift", "trust"):
        c = bus.check(name)
        t, w = check_state(c, now)
        out.append(
            Row(
                f"  {MARKS.get(t, '?')} {name} {w}: {c.detail if c else 'no result yet'}"
                + (f" (at {clock(c.ts)})" if c else ""),
                t,
                check_evidence(name, c, now),
                f"check {name}",
            )
        )
    return out

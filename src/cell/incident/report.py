"""The report of an incident search: report.json (the `Report` record) and report.md, the same
findings for people. Pure: steps in, bytes out, byte-for-byte the same for the same steps."""

from __future__ import annotations

import json
from typing import Any

from cell.incident.model import STEPS, TITLES, Report, Step


def make_report(
    site: str,
    since: str,
    until: str,
    steps: dict[str, Step],
    head: dict[str, Any] | None,
    key: str | None,
) -> Report:
    ordered = {name: steps[name] for name in STEPS if name in steps}
    return Report(
        site=site,
        since=since,
        until=until,
        findings=Report.count(ordered),
        steps=ordered,
        ledger_head=head,
        evidence_key=key,
    )


def render_json(report: Report) -> bytes:
    return (
        json.dumps(report.to_doc(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    ).encode()


def render_jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(
        (json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        for r in rows
    )


def _facts(step: Step) -> str:
    s = step.summary
    if step.name == "bridge":
        return (
            f"{s.get('unexpected', 0)} unexpected publishes ({s.get('never', 0)} of never topics)"
        )
    if step.name == "gitops":
        return (
            f"{s.get('applied', 0)} commits made live ({s.get('bridge_or_firewall', 0)} touching "
            f"the bridge or the firewall), {s.get('refused', 0)} refused"
        )
    if step.name == "health":
        return f"{s.get('runs', 0)} probe runs, {s.get('failed_runs', 0)} failed"
    if step.name == "egress":
        cov = s.get("coverage") or {}
        share = cov.get("covered_fraction")
        shown = f"{share * 100:.2f} %" if isinstance(share, (int, float)) else "?"
        return (
            f"{s.get('packets', 0)} packets, {s.get('destinations', 0)} destinations, "
            f"{s.get('unexpected', 0)} unexpected; capture covers {shown} of the window"
        )
    if step.name == "dns":
        return (
            f"{s.get('blocked', 0)} phone-home queries blocked, {s.get('forwarded', 0)} forwarded"
            f" ({s.get('clients', 0)} clients, {s.get('names', 0)} names)"
        )
    return f"{s.get('events', 0)} drift events, {s.get('resolved', 0)} resolved"


def _gitops_lines(step: Step) -> list[str]:
    out = []
    for r in step.rows:
        if r.get("kind") not in ("apply", "rollback", "reconcile", "recovery"):
            continue
        fate = (
            f"rolled back {r['rolled_back']}"
            if r.get("rolled_back")
            else f"confirmed {r['confirmed']}"
            if r.get("confirmed")
            else f"replaced {r['replaced']}"
            if r.get("replaced")
            else "still in force"
        )
        out.append(
            f"- {r.get('time')} {r.get('kind')} `{str(r.get('commit'))[:12]}` {r.get('subject')!r}"
            f" by {r.get('signer') or '?'} ({r.get('signature')} {r.get('format') or ''}"
            f" signature); touches {', '.join(r.get('touches') or []) or 'nothing'}; {fate}"
        )
    return out


def render_markdown(report: Report) -> str:
    verdict = "NOTHING FOUND" if report.findings == 0 else f"{report.findings} FINDINGS: see below"
    lines = [
        f"# Incident search: site {report.site}",
        "",
        f"Window: {report.since} .. {report.until} (UTC, end exclusive)",
        f"Result: {verdict}",
        "",
    ]
    for name, step in report.steps.items():
        mark = "✓" if not step.findings else "✗"
        lines += [f"## {mark} {TITLES[name]}", "", _facts(step), ""]
        if name == "gitops":
            lines += [*_gitops_lines(step), ""] if _gitops_lines(step) else []
        lines += [f"- FINDING: {f}" for f in step.findings]
        lines += [f"- note: {n}" for n in step.notes]
        if step.findings or step.notes:
            lines.append("")
    if report.ledger_head:
        h = report.ledger_head
        lines += [f"Ledger head: seq {h.get('seq')} hash {h.get('hash')}", ""]
    if report.evidence_key:
        lines += [f"Signed by: {report.evidence_key}", ""]
    return "\n".join(lines)

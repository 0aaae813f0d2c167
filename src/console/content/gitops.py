"""GITOPS: who changed what, when, with the SHA and the signature's status: applies, refusals,
rollbacks, confirms and drift, from the audit ledger (newest first)."""

from __future__ import annotations

import json
from typing import Any

from console.view import MARKS, Row, Tone, View, head, stamp

BAD = ("refusal", "failure", "drift", "drift-transaction", "ledger-repair")
GOOD = ("apply", "rollback", "reconcile", "confirm", "drift-resolved", "enroll", "ledger-ack")


def _signature(e: dict[str, Any]) -> tuple[str, str]:
    sig = e.get("signature") or {}
    who = str(sig.get("signer") or sig.get("key") or "")
    status = str(sig.get("status") or "")
    return who, status


def _summary(e: dict[str, Any]) -> str:
    kind = str(e.get("kind", "?"))
    commit = str(e.get("commit") or "")[:12]
    who, status = _signature(e)
    if kind in ("apply", "rollback", "reconcile", "refusal"):
        sig = f"{who or 'unsigned'} ({status or '?'})" if (who or status) else ""
        what = e.get("subject") or ""
        if kind == "refusal":
            what = f"{what} REFUSED: {e.get('reason') or e.get('message', '')}".strip()
        elif e.get("changed") is not None:
            rules = e.get("rules") or {}
            what = (
                f"{what} · changed {', '.join(e['changed']) or 'nothing'}"
                f" · rules +{len(rules.get('added', []))} -{len(rules.get('removed', []))}"
            )
        return f"{commit:<12}  {sig}  {what}"
    if kind.startswith("drift"):
        keys = e.get("keys") or []
        return f"{commit:<12}  {e.get('source', '')}: {len(keys)} finding(s) {', '.join(keys)[:80]}"
    if kind == "confirm":
        return f"{commit:<12}  confirmed (deadline was {e.get('deadline', '?')})"
    if kind == "failure":
        return f"{commit:<12}  {e.get('step', '')} failed: {e.get('message', '')}"
    rest = {k: v for k, v in e.items() if k not in ("seq", "time", "kind", "prev")}
    return f"{commit:<12}  " + ", ".join(f"{k}={v}" for k, v in sorted(rest.items()))[:120]


def evidence(e: dict[str, Any]) -> str:
    """An entry in full: the commit and its signature, what changed (the rule diff), findings."""
    who, status = _signature(e)
    sig = e.get("signature") or {}
    lines = [
        f"ledger entry {e.get('seq')} ({e.get('kind')}) at {e.get('time')}",
        f"commit     {e.get('commit') or '-'}",
        f"subject    {e.get('subject') or '-'}",
        f"signature  {status or '-'} {sig.get('format') or ''} by {who or '-'}",
        f"key        {sig.get('key') or '-'}",
        f"prev hash  {e.get('prev', '-')}",
    ]
    if e.get("message"):
        lines.append(f"message    {e['message']}")
    if e.get("changed") is not None:
        lines.append(f"changed    {', '.join(e['changed']) or 'nothing'}")
    rules = e.get("rules") or {}
    if rules.get("added") or rules.get("removed"):
        lines += ["", "rules (nft):"]
        lines += [f"  - {r}" for r in rules.get("removed", [])]
        lines += [f"  + {r}" for r in rules.get("added", [])]
    for f in e.get("findings") or []:
        if isinstance(f, dict):
            by = f.get("by")
            who_by = f" [by {by.get('name')}, pid {by.get('pid')}]" if isinstance(by, dict) else ""
            lines += ["", f"finding {f.get('kind', '')}: {f.get('what', '')}{who_by}"]
            lines += [f"    {ln}" for ln in str(f.get("diff") or "").splitlines()]
        else:
            lines.append(f"finding: {f}")
    lines += [
        "",
        "the entry as recorded:",
        json.dumps(e, indent=2, sort_keys=True, ensure_ascii=False),
    ]
    return "\n".join(lines)


def rows(view: View) -> list[Row]:
    rec = view.records
    if rec is None:
        return [Row("reading the ledger…", "dim")]
    out = [head("audit ledger, newest first (enter: the entry in full; `cell log` prints it all)")]
    if not rec.ledger:
        out.append(Row("  the ledger is empty: nothing enrolled or applied yet", "dim"))
    for e in rec.ledger:
        kind = str(e.get("kind", "?"))
        _, status = _signature(e)
        tone: Tone = "bad" if kind in BAD or (status and status != "good") else "plain"
        if kind in ("apply", "rollback", "reconcile") and status == "good":
            tone = "ok"
        mark = MARKS["bad"] if tone == "bad" else MARKS["ok"] if tone == "ok" else "·"
        out.append(
            Row(
                f"  {mark} {stamp(str(e.get('time', '')))}  {kind:<15} {_summary(e)}".rstrip(),
                tone,
                evidence(e),
                f"ledger {e.get('seq')} {kind}",
            )
        )
    return out

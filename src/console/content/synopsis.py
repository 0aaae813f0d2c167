"""SYNOPSIS: the site, the applied commit and its signer, every check at a glance."""

from __future__ import annotations

from cell.status.checks import CHECK_MEANS, CHECK_NAMES, Check
from console.view import MARKS, Row, Tone, View, ago, aligned, clock, head, stamp

EVENTS_SHOWN = 8


def check_state(check: Check | None, now: float) -> tuple[Tone, str]:
    """(tone, word) of a check as the daemon published it; stale is read off its deadline."""
    if check is None:
        return "stale", "MISSING"
    if not check.ok:
        return "bad", "FAILED"
    if not check.is_fresh(now):
        return "stale", "STALE"
    return "ok", "ok"


def check_evidence(name: str, check: Check | None, now: float) -> str:
    """What backs a check: its detail, its times, and the evidence `cell/check/<name>` carries."""
    lines = [f"check {name}: {CHECK_MEANS.get(name, '')}", ""]
    if check is None:
        return "\n".join([*lines, "no result from the daemon yet"])
    _, word = check_state(check, now)
    lines += [
        f"state:       {word}",
        f"detail:      {check.detail}",
        f"established: {check.ts} ({ago(now - check.established)})",
        f"fresh until: {stamp(check.deadline)} ({check.fresh_for:.0f}s after)",
        f"since:       {check.since or 'unknown'}",
        "",
        "evidence:" if check.evidence else "evidence: none published (see cell/check/" + name + ")",
    ]
    lines += [f"  {e}" for e in check.evidence]
    return "\n".join(lines)


def rows(view: View) -> list[Row]:
    bus, rec, now = view.bus, view.records, view.now
    st = bus.status
    out: list[Row] = []
    site = st.site if st else "?"
    where = f"bus {bus.where}" if bus.where else "no bus"
    if st is None:
        out.append(Row(f"site {site} · no status yet · {where}", "stale"))
    else:
        made = st.ts
        out.append(Row(f"site {site} · status {clock(made)} · mode {st.mode} · {where}"))
    if bus.availability is not None:
        a = bus.availability
        at: Tone = "ok" if a.state == "online" else "bad"
        out.append(Row(f"daemon {a.state} (run {a.session}, {stamp(a.ts)})", at))
    else:
        out.append(Row("daemon: no availability published", "stale"))

    out.append(head("applied"))
    applied = rec.applied if rec else None
    if applied is not None:
        sig = applied.signature
        status = str(sig.get("status", "?"))
        tone: Tone = "ok" if status == "good" else "bad"
        evidence = "\n".join(
            [
                f"commit   {applied.commit}",
                f"subject  {applied.subject}",
                f"signer   {applied.signer}",
                f"status   {status} {sig.get('format') or ''} signature",
                f"key      {sig.get('key') or '-'}",
                f"detail   {sig.get('detail') or '-'}",
                f"applied  {applied.time} via {applied.via} (id {applied.id})",
                f"repo     {applied.repo}",
                "",
                "artifacts (sha256):",
                *(f"  {d[:16]}  {n}" for n, d in sorted(applied.digests.items())),
            ]
        )
        out.append(
            Row(
                f"  {applied.commit[:12]}  {applied.subject}  signed by {applied.signer} "
                f"({MARKS[tone]} {status})  {stamp(applied.time)}",
                tone,
                evidence,
                f"applied commit {applied.commit[:12]}",
            )
        )
    elif st is not None and st.commit:
        out.append(Row(f"  {st.commit[:12]} (from the status; no journal here)"))
    else:
        out.append(Row("  nothing applied", "stale"))
    if rec is not None and rec.pending is not None:
        out.append(Row(f"  pending: {rec.pending.commit[:12]} {rec.pending.subject}", "stale"))

    out.append(head("checks"))
    names = list(CHECK_NAMES) + sorted(set(st.checks if st else ()) - set(CHECK_NAMES))
    cells: list[list[str]] = []
    tones: list[Tone] = []
    evidences: list[str] = []
    for name in names:
        check = bus.check(name)
        tone, word = check_state(check, now)
        mark = MARKS["missing"] if check is None else MARKS[tone]
        since = f"since {clock(check.since)}" if check and check.since else ""
        when = f"at {clock(check.ts)}" if check else ""
        cells.append([mark, name, word, when, since, check.detail if check else "no result yet"])
        tones.append(tone)
        evidences.append(check_evidence(name, check, now))
    for line, tone, evidence, name in zip(aligned(cells), tones, evidences, names, strict=True):
        out.append(Row(line, tone, evidence, f"check {name}"))

    if st is not None:
        out.append(head("verdict (the daemon's)"))
        vt: Tone = (
            "ok" if st.verdict == "sovereign" else "bad" if st.verdict == "at_risk" else "stale"
        )
        out.append(Row(f"  {st.verdict}", vt))
        out += [Row(f"  {r}", vt) for r in st.reasons]
        out.append(
            Row(
                f"  DNS BLK {st.dns_blocked_today} calls today"
                + (f" · ledger head {st.ledger.seq}" if st.ledger else "")
            )
        )
        if st.services:
            svc = "  ".join(
                f"{MARKS['ok'] if s == 'running' else MARKS['bad']} {n} {s}"
                for n, s in sorted(st.services.items())
            )
            out.append(Row(f"  services: {svc}"))

    out.append(head("recent events"))
    if not bus.events:
        out.append(Row("  none since the console started", "dim"))
    for e in list(bus.events)[:EVENTS_SHOWN]:
        bad = e.kind in ("drift", "probe_failed", "unexpected_publish", "never_seen", "refusal")
        evidence = "\n".join(
            [f"{e.ts}  {e.kind}", e.text, ""] + [f"{k}: {v}" for k, v in sorted(e.data.items())]
        )
        out.append(
            Row(
                f"  {clock(e.ts)}  {e.kind:<18} {e.text}",
                "bad" if bad else "plain",
                evidence,
                f"event {e.kind}",
            )
        )
    for p in (rec.problems if rec else [])[:3]:
        out.append(Row(f"  note: {p}", "dim"))
    return out

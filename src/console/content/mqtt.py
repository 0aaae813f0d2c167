"""MQTT: the bridge policy with a tag on every rule (what `cell bridge policy` prints), the
link, and what crossed against the policy, each with its log evidence."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from bridge.classify import TAGS
from bridge.status import CLASSES, BridgeStatus
from bridge.table import policy_table
from console.content.synopsis import check_evidence, check_state
from console.view import MARKS, Row, Tone, View, ago, aligned, clock, head, stamp


def _name(file: str) -> str:
    """The file as the operator names it in the repo (the full path is in the evidence)."""
    return PurePath(file).name


def _rules(doc: dict[str, Any], counts: BridgeStatus | None) -> list[Row]:
    by_index = {r.index: r for r in counts.rules} if counts else {}
    cells, evidence = [], []
    for r in doc["rules"]:
        note = ", ".join(str(x) for x in (r["tier"] and f"tier {r['tier']}", r["reason"]) if x)
        qos = "" if r["qos"] is None else f"qos {r['qos']}"
        cells.append([r["tag"], r["pattern"], qos, f"{_name(r['file'])}:{r['line']}", note])
        c = by_index.get(r["index"])
        seen = (
            f"seen {c.seen}, crossed {c.crossed} since {stamp(counts.seen_since)}"
            if c and counts
            else "no counts (no monitor snapshot)"
        )
        evidence.append(
            f"rule {r['index']} of {r['file']}:{r['line']}\n\n"
            f"pattern    {r['pattern']}\ndirection  {r['direction']} ({r['tag']})\n"
            f"qos        {r['qos'] if r['qos'] is not None else '-'}\n"
            f"tier       {r['tier'] or '-'}\nreason     {r['reason'] or '-'}\n\n{seen}"
        )
    d = doc["default"]
    cells.append(
        [d["tag"], "(any other topic)", "", f"{_name(d['file'])}:{d['line']}", "the default"]
    )
    evidence.append(f"the default of {d['file']}:{d['line']}: {d['direction']} ({d['tag']})")
    return [
        Row(line, "plain", ev, "bridge rule")
        for line, ev in zip(aligned(cells), evidence, strict=True)
    ]


def rows(view: View) -> list[Row]:
    rec, bus, now = view.records, view.bus, view.now
    out: list[Row] = []
    policy = rec.policy if rec else None
    st = rec.bridge if rec else None
    if policy is not None:
        doc = policy_table(policy)
        out.append(
            Row(
                f"bridge '{doc['connection']}' of site {doc['site']} to {doc['remote']} "
                f"(as {doc['client_id']}; at the hub under {doc['prefix']})"
            )
        )
    check = bus.check("bridge")
    tone, word = check_state(check, now)
    out.append(
        Row(
            f"{MARKS.get(tone, '?')} bridge check {word}: {check.detail if check else 'no result yet'}",
            tone,
            check_evidence("bridge", check, now),
            "check bridge",
        )
    )
    out.append(head("link"))
    if st is not None:
        link = st.link
        lt: Tone = "ok" if link.state == "up" else "bad"
        out.append(
            Row(
                f"  {link.state.upper()} since {stamp(link.since)} · {link.connects} connects, "
                f"{link.disconnects} drops · snapshot {ago(now - st.updated)} ({st.source})",
                lt,
            )
        )
        seen = "   ".join(f"{TAGS[c]} {st.seen.get(c, 0)}" for c in CLASSES)
        out.append(Row(f"  seen on the local bus since {stamp(st.seen_since)}: {seen}"))
        out.append(
            Row(
                f"  crossed: up {st.crossed.get('up', 0)}, down {st.crossed.get('down', 0)}; refused by the ACL: {st.denied}"
            )
        )
    else:
        out.append(Row("  no bridge monitor snapshot in the state directory", "stale"))

    out.append(head("policy (mqtt.yaml)"))
    if policy is not None:
        out += _rules(policy_table(policy), st)
    else:
        out.append(Row("  no policy to show (nothing applied, no --repo)", "stale"))

    out.append(head("unexpected publishes and never topics seen"))
    found = False
    if st is not None:
        for u in st.unexpected:
            found = True
            way = "went UP to the hub" if u.way == "up" else "came DOWN from the hub"
            out.append(
                Row(
                    f"  {MARKS['bad']} {stamp(float(u.time))}  '{u.topic}' {way}: policy says "
                    f"{TAGS.get(u.direction, u.direction)} ({u.rule.where()})",
                    "bad",
                    f"{u.topic} -> {u.remote_topic} ({u.way})\npolicy: {u.direction} by "
                    f"{u.rule.where()}\n\nevidence: {u.evidence.log}:{u.evidence.line}:\n"
                    f"  {u.evidence.text}",
                    "unexpected publish",
                )
            )
    for e in bus.events:
        if e.kind in ("unexpected_publish", "never_seen"):
            found = True
            out.append(
                Row(
                    f"  {MARKS['bad']} {clock(e.ts)}  {e.kind}: {e.text}",
                    "bad",
                    "\n".join([e.text, ""] + [f"{k}: {v}" for k, v in sorted(e.data.items())]),
                    e.kind,
                )
            )
    if not found:
        out.append(Row(f"  {MARKS['ok']} none", "ok"))
    return out

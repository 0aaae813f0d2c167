"""Step 2: what the GitOps trail says about the window, from the audit ledger.

Every commit made live in the window (apply, rollback, reconcile, a completed recovery) with its
signer, signature status, time and SHA, which rendered files it changed (so a commit is known
to touch the bridge policy or the firewall by what it did to the rendered files, not by the
names of the files it edited), and when it was confirmed or rolled back. Refusals and failed
applies are findings; so is a commit made live without a good signature, and any problem
`cell audit verify` finds in the ledger.

`ledger_part` copies the window's ledger lines, byte for byte, together with every line after
them up to the head: each line's `prev` is the sha256 of the line before it, so a reader can
recompute the chain to the signed head without the Cell.
"""

from __future__ import annotations

import json
from typing import Any

from cell.incident.model import Step
from cell.incident.sources import Sources
from cell.store import ledger
from cell.store.audit import verify as audit_verify
from policies.clock import parse_iso
from policies.layout import ACL, BRIDGE_CONF, MOSQUITTO_CONF

LIVE = ("apply", "rollback", "reconcile")
BRIDGE_FILES = (BRIDGE_CONF, ACL, MOSQUITTO_CONF)


def entry_time(entry: dict[str, Any]) -> float | None:
    """When a ledger entry was written (epoch seconds); None when it has no readable time."""
    try:
        return parse_iso(str(entry["time"])).timestamp()
    except (KeyError, ValueError):
        return None


def is_live(e: dict[str, Any]) -> bool:
    kind = e.get("kind")
    done = kind == "recovery" and e.get("outcome") == "completed" and e.get("digests")
    return bool((kind in LIVE or done) and e.get("commit"))


def touches(changed: list[str] | None) -> list[str]:
    """What a change of these rendered files touches: "bridge", "firewall", "dns"."""
    if changed is None:
        return ["unknown"]
    out = []
    if any(n in BRIDGE_FILES or n.startswith("mosquitto/") for n in changed):
        out.append("bridge")
    if any(n.startswith("nftables/") for n in changed):
        out.append("firewall")
    if any(n.startswith("dnsmasq/") for n in changed):
        out.append("dns")
    return out


def _fate(entries: list[dict[str, Any]], i: int) -> dict[str, Any]:
    """When the live entry at `i` was confirmed, and what replaced it (a rollback or not)."""
    e = entries[i]
    out: dict[str, Any] = {"confirmed": None, "replaced": None, "rolled_back": None}
    for later in entries[i + 1 :]:
        if later.get("kind") == "confirm" and later.get("commit") == e["commit"]:
            out["confirmed"] = out["confirmed"] or later.get("time")
        if is_live(later):
            out["replaced"] = later.get("time")
            if later.get("kind") == "rollback":
                out["rolled_back"] = later.get("time")
            break
    return out


def _row(e: dict[str, Any], fate: dict[str, Any]) -> dict[str, Any]:
    sig = e.get("signature") or {}
    rules = e.get("rules") or {}
    return {
        "kind": e.get("kind"),
        "seq": e.get("seq"),
        "time": e.get("time"),
        "commit": e.get("commit"),
        "id": e.get("id"),
        "subject": e.get("subject"),
        "signer": sig.get("signer") or sig.get("key"),
        "signature": sig.get("status"),
        "format": sig.get("format"),
        "changed": e.get("changed"),
        "touches": touches(e.get("changed")),
        "rules_added": len(rules.get("added", [])),
        "rules_removed": len(rules.get("removed", [])),
        **fate,
    }


def gitops_step(src: Sources) -> Step:
    entries = ledger.read(src.state)
    rows: list[dict[str, Any]] = []
    findings: list[str] = []
    applied = 0
    for i, e in enumerate(entries):
        ts = entry_time(e)
        if ts is None or not src.holds(ts):
            continue
        kind = e.get("kind")
        if is_live(e):
            applied += 1
            row = _row(e, _fate(entries, i))
            rows.append(row)
            if row["signature"] != "good":
                findings.append(
                    f"{e['time']} {kind} of {e['commit'][:12]} without a good signature "
                    f"({row['signature']})"
                )
        elif kind in ("confirm", "confirm-pending"):
            rows.append({k: e.get(k) for k in ("kind", "seq", "time", "commit", "deadline")})
        elif kind == "refusal":
            rows.append({"kind": kind, "seq": e.get("seq"), "time": e.get("time"), **_why(e)})
            findings.append(f"{e.get('time')} refused: {_why(e)['text']}")
        elif kind == "failure":
            rows.append({k: e.get(k) for k in ("kind", "seq", "time", "commit", "step", "message")})
            findings.append(f"{e.get('time')} failed {e.get('step')}: {e.get('message')}")
    _, problems = audit_verify(src.state)
    findings += [f"ledger: {p}" for p in problems]
    changed = [r for r in rows if {"bridge", "firewall"} & set(r.get("touches") or [])]
    return Step(
        name="gitops",
        findings=findings,
        summary={
            "applied": applied,
            "bridge_or_firewall": len(changed),
            "refused": sum(1 for r in rows if r["kind"] == "refusal"),
            "ledger_problems": len(problems),
        },
        rows=rows,
    )


def _why(e: dict[str, Any]) -> dict[str, Any]:
    commit = str(e.get("commit") or "")
    sig = e.get("signature") or {}
    reason = str(e.get("reason") or "refused")
    message = str(e.get("message") or "").strip().splitlines()
    text = f"{commit[:12] or 'a commit'} ({reason})" + (f": {message[0]}" if message else "")
    return {
        "commit": commit or None,
        "subject": e.get("subject"),
        "reason": reason,
        "signer": sig.get("signer") or sig.get("key"),
        "signature": sig.get("status"),
        "message": e.get("message"),
        "text": text,
    }


def ledger_part(src: Sources) -> tuple[bytes, list[int]]:
    """The ledger's lines from the window's first entry to the head (the last line alone when
    the window has none), and the seqs inside the window."""
    try:
        lines = src.state.ledger.read_bytes().splitlines()
    except FileNotFoundError:
        return b"", []
    first, inside = None, []
    for i, line in enumerate(lines):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        ts = entry_time(doc) if isinstance(doc, dict) else None
        if ts is not None and src.holds(ts):
            first = i if first is None else first
            inside.append(int(doc.get("seq", i)))
    chosen = lines[first:] if first is not None else lines[-1:]
    return b"".join(line + b"\n" for line in chosen), inside

"""The search: every step over one window, and the files of the pack that hold its evidence.

The pcap window is cut straight into the pack's scratch folder (it can be large); everything
else is returned as bytes, to be written by `cell.incident.pack`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cell.incident.bridge import bridge_step
from cell.incident.commits import rerender
from cell.incident.context import dns_step, drift_step
from cell.incident.egress import egress_step
from cell.incident.gitops import entry_time, gitops_step, is_live, ledger_part
from cell.incident.health import health_step
from cell.incident.model import Report, Step
from cell.incident.pack import Written, tar_pack, write_pack
from cell.incident.report import make_report, render_json, render_jsonl, render_markdown
from cell.incident.sources import Sources
from cell.store import evidencekey, ledger
from cell.store.ledger import head_text, line_hash
from cell.timeparse import iso_z

CHAIN = "ledger/chain.jsonl"
HEAD = "ledger/head.txt"
HEAD_SIG = "ledger/head.txt.sig"
WINDOW = "ledger/window.json"


def _ledger_files(src: Sources) -> tuple[dict[str, bytes], dict[str, Any] | None, bool]:
    """The window's ledger lines up to the head and the signed head, read under the ledger
    lock so that no entry is appended between the two."""
    with src.state.lock("ledger", timeout=30):
        chain, inside = ledger_part(src)
        head = ledger.read_head(src.state)
    files = {CHAIN: chain}
    lines = chain.splitlines()
    window: dict[str, object] = {
        "in_window": inside,
        "first_seq": json.loads(lines[0]).get("seq") if lines else None,
        "head": None,
    }
    if head is not None:
        window["head"] = {"seq": head["seq"], "hash": head["hash"]}
        files[HEAD] = head_text(int(head["seq"]), str(head["hash"]))
        if head.get("sig"):
            files[HEAD_SIG] = str(head["sig"]).encode()
    matches = head is None or (bool(lines) and line_hash(lines[-1]) == head["hash"])
    window["head_names_last_line"] = matches
    files[WINDOW] = (json.dumps(window, indent=2, sort_keys=True) + "\n").encode()
    return files, head, matches


def search(src: Sources, scratch: Path) -> tuple[Report, dict[str, bytes]]:
    """Run every step; the pcap goes into `scratch`, the other files are returned."""
    steps: dict[str, Step] = {"bridge": bridge_step(src), "gitops": gitops_step(src)}
    live = [
        e
        for e in ledger.read(src.state)
        if is_live(e) and (ts := entry_time(e)) is not None and src.holds(ts)
    ]
    files, commit_rows, findings = rerender(src, live)
    steps["gitops"].findings.extend(findings)
    steps["health"] = health_step(src)
    steps["egress"] = egress_step(src, scratch)
    steps["dns"] = dns_step(src)
    steps["drift"] = drift_step(src)
    ledger_files, head, matches = _ledger_files(src)
    files.update(ledger_files)
    if not matches:
        steps["gitops"].findings.append(
            "ledger: the head does not name the ledger's last line (see `cell audit verify`)"
        )
    key = evidencekey.public_line(src.state) if evidencekey.has_key(src.state) else None
    report = make_report(
        src.site,
        iso_z(src.since),
        iso_z(src.until),
        steps,
        {"seq": head["seq"], "hash": head["hash"]} if head else None,
        key,
    )
    files["report.json"] = render_json(report)
    files["report.md"] = render_markdown(report).encode()
    for name, step in steps.items():
        files[f"steps/{name}.jsonl"] = render_jsonl(step.rows)
    files["steps/commits.jsonl"] = render_jsonl(commit_rows)
    return report, files


def write_incident(src: Sources, out: Path, tar: Path | None = None) -> Written:
    """Search the window, write the pack to `out` (encrypted to the policy's
    `evidence.recipients`, if any), record it in the ledger, and write its tar to `tar`."""
    done = write_pack(
        out,
        src.state,
        lambda folder: search(src, folder),
        list(src.policy.site.evidence.recipients),
    )
    ledger.append(
        src.state,
        "evidence-pack",
        pack=done.id,
        digest=done.digest,
        since=iso_z(src.since),
        until=iso_z(src.until),
        findings=done.findings,
        encrypted=done.encrypted,
    )
    if tar is not None:
        tar_pack(out, tar)
    return done

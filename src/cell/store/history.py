""" "Show me what was running on date X": the applied commit at an instant, and the apply log.

The ledger orders everything in time; each apply, rollback and reconcile entry carries the
commit, its signature and the digest of every artifact. `render_at` re-renders that commit from
the repo (falling back to the Cell's stored copy of it) with the layout it was applied with, so
its digests can be compared with the recorded ones: the same input gives the same bytes.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cell.artifacts import render_all, write_tree
from cell.store import ledger
from cell.store.journal import read_journal
from cell.store.statedir import State
from policies import gitrepo, load_policy
from policies.clock import parse_iso
from policies.errors import CellError
from policies.layout import MANIFEST, Layout

SETS_APPLIED = ("apply", "rollback", "reconcile")


class HistoryError(CellError):
    exit_code = 2


class NotFound(CellError):
    """No apply at or before that instant: a question with no answer, not bad input."""

    exit_code = 3


def parse_at(text: str) -> datetime:
    """ISO 8601; without an offset the time is UTC (a Cell's clock and its ledger are UTC)."""
    try:
        when = parse_iso(text)
    except ValueError:
        raise HistoryError(
            f"--at {text!r}: expected an ISO 8601 time like 2026-05-01T12:00 (UTC) or "
            "2026-05-01T14:00+02:00"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def applies(state: State) -> list[dict[str, Any]]:
    """Ledger entries that set what is applied, oldest first (a completed recovery counts)."""
    return [
        e
        for e in ledger.read(state)
        if e.get("kind") in SETS_APPLIED
        or (e.get("kind") == "recovery" and e.get("outcome") == "completed" and e.get("digests"))
    ]


def applied_at(state: State, when: datetime) -> dict[str, Any]:
    """The entry in force at `when`, cross-checked with the journal when it is the current one."""
    found = None
    for e in applies(state):
        if parse_iso(e["time"]) <= when:
            found = e
    if found is None:
        raise NotFound(f"nothing was applied with `cell apply` at or before {when.isoformat()}")
    journal = read_journal(state)
    ids = {e.id: e for e in journal.entries()}
    doc = dict(found)
    doc["journal"] = "agrees" if found.get("id") in ids else "no longer holds this entry"
    return doc


def render_at(entry: dict[str, Any], out: Path, repo: str | None, state: State) -> dict[str, Any]:
    """Re-render the entry's commit into `out`; which digests match the recorded ones."""
    commit = entry["commit"]
    source = repo or entry.get("repo")
    with tempfile.TemporaryDirectory(prefix="cell-history-") as tmp:
        tree, origin = Path(tmp) / "tree", f"{source}@{commit[:12]}"
        # The Cell's own mirror first (what was judged), then the clone given.
        if gitrepo.exists(state.mirror, commit):
            source = str(state.mirror)
            origin = f"the Cell's mirror of {commit[:12]}"
        try:
            gitrepo.export(source or "", commit, tree)
        except gitrepo.GitError:
            tree, origin = state.trees / commit, f"the Cell's stored copy of {commit[:12]}"
            if not tree.is_dir():
                raise HistoryError(
                    f"commit {commit[:12]} is neither in {source} nor in the Cell's store: "
                    "pass --repo with a clone that has it"
                ) from None
        files = render_all(load_policy(tree), Layout(**entry["layout"]))
    write_tree(out, files)
    digests = json.loads(files[MANIFEST])["files"]
    recorded = entry.get("digests", {})
    differ = sorted(n for n in set(digests) | set(recorded) if digests.get(n) != recorded.get(n))
    return {"source": origin, "out": str(out), "digests": digests, "differ": differ}


def format_entry(e: dict[str, Any]) -> str:
    sig = e.get("signature") or {}
    status = {
        "good": f"good {sig.get('format')} signature",
        "unsigned": "unsigned",
    }.get(str(sig.get("status")), str(sig.get("status")))
    who = sig.get("signer") or sig.get("key") or "?"
    rules = e.get("rules") or {}
    plus, minus = len(rules.get("added", [])), len(rules.get("removed", []))
    changed = e.get("changed")
    lines = [
        f"{e['time']}  {e['commit'][:12]}  {e.get('kind', '?'):<9} {e.get('subject', '')}",
        f"    signed by {who}: {status}" + (f" ({sig['key']})" if sig.get("key") else ""),
    ]
    if changed is not None:
        lines.append(
            f"    changed: {', '.join(changed) or 'nothing'}; rules +{plus} -{minus}"
            + (f"; reason: {e['reason']}" if e.get("reason") else "")
        )
    return "\n".join(lines)

"""The configuration of every commit made live in the window, re-rendered from the Cell's stored
copy of its tree (or the repo, when the store no longer has it) with the layout it was applied
with. Its digests are compared with what the ledger recorded and, while the journal still holds
the application, with the journal's: the same input gives the same bytes, so any difference is
a finding."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from cell.artifacts import render_all
from cell.incident.sources import Sources
from cell.store.journal import read_journal
from policies import gitrepo, load_policy
from policies.errors import CellError
from policies.layout import MANIFEST, Layout


def _render(src: Sources, entry: dict[str, Any]) -> tuple[dict[str, bytes], str]:
    commit = str(entry["commit"])
    layout = Layout(**entry["layout"]) if entry.get("layout") else Layout()
    stored = src.state.trees / commit
    if stored.is_dir():
        return render_all(load_policy(stored), layout), f"the Cell's stored tree of {commit}"
    repo = str(entry.get("repo") or src.repo)
    with tempfile.TemporaryDirectory(prefix="cell-incident-") as tmp:
        gitrepo.export(repo, commit, Path(tmp) / "tree")
        return render_all(load_policy(Path(tmp) / "tree"), layout), f"{repo}@{commit}"


def _differ(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))


def rerender(
    src: Sources, live: list[dict[str, Any]]
) -> tuple[dict[str, bytes], list[dict[str, Any]], list[str]]:
    """(pack files under commits/, one row per application, findings)."""
    journal = {e.id: e for e in read_journal(src.state).entries()}
    files: dict[str, bytes] = {}
    rows, findings = [], []
    for entry in live:
        commit, app = str(entry["commit"]), str(entry.get("id") or "")
        where = f"commits/{commit[:12]}-{app or entry.get('seq')}"
        row: dict[str, Any] = {"commit": commit, "id": app or None, "dir": where}
        try:
            rendered, origin = _render(src, entry)
        except (CellError, OSError, KeyError, TypeError) as e:
            row.update(source=None, error=str(e))
            findings.append(f"commit {commit[:12]} cannot be re-rendered: {e}")
            rows.append(row)
            continue
        digests = json.loads(rendered[MANIFEST])["files"]
        against_ledger = _differ(digests, entry.get("digests") or {})
        j = journal.get(app)
        against_journal = _differ(digests, j.digests) if j is not None else None
        row.update(
            source=origin,
            digests=digests,
            differ_ledger=against_ledger,
            differ_journal=against_journal,
            journal="holds it" if j is not None else "no longer holds this application",
        )
        for name, data in rendered.items():
            files[f"{where}/{name}"] = data
        if against_ledger:
            findings.append(
                f"commit {commit[:12]} re-renders differently from what the ledger recorded: "
                + ", ".join(against_ledger)
            )
        if against_journal:
            findings.append(
                f"commit {commit[:12]} re-renders differently from the journal: "
                + ", ".join(against_journal)
            )
        rows.append(row)
    return files, rows, findings

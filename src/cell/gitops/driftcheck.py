"""One drift check, as `cell drift` and the daemon run it: settle an overdue confirm deadline,
compare everything with what is applied, record the findings in the ledger, and reconcile when
the policy (or the operator) asks for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cell.deploy.place import target_of
from cell.drift.compare import Report, compare_all
from cell.drift.finding import Finding
from cell.drift.report import record
from cell.errors import UsageError
from cell.gitops import lifecycle
from cell.store.journal import read_journal
from cell.store.statedir import State, StateError


@dataclass(frozen=True)
class DriftCheck:
    """What one check found, and what it did about it."""

    report: Report
    notes: list[str] = field(default_factory=list)
    """What settling did first (a rollback after a passed confirm deadline)."""
    reconciled: str | None = None
    """The commit re-applied because of drift, if any."""
    after: Report | None = None
    """The comparison after reconciling."""


def check_once(state: State, repo: str | Path | None, *, reconcile: bool = False) -> DriftCheck:
    """Compare live with applied once. Reconciles when `reconcile` or the commit's drift.mode
    says so, and only for live drift (a repo finding is news, not something to re-apply)."""
    notes = lifecycle.settle(state)
    journal = read_journal(state)
    if journal.applied is None:
        raise UsageError(f"{state.root}: nothing was applied with `cell apply` yet (no journal)")
    target = target_of(journal.applied)
    report = compare_all(state, journal.applied, journal.pending, target, repo)
    _record(state, report, "check", notes)
    live = [f for f in report.findings if f.kind not in ("repo", "state")]
    if not live or not (reconcile or journal.applied.drift_mode == "reconcile"):
        return DriftCheck(report, notes)
    out = lifecycle.reconcile(state)
    after = compare_all(state, out.entry, None, target, repo)
    _record(state, after, "reconcile", notes)
    return DriftCheck(report, notes, out.entry.commit, after)


def _record(state: State, report: Report, source: str, notes: list[str]) -> None:
    """Report first, record second: a state directory that cannot be written (a full disk) is
    one more finding, never a reason to hide the others."""
    try:
        record(state, report.findings, source)
    except StateError as e:
        report.findings.append(Finding("state", f"drift could not be recorded in the ledger: {e}"))
        notes.append(f"not recorded: {e}")

"""The apply lifecycle, in order: pull, trust gate, then the stages of `_run`: prepare (render,
check), journal pending, install and read back, promote (journal, ledger).

Every step before the install changes nothing live; `cell.deploy.install.install` puts the live
system back if any later step fails. The journal names the commit as `pending` before anything live is
touched and as `applied` after the read-back, so a crash at any instant leaves a journal that
names what the live system may be (see `cell.gitops.journal`). One apply at a time: every
function here that changes something holds STATE/locks/apply.

Rollback and reconcile re-install a stored commit (tree and rendered artifacts, `State`), not the
repo: they work when the repo is gone, and they put back exactly the bytes that were applied.
"""

from __future__ import annotations

import difflib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cell.artifacts import render_all
from cell.deploy.install import ApplyError, Target, install, prepare
from cell.deploy.place import layout_json, target_of
from cell.gitops import confirm as confirmation
from cell.gitops.recovery import recover, summary
from cell.status.apply import ApplyOutcome, Changes, Kind, RuleChanges, ServiceReport
from cell.store import ledger
from cell.store.journal import Entry, Journal, read_journal, write_journal
from cell.store.statedir import State, StateError
from cell.verify.drops import DropKeeper
from policies import Policy, gitmirror, gitrepo, load_policy
from policies.errors import CellError, PolicyError
from policies.layout import MANIFEST, RULESET_NFT
from policies.trust import PGP_KEYS, SSH_SIGNERS, Anchor, TrustRefused, Verdict, refuse_unsafe_tree
from policies.trust import gate as trust_gate
from policies.types import duration_seconds


class NothingToDo(CellError):
    """Rollback with nothing before, confirm with nothing pending, apply while a confirm waits."""

    exit_code = 2


@dataclass
class Outcome:
    """What an apply, rollback or reconcile did; `record()` is its typed, published form."""

    entry: Entry
    previous: Entry | None
    report: ServiceReport
    verdicts: list[Verdict] = field(default_factory=list)
    changes: Changes = field(default_factory=Changes)
    confirm: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    kind: Kind = "apply"

    def record(self) -> ApplyOutcome:
        return ApplyOutcome(
            kind=self.kind,
            commit=self.entry.commit,
            subject=self.entry.subject,
            previous=self.previous.commit if self.previous else None,
            changes=self.changes,
            services=self.report,
            confirm=self.confirm,
            notes=self.notes,
        )


def enrolled(state: State) -> Anchor | None:
    ssh, pgp = state.trust / SSH_SIGNERS, state.trust / PGP_KEYS
    if not ssh.exists() and not pgp.exists():
        return None
    return Anchor(_bytes(ssh), _bytes(pgp), f"the enrolled {SSH_SIGNERS} ({state.trust})")


def _refuse_forgotten(state: State, repo: Path) -> None:
    """No journal, yet the ledger records applies: the Cell's state was deleted. That must not
    turn the next commit into a "first apply" judged only by the enrolled file."""
    live = ledger.last_live(state)
    if live is None:
        return
    e = TrustRefused(
        "state-deleted",
        f"the audit ledger records that {str(live['commit'])[:12]} was made live "
        f"({live.get('kind')} at {live.get('time')}, seq {live.get('seq')}) but the journal "
        f"{state.journal} is gone: this is not a first apply. Restore the state directory, "
        "or reset this Cell's trust with `cell enroll --reset REASON --signers FILE` (recorded)",
    )
    ledger.append(state, "refusal", repo=str(repo), **e.to_json())
    raise e


def _bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def apply_head(
    state: State, repo: Path, target: Target, *, confirm_s: int | None = None
) -> Outcome:
    """`cell apply`: make the repo's HEAD live, if every commit since the applied one is trusted.

    Settle what is overdue or interrupted, pass the trust gate, then the stages of `_run`:
    prepare, journal pending, install and read back, promote; then arm the timed confirm.
    """
    notes = settle(state)
    with state.lock():
        journal = read_journal(state)
        force = recover(state, journal, notes)
        _refuse_while_waiting(state, journal.applied, confirm_s)
        if journal.applied is None:
            _refuse_forgotten(state, repo)
        head, verdicts = _gate(state, repo, journal.applied)
        if confirm_s is not None and journal.applied and journal.applied.commit == head:
            raise NothingToDo(
                f"HEAD {head[:12]} is already the applied commit: there is no change to confirm "
                "(apply without --confirm to re-install it)"
            )
        plan = _plan_head(state, repo, target, head, verdicts, journal.applied, force)
        out = _run(state, journal, plan)
        out.verdicts, out.notes = verdicts, notes
        if confirm_s is not None and out.previous is not None:
            out.confirm = confirmation.arm(state, plan.entry, out.previous, confirm_s)
            ledger.append(
                state,
                "confirm-pending",
                commit=head,
                deadline=out.confirm["deadline"],
                fallback=out.previous.commit,
            )
        return out


def _refuse_while_waiting(state: State, base: Entry | None, confirm_s: int | None) -> None:
    waiting = confirmation.read(state)
    if waiting is not None:
        raise NothingToDo(
            f"a confirm is pending for {waiting['commit'][:12]} until {waiting['deadline']}: "
            "`cell confirm` to keep it or `cell rollback` to undo it, then apply"
        )
    if confirm_s is not None and base is None:
        raise NothingToDo(
            "--confirm needs a previously applied commit to fall back to; this is the "
            "Cell's first apply (apply without --confirm)"
        )


def _gate(state: State, repo: Path, base: Entry | None) -> tuple[str, list[Verdict]]:
    """Fetch into the Cell's mirror, then the trust gate there; refusals go to the ledger."""
    try:
        with state.lock("mirror"):
            head = gitmirror.sync(state.mirror, repo, clean=True).head
        verdicts = trust_gate(state.mirror, base.commit if base else None, head, enrolled(state))
        refuse_unsafe_tree(state.mirror, head)
        return head, verdicts
    except TrustRefused as e:
        ledger.append(state, "refusal", repo=str(repo), **e.to_json())
        raise
    except gitrepo.GitError as e:
        ledger.append(state, "failure", step="pull", repo=str(repo), message=str(e))
        raise


def _plan_head(
    state: State,
    repo: Path,
    target: Target,
    head: str,
    verdicts: list[Verdict],
    base: Entry | None,
    force: bool,
) -> Plan:
    """HEAD's tree stored, its policy loaded and rendered, its journal entry made."""
    tree = state.store_tree(head, lambda dest: gitrepo.export(state.mirror, head, dest))
    policy = _load(tree, head, state, repo)
    files = render_all(policy, target.layout)
    signature = verdicts[-1].signature.to_doc() if verdicts else (base.signature if base else {})
    subject = verdicts[-1].subject if verdicts else gitrepo.subject(state.mirror, head)
    entry = _entry(state, policy, files, target, head, subject, signature, repo)
    pushes = base is None or base.commit != head
    return Plan("apply", entry, policy, files, target, force, pushes)


def rollback(state: State, *, reason: str = "operator") -> Outcome:
    """`cell rollback`: go back one applied commit (and drop a pending confirm with it)."""
    with state.lock():
        return _rollback_locked(state, reason)


def _rollback_locked(state: State, reason: str) -> Outcome:
    journal = read_journal(state)
    notes: list[str] = []
    force = recover(state, journal, notes)
    if not journal.previous or journal.applied is None:
        raise NothingToDo("nothing to roll back to: the journal holds no earlier applied commit")
    back, rest = journal.previous[0], journal.previous[1:]
    entry = back.again("rollback")
    policy, files = _stored(state, entry)
    extra = {"reason": reason, "from": journal.applied.commit}
    plan = Plan("rollback", entry, policy, files, target_of(entry), force, False, rest, extra)
    out = _run(state, journal, plan)
    confirmation.clear(state)
    out.notes = notes
    return out


def reconcile(state: State) -> Outcome:
    """Re-install the applied commit as it was applied: files, table, services (all restarted)."""
    with state.lock():
        journal = read_journal(state)
        notes: list[str] = []
        recover(state, journal, notes)
        if journal.applied is None:
            raise NothingToDo("nothing to reconcile: nothing was ever applied with `cell apply`")
        entry = journal.applied.again("reconcile")
        policy, files = _stored(state, entry)
        plan = Plan("reconcile", entry, policy, files, target_of(entry), force=True, pushes=False)
        out = _run(state, journal, plan)
        out.notes = notes
        return out


def confirm(state: State) -> dict[str, Any]:
    """`cell confirm`: keep the commit applied with `--confirm`, before its deadline."""
    settled = settle(state)
    with state.lock():
        doc = confirmation.read(state)
        if doc is None:
            if settled:
                raise NothingToDo(f"too late: {settled[0]}")
            raise NothingToDo("nothing to confirm: no apply with --confirm is waiting")
        confirmation.clear(state)
        ledger.append(state, "confirm", commit=doc["commit"], deadline=doc["deadline"])
        return doc


def settle(state: State) -> list[str]:
    """Act on an overdue confirm deadline (roll back), whoever notices it first."""
    doc = confirmation.read(state)
    if doc is None or not confirmation.overdue(doc):
        return []
    with state.lock():
        doc = confirmation.read(state)
        if doc is None or not confirmation.overdue(doc):
            return []
        journal = read_journal(state)
        if journal.applied is None or journal.applied.commit != doc.get("commit"):
            confirmation.clear(state)
            return []
        out = _rollback_locked(state, f"confirm deadline {doc['deadline']} passed")
        return [
            f"the confirm deadline {doc['deadline']} for {doc['commit'][:12]} passed: rolled back "
            f"to {out.entry.commit[:12]}"
        ]


@dataclass(frozen=True)
class Plan:
    """One apply, rollback or reconcile: what to install where, and how the journal takes it."""

    kind: Kind
    entry: Entry
    policy: Policy
    files: dict[str, bytes]
    target: Target
    force: bool = False
    """Restart every service (an interrupted apply, a reconcile): the journal's digests are not
    trusted as a picture of what runs."""
    pushes: bool = True
    """The applied entry moves down to `previous` (not when re-installing the same commit)."""
    stack: list[Entry] | None = None
    """The `previous` list after a rollback (None: as promote leaves it)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """More fields for the ledger entry."""


def _run(state: State, journal: Journal, plan: Plan) -> Outcome:
    """The stages, in order (Foomuuri's command_start): prepare, journal pending, install and read
    back, promote. Nothing live changes before the install; a failure there puts it back."""
    previous = journal.applied
    changes = _changes(state, previous, plan.files)  # now: promote may prune `previous`
    baseline = {} if plan.force else (previous.digests if previous else None)
    with _failure_recorded(state, journal, plan):
        prepared = prepare(plan.policy, plan.target, plan.files)  # render, check: nothing live
        _journal_pending(state, journal, plan.entry)
        keeper = DropKeeper(state.root, plan.policy)  # drop history across the new table
        report = install(prepared, baseline=baseline, keeper=keeper)  # read back; or restore
    _promote(state, journal, plan)
    ledger.append(state, plan.kind, **summary(plan.entry), **changes.model_dump(), **plan.extra)
    return Outcome(plan.entry, previous, report, changes=changes, kind=plan.kind)


def _journal_pending(state: State, journal: Journal, entry: Entry) -> None:
    """The journal names the commit as pending before anything live is touched."""
    journal.pending = entry
    write_journal(state, journal)


def _promote(state: State, journal: Journal, plan: Plan) -> None:
    """The read-back passed: the journal names the commit as applied."""
    journal.promote(plan.entry, pushes=plan.pushes)
    if plan.stack is not None:
        journal.previous = plan.stack
    write_journal(state, journal)


@contextmanager
def _failure_recorded(state: State, journal: Journal, plan: Plan) -> Iterator[None]:
    """A failed stage: no pending entry left behind, one ledger `failure`, an error that says
    nothing changed (install has put the target back)."""
    try:
        yield
    except (CellError, OSError, subprocess.SubprocessError) as e:
        if journal.pending is not None:
            journal.pending = None
            write_journal(state, journal)
        where = plan.target.netns or "this host"
        err = (
            e
            if isinstance(e, CellError)
            else ApplyError(
                f"{plan.kind} of {plan.entry.commit[:12]} failed, nothing changed on {where}: {e}"
            )
        )
        ledger.append(state, "failure", step=plan.kind, commit=plan.entry.commit, message=str(err))
        raise err from None


def _changes(state: State, previous: Entry | None, files: dict[str, bytes]) -> Changes:
    """What this apply changed against the one before: artifact names and nft rule lines."""
    try:
        old = state.load_rendered(previous.rendered) if previous else {}
    except StateError:
        old = {}  # the store lost it: everything counts as changed, which is never wrong here
    changed = sorted(n for n in files if n != MANIFEST and old.get(n) != files[n])
    before = old.get(RULESET_NFT, b"").decode().splitlines()
    after = files[RULESET_NFT].decode().splitlines()
    diff = list(difflib.ndiff(before, after))
    added = [d[2:].strip() for d in diff if d.startswith("+ ")]
    removed = [d[2:].strip() for d in diff if d.startswith("- ")]
    return Changes(changed=changed, rules=RuleChanges(added=added, removed=removed))


def _entry(
    state: State,
    policy: Policy,
    files: dict[str, bytes],
    target: Target,
    commit: str,
    subject: str,
    signature: dict[str, Any],
    repo: Path,
) -> Entry:
    import json

    return Entry(
        commit=commit,
        subject=subject,
        signature=signature,
        digests=json.loads(files[MANIFEST])["files"],
        rendered=state.store_rendered(files),
        site=policy.site.site.id,
        netns=target.netns,
        layout=layout_json(target),
        repo=str(Path(repo).resolve()),
        drift_mode=policy.site.drift.mode,
        drift_interval=duration_seconds(policy.site.drift.interval),
    )


def _load(tree: Path, commit: str, state: State, repo: Path) -> Policy:
    """The policy of a commit, with errors that name the commit rather than our copy of it."""
    try:
        return load_policy(tree)
    except PolicyError as e:
        named = [replace(d, file=f"{commit[:12]}:{Path(d.file).name}") for d in e.diagnostics]
        err = PolicyError(named)
        ledger.append(
            state,
            "refusal",
            reason="invalid-policy",
            commit=commit,
            repo=str(repo),
            message=str(err),
        )
        raise err from None


def _stored(state: State, entry: Entry) -> tuple[Policy, dict[str, bytes]]:
    """The policy and the exact artifacts of a stored, once-applied commit."""
    policy = load_policy(state.trees / entry.commit)
    return policy, state.load_rendered(entry.rendered)


__all__ = ["NothingToDo", "Outcome", "apply_head", "confirm", "reconcile", "rollback"]

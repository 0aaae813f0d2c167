"""Recovery after a kill: settle what an interrupted apply left, before anything else runs.

The journal must always name what is live. An interrupted apply whose table is in force becomes
the applied entry; one whose table never took is dropped in memory only, so that the journal on
disk changes only when the next apply writes its own pending entry. A ledger entry lost between
the journal's rename and the ledger append is written late.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cell.deploy.place import target_of
from cell.deploy.target import Target
from cell.store import ledger
from cell.store.journal import Entry, Journal, write_journal
from cell.store.statedir import State
from firewall.document import canonical
from policies.clock import now_iso


def recover(
    state: State,
    journal: Journal,
    notes: list[str],
    target_for: Callable[[Entry], Target] = target_of,
) -> bool:
    """Settle what a killed apply left (`pending`); True when services must all be restarted.

    If the pending commit's table is in force (wholly: one transaction), the journal names it as
    applied (completed; if a file or service is behind, the caller re-installs everything).
    Otherwise its table never took, and the pending entry is dropped. `target_for`: the gateway
    an entry was applied to (unit tests give one with a fake nftables backend).
    """
    _ledger_catch_up(state, journal, notes)
    pending = journal.pending
    if pending is None:
        return False
    from cell.drift.compare import compare_entry
    from cell.drift.expected import Expected

    target = target_for(pending)
    live = compare_entry(state, pending, target)
    table_in_force = canonical(target.nft.list_table()) == Expected(state, pending).canonical
    if not live or table_in_force:
        # Its table is in force (wholly: one transaction), so the journal must name it, even if
        # a file or a service is behind; the caller then re-installs everything on top.
        journal.promote(
            pending.model_copy(update={"via": "recovered"}), pushes=journal.applied is not None
        )
        outcome = "completed" if not live else "completed (table in force; services redone)"
        write_journal(state, journal)
    else:
        # Its table never took: dropped in memory only. The caller's own apply writes the journal
        # (with its pending entry) before it touches anything; writing it here would let a kill in
        # between leave a journal that names neither what is live nor what was being installed.
        journal.pending = None
        outcome = "abandoned"
    done = summary(pending) if outcome != "abandoned" else {"commit": pending.commit}
    ledger.append(state, "recovery", outcome=outcome, findings=[f.what for f in live], **done)
    notes.append(f"an interrupted apply of {pending.commit[:12]} was {outcome}")
    return outcome != "completed"


_KIND_OF = {"apply": "apply", "rollback": "rollback", "reconcile": "reconcile"}


def _ledger_catch_up(state: State, journal: Journal, notes: list[str]) -> None:
    """Write the ledger entry of the applied commit if a kill came between the journal's rename
    and the ledger append (the journal is the truth; the ledger must say so too)."""
    applied = journal.applied
    if applied is None or ledger.has_id(state, applied.id):
        return
    ledger.append(
        state,
        _KIND_OF.get(applied.via, "recovery"),
        **summary(applied),
        **({"outcome": "completed"} if applied.via not in _KIND_OF else {}),
        time=applied.time,
        recorded=now_iso(),
        note="recorded late: the process was killed between the journal and the ledger",
    )
    notes.append(f"the ledger entry for {applied.commit[:12]} ({applied.via}) was written late")


def summary(entry: Entry) -> dict[str, Any]:
    """What the ledger records of an applied entry."""
    return {
        "id": entry.id,
        "commit": entry.commit,
        "subject": entry.subject,
        "signature": entry.signature,
        "digests": entry.digests,
        "netns": entry.netns,
        "repo": entry.repo,
        "layout": entry.layout,
        "site": entry.site,
        "via": entry.via,
    }

"""The journal: what is applied, written atomically (temp file, fsync, rename) after every change.

    {"version": 1,
     "applied":  ENTRY | null,   the commit in force, as last read back from the live system
     "pending":  ENTRY | null,   an apply in progress: written *before* anything live is touched
     "previous": [ENTRY, ...]}   what was applied before, newest first: `cell rollback` pops it

An apply writes `pending` first, changes the live system, reads it back, then moves `pending` to
`applied` in one rename. Killed at any instant, the journal names the old commit as applied and,
while the kill happened mid-apply, the new one as pending: the live nftables table (one kernel
transaction) is wholly one of the two, and `cell drift` says which.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cell.store.statedir import State, StateError, dump
from policies.clock import now_iso
from policies.fsutil import atomic_write

VERSION = 1
KEEP = 32
"""How many earlier applies the journal keeps for `cell rollback`."""


@dataclass(frozen=True)
class Entry:
    """One applied commit: enough to compare with, re-install, and explain it."""

    commit: str
    subject: str
    signature: dict[str, Any]
    """`policies.trust.Signature` as JSON: status, format, signer, key, detail."""
    digests: dict[str, str]
    """Artifact -> sha256, from the rendered manifest."""
    rendered: str
    """Key of the stored artifacts (sha256 of manifest.json): `State.load_rendered`."""
    site: str
    netns: str | None
    layout: dict[str, str]
    """`policies.layout.Layout` fields: the rendered paths depend on it."""
    repo: str
    drift_mode: str = "alert"
    drift_interval: int = 60
    via: str = "apply"
    """apply, rollback (by an operator or a passed confirm deadline), reconcile, recovered."""
    time: str = field(default_factory=now_iso)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    def again(self, via: str) -> Entry:
        """This commit applied once more (rollback, reconcile): a new id and time."""
        return replace(self, via=via, time=now_iso(), id=uuid.uuid4().hex[:16])

    @property
    def signer(self) -> str:
        s = self.signature
        return str(s.get("signer") or s.get("key") or "unsigned")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Entry:
        return cls(**doc)


@dataclass
class Journal:
    applied: Entry | None = None
    pending: Entry | None = None
    previous: list[Entry] = field(default_factory=list)

    def promote(self, entry: Entry, *, pushes: bool = True) -> None:
        """`entry` is now in force; the one it replaces goes on the rollback stack (`pushes`)."""
        if pushes and self.applied is not None:
            self.previous = [self.applied, *self.previous][:KEEP]
        self.applied, self.pending = entry, None

    def entries(self) -> list[Entry]:
        return [e for e in (self.applied, self.pending, *self.previous) if e is not None]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "applied": self.applied.to_json() if self.applied else None,
            "pending": self.pending.to_json() if self.pending else None,
            "previous": [e.to_json() for e in self.previous],
        }


def read_journal(state: State) -> Journal:
    try:
        doc = json.loads(state.journal.read_bytes())
    except FileNotFoundError:
        return Journal()
    except (OSError, ValueError) as e:
        raise StateError(f"{state.journal}: unreadable journal ({e})") from None
    try:
        return Journal(
            applied=Entry.from_json(doc["applied"]) if doc.get("applied") else None,
            pending=Entry.from_json(doc["pending"]) if doc.get("pending") else None,
            previous=[Entry.from_json(e) for e in doc.get("previous", [])],
        )
    except (TypeError, KeyError) as e:
        raise StateError(
            f"{state.journal}: the journal does not have the expected shape ({e})"
        ) from None


def write_journal(state: State, journal: Journal) -> None:
    atomic_write(state.journal, dump(journal.to_json()))
    state.prune({e.commit for e in journal.entries()}, {e.rendered for e in journal.entries()})

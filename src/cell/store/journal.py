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
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from cell.store.statedir import State, StateError, dump
from policies.clock import now_iso
from policies.fsutil import atomic_write
from policies.record import Record, first_error

VERSION = 1
KEEP = 32
"""How many earlier applies the journal keeps for `cell rollback`."""


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


class Entry(Record):
    """One applied commit: enough to compare with, re-install, and explain it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    commit: str = Field(description="The applied commit (full SHA).")
    subject: str = Field(description="Its subject line.")
    signature: dict[str, Any] = Field(
        description="`policies.trust.Signature` as JSON: status, format, signer, key, detail."
    )
    digests: dict[str, str] = Field(description="Artifact -> sha256, from the rendered manifest.")
    rendered: str = Field(
        description="Key of the stored artifacts (sha256 of manifest.json): `State.load_rendered`."
    )
    site: str = Field(description="The site id of the policy.")
    netns: str | None = Field(description="The gateway's network namespace (None: this host).")
    layout: dict[str, str] = Field(
        description="`policies.layout.Layout` fields: the rendered paths depend on it."
    )
    repo: str = Field(description="The repo the commit was read from.")
    drift_mode: str = Field(
        default="alert", description="What the drift watcher does: alert or reconcile."
    )
    drift_interval: int = Field(
        default=60, description="Seconds between the watcher's full checks."
    )
    via: str = Field(
        default="apply",
        description="apply, rollback (by an operator or a passed confirm deadline), reconcile, recovered.",
    )
    time: str = Field(default_factory=now_iso, description="When it was applied (UTC, ISO 8601).")
    id: str = Field(
        default_factory=_new_id, description="This application's id (ledger entries name it)."
    )

    def again(self, via: str) -> Entry:
        """This commit applied once more (rollback, reconcile): a new id and time."""
        return self.model_copy(update={"via": via, "time": now_iso(), "id": _new_id()})

    @property
    def signer(self) -> str:
        s = self.signature
        return str(s.get("signer") or s.get("key") or "unsigned")


class Journal(Record):
    """What is applied, what is being applied, and what was applied before."""

    version: int = Field(default=VERSION, description="The journal's format version.")
    applied: Entry | None = Field(
        default=None, description="The commit in force, as last read back from the live system."
    )
    pending: Entry | None = Field(
        default=None, description="An apply in progress: written before anything live is touched."
    )
    previous: list[Entry] = Field(
        default_factory=list, description="What was applied before, newest first."
    )

    def promote(self, entry: Entry, *, pushes: bool = True) -> None:
        """`entry` is now in force; the one it replaces goes on the rollback stack (`pushes`)."""
        if pushes and self.applied is not None:
            self.previous = [self.applied, *self.previous][:KEEP]
        self.applied, self.pending = entry, None

    def entries(self) -> list[Entry]:
        return [e for e in (self.applied, self.pending, *self.previous) if e is not None]


def read_journal(state: State) -> Journal:
    try:
        doc = json.loads(state.journal.read_bytes())
    except FileNotFoundError:
        return Journal()
    except (OSError, ValueError) as e:
        raise StateError(f"{state.journal}: unreadable journal ({e})") from None
    try:
        return Journal.model_validate(doc)
    except ValidationError as e:
        raise StateError(
            f"{state.journal}: the journal does not have the expected shape ({first_error(e)})"
        ) from None


def write_journal(state: State, journal: Journal) -> None:
    atomic_write(state.journal, dump(journal.to_doc()))
    state.prune({e.commit for e in journal.entries()}, {e.rendered for e in journal.entries()})

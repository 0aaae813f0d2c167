"""What one journal entry says the live system is: its stored artifacts and the canonical form
of its ruleset, loaded once from the store (drift, bypass checks and recovery compare with it)."""

from __future__ import annotations

from cell.store.journal import Entry
from cell.store.statedir import State
from firewall.document import canonical, objects_of
from policies.layout import RULESET_JSON


class Expected:
    """What one journal entry says the live system is, loaded once from the store."""

    def __init__(self, state: State, entry: Entry) -> None:
        self.entry = entry
        self.files = state.load_rendered(entry.rendered)
        self.objects = objects_of(self.files[RULESET_JSON])
        self.canonical = canonical(self.objects)

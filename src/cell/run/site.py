"""What the daemon runs against: the state directory, the applied commit and its policy (from
the stored tree, so what runs is what was signed), the gateway, and the lab when there is one.

`SiteRef` holds the current one; the daemon's loop calls `refresh()`, which reloads when the
journal changed (a new apply, a rollback): services read `ref.site` at each cycle, so a new
policy's intervals take effect without a restart.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cell.deploy.install import Target
from cell.deploy.place import lab_of, site_of, target_for, target_of
from cell.store.journal import Entry, read_journal
from cell.store.statedir import State
from cell.verify.bridgeplace import PASSWORD_ENV
from policies import Policy, load_policy
from policies.errors import CellError
from policies.layout import CELL_MQTT_SECRET
from policies.types import duration_seconds

if TYPE_CHECKING:
    from cell.lab import LabInfo
    from policies.model import Verify


@dataclass(frozen=True)
class Site:
    state: State
    repo: str
    policy: Policy
    """The applied commit's policy (its stored tree); the repo's before any apply."""
    entry: Entry | None
    target: Target
    lab: LabInfo | None

    @property
    def verify(self) -> Verify:
        return self.policy.site.verify

    def seconds(self, name: str) -> float:
        """An interval of `verify:` in seconds (e.g. `probe_interval`)."""
        return float(duration_seconds(getattr(self.verify, name)))

    @property
    def site_id(self) -> str:
        return self.entry.site if self.entry else self.policy.site.site.id

    @property
    def netns(self) -> str | None:
        return self.target.netns

    def mqtt_password(self) -> str | None:
        """The `cell` login: the lab's credential, else $CELL_MONITOR_PASSWORD, else the secret
        `cell apply` keeps in the state directory (docs/daemon.md, "Authentication")."""
        if self.lab is not None:
            return self.lab.credentials.get("cell")
        if os.environ.get(PASSWORD_ENV):
            return os.environ[PASSWORD_ENV]
        with contextlib.suppress(OSError):
            return (self.target.state / CELL_MQTT_SECRET).read_text().strip() or None
        return None


JournalMark = tuple[int, int, int] | None
"""The journal file's inode, mtime and size: changes with every apply, rollback, reconcile."""


def journal_mark(state: State) -> JournalMark:
    try:
        st = state.journal.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def load_site(state: State, repo: str, netns: str | None) -> Site:
    """Raises `CellError` when neither an applied commit nor the repo gives a valid policy."""
    journal = read_journal(state)
    entry = journal.applied
    lab = lab_of(entry.site if entry else site_of(repo))
    if entry is not None:
        tree = state.trees / entry.commit
        policy = load_policy(tree) if tree.is_dir() else load_policy(Path(entry.repo))
        target = target_of(entry)
    else:
        policy = load_policy(repo)
        target = target_for(repo, netns, state)
    return Site(state, repo, policy, entry, target, lab)


class SiteRef:
    """The current `Site`, reloaded when the journal changes."""

    def __init__(self, state: State, repo: str, netns: str | None) -> None:
        self.state, self.repo, self.netns = state, repo, netns
        self.mark = journal_mark(state)
        self._site = load_site(state, repo, netns)
        self._lock = threading.Lock()
        self.error: str | None = None

    @property
    def site(self) -> Site:
        with self._lock:
            return self._site

    def refresh(self) -> bool:
        """Reload if the journal changed; True if it did. A reload that fails keeps the old
        site (and says why in `error`): a broken stored tree must not stop the daemon."""
        mark = journal_mark(self.state)
        if mark == self.mark:
            return False
        self.mark = mark
        try:
            site = load_site(self.state, self.repo, self.netns)
        except CellError as e:
            self.error = str(e)
            return False
        with self._lock:
            self._site, self.error = site, None
        return True

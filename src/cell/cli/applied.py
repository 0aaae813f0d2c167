"""What a read-side command judges against: the applied commit, never the work tree (issue 10,
class 8).

`cell bridge status`, `cell bridge monitor` and `cell probe` compare what runs with a policy. The
policy that runs is the one the journal names as applied, kept in the Cell's store exactly as it
was signed; an edited, uncommitted or unapplied work tree must not change the verdict. Only
when nothing was ever applied with `cell apply` (a lab brought up from a work tree) is the repo
read, and the command says so.
"""

from __future__ import annotations

import argparse
import os
import sys

from cell.cli.util import load, repo
from cell.store.journal import Entry
from cell.verify.bridgeplace import PASSWORD_ENV, Place, locate
from policies import Policy, load_policy


def applied_policy(args: argparse.Namespace) -> tuple[Policy, Entry | None]:
    """The applied policy and its journal entry; the repo's (and None) when nothing is applied."""
    from cell.deploy.place import state_for
    from cell.store.journal import read_journal

    state = state_for(getattr(args, "state_dir", None), repo(args))
    entry = read_journal(state).applied if state.journal.is_file() else None
    if entry is None:
        print(
            f"note: nothing was applied with `cell apply` in {state.root}: judging against "
            f"{repo(args)} as it stands",
            file=sys.stderr,
        )
        return load(args), None
    return load_policy(state.trees / entry.commit), entry


def applied_place(args: argparse.Namespace, policy: Policy, entry: Entry | None) -> Place:
    """Where the applied commit was installed (its journal entry says); else `locate`."""
    if entry is None:
        return locate(policy, getattr(args, "state_dir", None))
    from cell.deploy.place import target_of

    target = target_of(entry)
    password = target.credentials.get("cell") or os.environ.get(PASSWORD_ENV)
    return Place(target.netns, target.layout, password, bool(target.credentials))

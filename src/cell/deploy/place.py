"""Where GitOps commands act: the state directory and the gateway (a lab's, or this host).

Defaults, most specific first: `--state-dir` / `$CELL_STATE_DIR`; else, when a lab of the repo's
site is up, the lab gateway's state directory (`LabInfo.layout.state`); else /var/lib/cell. A
journal entry records its gateway (namespace and file layout), so rollback, reconcile and drift
act on the gateway the commit was applied to, whatever the current directory or flags.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from cell import paths
from cell.store.statedir import State
from policies import gitrepo
from policies.layout import Layout

if TYPE_CHECKING:
    from cell.deploy.install import Target
    from cell.lab import LabInfo
    from cell.store.journal import Entry


def site_of(repo: str | Path) -> str | None:
    """The site id in the repo's committed site.yaml (or its work tree); None if unreadable.

    Read without validating: a command must find its lab even when the policy is broken.
    """
    data: bytes | None = None
    with contextlib.suppress(gitrepo.GitError):
        data = gitrepo.show(repo, "HEAD", "site.yaml")
    if data is None:
        try:
            data = (Path(repo) / "site.yaml").read_bytes()
        except OSError:
            return None
    try:
        doc = yaml.safe_load(data)
        site = str(doc["site"]["id"])
    except (yaml.YAMLError, TypeError, KeyError):
        return None
    return site


def lab_of(site: str | None) -> LabInfo | None:
    from cell.errors import UsageError
    from cell.lab import LabError, lab_status

    if not site:
        return None
    try:
        return lab_status(site)
    except (UsageError, LabError):
        return None


def state_for(state_dir: str | None, repo: str | Path | None) -> State:
    explicit = paths.explicit_state_dir(state_dir)
    if explicit:
        return State(explicit)
    lab = lab_of(site_of(repo)) if repo else None
    return State(lab.layout.state if lab else paths.state_dir())


def target_for(repo: str | Path, netns: str | None, state: State) -> Target:
    """The gateway `cell apply` acts on: the repo's lab (when up, and `netns` does not point
    elsewhere), or `netns` (None: this host) with the standard layout."""
    from cell.deploy.install import Target, lab_target  # netlink: only for who acts on a gateway

    lab = lab_of(site_of(repo))
    if lab is not None and netns in (None, lab.gateway):
        return lab_target(lab)
    return Target(netns=netns, layout=Layout(state_dir=str(state.root)))


def target_of(entry: Entry) -> Target:
    """The gateway a journal entry was applied to (with the lab's credentials, if it is a lab)."""
    from cell.deploy.install import Target, lab_target

    lab = lab_of(entry.site)
    if lab is not None and lab.gateway == entry.netns:
        return lab_target(lab)
    return Target(netns=entry.netns, layout=Layout(**entry.layout))


def layout_json(target: Target) -> dict[str, str]:
    return asdict(target.layout)

"""Where a site's bridge runs, and what it is doing now: the running monitor's snapshot if it is
fresh, else a replay of the broker's log (no daemon needed)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from bridge.status import BridgeStatus
from cell import paths
from cell.errors import UsageError
from policies import Policy
from policies.layout import BRIDGE_SNAPSHOT, MOSQUITTO_LOG, Layout

FRESH = 5.0
"""A snapshot older than this (seconds) is stale: `status` replays the log instead."""
PASSWORD_ENV = paths.MONITOR_PASSWORD_ENV


@dataclass
class Place:
    """Where a site's bridge runs: namespace (None: this host), files, and the monitor login."""

    netns: str | None
    layout: Layout
    password: str | None
    lab: bool

    @property
    def log(self) -> Path:
        return Path(self.layout.state) / MOSQUITTO_LOG

    @property
    def snapshot(self) -> Path:
        return Path(self.layout.state) / BRIDGE_SNAPSHOT


def locate(policy: Policy, state_dir: str | None = None) -> Place:
    """The lab's gateway when a lab of the site is up (and no state directory is named), else
    this host with the named (or standard) state directory."""
    from cell.lab import lab_status

    lab = lab_status(policy.site.site.id)
    if lab is not None and not state_dir:
        return Place(lab.gateway, lab.layout, lab.credentials.get("cell"), True)
    layout = Layout(state_dir=paths.state_dir(state_dir))
    return Place(None, layout, os.environ.get(PASSWORD_ENV), False)


def current_status(policy: Policy, place: Place, now: float | None = None) -> BridgeStatus:
    """The running monitor's snapshot if it is fresh, else a replay of the broker log."""
    from bridge.monitor import read_snapshot, replay_log
    from cell.procfs import alive

    now = time.time() if now is None else now
    snap = read_snapshot(place.snapshot)
    if (
        snap is not None
        and snap.site == policy.site.site.id
        and snap.monitor_pid is not None
        and alive(snap.monitor_pid)
        and now - snap.updated < FRESH
    ):
        return snap
    if not place.log.exists():
        where = f"the lab's gateway ({place.netns})" if place.lab else "this host"
        raise UsageError(
            f"no broker log at {place.log}: the policy is not applied on {where} "
            "(run `cell apply`, or point --state-dir at the Cell's state directory)"
        )
    return replay_log(policy, place.log, now)

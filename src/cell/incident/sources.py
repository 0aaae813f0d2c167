"""Where the Cell keeps what an incident search reads, and the window it reads.

`locate` finds them as every other command does: `--state-dir` / $CELL_STATE_DIR, else the
gateway of the repo's lab when one is up, else /var/lib/cell on this host. Nothing is written
here; a state directory that does not exist is bad input, not an empty result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cell.incident.errors import IncidentUsage
from cell.store.statedir import State
from cell.timeparse import iso_z
from policies import Policy
from policies.layout import MOSQUITTO_LOG, Layout


@dataclass(frozen=True)
class Sources:
    """One Cell's records and the window [since, until) to search them in."""

    policy: Policy
    state: State
    layout: Layout
    """The gateway's file layout: where its broker and dnsmasq write their logs."""
    netns: str | None
    """The gateway's network namespace (None: this host)."""
    repo: str
    since: datetime
    until: datetime
    gateway_addresses: tuple[str, ...] = ()
    """The Cell's own WAN addresses known besides the capture's records (a lab's)."""

    @property
    def site(self) -> str:
        return self.policy.site.site.id

    @property
    def broker_log(self) -> Path:
        return Path(self.layout.state) / MOSQUITTO_LOG

    @property
    def window(self) -> str:
        return f"{iso_z(self.since)}..{iso_z(self.until)}"

    def holds(self, ts: float) -> bool:
        """Is the instant `ts` (epoch seconds) in the window?"""
        return self.since.timestamp() <= ts < self.until.timestamp()


def locate(
    policy: Policy, repo: str, state_dir: str | None, since: datetime, until: datetime
) -> Sources:
    from cell.deploy.place import lab_of, state_for

    if since >= until:
        raise IncidentUsage(
            f"empty window: --since {iso_z(since)} is not before --until {iso_z(until)}"
        )
    state = state_for(state_dir, repo)
    if not state.root.is_dir():
        raise IncidentUsage(
            f"state directory {state.root} does not exist: point --state-dir (or $CELL_STATE_DIR)"
            " at the Cell's, or bring the lab up (`cell lab up`)"
        )
    lab = None if state_dir else lab_of(policy.site.site.id)
    if lab is not None and Path(lab.layout.state) != state.root:
        lab = None
    layout = lab.layout if lab else Layout(state_dir=str(state.root))
    addresses = (str(lab.wan_link["gateway"]),) if lab else ()
    return Sources(
        policy, state, layout, lab.gateway if lab else None, repo, since, until, addresses
    )

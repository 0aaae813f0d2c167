"""The typed records of an apply (and of a rollback or reconcile): what it changed, what it did
to the services, and the outcome the CLI prints and the daemon will publish. Pure data: this
module imports nothing heavy (no nftables, pyroute2, paho, textual).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["apply", "rollback", "reconcile"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleChanges(_Record):
    """nft rule lines that differ between the previously applied ruleset and this one."""

    added: list[str] = Field(
        default_factory=list, description="Lines of ruleset.nft new in this commit, stripped."
    )
    removed: list[str] = Field(
        default_factory=list, description="Lines of ruleset.nft gone in this commit, stripped."
    )


class Changes(_Record):
    """What an apply changed against the one before, as the ledger records it."""

    changed: list[str] = Field(
        default_factory=list,
        description="Rendered artifacts (relative paths, manifest excluded) whose bytes differ "
        "from the previously applied commit's; every artifact when there was none.",
    )
    rules: RuleChanges = Field(
        default_factory=RuleChanges, description="The nft rule lines added and removed."
    )


class ServiceReport(_Record):
    """What one install did on the gateway."""

    changed: list[str] = Field(
        default_factory=list,
        description="Files that differed from the live ones or from the journal's digests "
        "(relative paths), plus stray files the install removed.",
    )
    broker: str = Field(
        description="What happened to mosquitto: 'unchanged', 'reloaded', 'restarted', 'started'."
    )
    dnsmasq: str = Field(
        description="What happened to the dnsmasq instances: 'unchanged' or, e.g., "
        "'sinkhole restarted, resolver restarted'."
    )


class ApplyOutcome(_Record):
    """One successful apply, rollback or reconcile, as people and other programs read it."""

    kind: Kind = Field(description="Which lifecycle step this was.")
    commit: str = Field(description="The commit now applied (40 hex digits).")
    subject: str = Field(description="That commit's subject line.")
    previous: str | None = Field(
        default=None, description="The commit applied before (None: this was the first apply)."
    )
    changes: Changes = Field(description="What changed against the previous commit.")
    services: ServiceReport = Field(description="What the install did to files and services.")
    confirm: dict[str, Any] | None = Field(
        default=None,
        description="The pending timed confirm (commit, deadline, fallback), when applied with "
        "--confirm.",
    )
    notes: list[str] = Field(
        default_factory=list,
        description="Things settled on the way (recovery of an interrupted apply, an overdue "
        "confirm rolled back), in plain words.",
    )

"""The typed records of an incident search: one per step, and the report that holds them."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from policies.record import Record

SCHEMA = "cell.incident/1"
STEPS = ("bridge", "gitops", "health", "egress", "dns", "drift")
TITLES = {
    "bridge": "1. Bridge: unexpected publishes and never topics",
    "gitops": "2. GitOps: commits to the bridge policy and the firewall",
    "health": "3. Health: VLAN segregation probe runs",
    "egress": "4. Egress: WAN destinations in the capture",
    "dns": "DNS phone-home attempts",
    "drift": "Drift events",
}


class Step(Record):
    """What one step found in the window."""

    name: str = Field(description="bridge, gitops, health, egress, dns or drift.")
    findings: list[str] = Field(
        default_factory=list, description="Each thing against the policy, in one line."
    )
    notes: list[str] = Field(
        default_factory=list, description="What this step cannot show (no log, no run)."
    )
    summary: dict[str, Any] = Field(default_factory=dict, description="Counts for people.")
    rows: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The data behind the step, one object per row (steps/NAME.jsonl).",
        exclude=True,
    )


class Report(Record):
    """report.json: the window, the findings of every step, where the evidence is."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: str = Field(default=SCHEMA, alias="schema", description="The format's name.")
    site: str = Field(description="The site id.")
    since: str = Field(description="Start of the window (inclusive, UTC).")
    until: str = Field(description="End of the window (exclusive, UTC).")
    findings: int = Field(description="Findings in all steps; 0: nothing was found.")
    steps: dict[str, Step] = Field(description="Each step's result, by name.")
    ledger_head: dict[str, Any] | None = Field(
        default=None, description="The ledger head when the pack was made: seq and hash."
    )
    evidence_key: str | None = Field(
        default=None, description="The allowed_signers line of the key that signed the pack."
    )

    @staticmethod
    def count(steps: dict[str, Step]) -> int:
        return sum(len(s.findings) for s in steps.values())

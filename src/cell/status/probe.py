"""The result of a probe run: what each flow of the matrix did, with its evidence. What
`cell probe --json` prints, what the probe history keeps and what the HEALTH panel shows."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from policies.record import Record


class ProbeResult(Record):
    """One flow: what was expected, what happened, and what proves it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(alias="from", description="The source's name (host, VLAN probe, gateway).")
    to: str = Field(description="The target, as the probe's id names it (e.g. wan:443/tcp).")
    expect: str = Field(description="accept or drop, as the policy decides.")
    got: str = Field(description="accept (an answer came back), drop, or not run.")
    ok: bool = Field(description="It did what the policy says, with proof.")
    evidence: str = Field(
        description="The answer that came back, or the drop counter's rise (a timeout alone "
        "proves nothing)."
    )
    id: str = Field(description="The probe's id in probes.json.")
    counter: str | None = Field(default=None, description="The drop counter that had to rise.")


class ProbeRun(Record):
    """Every probe of the matrix, once."""

    ok: bool = Field(description="Every flow did what the policy says.")
    results: list[ProbeResult] = Field(description="One per probe, in matrix order.")

    @property
    def failed(self) -> list[ProbeResult]:
        return [r for r in self.results if not r.ok]

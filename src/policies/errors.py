"""Cell's exception tree. Every error a person can cause is a `CellError`.

    CellError                 root: the CLI prints it and exits 1 (or the subclass's code)
    ├── PolicyError           the policy does not validate; carries `Diagnostic`s (file:line:col)
    ├── firewall.FirewallError   nftables refused a check or an apply; carries the offending part
    ├── bridge.BrokerError       mosquitto did not start, reload or accept its config
    └── cell.*Error              apply, trust, lab and state errors

Only the CLI turns these into exit codes; library code raises.
"""

from __future__ import annotations

from dataclasses import dataclass


class CellError(Exception):
    """Root of every error Cell reports to a person. `exit_code` follows DESIGN.md."""

    exit_code = 1


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem at one place in a policy file. Sorted by file, then line, then column."""

    file: str
    line: int
    col: int
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        return f"{self.file}:{self.line}:{self.col}: {kind}{self.message}"


class PolicyError(CellError):
    """The policy is invalid. Holds every diagnostic found in one run, not just the first."""

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))

"""Cell's exception tree, drawn once (a test checks it against the code). Every error a person
can cause is a `CellError`; each class carries the exit code the CLI returns for it (DESIGN.md:
0 fine, 1 unexpected failure, 2 bad input or refused, 3 a check found a problem). Only the CLI
turns errors into exit codes; library code raises.

    CellError (1)                 policies.errors       root of every area
    ├── PolicyError (2)           policies.errors       the policy does not validate: Diagnostics
    ├── TrustRefused (2)          policies.trust        the trust gate refused a commit
    ├── GitError (1)              policies.gitrepo      git failed on the site-config repo
    │   └── NotARepo (2)          policies.gitrepo      --repo is not a git repository
    ├── FirewallError (1)         firewall.nft          nftables refused: the offending part
    ├── BrokerError (1)           bridge.broker         mosquitto did not start or reload
    ├── MonitorError (1)          bridge.observer       the bridge monitor cannot watch
    ├── UsageError (2)            cell.errors           bad input on the command line
    │   ├── AlreadyEnrolled (2)   cell.gitops.enroll    enrolling again without --reset
    │   ├── PcapUsage (2)         cell.verify.errors    no capture, an empty window
    │   │   └── NoCapture (2)     cell.verify.errors    no ring, or none of it in the window
    │   ├── IncidentUsage (2)     cell.incident.errors  a bad window, no capture, --out exists
    │   ├── ProbeRefused (2)      cell.verify.errors    a VLAN link missing, a probe address in use
    │   └── TimeError (2)         cell.timeparse        a time that is not ISO 8601 or -2h
    ├── ApplyError (1)            cell.errors           a step of an apply failed
    ├── StateError (1)            cell.store.statedir   the state directory is unusable
    │   ├── StateFull (1)         cell.store.statedir   its filesystem is full
    │   └── Busy (1)              cell.store.statedir   another cell command holds the lock
    ├── StoreError (1)            cell.store.db         the SQLite store is unusable
    ├── HistoryError (2)          cell.store.history    a bad --at
    ├── NotFound (3)              cell.store.history    nothing was applied at that instant
    ├── ConfirmError (2)          cell.gitops.confirm   nothing to confirm, a deadline passed
    ├── NothingToDo (2)           cell.gitops.lifecycle rollback with nothing before, ...
    ├── WatchError (1)            cell.gitops.watch      the drift watcher cannot start
    ├── CaptureError (1)          cell.verify.errors    the WAN capture cannot run or be read
    ├── PackError (1)             cell.incident.errors  ssh-keygen or age failed on a pack
    ├── LabError (1)              cell.lab.errors       the lab could not be built or removed
    ├── HubError (1)              cell.fleet.client     the hub broker cannot be reached
    │   └── HubRefused (2)        cell.fleet.client     the hub refused the login, bad TLS files
    └── LabNotUp (3)              cell.lab.errors       no lab is up for the site
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

"""Enrolment: anchor this Cell's trust in an allowed_signers file (and optional OpenPGP keys).

The enrolled file decides only the first apply; from then on trust flows through the repo's own
`allowed_signers` as it stood in each parent commit (`policies.trust`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cell.errors import UsageError
from cell.store import evidencekey, ledger
from cell.store.journal import read_journal
from cell.store.statedir import State
from policies.errors import PolicyError
from policies.fsutil import atomic_write
from policies.signers import parse_signers
from policies.trust import PGP_KEYS, SSH_SIGNERS, pgp_fingerprints

KEY_KIND = "evidence-key"
"""The ledger entry of an evidence key the daemon made (a Cell never enrolled)."""
UNENROLLED = (
    KEY_KIND,
    "refusal",
    "failure",
    "drift",
    "drift-transaction",
    "drift-resolved",
    "evidence-pack",
)
"""What a box records before anyone enrols it. Any other entry (an enrolment, a commit made
live, a recovery, ...) means it trusts someone: enrolling again is then a recorded reset."""


class AlreadyEnrolled(UsageError):
    """Enrolling over an existing ledger without an explicit, recorded reset."""


@dataclass(frozen=True)
class Enrolment:
    keys: int
    """SSH keys enrolled."""
    principals: list[str]
    pgp: list[str]
    """OpenPGP fingerprints enrolled."""
    late: bool
    """This Cell had applied commits already: the file only anchors a first apply."""
    evidence_key: str
    """The Cell's evidence key, as an allowed_signers line (also in the ledger's entry)."""
    reset: bool = False


def enroll(
    state: State,
    ssh: bytes,
    display: str,
    pgp: bytes | None = None,
    pgp_display: str = "",
    *,
    site: str = "cell",
    reset: str | None = None,
) -> Enrolment:
    """Check the files, write them into the state's trust directory, record it in the ledger.

    Over an existing ledger, this replaces who the Cell trusts: it is refused unless `reset`
    gives the reason, which is recorded (a `reset` entry) before the new enrolment.
    """
    signers, problems = parse_signers(ssh, display)
    if problems:
        raise PolicyError(problems)
    fprs = pgp_fingerprints(pgp) if pgp else []
    if pgp and not fprs:
        raise UsageError(f"{pgp_display}: no OpenPGP public key in it (gpg --armor --export)")
    # What a box records before its operator enrols it (the daemon's key, an apply refused as
    # not enrolled, drift, an incident pack) trusts no one: enrolling then replaces no one.
    before = [e for e in ledger.read(state) if e.get("kind") not in UNENROLLED]
    if before and reset is None:
        last = before[-1]
        raise AlreadyEnrolled(
            f"{state.root}: this Cell is enrolled already (its ledger records it: seq "
            f"{last.get('seq')} {last.get('kind')} at {last.get('time')}); "
            "to replace whom it trusts, `cell enroll --reset REASON --signers FILE` (recorded)"
        )
    atomic_write(state.trust / SSH_SIGNERS, ssh)
    if pgp:
        atomic_write(state.trust / PGP_KEYS, pgp)
    else:
        (state.trust / PGP_KEYS).unlink(missing_ok=True)
    people = sorted({p for s in signers for p in s.principals})
    digest = hashlib.sha256(ssh).hexdigest()
    key = evidencekey.ensure_key(state, site)
    if reset is not None:
        ledger.append(state, "reset", reason=reset, principals=people)
    ledger.append(state, "enroll", principals=people, pgp=fprs, sha256=digest, evidence_key=key)
    late = read_journal(state).applied is not None
    return Enrolment(len(signers), people, fprs, late, key, reset is not None)


def first_key(state: State, site: str) -> str | None:
    """The evidence key of a Cell never enrolled, made by its first `cell run` and recorded in
    the ledger (as enrolment records it): its heads and manifests are signed from then on.
    None: nothing made, because a key is there, or because the ledger names one already. A key
    the ledger names and the box has lost is not replaced: its heads go unsigned, and `cell
    audit verify` says so, where a new key would hide that the old one went."""
    if evidencekey.has_key(state):
        return None
    if any(e.get("evidence_key") for e in ledger.read(state)):
        return None
    key = evidencekey.ensure_key(state, site)
    ledger.append(state, KEY_KIND, evidence_key=key, by="cell run")
    return key

"""The trust gate: which commits of the site-config repo a Cell accepts. Git verifies every signature.

The rules (spec/site-config.md; docs/gitops.md says why):
- A commit is accepted only if git verifies its SSH or OpenPGP signature against the keys trusted
  *before* the commit: `allowed_signers` (OpenSSH) and `allowed_signers.asc` (OpenPGP public keys,
  armored; our extension, since OpenSSH's format cannot hold them) as they stand in the commit's
  parent. For the first commit a Cell ever applies, the files it was enrolled with stand in.
- Every commit between the applied one and the new HEAD must pass, each against its own parent, so
  a bad commit cannot be laundered by a good one on top of it. A parent outside that range (older
  history brought in by a merge) is judged by the trust of the applied commit: only vetted files
  ever anchor trust.
- A commit that its anchor does not trust, but that its own trust files would, is a takeover: a
  key adding itself. Anything else untrusted is an unknown key.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from policies import gitrepo
from policies.errors import CellError
from policies.signers import outside_window, parse_signers, ssh_key_of

SSH_SIGNERS = "allowed_signers"
PGP_KEYS = "allowed_signers.asc"

Status = Literal["good", "bad", "unknown-key", "unsigned", "error"]
Reason = Literal[
    "trusted",
    "unsigned",
    "bad-signature",
    "unknown-key",
    "takeover",
    "dirty",
    "not-descendant",
    "not-enrolled",
    "state-deleted",
]
_REASON: dict[Status, Reason] = {
    "good": "trusted",
    "bad": "bad-signature",
    "error": "bad-signature",
    "unknown-key": "unknown-key",
    "unsigned": "unsigned",
}
# %G? status, signer, key, key fingerprint, primary key fingerprint, subject. Not %GT: git 2.39
# aborts on it for an OpenPGP key of unknown trust.
_FORMAT = "--format=%G?%x00%GS%x00%GK%x00%GF%x00%GP%x00%s"
TWO_SIGNATURES = "the commit carries more than one signature header"


@dataclass(frozen=True)
class Anchor:
    """The trust files in force before a commit, and where they came from (for messages)."""

    ssh: bytes | None
    pgp: bytes | None
    where: str

    @classmethod
    def at(cls, repo: str | Path, commit: str) -> Anchor:
        return cls(
            gitrepo.show(repo, commit, SSH_SIGNERS),
            gitrepo.show(repo, commit, PGP_KEYS),
            f"{SSH_SIGNERS} at {commit[:12]}",
        )

    def same_keys(self, other: Anchor) -> bool:
        return (self.ssh, self.pgp) == (other.ssh, other.pgp)


@dataclass(frozen=True)
class Signature:
    status: Status
    format: str | None = None
    """'ssh' or 'gpg' (None: unsigned)."""
    signer: str | None = None
    """The SSH principal or OpenPGP user id, when the key is known."""
    key: str | None = None
    """The key's fingerprint (SHA256:... for SSH, hex for OpenPGP), when git could read it."""
    detail: str = ""

    def describe(self) -> str:
        if self.status == "unsigned":
            return "no signature"
        who = self.signer or "an unknown signer"
        return f"{who} ({self.format} key {self.key})" if self.key else f"{who} ({self.format})"

    def to_json(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    commit: str
    subject: str
    reason: Reason
    signature: Signature
    anchor: str

    @property
    def ok(self) -> bool:
        return self.reason == "trusted"

    def explain(self) -> str:
        head = f'commit {self.commit[:12]} "{self.subject[:60]}"'
        s, where = self.signature, self.anchor
        if self.reason == "bad-signature" and s.detail == TWO_SIGNATURES:
            return (
                f"{head}: bad signature: {TWO_SIGNATURES} (gpgsig and gpgsig-sha256); sign it once"
            )
        why = {
            "trusted": f"signed by {s.describe()}, trusted in {where}",
            "unsigned": "unsigned: it carries no signature; sign it (git commit -S) with a key "
            f"listed in {where}",
            "bad-signature": f"bad signature: the signature by {s.describe()} does not match the "
            f"commit's content{'; ' + s.detail if s.detail else ''} (rewritten after signing?); "
            "sign the commit again",
            "unknown-key": f"unknown key: signed by {s.describe()}, which is not trusted in "
            f"{where}{'; ' + s.detail if s.detail else ''}; a trusted operator must add the key "
            "in a commit they sign",
            "takeover": f"takeover: signed by {s.describe()}, a key that this very commit adds to "
            f"the trust files; a change to {SSH_SIGNERS} must be signed by a key trusted in {where}",
        }.get(self.reason, self.reason)
        return f"{head}: {why}"

    def to_json(self) -> dict[str, object]:
        return {
            "commit": self.commit,
            "subject": self.subject,
            "reason": self.reason,
            "ok": self.ok,
            "signature": self.signature.to_json(),
            "anchor": self.anchor,
            "message": self.explain(),
        }


class TrustRefused(CellError):
    """The trust gate refused: nothing is applied. Names the commit, the signer found, and why."""

    exit_code = 2

    def __init__(
        self,
        reason: Reason,
        message: str,
        verdict: Verdict | None = None,
        *,
        commit: str | None = None,
        subject: str | None = None,
    ) -> None:
        self.reason = reason
        self.verdict = verdict
        self.commit, self.subject = commit, subject
        super().__init__(f"refused: {message}")

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {"reason": self.reason, "message": str(self)}
        if self.verdict is None and self.commit is not None:
            doc.update(commit=self.commit, subject=self.subject, signature=None)
        if self.verdict is not None:
            doc.update(
                commit=self.verdict.commit,
                subject=self.verdict.subject,
                signature=self.verdict.signature.to_json(),
            )
        return doc


def verify(repo: str | Path, commit: str, anchor: Anchor) -> tuple[Signature, str]:
    """git's verdict on `commit`'s signature with `anchor`'s keys, and the commit's subject."""
    raw = gitrepo.raw_commit(repo, commit)
    fmt, armored = gitrepo.signature_block(raw)
    with tempfile.TemporaryDirectory(prefix="cell-trust-") as tmp:
        signers = Path(tmp, "allowed_signers")
        signers.write_bytes(anchor.ssh or b"")
        # Always a keyring of our own, holding only the anchor's OpenPGP keys: whatever format the
        # commit claims, git may pick another header, and the host's keyring (gpg and gpgsm) and
        # its trust settings must never take part.
        home = Path(tmp, "gnupg")
        home.mkdir(mode=0o700)
        env = {"GNUPGHOME": str(home)}
        known = _import(home, anchor.pgp) if fmt == "gpg" and anchor.pgp else set()
        try:
            out = gitrepo.git(
                repo,
                "-c",
                f"gpg.ssh.allowedSignersFile={signers}",
                "log",
                "-1",
                _FORMAT,
                commit,
                env=env,
            ).stdout
        finally:
            _kill_agent(home)
    code, signer, key, fpr, primary, subject = (
        out.decode(errors="replace").rstrip("\n").split("\0", 5)
    )
    if len(gitrepo.signature_headers(raw)) > 1:
        # Which header git checks is git's choice, not ours: two is never a signature we can judge.
        return Signature("bad", fmt, signer or None, fpr or key or None, TWO_SIGNATURES), subject
    sig = _signature(code, fmt, signer, key, fpr, primary, known, armored)
    return _in_window(sig, anchor), subject


def _in_window(sig: Signature, anchor: Anchor) -> Signature:
    """git checks an SSH key's valid-after/valid-before at the committer date, which the signer
    writes; a trusted key must also be valid now, so a backdated commit gains nothing."""
    if sig.status != "good" or sig.format != "ssh" or not sig.signer or not sig.key:
        return sig
    entries, _ = parse_signers(anchor.ssh or b"", "allowed_signers")
    why = outside_window(entries, sig.signer, sig.key, datetime.now().astimezone())
    return Signature("unknown-key", sig.format, sig.signer, sig.key, why) if why else sig


def _signature(
    code: str,
    fmt: str | None,
    signer: str,
    key: str,
    fpr: str,
    primary: str,
    known: set[str],
    armored: bytes,
) -> Signature:
    if fmt is None or code == "N":
        return Signature("unsigned")
    if fmt not in ("ssh", "gpg"):
        return Signature("unknown-key", fmt, detail=f"{fmt} signatures are not supported")
    found = fpr or key or (ssh_key_of(armored) if fmt == "ssh" else None) or None
    if code == "B":
        return Signature("bad", fmt, signer or None, found)
    if code in ("X", "Y", "R"):
        return Signature("unknown-key", fmt, signer or None, found, "the key expired or is revoked")
    if fmt == "ssh" and code == "G" and signer and (found or "").startswith("SHA256:"):
        return Signature("good", fmt, signer, found)
    if fmt == "gpg" and code in ("G", "U") and ({fpr, primary} & known):
        return Signature("good", fmt, signer or None, fpr or found)
    if code in ("G", "U", "E") and found:
        return Signature("unknown-key", fmt, signer or None, found)
    return Signature("error", fmt, signer or None, found, f"git could not check it (status {code})")


def _gpg(home: Path, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--quiet", "--no-tty", *args],
        input=data,
        capture_output=True,
        timeout=60,
    )


def _import(home: Path, keys: bytes) -> set[str]:
    """Import armored keys into `home`; the fingerprints (primary and subkeys) it now holds."""
    _gpg(home, "--import", data=keys)
    out = _gpg(home, "--with-colons", "--list-keys").stdout.decode(errors="replace")
    return {ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:")}


def _kill_agent(home: Path) -> None:
    if home.exists() and any(home.iterdir()):
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, timeout=30
        )


def pgp_fingerprints(keys: bytes) -> list[str]:
    """The primary fingerprints in an armored key file (empty: none, or not a key file)."""
    with tempfile.TemporaryDirectory(prefix="cell-keys-") as tmp:
        home = Path(tmp)
        home.chmod(0o700)
        out = _gpg(home, "--with-colons", "--show-keys", data=keys).stdout.decode(errors="replace")
        _kill_agent(home)
    fprs, last = [], ""
    for line in out.splitlines():
        kind = line.split(":", 1)[0]
        if kind == "fpr" and last == "pub":
            fprs.append(line.split(":")[9])
        if kind in ("pub", "sub"):
            last = kind
        elif kind == "fpr":
            last = ""
    return fprs


def judge(
    repo: str | Path, commit: str, before: Sequence[Anchor], own: Anchor, parents: Sequence[Anchor]
) -> Verdict:
    """The verdict on one commit: trusted only if every anchor in `before` trusts its signer.

    `parents` are the trust files of the commit's actual parents: a takeover is a commit that
    changes them itself (a root commit counts as changing them), and that its own files trust.
    """
    results = [(verify(repo, commit, a), a) for a in before]
    (first, subject), anchor = results[0]
    for (sig, _), a in results:
        if sig.status in ("unsigned", "bad", "error"):
            return Verdict(commit, subject, _REASON[sig.status], sig, a.where)
    untrusted = [(sig, a) for (sig, _), a in results if sig.status != "good"]
    if not untrusted:
        return Verdict(commit, subject, "trusted", first, anchor.where)
    sig, a = untrusted[0]
    changes = not any(own.same_keys(p) for p in parents) if parents else bool(own.ssh or own.pgp)
    if changes and not own.same_keys(a):
        mine, _ = verify(repo, commit, own)
        if mine.status == "good":
            return Verdict(commit, subject, "takeover", mine, a.where)
    return Verdict(commit, subject, "unknown-key", sig, a.where)


def check_range(
    repo: str | Path, base: str | None, tip: str, enrolled: Anchor | None
) -> list[Verdict]:
    """Verdicts on every commit after `base` (the applied one) up to `tip`, oldest first.

    `base` None means nothing was ever applied: only `tip` is judged, against the enrolled files.
    Raises `TrustRefused` when there is nothing to judge against or `tip` rewrote history.
    """
    if base is None:
        if enrolled is None:
            raise TrustRefused(
                "not-enrolled",
                "this Cell has no trust anchor yet: run `cell enroll --signers FILE` with the "
                "operators' allowed_signers before the first apply",
            )
        parents = [Anchor.at(repo, p) for p in gitrepo.parents(repo, tip)]
        return [judge(repo, tip, [enrolled], Anchor.at(repo, tip), parents)]
    if base == tip:
        return []
    if not gitrepo.exists(repo, base) or not gitrepo.is_ancestor(repo, base, tip):
        raise TrustRefused(
            "not-descendant",
            f"HEAD {tip[:12]} does not descend from the applied commit {base[:12]} (was history "
            "rewritten?); undo a change with a new signed commit, never by rewriting history",
        )
    commits = gitrepo.between(repo, base, tip)
    vetted = {base, *commits}
    anchors: dict[str, Anchor] = {}

    def at(commit: str) -> Anchor:
        if commit not in anchors:
            anchors[commit] = Anchor.at(repo, commit)
        return anchors[commit]

    out = []
    for c in commits:
        before: list[Anchor] = []
        for p in gitrepo.parents(repo, c) or [base]:
            a = at(p if p in vetted else base)
            if not any(a.same_keys(b) for b in before):
                before.append(a)
        out.append(judge(repo, c, before, at(c), [at(p) for p in gitrepo.parents(repo, c)]))
    return out


def gate(repo: str | Path, base: str | None, tip: str, enrolled: Anchor | None) -> list[Verdict]:
    """`check_range`, refusing at the first commit that is not trusted."""
    verdicts = check_range(repo, base, tip, enrolled)
    for i, v in enumerate(verdicts, start=1):
        if not v.ok:
            where = (
                f" (commit {i} of {len(verdicts)} since the applied {base[:12]}: every one must "
                "be trusted, not only HEAD)"
                if base and len(verdicts) > 1
                else ""
            )
            raise TrustRefused(v.reason, v.explain() + where, v)
    return verdicts


def refuse_dirty(repo: str | Path) -> None:
    """A Cell applies commits, never files a person has not committed (and signed)."""
    changes = gitrepo.dirty(repo)
    if changes:
        shown = ", ".join(c.strip() for c in changes[:5]) + (" ..." if len(changes) > 5 else "")
        try:
            commit = gitrepo.head(repo)
            subject = gitrepo.subject(repo, commit)
        except gitrepo.GitError:
            commit, subject = None, None
        on = f'commit {commit[:12]} "{subject[:60]}": ' if commit and subject is not None else ""
        raise TrustRefused(
            "dirty",
            f"{on}the working tree of {repo} is dirty ({shown}): commit the change (signed) or "
            "discard it; the Cell applies commits, never uncommitted files",
            commit=commit,
            subject=subject,
        )

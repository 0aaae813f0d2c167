"""The trust gate: which commits of the site-config repo a Cell accepts.

Signatures are checked by the Cell's own `ssh-keygen`/`gpg` over the commit object
(`policies.sigcheck`), in the Cell's own mirror of the repo (`policies.gitmirror`): nothing in a
clone's `.git` or in the environment takes part.

The rules (spec/site-config.md; docs/gitops.md says why):
- A commit is accepted only if its SSH or OpenPGP signature verifies against the keys trusted
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

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, computed_field

from policies import gitrepo
from policies.errors import CellError
from policies.record import Record
from policies.sigcheck import TWO_SIGNATURES, Signature, Status, check, gpg, kill_agent

SSH_SIGNERS = "allowed_signers"
PGP_KEYS = "allowed_signers.asc"

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
    "unsafe-tree",
    "bad-objects",
]
_REASON: dict[Status, Reason] = {
    "good": "trusted",
    "bad": "bad-signature",
    "error": "bad-signature",
    "unknown-key": "unknown-key",
    "unsigned": "unsigned",
}


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


class Verdict(Record):
    """The trust gate's verdict on one commit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    commit: str = Field(description="The full SHA of the commit judged")
    subject: str = Field(description="Its subject line")
    reason: Reason = Field(description="trusted, or why not")
    signature: Signature = Field(description="What the signature check found")
    anchor: str = Field(description="Which trust files judged it (for messages)")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """True when the commit is trusted."""
        return self.reason == "trusted"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def message(self) -> str:
        """The verdict in words (`explain`)."""
        return self.explain()

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
                signature=self.verdict.signature.to_doc(),
            )
        return doc


def verify(repo: str | Path, commit: str, anchor: Anchor) -> tuple[Signature, str]:
    """The Cell's own check of `commit`'s signature with `anchor`'s keys, and its subject."""
    raw = gitrepo.raw_commit(repo, commit)
    return check(raw, anchor.ssh, anchor.pgp), gitrepo.subject_of(raw)


def pgp_fingerprints(keys: bytes) -> list[str]:
    """The primary fingerprints in an armored key file (empty: none, or not a key file)."""
    with tempfile.TemporaryDirectory(prefix="cell-keys-") as tmp:
        home = Path(tmp)
        home.chmod(0o700)
        out = gpg(home, "--with-colons", "--show-keys", data=keys).stdout.decode(errors="replace")
        kill_agent(home)
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
            return _verdict(commit, subject, _REASON[sig.status], sig, a.where)
    untrusted = [(sig, a) for (sig, _), a in results if sig.status != "good"]
    if not untrusted:
        return _verdict(commit, subject, "trusted", first, anchor.where)
    sig, a = untrusted[0]
    changes = not any(own.same_keys(p) for p in parents) if parents else bool(own.ssh or own.pgp)
    if changes and not own.same_keys(a):
        mine, _ = verify(repo, commit, own)
        if mine.status == "good":
            return _verdict(commit, subject, "takeover", mine, a.where)
    return _verdict(commit, subject, "unknown-key", sig, a.where)


def _verdict(commit: str, subject: str, reason: Reason, sig: Signature, where: str) -> Verdict:
    return Verdict(commit=commit, subject=subject, reason=reason, signature=sig, anchor=where)


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


def refuse_unsafe_tree(repo: str | Path, commit: str) -> None:
    """A policy tree holds plain files only: a symlink, a submodule or an odd mode is refused."""
    bad = gitrepo.unsafe_entries(repo, commit)
    if bad:
        subject = gitrepo.subject(repo, commit)
        shown = "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise TrustRefused(
            "unsafe-tree",
            f'commit {commit[:12]} "{subject[:60]}": {shown}: a site-config tree holds plain '
            "files only (no symlinks, submodules or special modes); replace it by a file in a "
            "new signed commit",
            commit=commit,
            subject=subject,
        )

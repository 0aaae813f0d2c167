"""Commit signatures, checked by the Cell's own `ssh-keygen -Y verify` or `gpg --verify` over the
exact commit object (issue 10, class 1).

Never `git verify-commit` or `%G?`: git would run whatever `gpg.program` / `gpg.ssh.program` a
repository's config names, and judge with the allowed-signers file and keyring it points at. Here
the signed payload is the raw commit object without its signature header (what git signs), the
trusted keys are only the anchor's (written to a private temporary directory), and the programs are
found on the Cell's fixed PATH with an environment built from nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field

from policies import gitrepo
from policies.record import Record
from policies.signers import Signer, outside_window, parse_signers, ssh_key_of

Status = Literal["good", "bad", "unknown-key", "unsigned", "error"]
TWO_SIGNATURES = "the commit carries more than one signature header"
_TIME_OPTIONS = ("valid-after", "valid-before")


class Signature(Record):
    """What the signature check found on one commit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status = Field(description="good, bad, unknown-key, unsigned or error")
    format: str | None = Field(None, description="'ssh' or 'gpg' (None: unsigned)")
    signer: str | None = Field(
        None, description="The SSH principal or OpenPGP user id, when the key is known"
    )
    key: str | None = Field(
        None, description="The key's fingerprint (SHA256:... for SSH, hex for OpenPGP)"
    )
    detail: str = Field("", description="Why, in words, when the status needs explaining")

    def describe(self) -> str:
        if self.status == "unsigned":
            return "no signature"
        who = self.signer or "an unknown signer"
        return f"{who} ({self.format} key {self.key})" if self.key else f"{who} ({self.format})"


def _tool(name: str) -> str:
    found = shutil.which(name, path=gitrepo.PATH)
    return found or name


def _run(
    args: list[str], data: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            args,
            input=data,
            capture_output=True,
            timeout=60,
            env=gitrepo.environment(env),
            stdin=None if data is not None else subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return subprocess.CompletedProcess(args, 127, b"", str(e).encode())


def check(raw: bytes, ssh: bytes | None, pgp: bytes | None) -> Signature:
    """The signature on the raw commit object `raw`, against these trusted keys only."""
    headers = gitrepo.signature_headers(raw)
    fmt, armored = gitrepo.signature_block(raw)
    if fmt is None:
        return Signature(status="unsigned")
    key = ssh_key_of(armored) if fmt == "ssh" else None
    if len(headers) > 1:
        # Which header a verifier checks is its choice: two is never a signature we can judge.
        return Signature(status="bad", format=fmt, key=key, detail=TWO_SIGNATURES)
    data = gitrepo.payload(raw)
    if fmt == "ssh":
        return _ssh(ssh, armored, data)
    if fmt == "gpg":
        return _pgp(pgp, armored, data)
    return Signature(status="unknown-key", format=fmt, detail=f"{fmt} signatures are not supported")


def _ssh(trusted: bytes | None, armored: bytes, data: bytes) -> Signature:
    key = ssh_key_of(armored)
    if key is None:
        return Signature(status="bad", format="ssh", detail="the SSH signature block is unreadable")
    entries, _ = parse_signers(trusted or b"", "allowed_signers")
    listed = [s for s in entries if s.fingerprint == key and "cert-authority" not in s.options]
    if not listed:
        ca = any("cert-authority" in s.options for s in entries)
        note = "the Cell trusts keys, not SSH certificates (cert-authority lines)" if ca else ""
        return Signature(status="unknown-key", format="ssh", key=key, detail=note)
    principal = listed[0].principals[0]
    with tempfile.TemporaryDirectory(prefix="cell-sig-") as tmp:
        sig = Path(tmp, "sig")
        sig.write_bytes(armored)
        for entry in listed:
            # The window is judged below, at the present (the committer date is the signer's
            # word); ssh-keygen checks the key, the principal and the namespace.
            Path(tmp, "signers").write_text(_timeless(entry) + "\n")
            r = _run(
                [
                    _tool("ssh-keygen"),
                    "-Y",
                    "verify",
                    "-f",
                    str(Path(tmp, "signers")),
                    "-I",
                    entry.principals[0],
                    "-n",
                    "git",
                    "-s",
                    str(sig),
                ],
                data=data,
            )
            if r.returncode == 0:
                principal = entry.principals[0]
                break
        else:
            said = r.stderr.decode(errors="replace").strip().splitlines()
            return Signature(
                status="bad",
                format="ssh",
                signer=principal,
                key=key,
                detail=f"ssh-keygen: {said[-1]}" if said else "",
            )
    why = outside_window(entries, principal, key, datetime.now().astimezone())
    if why:
        return Signature(status="unknown-key", format="ssh", signer=principal, key=key, detail=why)
    return Signature(status="good", format="ssh", signer=principal, key=key)


def _timeless(s: Signer) -> str:
    """The entry without its validity window (judged separately, against now)."""
    opts = [o for o in s.options if o.split("=", 1)[0] not in _TIME_OPTIONS]
    return " ".join([",".join(s.principals), *([",".join(opts)] if opts else []), s.public_key])


def _pgp(trusted: bytes | None, armored: bytes, data: bytes) -> Signature:
    with tempfile.TemporaryDirectory(prefix="cell-pgp-") as tmp:
        home = Path(tmp, "gnupg")
        home.mkdir(mode=0o700)
        try:
            known = import_keys(home, trusted) if trusted else set()
            Path(tmp, "sig").write_bytes(armored)
            Path(tmp, "data").write_bytes(data)
            r = gpg(
                home, "--status-fd", "1", "--verify", str(Path(tmp, "sig")), str(Path(tmp, "data"))
            )
        finally:
            kill_agent(home)
    status: dict[str, list[str]] = {}
    for line in r.stdout.decode(errors="replace").splitlines():
        if line.startswith("[GNUPG:] "):
            word, *rest = line[9:].split(" ")
            status.setdefault(word, rest)

    def uid(word: str) -> str | None:
        return " ".join(status[word][1:]) or None

    if "BADSIG" in status:
        return Signature(status="bad", format="gpg", signer=uid("BADSIG"), key=status["BADSIG"][0])
    for word in ("EXPKEYSIG", "REVKEYSIG", "EXPSIG"):
        if word in status:
            return Signature(
                status="unknown-key",
                format="gpg",
                signer=uid(word),
                key=status[word][0],
                detail="the key expired or is revoked",
            )
    if "GOODSIG" in status and "VALIDSIG" in status:
        valid = status["VALIDSIG"]
        fpr, primary = valid[0], valid[9] if len(valid) > 9 else valid[0]
        if {fpr, primary} & known:
            return Signature(status="good", format="gpg", signer=uid("GOODSIG"), key=fpr)
    if "ERRSIG" in status:
        err = status["ERRSIG"]
        found = err[6] if len(err) > 6 and err[6] != "-" else err[0]
        return Signature(status="unknown-key", format="gpg", key=found)
    said = r.stderr.decode(errors="replace").strip().splitlines()
    return Signature(
        status="error",
        format="gpg",
        detail=f"gpg could not check it: {said[-1] if said else r.returncode}",
    )


def gpg(home: Path, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The Cell's own gpg, on a keyring of its own (`home`), never the host's."""
    return _run(
        [_tool("gpg"), "--homedir", str(home), "--batch", "--quiet", "--no-tty", *args],
        data=data,
        env={"GNUPGHOME": str(home)},
    )


def import_keys(home: Path, keys: bytes) -> set[str]:
    """Import armored keys into `home`; the fingerprints (primary and subkeys) it now holds."""
    gpg(home, "--import", data=keys)
    out = gpg(home, "--with-colons", "--list-keys").stdout.decode(errors="replace")
    return {ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:")}


def kill_agent(home: Path) -> None:
    if home.exists() and any(home.iterdir()):
        _run([_tool("gpgconf"), "--homedir", str(home), "--kill", "all"])

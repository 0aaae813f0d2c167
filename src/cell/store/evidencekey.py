"""The Cell's evidence key: an SSH key in the state directory that signs what the Cell vouches
for (the audit ledger's head; incident packs). Its public half, as an `allowed_signers` line, is
written into the ledger at enrolment and printed by `cell evidence-key`, so a customer or the hub
can pin it and check signatures offline with plain `ssh-keygen -Y verify`.

The key proves *which Cell* said something; it cannot prove that root on the box did not say it.
What survives a hostile root is what left the box: signed heads carried in the status document
(bridged to the hub) and checked later with `cell audit verify --anchor SEQ:HASH`.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from cell.store.statedir import State, StateError

KEY_DIR = "keys"
KEY = "evidence"
HEAD_NAMESPACE = "cell-ledger"
"""The ssh-keygen -Y namespace of ledger heads (incident packs use their own)."""
MANIFEST_NAMESPACE = "cell-manifest"
"""The namespace of the incident manifests the daemon publishes (`evidence/manifests/<id>`)."""


def principal(site: str) -> str:
    return f"cell-evidence@{site}"


def key_path(state: State) -> Path:
    return state.root / KEY_DIR / KEY


def ensure_key(state: State, site: str) -> str:
    """The evidence key's allowed_signers line, creating the key once (ed25519, no passphrase:
    the Cell signs unattended; the file is 0600 in a 0700 directory)."""
    path = key_path(state)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{KEY}.tmp")
        for p in (tmp, tmp.with_suffix(".tmp.pub")):
            p.unlink(missing_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal(site), "-f", str(tmp)])
        tmp.with_suffix(".tmp.pub").replace(path.with_suffix(".pub"))
        tmp.replace(path)
    return public_line(state)


def public_line(state: State) -> str:
    """`PRINCIPAL KEYTYPE KEY`: one line for an allowed_signers file."""
    try:
        keytype, key, comment = key_path(state).with_suffix(".pub").read_text().split(maxsplit=2)
    except (OSError, ValueError):
        raise StateError(
            f"{key_path(state)}: no evidence key (it is made by `cell enroll`)"
        ) from None
    return f"{comment.strip()} {keytype} {key}"


def has_key(state: State) -> bool:
    return key_path(state).exists()


def sign(state: State, data: bytes, namespace: str) -> str:
    """An armored SSH signature of `data` (what `ssh-keygen -Y sign` writes)."""
    out = _run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", str(key_path(state)), "-n", namespace], data
    )
    return out.decode()


def verify(line: str, data: bytes, signature: str, namespace: str) -> bool:
    """Is `signature` a signature of `data` by the key of allowed_signers `line`?"""
    who = line.split(maxsplit=1)[0]
    with tempfile.TemporaryDirectory(prefix="cell-verify-") as tmp:
        signers, sig = Path(tmp, "allowed_signers"), Path(tmp, "data.sig")
        signers.write_text(line + "\n")
        sig.write_text(signature)
        r = subprocess.run(
            [
                "ssh-keygen",
                "-Y",
                "verify",
                "-f",
                str(signers),
                "-I",
                who,
                "-n",
                namespace,
                "-s",
                str(sig),
            ],
            input=data,
            capture_output=True,
            timeout=30,
        )
    return r.returncode == 0


def _run(argv: list[str], data: bytes | None = None) -> bytes:
    try:
        r = subprocess.run(argv, input=data, capture_output=True, timeout=30, check=True)
    except subprocess.CalledProcessError as e:
        raise StateError(f"{argv[0]} failed: {e.stderr.decode(errors='replace').strip()}") from None
    except OSError as e:
        raise StateError(f"{argv[0]}: {e.strerror}") from None
    return r.stdout

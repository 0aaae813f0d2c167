"""Who may read an evidence pack: `site.yaml` `evidence.recipients`, checked before any use.

A recipient is what `age -r` takes: an age X25519 recipient (`age1...`, Bech32 with its
checksum) or an SSH public key (`ssh-ed25519 AAAA...` / `ssh-rsa AAAA...`, a comment allowed).
Checking the checksum and the key blob here means a typo is a validation error at the line of
site.yaml, not a pack that nobody can decrypt. Pure.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_AGE = re.compile(r"age1[02-9ac-hj-np-z]{58}")
SSH_TYPES = ("ssh-ed25519", "ssh-rsa")
EXPECTED = (
    "an age recipient (age1... from `age-keygen`) or an SSH public key "
    "(ssh-ed25519 AAAA... or ssh-rsa AAAA...)"
)


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _bech32_ok(text: str) -> bool:
    hrp, _, data = text.rpartition("1")
    values = [_CHARSET.index(c) for c in data]
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    return _polymod(expanded + values) == 1


def _ssh_ok(keytype: str, blob: str) -> str | None:
    try:
        raw = base64.b64decode(blob, validate=True)
        (n,) = struct.unpack(">I", raw[:4])
        inner = raw[4 : 4 + n].decode()
    except (binascii.Error, struct.error, UnicodeDecodeError):
        return "its key is not base64 of an SSH public key"
    if inner != keytype:
        return f"its key says {inner!r}, not {keytype!r}"
    if keytype == "ssh-ed25519" and len(raw) != 51:
        return "its key is not a 32-byte ed25519 key"
    return None


def recipient_error(value: str) -> str | None:
    """Why `value` is not a recipient `age` accepts (None: it is one)."""
    text = value.strip()
    if not text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        return f"{value!r} is empty or has control characters; expected {EXPECTED}"
    if text.startswith("age1"):
        if not _AGE.fullmatch(text):
            return f"{text[:20]!r}...: not an age recipient (age1 and 58 Bech32 characters)"
        if not _bech32_ok(text):
            return f"{text[:20]!r}...: the age recipient's checksum is wrong (a typo?)"
        return None
    parts = text.split()
    if parts[0] in SSH_TYPES:
        if len(parts) < 2:
            return f"{parts[0]} without a key; expected {EXPECTED}"
        why = _ssh_ok(parts[0], parts[1])
        return f"{parts[0]} key: {why}" if why else None
    if parts[0].startswith("AGE-SECRET-KEY-"):
        return "that is an age *identity* (a secret key), not a recipient: never put it in the repo"
    return f"{text[:30]!r}: unknown recipient format; expected {EXPECTED}"


def check_recipient(value: str) -> str:
    """A pydantic validator: `value` stripped, or ValueError with the reason."""
    why = recipient_error(value)
    if why:
        raise ValueError(why)
    return value.strip()

"""Parse an OpenSSH `allowed_signers` file: `PRINCIPALS [OPTIONS] KEYTYPE BASE64-KEY [COMMENT]`.

We parse it ourselves (rather than trusting `ssh-keygen` to skip junk) so that a malformed line is
a clear error with its line and column, and so that the console can show who is trusted.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from policies.errors import Diagnostic

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
_OPTION = re.compile(
    r'(cert-authority|namespaces="[^"\n]*"|valid-after="?[0-9TZ]+"?|valid-before="?[0-9TZ]+"?)'
)
_PRINCIPAL = re.compile(r"[A-Za-z0-9_.@+*?-]+")


@dataclass(frozen=True)
class Signer:
    """One trusted key: who (principals), how (options), and the key itself."""

    principals: tuple[str, ...]
    options: tuple[str, ...]
    keytype: str
    key: str
    line: int

    @property
    def public_key(self) -> str:
        return f"{self.keytype} {self.key}"

    @property
    def fingerprint(self) -> str:
        """SHA256:... as `ssh-keygen -l` and git's %GK print it."""
        digest = hashlib.sha256(base64.b64decode(self.key)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def window(self) -> tuple[datetime | None, datetime | None]:
        """(valid-after, valid-before) as instants; None where the line sets no bound."""
        bounds: dict[str, datetime | None] = {"valid-after": None, "valid-before": None}
        for opt in self.options:
            name, _, value = opt.partition("=")
            if name in bounds:
                bounds[name] = parse_time(value.strip('"'))
        return bounds["valid-after"], bounds["valid-before"]

    def matches(self, principal: str, fingerprint: str) -> bool:
        return self.fingerprint == fingerprint and any(
            fnmatch.fnmatchcase(principal, p) for p in self.principals
        )


def parse_time(text: str) -> datetime:
    """An allowed_signers time: YYYYMMDD[HHMM[SS]][Z]; Z is UTC, else local time (ssh-keygen(1))."""
    utc = text.endswith("Z")
    digits = text.removesuffix("Z")
    fmt = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}.get(len(digits))
    if fmt is None:
        raise ValueError(f"bad allowed_signers time {text!r}")
    t = datetime.strptime(digits, fmt)
    return t.replace(tzinfo=UTC) if utc else t.astimezone()


def outside_window(
    entries: list[Signer], principal: str, fingerprint: str, now: datetime
) -> str | None:
    """Why no entry for (`principal`, `fingerprint`) is valid at `now`; None when one is, or when
    no entry names the key (git already judged that case)."""
    why = None
    for s in entries:
        if not s.matches(principal, fingerprint):
            continue
        try:
            after, before = s.window()
        except ValueError as e:
            why = f"{e} (line {s.line})"
            continue
        if before is not None and now >= before:
            why = f"key expired on {before.isoformat()} (line {s.line} valid-before)"
        elif after is not None and now < after:
            why = f"key not yet valid until {after.isoformat()} (line {s.line} valid-after)"
        else:
            return None
    return why


def parse_signers(text: bytes, file: str) -> tuple[list[Signer], list[Diagnostic]]:
    """All signers and all problems of one `allowed_signers` file."""
    signers: list[Signer] = []
    errors: list[Diagnostic] = []
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return [], [
            Diagnostic(file, 1, 1, "not UTF-8 text (expected OpenSSH allowed_signers lines)")
        ]
    for lineno, raw in enumerate(decoded.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        col = raw.index(line[0]) + 1
        signer, problem = _parse_line(line, lineno)
        if problem:
            errors.append(Diagnostic(file, lineno, col, problem))
        elif signer:
            signers.append(signer)
    if not signers and not errors:
        errors.append(
            Diagnostic(
                file, 1, 1, "no signers: list at least one operator key (PRINCIPAL KEYTYPE KEY)"
            )
        )
    return signers, errors


def _parse_line(line: str, lineno: int) -> tuple[Signer | None, str | None]:
    if "\x00" in line or len(line) > 16384:
        return None, "line is not an allowed_signers entry (NUL byte or over 16 KiB)"
    principals, _, rest = line.partition(" ")
    if not all(_PRINCIPAL.fullmatch(p) for p in principals.split(",")):
        return (
            None,
            f"bad principals {principals[:60]!r}: expected comma-separated names like ana@example.eu",
        )
    options: list[str] = []
    rest = rest.lstrip()
    while rest and rest.split(" ", 1)[0] not in KEY_TYPES:
        m = _OPTION.match(rest)
        if not m:
            word = rest.split(" ", 1)[0][:40]
            return (
                None,
                f"unknown key type or option {word!r}: expected one of {', '.join(sorted(KEY_TYPES))}",
            )
        options.append(m.group())
        rest = rest[m.end() :].lstrip(", ")
    parts = rest.split()
    if len(parts) < 2:
        return None, "missing key: expected PRINCIPALS [OPTIONS] KEYTYPE BASE64-KEY"
    keytype, key = parts[0], parts[1]
    try:
        blob = base64.b64decode(key, validate=True)
        (n,) = struct.unpack(">I", blob[:4])
        embedded = blob[4 : 4 + n].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        return None, f"the {keytype} key is not valid base64 key data"
    if embedded != keytype:
        return None, f"key data is a {embedded[:40]!r} key but the line says {keytype!r}"
    return Signer(tuple(principals.split(",")), tuple(options), keytype, key, lineno), None


def ssh_key_of(armored: bytes) -> str | None:
    """The SHA256 fingerprint of the public key inside an SSHSIG block (PROTOCOL.sshsig)."""
    body = b"".join(ln for ln in armored.split(b"\n") if ln and not ln.startswith(b"-----"))
    try:
        blob = base64.b64decode(body, validate=True)
        if blob[:6] != b"SSHSIG":
            return None
        (n,) = struct.unpack(">I", blob[10:14])
        key = blob[14 : 14 + n]
    except (binascii.Error, struct.error):
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(key).digest()).decode().rstrip("=")

"""`cell incident verify PACK`: the checks of VERIFY.txt, each failure naming its file.

PACK is a pack folder or a tar of one (`--tar`). Against SHA256SUMS: a file missing, a file
whose sha256 differs, a file it does not list, a malformed line. SHA256SUMS.sig must be a good
signature by the evidence key (`--signers FILE` pins it; else the pack's own allowed_signers,
which only proves the pack is whole, not who made it). In a plain pack, the ledger chain and its
signed head, and each re-rendered commit against its manifest. An encrypted pack is checked for
custody; with `--identity FILE` it is decrypted and the pack inside is checked too.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

from cell.incident.errors import IncidentUsage
from cell.incident.pack import (
    ENCRYPTED,
    SIG,
    SIGNERS,
    SUMMARY,
    SUMS,
    listed,
    namespace,
    sha256_file,
)
from cell.incident.search import CHAIN, HEAD, HEAD_SIG
from cell.store import evidencekey
from cell.store.ledger import line_hash

_LINE = re.compile(r"([0-9a-f]{64})  (.+)")
_HEAD = re.compile(r"cell-ledger-head\nseq (\d+)\nhash ([0-9a-f]{64})\n")


def _sums(root: Path) -> tuple[dict[str, str], list[str]]:
    problems: list[str] = []
    try:
        text = (root / SUMS).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}, [f"{SUMS}: missing or unreadable"]
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = _LINE.fullmatch(line)
        if not m:
            problems.append(f"{SUMS}:{n}: not a sha256sum line")
            continue
        out[m.group(2)] = m.group(1)
    for name, want in sorted(out.items()):
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing (listed in {SUMS})")
        elif sha256_file(path) != want:
            problems.append(f"{name}: sha256 differs from {SUMS} (changed after it was made)")
    problems += [
        f"{n}: not listed in {SUMS} (added after it was made)" for n in listed(root) if n not in out
    ]
    return out, problems


def _signer(root: Path, pinned: Path | None) -> tuple[str | None, list[str]]:
    source = pinned or root / SIGNERS
    try:
        lines = [
            ln
            for ln in source.read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.startswith("#")
        ]
    except (OSError, UnicodeDecodeError):
        return None, [f"{source}: no allowed_signers line to check the signature with"]
    return lines[0], []


def _signature(root: Path, line: str, data: bytes, sig: Path, ns: str, what: str) -> list[str]:
    try:
        text = sig.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return [f"{sig.relative_to(root)}: missing or unreadable"]
    if not evidencekey.verify(line, data, text, ns):
        return [
            f"{sig.relative_to(root)}: not a good signature of {what} by {line.split(maxsplit=1)[0]} ({ns})"
        ]
    return []


def _ledger(root: Path, line: str) -> list[str]:
    problems: list[str] = []
    try:
        chain = (root / CHAIN).read_bytes().splitlines()
    except OSError:
        return [f"{CHAIN}: missing"]
    for i in range(1, len(chain)):
        try:
            prev = json.loads(chain[i]).get("prev")
        except ValueError:
            problems.append(f"{CHAIN}:{i + 1}: not a ledger entry")
            continue
        if prev != line_hash(chain[i - 1]):
            problems.append(
                f"{CHAIN}:{i + 1}: its prev is not the sha256 of line {i}: the chain is broken"
            )
    head_file = root / HEAD
    if not head_file.exists():
        return problems
    m = _HEAD.fullmatch(head_file.read_text(encoding="utf-8", errors="replace"))
    if not m:
        return [*problems, f"{HEAD}: not a ledger head"]
    if chain and line_hash(chain[-1]) != m.group(2):
        problems.append(f"{HEAD}: its hash is not the sha256 of the last line of {CHAIN}")
    if (root / HEAD_SIG).exists():
        problems += _signature(
            root, line, head_file.read_bytes(), root / HEAD_SIG, "cell-ledger", HEAD
        )
    return problems


def _commits(root: Path) -> list[str]:
    problems = []
    for manifest in sorted(root.glob("commits/*/manifest.json")):
        folder = manifest.parent
        try:
            files = json.loads(manifest.read_bytes())["files"]
        except (ValueError, KeyError):
            problems.append(f"{manifest.relative_to(root)}: unreadable")
            continue
        for name, want in sorted(files.items()):
            p = folder / name
            if not p.is_file() or sha256_file(p) != want:
                problems.append(f"{p.relative_to(root)}: does not match its commit's manifest.json")
    return problems


def _decrypt(root: Path, identity: Path, into: Path) -> Path | str:
    """The decrypted pack's folder, or why it cannot be decrypted."""
    tar = into / "pack.tar"
    try:
        r = subprocess.run(
            ["age", "--decrypt", "-i", str(identity), "-o", str(tar), str(root / ENCRYPTED)],
            capture_output=True,
            timeout=3600,
        )
    except OSError as e:
        return f"age cannot run: {e.strerror}"
    if r.returncode != 0:
        why = r.stderr.decode(errors="replace").strip().splitlines()
        return f"cannot be decrypted with {identity}: {why[-1] if why else 'age failed'}"
    return _untar(tar, into / "inner")


def _untar(tar: Path, into: Path) -> Path:
    into.mkdir()
    try:
        with tarfile.open(tar) as t:
            t.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise IncidentUsage(f"{tar}: not a tar of a pack ({e})") from None
    tops = [p for p in into.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise IncidentUsage(f"{tar}: expected one folder in it, found {len(tops)}")
    return tops[0]


def verify_pack(
    pack: Path, *, signers: Path | None = None, identity: Path | None = None
) -> list[str]:
    """Every problem found, each naming its file (empty: the pack is whole and signed)."""
    if pack.is_file():
        with tempfile.TemporaryDirectory(prefix="cell-verify-") as tmp:
            return verify_pack(_untar(pack, Path(tmp) / "x"), signers=signers, identity=identity)
    if not pack.is_dir():
        raise IncidentUsage(
            f"{pack}: no such pack (a folder written by `cell incident`, or its tar)"
        )
    _, problems = _sums(pack)
    line, more = _signer(pack, signers)
    problems += more
    try:
        site = str(json.loads((pack / SUMMARY).read_bytes())["site"])
    except (OSError, ValueError, KeyError):
        problems.append(f"{SUMMARY}: missing or unreadable")
        site = line.split()[0].partition("@")[2] if line else ""
    if line is None:
        return problems
    if line.split()[0] != f"cell-evidence@{site}":
        problems.append(
            f"{SIGNERS}: the key is {line.split()[0]}, not the evidence key of site {site}"
        )
    sums = (pack / SUMS).read_bytes() if (pack / SUMS).is_file() else b""
    problems += _signature(pack, line, sums, pack / SIG, namespace(site), SUMS)
    if (pack / ENCRYPTED).exists():
        if identity is not None:
            with tempfile.TemporaryDirectory(prefix="cell-verify-") as tmp:
                inner = _decrypt(pack, identity, Path(tmp))
                if isinstance(inner, str):
                    return [*problems, f"{ENCRYPTED}: {inner}"]
                problems += [f"{ENCRYPTED}: {p}" for p in verify_pack(inner, signers=signers)]
        return problems
    return problems + _ledger(pack, line) + _commits(pack)

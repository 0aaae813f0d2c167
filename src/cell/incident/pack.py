"""Writing an evidence pack: the files, `SHA256SUMS` over every one of them, `SHA256SUMS.sig` by
the Cell's evidence key (`ssh-keygen -Y sign -n cell-evidence@SITE`), `VERIFY.txt`, and on
request a deterministic tar (sorted names, fixed times, owners and modes: same pack, same bytes).

With `evidence.recipients` in site.yaml the pack is tarred and encrypted with `age` to those
recipients only, and the output folder holds just the encrypted tar and a signed SHA256SUMS of
it: anyone can check custody, only a recipient can read it. The plain pack exists only in the
scratch folder while it is built.

Everything is written into a scratch folder beside `--out` and renamed into place at the end:
an error (or a kill) leaves no half-written pack under the name asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cell.incident.errors import IncidentUsage, PackError
from cell.incident.model import Report
from cell.incident.verifytext import verify_text
from cell.status.topics import MANIFEST_SCHEMA, MANIFEST_TOPIC
from cell.store import evidencekey
from cell.store.statedir import State

SUMS = "SHA256SUMS"
SIG = "SHA256SUMS.sig"
SIGNERS = "allowed_signers"
SUMMARY = "summary.json"
VERIFY = "VERIFY.txt"
ENCRYPTED = "pack.tar.age"
UNSIGNED = (SUMS, SIG)
"""The two files SHA256SUMS does not list: itself and its signature."""


def namespace(site: str) -> str:
    """The ssh-keygen -Y namespace of evidence packs (ledger heads use `cell-ledger`)."""
    return f"cell-evidence@{site}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def listed(root: Path) -> list[str]:
    """Every file under `root` that SHA256SUMS lists, as sorted relative paths."""
    names = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(n for n in names if n not in UNSIGNED)


def render_sums(root: Path) -> bytes:
    """`sha256sum` text format: HASH, two spaces, the relative path; sorted by path."""
    return "".join(f"{sha256_file(root / n)}  {n}\n" for n in listed(root)).encode()


def tar_bytes_to(root: Path, dest: Path, top: str) -> None:
    """A deterministic tar of `root` under the folder `top`: sorted names, mtime 0, owner 0:0
    with no names, modes 0644/0755, GNU format. The same files always give the same bytes."""

    def entry(name: str, is_dir: bool, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
        info.mode, info.size, info.mtime = (0o755 if is_dir else 0o644), size, 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    with dest.open("wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.GNU_FORMAT) as t:
        t.addfile(entry(top, True))
        for rel in paths:
            p = root / rel
            if p.is_dir():
                t.addfile(entry(f"{top}/{rel}", True))
            else:
                with p.open("rb") as data:
                    t.addfile(entry(f"{top}/{rel}", False, p.stat().st_size), data)


def pack_id(sums: bytes) -> str:
    """A pack's id: the first 16 hex digits of the sha256 of its (plain) SHA256SUMS."""
    return hashlib.sha256(sums).hexdigest()[:16]


@dataclass(frozen=True)
class Written:
    out: Path
    id: str
    digest: str
    """sha256 of the SHA256SUMS in `out` (of the encrypted tar's, when encrypted)."""
    encrypted: bool
    findings: int


def _write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _seal(root: Path, state: State, site: str) -> bytes:
    """Write SHA256SUMS and its signature; return SHA256SUMS."""
    sums = render_sums(root)
    (root / SUMS).write_bytes(sums)
    (root / SIG).write_text(evidencekey.sign(state, sums, namespace(site)))
    return sums


def _age(recipients: list[str], src: Path, dest: Path) -> None:
    if shutil.which("age") is None:
        raise PackError("age is not installed (Debian package age): cannot encrypt the pack")
    argv = ["age", "--encrypt", "--output", str(dest)]
    for who in recipients:
        argv += ["--recipient", who]
    try:
        r = subprocess.run([*argv, str(src)], capture_output=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PackError(f"age failed: {e}") from None
    if r.returncode != 0:
        raise PackError(f"age failed: {r.stderr.decode(errors='replace').strip()}")


def check_out(out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise IncidentUsage(f"--out {out} already exists; name a new folder for the pack")
    if not out.parent.is_dir():
        raise IncidentUsage(f"--out {out}: folder {out.parent} does not exist")


def write_pack(
    out: Path,
    state: State,
    build: Callable[[Path], tuple[Report, dict[str, bytes]]],
    recipients: list[str],
) -> Written:
    """`build(folder)` runs the search, writing its large files into `folder` and returning
    the report and the other files; the pack is sealed there and renamed to `out` only when
    whole."""
    check_out(out)
    if not evidencekey.has_key(state):
        raise IncidentUsage(
            f"{state.root}: this Cell has no evidence key to sign the pack with; "
            "`cell enroll` or the first `cell run` makes it"
        )
    scratch = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700)
    try:
        plain = scratch / "plain"
        plain.mkdir()
        report, files = build(plain)
        site = report.site
        signers = f"{evidencekey.public_line(state)}\n".encode()
        summary = {
            "schema": "cell.incident.pack/1",
            "site": site,
            "since": report.since,
            "until": report.until,
            "findings": report.findings,
            "steps": {n: len(s.findings) for n, s in report.steps.items()},
            "encrypted": False,
        }
        _write(
            plain,
            {
                **files,
                SIGNERS: signers,
                SUMMARY: _json(summary),
                VERIFY: verify_text(site, encrypted=False).encode(),
            },
        )
        sums = _seal(plain, state, site)
        ident = pack_id(sums)
        final, digest = plain, hashlib.sha256(sums).hexdigest()
        if recipients:
            sealed = scratch / "sealed"
            sealed.mkdir()
            tar = scratch / "pack.tar"
            tar_bytes_to(plain, tar, f"incident-{ident}")
            _age(recipients, tar, sealed / ENCRYPTED)
            tar.unlink()
            shutil.rmtree(plain)
            summary.update(encrypted=True, id=ident, recipients=len(recipients))
            _write(
                sealed,
                {
                    SIGNERS: signers,
                    SUMMARY: _json(summary),
                    VERIFY: verify_text(site, encrypted=True, top=f"incident-{ident}").encode(),
                },
            )
            digest = hashlib.sha256(_seal(sealed, state, site)).hexdigest()
            final = sealed
        final.rename(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Written(out, ident, digest, bool(recipients), report.findings)


def _json(doc: object) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def manifest_doc(pack: Path) -> dict[str, object]:
    """What the daemon publishes on `evidence/manifests/<id>` (retained): the pack's id, window,
    digest and findings count, never its contents. Works on plain and encrypted packs."""
    summary = json.loads((pack / SUMMARY).read_bytes())
    sums = (pack / SUMS).read_bytes()
    ident = summary.get("id") or pack_id(sums)
    return {
        "schema": MANIFEST_SCHEMA,
        "id": ident,
        "site": summary["site"],
        "since": summary["since"],
        "until": summary["until"],
        "findings": summary["findings"],
        "encrypted": summary["encrypted"],
        "digest": hashlib.sha256(sums).hexdigest(),
    }


def manifest_topic(ident: str) -> str:
    return MANIFEST_TOPIC.format(id=ident)


def tar_pack(pack: Path, dest: Path) -> None:
    """`cell incident --tar FILE`: the deterministic tar of a written pack, renamed into place."""
    ident = manifest_doc(pack)["id"]
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        tar_bytes_to(pack, tmp, f"incident-{ident}")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)

"""The audit ledger: append-only JSON lines, each carrying the hash of the line before it.

    {"seq": 0, "time": "...", "kind": "enroll", ..., "prev": "000...0"}
    {"seq": 1, "time": "...", "kind": "apply",  ..., "prev": sha256(line 0)}

Kinds: enroll, apply, refusal, failure, rollback, reconcile, confirm, confirm-pending, drift,
drift-resolved, recovery, ledger-repair. `verify` finds an edited line (the next line's `prev`
no longer matches), a deleted or moved line (`seq` and `prev` break), and a cut-off end: after
every append, `ledger.head` records the last seq and hash, so removing the newest lines shows
too. A hash chain proves order and integrity against a careless or casual edit; someone who can
rewrite the whole file and its head can forge it, which is why the head is worth copying off
the box.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cell.gitops.journal import now_iso
from cell.gitops.state import State, atomic_write, dump

GENESIS = "0" * 64


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def append(state: State, kind: str, **fields: Any) -> dict[str, Any]:
    """Add one entry (under the ledger lock), fsync it, and move the head anchor to it."""
    state.root.mkdir(parents=True, exist_ok=True)
    with state.lock("ledger", timeout=30):
        seq, prev, repaired = _tail(state.ledger)
        if repaired is not None:
            seq, prev = _write(state, seq, prev, "ledger-repair", repaired)
        _write(state, seq, prev, kind, fields)
        return _last(state.ledger)


def _write(state: State, seq: int, prev: str, kind: str, fields: dict[str, Any]) -> tuple[int, str]:
    entry = {
        **fields,
        "seq": seq,
        "time": fields.get("time") or now_iso(),
        "kind": kind,
        "prev": prev,
    }
    line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    fd = os.open(state.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    digest = line_hash(line)
    atomic_write(state.ledger_head, dump({"seq": seq, "hash": digest}))
    return seq + 1, digest


def _tail(path: Path) -> tuple[int, str, dict[str, Any] | None]:
    """(next seq, hash of the last line, repair note). A line cut off by a crash mid-append was
    never acknowledged: it is removed, and the removal itself is recorded."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0, GENESIS, None
    repaired = None
    with path.open("rb+") as fh:
        fh.seek(max(0, size - 65536))
        chunk = fh.read()
        if chunk and not chunk.endswith(b"\n"):
            cut = chunk.rfind(b"\n") + 1
            fragment = chunk[cut:]
            fh.truncate(size - len(fragment))
            repaired = {"dropped_bytes": len(fragment), "dropped_sha256": line_hash(fragment)}
            chunk = chunk[:cut]
    lines = chunk.splitlines()
    if not lines:
        return 0, GENESIS, repaired
    last = lines[-1]
    try:
        seq = int(json.loads(last)["seq"]) + 1
    except (ValueError, KeyError, TypeError):
        seq = len(path.read_bytes().splitlines())
    return seq, line_hash(last), repaired


def _last(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - 65536))
        doc: dict[str, Any] = json.loads(fh.read().splitlines()[-1])
        return doc


def read(state: State) -> list[dict[str, Any]]:
    """Every entry that parses, in file order (history and log read this; `verify` judges it)."""
    try:
        raw = state.ledger.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in raw.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def last_of(state: State, kinds: tuple[str, ...], window: int = 1 << 18) -> dict[str, Any] | None:
    """The newest entry of one of `kinds` among the last `window` bytes (None: none there)."""
    try:
        with state.ledger.open("rb") as fh:
            fh.seek(max(0, state.ledger.stat().st_size - window))
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("kind") in kinds:
            return doc
    return None


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def verify(state: State) -> tuple[int, list[Problem]]:
    """(entries checked, problems). No problems: nothing was edited, removed or reordered."""
    try:
        raw = state.ledger.read_bytes()
    except FileNotFoundError:
        raw = b""
    problems: list[Problem] = []
    prev, expect = GENESIS, 0
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        problems.append(Problem(len(lines), "the last line is cut off (no newline at its end)"))
    for n, line in enumerate(lines, start=1):
        try:
            doc = json.loads(line)
            seq, claimed = int(doc["seq"]), str(doc["prev"])
        except (ValueError, KeyError, TypeError):
            problems.append(Problem(n, "not a ledger entry (unreadable JSON or no seq/prev)"))
            prev, expect = line_hash(line), expect + 1
            continue
        if claimed != prev:
            problems.append(
                Problem(
                    n,
                    f"entry seq {seq} does not follow the line before it (prev hash "
                    f"{claimed[:12]}, expected {prev[:12]}): an entry was edited, removed or moved",
                )
            )
        if seq != expect:
            problems.append(Problem(n, f"seq {seq} where {expect} was expected"))
        prev, expect = line_hash(line), seq + 1
    problems += _check_head(state, lines)
    return len(lines), problems


def _check_head(state: State, lines: list[bytes]) -> list[Problem]:
    try:
        head = json.loads(state.ledger_head.read_bytes())
        seq, digest = int(head["seq"]), str(head["hash"])
    except FileNotFoundError:
        if lines:
            return [Problem(0, f"{state.ledger_head} is missing: the end cannot be checked")]
        return []
    except (OSError, ValueError, KeyError, TypeError):
        return [Problem(0, f"{state.ledger_head} is unreadable: the end cannot be checked")]
    hashes = {line_hash(line): n for n, line in enumerate(lines, start=1)}
    if digest not in hashes:
        return [
            Problem(
                len(lines),
                f"the ledger's last anchored entry (seq {seq}, {digest[:12]}) is gone: entries "
                "were removed from the end, or the last one was edited",
            )
        ]
    # One entry past the anchor is the window between an entry's fsync and the head's rename.
    if hashes[digest] < len(lines) - 1:
        return [
            Problem(
                hashes[digest] + 1,
                f"{len(lines) - hashes[digest]} entries follow the last anchored one (seq {seq}): "
                "appended without the Cell",
            )
        ]
    return []

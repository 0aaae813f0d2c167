"""The audit ledger: append-only JSON lines, each carrying the hash of the line before it.

    {"seq": 0, "time": "...", "kind": "enroll", ..., "prev": "000...0"}
    {"seq": 1, "time": "...", "kind": "apply",  ..., "prev": sha256(line 0)}

Kinds: enroll, reset, apply, refusal, failure, rollback, reconcile, confirm, confirm-pending,
drift, drift-resolved, recovery, ledger-repair, ledger-ack, evidence-pack (an incident pack was
written), evidence-key (the first `cell run` of a Cell never enrolled made its key). `verify`
finds an edited line (the next line's `prev` no longer matches), a deleted or moved line (`seq`
and `prev` break), and a cut-off end: before every append, `ledger.head` records the seq and
hash of the entry being written, so removing the newest lines shows, and so does any entry
appended past the head. A hash chain proves order and integrity against a careless or casual edit; someone who can
rewrite the whole file and its head can forge it, which is why the head is worth copying off
the box. So each head is signed with the Cell's evidence key (`cell.store.evidencekey`; its public
line is in the enroll entry): the daemon carries the signed head in its status, which goes to the
hub, and `cell audit verify --anchor SEQ:HASH` checks the ledger against a head kept elsewhere.
Every repair stays a problem in `verify` until an operator acknowledges it (`cell audit ack SEQ`),
and a ledger that records applies while the journal is gone is a problem too: deleting the Cell's
state must not make it forget what it applied.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cell.store import evidencekey
from cell.store.statedir import State, dump, full_disk
from policies.clock import now_iso
from policies.fsutil import atomic_write

GENESIS = "0" * 64


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


# Repairs `append` makes and records. A crash leaves the first two; the others mean the file or
# its head was changed outside the Cell, and `verify` keeps reporting them.
CRASH = ("cut-fragment", "unwritten-anchored")
OUTSIDE = ("added-newline", "head-mismatch")


def append(state: State, kind: str, **fields: Any) -> dict[str, Any]:
    """Add one entry (under the ledger lock): anchor it in the head, then append and fsync it.
    A full filesystem is a `StateFull` (the caller reports first and records second)."""
    try:
        return _append(state, kind, fields)
    except OSError as e:
        raise full_disk(state.ledger, e) or e from None


def _append(state: State, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    state.root.mkdir(parents=True, exist_ok=True)
    with state.lock("ledger", timeout=30):
        seq, prev, repaired = _tail(state.ledger)
        _check_anchor(state, seq, prev, repaired)
        if repaired:
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
    digest = line_hash(line)
    # The head first: killed in between, the head names an entry the file lacks (which the next
    # append records), never an entry the head does not vouch for.
    atomic_write(state.ledger_head, dump(_signed_head(state, seq, digest)))
    fd = os.open(state.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return seq + 1, digest


LIVE_KINDS = ("apply", "rollback", "reconcile")
"""Entries that record a commit made live."""


def head_text(seq: int, digest: str) -> bytes:
    """What a head signature signs."""
    return f"cell-ledger-head\nseq {seq}\nhash {digest}\n".encode()


def _signed_head(state: State, seq: int, digest: str) -> dict[str, Any]:
    head: dict[str, Any] = {"seq": seq, "hash": digest}
    if evidencekey.has_key(state):
        head["sig"] = evidencekey.sign(state, head_text(seq, digest), evidencekey.HEAD_NAMESPACE)
    return head


def read_head(state: State) -> dict[str, Any] | None:
    """The ledger's head: {seq, hash} and, once the Cell has an evidence key, `sig` (an SSH
    signature of `head_text`) and `key` (the allowed_signers line to check it with)."""
    try:
        head = json.loads(state.ledger_head.read_bytes())
        doc: dict[str, Any] = {"seq": int(head["seq"]), "hash": str(head["hash"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if head.get("sig"):
        doc["sig"] = str(head["sig"])
        if evidencekey.has_key(state):
            doc["key"] = evidencekey.public_line(state)
    return doc


def ack(state: State, seq: int, note: str) -> dict[str, Any]:
    """An operator's acknowledgement of the repair recorded at `seq` (which `verify` then stops
    reporting). Refused when there is no such repair."""
    entries = read(state)
    if not any(e.get("seq") == seq and e.get("kind") == "ledger-repair" for e in entries):
        from cell.errors import UsageError

        raise UsageError(f"{state.ledger}: no ledger-repair entry with seq {seq} to acknowledge")
    done: dict[str, Any] = append(state, "ledger-ack", repair=seq, note=note)
    return done


def since_reset(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries after the last recorded reset of this Cell's trust."""
    for i in range(len(entries) - 1, -1, -1):
        if entries[i].get("kind") == "reset":
            return entries[i + 1 :]
    return entries


def last_live(state: State) -> dict[str, Any] | None:
    """The newest entry that made a commit live, since the last reset (None: never applied)."""
    entries: list[dict[str, Any]] = since_reset(read(state))
    live = [e for e in entries if e.get("kind") in LIVE_KINDS and e.get("commit")]
    return live[-1] if live else None


def _tail(path: Path) -> tuple[int, str, dict[str, Any]]:
    """(next seq, hash of the last line, repair note). A line cut off by a crash mid-append was
    never acknowledged: it is removed. A whole entry that only lost its newline keeps its place
    and gets the newline back. Either repair is recorded."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0, GENESIS, {}
    repaired: dict[str, Any] = {}
    with path.open("rb+") as fh:
        fh.seek(max(0, size - 65536))
        chunk = fh.read()
        if chunk and not chunk.endswith(b"\n"):
            cut = chunk.rfind(b"\n") + 1
            fragment = chunk[cut:]
            if _entry(fragment) is not None:
                fh.seek(0, os.SEEK_END)
                fh.write(b"\n")
                repaired = {"causes": ["added-newline"], "line_sha256": line_hash(fragment)}
                chunk += b"\n"
            else:
                fh.truncate(size - len(fragment))
                repaired = {
                    "causes": ["cut-fragment"],
                    "dropped_bytes": len(fragment),
                    "dropped_sha256": line_hash(fragment),
                }
                chunk = chunk[:cut]
            fh.flush()
            os.fsync(fh.fileno())
    lines = chunk.splitlines()
    if not lines:
        return 0, GENESIS, repaired
    last = lines[-1]
    doc = _entry(last)
    seq = int(doc["seq"]) + 1 if doc is not None else len(path.read_bytes().splitlines())
    return seq, line_hash(last), repaired


def _entry(line: bytes) -> dict[str, Any] | None:
    """A ledger entry (JSON object with seq and prev), or None."""
    try:
        doc = json.loads(line)
        int(doc["seq"]), str(doc["prev"])
    except (ValueError, KeyError, TypeError):
        return None
    return doc if isinstance(doc, dict) else None


def _check_anchor(state: State, seq: int, prev: str, repaired: dict[str, Any]) -> None:
    """Note in `repaired` a head that does not name the file's last entry."""
    try:
        head = json.loads(state.ledger_head.read_bytes())
        hseq, digest = int(head["seq"]), str(head["hash"])
    except FileNotFoundError:
        if seq == 0:
            return
        hseq, digest = -1, "missing"
    except (OSError, ValueError, KeyError, TypeError):
        hseq, digest = -1, "unreadable"
    if digest == prev:
        return
    cause = "unwritten-anchored" if hseq == seq else "head-mismatch"
    repaired.setdefault("causes", []).append(cause)
    repaired.update(head_seq=hseq, head_hash=digest, last_seq=seq - 1)


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


def has_id(state: State, entry_id: str) -> bool:
    """Does an entry carry `"id": entry_id`? The newest 256 KiB first, then the whole file."""
    recent = _find_id(state, entry_id, 1 << 18)
    return recent if recent is not None else bool(_find_id(state, entry_id, None))


def _find_id(state: State, entry_id: str, window: int | None) -> bool | None:
    """True: found; False: not in the whole file; None: not in the window (look further)."""
    try:
        with state.ledger.open("rb") as fh:
            size = state.ledger.stat().st_size
            fh.seek(0 if window is None else max(0, size - window))
            data = fh.read()
    except FileNotFoundError:
        return False
    needle = json.dumps(entry_id).encode()
    for line in data.splitlines():
        if needle in line and (doc := _entry(line)) is not None and doc.get("id") == entry_id:
            return True
    return False if window is None or size <= window else None


def verify(state: State, anchors: tuple[tuple[int, str], ...] = ()) -> tuple[int, list[Any]]:
    """`cell audit verify`: see `cell.store.audit.verify`."""
    from cell.store import audit

    return audit.verify(state, anchors)

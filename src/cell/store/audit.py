"""Judging the audit ledger (`cell audit verify`): the hash chain, the head and its signature,
unacknowledged repairs, anchors kept elsewhere, and applies the journal forgot. The ledger's
writing side is `cell.store.ledger`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cell.store import evidencekey
from cell.store.ledger import GENESIS, OUTSIDE, _entry, head_text, last_live, line_hash
from cell.store.statedir import State


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def verify(state: State, anchors: tuple[tuple[int, str], ...] = ()) -> tuple[int, list[Problem]]:
    """(entries checked, problems). No problems: nothing was edited, removed or reordered, every
    repair is acknowledged, the head's signature holds, and each anchor (SEQ, HASH) kept
    elsewhere is still in the chain."""
    try:
        raw = state.ledger.read_bytes()
    except FileNotFoundError:
        raw = b""
    problems: list[Problem] = []
    repairs: dict[int, tuple[int, dict[str, Any]]] = {}
    hashes_at: dict[int, str] = {}
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
        if doc.get("kind") == "ledger-repair":
            repairs[seq] = (n, doc)
        if doc.get("kind") == "ledger-ack":
            repairs.pop(int(doc.get("repair", -1)), None)
        hashes_at[seq] = line_hash(line)
        prev, expect = line_hash(line), seq + 1
    for seq, (n, doc) in sorted(repairs.items()):
        outside = [c for c in doc.get("causes", ()) if c in OUTSIDE]
        why = (
            f"a change made outside the Cell ({', '.join(outside)})"
            if outside
            else f"what a crash leaves ({', '.join(doc.get('causes', ()))}), or an attacker"
        )
        problems.append(
            Problem(
                n,
                f"seq {seq} records a repair of {why}: {_repair_text(doc)}; once you know why, "
                f"`cell audit ack {seq}`",
            )
        )
    for seq, digest in anchors:
        if hashes_at.get(seq) != digest:
            found = hashes_at.get(seq)
            problems.append(
                Problem(
                    0,
                    f"anchor seq {seq} ({digest[:12]}) is not in the ledger"
                    + (f" (seq {seq} is now {found[:12]})" if found else "")
                    + ": entries were removed or rewritten since that head was kept",
                )
            )
    if not lines and (state.journal.exists() or state.trust.exists()):
        problems.append(
            Problem(
                0,
                f"{state.ledger} is missing or empty, but this Cell has a journal or an "
                "enrollment: the ledger was deleted",
            )
        )
    problems += _check_head(state, lines)
    problems += _check_signature(state, lines)
    problems += _check_journal(state)
    return len(lines), problems


def _check_signature(state: State, lines: list[bytes]) -> list[Problem]:
    """The head's signature, against the evidence key the ledger recorded at enrolment."""
    keys = [d["evidence_key"] for d in map(_entry, lines) if d and d.get("evidence_key")]
    if not keys:
        return []
    try:
        head = json.loads(state.ledger_head.read_bytes())
        seq, digest, sig = int(head["seq"]), str(head["hash"]), head.get("sig")
    except (OSError, ValueError, KeyError, TypeError):
        return []  # _check_head reports it
    if not sig:
        return [Problem(0, f"{state.ledger_head} is not signed, but this Cell has an evidence key")]
    if not evidencekey.verify(
        keys[-1], head_text(seq, digest), str(sig), evidencekey.HEAD_NAMESPACE
    ):
        return [
            Problem(
                0,
                f"{state.ledger_head}: the signature of seq {seq} does not verify with the "
                "evidence key recorded at enrolment: the head was written without the Cell's key",
            )
        ]
    return []


def _check_journal(state: State) -> list[Problem]:
    """Applies in the ledger and no journal: the Cell's state was deleted (which must not make a
    stranger's commit a "first apply")."""
    if state.journal.exists():
        return []
    live = last_live(state)
    if live is None:
        return []
    return [
        Problem(
            int(live.get("seq", 0)) + 1,
            f"the ledger records that {str(live['commit'])[:12]} was made live "
            f"({live.get('kind')}, seq {live.get('seq')}) but {state.journal} is missing: the "
            "Cell's state was deleted",
        )
    ]


def _repair_text(doc: dict[str, Any]) -> str:
    causes = doc.get("causes", ())
    if "cut-fragment" in causes:
        return (
            f"{doc.get('dropped_bytes')} bytes of an entry cut off mid-write were dropped "
            f"(sha256 {str(doc.get('dropped_sha256'))[:12]})"
        )
    if "unwritten-anchored" in causes:
        return (
            f"the head named seq {doc.get('head_seq')}, whose entry is not in the ledger: a kill "
            "between the two writes, or the newest entry deleted"
        )
    if "head-mismatch" in causes:
        return (
            f"the head named seq {doc.get('head_seq')} ({str(doc.get('head_hash'))[:12]}) "
            f"but the ledger ended at seq {doc.get('last_seq')}: entries removed from the "
            "end, or the head edited"
        )
    return f"the last entry ({str(doc.get('line_sha256'))[:12]}) had lost its final newline"


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
        last = _entry(lines[-1]) if lines else None
        if last is not None and int(last["seq"]) + 1 == seq:
            return [
                Problem(
                    len(lines) + 1,
                    f"entry seq {seq} ({digest[:12]}) is anchored in the head but not in the "
                    "ledger: the newest entry was removed, or the Cell was killed while "
                    "appending it (the next append records which)",
                )
            ]
        return [
            Problem(
                len(lines),
                f"the ledger's last anchored entry (seq {seq}, {digest[:12]}) is gone: entries "
                "were removed from the end, or the last one was edited",
            )
        ]
    # The head is written before the entry: no entry may ever follow the anchored one.
    if hashes[digest] < len(lines):
        return [
            Problem(
                hashes[digest] + 1,
                f"{len(lines) - hashes[digest]} entries follow the last anchored one (seq {seq}): "
                "appended without the Cell",
            )
        ]
    return []

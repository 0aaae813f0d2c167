"""The audit ledger: a hash chain that `cell audit verify` checks. Any edit, deletion or
reordering of entries is found, and a line cut off by a crash is repaired on the next append."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cell.store import ledger
from cell.store.statedir import State


@pytest.fixture
def state(tmp_path: Path) -> State:
    s = State(tmp_path / "state")
    for i in range(5):
        ledger.append(s, "apply", commit=f"{i:040x}", note=f"entry {i}")
    return s


def lines(s: State) -> list[bytes]:
    return s.ledger.read_bytes().splitlines()


def rewrite(s: State, new: list[bytes]) -> None:
    s.ledger.write_bytes(b"".join(line + b"\n" for line in new))


def problems(s: State) -> list[str]:
    return [str(p) for p in ledger.verify(s)[1]]


def test_intact_chain(state: State) -> None:
    assert ledger.verify(state) == (5, [])
    docs = [json.loads(line) for line in lines(state)]
    assert [d["seq"] for d in docs] == list(range(5))
    assert docs[0]["prev"] == ledger.GENESIS
    assert all(d["prev"] == ledger.line_hash(lines(state)[i]) for i, d in enumerate(docs[1:]))


def test_edit_is_found(state: State) -> None:
    ls = lines(state)
    ls[2] = ls[2].replace(b"entry 2", b"entry 9")
    rewrite(state, ls)
    assert any(p.startswith("line 4:") and "edited, removed or moved" in p for p in problems(state))


def test_editing_the_last_entry_is_found(state: State) -> None:
    ls = lines(state)
    ls[-1] = ls[-1].replace(b"entry 4", b"entry 9")
    rewrite(state, ls)
    assert any("last anchored entry" in p for p in problems(state))


def test_deleting_an_entry_is_found(state: State) -> None:
    ls = lines(state)
    rewrite(state, ls[:2] + ls[3:])
    found = problems(state)
    assert any("edited, removed or moved" in p for p in found)
    assert any("seq 3 where 2 was expected" in p for p in found)


def test_deleting_the_newest_entries_is_found(state: State) -> None:
    rewrite(state, lines(state)[:3])
    assert any("removed from the end" in p for p in problems(state))


def test_reordering_is_found(state: State) -> None:
    ls = lines(state)
    ls[1], ls[2] = ls[2], ls[1]
    rewrite(state, ls)
    assert len(problems(state)) >= 2


def test_a_line_cut_off_by_a_crash_is_repaired_and_recorded(state: State) -> None:
    with state.ledger.open("ab") as fh:
        fh.write(b'{"seq":5,"kind":"app')
    assert any("cut off" in p for p in problems(state))
    ledger.append(state, "apply", commit="f" * 40)
    assert ledger.verify(state) == (7, [])
    docs = [json.loads(line) for line in lines(state)]
    assert docs[5]["kind"] == "ledger-repair" and docs[5]["dropped_bytes"] == 20
    assert docs[6]["kind"] == "apply"


def test_cli_audit_verify(state: State) -> None:
    cmd = [sys.executable, "-m", "cell.cli", "audit", "verify", "--state-dir", str(state.root)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and "5 entries, chain intact" in r.stdout
    ls = lines(state)
    rewrite(state, [ls[0], ls[2], ls[1], *ls[3:]])
    r = subprocess.run([*cmd, "--json"], capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["problems"] and "Traceback" not in r.stderr


def _forge(s: State, kind: str = "apply") -> bytes:
    """A correctly chained entry written without the Cell (no head update)."""
    last = lines(s)[-1]
    doc = {"seq": json.loads(last)["seq"] + 1, "kind": kind, "prev": ledger.line_hash(last)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def test_one_forged_entry_after_the_head_is_found(state: State) -> None:
    rewrite(state, [*lines(state), _forge(state)])
    assert any("1 entries follow the last anchored one" in p for p in problems(state))


def test_a_stripped_newline_keeps_the_last_entry_and_is_reported(state: State) -> None:
    before = lines(state)
    state.ledger.write_bytes(state.ledger.read_bytes().rstrip(b"\n"))
    ledger.append(state, "apply", commit="f" * 40)
    after = lines(state)
    assert after[:5] == before  # the real last entry is still there
    docs = [json.loads(line) for line in after]
    assert docs[5]["kind"] == "ledger-repair" and docs[5]["causes"] == ["added-newline"]
    assert docs[6]["kind"] == "apply"
    found = problems(state)
    assert len(found) == 1 and "lost its final newline" in found[0], found


def test_a_deleted_ledger_and_head_are_found_when_a_journal_exists(state: State) -> None:
    state.journal.write_text("{}")
    state.ledger.unlink()
    state.ledger_head.unlink()
    assert any("missing or empty" in p for p in problems(state))


def test_a_kill_between_anchor_and_append_is_said_then_recorded(
    state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(fd: int, data: bytes) -> int:
        raise KeyboardInterrupt  # stands in for SIGKILL: the head is written, the entry is not

    with monkeypatch.context() as m:
        m.setattr(os, "write", killed)
        with pytest.raises(KeyboardInterrupt):
            ledger.append(state, "apply", commit="e" * 40)
    assert any("anchored in the head but not in the ledger" in p for p in problems(state))
    ledger.append(state, "apply", commit="f" * 40)
    assert ledger.verify(state) == (7, [])
    docs = [json.loads(line) for line in lines(state)]
    assert docs[5]["kind"] == "ledger-repair" and docs[5]["causes"] == ["unwritten-anchored"]


def test_an_edited_head_is_recorded_at_the_next_append(state: State) -> None:
    rewrite(state, lines(state)[:3])  # the newest two removed, then the Cell appends
    ledger.append(state, "apply", commit="f" * 40)
    found = problems(state)
    assert any("head-mismatch" in p and "entries removed from the end" in p for p in found)

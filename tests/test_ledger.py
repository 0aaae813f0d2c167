"""The audit ledger: a hash chain that `cell audit verify` checks. Any edit, deletion or
reordering of entries is found, and a line cut off by a crash is repaired on the next append."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cell.gitops import ledger
from cell.gitops.state import State


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

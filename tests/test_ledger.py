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
from cell.store.journal import Journal, write_journal
from cell.store.statedir import State


@pytest.fixture
def state(tmp_path: Path) -> State:
    s = State(tmp_path / "state")
    for i in range(5):
        ledger.append(s, "apply", commit=f"{i:040x}", note=f"entry {i}")
    write_journal(s, Journal())  # a Cell that applied has a journal (its absence is a finding)
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
    docs = [json.loads(line) for line in lines(state)]
    assert docs[5]["kind"] == "ledger-repair" and docs[5]["dropped_bytes"] == 20
    assert docs[6]["kind"] == "apply"
    # A crash and an attacker who cut the line look alike: the repair stays a problem ...
    assert [p for p in problems(state) if "seq 5 records a repair" in p and "20 bytes" in p]
    ledger.ack(state, 5, "power cut during an apply")
    assert ledger.verify(state) == (8, [])  # ... until an operator acknowledges it


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
    docs = [json.loads(line) for line in lines(state)]
    assert docs[5]["kind"] == "ledger-repair" and docs[5]["causes"] == ["unwritten-anchored"]
    assert [p for p in problems(state) if "seq 5 records a repair" in p]
    ledger.ack(state, 5, "killed during an append")
    assert ledger.verify(state) == (8, [])


def test_an_edited_head_is_recorded_at_the_next_append(state: State) -> None:
    rewrite(state, lines(state)[:3])  # the newest two removed, then the Cell appends
    ledger.append(state, "apply", commit="f" * 40)
    found = problems(state)
    assert any("head-mismatch" in p and "entries removed from the end" in p for p in found)


def test_deleting_the_newest_entry_is_not_forgotten_at_the_next_append(state: State) -> None:
    """The attack: delete the newest line; the next append 'repairs' it. It stays visible."""
    rewrite(state, lines(state)[:-1])
    ledger.append(state, "apply", commit="f" * 40)
    found = problems(state)
    assert any("records a repair" in p and "newest entry deleted" in p for p in found), found


def test_a_head_kept_elsewhere_catches_a_rewritten_end(state: State) -> None:
    """The attack: delete the newest lines and rewrite the head to match. Only an anchor kept
    off the box (the status carries the head to the hub) shows it."""
    kept = json.loads(state.ledger_head.read_bytes())
    rewrite(state, lines(state)[:-2])
    last = lines(state)[-1]
    state.ledger_head.write_text(json.dumps({"seq": 2, "hash": ledger.line_hash(last)}))
    assert problems(state) == []  # consistent on its own ...
    found = [str(p) for p in ledger.verify(state, ((kept["seq"], kept["hash"]),))[1]]
    assert any(f"anchor seq {kept['seq']}" in p and "not in the ledger" in p for p in found)


def test_a_forged_head_fails_the_evidence_key(tmp_path: Path) -> None:
    """With an evidence key (made at enrolment), a head written without it does not verify."""
    from cell.store import evidencekey

    s = State(tmp_path / "state")
    key = evidencekey.ensure_key(s, "t-site")
    ledger.append(s, "enroll", evidence_key=key)
    ledger.append(s, "apply", commit="a" * 40)
    write_journal(s, Journal())
    assert problems(s) == []
    head = ledger.read_head(s)
    assert head is not None and head["key"] == key
    assert evidencekey.verify(
        key, ledger.head_text(head["seq"], head["hash"]), head["sig"], "cell-ledger"
    )
    rewrite(s, lines(s)[:-1])
    s.ledger_head.write_text(json.dumps({"seq": 0, "hash": ledger.line_hash(lines(s)[-1])}))
    assert any("not signed" in p for p in problems(s))
    forged = {"seq": 0, "hash": ledger.line_hash(lines(s)[-1]), "sig": head["sig"]}
    s.ledger_head.write_text(json.dumps(forged))
    assert any("does not verify" in p for p in problems(s))


def test_applies_without_a_journal_are_a_finding(state: State) -> None:
    state.journal.unlink()
    assert any("journal.json is missing" in p and "state was deleted" in p for p in problems(state))


def test_cli_anchor_and_head(state: State) -> None:
    cmd = [sys.executable, "-m", "cell.cli", "audit"]
    where = ["--state-dir", str(state.root), "--json"]
    head = json.loads(subprocess.run([*cmd, "head", *where], capture_output=True, text=True).stdout)
    anchor = f"{head['seq']}:{head['hash']}"
    ok = subprocess.run(
        [*cmd, "verify", "--anchor", anchor, *where], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout
    rewrite(state, lines(state)[:-1])
    gone = subprocess.run(
        [*cmd, "verify", "--anchor", anchor, *where], capture_output=True, text=True
    )
    assert gone.returncode == 3 and f"anchor seq {head['seq']}" in gone.stdout
    bad = subprocess.run(
        [*cmd, "verify", "--anchor", "nine", *where], capture_output=True, text=True
    )
    assert (
        bad.returncode == 2 and "expected SEQ:HASH" in bad.stderr and "Traceback" not in bad.stderr
    )


def test_the_first_cell_run_of_a_cell_never_enrolled_makes_the_evidence_key(
    tmp_path: Path,
) -> None:
    """`cell run` on a box nobody enrolled yet makes the key and records it, so its heads are
    signed; enrolling later still works and names the same key. A key the ledger names and
    the box lost is not replaced: the unsigned head stays a finding."""
    from cell.gitops.enroll import first_key
    from cell.store import evidencekey

    s = State(tmp_path / "state")
    ledger.append(s, "refusal", reason="not-enrolled")  # an apply tried before enrolment
    key = first_key(s, "t-site")
    assert key is not None and key.startswith("cell-evidence@t-site ssh-ed25519 ")
    assert first_key(s, "t-site") is None, "made once"
    entry = ledger.read(s)[-1]
    assert (entry["kind"], entry["evidence_key"], entry["by"]) == ("evidence-key", key, "cell run")
    head = ledger.read_head(s)
    assert head is not None and evidencekey.verify(
        key, ledger.head_text(head["seq"], head["hash"]), head["sig"], "cell-ledger"
    )
    assert problems(s) == []

    signers = tmp_path / "signers"
    signers.write_text(f"ana@ops {evidencekey.public_line(s).split(' ', 1)[1]}\n")
    enroll = ["enroll", "--signers", str(signers), "--state-dir", str(s.root), "--json"]
    r = subprocess.run([sys.executable, "-m", "cell.cli", *enroll], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["evidence_key"] == key

    evidencekey.key_path(s).unlink()  # an insider removes the key
    assert first_key(s, "t-site") is None, "a lost key is not replaced"
    ledger.append(s, "apply", commit="b" * 40)
    assert any("not signed" in p for p in problems(s))

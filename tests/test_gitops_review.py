"""Review findings on the GitOps trust gate, with real keys and real signed commits.

Dual signature headers, a backdated commit by an expired key, a takeover only where the commit
changes the trust files, and a dirty-tree refusal that names the commit.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cell.lab import LabInfo
from policies.trust import TrustRefused, check_range, gate
from test_drift import Watch, lab  # noqa: F401  (the drift lab's fixture)
from test_lifecycle import Site
from test_trust import Keys, SignedRepo, refuse_dirty


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[Keys]:
    k = Keys(tmp_path / "keys")
    yield k
    k.close()


@pytest.fixture
def repo(tmp_path: Path, keys: Keys) -> SignedRepo:
    return SignedRepo(tmp_path / "repo", keys, "t-review-q8")


def _ssh_sign(repo: SignedRepo, key: str, message: str, env: dict[str, str] | None = None) -> str:
    repo.git("add", "-A")
    signing = str(repo.keys.root / key)
    args = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={signing}", "commit", "-S", "-q"]
    repo.git(*args, "--allow-empty", "-m", message, env=env)
    return repo.head()


def test_dual_signature_headers_are_refused_whatever_the_host_keyring(
    repo: SignedRepo, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake SSH block first (so the format looks like SSH) and a real OpenPGP signature by a key
    # in the process's default keyring, which no trust file lists.
    base = repo.head()
    fpr, _ = keys.gpg_key("Mallory <m@evil>")
    repo.toggle_ntp(on=False)
    repo.git("add", "-A")
    tree = repo.git("write-tree")
    body = (
        f"tree {tree}\nparent {base}\nauthor Ana Operator <ana@ops> 1700000000 +0000\n"
        "committer Ana Operator <ana@ops> 1700000000 +0000\n"
    )
    fake_ssh = (
        "gpgsig-sha256 -----BEGIN SSH SIGNATURE-----\n U1NIU0lH\n -----END SSH SIGNATURE-----\n"
    )
    msg = "\nsneaky change\n"
    sig = subprocess.run(
        ["gpg", "--homedir", str(keys.gnupg), "--batch", "-u", fpr, "--armor", "--detach-sign"],
        input=(body + msg).encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    gpgsig = "gpgsig " + sig.rstrip("\n").replace("\n", "\n ") + "\n"
    sha = (
        subprocess.run(
            ["git", "-C", str(repo.root), "hash-object", "-t", "commit", "-w", "--stdin"],
            input=(body + fake_ssh + gpgsig + msg).encode(),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    monkeypatch.setenv("GNUPGHOME", str(keys.gnupg))  # as root's ~/.gnupg would be
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, base, sha, None)
    assert e.value.reason == "bad-signature"
    assert "more than one signature header" in str(e.value) and sha[:12] in str(e.value)


def test_the_host_keyring_never_vouches_for_a_gpg_commit(
    repo: SignedRepo, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = repo.head()
    fpr, _ = keys.gpg_key()
    repo.toggle_ntp(on=False)
    sha = repo.commit("gpg, host keyring only", gpg=fpr)
    monkeypatch.setenv("GNUPGHOME", str(keys.gnupg))
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, base, sha, None)
    assert e.value.reason == "unknown-key"


def test_an_expired_key_cannot_backdate_its_commit(repo: SignedRepo, keys: Keys) -> None:
    pub = (keys.root / "rui.pub").read_text().split()
    expired = f'rui@ops namespaces="git",valid-before="20200101" {pub[0]} {pub[1]}\n'
    (repo.root / "allowed_signers").write_text(keys.signers("ana") + expired)
    base = repo.commit("ana: rui's key expired on 2020-01-01", key="ana")
    repo.toggle_ntp(on=False)
    date = "2019-06-01T12:00:00+0000"
    sha = _ssh_sign(repo, "rui", "rui, backdated", {"GIT_COMMITTER_DATE": date})
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, base, sha, None)
    assert e.value.reason == "unknown-key" and "key expired on 2020-01-01" in str(e.value)
    assert e.value.verdict is not None and e.value.verdict.signature.signer == "rui@ops"


def test_a_key_not_yet_valid_is_refused_now(repo: SignedRepo, keys: Keys) -> None:
    pub = (keys.root / "rui.pub").read_text().split()
    later = f'rui@ops namespaces="git",valid-after="20990101Z" {pub[0]} {pub[1]}\n'
    (repo.root / "allowed_signers").write_text(keys.signers("ana") + later)
    base = repo.commit("ana: rui from 2099", key="ana")
    repo.toggle_ntp(on=False)
    date = "2099-06-01T12:00:00+0000"
    sha = _ssh_sign(repo, "rui", "rui, from the future", {"GIT_COMMITTER_DATE": date})
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, base, sha, None)
    assert e.value.reason == "unknown-key" and "not yet valid" in str(e.value)


def test_a_key_within_its_window_is_trusted(repo: SignedRepo, keys: Keys) -> None:
    pub = (keys.root / "rui.pub").read_text().split()
    ok = f'rui@ops namespaces="git",valid-after="20200101",valid-before="20990101" {pub[0]} {pub[1]}\n'
    (repo.root / "allowed_signers").write_text(keys.signers("ana") + ok)
    base = repo.commit("ana: rui until 2099", key="ana")
    repo.toggle_ntp(on=False)
    *_, v = gate(repo.root, base, _ssh_sign(repo, "rui", "rui, today"), None)
    assert v.ok and v.signature.signer == "rui@ops"


def test_old_history_merged_in_is_unknown_key_not_takeover(repo: SignedRepo, keys: Keys) -> None:
    r0 = repo.head()
    (repo.root / "allowed_signers").write_text(keys.signers("ana"))
    base = repo.commit("ana removes rui", key="ana")
    repo.git("checkout", "-q", "-b", "side", r0)
    repo.toggle_ntp(on=False)
    side = repo.commit("rui on an old branch", key="rui")
    repo.git("checkout", "-q", "main")
    signing = str(keys.root / "ana")
    repo.git("-c", "gpg.format=ssh", "-c", f"user.signingkey={signing}", "merge", "-S", "-q",
             "--no-edit", "side")  # fmt: skip
    verdicts = {v.commit: v.reason for v in check_range(repo.root, base, repo.head(), None)}
    assert verdicts[side] == "unknown-key"


def test_dirty_refusal_names_the_commit(repo: SignedRepo) -> None:
    head = repo.head()
    (repo.root / "notes.txt").write_text("x")
    with pytest.raises(TrustRefused) as e:
        refuse_dirty(repo.root)
    assert e.value.reason == "dirty"
    assert f'commit {head[:12]} "site config"' in str(e.value)
    doc = e.value.to_json()
    assert doc["commit"] == head and doc["signature"] is None and doc["subject"] == "site config"


@pytest.fixture
def applied(lab: tuple[str, LabInfo, Keys], tmp_path: Path) -> Site:
    site_id, _, keys = lab
    s = Site(tmp_path, keys, site_id)
    s.apply()
    return s


@pytest.mark.root
def test_watch_sees_a_commit_on_a_branch_made_after_it_started(applied: Site) -> None:
    site = applied
    w = Watch(site)
    try:
        site.repo.git("checkout", "-q", "-b", "ops/fix2")
        time.sleep(0.5)  # the checkout alone is no drift: let the watcher see it first
        site.repo.toggle_ntp(on=False)
        t0 = time.monotonic()
        sha = site.repo.commit("unsigned, on a new branch", key=None)
        e = w.next(lambda e: e["kind"] == "repo" and e["status"] == "drift", timeout=2.0)
        assert time.monotonic() - t0 < 2.0
        assert any(sha[:12] in f["what"] for f in e["new"]), e
    finally:
        w.close()


def test_a_kill_between_journal_and_ledger_is_recorded_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cell.deploy.install import Report
    from cell.gitops import lifecycle
    from cell.status.apply import Changes
    from cell.store import ledger
    from cell.store.journal import Entry, Journal, read_journal
    from cell.store.statedir import State

    state = State(tmp_path / "state")
    ledger.append(state, "enroll")
    entry = Entry(
        commit="c" * 40,
        subject="a change",
        signature={"status": "good"},
        digests={},
        rendered="r" * 64,
        site="s",
        netns=None,
        layout={},
        repo="/repo",
    )
    monkeypatch.setattr(lifecycle, "prepare", lambda *a: None)
    monkeypatch.setattr(lifecycle, "install", lambda *a, **k: Report(broker="ok", dnsmasq="ok"))
    monkeypatch.setattr(lifecycle, "_changes", lambda *a: Changes())
    real = ledger.append

    def killed(state: State, kind: str, **fields: object) -> dict[str, object]:
        if kind == "apply":
            raise KeyboardInterrupt  # SIGKILL right after the journal's rename
        return real(state, kind, **fields)

    monkeypatch.setattr(ledger, "append", killed)
    with pytest.raises(KeyboardInterrupt):
        nothing: Any = None  # the target and policy: the stubs above never look at them
        lifecycle._run(state, Journal(), lifecycle.Plan("apply", entry, nothing, {}, nothing))
    monkeypatch.setattr(ledger, "append", real)
    journal = read_journal(state)
    assert journal.applied is not None and journal.applied.id == entry.id
    assert [e["kind"] for e in ledger.read(state)] == ["enroll"]

    notes: list[str] = []
    assert lifecycle.recover(state, journal, notes) is False
    docs = ledger.read(state)
    assert [e["kind"] for e in docs] == ["enroll", "apply"]
    assert docs[-1]["id"] == entry.id and docs[-1]["commit"] == entry.commit
    assert docs[-1]["time"] == entry.time and notes and ledger.verify(state) == (2, [])
    lifecycle.recover(state, journal, [])  # once only
    assert len(ledger.read(state)) == 2

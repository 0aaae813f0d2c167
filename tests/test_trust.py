"""The trust gate with real keys (ssh-keygen, gpg) and real signed commits, verified by git.

`Keys` and `SignedRepo` are shared with the other GitOps tests (lifecycle, drift, crash).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EXAMPLE
from policies import gitmirror, gitrepo
from policies.trust import Anchor, TrustRefused, check_range, gate


class Keys:
    """SSH keys made with ssh-keygen (and, on demand, one OpenPGP key made with gpg)."""

    def __init__(self, root: Path, names: tuple[str, ...] = ("ana", "rui", "eve")) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for name in names:
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(root / name)],
                check=True,
            )
        self.gnupg = root / "gnupg"

    def line(self, name: str) -> str:
        pub = (self.root / f"{name}.pub").read_text().split()
        return f'{name}@ops namespaces="git" {pub[0]} {pub[1]}\n'

    def signers(self, *names: str) -> str:
        return "# operators\n" + "".join(self.line(n) for n in names)

    def fingerprint(self, name: str) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-lf", str(self.root / f"{name}.pub")],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.split()[1]

    def gpg_key(self, uid: str = "Gil <gil@ops>") -> tuple[str, bytes]:
        """(fingerprint, armored public key) of a fresh OpenPGP signing key."""
        self.gnupg.mkdir(mode=0o700, exist_ok=True)
        env = {**os.environ, "GNUPGHOME": str(self.gnupg)}
        subprocess.run(
            [
                "gpg",
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                uid,
                "ed25519",
                "sign",
                "never",
            ],
            env=env,
            capture_output=True,
            check=True,
        )
        out = subprocess.run(
            ["gpg", "--with-colons", "--list-keys", uid], env=env, capture_output=True, text=True
        ).stdout
        fpr = next(ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:"))
        armored = subprocess.run(
            ["gpg", "--armor", "--export", fpr], env=env, capture_output=True, check=True
        ).stdout
        return fpr, armored

    def close(self) -> None:
        if self.gnupg.exists():
            subprocess.run(["gpgconf", "--homedir", str(self.gnupg), "--kill", "all"], check=False)


class SignedRepo:
    """A site-config repo (the example site under a test id) with commits signed for real."""

    def __init__(self, root: Path, keys: Keys, site_id: str = "lisbon-01") -> None:
        self.root, self.keys = root, keys
        shutil.copytree(EXAMPLE, root)
        site = (root / "site.yaml").read_text()
        site = site.replace("id: lisbon-01", f"id: {site_id}")
        (root / "site.yaml").write_text(site.replace("sites/lisbon-01/", f"sites/{site_id}/"))
        (root / "allowed_signers").write_text(keys.signers("ana", "rui"))
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.name", "Ana Operator")
        self.git("config", "user.email", "ana@ops")
        self.commit("site config", key="ana")

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        r = subprocess.run(
            ["git", "-C", str(self.root), *args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def edit(self, name: str, old: str, new: str) -> None:
        text = (self.root / name).read_text()
        assert old in text, f"{old!r} not in {name}"
        (self.root / name).write_text(text.replace(old, new, 1))

    def commit(self, message: str, *, key: str | None = "ana", gpg: str | None = None) -> str:
        self.git("add", "-A")
        if gpg:
            args = ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={gpg}", "commit", "-S"]
            env = {"GNUPGHOME": str(self.keys.gnupg)}
        elif key:
            signing = str(self.keys.root / key)
            args = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={signing}", "commit", "-S"]
            env = {}
        else:
            args, env = ["commit"], {}
        self.git(*args, "-q", "--allow-empty", "-m", message, env=env)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def toggle_ntp(self, *, on: bool) -> None:
        """The variant a change flips: the cameras' NTP flow (a firewall change)."""
        line = "  - {from: cameras, to: gateway, service: ntp}\n"
        text = (self.root / "network.yaml").read_text()
        if on and line not in text:
            text = text.replace(
                "  - {from: cameras, to: gateway, service: dns}",
                line.rstrip() + "\n  - {from: cameras, to: gateway, service: dns}",
            )
        if not on:
            assert line in text
            text = text.replace(line, "")
        (self.root / "network.yaml").write_text(text)


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[Keys]:
    k = Keys(tmp_path / "keys")
    yield k
    k.close()


@pytest.fixture
def repo(tmp_path: Path, keys: Keys) -> SignedRepo:
    return SignedRepo(tmp_path / "repo", keys)


def enrolled(keys: Keys, *names: str) -> Anchor:
    return Anchor(keys.signers(*names).encode(), None, "the enrolled file")


# --- one commit, first apply: judged against the enrolled file --------------------------------


def test_good_ssh_commit_is_trusted(repo: SignedRepo, keys: Keys) -> None:
    (v,) = gate(repo.root, None, repo.head(), enrolled(keys, "ana"))
    assert v.ok and v.signature.signer == "ana@ops" and v.signature.format == "ssh"
    assert v.signature.key == keys.fingerprint("ana")


def test_unsigned_commit_is_refused(repo: SignedRepo, keys: Keys) -> None:
    repo.toggle_ntp(on=False)
    sha = repo.commit("drop ntp", key=None)
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, None, sha, enrolled(keys, "ana"))
    assert e.value.reason == "unsigned" and e.value.exit_code == 2
    assert sha[:12] in str(e.value) and '"drop ntp"' in str(e.value)


def test_bad_signature_names_the_key_found(repo: SignedRepo, keys: Keys) -> None:
    raw = repo.git("cat-file", "commit", "HEAD")
    forged = raw.replace("site config", "site config, quietly changed")
    sha = subprocess.run(
        ["git", "-C", str(repo.root), "hash-object", "-t", "commit", "-w", "--stdin"],
        input=forged + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, None, sha, enrolled(keys, "ana"))
    assert e.value.reason == "bad-signature"
    assert keys.fingerprint("ana") in str(e.value)  # read from the signature block itself


def test_unknown_key_is_refused(repo: SignedRepo, keys: Keys) -> None:
    sha = repo.commit("from eve", key="eve")
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, None, sha, enrolled(keys, "ana", "rui"))
    assert e.value.reason == "unknown-key"
    assert keys.fingerprint("eve") in str(e.value) and "the enrolled file" in str(e.value)


def test_first_apply_trusts_the_enrolled_file_not_the_repo(repo: SignedRepo, keys: Keys) -> None:
    # The repo lists ana and rui; the Cell was enrolled with rui only. Ana's commit is trusted by
    # its own file alone: relative to the enrolled file, ana adds herself.
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, None, repo.head(), enrolled(keys, "rui"))
    assert e.value.reason == "takeover"
    (v,) = gate(repo.root, None, repo.head(), enrolled(keys, "ana"))
    assert v.ok


def test_takeover_new_key_adding_itself(repo: SignedRepo, keys: Keys) -> None:
    base = repo.head()
    (repo.root / "allowed_signers").write_text(keys.signers("ana", "rui", "eve"))
    sha = repo.commit("add eve", key="eve")
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, base, sha, None)
    assert e.value.reason == "takeover"
    assert e.value.verdict is not None and e.value.verdict.signature.signer == "eve@ops"
    assert "takeover" in str(e.value) and base[:12] in str(e.value)


def test_takeover_on_first_apply_against_the_enrolled_file(repo: SignedRepo, keys: Keys) -> None:
    (repo.root / "allowed_signers").write_text(keys.signers("eve"))
    sha = repo.commit("eve owns it now", key="eve")
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, None, sha, enrolled(keys, "ana"))
    assert e.value.reason == "takeover"


def test_rotation_by_a_trusted_key_then_the_new_key_signs(repo: SignedRepo, keys: Keys) -> None:
    base = repo.head()
    (repo.root / "allowed_signers").write_text(keys.signers("ana", "eve"))
    repo.commit("ana adds eve, drops rui", key="ana")
    repo.toggle_ntp(on=False)
    by_eve = repo.commit("eve's first change", key="eve")
    repo.toggle_ntp(on=True)
    by_rui = repo.commit("rui, removed", key="rui")
    verdicts = check_range(repo.root, base, by_rui, None)
    assert [v.reason for v in verdicts] == ["trusted", "trusted", "unknown-key"]
    assert verdicts[1].commit == by_eve and verdicts[1].signature.signer == "eve@ops"


def test_a_bad_commit_is_not_laundered_by_a_good_one_on_top(repo: SignedRepo, keys: Keys) -> None:
    base = repo.head()
    repo.toggle_ntp(on=False)
    bad = repo.commit("sneaky", key=None)
    repo.toggle_ntp(on=True)
    repo.commit("looks innocent", key="ana")
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, base, repo.head(), None)
    assert e.value.reason == "unsigned" and bad[:12] in str(e.value)
    assert "commit 1 of 2" in str(e.value)


def test_rewritten_history_is_refused(repo: SignedRepo, keys: Keys) -> None:
    repo.toggle_ntp(on=False)
    applied = repo.commit("applied", key="ana")
    repo.git("reset", "-q", "--hard", "HEAD~1")
    repo.toggle_ntp(on=True)
    repo.edit("site.yaml", "name: Lisbon warehouse", "name: Lisbon")
    other = repo.commit("rewritten", key="ana")
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, applied, other, None)
    assert e.value.reason == "not-descendant"


def refuse_dirty(repo: Path) -> None:
    """The lifecycle's check: the clone fetched into a mirror, its work tree judged from there."""
    gitmirror.sync(repo.parent / "mirror.git", repo, clean=True)


def test_dirty_tree_is_refused(repo: SignedRepo) -> None:
    refuse_dirty(repo.root)
    repo.edit("site.yaml", "name: Lisbon warehouse", "name: Lisbon")
    (repo.root / "notes.txt").write_text("x")
    with pytest.raises(TrustRefused) as e:
        refuse_dirty(repo.root)
    assert e.value.reason == "dirty" and "site.yaml" in str(e.value)


def test_no_enrollment_no_apply(repo: SignedRepo) -> None:
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, None, repo.head(), None)
    assert e.value.reason == "not-enrolled" and "cell enroll" in str(e.value)


def test_gpg_signatures(repo: SignedRepo, keys: Keys) -> None:
    fpr, armored = keys.gpg_key()
    base = repo.head()
    repo.toggle_ntp(on=False)
    sha = repo.commit("gpg signed, key not trusted", gpg=fpr)
    with pytest.raises(TrustRefused) as e:
        gate(repo.root, base, sha, None)
    assert e.value.reason == "unknown-key" and fpr[-16:] in str(e.value)

    repo.git("reset", "-q", "--hard", base)
    (repo.root / "allowed_signers.asc").write_bytes(armored)
    repo.commit("ana trusts gil's OpenPGP key", key="ana")
    repo.toggle_ntp(on=False)
    sha = repo.commit("gil's change", gpg=fpr)
    *_, v = gate(repo.root, base, sha, None)
    assert v.ok and v.signature.format == "gpg" and v.signature.signer == "Gil <gil@ops>"
    assert v.signature.key == fpr


def test_cli_refusal_exits_2_and_is_recorded(repo: SignedRepo, keys: Keys, tmp_path: Path) -> None:
    state = tmp_path / "state"
    signers = tmp_path / "enroll"
    signers.write_text(keys.signers("ana"))
    base = [sys.executable, "-m", "cell.cli"]
    r = subprocess.run(
        [*base, "enroll", "--signers", str(signers), "--state-dir", str(state)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    repo.toggle_ntp(on=False)
    sha = repo.commit("unsigned change", key=None)
    r = subprocess.run(
        [
            *base,
            "apply",
            "--repo",
            str(repo.root),
            "--state-dir",
            str(state),
            "--netns",
            "cell-no-such-ns",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["refused"]["reason"] == "unsigned"
    assert doc["refused"]["commit"] == sha
    ledger = [json.loads(line) for line in (state / "ledger.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in ledger] == ["enroll", "refusal"]
    assert ledger[-1]["commit"] == sha and ledger[-1]["reason"] == "unsigned"
    assert not (state / "journal.json").exists()
    assert gitrepo.head(repo.root) == sha


def test_cli_enroll_with_openpgp_keys(keys: Keys, tmp_path: Path) -> None:
    fpr, armored = keys.gpg_key()
    (tmp_path / "signers").write_text(keys.signers("ana"))
    (tmp_path / "keys.asc").write_bytes(armored)
    (tmp_path / "junk.asc").write_text("not a key\n")
    base = [
        sys.executable,
        "-m",
        "cell.cli",
        "enroll",
        "--signers",
        str(tmp_path / "signers"),
        "--state-dir",
        str(tmp_path / "state"),
    ]
    r = subprocess.run(
        [*base, "--pgp-keys", str(tmp_path / "junk.asc")], capture_output=True, text=True
    )
    assert r.returncode == 2 and "no OpenPGP public key" in r.stderr
    r = subprocess.run(
        [*base, "--pgp-keys", str(tmp_path / "keys.asc"), "--json"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pgp"] == [fpr]
    assert (tmp_path / "state/trust/allowed_signers.asc").read_bytes() == armored
    (tmp_path / "bad").write_text("ana@ops ssh-ed25519 !!!\n")
    r = subprocess.run(
        [*base[:-4], "--signers", str(tmp_path / "bad"), "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and f"{tmp_path / 'bad'}:1:" in r.stderr

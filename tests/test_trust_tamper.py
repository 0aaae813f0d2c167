"""Issue 10, class 1: whoever can write the clone's `.git` (but holds no trusted key) cannot steer
the trust gate. Each attack is first shown to work on a naive `git` in the clone, then `cell apply`
must refuse it (exit 2, a ledger refusal) or apply exactly the signed bytes, and the attacker's
programs must never run.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cell.lab import LabInfo
from policies import gitrepo
from policies.trust import Anchor, gate
from test_lifecycle import Site, lab, live  # noqa: F401  (the lifecycle lab's fixture)
from test_trust import Keys

pytestmark = pytest.mark.root


@pytest.fixture
def site(lab: tuple[str, LabInfo, Keys], tmp_path: Path) -> Iterator[Site]:
    site_id, _, keys = lab
    yield Site(tmp_path, keys, site_id)


def _liar(tmp: Path, marker: Path) -> Path:
    """A program that records that it ran and says what a verifier (or a filter) wants to hear."""
    script = tmp / "liar.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"echo ran >> {marker}\n"
        'echo "Good \\"git\\" signature for ana@ops with ED25519 key SHA256:x"\n'
        'echo "[GNUPG:] GOODSIG 0000000000000000 Ana"\n'
        "exit 0\n"
    )
    script.chmod(0o755)
    return script


def _naive(repo: Path, *args: str) -> str:
    """git as the old trust gate ran it: the clone's own config and objects."""
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def _refused(site: Site, before: bytes, info: LabInfo, reason: str) -> None:
    refused = site.apply(code=2)
    assert "Traceback" not in refused["stderr"]
    last = site.ledger()[-1]
    assert last["kind"] == "refusal" and last["reason"] == reason, last
    assert live(info) == before


def test_a_configured_signing_program_is_never_asked(
    site: Site, lab: tuple[str, LabInfo, Keys], tmp_path: Path
) -> None:
    _, info, _ = lab
    site.apply()
    before = live(info)
    site.repo.toggle_ntp(on=False)
    sha = site.repo.commit("eve's change", key="eve")
    marker = tmp_path / "liar-ran"
    liar = _liar(tmp_path, marker)
    for key in ("gpg.ssh.program", "gpg.program", "gpg.openpgp.program", "gpg.x509.program"):
        site.repo.git("config", key, str(liar))
    site.repo.git("config", "gpg.ssh.allowedSignersFile", "/dev/null")
    assert _naive(site.repo.root, "log", "-1", "--format=%G?", sha).strip() == "G"  # git is fooled
    # Whatever else the clone's .git could make a git in it run: none of it runs either.
    for key in ("core.fsmonitor", "core.sshCommand", "core.pager", "core.editor"):
        site.repo.git("config", key, str(liar))
    hooks = site.repo.root / ".git/hooks"
    for hook in ("post-merge", "post-checkout", "reference-transaction", "pre-auto-gc"):
        (hooks / hook).write_text(liar.read_text())
        (hooks / hook).chmod(0o755)
    marker.unlink()
    _refused(site, before, info, "unknown-key")
    assert site.ledger()[-1]["commit"] == sha
    assert not marker.exists(), "the Cell ran a program the clone's config named"


def test_replace_refs_cannot_swap_an_ancestors_trust_files(
    site: Site, lab: tuple[str, LabInfo, Keys]
) -> None:
    _, info, keys = lab
    site.apply()
    base = site.repo.head()
    before = live(info)
    site.repo.toggle_ntp(on=False)
    site.repo.commit("eve's change", key="eve")
    old = site.repo.git("rev-parse", f"{base}:allowed_signers")
    evil = subprocess.run(
        ["git", "-C", str(site.repo.root), "hash-object", "-w", "--stdin"],
        input=keys.signers("ana", "eve"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    site.repo.git("replace", old, evil)
    assert "eve@ops" in _naive(site.repo.root, "show", f"{base}:allowed_signers")
    _refused(site, before, info, "unknown-key")


def _forge_loose(objects: Path, sha: str, content: bytes) -> None:
    """A loose object named `sha` whose content does not hash to it."""
    path = objects / sha[:2] / sha[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zlib.compress(b"blob %d\0" % len(content) + content))


def test_alternates_cannot_supply_forged_objects(
    site: Site, lab: tuple[str, LabInfo, Keys], tmp_path: Path
) -> None:
    """Ana signs a change; the attacker swaps one of its blobs (through an alternate object
    store) for a version with a wide-open flow. The signature is over the names, not the bytes."""
    _, info, _ = lab
    site.apply()
    before = live(info)
    site.repo.toggle_ntp(on=False)
    sha = site.repo.commit("ana's change", key="ana")
    blob = site.repo.git("rev-parse", f"{sha}:network.yaml")
    text = (site.repo.root / "network.yaml").read_bytes()
    forged = text.replace(b"service: dns}", b"service: dns}\n  - {from: cameras, to: wan}", 1)
    assert forged != text and hashlib.sha1(b"blob %d\0" % len(forged) + forged).hexdigest() != blob
    git_dir = site.repo.root / ".git"
    (git_dir / "objects" / blob[:2] / blob[2:]).unlink()
    _forge_loose(tmp_path / "alt", blob, forged)
    (git_dir / "objects/info/alternates").write_text(f"{tmp_path / 'alt'}\n")
    assert (
        b"to: wan"
        in subprocess.run(
            ["git", "-C", str(site.repo.root), "cat-file", "blob", blob], capture_output=True
        ).stdout
    )  # naive git reads the forgery
    _refused(site, before, info, "bad-objects")
    assert not list((site.state / "store/trees").glob(f"{sha}*"))


def test_filters_and_attributes_do_not_rewrite_what_is_applied(
    site: Site, lab: tuple[str, LabInfo, Keys], tmp_path: Path
) -> None:
    _, info, _ = lab
    site.apply()
    site.repo.toggle_ntp(on=False)
    sha = site.repo.commit("ana's change", key="ana")
    marker = tmp_path / "filter-ran"
    rewrite = tmp_path / "rewrite.sh"
    rewrite.write_text(
        f"#!/bin/sh\necho ran >> {marker}\nsed 's/service: dns}}/service: dns}}\\n  - {{from: cameras, to: wan}}/'\n"
    )
    rewrite.chmod(0o755)
    git_dir = site.repo.root / ".git"
    (git_dir / "info").mkdir(exist_ok=True)
    (git_dir / "info/attributes").write_text("* filter=evil\nallowed_signers export-ignore\n")
    site.repo.git("config", "filter.evil.smudge", str(rewrite))
    site.repo.git("config", "filter.evil.clean", str(rewrite))
    archived = subprocess.run(
        ["git", "-C", str(site.repo.root), "archive", sha, "network.yaml"], capture_output=True
    ).stdout
    assert b"to: wan" in archived  # the old export applied the filter
    marker.unlink()
    doc = site.apply()
    assert doc["commit"] == sha
    stored = site.state / "store/trees" / sha
    for name in ("network.yaml", "allowed_signers", "site.yaml", "mqtt.yaml"):
        signed = subprocess.run(
            ["git", "-C", str(site.repo.root), "cat-file", "blob", f"{sha}:{name}"],
            capture_output=True,
            check=True,
        ).stdout
        assert (stored / name).read_bytes() == signed, name
    assert not marker.exists(), "the Cell ran a filter the clone's config named"
    assert live(info) == site.expected_table(sha)


@pytest.mark.parametrize("kind", ["symlink", "submodule"])
def test_a_symlink_or_submodule_in_the_tree_is_a_refused_policy(
    site: Site, lab: tuple[str, LabInfo, Keys], kind: str
) -> None:
    _, info, _ = lab
    site.apply()
    before = live(info)
    if kind == "symlink":
        (site.repo.root / "notes.yaml").symlink_to("/etc/shadow")
        sha = site.repo.commit(f"ana adds a {kind}", key="ana")
    else:
        head = site.repo.head()
        site.repo.git("update-index", "--add", "--cacheinfo", f"160000,{head},vendor")
        (site.repo.root / "vendor").mkdir()  # an unpopulated submodule, as a clone has it
        signing = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={site.repo.keys.root / 'ana'}"]
        site.repo.git(*signing, "commit", "-S", "-q", "-m", "ana adds a submodule")
        sha = site.repo.head()
        assert "160000" in site.repo.git("ls-tree", sha, "vendor")
    _refused(site, before, info, "unsafe-tree")
    refused = site.ledger()[-1]
    assert refused["commit"] == sha
    assert ("symbolic link" if kind == "symlink" else "submodule") in refused["message"]


def test_the_callers_git_environment_does_not_leak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, site: Site
) -> None:
    """GIT_DIR, GIT_CONFIG_* and HOME of whoever runs `cell` do not redirect the gate."""
    keys, head = site.repo.keys, site.repo.head()
    other = tmp_path / "other"
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "gpg.ssh.program")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "/bin/true")
    monkeypatch.setenv("HOME", str(tmp_path))
    (v,) = gate(site.repo.root, None, head, Anchor(keys.signers("ana").encode(), None, "x"))
    assert v.ok and gitrepo.head(site.repo.root) == head
    assert os.environ["GIT_DIR"]  # still set for us: only git's environment is built anew

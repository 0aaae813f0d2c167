"""The apply lifecycle on a lab, through the CLI: trust, apply, journal, ledger, failure with
nothing changed, confirm (in time, timed out, deadline surviving its process), rollback, history
and log. One lab per module; each test has its own repo (same site id) and state directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cell.deploy.install import apply_lab
from cell.lab import LabInfo, lab_down, lab_status, lab_up
from firewall import nft as fw
from policies import load_policy
from policies.clock import iso
from test_trust import Keys, SignedRepo

pytestmark = pytest.mark.root


def cell(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cell.cli", *args], capture_output=True, text=True, timeout=timeout
    )


class Site:
    """A signed repo of the lab's site, a state directory enrolled with ana, and CLI helpers."""

    def __init__(self, root: Path, keys: Keys, site_id: str) -> None:
        self.repo = SignedRepo(root / "repo", keys, site_id)
        self.state = root / "state"
        signers = root / "enrolled"
        signers.write_text(keys.signers("ana"))
        r = self.run("enroll", "--signers", str(signers))
        assert r.returncode == 0, r.stderr

    def run(self, *args: str, repo: bool = True) -> subprocess.CompletedProcess[str]:
        extra = ["--repo", str(self.repo.root)] if repo else []
        return cell(*args, *extra, "--state-dir", str(self.state))

    def apply(self, *args: str, code: int = 0) -> dict[str, Any]:
        r = self.run("apply", "--json", *args)
        assert r.returncode == code, r.stdout + r.stderr
        assert "Traceback" not in r.stderr
        doc: dict[str, Any] = json.loads(r.stdout) if r.stdout.strip() else {}
        return {**doc, "stderr": r.stderr} if code else doc

    def journal(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.state / "journal.json").read_text())
        return doc

    def ledger(self) -> list[dict[str, Any]]:
        return [json.loads(ln) for ln in (self.state / "ledger.jsonl").read_text().splitlines()]

    def expected_table(self, commit: str | None = None) -> bytes:
        """The canonical table of an applied commit, from the Cell's store."""
        j = self.journal()
        entries = [e for e in [j["applied"], j["pending"], *j["previous"]] if e]
        entry = next(e for e in entries if commit in (None, e["commit"]))
        ruleset = self.state / "store" / "rendered" / entry["rendered"] / "nftables/ruleset.json"
        return fw.canonical(fw.objects_of(ruleset.read_bytes()))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, LabInfo, Keys]]:
    site_id = f"t-{uuid.uuid4().hex[:8]}"
    root = tmp_path_factory.mktemp("lifecycle")
    keys = Keys(root / "keys")
    repo = SignedRepo(root / "seed", keys, site_id)
    try:
        yield site_id, lab_up(load_policy(repo.root), apply=apply_lab), keys
    finally:
        lab_down(site_id)
        keys.close()


@pytest.fixture
def site(lab: tuple[str, LabInfo, Keys], tmp_path: Path) -> Iterator[Site]:
    site_id, _, keys = lab
    s = Site(tmp_path, keys, site_id)
    try:
        yield s
    finally:
        _stop_waiter(s.state)


def _stop_waiter(state: Path) -> None:
    """A test that armed a confirm must not leave its waiter behind."""
    try:
        waiter = json.loads((state / "confirm.json").read_text()).get("waiter") or {}
    except (OSError, ValueError):
        return
    if waiter.get("pid"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(waiter["pid"]), signal.SIGKILL)


def live(info: LabInfo) -> bytes:
    return fw.canonical(fw.read_table(info.gateway))


def test_apply_journal_ledger_log_history(site: Site, lab: tuple[str, LabInfo, Keys]) -> None:
    _, info, keys = lab
    first = site.apply()
    c1 = site.repo.head()
    assert first["commit"] == c1 and first["signature"]["signer"] == "ana@ops"
    assert first["netns"] == info.gateway
    j = site.journal()
    assert j["applied"]["commit"] == c1 and j["pending"] is None
    assert j["applied"]["signature"]["key"] == keys.fingerprint("ana")
    manifest = json.loads((Path(info.layout.config) / "manifest.json").read_text())
    assert j["applied"]["digests"] == manifest["files"]
    assert live(info) == site.expected_table(c1)
    time.sleep(0.05)
    between = iso()  # one reading of the clock (seconds and milliseconds read apart once
    # crossed a second between them: `between` came out 1 s early, before the first apply)
    time.sleep(0.05)

    site.repo.toggle_ntp(on=False)
    c2 = site.repo.commit("cameras lose NTP", key="rui")  # rui is trusted by the repo's own file
    second = site.apply()
    assert second["commit"] == c2 and second["previous"] == c1
    assert "nftables/ruleset.json" in second["changed"]
    assert second["rules"]["removed"] and second["signature"]["signer"] == "rui@ops"
    assert live(info) == site.expected_table(c2) != site.expected_table(c1)
    assert [e["commit"] for e in site.journal()["previous"]] == [c1]
    assert [e["kind"] for e in site.ledger()] == ["enroll", "apply", "apply"]

    r = site.run("drift", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["table"] == {"state": "applied", "commit": c2}

    r = site.run("log")
    assert r.returncode == 0 and c2[:12] in r.stdout and "rui@ops" in r.stdout
    assert "good ssh signature" in r.stdout and "nftables/ruleset.json" in r.stdout

    r = site.run("history", "--at", between, "--render", str(site.state.parent / "then"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert c1 in r.stdout and "every digest matches" in r.stdout and "ana@ops" in r.stdout
    rendered = (site.state.parent / "then" / "nftables/ruleset.json").read_bytes()
    assert fw.canonical(fw.objects_of(rendered)) == site.expected_table(c1)
    r = site.run("history", "--at", "2001-01-01T00:00")
    assert r.returncode == 3 and "nothing was applied" in r.stderr

    r = site.run("audit", "verify")
    assert r.returncode == 0 and "chain intact" in r.stdout


def test_refused_commit_changes_nothing(site: Site, lab: tuple[str, LabInfo, Keys]) -> None:
    _, info, _ = lab
    site.apply()
    before, journal = live(info), site.journal()
    site.repo.toggle_ntp(on=False)
    site.repo.commit("eve was here", key="eve")
    doc = site.apply(code=2)
    assert doc["refused"]["reason"] == "unknown-key"
    assert live(info) == before and site.journal() == journal
    assert site.ledger()[-1]["kind"] == "refusal"


def test_failed_apply_puts_everything_back(site: Site, lab: tuple[str, LabInfo, Keys]) -> None:
    """A real failure after the firewall step: the broker cannot bind port 22, which the lab's
    gateway responder holds. Table, files and broker must end as they were."""
    _, info, _ = lab
    site.apply()
    config = Path(info.layout.config)
    files = {p: p.read_bytes() for p in config.rglob("*") if p.is_file()}
    table = fw.read_table(info.gateway)
    site.repo.toggle_ntp(on=False)
    site.repo.edit("mqtt.yaml", "topics:\n", "listener: {port: 22}\ntopics:\n")
    site.repo.commit("broker on 22", key="ana")
    r = site.run("apply")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "previous configuration restored" in r.stderr and "Traceback" not in r.stderr
    after = fw.read_table(info.gateway)
    assert fw.canonical(after) == fw.canonical(table)
    assert {p: p.read_bytes() for p in config.rglob("*") if p.is_file()} == files
    j = site.journal()
    assert j["pending"] is None and j["applied"]["commit"] != site.repo.head()
    assert site.ledger()[-1]["kind"] == "failure"
    r = site.run("drift", "--json")
    assert json.loads(r.stdout)["table"]["state"] == "applied"
    assert not [f for f in json.loads(r.stdout)["findings"] if f["kind"] != "repo"]


def test_confirm_timeout_rolls_back_by_itself(site: Site, lab: tuple[str, LabInfo, Keys]) -> None:
    _, info, _ = lab
    site.apply()
    c1 = site.repo.head()
    site.repo.toggle_ntp(on=False)
    c2 = site.repo.commit("risky", key="ana")
    doc = site.apply("--confirm", "2s")
    assert doc["confirm"]["fallback"] == c1 and live(info) == site.expected_table(c2)
    waiter = doc["confirm"]["waiter"]["pid"]
    deadline = time.monotonic() + 15
    while site.journal()["applied"]["commit"] != c1 or (site.state / "confirm.json").exists():
        assert time.monotonic() < deadline, "no rollback after the confirm deadline"
        time.sleep(0.1)
    assert live(info) == site.expected_table(c1)
    rollback = [e for e in site.ledger() if e["kind"] == "rollback"]
    assert rollback and "deadline" in rollback[-1]["reason"] and rollback[-1]["from"] == c2
    time.sleep(0.3)
    assert not Path(f"/proc/{waiter}").exists() or "Z" in Path(f"/proc/{waiter}/stat").read_text()


def test_confirm_deadline_survives_its_process(site: Site, lab: tuple[str, LabInfo, Keys]) -> None:
    _, info, _ = lab
    site.apply()
    c1 = site.repo.head()
    site.repo.toggle_ntp(on=False)
    site.repo.commit("risky, and the waiter dies", key="ana")
    doc = site.apply("--confirm", "2s")
    os.kill(doc["confirm"]["waiter"]["pid"], signal.SIGKILL)
    time.sleep(2.5)
    assert site.journal()["applied"]["commit"] == site.repo.head()  # nobody acted yet
    r = site.run("drift", "--json")  # any later cell command settles the overdue deadline
    assert "passed: rolled back" in r.stdout, r.stdout + r.stderr
    assert site.journal()["applied"]["commit"] == c1 and live(info) == site.expected_table(c1)


def test_confirm_in_time_then_rollback_on_demand(
    site: Site, lab: tuple[str, LabInfo, Keys]
) -> None:
    _, info, _ = lab
    r = site.run("rollback")
    assert r.returncode == 2 and "nothing to roll back" in r.stderr
    site.apply()
    c1 = site.repo.head()
    site.repo.toggle_ntp(on=False)
    c2 = site.repo.commit("wanted", key="ana")
    site.apply("--confirm", "1m")
    doc = site.apply(code=2)  # a pending confirm blocks another apply
    assert "confirm is pending" in doc["stderr"]
    r = site.run("confirm")
    assert r.returncode == 0, r.stderr
    assert not (site.state / "confirm.json").exists()
    assert site.run("confirm").returncode == 2
    assert site.journal()["applied"]["commit"] == c2
    r = site.run("rollback", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["commit"] == c1 and live(info) == site.expected_table(c1)
    kinds = [e["kind"] for e in site.ledger()]
    assert kinds.index("confirm") < kinds.index("rollback")
    r = site.run("drift", "--json")  # HEAD is ahead of what is applied now: that is drift
    assert r.returncode == 3
    assert any(f["kind"] == "repo" for f in json.loads(r.stdout)["findings"])
    assert lab_status(lab[0]) is not None


def test_pulls_from_the_remote_first(site: Site, lab: tuple[str, LabInfo, Keys]) -> None:
    """The Cell's clone follows the operators' remote: `cell apply` fast-forwards, then applies.
    A diverged clone is never merged by the Cell: the pull fails and nothing changes."""
    _, info, _ = lab
    root = site.state.parent
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(site.repo.root), str(root / "remote.git")], check=True
    )
    subprocess.run(["git", "clone", "-q", str(root / "remote.git"), str(root / "cell")], check=True)
    site.repo.git("remote", "add", "origin", str(root / "remote.git"))
    on_cell = ["--repo", str(root / "cell"), "--state-dir", str(site.state)]
    assert cell("apply", *on_cell).returncode == 0

    site.repo.toggle_ntp(on=False)
    pushed = site.repo.commit("pushed by an operator", key="ana")
    site.repo.git("push", "-q", "origin", "main")
    r = cell("apply", "--json", *on_cell)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["commit"] == pushed and live(info) == site.expected_table(pushed)

    local = SignedRepo.__new__(SignedRepo)
    local.root, local.keys = root / "cell", site.repo.keys
    local.git("config", "user.name", "someone on the box")
    local.git("config", "user.email", "box@ops")
    local.toggle_ntp(on=True)
    local.commit("made on the Cell itself", key="ana")
    site.repo.edit("site.yaml", "name: Lisbon warehouse", "name: Lisbon")
    site.repo.commit("meanwhile upstream", key="ana")
    site.repo.git("push", "-q", "origin", "main")
    before = live(info)
    r = cell("apply", *on_cell)
    assert r.returncode == 1 and "pull" in r.stderr and "Traceback" not in r.stderr
    assert live(info) == before and site.journal()["applied"]["commit"] == pushed


def test_deleting_the_state_does_not_make_a_first_apply(
    site: Site, lab: tuple[str, LabInfo, Keys]
) -> None:
    """The attack: an insider deletes the journal (and enrols a key of their own) so that a
    stranger's commit applies as the Cell's "first apply". The ledger remembers."""
    _, info, keys = lab
    site.apply()
    before = live(info)
    site.repo.toggle_ntp(on=False)
    site.repo.commit("eve's change", key="eve")
    (site.state / "journal.json").unlink()
    evil = site.state.parent / "evil_signers"
    evil.write_text(keys.signers("eve"))

    r = site.run("enroll", "--signers", str(evil))
    assert r.returncode == 2 and "enrolled already" in r.stderr and "--reset" in r.stderr
    refused = site.apply(code=2)
    assert "journal" in refused["stderr"] and "not a first apply" in refused["stderr"]
    assert live(info) == before
    assert site.ledger()[-1]["kind"] == "refusal"
    assert site.ledger()[-1]["reason"] == "state-deleted"
    audit = site.run("audit", "verify")
    assert audit.returncode == 3 and "state was deleted" in audit.stdout

    # The way out is explicit and recorded: a reset names who did it and why.
    r = site.run("enroll", "--signers", str(evil), "--reset", "new operator team")
    assert r.returncode == 0, r.stderr
    kinds = [e["kind"] for e in site.ledger()]
    assert kinds[-2:] == ["reset", "enroll"]
    assert site.ledger()[-2]["reason"] == "new operator team"


def test_a_full_state_disk_is_reported_not_a_crash(
    lab: tuple[str, LabInfo, Keys], tmp_path: Path
) -> None:
    """The attack: fill the state disk (a camera flooding a log), then open a hole. `cell drift`
    still reports the hole, and the full disk as a finding of its own; nothing crashes."""
    from firewall import netns

    site_id, info, keys = lab
    small = tmp_path / "state"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], check=True)
    try:
        s = Site(tmp_path, keys, site_id)
        s.apply()
        with contextlib.suppress(OSError), (small / "filler").open("wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        netns.run(info.gateway, ["nft", "insert rule inet cell forward tcp dport 2222 accept"])
        r = s.run("drift", "--json")
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
        assert r.returncode == 3, r.stdout + r.stderr
        doc = json.loads(r.stdout)
        kinds = {f["kind"]: f for f in doc["findings"]}
        assert "dport 2222 accept" in kinds["nftables"]["diff"]
        assert "filesystem is full" in kinds["state"]["what"]
    finally:
        fw.apply(Path(info.layout.config, "nftables/ruleset.json").read_bytes(), info.gateway)
        subprocess.run(["umount", "-l", str(small)], check=False)

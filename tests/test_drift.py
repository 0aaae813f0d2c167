"""Drift on a lab: `cell drift` one-shot (exit 0/3, readable diffs, reconcile on request) and
`cell drift --watch` (events within a second, naming the process the kernel names)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cell.deploy.install import lab_target
from cell.deploy.services import service_pids, service_strays
from cell.lab import LabInfo
from firewall import netns
from firewall import nft as fw
from test_lifecycle import Site, lab  # noqa: F401  (the signed site's lab)
from test_trust import Keys

pytestmark = pytest.mark.root


@pytest.fixture
def site(lab: tuple[str, LabInfo, Keys], tmp_path: Path) -> Site:
    site_id, _, keys = lab
    s = Site(tmp_path, keys, site_id)
    s.apply()
    return s


def drift(site: Site, *args: str) -> tuple[int, dict[str, Any]]:
    r = site.run("drift", "--json", *args)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def nft(info: LabInfo, command: str) -> None:
    netns.run(info.gateway, ["nft", command], check=True)


def test_one_shot_drift_and_explicit_reconcile(site: Site, lab: tuple[str, LabInfo, Keys]) -> None:
    _, info, _ = lab
    code, doc = drift(site)
    assert code == 0 and doc["in_sync"] and doc["table"]["state"] == "applied"
    ruleset = (Path(info.layout.config) / "nftables/ruleset.json").read_bytes()

    nft(info, "insert rule inet cell forward tcp dport 2222 accept")
    code, doc = drift(site)
    assert code == 3 and doc["table"]["state"] == "other"
    (f,) = doc["findings"]
    assert f["kind"] == "nftables" and "+chain forward: tcp dport 2222 accept" in f["diff"]
    nft(info, "delete table inet cell")
    code, doc = drift(site)
    assert code == 3 and doc["findings"][0]["what"] == "table inet cell was deleted"
    fw.apply(ruleset, info.gateway)
    assert drift(site)[0] == 0

    acl = Path(info.layout.config) / "mosquitto/acl"
    original = acl.read_bytes()
    acl.write_bytes(original + b"topic readwrite #\n")
    code, doc = drift(site)
    assert code == 3 and "+topic readwrite #" in doc["findings"][0]["diff"]
    acl.write_bytes(original)

    os.kill(service_pids(lab_target(info))["sinkhole"] or 0, signal.SIGTERM)
    time.sleep(0.2)
    code, doc = drift(site)
    assert code == 3 and doc["findings"][0]["what"] == "dnsmasq (sinkhole) is not running"
    nft(info, "add rule inet cell input counter")

    code, doc = drift(site, "--reconcile")  # explicit: exit 3 says drift was found, and fixed
    assert code == 3 and doc["reconciled"] == site.repo.head()
    assert drift(site)[0] == 0
    kinds = [e["kind"] for e in site.ledger()]
    assert "drift" in kinds and "reconcile" in kinds and kinds[-1] == "drift-resolved"


def test_repo_drift_and_local_unsigned_commit(site: Site) -> None:
    site.repo.toggle_ntp(on=False)
    sha = site.repo.commit("nobody signed this", key=None)
    code, doc = drift(site)
    assert code == 3 and doc["table"]["state"] == "applied"
    whats = [f["what"] for f in doc["findings"]]
    assert any(w.startswith(f"repo HEAD is {sha[:12]}") for w in whats)
    assert f"local unsigned commit {sha[:12]}" in whats


class Watch:
    """`cell drift --watch --json` in the background; its events arrive on a queue."""

    def __init__(self, site: Site) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cell.cli",
                "drift",
                "--watch",
                "--json",
                "--repo",
                str(site.repo.root),
                "--state-dir",
                str(site.state),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.next(lambda e: e["source"] == "start", timeout=15)
        assert first["status"] == "in-sync", first

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def next(self, match: Callable[[dict[str, Any]], bool], timeout: float = 2.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no matching event within {timeout} s: {self.stderr()}"
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if match(event):
                return event

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(watcher still running)"
        return self.proc.stderr.read() if self.proc.stderr else ""

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


@pytest.fixture
def watching(site: Site) -> Iterator[Watch]:
    w = Watch(site)
    try:
        yield w
    finally:
        w.close()


def test_watch_reports_each_change_within_a_second(
    site: Site, watching: Watch, lab: tuple[str, LabInfo, Keys]
) -> None:
    _, info, _ = lab
    ruleset = (Path(info.layout.config) / "nftables/ruleset.json").read_bytes()

    t0 = time.monotonic()
    nft(info, "add rule inet cell input tcp dport 2222 accept")
    e = watching.next(lambda e: e["kind"] == "nftables" and e["status"] == "drift")
    assert time.monotonic() - t0 < 1.0
    (f,) = e["new"]
    assert f["by"]["name"] == "nft" and f["by"]["pid"] > 0  # the kernel said who
    assert "+chain input: tcp dport 2222 accept" in f["diff"] and f["since"]

    fw.apply(ruleset, info.gateway)
    e = watching.next(lambda e: e["kind"] == "nftables")
    assert e["status"] == "in-sync" and e["resolved"]

    conf = Path(info.layout.config) / "dnsmasq/sinkhole.conf"
    original = conf.read_bytes()
    t0 = time.monotonic()
    conf.write_bytes(original + b"server=8.8.8.8\n")
    e = watching.next(lambda e: e["kind"] == "file" and e["status"] == "drift")
    assert time.monotonic() - t0 < 1.0 and "+server=8.8.8.8" in e["new"][0]["diff"]
    conf.write_bytes(original)
    assert watching.next(lambda e: e["kind"] == "file")["status"] == "in-sync"

    pid = service_pids(lab_target(info))["broker"]
    assert pid is not None
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    e = watching.next(lambda e: e["kind"] == "process")
    assert time.monotonic() - t0 < 1.0 and "mosquitto is not running" in e["new"][0]["what"]

    site.repo.toggle_ntp(on=False)
    sha = site.repo.commit("unsigned, local", key=None)
    e = watching.next(lambda e: e["kind"] == "repo")
    assert any(f["what"] == f"local unsigned commit {sha[:12]}" for f in e["new"])
    assert fw.read_table(info.gateway) is not None  # alert mode: nothing was changed for us


def test_watch_reconciles_when_the_policy_says_so(
    lab: tuple[str, LabInfo, Keys], tmp_path: Path
) -> None:
    site_id, info, keys = lab
    s = Site(tmp_path, keys, site_id)
    s.repo.edit("site.yaml", "hub:\n", "drift: {mode: reconcile, interval: 30s}\nhub:\n")
    s.repo.commit("reconcile drift", key="ana")
    s.apply()
    w = Watch(s)
    try:
        nft(info, "add rule inet cell input tcp dport 2222 accept")
        w.next(lambda e: e.get("kind") == "nftables" and e["status"] == "drift")
        e = w.next(lambda e: e["status"] == "reconciled", timeout=10)
        assert e["commit"] == s.repo.head()
        w.next(lambda e: e["status"] == "in-sync", timeout=5)
        assert fw.canonical(fw.read_table(info.gateway)) == s.expected_table()
    finally:
        w.close()
    assert "reconcile" in [e["kind"] for e in s.ledger()]


def test_a_service_without_its_pid_file_is_found_and_adopted(
    site: Site, lab: tuple[str, LabInfo, Keys]
) -> None:
    """What an apply killed between starting dnsmasq and recording its pid leaves: a process
    holding port 53 that no pid file names. Drift says so; the next apply adopts it."""
    _, info, _ = lab
    target = lab_target(info)
    pidfile = Path(info.layout.state) / "dnsmasq/sinkhole.run.pid"
    stray = int(pidfile.read_text())
    pidfile.unlink()
    code, doc = drift(site)
    assert code == 3
    assert [f["what"] for f in doc["findings"]] == [
        f"dnsmasq (sinkhole) runs as pid {stray}, which Cell did not record (left by an "
        "interrupted apply?)"
    ]
    site.apply()
    assert drift(site)[0] == 0
    assert service_strays(target) == {"sinkhole": [], "resolver": [], "broker": []}
    assert service_pids(target)["sinkhole"] is not None


def test_watch_reports_a_hole_opened_and_closed_again(
    site: Site, watching: Watch, lab: tuple[str, LabInfo, Keys]
) -> None:
    """The attack: open a hole and close it within milliseconds. The end state is what was
    applied, but each transaction the Cell did not make is drift, with the process named."""
    _, info, _ = lab
    netns.run(
        info.gateway,
        ["sh", "-c", "nft insert rule inet cell forward accept; nft flush chain inet cell forward"],
    )
    e = watching.next(lambda e: e["kind"] == "transaction")
    (f,) = e["new"]
    assert (
        e["status"] == "drift" and f["by"]["name"] == "nft" and "nftables transaction" in f["what"]
    )
    ruleset = (Path(info.layout.config) / "nftables/ruleset.json").read_bytes()
    fw.apply(ruleset, info.gateway)
    assert any(e["kind"] == "drift-transaction" for e in site.ledger())

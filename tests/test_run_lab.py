"""The daemon on a lab, for real: `cell run` in the gateway, a signed commit applied through the
trust gate, the status turning sovereign; a hand-made leak turning it at_risk (drift at once,
segregation at the next probe run) and back; kill -9 of the daemon read offline by the will, a
restart online and published again; mosquitto and dnsmasq killed, noticed and recovered.

One lab for the module (building one takes seconds); each test leaves it sovereign again.
Short intervals come from the policy (`verify:` in site.yaml), as an operator would set them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cell.deploy.install import apply_lab
from cell.lab import LabInfo, lab_down, lab_up
from cell.lab.processes import Proc, stop
from cell.run.labdaemon import start_daemon
from firewall import netns
from policies import load_policy
from policies.layout import STATUS_JSON
from test_trust import Keys, SignedRepo

pytestmark = pytest.mark.root

VERIFY = """verify:
  probe_interval: 8s
  drops_interval: 2s
  dns_interval: 1s
  capture_interval: 2s
  publish_interval: 5s
  probe_timeout: 1s
"""


@dataclass
class Cell:
    repo: SignedRepo
    info: LabInfo
    state: Path
    daemon: Proc

    def cell(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cell.cli", *args, "--repo", str(self.repo.root)],
            capture_output=True,
            text=True,
        )

    def status(self) -> tuple[int, dict[str, Any]]:
        """`cell status --json`: its exit code and document."""
        r = self.cell("status", "--json")
        return r.returncode, json.loads(r.stdout)

    def doc(self) -> dict[str, Any]:
        """The document `cell status` reads, straight from the file (polled fast)."""
        try:
            return dict(json.loads((self.state / STATUS_JSON).read_bytes()))
        except (OSError, ValueError):
            return {}

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> Any:
        end = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < end:
            doc = self.doc()
            if doc and pred(doc):
                return doc
            time.sleep(0.05)
        raise AssertionError(f"not {what} within {timeout} s: {json.dumps(doc, indent=1)}")

    def sovereign(self, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait(lambda d: d.get("verdict") == "sovereign", timeout, "sovereign")

    def bus(self, topic: str) -> dict[str, Any]:
        """The retained message on `topic`, read as the example's console login."""
        password = self.info.credentials["console"]
        out = netns.run(
            self.info.gateway,
            ["mosquitto_sub", "-h", "127.0.0.1", "-u", "console", "-P", password,
             "-t", topic, "-C", "1", "-W", "3"],
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    def nft(self, *args: str) -> str:
        return netns.run(self.info.gateway, ["nft", *args], check=True).stdout.decode()

    def restart_daemon(self) -> None:
        self.daemon = start_daemon(
            str(self.repo.root), self.info.gateway, str(self.state), Path(self.info.root) / "log"
        )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cell]:
    tmp = tmp_path_factory.mktemp("runlab")
    site_id = f"t-{uuid.uuid4().hex[:8]}"
    keys = Keys(tmp / "keys")
    repo = SignedRepo(tmp / "repo", keys, site_id)
    (repo.root / "site.yaml").write_text((repo.root / "site.yaml").read_text() + VERIFY)
    repo.commit("daemon intervals", key="ana")
    (tmp / "enrolled").write_text(keys.signers("ana"))
    try:
        info = lab_up(load_policy(repo.root), apply=apply_lab)
        state = Path(info.layout.state)
        for args in (["enroll", "--signers", str(tmp / "enrolled")], ["apply"]):
            r = subprocess.run(
                [sys.executable, "-m", "cell.cli", *args, "--repo", str(repo.root)],
                capture_output=True,
                text=True,
            )
            assert r.returncode == 0, r.stderr
        daemon = start_daemon(str(repo.root), info.gateway, str(state), Path(info.root) / "log")
        yield Cell(repo, info, state, daemon)
    finally:
        lab_down(site_id)
        keys.close()


def test_status_turns_sovereign_and_is_on_the_bus(lab: Cell) -> None:
    lab.sovereign()
    code, doc = lab.status()
    assert code == 0 and doc["verdict"] == "sovereign"
    assert doc["schema"] == "cell.status/1" and doc["site"] == lab.info.site
    assert doc["commit"] == lab.repo.head() and doc["reasons"] == []
    assert set(doc["checks"]) == {"trust", "drift", "segregation", "bridge", "sinkhole", "capture"}
    assert all(c["ok"] and c["evidence"] == [] for c in doc["checks"].values())
    assert doc["ledger"]["seq"] > 0 and len(doc["ledger"]["hash"]) == 64
    assert set(doc["services"].values()) == {"running"}
    on_bus = lab.bus("cell/status")
    assert on_bus["verdict"] == "sovereign" and on_bus["session"] == doc["session"]
    avail = lab.bus("cell/availability")
    assert avail == {**avail, "state": "online", "session": doc["session"]}
    full = lab.bus("cell/check/segregation")
    assert full["ok"] and len(full["evidence"]) > 10  # the full detail, on site
    # the summary names no client address (the hosts' addresses are in the policy)
    text = json.dumps(on_bus)
    assert not any(h["address"] in text for h in lab.info.hosts.values())
    r = lab.cell("status")
    assert r.returncode == 0 and "SOVEREIGN" in r.stdout
    # Prometheus on the gateway's loopback, and no address in any label
    import urllib.request

    url = "http://127.0.0.1:9817/metrics"
    body = netns.with_ns(
        lab.info.gateway, lambda: urllib.request.urlopen(url, timeout=5).read().decode()
    )
    assert 'cell_verdict{verdict="sovereign"} 1.0' in body
    assert 'cell_check_ok{check="segregation"} 1.0' in body
    assert not any(h["address"] in body for h in lab.info.hosts.values())


def test_a_leak_is_at_risk_by_drift_then_segregation_and_back(lab: Cell) -> None:
    lab.sovereign()
    t0 = time.monotonic()
    lab.nft("insert", "rule", "inet", "cell", "forward", "accept")
    doc = lab.wait(lambda d: d["verdict"] == "at_risk", 5, "at_risk")
    assert time.monotonic() - t0 < 2  # the bench measures it: p99 well under 1 s
    assert doc["reasons"][0].startswith("drift: ") and not doc["checks"]["drift"]["ok"]
    assert lab.status()[0] == 3
    doc = lab.wait(
        lambda d: not d["checks"]["segregation"]["ok"], 30, "failing segregation at a probe run"
    )
    assert any(r.startswith("segregation: ") for r in doc["reasons"])
    r = lab.cell("apply")  # the same signed commit again: the table is replaced
    assert r.returncode == 0, r.stderr
    lab.wait(lambda d: d["checks"]["drift"]["ok"], 10, "drift ok after the re-apply")
    lab.sovereign()  # and the next probe run holds again


def _ask_sinkhole(lab: Cell, name: str, times: int) -> None:
    """`times` queries for `name` from a camera to its sinkhole, each answered."""
    from cell.verify.dnsquery import query

    cams = lab.info.vlans["cameras"]
    cam = next(h for h in lab.info.hosts.values() if h["vlan"] == "cameras")

    def ask() -> None:
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((cam["address"], 0))
            s.settimeout(2)
            for i in range(times):
                s.sendto(query(name, i), (cams["gateway"], 53))
                s.recv(512)

    netns.spawn(str(cams["netns"]), ask).result(timeout=30)


def _counted(lab: Cell, name: str) -> int:
    """What the store counted for `name` today (read only: no ingest of our own)."""
    from cell.store import open_store
    from cell.store.dns import day_names

    with open_store(lab.state) as store:
        return sum(b for n, b, _, _ in day_names(store, time.strftime("%Y-%m-%d")) if n == name)


def test_kill_9_reads_offline_by_the_will_and_a_restart_publishes_again(lab: Cell) -> None:
    first = lab.sovereign()["session"]
    name = f"kill9-{uuid.uuid4().hex[:6]}.vendor.example"
    _ask_sinkhole(lab, name, 20)
    end = time.monotonic() + 10
    while _counted(lab, name) < 20 and time.monotonic() < end:
        time.sleep(0.1)
    assert _counted(lab, name) == 20  # counted by the daemon
    _ask_sinkhole(lab, name, 30)
    os.kill(lab.daemon.pid, signal.SIGKILL)  # whatever of the 30 it had counted, it keeps
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        avail = lab.bus("cell/availability")
        if avail["state"] == "offline":
            break
        time.sleep(0.1)
    assert avail["state"] == "offline" and avail["session"] == first
    lab.restart_daemon()
    doc = lab.sovereign()
    assert doc["session"] != first
    assert lab.bus("cell/availability")["state"] == "online"
    assert lab.bus("cell/status")["session"] == doc["session"]
    end = time.monotonic() + 10
    while _counted(lab, name) < 50 and time.monotonic() < end:
        time.sleep(0.1)
    time.sleep(1.5)  # a few more reads of the log: nothing may be counted twice
    assert _counted(lab, name) == 50  # nothing lost, nothing twice, across the kill -9


def _pid(state: Path, name: str) -> int:
    return int((state / name).read_text().split()[0])


@pytest.mark.parametrize(
    ("service", "pidfile"),
    [("broker", "mosquitto/mosquitto.run.pid"), ("sinkhole", "dnsmasq/sinkhole.run.pid")],
)
def test_a_killed_service_is_noticed_and_the_daemon_recovers(
    lab: Cell, service: str, pidfile: str
) -> None:
    session = lab.sovereign()["session"]
    stop([_pid(lab.state, pidfile)])
    doc = lab.wait(lambda d: d["verdict"] == "at_risk", 10, f"at_risk without the {service}")
    assert any(r.startswith("drift: ") for r in doc["reasons"])
    r = lab.cell("drift", "--reconcile")  # the operator's way back: re-apply what is applied
    assert r.returncode in (0, 3), r.stderr
    doc = lab.sovereign()
    assert doc["session"] == session  # the same daemon, which never stopped
    assert lab.bus("cell/status")["verdict"] == "sovereign"  # published again on the new broker


def test_systemd_hears_ready_after_the_first_status_and_the_watchdog(lab: Cell) -> None:
    """The daemon as systemd runs it: READY=1 once a status is on the bus, then WATCHDOG=1."""
    import socket

    lab.sovereign()
    stop([lab.daemon.pid])  # SIGTERM: a clean stop says offline itself
    assert lab.bus("cell/availability")["state"] == "offline"
    path = lab.state.parent / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(20)
        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            lab.restart_daemon()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        got = []
        while not any("WATCHDOG=1" in m for m in got):
            got.append(sock.recv(4096).decode())
        ready = next(i for i, m in enumerate(got) if "READY=1" in m)
        assert ready < next(i for i, m in enumerate(got) if m == "WATCHDOG=1")
        assert lab.bus("cell/status")["session"] == lab.doc()["session"]
    path.unlink()
    lab.sovereign()


def test_a_new_apply_takes_effect_without_a_restart(lab: Cell) -> None:
    session = lab.sovereign()["session"]
    assert lab.doc()["fresh_for"] == 15.0  # 3 x publish_interval 5s
    lab.repo.edit("site.yaml", "publish_interval: 5s", "publish_interval: 7s")
    lab.repo.commit("publish more slowly", key="ana")
    events = netns.popen(
        lab.info.gateway,
        ["mosquitto_sub", "-h", "127.0.0.1", "-u", "console", "-P",
         lab.info.credentials["console"], "-t", "cell/event", "-W", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    time.sleep(0.5)  # subscribed before the apply (events are not retained)
    r = lab.cell("apply")
    assert r.returncode == 0, r.stderr
    doc = lab.wait(lambda d: d["fresh_for"] == 21.0, 10, "the new publish_interval in force")
    assert doc["session"] == session and doc["commit"] == lab.repo.head()
    assert events.stdout is not None
    for line in events.stdout:
        event = json.loads(line)
        if event["kind"] == "apply":
            assert event["data"]["commit"] == lab.repo.head()
            break
    lab.repo.commit("not signed", key=None)
    assert lab.cell("apply").returncode == 2  # the trust gate refuses it ...
    for line in events.stdout:
        event = json.loads(line)
        if event["kind"] == "refusal":  # ... and the bus says so
            assert event["text"].startswith("apply refused: ") and event["check"] == "trust"
            break
    events.terminate()
    events.wait(5)
    lab.sovereign()


def test_cell_run_enters_the_namespace_it_is_given(lab: Cell) -> None:
    """`cell run --netns NS` started from the host, as a unit on a box with a gateway namespace."""
    session = lab.sovereign()["session"]
    stop([lab.daemon.pid])
    argv = [sys.executable, "-m", "cell.cli", "run", "--netns", lab.info.gateway,
            "--state-dir", str(lab.state), "--repo", str(lab.repo.root), "--metrics", "off"]  # fmt: skip
    log = (Path(lab.info.root) / "log" / "run-netns.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        doc = lab.wait(lambda d: d.get("session") != session, 20, "a new session")
        doc = lab.sovereign()
        assert lab.bus("cell/availability") == {
            **lab.bus("cell/availability"),
            "state": "online",
            "session": doc["session"],
        }
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
    lab.restart_daemon()


def test_cell_lab_up_starts_the_daemon_and_lab_down_stops_it(
    fresh: tuple[Any, Path],
) -> None:
    """The command line: `cell lab up` runs `cell run` in the gateway (`--no-daemon` would not);
    applied without the trust gate, the lab is at_risk by trust, and says so."""
    from cell.procfs import alive

    _, repo = fresh
    run = [sys.executable, "-m", "cell.cli"]
    r = subprocess.run(
        [*run, "lab", "up", "--repo", str(repo), "--json"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    daemon = json.loads(r.stdout)["processes"]["daemon"]
    r = subprocess.run(
        [*run, "status", "--json", "--repo", str(repo)], capture_output=True, text=True
    )
    doc = json.loads(r.stdout)
    assert r.returncode == 3 and doc["verdict"] == "at_risk" and doc["commit"] is None
    assert doc["reasons"][0].startswith("trust: no signed commit applied yet")
    r = subprocess.run([*run, "lab", "down", "--repo", str(repo)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not alive(daemon["pid"])


def test_on_a_box_the_probe_service_probes_in_place(lab: Cell) -> None:
    """Without a lab (a real Cell), the daemon's probes run in place, from a probe namespace on
    each VLAN's own segment: the same service, the on-box path, here against the lab's gateway."""
    import dataclasses
    import threading

    from cell.run.board import Board
    from cell.run.service import Context
    from cell.run.services.probes import ProbeService
    from cell.run.site import SiteRef
    from cell.store.statedir import State

    lab.sovereign()
    ref = SiteRef(State(lab.state), str(lab.repo.root), lab.info.gateway)
    box = dataclasses.replace(ref.site, lab=None)
    board = Board()
    ctx = Context("probes", board, threading.Event())
    service = ProbeService(ref)
    service.once(ctx, box)
    held = board.checks()["segregation"]
    assert held.ok and "flows hold" in held.detail, held.detail
    assert any("probe@" in e for e in held.evidence)  # sent from the probe address
    lab.nft("insert", "rule", "inet", "cell", "forward", "accept")
    try:
        service.once(ctx, box)
        broken = board.checks()["segregation"]
        assert not broken.ok and "do not hold" in broken.detail, broken.detail
    finally:  # the applied ruleset again (HEAD may be a commit an earlier test had refused)
        from firewall import nft as fw

        ruleset = Path(lab.info.layout.config, "nftables", "ruleset.json").read_bytes()
        fw.apply(ruleset, lab.info.gateway)
    lab.sovereign()


def test_an_incident_pack_manifest_is_published_retained(lab: Cell) -> None:
    """`cell incident` records each pack in the ledger; the daemon puts its manifest on the bus
    (retained, bridged up by the example), so the hub can pin the digest the moment it exists."""
    from cell.store import ledger
    from cell.store.statedir import State

    lab.sovereign()
    pack = uuid.uuid4().hex[:16]
    digest = "ab" * 32
    ledger.append(
        State(lab.state),
        "evidence-pack",
        pack=pack,
        digest=digest,
        since="2026-12-01T00:00:00Z",
        until="2026-12-02T00:00:00Z",
        findings=2,
        encrypted=False,
    )
    hub = dict(lab.info.mqtt["hub"])
    topic = f"{hub['prefix']}evidence/manifests/{pack}"  # at the hub, through the bridge
    end = time.monotonic() + 20
    out = None
    while time.monotonic() < end:
        out = netns.run(
            hub["netns"],
            ["mosquitto_sub", "-h", hub["host"], "-p", str(hub["port"]), "--cafile", hub["cafile"],
             "--cert", hub["certfile"], "--key", hub["keyfile"], "-t", topic, "-C", "1", "-W", "2"],
        )  # fmt: skip
        if out.returncode == 0 and out.stdout:
            break
        time.sleep(0.2)
    assert out is not None and out.returncode == 0, out.stderr if out else "no run"
    doc = json.loads(out.stdout)
    sig = doc.pop("sig")
    assert doc == {
        "schema": "cell.evidence-manifest/1",
        "id": pack,
        "site": lab.doc()["site"],
        "since": "2026-12-01T00:00:00Z",
        "until": "2026-12-02T00:00:00Z",
        "findings": 2,
        "encrypted": False,
        "digest": digest,
    }
    # Signed by the Cell's evidence key: checked as a third party would (docs/incident.md), so
    # a local client that may write evidence/manifests/# cannot pass a forgery off as the Cell's.
    from cell.store import evidencekey

    signer = evidencekey.public_line(State(lab.state))
    site_id = doc["site"]

    def verifies(digest_claimed: str) -> bool:
        text = f"cell-evidence-manifest\nid {pack}\nsite {site_id}\ndigest {digest_claimed}\n"
        work = Path(lab.state).parent / f"verify-{pack}"
        work.mkdir(exist_ok=True)
        (work / "allowed_signers").write_text(signer + "\n")
        (work / "manifest.sig").write_text(sig)
        r = subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", str(work / "allowed_signers"),
             "-I", f"cell-evidence@{site_id}", "-n", "cell-manifest", "-s", str(work / "manifest.sig")],
            input=text.encode(), capture_output=True,
        )  # fmt: skip
        return r.returncode == 0

    assert verifies(digest), "the manifest's signature checks with plain ssh-keygen"
    assert not verifies("cd" * 32), "and binds the digest"
    lab.sovereign()


def test_cell_bridge_monitor_beside_the_daemon_takes_nothing_over(lab: Cell) -> None:
    """The daemon's status publisher and its bridge monitor, and an operator's `cell bridge
    monitor`, all log in as `cell`: on the broker's own socket each keeps its id, so none takes
    another's session (on the network listener the broker names a client by its login, and the
    daemon's will would say offline)."""
    from policies.layout import MOSQUITTO_LOG

    lab.sovereign()
    log = lab.state / MOSQUITTO_LOG
    start = log.stat().st_size
    password = lab.info.credentials["console"]
    watch = netns.popen(
        lab.info.gateway,
        ["mosquitto_sub", "-h", "127.0.0.1", "-u", "console", "-P", password,
         "-t", "cell/availability"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        monitor = lab.cell("bridge", "monitor", "--seconds", "4", "--json")
        assert monitor.returncode == 0, monitor.stderr
        time.sleep(1)
    finally:
        watch.terminate()
        said, _ = watch.communicate(timeout=10)
    states = [json.loads(line)["state"] for line in said.splitlines() if line.strip()]
    assert states and set(states) == {"online"}, states  # the retained one, and nothing else
    with log.open(errors="replace") as f:
        f.seek(start)
        lines = f.read().splitlines()
    joined = [x for x in lines if "New client connected from" in x and "u'cell'" in x]
    assert any(" as cell-monitor-" in x for x in joined), "the operator's monitor on the socket"
    assert not [x for x in lines if "already connected, closing old connection" in x], lines
    doc = lab.sovereign()
    assert doc["checks"]["bridge"]["ok"], doc["checks"]["bridge"]

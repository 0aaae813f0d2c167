"""`cell incident` on a lab with real components: a signed apply, the WAN capture, mosquitto,
dnsmasq and probes with real packets. A quiet window finds nothing (exit 0). Then the planted
incidents of the issue: a hand-inserted accept lets a camera reach the phone-home server and
the camera sends to it; a hand edit of the bridge config lets a `never` topic cross; the next
probe run fails; a camera asks the sinkhole for a phone-home name. `cell incident --since -1h`
finds each in its step (exit 3), and the pack verifies with the standard tools.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.broker import Broker
from cell.deploy.runner import NetnsRunner
from cell.lab import LabInfo, lab_down, lab_up
from cell.verify.dnsquery import query
from cell.verify.labcapture import start_lab_capture
from firewall import netns
from firewall import nft as fw
from labsite import new_id
from policies import load_policy
from policies.layout import BRIDGE_CONF
from test_bridge_harness import Site as BridgeSite
from test_bridge_harness import msg, publish_as, wait_log
from test_trust import Keys, SignedRepo

pytestmark = pytest.mark.root
NAME = "telemetry.camvendor.example"


def cell(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cell.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabInfo, SignedRepo, Path]]:
    site_id = new_id()
    root = tmp_path_factory.mktemp("incident")
    keys = Keys(root / "keys")
    repo = SignedRepo(root / "repo", keys, site_id)
    try:
        info = lab_up(load_policy(repo.root), services=(start_lab_capture,))
        signers = root / "enrolled"
        signers.write_text(keys.signers("ana"))
        r = cell("enroll", "--signers", str(signers), "--repo", str(repo.root))
        assert r.returncode == 0, r.stderr
        r = cell("apply", "--repo", str(repo.root))
        assert r.returncode == 0, r.stdout + r.stderr
        yield info, repo, root
    finally:
        lab_down(site_id)
        keys.close()


def _udp(ns: str, src: str, dst: str, port: int, payload: bytes, count: int = 1) -> None:
    def go() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((src, 0))
            s.settimeout(0.5)
            for _ in range(count):
                s.sendto(payload, (dst, port))
                time.sleep(0.01)

    netns.with_ns(ns, go)


def _broker(info: LabInfo) -> Broker:
    state = Path(info.layout.state)
    return Broker(
        NetnsRunner(info.gateway, str(state / "resolv.conf")),
        conf=Path(info.layout.config) / "mosquitto" / "mosquitto.conf",
        pidfile=state / "mosquitto" / "mosquitto.run.pid",
        log=state / "mosquitto" / "mosquitto.out",
        port=1883,
    )


def test_a_quiet_window_then_the_planted_incidents(
    lab: tuple[LabInfo, SignedRepo, Path], tmp_path: Path
) -> None:
    info, repo, _ = lab
    policy = load_policy(repo.root)
    r = cell("probe", "--lab", "--repo", str(repo.root))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    t0 = now()
    time.sleep(0.5)
    r = cell("probe", "--lab", "--repo", str(repo.root))
    assert r.returncode == 0, r.stdout[-2000:]
    time.sleep(0.5)
    t1 = now()
    quiet = tmp_path / "quiet"
    r = cell(
        "incident",
        "--since",
        t0,
        "--until",
        t1,
        "--out",
        str(quiet),
        "--repo",
        str(repo.root),
        "--json",
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
    doc = json.loads(r.stdout)["report"]
    assert doc["findings"] == 0 and doc["steps"]["health"]["summary"]["runs"] == 1
    assert doc["steps"]["egress"]["summary"]["coverage"]["complete"] is True

    cam = info.hosts["cam-01"]
    phone = info.outside["phone_home"]
    sinkhole = info.vlans[cam["vlan"]]["gateway"]
    bridge_conf = Path(info.layout.config) / BRIDGE_CONF
    original = bridge_conf.read_text()
    site = BridgeSite(policy, repo.root, info)
    broker = _broker(info)
    netns.run(
        info.gateway, ["nft", "insert", "rule", "inet", "cell", "forward", "accept"], check=True
    )
    try:
        _udp(cam["netns"], cam["address"], phone, 9999, b"phone-home", count=5)
        _udp(cam["netns"], cam["address"], sinkhole, 53, query(NAME))
        offset = len(site.site_log.read_text())
        bridge_conf.write_text(original + f'topic # out 1 "" {site.prefix}\n')  # by hand
        assert broker.update({BRIDGE_CONF}) == "restarted"
        wait_log(site.site_log, "Received CONNACK on connection", timeout=30, start=offset)
        publish_as(site, "cam-01", [msg("site/cam-01/snapshots/7")])
        wait_log(site.site_log, "snapshots/7", timeout=15, start=offset)
        r = cell("probe", "--lab", "--repo", str(repo.root))
        assert r.returncode == 3, r.stdout[-2000:]
        r = cell("drift", "--repo", str(repo.root))
        assert r.returncode == 3, r.stdout[-2000:]
    finally:
        fw.apply(Path(info.layout.config, "nftables/ruleset.json").read_bytes(), info.gateway)
        bridge_conf.write_text(original)
        broker.update({BRIDGE_CONF})
    time.sleep(1.0)

    out = tmp_path / "pack"
    r = cell("incident", "--since", "-1h", "--out", str(out), "--repo", str(repo.root), "--json")
    assert r.returncode == 3, r.stdout[-4000:] + r.stderr
    steps = json.loads(r.stdout)["report"]["steps"]
    # The hand-made `topic #` also carries other local topics (the link state) up: find the never one.
    rows = [json.loads(x) for x in (out / "steps/bridge.jsonl").read_text().splitlines()]
    bridge = next(x for x in rows if "snapshots/7" in x["topic"])
    assert any(
        "'site/cam-01/snapshots/7'" in f and "never" in f for f in steps["bridge"]["findings"]
    )
    assert bridge["direction"] == "never" and "snapshots/7" in bridge["evidence"]["text"]
    applied = [
        x
        for x in map(json.loads, (out / "steps/gitops.jsonl").read_text().splitlines())
        if x["kind"] == "apply"
    ]
    assert (
        len(applied) == 1
        and applied[0]["signature"] == "good"
        and applied[0]["signer"] == "ana@ops"
    )
    assert {"bridge", "firewall"} <= set(applied[0]["touches"])
    assert (out / "steps/commits.jsonl").read_text().count('"differ_ledger":[]') == 1
    assert steps["health"]["summary"]["failed_runs"] == 1 and steps["health"]["findings"]
    leaks = [f for f in steps["egress"]["findings"] if f"-> {phone}:9999/udp: UNEXPECTED" in f]
    # Behind the Cell's NAT the WAN capture sees the Cell's own address: the leak is the gateway's.
    assert len(leaks) == 1 and leaks[0].startswith("gateway "), leaks
    names = {
        row["name"]: row
        for row in map(json.loads, (out / "steps/dns.jsonl").read_text().splitlines())
    }
    assert names[NAME]["host"] == "cam-01" and names[NAME]["blocked"] >= 1
    assert steps["drift"]["findings"], steps["drift"]

    key = cell("evidence-key", "--repo", str(repo.root))
    assert key.returncode == 0 and key.stdout.startswith(f"cell-evidence@{policy.site.site.id} ")
    pinned = tmp_path / "pinned"
    pinned.write_text(key.stdout)
    sums = subprocess.run(
        ["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True
    )
    assert sums.returncode == 0, sums.stdout[-2000:]
    who = f"cell-evidence@{policy.site.site.id}"
    with (out / "SHA256SUMS").open("rb") as fh:
        v = subprocess.run(
            [
                "ssh-keygen",
                "-Y",
                "verify",
                "-f",
                str(pinned),
                "-I",
                who,
                "-n",
                who,
                "-s",
                str(out / "SHA256SUMS.sig"),
            ],
            stdin=fh,
            capture_output=True,
        )
    assert v.returncode == 0, v.stderr
    r = cell("incident", "verify", str(out), "--signers", str(pinned))
    assert r.returncode == 0, r.stdout + r.stderr
    tcpdump = subprocess.run(
        [
            "tcpdump",
            "-nn",
            "-r",
            str(out / "capture/window.pcapng"),
            f"dst host {phone} and udp port 9999",
        ],
        capture_output=True,
        text=True,
    )
    assert tcpdump.returncode == 0 and len(tcpdump.stdout.splitlines()) == 5

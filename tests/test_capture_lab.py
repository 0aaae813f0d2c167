"""The WAN capture ring in the lab: real dumpcap on the gateway's WAN link, real packets.

Traffic the policy admits (the bridge to the hub, the probes to management) is `allowed`; after
a hand-inserted `accept` lets a camera reach the phone-home server, that server is `unexpected`
(exit 3), and exactly the packets sent inside the window are in the extracted pcap (counted by
tcpdump). `cell lab down` leaves no capture process behind.
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
from typing import Any

import pytest

from cell.deploy.install import apply_lab
from cell.lab import LabInfo, lab_down, lab_up
from cell.lab.processes import netns_id, pids_in
from cell.verify.coverage import CoverageLog
from cell.verify.labcapture import capture_dir, start_lab_capture
from cell.verify.prober import Env, run_probes
from cell.verify.ring import list_ring
from firewall import netns
from firewall import nft as fw
from firewall.probes import compile_probes
from labsite import make_site, new_id
from policies import Policy, load_policy

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Policy, LabInfo, Path]]:
    site_id = new_id()
    repo = make_site(tmp_path_factory.mktemp("capture"), site_id)
    policy = load_policy(repo)
    try:
        yield policy, lab_up(policy, apply=apply_lab, services=(start_lab_capture,)), repo
    finally:
        lab_down(site_id)


def _cell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cell.cli", *args], capture_output=True, text=True, timeout=120
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _send_udp(ns: str, src: str, dst: str, port: int, count: int) -> None:
    def go() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((src, 0))
            for i in range(count):
                s.sendto(b"phone-home %d" % i, (dst, port))
                time.sleep(0.01)
        return count

    netns.with_ns(ns, go)


def _tcpdump_count(path: Path, expr: str) -> int:
    r = subprocess.run(
        ["tcpdump", "-nn", "-r", str(path), expr], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return len([line for line in r.stdout.splitlines() if line.strip()])


def _by(doc: dict[str, Any], address: str) -> list[dict[str, Any]]:
    return [d for d in doc["destinations"] if d["address"] == address]


def test_capture_runs_on_the_gateway_wan_with_utc_clock_names(
    lab: tuple[Policy, LabInfo, Path],
) -> None:
    _, info, _ = lab
    ring = capture_dir(info.layout.state)
    files = list_ring(ring)
    assert files, f"no ring file in {ring}"
    starts = [e for e in CoverageLog(ring).read() if e["event"] == "start"]
    assert starts and starts[-1]["interface"] == info.wan_link["interface"]
    assert info.wan_link["gateway"] in starts[-1]["addresses"]
    assert abs((datetime.now(UTC) - files[0].start).total_seconds()) < 3600
    assert info.processes["capture"].running()


def test_allowed_traffic_then_a_leak_is_unexpected_and_in_the_window(
    lab: tuple[Policy, LabInfo, Path], tmp_path: Path
) -> None:
    policy, info, repo = lab
    cam = info.hosts["cam-01"]
    phone = info.outside["phone_home"]
    since = _now()
    run = run_probes(compile_probes(policy), Env(info.gateway, info.vlan_netns, info.outside))
    assert run.ok, run.failed
    time.sleep(1.0)
    clean = _cell("pcap", "destinations", "--since", since, "--repo", str(repo), "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    before = json.loads(clean.stdout)
    hub, mgmt = info.outside["hub"], info.outside["management"][0]
    assert _by(before, hub) and all(d["verdict"] == "allowed" for d in _by(before, hub))
    assert _by(before, mgmt) and all(d["verdict"] == "allowed" for d in _by(before, mgmt))
    assert all(d["verdict"] == "allowed" for d in before["destinations"]), before
    hub_row = _by(before, hub)[0]
    assert hub_row["source"]["name"] == "gateway" and hub_row["rule"]["file"].endswith(
        "network.yaml"
    )
    assert not _by(before, phone)

    netns.run(
        info.gateway, ["nft", "insert", "rule", "inet", "cell", "forward", "accept"], check=True
    )
    try:
        _send_udp(cam["netns"], cam["address"], phone, 9999, 3)  # before the window: left out
        time.sleep(1.5)
        t1 = _now()
        _send_udp(cam["netns"], cam["address"], phone, 9999, 5)
        time.sleep(1.5)
        t2 = _now()
    finally:
        fw.apply(Path(info.layout.config, "nftables/ruleset.json").read_bytes(), info.gateway)

    out = tmp_path / "window.pcapng"
    r = _cell(
        "pcap", "--since", t1, "--until", t2, "--out", str(out), "--repo", str(repo), "--json"
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["coverage"]["complete"] is True
    # The leak leaves like everything else, translated to the Cell's WAN address (NAT): the WAN
    # never sees a site address.
    wan_addr = info.wan_link["gateway"]
    leak = f"src host {wan_addr} and dst host {phone} and udp port 9999"
    assert _tcpdump_count(out, leak) == 5

    r = _cell(
        "pcap", "destinations", "--since", since, "--until", t2, "--repo", str(repo), "--json"
    )
    assert r.returncode == 3, r.stdout + r.stderr
    after = json.loads(r.stdout)
    rows = _by(after, phone)
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["verdict"] == "unexpected" and row["rule"] is None
    assert (row["port"], row["proto"], row["packets_out"]) == (9999, "udp", 8)
    assert row["packets"] - row["packets_out"] in (0, 8)  # the phone-home answers each, or none
    assert row["source"] == {"address": wan_addr, "name": "gateway", "vlan": None}
    assert after["unexpected"] == 1
    text = _cell("pcap", "destinations", "--since", since, "--until", t2, "--repo", str(repo))
    assert text.returncode == 3
    assert f"✗ gateway -> {phone}:9999/udp" in text.stdout and "UNEXPECTED" in text.stdout


def test_bad_input_is_one_line_and_exit_2(
    lab: tuple[Policy, LabInfo, Path], tmp_path: Path
) -> None:
    _, _, repo = lab
    cases = [
        ("pcap", "--since", "yesterday", "--out", str(tmp_path / "x"), "--repo", str(repo)),
        (
            "pcap",
            "--since",
            "-1m",
            "--until",
            "-2m",
            "--out",
            str(tmp_path / "x"),
            "--repo",
            str(repo),
        ),
        (
            "pcap",
            "--since",
            "2001-01-01T00:00Z",
            "--until",
            "2001-01-02T00:00Z",
            "--out",
            str(tmp_path / "x"),
            "--repo",
            str(repo),
        ),
        (
            "pcap",
            "--since",
            "-1m",
            "--out",
            str(tmp_path / "x"),
            "--state-dir",
            str(tmp_path / "nope"),
        ),
        ("pcap", "--since", "-1m", "--out", str(tmp_path / "x"), "--state-dir", str(tmp_path)),
    ]
    for args in cases:
        r = _cell(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x").exists()


def test_a_gap_in_the_capture_is_reported(lab: tuple[Policy, LabInfo, Path]) -> None:
    """Kill dumpcap with SIGKILL: no statistics, and the time until the next start is a gap."""
    _, info, repo = lab
    ring = capture_dir(info.layout.state)
    start = [e for e in CoverageLog(ring).read() if e["event"] == "start"][-1]
    subprocess.run(["kill", "-9", str(start["pid"])], check=True)
    time.sleep(1.5)
    r = _cell("pcap", "destinations", "--since", "-1m", "--repo", str(repo), "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 3
    assert doc["coverage"]["complete"] is False and doc["coverage"]["gaps"]
    gap = doc["coverage"]["gaps"][-1]
    assert gap["seconds"] >= 1.0
    assert doc["coverage"]["kernel_drops"] is None
    text = _cell("pcap", "destinations", "--since", "-1m", "--repo", str(repo))
    assert "coverage: GAPS" in text.stdout and "kernel drops: unknown" in text.stdout


def test_lab_down_leaves_no_capture(tmp_path: Path) -> None:
    site_id = new_id()
    policy = load_policy(make_site(tmp_path, site_id))
    try:
        info = lab_up(policy, services=(start_lab_capture,))
        gw = netns_id(info.gateway)
        assert gw is not None
        pid = info.processes["capture"].pid
        assert Path(f"/proc/{pid}").exists()
    finally:
        lab_down(site_id)
    assert not info.processes["capture"].running()
    assert not pids_in({gw})

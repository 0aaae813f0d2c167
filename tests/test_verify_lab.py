"""The verifier in the lab: a real dnsmasq sinkhole, real queries from a VLAN namespace, a capture
on the WAN side, real drop counters, and the `cell` commands as a user runs them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cell.deploy import daemons as procs
from cell.deploy.install import apply_lab, apply_policy, lab_target
from cell.deploy.services import pidfile, start_dnsmasq
from cell.lab import LabInfo, lab_down, lab_up
from cell.verify.drops import DropKeeper
from firewall import netns
from firewall import nft as fw
from labsite import make_site, new_id
from policies import Policy, load_policy
from verify_lab import TYPES, Capture, add_address, ask, packets, wire_name

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Policy, LabInfo, Path]]:
    site_id = new_id()
    repo = make_site(tmp_path_factory.mktemp("verify"), site_id)
    policy = load_policy(repo)
    try:
        yield policy, lab_up(policy, apply=apply_lab), repo
    finally:
        lab_down(site_id)


def cell(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cell.cli", *args, "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def cell_json(repo: Path, *args: str, code: int = 0) -> dict[str, Any]:
    r = cell(repo, *args, "--json")
    assert r.returncode == code, (r.stdout, r.stderr)
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def cam(info: LabInfo, host: str = "cam-01") -> tuple[str, str]:
    h = info.hosts[host]
    return h["netns"], h["address"]


def unique(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}.vendor.example"


def names_of(doc: dict[str, Any]) -> dict[str, int]:
    return {n["name"]: n["blocked"] for n in doc["names"]}


def test_every_type_is_answered_locally_and_none_reaches_the_wan(
    lab: tuple[Policy, LabInfo, Path], tmp_path: Path
) -> None:
    policy, info, repo = lab
    ns, src = cam(info)
    gw = policy.vlans["cameras"].gateway
    name, control = unique("every-type"), unique("control")
    resolver_log = Path(info.root) / "log" / "resolver.log"
    cap = Capture(info.wan, tmp_path / "wan.pcap")
    try:
        for qtype in TYPES.values():
            target = "4.3.2.1.in-addr.arpa" if qtype == TYPES["PTR"] else name
            assert ask(ns, src, gw, [(target, qtype)]) == (1, 1), qtype
        # The capture and the resolver log can see a leak: the Cell's own resolver forwards.
        assert ask(info.gateway, "127.0.0.1", "127.0.0.1", [(control, TYPES["A"])]) == (1, 1)
    finally:
        pcap = cap.stop()
    seen = packets(pcap)
    assert any(wire_name(control) in p for p in seen), "the capture saw no forwarded query"
    assert not [p for p in seen if wire_name(name) in p or b"\x014\x013\x012\x011" in p]
    log = resolver_log.read_text()
    assert control in log and name not in log and "4.3.2.1.in-addr.arpa" not in log
    doc = cell_json(repo, "dns", "log", "--client", "cam-01", "--since", "-5m")
    types = {e["type"] for e in doc["events"] if e["name"] in (name, "4.3.2.1.in-addr.arpa")}
    assert types == set(TYPES)
    assert all(e["action"] == "blocked" for e in doc["events"])


def test_counts_per_client_and_name_through_a_dnsmasq_restart(
    lab: tuple[Policy, LabInfo, Path],
) -> None:
    policy, info, repo = lab
    gw = policy.vlans["cameras"].gateway
    name = unique("telemetry")
    (ns1, a1), (ns2, a2) = cam(info, "cam-01"), cam(info, "cam-02")
    assert ask(ns1, a1, gw, [(name, TYPES["A"])] * 200) == (200, 200)
    first = cell_json(repo, "dns", "stats")
    assert names_of(first)[name] == 200
    assert first["forwarded"] == 0 and first["timezone"] == "UTC"
    assert set(first) >= {"day", "timezone", "blocked", "forwarded", "clients", "names"}
    # dnsmasq restarts (an apply, a crash): it appends to the same file.
    target = lab_target(info)
    procs.stop(pidfile(target, "sinkhole"))
    start_dnsmasq(target, "sinkhole")
    deadline = time.monotonic() + 10
    while ask(ns2, a2, gw, [(name, TYPES["AAAA"])]) != (1, 1):
        assert time.monotonic() < deadline, "the sinkhole did not come back"
    assert ask(ns2, a2, gw, [(name, TYPES["AAAA"])] * 299) == (299, 299)
    second = cell_json(repo, "dns", "stats")
    assert names_of(second)[name] == 500
    assert second["blocked"] - first["blocked"] >= 300
    clients = {c["address"]: c for c in second["clients"]}
    assert clients[a1]["host"] == "cam-01" and clients[a1]["vlan"] == "cameras"
    assert clients[a2]["host"] == "cam-02"
    again = cell_json(repo, "dns", "stats")
    assert names_of(again)[name] == 500  # read twice, counted once
    text = cell(repo, "dns", "stats")
    assert text.returncode == 0 and text.stdout.startswith("DNS BLK ")
    assert " calls today" in text.stdout.splitlines()[0]


def test_an_unknown_device_is_shown_as_unknown(lab: tuple[Policy, LabInfo, Path]) -> None:
    policy, info, repo = lab
    ns, _ = cam(info)
    add_address(ns, "10.10.0.77")
    name = unique("stranger")
    assert ask(ns, "10.10.0.77", policy.vlans["cameras"].gateway, [(name, 1)] * 3) == (3, 3)
    doc = cell_json(repo, "dns", "stats")
    (c,) = [c for c in doc["clients"] if c["address"] == "10.10.0.77"]
    assert c["host"] is None and c["vlan"] == "cameras" and c["blocked"] >= 3
    log = cell(repo, "dns", "log", "--client", "10.10.0.77")
    assert "unknown/cameras 10.10.0.77" in log.stdout and name in log.stdout


def test_a_killed_reader_neither_loses_nor_double_counts(
    lab: tuple[Policy, LabInfo, Path],
) -> None:
    policy, info, repo = lab
    ns, src = cam(info)
    name = unique("killed")
    gw = policy.vlans["cameras"].gateway
    for round_ in range(4):
        assert ask(ns, src, gw, [(name, TYPES["TXT"])] * 3000) == (3000, 3000)
        reader = subprocess.Popen(
            [sys.executable, "-m", "cell.cli", "dns", "stats", "--repo", str(repo)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.4 + 0.25 * round_)
        reader.send_signal(signal.SIGKILL)
        reader.wait()
    assert names_of(cell_json(repo, "dns", "stats"))[name] == 12000


def test_drops_survive_a_reapply(lab: tuple[Policy, LabInfo, Path]) -> None:
    policy, info, repo = lab
    ns, src = cam(info)
    phone_home = info.outside["phone_home"]

    def send(n: int) -> None:
        def go() -> None:
            import socket

            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((src, 0))
                for _ in range(n):
                    s.sendto(b"phone home", (phone_home, 9999))

        netns.with_ns(ns, go)

    def today() -> int:
        doc = cell_json(repo, "drops")
        return sum(
            d["packets"] for d in doc["drops"] if (d["source"], d["dest"]) == ("cameras", "wan")
        )

    before = today()
    send(40)
    assert today() == before + 40
    # A re-apply replaces the table: its counters start again from zero.
    fw.apply((Path(info.layout.config) / "nftables" / "ruleset.json").read_bytes(), info.gateway)
    assert fw.read_counters(info.gateway)["drop_cameras.wan"] == 0
    send(25)
    assert today() == before + 65
    text = cell(repo, "drops")
    assert f"cameras → wan: {before + 65} dropped today" in text.stdout
    # `cell apply` polls right before it replaces the table: nothing between polls is lost.
    send(7)
    apply_policy(policy, lab_target(info), keeper=DropKeeper(info.layout.state, policy))
    assert fw.read_counters(info.gateway)["drop_cameras.wan"] == 0
    assert today() == before + 72


def test_probe_history(lab: tuple[Policy, LabInfo, Path]) -> None:
    _, _, repo = lab
    r = cell(repo, "probe", "--lab", "--json")
    assert r.returncode == 0, r.stderr
    flows = len(json.loads(r.stdout)["results"])
    doc = cell_json(repo, "probe", "history")
    run = doc["runs"][0]
    assert run["ok"] is True and run["flows"] == flows and run["failed"] == []
    assert set(run) >= {"ts", "commit", "ok", "flows", "failed"}
    assert cell_json(repo, "probe", "history", "--since", "-1m")["runs"][0] == run
    assert cell_json(repo, "probe", "history", "--since", "2001-01-01")["runs"][0] == run


def test_bad_input_is_one_line_and_exit_2(lab: tuple[Policy, LabInfo, Path]) -> None:
    _, _, repo = lab
    for args in (
        ("dns", "stats", "--day", "2026-02-30"),
        ("dns", "stats", "--day", "1999-01-01"),
        ("dns", "log", "--since", "last tuesday"),
        ("dns", "log", "--client", "no-such-host"),
        ("drops", "--day", "tomorrow"),
        ("probe", "history", "--since", "-2 hours"),
    ):
        r = cell(repo, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def test_rotation_by_sigusr2_loses_nothing(
    lab: tuple[Policy, LabInfo, Path], tmp_path: Path
) -> None:
    from cell.store import open_store
    from cell.store.dns import recent_events
    from cell.verify.sinkhole import ingest, rotate_log
    from cell.verify.site import log_sources, site_zone

    policy, info, _ = lab
    ns, src = cam(info)
    gw = policy.vlans["cameras"].gateway
    name = unique("rotated")
    sinkhole, _ = log_sources(policy, info.layout)
    pid = procs.read_pid(pidfile(lab_target(info), "sinkhole"))
    assert pid is not None
    tz = site_zone(policy)
    with open_store(tmp_path) as store:
        assert ask(ns, src, gw, [(name, 1)] * 100) == (100, 100)
        ingest(store, [sinkhole], tz)
        assert not rotate_log(store, sinkhole, pid)  # small: stays
        assert ask(ns, src, gw, [(name, 1)] * 10) == (10, 10)
        assert not rotate_log(store, sinkhole, pid, at=0)  # not wholly read yet: stays
        ingest(store, [sinkhole], tz)
        old = sinkhole.path.stat().st_ino
        assert rotate_log(store, sinkhole, pid, at=0)
        assert sinkhole.path.stat().st_ino != old
        assert ask(ns, src, gw, [(name, 28)] * 50) == (50, 50)
        assert name in sinkhole.path.read_text()  # dnsmasq writes to the new file
        got = ingest(store, [sinkhole], tz)
        assert not got.lost
        events = recent_events(store, 0, [src], 100_000)
        assert sum(e.count for e in events if e.name == name) == 160

"""`cell bridge policy|status`, run as a person would (a subprocess): output, --json, exit codes.
These use --state-dir with a hand-made broker log; the lab runs are in test_bridge_lab.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bridge.monitor import replay_log, write_snapshot
from conftest import EXAMPLE
from policies import load_policy
from policies.layout import BRIDGE_SNAPSHOT

TAGS = {"up": "↑hub", "down": "↓hub", "local": "✗ stays local", "never": "✗ never bridged"}


def cell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cell.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_policy_json_has_every_rule_tagged_with_its_place() -> None:
    r = cell("bridge", "policy", "--repo", str(EXAMPLE), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    policy = load_policy(EXAMPLE)
    assert [x["pattern"] for x in doc["rules"]] == [t.pattern for t in policy.mqtt.topics]
    lines = (EXAMPLE / "mqtt.yaml").read_text().splitlines()
    for rule in doc["rules"]:
        assert rule["tag"] == TAGS[rule["direction"]]
        assert rule["file"].endswith("mqtt.yaml")
        assert f'"{rule["pattern"]}"' in lines[rule["line"] - 1]
        assert (rule["qos"] is None) == (rule["direction"] in ("never", "local"))
    assert doc["default"]["direction"] == "local" and doc["default"]["tag"] == "✗ stays local"
    assert "default: local" in lines[doc["default"]["line"] - 1]
    assert doc["prefix"] == "sites/lisbon-01/" and doc["client_id"] == "cell-lisbon-01"


def test_policy_text_shows_all_four_tags() -> None:
    r = cell("bridge", "policy", "--repo", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()[2:]
    assert len(rows) == len(load_policy(EXAMPLE).mqtt.topics) + 1
    for tag in TAGS.values():
        assert any(row.strip().startswith(tag) for row in rows), tag
    snapshots = next(row for row in rows if "site/+/snapshots/#" in row)
    assert "✗ never bridged" in snapshots and "mqtt.yaml:20" in snapshots and "tier 1" in snapshots
    assert "(any other topic)" in rows[-1] and "the default" in rows[-1]


def test_policy_of_a_bad_repo_exits_2(tmp_path: Path) -> None:
    r = cell("bridge", "policy", "--repo", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def write_log(state: Path, body: str) -> Path:
    log = state / "mosquitto" / "mosquitto.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(body)
    return log


B = "local.cell-lisbon-01"
CLEAN = (
    "100: mosquitto version 2.0.11 starting\n"
    f"101: Received CONNACK on connection {B}.\n"
    "102: Received PUBLISH from cam (d0, q1, r0, m1, 'site/cam-01/events/a', ... (1 bytes))\n"
    f"102: Sending PUBLISH to {B} (d0, q1, r0, m1, 'sites/lisbon-01/site/cam-01/events/a', ... (1 bytes))\n"
)
LEAK = f"103: Sending PUBLISH to {B} (d0, q1, r0, m2, 'sites/lisbon-01/site/cam-01/snapshots/1', ... (9 bytes))\n"


def status(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return cell("bridge", "status", "--repo", str(EXAMPLE), "--state-dir", str(state), *extra)


def test_status_without_a_broker_log_exits_2(tmp_path: Path) -> None:
    r = status(tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no broker log at" in r.stderr and "cell apply" in r.stderr


def test_status_from_the_log_when_no_monitor_runs(tmp_path: Path) -> None:
    write_log(tmp_path, CLEAN)
    r = status(tmp_path, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["source"] == "log" and doc["link"]["state"] == "up"
    assert doc["seen"] == {"up": 1, "down": 0, "local": 0, "never": 0}
    assert doc["crossed"] == {"up": 1, "down": 0} and doc["unexpected"] == []
    text = status(tmp_path)
    assert text.returncode == 0
    assert "UP for" in text.stdout and "unexpected publishes: none" in text.stdout


def test_status_exits_3_and_shows_the_evidence_of_a_leak(tmp_path: Path) -> None:
    log = write_log(tmp_path, CLEAN + LEAK)
    r = status(tmp_path, "--json")
    assert r.returncode == 3
    (u,) = json.loads(r.stdout)["unexpected"]
    assert u["topic"] == "site/cam-01/snapshots/1" and u["direction"] == "never"
    assert u["rule"]["pattern"] == "site/+/snapshots/#" and u["rule"]["line"] == 20
    assert u["evidence"] == {"log": str(log), "line": 5, "text": LEAK.rstrip("\n")}
    text = status(tmp_path).stdout
    assert "UNEXPECTED PUBLISHES: 1" in text and f"{log}:5:" in text
    assert "policy says never (✗ never bridged) by rule 'site/+/snapshots/#'" in text


def test_status_prefers_a_fresh_snapshot_of_a_live_monitor(tmp_path: Path) -> None:
    log = write_log(tmp_path, CLEAN)
    policy = load_policy(EXAMPLE)
    snap = replay_log(policy, log, time.time())
    snap.source, snap.monitor_pid = "monitor", os.getpid()
    snap.seen["never"] = 42  # only the snapshot says this
    write_snapshot(snap, tmp_path / BRIDGE_SNAPSHOT)
    doc = json.loads(status(tmp_path, "--json").stdout)
    assert doc["source"] == "monitor" and doc["seen"]["never"] == 42
    snap.updated -= 60  # stale: the monitor stopped writing
    write_snapshot(snap, tmp_path / BRIDGE_SNAPSHOT)
    doc = json.loads(status(tmp_path, "--json").stdout)
    assert doc["source"] == "log" and doc["seen"]["never"] == 0


def test_monitor_refuses_to_run_without_a_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CELL_MONITOR_PASSWORD"}
    argv = ["bridge", "monitor", "--repo", str(EXAMPLE), "--state-dir", str(tmp_path)]
    r = subprocess.run(
        [sys.executable, "-m", "cell.cli", *argv, "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 2 and "CELL_MONITOR_PASSWORD" in r.stderr

"""bridge.monitor and bridge.observer's file side: counts, link state, unexpected publishes, the
snapshot, following a log. Pure or on files; the real broker is in test_bridge_lab.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.monitor import MonitorCore, read_snapshot, replay_log, write_snapshot
from bridge.observer import LogFollower
from bridge.status import BridgeStatus
from conftest import EXAMPLE
from policies import Policy, load_policy

B = "local.cell-lisbon-01"
P = "sites/lisbon-01/"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(EXAMPLE)


def sent(t: int, topic: str, qos: int = 1) -> str:
    return f"{t}: Sending PUBLISH to {B} (d0, q{qos}, r0, m1, '{topic}', ... (5 bytes))\n"


def received(t: int, client: str, topic: str) -> str:
    return f"{t}: Received PUBLISH from {client} (d0, q1, r0, m1, '{topic}', ... (5 bytes))\n"


START = "100: mosquitto version 2.0.11 starting\n"
UP = f"101: Received CONNACK on connection {B}.\n"


def test_counts_per_class_and_rule_from_the_observer(policy: Policy) -> None:
    core = MonitorCore(policy)
    for topic in ["site/cam-01/events/motion", "site/cam-02/events/x", "site/cam-01/snapshots/1"]:
        core.observe(topic, b"x", False, 1.0)
    core.observe("hub/commands/cam-01/reboot", b"x", False, 1.0)
    core.observe("anything/else", b"x", False, 1.0)
    core.observe("site/cam-01/debug/x", b"x", True, 1.0)  # retained: an old message, not traffic
    core.observe("$SYS/broker/uptime", b"5", False, 1.0)
    st = core.snapshot(2.0)
    assert st.seen == {"up": 2, "down": 1, "local": 1, "never": 1}
    assert st.sys == 1
    by_pattern = {r.rule.pattern: r.seen for r in st.rules}
    assert by_pattern["site/+/events/#"] == 2 and by_pattern["site/+/snapshots/#"] == 1
    assert by_pattern["site/+/debug/#"] == 0 and by_pattern["$SYS/#"] == 0
    assert st.default is not None and st.default.seen == 1
    assert st.rules[0].rule.file.endswith("mqtt.yaml") and st.rules[0].rule.line == 10


def test_link_state_from_sys_and_from_the_log(policy: Policy) -> None:
    core = MonitorCore(policy)
    state = "sites/lisbon-01/cell/bridge"
    core.observe(state, b"1", True, 50.0)  # retained at subscribe: the current state
    assert (core.link.state, core.link.since) == ("up", 50.0)
    core.feed_log([START, UP, f"130: Client {B} closed its connection.\n"])
    assert (core.link.state, core.link.since, core.link.connects, core.link.disconnects) == (
        "down",
        130,
        1,
        1,
    )
    core.observe(state, b"1", False, 140.5)
    st = core.snapshot(150.5)
    assert st.link.state == "up" and st.link.duration(st.updated) == 10.0
    assert st.to_doc()["link"]["for_seconds"] == 10.0


def test_a_correct_bridge_has_no_unexpected_publish(policy: Policy) -> None:
    core = MonitorCore(policy, log="/x.log")
    hits = core.feed_log(
        [
            START,
            UP,
            sent(102, P + "site/cam-01/events/motion"),
            sent(102, P + "health/cpu", 0),
            received(103, B, "hub/commands/cam-01/reboot"),
            received(103, "cam-01", "site/cam-01/snapshots/1"),
        ]
    )
    assert hits == []
    st = core.snapshot(104.0)
    assert st.ok and st.crossed == {"up": 2, "down": 1}
    assert {r.rule.pattern: r.crossed for r in st.rules if r.crossed} == {
        "site/+/events/#": 1,
        "health/#": 1,
        "hub/commands/#": 1,
    }
    assert st.seen == {"up": 0, "down": 0, "local": 0, "never": 0}  # monitor mode: observer only


def test_unexpected_publishes_carry_rule_and_evidence(policy: Policy) -> None:
    core = MonitorCore(policy, log="/var/lib/cell/mosquitto/mosquitto.log")
    lines = [
        START,
        UP,
        sent(102, P + "site/cam-01/snapshots/1"),  # never
        sent(103, P + "site/cam-01/debug/x", 0),  # local
        sent(104, P + "hub/commands/cam-01/reboot"),  # a down topic going up
        sent(105, "site/cam-01/events/motion"),  # up, but without the prefix
        received(106, B, "registry/cam-01"),  # an up topic coming down
        sent(107, P + "whatever/else"),  # the default (local)
    ]
    hits = core.feed_log(lines)
    summary = [(h.way, h.topic, h.direction, h.rule.pattern, h.prefixed) for h in hits]
    assert summary == [
        ("up", "site/cam-01/snapshots/1", "never", "site/+/snapshots/#", True),
        ("up", "site/cam-01/debug/x", "local", "site/+/debug/#", True),
        ("up", "hub/commands/cam-01/reboot", "down", "hub/commands/#", True),
        ("up", "site/cam-01/events/motion", "up", "site/+/events/#", False),
        ("down", "registry/cam-01", "up", "registry/#", True),
        ("up", "whatever/else", "local", None, True),
    ]
    first = hits[0]
    assert first.time == 102 and first.remote_topic == P + "site/cam-01/snapshots/1"
    assert first.evidence.line == 3 and first.evidence.text == lines[2].rstrip("\n")
    assert first.evidence.log == "/var/lib/cell/mosquitto/mosquitto.log"
    assert first.rule.line == 20
    st = core.snapshot(110.0)
    assert not st.ok and st.unexpected_total == 6
    assert BridgeStatus.model_validate(json.loads(json.dumps(st.to_doc()))) == st


def test_log_mode_counts_since_the_last_start_and_keeps_every_incident(policy: Policy) -> None:
    core = MonitorCore(policy, source="log")
    core.feed_log(
        [
            START,
            received(100, "cam-01", "site/cam-01/events/a"),
            sent(100, P + "site/cam-01/snapshots/1"),
            "200: mosquitto version 2.0.11 starting\n",
            received(201, "cam-01", "site/cam-01/events/b"),
            received(201, "cam-01", "site/cam-01/debug/b"),
            received(202, B, "hub/config/x"),
            "203: Denied PUBLISH from cam-01 (d0, q1, r0, m1, 'hub/commands/x', ... (1 bytes))\n",
        ]
    )
    st = core.snapshot(300.0)
    assert st.seen == {"up": 1, "down": 1, "local": 1, "never": 0}
    assert st.seen_since == 200 and st.log_since == 200
    assert st.crossed == {"up": 0, "down": 1} and st.denied == 1
    assert st.unexpected_total == 1  # from the earlier run of the broker: an incident stays
    assert (st.link.state, st.link.since) == ("down", 200)


def test_replay_log_and_snapshot_files(policy: Policy, tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_text(START + UP + sent(102, P + "site/cam-01/audio/1"))
    st = replay_log(policy, log, 103.0)
    assert st.source == "log" and st.unexpected_total == 1 and st.link.state == "up"
    assert replay_log(policy, tmp_path / "missing.log", 1.0).link.state == "unknown"
    snap = tmp_path / "bridge" / "monitor.json"
    write_snapshot(st, snap)
    assert read_snapshot(snap) == st
    assert [p.name for p in snap.parent.iterdir()] == ["monitor.json"]  # no temp file left
    snap.write_text("{not json")
    assert read_snapshot(snap) is None
    assert read_snapshot(tmp_path / "none.json") is None


def test_log_follower_reads_appends_partial_lines_and_rotation(tmp_path: Path) -> None:
    log = tmp_path / "m.log"
    f = LogFollower(log)
    assert f.read() == (1, [])  # no file yet
    log.write_text("1: a\n2: b\n3: par")
    assert f.read() == (1, ["1: a", "2: b"])
    with log.open("a") as out:
        out.write("tial\n")
    assert f.read() == (3, ["3: partial"])
    assert f.read() == (4, [])
    log.rename(tmp_path / "m.log.1")  # rotated: a new file starts at line 1
    log.write_text("9: new\n")
    assert f.read() == (1, ["9: new"])
    log.write_text("")  # truncated (copytruncate): read from the start again
    assert f.read() == (1, [])
    log.write_text("10: again\n")
    assert f.read() == (1, ["10: again"])
    f.close()


def test_status_models_import_without_paho_or_textual() -> None:
    code = (
        "import sys, bridge.status, bridge.monitor, bridge.table;"
        "bad = [m for m in ('paho', 'textual') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_queue_overflow_for_the_bridge_and_for_the_observer_is_reported(policy: Policy) -> None:
    core = MonitorCore(policy)
    core.observer_id = "cell-monitor-7"
    core.feed_log(
        [
            START,
            f"110: Outgoing messages are being dropped for client {B}.\n",
            "111: Outgoing messages are being dropped for client cell-monitor-7.\n",
            "112: Outgoing messages are being dropped for client cam-01.\n",
        ]
    )
    st = core.snapshot(120.0)
    assert (st.bridge_dropping, st.monitor_dropping) == (1, 1)
    assert BridgeStatus.model_validate(json.loads(json.dumps(st.to_doc()))) == st

"""The bridge through change, on a lab: broker control (reload vs restart), a narrowed policy, a hub
outage, and a deliberately mis-rendered bridge that the monitor must report.

One lab for the module; each test puts the original policy back in `finally`. The mis-rendered
bridge leaves incidents in the broker's log on purpose, so it runs last.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.broker import Broker
from bridge.classify import Classifier
from bridge.render import bridge_client_id, bridge_local_client_id
from cell.deploy.install import apply_policy, lab_target
from cell.deploy.runner import NetnsRunner
from cell.lab.processes import start as start_process
from cell.lab.processes import stop as stop_processes
from cell.lab.processes import wait_ready
from cell.lab.state import write_state
from policies import Policy, load_policy
from policies.busnames import bridge_state_topic
from policies.layout import BRIDGE_CONF, BRIDGE_SNAPSHOT
from test_bridge_harness import (
    Site,
    assert_hub_saw_only_up_topics,
    at_hub,
    at_site,
    hub_received,
    msg,
    publish_as,
    publish_at_hub,
    site,  # noqa: F401  (the module's lab: one per test module)
    wait_log,
)

pytestmark = pytest.mark.root
CELL = [sys.executable, "-m", "cell.cli"]


def variant(site: Site, tmp: Path, *edits: tuple[str, str]) -> Policy:
    """The site's policy with text edits (old, new) in mqtt.yaml."""
    repo = tmp / "variant"
    shutil.copytree(site.repo, repo)
    text = (repo / "mqtt.yaml").read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    (repo / "mqtt.yaml").write_text(text)
    return load_policy(repo)


def broker_pid(site: Site) -> int:
    return int((Path(site.info.layout.state) / "mosquitto" / "mosquitto.run.pid").read_text())


def test_an_acl_change_is_a_reload_and_keeps_the_broker(site: Site, tmp_path: Path) -> None:
    wider = variant(
        site,
        tmp_path,
        ('publish: ["site/cam-01/#"]', 'publish: ["site/cam-01/#", "site/shared/#"]'),
    )
    pid = broker_pid(site)
    assert publish_as(site, "cam-01", [msg("site/shared/x")]) == [135]
    try:
        assert apply_policy(wider, lab_target(site.info)).broker == "reloaded"
        assert broker_pid(site) == pid  # SIGHUP, not a restart: the bridge stayed up
        assert publish_as(site, "cam-01", [msg("site/shared/x")])[0] in (0, 16)
    finally:
        assert apply_policy(site.policy, lab_target(site.info)).broker == "reloaded"
    assert publish_as(site, "cam-01", [msg("site/shared/x")]) == [135]
    assert broker_pid(site) == pid


def test_narrowing_takes_effect_on_both_brokers(site: Site, tmp_path: Path) -> None:
    p = site.prefix
    narrow = variant(  # one up rule and one down rule fewer
        site,
        tmp_path,
        ('  - {pattern: "registry/#",', '  # - {pattern: "registry/#",'),
        ('  - {pattern: "hub/config/#",', '  # - {pattern: "hub/config/#",'),
    )
    assert Classifier(narrow).classify("registry/x").direction == "local"
    assert Classifier(narrow).classify("hub/config/x").direction == "local"
    # Before: both cross (so the test below can fail).
    with at_hub(site) as hub, at_site(site) as local:
        publish_as(site, "nvr", [msg("registry/before")])
        publish_at_hub(site, [msg(p + "hub/config/before")])
        hub.wait_for(p + "registry/before")
        local.wait_for("hub/config/before")
    pid = broker_pid(site)
    try:
        assert apply_policy(narrow, lab_target(site.info)).broker == "restarted"
        assert broker_pid(site) != pid
        wait_log(site.site_log, f"Received CONNACK on connection {bridge_local_client_id(narrow)}")
        time.sleep(0.3)  # the bridge's SUBSCRIBEs at the hub follow its CONNACK
        with at_hub(site) as hub, at_site(site) as local:
            publish_as(site, "nvr", [msg("registry/after"), msg("evidence/manifests/control")])
            publish_at_hub(site, [msg(p + "hub/config/after"), msg(p + "hub/commands/c/control")])
            at_the_hub = hub.after_control(p + "evidence/manifests/control")
            here = local.after_control("hub/commands/c/control")
        assert p + "registry/after" not in at_the_hub
        assert "hub/config/after" not in here
        # No session survived on either side: the hub saw a clean session (c1), the site keeps
        # no database.
        hub_log = site.hub_log.read_text().splitlines()
        connects = [line for line in hub_log if f"as {bridge_client_id(narrow)} (" in line]
        assert connects and all(" c1," in line for line in connects)
        assert not list(Path(site.info.layout.state).rglob("*.db"))
    finally:
        assert apply_policy(site.policy, lab_target(site.info)).broker == "restarted"


def test_reconnect_delivers_what_was_queued_and_nothing_forbidden(site: Site) -> None:
    p, info = site.prefix, site.info
    local_id = bridge_local_client_id(site.policy)
    wait_log(site.site_log, f"Received CONNACK on connection {local_id}", timeout=30)
    assert publish_as(site, "cam-01", [msg("site/cam-01/state", retain=True, payload="R0")])
    offset = len(site.site_log.read_text())
    hub = info.processes["hub"]
    stop_processes([hub.pid])
    # mosquitto words a lost bridge link either way, depending on how the socket ended.
    lost = (f"Client {local_id} closed its connection", f"Socket error on client {local_id}")
    wait_log(site.site_log, lost, timeout=30, start=offset)
    # More than mosquitto's default queue (1,000): render.py's max_queued_messages must hold.
    queued = [msg(f"site/cam-01/events/outage-{i}") for i in range(3000)]
    queued.append(msg("site/cam-01/state", retain=True, payload="R1"))
    forbidden = ["site/cam-01/snapshots/o", "site/cam-01/debug/o", "site/cam-01/else"]
    codes = publish_as(site, "cam-01", queued + [msg(t, retain=True) for t in forbidden])
    assert set(codes) <= {0, 16}
    new = start_process("hub", hub.netns, hub.argv, Path(hub.log))
    info.processes["hub"] = new
    write_state(info)  # lab down stops the new hub by its record too
    wait_ready([(new, [(site.hub["host"], site.hub["port"], "tcp")])])
    with at_hub(site) as at:
        # Counted in the hub's own log: 3,000 messages are more than a test subscriber's queue.
        want = {p + m["topic"] for m in queued}
        deadline = time.monotonic() + 45  # the bridge retries after restart_timeout (10 s)
        while not want <= {e.topic for e in hub_received(site)}:
            assert time.monotonic() < deadline, "the queued messages did not all reach the hub"
            time.sleep(0.2)
        publish_as(site, "cam-01", [msg(t) for t in forbidden] + [msg("site/cam-01/events/c")])
        arrived = at.after_control(p + "site/cam-01/events/c")
        states = [g.payload for g in at.messages() if g.topic == p + "site/cam-01/state"]
    assert not {p + t for t in forbidden} & arrived
    assert "R1" in states and "R0" not in states
    with at_hub(site) as again:  # the hub holds the last state, retained
        again.wait_for(p + "site/cam-01/state")
        kept = [g for g in again.messages() if g.topic == p + "site/cam-01/state"]
        assert {(g.retain, g.payload) for g in kept} == {(True, "R1")}  # one per matching filter
    classifier = Classifier(site.policy)
    assert_hub_saw_only_up_topics(site, lambda t: classifier.classify(t).direction)
    r = subprocess.run(
        [*CELL, "bridge", "status", "--repo", str(site.repo), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    link = json.loads(r.stdout)["link"]
    assert link["state"] == "up" and link["disconnects"] >= 1 and link["connects"] >= 2


def test_a_misrendered_bridge_is_reported_as_unexpected_publishes(site: Site) -> None:
    p, info = site.prefix, site.info
    bridge_conf = Path(info.layout.config) / BRIDGE_CONF
    state = Path(info.layout.state)
    broker = Broker(
        NetnsRunner(info.gateway, str(state / "resolv.conf")),
        conf=Path(info.layout.config) / "mosquitto" / "mosquitto.conf",
        pidfile=state / "mosquitto" / "mosquitto.run.pid",
        log=state / "mosquitto" / "mosquitto.out",
        port=1883,
    )
    local_id = bridge_local_client_id(site.policy)
    offset = len(site.site_log.read_text())
    with bridge_conf.open("a") as f:
        f.write(f'topic # out 1 "" {p}\n')  # by hand, as an attacker or a mistake would
    monitor = None
    try:
        assert broker.update({"mosquitto/conf.d/bridge.conf"}) == "restarted"
        wait_log(
            site.site_log, f"Received CONNACK on connection {local_id}", timeout=30, start=offset
        )
        snapshot = state / BRIDGE_SNAPSHOT
        snapshot.unlink(missing_ok=True)
        monitor = subprocess.Popen(
            [*CELL, "bridge", "monitor", "--repo", str(site.repo), "--seconds", "60", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        leaks = ["site/cam-01/snapshots/9", "site/cam-01/debug/9", "site/cam-01/other/9"]
        with at_hub(site) as hub:
            publish_as(site, "cam-01", [msg(t) for t in leaks] + [msg("site/cam-01/events/9")])
            hub.wait_for({p + t for t in leaks})  # the mis-rendered bridge does leak
        assert monitor.stdout is not None
        # Reported live. `topic #` also carries the broker's own retained link state
        # (bridge_state_topic), itself reported: not one of the three leaks counted here.
        events: list[Any] = []
        while len(events) < len(leaks):
            e = json.loads(monitor.stdout.readline())
            if e["topic"] != bridge_state_topic(site.policy):
                events.append(e)
        monitor.send_signal(signal.SIGTERM)
        assert monitor.wait(timeout=15) == 3
        by_topic = {e["topic"]: e for e in events}
        assert set(by_topic) == set(leaks)
        assert by_topic["site/cam-01/snapshots/9"]["direction"] == "never"
        assert by_topic["site/cam-01/snapshots/9"]["rule"]["pattern"] == "site/+/snapshots/#"
        assert by_topic["site/cam-01/debug/9"]["direction"] == "local"
        assert by_topic["site/cam-01/other/9"]["rule"]["index"] is None  # the default
        lines = site.site_log.read_text().splitlines()
        for e in events:
            ev = e["evidence"]
            assert ev["log"] == str(site.site_log) and lines[ev["line"] - 1] == ev["text"]
            assert f"Sending PUBLISH to {local_id} (" in ev["text"]
            assert f"'{p}{e['topic']}'" in ev["text"] and e["way"] == "up"
        r = subprocess.run(
            [*CELL, "bridge", "status", "--repo", str(site.repo)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        # The three leaks and the link state that `topic #` carried up as well.
        assert r.returncode == 3 and "UNEXPECTED PUBLISHES: 4" in r.stdout
    finally:
        if monitor is not None and monitor.poll() is None:
            monitor.kill()
            monitor.wait()
        assert apply_policy(site.policy, lab_target(info)).broker == "restarted"
    assert "topic # out" not in bridge_conf.read_text()

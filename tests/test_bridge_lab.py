"""The bridge for real: the lab's gateway broker, bridged over mutual TLS to the lab's hub, carries
exactly the policy. Up, blocked, down, ACL, and the monitor's counts against what was sent.

One lab for the module (unique site id, removed in `finally`). Tests of change (narrowing,
reconnect, a mis-rendered bridge) are in test_bridge_lab_changes.py, on a lab of their own.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from bridge.classify import Classifier
from bridge.observer import Monitor, MonitorError, Observer
from bridge.render import bridge_local_client_id
from firewall import netns
from policies import Policy
from policies.busnames import bridge_state_topic
from policies.layout import BRIDGE_SNAPSHOT, PASSWD
from policies.topics import matches
from test_bridge_harness import (
    TESTER_PUBLISH,
    Site,
    assert_hub_saw_only_up_topics,
    at_hub,
    at_site,
    msg,
    publish_as,
    publish_at_hub,
    site,  # noqa: F401  (the module's lab: one per test module)
)

pytestmark = pytest.mark.root
CELL = [sys.executable, "-m", "cell.cli"]


def classify(site: Site, topic: str) -> str:
    return Classifier(site.policy).classify(topic).direction


def test_logins_come_from_a_generated_password_file(site: Site) -> None:
    passwd = Path(site.info.layout.state) / PASSWD
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    entries = dict(line.split(":", 1) for line in passwd.read_text().splitlines())
    assert set(entries) == {c.username for c in site.policy.mqtt.clients} | {"cell"}
    assert all(h.startswith("$7$") for h in entries.values())  # hashed by mosquitto_passwd
    ns, host = site.host("cam-01")
    base = ["mosquitto_pub", "-h", host, "-t", "site/cam-01/events/x", "-m", "x", "-q", "1"]
    anonymous = netns.run(ns, base)
    assert anonymous.returncode != 0 and b"not authorised" in anonymous.stderr
    wrong = netns.run(ns, [*base, "-u", "cam-01", "-P", "not-the-password"])
    assert wrong.returncode != 0


UP_CASES = [
    ("cam-01", "site/cam-01/events/motion"),
    ("cam-01", "site/cam-01/state"),
    ("nvr", "registry/cam-01"),
    ("tester", "health/cpu"),
    ("tester", "bridge/status"),
    ("nvr", "evidence/manifests/2026/clip-7"),
    ("cell", "cell/status"),  # the daemon's login: the Cell's own status goes up
    ("cell", "cell/availability"),
]


def test_up_every_up_rule_delivers_at_the_hub_under_the_prefix(site: Site) -> None:
    rules = site.policy.mqtt.topics
    decided = {Classifier(site.policy).classify(t).rule for _, t in UP_CASES}
    assert decided == {i for i, r in enumerate(rules) if r.direction == "up"}  # each up rule once
    with at_hub(site) as hub:
        for user, topic in UP_CASES:
            qos = rules[Classifier(site.policy).classify(topic).rule or 0].qos
            assert publish_as(site, user, [msg(topic, qos=qos)]) == [0]
        hub.wait_for({site.prefix + t for _, t in UP_CASES})
        got = {g.topic: g for g in hub.messages()}
    for _, topic in UP_CASES:
        rule = rules[Classifier(site.policy).classify(topic).rule or 0]
        assert got[site.prefix + topic].qos == rule.qos, topic  # the rule's QoS on the bridge
        assert topic not in got  # only under the prefix
    log = site.site_log.read_text()
    for _, topic in UP_CASES:  # first-hand evidence in the site's log
        assert f"Sending PUBLISH to {bridge_local_client_id(site.policy)} (d0, q" in log
        assert f"'{site.prefix}{topic}'" in log


def edges(pattern: str) -> set[str]:
    """Concrete topics of a rule and just beside it: itself, one level deeper, one level
    shorter, and a sibling of its last literal level."""
    levels = pattern.split("/")
    hashed = levels[-1] == "#"
    concrete = ["cam-01" if lv == "+" else lv for lv in (levels[:-1] if hashed else levels)]
    base = "/".join(concrete)
    out = {base, f"{base}/deeper", f"{base}/x/y"}
    if len(concrete) > 1:
        out.add("/".join(concrete[:-1]))
        out.add("/".join([*concrete[:-1], concrete[-1] + "z"]))
    return out


def test_blocked_never_local_unmatched_and_edges_never_reach_the_hub(site: Site) -> None:
    topics = set()
    for rule in site.policy.mqtt.topics:
        # $: not publishable; hub/: see Down; cell/: only the Cell publishes its status bus
        if not rule.pattern.startswith(("$", "hub/", "cell/")):
            topics |= edges(rule.pattern)
    topics |= {"unmatched/x", "site", "sites/other/site/cam-01/events/x", f"{site.prefix}x"}
    forbidden = sorted(t for t in topics if classify(site, t) != "up")
    assert len(forbidden) > 30
    assert all(any(matches(f, t) for f in TESTER_PUBLISH) for t in forbidden)
    control = "bridge/status"
    with at_hub(site) as hub, at_site(site) as local:
        # The camera's own raw data too, from its own VLAN, before the tester's sweep.
        cam = ["site/cam-01/snapshots/1", "site/cam-01/audio/1", "site/cam-01/telemetry/raw/1"]
        assert publish_as(site, "cam-01", [msg(t) for t in cam]) == [0, 0, 0]
        codes = publish_as(site, "tester", [msg(t) for t in forbidden] + [msg(control)])
        assert set(codes) == {0}
        arrived = hub.after_control(site.prefix + control)
        local.wait_for(set(forbidden) | set(cam))  # all were accepted and published locally
        site_topics = set(local.topics())
    state = bridge_state_topic(site.policy)
    assert state in site_topics  # the link state, here ...
    leaked = {t for t in arrived if t.removeprefix(site.prefix) in set(forbidden) | set(cam)}
    assert leaked == set()
    assert not [t for t in arrived if t.startswith("$SYS/broker/connection/")]  # no $SYS of ours
    # ... and at the hub nothing of the site but the control and the link state.
    assert not [t for t in arrived if site.id in t and t not in (site.prefix + control, state)]
    assert_hub_saw_only_up_topics(site, lambda t: classify(site, t))


def test_down_only_down_rules_come_down_with_the_prefix_stripped(site: Site) -> None:
    p = site.prefix
    allowed = ["hub/commands/cam-01/reboot", "hub/config/site/ntp"]
    refused = [
        p + "hub/other/x",
        p + "hub/commandz/cam-01",
        p + "hub",
        p + "site/cam-01/events/forged",
        p + "site/cam-01/snapshots/1",
        "hub/commands/cam-01/unprefixed",
        "sites/other-site/hub/commands/cam-01/reboot",
    ]
    control = "hub/config/control"
    with at_site(site) as local, at_site(site, "cam-01") as cam:
        codes = publish_at_hub(site, [msg(p + t) for t in allowed] + [msg(t) for t in refused])
        assert set(codes) <= {0, 16}  # 16: "no matching subscribers" at the hub (MQTT 5)
        assert publish_at_hub(site, [msg(p + control)]) == [0]
        seen = local.after_control(control)
        local.wait_for(set(allowed))
        assert cam.topics() == {"hub/commands/cam-01/reboot"}  # the ACL: its own commands only
    # The bridge's link state is the local broker's own message: it did not come down.
    came = {t for t in seen if not t.startswith("$SYS") and t != bridge_state_topic(site.policy)}
    assert came == {*allowed, control}
    assert all(classify(site, t) == "down" for t in came)


def test_acl_a_camera_cannot_forge_and_a_refused_publish_goes_nowhere(site: Site) -> None:
    forged = ["site/cam-02/events/forged", "hub/commands/cam-01/forged", "hub/config/forged"]
    control = "site/cam-01/events/after-forgery"
    with at_hub(site) as hub, at_site(site) as local:
        codes = publish_as(site, "cam-01", [msg(t) for t in forged] + [msg(control)])
        assert codes == [135, 135, 135, 0]  # MQTT 5: "not authorized"
        arrived = hub.after_control(site.prefix + control)
        local.wait_for(control)
        assert not set(forged) & local.topics()  # refused: delivered to nobody, not even locally
    assert not [t for t in arrived if "forged" in t]
    log = site.site_log.read_text()
    for t in forged:
        assert f"'{t}', ... (1 bytes))" in log and "Denied PUBLISH from" in log


def cell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CELL, *args], capture_output=True, text=True, timeout=60)


def bridge_status(site: Site) -> dict[str, object]:
    r = cell("bridge", "status", "--repo", str(site.repo), "--json")
    assert r.returncode in (0, 3), r.stderr
    doc: dict[str, object] = json.loads(r.stdout)
    return doc


def test_monitor_counts_exactly_what_was_published(site: Site) -> None:
    before = bridge_status(site)
    assert before["source"] == "log" and before["ok"]
    snapshot = Path(site.info.layout.state) / BRIDGE_SNAPSHOT
    snapshot.unlink(missing_ok=True)
    monitor = subprocess.Popen(
        [*CELL, "bridge", "monitor", "--repo", str(site.repo), "--seconds", "60", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not (snapshot.exists() and json.loads(snapshot.read_text())["seen_since"]):
            assert monitor.poll() is None, monitor.communicate()
            assert time.monotonic() < deadline, "the monitor never subscribed"
            time.sleep(0.05)
        up = [f"site/cam-01/events/m{i}" for i in range(5)]
        never = ["site/cam-01/snapshots/1", "site/cam-01/audio/2", "site/cam-01/telemetry/raw/3"]
        local = ["site/cam-01/debug/a", "site/cam-01/other"]
        with at_hub(site) as hub:
            publish_as(site, "cam-01", [msg(t) for t in up + never + local])
            publish_at_hub(site, [msg(site.prefix + "hub/commands/cam-01/a")] * 2)
            hub.wait_for({site.prefix + t for t in up})
        time.sleep(1.5)  # a snapshot is written every second
        running = bridge_status(site)
        assert running["source"] == "monitor"
    finally:
        monitor.send_signal(signal.SIGTERM)
        out, err = monitor.communicate(timeout=15)
    assert monitor.returncode == 0, err
    assert out == ""  # --json prints one line per unexpected publish: none
    final = json.loads(snapshot.read_text())
    assert final["seen"] == {"up": 5, "down": 2, "local": 2, "never": 3}
    assert final["link"]["state"] == "up" and final["ok"]
    per_rule = {r["pattern"]: r["seen"] for r in final["rules"]}
    assert per_rule["site/+/events/#"] == 5 and per_rule["site/+/debug/#"] == 1
    assert final["default"]["seen"] == 1
    assert running["seen"] == final["seen"]
    after = bridge_status(site)  # the monitor stopped: from the log again
    assert after["source"] == "log" and after["ok"]
    delta = {k: after["crossed"][k] - before["crossed"][k] for k in ("up", "down")}  # type: ignore[index]
    assert delta == {"up": 5, "down": 2}


def _monitor_with(policy: Policy, log: Path, snapshot: Path, password: str) -> str:
    """Run in the gateway's namespace (a child process): what the monitor says."""
    where = Observer("127.0.0.1", 1883, password, log, snapshot)
    try:
        Monitor(policy, where).run(seconds=5)
    except MonitorError as e:
        return str(e)
    return "ran"


def test_a_refused_monitor_login_is_an_error_not_a_silent_zero(site: Site, tmp_path: Path) -> None:
    said = netns.with_ns(
        site.info.gateway,
        partial(_monitor_with, site.policy, site.site_log, tmp_path / "m.json", "wrong"),
    )
    assert said == "the broker refused the monitor's login 'cell': not authorised"


def test_a_local_client_cannot_take_the_bridges_client_id(site: Site) -> None:
    """Issue 10, class 6: cam-01 connects with the bridge's own local client id and publishes a
    `never` topic. The broker names it cam-01 (use_username_as_clientid): the bridge is not kicked
    off, and the monitor, which keys on the bridge's id, reports no incident."""
    from test_bridge_harness import PUBLISHER

    snapshot = Path(site.info.layout.state) / BRIDGE_SNAPSHOT
    snapshot.unlink(missing_ok=True)
    start = site.site_log.stat().st_size
    monitor = subprocess.Popen(
        [*CELL, "bridge", "monitor", "--repo", str(site.repo), "--seconds", "60", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    bridge_id = bridge_local_client_id(site.policy)
    try:
        deadline = time.monotonic() + 10
        while not (snapshot.exists() and json.loads(snapshot.read_text())["seen_since"]):
            assert monitor.poll() is None, monitor.communicate()
            assert time.monotonic() < deadline, "the monitor never subscribed"
            time.sleep(0.05)
        attempts = json.loads(snapshot.read_text())["link"]["attempts"]
        ns, host = site.host("cam-01")
        spec = {"id": bridge_id, "user": "cam-01", "password": site.password("cam-01")}
        spec |= {"host": host, "port": 1883, "messages": [msg("site/cam-01/snapshots/9")]}
        r = netns.run(ns, [sys.executable, "-c", PUBLISHER], input=json.dumps(spec).encode())
        assert r.returncode == 0, r.stdout + r.stderr
        with at_hub(site) as hub:  # the bridge still carries what it should
            assert publish_as(site, "cam-01", [msg("site/cam-01/events/after")]) == [0]
            hub.wait_for(site.prefix + "site/cam-01/events/after")
        time.sleep(1.5)
        during = json.loads(snapshot.read_text())
    finally:
        monitor.send_signal(signal.SIGTERM)
        out, err = monitor.communicate(timeout=15)
    assert monitor.returncode == 0, err
    assert out == ""  # no unexpected publish: nothing was taken for the bridge's
    log = site.site_log.read_text(errors="replace")[start:]
    assert "as cam-01 " in log and f"as {bridge_id}" not in log
    assert f"Client {bridge_id} already connected" not in log
    assert during["link"]["state"] == "up" and during["link"]["attempts"] == attempts
    assert during["ok"] and during["seen"]["never"] == 1

"""Shared pieces of the bridge's lab tests: a site with a test client, MQTT clients in the lab's
namespaces, and the waits that make a "nothing arrived" assertion mean something.

Clients run where their hosts live (a camera in the cameras VLAN's namespace, the hub's observer
in the WAN namespace): publishers are a short paho script run in the namespace, subscribers are
`mosquitto_sub` processes whose subscription is known to be active once the broker's log shows it.
A test of absence publishes the forbidden messages first and a positive control on the same path
last, waits for the control, then waits a bounded time more: if the bridge leaked, the leak would
have arrived before the control.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.logparse import LogParser, Publish
from bridge.render import bridge_client_id
from cell.lab import LabInfo
from conftest import EXAMPLE
from firewall import netns
from policies import Policy
from policies.busnames import bridge_state_topic
from policies.layout import MOSQUITTO_LOG

SETTLE = 0.5
"""How long to keep waiting for a forbidden message after the control message has arrived."""

TESTER_PUBLISH = [
    # single levels by name, not `+`: that would overlap `cell` (the status bus, Cell's alone)
    "site",
    "registry",
    "health",
    "bridge",
    "evidence",
    "site/#",
    "registry/#",
    "registryz/#",
    "health/#",
    "healthz/#",
    "bridge/#",
    "evidence/#",
    "unmatched/#",
    "sites/+/site/#",
    "sites/+/hub/#",
    "sites/+/x",
    "hub/commandz/#",
]
"""The test client's rights: everything but the down topics and the bridge's link state
(validation forbids those)."""


def make_bridge_site(root: Path, site_id: str) -> Path:
    """The example site under a test site id, plus a client `tester` that may publish widely
    (no policy client may publish health/# or bridge/status, and the tests need to)."""
    repo = root / site_id
    shutil.copytree(EXAMPLE, repo)
    site = (repo / "site.yaml").read_text()
    site = site.replace("id: lisbon-01", f"id: {site_id}")
    (repo / "site.yaml").write_text(site.replace("sites/lisbon-01/", f"sites/{site_id}/"))
    rights = ", ".join(f'"{f}"' for f in TESTER_PUBLISH)
    mqtt = (repo / "mqtt.yaml").read_text()
    mqtt = mqtt.replace(
        "clients:\n", f"clients:\n  - {{username: tester, publish: [{rights}], subscribe: []}}\n", 1
    )
    (repo / "mqtt.yaml").write_text(mqtt)
    return repo


def new_site_id() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@dataclass
class Site:
    """A lab site under test: its policy, repo and running lab."""

    policy: Policy
    repo: Path
    info: LabInfo

    @property
    def id(self) -> str:
        return self.policy.site.site.id

    @property
    def prefix(self) -> str:
        return self.policy.site.hub.bridge.remote_prefix

    @property
    def hub(self) -> dict[str, Any]:
        return dict(self.info.mqtt["hub"])

    @property
    def site_log(self) -> Path:
        return Path(self.info.layout.state) / MOSQUITTO_LOG

    @property
    def hub_log(self) -> Path:
        return Path(self.hub["log"])

    def host(self, user: str) -> tuple[str, str]:
        """(namespace, broker address) for a local client: the host of that name, or the NVR's
        VLAN for clients that are no host (tester, the AI box's peers)."""
        host = self.info.hosts.get(user) or self.info.hosts["nvr"]
        return host["netns"], self.info.vlans[host["vlan"]]["gateway"]

    def password(self, user: str) -> str:
        return self.info.credentials[user]


# --- publishing -------------------------------------------------------------------------------

PUBLISHER = r"""
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

spec = json.load(sys.stdin)
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=spec["id"], protocol=mqtt.MQTTv5)
if spec.get("user"):
    c.username_pw_set(spec["user"], spec["password"])
if spec.get("tls"):
    t = spec["tls"]
    c.tls_set(ca_certs=t["cafile"], certfile=t["certfile"], keyfile=t["keyfile"])
codes, up = {}, []
c.on_publish = lambda _c, _u, mid, rc, _p: codes.__setitem__(mid, rc.value)
c.on_connect = lambda _c, _u, _f, rc, _p: up.append(rc.value)
c.connect(spec["host"], spec["port"])
c.loop_start()
deadline = time.monotonic() + 5
while not up and time.monotonic() < deadline:
    time.sleep(0.01)
if up != [0]:
    print(json.dumps({"connect": up}))
    sys.exit(1)
sent = []
for m in spec["messages"]:
    info = c.publish(m["topic"], m["payload"], qos=m["qos"], retain=m["retain"])
    info.wait_for_publish(5)
    sent.append(info.mid)
deadline = time.monotonic() + 5
while len(codes) < len(sent) and time.monotonic() < deadline:
    time.sleep(0.01)
c.disconnect()
c.loop_stop()
print(json.dumps({"codes": [codes.get(mid) for mid in sent]}))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One lab of the bridge test site per test module, removed even when a test fails."""
    from cell.deploy.install import apply_lab
    from cell.lab import lab_down, lab_up
    from policies import load_policy

    site_id = new_site_id()
    repo = make_bridge_site(tmp_path_factory.mktemp("bridge"), site_id)
    policy = load_policy(repo)
    try:
        yield Site(policy, repo, lab_up(policy, apply=apply_lab))
    finally:
        lab_down(site_id)


def msg(topic: str, qos: int = 1, retain: bool = False, payload: str = "x") -> dict[str, Any]:
    return {"topic": topic, "qos": qos, "retain": retain, "payload": payload}


def publish_as(site: Site, user: str, messages: list[dict[str, Any]]) -> list[int | None]:
    """Publish as a local client from its host's namespace (MQTT 5, so a refused QoS 1 publish
    comes back as reason code 135); returns each message's reason code."""
    ns, host = site.host(user)
    spec = {"user": user, "password": site.password(user), "host": host, "port": 1883}
    return _publish(ns, {**spec, "messages": messages})


def publish_at_hub(site: Site, messages: list[dict[str, Any]]) -> list[int | None]:
    hub = site.hub
    tls = {k: hub[k] for k in ("cafile", "certfile", "keyfile")}
    spec = {"host": hub["host"], "port": hub["port"], "tls": tls, "messages": messages}
    return _publish(hub["netns"], spec)


def _publish(ns: str, spec: dict[str, Any]) -> list[int | None]:
    spec["id"] = f"pub-{uuid.uuid4().hex[:8]}"
    r = netns.run(
        ns, [sys.executable, "-c", PUBLISHER], input=json.dumps(spec).encode(), timeout=60
    )
    out = r.stdout.decode().strip()
    assert r.returncode == 0, f"publisher failed in {ns}: {out} {r.stderr.decode()[-2000:]}"
    codes: list[int | None] = json.loads(out)["codes"]
    return codes


# --- subscribing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Got:
    topic: str
    qos: int
    retain: bool
    payload: str


class Collector:
    """A `mosquitto_sub` in a namespace, collecting every message it receives."""

    def __init__(self, proc: subprocess.Popen[bytes], cid: str) -> None:
        self.proc, self.cid = proc, cid
        self.got: list[Got] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            got = Got(d["topic"], int(d["qos"]), bool(d["retain"]), str(d.get("payload", "")))
            with self._lock:
                self.got.append(got)

    def messages(self) -> list[Got]:
        with self._lock:
            return list(self.got)

    def topics(self) -> set[str]:
        return {g.topic for g in self.messages()}

    def wait_for(self, topics: set[str] | str, timeout: float = 10) -> None:
        want = {topics} if isinstance(topics, str) else set(topics)
        deadline = time.monotonic() + timeout
        while not want <= self.topics():
            assert self.proc.poll() is None, f"{self.cid} exited: {self.proc.returncode}"
            missing = sorted(want - self.topics())
            assert time.monotonic() < deadline, (
                f"{self.cid} never got {len(missing)} of {len(want)}: {missing[:5]} ..."
            )
            time.sleep(0.02)

    def after_control(self, control: str, timeout: float = 10) -> set[str]:
        """Wait for `control`, then SETTLE seconds more; every topic received by then."""
        self.wait_for(control, timeout)
        time.sleep(SETTLE)
        return self.topics()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)


def wait_log(log: Path, needle: str | tuple[str, ...], timeout: float = 10, start: int = 0) -> None:
    """Wait until `needle` (or any of several wordings of one event) appears in `log`."""
    needles = (needle,) if isinstance(needle, str) else needle
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace")[start:] if log.exists() else ""
        if any(n in text for n in needles):
            return
        assert time.monotonic() < deadline, f"none of {needles!r} appeared in {log}"
        time.sleep(0.02)


@contextmanager
def collector(
    ns: str, conn: list[str], topics: list[str], log: Path, qos: int = 1
) -> Iterator[Collector]:
    """A subscriber that is known to be subscribed (its SUBSCRIBE is in the broker's log)."""
    cid = f"sub-{uuid.uuid4().hex[:8]}"
    argv = ["mosquitto_sub", *conn, "-i", cid, "-q", str(qos), "-F", "%j", "-V", "mqttv311"]
    if "-u" in conn:  # the site's broker names a client by its login (use_username_as_clientid)
        cid = conn[conn.index("-u") + 1]
    for t in topics:
        argv += ["-t", t]
    proc = netns.popen(ns, argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    c = Collector(proc, cid)
    try:
        wait_log(log, f"{cid} {qos} {topics[-1]}")
        yield c
    finally:
        c.close()


def at_hub(site: Site) -> Any:
    """Everything the hub delivers: under the prefix, anything else, and its $SYS."""
    hub = site.hub
    conn = ["-h", hub["host"], "-p", str(hub["port"]), "--cafile", hub["cafile"]]
    conn += ["--cert", hub["certfile"], "--key", hub["keyfile"]]
    return collector(hub["netns"], conn, [f"{site.prefix}#", "#", "$SYS/#"], site.hub_log)


def at_site(site: Site, user: str = "cell") -> Any:
    """Everything published on the site's broker (as `cell`: reads # and $SYS/#), or what one
    local client may read (`user`), from that client's namespace."""
    if user == "cell":
        ns, host = site.info.gateway, "127.0.0.1"
    else:
        ns, host = site.host(user)
    conn = ["-h", host, "-p", "1883", "-u", user, "-P", site.password(user)]
    return collector(ns, conn, ["#", "$SYS/#"] if user == "cell" else ["#"], site.site_log)


# --- first-hand evidence ------------------------------------------------------------------------


def hub_received(site: Site) -> list[Publish]:
    """Every PUBLISH the hub's log shows coming from this site's bridge."""
    parser = LogParser(bridge_client_id(site.policy))
    with site.hub_log.open(errors="replace") as f:
        return [
            e
            for e in parser.events(f)
            if isinstance(e, Publish) and e.kind == "received" and e.client == parser.bridge
        ]


def assert_hub_saw_only_up_topics(site: Site, classify: Callable[[str], str]) -> None:
    """The hub's own log: everything the site's bridge ever published there is PREFIX + an up
    topic. Independent of any subscriber's timing."""
    state = bridge_state_topic(site.policy)  # the bridge's own link state (notifications)
    for e in hub_received(site):
        assert e.topic.startswith(site.prefix), f"unprefixed at the hub: {e.text}"
        if e.topic == state:
            continue
        local = e.topic[len(site.prefix) :]
        assert classify(local) == "up", f"{local} ({classify(local)}) at the hub: {e.text}"


def test_tester_site_is_valid(tmp_path: Path) -> None:
    from policies import load_policy

    policy = load_policy(make_bridge_site(tmp_path, "t-harness"))
    assert any(c.username == "tester" for c in policy.mqtt.clients)

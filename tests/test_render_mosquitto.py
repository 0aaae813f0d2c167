"""bridge.render: the broker's files, checked as text and then by a real mosquitto 2.0.

The unit tests pin what the example policy renders to. The root tests run the rendered config in a
fresh network namespace: alone (the hub's name resolves nowhere), then bridged to a real "hub"
mosquitto over mutual TLS, to prove the claims the generated comments make.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.broker import own_socket_dir
from bridge.render import bridge_client_id, bridge_local_client_id, render_mosquitto
from conftest import EXAMPLE
from firewall import netns
from policies import Policy, load_policy
from policies.busnames import bridge_state_topic
from policies.layout import ACL, BRIDGE_CONF, MOSQUITTO_CONF, PASSWD, Layout
from policies.model import Client, TopicRule

ROOT = Layout(root="/srv/gw")
PASSWORDS = {"cam-01": "pw-cam-01", "cam-02": "pw-cam-02", "cell": "pw-cell"}
HUB_PORT = 8883


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(EXAMPLE)


def text(policy: Policy, name: str, layout: Layout = ROOT) -> str:
    return render_mosquitto(policy, layout)[name].decode()


def directives(body: str) -> list[str]:
    return [line for line in body.splitlines() if line and not line.startswith("#")]


def with_site(policy: Policy, **bridge: Any) -> Policy:
    hub = policy.site.hub
    new = hub.bridge.model_copy(update=bridge)
    site = policy.site.model_copy(update={"hub": hub.model_copy(update={"bridge": new})})
    return dataclasses.replace(policy, site=site)


def with_mqtt(policy: Policy, **update: Any) -> Policy:
    return dataclasses.replace(policy, mqtt=policy.mqtt.model_copy(update=update))


# --- the text -------------------------------------------------------------------------------


def test_topic_lines_of_the_example(policy: Policy) -> None:
    topics = [d for d in directives(text(policy, BRIDGE_CONF)) if d.startswith("topic ")]
    assert "\n".join(topics) == (
        """topic site/+/events/# out 1 "" sites/lisbon-01/
topic site/+/state out 1 "" sites/lisbon-01/
topic registry/# out 1 "" sites/lisbon-01/
topic health/# out 0 "" sites/lisbon-01/
topic bridge/status out 1 "" sites/lisbon-01/
topic evidence/manifests/# out 1 "" sites/lisbon-01/
topic hub/commands/# in 1 "" sites/lisbon-01/
topic hub/config/# in 1 "" sites/lisbon-01/
topic cell/status out 1 "" sites/lisbon-01/
topic cell/availability out 1 "" sites/lisbon-01/"""
    )


def test_never_and_local_rules_have_no_line_but_a_comment(policy: Policy) -> None:
    body = text(policy, BRIDGE_CONF)
    kept = [r for r in policy.mqtt.topics if r.direction in ("never", "local")]
    assert len(kept) == 7
    comments = [line for line in body.splitlines() if line.startswith("# NOT BRIDGED")]
    for rule in kept:
        assert not any(rule.pattern in d for d in directives(body)), rule.pattern
        assert any(f"({rule.direction})" in c and rule.pattern in c for c in comments)
    assert not any("$SYS" in d for d in directives(body) if d.startswith("topic"))


def test_bridge_settings(policy: Policy) -> None:
    lines = directives(text(policy, BRIDGE_CONF))
    assert lines[0] == "connection hub"
    want = f"""address hub.example.eu:8883
remote_clientid {bridge_client_id(policy)}
local_clientid {bridge_local_client_id(policy)}
bridge_protocol_version mqttv311
cleansession true
local_cleansession false
notifications true
notifications_local_only false
notification_topic sites/lisbon-01/cell/bridge
start_type automatic
restart_timeout 10 120
keepalive_interval 30
try_private true
bridge_outgoing_retain true
bridge_cafile /srv/gw/etc/cell/tls/hub-ca.pem
bridge_certfile /srv/gw/etc/cell/tls/cell.pem
bridge_keyfile /srv/gw/etc/cell/tls/cell.key
bridge_insecure false"""
    assert set(want.splitlines()) <= set(lines)
    assert bridge_client_id(policy) == "cell-lisbon-01"
    assert bridge_state_topic(policy) == "sites/lisbon-01/cell/bridge"


def test_main_conf_paths_go_through_the_layout(policy: Policy) -> None:
    lines = directives(text(policy, MOSQUITTO_CONF))
    want = f"""allow_anonymous false
password_file /srv/gw/var/lib/cell/{PASSWD}
acl_file /srv/gw/etc/cell/live/mosquitto/acl
persistence false
max_queued_messages 200000
max_queued_bytes 268435456
log_dest file /srv/gw/var/lib/cell/mosquitto/mosquitto.log
log_type debug
pid_file /srv/gw/var/lib/cell/mosquitto/mosquitto.pid
listener 1883"""
    assert set(want.splitlines()) <= set(lines)
    assert lines[-1] == "include_dir /srv/gw/etc/cell/live/mosquitto/conf.d"
    for body in render_mosquitto(policy, ROOT).values():
        for word in body.decode().split():
            if word.startswith("/") and not word.startswith("//"):
                assert word.startswith("/srv/gw/"), word


def test_listener_port_comes_from_the_policy(policy: Policy) -> None:
    p = with_mqtt(policy, listener=policy.mqtt.listener.model_copy(update={"port": 11883}))
    assert "listener 11883" in directives(text(p, MOSQUITTO_CONF))


def test_acl_for_a_camera_and_the_monitor(policy: Policy) -> None:
    body = text(policy, ACL)
    assert "user cam-01\ntopic write site/cam-01/#\ntopic read hub/commands/cam-01/#\n" in body
    assert "user door-01\ntopic write site/door-01/#\n\n" in body
    assert body.endswith(
        "user cell\ntopic read #\ntopic read $SYS/#\ntopic write cell/#\ntopic write evidence/manifests/#\n"
    )
    users = [d.split()[1] for d in directives(body) if d.startswith("user ")]
    assert users == [c.username for c in policy.mqtt.clients] + ["cell"]
    assert all(d.split()[0] in ("user", "topic") for d in directives(body))


def test_render_is_deterministic(policy: Policy, example: Path) -> None:
    first = render_mosquitto(policy, ROOT)
    assert first == render_mosquitto(load_policy(example), ROOT)
    assert list(first) == [MOSQUITTO_CONF, BRIDGE_CONF, ACL]
    assert all(body.endswith(b"\n") and b"\r" not in body for body in first.values())


def test_insecure_bridge_has_no_tls_lines_and_a_loud_comment(policy: Policy) -> None:
    body = text(with_site(policy, insecure=True, tls=None), BRIDGE_CONF)
    tls = ("bridge_cafile", "bridge_certfile", "bridge_keyfile", "bridge_insecure")
    assert not [d for d in directives(body) if d.startswith(tls)]
    assert "INSECURE BRIDGE" in body
    assert "connection hub" in directives(body)


def test_no_bridged_topic_means_no_connection(policy: Policy) -> None:
    kept = [r for r in policy.mqtt.topics if r.direction in ("never", "local")]
    body = text(with_mqtt(policy, topics=kept), BRIDGE_CONF)
    assert directives(body) == []
    assert "No connection" in body


# --- the guard: values that would inject a line ---------------------------------------------


def rule(**fields: Any) -> Callable[[Policy], Policy]:
    return lambda p: with_mqtt(p, topics=[TopicRule.model_construct(**{"qos": 1, **fields})])


def client(**fields: Any) -> Callable[[Policy], Policy]:
    built = Client.model_construct(**{"publish": [], "subscribe": [], **fields})
    return lambda p: with_mqtt(p, clients=[built])


UNSAFE: dict[str, Callable[[Policy], Policy]] = {
    "newline-in-pattern": rule(pattern="a/#\nconnection evil", direction="up"),
    "quote-in-pattern": rule(pattern='a/"b', direction="down"),
    "newline-in-reason": rule(pattern="x/#", direction="never", reason="a\ntopic # out"),
    "sys-bridged": rule(pattern="$SYS/#", direction="up"),
    "space-in-username": client(username="cam 01"),
    "tab-in-filter": client(username="c", publish=["a\tb"]),
    "space-in-prefix": lambda p: with_site(p, remote_prefix="sites/x/ #"),
    "nul-in-address": lambda p: with_site(p, address="hub.example.eu\x00"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_guard_refuses_unsafe_values(policy: Policy, case: str) -> None:
    """Validation stops these at load time; the renderer refuses them again (model_construct)."""
    with pytest.raises(ValueError, match="refusing"):
        render_mosquitto(UNSAFE[case](policy), ROOT)


# --- a real mosquitto -----------------------------------------------------------------------


def openssl(command: str) -> None:
    subprocess.run(["openssl", *command.split()], check=True, capture_output=True)


def make_tls(policy: Policy, layout: Layout, work: Path) -> dict[str, str]:
    """A throwaway CA, the Cell's client certificate where the policy says, a hub certificate."""
    tls = policy.site.hub.bridge.tls
    assert tls is not None
    ca, cert, key = (layout.path(p) for p in (tls.cafile, tls.certfile, tls.keyfile))
    Path(ca).parent.mkdir(parents=True, exist_ok=True)
    new = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    openssl(f"req -x509 {new} -keyout {work}/ca.key -out {ca} -days 2 -subj /CN=test-ca")
    (work / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    sign = f"x509 -req -CA {ca} -CAkey {work}/ca.key -CAcreateserial -days 2"
    openssl(f"req {new} -keyout {key} -out {work}/cell.csr -subj /CN=cell")
    openssl(f"{sign} -in {work}/cell.csr -out {cert}")
    openssl(f"req {new} -keyout {work}/hub.key -out {work}/hub.csr -subj /CN=hub")
    openssl(f"{sign} -in {work}/hub.csr -out {work}/hub.pem -extfile {work}/san.ext")
    hub_cert, hub_key = f"{work}/hub.pem", f"{work}/hub.key"
    return {"ca": ca, "cert": cert, "key": key, "hub_cert": hub_cert, "hub_key": hub_key}


@dataclasses.dataclass
class Gw:
    """A gateway's root in a tmp dir, with throwaway TLS files where the policy says."""

    layout: Layout
    work: Path
    tls: dict[str, str]

    def install(self, policy: Policy) -> Path:
        """Write the rendered files and a real password file; return the main config."""
        for rel, body in render_mosquitto(policy, self.layout).items():
            path = Path(self.layout.config) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        passwd = Path(self.layout.state) / PASSWD
        passwd.unlink(missing_ok=True)
        for i, (user, pw) in enumerate(PASSWORDS.items()):
            create = ["-c"] if i == 0 else []
            subprocess.run(["mosquitto_passwd", "-b", *create, str(passwd), user, pw], check=True)
        return Path(self.layout.config) / MOSQUITTO_CONF

    def log(self) -> str:
        return (Path(self.layout.state) / "mosquitto/mosquitto.log").read_text()


@pytest.fixture
def gw(policy: Policy, tmp_path: Path) -> Gw:
    layout = Layout(root=str(tmp_path / "gw"))
    (Path(layout.state) / "mosquitto").mkdir(parents=True)
    return Gw(layout, tmp_path, make_tls(policy, layout, tmp_path))


def socket_of(conf: Path) -> str | None:
    for line in conf.read_text().splitlines():
        if line.startswith("listener 0 "):
            return line.split(maxsplit=2)[2]
    return None


@contextmanager
def broker(ns: str, conf: Path) -> Iterator[subprocess.Popen[bytes]]:
    own_socket_dir(socket_of(conf))  # as the Cell's broker control does before it starts it
    proc = netns.popen(
        ns, ["mosquitto", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def hub_conf(gw: Gw) -> Path:
    work, tls = gw.work, gw.tls
    conf = work / "hub.conf"
    conf.write_text(
        f"listener {HUB_PORT} 127.0.0.1\ncafile {tls['ca']}\ncertfile {tls['hub_cert']}\n"
        f"keyfile {tls['hub_key']}\nrequire_certificate true\nallow_anonymous true\n"
        f"persistence false\nuser root\nlog_dest file {work}/hub.log\nlog_type all\n"
    )
    return conf


def pub(
    ns: str, user: str | None, topic: str, password: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    auth = [] if user is None else ["-u", user, "-P", password or PASSWORDS[user]]
    argv = ["mosquitto_pub", "-h", "127.0.0.1", *auth, "-t", topic, "-m", "x", "-q", "1"]
    return netns.run(ns, argv)


@pytest.mark.root
def test_mosquitto_runs_the_rendered_config(policy: Policy, gw: Gw) -> None:
    with netns.scratch() as ns, broker(ns, gw.install(policy)) as proc:
        time.sleep(1)
        assert proc.poll() is None, proc.communicate()
        assert "mosquitto version 2.0.11 running" in gw.log()
        ok = pub(ns, "cam-01", "site/cam-01/events/motion")
        assert ok.returncode == 0, ok.stderr
        anonymous = pub(ns, None, "site/cam-01/events/motion")
        assert anonymous.returncode != 0 and b"not authorised" in anonymous.stderr
        wrong = pub(ns, "cam-01", "site/cam-01/events/motion", password="nope")
        assert wrong.returncode != 0
        assert proc.poll() is None
    body = gw.log()
    assert "Error" not in body
    assert "u'cam-01'" in body and "Denied PUBLISH" not in body
    assert "Connecting bridge (step 1) hub (hub.example.eu:8883)" in body


@pytest.mark.root
def test_a_broken_config_is_refused(policy: Policy, gw: Gw) -> None:
    conf = gw.install(policy)
    with conf.open("a") as f:
        f.write("bogus_directive true\n")
    with netns.scratch() as ns, broker(ns, conf) as proc:
        assert proc.wait(timeout=10) != 0
        _, err = proc.communicate()
    # Config errors come before the log file is opened: they go to stderr.
    assert 'Unknown configuration variable "bogus_directive"' in err.decode()


Seen = list[tuple[str, str, bytes]]


def run_clients(ns: str, tls: dict[str, str], act: Callable[[Any, Any], None]) -> Seen:
    """Watch the hub (as a TLS client), the local broker (as `cell`) and what cam-01 receives;
    once the bridge is up, `act(hub, cam)`; return (where, topic, payload) of all that arrived."""

    def child() -> Seen:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        seen: Seen = []

        def client(where: str, port: int, user: str | None = None) -> mqtt.Client:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{where}-watch")
            c.on_message = lambda _c, _u, m: seen.append((where, m.topic, bytes(m.payload)))
            if user is None:
                c.tls_set(ca_certs=tls["ca"], certfile=tls["cert"], keyfile=tls["key"])
            else:
                c.username_pw_set(user, PASSWORDS[user])
            deadline = time.monotonic() + 5
            while True:  # the broker was just started: wait for it to listen
                try:
                    c.connect("127.0.0.1", port)
                    break
                except ConnectionRefusedError:
                    assert time.monotonic() < deadline, f"nothing listens on port {port}"
                    time.sleep(0.05)
            c.loop_start()
            return c

        hub, mon = client("hub", HUB_PORT), client("local", 1883, "cell")
        cam = client("cam-01", 1883, "cam-01")
        for c in (hub, mon):
            c.subscribe([("#", 1), ("$SYS/broker/connection/#", 1)])
        cam.subscribe("#", 1)
        deadline = time.monotonic() + 15
        while not any(
            w == "local" and t.endswith("/cell/bridge") and p == b"1" for w, t, p in seen
        ):
            assert time.monotonic() < deadline, f"the bridge never came up: {seen}"
            time.sleep(0.1)
        act(hub, cam)
        time.sleep(1)
        for c in (hub, mon, cam):
            c.loop_stop()
            c.disconnect()
        return seen

    return netns.with_ns(ns, child)


# fmt: off
CAM_SENDS = ["site/cam-01/events/motion", "site/cam-01/snapshots/1", "site/cam-01/debug/x",
             "site/cam-01/audio/1", "site/cam-02/events/forged", "hub/commands/cam-01/forged"]
HUB_SENDS = ["sites/lisbon-01/hub/commands/cam-01/reboot", "hub/commands/cam-01/unprefixed"]
# fmt: on


def publish_all(client: Any, topics: list[str]) -> None:
    for t in topics:
        client.publish(t, b"p", qos=1).wait_for_publish(3)


@pytest.mark.root
def test_bridge_carries_exactly_the_policy(policy: Policy, gw: Gw) -> None:
    bridged = with_site(policy, address="127.0.0.1", port=HUB_PORT)
    conf = gw.install(bridged)

    def act(hub: Any, cam: Any) -> None:
        publish_all(cam, CAM_SENDS)
        publish_all(hub, HUB_SENDS)

    with netns.scratch() as ns, broker(ns, hub_conf(gw)) as hub:
        time.sleep(0.3)
        with broker(ns, conf) as proc:
            seen = run_clients(ns, gw.tls, act)
            assert proc.poll() is None and hub.poll() is None
    at_hub = {t for w, t, _ in seen if w == "hub"}
    local = {t for w, t, _ in seen if w == "local"}
    # Up: with the prefix. Never/local and what cam-01 may not publish: not at the hub.
    assert "sites/lisbon-01/site/cam-01/events/motion" in at_hub
    assert not [t for t in at_hub if any(w in t for w in ("snapshot", "debug", "audio", "forged"))]
    assert not {t for t in at_hub if t.startswith("$SYS")}, "a $SYS topic reached the hub"
    # Down: the prefix stripped; a hub topic outside the prefix never comes down.
    assert "hub/commands/cam-01/reboot" in local and "hub/commands/cam-01/unprefixed" not in local
    # The link state is visible locally (retained or live, depending on who was first).
    assert ("local", bridge_state_topic(bridged), b"1") in set(seen)
    # The ACL: cam-01 subscribed to '#' but only receives what it may read.
    assert {t for w, t, _ in seen if w == "cam-01"} == {"hub/commands/cam-01/reboot"}
    log = gw.log()
    assert f"Sending PUBLISH to {bridge_local_client_id(bridged)} (d0, q1, r0, m" in log
    assert "'sites/lisbon-01/site/cam-01/events/motion'" in log
    assert "Denied PUBLISH from cam-01" in log and "'hub/commands/cam-01/forged'" in log


@pytest.mark.root
def test_a_narrowed_policy_takes_effect_at_restart(policy: Policy, gw: Gw) -> None:
    narrow = with_site(policy, address="127.0.0.1", port=HUB_PORT)
    debug_up = TopicRule(pattern="site/+/debug/#", direction="up", qos=1)
    wide = with_mqtt(
        narrow,
        topics=[debug_up if r.pattern == debug_up.pattern else r for r in narrow.mqtt.topics],
    )

    def debug(_hub: Any, cam: Any) -> None:
        publish_all(cam, ["site/cam-01/debug/x"])

    with netns.scratch() as ns, broker(ns, hub_conf(gw)):
        time.sleep(0.3)
        with broker(ns, gw.install(wide)):
            seen = run_clients(ns, gw.tls, debug)
        assert ("hub", "sites/lisbon-01/site/cam-01/debug/x") in {(w, t) for w, t, _ in seen}
        with broker(ns, gw.install(narrow)):
            seen = run_clients(ns, gw.tls, debug)
        assert not [t for w, t, _ in seen if w == "hub" and "debug" in t]


@pytest.mark.root
def test_what_is_published_during_an_outage_goes_up(policy: Policy, gw: Gw) -> None:
    """local_cleansession false (with `true` this fails). Not retained: a retained message would
    go up anyway when the bridge re-subscribes locally. A short restart_timeout keeps it quick."""
    conf = gw.install(with_site(policy, address="127.0.0.1", port=HUB_PORT))
    bridge = Path(gw.layout.config) / BRIDGE_CONF
    bridge.write_text(bridge.read_text().replace("restart_timeout 10 120", "restart_timeout 1"))
    hub_log = gw.work / "hub.log"
    with netns.scratch() as ns, broker(ns, conf):
        time.sleep(0.5)
        assert pub(ns, "cam-01", "site/cam-01/events/during-outage").returncode == 0
        with broker(ns, hub_conf(gw)):
            assert wait_for(hub_log, "'sites/lisbon-01/site/cam-01/events/during-outage'")


def wait_for(log: Path, needle: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and needle in log.read_text():
            return True
        time.sleep(0.1)
    return False

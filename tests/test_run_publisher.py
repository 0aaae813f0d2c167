"""The status publisher against a real mosquitto on loopback (no root): retained documents, QoS 1,
the offline will on a kill -9, and everything published again after a broker restart."""

from __future__ import annotations

import json
import os
import pwd
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cell.run.publisher import Bus, Publisher
from cell.status.checks import Check
from cell.status.document import Event, StatusDoc
from policies.clock import iso

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.port = tmp, free_port()
        passwd = tmp / "passwd"
        passwd.write_text("cell:s3cret\nreader:r3ad\n")
        subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True)
        (tmp / "acl").write_text(
            "user cell\ntopic write cell/#\ntopic read #\n\nuser reader\ntopic read cell/#\n"
        )
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
            f"password_file {passwd}\nacl_file {tmp / 'acl'}\n"
            # as root mosquitto would drop to user mosquitto, who cannot read a test's tmp dir
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 5
        while time.monotonic() < end:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not listen")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Reader:
    """A console-like reader of `cell/#` (user `reader`)."""

    def __init__(self, port: int, user: str = "reader", password: str = "r3ad") -> None:
        self.got: queue.Queue[tuple[str, dict[str, Any], bool]] = queue.Queue()
        self.seen: list[tuple[str, dict[str, Any], bool]] = []
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"reader-{time.monotonic_ns()}")
        c.username_pw_set(user, password)
        c.on_connect = lambda c, *_: c.subscribe("cell/#", qos=1)
        c.on_message = lambda _c, _u, m: self.got.put(
            (m.topic, json.loads(m.payload), bool(m.retain))
        )
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def wait(self, topic: str, timeout: float = 5.0, **match: Any) -> tuple[dict[str, Any], bool]:
        """The first message so far (or within `timeout`) on `topic` matching `match`."""
        end = time.monotonic() + timeout
        while True:
            while not self.got.empty():
                self.seen.append(self.got.get_nowait())
            for t, doc, retained in self.seen:
                if t == topic and all(doc.get(k) == v for k, v in match.items()):
                    return doc, retained
            if time.monotonic() > end:
                raise AssertionError(f"nothing on {topic} matching {match} within {timeout} s")
            time.sleep(0.01)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def doc(verdict: str = "sovereign") -> tuple[StatusDoc, dict[str, Check]]:
    ok = verdict == "sovereign"
    checks = {"drift": Check(ok=ok, ts=iso(), detail="d", fresh_for=60, evidence=["full"])}
    status = StatusDoc(
        site="s1",
        ts=iso(),
        verdict=verdict,  # type: ignore[arg-type]
        reasons=[] if ok else ["drift: d"],
        commit="abc",
        dns_blocked_today=7,
        checks={n: c.summary() for n, c in checks.items()},
    )
    return status, checks


def test_retained_documents_events_and_a_clean_stop(broker: Broker) -> None:
    pub = Publisher(Bus("127.0.0.1", broker.port, "s3cret"), "sess1")
    pub.start()
    status, checks = doc("at_risk")
    pub.publish(status, checks)
    assert pub.published.wait(5), "the broker never acknowledged a status"
    pub.event(Event(kind="drift", ts=iso(), text="drift (nftables): x"))
    reader = Reader(broker.port)  # connects after: sees the retained ones only
    try:
        got, retained = reader.wait("cell/status", verdict="at_risk")
        assert retained and got["schema"] == "cell.status/1" and got["dns_blocked_today"] == 7
        _, retained = reader.wait("cell/availability", state="online", session="sess1")
        assert retained
        check, retained = reader.wait("cell/check/drift")
        assert retained and check["evidence"] == ["full"]  # full detail stays on site
        pub.event(Event(kind="drift", ts=iso(), text="live"))
        ev, retained = reader.wait("cell/event", text="live")
        assert not retained and ev["schema"] == "cell.event/1"
        pub.stop()
        off, _ = reader.wait("cell/availability", state="offline", session="sess1")
        assert off["schema"] == "cell.availability/1"
    finally:
        reader.close()


def test_a_local_client_cannot_publish_under_cell(broker: Broker) -> None:
    """The ACL the Cell renders keeps `cell/` to the daemon (here: the same rule by hand)."""
    pub = Publisher(Bus("127.0.0.1", broker.port, "s3cret"), "sess2")
    pub.start()
    status, checks = doc("sovereign")
    pub.publish(status, checks)
    assert pub.published.wait(5)
    reader = Reader(broker.port)
    try:
        reader.wait("cell/status", verdict="sovereign")
        forged = StatusDoc(**{**status.to_doc(), "verdict": "at_risk", "reasons": ["x: y"]})
        info = reader.client.publish("cell/status", forged.model_dump_json(by_alias=True), qos=1)
        info.wait_for_publish(5)
        with pytest.raises(AssertionError):
            reader.wait("cell/status", timeout=0.5, verdict="at_risk")
    finally:
        reader.close()
        pub.stop()


SCRIPT = textwrap.dedent(
    """
    import sys, time
    from cell.run.publisher import Bus, Publisher
    from cell.status.document import StatusDoc
    from policies.clock import iso
    pub = Publisher(Bus("127.0.0.1", int(sys.argv[1]), "s3cret"), sys.argv[2])
    pub.start()
    pub.publish(StatusDoc(site="s1", ts=iso(), verdict="sovereign", reasons=[], commit=None,
                          dns_blocked_today=0, checks={}), {})
    pub.published.wait(5)
    print("up", flush=True)
    time.sleep(60)
    """
)


def test_kill_9_reads_offline_by_the_will_and_a_restart_is_online_again(broker: Broker) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    reader = Reader(broker.port)
    procs = []
    try:
        for session in ("first", "second"):
            p = subprocess.Popen(
                [sys.executable, "-c", SCRIPT, str(broker.port), session],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            procs.append(p)
            assert p.stdout is not None and p.stdout.readline().strip() == "up"
            reader.wait("cell/availability", state="online", session=session)
            if session == "first":
                t0 = time.monotonic()
                p.send_signal(signal.SIGKILL)
                p.wait()
                reader.wait("cell/availability", state="offline", session="first")
                assert time.monotonic() - t0 < 2.0  # the socket closed: the will at once
        reader.wait("cell/status", verdict="sovereign")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        reader.close()


def test_everything_is_published_again_after_the_broker_restarts(broker: Broker) -> None:
    pub = Publisher(Bus("127.0.0.1", broker.port, "s3cret"), "sess3")
    pub.start()
    status, checks = doc("sovereign")
    pub.publish(status, checks)
    assert pub.published.wait(5)
    broker.stop()  # no persistence: every retained message is gone
    end = time.monotonic() + 5
    while pub.connected.is_set() and time.monotonic() < end:
        time.sleep(0.02)
    broker.start()
    reader = Reader(broker.port)
    try:
        reader.wait("cell/status", timeout=10, verdict="sovereign")
        reader.wait("cell/availability", state="online", session="sess3")
        reader.wait("cell/check/drift")
        assert pub.connects >= 2
    finally:
        reader.close()
        pub.stop()


def test_a_refused_login_is_reported(broker: Broker) -> None:
    pub = Publisher(Bus("127.0.0.1", broker.port, "wrong"), "sess4")
    pub.start()
    try:
        end = time.monotonic() + 5
        while pub.refused is None and time.monotonic() < end:
            time.sleep(0.02)
        assert pub.refused is not None and not pub.connected.is_set()
    finally:
        pub.stop()


def test_the_cell_login_an_apply_makes_on_a_box_is_accepted(tmp_path: Path) -> None:
    """On a box the operator's password file gets the Cell's own line; its secret stays 0600."""
    from cell.deploy.checks import ensure_cell_login
    from policies.layout import CELL_MQTT_SECRET

    b = Broker(tmp_path)
    passwd = tmp_path / "passwd"
    before = [ln for ln in passwd.read_text().splitlines() if not ln.startswith("cell:")]
    passwd.write_text("\n".join(before) + "\n")  # the operator's file: no `cell` yet
    state = tmp_path / "state"
    assert ensure_cell_login(state, passwd)
    secret = state / CELL_MQTT_SECRET
    assert secret.stat().st_mode & 0o777 == 0o600
    text = passwd.read_text()
    assert before[0] in text and "cell:$" in text  # hashed, the operator's line kept
    assert not ensure_cell_login(state, passwd) and passwd.read_text() == text
    b.start()
    try:
        pub = Publisher(Bus("127.0.0.1", b.port, secret.read_text().strip()), "box")
        pub.start()
        pub.publish(*doc("sovereign"))
        assert pub.published.wait(5)
        pub.stop()
    finally:
        b.stop()

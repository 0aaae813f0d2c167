"""The status bus: the daemon's documents on the site's own mosquitto (cell.status.document).

As the reserved user `cell`, client id `cell-daemon`, over the broker's own unix socket (where a
client keeps its id, so the bridge monitor's `cell` connection beside it takes nothing over;
one daemon per Cell), QoS 1:
- `cell/availability` retained; the offline document is the MQTT will, so a daemon killed
  (`kill -9`, a crash, a power cut) reads offline as soon as the broker notices;
- `cell/status` retained: the summary; `cell/check/<name>` retained: each check in full;
- `cell/event` not retained.
On every (re)connect everything retained is published again, so a broker restarted without
persistence (the Cell's has none) gets the whole state back at once.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bridge.render import MONITOR_USER
from cell.status.checks import Check
from cell.status.document import Availability, Event, StatusDoc
from cell.status.topics import AVAILABILITY_TOPIC, CHECK_TOPIC, EVENT_TOPIC, STATUS_TOPIC
from policies.clock import now_iso

CLIENT_ID = "cell-daemon"
KEEPALIVE = 10
"""Seconds: a daemon that vanished without its socket closing is declared offline in ~15 s."""


@dataclass(frozen=True)
class Bus:
    """Where the status bus is: the site's broker, and the `cell` login's password."""

    host: str
    port: int
    password: str | None
    username: str = MONITOR_USER
    client_id: str = CLIENT_ID
    unix: str | None = None
    """The broker's unix socket for the Cell's own clients; None: `host`:`port`."""


def _json(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()


class Publisher:
    def __init__(self, bus: Bus, session: str, started: str | None = None) -> None:
        self.bus, self.session = bus, session
        self.started = started or now_iso()
        self.connected = threading.Event()
        self.published = threading.Event()
        """Set once a status document was acknowledged by the broker (READY=1 waits for it)."""
        self.refused: str | None = None
        self.connects = 0
        self._lock = threading.Lock()
        self._status: StatusDoc | None = None
        self._checks: dict[str, Check] = {}
        self._pending: set[int] = set()
        self._extra: dict[str, bytes] = {}
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=bus.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
            transport="unix" if bus.unix else "tcp",
        )
        if bus.password is not None:
            c.username_pw_set(bus.username, bus.password)
        offline = Availability(state="offline", ts=self.started, session=session)
        c.will_set(AVAILABILITY_TOPIC, _json(offline.to_doc()), qos=1, retain=True)
        c.reconnect_delay_set(1, 5)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.client = c

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        where = self.bus.unix or self.bus.host
        self.client.connect_async(where, self.bus.port, KEEPALIVE)
        self.client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        """A clean stop says offline itself (a clean DISCONNECT does not send the will)."""
        if self.connected.is_set():
            offline = Availability(state="offline", ts=now_iso(), session=self.session)
            info = self.client.publish(
                AVAILABILITY_TOPIC, _json(offline.to_doc()), qos=1, retain=True
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    # --- publishing --------------------------------------------------------------------------

    def publish(self, status: StatusDoc, checks: Mapping[str, Check]) -> None:
        """The latest status and checks; published now if connected, else on the next connect."""
        with self._lock:
            changed = {n: c for n, c in checks.items() if self._checks.get(n) != c}
            self._status, self._checks = status, dict(checks)
        if self.connected.is_set():
            self._send_checks(changed)
            self._send_status(status)

    def retain(self, topic: str, doc: Any) -> None:
        """Another retained document (an evidence manifest): published now and on every
        reconnect, like the status."""
        with self._lock:
            self._extra[topic] = _json(doc)
        if self.connected.is_set():
            self.client.publish(topic, self._extra[topic], qos=1, retain=True)

    def event(self, event: Event) -> None:
        if self.connected.is_set():
            self.client.publish(EVENT_TOPIC, _json(event.to_doc()), qos=1, retain=False)

    def _send_status(self, status: StatusDoc) -> None:
        info = self.client.publish(STATUS_TOPIC, _json(status.to_doc()), qos=1, retain=True)
        with self._lock:
            self._pending.add(info.mid)
        if info.is_published():  # acknowledged before the mid was noted
            self.published.set()

    def _send_checks(self, checks: Mapping[str, Check]) -> None:
        for name, check in sorted(checks.items()):
            topic = CHECK_TOPIC.format(name=name)
            self.client.publish(topic, _json(check.to_doc()), qos=1, retain=True)

    # --- paho callbacks (its network thread) -------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self.refused = str(rc)
            return
        self.refused = None
        self.connects += 1
        online = Availability(state="online", ts=self.started, session=self.session)
        client.publish(AVAILABILITY_TOPIC, _json(online.to_doc()), qos=1, retain=True)
        with self._lock:
            status, checks, extra = self._status, dict(self._checks), dict(self._extra)
        self.connected.set()
        for topic, payload in sorted(extra.items()):
            client.publish(topic, payload, qos=1, retain=True)
        self._send_checks(checks)
        if status is not None:
            self._send_status(status)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        self.connected.clear()

    def _on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
                self.published.set()

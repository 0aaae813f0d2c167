"""Read mosquitto 2.0's log as events: what the bridge sent, what it received, link up and down.

Pure: lines in, events out. The broker's log is the first-hand record of what crossed the bridge:
with `log_type debug` (bridge.render sets it) mosquitto writes one line for every PUBLISH it sends
to or receives from a client, the bridge's local client included, and never the payload:

    1795396337: Sending PUBLISH to local.cell-lisbon-01 (d0, q1, r0, m9, 'sites/lisbon-01/site/cam-01/events/motion', ... (5 bytes))
    1795396463: Received PUBLISH from local.cell-lisbon-01 (d0, q1, r0, m1, 'hub/commands/cam-01/reboot', ... (1 bytes))
    1795396337: Denied PUBLISH from auto-23A2... (d0, q1, r0, m1, 'hub/commands/x', ... (1 bytes))

`Sending PUBLISH to <bridge>` carries the topic as published at the hub (remote prefix added);
`Received PUBLISH from <bridge>` the local topic (prefix stripped). The link's state shows as
`Received CONNACK on connection <bridge>.` (up, unless `Connection Refused` follows) and one of
mosquitto's disconnect lines naming the bridge (down). The formats were checked against a real
mosquitto 2.0.11 (tests/test_bridge_logparse.py holds lines copied from its log).

A topic may contain a newline, which splits its log line: `records` joins a line that does not
start with a timestamp to the one before, so such a topic is still seen whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

PublishKind = Literal["sent", "received", "denied"]

_PUBLISH = re.compile(
    r"(?P<kind>Sending PUBLISH to|Received PUBLISH from|Denied PUBLISH from) (?P<client>.+?) "
    r"\(d\d, q(?P<qos>\d), r(?P<retain>\d), m\d+, '(?P<topic>.*)', \.\.\. \((?P<size>\d+) bytes\)\)",
    re.DOTALL,
)
_KINDS: dict[str, PublishKind] = {
    "Sending PUBLISH to": "sent",
    "Received PUBLISH from": "received",
    "Denied PUBLISH from": "denied",
}
_DISCONNECTS = (
    "closed its connection",
    "disconnected",
    "has exceeded timeout",
    "been disconnected",
)


@dataclass(frozen=True, slots=True)
class Publish:
    """A PUBLISH the broker sent to (`sent`), accepted from (`received`) or refused from
    (`denied`) a client; `line` is the record's number in its file (1-based), for evidence."""

    time: int
    kind: PublishKind
    client: str
    topic: str
    qos: int
    retain: bool
    size: int
    line: int
    text: str


@dataclass(frozen=True, slots=True)
class Link:
    """The bridge connected (`up`) or lost its connection (`up` False); `connecting`: an attempt."""

    time: int
    up: bool
    line: int
    text: str
    connecting: bool = False


@dataclass(frozen=True, slots=True)
class Start:
    """The broker (re)started: counts since start begin here; the bridge starts down."""

    time: int
    line: int
    text: str


@dataclass(frozen=True, slots=True)
class Dropping:
    """The broker started dropping messages queued for `client` (its queue is full). mosquitto
    logs this once per episode; for the bridge it means QoS 1 messages to the hub were lost."""

    time: int
    client: str
    line: int
    text: str


Event = Publish | Link | Start | Dropping
_DROPPING = "Outgoing messages are being dropped for client "


def records(lines: Iterable[str], first: int = 1) -> Iterator[tuple[int, str]]:
    """(number, record) per log record: a line without a leading timestamp continues the last."""
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(lines, start=first):
        line = raw[:-1] if raw.endswith("\n") else raw
        stamp, sep, _ = line[:24].partition(": ")
        if (sep and stamp.isdecimal()) or pending is None:
            if pending is not None:
                yield pending
            pending = (number, line)
        else:
            pending = (pending[0], pending[1] + "\n" + line)
    if pending is not None:
        yield pending


class LogParser:
    """Events of one bridge from log records. Cheap prefix tests come before any regex: the log
    of a busy broker has several lines per message and most of them matter to nobody."""

    def __init__(self, local_client_id: str, *, every_publish: bool = True) -> None:
        """`every_publish` False: of the PUBLISH lines only the bridge's and the denied ones
        become events, which spares the regex for most lines of a busy log (the monitor's
        case); True adds every `Received PUBLISH` (to count the bus from the log alone)."""
        self.bridge = local_client_id
        self.every_publish = every_publish
        self._bridge_publish = (
            f"Sending PUBLISH to {local_client_id} (",
            f"Received PUBLISH from {local_client_id} (",
            "Denied PUBLISH from ",
        )
        self._connack = f"Received CONNACK on connection {local_client_id}."
        self._client = f"Client {local_client_id} "
        self._socket = (f"on client {local_client_id},", f"on client {local_client_id}:")
        self._connack_seen = False

    def parse(self, number: int, record: str) -> Event | None:
        """The event in one record (see `records`), or None if it says nothing about the bridge."""
        stamp, sep, msg = record.partition(": ")
        if not sep or not stamp.isdecimal():
            return None
        t = int(stamp)
        if msg.startswith(("Sending PUBLISH", "Received PUBLISH", "Denied PUBLISH")):
            # What the broker delivers to ordinary subscribers is no event: only what it sends
            # to the bridge, what it receives (from everyone, or only the bridge), what it denies.
            if msg.startswith(self._bridge_publish) or (
                self.every_publish and msg.startswith("Received PUBLISH")
            ):
                return self._publish(t, number, record, msg)
            return None
        if msg == self._connack:
            self._connack_seen = True
            return Link(t, True, number, record)
        if msg.startswith("Connection Refused") and self._connack_seen:
            # It follows the bridge's CONNACK line when the hub refused it, and names no client.
            self._connack_seen = False
            return Link(t, False, number, record)
        self._connack_seen = False
        if msg.startswith(self._client):
            if msg[len(self._client) :].startswith(_DISCONNECTS):
                return Link(t, False, number, record)
            return None
        if msg.startswith(("Socket error", "Bad socket")) and any(s in msg for s in self._socket):
            return Link(t, False, number, record)
        if msg.startswith("Connecting bridge (step 1)"):
            return Link(t, False, number, record, connecting=True)
        if msg.startswith(_DROPPING):
            return Dropping(t, msg[len(_DROPPING) :].removesuffix("."), number, record)
        if msg.startswith("mosquitto version ") and msg.endswith(" starting"):
            return Start(t, number, record)
        return None

    def _publish(self, t: int, number: int, record: str, msg: str) -> Publish | None:
        m = _PUBLISH.fullmatch(msg)
        if m is None:
            return None
        return Publish(
            time=t,
            kind=_KINDS[m["kind"]],
            client=m["client"],
            topic=m["topic"],
            qos=int(m["qos"]),
            retain=m["retain"] == "1",
            size=int(m["size"]),
            line=number,
            text=record,
        )

    def events(self, lines: Iterable[str], first: int = 1) -> Iterator[Event]:
        """Every event of complete log lines (a whole file, or what a follower read)."""
        for number, record in records(lines, first):
            event = self.parse(number, record)
            if event is not None:
                yield event

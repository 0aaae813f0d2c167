"""bridge.logparse: mosquitto 2.0.11's log lines as events. The lines are copied from a real log
(a lab gateway's broker with the rendered config), so a format change in mosquitto shows here."""

from __future__ import annotations

from bridge.logparse import Event, Link, LogParser, Publish, Start, records

BRIDGE = "local.cell-t-explore"

# fmt: off
REAL = """1795396330: mosquitto version 2.0.11 starting
1795396330: Config loaded from /run/cell-lab/t-explore/gw/etc/cell/live/mosquitto/mosquitto.conf.
1795396330: Bridge local.cell-t-explore doing local SUBSCRIBE on topic site/+/events/#
1795396330: Connecting bridge (step 1) hub (hub.example.eu:8883)
1795396330: Client <unknown> closed its connection.
1795396330: Bridge cell-t-explore sending CONNECT
1795396330: Received CONNACK on connection local.cell-t-explore.
1795396337: Received PUBLISH from auto-114F4AE4-0D47-4C45-1F97-48251561EDAE (d0, q1, r0, m1, 'site/cam-01/events/motion', ... (5 bytes))
1795396337: Sending PUBLISH to local.cell-t-explore (d0, q1, r0, m9, 'sites/t-explore/site/cam-01/events/motion', ... (5 bytes))
1795396337: Sending PUBACK to auto-114F4AE4-0D47-4C45-1F97-48251561EDAE (m1, rc0)
1795396337: Received PUBACK from local.cell-t-explore (Mid: 9, RC:0)
1795396337: Sending PUBLISH to local.cell-t-explore (d0, q0, r0, m0, 'sites/t-explore/site/cam-01/events/we ird'q', ... (1 bytes))
1795396337: Denied PUBLISH from auto-23A236DA-3D3B-CEEB-482E-F32B6C7AAADB (d0, q1, r0, m1, 'hub/commands/x', ... (1 bytes))
1795396463: Received PUBLISH from local.cell-t-explore (d0, q1, r1, m2, 'hub/config/x', ... (3 bytes))
1795396466: Client local.cell-t-explore closed its connection.
1795396841: Connecting bridge (step 1) hub (hub.example.eu:8883)
1795396841: Error creating bridge: Protocol error.
"""
# fmt: on


def events(text: str, bridge: str = BRIDGE) -> list[Event]:
    return list(LogParser(bridge).events(text.splitlines(keepends=True)))


def summary(e: Event) -> tuple[str, int]:
    if isinstance(e, Publish):
        return e.kind, e.line
    if isinstance(e, Link):
        return ("connecting" if e.connecting else "up" if e.up else "down"), e.line
    return "start", e.line


def test_a_real_log_gives_exactly_these_events() -> None:
    assert [summary(e) for e in events(REAL)] == [
        ("start", 1),
        ("connecting", 4),
        ("up", 7),
        ("received", 8),
        ("sent", 9),
        ("sent", 12),
        ("denied", 13),
        ("received", 14),
        ("down", 15),
        ("connecting", 16),
    ]


def test_publish_fields() -> None:
    sent = events(REAL)[4]
    assert sent == Publish(
        time=1795396337,
        kind="sent",
        client=BRIDGE,
        topic="sites/t-explore/site/cam-01/events/motion",
        qos=1,
        retain=False,
        size=5,
        line=9,
        text=REAL.splitlines()[8],
    )
    retained = events(REAL)[7]
    assert isinstance(retained, Publish) and retained.retain and retained.topic == "hub/config/x"


def test_quotes_and_spaces_in_a_topic_survive() -> None:
    weird = events(REAL)[5]
    assert (
        isinstance(weird, Publish) and weird.topic == "sites/t-explore/site/cam-01/events/we ird'q"
    )


def test_a_topic_that_looks_like_the_end_of_the_line() -> None:
    line = "5: Sending PUBLISH to local.b (d0, q1, r0, m1, 'a', ... (9 bytes))', ... (3 bytes))\n"
    (e,) = events(line, "local.b")
    assert isinstance(e, Publish) and e.topic == "a', ... (9 bytes))" and e.size == 3


def test_a_newline_in_a_topic_is_joined_back() -> None:
    text = "7: Sending PUBLISH to local.b (d0, q0, r0, m0, 'site/x/snap\nshots/1', ... (1 bytes))\n8: Client local.b closed its connection.\n"
    assert list(records(text.splitlines(keepends=True))) == [
        (
            1,
            "7: Sending PUBLISH to local.b (d0, q0, r0, m0, 'site/x/snap\nshots/1', ... (1 bytes))",
        ),
        (3, "8: Client local.b closed its connection."),
    ]
    first, second = events(text, "local.b")
    assert isinstance(first, Publish) and first.topic == "site/x/snap\nshots/1"
    assert isinstance(second, Link) and not second.up and second.line == 3


def test_other_clients_and_lookalike_ids_are_not_the_bridge() -> None:
    text = (
        "1: Client local.cell-t-explore2 closed its connection.\n"
        "2: Received CONNACK on connection local.cell-t-explore2.\n"
        "3: Socket error on client local.cell-t-explore2, disconnecting.\n"
        "4: Client cam-01 disconnected.\n"
    )
    assert events(text) == []


def test_every_kind_of_disconnect() -> None:
    lines = [
        "Client local.cell-t-explore closed its connection.",
        "Client local.cell-t-explore disconnected.",
        "Client local.cell-t-explore has exceeded timeout, disconnecting.",
        "Client local.cell-t-explore disconnected due to protocol error.",
        "Socket error on client local.cell-t-explore, disconnecting.",
        "Bad socket read/write on client local.cell-t-explore: Connection reset by peer",
    ]
    for text in lines:
        (e,) = events(f"9: {text}\n")
        assert isinstance(e, Link) and not e.up and not e.connecting, text


def test_a_refused_connack_is_down() -> None:
    text = (
        "1: Received CONNACK on connection local.cell-t-explore.\n"
        "1: Connection Refused: not authorised.\n"
        "2: Connection Refused: not authorised.\n"
    )
    up, down = events(text)
    assert isinstance(up, Link) and up.up
    assert isinstance(down, Link) and not down.up  # only right after our own CONNACK


def test_garbage_is_ignored() -> None:
    text = "\n: x\nnot a log line\n12x: Sending PUBLISH to local.cell-t-explore (broken\n"
    assert events(text) == []
    assert [type(e) for e in events("3: mosquitto version 2.0.11 starting\n")] == [Start]


def test_a_continuation_that_looks_like_a_stamp_does_not_crash() -> None:
    text = "1: Sending PUBLISH to local.b (d0, q0, r0, m0, 'a\n²: b', ... (1 bytes))\n"
    (e,) = events(text, "local.b")
    assert isinstance(e, Publish) and e.topic == "a\n²: b"


def test_the_monitor_mode_skips_other_clients_publishes() -> None:
    parser = LogParser(BRIDGE, every_publish=False)
    got = [summary(e) for e in parser.events(REAL.splitlines(keepends=True))]
    assert ("received", 8) not in got  # a camera's publish: the observer counts those
    assert ("sent", 9) in got and ("denied", 13) in got and ("received", 14) in got

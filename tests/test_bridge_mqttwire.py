"""bridge.mqttwire: the observer's MQTT 3.1.1, byte for byte. Against a real mosquitto it runs in
test_bridge_lab.py (the monitor's counts)."""

from __future__ import annotations

import struct

import pytest

from bridge import mqttwire as wire


def packet(kind: int, flags: int, body: bytes) -> bytes:
    length = len(body)
    out = bytearray()
    while True:
        length, digit = divmod(length, 128)
        out.append(digit | (0x80 if length else 0))
        if not length:
            break
    return bytes([kind << 4 | flags]) + bytes(out) + body


def pub(topic: str, payload: bytes, qos: int = 0, retain: bool = False, pid: int = 7) -> bytes:
    body = struct.pack("!H", len(topic.encode())) + topic.encode()
    if qos:
        body += struct.pack("!H", pid)
    return packet(3, qos << 1 | int(retain), body + payload)


def test_connect_and_subscribe_bytes() -> None:
    c = wire.connect("cell-monitor-1", "cell", "pw", 30)
    assert c == (
        b"\x10\x24\x00\x04MQTT\x04\xc2\x00\x1e\x00\x0ecell-monitor-1\x00\x04cell\x00\x02pw"
    )
    s = wire.subscribe(1, [("#", 0), ("$SYS/#", 0)])
    assert s == b"\x82\x0f\x00\x01\x00\x01#\x00\x00\x06$SYS/#\x00"
    assert wire.puback(513) == b"\x40\x02\x02\x01"
    assert (
        wire.connect("hub-sub", None, None, 60)
        == b"\x10\x13\x00\x04MQTT\x04\x02\x00\x3c\x00\x07hub-sub"
    )
    assert wire.encode_publish("a/b", b"x", qos=1, packet_id=2) == pub("a/b", b"x", qos=1, pid=2)
    assert wire.encode_publish("a/b", b"") == pub("a/b", b"")


def test_decoder_survives_any_split_of_the_stream() -> None:
    stream = (
        packet(2, 0, b"\x00\x00")
        + packet(9, 0, b"\x00\x01\x00\x00")
        + pub("site/cam-01/events/x", b"hello")
        + pub("hub/config/y", b"z" * 300, qos=1, retain=True, pid=258)
        + packet(13, 0, b"")
    )
    want = [(2, 0), (9, 0), (3, 0), (3, 3), (13, 0)]
    for cut in range(1, len(stream)):
        d = wire.Decoder()
        got = d.feed(stream[:cut]) + d.feed(stream[cut:])
        assert [(k, f) for k, f, _ in got] == want, cut
    d = wire.Decoder()
    got = [p for b in stream for p in d.feed(bytes([b]))]  # one byte at a time
    assert len(got) == 5
    m = wire.publish(got[3][1], got[3][2])
    assert m == wire.Message("hub/config/y", b"z" * 300, 1, True, 258)
    assert wire.publish(got[2][1], got[2][2]).retain is False


def test_long_and_unicode_topics() -> None:
    topic = "site/câm/" + "x" * 20_000
    (only,) = wire.Decoder().feed(pub(topic, b""))
    assert wire.publish(only[1], only[2]).topic == topic


def test_connack_and_errors() -> None:
    assert wire.connack_error(b"\x00\x00") is None
    assert wire.connack_error(b"\x00\x05") == "not authorised"
    assert wire.connack_error(b"\x00\x04") == "bad user name or password"
    with pytest.raises(wire.ProtocolError):
        wire.connack_error(b"\x00")
    with pytest.raises(wire.ProtocolError):
        wire.Decoder().feed(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(wire.ProtocolError):
        wire.publish(0, b"\x00")

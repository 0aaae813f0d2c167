"""Just enough MQTT 3.1.1 for the monitor's observer: CONNECT, SUBSCRIBE, PINGREQ out; CONNACK,
SUBACK, PUBLISH, PINGRESP in. Pure: bytes in, bytes or packets out.

Why not paho: the observer must keep up with every message on the site's bus, and paho's
per-message cost in Python (~44 µs here, a whole core at 20k messages/s, measured) made the
monitor fall behind the bridge it watches; the broker then drops messages queued for it and the
counts stop being exact. Decoding a PUBLISH by hand costs a few microseconds. Only what a QoS 0
subscriber needs is here; tests and tools keep using paho.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP = 2, 3, 4, 9, 13
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


class ProtocolError(ValueError):
    """The broker sent something that is not MQTT 3.1.1 as this module knows it."""


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def connect(client_id: str, username: str | None, password: str | None, keepalive: int) -> bytes:
    """CONNECT with a clean session; with a user name and password unless they are None
    (a TLS client whose certificate is its login)."""
    login = username is not None and password is not None
    flags = 0xC2 if login else 0x02
    body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + _str(client_id)
    if username is not None and password is not None:
        body += _str(username) + _str(password)
    return b"\x10" + _length(len(body)) + body


def encode_publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0) -> bytes:
    """A PUBLISH packet (what load generators and tests send; the observer only reads them)."""
    body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return bytes([0x30 | qos << 1]) + _length(len(body)) + body


def subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_str(f) + bytes([q]) for f, q in filters)
    return b"\x82" + _length(len(body)) + body


def puback(packet_id: int) -> bytes:
    return b"\x40\x02" + struct.pack("!H", packet_id)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    packet_id: int | None


class Decoder:
    """Complete packets out of a byte stream, however the stream was split."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """(packet type, flags, body) of every packet completed by `data`."""
        buf = self._buf + data if self._buf else data
        out: list[tuple[int, int, bytes]] = []
        pos, end = 0, len(buf)
        while pos + 2 <= end:
            first = buf[pos]
            length, shift, i = 0, 0, pos + 1
            while True:
                if i >= end:
                    self._buf = buf[pos:]
                    return out
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise ProtocolError("remaining length longer than 4 bytes")
            if i + length > end:
                break
            out.append((first >> 4, first & 0x0F, buf[i : i + length]))
            pos = i + length
        self._buf = buf[pos:]
        return out


def publish(flags: int, body: bytes) -> Message:
    """Decode the body of a PUBLISH packet."""
    if len(body) < 2:
        raise ProtocolError("PUBLISH shorter than its topic length")
    n = (body[0] << 8) | body[1]
    topic = body[2 : 2 + n].decode("utf-8", errors="replace")
    qos = (flags >> 1) & 3
    pos = 2 + n
    packet_id = None
    if qos:
        packet_id = struct.unpack_from("!H", body, pos)[0]
        pos += 2
    return Message(topic, body[pos:], qos, bool(flags & 1), packet_id)


def connack_error(body: bytes) -> str | None:
    """None if the CONNACK accepts the connection, else why not."""
    if len(body) != 2:
        raise ProtocolError("CONNACK of the wrong size")
    code = body[1]
    return None if code == 0 else CONNACK_CODES.get(code, f"refused with code {code}")

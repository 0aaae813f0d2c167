"""Synthetic packets and pcapng files for tests and benches (the product writes none itself:
dumpcap does). Frames are Ethernet + IPv4 + TCP/UDP with valid lengths; checksums are zero."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

SYN, ACK = 0x02, 0x10


def frame(
    src: str, dst: str, proto: str, sport: int, dport: int, *, flags: int = ACK, payload: int = 0
) -> bytes:
    def ip4(a: str) -> bytes:
        return bytes(int(x) for x in a.split("."))

    if proto == "tcp":
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
        number = 6
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + payload, 0)
        number = 17
    body = l4 + bytes(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, number, 0, ip4(src), ip4(dst)
    )
    eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    return eth + ip + body


def _block(btype: int, body: bytes) -> bytes:
    pad = (-len(body)) % 4
    length = 12 + len(body) + pad
    return struct.pack("<II", btype, length) + body + bytes(pad) + struct.pack("<I", length)


def header() -> bytes:
    """Section header + one Ethernet interface with nanosecond timestamps."""
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    tsresol = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
    idb = _block(1, struct.pack("<HHI", 1, 0, 262144) + tsresol)
    return shb + idb


def epb(ts_ns: int, data: bytes) -> bytes:
    return _block(
        6, struct.pack("<IIIII", 0, ts_ns >> 32, ts_ns & 0xFFFFFFFF, len(data), len(data)) + data
    )


def write_pcapng(path: Path, packets: Iterable[tuple[int, bytes]]) -> int:
    """Write (ts_ns, frame) packets; returns the file's size."""
    with path.open("wb") as f:
        f.write(header())
        for ts, data in packets:
            f.write(epb(ts, data))
        return f.tell()


def dns_response(name: str, addresses: list[str]) -> bytes:
    """A DNS response payload: one question, one A answer per address (name compressed)."""
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    body = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, len(addresses), 0, 0) + q + b"\0\1\0\1"
    for a in addresses:
        body += (
            b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(int(x) for x in a.split("."))
        )
    return body


def udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP frame carrying `payload`."""
    base = frame(src, dst, "udp", sport, dport, payload=len(payload))
    return base[: len(base) - len(payload)] + payload

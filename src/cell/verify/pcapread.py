"""A small, fast reader of pcapng and pcap files: packet timestamps, link type and bytes.

Written for the Cell's own ring (dumpcap's pcapng, or a window cut from it): Section Header,
Interface Description (link type, timestamp resolution), Enhanced and Simple Packet Blocks; other
blocks are skipped. Classic pcap (micro- and nanosecond) is read too. A file cut short in the
middle of a block (the live ring file, or a run killed mid-write) ends at its last whole block.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from pathlib import Path

from cell.verify.errors import CaptureError

HEAD = 256
"""Bytes of each packet handed out: headers, and the answers of a DNS response, fit."""

Packet = tuple[int, int, bytes, int]
"""(timestamp in ns since the epoch, link type, the first HEAD captured bytes, length on the wire)."""

SHB, IDB, SPB, EPB = 0x0A0D0D0A, 1, 3, 6
_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}


def read_packets(path: str | Path) -> Iterator[Packet]:
    """Every packet of a pcapng or pcap file, in file order."""
    with Path(path).open("rb") as f:
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            return
        with mm:
            view = memoryview(mm)
            try:
                head = bytes(view[:4])
                if head == b"\x0a\x0d\x0d\x0a":
                    yield from _pcapng(view)
                elif head in _PCAP_MAGIC:
                    yield from _pcap(view, *_PCAP_MAGIC[head])
                else:
                    raise CaptureError(f"{path}: neither pcapng nor pcap")
            finally:
                view.release()


def complete_length(path: str | Path) -> int:
    """The length of the file's whole blocks (pcapng): what a reader may safely take."""
    size = Path(path).stat().st_size
    with Path(path).open("rb") as f:
        if size >= 12:
            f.seek(size - 4)
            (tail,) = struct.unpack("<I", f.read(4))
            if 12 <= tail <= size and tail % 4 == 0:
                f.seek(size - tail + 4)
                (lead,) = struct.unpack("<I", f.read(4))
                if lead == tail:
                    return size  # the last block is whole: the usual case, found cheaply
        f.seek(0)
        data = f.read()
    off = 0
    while off + 12 <= len(data):
        (length,) = struct.unpack_from("<I", data, off + 4)
        if length < 12 or off + length > len(data):
            break
        off += length
    return off


def _pcapng(view: memoryview) -> Iterator[Packet]:
    end = len(view)
    off = 0
    bo = "<"
    links: list[
        tuple[int, int, int]
    ] = []  # per interface: (link type, ticks per second, ns per tick)
    u32 = struct.Struct("<I")
    while off + 12 <= end:
        btype, blen = struct.unpack_from(bo + "II", view, off)
        if btype == SHB:
            magic = bytes(view[off + 8 : off + 12])
            bo = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
            u32 = struct.Struct(bo + "I")
            (blen,) = u32.unpack_from(view, off + 4)
            links = []
        if blen < 12 or off + blen > end:
            return  # cut short: stop at the last whole block
        if btype == EPB:
            iface, hi, lo, cap, wire = struct.unpack_from(bo + "IIIII", view, off + 8)
            link, per_s, _ = links[iface]
            ticks = (hi << 32) | lo
            ns = ticks * 1_000_000_000 // per_s if per_s != 1_000_000 else ticks * 1000
            yield ns, link, bytes(view[off + 28 : off + 28 + min(cap, HEAD)]), wire
        elif btype == IDB:
            (link,) = struct.unpack_from(bo + "H", view, off + 8)
            links.append((link, _tsresol(view, off + 16, off + blen - 4, bo), 0))
        elif btype == SPB and links:
            (wire,) = u32.unpack_from(view, off + 8)
            yield (
                0,
                links[0][0],
                bytes(view[off + 12 : off + 12 + min(wire, blen - 16, HEAD)]),
                wire,
            )
        off += blen


def _tsresol(view: memoryview, off: int, end: int, bo: str) -> int:
    """Ticks per second of an interface (option if_tsresol, code 9; default microseconds)."""
    while off + 4 <= end:
        code, length = struct.unpack_from(bo + "HH", view, off)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = int(view[off + 4])
            return int(2 ** (v & 0x7F) if v & 0x80 else 10**v)
        off += 4 + ((length + 3) & ~3)
    return 1_000_000


def _pcap(view: memoryview, bo: str, ns_per_unit: int) -> Iterator[Packet]:
    (link,) = struct.unpack_from(bo + "I", view, 20)
    rec = struct.Struct(bo + "IIII")
    off, end = 24, len(view)
    while off + 16 <= end:
        sec, frac, cap, wire = rec.unpack_from(view, off)
        if off + 16 + cap > end:
            return
        ts = sec * 1_000_000_000 + frac * ns_per_unit
        yield ts, link, bytes(view[off + 16 : off + 16 + min(cap, HEAD)]), wire
        off += 16 + cap

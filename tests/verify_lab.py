"""Helpers of the verifier's lab tests and bench: DNS queries of any type from a VLAN namespace,
as fast as the server answers, and a capture of the WAN side."""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from firewall import netns

TYPES = {"A": 1, "AAAA": 28, "TXT": 16, "HTTPS": 65, "MX": 15, "PTR": 12, "ANY": 255}


def packet(name: str, qtype: int, qid: int) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)


def blast(
    src: str, server: str, queries: Sequence[tuple[str, int]], window: int = 64, timeout: float = 2
) -> tuple[int, int]:
    """Send every (name, qtype) from `src` with up to `window` in flight; (sent, answered).

    Runs in the caller's namespace (use `netns.with_ns`). Each query has its own id, and a
    query is answered once a reply with its id comes back; a lost one times out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))
        s.connect((server, 53))
        s.setblocking(False)
        pending: dict[int, float] = {}
        sent = answered = 0
        i = 0
        while i < len(queries) or pending:
            while i < len(queries) and len(pending) < window:
                qid = i & 0xFFFF
                if qid in pending:
                    break
                name, qtype = queries[i]
                try:
                    s.send(packet(name, qtype, qid))
                except ConnectionRefusedError:  # an earlier query's ICMP error, now reported
                    s.send(packet(name, qtype, qid))
                pending[qid] = time.monotonic()
                sent, i = sent + 1, i + 1
            ready, _, _ = select.select([s], [], [], 0.2)
            if ready:
                while True:
                    try:
                        reply = s.recv(4096)
                    except BlockingIOError:
                        break
                    except ConnectionRefusedError:  # nothing listens (yet): no answer
                        continue
                    (rid,) = struct.unpack(">H", reply[:2])
                    if pending.pop(rid, None) is not None:
                        answered += 1
            now = time.monotonic()
            for qid in [q for q, t in pending.items() if now - t > timeout]:
                del pending[qid]
        return sent, answered


def ask(ns: str, src: str, server: str, queries: Sequence[tuple[str, int]]) -> tuple[int, int]:
    return netns.with_ns(ns, lambda: blast(src, server, queries))


def link_of(ns: str) -> str:
    """The namespace's first link that is not loopback."""

    def go() -> str:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            names = [str(x.get_attr("IFLA_IFNAME")) for x in ipr.get_links()]
        return next(n for n in names if n != "lo")

    return netns.with_ns(ns, go)


def add_address(ns: str, address: str) -> None:
    """One more address on the namespace's first non-loopback link (a device the policy lacks)."""

    def go() -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            link = next(x for x in ipr.get_links() if x.get_attr("IFLA_IFNAME") != "lo")
            ipr.addr("add", index=link["index"], address=address, prefixlen=24)

    netns.with_ns(ns, go)


class Capture:
    """tcpdump of DNS (port 53) on the link of a namespace (the WAN's uplink), into a pcap file.

    A named link, not `any`: entered by setns only (no /sys of its own), tcpdump's `any` misses
    the namespace's packets."""

    def __init__(self, ns: str, out: Path) -> None:
        self.out = out
        argv = [
            "tcpdump",
            "-i",
            link_of(ns),
            "-n",
            "-U",
            "--immediate-mode",
            "-w",
            str(out),
            "port",
            "53",
        ]
        self.proc = netns.popen(ns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        said, deadline = b"", time.monotonic() + 10
        while b"listening on" not in said:  # only then is the capture armed
            assert time.monotonic() < deadline, said
            if select.select([self.proc.stderr], [], [], 0.2)[0]:
                said += os.read(self.proc.stderr.fileno(), 4096)
        time.sleep(0.2)

    def stop(self) -> bytes:
        time.sleep(0.3)
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        self.said = err.decode(errors="replace")
        return self.out.read_bytes()


def packets(pcap: bytes) -> list[bytes]:
    """The packets of a classic pcap file."""
    endian = "<" if pcap[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out, at = [], 24
    while at + 16 <= len(pcap):
        (incl,) = struct.unpack(endian + "I", pcap[at + 8 : at + 12])
        out.append(pcap[at + 16 : at + 16 + incl])
        at += 16 + incl
    return out


def wire_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))

"""A minimal DNS client: ask one server for a name's A records, as the Cell's own clients would.

Used by probes (resolve a hub name through the gateway's resolver before connecting) and by the
drift check of the resolver-filled hub sets. dnspython would do; this is twenty lines and no
dependency, and it only ever talks to the Cell's own resolvers.
"""

from __future__ import annotations

import socket
import struct


def query(name: str, qid: int = 0x4345) -> bytes:
    """A recursive query for `name`'s A records."""
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return header + qname + struct.pack(">HH", 1, 1)


def a_records(reply: bytes) -> list[str]:
    """Every A record in the answer section of a DNS reply."""
    (qd, an) = struct.unpack(">HH", reply[4:8])
    i, out = 12, []
    for _ in range(qd):
        while reply[i]:
            i += reply[i] + 1
        i += 5
    for _ in range(an):
        i += 2 if reply[i] & 0xC0 == 0xC0 else reply.index(0, i) - i + 1
        rtype, _, _, rdlen = struct.unpack(">HHIH", reply[i : i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(reply[i : i + 4]))
        i += rdlen
    return out


def resolve(server: str, name: str, timeout: float = 1.0) -> list[str]:
    """Ask `server` (port 53, UDP) for `name`'s A records; [] when there is no answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(query(name), (server, 53))
            return a_records(s.recv(2048))
        except (OSError, struct.error, IndexError, ValueError):
            return []

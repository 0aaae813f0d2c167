"""Link, address, route, rule and tc events straight from the kernel (rtnetlink groups), with
who: a notification carries the netlink port id of the socket whose request caused it, which
for `ip`, `tc` and most tools is their process id (0: the kernel itself). The socket is made
inside the gateway's namespace and keeps it. The forwarding and rp_filter sysctls send no
event: the watcher polls those.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
import time
from dataclasses import dataclass, field

from firewall.monitor import _socket_in

NETLINK_ROUTE = 0
GROUPS = 0x1 | 0x8 | 0x10 | 0x40 | 0x80
"""RTMGRP_LINK, RTMGRP_TC, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV4_RULE."""
_WHAT = {
    16: "link added or changed", 17: "link deleted", 20: "address added", 21: "address deleted",
    24: "route added", 25: "route deleted", 32: "rule added", 33: "rule deleted",
    36: "qdisc added", 37: "qdisc deleted", 44: "tc filter added", 45: "tc filter deleted",
}  # fmt: skip
IFLA_IFNAME = 3


@dataclass
class RtChange:
    """One burst of rtnetlink notifications from one sender."""

    what: list[str] = field(default_factory=list)
    port: int | None = None
    """The sender's netlink port id (usually its pid); None: the kernel."""
    at: float = field(default_factory=time.time)


class RtMonitor:
    def __init__(self, netns: str | None) -> None:
        self.sock = _socket_in(netns, NETLINK_ROUTE)
        self.sock.bind((0, GROUPS))
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[RtChange]:
        """What arrived, one change per sender (drains the socket)."""
        by: dict[int | None, RtChange] = {}
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return list(by.values())
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                by.setdefault(None, RtChange()).what.append("events lost (buffer overrun)")
                continue
            off = 0
            while off + 16 <= len(data):
                length, kind, _flags, _seq, port = struct.unpack_from("=IHHII", data, off)
                if length < 16:
                    break
                what = _WHAT.get(kind)
                if what:
                    if kind in (16, 17):
                        name = _ifname(data[off + 32 : off + length])
                        what += f" ({name})" if name else ""
                    change = by.setdefault(port or None, RtChange(port=port or None))
                    if what not in change.what:
                        change.what.append(what)
                off += (length + 3) & ~3

    def close(self) -> None:
        self.sock.close()


def _ifname(attrs: bytes) -> str | None:
    off = 0
    while off + 4 <= len(attrs):
        length, kind = struct.unpack_from("=HH", attrs, off)
        if length < 4:
            break
        if kind & 0x3FFF == IFLA_IFNAME:
            return attrs[off + 4 : off + length].rstrip(b"\0").decode(errors="replace")
        off += (length + 3) & ~3
    return None

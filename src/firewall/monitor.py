"""nftables change events straight from the kernel (netlink group NFNLGRP_NFTABLES), with who.

Every nftables transaction ends with a NEWGEN message carrying the pid and the name of the
process that committed it (NFTA_GEN_PROC_PID, NFTA_GEN_PROC_NAME): the kernel's own word on
who changed a table, the line `nft monitor` prints as "# new generation N by process PID (NAME)".
Reading the socket ourselves gives that without a child process and within a millisecond.
The socket is created inside the gateway's namespace and keeps it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import time
from dataclasses import dataclass, field

NETLINK_NETFILTER, NFNLGRP_NFTABLES, SUBSYS_NFTABLES = 12, 7, 10
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, SO_RCVBUFFORCE = 270, 1, 33
CLONE_NEWNET, NFPROTO_INET = 0x40000000, 1
NEWGEN = 15
_WHAT = {
    0: "table added", 2: "table deleted", 3: "chain added", 5: "chain deleted",
    6: "rule added", 8: "rule deleted", 9: "set added", 11: "set deleted",
    12: "set elements added", 14: "set elements deleted", 18: "object added",
    20: "object deleted", 22: "flowtable added", 24: "flowtable deleted",
}  # fmt: skip
# The attribute holding the object's own name (chain, set, ...) in each message, for people.
_NAME_ATTR = {3: 3, 5: 3, 6: 2, 8: 2, 9: 2, 11: 2, 12: 2, 14: 2, 18: 2, 20: 2}


@dataclass
class Change:
    """One committed transaction that touched the watched table."""

    what: list[str] = field(default_factory=list)
    pid: int | None = None
    process: str | None = None
    generation: int | None = None
    at: float = field(default_factory=time.time)

    def by(self) -> dict[str, object] | None:
        if self.pid is None:
            return None
        return {"pid": self.pid, "name": self.process, "generation": self.generation}


class NftMonitor:
    def __init__(self, netns: str | None, family: int = NFPROTO_INET, table: str = "cell") -> None:
        self.family, self.table = family, table.encode()
        self.sock = _socket_in(netns)
        self.sock.bind((0, 0))
        self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        try:  # a whole-ruleset apply is hundreds of messages: do not drop them
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._open: Change | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[Change]:
        """Completed transactions that touched the table (drains the socket)."""
        done: list[Change] = []
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return done
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                # The kernel dropped events: say so, and let the caller compare anyway.
                done.append(Change(["events lost (netlink buffer overrun)"]))
                continue
            self._parse(data, done)

    def _parse(self, data: bytes, done: list[Change]) -> None:
        off = 0
        while off + 20 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            if length < 16:
                break
            subsys, msg = kind >> 8, kind & 0xFF
            family = data[off + 16]
            attrs = _attrs(data[off + 20 : off + length])
            off += (length + 3) & ~3
            if subsys != SUBSYS_NFTABLES:
                continue
            if msg == NEWGEN:
                if self._open is not None:
                    change, self._open = self._open, None
                    gen, pid, comm = attrs.get(1), attrs.get(2), attrs.get(3)
                    change.generation = int.from_bytes(gen, "big") if gen else None
                    change.pid = int.from_bytes(pid, "big") if pid else None
                    change.process = comm.rstrip(b"\0").decode(errors="replace") if comm else None
                    done.append(change)
                continue
            table = attrs.get(1, b"").rstrip(b"\0")
            name = attrs.get(_NAME_ATTR.get(msg, -1), b"").rstrip(b"\0").decode(errors="replace")
            what = _WHAT.get(msg, f"message {msg}") + (f" ({name})" if name else "")
            if family != self.family or table != self.table:
                # Another table can let through what Cell drops: its changes are drift too.
                what += f" in table {table.decode(errors='replace')} (family {family})"
            if self._open is None:
                self._open = Change()
            if what not in self._open.what:
                self._open.what.append(what)

    def close(self) -> None:
        self.sock.close()


def _attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


def _socket_in(netns: str | None, protocol: int = NETLINK_NETFILTER) -> socket.socket:
    def make() -> socket.socket:
        return socket.socket(
            socket.AF_NETLINK,
            socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
            protocol,
        )

    if netns is None:
        return make()
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    there = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(there, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"cannot enter network namespace {netns}")
        try:
            return make()
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "cannot return to this thread's namespace")
    finally:
        os.close(home)
        os.close(there)

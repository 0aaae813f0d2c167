"""A small server for lab namespaces: accept TCP and echo UDP on ADDR:PORT/PROTO, logging each.

`python -m cell.lab.responder --log FILE SPEC...`, one process per namespace. It stands in for the
cameras' RTSP, the gateway's NTP and SSH, "the Internet", the management endpoint and the phone-home
server, so that an allowed probe gets an answer, and so does a leaked one (silence proves nothing).
Each connection or datagram is one JSON line in the log, with its source: the phone-home counter
and the tests count those lines.

Standard library only, and no import of the rest of Cell: it starts in a few tens of milliseconds.
ADDR may be 0.0.0.0 (every address of the namespace): UDP replies then leave from the address the
datagram was sent to (IP_PKTINFO), so a client's connected socket accepts them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import selectors
import socket
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

IP_PKTINFO = 8
"""From <linux/in.h>; Python's socket module does not export it."""
_PKTINFO = struct.Struct("=I4s4s")


def parse_spec(text: str) -> tuple[str, int, str]:
    """'10.0.0.1:554/tcp' -> ('10.0.0.1', 554, 'tcp'); ValueError when malformed."""
    addr, _, rest = text.rpartition(":")
    port, _, proto = rest.partition("/")
    socket.inet_aton(addr)
    if proto not in ("tcp", "udp") or not 0 < int(port) < 65536:
        raise ValueError(f"not ADDR:PORT/tcp|udp: {text!r}")
    return addr, int(port), proto


class Responder:
    def __init__(self, specs: Sequence[tuple[str, int, str]], log: TextIO) -> None:
        self.log = log
        self.sel = selectors.DefaultSelector()
        for addr, port, proto in specs:
            if proto == "tcp":
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((addr, port))
                s.listen(128)
                s.setblocking(False)
                self.sel.register(s, selectors.EVENT_READ, self._accept)
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                s.bind((addr, port))
                s.setblocking(False)
                self.sel.register(s, selectors.EVENT_READ, self._datagram)

    def _record(self, proto: str, src: tuple[str, int], dst: tuple[str, int]) -> None:
        line = {
            "t": round(time.time(), 3),
            "proto": proto,
            "src": f"{src[0]}:{src[1]}",
            "dst": f"{dst[0]}:{dst[1]}",
        }
        self.log.write(json.dumps(line) + "\n")
        self.log.flush()

    def _accept(self, s: socket.socket) -> None:
        try:
            conn, src = s.accept()
        except OSError:
            return
        self._record("tcp", src, conn.getsockname())
        conn.setblocking(False)
        self.sel.register(conn, selectors.EVENT_READ, self._echo)

    def _echo(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
            if data:
                conn.send(data)
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self.sel.unregister(conn)
        conn.close()

    def _datagram(self, s: socket.socket) -> None:
        try:
            data, anc, _flags, src = s.recvmsg(65536, socket.CMSG_SPACE(_PKTINFO.size))
        except OSError:
            return
        dst_ip = s.getsockname()[0]
        for level, kind, value in anc:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= _PKTINFO.size:
                dst_ip = socket.inet_ntoa(_PKTINFO.unpack(value[: _PKTINFO.size])[2])
        self._record("udp", src, (dst_ip, s.getsockname()[1]))
        info = _PKTINFO.pack(0, socket.inet_aton(dst_ip), b"\0\0\0\0")
        with contextlib.suppress(OSError):
            s.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, src)

    def serve_forever(self) -> None:
        while True:
            for key, _ in self.sel.select():
                key.data(key.fileobj)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m cell.lab.responder", description=__doc__.split("\n")[0]
    )
    p.add_argument("--log", required=True, help="append one JSON line per connection or datagram")
    p.add_argument("spec", nargs="+", help="ADDR:PORT/PROTO, e.g. 0.0.0.0:554/tcp")
    args = p.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        specs = [parse_spec(s) for s in args.spec]
        with Path(args.log).open("a", encoding="utf-8") as log:
            responder = Responder(specs, log)
            print(f"responder: listening on {' '.join(args.spec)}", file=sys.stderr, flush=True)
            responder.serve_forever()
    except (OSError, ValueError) as e:
        print(f"responder: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

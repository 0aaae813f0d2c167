"""Reading the status bus, and the process that does it for the console.

`read_bus` is the MQTT client (aiomqtt): subscribe, hand each message to a sink, reconnect
with backoff, say when not connected. `cell console --once` runs it in its own loop.

The console runs it in a process of its own (`python -m console.busreader`): the screen's
loop and the bus reader then never wait on one interpreter lock. In one process, a reader
thread beside Textual's painting waited up to 5 ms for the lock after every socket call, its
acknowledgements came late, and at 1,000 documents a second its p99 lag was 0.4 s. The child
gets its orders as one JSON line on stdin (so a password is never on a command line), writes
frames to stdout, and exits when stdin closes (the console is gone, however it ended).

A frame: a 9-byte header (kind, topic length, payload length; network order), then the topic
and the payload. Kinds: `m` a message, `u` connected, `d` not connected (the payload says why).
This module imports no part of the Cell and nothing heavy, so the child starts quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import struct
import sys
import threading
from dataclasses import asdict
from typing import Protocol

from console.config import BrokerConfig

BACKOFF_MAX = 5.0
HEADER = struct.Struct("!cII")
MESSAGE, UP, DOWN = b"m", b"u", b"d"
PIPE_SIZE = 1 << 20
"""The child's stdout pipe: a stall of the screen's loop is buffered here, not in the broker."""


class Sink(Protocol):
    def message(self, topic: str, payload: bytes) -> None: ...

    def link(self, error: str | None) -> None:
        """Connected (None), or why not."""


def _payload(p: object) -> bytes:
    if p is None:
        return b""
    if isinstance(p, bytes | bytearray):
        return bytes(p)
    return str(p).encode()


async def read_bus(broker: BrokerConfig, topics: str, client_id: str, sink: Sink) -> None:
    """Subscribe to `topics` on `broker` and deliver until cancelled."""
    import aiomqtt

    b = broker
    tls = (
        aiomqtt.TLSParameters(ca_certs=b.cafile, certfile=b.certfile, keyfile=b.keyfile)
        if b.cafile
        else None
    )
    backoff = 0.2
    while True:
        try:
            async with aiomqtt.Client(
                b.host,
                b.port,
                username=b.username,
                password=b.password,
                identifier=client_id,
                tls_params=tls,
                keepalive=10,
                timeout=5,
            ) as client:
                await client.subscribe(topics, qos=1)
                sink.link(None)
                backoff = 0.2
                async for m in client.messages:
                    sink.message(str(m.topic), _payload(m.payload))
        except aiomqtt.MqttError as e:
            sink.link(f"{b.where}: {e}")
        except OSError as e:
            sink.link(f"{b.where}: {e.strerror or e}")
        except Exception as e:  # whatever breaks a connection, the reader tries again
            sink.link(f"{b.where}: {type(e).__name__}: {e}")
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX)


# --- frames ---------------------------------------------------------------------------------


def frame(kind: bytes, topic: str = "", payload: bytes = b"") -> bytes:
    t = topic.encode()
    return HEADER.pack(kind, len(t), len(payload)) + t + payload


class Frames:
    """Frames out of a byte stream that arrives in pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, str, bytes]]:
        self._buf += data
        out = []
        at, size = 0, len(self._buf)
        while size - at >= HEADER.size:
            kind, tlen, plen = HEADER.unpack_from(self._buf, at)
            end = at + HEADER.size + tlen + plen
            if end > size:
                break
            start = at + HEADER.size
            topic = bytes(self._buf[start : start + tlen]).decode(errors="replace")
            out.append((kind, topic, bytes(self._buf[start + tlen : end])))
            at = end
        del self._buf[:at]
        return out


def orders(broker: BrokerConfig, topics: str, client_id: str) -> bytes:
    """The child's orders: one JSON line."""
    return (
        json.dumps({"broker": asdict(broker), "topics": topics, "id": client_id}) + "\n"
    ).encode()


# --- the child ------------------------------------------------------------------------------


class _Out:
    """A sink that writes frames to a file descriptor (blocking: a full pipe waits)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def message(self, topic: str, payload: bytes) -> None:
        self._write(frame(MESSAGE, topic, payload))

    def link(self, error: str | None) -> None:
        self._write(frame(UP) if error is None else frame(DOWN, payload=error.encode()))


def _exit_when_stdin_closes() -> None:
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(4096):
            pass
    os._exit(0)


def main() -> None:
    line = sys.stdin.buffer.readline()
    if not line:
        return
    o = json.loads(line)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the console decides when its reader ends
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    out = sys.stdout.fileno()
    with contextlib.suppress(OSError):
        fcntl.fcntl(out, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    try:
        asyncio.run(read_bus(BrokerConfig(**o["broker"]), o["topics"], o["id"], _Out(out)))
    except (BrokenPipeError, KeyboardInterrupt):
        os._exit(0)


if __name__ == "__main__":
    main()

"""Where the console's bus messages come from: the `StatusSource` seam.

- `BusSource`: the Cell's status bus, live, over MQTT (aiomqtt, asyncio): subscribes `cell/#`,
  reconnects with backoff, and says when it is not connected (the banner then says so: a
  console that cannot hear the daemon never shows its last verdict as current).
- `FileSource`: a recorded file of bus messages, one JSON object a line, `{"topic": ...,
  "payload": {...} | "text"}`; it is replayed, then followed as it grows.

Both hand each message to a `Sink` in the caller's event loop, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Protocol

from cell.status.document import STATUS_FILTER
from console.config import BrokerConfig, ConsoleConfig

BACKOFF_MAX = 5.0


class Sink(Protocol):
    def message(self, topic: str, payload: bytes) -> None: ...

    def link(self, error: str | None) -> None:
        """Connected (None), or why not."""


class StatusSource(Protocol):
    @property
    def where(self) -> str: ...

    async def run(self, sink: Sink) -> None:
        """Deliver messages until cancelled."""


def _payload(p: object) -> bytes:
    if p is None:
        return b""
    if isinstance(p, bytes | bytearray):
        return bytes(p)
    return str(p).encode()


class BusSource:
    """The live status bus."""

    def __init__(self, broker: BrokerConfig) -> None:
        self.broker = broker
        self.client_id = f"cell-console-{uuid.uuid4().hex[:8]}"

    @property
    def where(self) -> str:
        return self.broker.where

    async def run(self, sink: Sink) -> None:
        import aiomqtt

        b = self.broker
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
                    identifier=self.client_id,
                    tls_params=tls,
                    keepalive=10,
                    timeout=5,
                ) as client:
                    await client.subscribe(STATUS_FILTER, qos=1)
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


class FileSource:
    """A recorded bus: replay, then follow."""

    def __init__(self, path: str, follow: bool = True, poll: float = 0.2) -> None:
        self.path = Path(path)
        self.follow = follow
        self.poll = poll

    @property
    def where(self) -> str:
        return f"file {self.path}"

    async def run(self, sink: Sink) -> None:
        offset = 0
        told: str | None = "not read yet"
        while True:
            try:
                with self.path.open("rb") as fh:
                    if os.fstat(fh.fileno()).st_size < offset:
                        offset = 0  # replaced or truncated: read it again
                    fh.seek(offset)
                    data = fh.read()
            except OSError as e:
                if told != str(e):
                    told = str(e)
                    sink.link(f"{self.path}: {e.strerror or e}")
            else:
                if told is not None:
                    told = None
                    sink.link(None)
                end = data.rfind(b"\n") + 1
                offset += end
                for line in data[:end].splitlines():
                    self._deliver(line, sink)
            if not self.follow:
                return
            await asyncio.sleep(self.poll)

    @staticmethod
    def _deliver(line: bytes, sink: Sink) -> None:
        if not line.strip():
            return
        try:
            doc = json.loads(line)
            topic, payload = str(doc["topic"]), doc.get("payload")
        except (ValueError, KeyError, TypeError):
            return  # not a recorded message: a recording is read as far as it makes sense
        raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        sink.message(topic, b"" if payload is None else raw)


def make_source(config: ConsoleConfig, follow: bool = True) -> StatusSource | None:
    """The source `config` names: a recorded file, the broker, or none."""
    if config.recorded:
        return FileSource(config.recorded, follow=follow)
    if config.broker is not None:
        return BusSource(config.broker)
    return None

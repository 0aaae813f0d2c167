"""Where the console's bus messages come from: the `StatusSource` seam.

- `BusSource`: the Cell's status bus, live, over MQTT (`console.busreader.read_bus`, aiomqtt):
  subscribes `cell/#`, reconnects with backoff, and says when it is not connected (the banner
  then says so: a console that cannot hear the daemon never shows its last verdict as current).
- `ReaderProcess`: a `BusSource` run in a process of its own, so the reader never waits on the
  screen (what the TUI uses; see `console.busreader` for why).
- `FileSource`: a recorded file of bus messages, one JSON object a line, `{"topic": ...,
  "payload": {...} | "text"}`; it is replayed, then followed as it grows.

Each hands each message to a `Sink` in the caller's event loop, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import IO, Protocol

from cell.status.topics import STATUS_FILTER
from console.busreader import BACKOFF_MAX, DOWN, MESSAGE, UP, Frames, Sink, orders, read_bus
from console.config import BrokerConfig, ConsoleConfig

__all__ = ["BusSource", "FileSource", "ReaderProcess", "Sink", "StatusSource", "make_source"]


class StatusSource(Protocol):
    @property
    def where(self) -> str: ...

    async def run(self, sink: Sink) -> None:
        """Deliver messages until cancelled."""


class BusSource:
    """The live status bus, read in the caller's loop."""

    def __init__(self, broker: BrokerConfig) -> None:
        self.broker = broker
        self.client_id = f"cell-console-{uuid.uuid4().hex[:8]}"

    @property
    def where(self) -> str:
        return self.broker.where

    async def run(self, sink: Sink) -> None:
        await read_bus(self.broker, STATUS_FILTER, self.client_id, sink)


READ = 1 << 20


class ReaderProcess:
    """A `BusSource` read by a child process (`python -m console.busreader`): its frames come
    back over a pipe that the caller's loop reads when it is readable. A child that dies is
    said (`link`) and started again with backoff; cancelling ends it."""

    def __init__(self, bus: BusSource) -> None:
        self.bus = bus
        self._early: tuple[subprocess.Popen[bytes], IO[bytes]] | None = None

    @property
    def where(self) -> str:
        return self.bus.where

    def start(self) -> None:
        """Start the child now, before `run` (it connects while the caller gets ready; what it
        reads waits in the pipe). A child started and never run ends with this process."""
        if self._early is None:
            self._early = self._child()

    async def run(self, sink: Sink) -> None:
        backoff = 0.2
        while True:
            (child, errors), self._early = self._early or self._child(), None
            with errors:
                try:
                    heard = await self._pump(child, sink)
                finally:
                    _end(child)
                errors.seek(0)
                why = errors.read().decode(errors="replace").strip().splitlines()
            backoff = 0.2 if heard else min(backoff * 2, BACKOFF_MAX)
            last = f": {why[-1]}" if why else ""
            sink.link(f"{self.where}: the bus reader stopped (exit {child.returncode}){last}")
            await asyncio.sleep(backoff)

    def _child(self) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
        """A new child, and the file its stderr goes to (read when it ends)."""
        errors = tempfile.TemporaryFile()  # noqa: SIM115  (closed by `run`, which owns it)
        return self._spawn(errors), errors

    def _spawn(self, errors: IO[bytes]) -> subprocess.Popen[bytes]:
        here = str(Path(__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": here + (os.pathsep + path if path else "")}
        child = subprocess.Popen(
            [sys.executable, "-m", "console.busreader"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
        assert child.stdin is not None
        child.stdin.write(orders(self.bus.broker, STATUS_FILTER, self.bus.client_id))
        child.stdin.flush()
        return child

    @staticmethod
    async def _pump(child: subprocess.Popen[bytes], sink: Sink) -> bool:
        """Hand the child's frames to `sink` until its output ends. Whether it ever got through
        to the broker."""
        assert child.stdout is not None
        fd = child.stdout.fileno()
        os.set_blocking(fd, False)
        loop = asyncio.get_running_loop()
        ended = loop.create_future()
        frames = Frames()
        heard = False

        def readable() -> None:
            nonlocal heard
            try:
                data = os.read(fd, READ)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                if not ended.done():
                    ended.set_result(None)
                return
            for kind, topic, payload in frames.feed(data):
                if kind == MESSAGE:
                    sink.message(topic, payload)
                elif kind == UP:
                    heard = True
                    sink.link(None)
                elif kind == DOWN:
                    sink.link(payload.decode(errors="replace"))

        loop.add_reader(fd, readable)
        try:
            await ended
        finally:
            loop.remove_reader(fd)
        return heard


def _end(child: subprocess.Popen[bytes]) -> None:
    """Stop the child now: closing its stdin is enough, a signal makes sure."""
    for pipe in (child.stdin, child.stdout):
        with contextlib.suppress(OSError):
            if pipe is not None:
                pipe.close()
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=1)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


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


def make_source(
    config: ConsoleConfig, follow: bool = True, isolated: bool = False
) -> StatusSource | None:
    """The source `config` names: a recorded file, the broker, or none. `isolated`: read the
    broker in a process of its own (the TUI; a one-shot read has no screen to compete with)."""
    if config.recorded:
        return FileSource(config.recorded, follow=follow)
    if config.broker is not None:
        bus = BusSource(config.broker)
        return ReaderProcess(bus) if isolated else bus
    return None

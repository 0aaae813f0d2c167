"""The hand-over from the bus to the screen: the source runs in a thread of its own (its own
asyncio loop, so reading the socket never waits on painting), and the screen's loop takes
what arrived in batches.

Retained topics are coalesced: if `cell/status` changed five times since the screen last
looked, the screen judges the newest (a retained document replaces the one before). Events
are not retained and each one counts: they are all kept, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

from cell.status.document import EVENT_TOPIC
from console.sources import StatusSource

Batch = list[tuple[str, bytes]]
Deliver = Callable[[Batch, "tuple[str | None] | None"], None]
"""Called in the screen's loop with the messages and, when it changed, the link state."""


class Inbox:
    """A `Sink` for a source in another thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._ui = loop
        self._deliver = deliver
        self._lock = threading.Lock()
        self._latest: dict[str, bytes] = {}
        self._events: list[tuple[str, bytes]] = []
        self._link: tuple[str | None] | None = None
        self._scheduled = False
        self._bus: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    # --- the bus thread ---------------------------------------------------------------------

    def message(self, topic: str, payload: bytes) -> None:
        with self._lock:
            if topic == EVENT_TOPIC:
                self._events.append((topic, payload))
            else:
                self._latest.pop(topic, None)
                self._latest[topic] = payload
            self._wake()

    def link(self, error: str | None) -> None:
        with self._lock:
            self._link = (error,)
            self._wake()

    def _wake(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            with contextlib.suppress(RuntimeError):  # the screen's loop is closing
                self._ui.call_soon_threadsafe(self._drain)

    def run(self, source: StatusSource) -> None:
        """Run `source` in this (the calling) thread until `stop`."""
        loop = asyncio.new_event_loop()
        with self._lock:
            if self._stopped:
                loop.close()
                return
            self._bus = loop
            self._task = loop.create_task(source.run(self))
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            loop.close()

    # --- the screen's loop ------------------------------------------------------------------

    def _drain(self) -> None:
        with self._lock:
            batch = [*self._latest.items(), *self._events]
            self._latest, self._events = {}, []
            link, self._link = self._link, None
            self._scheduled = False
        self._deliver(batch, link)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            bus, task = self._bus, self._task
        if bus is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # already closed
                bus.call_soon_threadsafe(task.cancel)

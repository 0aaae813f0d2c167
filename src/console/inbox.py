"""The hand-over from the bus to the screen: what the source delivered is kept until the
screen's loop next gets to it, then applied in one batch.

Retained topics are coalesced: if `cell/status` changed five times since the screen last
looked, the screen judges the newest (a retained document replaces the one before). Events
are not retained and each one counts: they are all kept, in order.

The source runs as a task in the screen's loop (the live bus itself is read by a process of
its own, `ReaderProcess`, whose frames arrive here in chunks), so one chunk of many frames is
one batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cell.status.topics import EVENT_TOPIC

Batch = list[tuple[str, bytes]]
Deliver = Callable[[Batch, "tuple[str | None] | None"], None]
"""Called in the screen's loop with the messages and, when it changed, the link state."""


class Inbox:
    """A `Sink` that batches for the screen."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._ui = loop
        self._deliver = deliver
        self._latest: dict[str, bytes] = {}
        self._events: list[tuple[str, bytes]] = []
        self._link: tuple[str | None] | None = None
        self._scheduled = False

    def message(self, topic: str, payload: bytes) -> None:
        if topic == EVENT_TOPIC:
            self._events.append((topic, payload))
        else:
            self._latest.pop(topic, None)
            self._latest[topic] = payload
        self._wake()

    def link(self, error: str | None) -> None:
        self._link = (error,)
        self._wake()

    def _wake(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._ui.call_soon(self._drain)

    def _drain(self) -> None:
        batch = [*self._latest.items(), *self._events]
        self._latest, self._events = {}, []
        link, self._link = self._link, None
        self._scheduled = False
        self._deliver(batch, link)

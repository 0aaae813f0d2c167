"""`cell console --once`: read the bus and the records once, print every panel as text, exit.

For scripts and a quick look over ssh; the goldens use the same text. It waits for the retained
status (and a moment more for the documents that follow it), at most `wait` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from console.banner import BannerState
from console.config import ConsoleConfig
from console.model import CONNECTING, BusState
from console.records import read_records
from console.sources import make_source
from console.text import view_banner
from console.view import View

GRACE = 0.3
"""Seconds to wait after the status for the retained documents that follow it."""


class _Collect:
    def __init__(self, bus: BusState) -> None:
        self.bus = bus
        self.got_status = asyncio.Event()

    def message(self, topic: str, payload: bytes) -> None:
        if self.bus.apply(topic, payload) == "status":
            self.got_status.set()

    def link(self, error: str | None) -> None:
        self.bus.link = error


async def snapshot(config: ConsoleConfig, wait: float = 3.0) -> tuple[View, BannerState]:
    source = make_source(config, follow=False)
    bus = BusState(where=source.where if source else "", link="no status bus given")
    if source is not None:
        bus.link = CONNECTING
        sink = _Collect(bus)
        task = asyncio.create_task(source.run(sink))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sink.got_status.wait(), wait)
            await asyncio.sleep(GRACE)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if bus.link == CONNECTING:
            bus.link = f"{source.where}: no answer within {wait:.0f}s"
    records = None
    if config.state_dir:
        records = await asyncio.to_thread(read_records, config.state_dir, config.repo)
    view = View(bus, records, time.time())
    return view, view_banner(view)

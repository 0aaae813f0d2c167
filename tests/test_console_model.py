"""The console's pure parts and seams: the bus state, the hand-over from the bus thread
(retained topics coalesced, events all kept), and the recorded-file source."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from console.inbox import Inbox
from console.model import BusState
from console.sources import FileSource
from consolekit import aio, availability, status_doc


def test_bus_state_applies_each_topic() -> None:
    bus = BusState()
    now = time.time()
    assert bus.apply("cell/status", json.dumps(status_doc(now)).encode()) == "status"
    assert bus.status is not None and bus.status.verdict == "sovereign"
    assert (
        bus.apply("cell/availability", json.dumps(availability("offline", now)).encode())
        == "availability"
    )
    check = {
        "ok": False,
        "ts": "2026-12-02T03:10:00Z",
        "detail": "x",
        "fresh_for": 5,
        "evidence": ["e"],
    }
    assert bus.apply("cell/check/drift", json.dumps(check).encode()) == "check"
    assert bus.check("drift") is not None and bus.check("drift").evidence == ["e"]  # type: ignore[union-attr]
    assert bus.check("trust") is not None  # from the summary
    event = {"kind": "drift", "ts": "2026-12-02T03:10:00Z", "text": "t", "later": "ignored"}
    assert bus.apply("cell/event", json.dumps(event).encode()) == "event"
    assert bus.apply("cell/else", b"{}") == "ignored"
    assert bus.apply("cell/status", b"{nope") == "problem"
    assert bus.status is not None, "a bad document leaves the last good one"
    assert bus.apply("cell/status", json.dumps({"schema": "cell.status/2"}).encode()) == "problem"
    assert bus.apply("cell/check/drift", b"") == "check" and "drift" not in bus.checks
    assert bus.apply("cell/status", b"") == "status" and bus.status is None


@aio
async def test_inbox_coalesces_retained_and_keeps_every_event() -> None:
    got: list[tuple[list[tuple[str, bytes]], object]] = []
    done = asyncio.Event()

    def deliver(batch: list[tuple[str, bytes]], link: object) -> None:
        got.append((batch, link))
        if any(t == "cell/event" and p == b"e3" for t, p in batch):
            done.set()

    inbox = Inbox(asyncio.get_running_loop(), deliver)
    # What a source delivers before the loop next looks is one batch.
    inbox.link(None)
    for i in range(100):
        inbox.message("cell/status", f"s{i}".encode())
    for i in range(4):
        inbox.message("cell/event", f"e{i}".encode())
    inbox.message("cell/availability", b"a")
    await asyncio.wait_for(done.wait(), 5)
    batches = [b for b, _ in got]
    statuses = [p for b in batches for t, p in b if t == "cell/status"]
    events = [p for b in batches for t, p in b if t == "cell/event"]
    assert statuses == [b"s99"], "a retained topic is judged by its newest document"
    assert events == [b"e0", b"e1", b"e2", b"e3"]
    assert got[0][1] == (None,)


@aio
async def test_file_source_replays_then_follows(tmp_path: Path) -> None:
    path = tmp_path / "bus.jsonl"
    path.write_text(json.dumps({"topic": "cell/status", "payload": {"a": 1}}) + "\nnot json\n")
    seen: list[tuple[str, bytes]] = []
    links: list[str | None] = []

    class Sink:
        def message(self, topic: str, payload: bytes) -> None:
            seen.append((topic, payload))

        def link(self, error: str | None) -> None:
            links.append(error)

    task = asyncio.create_task(FileSource(str(path), poll=0.02).run(Sink()))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if seen:
            break
    assert seen == [("cell/status", b'{"a": 1}')] and links == [None]
    with path.open("a") as fh:
        fh.write(json.dumps({"topic": "cell/availability", "payload": None}) + "\n")
    for _ in range(100):
        await asyncio.sleep(0.02)
        if len(seen) == 2:
            break
    assert seen[1] == ("cell/availability", b"")
    task.cancel()
    missing = FileSource(str(tmp_path / "none"), follow=False)
    await missing.run(Sink())
    assert links[-1] is not None and "No such file" in links[-1]

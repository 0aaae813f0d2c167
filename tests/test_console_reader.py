"""The console's bus reader, a process of its own: its frames survive any split, a reader that
dies is said on the banner and started again, and none outlives the console."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.app import make_app
from console.busreader import DOWN, MESSAGE, UP, Frames, frame
from console.config import BrokerConfig, ConsoleConfig
from consolekit import Broker, aio, status_doc, wait_for


@pytest.fixture
def broker() -> Iterator[Broker]:
    with Broker() as b:
        yield b


def children(pid: int) -> list[int]:
    """The live (not zombie) child processes of `pid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def readers() -> list[int]:
    found = []
    for pid in children(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"console.busreader" in cmd:
            found.append(pid)
    return found


def test_frames_survive_any_split() -> None:
    stream = (
        frame(UP)
        + frame(MESSAGE, "cell/status", b'{"verdict": "sovereign"}')
        + frame(MESSAGE, "cell/event", b"")
        + frame(MESSAGE, "cell/check/dns ✓", bytes(range(256)))
        + frame(DOWN, payload=b"broker gone")
    )
    whole = Frames().feed(stream)
    assert [(k, t) for k, t, _ in whole] == [
        (UP, ""),
        (MESSAGE, "cell/status"),
        (MESSAGE, "cell/event"),
        (MESSAGE, "cell/check/dns ✓"),
        (DOWN, ""),
    ]
    assert whole[3][2] == bytes(range(256)) and whole[4][2] == b"broker gone"
    for cut in range(1, len(stream)):
        frames = Frames()
        assert frames.feed(stream[:cut]) + frames.feed(stream[cut:]) == whole, cut
    one_byte = Frames()
    assert [f for b in stream for f in one_byte.feed(bytes([b]))] == whole


@aio
async def test_a_killed_reader_is_said_then_started_again(broker: Broker) -> None:
    broker.publish("cell/status", status_doc(time.time()))
    app = make_app(ConsoleConfig(broker=BrokerConfig("127.0.0.1", broker.port)))
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: "◆ DATA · SOVEREIGN ◆" in app.screen_text())
        (reader,) = readers()
        assert reader != os.getpid(), "the bus is read by a process of its own"
        os.kill(reader, signal.SIGKILL)
        await wait_for(pilot, lambda: "the bus reader stopped" in app.screen_text())
        assert "? DATA · UNKNOWN ?" in app.screen_text(), "a console that cannot hear is unsure"
        await wait_for(pilot, lambda: "◆ DATA · SOVEREIGN ◆" in app.screen_text())
        (again,) = readers()
        assert again != reader
    deadline = time.monotonic() + 5
    while readers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert readers() == [], "no bus reader outlives the console"


def test_a_reader_whose_console_is_gone_exits(broker: Broker) -> None:
    """The console killed outright (no clean-up at all): its reader sees stdin close, and ends."""
    import subprocess
    import sys

    from console.busreader import orders

    child = subprocess.Popen(
        [sys.executable, "-m", "console.busreader"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(orders(BrokerConfig("127.0.0.1", broker.port), "cell/#", "test-reader"))
    child.stdin.flush()
    up = Frames().feed(child.stdout.read(9))
    assert up == [(UP, "", b"")], "it connected and said so"
    child.stdin.close()  # what the kernel does when the console dies
    assert child.wait(timeout=5) == 0
    child.stdout.close()

"""The fleet TUI: driven by Pilot on a model, and as a person would, in tmux against a real
mosquitto (banner, rows worst first, `/` filter, Enter opens the site's document)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cell.fleet.model import FleetModel
from fleetdocs import payload, status
from test_fleet_broker import publish, start_broker

CELL = [sys.executable, "-m", "cell.cli"]


def sample() -> FleetModel:
    m = FleetModel()
    docs = {
        "good-1": status("good-1"),
        "good-2": status("good-2"),
        "bad-1": status("bad-1", failed="segregation"),
    }
    for site, doc in docs.items():
        m.ingest(f"sites/{site}/cell/status", payload(doc))
        m.ingest(f"sites/{site}/cell/bridge", b"1")
    return m


def test_pilot_rows_filter_and_document() -> None:
    from textual.widgets import DataTable, Static

    from console.fleet.app import DocScreen, ModelSource, make_app

    app = make_app(ModelSource(sample()), every=0.2)

    async def drive() -> None:
        async with app.run_test(size=(140, 30)) as pilot:
            table = app.query_one(DataTable)
            assert str(app.query_one("#banner", Static).render()) == "▲ FLEET · 1 AT RISK ▲"
            assert [str(k.value) for k in table.rows] == ["bad-1", "good-1", "good-2"]
            await pilot.press("slash", *"good")
            await pilot.pause()
            assert [str(k.value) for k in table.rows] == ["good-1", "good-2"]
            await pilot.press("enter", "escape")  # leave the box, clear the filter
            await pilot.pause()
            assert table.row_count == 3
            assert table.cursor_row == 1  # the row the cursor was on is kept: good-1
            table.move_cursor(row=0)
            await pilot.press("enter")  # the first row: the worst site
            await pilot.pause()
            assert isinstance(app.screen, DocScreen) and app.screen.site == "bad-1"
            text = str(app.screen.query_one("#doc", Static).render())
            assert '"verdict": "at_risk"' in text and '"segregation: segregation broken"' in text
            await pilot.press("escape")
            assert not isinstance(app.screen, DocScreen)

    asyncio.run(drive())


def test_a_refresh_while_the_app_shuts_down_finds_its_widgets() -> None:
    # The refresh timer can fire once the screen's children are gone (CI saw it: NoMatches).
    from console.fleet.app import ModelSource, make_app

    app = make_app(ModelSource(sample()), every=60)

    async def drive() -> None:
        async with app.run_test(size=(100, 20)):
            pass
        app.refresh_rows()

    asyncio.run(drive())
    assert str(app._banner.render()) == "▲ FLEET · 1 AT RISK ▲"


def test_the_command_line_does_not_load_textual() -> None:
    code = "import sys; from cell.cli.main import build_parser; build_parser(); print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture
def tmux() -> Iterator[str]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    name = f"fleet-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def screen(name: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True, check=True
    ).stdout


def keys(name: str, *keys: str) -> None:
    subprocess.run(["tmux", "send-keys", "-t", name, *keys], check=True)


def wait_screen(name: str, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while text not in (got := screen(name)):
        assert time.monotonic() < deadline, f"never saw {text!r} on the screen:\n{got}"
        time.sleep(0.2)
    return got


def test_in_tmux_as_a_person(tmp_path: Path, tmux: str) -> None:
    proc, port = start_broker(tmp_path)
    try:
        publish(port, [(f"sites/{s}/cell/status", payload(status(s))) for s in ("ok-a", "ok-b")])
        publish(port, [("sites/risk-c/cell/status", payload(status("risk-c", failed="bridge")))])
        argv = " ".join([*CELL, "fleet", "--hub", f"127.0.0.1:{port}"])
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", tmux, "-x", "160", "-y", "30", argv], check=True
        )
        wait_screen(tmux, "▲ FLEET · 1 AT RISK ▲")
        got = wait_screen(tmux, "bridge: bridge broken")  # the table's columns grow as it fills
        lines = [ln for ln in got.splitlines() if any(s in ln for s in ("ok-a", "ok-b", "risk-c"))]
        assert (
            "risk-c" in lines[0] and "AT_RISK" in lines[0] and "bridge: bridge broken" in lines[0]
        )
        # A new site appears live; the banner follows.
        publish(port, [("sites/risk-d/cell/status", payload(status("risk-d", failed="drift")))])
        wait_screen(tmux, "▲ FLEET · 2 AT RISK ▲")
        keys(tmux, "/")  # a person's pace: the '/' moves the focus to the filter box first
        time.sleep(0.5)
        keys(tmux, "ok-b", "Enter")
        time.sleep(1)
        got = screen(tmux)
        assert "ok-b" in got and "risk-c" not in got and "ok-a" not in got
        keys(tmux, "Enter")
        got = wait_screen(tmux, "latest cell/status at the hub")
        assert '"site": "ok-b"' in got
        keys(tmux, "Escape")
        proc.terminate()  # the hub goes away: the screen says so
        proc.wait(timeout=5)
        wait_screen(tmux, "hub connection lost: reconnecting")
        keys(tmux, "q")
    finally:
        proc.terminate()
        proc.wait(timeout=5)

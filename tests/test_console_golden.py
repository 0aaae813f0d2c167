"""Golden text of the console with frozen data: `cell console --once` output, and the screen
itself at 80×24 and 160×48 (and under NO_COLOR, where the words and glyphs must stay the same).

    tests/golden/console/NAME.txt
    tests/golden/console/site/      the policy they show (a frozen copy of the example site)

A change fails with a unified diff; review it, then regenerate on purpose:
`pytest tests/test_console_golden.py --update-golden` (or `make golden`), and commit the diff.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest

from console.app import make_app
from console.config import ConsoleConfig
from console.model import BusState
from console.records import read_records
from console.sources import FileSource
from console.text import render_text
from console.view import View
from consolekit import FROZEN, aio, at_risk, availability, make_state, record_bus, status_doc
from policies.clock import iso

GOLDEN = Path(__file__).resolve().parent / "golden" / "console"


def bus_messages(verdict: str) -> list[tuple[str, dict[str, Any]]]:
    status = at_risk(FROZEN - 5) if verdict == "at_risk" else status_doc(FROZEN - 5)
    drift = {
        "ok": verdict != "at_risk",
        "ts": iso(FROZEN - 5),
        "detail": status["checks"]["drift"]["detail"],
        "fresh_for": 300,
        "since": iso(FROZEN - 1700),
        "evidence": ["+ ip saddr 10.10.0.11 accept (by nft, pid 4242)"],
    }
    event = {
        "schema": "cell.event/1",
        "kind": "new_name",
        "ts": iso(FROZEN - 400),
        "text": "a client of VLAN cameras phoned a new name",
        "data": {"vlan": "cameras"},
    }
    return [
        ("cell/availability", availability("online", FROZEN - 86_400)),
        ("cell/status", status),
        ("cell/check/drift", drift),
        ("cell/event", event),
    ]


@pytest.fixture
def cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A frozen Cell in the current directory: `state/` and `bus-*.jsonl` (relative paths,
    so nothing of the temporary directory's name reaches the text)."""
    monkeypatch.chdir(tmp_path)
    make_state(Path("state"), now=FROZEN, site=GOLDEN / "site")
    for verdict in ("sovereign", "at_risk"):
        record_bus(Path(f"bus-{verdict}.jsonl"), bus_messages(verdict))
    return tmp_path


def compare(name: str, text: str, request: pytest.FixtureRequest) -> None:
    path = GOLDEN / name
    if request.config.getoption("--update-golden"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} missing: run pytest {__file__} --update-golden"
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), text.splitlines(True), f"golden/{name}", "now"
            )
        )
        pytest.fail(f"console text changed:\n{diff}")


def frozen_view(verdict: str) -> View:
    bus = BusState(where=f"file bus-{verdict}.jsonl", link=None)
    for topic, doc in bus_messages(verdict):
        import json

        bus.apply(topic, json.dumps(doc).encode())
    return View(bus, read_records("state", None, FROZEN), FROZEN)


@pytest.mark.parametrize("verdict", ["sovereign", "at_risk"])
def test_once_text(cell: Path, verdict: str, request: pytest.FixtureRequest) -> None:
    compare(f"once-{verdict}.txt", render_text(frozen_view(verdict), width=100), request)


PANEL_NAMES = ("SYNOPSIS", "MQTT", "CAMS", "GITOPS", "HEALTH")
SCREENS = [
    ("synopsis", "1", (80, 24), "sovereign"),
    ("synopsis", "1", (160, 48), "sovereign"),
    ("synopsis", "1", (160, 48), "at_risk"),
    ("mqtt", "2", (160, 48), "sovereign"),
    ("cams", "3", (160, 48), "sovereign"),
    ("gitops", "4", (160, 48), "sovereign"),
    ("health", "5", (160, 48), "at_risk"),
]


async def screen(verdict: str, key: str, size: tuple[int, int]) -> str:
    config = ConsoleConfig(state_dir="state")
    source = FileSource(f"bus-{verdict}.jsonl", follow=False)
    app = make_app(config, source, clock=lambda: FROZEN)
    async with app.run_test(size=size) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if app.records is not None and app.bus.status is not None:
                break
        await pilot.press(key)
        title = f"{key} {dict(zip('12345', PANEL_NAMES, strict=True))[key]} ·"
        for _ in range(100):
            await pilot.pause(0.05)
            if title in app.screen_text():
                break
        await pilot.pause(0.2)
        return app.screen_text() + "\n"


@pytest.mark.parametrize(("panel", "key", "size", "verdict"), SCREENS)
@aio
async def test_screen(
    cell: Path,
    panel: str,
    key: str,
    size: tuple[int, int],
    verdict: str,
    request: pytest.FixtureRequest,
) -> None:
    text = await screen(verdict, key, size)
    compare(f"screen-{panel}-{size[0]}x{size[1]}-{verdict}.txt", text, request)


@aio
async def test_screen_no_color(
    cell: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    text = await screen("at_risk", "1", (80, 24))
    compare("screen-synopsis-80x24-at_risk-no-color.txt", text, request)
    assert text.splitlines()[-1].endswith("▲ DATA · AT RISK ▲")

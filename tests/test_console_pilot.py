"""The console against a real MQTT bus (an in-process amqtt broker, no root): what the screen
says after each document the daemon would publish."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.app import make_app
from console.config import BrokerConfig, ConsoleConfig
from consolekit import (
    LEAK,
    Broker,
    aio,
    at_risk,
    availability,
    env,
    make_state,
    status_doc,
    wait_for,
)


@pytest.fixture
def broker() -> Iterator[Broker]:
    with Broker() as b:
        yield b


def config(broker: Broker, state: Path | None = None) -> ConsoleConfig:
    return ConsoleConfig(
        broker=BrokerConfig("127.0.0.1", broker.port), state_dir=str(state) if state else None
    )


def has(app: object, text: str) -> bool:
    return text in app.screen_text()  # type: ignore[attr-defined]


@aio
async def test_banner_follows_the_bus(broker: Broker) -> None:
    app = make_app(config(broker))
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: has(app, "? DATA · UNKNOWN ?") and has(app, "no status yet"))
        broker.publish("cell/availability", availability("online", time.time()))
        broker.publish("cell/status", status_doc(time.time()))
        await wait_for(pilot, lambda: has(app, "◆ DATA · SOVEREIGN ◆"))
        assert not has(app, "AT RISK")
        broker.publish("cell/status", at_risk(time.time()))
        await wait_for(pilot, lambda: has(app, "▲ DATA · AT RISK ▲"))
        assert has(app, LEAK)
        assert not has(app, "SOVEREIGN ◆")
        broker.publish("cell/status", status_doc(time.time()))
        await wait_for(pilot, lambda: has(app, "◆ DATA · SOVEREIGN ◆"))
        broker.publish("cell/availability", availability("offline", time.time()))
        await wait_for(pilot, lambda: has(app, "? DATA · UNKNOWN ?"))
        assert has(app, "daemon offline since")


@aio
async def test_a_status_goes_stale_with_no_message_at_all(broker: Broker) -> None:
    offset = [0.0]
    app = make_app(config(broker), clock=lambda: time.time() + offset[0])
    async with app.run_test(size=(100, 24)) as pilot:
        broker.publish("cell/status", status_doc(time.time(), fresh_for=60))
        await wait_for(pilot, lambda: has(app, "◆ DATA · SOVEREIGN ◆"))
        offset[0] = 61.0  # a minute passes and the daemon says nothing
        await wait_for(pilot, lambda: has(app, "? DATA · UNKNOWN ?"), timeout=2)
        assert has(app, "status stale: last at")


@aio
async def test_an_old_status_is_never_shown_as_sovereign(broker: Broker) -> None:
    broker.publish("cell/status", status_doc(time.time() - 3600))
    app = make_app(config(broker))
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_for(pilot, lambda: has(app, "status stale"))
        assert not has(app, "SOVEREIGN")


@aio
async def test_no_broker_is_unknown_not_connected() -> None:
    from consolekit import free_port

    app = make_app(ConsoleConfig(broker=BrokerConfig("127.0.0.1", free_port())))
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_for(pilot, lambda: has(app, "not connected to the status bus"))
        assert has(app, "? DATA · UNKNOWN ?")


@pytest.mark.parametrize("size", [(20, 5), (32, 8), (60, 12), (200, 60)])
@aio
async def test_the_banner_survives_every_terminal_size(
    broker: Broker, size: tuple[int, int]
) -> None:
    broker.publish("cell/status", at_risk(time.time()))
    app = make_app(config(broker))
    async with app.run_test(size=size) as pilot:
        head = "▲ DATA · AT RISK ▲" if size[0] >= 18 else "▲ AT RISK ▲"
        await wait_for(pilot, lambda: has(app, head))
        last = app.screen_text().splitlines()[-1]
        assert last.rstrip().endswith(head), last
        for key in "2345?":
            await pilot.press(key)
            await pilot.pause(0.05)
            assert app.screen_text().splitlines()[-1].rstrip().endswith(head), key


@aio
async def test_keys_switch_panels_and_evidence_is_one_key_away(
    broker: Broker, tmp_path: Path
) -> None:
    state = make_state(tmp_path / "state", now=time.time())
    broker.publish("cell/status", at_risk(time.time()))
    broker.publish(
        "cell/check/drift",
        {
            "ok": False,
            "ts": status_doc(time.time())["ts"],
            "detail": "rule added to chain forward",
            "fresh_for": 60,
            "evidence": ["+ ip saddr 10.10.0.11 accept (by nft, pid 4242)"],
        },
    )
    app = make_app(config(broker, state))
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: has(app, "▲ DATA · AT RISK ▲"))
        titles = {
            "1": "1 SYNOPSIS · the site at a glance",
            "2": "2 MQTT · bridge policy, link, what crossed",
            "3": "3 CAMS · phone-home attempts and drops today",
            "4": "4 GITOPS · who changed what, when",
            "5": "5 HEALTH · segregation, probes, capture",
        }
        for key, title in titles.items():
            await pilot.press(key)
            await wait_for(pilot, lambda t=title: has(app, t))  # type: ignore[misc]
        await pilot.press("2")
        await wait_for(pilot, lambda: has(app, "↑hub") and has(app, "✗ never bridged"))
        assert re.search(r"site/\+/snapshots/#\s+mqtt\.yaml:\d+", app.screen_text())
        await pilot.press("3")
        await wait_for(pilot, lambda: has(app, "DNS BLK 847 calls today"))
        assert has(app, "cameras → wan: 9 dropped today")
        await pilot.press("5")
        await wait_for(pilot, lambda: has(app, "VLAN segregation · DENIED ✓"))
        await pilot.press("1")
        await wait_for(pilot, lambda: has(app, "✗  drift"))
        # the drift check row: move to it and open what backs it
        panel = app.shown_panel()
        row = next(i for i, r in enumerate(panel.rows) if r.title == "check drift")
        for _ in range(row):
            await pilot.press("down")
        await pilot.press("enter")
        await wait_for(pilot, lambda: has(app, "evidence · check drift"))
        assert has(app, "+ ip saddr 10.10.0.11 accept (by nft, pid 4242)")
        assert has(app, "▲ DATA · AT RISK ▲"), "the banner stays on the evidence screen"
        await pilot.press("escape")
        await wait_for(pilot, lambda: has(app, "1 SYNOPSIS"))
        await pilot.press("4")
        await wait_for(pilot, lambda: has(app, "REFUSED"))
        await pilot.press("slash")
        await pilot.press(*"mallory")
        await wait_for(pilot, lambda: not has(app, "enroll"))
        assert has(app, "refusal")
        await pilot.press("escape")
        await wait_for(pilot, lambda: has(app, "enroll"))
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: has(app, "help · esc back"))
        await pilot.press("escape")
        await pilot.press("q")
    assert app.return_code in (0, None)


def tinted(app: object) -> set[tuple[int, int, int]]:
    """Every colour on the screen that is not a grey (filters, NO_COLOR's included, applied)."""
    found = set()
    for strips in app.screen._compositor.render_update(full=True).strips:  # type: ignore[attr-defined]
        for strip in strips:
            for seg in strip:
                for c in (seg.style.color, seg.style.bgcolor) if seg.style else ():
                    if c is not None and c.triplet is not None and len(set(c.triplet)) > 1:
                        found.add(tuple(c.triplet))
    return found


@pytest.mark.parametrize("no_color", [True, False])
@aio
async def test_no_color_keeps_the_banner_distinct(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, no_color: bool
) -> None:
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    broker.publish("cell/status", at_risk(time.time()))
    app = make_app(config(broker))
    assert app.no_color is no_color
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_for(pilot, lambda: has(app, "▲ DATA · AT RISK ▲"))
        colours = tinted(app)
        assert has(app, LEAK)
    if no_color:
        assert not colours, f"colour under NO_COLOR: {sorted(colours)[:5]}"
    else:
        assert colours, "the coloured console should have colour (else this test proves nothing)"


@aio
async def test_a_document_that_does_not_parse_is_not_shown(broker: Broker) -> None:
    broker.publish("cell/status", status_doc(time.time()))
    app = make_app(config(broker))
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_for(pilot, lambda: has(app, "◆ DATA · SOVEREIGN ◆"))
        broker.publish("cell/status", b'{"schema": "cell.status/1", "verdict": "sovereign"}')
        await wait_for(pilot, lambda: bool(app.bus.problems))
        assert "cell/status: not a document this console reads" in app.bus.problems[0]
        # the last good document stays, judged by its own deadline
        assert has(app, "◆ DATA · SOVEREIGN ◆")
        broker.publish("cell/status", b"")  # a cleared retained status: the document is gone
        await wait_for(pilot, lambda: has(app, "no status yet"))


def test_env_helper_restores() -> None:
    with env(CELL_X_TEST="1"):
        import os

        assert os.environ["CELL_X_TEST"] == "1"
    assert "CELL_X_TEST" not in __import__("os").environ


@aio
async def test_the_feed_goes_on_under_the_evidence_screen(broker: Broker) -> None:
    broker.publish("cell/status", status_doc(time.time()))
    app = make_app(config(broker))
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: has(app, "◆ DATA · SOVEREIGN ◆"))
        panel = app.shown_panel()
        row = next(i for i, r in enumerate(panel.rows) if r.title == "check trust")
        for _ in range(row):
            await pilot.press("down")
        await pilot.press("enter")
        await wait_for(pilot, lambda: has(app, "evidence · check trust"))
        broker.publish("cell/status", at_risk(time.time()))
        await wait_for(pilot, lambda: has(app, "▲ DATA · AT RISK ▲"))
        assert has(app, "evidence · check trust"), "still on the evidence, banner updated"
        await pilot.press("question_mark")  # help over the evidence
        await wait_for(pilot, lambda: has(app, "help · esc back") and has(app, "AT RISK"))
        await pilot.press("slash")  # the filter belongs to the panels: back to them
        await wait_for(pilot, lambda: has(app, "1 SYNOPSIS ·"))
        await pilot.press(*"drift")
        await wait_for(pilot, lambda: not has(app, "segregation holds"))
        assert has(app, "drift")
        await pilot.press("escape")
        await pilot.press("3")
        await wait_for(pilot, lambda: has(app, "3 CAMS ·"))


@aio
async def test_unreadable_records_do_not_end_the_console(broker: Broker, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "journal.json").write_text("{not json")
    (state / "cell.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    broker.publish("cell/status", status_doc(time.time()))
    app = make_app(config(broker, state))
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: has(app, "◆ DATA · SOVEREIGN ◆"))
        await pilot.press("4")
        await wait_for(pilot, lambda: has(app, "4 GITOPS ·"))
        await pilot.press("1")
        await wait_for(pilot, lambda: has(app, "unreadable journal") or has(app, "cannot read"))
        assert has(app, "◆ DATA · SOVEREIGN ◆")

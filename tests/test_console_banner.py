"""The banner never lies: sovereign only while the daemon says so, freshly, and is online.
Pure: `banner_state` over documents and times, `banner_line` over widths."""

from __future__ import annotations

import pytest

from cell.status.document import Availability, StatusDoc
from console.banner import HEADS, BannerState, banner_line, banner_state
from consolekit import LEAK, at_risk, availability, status_doc

NOW = 1_796_000_000.0


def doc(**kw: object) -> StatusDoc:
    return StatusDoc.model_validate(status_doc(NOW, **kw))  # type: ignore[arg-type]


def online() -> Availability:
    return Availability.model_validate(availability("online", NOW - 100))


def test_sovereign_only_when_fresh_and_online() -> None:
    assert banner_state(doc(), online(), NOW + 1) == BannerState("sovereign", "")
    assert banner_state(doc(), None, NOW + 59).kind == "sovereign"


def test_stale_status_is_unknown_not_its_last_verdict() -> None:
    state = banner_state(doc(), online(), NOW + 61)
    assert state.kind == "unknown"
    assert state.reason.startswith("status stale: last at 00:53:20Z")
    assert state.text.startswith("? DATA · UNKNOWN ?  status stale")


def test_at_risk_shows_the_first_reason() -> None:
    status = StatusDoc.model_validate(at_risk(NOW))
    state = banner_state(status, online(), NOW)
    assert state == BannerState("at_risk", LEAK)
    assert state.text == f"▲ DATA · AT RISK ▲  {LEAK}"


def test_daemon_offline_is_unknown_even_with_a_fresh_sovereign_status() -> None:
    offline = Availability.model_validate(availability("offline", NOW))
    state = banner_state(doc(), offline, NOW + 1)
    assert state.kind == "unknown"
    assert state.reason.startswith("daemon offline since 00:53:20Z")


def test_no_status_yet() -> None:
    assert banner_state(None, None, NOW).reason.startswith("no status yet")
    offline = Availability.model_validate(availability("offline", NOW))
    assert banner_state(None, offline, NOW).reason.startswith("daemon offline, no status yet")


def test_a_stale_check_in_a_fresh_sovereign_status_is_not_believed() -> None:
    status = doc()
    late = status.model_copy(
        update={
            "checks": {
                **status.checks,
                "drift": status.checks["drift"].model_copy(update={"fresh_for": 5}),
            }
        }
    )
    state = banner_state(late, online(), NOW + 10)
    assert state.kind == "unknown" and state.reason.startswith("drift: stale since")


def test_unknown_verdict_and_no_checks() -> None:
    assert banner_state(
        doc(verdict="unknown", reasons=["capture: no result yet"]), None, NOW
    ) == BannerState("unknown", "capture: no result yet")
    empty = doc().model_copy(update={"checks": {}})
    assert banner_state(empty, None, NOW).kind == "unknown"


def test_not_connected_to_the_bus_is_unknown() -> None:
    state = banner_state(doc(), online(), NOW, link="127.0.0.1:1883: connection refused")
    assert state.kind == "unknown" and "not connected to the status bus" in state.reason


def test_the_three_heads_differ_in_words_and_glyphs() -> None:
    heads = [h for kind in HEADS.values() for h in kind]
    assert len(set(heads)) == len(heads)
    for a, b in (("sovereign", "at_risk"), ("sovereign", "unknown"), ("at_risk", "unknown")):
        for ha, hb in zip(HEADS[a], HEADS[b], strict=True):  # type: ignore[index]
            assert ha[0] != hb[0], "glyphs alone must tell them apart"


@pytest.mark.parametrize("width", [200, 80, 40, 24, 19, 13, 8, 5, 3, 1])
@pytest.mark.parametrize("kind", ["sovereign", "at_risk", "unknown"])
def test_every_width_gets_a_banner(width: int, kind: str) -> None:
    state = BannerState(kind, "" if kind == "sovereign" else "drift: " + "x" * 300)  # type: ignore[arg-type]
    heads = HEADS[kind]  # type: ignore[index]
    line = banner_line(state, width)
    assert 0 < len(line) <= width
    if width >= len(heads[-1]):
        assert any(line.endswith(h) for h in heads), line
    else:
        assert line == heads[-1][:width] and line[0] == heads[0][0]


def test_the_reason_fits_before_the_head() -> None:
    line = banner_line(BannerState("at_risk", LEAK), 60)
    assert (
        line.endswith("▲ DATA · AT RISK ▲") and len(line) == 60 and line.startswith("drift: rule")
    )
    assert "…" in line


def test_connecting_is_not_a_lost_connection() -> None:
    from console.model import CONNECTING

    state = banner_state(doc(), online(), NOW, link=CONNECTING)
    assert state == BannerState("unknown", "connecting to the status bus…")


def test_banner_and_row_styles_parse() -> None:
    """Textual drops a style it cannot parse (the banner went uncoloured under Rich's colour
    names) and pays a spelling suggestion for it on every paint: each must parse."""
    from textual.markup import parse_style

    from console.banner import STYLES as BANNER
    from console.panel import STYLES as ROWS

    for style in [*BANNER.values(), *ROWS.values()]:
        if style:
            parse_style(style)  # raises on a colour Textual does not know
    backgrounds = {parse_style(s).background for s in BANNER.values()}
    assert len(backgrounds) == 3, "each banner kind has its own background"

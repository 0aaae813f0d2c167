"""The sovereignty banner: what the whole console is for, on every screen and at every size.

`banner_state` is pure: (status, availability, now) -> what the banner says. It says
`◆ DATA · SOVEREIGN ◆` only while the daemon's verdict is `sovereign`, its status document is
fresh, no check in it has passed its deadline, and the daemon is not known to be offline.
Otherwise `▲ DATA · AT RISK ▲` with the first reason, or `? DATA · UNKNOWN ?` with why. Words and
glyphs carry the meaning, so it reads the same without colour (NO_COLOR). The fleet view reuses
the widget and the function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from rich.text import Text
from textual.widget import Widget

from cell.status.document import Availability, StatusDoc
from cell.status.verdict import verdict
from console.model import CONNECTING
from policies.clock import parse_iso

BannerKind = Literal["sovereign", "at_risk", "unknown"]

HEADS: Final[dict[BannerKind, tuple[str, ...]]] = {
    "sovereign": ("◆ DATA · SOVEREIGN ◆", "◆ SOVEREIGN ◆", "◆ SOV"),
    "at_risk": ("▲ DATA · AT RISK ▲", "▲ AT RISK ▲", "▲ RISK"),
    "unknown": ("? DATA · UNKNOWN ?", "? UNKNOWN ?", "? UNK"),
}
"""Each kind's head, longest first: a narrow terminal gets a shorter one, never none."""


@dataclass(frozen=True)
class BannerState:
    kind: BannerKind
    reason: str
    """Why (empty when sovereign): the first reason, or why nothing can be said."""

    @property
    def head(self) -> str:
        return HEADS[self.kind][0]

    @property
    def text(self) -> str:
        """The banner as one line: head, then reason."""
        return f"{self.head}  {self.reason}" if self.reason else self.head


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    return f"{s // 3600}h ago"


def _clock(ts: str) -> str:
    """`2026-12-02T03:10:00.000Z` -> `03:10:00Z` (a time of day is what an operator compares)."""
    return ts[11:19] + "Z" if len(ts) >= 19 else ts


def banner_state(
    status: StatusDoc | None,
    availability: Availability | None,
    now: float,
    *,
    link: str | None = None,
) -> BannerState:
    """What the banner says. `link`: why the reader is not connected to the bus (None: it is)."""
    if link == CONNECTING:
        return BannerState("unknown", "connecting to the status bus…")
    if link is not None:
        return BannerState("unknown", f"not connected to the status bus: {link}")
    offline = availability is not None and availability.state == "offline"
    if status is None:
        why = "daemon offline, no status yet" if offline else "no status yet"
        return BannerState("unknown", why + " (is `cell run` running?)")
    if offline and availability is not None:
        last = status.reasons[0] if status.reasons else status.verdict
        return BannerState(
            "unknown", f"daemon offline since {_clock(availability.ts)} (last verdict: {last})"
        )
    made = parse_iso(status.ts).timestamp()
    if now > made + status.fresh_for:
        return BannerState(
            "unknown",
            f"status stale: last at {_clock(status.ts)}, {_ago(now - made)} "
            f"(fresh for {status.fresh_for:.0f}s)",
        )
    if status.verdict != "sovereign":
        kind: BannerKind = "at_risk" if status.verdict == "at_risk" else "unknown"
        return BannerState(kind, status.reasons[0] if status.reasons else status.verdict)
    # A fresh sovereign document whose checks' own deadlines have passed is not believed either.
    late = verdict(status.checks, now, required=status.checks)
    if not status.checks or late.verdict != "sovereign":
        return BannerState("unknown", late.reasons[0] if late.reasons else "no checks in status")
    return BannerState("sovereign", "")


def banner_line(state: BannerState, width: int) -> str:
    """The banner fitted to `width` cells: the head at the right end, the reason before it, cut
    with `…`; a narrow width drops the reason first, then shortens the head."""
    for head in HEADS[state.kind]:
        if len(head) <= width:
            break
    else:
        return HEADS[state.kind][-1][: max(width, 1)]
    room = width - len(head) - 2
    if not state.reason or room < 8:
        return head
    reason = state.reason if len(state.reason) <= room else state.reason[: room - 1] + "…"
    return f"{reason}  {head}"


STYLES: Final[dict[BannerKind, str]] = {
    "sovereign": "bold white on #005f00",
    "at_risk": "bold white on #d70000",
    "unknown": "bold italic black on #d78700",
}
"""Each kind's look (dark green, red, orange). Set when drawn, not by CSS classes: a banner that
changes many times a second must not make Textual restyle the screen each time. NO_COLOR greys
them out (Textual's filter); the words and glyphs stay. Textual's own style parser reads these
(a Rich colour name it does not know, such as `dark_green`, is silently dropped, and costs a
spelling suggestion on every paint): `test_banner_and_row_styles_parse` holds them to it."""


class Banner(Widget):
    """The banner widget: docked at the bottom, its head in the bottom-right corner. Set its
    state with `show` (attributes down); it is fitted to its width each time it is drawn."""

    DEFAULT_CSS = """
    Banner { dock: bottom; height: 1; width: 100%; }
    """

    def __init__(self, state: BannerState | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._state = state or BannerState("unknown", "no status yet")

    @property
    def state(self) -> BannerState:
        return self._state

    def show(self, state: BannerState) -> None:
        if state != self._state:
            self._state = state
            self.refresh()

    def render(self) -> Text:
        width = max(self.size.width, 1)
        line = banner_line(self._state, width).rjust(width)
        return Text(line, style=STYLES[self._state.kind], no_wrap=True, overflow="crop")

"""`?`: the keys, and what each check means."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from cell.status.checks import CHECK_MEANS
from console.banner import Banner, BannerState

KEYS = """\
1-5     panels: SYNOPSIS MQTT CAMS GITOPS HEALTH
↑ ↓     move between rows        enter   what backs this row (evidence)
/       filter the rows          esc     back (close evidence, help, clear the filter)
?       this help                q       quit

The banner at the bottom right is the daemon's verdict, never the console's:
  ◆ DATA · SOVEREIGN ◆   every check ok and fresh, the status fresh, the daemon online
  ▲ DATA · AT RISK ▲     a check failed; its reason follows
  ? DATA · UNKNOWN ?     no status yet, a stale status or check, the daemon offline,
                         or this console is not connected to the bus
Marks: ✓ ok   ✗ failed   … stale   ? missing   ⏎ evidence behind the row

The console is read-only: it changes nothing on the Cell. The mouse is optional; to select
text with the terminal, hold Shift while dragging.

Checks:
"""


class HelpScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("question_mark", "app.pop_screen", "back"),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self, banner: BannerState) -> None:
        super().__init__()
        self._banner = banner

    def compose(self) -> ComposeResult:
        yield Static("help · esc back", classes="panel-title")
        checks = "\n".join(f"  {n:<12} {m}" for n, m in CHECK_MEANS.items())
        with VerticalScroll(classes="evidence"):
            yield Static(KEYS + checks, markup=False, classes="evidence-text")
        yield Banner(self._banner)

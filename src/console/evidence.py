"""What backs a mark, one key away: a screen over the panel with the evidence as text (mouse
selection works: it is plain text). `esc` goes back; the banner stays at the bottom."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from console.banner import Banner, BannerState


class EvidenceScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self, title: str, text: str, banner: BannerState) -> None:
        super().__init__()
        self.heading = title
        self.text = text
        self._banner = banner

    def compose(self) -> ComposeResult:
        yield Static(f"evidence · {self.heading} · esc back", classes="panel-title")
        with VerticalScroll(classes="evidence"):
            yield Static(Text(self.text), classes="evidence-text")
        yield Banner(self._banner)

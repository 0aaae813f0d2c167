"""The console app. `make_app` builds it for the CLI, the tests and the bench alike.

Data flows one way: the bus source runs in a worker and hands batches over (`Inbox`; the live
bus is read by a child process, `ReaderProcess`, so reading never waits on painting), which
the app applies to `BusState` in its loop; another thread worker reads the
Cell's records; the app hands a `View` down to the visible panel and the banner's state to
every banner on every screen. The banner is re-judged as soon as a batch arrives, and every
half second (a status goes stale with no message at all); panels repaint at most every
`PAINT` seconds, and then only the lines that changed.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import ContentSwitcher, Input, Static

from console.banner import Banner, BannerState
from console.config import ConsoleConfig
from console.content import PANELS
from console.evidence import EvidenceScreen
from console.help import HelpScreen
from console.inbox import Inbox
from console.model import CONNECTING, BusState
from console.panel import Panel
from console.records import Records, read_records
from console.sources import StatusSource, make_source
from console.text import view_banner
from console.view import View

PAINT = 0.25
TICK = 0.5
SETTLE = 1.0
"""Seconds after mounting when start-up's objects are frozen (`settle`)."""
SUBTITLES = {
    "SYNOPSIS": "the site at a glance",
    "MQTT": "bridge policy, link, what crossed",
    "CAMS": "phone-home attempts and drops today",
    "GITOPS": "who changed what, when",
    "HEALTH": "segregation, probes, capture",
}
REFRESH_ON = ("apply", "refusal", "rollback", "confirm", "drift", "probe_failed", "new_name")
"""Events after which the records are read again at once."""


def panel_id(name: str) -> str:
    return f"panel-{name.lower()}"


class CellConsole(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "cell console"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(str(i), f"panel({i})", name, show=False)
            for i, (name, _) in enumerate(PANELS, 1)
        ),
        Binding("question_mark", "help", "help"),
        Binding("slash", "filter", "filter"),
        Binding("escape", "clear", "back"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self,
        config: ConsoleConfig,
        source: StatusSource | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.config = config
        self.source = source
        self.clock = clock
        self.bus = BusState(
            where=source.where if source else "", link=None if source is None else CONNECTING
        )
        if source is None:
            self.bus.link = "no status bus given"
        self.records: Records | None = None
        self.needle = ""
        self.current = PANELS[0][0]
        self.banner_state: BannerState = view_banner(self.view())
        self._dirty = True
        self._inbox: Inbox | None = None
        self.on_status: Callable[[BusState], None] | None = None
        """A hook the bench sets: called after each status document is applied."""

    # --- composition ----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # The app keeps its own widgets by reference: a query would search whichever screen is
        # on top (evidence, help), and the feed goes on while one is.
        self._tab_bar = Static(self._tabs(), id="tabs")
        self._filter = Input(placeholder="filter rows (enter: keep, esc: clear)", id="filter")
        self._switcher = ContentSwitcher(initial=panel_id(PANELS[0][0]))
        self._panels = {
            name: Panel(i, name, SUBTITLES[name], rows, id=panel_id(name))
            for i, (name, rows) in enumerate(PANELS, 1)
        }
        yield self._tab_bar
        yield self._filter
        with self._switcher:
            yield from self._panels.values()
        yield Banner(self.banner_state, id="banner")

    def _tabs(self) -> str:
        tabs = " ".join(
            f"[{i} {name}]" if name == self.current else f" {i} {name} "
            for i, (name, _) in enumerate(PANELS, 1)
        )
        return f"{tabs}   ? help  / filter  q quit"

    def on_mount(self) -> None:
        self.set_timer(SETTLE, self.settle)
        self._filter.display = False
        if self.source is not None:
            self._inbox = Inbox(asyncio.get_running_loop(), self.deliver)
            self.listen()
        if self.config.state_dir:
            self.read()
            self.set_interval(self.config.refresh, self.read)
        self.set_interval(TICK, self.tick)
        self.set_interval(PAINT, self.paint)
        self.paint()
        self.shown_panel().focus_rows()

    def settle(self) -> None:
        """Once the first screen is up, freeze what start-up built (modules, styles, widgets;
        it lives as long as the console) out of the collector's way: a full collection then
        takes a few ms instead of stalling the feed for 0.1 s. (No collection first: that is
        the same stall once; the little cyclic garbage of start-up is kept instead.)"""
        gc.freeze()

    # --- data -------------------------------------------------------------------------------

    def view(self) -> View:
        return View(self.bus, self.records, self.clock())

    @work(exclusive=True, group="bus")
    async def listen(self) -> None:
        """The bus, into the `Inbox` (the live bus is read by a process of its own)."""
        assert self.source is not None and self._inbox is not None
        await self.source.run(self._inbox)

    def deliver(self, batch: list[tuple[str, bytes]], link: tuple[str | None] | None) -> None:
        """What the bus brought since the last look, in the app's loop: apply it all, then
        judge the banner once."""
        if link is not None:
            self.bus.link = link[0]
            self._dirty = True
        status = False
        for topic, payload in batch:
            kind = self.bus.apply(topic, payload)
            if kind == "problem":
                self.notify(self.bus.problems[0], severity="warning", timeout=6)
            elif (
                kind == "event" and self.bus.events[0].kind in REFRESH_ON and self.config.state_dir
            ):
                self.read()
            status = status or kind == "status"
            self._dirty = self._dirty or kind != "ignored"
        self.tick()
        if status and self.on_status is not None:
            self.on_status(self.bus)

    @work(thread=True, exclusive=True, group="records")
    def read(self) -> None:
        assert self.config.state_dir is not None
        try:
            records = read_records(self.config.state_dir, self.config.repo, self.clock())
        except Exception as e:  # a record the console cannot read must not end the console
            self.call_from_thread(
                self.notify, f"cannot read the Cell's records: {e}", severity="error", timeout=8
            )
            return
        self.call_from_thread(self._got_records, records)

    def _got_records(self, records: Records) -> None:
        self.records = records
        self._dirty = True
        self.paint()

    # --- painting ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Re-judge the banner now (a message came, or time passed) and show it everywhere."""
        state = view_banner(self.view())
        if state == self.banner_state:
            return
        self.banner_state = state
        for screen in self.screen_stack:
            for banner in screen.query(Banner):
                banner.show(state)

    def paint(self) -> None:
        if self._dirty:
            self._dirty = False
            self.shown_panel().show(self.view(), self.needle)

    def screen_text(self) -> str:
        """The screen as plain text, as a terminal shows it (tests, goldens, the bench)."""
        import io

        from rich.console import Console

        width, height = self.size
        console = Console(
            width=width,
            height=height,
            file=io.StringIO(),
            force_terminal=True,
            color_system=None,
            record=True,
            legacy_windows=False,
        )
        console.print(self.screen._compositor.render_update(full=True))
        return "\n".join(line.rstrip() for line in console.export_text().splitlines())

    def shown_panel(self) -> Panel:
        return self._panels[self.current]

    def _to_main(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()

    # --- actions ----------------------------------------------------------------------------

    def action_panel(self, key: int) -> None:
        self._to_main()
        self.current = PANELS[key - 1][0]
        self._switcher.current = panel_id(self.current)
        self._tab_bar.update(self._tabs())
        self._dirty = True
        self.paint()
        self.shown_panel().focus_rows()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.banner_state))

    def action_filter(self) -> None:
        self._to_main()
        box = self._filter
        box.display = True
        box.focus()

    def action_clear(self) -> None:
        box = self._filter
        if box.display or self.needle:
            box.value = ""
            box.display = False
            self.needle = ""
            self._dirty = True
            self.paint()
            self.shown_panel().focus_rows()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.needle = event.value
        self._dirty = True
        self.paint()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.display = False
        self.shown_panel().focus_rows()

    def on_panel_evidence_requested(self, event: Panel.EvidenceRequested) -> None:
        self.push_screen(EvidenceScreen(event.title, event.text, self.banner_state))


def make_app(
    config: ConsoleConfig,
    source: StatusSource | None = None,
    clock: Callable[[], float] = time.time,
) -> CellConsole:
    """The console for `config` (the CLI, the tests and the bench all build it here)."""
    if source is None:
        source = make_source(config, isolated=True)
    return CellConsole(config, source, clock)

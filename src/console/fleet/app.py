"""The fleet app: a banner, the rows worst first, a `/` filter and a site's latest document.

It shows the model, it computes nothing: `FleetSource` hands it a judged `Fleet` (every second,
so a site turns STALE on screen when its deadline passes) and a site's raw document. The CLI
and the tests build it with `make_app`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Protocol

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Static

from cell.fleet.model import Fleet, FleetModel, banner

if TYPE_CHECKING:
    from cell.fleet.client import HubOptions

COLUMNS = ("site", "verdict", "reason", "bridge", "last seen", "commit", "dns blocked", "failing")
REASON_WIDTH = 56
"""The reason is cut here in the table (Enter shows the whole document): the columns after it
stay on an 80-column screen for short reasons, and the most important one comes first."""


class FleetSource(Protocol):
    def fleet(self) -> Fleet: ...

    def document(self, site: str) -> str: ...

    def connected(self) -> bool: ...


class ModelSource:
    """A model that another thread feeds (the hub client), read under its lock."""

    def __init__(
        self,
        model: FleetModel,
        lock: threading.Lock | None = None,
        connected: Callable[[], bool] = lambda: True,
    ) -> None:
        self.model, self.lock, self._connected = model, lock or threading.Lock(), connected

    def connected(self) -> bool:
        return self._connected()

    def fleet(self) -> Fleet:
        with self.lock:
            return self.model.snapshot(time.time())

    def document(self, site: str) -> str:
        with self.lock:
            st = self.model.sites.get(site)
            raw = st.status_raw if st else None
            error = st.status_error if st else None
        if raw is None:
            return f"No status document at the hub for site {site}."
        try:
            text = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
        except ValueError:
            text = raw.decode(errors="replace")
        return text if error is None else f"Unreadable: {error}\n\n{text}"


class DocScreen(ModalScreen[None]):
    """One site's latest status document, as the hub holds it."""

    BINDINGS: ClassVar = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, site: str, text: str) -> None:
        super().__init__()
        self.site, self.text = site, text

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(f"[b]{self.site}[/b]: latest cell/status at the hub\n", markup=True)
            yield Static(self.text, id="doc", markup=False)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss()


class FleetApp(App[None]):
    CSS_PATH = "fleet.tcss"
    TITLE = "cell fleet"
    AUTO_FOCUS = "#rows"
    BINDINGS: ClassVar = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, source: FleetSource, every: float = 1.0) -> None:
        super().__init__()
        self.source, self.every = source, every
        self.needle = ""
        self.shown: list[str] = []

    def compose(self) -> ComposeResult:
        # Kept by reference, not queried: the refresh timer can fire while the app shuts down
        # and its screen's children are already gone.
        self._banner = Static("", id="banner")
        self._filter = Input(placeholder="/ filter: site, verdict or reason", id="filter")
        self._table: DataTable[str] = DataTable(id="rows", cursor_type="row", zebra_stripes=True)
        yield self._banner
        yield self._filter
        yield self._table
        yield Footer()

    def on_mount(self) -> None:
        self._table.add_columns(*COLUMNS)
        self.refresh_rows()
        self.set_interval(self.every, self.refresh_rows)

    def refresh_rows(self) -> None:
        fleet = self.source.fleet()
        head = self._banner
        lost = not self.source.connected()
        head.update(banner(fleet) + ("\nhub connection lost: reconnecting" if lost else ""))
        head.set_class(not fleet.ok or lost, "risk")
        table = self._table
        keep = self.shown[table.cursor_row] if 0 <= table.cursor_row < len(self.shown) else None
        table.clear()
        self.shown = []
        for r in fleet.sites:
            cells = (
                r.site,
                r.verdict.upper(),
                _cut(r.reason or "", REASON_WIDTH),
                r.bridge or "-",
                r.last_seen or "-",
                (r.commit or "-")[:12] + ("≠" if r.runs_expected is False else ""),
                "-" if r.dns_blocked_today is None else str(r.dns_blocked_today),
                ",".join(r.failing) or "-",
            )
            if self.needle and not any(self.needle in c.lower() for c in cells):
                continue
            table.add_row(*cells, key=r.site)
            self.shown.append(r.site)
        if keep in self.shown:
            table.move_cursor(row=self.shown.index(keep))

    def action_filter(self) -> None:
        box = self._filter
        # Focus now, not after a refresh (as `box.focus()` would): the keys typed right after
        # the '/' belong to the box, not to the table (where Enter would open a document).
        self.screen.set_focus(box)

    def action_clear_filter(self) -> None:
        self._filter.value = ""
        self._table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip().lower()
        self.refresh_rows()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self._table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        site = str(event.row_key.value)
        self.push_screen(DocScreen(site, self.source.document(site)))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def make_app(source: FleetSource, every: float = 1.0) -> FleetApp:
    return FleetApp(source, every)


def run_live(opts: HubOptions, model: FleetModel) -> None:
    """Connect to the hub, keep the model fed, show it until the operator quits."""
    from cell.fleet.client import HubClient

    client = HubClient(opts, model)
    client.start()
    try:
        make_app(ModelSource(model, client.lock, client.client.is_connected)).run()
    finally:
        client.stop()

"""One panel: its title and its rows in a table with a row cursor. Enter on a row that has
evidence posts `Panel.EvidenceRequested` (messages up); the app sets the view (attributes down)."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from console.view import Row, Tone, View

STYLES: dict[Tone, str] = {
    "head": "bold",
    "ok": "green",
    "bad": "bold red",
    "stale": "yellow",
    "plain": "",
    "dim": "dim",
}


class Panel(Vertical):
    """A panel (SYNOPSIS, MQTT, ...)."""

    class EvidenceRequested(Message):
        """The operator asked what backs a row."""

        def __init__(self, title: str, text: str) -> None:
            super().__init__()
            self.title = title
            self.text = text

    def __init__(
        self, key: int, name: str, subtitle: str, rows: Callable[[View], list[Row]], *, id: str
    ) -> None:
        super().__init__(id=id)
        self.key = key
        self.title = name
        self.subtitle = subtitle
        self._build = rows
        self._rows: list[Row] = []
        self._shown: list[str] = []
        self._width = 0
        # Kept by reference: a paint that comes while the app shuts down finds it still.
        self._table: DataTable[Text] = DataTable(
            show_header=False, cursor_type="row", zebra_stripes=False, classes="panel-rows"
        )

    def compose(self) -> ComposeResult:
        yield Static(f"{self.key} {self.title} · {self.subtitle}", classes="panel-title")
        yield self._table

    @property
    def rows(self) -> list[Row]:
        """The rows shown now (after the filter)."""
        return list(self._rows)

    def show(self, view: View, needle: str = "") -> None:
        rows = self._build(view)
        if needle:
            low = needle.lower()
            rows = [r for r in rows if low in r.text.lower() or low in r.evidence.lower()]
        texts = [f"{r.tone}\0{r.text}" for r in rows]
        if texts == self._shown:
            self._rows = rows
            return
        table = self._table
        lines = [
            Text(r.text + (" ⏎" if r.evidence else ""), style=STYLES[r.tone], no_wrap=True)
            for r in rows
        ]
        width = max((t.cell_len for t in lines), default=1)
        if len(texts) == len(self._shown) and width <= self._width:
            # The same shape: change only the lines that changed (a feed of statuses changes
            # a line or two, and redrawing the whole table each time costs the banner its lag).
            for i, (old, new) in enumerate(zip(self._shown, texts, strict=True)):
                if old != new:
                    table.update_cell(str(i), "row", lines[i])
            self._rows, self._shown = rows, texts
            return
        at = table.cursor_row
        # One column as wide as the widest line (horizontal scroll beyond the screen), set
        # here rather than measured by the table, so a screen is the same however it was built.
        table.clear(columns=True)
        table.add_column("row", key="row", width=width)
        self._width = width
        for i, line in enumerate(lines):
            table.add_row(line, key=str(i))
        if rows:
            table.move_cursor(row=min(max(at, 0), len(rows) - 1), animate=False)
        self._rows, self._shown = rows, texts

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self._rows):
            row = self._rows[event.cursor_row]
            if row.evidence:
                self.post_message(self.EvidenceRequested(row.title or self.title, row.evidence))
            else:
                self.notify("nothing more backs this line", timeout=2)

    def focus_rows(self) -> None:
        self._table.focus()

"""What a panel is given, and what it gives back: a `View` of the bus and the records at one
instant in, `Row`s out. Pure; the content modules (`console.content.*`) build the rows, the
widgets only show them (so `cell console --once` and the goldens print exactly what the screen
shows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from console.model import BusState
from console.records import Records

Tone = Literal["head", "ok", "bad", "stale", "plain", "dim"]

MARKS = {"ok": "✓", "bad": "✗", "stale": "…", "missing": "?"}
"""Marks carry the meaning in glyphs and words, never in colour alone (NO_COLOR)."""


@dataclass(frozen=True)
class Row:
    """One line of a panel. `evidence`: what Enter opens (empty: nothing backs this line)."""

    text: str
    tone: Tone = "plain"
    evidence: str = ""
    title: str = ""


@dataclass(frozen=True)
class View:
    bus: BusState
    records: Records | None
    now: float


def clock(t: float | str | None) -> str:
    """A time of day in UTC, `03:10:00Z`; an ISO string or epoch seconds; `-` for none."""
    if t is None or t == "":
        return "-"
    if isinstance(t, str):
        return t[11:19] + "Z" if len(t) >= 19 else t
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%SZ")


def stamp(t: float | str | None) -> str:
    """Date and time in UTC, `2026-12-02 03:10Z`."""
    if t is None or t == "":
        return "-"
    if isinstance(t, str):
        return f"{t[:10]} {t[11:16]}Z" if len(t) >= 16 else t
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%MZ")


def ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172_800:
        return f"{s // 3600}h ago"
    return f"{s // 86_400}d ago"


def head(text: str) -> Row:
    return Row(text, "head")


def aligned(cells: Sequence[Sequence[str]], indent: int = 2) -> list[str]:
    """Rows of cells as lines with aligned columns (the last column is not padded)."""
    if not cells:
        return []
    n = max(len(c) for c in cells)
    widths = [max((len(c[i]) for c in cells if i < len(c)), default=0) for i in range(n - 1)]
    out = []
    for c in cells:
        parts = [c[i].ljust(widths[i]) if i < n - 1 else c[i] for i in range(len(c))]
        out.append((" " * indent + "  ".join(parts)).rstrip())
    return out

"""The board: the latest check of each name, the events not yet published, and figures.

Services write from their threads; the daemon's loop reads. Every write bumps `version` and wakes
the loop, so a change is published at once (the status latency budget is under a second).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from cell.status.checks import Check
from cell.status.document import Event

MAX_EVENTS = 1000


class Board:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._checks: dict[str, Check] = {}
        self._figures: dict[str, Any] = {}
        self._events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self._counts: dict[str, dict[Any, int]] = {}
        self.version = 0

    def _bump(self) -> None:
        self.version += 1
        self._cond.notify_all()

    def set_check(self, name: str, check: Check) -> None:
        """The latest result of a check; `since` is kept from one result to the next until the
        check turns between ok and failed."""
        with self._cond:
            old = self._checks.get(name)
            if check.since is None:
                since = old.since if old is not None and old.ok == check.ok else check.ts
                check = check.model_copy(update={"since": since})
            self._checks[name] = check
            self._bump()

    def set_figure(self, name: str, value: Any) -> None:
        with self._cond:
            if self._figures.get(name) != value:
                self._figures[name] = value
                self._bump()

    def event(self, event: Event) -> None:
        with self._cond:
            self._events.append(event)
            self._bump()

    def count(self, name: str, key: Any, n: int) -> None:
        """Add `n` to a counter the metrics take (drops per (source, dest), DNS blocked, ...)."""
        if n:
            with self._cond:
                bucket = self._counts.setdefault(name, {})
                bucket[key] = bucket.get(key, 0) + n

    def take_counts(self) -> dict[str, dict[Any, int]]:
        with self._cond:
            out, self._counts = self._counts, {}
            return out

    def checks(self) -> dict[str, Check]:
        with self._cond:
            return dict(self._checks)

    def figures(self) -> dict[str, Any]:
        with self._cond:
            return dict(self._figures)

    def take_events(self) -> list[Event]:
        with self._cond:
            out = list(self._events)
            self._events.clear()
            return out

    def wait(self, seen: int, timeout: float) -> int:
        """Until the version moves past `seen` or `timeout` passes; the current version."""
        with self._cond:
            if self.version == seen:
                self._cond.wait(timeout)
            return self.version

    def poke(self) -> None:
        """Wake the loop without a change (a service state changed)."""
        with self._cond:
            self._bump()

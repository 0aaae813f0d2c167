"""A long-running piece of the daemon: started with a stop signal, reports a typed status,
stops cleanly. Nothing loops forever without a way out (DESIGN.md)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import Field

from cell.status.checks import Check
from cell.status.document import Event, EventKind
from policies.clock import now_iso
from policies.record import Record

if TYPE_CHECKING:
    from cell.run.board import Board

State = Literal["starting", "running", "restarting", "hung", "stopped"]


class Service(Protocol):
    """`run` works until `ctx.stop` is set, calling `ctx.beat()` at least every `deadline`
    seconds; a service that misses its deadline is hung. `run` returning early, or raising, is a
    crash: the supervisor reports it and starts the service again after a backoff."""

    name: str
    deadline: float
    checks: tuple[str, ...]
    """The checks this service establishes (they go stale when it is down)."""

    def run(self, ctx: Context) -> None: ...


class Context:
    """What a service gets: its stop event, its heartbeat, and the board to report on."""

    def __init__(self, name: str, board: Board, stop: threading.Event) -> None:
        self.name, self.board, self.stop = name, board, stop
        self.last_beat = time.monotonic()

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def wait(self, seconds: float) -> bool:
        """Beat, then sleep up to `seconds` (beating on the way); True when asked to stop."""
        end = time.monotonic() + seconds
        while True:
            self.beat()
            left = end - time.monotonic()
            if left <= 0:
                return self.stop.is_set()
            if self.stop.wait(min(left, 1.0)):
                return True

    def report(self, name: str, check: Check) -> None:
        self.board.set_check(name, check)

    def event(
        self,
        kind: EventKind,
        text: str,
        check: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.board.event(Event(kind=kind, ts=now_iso(), text=text, check=check, data=data or {}))

    def figure(self, name: str, value: Any) -> None:
        """A figure for the status document or the metrics (dns_blocked_today, ...)."""
        self.board.set_figure(name, value)


class ServiceStatus(Record):
    """A supervised service as the supervisor sees it."""

    name: str = Field(description="The service.")
    state: State = Field(description="starting, running, restarting, hung or stopped.")
    restarts: int = Field(description="Times it was started again after a crash or a hang.")
    last_error: str | None = Field(default=None, description="Why it last crashed or hung.")
    since: str = Field(description="When it entered its state (ISO 8601, UTC).")
    down_since: float | None = Field(
        default=None,
        description="Epoch seconds since which it is not running (crashed, hung), if so.",
    )

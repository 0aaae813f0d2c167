"""The supervisor: every service on a thread of its own, isolated from the others.

- A crash (an exception, or `run` returning while not asked to stop) is reported as an event,
  shown in the status, and the service is started again after a backoff that doubles with each
  crash in a row (`BACKOFF` .. `MAX_BACKOFF`); a run that lasted `STABLE` seconds resets it.
- A hang (no heartbeat within the service's `deadline`) is noticed, never waited on: the service
  is shown `hung`, its checks go stale at once, and it is asked to stop. It is started again
  when its thread ends; a thread that never ends stays `hung`, and the daemon stops pinging the
  systemd watchdog, so systemd restarts the whole process (the only cure for a stuck thread).
- `stop` asks every service to stop and waits for each at most until a shared deadline.

`tick` does the bookkeeping; the daemon's loop calls it a few times a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cell.run.board import Board
from cell.run.service import Context, Service, ServiceStatus, State
from policies.clock import iso, now_iso

BACKOFF = 0.5
MAX_BACKOFF = 30.0
STABLE = 60.0


@dataclass
class _Slot:
    service: Service
    state: State = "starting"
    restarts: int = 0
    in_a_row: int = 0
    last_error: str | None = None
    since: str = field(default_factory=now_iso)
    down_since: float | None = None
    thread: threading.Thread | None = None
    ctx: Context | None = None
    error: BaseException | None = None
    started: float = 0.0
    next_start: float = 0.0


class Supervisor:
    def __init__(
        self,
        services: Sequence[Service],
        board: Board,
        *,
        backoff: float = BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        stable: float = STABLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.board = board
        self.slots = {s.name: _Slot(s) for s in services}
        self.backoff, self.max_backoff, self.stable, self.clock = (
            backoff,
            max_backoff,
            stable,
            clock,
        )
        self.stopping = threading.Event()
        self._lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for slot in self.slots.values():
            self._launch(slot)

    def stop(self, timeout: float = 10.0) -> list[str]:
        """Ask every service to stop; wait until `timeout` at most. The names that did not stop."""
        self.stopping.set()
        for slot in self.slots.values():
            if slot.ctx is not None:
                slot.ctx.stop.set()
        end = time.monotonic() + timeout
        left = []
        for name, slot in self.slots.items():
            if slot.thread is not None:
                slot.thread.join(max(0.0, end - time.monotonic()))
                if slot.thread.is_alive():
                    left.append(name)
                    continue
            self._set(slot, "stopped")
        return left

    def _launch(self, slot: _Slot) -> None:
        ctx = Context(slot.service.name, self.board, threading.Event())
        slot.ctx, slot.error, slot.started = ctx, None, self.clock()
        ctx.last_beat = slot.started

        def body() -> None:
            try:
                slot.service.run(ctx)
            except BaseException as e:
                slot.error = e

        slot.thread = threading.Thread(target=body, name=f"cell-{slot.service.name}", daemon=True)
        self._set(slot, "starting")
        slot.thread.start()

    # --- bookkeeping -------------------------------------------------------------------------

    def tick(self) -> None:
        now = self.clock()
        for slot in self.slots.values():
            self._tick(slot, now)

    def _tick(self, slot: _Slot, now: float) -> None:
        if self.stopping.is_set():
            return
        thread, ctx = slot.thread, slot.ctx
        if slot.state == "restarting":
            if now >= slot.next_start:
                slot.restarts += 1
                self._launch(slot)
            return
        if thread is None or ctx is None:
            return
        if not thread.is_alive():
            e = slot.error
            why = f"{type(e).__name__}: {e}" if e is not None else "run() returned"
            self._crashed(slot, now, f"crashed: {why}" if e else f"exited: {why}")
            return
        late = now - ctx.last_beat
        if late > slot.service.deadline:
            if slot.state != "hung":
                slot.last_error = (
                    f"hung: no heartbeat for {late:.1f} s (deadline {slot.service.deadline:g} s)"
                )
                slot.down_since = time.time()
                self._set(slot, "hung")
                ctx.stop.set()  # ask; a thread cannot be killed
                self._event(slot, slot.last_error)
        elif slot.state in ("starting", "hung"):
            if slot.state == "hung":  # it came back on its own before stopping
                slot.down_since = None
            self._set(slot, "running")

    def _crashed(self, slot: _Slot, now: float, why: str) -> None:
        ran = now - slot.started
        slot.in_a_row = 1 if ran >= self.stable else slot.in_a_row + 1
        wait = min(self.max_backoff, self.backoff * 2 ** (slot.in_a_row - 1))
        slot.last_error = why if slot.state != "hung" else f"{slot.last_error}; then {why}"
        if slot.down_since is None:
            slot.down_since = time.time()
        slot.next_start = now + wait
        slot.thread, slot.ctx = None, None
        self._set(slot, "restarting")
        self._event(slot, f"{why}; restarting in {wait:g} s")

    def _set(self, slot: _Slot, state: State) -> None:
        if slot.state != state:
            slot.state, slot.since = state, now_iso()
            if state == "running" and slot.ctx is not None:
                slot.down_since = None
            self.board.poke()

    def _event(self, slot: _Slot, text: str) -> None:
        from cell.status.document import Event

        self.board.event(
            Event(
                kind="service",
                ts=now_iso(),
                text=f"service {slot.service.name} {text}",
                data={"service": slot.service.name, "restarts": slot.restarts},
            )
        )

    # --- what the daemon shows ---------------------------------------------------------------

    def statuses(self) -> dict[str, ServiceStatus]:
        return {
            name: ServiceStatus(
                name=name,
                state=s.state,
                restarts=s.restarts,
                last_error=s.last_error,
                since=s.since,
                down_since=s.down_since,
            )
            for name, s in self.slots.items()
        }

    def healthy(self) -> bool:
        """Every service runs and met its deadline: the systemd watchdog may be pinged."""
        now = self.clock()
        for s in self.slots.values():
            if s.state == "hung" or s.thread is None or s.ctx is None:
                return False
            if now - s.ctx.last_beat > s.service.deadline:
                return False
        return True

    def owners(self) -> dict[str, str]:
        """Check name -> the service that establishes it."""
        return {c: name for name, s in self.slots.items() for c in s.service.checks}


def down_text(status: ServiceStatus) -> str:
    when = iso(status.down_since, "seconds") if status.down_since else "?"
    return f"service {status.name} {status.state} since {when}: {status.last_error or '?'}"

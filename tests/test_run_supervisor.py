"""The supervisor with fake services: crashes are restarted with backoff, hangs are noticed by
their deadline and never waited on, one service's trouble never touches another's, and a check
whose service is down goes stale at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from cell.run.assemble import assemble, status_doc
from cell.run.board import Board
from cell.run.service import Context
from cell.run.supervisor import Supervisor
from cell.status.checks import Check
from policies.clock import iso


class Fake:
    def __init__(
        self, name: str, body: Callable[[Context, int], None], deadline: float = 0.5
    ) -> None:
        self.name, self.body, self.deadline = name, body, deadline
        self.checks: tuple[str, ...] = (name,)
        self.runs = 0

    def run(self, ctx: Context) -> None:
        self.runs += 1
        self.body(ctx, self.runs)


def steady(ctx: Context, _n: int) -> None:
    while not ctx.wait(0.02):
        pass


def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.01)


def running(sup: Supervisor, sup_tick: bool = True) -> Callable[[str], str]:
    def state(name: str) -> str:
        if sup_tick:
            sup.tick()
        return sup.statuses()[name].state

    return state


def test_a_crash_is_reported_restarted_with_backoff_and_isolated() -> None:
    def crashy(ctx: Context, n: int) -> None:
        if n <= 3:
            raise RuntimeError(f"boom {n}")
        steady(ctx, n)

    bad, good = Fake("bad", crashy), Fake("good", steady)
    board = Board()
    sup = Supervisor([bad, good], board, backoff=0.05, max_backoff=0.15, stable=60)
    sup.start()
    try:
        state = running(sup)
        waits = []
        until(lambda: state("bad") == "restarting" and bad.runs >= 1)
        waits.append(sup.slots["bad"].next_start - time.monotonic())
        until(lambda: state("bad") == "restarting" and bad.runs >= 2)
        waits.append(sup.slots["bad"].next_start - time.monotonic())
        until(lambda: state("bad") == "running" and bad.runs >= 4)
        s = sup.statuses()["bad"]
        assert s.restarts == 3
        assert s.last_error == "crashed: RuntimeError: boom 3"
        assert s.down_since is None
        # the backoff doubles: 0.05 then 0.1 (less what elapsed before we looked)
        assert waits[0] <= 0.05 and 0.05 < waits[1] <= 0.1
        assert sup.slots["bad"].in_a_row == 3
        assert state("good") == "running" and good.runs == 1  # never touched
        texts = [e.text for e in board.take_events()]
        assert any("service bad crashed: RuntimeError: boom 1" in t for t in texts)
        assert sup.healthy()
    finally:
        assert sup.stop(2) == []
    assert all(s.state == "stopped" for s in sup.statuses().values())


def test_backoff_is_capped_and_a_run_that_returns_is_a_crash() -> None:
    quits = Fake("quits", lambda ctx, n: None)
    sup = Supervisor([quits], Board(), backoff=0.01, max_backoff=0.04)
    sup.start()
    try:
        until(lambda: running(sup)("quits") != "" and quits.runs >= 6)
        s = sup.statuses()["quits"]
        assert s.last_error is not None and s.last_error.startswith("exited: run() returned")
        until(lambda: running(sup)("quits") == "restarting")
        assert sup.slots["quits"].next_start - time.monotonic() <= 0.04
        assert not sup.healthy()
    finally:
        sup.stop(1)


def test_a_hang_is_noticed_by_its_deadline_and_restarted_when_it_ends() -> None:
    release = threading.Event()

    def hangs(ctx: Context, n: int) -> None:
        if n == 1:
            release.wait(10)  # no heartbeat, deaf to stop: a stuck call
            return
        steady(ctx, n)

    h, other = Fake("h", hangs, deadline=0.3), Fake("other", steady)
    h.checks = ("drift",)
    board = Board()
    sup = Supervisor([h, other], board, backoff=0.01)
    board.set_check("drift", Check(ok=True, ts=iso(), detail="fine", fresh_for=3600))
    sup.start()
    try:
        t0 = time.monotonic()
        until(lambda: running(sup)("h") == "hung", 3)
        assert 0.25 <= time.monotonic() - t0 < 1.5
        assert not sup.healthy()
        assert running(sup)("other") == "running"
        # its check is believed only up to the moment it hung: stale now, so `unknown`
        checks = assemble(board.checks(), sup.owners(), sup.statuses())
        assert not checks["drift"].is_fresh(time.time())
        assert any("hung" in e for e in checks["drift"].evidence)
        doc = status_doc(
            site="s",
            now=time.time(),
            checks=checks,
            commit=None,
            dns_blocked_today=0,
            ledger=None,
            session="x",
            services=sup.statuses(),
            fresh_for=30,
        )
        assert doc.verdict == "unknown" and doc.services["h"] == "hung"
        assert doc.reasons[0].startswith("drift: stale since")
        release.set()  # the stuck call returns: the thread ends, the service starts again
        until(lambda: running(sup)("h") == "running" and h.runs == 2)
        assert sup.statuses()["h"].restarts == 1 and sup.healthy()
    finally:
        release.set()
        sup.stop(2)


def test_stop_never_waits_forever_for_a_stuck_service() -> None:
    forever = threading.Event()
    stuck = Fake("stuck", lambda ctx, n: forever.wait(30), deadline=60)
    sup = Supervisor([stuck, Fake("ok", steady)], Board())
    sup.start()
    t0 = time.monotonic()
    left = sup.stop(timeout=0.3)
    assert left == ["stuck"] and time.monotonic() - t0 < 1.0
    assert sup.statuses()["ok"].state == "stopped"
    forever.set()


@pytest.mark.parametrize("state", ["restarting", "hung"])
def test_a_down_service_cuts_its_checks_freshness(state: str) -> None:
    from cell.run.service import ServiceStatus

    now = time.time()
    check = Check(ok=True, ts=iso(now - 10), detail="fine", fresh_for=600)
    down = ServiceStatus(
        name="svc",
        state=state,
        restarts=1,
        since=iso(now - 4),
        down_since=now - 4,  # type: ignore[arg-type]
    )
    out = assemble({"drift": check}, {"drift": "svc"}, {"svc": down})
    assert out["drift"].deadline == pytest.approx(now - 4)
    up = down.model_copy(update={"state": "running", "down_since": None})
    assert assemble({"drift": check}, {"drift": "svc"}, {"svc": up})["drift"] == check


def test_the_summary_names_no_address() -> None:
    now = time.time()
    checks = {
        "drift": Check(
            ok=False,
            ts=iso(now),
            detail="rule added: ip daddr 198.51.100.7 accept",
            fresh_for=60,
            evidence=["10.10.0.11 asked"],
        )
    }
    doc = status_doc(
        site="s",
        now=now,
        checks=checks,
        commit="c",
        dns_blocked_today=3,
        ledger=None,
        session="x",
        services={},
        fresh_for=30,
    )
    text = doc.model_dump_json()
    assert "198.51.100.7" not in text and "10.10.0.11" not in text
    assert doc.reasons[0] == "drift: rule added: ip daddr <address> accept"
    assert doc.verdict == "at_risk"


def test_the_board_keeps_since_until_a_check_turns() -> None:
    board = Board()
    t = time.time()
    for i, ok in enumerate([True, True, False, False, True]):
        board.set_check("drift", Check(ok=ok, ts=iso(t + i), detail="x", fresh_for=9))
        assert board.checks()["drift"].since == iso(t + {0: 0, 1: 0, 2: 2, 3: 2, 4: 4}[i])

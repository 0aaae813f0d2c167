"""Small pieces of the daemon without root: sd_notify, the metrics' exposition and labels, and
`cell status` reading the state file (fresh, stale, missing)."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from cell.cli.main import main
from cell.errors import UsageError
from cell.run.metrics import Exporter, Metrics
from cell.run.notify import notify, watchdog_interval
from cell.run.service import ServiceStatus
from cell.status.checks import CHECK_NAMES, Check
from cell.status.document import StatusDoc
from policies.clock import iso
from policies.layout import STATUS_JSON


def test_sd_notify_sends_one_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not notify("READY=1")  # not under systemd: nothing, no error
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("READY=1\nSTATUS=sovereign")
        assert s.recv(100) == b"READY=1\nSTATUS=sovereign"
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval() is None


def doc_at(ts: float, verdict: str = "sovereign") -> StatusDoc:
    checks = {n: Check(ok=True, ts=iso(ts), detail="fine", fresh_for=60) for n in CHECK_NAMES}
    return StatusDoc(
        site="s",
        ts=iso(ts),
        verdict=verdict,  # type: ignore[arg-type]
        reasons=[],
        commit="c" * 40,
        dns_blocked_today=847,
        checks=checks,
        fresh_for=90,
        services={"drift": "running"},
    )


def test_metrics_names_labels_and_loopback(tmp_path: Path) -> None:
    m = Metrics()
    now = time.time()
    doc = doc_at(now)
    m.observe(
        doc,
        doc.checks,
        {"drift": ServiceStatus(name="drift", state="running", restarts=2, since=iso())},
        now,
    )
    m.add({"drops": {("cameras", "wan"): 9}, "dns_blocked": 5, "probe_runs": {"ok": 1}})
    ex = Exporter(m, "127.0.0.1:0")
    assert ex.host == "127.0.0.1"
    with pytest.raises(UsageError):
        Exporter(m, "9817")  # an address is required: never all interfaces by default
    out = tmp_path / "cell.prom"
    Exporter(m, f"file:{out}").flush()
    text = out.read_text()
    assert 'cell_verdict{verdict="sovereign"} 1.0' in text
    assert 'cell_drops_total{dest="wan",source="cameras"} 9.0' in text
    assert "cell_dns_blocked_total 5.0" in text
    assert 'cell_service_restarts_total{service="drift"} 2.0' in text
    assert 'cell_probe_runs_total{result="ok"} 1.0' in text
    names = {ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if not ln.startswith("#")}
    assert all(n.startswith("cell_") for n in names)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    served = Exporter(m, f"127.0.0.1:{port}")
    served.start()
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b"cell_check_ok" in body
    finally:
        served.stop()


def status(state: Path, *extra: str) -> tuple[int, dict[str, object]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["status", "--json", "--state-dir", str(state), *extra])
    return code, json.loads(out.getvalue())


def test_cell_status_reads_the_file_and_never_shows_a_stale_green(tmp_path: Path) -> None:
    code, doc = status(tmp_path)
    assert code == 3 and doc["ok"] is False and "no status yet" in str(doc["error"])
    (tmp_path / STATUS_JSON).write_text(doc_at(time.time()).model_dump_json(by_alias=True))
    code, doc = status(tmp_path)
    assert code == 0 and doc["verdict"] == "sovereign" and doc["dns_blocked_today"] == 847
    (tmp_path / STATUS_JSON).write_text(doc_at(time.time() - 120).model_dump_json(by_alias=True))
    code, doc = status(tmp_path)
    assert code == 3 and doc["verdict"] == "unknown" and doc["stale"] is True
    reasons = [str(r) for r in doc["reasons"]]  # type: ignore[attr-defined]
    assert [r.split(":")[0] for r in reasons] == list(CHECK_NAMES), "each names its check"
    assert all(": unconfirmed, the daemon last published 12" in r for r in reasons), reasons
    (tmp_path / STATUS_JSON).write_text(
        doc_at(time.time(), "at_risk").model_dump_json(by_alias=True)
    )
    assert status(tmp_path)[0] == 3
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["status", "--state-dir", str(tmp_path)]) == 3
    assert "AT RISK" in out.getvalue() and "DNS blocked today: 847" in out.getvalue()


def test_a_probe_run_that_an_apply_cut_across_is_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An apply during a probe run replaces the ruleset and restarts its counters, so a drop
    reads as uncounted: that run is thrown away (not stored, not reported) and run again."""
    import dataclasses
    import threading
    from types import SimpleNamespace

    from cell.run.board import Board
    from cell.run.service import Context
    from cell.run.services.probes import ProbeService
    from cell.run.site import SiteRef
    from cell.status.probe import ProbeResult
    from cell.store import open_store
    from cell.store.probes import probe_runs
    from cell.store.statedir import State
    from conftest import EXAMPLE

    state = State(str(tmp_path / "state"))
    state.root.mkdir(parents=True)
    ref = SiteRef(state, str(EXAMPLE), None)
    site = dataclasses.replace(
        ref.site, lab=SimpleNamespace(gateway="g", vlan_netns={}, outside="")
    )

    def result(ok: bool) -> ProbeResult:
        got = "drop" if ok else "drop (not counted)"
        return ProbeResult.model_validate(
            {
                "from": "nvr",
                "to": "gateway:53/tcp",
                "expect": "drop",
                "got": got,
                "ok": ok,
                "evidence": "counter +1" if ok else "counter +0",
                "id": "nvr->gateway:53/tcp",
            }
        )

    runs: list[bool] = []

    def run(_ctx: Context, _probes: object, _env: object) -> list[ProbeResult]:
        runs.append(True)
        if len(runs) == 1:  # an apply lands under the first run
            state.journal.write_text("{}")
            return [result(False)]
        return [result(True)]

    monkeypatch.setattr(ProbeService, "_run", staticmethod(run))
    monkeypatch.setattr(ProbeService, "interval", lambda self, site: 60.0)
    ref._site = site  # the service picks the current site up again after the apply
    board = Board()
    ProbeService(ref).once(Context("probes", board, threading.Event()), site)
    assert len(runs) == 2, "the run an apply cut across is run again"
    held = board.checks()["segregation"]
    assert held.ok, held.detail
    with open_store(state.root) as store:
        stored = probe_runs(store, 0)
    assert [r.ok for r in stored] == [True], "the cut-across run is not kept"


@pytest.mark.parametrize("again", [True, False])
def test_an_apply_cuts_the_interval_short_only_for_services_that_ask(again: bool) -> None:
    """A probe answers for the ruleset it ran against: a new apply runs it again at once
    (`again_on_apply`), where any other periodic service waits out its interval."""
    import threading
    from types import SimpleNamespace
    from typing import Any

    from cell.run.board import Board
    from cell.run.service import Context
    from cell.run.services.base import Periodic

    def applied(entry: str) -> Any:
        return SimpleNamespace(entry=SimpleNamespace(id=entry))

    ref = SimpleNamespace(site=applied("first"))
    ran: list[str] = []
    twice = threading.Event()

    class Service(Periodic):
        again_on_apply = again

        def interval(self, site: Any) -> float:
            return 60.0

        def once(self, ctx: Context, site: Any) -> None:
            ran.append(site.entry.id)
            if len(ran) == 2:
                twice.set()

    stop = threading.Event()
    worker = threading.Thread(
        target=Service(ref).run,  # a SiteRef in all it is asked: .site
        args=(Context("probes", Board(), stop),),
    )
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while not ran:
            assert time.monotonic() < deadline, "the first cycle never ran"
            time.sleep(0.01)
        ref.site = applied("second")  # an apply lands
        assert twice.wait(3) is again
        assert ran == (["first", "second"] if again else ["first"])
    finally:
        stop.set()
        worker.join(5)
    assert not worker.is_alive()


def test_a_monitor_off_the_bus_fails_the_bridge_check_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgraded, a Cell whose broker config predates the Cell's own socket has no socket: the
    daemon's monitor cannot get on the bus. The bridge check fails and says what to do; it does
    not go on reporting a link and crossings it cannot see."""
    import threading

    from cell.run.board import Board
    from cell.run.service import Context
    from cell.run.services import bridge
    from cell.run.site import SiteRef
    from cell.store.statedir import State
    from conftest import EXAMPLE

    state = State(str(tmp_path / "state"))
    state.root.mkdir(parents=True)
    ref = SiteRef(state, str(EXAMPLE), None)
    sock = ref.site.target.layout.mqtt_socket
    assert not Path(sock).exists()
    monkeypatch.setattr(bridge, "OFF_BUS_GRACE", 1.0)
    board, stop = Board(), threading.Event()
    worker = threading.Thread(
        target=bridge.BridgeService(ref).run, args=(Context("bridge", board, stop),)
    )
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while (held := board.checks().get("bridge")) is None or held.ok:
            assert time.monotonic() < deadline, f"the bridge check never failed: {held}"
            time.sleep(0.1)
        assert held.detail == (
            f"the monitor is not on the bus: the broker has no socket for the Cell at {sock} "
            "(its config was rendered before the Cell had one: `cell apply` once renders it)"
        )
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()


def test_off_the_bus_with_a_socket_there_says_what_the_connection_said(tmp_path: Path) -> None:
    from cell.run.services.bridge import off_bus

    sock = tmp_path / "mqtt.sock"
    sock.touch()
    got = off_bus(str(sock), "Connection refused", 12.4)
    assert got == "the monitor is not on the bus for 12 s: Connection refused"

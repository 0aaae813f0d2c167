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
    assert str(doc["reasons"][-1]).startswith("status: the daemon last published")  # type: ignore[index]
    (tmp_path / STATUS_JSON).write_text(
        doc_at(time.time(), "at_risk").model_dump_json(by_alias=True)
    )
    assert status(tmp_path)[0] == 3
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["status", "--state-dir", str(tmp_path)]) == 3
    assert "AT RISK" in out.getvalue() and "DNS blocked today: 847" in out.getvalue()

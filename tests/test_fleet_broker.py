"""`cell fleet --json` against a real mosquitto on loopback (no root): many simulated sites'
retained documents, published with paho in the daemon's schema, come back as one snapshot, worst
first, the silent ones STALE; exit codes 0 / 3 / 2 / 1; a password login."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetdocs import offline, payload, status

CELL = [sys.executable, "-m", "cell.cli"]
ISSUE_KEYS = ["site", "verdict", "reason", "bridge", "last_seen", "commit", "dns_blocked_today"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(
    tmp: Path, extra: str = "allow_anonymous true\n"
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / f"hub-{port}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\npersistence false\nuser root\nmax_queued_messages 100000\n{extra}"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the hub broker never listened"
            time.sleep(0.05)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[int]:
    proc, port = start_broker(tmp_path)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def publish(port: int, messages: list[tuple[str, bytes]], **login: str) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sim-sites")
    if login:
        c.username_pw_set(login["user"], login["password"])
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(t, body, qos=1, retain=True) for t, body in messages]
    for info in infos:
        info.wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


def fleet(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [*CELL, "fleet", "--hub", f"127.0.0.1:{port}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def many_sites(now: float) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """300 sites: most sovereign, some at risk, some silent for too long, some offline, some
    with only a dead bridge. Returns the messages and the verdict each site must get."""
    msgs: list[tuple[str, bytes]] = []
    want: dict[str, str] = {}
    for i in range(300):
        site = f"site-{i:03d}"
        p = f"sites/{site}/cell"
        if i % 50 == 7:
            msgs += [(f"{p}/status", payload(status(site, failed="drift"))), (f"{p}/bridge", b"1")]
            want[site] = "at_risk"
        elif i % 50 == 13:
            msgs += [(f"{p}/status", payload(status(site, ts=now - 600))), (f"{p}/bridge", b"0")]
            want[site] = "stale"
        elif i % 50 == 21:
            msgs += [
                (f"{p}/status", payload(status(site))),
                (f"{p}/availability", payload(offline())),
            ]
            want[site] = "stale"
        elif i % 50 == 33:
            msgs.append((f"{p}/bridge", b"0"))
            want[site] = "unknown"
        else:
            msgs += [(f"{p}/status", payload(status(site, blocked=i))), (f"{p}/bridge", b"1")]
            want[site] = "sovereign"
    return msgs, want


def test_many_sites_one_snapshot_worst_first(hub: int) -> None:
    msgs, want = many_sites(time.time())
    publish(hub, msgs)
    t0 = time.monotonic()
    r = fleet(hub, "--json")
    took = time.monotonic() - t0
    assert r.returncode == 3, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    assert doc["total"] == 300 and doc["sovereign"] == list(want.values()).count("sovereign")
    got = {row["site"]: row["verdict"] for row in doc["sites"]}
    assert got == want
    ranks = [
        ["at_risk", "stale", "unknown", "sovereign"].index(row["verdict"]) for row in doc["sites"]
    ]
    assert ranks == sorted(ranks)
    for row in doc["sites"]:
        assert list(row)[: len(ISSUE_KEYS)] == ISSUE_KEYS
    first = doc["sites"][0]
    assert first["reason"] == "drift: drift broken" and first["bridge"] == "up"
    assert first["failing"] == ["drift"]
    stale = next(row for row in doc["sites"] if row["site"] == "site-013")
    assert stale["bridge"] == "down" and stale["reason"].startswith("stale: no status since")
    assert took < 10, f"one snapshot of 300 sites took {took:.1f} s"


def test_all_sovereign_exits_0_and_prints_the_banner(hub: int) -> None:
    publish(hub, [(f"fleet2/s{i}/cell/status", payload(status(f"s{i}"))) for i in range(20)])
    r = fleet(hub, "--topic", "fleet2/+", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sovereign"] == 20
    text = fleet(hub, "--topic", "fleet2/+")  # piped: the banner and the rows
    assert text.returncode == 0 and text.stdout.splitlines()[0] == "◆ FLEET · 20/20 SOVEREIGN ◆"


def test_an_empty_hub_is_not_a_sovereign_fleet(hub: int) -> None:
    r = fleet(hub, "--json", "--wait", "0.5")
    assert r.returncode == 3 and json.loads(r.stdout) == {"total": 0, "sovereign": 0, "sites": []}
    assert "no site under sites/+" in r.stderr


def test_expect(hub: int, tmp_path: Path) -> None:
    publish(hub, [(f"sites/{s}/cell/status", payload(status(s))) for s in ("a", "b")])
    exp = tmp_path / "expect.txt"
    exp.write_text(f"a {'a' * 40}\nb {'b' * 12}\n")
    doc = json.loads(fleet(hub, "--json", "--expect", str(exp)).stdout)
    rows = {row["site"]: row for row in doc["sites"]}
    assert rows["a"]["runs_expected"] is True and rows["a"]["verdict"] == "sovereign"
    assert rows["b"]["runs_expected"] is False and rows["b"]["verdict"] == "at_risk"
    exp.write_text("a not-a-sha\n")
    bad = fleet(hub, "--json", "--expect", str(exp))
    assert bad.returncode == 2 and f"{exp}:1:3: commit 'not-a-sha'" in bad.stderr


def test_bad_input_exits_2_and_an_unreachable_hub_1(hub: int) -> None:
    for args in (["--hub", "nohost"], ["--topic", "sites/#"], ["--certfile", "/x"]):
        r = subprocess.run([*CELL, "fleet", "--hub", f"127.0.0.1:{hub}", *args, "--json"],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    closed = free_port()
    r = fleet(closed, "--json")
    assert r.returncode == 1
    assert (
        r.stderr.strip()
        == f"cell fleet: cannot reach the hub at mqtt://127.0.0.1:{closed}: Connection refused"
    )
    assert json.loads(r.stdout) == {"ok": False, "exit": 1, "error": r.stderr.strip()}


def test_password_login(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "ops", "s3cret"], check=True)
    proc, port = start_broker(tmp_path, f"allow_anonymous false\npassword_file {passwd}\n")
    try:
        publish(
            port, [("sites/p/cell/status", payload(status("p")))], user="ops", password="s3cret"
        )
        pw = tmp_path / "pw"
        pw.write_text("s3cret\n")
        ok = fleet(port, "--json", "--user", "ops", "--password-file", str(pw))
        assert ok.returncode == 0 and json.loads(ok.stdout)["total"] == 1, ok.stderr
        pw.write_text("wrong\n")
        refused = fleet(port, "--json", "--user", "ops", "--password-file", str(pw))
        assert refused.returncode == 2 and "refused the login" in refused.stderr
        anonymous = fleet(port, "--json")
        assert anonymous.returncode == 2
    finally:
        proc.terminate()
        proc.wait(timeout=5)

"""`cell fleet` at the lab's hub, through the real bridge (mutual TLS, the rendered bridge.conf).

The site's status documents are published on the Cell's broker as the reserved user `cell`, as
the daemon does (the daemon itself is another piece of work: its documents are built here with
the real `verdict()`), and bridged up by `cell/status` rules like the ones the example gets. The
fleet view runs in the WAN namespace against the hub, with the lab's client certificate.

Killing the Cell's mosquitto (SIGKILL: nothing on the box can say goodbye) shows the site's
bridge down at the hub (the bridge's will, `notification_topic`), its last status still shown
until the document's deadline, and STALE after it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cell.status.document import StatusDoc
from firewall import netns
from fleetdocs import payload, status
from policies.clock import parse_iso
from policies.layout import MOSQUITTO_PID
from test_bridge_harness import Site, make_bridge_site, msg, new_site_id

pytestmark = pytest.mark.root
CELL = [sys.executable, "-m", "cell.cli"]
BRIDGED = ["cell/status", "cell/availability"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from cell.deploy.install import apply_lab
    from cell.lab import lab_down, lab_up
    from policies import load_policy

    site_id = new_site_id()
    repo = make_bridge_site(tmp_path_factory.mktemp("fleet"), site_id)
    mqtt = (repo / "mqtt.yaml").read_text()
    for topic in BRIDGED:  # as the example does once the daemon publishes them
        if f'"{topic}"' not in mqtt:
            rule = f'  - {{pattern: "{topic}", direction: up, qos: 1}}\n'
            mqtt = mqtt.replace("topics:\n", f"topics:\n{rule}", 1)
    (repo / "mqtt.yaml").write_text(mqtt)
    policy = load_policy(repo)
    try:
        yield Site(policy, repo, lab_up(policy, apply=apply_lab))
    finally:
        lab_down(site_id)


def publish_status(site: Site, doc: StatusDoc) -> None:
    """As the daemon: user `cell` on the Cell's own broker, retained, QoS 1."""
    from test_bridge_harness import _publish

    m = msg("cell/status", retain=True, payload=payload(doc).decode())
    spec = {"host": "127.0.0.1", "port": 1883, "user": "cell", "password": site.password("cell")}
    assert _publish(site.info.gateway, {**spec, "messages": [m]}) == [0]


def fleet(site: Site) -> tuple[int, dict[str, Any]]:
    hub = site.hub
    argv = [*CELL, "fleet", "--hub", f"{hub['host']}:{hub['port']}", "--json", "--wait", "3"]
    argv += ["--cafile", hub["cafile"], "--certfile", hub["certfile"], "--keyfile", hub["keyfile"]]
    r = netns.run(hub["netns"], argv, timeout=60)
    assert r.returncode in (0, 3), r.stderr.decode()
    return r.returncode, json.loads(r.stdout)


def row_when(site: Site, want: dict[str, Any], timeout: float = 20) -> tuple[int, dict[str, Any]]:
    """Run `cell fleet --json` until the site's row has `want` (the bridge is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        code, doc = fleet(site)
        rows = [r for r in doc["sites"] if r["site"] == site.id]
        if rows and all(rows[0].get(k) == v for k, v in want.items()):
            return code, rows[0]
        assert time.monotonic() < deadline, f"never {want}: {rows}"
        time.sleep(0.5)


def test_status_crosses_the_bridge_and_a_dead_box_is_seen_at_the_hub(site: Site) -> None:
    publish_status(site, status(site.id, blocked=847))
    code, row = row_when(site, {"verdict": "sovereign", "bridge": "up"})
    assert code == 0 and row["dns_blocked_today"] == 847 and row["reason"] is None

    # What the daemon publishes after a hand-inserted leak: at risk, with its reason.
    publish_status(site, status(site.id, failed="drift"))
    code, row = row_when(site, {"verdict": "at_risk"})
    assert code == 3 and row["reason"] == "drift: drift broken" and row["failing"] == ["drift"]

    # Fresh and sovereign for 8 s; then the box dies with its broker.
    doc = status(site.id, fresh_for=8)
    publish_status(site, doc)
    row_when(site, {"verdict": "sovereign"})
    pid = int((Path(site.info.layout.state) / MOSQUITTO_PID).read_text())
    os.kill(pid, signal.SIGKILL)
    code, row = row_when(site, {"bridge": "down"}, timeout=60)
    # The hub learnt it from the bridge's will. Until the document's deadline its last verdict
    # stands (with the bridge down); after it, STALE.
    deadline = parse_iso(doc.ts).timestamp() + doc.fresh_for
    assert row["last_seen"] == doc.ts
    if time.time() < deadline - 1:
        assert row["verdict"] == "sovereign"
    code, row = row_when(site, {"verdict": "stale", "bridge": "down"}, timeout=30)
    assert code == 3 and row["reason"].startswith(f"stale: no status since {doc.ts}")
    assert time.time() > deadline

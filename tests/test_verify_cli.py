"""`cell dns stats|log`, `cell drops`, `cell probe history` on a state directory made here (no
root, no lab): the JSON shapes, the exit codes, the one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLE


def stamp(t: float) -> str:
    return time.strftime("%b %e %H:%M:%S", time.localtime(t))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    logs = tmp_path / "dnsmasq"
    logs.mkdir()
    now = time.time() - 5
    s = stamp(now)
    (logs / "sinkhole.log").write_text(
        "".join(
            f"{s} dnsmasq[10]: {i} {c}/5353 query[A] {n} from {c}\n"
            f"{s} dnsmasq[10]: {i} {c}/5353 config {n} is 0.0.0.0\n"
            for i, (c, n) in enumerate(
                [("10.10.0.11", "telemetry.vendor.example")] * 3
                + [("10.10.0.12", "telemetry.vendor.example"), ("10.10.0.200", "x.example")]
            )
        )
    )
    (logs / "resolver.log").write_text(
        f"{s} dnsmasq[11]: 1 127.0.0.1/1 query[A] hub.example.eu from 127.0.0.1\n"
        f"{s} dnsmasq[11]: 1 127.0.0.1/1 forwarded hub.example.eu to 203.0.113.53\n"
    )
    return tmp_path


def cell(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "cell.cli", *args, "--repo", str(EXAMPLE)]
    return subprocess.run([*argv, "--state-dir", str(state)], capture_output=True, text=True)


def as_json(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def test_dns_stats_shape_and_attribution(state: Path) -> None:
    r = cell(state, "dns", "stats", "--json")
    assert r.returncode == 0, r.stderr
    doc = as_json(r)
    assert doc["day"] == time.strftime("%Y-%m-%d", time.gmtime())
    assert (doc["timezone"], doc["blocked"], doc["forwarded"]) == ("UTC", 5, 0)
    assert [{k: c[k] for k in ("address", "host", "vlan", "blocked")} for c in doc["clients"]] == [
        {"address": "10.10.0.11", "host": "cam-01", "vlan": "cameras", "blocked": 3},
        {"address": "10.10.0.12", "host": "cam-02", "vlan": "cameras", "blocked": 1},
        {"address": "10.10.0.200", "host": None, "vlan": "cameras", "blocked": 1},
    ]
    top = doc["names"][0]
    assert (top["name"], top["blocked"]) == ("telemetry.vendor.example", 4)
    assert top["first_seen"].endswith("Z") and top["first_seen"][:10] == doc["day"]
    text = cell(state, "dns", "stats")
    assert text.stdout.startswith("DNS BLK 5 calls today")
    assert "unknown host (cameras) 10.10.0.200" in text.stdout


def test_a_forward_from_a_sinkhole_vlan_is_exit_3(state: Path) -> None:
    s = stamp(time.time() - 2)
    with (state / "dnsmasq" / "resolver.log").open("a") as f:
        f.write(f"{s} dnsmasq[11]: 2 10.10.0.11/7 query[TXT] leak.example from 10.10.0.11\n")
        f.write(f"{s} dnsmasq[11]: 2 10.10.0.11/7 forwarded leak.example to 203.0.113.53\n")
    r = cell(state, "dns", "stats", "--json")
    assert r.returncode == 3, r.stderr
    assert as_json(r)["forwarded"] == 1
    text = cell(state, "dns", "stats")
    assert text.returncode == 3 and "FINDING: 1 queries from sinkhole VLANs" in text.stdout
    log = cell(state, "dns", "log", "--client", "cam-01", "--since", "-10m")
    assert log.returncode == 3 and "leak.example  FORWARDED" in log.stdout


def test_dns_log_newest_first_and_by_host(state: Path) -> None:
    s = stamp(time.time())
    with (state / "dnsmasq" / "sinkhole.log").open("a") as f:
        f.write(f"{s} dnsmasq[10]: 9 10.10.0.11/1 query[HTTPS] later.example from 10.10.0.11\n")
    doc = as_json(cell(state, "dns", "log", "--client", "cam-01", "--json"))
    events = doc["events"]
    assert events[0]["name"] == "later.example" and events[0]["type"] == "HTTPS"
    assert {e["client"] for e in events} == {"10.10.0.11"}
    assert sum(e["count"] for e in events) == 4


def test_drops_and_probe_history_when_empty(state: Path) -> None:
    r = cell(state, "drops", "--json")
    assert r.returncode == 0 and as_json(r)["drops"] == []
    assert "nothing dropped today" in cell(state, "drops").stdout
    assert as_json(cell(state, "probe", "history", "--json")) == {"runs": [], "changes": []}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("dns", "stats", "--day", "2026-02-30"), "not a day; expected YYYY-MM-DD"),
        (("dns", "stats", "--day", "2001-01-01"), "no data for that day"),
        (("drops", "--day", "2999-01-01"), "no data for that day"),
        (("dns", "log", "--since", "last week"), "not a time; expected ISO 8601"),
        (("dns", "log", "--client", "cam-99"), "not a host of network.yaml"),
        (("probe", "history", "--since", "soon"), "not a time"),
    ],
)
def test_bad_input(state: Path, args: tuple[str, ...], says: str) -> None:
    r = cell(state, *args)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and says in r.stderr


def test_missing_state_dir(tmp_path: Path) -> None:
    r = cell(tmp_path / "nope", "dns", "stats")
    assert r.returncode == 2 and "does not exist" in r.stderr

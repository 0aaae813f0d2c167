"""Bounded logs: a flooded broker log is rotated and kept to a few files, and mosquitto writes
on into a fresh file (it reopens it on SIGHUP)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cell.deploy.install import apply_lab, lab_target
from cell.deploy.logrotate import rotate, rotate_all
from cell.lab import LabInfo, lab_down, lab_up
from conftest import EXAMPLE
from firewall import netns
from labsite import make_site
from policies import load_policy
from policies.layout import MOSQUITTO_LOG


def test_rotation_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    for i in range(6):
        log.write_bytes(b"y" * 200)
        assert rotate(log, max_bytes=100, keep=3)
        assert not log.exists()
        log.write_bytes(f"generation {i}".encode())
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["x.log", "x.log.1", "x.log.2", "x.log.3"]
    assert not rotate(log, max_bytes=100, keep=3)  # small: left alone


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    site_id = f"t-{uuid.uuid4().hex[:8]}"
    repo = make_site(tmp_path_factory.mktemp("rotate"), site_id)
    assert EXAMPLE.exists()
    try:
        yield lab_up(load_policy(repo), apply=apply_lab)
    finally:
        lab_down(site_id)


@pytest.mark.root
def test_a_flooded_broker_log_is_rotated_and_reopened(lab: LabInfo) -> None:
    target = lab_target(lab)
    log = target.state / MOSQUITTO_LOG
    with log.open("ab") as fh:
        fh.write(b"x" * 50_000)  # what a flood of PUBLISH lines leaves
    assert rotate_all(target, max_bytes=10_000, keep=2) == [log]
    assert log.with_name(log.name + ".1").stat().st_size > 50_000
    site = lab.mqtt["site"]
    login = ["-h", str(site["host"]), "-p", str(site["port"]), "-u", "cell"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        netns.run(
            lab.gateway,
            [
                "mosquitto_sub",
                *login,
                "-P",
                lab.credentials["cell"],
                "-t",
                "x",
                "-C",
                "1",
                "-W",
                "1",
            ],
        )
        if log.exists() and b"New client connected" in log.read_bytes():
            break
        time.sleep(0.2)
    assert log.exists() and b"New client connected" in log.read_bytes()
    assert log.stat().st_size < 10_000

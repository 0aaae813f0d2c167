"""`cell console --lab` on a real lab (root): it finds the lab's broker inside the gateway
namespace, logs in to the real mosquitto, and reads the lab's state directory. With the daemon
(`cell run`, started by `cell lab up` once it exists) the banner reads sovereign, and a
hand-inserted leak turns it at risk within 2 s; without it, the banner says there is no
status yet (and, crucially, not that it cannot connect)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firewall import netns
from policies import Policy
from test_console_tmux import Pane

pytestmark = pytest.mark.root
CELL = [sys.executable, "-m", "cell.cli"]
PYTHONPATH = [f"PYTHONPATH={os.environ['PYTHONPATH']}"] if os.environ.get("PYTHONPATH") else []
DAEMON = importlib.util.find_spec("cell.run") is not None


@pytest.fixture
def signed_lab(tmp_path: Path) -> Iterator[tuple[Policy, Path]]:
    """The example under a fresh site id, as a lab, with a signed commit applied through the
    trust gate (what a sovereign verdict needs); the daemon runs once `cell lab up` starts it."""
    from cell.lab import lab_down
    from labsite import new_id
    from policies import load_policy
    from test_trust import Keys, SignedRepo

    site_id = new_id()
    keys = Keys(tmp_path / "keys")
    repo = SignedRepo(tmp_path / "repo", keys, site_id)
    (tmp_path / "enrolled").write_text(keys.signers("ana"))
    try:
        for args in (
            ["lab", "up"],  # applies for the lab (and starts the daemon, where there is one)
            ["enroll", "--signers", str(tmp_path / "enrolled")],
            ["apply"],
        ):
            done = subprocess.run(
                [*CELL, *args, "--repo", str(repo.root)], capture_output=True, text=True
            )
            assert done.returncode == 0, done.stdout + done.stderr
        yield load_policy(repo.root), repo.root
    finally:
        lab_down(site_id)
        keys.close()


def test_console_on_the_lab(signed_lab: tuple[Policy, Path]) -> None:
    policy, repo = signed_lab
    once = [*CELL, "console", "--lab", "--repo", str(repo), "--once", "--width", "120"]
    deadline = time.monotonic() + (90 if DAEMON else 0)
    while True:
        done = subprocess.run(once, capture_output=True, text=True, timeout=60)
        if not DAEMON or done.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    out = done.stdout
    assert "not connected" not in out, out + done.stderr
    assert f"bridge 'hub' of site {policy.site.site.id}" in out  # the policy as applied
    assert "✗ never bridged  site/+/snapshots/#" in out
    assert "signed by" in out and "(✓ good)" in out  # the applied commit, from the journal
    last = out.splitlines()[-1]
    if not DAEMON:
        assert done.returncode == 3 and last.endswith("? DATA · UNKNOWN ?"), out
        assert "no status yet" in last
        return
    assert done.returncode == 0 and last.endswith("◆ DATA · SOVEREIGN ◆"), out

    pane = Pane(
        [
            "env",
            "-i",
            "TERM=xterm-256color",
            "LANG=C.UTF-8",
            *PYTHONPATH,
            *CELL,
            "console",
            "--lab",
            "--repo",
            str(repo),
        ],
        {},
        (140, 40),
    )
    try:
        pane.wait("◆ DATA · SOVEREIGN ◆", timeout=20)
        gateway = f"cell-{policy.site.site.id}.gw"
        netns.run(
            gateway, ["nft", "insert", "rule", "inet", "cell", "forward", "accept"], check=True
        )
        took = pane.wait("▲ DATA · AT RISK ▲", timeout=5)
        assert took < 2.0, f"the banner took {took:.2f} s"
        assert "drift:" in pane.text()
        for key, title in (
            ("1", "1 SYNOPSIS"),
            ("2", "2 MQTT"),
            ("3", "3 CAMS"),
            ("4", "4 GITOPS"),
            ("5", "5 HEALTH"),
        ):
            pane.keys(key)
            pane.wait(f"{title} ·", timeout=3)
        pane.keys("q")
        pane.wait("CONSOLE-EXITED 0", timeout=5)
    finally:
        pane.close()


def test_demo_on_a_terminal_ends_in_the_console(fresh: tuple[Policy, Path]) -> None:
    from cell.lab import lab_status

    policy, repo = fresh
    path = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
    pane = Pane(
        [
            "env",
            "-i",
            "TERM=xterm-256color",
            "LANG=C.UTF-8",
            path,
            *CELL,
            "demo",
            "--repo",
            str(repo),
        ],
        {},
        (130, 40),
    )
    try:
        pane.wait("1 SYNOPSIS · the site at a glance", timeout=240)
        for _ in range(100):  # connected: the banner leaves "connecting"
            last = pane.text().rstrip().splitlines()[-1]
            if "connecting" not in last:
                break
            time.sleep(0.1)
        assert last.endswith(("◆ DATA · SOVEREIGN ◆", "? DATA · UNKNOWN ?")), last
        assert "not connected" not in last
        assert lab_status(policy.site.site.id) is not None
        pane.keys("q")
        pane.wait("The lab was removed", timeout=60)
        pane.wait("CONSOLE-EXITED 0", timeout=10)
        assert lab_status(policy.site.site.id) is None
    finally:
        pane.close()

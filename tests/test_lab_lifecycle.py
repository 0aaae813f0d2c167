"""The lab's life: rebuild, teardown (also after a crash halfway through `up`), two sites side by
side, and the command line. Each test builds its own lab and removes it in a fixture's `finally`.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cell.cli.lab import add_lab_commands
from cell.lab import LabError, LabInfo, lab_down, lab_status, lab_up
from cell.lab.plan import WAN_LINK, ns_prefix
from cell.lab.processes import alive
from firewall import netns
from labsite import host_links, ip_json, make_site, ours
from policies import CellError, Policy, load_policy

pytestmark = pytest.mark.root


# --- rebuild, teardown, crash ----------------------------------------------------------------


def test_up_twice_is_idempotent(fresh: tuple[Policy, Path]) -> None:
    policy, _ = fresh
    site = policy.site.site.id
    first = lab_up(policy)
    old = list(first.processes.values())
    gw_links = {str(link["ifname"]) for link in ip_json("-n", first.gateway, "link")}
    second = lab_up(policy)
    assert sorted(ours(site)) == sorted(second.namespaces) == sorted(first.namespaces)
    assert not [p for p in old if alive(p.pid)]
    assert all(p.running() for p in second.processes.values())
    assert {str(link["ifname"]) for link in ip_json("-n", second.gateway, "link")} == gw_links
    assert second.credentials.keys() == first.credentials.keys()
    status = lab_status(site)
    assert status is not None and status.pids == second.pids


def test_down_leaves_nothing(fresh: tuple[Policy, Path]) -> None:
    policy, _ = fresh
    site = policy.site.site.id
    before = host_links()
    info = lab_up(policy)
    lab_names = {v.interface for v in policy.network.vlans} | {
        policy.network.wan.interface,
        WAN_LINK,
    }
    assert not (host_links() - before) & lab_names  # no lab link in the host namespace, ever
    lab_down(site)
    assert ours(site) == []
    assert not [p for p in info.processes.values() if alive(p.pid)]
    assert not Path(info.root).exists()
    assert not (host_links() - before) & lab_names
    assert lab_status(site) is None
    lab_down(site)  # nothing to do is fine


def test_two_sites_never_collide(fresh: tuple[Policy, Path], tmp_path: Path) -> None:
    policy, _ = fresh
    site = policy.site.site.id
    other_id = f"{site}-2"  # "cell-t-x." must not be a prefix of "cell-t-x-2."
    other = load_policy(make_site(tmp_path, other_id))
    try:
        a, b = lab_up(policy), lab_up(other)
        assert not set(a.namespaces) & set(b.namespaces)
        lab_down(site)
        assert sorted(ours(other_id)) == sorted(b.namespaces)
        assert all(p.running() for p in b.processes.values())
    finally:
        lab_down(other_id)


def test_failed_apply_removes_the_lab(fresh: tuple[Policy, Path]) -> None:
    policy, _ = fresh
    site = policy.site.site.id

    def broken(_policy: Policy, info: LabInfo) -> None:
        assert ours(site)  # the lab is there while apply runs
        raise RuntimeError("ruleset refused")

    with pytest.raises(
        LabError, match="applying the policy to the gateway: RuntimeError: ruleset refused"
    ):
        lab_up(policy, apply=broken)
    assert ours(site) == []
    assert lab_status(site) is None


CRASHING_UP = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from policies import load_policy
    from cell.lab import lab_up

    def hang(policy, info):
        Path(sys.argv[2]).write_text("applying")
        time.sleep(120)

    lab_up(load_policy(sys.argv[1]), apply=hang)
    """
)


def _start_up(repo: Path, marker: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", CRASHING_UP, str(repo), str(marker)])


def _wait(cond: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_down_after_kill_9_during_up(fresh: tuple[Policy, Path], tmp_path: Path) -> None:
    policy, repo = fresh
    site = policy.site.site.id
    # Killed once every service runs (during apply), and once as soon as the first namespace exists.
    for when in ("apply", "early"):
        marker = tmp_path / f"marker-{when}"
        up = _start_up(repo, marker)
        try:
            if when == "apply":
                _wait(marker.exists, "lab up never reached apply")
            else:
                _wait(lambda: bool(ours(site)), "lab up never created a namespace")
            up.send_signal(signal.SIGKILL)
        finally:
            up.kill()
            up.wait()
        state = Path(f"/run/cell-lab/{site}/lab.json")
        pids = (
            [p["pid"] for p in json.loads(state.read_text())["processes"].values()]
            if when == "apply"
            else []
        )
        assert not pids or all(alive(p) for p in pids)  # orphans, still running
        lab_down(site)
        assert ours(site) == []
        assert not [p for p in pids if alive(p)]
        assert not Path(f"/run/cell-lab/{site}").exists()


def test_down_sweeps_what_no_state_file_knows(fresh: tuple[Policy, Path]) -> None:
    policy, _ = fresh
    site = policy.site.site.id
    prefix = ns_prefix(site)
    strays = []
    try:
        for name in (f"{prefix}gw", f"{prefix}v-stray"):
            netns.create(name)
            strays.append(netns.popen(name, ["sleep", "300"]))
        lab_down(site)
        for p in strays:
            assert p.wait(timeout=5) == -signal.SIGTERM
        assert ours(site) == []
    finally:
        for p in strays:
            if p.poll() is None:
                p.kill()
                p.wait()


# --- command line ------------------------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="cell")
    add_lab_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args)), ""
    except CellError as e:
        return e.exit_code, str(e)


def test_cli_up_status_down(fresh: tuple[Policy, Path], capsys: pytest.CaptureFixture[str]) -> None:
    policy, repo = fresh
    site = policy.site.site.id
    assert run_cli("lab", "status", "--repo", str(repo)) == (
        3,
        f"no lab is up for site {site} (start one with `cell lab up`)",
    )
    assert run_cli("lab", "up", "--repo", str(repo), "--no-apply") == (0, "")
    text = capsys.readouterr().out
    assert f"lab for site {site} is up" in text and "hub.example.eu = 198.19.0.10:8883" in text
    assert "password" not in text
    assert run_cli("lab", "status", "--site", site, "--json")[0] == 0
    doc = json.loads(capsys.readouterr().out)
    assert {
        "gateway",
        "wan",
        "namespaces",
        "hosts",
        "mqtt",
        "outside",
        "pids",
        "root",
        "layout_root",
    } <= doc.keys()
    assert doc["hosts"]["nvr"] == {
        "netns": f"{ns_prefix(site)}v-cell",
        "address": "10.20.0.2",
        "vlan": "cell",
    }
    assert {"netns", "host", "port"} <= doc["mqtt"]["site"].keys()
    assert {"netns", "host", "port", "cafile", "certfile", "keyfile", "prefix"} <= doc["mqtt"][
        "hub"
    ].keys()
    assert doc["mqtt"]["hub"]["prefix"] == f"sites/{site}/"
    assert {"cam-01", "nvr", "cell"} <= doc["mqtt"]["clients"].keys()
    assert all(c["password"] for c in doc["mqtt"]["clients"].values())
    assert all(doc["alive"].values())
    assert oct(Path(doc["state_file"]).stat().st_mode & 0o777) == "0o600"
    assert run_cli("lab", "down", "--repo", str(repo)) == (0, "")
    assert ours(site) == []

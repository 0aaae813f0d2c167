"""`cell probe` on a lab of the example site: the whole matrix with real packets.

The proof runs both ways: on the correct ruleset every flow holds, and after a person hand-inserts
an `accept` at the top of the forward chain, `cell probe` reports exactly the leaks it opens,
no more and no fewer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cell.deploy.install import apply_lab
from cell.lab import LabInfo, lab_down, lab_up
from cell.verify.prober import Env, run_probes
from firewall import netns
from firewall import nft as fw
from firewall.probes import compile_probes
from labsite import make_site, new_id
from policies import Policy, load_policy

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Policy, LabInfo, Path]]:
    site_id = new_id()
    repo = make_site(tmp_path_factory.mktemp("probe"), site_id)
    policy = load_policy(repo)
    try:
        yield policy, lab_up(policy, apply=apply_lab), repo
    finally:
        lab_down(site_id)


def _env(info: LabInfo) -> Env:
    return Env(info.gateway, info.vlan_netns, info.outside)


def test_full_matrix_holds(lab: tuple[Policy, LabInfo, Path]) -> None:
    policy, info, _ = lab
    run = run_probes(compile_probes(policy), _env(info))
    bad = [r for r in run.results if not r.ok]
    assert run.ok, bad
    assert sum(r.expect == "accept" for r in run.results) >= 10
    drops = [r for r in run.results if r.expect == "drop"]
    assert len(drops) >= 20
    assert all("counter" in r.evidence and "+" in r.evidence for r in drops)


def test_cli_probe_json_and_exit_code(lab: tuple[Policy, LabInfo, Path]) -> None:
    _, _, repo = lab
    r = subprocess.run(
        [sys.executable, "-m", "cell.cli", "probe", "--lab", "--repo", str(repo), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True
    assert set(doc["results"][0]) >= {"from", "to", "expect", "got", "ok", "evidence"}


def test_hand_inserted_accept_is_caught_as_the_exact_leaks(
    lab: tuple[Policy, LabInfo, Path],
) -> None:
    policy, info, _ = lab
    probes = compile_probes(policy)
    # Only traffic that crosses the forward chain can leak through a forward `accept`:
    # drops whose source and destination are both not the gateway itself.
    expected = {
        p.id
        for p in probes
        if p.expect == "drop" and p.source.name != "gateway" and p.to.name != "gateway"
    }
    assert expected
    netns.run(
        info.gateway, ["nft", "insert", "rule", "inet", "cell", "forward", "accept"], check=True
    )
    try:
        run = run_probes(probes, _env(info))
    finally:
        fw.apply(Path(info.layout.config, "nftables/ruleset.json").read_bytes(), info.gateway)
    failed = {r.id for r in run.failed}
    assert failed == expected
    assert all(r.got == "accept" and "LEAK" in r.evidence for r in run.results if r.id in failed)
    assert run.ok is False


def test_probe_exit_3_when_a_flow_misbehaves(lab: tuple[Policy, LabInfo, Path]) -> None:
    _, info, repo = lab
    netns.run(
        info.gateway, ["nft", "insert", "rule", "inet", "cell", "output", "accept"], check=True
    )
    try:
        r = subprocess.run(
            [sys.executable, "-m", "cell.cli", "probe", "--lab", "--repo", str(repo)],
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        fw.apply(Path(info.layout.config, "nftables/ruleset.json").read_bytes(), info.gateway)
    assert r.returncode == 3
    assert "✗ gateway" in r.stdout and "LEAK" in r.stdout

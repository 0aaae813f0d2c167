"""`cell probe` in place: from a probe namespace on each VLAN's own segment (a macvlan of the
VLAN's port), judged by the live ruleset; the on-box code path, run against the lab's gateway.
A tc redirect around the firewall makes it fail; a probe address someone else holds is refused.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cell.deploy.install import apply_lab
from cell.lab import LabInfo, lab_down, lab_up
from cell.verify.inplace import BOX_OUTSIDE, box_outside, probe_mac
from firewall import netns
from firewall.probes import compile_probes, inplace_probes
from labsite import make_site, new_id, ours, tc_redirect
from policies import Policy, load_policy


def cell_probe(repo: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cell.cli", "probe", "--repo", str(repo), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- pure ------------------------------------------------------------------------------------


def test_inplace_matrix_sends_from_the_probe_address(example: Path) -> None:
    policy = load_policy(example)
    probes = {p.id: p for p in inplace_probes(policy)}
    assert not [p for p in probes.values() if p.source.name in policy.hosts]
    onvif = probes["probe@cell>cam-01:80/tcp"]  # only the NVR may: from any other address, drop
    assert onvif.expect == "drop" and onvif.counter == "drop_cell.cameras"
    assert onvif.source.address == "10.20.0.253"
    assert probes["probe@cell>cam-01:554/tcp"].expect == "accept"  # the whole VLAN may
    assert len(probes) <= len(compile_probes(policy))
    assert box_outside(policy)["resolver"] == "203.0.113.53" and BOX_OUTSIDE["real_site"]
    assert probe_mac("s", "cameras") == probe_mac("s", "cameras") != probe_mac("s", "cell")
    assert int(probe_mac("s", "cameras")[:2], 16) & 0x03 == 0x02  # local, unicast


# --- on the lab's gateway --------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Policy, LabInfo, Path]]:
    site_id = new_id()
    repo = make_site(tmp_path_factory.mktemp("inplace"), site_id)
    # A flow that fails waits out the timeout; these tests break the path on purpose.
    with (repo / "site.yaml").open("a") as f:
        f.write("verify:\n  probe_timeout: 1s\n")
    policy = load_policy(repo)
    try:
        yield policy, lab_up(policy, apply=apply_lab), repo
    finally:
        lab_down(site_id)


@pytest.mark.root
def test_probe_in_place_holds_and_leaves_nothing(lab: tuple[Policy, LabInfo, Path]) -> None:
    policy, _info, repo = lab
    before = set(ours(policy.site.site.id))
    r = cell_probe(repo)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    doc = json.loads(r.stdout)
    sources = {x["from"] for x in doc["results"]}
    assert sources == {"gateway"} | {f"probe@{v.name}" for v in policy.network.vlans}
    assert set(ours(policy.site.site.id)) == before  # the probe namespaces are gone


@pytest.mark.root
def test_a_tc_redirect_around_the_firewall_fails_the_probe(
    lab: tuple[Policy, LabInfo, Path],
) -> None:
    _, info, repo = lab
    gw = info.gateway
    with tc_redirect(gw):
        r = cell_probe(repo)
        assert r.returncode == 3, r.stdout[-2000:]
        bad = [x for x in json.loads(r.stdout)["results"] if not x["ok"]]
        # What enters from the cameras (their replies too) leaves by the WAN link unjudged:
        # their drops raise no counter, and flows to the cameras get no answer.
        assert any(x["from"] == "probe@cameras" and "did not rise" in x["evidence"] for x in bad)
        assert all(x["from"] == "probe@cameras" or "cam-" in x["to"] for x in bad)
        paths = json.loads(r.stdout)["paths"]  # and the run says what is wrong
        assert any(p["kind"] == "tc" and "redirects to eth1" in p["what"] for p in paths)
    assert cell_probe(repo).returncode == 0


@pytest.mark.root
def test_a_probe_address_in_use_is_refused(lab: tuple[Policy, LabInfo, Path]) -> None:
    """A device on the cameras' segment holds the reserved address: it answers the ARP probe,
    so `cell probe` refuses, naming the address and who answers for it."""
    _, info, repo = lab
    cams = info.vlans["cameras"]["netns"]

    def squat(add: bool) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("add" if add else "del", index=index, address="10.10.0.253", prefixlen=24)

    netns.with_ns(cams, lambda: squat(True))
    try:
        r = cell_probe(repo)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "10.10.0.253 of VLAN cameras is in use on eth0.10" in r.stderr
        assert "answers for it" in r.stderr and "probe:" in r.stderr
        assert "Traceback" not in r.stderr
    finally:
        netns.with_ns(cams, lambda: squat(False))
    assert cell_probe(repo).returncode == 0  # free again: the next run takes it


@pytest.mark.root
def test_a_flipped_forwarding_sysctl_fails_the_probe(lab: tuple[Policy, LabInfo, Path]) -> None:
    _, info, repo = lab
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    netns.with_ns(info.gateway, lambda: forward.write_text("0\n"))
    try:
        r = cell_probe(repo)
        assert r.returncode == 3
        doc = json.loads(r.stdout)
        assert not [x for x in doc["results"] if x["to"] == "cam-01:554/tcp" and x["ok"]]
        # Each flow that got no answer waited the policy's 1 s (and its 0.5 s slack), not 2 s.
        waited = [
            float(m.group(1))
            for x in doc["results"]
            if (m := re.match(r"no answer in (\d+) ms", x["evidence"]))
        ]
        assert waited and all(900 <= ms < 1900 for ms in waited), waited
        assert {"kind": "sysctl", "what": "sysctl net.ipv4.ip_forward is 0, not 1"} in doc["paths"]
    finally:
        netns.with_ns(info.gateway, lambda: forward.write_text("1\n"))

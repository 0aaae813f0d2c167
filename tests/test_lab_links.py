"""The gateway's links are `cell apply`'s, not the lab's: bare after `lab up --no-apply`, made
by an apply (the VLAN's macvlan with its gateway address, the router's sysctls), and put back by
a rollback. Real kernel, real CLI, signed commits; one lab for the module.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cell.lab import LabInfo, lab_down, lab_up
from firewall import netns
from labsite import ip_json
from policies import load_policy
from test_lifecycle import Site
from test_trust import Keys, SignedRepo

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, LabInfo, Keys]]:
    """A lab built without an apply: what `cell lab up --no-apply` leaves."""
    site_id = f"t-{uuid.uuid4().hex[:8]}"
    root = tmp_path_factory.mktemp("links")
    keys = Keys(root / "keys")
    repo = SignedRepo(root / "seed", keys, site_id)
    try:
        yield site_id, lab_up(load_policy(repo.root)), keys
    finally:
        lab_down(site_id)
        keys.close()


def addresses(ns: str) -> dict[str, list[str]]:
    return {
        str(link["ifname"]): [str(a["local"]) for a in link["addr_info"] if a["family"] == "inet"]
        for link in ip_json("-n", ns, "addr")
    }


def sysctl(ns: str, path: str) -> str:
    return netns.with_ns(ns, lambda: Path("/proc/sys", path).read_text().strip())


def test_bare_lab_then_apply_then_rollback(bare: tuple[str, LabInfo, Keys], tmp_path: Path) -> None:
    site_id, info, keys = bare
    policy = load_policy(Path(__file__).resolve().parents[1] / "site-config-example")
    gw = info.gateway
    before = addresses(gw)
    for v in policy.network.vlans:  # the lab made the ports; nothing holds a gateway address
        assert before[f"vlan{v.id}"] == [] and v.interface not in before
    assert sysctl(gw, "net/ipv4/ip_forward") == "0"

    site = Site(tmp_path, keys, site_id)
    site.apply()
    after = addresses(gw)
    for v in policy.network.vlans:
        assert after[v.interface] == [v.gateway] and after[f"vlan{v.id}"] == []
        assert sysctl(gw, f"net/ipv4/conf/{v.interface}/rp_filter") == "1"
    assert sysctl(gw, "net/ipv4/ip_forward") == "1"
    assert sysctl(gw, "net/ipv6/conf/all/forwarding") == "0"
    kinds = {str(lk["ifname"]): lk for lk in ip_json("-d", "-n", gw, "link")}
    macvlan = kinds["eth0.10"]["linkinfo"]
    assert macvlan["info_kind"] == "macvlan" and macvlan["info_data"]["mode"] == "bridge"

    # A new gateway address for ops, applied, then rolled back: the old one is back.
    site.repo.edit("network.yaml", "gateway: 10.40.0.1}", "gateway: 10.40.0.254}")
    site.repo.commit("ops gateway moves", key="ana")
    site.apply()
    assert addresses(gw)["eth0.40"] == ["10.40.0.254"]
    r = site.run("rollback")
    assert r.returncode == 0, r.stderr
    assert addresses(gw)["eth0.40"] == ["10.40.0.1"]
    r = site.run("drift", "--json")
    assert '"kind": "link"' not in r.stdout, r.stdout


def test_a_static_wan_is_set_by_apply(tmp_path: Path) -> None:
    from cell.artifacts import render_all
    from cell.deploy.install import apply_lab, lab_target
    from cell.drift.paths import check_paths
    from labsite import make_site, new_id

    site_id = new_id()
    repo = make_site(tmp_path, site_id)
    text = (
        (repo / "network.yaml")
        .read_text()
        .replace(
            "  trunk: eth0\n",
            "  trunk: eth0\n  wan: {address: 192.0.2.2, prefixlen: 30, gateway: 192.0.2.1}\n",
        )
    )
    (repo / "network.yaml").write_text(text)
    policy = load_policy(repo)
    try:
        info = lab_up(policy, apply=apply_lab)
        gw = info.gateway
        assert addresses(gw)["eth1"] == ["192.0.2.2"]
        routes = ip_json("-n", gw, "route", "show", "default")
        assert [(r["gateway"], r["dev"]) for r in routes] == [("192.0.2.1", "eth1")]
        target = lab_target(info)
        assert check_paths(render_all(policy, target.layout), target) == []
    finally:
        lab_down(site_id)

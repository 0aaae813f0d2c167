"""The Cell's own links as policy: the pure compile, the comparison that read-back and drift
share, the format's rules, and an install on the fake links seam (restore on failure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cell.deploy.install import apply_policy
from cell.errors import ApplyError
from conftest import Site
from fakegateway import fake_gateway
from firewall.links import LiveLink, LiveNet, compare_links, compile_links
from policies import load_policy
from policies.errors import PolicyError
from policies.flows import probe_address, reserved_probe


def test_example_compiles_to_subinterfaces_and_macvlans(site: Site) -> None:
    plan = compile_links(load_policy(site.root))
    links = plan.by_name()
    assert links["eth0"].role == "trunk" and links["eth0"].kind == "given"
    assert links["vlan10"].kind == "vlan" and links["vlan10"].parent == "eth0"
    assert links["vlan10"].vlan_id == 10 and links["vlan10"].addresses == []
    cam = links["eth0.10"]
    assert (cam.kind, cam.parent, cam.addresses) == ("macvlan", "vlan10", ["10.10.0.1/24"])
    assert links["eth1"].addresses is None and plan.routes == []  # DHCP owns the WAN address
    assert plan.sysctls["net/ipv4/ip_forward"] == "1"
    assert plan.sysctls["net/ipv4/conf/eth0.10/rp_filter"] == "1"
    assert plan.sysctls["net/ipv4/conf/vlan10/arp_ignore"] == "1"
    assert plan.sysctls["net/ipv6/conf/all/forwarding"] == "0"
    assert [s.name for s in plan.links].index("vlan10") < [s.name for s in plan.links].index(
        "eth0.10"
    )


def test_ports_static_wan_and_ipv6(site: Site) -> None:
    site.edit("network.yaml", "  trunk: eth0\n", "  trunk: eth0\n  ipv6_forwarding: true\n")
    site.edit(
        "network.yaml",
        "  trunk: eth0\n",
        "  trunk: eth0\n  wan: {address: 192.0.2.2, prefixlen: 30, gateway: 192.0.2.1}\n",
    )
    site.edit("network.yaml", "gateway: 10.40.0.1}", "gateway: 10.40.0.1, port: eth2}")
    plan = compile_links(load_policy(site.root))
    links = plan.by_name()
    assert links["eth2"].kind == "given" and links["eth0.40"].parent == "eth2"
    assert links["eth1"].addresses == ["192.0.2.2/30"]
    assert [(r.dst, r.gateway, r.dev) for r in plan.routes] == [("default", "192.0.2.1", "eth1")]
    assert plan.sysctls["net/ipv6/conf/all/forwarding"] == "1"


def test_probe_address_is_reserved_and_checked(site: Site) -> None:
    policy = load_policy(site.root)
    assert reserved_probe(policy, "cameras") == "10.10.0.253"
    assert probe_address(policy, "cameras") == "10.10.0.254"
    site.edit(
        "network.yaml",
        "gateway: 10.10.0.1, internet",
        "gateway: 10.10.0.1, probe: 10.10.0.11, internet",
    )
    line = site.line_of("network.yaml", "probe: 10.10.0.11")
    with pytest.raises(PolicyError) as e:
        load_policy(site.root)
    assert f"network.yaml:{line}:" in str(e.value) and "cam-01" in str(e.value)


def test_a_link_has_one_role(site: Site) -> None:
    site.edit("network.yaml", "  trunk: eth0\n", "  trunk: eth1\n")
    with pytest.raises(PolicyError) as e:
        load_policy(site.root)
    assert "link eth1 is already the WAN link" in str(e.value)


def test_compare_names_what_differs(site: Site) -> None:
    plan = compile_links(load_policy(site.root))
    links = {
        s.name: LiveLink(
            name=s.name,
            kind="veth" if s.kind == "vlan" else s.kind,
            parent=None if s.kind == "vlan" else s.parent,
            mode="bridge" if s.kind == "macvlan" else None,
            addresses=list(s.addresses or []),
            up=True,
        )
        for s in plan.links
        if s.role != "trunk"
    }
    live = LiveNet(links=links, sysctls=dict(plan.sysctls))
    assert compare_links(plan, live, "veth") == []
    assert compare_links(plan, live, None)[0].startswith("link eth0 (the trunk) is missing")
    links["eth0.10"].addresses = ["10.10.0.1/24", "10.99.0.1/24"]
    links["eth0.20"].master = "br0"
    live.sysctls["net/ipv4/ip_forward"] = "0"
    differ = compare_links(plan, live, "veth")
    assert any("eth0.10" in d and "10.99.0.1/24" in d for d in differ)
    assert any("eth0.20" in d and "enslaved to br0" in d for d in differ)
    assert "sysctl net.ipv4.ip_forward is 0, not 1" in differ


def test_install_makes_links_and_a_failure_puts_them_back(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = fake_gateway(tmp_path, monkeypatch)
    policy = load_policy(site.root)
    apply_policy(policy, gw.target)
    assert gw.links.net.links["eth0.10"].addresses == ["10.10.0.1/24"]
    assert gw.links.net.links["vlan10"].kind == "vlan"
    assert gw.links.net.sysctls["net/ipv4/ip_forward"] == "1"
    site.edit("network.yaml", "gateway: 10.40.0.1}", "gateway: 10.40.0.254}")
    gw.links.refuse = "links: the kernel said no"
    with pytest.raises(ApplyError, match="previous configuration restored"):
        apply_policy(load_policy(site.root), gw.target)
    assert gw.links.net.links["eth0.40"].addresses == ["10.40.0.1/24"]


def test_paths_around_the_firewall_are_named(site: Site) -> None:
    from cell.drift.paths import compare_stack
    from firewall.links import Route, Stack, Tc

    plan = compile_links(load_policy(site.root))
    links = {
        s.name: LiveLink(
            name=s.name,
            kind=s.kind if s.kind != "given" else None,
            parent=s.parent,
            vlan_id=s.vlan_id,
            mode="bridge" if s.kind == "macvlan" else None,
            addresses=list(s.addresses or []),
            up=True,
        )
        for s in plan.links
    }
    kernel = [(255, 0, "all"), (254, 32766, "all"), (253, 32767, "all")]
    routes = [
        Route(254, "10.10.0.0/24", None, "eth0.10", kernel=True),
        Route(254, "0.0.0.0/0", "198.18.0.1", "eth1", kernel=False),  # the uplink's DHCP
    ]
    clean = Stack(LiveNet(links=links, sysctls=dict(plan.sysctls)), routes, kernel, {})
    assert compare_stack(plan, clean, None) == []
    links["eth0.10"].xdp = 7
    links["wg0"] = LiveLink(name="wg0", kind="wireguard", parent=None, up=True)
    links["spare"] = LiveLink(name="spare", kind=None, parent=None, up=False)
    dirty = Stack(
        clean.net,
        [*routes, Route(254, "10.10.0.0/25", "198.18.0.1", "eth1", kernel=False)],
        [*kernel, (100, 100, "from 10.10.0.0/24")],
        {"eth0.10": Tc("eth0.10", ["ingress"], ["filter u32 (redirects to eth1)"])},
    )
    found = {(f.kind, f.what) for f in compare_stack(plan, dirty, None)}
    kinds = sorted(k for k, _ in found)
    assert kinds == ["bpf", "link", "route", "rule", "tc", "tc"], found
    assert not any("spare" in w for _, w in found)  # down, no address: carries nothing
    assert ("rule", "policy-routing rule 100: from 10.10.0.0/24 lookup table 100") in found


def test_the_lab_takes_a_static_wan_from_the_policy(site: Site) -> None:
    from cell.lab.plan import GW_SIDE, plan_lab

    plan = plan_lab(load_policy(site.root))
    assert (plan.wan_static, plan.wan_gateway_side) == (False, GW_SIDE)  # the lab plays DHCP
    assert [v.port for v in plan.vlans] == ["vlan10", "vlan20", "vlan30", "vlan40"]
    site.edit(
        "network.yaml",
        "  trunk: eth0\n",
        "  trunk: eth0\n  wan: {address: 192.0.2.2, prefixlen: 30, gateway: 192.0.2.1}\n",
    )
    plan = plan_lab(load_policy(site.root))
    assert plan.wan_static and (plan.wan_gateway_side, plan.wan_side) == ("192.0.2.2", "192.0.2.1")

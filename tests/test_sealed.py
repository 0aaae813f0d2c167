"""Sealed mode (`site.mode: sealed`): validation refuses everything that would leave, the compiled
ruleset has no path to the WAN, and in a lab the probes (and a sniffer on the WAN link) prove that
nothing leaves, from any VLAN or from the Cell itself.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from firewall.compile import compile_ruleset
from firewall.nfttext import render_text
from firewall.probes import compile_probes
from firewall_sites import EXAMPLE, seal
from policies import Policy, load_policy
from policies.errors import PolicyError
from test_firewall_compile import evaluate

if TYPE_CHECKING:
    from cell.lab import LabInfo
    from conftest import Site


@pytest.fixture
def sealed(tmp_path: Path) -> Path:
    root = tmp_path / "sealed"
    shutil.copytree(EXAMPLE, root)
    return seal(root)


def _errors(root: Path) -> list[str]:
    r = subprocess.run(
        [sys.executable, "-m", "cell.cli", "validate", "--repo", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    return [ln.removeprefix(f"{root}/") for ln in r.stderr.splitlines() if ": " in ln]


def test_a_sealed_site_validates_and_says_so(sealed: Path) -> None:
    p = load_policy(sealed)
    assert p.sealed and p.site.site.mode == "sealed" and p.site.hub is None
    assert load_policy(EXAMPLE).site.site.mode == "connected"
    r = subprocess.run(
        [sys.executable, "-m", "cell.cli", "validate", "--repo", str(sealed), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and json.loads(r.stdout)["mode"] == "sealed", r.stderr


def test_validation_refuses_everything_that_would_leave(site: Site) -> None:
    site.edit("site.yaml", "  name: Lisbon", "  mode: sealed\n  name: Lisbon")
    errors = _errors(site.root)
    hub_line = site.line_of("site.yaml", "hub:")
    assert any(e.startswith(f"site.yaml:{hub_line}:") and "remove `hub:`" in e for e in errors)
    assert any(e.startswith("mqtt.yaml:") and "bridge:" in e for e in errors)
    up = site.line_of("mqtt.yaml", '"site/+/events/#"')
    down = site.line_of("mqtt.yaml", '"hub/commands/#"')
    for line in (up, down):
        assert any(e.startswith(f"mqtt.yaml:{line}:") and "sealed" in e for e in errors), errors
    for needle in ("to: wan,", "to: hub.bridge}", "to: hub.management}"):
        line = site.line_of("network.yaml", needle)
        assert any(e.startswith(f"network.yaml:{line}:") and "sealed" in e for e in errors), (
            needle,
            errors,
        )
    line = site.line_of("network.yaml", "resolvers:")
    assert any(e.startswith(f"network.yaml:{line}:") and "resolver" in e for e in errors)
    # Every one names its column too.
    assert all(len(e.split(":", 3)) == 4 and e.split(":")[2].isdigit() for e in errors)


def test_a_connected_site_still_needs_its_hub(sealed: Path) -> None:
    text = (sealed / "site.yaml").read_text().replace("  mode: sealed\n", "")
    (sealed / "site.yaml").write_text(text)
    with pytest.raises(PolicyError) as e:
        load_policy(sealed)
    assert "hub" in str(e.value) and "sealed" in str(e.value)


def test_sealed_dns_only_through_the_sinkhole(sealed: Path) -> None:
    net = (sealed / "network.yaml").read_text()
    net = net.replace("  - {from: laptop,  to: gateway, service: ssh}\n",
                      "  - {from: laptop,  to: gateway, service: ssh}\n"
                      "  - {from: ops,     to: gateway, service: dns}\n")  # fmt: skip
    (sealed / "network.yaml").write_text(net)
    errors = _errors(sealed)
    assert any("dns.sinkhole" in e and "'ops'" in e for e in errors), errors


def _wan_places(p: Policy) -> list[str]:
    return ["198.51.100.7", "203.0.113.53", "198.19.0.10", "198.19.0.99", "8.8.8.8"]


def test_the_sealed_ruleset_has_no_path_to_the_wan(sealed: Path) -> None:
    p = load_policy(sealed)
    objects = compile_ruleset(p)
    wan = p.network.wan.interface
    chains = {o["chain"]["name"]: o["chain"] for o in objects if "chain" in o}
    assert "postrouting" not in chains  # no NAT: nothing leaves to be translated
    # Nothing in a set or map names the WAN link: no conntrack pair, no allow, no hub, no DNS.
    for o in objects:
        for kind in ("set", "map"):
            if kind in o:
                assert wan not in repr(o[kind].get("elem", [])), o[kind]["name"]
    names = {o[k]["name"] for o in objects for k in ("set", "map") if k in o}
    assert not names & {"resolvers", "hub_bridge", "hub_mgmt_0", "fwd_hub_bridge"}
    # The first rule of output drops the WAN link; forward drops it per VLAN before conntrack.
    rules = [o["rule"] for o in objects if "rule" in o]
    output = [r for r in rules if r["chain"] == "output"]
    assert {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": wan}} in output[0][
        "expr"
    ]
    forward = [r for r in rules if r["chain"] == "forward"][: 2 * len(p.network.vlans)]
    assert all({"drop": None} in r["expr"] or "log" in str(r["expr"]) for r in forward)
    # Every accept rule that names an output interface names a VLAN's, never the WAN's.
    for r in rules:
        if {"accept": None} in r["expr"] and r["chain"] in ("input", "forward", "output"):
            assert f'"{wan}"' not in repr(r["expr"]).replace("'", '"'), r
    # And the interpreter: every VLAN host, every VLAN, the Cell itself, to the WAN: dropped.
    sources: list[tuple[str, dict[str, Any]]] = []
    for v in p.network.vlans:
        free = str(ipaddress.IPv4Network(v.subnet).network_address + 200)
        sources += [("forward", {"iifname": v.interface, "saddr": a}) for a in (v.gateway, free)]
    sources += [("forward", {"iifname": p.vlans[h.vlan].interface, "saddr": h.address})
                for h in p.network.hosts]  # fmt: skip
    sources.append(("output", {"saddr": "198.18.0.2"}))
    for chain, src in sources:
        for dst in _wan_places(p):
            for port, proto in [
                (443, "tcp"),
                (53, "udp"),
                (53, "tcp"),
                (8883, "tcp"),
                (123, "udp"),
            ]:
                pkt = {**src, "oifname": wan, "daddr": dst, "l4proto": proto, "dport": port}
                assert evaluate(objects, chain, pkt)[0] == "drop", (chain, pkt)
    render_text(objects)  # the printer writes it


def test_sealed_renders_no_bridge_and_forwards_no_dns(sealed: Path) -> None:
    from cell.artifacts import render_all

    files = render_all(load_policy(sealed))
    bridge = files["mosquitto/conf.d/bridge.conf"].decode()
    assert "connection " not in bridge and "address " not in bridge and "sealed" in bridge
    resolver = files["dnsmasq/resolver.conf"].decode()
    assert "server=" not in resolver and "resolv-file" not in resolver and "no-resolv" in resolver


def test_sealed_probes_cover_every_vlan_and_the_cell_itself(sealed: Path) -> None:
    p = load_policy(sealed)
    probes = compile_probes(p)
    out = [x for x in probes if x.to.vlan is None]
    assert out and all(x.expect == "drop" and x.counter and x.counter.endswith(".wan") for x in out)
    sources = {x.source.vlan or x.source.name for x in out}
    assert sources == {*p.vlans, "gateway"}
    gateway = {(x.port, x.proto) for x in out if x.source.name == "gateway"}
    assert (53, "udp") in gateway and (443, "tcp") in gateway and len(gateway) >= 6


# --- in the lab: nothing leaves (root) ------------------------------------------------------------


@pytest.fixture(scope="module")
def sealed_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Policy, LabInfo]]:
    from cell.deploy.install import apply_lab
    from cell.lab import lab_down, lab_up
    from labsite import make_site, new_id

    site_id = new_id()
    repo = seal(make_site(tmp_path_factory.mktemp("sealed"), site_id))
    policy = load_policy(repo)
    try:
        yield policy, lab_up(policy, apply=apply_lab)
    finally:
        lab_down(site_id)


@pytest.mark.root
def test_in_the_lab_probes_prove_nothing_leaves(sealed_lab: tuple[Policy, LabInfo]) -> None:
    from cell.verify.prober import Env, run_probes
    from test_firewall_forged import sniffing

    policy, info = sealed_lab
    with sniffing(info) as sniffer:
        run = run_probes(compile_probes(policy), Env(info.gateway, info.vlan_netns, info.outside))
        frames = list(sniffer.frames)
    assert run.ok, run.failed
    out = [r for r in run.results if r.to in {"wan", "phone-home", "outside-resolver"}
           or r.to.startswith(("wan:", "phone-home:", "outside-resolver:"))]  # fmt: skip
    assert len(out) >= 6 * (len(policy.vlans) + 1)
    # Not one IPv4 packet from the site's side on the WAN link (the WAN side sends none either).
    ipv4 = [f for f in frames if f[12:14] == b"\x08\x00"]
    assert ipv4 == [], [f[26:34].hex() for f in ipv4[:5]]

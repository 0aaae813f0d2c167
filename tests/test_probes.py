"""The probe matrix (pure): unique ids, a free probe address on VLANs without hosts."""

from __future__ import annotations

from pathlib import Path

from conftest import Site
from firewall.probes import compile_probes
from policies import load_policy


def test_ids_are_unique_and_dns_at_other_gateways_is_probed(example: Path) -> None:
    probes = compile_probes(load_policy(example))
    ids = [p.id for p in probes]
    assert len(ids) == len(set(ids))
    assert "cam-01>gateway@10.40.0.1:53/udp" in ids
    assert all(p.counter for p in probes if p.expect == "drop")


def test_hostless_vlan_probes_from_a_free_address(site: Site) -> None:
    site.edit(
        "network.yaml",
        "hosts:\n",
        "  - {name: guest, id: 50, interface: eth0.50, subnet: 10.50.0.0/24, gateway: 10.50.0.254}\nhosts:\n",
    )
    probes = compile_probes(load_policy(site.root))
    sources = {p.source.address for p in probes if p.source.vlan == "guest"}
    assert sources == {"10.50.0.253"}

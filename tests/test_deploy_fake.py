"""Apply and restore on the fake nftables backend: the stages of `cell.deploy.install`, no root.

The kernel tests (test_firewall_apply, test_lifecycle, test_crash) prove the same promises with
real nftables and processes; these pin the logic between the seams: what is checked before
anything is touched, what a failure puts back, and what the report says.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cell.deploy.install import Prepared, install, prepare
from cell.errors import ApplyError
from conftest import Site
from fakegateway import Gateway, fake_gateway
from firewall.document import canonical, objects_of
from firewall.fake import FakeNft
from firewall.nft import FirewallError
from policies import Policy, load_policy
from policies.layout import RULESET_JSON as RULESET


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    return fake_gateway(tmp_path, monkeypatch)


@pytest.fixture
def policy(example: Path) -> Policy:
    return load_policy(example)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_prepare_renders_and_checks_and_touches_nothing(gw: Gateway, policy: Policy) -> None:
    prepared = prepare(policy, gw.target)
    assert isinstance(prepared, Prepared) and prepared.target is gw.target
    assert prepared.ruleset == json.loads(prepared.files[RULESET])
    assert set(prepared.digests) == set(prepared.files) - {"manifest.json"}
    assert gw.nft.calls == ["check"] and gw.mosquitto_checks == ["ok"]
    assert gw.nft.table is None and not gw.target.config.exists()
    assert gw.services.actions == []


def test_install_makes_it_live_and_reads_it_back(gw: Gateway, policy: Policy) -> None:
    prepared = prepare(policy, gw.target)
    report = install(prepared)
    assert canonical(gw.nft.list_table()) == canonical(objects_of(prepared.files[RULESET]))
    assert _tree(gw.target.config) == prepared.files
    assert report.broker == "started" and report.dnsmasq == "sinkhole restarted, resolver restarted"
    assert report.changed == sorted(prepared.files)
    assert len(gw.nft.applied) == 1

    again = install(prepare(policy, gw.target), baseline=prepared.digests)
    assert (again.broker, again.dnsmasq) == ("unchanged", "unchanged")
    assert again.changed == ["manifest.json"]  # the journal's digests leave the manifest out


def test_a_refused_check_stops_before_anything_is_installed(gw: Gateway, policy: Policy) -> None:
    gw.nft.fail_check("Error: Could not process rule: No such file or directory")
    with pytest.raises(FirewallError, match="nftables check failed: Error: Could not process"):
        prepare(policy, gw.target)
    assert not gw.target.config.exists() and gw.nft.table is None
    assert gw.services.actions == [] and gw.nft.calls == ["check"]


def _edited(site_root: Path) -> Policy:
    path = site_root / "site.yaml"
    path.write_text(path.read_text().replace("address: hub.example.eu", "address: 198.51.100.7"))
    return load_policy(site_root)


def test_a_failed_apply_puts_files_table_and_counters_back(
    gw: Gateway, policy: Policy, site: Site
) -> None:
    first = prepare(policy, gw.target)
    install(first)
    counter = next(o["counter"]["name"] for o in gw.nft.table or [] if "counter" in o)
    gw.nft.count(counter, 7)
    table, files = gw.nft.list_table(), _tree(gw.target.config)
    before = list(gw.services.actions)

    changed = prepare(_edited(site.root), gw.target)
    assert changed.files[RULESET] != first.files[RULESET]
    gw.nft.fail_apply("Error: Could not process rule: Device or resource busy")
    with pytest.raises(ApplyError) as exc:
        install(changed)
    assert str(exc.value).startswith("apply failed, previous configuration restored: ")
    assert "Device or resource busy" in str(exc.value)
    assert _tree(gw.target.config) == files  # byte for byte
    assert gw.nft.list_table() is not None
    assert canonical(gw.nft.list_table()) == canonical(table)
    assert gw.nft.read_counters()[counter] == 7  # the restore keeps counter values
    assert gw.services.actions == before  # the table failed before any service was touched


def test_a_failed_read_back_restarts_services_on_the_old_files(
    gw: Gateway, policy: Policy, site: Site
) -> None:
    install(prepare(policy, gw.target))
    files = _tree(gw.target.config)
    changed = prepare(_edited(site.root), gw.target)
    gw.services.broker_dies = True
    mark = len(gw.services.actions)
    with pytest.raises(ApplyError, match="read-back: not running after the apply: broker"):
        install(changed)
    assert _tree(gw.target.config) == files
    assert canonical(gw.nft.list_table()) == canonical(objects_of(files[RULESET]))
    install_did = ["stop resolver", "start resolver", "stop broker", "start broker"]
    restore_did = ["stop resolver", "start resolver", "start broker"]  # on the old files
    assert gw.services.actions[mark:] == install_did + restore_did


def test_a_first_apply_that_fails_leaves_no_table(gw: Gateway, policy: Policy) -> None:
    prepared = prepare(policy, gw.target)
    gw.services.broker_dies = True
    with pytest.raises(ApplyError, match="previous configuration restored"):
        install(prepared)
    assert gw.nft.list_table() is None
    assert "delete_table" in gw.nft.calls
    assert _tree(gw.target.config) == {}


def test_the_fake_names_the_offending_command(policy: Policy, gw: Gateway) -> None:
    doc = prepare(policy, gw.target).ruleset
    broken = {"nftables": [*doc["nftables"], {"add": {"rule": {
        "family": "inet", "table": "cell", "chain": "nope", "expr": []}}}]}  # fmt: skip
    nft = FakeNft()
    with pytest.raises(FirewallError) as exc:
        nft.apply(broken)
    assert "chain nope" in str(exc.value) and exc.value.part == broken["nftables"][-1]
    assert nft.table is None and nft.applied == []
    with pytest.raises(FirewallError, match="only table inet cell"):
        nft.check({"nftables": [{"add": {"table": {"family": "ip", "name": "other"}}}]})
    with pytest.raises(FirewallError, match="not an nftables document"):
        nft.check(b"[1, 2]")

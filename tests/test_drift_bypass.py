"""Drift that works around Cell's own table or files: another nftables table, and a config file
Cell did not render in mosquitto's include directory. Both could let data leave the site while
Cell's own table and files are untouched, so both are drift; an apply removes the stray file."""

from __future__ import annotations

from pathlib import Path

import pytest

from cell.lab import LabInfo
from firewall import netns
from test_drift import drift, lab, site  # noqa: F401  (the drift lab and its signed site)
from test_lifecycle import Site
from test_trust import Keys

pytestmark = pytest.mark.root


def test_another_table_is_drift(site: Site, lab: tuple[str, LabInfo, Keys]) -> None:
    _, info, _ = lab
    assert drift(site)[0] == 0
    netns.run(info.gateway, ["nft", "add table netdev sneaky"], check=True)
    try:
        code, doc = drift(site)
        assert code == 3
        (f,) = doc["findings"]
        assert f["kind"] == "nftables" and "table netdev sneaky exists" in f["what"]
        assert doc["table"]["state"] == "applied"  # Cell's own table is untouched
    finally:
        netns.run(info.gateway, ["nft", "delete table netdev sneaky"], check=True)
    assert drift(site)[0] == 0


def test_stray_include_file_is_drift_and_apply_removes_it(
    site: Site, lab: tuple[str, LabInfo, Keys]
) -> None:
    _, info, _ = lab
    stray = Path(info.layout.config) / "mosquitto/conf.d/zz-extra.conf"
    stray.write_text("# a second bridge would go here\n")
    code, doc = drift(site)
    assert code == 3
    assert any("zz-extra.conf is not a file Cell rendered" in f["what"] for f in doc["findings"])
    site.repo.toggle_ntp(on=False)
    site.repo.commit("narrow ntp")
    site.apply()
    assert not stray.exists()
    assert drift(site)[0] == 0


def test_hand_added_hub_address_is_drift(site: Site, lab: tuple[str, LabInfo, Keys]) -> None:
    _, info, _ = lab
    assert drift(site)[0] == 0
    netns.run(info.gateway, ["nft", "add element inet cell hub_bridge { 198.19.0.99 }"], check=True)
    try:
        code, doc = drift(site)
        assert code == 3
        (f,) = doc["findings"]
        assert "hub_bridge admits 198.19.0.99" in f["what"] and "hub.example.eu" in f["what"]
    finally:
        netns.run(
            info.gateway, ["nft", "delete element inet cell hub_bridge { 198.19.0.99 }"], check=True
        )
    assert drift(site)[0] == 0


def test_a_hidden_include_file_is_drift_too(site: Site, lab: tuple[str, LabInfo, Keys]) -> None:
    """mosquitto loads every `*.conf` in its include directory, dot-files included: a hidden
    second bridge must not hide from drift."""
    _, info, _ = lab
    hidden = Path(info.layout.config) / "mosquitto/conf.d/.bridge2.conf"
    hidden.write_text("connection sneaky\naddress 198.19.0.99:1883\ntopic # out 0\n")
    try:
        code, doc = drift(site)
        assert code == 3
        assert any(
            ".bridge2.conf is not a file Cell rendered" in f["what"] for f in doc["findings"]
        )
    finally:
        hidden.unlink(missing_ok=True)
    assert drift(site)[0] == 0

"""site.timezone: an IANA name, default UTC, a located error otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import EXAMPLE
from policies import load_policy
from policies.errors import PolicyError


def with_zone(tmp_path: Path, zone: str) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    site = repo / "site.yaml"
    text = site.read_text().replace(
        "  name: Lisbon warehouse", f"  name: Lisbon warehouse\n  timezone: {zone}"
    )
    site.write_text(text)
    return repo


def test_default_is_utc() -> None:
    assert load_policy(EXAMPLE).site.site.timezone == "UTC"


def test_an_iana_zone_is_kept(tmp_path: Path) -> None:
    assert load_policy(with_zone(tmp_path, "Europe/Lisbon")).site.site.timezone == "Europe/Lisbon"


@pytest.mark.parametrize("zone", ["Europe/Lisbonn", "../../etc/passwd", "UTC+1", "Mars/Base"])
def test_a_bad_zone_is_a_located_error(tmp_path: Path, zone: str) -> None:
    with pytest.raises(PolicyError) as e:
        load_policy(with_zone(tmp_path, zone))
    assert "site.yaml:6:" in str(e.value)
    assert "not an IANA time zone" in str(e.value)

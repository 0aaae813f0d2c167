from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from policies import Policy

EXAMPLE = Path(__file__).resolve().parents[1] / "site-config-example"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="rewrite golden folders from the renderers"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces, nftables)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


class Site:
    """A writable copy of the example site, edited by text replacement so positions are known."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def text(self, name: str) -> str:
        return (self.root / name).read_text()

    def write(self, name: str, text: str) -> None:
        (self.root / name).write_text(text)

    def edit(self, name: str, old: str, new: str) -> None:
        text = self.text(name)
        assert old in text, f"{old!r} not in {name}"
        self.write(name, text.replace(old, new, 1))

    def line_of(self, name: str, needle: str) -> int:
        for i, line in enumerate(self.text(name).splitlines(), start=1):
            if needle in line:
                return i
        raise AssertionError(f"{needle!r} not in {name}")


@pytest.fixture
def site(tmp_path: Path) -> Site:
    root = tmp_path / "site"
    shutil.copytree(EXAMPLE, root)
    return Site(root)


@pytest.fixture
def example() -> Path:
    return EXAMPLE


SiteFactory = Callable[[], Site]


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[Policy, Path]]:
    """A lab-ready copy of the example with its own site id; its lab is removed afterwards."""
    from cell.lab import lab_down
    from labsite import make_site, new_id
    from policies import load_policy

    site_id = new_id()
    repo = make_site(tmp_path, site_id)
    try:
        yield load_policy(repo), repo
    finally:
        lab_down(site_id)

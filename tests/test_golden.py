"""Golden folders: every renderer's output for each scenario, byte for byte.

    tests/golden/SCENARIO/repo/       the policy (the `example` scenario uses site-config-example/)
    tests/golden/SCENARIO/expected/   every rendered file, manifest.json included

A change in output fails here with a unified diff; after reviewing it, regenerate on purpose:
`make golden` (pytest tests/test_golden.py --update-golden), and commit the diff.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest

from cell.artifacts import render_all
from conftest import EXAMPLE
from policies import load_policy

GOLDEN = Path(__file__).resolve().parent / "golden"
SCENARIOS = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and p.name != "console")


def _repo(name: str) -> Path:
    return EXAMPLE if name == "example" else GOLDEN / name / "repo"


def test_at_least_four_scenarios() -> None:
    assert len(SCENARIOS) >= 4


@pytest.mark.parametrize("name", SCENARIOS)
def test_golden(name: str, request: pytest.FixtureRequest) -> None:
    files = render_all(load_policy(_repo(name)))
    expected_dir = GOLDEN / name / "expected"
    if request.config.getoption("--update-golden"):
        shutil.rmtree(expected_dir, ignore_errors=True)
        for rel, data in files.items():
            (expected_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / rel).write_bytes(data)
        return
    on_disk = {str(p.relative_to(expected_dir)) for p in expected_dir.rglob("*") if p.is_file()}
    assert on_disk == set(files), (
        f"files differ: missing {set(files) - on_disk}, extra {on_disk - set(files)}"
    )
    for rel, data in files.items():
        want = (expected_dir / rel).read_bytes()
        if want != data:
            diff = difflib.unified_diff(
                want.decode().splitlines(),
                data.decode().splitlines(),
                f"expected/{rel}",
                f"rendered/{rel}",
                lineterm="",
            )
            pytest.fail(f"{name}: {rel} differs from golden:\n" + "\n".join(list(diff)[:80]))


@pytest.mark.parametrize("name", SCENARIOS)
def test_render_is_deterministic(name: str) -> None:
    policy = load_policy(_repo(name))
    assert render_all(policy) == render_all(load_policy(_repo(name)))

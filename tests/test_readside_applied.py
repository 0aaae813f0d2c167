"""Issue 10, class 8: a read-side command judges against what is applied (the journal's commit,
from the Cell's store), never against the repo's work tree. An edit nobody committed, signed or
applied must not change what `cell bridge status` counts or calls an incident.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cell.lab import LabInfo
from test_lifecycle import Site, lab  # noqa: F401  (the lifecycle lab's fixture)
from test_trust import Keys

pytestmark = pytest.mark.root


@pytest.fixture
def site(lab: tuple[str, LabInfo, Keys], tmp_path: Path) -> Iterator[Site]:
    site_id, _, keys = lab
    yield Site(tmp_path, keys, site_id)


def _patterns(site: Site) -> dict[str, str]:
    r = site.run("bridge", "status", "--json")
    assert r.returncode in (0, 3), r.stderr
    assert "Traceback" not in r.stderr
    return {x["pattern"]: x["direction"] for x in json.loads(r.stdout)["rules"]}


def test_bridge_status_judges_by_the_applied_commit_not_the_work_tree(site: Site) -> None:
    site.apply()
    applied = _patterns(site)
    assert applied["site/+/snapshots/#"] == "never"
    # Uncommitted: raw imagery made an up topic, and a new rule.
    site.repo.edit(
        "mqtt.yaml",
        '{pattern: "site/+/snapshots/#",      direction: never, tier: 1, reason: raw imagery}',
        '{pattern: "site/+/snapshots/#",      direction: local}\n'
        '  - {pattern: "extra/#",             direction: up,    qos: 1}',
    )
    assert _patterns(site) == applied
    # Committed and signed, but not applied: still the applied commit's view.
    site.repo.commit("not applied yet", key="ana")
    assert _patterns(site) == applied
    site.apply()
    now = _patterns(site)
    assert now["site/+/snapshots/#"] == "local" and now["extra/#"] == "up"

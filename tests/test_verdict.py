"""The verdict is pure: every combination of check states, and what the status document says."""

from __future__ import annotations

import itertools
import json

import pytest

from cell.status.checks import CHECK_NAMES, Check
from cell.status.document import StatusDoc
from cell.status.verdict import verdict
from policies.clock import iso

NOW = 1_796_000_000.0
STATES = ("ok", "ok_stale", "failed", "failed_stale", "missing")


def make(name: str, state: str) -> Check | None:
    if state == "missing":
        return None
    age = 120.0 if state.endswith("stale") else 5.0
    return Check(
        ok=state.startswith("ok"), ts=iso(NOW - age), detail=f"{name} {state}", fresh_for=60.0
    )


def test_every_combination_of_states() -> None:
    for combo in itertools.product(STATES, repeat=len(CHECK_NAMES)):
        checks = {
            n: c for n, s in zip(CHECK_NAMES, combo, strict=True) if (c := make(n, s)) is not None
        }
        v = verdict(checks, NOW)
        if all(s == "ok" for s in combo):
            assert v.verdict == "sovereign" and v.reasons == []
        elif any(s.startswith("failed") for s in combo):
            assert v.verdict == "at_risk", combo
        else:
            assert v.verdict == "unknown", combo
        bad = [n for n, s in zip(CHECK_NAMES, combo, strict=True) if s != "ok"]
        assert [r.split(":", 1)[0] for r in v.reasons if r] == sorted(
            bad,
            key=lambda n: (
                {"failed": 0, "failed_stale": 0, "ok_stale": 1, "missing": 2}[
                    combo[CHECK_NAMES.index(n)]
                ],
                CHECK_NAMES.index(n),
            ),
        ), combo


def test_stale_green_is_never_green_and_says_since_when() -> None:
    checks = {n: make(n, "ok") for n in CHECK_NAMES}
    checks["segregation"] = make("segregation", "ok_stale")
    v = verdict({k: c for k, c in checks.items() if c}, NOW)
    assert v.verdict == "unknown"
    assert v.reasons == [
        f"segregation: stale since {iso(NOW - 60, 'seconds')} (last: segregation ok_stale)"
    ]


def test_the_deadline_is_inclusive() -> None:
    c = Check(ok=True, ts=iso(NOW - 60), detail="held", fresh_for=60.0)
    assert c.is_fresh(NOW) and not c.is_fresh(NOW + 0.01)


def test_required_narrows_what_the_verdict_needs() -> None:
    checks = {"trust": Check(ok=True, ts=iso(NOW), detail="signed", fresh_for=10)}
    assert verdict(checks, NOW, required=("trust",)).verdict == "sovereign"
    assert verdict(checks, NOW).verdict == "unknown"


def test_status_document_shape_and_unknown_keys() -> None:
    checks = {n: c for n in CHECK_NAMES if (c := make(n, "ok"))}
    doc = StatusDoc(
        site="lisbon-01",
        ts=iso(NOW),
        verdict="sovereign",
        reasons=[],
        commit="ab" * 20,
        dns_blocked_today=847,
        checks=checks,
    ).to_doc()
    assert doc["schema"] == "cell.status/1"
    assert set(doc) >= {
        "schema",
        "site",
        "ts",
        "verdict",
        "reasons",
        "commit",
        "dns_blocked_today",
        "checks",
    }
    assert set(doc["checks"]) == set(CHECK_NAMES)
    assert set(doc["checks"]["trust"]) >= {"ok", "ts", "detail"}
    newer = json.loads(json.dumps(doc)) | {"future_key": 1}
    newer["checks"]["trust"]["future"] = True
    assert StatusDoc.model_validate(newer).verdict == "sovereign"
    with pytest.raises(ValueError):
        StatusDoc.model_validate(doc | {"schema": "cell.status/9"})

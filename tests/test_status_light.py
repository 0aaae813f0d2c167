"""The status records are what the daemon publishes and the console shows: importing them must
load nothing heavy (no nftables, pyroute2, paho, textual), and they refuse unknown fields."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from cell.status.apply import ApplyOutcome, Changes, ServiceReport

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("nftables", "pyroute2", "paho", "textual", "firewall", "bridge")


def test_importing_the_status_records_loads_nothing_heavy() -> None:
    code = (
        "import sys; import cell.status.apply; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(SRC)}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_records_refuse_unknown_fields_and_round_trip() -> None:
    with pytest.raises(ValidationError, match="extra"):
        ServiceReport(broker="started", dnsmasq="unchanged", pid=3)  # type: ignore[call-arg]
    out = ApplyOutcome(
        kind="apply",
        commit="a" * 40,
        subject="s",
        changes=Changes(changed=["nftables/ruleset.json"]),
        services=ServiceReport(broker="started", dnsmasq="unchanged"),
    )
    assert ApplyOutcome.model_validate_json(out.model_dump_json()) == out
    with pytest.raises(ValidationError):
        ApplyOutcome.model_validate({**out.model_dump(), "kind": "deploy"})

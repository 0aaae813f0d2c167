"""packaging/systemd/cell.service: `systemd-analyze verify` accepts it (and is shown to reject a
unit with a mistake, so the check can fail), and it keeps what the daemon needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "packaging" / "systemd" / "cell.service"


def verify(unit: Path) -> str:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0 and "Failed to" in r.stderr and unit.name not in r.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {r.stderr.strip()[:200]}")
    return (r.stdout + r.stderr).strip()


def installed(tmp_path: Path, text: str) -> Path:
    """The unit as installed, its ExecStart pointing at this checkout's `cell`."""
    cell = Path(sys.executable).with_name("cell")
    unit = tmp_path / "cell.service"
    unit.write_text(text.replace("/opt/cell/bin/cell", str(cell)))
    return unit


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    bad = installed(tmp_path, UNIT.read_text().replace("Type=notify", "Typ=notify"))
    assert "Unknown key 'Typ'" in verify(bad)  # the check can fail
    unit = installed(tmp_path, UNIT.read_text())
    out = verify(unit)
    assert "cell.service" not in out, out


def test_the_unit_keeps_what_the_daemon_needs() -> None:
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key] = value
    assert settings["Type"] == "notify" and settings["Restart"] == "on-failure"
    assert settings["WatchdogSec"] and settings["NotifyAccess"] == "main"
    caps = settings["CapabilityBoundingSet"].split()
    assert {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"} <= set(caps)
    assert "AF_NETLINK" in settings["RestrictAddressFamilies"]
    assert "AF_PACKET" in settings["RestrictAddressFamilies"]
    assert "/var/lib/cell" in settings["ReadWritePaths"]
    text = UNIT.read_text()
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "RestrictNamespaces"):
        # every hardening setting carries its reason on the comment lines just above it
        before = text.split(f"\n{key}=")[0].splitlines()[-1]
        assert before.startswith("#"), key

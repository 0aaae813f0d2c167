"""The lab captures its gateway's WAN link as a Cell does: `python -m cell.verify.capture` in the
gateway's namespace, writing the ring into the gateway's state directory. `cell lab down` stops
it with every other process of the lab's namespaces."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cell.lab.errors import LabError
from cell.lab.processes import Listen, Proc, alive, start
from cell.verify.coverage import CoverageLog
from cell.verify.ring import CAPTURE_DIR
from policies import Policy


def capture_dir(state_dir: str) -> Path:
    return Path(state_dir) / CAPTURE_DIR


def start_lab_capture(
    policy: Policy, netns: str, interface: str, state_dir: str, logs: Path, timeout: float = 15.0
) -> list[tuple[Proc, list[Listen]]]:
    """Start the capture when `capture.wan.enabled`; return once dumpcap writes (or raise)."""
    cw = policy.network.capture.wan
    if not cw.enabled:
        return []
    ring = capture_dir(state_dir)
    argv = [
        sys.executable,
        "-m",
        "cell.verify.capture",
        "--dir",
        str(ring),
        "--interface",
        interface,
        "--rotate",
        cw.rotate,
        "--retention",
        cw.retention,
        "--max-disk",
        cw.max_disk,
    ]
    proc = start("capture", netns, argv, logs / "capture.log")
    log = CoverageLog(ring)
    deadline = time.monotonic() + timeout
    while not any(e["event"] == "start" for e in log.read()):
        if not alive(proc.pid):
            tail = Path(proc.log).read_text(errors="replace").strip().splitlines()[-3:]
            raise LabError(f"the WAN capture exited while starting: {' | '.join(tail)}")
        if time.monotonic() > deadline:
            raise LabError(f"the WAN capture wrote nothing within {timeout:.0f} s")
        time.sleep(0.05)
    return [(proc, [])]

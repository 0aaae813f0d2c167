"""The lab runs `cell run` in its gateway, as a Cell runs it under systemd: `python -m cell.cli
run` born in the gateway's namespace, its output in the lab's log directory. `cell lab down`
stops it with every other process of the lab's namespaces (SIGTERM first: it says offline)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cell.lab.errors import LabError
from cell.lab.processes import Listen, Proc, alive, start
from policies import Policy
from policies.layout import DAEMON_LOG, STATUS_JSON

READY_TIMEOUT = 20.0


def daemon_argv(repo: str, state_dir: str, metrics: str = "127.0.0.1:9817") -> list[str]:
    return [
        sys.executable,
        "-m",
        "cell.cli",
        "run",
        "--repo",
        repo,
        "--state-dir",
        state_dir,
        "--metrics",
        metrics,
    ]


def start_daemon(
    repo: str, netns: str, state_dir: str, logs: Path, timeout: float = READY_TIMEOUT
) -> Proc:
    """Start the daemon in `netns`; return once it wrote its first status (or raise)."""
    status = Path(state_dir) / STATUS_JSON
    t0 = time.time()
    proc = start("daemon", netns, daemon_argv(repo, state_dir), logs / DAEMON_LOG)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if status.stat().st_mtime >= t0 and b'"session"' in status.read_bytes():
                return proc
        except OSError:
            pass
        if not alive(proc.pid):
            tail = Path(proc.log).read_text(errors="replace").strip().splitlines()[-3:]
            raise LabError(f"the daemon (`cell run`) exited while starting: {' | '.join(tail)}")
        if time.monotonic() > deadline:
            raise LabError(f"the daemon (`cell run`) published no status within {timeout:.0f} s")
        time.sleep(0.05)


def start_lab_daemon(
    policy: Policy, netns: str, _interface: str, state_dir: str, logs: Path
) -> list[tuple[Proc, list[Listen]]]:
    """The `after_apply` hook of `lab_up` (cell.lab.lab.GatewayService)."""
    repo = str(Path(policy.sources["site.yaml"].file).parent)
    return [(start_daemon(repo, netns, state_dir, logs), [])]

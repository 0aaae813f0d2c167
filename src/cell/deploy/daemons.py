"""Long-running processes that Cell starts (mosquitto, dnsmasq): start, signal, stop, by pid file.

Processes are started in their own session so they outlive the `cell` command that started them,
and their pid goes to a file under the state directory: `cell` finds them again in a later run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from cell.procfs import alive
from firewall import netns as ns


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def start(
    argv: list[str], pidfile: Path, log: Path, netns: str | None, resolv_conf: str | None = None
) -> int:
    """Start `argv` detached (in `netns`), record its pid, and return it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        if netns:
            proc = ns.popen(
                netns,
                argv,
                resolv_conf=resolv_conf,
                stdout=out,
                stderr=out,
                stdin=-3,
                start_new_session=True,
            )
        else:
            import subprocess

            proc = subprocess.Popen(
                argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
            )
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def stop(pidfile: Path, timeout: float = 5.0) -> None:
    """SIGTERM the recorded process, then SIGKILL if it lingers; absent is fine."""
    pid = read_pid(pidfile)
    if pid is not None:
        signal_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.02)
        if alive(pid):
            signal_pid(pid, signal.SIGKILL)
            _reap(pid)
    pidfile.unlink(missing_ok=True)


def hup(pidfile: Path) -> bool:
    pid = read_pid(pidfile)
    if pid is None:
        return False
    signal_pid(pid, signal.SIGHUP)
    return True


def signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""

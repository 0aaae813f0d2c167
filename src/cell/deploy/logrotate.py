"""Bounded logs: every log the Cell's services write is rotated by size and kept to a few files,
so that a device flooding the broker (whose debug log records each PUBLISH) cannot fill the state
disk. Rotation renames (`log` -> `log.1` -> ... -> `log.KEEP`, the oldest dropped) and then asks
the process to reopen its file: SIGHUP for mosquitto (it also re-reads its ACL and password file,
which are unchanged), SIGUSR2 for dnsmasq. Readers that follow a log (the bridge monitor, the
sinkhole counter) follow renames: they finish the old file before the new one.

At most (KEEP + 1) x MAX_BYTES per log, whatever is published. The daemon runs `rotate_all` on a
short period; a real box also gives the state directory a filesystem of its own (docs/security.md).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from cell.deploy import daemons
from cell.deploy.services import pidfile
from cell.deploy.target import Target
from policies.layout import MOSQUITTO_LOG, dnsmasq_log

MAX_BYTES = 32 * 1024 * 1024
KEEP = 3


@dataclass(frozen=True)
class Log:
    path: Path
    pidfile: Path
    reopen: signal.Signals


def service_logs(target: Target) -> list[Log]:
    """The logs of the broker and both resolvers, with how to make each reopen its file."""
    return [
        Log(target.state / MOSQUITTO_LOG, pidfile(target, "broker"), signal.SIGHUP),
        *(
            Log(target.state / dnsmasq_log(s), pidfile(target, s), signal.SIGUSR2)
            for s in ("sinkhole", "resolver")
        ),
    ]


def rotate(path: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> bool:
    """Rotate `path` if it is larger than `max_bytes`; True if it did."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    path.with_name(f"{path.name}.{keep}").unlink(missing_ok=True)
    for n in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))
    return True


def rotate_all(target: Target, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> list[Path]:
    """Rotate every service log over `max_bytes`, and tell its process to reopen it."""
    done = []
    for log in service_logs(target):
        if rotate(log.path, max_bytes, keep):
            pid = daemons.read_pid(log.pidfile)
            if pid is not None:
                daemons.signal_pid(pid, log.reopen)
            done.append(log.path)
    return done

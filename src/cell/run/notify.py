"""sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET (nothing when it is unset).

READY=1 once the first status is published; WATCHDOG=1 only while every supervised service
meets its deadline (`Supervisor.healthy`); STATUS= a line for `systemctl status`; STOPPING=1.
"""

from __future__ import annotations

import os
import socket

NOTIFY_ENV = "NOTIFY_SOCKET"
WATCHDOG_ENV = "WATCHDOG_USEC"


def notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1\\nSTATUS=...") to systemd; False when not under systemd."""
    path = os.environ.get(NOTIFY_ENV)
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message.encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """How often to ping the watchdog (half its timeout), if systemd set one for us."""
    usec = os.environ.get(WATCHDOG_ENV)
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 / 2
    except ValueError:
        return None

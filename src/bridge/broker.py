"""Broker control: start, reload or restart mosquitto with the rendered files, doing the least
disruptive thing that is still correct.

mosquitto 2.0 re-reads its ACL and password files on SIGHUP but cannot reload a bridge (or a
listener), so a change to `mosquitto.conf` or `conf.d/bridge.conf` means a restart, a change to
only `acl` or `passwd` means a reload, and no change means nothing. The caller is told which.

How processes are started (in which network namespace, with which resolver) is not this module's
business: it goes through a `Runner`, the seam that the appliance fills and unit tests fake.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from policies.errors import CellError
from policies.layout import (
    ACL,
    BRIDGE_CONF,
    MOSQUITTO_CONF,
    MOSQUITTO_INCLUDE_DIR,
    PASSWD,
)

Action = Literal["unchanged", "started", "reloaded", "restarted"]
RESTART_FILES = (MOSQUITTO_CONF, BRIDGE_CONF)
RELOAD_FILES = (ACL, PASSWD)


class BrokerError(CellError):
    """mosquitto did not start, or did not accept its config. Carries the log's last lines."""

    exit_code = 1


class Runner(Protocol):
    def start(self, argv: list[str], pidfile: Path, log: Path) -> int: ...
    def stop(self, pidfile: Path) -> None: ...
    def hup(self, pidfile: Path) -> bool: ...
    def running(self, pidfile: Path) -> bool: ...
    def connectable(self, port: int) -> bool: ...
    def tail(self, log: Path) -> str: ...


@dataclass
class Broker:
    runner: Runner
    conf: Path
    pidfile: Path
    log: Path
    port: int
    socket: str | None = None
    """The config's unix-socket listener (`Layout.mqtt_socket`), whose directory it needs."""

    def start(self, timeout: float = 5.0) -> None:
        own_socket_dir(self.socket)
        self.runner.start(["mosquitto", "-c", str(self.conf)], self.pidfile, self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.runner.running(self.pidfile):
                break
            if self.runner.connectable(self.port):
                return
            time.sleep(0.02)
        self.runner.stop(self.pidfile)
        raise BrokerError(
            f"mosquitto did not come up with {self.conf}:\n{self.runner.tail(self.log)}"
        )

    def stop(self) -> None:
        self.runner.stop(self.pidfile)

    def update(self, changed: set[str]) -> Action:
        """Bring the running broker in line with files that changed (relative names)."""
        if not self.runner.running(self.pidfile):
            self.start()
            return "started"
        if changed & set(RESTART_FILES) or any(
            n.startswith(f"{MOSQUITTO_INCLUDE_DIR}/") for n in changed
        ):
            self.stop()
            self.start()
            return "restarted"
        if changed & set(RELOAD_FILES):
            self.runner.hup(self.pidfile)
            return "reloaded"
        return "unchanged"


def local_connectable(port: int, host: str = "127.0.0.1") -> bool:
    """Can a TCP connection be opened to `host:port` from the calling namespace?"""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def own_socket_dir(socket: str | Path | None) -> None:
    """The directory of the broker's own unix socket (`Layout.mqtt_socket`): mosquitto makes the
    socket, not its directory, and /run is empty after a reboot. Root only. (Where it cannot be
    made, mosquitto says why it cannot listen.)"""
    if socket is not None:
        with contextlib.suppress(OSError):
            Path(socket).parent.mkdir(mode=0o700, parents=True, exist_ok=True)


def check_config(
    conf: Path, port: int, log: Path, timeout: float = 5.0, socket: str | None = None
) -> None:
    """mosquitto 2.0 has no config-test flag, so run it on `conf` until it listens on `port`.

    It runs in a network namespace of its own (unshare in the child: gone with the process, even
    if we are killed), so it binds no live port and its bridge reaches nothing. Raises
    `BrokerError` with mosquitto's last words if it exits or does not listen in time.
    """
    own_socket_dir(socket)
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_own_netns,  # noqa: PLW1509
    )
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if _listens(proc.pid, port):
                return
            time.sleep(0.01)
        said = b"" if proc.poll() is None else (proc.stdout.read() if proc.stdout else b"")
        logged = log.read_bytes() if log.exists() else b""
        why = (said or logged).decode(errors="replace").strip().splitlines()[-3:]
        raise BrokerError(f"mosquitto refused the candidate config {conf}: {' | '.join(why)}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _own_netns() -> None:
    if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")


def _listens(pid: int, port: int) -> bool:
    """A TCP socket in LISTEN on `port` in the namespace of `pid` (/proc/PID/net/tcp)."""
    with contextlib.suppress(OSError):
        for row in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False

"""The bridge monitor's I/O: an observer on the local broker, a follower of its log, and the
snapshot file. Thin: every decision is in `bridge.monitor.MonitorCore`.

The observer logs in as `cell` (render.MONITOR_USER; the ACL lets it read `#` and `$SYS/#`),
with a clean session and QoS 0 subscriptions: QoS 0 is delivered as fast as the broker can write,
without the QoS 1 in-flight window that would make a slow observer drop messages sooner. It
speaks MQTT 3.1.1 through `bridge.mqttwire` rather than paho, to keep up with a busy bus (see
there). It runs in the calling network namespace: on a lab the caller enters the gateway's first
(`cell bridge monitor` does).

The follower reads the log from the start of the current file (so the link's history and every
unexpected publish in it are known at once), then what is appended; a rotated or truncated file
is read again from its start.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge import mqttwire as wire
from bridge.monitor import MonitorCore, write_snapshot
from bridge.render import MONITOR_USER
from bridge.status import BridgeStatus, UnexpectedPublish
from policies import Policy
from policies.errors import CellError

OnUnexpected = Callable[[UnexpectedPublish], None]
KEEPALIVE = 30
OBSERVER_ID = "cell-monitor"
"""The observer's client id on the Cell's own socket (`Observer.unix`), with its process id."""


class LogFollower:
    """New complete lines of a growing file, with their line numbers; survives rotation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: Any = None
        self._ino: int | None = None
        self._line = 1
        self._partial = ""

    def read(self) -> tuple[int, list[str]]:
        """(number of the first line, lines) appended since the last call; ([], ...) if none."""
        self._reopen_if_rotated()
        if self._file is None:
            return self._line, []
        chunk = self._file.read()
        if not chunk:
            return self._line, []
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()  # the last line is complete only when the text ends in \n
        first = self._line
        self._line += len(lines)
        return first, lines

    def _reopen_if_rotated(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        if self._file is not None and st.st_ino == self._ino and st.st_size >= self._file.tell():
            return
        if self._file is not None:
            self._file.close()
        self._file = self.path.open(encoding="utf-8", errors="replace", newline="\n")
        self._ino = st.st_ino
        self._line = 1
        self._partial = ""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class Observer:
    """Where the monitor looks: the local broker (host, port, password of `cell`), its log, and
    where it writes its snapshot."""

    host: str
    port: int
    password: str
    log: Path
    snapshot: Path
    interval: float = 1.0
    unix: str | None = None
    """The broker's unix-socket listener for the Cell's own clients (`Layout.mqtt_socket`): there
    the monitor keeps its own client id, so it takes no other `cell` connection's session.
    None: the network listener, where the broker names it `cell` (its login)."""


class MonitorError(CellError):
    """The monitor cannot watch: the broker refused its login, or the log is unreadable."""

    exit_code = 1


class Monitor:
    """The running monitor: `run` until `stop` is set (or `seconds` pass); the snapshot file is
    rewritten every `interval` and once more at the end. The observer runs in a thread of its
    own and reconnects when the broker restarts; the log is followed in the calling thread."""

    def __init__(
        self, policy: Policy, where: Observer, on_unexpected: OnUnexpected | None = None
    ) -> None:
        self.where = where
        self.core = MonitorCore(policy, log=str(where.log), source="monitor")
        # On the network listener the broker names a client by its login
        # (use_username_as_clientid); on the Cell's own socket it keeps the id it sends.
        # (One id per process there: two monitors, the daemon's and `cell bridge monitor`, can
        # both watch.)
        self.client_id = f"{OBSERVER_ID}-{os.getpid()}" if where.unix else MONITOR_USER
        self.core.observer_id = self.client_id
        self.on_unexpected = on_unexpected
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.stop = threading.Event()
        self.refused: str | None = None
        self.offline_why: str | None = None
        """Why the observer is off the bus, as its last connection attempt said."""

    def status(self) -> BridgeStatus:
        with self._lock:
            return self.core.snapshot(time.time(), os.getpid())

    def run(self, seconds: float | None = None) -> BridgeStatus:
        follower = LogFollower(self.where.log)
        watcher = threading.Thread(target=self._observe, name="cell-observer", daemon=True)
        deadline = None if seconds is None else time.monotonic() + seconds
        next_write = 0.0
        watcher.start()
        try:
            while not self.stop.is_set():
                self._follow(follower)
                now = time.monotonic()
                if now >= next_write:
                    write_snapshot(self.status(), self.where.snapshot)
                    next_write = now + self.where.interval
                if deadline is not None and now >= deadline:
                    break
                self.stop.wait(0.05)
            self._follow(follower)
        finally:
            self.stop.set()
            if watcher.is_alive():
                watcher.join(timeout=5)
            follower.close()
        if self.refused is not None:
            if self.refused.startswith("the observer failed"):
                raise MonitorError(self.refused)
            raise MonitorError(f"the broker refused the monitor's login 'cell': {self.refused}")
        final = self.status()
        write_snapshot(final, self.where.snapshot)
        return final

    def _follow(self, follower: LogFollower) -> None:
        first, lines = follower.read()
        if not lines:
            return
        with self._lock:
            hits = self.core.feed_log(lines, first)
        if self.on_unexpected is not None:
            for hit in hits:
                self.on_unexpected(hit)

    def _observe(self) -> None:
        """Stay subscribed to `#` and `$SYS/#` until stopped; a refused login stops the monitor."""
        backoff = 0.2
        while not self.stop.is_set():
            try:
                self._session()
                backoff = 0.2
            except (OSError, wire.ProtocolError) as e:
                if isinstance(e, ConnectionRefusedError) and str(e) in (
                    wire.CONNACK_CODES[4],
                    wire.CONNACK_CODES[5],
                ):
                    self.refused = str(e)
                    self.stop.set()
                    return
                # The broker restarted or is not up yet: try again.
                self.offline_why = getattr(e, "strerror", None) or str(e)
            except Exception as e:  # a bug: stop loudly rather than count nothing in silence
                self.refused = f"the observer failed: {type(e).__name__}: {e}"
                self.stop.set()
                return
            self.connected.clear()
            self.stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)

    def _session(self) -> None:
        w, core, lock = self.where, self.core, self._lock
        with _connect(w) as sock:
            sock.sendall(wire.connect(self.client_id, MONITOR_USER, w.password, KEEPALIVE))
            sock.settimeout(0.25)
            decoder = wire.Decoder()
            sent = time.monotonic()
            while not self.stop.is_set():
                if time.monotonic() - sent > KEEPALIVE / 2:
                    sock.sendall(wire.PINGREQ)
                    sent = time.monotonic()
                try:
                    data = sock.recv(1 << 18)
                except TimeoutError:
                    continue
                if not data:
                    raise ConnectionError("the broker closed the connection")
                batch = []
                for kind, flags, body in decoder.feed(data):
                    if kind == wire.PUBLISH:
                        m = wire.publish(flags, body)
                        batch.append(m)
                        if m.packet_id is not None:
                            sock.sendall(wire.puback(m.packet_id))
                    elif kind == wire.CONNACK:
                        refused = wire.connack_error(body)
                        if refused is not None:
                            raise ConnectionRefusedError(refused)
                        sock.sendall(wire.subscribe(1, [("#", 0), ("$SYS/#", 0)]))
                    elif kind == wire.SUBACK:
                        if any(code >= 0x80 for code in body[2:]):
                            raise ConnectionRefusedError(wire.CONNACK_CODES[5])
                        with lock:  # counting starts when the broker has the subscription
                            core.start_seen(time.time())
                        self.connected.set()
                if batch:
                    now = time.time()
                    with lock:
                        for m in batch:
                            core.observe(m.topic, m.payload, m.retain, now)
            sock.sendall(wire.DISCONNECT)


def _connect(w: Observer) -> socket.socket:
    if w.unix is None:
        return socket.create_connection((w.host, w.port), timeout=5)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5)
        sock.connect(w.unix)
    except OSError:
        sock.close()
        raise
    return sock

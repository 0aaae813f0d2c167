"""The fleet view's MQTT client of the hub's broker: thin. It subscribes to the sites' retained
documents and feeds a `FleetModel`; everything it knows is in the model.

Plain TCP unless a TLS option is given (`cafile` alone: the hub is authenticated; with
`certfile`/`keyfile`: mutual TLS). `snapshot` collects the retained messages and returns: MQTT
has no "end of retained" marker, so it waits until the messages have been quiet for `quiet`
seconds after the first one (a broker sends a subscription's retained messages in one burst
right after its SUBACK), and never longer than `wait` seconds. With no message at all it waits
the whole `wait`: a silent hub and a slow one look alike.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cell.fleet.model import Fleet, FleetModel
from policies.errors import CellError

QUIET = 0.5
"""Seconds without a new retained message after which a snapshot is complete."""
CONNECT_TIMEOUT = 5.0


class HubError(CellError):
    """The hub broker cannot be reached, or dropped the connection."""

    exit_code = 1


class HubRefused(HubError):
    """The hub refused the login, or the TLS files are unusable: bad input."""

    exit_code = 2


@dataclass(frozen=True)
class HubOptions:
    """How to reach the hub's broker."""

    host: str
    port: int
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    user: str | None = None
    password: str | None = None

    @property
    def tls(self) -> bool:
        return any((self.cafile, self.certfile, self.keyfile))

    @property
    def where(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class HubClient:
    """One connection to the hub, feeding `model` from paho's network thread. `lock` guards the
    model: hold it to read a snapshot while messages arrive."""

    def __init__(
        self,
        opts: HubOptions,
        model: FleetModel,
        on_change: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.opts, self.model, self.on_change, self.clock = opts, model, on_change, clock
        self.lock = threading.Lock()
        self.messages = 0
        self.last_message = 0.0
        """time.monotonic() of the latest message (0: none yet)."""
        self._connack: threading.Event = threading.Event()
        self._suback: threading.Event = threading.Event()
        self._refused: str | None = None
        self._lost: str | None = None
        cid = f"cell-fleet-{uuid.uuid4().hex[:8]}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True)
        c.connect_timeout = CONNECT_TIMEOUT
        if opts.user is not None:
            c.username_pw_set(opts.user, opts.password)
        if opts.tls:
            try:
                c.tls_set(ca_certs=opts.cafile, certfile=opts.certfile, keyfile=opts.keyfile)
            except (OSError, ssl.SSLError, ValueError) as e:
                raise HubRefused(f"cell fleet: the TLS files cannot be used: {e}") from None
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
        self.client = c

    # paho callbacks (its network thread) ---------------------------------------------------

    def _on_connect(self, c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self._refused = str(rc)
        else:
            # QoS 1: with QoS 0, mosquitto 2.0.11 delivered only ~76 % of 10,000 retained
            # documents to a snapshot on a loaded machine (bench/fleet.py, docs/fleet.md).
            c.subscribe([(f, 1) for f in self.model.layout.filters()])
        self._connack.set()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: Any, _rcs: Any, _p: Any) -> None:
        self._suback.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self.lock:
            site = self.model.ingest(msg.topic, msg.payload, self.clock())
            self.messages += 1
            self.last_message = time.monotonic()
        if site is not None and self.on_change is not None:
            self.on_change(site)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self._lost = str(rc)

    # the caller's side -------------------------------------------------------------------

    def start(self) -> None:
        """Connect and subscribe (paho's thread keeps the connection, and reconnects)."""
        o = self.opts
        try:
            self.client.connect(o.host, o.port, keepalive=30)
        except ssl.SSLError as e:
            raise HubError(f"cell fleet: TLS with the hub at {o.where} failed: {e}") from None
        except (OSError, socket.gaierror) as e:
            why = e.strerror or str(e) or type(e).__name__
            raise HubError(f"cell fleet: cannot reach the hub at {o.where}: {why}") from None
        self.client.loop_start()
        if not self._connack.wait(CONNECT_TIMEOUT):
            self.stop()
            raise HubError(f"cell fleet: the hub at {o.where} did not answer the login in time")
        if self._refused is not None:
            self.stop()
            raise HubRefused(f"cell fleet: the hub at {o.where} refused the login: {self._refused}")

    def wait_for_retained(self, wait: float, quiet: float = QUIET) -> None:
        """Until the retained messages have come (module doc), at most `wait` seconds."""
        end = time.monotonic() + wait
        self._suback.wait(max(0.0, end - time.monotonic()))
        while (left := end - time.monotonic()) > 0:
            with self.lock:
                last = self.last_message
            if self._lost is not None and not self.client.is_connected():
                raise HubError(f"cell fleet: the hub at {self.opts.where} dropped us: {self._lost}")
            if last and time.monotonic() - last >= quiet:
                return
            time.sleep(min(0.05, left))

    def fleet(self) -> Fleet:
        with self.lock:
            return self.model.snapshot(self.clock())

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def snapshot(opts: HubOptions, model: FleetModel, wait: float, quiet: float = QUIET) -> Fleet:
    """Connect, collect the retained documents, judge every site, disconnect."""
    client = HubClient(opts, model)
    client.start()
    try:
        client.wait_for_retained(wait, quiet)
        return client.fleet()
    finally:
        client.stop()

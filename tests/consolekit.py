"""What the console tests share: an in-process MQTT broker (amqtt, on loopback), status
documents as the daemon publishes them, a Cell's state directory with real records, and a
way to wait on the screen."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt

from cell.status.checks import CHECK_NAMES
from cell.status.probe import ProbeResult
from cell.store import ledger, open_store
from cell.store.dns import DnsEvent, Position, record_dns
from cell.store.drops import CounterValue, record_drops
from cell.store.journal import Entry, Journal, write_journal
from cell.store.probes import record_probe_run
from cell.store.statedir import State
from conftest import EXAMPLE
from policies.clock import iso
from policies.layout import BRIDGE_SNAPSHOT

FROZEN = 1_796_000_000.0  # 2026-11-30T00:53:20Z: goldens are made at this instant
COMMIT = "3f2a9c1be07d4410a9c2d5e8f60b71c2d3e4f5a6"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """amqtt in a thread of its own (own event loop), anonymous, on 127.0.0.1; `publish`
    sends as the daemon would (QoS 1, retained unless told)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="amqtt")
        self._client: mqtt.Client | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        from amqtt.broker import Broker as Amqtt

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        broker = Amqtt(config)
        await broker.start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await broker.shutdown()

    def __enter__(self) -> Broker:
        self._thread.start()
        assert self._ready.wait(10), "amqtt did not start"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-daemon")
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        self._client = client
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def publish(self, topic: str, doc: dict[str, Any] | bytes, retain: bool = True) -> None:
        assert self._client is not None
        payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)


def checks(
    now: float, failed: dict[str, str] | None = None, fresh_for: float = 300
) -> dict[str, Any]:
    failed = failed or {}
    return {
        n: {
            "ok": n not in failed,
            "ts": iso(now),
            "detail": failed.get(n, f"{n} holds"),
            "fresh_for": fresh_for,
            "since": iso(now - 3600),
        }
        for n in CHECK_NAMES
    }


def status_doc(
    now: float,
    verdict: str = "sovereign",
    reasons: list[str] | None = None,
    failed: dict[str, str] | None = None,
    fresh_for: float = 60,
    site: str = "lisbon-01",
) -> dict[str, Any]:
    failed = failed or {}
    return {
        "schema": "cell.status/1",
        "site": site,
        "ts": iso(now),
        "verdict": verdict,
        "reasons": reasons if reasons is not None else [f"{n}: {d}" for n, d in failed.items()],
        "commit": COMMIT,
        "dns_blocked_today": 847,
        "checks": checks(now, failed),
        "fresh_for": fresh_for,
        "session": "run-1",
        "services": {"drift": "running", "probes": "running"},
    }


def availability(state: str, now: float) -> dict[str, Any]:
    return {"schema": "cell.availability/1", "state": state, "ts": iso(now), "session": "run-1"}


LEAK = "drift: rule added to chain forward by nft (pid 4242)"


def at_risk(now: float) -> dict[str, Any]:
    return status_doc(
        now, "at_risk", failed={"drift": "rule added to chain forward by nft (pid 4242)"}
    )


def make_state(root: Path, now: float = FROZEN, site: Path = EXAMPLE) -> Path:
    """A Cell's state directory with real records: an applied signed commit (and its stored
    tree: the example site), ledger entries, DNS counts, drops, probe runs, a bridge snapshot."""
    state = State(root)
    tree = state.trees / COMMIT
    shutil.copytree(site, tree, ignore=shutil.ignore_patterns(".git"))
    signature = {
        "status": "good",
        "format": "ssh",
        "signer": "alice@example.org",
        "key": "SHA256:8x9kQ",
        "detail": "Good signature",
    }
    entry = Entry(
        commit=COMMIT,
        subject="cameras: no NTP from the Internet",
        signature=signature,
        digests={"nftables/ruleset.json": "ab" * 32},
        rendered="cd" * 32,
        site="lisbon-01",
        netns=None,
        layout={},
        repo="/etc/cell/site-config",
        time=iso(now - 7200),
        id="0123456789abcdef",
    )
    write_journal(state, Journal(applied=entry))
    ledger.append(state, "enroll", principals=["alice@example.org"], time=iso(now - 90000))
    ledger.append(
        state,
        "apply",
        commit=COMMIT,
        subject=entry.subject,
        signature=signature,
        changed=["nftables/ruleset.json"],
        rules={"added": ["ip saddr @cameras udp dport 123 drop"], "removed": []},
        time=iso(now - 7200),
    )
    ledger.append(
        state,
        "refusal",
        commit="9" * 40,
        subject="open cameras to the world",
        reason="untrusted",
        message="commit 999999999999 is signed by mallory@example.org, who is not trusted",
        signature={"status": "good", "format": "ssh", "signer": "mallory@example.org"},
        time=iso(now - 3600),
    )
    ledger.append(
        state,
        "drift",
        source="watch",
        keys=["nft:forward:added"],
        findings=[
            {
                "kind": "nftables",
                "what": "rule added to chain forward",
                "by": {"name": "nft", "pid": 4242},
                "diff": "+ ip saddr 10.10.0.11 accept",
            }
        ],
        time=iso(now - 1800),
    )
    ledger.append(state, "drift-resolved", source="watch", keys=[], time=iso(now - 1700))
    tz = ZoneInfo("UTC")
    with open_store(root) as store:
        events = (
            [DnsEvent(now - 600, "10.10.0.11", "telemetry.cam-vendor.example", "A")] * 412
            + [DnsEvent(now - 500, "10.10.0.12", "telemetry.cam-vendor.example", "A")] * 300
            + [DnsEvent(now - 400, "10.10.0.11", "ntp.cam-vendor.example", "AAAA")] * 135
        )
        record_dns(store, "sinkhole", events, Position(1, 1000), tz, now)
        record_drops(store, 1, {"drop_cameras.wan": CounterValue(9, 540)}, tz, now - 60)
        ok = ProbeResult.model_validate(
            {
                "from": "cam-01",
                "to": "wan:443/tcp",
                "expect": "drop",
                "got": "drop",
                "ok": True,
                "evidence": "drop_cameras.wan +1",
                "id": "cam-01>wan:443/tcp",
                "counter": "drop_cameras.wan",
            }
        )
        bad = ok.model_copy(
            update={"got": "accept", "ok": False, "evidence": "SYN-ACK from 198.19.0.99:443"}
        )
        record_probe_run(store, now - 1200, COMMIT, [bad])
        record_probe_run(store, now - 600, COMMIT, [ok])
    snapshot = {
        "site": "lisbon-01",
        "bridge": {
            "connection": "hub",
            "remote": "hub.example.eu:8883",
            "client_id": "cell-lisbon-01",
            "prefix": "sites/lisbon-01/",
        },
        "source": "monitor",
        "updated": now - 2,
        "link": {"state": "up", "since": now - 7000, "connects": 1, "disconnects": 0},
        "seen_since": now - 7000,
        "seen": {"up": 1200, "down": 3, "local": 40, "never": 0},
    }
    path = root / BRIDGE_SNAPSHOT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(snapshot))
    return root


def record_bus(path: Path, messages: list[tuple[str, dict[str, Any]]]) -> Path:
    path.write_text("".join(json.dumps({"topic": t, "payload": p}) + "\n" for t, p in messages))
    return path


async def wait_for(pilot: Any, ok: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the app run until `ok()` holds (or fail with what the screen shows)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        if ok():
            return
    raise AssertionError("timed out; the screen shows:\n" + pilot.app.screen_text())


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    import os

    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def aio(fn: Callable[..., Any]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (the suite has no asyncio plugin)."""
    import functools

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run

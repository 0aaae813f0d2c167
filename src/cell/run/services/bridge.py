"""The bridge check: the bridge monitor (bridge.observer.Monitor) under the supervisor.

The monitor follows the broker's log (what crossed, and which way) and watches the local bus as
`cell`; its snapshot goes to STATE/bridge/monitor.json as with `cell bridge monitor`, so
`cell bridge status` reads the daemon's. The check fails on any crossing against the policy
(an unexpected publish, a `never` topic seen crossing): a sovereignty incident. The link being
down is shown, not failed: a bridge that is down sends nothing.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cell.run.service import Context
from cell.run.services.base import check
from cell.run.site import SiteRef
from policies.clock import iso
from policies.layout import BRIDGE_SNAPSHOT, MOSQUITTO_LOG

if TYPE_CHECKING:
    from bridge.status import BridgeStatus, UnexpectedPublish


def bridge_check(status: BridgeStatus) -> tuple[bool, str, list[str]]:
    link = status.link
    since = f" since {iso(link.since, 'seconds')}" if link.since else ""
    crossed = f"{status.crossed.get('up', 0)} up, {status.crossed.get('down', 0)} down"
    evidence = [
        f"{u.way} {u.topic} -> {u.remote_topic} ({u.direction}, {u.rule.pattern or 'default'}): "
        f"{u.evidence.log}:{u.evidence.line}: {u.evidence.text}"
        for u in status.unexpected
    ]
    if status.unexpected_total:
        last = status.unexpected[-1] if status.unexpected else None
        what = f"; last: {last.way} on a {last.direction} topic" if last else ""
        return (
            False,
            f"{status.unexpected_total} crossings against the policy{what}",
            evidence,
        )
    return True, f"link {link.state}{since}; {crossed} crossed, all as the policy says", evidence


OFF_BUS_GRACE = 10.0
"""Seconds the monitor may be off the bus (a broker restarting under an apply) before the check
fails: off it, the monitor sees neither the link state nor what is published."""


def off_bus(socket: str | None, why: str | None, seconds: float) -> str:
    if socket is not None and not Path(socket).exists():
        return (
            f"the monitor is not on the bus: the broker has no socket for the Cell at {socket} "
            "(its config was rendered before the Cell had one: `cell apply` once renders it)"
        )
    return f"the monitor is not on the bus for {seconds:.0f} s: {why or 'no answer'}"


class BridgeService:
    name = "bridge"
    deadline = 20.0
    checks: tuple[str, ...] = ("bridge",)

    def __init__(self, ref: SiteRef) -> None:
        self.ref = ref

    def run(self, ctx: Context) -> None:
        from bridge.observer import Monitor, Observer

        site = self.ref.site
        state = Path(site.target.layout.state)
        where = Observer(
            host="127.0.0.1",
            port=site.policy.mqtt.listener.port,
            password=site.mqtt_password() or "",
            log=state / MOSQUITTO_LOG,
            snapshot=state / BRIDGE_SNAPSHOT,
            unix=site.target.layout.mqtt_socket,  # its own client beside the daemon's publisher
        )
        (state / BRIDGE_SNAPSHOT).parent.mkdir(parents=True, exist_ok=True)

        def unexpected(hit: UnexpectedPublish) -> None:
            never = hit.direction == "never"
            ctx.event(
                "never_seen" if never else "unexpected_publish",
                f"{hit.way} on {hit.topic}: {hit.direction} topic",
                "bridge",
            )

        monitor = Monitor(site.policy, where, unexpected)
        failure: list[BaseException] = []

        def body() -> None:
            try:
                monitor.run()
            except BaseException as e:
                failure.append(e)

        thread = threading.Thread(target=body, name="cell-bridge-monitor", daemon=True)
        thread.start()
        fresh = 3 * site.seconds("publish_interval")
        off_since: float | None = time.monotonic()
        try:
            while not ctx.wait(1.0):
                if not thread.is_alive():
                    if failure:
                        raise failure[0]
                    raise RuntimeError("the bridge monitor stopped by itself")
                now = time.monotonic()
                if monitor.connected.is_set():
                    off_since = None
                elif off_since is None:
                    off_since = now
                if off_since is not None and now - off_since > OFF_BUS_GRACE:
                    detail = off_bus(where.unix, monitor.offline_why, now - off_since)
                    ctx.report("bridge", check(False, detail, fresh))
                    continue
                ok, detail, evidence = bridge_check(monitor.status())
                ctx.report("bridge", check(ok, detail, fresh, evidence))
        finally:
            monitor.stop.set()
            thread.join(timeout=5)

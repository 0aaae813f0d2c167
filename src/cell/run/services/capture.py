"""The capture check: the WAN capture ring runs, covers the recent window without a gap, and
lost no more packets in the kernel than `verify.capture_drop_threshold`.

A capture already running for this state directory (the lab starts one in the gateway, as a Cell
could under its own unit) is watched through its coverage log; otherwise this service runs
dumpcap itself (`cell.verify.capture.Capture`) and stops it when it stops. With
`capture.wan.enabled: false` the check holds and says the policy wants no capture.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cell.run.service import Context
from cell.run.services.base import Periodic, check
from cell.run.site import Site
from cell.verify.ring import CAPTURE_DIR

if TYPE_CHECKING:
    from cell.verify.capture import Capture

WINDOW = timedelta(minutes=5)
GAP_TOLERANCE = 1.0
"""Seconds of gap forgiven in the window: dumpcap opening its next file takes a moment."""


class CaptureService(Periodic):
    name = "capture"
    deadline = 60.0
    checks: tuple[str, ...] = ("capture",)

    def __init__(self, ref: Any) -> None:
        super().__init__(ref)
        self.own: Capture | None = None
        self.seen: datetime | None = None

    def interval(self, site: Site) -> float:
        return site.seconds("capture_interval")

    def teardown(self) -> None:
        if self.own is not None:
            self.own.stop()
            self.own = None

    def _start_own(self, site: Site, ring: Path) -> None:
        from cell.verify.capture import Capture, CaptureConfig
        from cell.verify.pruner import Limits, chunk_for
        from policies.types import duration_seconds, size_bytes

        cw = site.policy.network.capture.wan
        interface = (
            str(site.lab.wan_link["interface"]) if site.lab else site.policy.network.wan.interface
        )
        retention, rotate = duration_seconds(cw.retention), duration_seconds(cw.rotate)
        max_disk = size_bytes(cw.max_disk)
        limits = Limits(
            timedelta(seconds=retention),
            max_disk,
            64 << 20,
            chunk_for(max_disk, retention, rotate),
        )
        self.own = Capture(CaptureConfig(ring, interface, rotate, limits, netns=site.netns))
        self.own.start()

    def once(self, ctx: Context, site: Site) -> None:
        from cell.verify.coverage import CoverageLog, coverage_of, live_run
        from cell.verify.ring import list_ring

        fresh = max(3 * site.seconds("publish_interval"), 3 * self.interval(site))
        if not site.policy.network.capture.wan.enabled:
            self.teardown()
            ctx.report("capture", check(True, "no capture: capture.wan.enabled is false", fresh))
            return
        ring = Path(site.target.layout.state) / CAPTURE_DIR
        events = CoverageLog(ring).read()
        live = live_run(events)
        if live is None and (self.own is None or not self.own.status().running):
            self.teardown()
            self._start_own(site, ring)
            events = CoverageLog(ring).read()
            live = live_run(events)
        now = datetime.now(UTC)
        # The window starts when this daemon first saw the capture running: a gap before that
        # (a daemon restart took its dumpcap along) is the ring's history, which `cell pcap`
        # shows; from then on, any gap fails the check for as long as it is in the window.
        if live is not None and self.seen is None:
            self.seen = now
        since = max(now - WINDOW, self.seen or now)
        cov = coverage_of(events, list_ring(ring), since, now, now=now, live_run=live)
        doc = cov.to_json()
        ctx.figure("capture_coverage", doc["covered_fraction"] if since < now else 1.0)
        dropped = cov.dropped or 0
        ctx.figure("capture_drops", dropped)
        threshold = site.verify.capture_drop_threshold
        evidence = [f"window {doc['since']} .. {doc['until']}", f"gaps: {doc['gaps']}"]
        if live is None:
            ctx.report("capture", check(False, "the WAN capture is not running", fresh, evidence))
        elif (gap := sum((b - a).total_seconds() for a, b in cov.gaps)) > GAP_TOLERANCE:
            ctx.report(
                "capture",
                check(False, f"{gap:.0f} s of the last window not captured", fresh, evidence),
            )
        elif dropped > threshold:
            ctx.report(
                "capture",
                check(False, f"{dropped} packets lost in the kernel (over {threshold})", fresh),
            )
        else:
            ctx.report(
                "capture",
                check(True, f"running, covering since {doc['since']}", fresh, evidence),
            )

"""Prometheus metrics of the daemon: `cell_*`, counters end in `_total`, and no label names an
address or a host (those stay in the store): only checks, verdicts, services, VLANs and
destination classes. Served on loopback (`127.0.0.1:9817` by default, inside the gateway's
namespace for a lab) or written as a node_exporter textfile; never on every interface unless
an operator names such an address.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.exposition import write_to_textfile

from cell.errors import UsageError
from cell.run.service import ServiceStatus
from cell.status.checks import CHECK_NAMES, Check
from cell.status.document import StatusDoc

VERDICTS = ("sovereign", "at_risk", "unknown")


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.verdict = Gauge("cell_verdict", "1 for the current verdict", ["verdict"], registry=r)
        self.check_ok = Gauge("cell_check_ok", "1 when the check holds", ["check"], registry=r)
        self.check_fresh = Gauge(
            "cell_check_fresh", "1 when the check is fresh", ["check"], registry=r
        )
        self.drops = Counter(
            "cell_drops", "Packets dropped and counted", ["source", "dest"], registry=r
        )
        self.dns_blocked = Counter("cell_dns_blocked", "Sinkholed DNS queries counted", registry=r)
        self.dns_forwarded = Counter(
            "cell_dns_forwarded", "Queries from a sinkhole VLAN forwarded upstream", registry=r
        )
        self.probe_runs = Counter("cell_probe_runs", "Probe runs", ["result"], registry=r)
        self.probe_flows_failed = Gauge(
            "cell_probe_flows_failed", "Flows that did not hold in the last run", registry=r
        )
        self.probe_duration = Gauge(
            "cell_probe_duration_seconds", "Duration of the last probe run", registry=r
        )
        self.capture_coverage = Gauge(
            "cell_capture_coverage_ratio", "Covered fraction of the checked window", registry=r
        )
        self.capture_drops = Gauge(
            "cell_capture_kernel_drops", "Kernel drops reported by the capture", registry=r
        )
        self.unexpected = Gauge(
            "cell_bridge_unexpected_publishes",
            "Crossings against the policy since the broker started",
            registry=r,
        )
        self.restarts = Counter(
            "cell_service_restarts", "Service restarts after a crash or hang", ["service"],
            registry=r,
        )  # fmt: skip
        self.service_up = Gauge(
            "cell_service_up", "1 while the service runs", ["service"], registry=r
        )
        self.publishes = Counter("cell_status_publishes", "Status documents published", registry=r)
        self._restarts_seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def observe(
        self,
        doc: StatusDoc,
        checks: Mapping[str, Check],
        services: Mapping[str, ServiceStatus],
        now: float,
    ) -> None:
        with self._lock:
            for v in VERDICTS:
                self.verdict.labels(v).set(1 if doc.verdict == v else 0)
            for name in CHECK_NAMES:
                c = checks.get(name)
                self.check_ok.labels(name).set(1 if c is not None and c.ok else 0)
                self.check_fresh.labels(name).set(1 if c is not None and c.is_fresh(now) else 0)
            for name, s in services.items():
                self.service_up.labels(name).set(1 if s.state == "running" else 0)
                seen = self._restarts_seen.get(name, 0)
                if s.restarts > seen:
                    self.restarts.labels(name).inc(s.restarts - seen)
                    self._restarts_seen[name] = s.restarts
                else:
                    self.restarts.labels(name).inc(0)
            self.publishes.inc()

    def add(self, figures: Mapping[str, Any]) -> None:
        """Deltas the services counted (`drops`, `dns`, `probe`, `capture`, `bridge`)."""
        with self._lock:
            for (src, dst), n in figures.get("drops", {}).items():
                self.drops.labels(src, dst).inc(n)
            self.dns_blocked.inc(figures.get("dns_blocked", 0))
            self.dns_forwarded.inc(figures.get("dns_forwarded", 0))
            for result, n in figures.get("probe_runs", {}).items():
                self.probe_runs.labels(result).inc(n)


class Exporter:
    """Where the metrics go: `ADDR:PORT` (an HTTP server), `file:PATH` (a textfile), `off`."""

    def __init__(self, metrics: Metrics, where: str) -> None:
        self.metrics, self.where = metrics, where
        self.textfile: Path | None = None
        self._server: Any = None
        if where == "off":
            return
        if where.startswith("file:"):
            self.textfile = Path(where[5:])
            return
        host, sep, port = where.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise UsageError(
                f"--metrics {where!r}: expected ADDR:PORT (e.g. 127.0.0.1:9817), file:PATH or off"
            )
        self.host, self.port = host.strip("[]"), int(port)

    def start(self) -> None:
        if self.where == "off" or self.textfile is not None:
            return
        try:
            self._server, _ = start_http_server(
                self.port, addr=self.host, registry=self.metrics.registry
            )
        except OSError as e:
            raise UsageError(f"--metrics {self.where}: cannot listen there ({e})") from None

    def flush(self) -> None:
        if self.textfile is not None:
            with contextlib.suppress(OSError):
                write_to_textfile(str(self.textfile), self.metrics.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

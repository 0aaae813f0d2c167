"""A gateway without a kernel or processes, for unit tests of apply, restore and recovery.

nftables is `firewall.fake.FakeNft` (the seam the product ships); the services (two dnsmasq, one
mosquitto) are `FakeServices`, a stand-in for `cell.deploy.services` and `cell.deploy.daemons`
that records what an install asks of them. Files are real, under a temporary layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cell.deploy.fakelinks import FakeLinks
from cell.deploy.target import Target
from firewall.fake import FakeNft
from policies.layout import Layout

MOSQUITTO = ("mosquitto/",)


@dataclass
class FakeServices:
    running: dict[str, int | None] = field(
        default_factory=lambda: {"sinkhole": None, "resolver": None, "broker": None}
    )
    actions: list[str] = field(default_factory=list)
    broker_dies: bool = False
    """The broker starts and is gone at once (what a read-back must catch)."""
    _pid: int = 1000

    def _start(self, service: str) -> None:
        self._pid += 1
        self.running[service] = None if service == "broker" and self.broker_dies else self._pid
        self.actions.append(f"start {service}")

    # cell.deploy.services
    def adopt_strays(self, target: Target) -> None:
        pass

    def service_pids(self, target: Target) -> dict[str, int | None]:
        return dict(self.running)

    def pidfile(self, target: Target, service: str) -> Path:
        return Path(service)

    def start_dnsmasq(self, target: Target, service: str) -> None:
        self._start(service)

    def update_dnsmasq(self, target: Target, changed: set[str], touched: dict[str, str]) -> str:
        done = []
        for service in ("sinkhole", "resolver"):
            if f"dnsmasq/{service}.conf" in changed or self.running[service] is None:
                touched[service] = "restarted"
                self.stop(Path(service))
                self._start(service)
                done.append(f"{service} restarted")
        return ", ".join(done) or "unchanged"

    def broker_for(self, policy: Any, target: Target) -> FakeBroker:
        return FakeBroker(self)

    # cell.deploy.daemons
    def stop(self, pidfile: Path) -> None:
        if self.running.get(pidfile.name) is not None:
            self.actions.append(f"stop {pidfile.name}")
        self.running[pidfile.name] = None


@dataclass
class FakeBroker:
    services: FakeServices
    pidfile: Path = Path("broker")

    @property
    def runner(self) -> FakeBroker:
        return self

    def hup(self, pidfile: Path) -> bool:
        self.services.actions.append("hup broker")
        return True

    def start(self) -> None:
        self.services._start("broker")

    def stop(self) -> None:
        self.services.stop(self.pidfile)

    def update(self, changed: set[str]) -> str:
        if self.services.running["broker"] is None:
            self.start()
            return "started"
        if any(n.startswith(MOSQUITTO) for n in changed):
            self.stop()
            self.start()
            return "restarted"
        return "unchanged"


@dataclass
class Gateway:
    target: Target
    nft: FakeNft
    services: FakeServices
    mosquitto_checks: list[str]
    links: FakeLinks


def fake_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    """A target on this host's files under `tmp_path`, with fake nftables and services."""
    from cell.deploy import checks, install

    nft, services, checked = FakeNft(), FakeServices(), []
    monkeypatch.setattr(install, "services", services)
    monkeypatch.setattr(install, "procs", services)
    # The mosquitto config test runs mosquitto in a network namespace of its own (root).
    monkeypatch.setattr(checks, "_check_mosquitto", lambda policy, target: checked.append("ok"))
    layout = Layout(root=str(tmp_path / "root"))
    links = FakeLinks(given=["eth0", "eth1"])  # the box's trunk and WAN link
    target = Target(netns=None, layout=layout, firewall=nft, link_backend=links)
    return Gateway(target, nft, services, checked, links)

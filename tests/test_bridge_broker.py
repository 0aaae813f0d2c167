"""bridge.broker through its seam: which action each change takes, and failures reported with the
log. A fake `Runner` here; the lab test (test_bridge_lab.py) does the same with real mosquitto."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bridge.broker import Broker, BrokerError


@dataclass
class FakeRunner:
    up: bool = False
    listens: bool = True
    dies: bool = False
    calls: list[str] = field(default_factory=list)

    def start(self, argv: list[str], pidfile: Path, log: Path) -> int:
        self.calls.append("start " + " ".join(argv))
        self.up = not self.dies
        return 42

    def stop(self, pidfile: Path) -> None:
        self.calls.append("stop")
        self.up = False

    def hup(self, pidfile: Path) -> bool:
        self.calls.append("hup")
        return self.up

    def running(self, pidfile: Path) -> bool:
        return self.up

    def connectable(self, port: int) -> bool:
        return self.up and self.listens

    def tail(self, log: Path) -> str:
        return "Error: Unable to open config file"


def broker(runner: FakeRunner) -> Broker:
    return Broker(runner, Path("/c/mosquitto.conf"), Path("/s/m.pid"), Path("/s/m.out"), 1883)


START = "start mosquitto -c /c/mosquitto.conf"


@pytest.mark.parametrize(
    ("changed", "action", "calls"),
    [
        (set(), "unchanged", []),
        ({"nftables/ruleset.json"}, "unchanged", []),
        ({"mosquitto/acl"}, "reloaded", ["hup"]),
        ({"mosquitto/passwd"}, "reloaded", ["hup"]),
        ({"mosquitto/acl", "mosquitto/conf.d/bridge.conf"}, "restarted", ["stop", START]),
        ({"mosquitto/mosquitto.conf"}, "restarted", ["stop", START]),
    ],
)
def test_the_least_disruptive_action(changed: set[str], action: str, calls: list[str]) -> None:
    runner = FakeRunner(up=True)
    assert broker(runner).update(changed) == action
    assert runner.calls == calls


def test_a_stopped_broker_is_started_whatever_changed() -> None:
    runner = FakeRunner(up=False)
    assert broker(runner).update(set()) == "started"
    assert runner.calls == [START]


def test_a_broker_that_dies_at_start_is_an_error_with_its_log() -> None:
    runner = FakeRunner(dies=True)
    with pytest.raises(BrokerError, match=r"(?s)did not come up.*Unable to open config file"):
        broker(runner).start(timeout=0.5)
    assert runner.calls[-1] == "stop"


def test_a_broker_that_never_listens_is_stopped_and_reported() -> None:
    runner = FakeRunner(listens=False)
    with pytest.raises(BrokerError):
        broker(runner).start(timeout=0.2)
    assert runner.calls == [START, "stop"] and not runner.up

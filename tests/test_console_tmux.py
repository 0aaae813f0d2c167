"""`cell console` in a real terminal (tmux), as a person runs it, against a broker on loopback
(amqtt in this process) and a Cell's state directory: the banner, a change within 2 s, the
panel keys, help, and a clean quit. tmux send-keys types; capture-pane reads the screen."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from consolekit import LEAK, Broker, at_risk, availability, make_state, status_doc

CELL = Path(sys.executable).with_name("cell")
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


class Pane:
    def __init__(self, command: list[str], env: dict[str, str], size: tuple[int, int]) -> None:
        self.name = f"cell-console-test-{uuid.uuid4().hex[:8]}"
        shell = " ".join(command) + "; echo CONSOLE-EXITED $?; sleep 60"
        env_args = [f"{k}={v}" for k, v in env.items()]
        subprocess.run(
            [
                "tmux",
                "-L",
                self.name,
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                str(size[0]),
                "-y",
                str(size[1]),
                "env",
                "-i",
                *env_args,
                "sh",
                "-c",
                shell,
            ],
            check=True,
        )

    def text(self, escapes: bool = False) -> str:
        args = ["tmux", "-L", self.name, "capture-pane", "-p", "-t", self.name]
        args += ["-e"] if escapes else []
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "-L", self.name, "send-keys", "-t", self.name, *keys], check=True)

    def wait(self, needle: str, timeout: float = 10.0) -> float:
        """Seconds until `needle` is on the screen (fails with the screen)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if needle in self.text():
                return time.monotonic() - t0
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not on the screen after {timeout}s:\n{self.text()}")

    def close(self) -> None:
        # A server of its own (-L): nothing another test or person runs in tmux is touched.
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True)
        socket = Path(f"/tmp/tmux-{os.getuid()}") / self.name
        socket.unlink(missing_ok=True)


@pytest.fixture
def broker() -> Iterator[Broker]:
    with Broker() as b:
        yield b


@pytest.fixture
def pane_for(broker: Broker, tmp_path: Path) -> Iterator[object]:
    panes: list[Pane] = []
    state = make_state(tmp_path / "state", now=time.time())

    def start(size: tuple[int, int] = (120, 32), **env: str) -> Pane:
        command = [
            str(CELL),
            "console",
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--state-dir",
            str(state),
        ]
        base = {
            "TERM": "xterm-256color",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
        }
        if os.environ.get("PYTHONPATH"):  # a tree run from outside its own venv
            base["PYTHONPATH"] = os.environ["PYTHONPATH"]
        pane = Pane(command, {**base, **env}, size)
        panes.append(pane)
        return pane

    yield start
    for p in panes:
        p.close()


def test_console_in_a_terminal(broker: Broker, pane_for: object) -> None:
    broker.publish("cell/availability", availability("online", time.time()))
    broker.publish("cell/status", status_doc(time.time()))
    pane = pane_for()  # type: ignore[operator]
    pane.wait("◆ DATA · SOVEREIGN ◆", timeout=15)
    # a leak: the daemon's next status says at_risk; the screen follows within 2 s
    broker.publish("cell/status", at_risk(time.time()))
    took = pane.wait("▲ DATA · AT RISK ▲", timeout=2.0)
    assert LEAK in pane.text(), pane.text()
    assert took < 2.0
    titles = {
        "1": "1 SYNOPSIS · the site at a glance",
        "2": "2 MQTT · bridge policy, link, what crossed",
        "3": "3 CAMS · phone-home attempts and drops today",
        "4": "4 GITOPS · who changed what, when",
        "5": "5 HEALTH · segregation, probes, capture",
    }
    for key, title in titles.items():
        pane.keys(key)
        pane.wait(title, timeout=3)
        assert pane.text().rstrip().splitlines()[-1].endswith("▲ DATA · AT RISK ▲")
    pane.keys("2")
    pane.wait("✗ never bridged", timeout=3)
    pane.keys("?")
    pane.wait("help · esc back", timeout=3)
    pane.keys("Escape")
    pane.wait("2 MQTT · bridge policy", timeout=3)
    broker.publish("cell/availability", availability("offline", time.time()))
    pane.wait("daemon offline since", timeout=2)
    pane.keys("q")
    pane.wait("CONSOLE-EXITED 0", timeout=5)


def test_console_under_no_color(broker: Broker, pane_for: object) -> None:
    broker.publish("cell/status", at_risk(time.time()))
    pane = pane_for((80, 24), NO_COLOR="1")  # type: ignore[operator]
    pane.wait("▲ DATA · AT RISK ▲", timeout=15)
    screen = pane.text(escapes=True)
    colours = re.findall(r"\x1b\[[0-9;]*?[34]8;2;(\d+);(\d+);(\d+)", screen)
    assert all(r == g == b for r, g, b in colours), "colour under NO_COLOR"
    assert not re.search(r"\x1b\[[0-9;]*?\b(3[1-6]|4[1-6]|9[1-6])m", screen)
    pane.keys("q")
    pane.wait("CONSOLE-EXITED 0", timeout=5)


def test_narrow_terminal_keeps_the_banner(broker: Broker, pane_for: object) -> None:
    broker.publish("cell/status", status_doc(time.time()))
    pane = pane_for((24, 8))  # type: ignore[operator]
    pane.wait("◆ DATA · SOVEREIGN ◆", timeout=15)
    pane.keys("q")
    pane.wait("CONSOLE-EXITED", timeout=5)

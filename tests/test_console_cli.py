"""`cell console` on the command line: importing the CLI never loads Textual, flags are
checked before anything starts, and `--once` prints the panels and exits 0 only when
sovereign."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cell.cli.console import parse_broker
from cell.cli.main import main
from cell.errors import UsageError
from consolekit import at_risk, availability, record_bus, status_doc


def test_importing_the_cli_does_not_load_textual() -> None:
    code = (
        "import sys, cell.cli, cell.cli.console\n"
        "from cell.cli.main import build_parser\n"
        "build_parser().parse_args(['console', '--lab'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'aiomqtt', 'console') "
        "and m not in ('console',))\n"
        "print(heavy)\n"
        "assert not [m for m in heavy if not m.startswith('console.config')], heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_parse_broker() -> None:
    assert parse_broker("cell.example.net:8883") == ("cell.example.net", 8883)
    assert parse_broker("[::1]:1883") == ("::1", 1883)
    for bad in ("nohost", ":1883", "host:", "host:99999", "host:x"):
        with pytest.raises(UsageError, match="expected HOST:PORT"):
            parse_broker(bad)


def test_flags_are_checked_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["console", "--broker", "nonsense", "--once"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
    assert main(["console", "--broker", "127.0.0.1:1", "--user", "op", "--once"]) == 2
    assert "needs --password-file" in capsys.readouterr().err
    missing = tmp_path / "nope"
    assert (
        main(
            ["console", "--broker", "127.0.0.1:1", "--user", "op", "--password-file", str(missing)]
        )
        == 2
    )
    assert "cannot read it" in capsys.readouterr().err
    assert main(["console", "--broker", "127.0.0.1:1", "--cafile", str(missing)]) == 2


@pytest.mark.parametrize(
    ("doc", "code", "banner"),
    [
        (status_doc, 0, "◆ DATA · SOVEREIGN ◆"),
        (at_risk, 3, "▲ DATA · AT RISK ▲"),
    ],
)
def test_once_exits_by_the_banner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: object, code: int, banner: str
) -> None:
    now = time.time()
    path = record_bus(
        tmp_path / "bus.jsonl",
        [("cell/availability", availability("online", now)), ("cell/status", doc(now))],  # type: ignore[operator]
    )
    assert main(["console", "--recorded", str(path), "--once", "--width", "90"]) == code
    out = capsys.readouterr().out
    assert out.splitlines()[-1].endswith(banner) and len(out.splitlines()[-1]) == 90
    for title in ("1 SYNOPSIS", "2 MQTT", "3 CAMS", "4 GITOPS", "5 HEALTH"):
        assert f"── {title} " in out


def test_once_with_no_status_is_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bus.jsonl"
    path.write_text(json.dumps({"topic": "cell/event", "payload": "not json"}) + "\nnot a line\n")
    assert main(["console", "--recorded", str(path), "--once", "--wait", "0.2"]) == 3
    assert "? DATA · UNKNOWN ?" in capsys.readouterr().out

"""The command-line contract: exit codes, error text, --json shapes. Run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Site


def cell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cell.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_validate_ok(example: Path) -> None:
    r = cell("validate", "--repo", str(example))
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout


@pytest.mark.parametrize(
    "junk",
    [
        b"\x00\x01\x02\xff" * 100,
        b"site: [unclosed",
        b"- a\n- b\n",
        b"site:\n  id: " + b"x" * 70_000 + b"\n",
        b"",
        b"site: &a [*a]\n",
        b"site: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    ],
)
def test_bad_input_exits_2_without_traceback(site: Site, junk: bytes) -> None:
    (site.root / "site.yaml").write_bytes(junk)
    r = cell("validate", "--repo", str(site.root))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"{site.root}/site.yaml:"), first
    assert first.split(":")[1].isdigit() and first.split(":")[2].isdigit()


def test_device_instead_of_a_file(site: Site) -> None:
    (site.root / "site.yaml").unlink()
    (site.root / "site.yaml").symlink_to("/dev/zero")
    r = cell("validate", "--repo", str(site.root))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"{site.root}/site.yaml:1:1: ")


def test_missing_repo(tmp_path: Path) -> None:
    r = cell("validate", "--repo", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert "site.yaml:1:1: file is missing" in r.stderr
    assert "Traceback" not in r.stderr


def test_errors_go_to_stderr_all_at_once(site: Site) -> None:
    site.edit("network.yaml", "address: 10.10.0.11}", "address: 10.99.0.11}")
    site.edit("mqtt.yaml", "username: cam-02", "username: cam-01")
    r = cell("validate", "--repo", str(site.root))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 2
    assert r.stdout == ""


def test_explain_topic_json(example: Path) -> None:
    r = cell("explain", "topic", "site/cam-01/events/motion", "--repo", str(example), "--json")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert doc == {
        "topic": "site/cam-01/events/motion",
        "direction": "up",
        "rule": {"file": f"{example}/mqtt.yaml", "line": 10, "pattern": "site/+/events/#"},
    }


def test_explain_topic_default_and_dollar(example: Path) -> None:
    doc = json.loads(
        cell("explain", "topic", "misc/thing", "--repo", str(example), "--json").stdout
    )
    assert doc["direction"] == "local" and doc["rule"] is None
    doc = json.loads(
        cell("explain", "topic", "$SYS/broker/uptime", "--repo", str(example), "--json").stdout
    )
    assert doc["direction"] == "never" and doc["rule"]["pattern"] == "$SYS/#"


def test_explain_topic_rejects_filter(example: Path) -> None:
    r = cell("explain", "topic", "site/+/events", "--repo", str(example))
    assert r.returncode == 2
    assert "not a topic name" in r.stderr


@pytest.mark.parametrize(
    ("src", "dst", "verdict", "line"),
    [
        ("nvr", "cam-02:554/tcp", "accept", 38),
        ("cell", "cameras:554/tcp", "accept", 38),
        ("ai", "cam-01:80/tcp", "drop", None),
        ("nvr", "cam-01:80/tcp", "accept", 40),
        ("cam-01", "wan:443/tcp", "drop", None),
        ("cameras", "10.20.0.2:554/tcp", "drop", None),
        ("10.10.0.13", "gateway:53/udp", "accept", 42),
        ("gateway", "hub.bridge", "accept", 57),
        ("gateway", "hub.bridge:8883/tcp", "accept", 57),
        ("gateway", "wan:443/tcp", "drop", None),
        ("laptop", "8.8.8.8:443/tcp", "accept", 54),
    ],
)
def test_explain_flow_json(
    example: Path, src: str, dst: str, verdict: str, line: int | None
) -> None:
    r = cell("explain", "flow", "--from", src, "--to", dst, "--repo", str(example), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["verdict"] == verdict
    if line is None:
        assert doc["rule"] is None
    else:
        assert doc["rule"]["file"] == f"{example}/network.yaml"
        assert doc["rule"]["line"] == line


def test_explain_flow_text(example: Path) -> None:
    r = cell("explain", "flow", "--from", "cam-01", "--to", "wan:443/tcp", "--repo", str(example))
    assert r.returncode == 0
    assert "default deny" in r.stdout


@pytest.mark.parametrize(
    ("src", "dst"), [("kitchen", "wan"), ("nvr", "cam-01:99999/tcp"), ("nvr", "cam-01:80/icmp")]
)
def test_explain_flow_bad_endpoint(example: Path, src: str, dst: str) -> None:
    r = cell("explain", "flow", "--from", src, "--to", dst, "--repo", str(example))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.strip()


def test_schema_is_json_schema() -> None:
    r = cell("schema")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert set(doc) == {"site.yaml", "network.yaml", "mqtt.yaml"}
    net = doc["network.yaml"]
    assert net["additionalProperties"] is False
    assert "flows" in net["properties"]
    assert json.loads(cell("schema", "mqtt.yaml").stdout)["title"] == "MqttFile"


def test_render_writes_manifest(example: Path, tmp_path: Path) -> None:
    r = cell("render", "--repo", str(example), "--out", str(tmp_path / "a"), "--json")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert json.loads(r.stdout) == manifest
    import hashlib

    for name, digest in manifest["files"].items():
        assert hashlib.sha256((tmp_path / "a" / name).read_bytes()).hexdigest() == digest
    assert cell("render", "--repo", str(example), "--out", str(tmp_path / "b")).returncode == 0
    for name in manifest["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_render_refuses_invalid_and_writes_nothing(site: Site, tmp_path: Path) -> None:
    site.edit("mqtt.yaml", "username: cam-02", "username: cam-01")
    r = cell("render", "--repo", str(site.root), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert not (tmp_path / "out").exists()


def test_json_errors_go_to_stdout_as_json(site: Site) -> None:
    site.edit("mqtt.yaml", "username: cam-02", "username: cam-01")
    r = cell("validate", "--repo", str(site.root), "--json")
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["exit"] == 2
    (err,) = doc["errors"]
    assert err["file"].endswith("mqtt.yaml") and "duplicate client" in err["message"]
    assert err["line"] == site.line_of("mqtt.yaml", 'username: cam-01, publish: ["site/cam-02')


def test_operator_files_are_bounded_and_regular(tmp_path: Path) -> None:
    """A device or a huge file named as --signers is refused in one line, never read whole."""
    big = tmp_path / "big"
    big.write_bytes(b"a" * ((1 << 20) + 1))
    for path, why in (("/dev/zero", "not a regular file"), (str(big), "larger than")):
        r = cell("enroll", "--signers", path, "--state-dir", str(tmp_path / "state"))
        assert r.returncode == 2 and why in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "state" / "ledger.jsonl").exists()


def test_the_demo_finds_the_example_site_of_the_checkout(example: Path) -> None:
    """`make demo` runs `cell demo` with no --repo: it must find the embedded example."""
    from cell.cli.demo import example_repo

    assert example_repo() == example


def test_a_password_file_gives_its_first_line(tmp_path: Path) -> None:
    """`--password-file` means the same in `cell bridge monitor`, `cell console` and `cell
    fleet`: the first line, stripped; an unreadable file is a one-line error naming it."""
    from cell.cli.util import read_password_file
    from cell.errors import UsageError

    pw = tmp_path / "pw"
    pw.write_text("s3cret  \n# rotated 2026-11-30\n")
    assert read_password_file(str(pw)) == "s3cret"
    pw.write_text("")
    assert read_password_file(str(pw)) == ""
    with pytest.raises(UsageError, match=r"^--password-file .*/nope: cannot read it \(No such"):
        read_password_file(str(tmp_path / "nope"))

"""`cell incident` on a hand-made Cell state (no root, no lab): each planted incident is found in
its step (exit 3) and a quiet window is not (exit 0); the pack is deterministic, verifies with
the standard tools run as a third party would (`sha256sum -c`, `ssh-keygen -Y verify`, `age`),
and any flipped byte, dropped or added file fails `cell incident verify`, which names it.
Bad input is one line, exit 2, and leaves nothing behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cell.incident.pack import manifest_doc, manifest_topic
from incidentsite import PHONE_HOME, Cell, make_cell
from labsite import make_site
from policies import load_policy
from policies.recipients import recipient_error

START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
INCIDENT = START + timedelta(minutes=20)
END = START + timedelta(minutes=30)  # the capture stopped here, in the past


def cell(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cell.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Cell]:
    repo = make_site(tmp_path, "t-incident")
    yield make_cell(load_policy(repo), repo, tmp_path / "state", START, 30 * 60, incident=INCIDENT)


def run(c: Cell, out: Path, since: datetime, until: datetime, *more: str) -> Any:
    r = cell(
        "incident",
        "--since",
        z(since),
        "--until",
        z(until),
        "--out",
        str(out),
        "--repo",
        str(c.repo),
        "--state-dir",
        str(c.state.root),
        *more,
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r


def pinned(c: Cell, tmp: Path) -> Path:
    r = cell("evidence-key", "--state-dir", str(c.state.root))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("cell-evidence@t-incident ssh-ed25519 ")
    path = tmp / "pinned_signers"
    path.write_text(r.stdout)
    return path


def test_every_planted_incident_is_found_in_its_step(site: Cell, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    r = run(site, out, START, END, "--json")
    assert r.returncode == 3, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    steps = doc["report"]["steps"]
    assert doc["findings"] == sum(len(s["findings"]) for s in steps.values()) > 0
    (never,) = steps["bridge"]["findings"]
    assert "'site/cam-01/snapshots/1'" in never and "never" in never and "mosquitto.log:2" in never
    assert steps["bridge"]["summary"] == {
        "unexpected": 1,
        "never": 1,
        "logs": [str(site.state.root / "mosquitto/mosquitto.log")],
    }
    assert any("refused" in f and "dddddddddddd" in f for f in steps["gitops"]["findings"])
    assert steps["gitops"]["summary"]["applied"] == 1
    assert steps["gitops"]["summary"]["bridge_or_firewall"] == 1
    (failed,) = steps["health"]["findings"]
    assert "cam-01>wan:443/tcp" in failed and steps["health"]["summary"]["runs"] == 2
    (leak,) = steps["egress"]["findings"]
    assert f"cam-01 -> {PHONE_HOME}:9999/udp: UNEXPECTED" in leak
    assert steps["egress"]["summary"]["coverage"]["complete"] is True
    assert steps["dns"]["summary"]["blocked"] == 3 and steps["dns"]["findings"] == []
    (drift,) = steps["drift"]["findings"]
    assert "a rule was added" in drift
    # The data behind each step, and the evidence files.
    rows = [json.loads(x) for x in (out / "steps/bridge.jsonl").read_text().splitlines()]
    assert rows[0]["evidence"]["line"] == 2 and "snapshots/1" in rows[0]["evidence"]["text"]
    (commit,) = [json.loads(x) for x in (out / "steps/commits.jsonl").read_text().splitlines()]
    assert commit["differ_ledger"] == [] and commit["differ_journal"] == []
    assert (out / commit["dir"] / "mosquitto/conf.d/bridge.conf").is_file()
    dump = subprocess.run(
        ["tcpdump", "-nn", "-r", str(out / "capture/window.pcapng"), f"host {PHONE_HOME}"],
        capture_output=True,
        text=True,
    )
    assert dump.returncode == 0 and len(dump.stdout.splitlines()) == 5
    text = (out / "report.md").read_text()
    for title in ("1. Bridge", "2. GitOps", "3. Health", "4. Egress", "DNS", "Drift"):
        assert title in text
    # The pack was recorded in the ledger, and its manifest tells no contents.
    last = json.loads(site.state.ledger.read_text().splitlines()[-1])
    assert last["kind"] == "evidence-pack" and last["pack"] == doc["id"]
    m = manifest_doc(out)
    assert (
        m["id"] == doc["id"] and m["findings"] == doc["findings"] and m["digest"] == doc["digest"]
    )
    assert set(m) == {"schema", "id", "site", "since", "until", "findings", "encrypted", "digest"}
    assert manifest_topic(doc["id"]) == f"evidence/manifests/{doc['id']}"


def test_a_quiet_window_finds_nothing(site: Cell, tmp_path: Path) -> None:
    r = run(site, tmp_path / "quiet", START + timedelta(minutes=1), START + timedelta(minutes=10))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Result: NOTHING FOUND" in r.stdout
    doc = json.loads((tmp_path / "quiet/report.json").read_text())
    assert doc["findings"] == 0 and doc["steps"]["egress"]["summary"]["destinations"] == 1


def test_the_pack_verifies_with_the_standard_tools(site: Cell, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    assert run(site, out, START, END).returncode == 3
    signers = pinned(site, tmp_path)
    who = "cell-evidence@t-incident"
    sums = subprocess.run(
        ["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True
    )
    assert sums.returncode == 0 and "FAILED" not in sums.stdout, sums.stdout
    assert len(sums.stdout.splitlines()) == len((out / "SHA256SUMS").read_text().splitlines()) > 10
    for ns, data, sig in (
        (who, "SHA256SUMS", "SHA256SUMS.sig"),
        ("cell-ledger", "ledger/head.txt", "ledger/head.txt.sig"),
    ):
        with (out / data).open("rb") as fh:
            v = subprocess.run(
                [
                    "ssh-keygen",
                    "-Y",
                    "verify",
                    "-f",
                    str(signers),
                    "-I",
                    who,
                    "-n",
                    ns,
                    "-s",
                    str(out / sig),
                ],
                stdin=fh,
                capture_output=True,
                text=True,
            )
        assert v.returncode == 0 and "Good" in v.stdout, v.stdout + v.stderr
    # The listing check of VERIFY.txt, run as written.
    text = (out / "VERIFY.txt").read_text()
    listing = text.split("prints nothing when the pack is whole):\n\n")[1].split("\n\n")[0]
    r = subprocess.run(
        ["bash", "-c", listing.replace("\\\n", "")], cwd=out, capture_output=True, text=True
    )
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    # The ledger chain, with the shell loop of VERIFY.txt.
    loop = (
        "while IFS= read -r line; do printf '%s' \"$line\" | sha256sum; done < ledger/chain.jsonl"
    )
    assert loop in text
    hashes = subprocess.run(
        ["bash", "-c", loop], cwd=out, capture_output=True, text=True
    ).stdout.split()[::2]
    chain = [json.loads(x) for x in (out / "ledger/chain.jsonl").read_text().splitlines()]
    assert [e["prev"] for e in chain[1:]] == hashes[:-1]
    assert f"hash {hashes[-1]}" in (out / "ledger/head.txt").read_text()
    r = cell("incident", "verify", str(out), "--signers", str(signers))
    assert r.returncode == 0 and "signature is good (the pinned key)" in r.stdout, (
        r.stdout + r.stderr
    )


def test_same_inputs_same_bytes_and_a_deterministic_tar(site: Cell, tmp_path: Path) -> None:
    root = site.state.root
    keep = tmp_path / "keep"
    shutil.copytree(root, keep)
    assert run(site, tmp_path / "a", START, END, "--tar", str(tmp_path / "a.tar")).returncode == 3
    shutil.rmtree(root)
    shutil.copytree(keep, root)  # the same inputs again (the first pack was added to the ledger)
    assert run(site, tmp_path / "b", START, END, "--tar", str(tmp_path / "b.tar")).returncode == 3
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as t:
        members = t.getmembers()
    names = [m.name for m in members]
    top = names[0]
    assert top.startswith("incident-") and names[1:] == sorted(names[1:])
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert f"{top}/SHA256SUMS.sig" in names and f"{top}/capture/window.pcapng" in names
    r = cell("incident", "verify", str(tmp_path / "a.tar"))
    assert r.returncode == 0, r.stdout + r.stderr


FLIPS = (
    "report.json",
    "capture/window.pcapng",
    "ledger/chain.jsonl",
    "commits/*/mosquitto/conf.d/bridge.conf",
    "steps/egress.jsonl",
    "SHA256SUMS",
    "SHA256SUMS.sig",
)


def test_one_flipped_byte_anywhere_fails_and_is_named(site: Cell, tmp_path: Path) -> None:
    made = tmp_path / "pack"
    assert run(site, made, START, END).returncode == 3
    for name in FLIPS:
        out = tmp_path / f"copy-{FLIPS.index(name)}"
        shutil.copytree(made, out)
        (path,) = list(out.glob(name))
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        rel = path.relative_to(out).as_posix()
        r = cell("incident", "verify", str(out), "--json")
        assert r.returncode == 3, (name, r.stdout + r.stderr)
        problems = json.loads(r.stdout)["problems"]
        if rel not in ("SHA256SUMS", "SHA256SUMS.sig"):
            assert any(p.startswith(f"{rel}: sha256 differs") for p in problems), problems
            sums = subprocess.run(
                ["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True
            )
            assert sums.returncode != 0 and f"{rel}: FAILED" in sums.stdout
        else:
            assert any(p.startswith("SHA256SUMS.sig: not a good signature") for p in problems), (
                name,
                problems,
            )


def test_a_dropped_or_added_file_is_named(site: Cell, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    assert run(site, out, START, END).returncode == 3
    (out / "steps/drift.jsonl").unlink()
    (out / "extra.txt").write_text("planted\n")
    r = cell("incident", "verify", str(out))
    assert r.returncode == 3
    assert "steps/drift.jsonl: missing (listed in SHA256SUMS)" in r.stdout
    assert "extra.txt: not listed in SHA256SUMS" in r.stdout


def test_a_rewritten_ledger_line_breaks_the_chain_even_with_fresh_sums(
    site: Cell, tmp_path: Path
) -> None:
    """Someone who rewrites a file and SHA256SUMS still cannot make the signature good."""
    out = tmp_path / "pack"
    assert run(site, out, START, END).returncode == 3
    chain = out / "ledger/chain.jsonl"
    chain.write_text(chain.read_text().replace('"drift"', '"drift-resolved"', 1))
    subprocess.run(
        [
            "bash",
            "-c",
            "sed 's/^[0-9a-f]*  //' SHA256SUMS | xargs sha256sum > S && mv S SHA256SUMS",
        ],
        cwd=out,
        check=True,
    )
    r = cell("incident", "verify", str(out))
    assert r.returncode == 3
    assert "SHA256SUMS.sig: not a good signature" in r.stdout
    assert "ledger/chain.jsonl:" in r.stdout and "chain is broken" in r.stdout


def _age_identity(path: Path) -> str:
    subprocess.run(["age-keygen", "-o", str(path)], capture_output=True, check=True)
    line = next(x for x in path.read_text().splitlines() if "public key:" in x)
    return line.split()[-1]


def test_byok_the_encrypted_pack_opens_with_the_customers_identity_only(
    site: Cell, tmp_path: Path
) -> None:
    customer = _age_identity(tmp_path / "customer.key")
    _age_identity(tmp_path / "vendor.key")
    ssh = tmp_path / "auditor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh)], check=True)
    with (site.repo / "site.yaml").open("a") as f:
        f.write(
            f"evidence:\n  recipients:\n    - {customer}\n    - {(ssh.with_suffix('.pub')).read_text().strip()}\n"
        )
    out = tmp_path / "sealed"
    r = run(site, out, START, END, "--json")
    assert r.returncode == 3, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["encrypted"] is True and "report" not in doc
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "SHA256SUMS",
        "SHA256SUMS.sig",
        "VERIFY.txt",
        "allowed_signers",
        "pack.tar.age",
        "summary.json",
    ]
    assert b"snapshots" not in (out / "pack.tar.age").read_bytes()
    sums = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True
    )
    assert sums.returncode == 0 and "pack.tar.age: OK" in sums.stdout  # custody, no key needed
    assert (
        manifest_doc(out)["encrypted"] is True and manifest_doc(out)["findings"] == doc["findings"]
    )
    ok = cell("incident", "verify", str(out), "--identity", str(tmp_path / "customer.key"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    by_ssh = cell("incident", "verify", str(out), "--identity", str(ssh))
    assert by_ssh.returncode == 0, by_ssh.stdout + by_ssh.stderr
    bad = cell("incident", "verify", str(out), "--identity", str(tmp_path / "vendor.key"))
    assert bad.returncode == 3 and "pack.tar.age: cannot be decrypted" in bad.stdout
    # As the customer would, with age and tar only.
    dec = subprocess.run(
        [
            "age",
            "--decrypt",
            "-i",
            str(tmp_path / "customer.key"),
            "-o",
            str(tmp_path / "p.tar"),
            str(out / "pack.tar.age"),
        ],
        capture_output=True,
    )
    assert dec.returncode == 0, dec.stderr
    subprocess.run(["tar", "-xf", str(tmp_path / "p.tar"), "-C", str(tmp_path)], check=True)
    inner = tmp_path / f"incident-{doc['id']}"
    assert (inner / "report.md").is_file()
    inside = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=inner, capture_output=True, text=True
    )
    assert inside.returncode == 0
    wrong = subprocess.run(
        ["age", "--decrypt", "-i", str(tmp_path / "vendor.key"), str(out / "pack.tar.age")],
        capture_output=True,
    )
    assert wrong.returncode != 0


def test_bad_input_is_one_line_exit_2_and_leaves_nothing(site: Cell, tmp_path: Path) -> None:
    out = tmp_path / "out"
    base = ["incident", "--out", str(out), "--repo", str(site.repo)]
    state = ["--state-dir", str(site.state.root)]
    cases = [
        [*base, *state, "--since", "yesterday"],
        [*base, *state, "--since", "-1m", "--until", "-2m"],
        [*base, *state, "--since", "2001-01-01T00:00Z", "--until", "2001-01-02T00:00Z"],
        [*base, "--since", "-1h", "--state-dir", str(tmp_path / "missing")],
        [*base, *state],
    ]
    for args in cases:
        r = cell(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "no capture covers 2001-01-01" in cell(*cases[2]).stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state", "t-incident"]
    out.mkdir()
    r = cell(*base, *state, "--since", z(START))
    assert r.returncode == 2 and "already exists" in r.stderr
    (site.state.root / "keys").rename(tmp_path / "keys-away")
    r = cell(*base[:2], str(tmp_path / "y"), *base[3:], *state, "--since", z(START))
    assert r.returncode == 2 and "no evidence key" in r.stderr, r.stderr
    assert not (tmp_path / "y").exists() and not list(tmp_path.glob(".y.*"))
    with (site.repo / "site.yaml").open("a") as f:
        f.write("evidence:\n  recipients:\n    - pgp:0xDEADBEEF\n")
    line = len((site.repo / "site.yaml").read_text().splitlines())
    r = cell(*base[:2], str(tmp_path / "x"), *base[3:], *state, "--since", z(START))
    assert r.returncode == 2 and "unknown recipient format" in r.stderr
    assert f"site.yaml:{line}:" in r.stderr
    assert not (tmp_path / "x").exists()


def test_recipients_are_checked() -> None:
    good = "age1r8vexehll8zukgn4hehpz26wd0ljyly3xqe3d3g9m3lwdud723vs0lde4r"
    assert recipient_error(good) is None
    assert "checksum" in str(recipient_error(good[:-1] + "q"))
    assert "not an age recipient" in str(recipient_error("age1abc"))
    assert "identity" in str(recipient_error("AGE-SECRET-KEY-1QQQ"))
    ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@x"
    assert recipient_error(ed) is None
    assert "not 'ssh-rsa'" in str(recipient_error(ed.replace("ssh-ed25519", "ssh-rsa")))
    assert "unknown recipient format" in str(recipient_error("pgp:0xDEADBEEF"))

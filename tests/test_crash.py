"""SIGKILL `cell apply` at random points, over and over, on one lab.

After every kill: the nftables table is wholly the old ruleset or wholly the new one, the journal
names it (as applied, or as the pending apply that was interrupted), and `cell drift` says which.
Kill points are stratified over the length of an uninterrupted apply, so every phase is hit:
start-up, trust gate, render, check, install, the firewall transaction, services, journal.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cell.artifacts import render_all
from cell.cli.main import main
from cell.deploy.install import apply_lab
from cell.lab import lab_down, lab_up
from firewall import nft as fw
from policies import load_policy
from test_trust import Keys, SignedRepo

pytestmark = pytest.mark.root
TRIALS = 32


def cell_json(*args: str) -> tuple[int, dict[str, Any]]:
    """`cell ARGS --json` in this process (the same code path as the command, without start-up)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue())


def test_sigkill_during_apply_leaves_old_or_new(tmp_path: Path) -> None:
    site_id = f"t-{uuid.uuid4().hex[:8]}"
    keys = Keys(tmp_path / "keys")
    repo = SignedRepo(tmp_path / "repo", keys, site_id)
    state = tmp_path / "state"
    (tmp_path / "enrolled").write_text(keys.signers("ana"))
    common = ["--repo", str(repo.root), "--state-dir", str(state)]
    argv = [sys.executable, "-m", "cell.cli", "apply", *common]
    seed = int(os.environ.get("CELL_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    try:
        info = lab_up(load_policy(repo.root), apply=apply_lab)
        # Two variants: the firewall (NTP flow) and the sinkhole (a local name) both change, so
        # every step of the apply has work to do. Each trial commits the other variant on top of
        # the journal's newest commit, so the trust gate's range stays short and the same.
        canon: dict[bytes, str] = {}
        for variant in (1, 0):
            flip(repo, variant)
            files = render_all(load_policy(repo.root), info.layout)
            canon[fw.canonical(fw.objects_of(files["nftables/ruleset.json"]))] = f"v{variant}"
        repo.commit("variant 0", key="ana")
        assert main(["enroll", "--signers", str(tmp_path / "enrolled"), *common]) == 0
        assert subprocess.run(argv, capture_output=True).returncode == 0
        flip(repo, 1)
        repo.commit("variant 1", key="ana")
        flip(repo, 0)
        repo.commit("variant 0 again", key="ana")
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True)
        length = time.monotonic() - t0
        assert r.returncode == 0, r.stderr

        seen: Counter[str] = Counter()
        for trial in range(TRIALS):
            journal = json.loads((state / "journal.json").read_text())
            newest = (journal["pending"] or journal["applied"])["commit"]
            repo.git("reset", "-q", "--hard", newest)
            flip(repo, int("extra.site.internal" not in (repo.root / "network.yaml").read_text()))
            target = repo.commit(f"trial {trial}", key="ana")
            proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
            # Up to twice an apply's length: a slower or busier machine still gets both outcomes.
            try:
                proc.wait(timeout=2.0 * length * (trial + rng.random()) / TRIALS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the apply and its forked helpers
                proc.wait()
            _wait_group_gone(proc.pid)

            live = fw.canonical(fw.read_table(info.gateway))
            assert live in canon, f"trial {trial} (seed {seed}): the table is a mix"
            journal = json.loads((state / "journal.json").read_text())
            code, doc = cell_json("drift", *common)
            assert code in (0, 3)
            which = doc["table"]["state"]
            named = journal["applied"] if which == "applied" else journal["pending"]
            assert which in ("applied", "pending"), f"trial {trial} (seed {seed}): {doc}"
            assert named is not None and doc["table"]["commit"] == named["commit"]
            store = state / "store" / "rendered" / named["rendered"] / "nftables/ruleset.json"
            assert fw.canonical(fw.objects_of(store.read_bytes())) == live
            if which == "pending":
                seen["new, journal pending"] += 1
            else:
                seen["new" if named["commit"] == target else "old"] += 1

        print(
            f"\ncrash test: {TRIALS} kills over {length:.2f} s applies, seed {seed}: {dict(seen)}"
        )
        assert seen["old"] and seen["new"], seen  # both sides of the commit point were hit

        assert subprocess.run(argv, capture_output=True).returncode == 0
        code, doc = cell_json("drift", *common)
        assert code == 0 and doc["in_sync"], doc
        assert main(["audit", "verify", *common]) == 0
    finally:
        lab_down(site_id)
        keys.close()


def flip(repo: SignedRepo, variant: int) -> None:
    """Variant 0: the example as it is. Variant 1: no NTP for the cameras, one more local name."""
    repo.toggle_ntp(on=variant == 0)
    name = "    extra.site.internal: 10.10.0.1\n"
    text = (repo.root / "network.yaml").read_text().replace(name, "")
    if variant:
        text = text.replace("    ntp.site.internal:", name + "    ntp.site.internal:")
    (repo.root / "network.yaml").write_text(text)


def _wait_group_gone(pgid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)

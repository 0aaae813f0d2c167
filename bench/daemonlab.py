"""Shared by the daemon's benches: a lab of the example site under a fresh id, a signed commit
enrolled and applied through the trust gate, `cell run` in the gateway, and a reader of the
status bus (mosquitto_sub as the example's console login, inside the gateway's namespace)."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cell.deploy.install import apply_lab  # noqa: E402
from cell.lab import LabInfo, lab_down, lab_up  # noqa: E402
from cell.lab.processes import Proc  # noqa: E402
from cell.run.labdaemon import start_daemon  # noqa: E402
from drift_latency import cell, make_repo  # noqa: E402
from firewall import netns  # noqa: E402
from policies import load_policy  # noqa: E402


@dataclass
class DaemonLab:
    repo: Path
    info: LabInfo
    daemon: Proc


@contextmanager
def daemon_lab(verify: str = "") -> Iterator[DaemonLab]:
    site_id = f"b-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="cell-bench-"))
    try:
        repo, signers = make_repo(tmp, site_id)
        if verify:
            (repo / "site.yaml").write_text((repo / "site.yaml").read_text() + verify)
            subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
            key = tmp / "ops"
            subprocess.run(
                ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=b@x",
                 "-c", "gpg.format=ssh", "-c", f"user.signingkey={key}",
                 "commit", "-q", "-S", "-m", "intervals"],
                check=True,
            )  # fmt: skip
        info = lab_up(load_policy(repo), apply=apply_lab)
        cell("enroll", "--signers", str(signers), "--repo", str(repo))
        cell("apply", "--repo", str(repo))
        daemon = start_daemon(str(repo), info.gateway, info.layout.state, Path(info.root) / "log")
        yield DaemonLab(repo, info, daemon)
    finally:
        lab_down(site_id)
        shutil.rmtree(tmp, ignore_errors=True)


class BusReader:
    """Every message on `topic`, with the time it was read, from mosquitto_sub."""

    def __init__(self, info: LabInfo, topic: str) -> None:
        password = info.credentials["console"]
        self.proc = netns.popen(
            info.gateway,
            ["mosquitto_sub", "-h", "127.0.0.1", "-u", "console", "-P", password, "-t", topic],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.got: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.got.put((time.time(), json.loads(line)))

    def wait(self, match: Callable[[dict[str, Any]], bool], timeout: float) -> float | None:
        deadline = time.time() + timeout
        while (left := deadline - time.time()) > 0:
            try:
                when, doc = self.got.get(timeout=left)
            except queue.Empty:
                return None
            if match(doc):
                return when
        return None

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)

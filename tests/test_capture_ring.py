"""The ring with the real dumpcap (root): it stays within max_disk under a flood, prunes what an
earlier run left, records the prunes, and shows pruned time as a gap."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cell.verify.capture import Capture, CaptureConfig
from cell.verify.coverage import CoverageLog, coverage_of
from cell.verify.pruner import Limits, chunk_for
from cell.verify.ring import list_ring
from firewall import netns

pytestmark = pytest.mark.root
MIB = 1 << 20


def _flood(ns: str, megabytes: int) -> None:
    def go() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            data = b"\x5a" * 8000
            for _ in range(megabytes * MIB // len(data)):
                s.sendto(data, ("127.0.0.1", 9))
        return 0

    netns.with_ns(ns, go)


def test_the_ring_never_exceeds_max_disk_and_prunes_an_earlier_run(tmp_path: Path) -> None:
    ns = f"cellcap-{uuid.uuid4().hex[:6]}"
    ring = tmp_path / "capture"
    ring.mkdir()
    # Left by earlier runs, before this Cell was restarted: one long expired, one merely big.
    expired = ring / "wan.01d01d00_00001_20200101000000.pcapng"
    expired.write_bytes(b"\0" * MIB)
    os.utime(expired, (1577840400, 1577840400))
    old = ring / "wan.02d02d00_00001_20200101000000.pcapng"
    old.write_bytes(b"\0" * 5 * MIB)
    max_disk = 6 * MIB
    limits = Limits(timedelta(hours=24), max_disk, 0, chunk_for(max_disk, 86400, 3600))
    netns.create(ns)
    cap = Capture(CaptureConfig(ring, "lo", 3600, limits, netns=ns, prune_every=0.5))
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sum(f.size for f in list_ring(ring)))
            time.sleep(0.002)

    try:
        cap.start()
        assert not old.exists() and not expired.exists()
        watcher = threading.Thread(target=sample)
        watcher.start()
        t0 = datetime.now(UTC)
        _flood(ns, 40)
        time.sleep(0.5)
        done.set()
        watcher.join()
        status = cap.stop()
    finally:
        done.set()
        cap.stop()
        netns.remove(ns)
    assert status.last_stop and status.last_stop["clean"]
    assert status.last_stop["received"] > 1000
    assert peak <= max_disk, f"ring reached {peak} B > max_disk {max_disk} B"
    events = CoverageLog(ring).read()
    pruned = [d for e in events if e["event"] == "prune" for d in e["deleted"]]
    assert [(d["name"], d["reason"]) for d in pruned[:2]] == [
        (expired.name, "retention"),
        (old.name, "max_disk"),
    ]
    # The run's own files: dumpcap's ring deletes its oldest before it opens one more (so no
    # prune record), the pruner may get some first; either way, the first files are gone.
    assert {d["reason"] for d in pruned[2:]} <= {"max_disk"}
    assert len(list_ring(ring)) < sum(e["event"] == "file" for e in events)
    files = list_ring(ring)
    cov = coverage_of(events, files, t0, datetime.now(UTC), now=datetime.now(UTC))
    assert cov.gaps and cov.gaps[0][0] == t0  # the flood's first files are gone: that is a gap


def test_the_runner_records_a_clean_stop_with_dumpcaps_counts_on_sigterm(tmp_path: Path) -> None:
    import signal
    import sys

    ns = f"cellcap-{uuid.uuid4().hex[:6]}"
    ring = tmp_path / "capture"
    netns.create(ns)
    argv = [sys.executable, "-m", "cell.verify.capture", "--dir", str(ring), "--interface", "lo"]
    proc = netns.popen(ns, [*argv, "--rotate", "1h", "--max-disk", "64MiB"])
    try:
        deadline = time.monotonic() + 15
        while not any(e["event"] == "start" for e in CoverageLog(ring).read()):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        _flood(ns, 1)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        netns.remove(ns)
    events = CoverageLog(ring).read()
    start = next(e for e in events if e["event"] == "start")
    stop = next(e for e in events if e["event"] == "stop")
    assert stop["run"] == start["run"] and stop["clean"] is True
    assert stop["received"] >= 100 and stop["dropped"] == 0
    assert not Path(f"/proc/{start['pid']}").exists()  # dumpcap went with it


def test_no_orphan_dumpcap_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    import subprocess
    import sys

    ns = f"cellcap-{uuid.uuid4().hex[:6]}"
    ring = tmp_path / "capture"
    netns.create(ns)
    argv = [sys.executable, "-m", "cell.verify.capture", "--dir", str(ring), "--interface", "lo"]
    proc = netns.popen(ns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not any(e["event"] == "start" for e in CoverageLog(ring).read()):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        pid = next(e for e in CoverageLog(ring).read() if e["event"] == "start")["pid"]
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), "dumpcap outlived its supervisor"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        netns.remove(ns)

"""The WAN capture ring: dumpcap on the WAN interface, supervised, with coverage and pruning.

Why dumpcap and not tcpdump (docs/verify.md, "Capture"): `-b interval:N` switches files when the
clock is an exact multiple of N seconds, with or without packets, so file names line up with the
clock and a file appears every interval as a sign of life; `-b filesize:` bounds the live file,
which is what lets the pruner keep the ring within `max_disk` (see `pruner`). tcpdump `-G`
counts from the first packet and rotates only when a packet arrives. Neither deletes the files
of an earlier run: the pruner does.

`Capture` is the seam a daemon wraps as a Service: `start()` returns once dumpcap writes its
first file, `status()` is cheap, `stop()` sends SIGTERM and records dumpcap's own statistics.
`python -m cell.verify.capture` runs one in the foreground until SIGTERM (the lab uses that).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cell.verify.coverage import CoverageLog, iso
from cell.verify.errors import CaptureError
from cell.verify.pruner import Limits, Plan, chunk_for, dumpcap_kb, prune, ring_files
from cell.verify.ring import list_ring, parse_name, ring_path

TOOL = "dumpcap"
_PR_SET_PDEATHSIG = 1
_STATS = re.compile(
    r"Packets received/dropped on interface '.*': (?P<recv>\d+)/(?P<drop>\d+) "
    r"\(pcap:(?P<pcap>\d+)/dumpcap:(?P<dumpcap>\d+)/flushed:(?P<flushed>\d+)"
    r"(?:/ps_ifdrop:(?P<ifdrop>\d+))?\)"
)


@dataclass(frozen=True)
class CaptureConfig:
    directory: Path
    interface: str
    rotate: int
    """Seconds per file, aligned to the clock (dumpcap `-b interval:`)."""
    limits: Limits
    netns: str | None = None
    """Run dumpcap in this network namespace (None: the caller's)."""
    buffer_mib: int = 16
    """The kernel capture buffer: a bigger one rides out bursts without drops."""
    snaplen: int | None = None
    prune_every: float = 60.0


@dataclass
class CaptureStatus:
    running: bool
    run: str | None
    pid: int | None
    started: str | None
    current: str | None
    files: int
    bytes: int
    last_stop: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_stats(stderr: str) -> dict[str, int] | None:
    """dumpcap's closing statistics: received, dropped (all causes) and each cause."""
    found = list(_STATS.finditer(stderr))
    if not found:
        return None
    m = found[-1]
    return {k: int(v) for k, v in m.groupdict().items() if v is not None}


def dumpcap_argv(config: CaptureConfig, run: str, files: int) -> list[str]:
    argv = [TOOL, "-i", config.interface, "-q", "-n", "-B", str(config.buffer_mib)]
    argv += ["-b", f"interval:{config.rotate}", "-b", f"filesize:{dumpcap_kb(config.limits.chunk)}"]
    argv += ["-b", f"files:{files}"]
    argv += ["-b", "printname:stdout", "-w", str(ring_path(config.directory, run))]
    if config.snaplen:
        argv += ["-s", str(config.snaplen)]
    return argv


def _addresses(interface: str) -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=interface)
        if not idx:
            return []
        return sorted(a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx[0]))


def _start_ticks(pid: int) -> int | None:
    """The process's start time (/proc/PID/stat field 22): with the pid, its identity."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _child_setup(ns: str | None) -> None:
    """In dumpcap before exec: die with the supervisor (no orphan capture), enter `ns`."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if ns:
        from firewall import netns

        netns.enter(ns)


class Capture:
    def __init__(self, config: CaptureConfig) -> None:
        self.config = config
        self.log = CoverageLog(config.directory)
        self._proc: subprocess.Popen[bytes] | None = None
        self._run: str | None = None
        self._files = 0
        self._started: datetime | None = None
        self._current: str | None = None
        self._stderr: list[str] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.last_stop: dict[str, Any] | None = None
        self.last_prune: Plan | None = None

    # --- the Service face --------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start dumpcap; return once it has opened its first file. Raises `CaptureError`."""
        if self._proc is not None and self._proc.poll() is None:
            return
        cfg = self.config
        if cfg.limits.max_disk < 2 * cfg.limits.chunk:
            raise CaptureError(
                f"capture.wan.max_disk {cfg.limits.max_disk} B is too small for files of "
                f"{cfg.limits.chunk} B: give the ring at least {2 * cfg.limits.chunk} B"
            )
        cfg.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._run, self._current, self._stderr = secrets.token_hex(4), None, []
        self._stopping.clear()
        env = {**os.environ, "TZ": "UTC"}
        left = self.prune().kept_bytes  # earlier runs' files, within max_disk - 2 * chunk
        self._files = ring_files(cfg.limits.max_disk, cfg.limits.chunk, left)
        argv = dumpcap_argv(cfg, self._run, self._files)
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=lambda: _child_setup(cfg.netns),  # noqa: PLW1509
            )
        except OSError as e:
            raise CaptureError(f"cannot start {TOOL} on {cfg.interface}: {e}") from e
        self._proc, self._started = proc, datetime.now(UTC)
        self._threads = [
            threading.Thread(target=self._read_names, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._prune_loop, daemon=True),
        ]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + timeout
        while self._current is None:
            if proc.poll() is not None:
                self._join()
                why = " | ".join(self._stderr[-3:]) or f"exit {proc.returncode}"
                self._proc = None
                raise CaptureError(f"{TOOL} on {cfg.interface} exited at start: {why}")
            if time.monotonic() > deadline:
                self.stop()
                raise CaptureError(f"{TOOL} on {cfg.interface} wrote no file in {timeout:.0f} s")
            time.sleep(0.01)
        addresses = self._in_ns(lambda: _addresses(cfg.interface))
        self.log.append(
            "start",
            ts=self._started,
            run=self._run,
            interface=cfg.interface,
            netns=cfg.netns,
            addresses=addresses,
            pid=proc.pid,
            pid_start=_start_ticks(proc.pid),
            tool=TOOL,
            rotate=cfg.rotate,
            max_disk=cfg.limits.max_disk,
            chunk=cfg.limits.chunk,
            files=self._files,
        )

    def stop(self, timeout: float = 5.0) -> CaptureStatus:
        """SIGTERM dumpcap, wait, and record its statistics (a clean stop) or their absence."""
        proc = self._proc
        if proc is None:
            return self.status()
        self._stopping.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._join()
        self._record_stop(proc)
        self._proc = None
        self.prune()
        return self.status()

    def status(self) -> CaptureStatus:
        files = list_ring(self.config.directory)
        proc = self._proc
        running = proc is not None and proc.poll() is None
        if proc is not None and not running:
            self._join()
            self._record_stop(proc)  # it died on its own: say so once
            self._proc = None
        return CaptureStatus(
            running=running,
            run=self._run if running else None,
            pid=proc.pid if running and proc else None,
            started=iso(self._started) if running and self._started else None,
            current=self._current if running else None,
            files=len(files),
            bytes=sum(f.size for f in files),
            last_stop=self.last_stop,
        )

    def prune(self) -> Plan:
        live = frozenset({self._current}) if self._current and self._proc else frozenset()
        now = datetime.now(UTC)
        ends = {self._run: now} if self._run and self._proc else {}
        with self._lock:
            plan = prune(
                self.config.directory, self.config.limits, now=now, live=live, run_end=ends
            )
            if plan.delete:
                self.log.append(
                    "prune",
                    deleted=[
                        {"name": d.name, "size": d.size, "reason": d.reason} for d in plan.delete
                    ],
                    floor_met=plan.floor_met,
                )
            self.last_prune = plan
        return plan

    # --- internals ---------------------------------------------------------------------------

    def _in_ns(self, fn: Any) -> Any:
        if self.config.netns:
            from firewall import netns

            return netns.with_ns(self.config.netns, fn)
        return fn()

    def _read_names(self) -> None:
        """dumpcap's `printname` lines: a file is complete (closed)."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for raw in proc.stdout:
            name = Path(raw.decode(errors="replace").strip()).name
            if parse_name(name) is not None:
                self.log.append("closed", run=self._run, name=name)

    def _read_stderr(self) -> None:
        """dumpcap's `File: PATH` lines (a new file is open) and its closing statistics."""
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self._stderr.append(line)
            del self._stderr[:-50]
            if not line.startswith("File: "):
                continue
            name = Path(line[6:].strip()).name
            if parse_name(name) is None:
                continue
            first = self._current is None
            self._current = name
            self.log.append("file", run=self._run, name=name)
            if not first:
                self.prune()  # a file just closed: keep closed files within max_disk - chunk

    def _prune_loop(self) -> None:
        while not self._stopping.wait(self.config.prune_every):
            self.prune()

    def _join(self) -> None:
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=5)
        self._threads = []

    def _record_stop(self, proc: subprocess.Popen[bytes]) -> None:
        stats = parse_stats("\n".join(self._stderr))
        self.last_stop = {
            "run": self._run,
            "exit": proc.returncode,
            "clean": stats is not None,
            "received": stats["recv"] if stats else None,
            "dropped": stats["drop"] if stats else None,
            "drops": stats,
            "why": None if stats else " | ".join(self._stderr[-3:]) or None,
        }
        self.log.append("stop", **self.last_stop)


def main(argv: list[str] | None = None) -> int:
    """Run one capture in the foreground until SIGTERM/SIGINT (the lab's and a person's way)."""
    import argparse

    from policies.types import duration_seconds, size_bytes

    p = argparse.ArgumentParser(prog="python -m cell.verify.capture")
    p.add_argument("--dir", required=True)
    p.add_argument("--interface", required=True)
    p.add_argument("--rotate", default="1h")
    p.add_argument("--retention", default="24h")
    p.add_argument("--max-disk", default="2GiB")
    p.add_argument("--floor", default="64MiB")
    p.add_argument("--snaplen", type=int)
    args = p.parse_args(argv)
    max_disk = size_bytes(args.max_disk)
    retention, rotate = duration_seconds(args.retention), duration_seconds(args.rotate)
    limits = Limits(
        timedelta(seconds=retention),
        max_disk,
        size_bytes(args.floor),
        chunk_for(max_disk, retention, rotate),
    )
    cap = Capture(
        CaptureConfig(
            Path(args.dir),
            args.interface,
            rotate,
            limits,
            snaplen=args.snaplen,
        )
    )
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    cap.start()
    while not done.wait(1.0):
        if not cap.status().running:
            return 1
    cap.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Processes of the lab: start one inside a namespace, wait until it listens, stop them for sure.

A process is known by (pid, start time): a pid recorded in the state file is signalled only while
the process with that pid is still the one the lab started, never a stranger that reused the pid.
`lab down` also finds processes by namespace (/proc/PID/ns/net), which catches what the state file
never recorded: the gateway's broker and resolver started by `apply`, or everything after a crash.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import ConfigDict, Field

from cell import procfs
from cell.lab.errors import LabError
from cell.procfs import start_time
from firewall import netns
from policies.record import Record

Listen = tuple[str, int, str]
"""(address, port, proto) a process must be listening on before the lab is ready."""

_children: dict[int, subprocess.Popen[bytes]] = {}
"""Processes this Python process started: kept to reap them (no zombies, no ResourceWarning)."""


class Proc(Record):
    """A process the lab started, named for good by its pid and start time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="What it is (e.g. hub, resolver, responder-cameras).")
    netns: str = Field(description="The namespace it runs in.")
    pid: int = Field(description="Its pid.")
    start: int = Field(
        description="Start time in clock ticks since boot (/proc/PID/stat field 22): with the "
        "pid, the process's identity."
    )
    log: str = Field(description="Its log file.")
    argv: tuple[str, ...] = Field(description="Its command line.")

    def running(self) -> bool:
        return start_time(self.pid) == self.start and alive(self.pid)


def start(name: str, ns: str, argv: Sequence[str], log: Path) -> Proc:
    """Start `argv` in namespace `ns`, in its own session (it outlives `cell lab up`)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            p = netns.popen(
                ns,
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise LabError(f"cannot start {name} ({argv[0]}) in {ns}: {e}") from e
    _children[p.pid] = p
    return Proc(
        name=name, netns=ns, pid=p.pid, start=start_time(p.pid) or 0, log=str(log), argv=tuple(argv)
    )


def alive(pid: int) -> bool:
    """Running, not a zombie (our own exited children are reaped on the way)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    return procfs.alive(pid)


def _tail(path: str, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def _hex_addr(text: str) -> tuple[str, int]:
    addr, port = text.split(":")
    raw = int(addr, 16).to_bytes(4, "little")
    return ".".join(str(b) for b in raw), int(port, 16)


def listening(pid: int) -> set[Listen]:
    """Sockets listening (TCP) or bound (UDP) in the namespace of `pid`."""
    out: set[Listen] = set()
    for proto, state in (("tcp", "0A"), ("udp", "07")):
        try:
            rows = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 3 and cols[3] == state:
                out.add((*_hex_addr(cols[1]), proto))
    return out


def wait_ready(wants: Iterable[tuple[Proc, Sequence[Listen]]], timeout: float = 10.0) -> None:
    """Return once every process listens where it should; LabError naming the first that won't."""
    pending = list(wants)
    deadline = time.monotonic() + timeout
    while pending:
        for proc, need in list(pending):
            if not alive(proc.pid):
                raise LabError(
                    f"{proc.name} exited while starting in {proc.netns}: {_tail(proc.log)}"
                )
            have = listening(proc.pid)
            if all((a, p, t) in have or ("0.0.0.0", p, t) in have for a, p, t in need):
                pending.remove((proc, need))
        if pending and time.monotonic() > deadline:
            proc, need = pending[0]
            where = " ".join(f"{a}:{p}/{t}" for a, p, t in need)
            raise LabError(
                f"{proc.name} did not listen on {where} within {timeout:.0f} s: {_tail(proc.log)}"
            )
        if pending:
            time.sleep(0.01)


def netns_id(name: str) -> tuple[int, int] | None:
    try:
        st = Path(f"/run/netns/{name}").stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in(ids: set[tuple[int, int]]) -> list[int]:
    """Every process (but this one) whose network namespace is one of `ids`."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            st = Path(entry.path, "ns", "net").stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in ids:
            out.append(int(entry.name))
    return out


def stop(pids: Iterable[int], timeout: float = 2.0) -> None:
    """SIGTERM, then SIGKILL what is left after `timeout`; reap our own children."""
    left = [p for p in set(pids) if alive(p)]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 1.0)):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            left = [p for p in left if alive(p)]
            if left:
                time.sleep(0.01)
        if not left:
            break
    for pid in list(_children):
        if not alive(pid):
            _children.pop(pid, None)

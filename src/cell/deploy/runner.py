"""The process `Runner` for the broker seam: real processes, in a namespace, via `cell.procs`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge.broker import local_connectable
from cell.deploy import daemons as procs
from firewall import netns as ns


@dataclass
class NetnsRunner:
    netns: str | None
    resolv_conf: str | None = None

    def start(self, argv: list[str], pidfile: Path, log: Path) -> int:
        return procs.start(argv, pidfile, log, self.netns, self.resolv_conf)

    def stop(self, pidfile: Path) -> None:
        procs.stop(pidfile)

    def hup(self, pidfile: Path) -> bool:
        return procs.hup(pidfile)

    def running(self, pidfile: Path) -> bool:
        return procs.read_pid(pidfile) is not None

    def connectable(self, port: int) -> bool:
        if self.netns is None:
            return local_connectable(port)
        return ns.with_ns(self.netns, lambda: local_connectable(port))

    def tail(self, log: Path) -> str:
        return procs.tail(log)

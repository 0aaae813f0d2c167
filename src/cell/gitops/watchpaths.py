"""The watcher's eyes on the paths around the firewall: rtnetlink events (links, addresses,
routes, rules, tc) from the gateway's namespace, and a short poll of the router's sysctls,
which send no event. Either makes the watcher compare `paths` (`cell.drift.paths`)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from cell.deploy.netlink import read_sysctl
from cell.drift.expected import Expected
from firewall import netns as ns
from firewall.links import load_links
from firewall.rtmonitor import RtMonitor
from policies.layout import LINKS

POLL = 0.2
"""Seconds between two reads of the sysctls (a handful of /proc files in the namespace)."""


class PathsSource:
    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self.monitor = RtMonitor(netns)
        self.sysctls: list[str] = []
        self.seen: dict[str, str | None] | None = None
        self.next_poll = time.monotonic()

    def expect(self, exp: Expected) -> None:
        """The sysctls the applied commit sets: the ones to poll."""
        self.sysctls = list(load_links(exp.files[LINKS]).sysctls) if LINKS in exp.files else []
        self.seen = None

    def events(self) -> tuple[str, dict[str, Any] | None, float] | None:
        """Drain the monitor: (cause, who, when) of what the kernel told, or None."""
        changes = self.monitor.read()
        if not changes:
            return None
        what = [w for c in changes for w in c.what]
        whos = [w for c in changes if c.port and (w := _who(c.port))]
        more = f" and {len(what) - 3} more" if len(what) > 3 else ""
        return f"netlink: {', '.join(what[:3])}{more}", whos[0] if whos else None, changes[0].at

    def poll(self, now: float) -> str | None:
        """Every POLL seconds: 'poll: sysctl ...' when one changed since the last read."""
        if now < self.next_poll or not self.sysctls:
            return None
        self.next_poll = now + POLL
        names = self.sysctls
        values = ns.call(self.netns, lambda: {p: read_sysctl(p) for p in names})
        before, self.seen = self.seen, values
        if before is None or before == values:
            return None
        changed = [p for p in names if before.get(p) != values.get(p)]
        return f"poll: sysctl {', '.join(p.replace('/', '.') for p in changed)}"

    def close(self) -> None:
        self.monitor.close()


def _who(port: int) -> dict[str, Any] | None:
    """The process behind a netlink port id: the kernel autobinds a process's first netlink
    socket to its pid (`ip`, `tc`). A port above pid_max is not a pid; a short-lived tool may
    be gone before we look, and then only its pid is known."""
    try:
        if port > int(Path("/proc/sys/kernel/pid_max").read_text()):
            return None
    except (OSError, ValueError):
        return None
    name = None
    with contextlib.suppress(OSError):
        name = Path(f"/proc/{port}/comm").read_text().strip()
    return {"pid": port, "name": name}

"""One thing the drift check found: what, where it shows (a diff), who did it, since when."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from policies.clock import iso


@dataclass
class Finding:
    kind: str
    """nftables, file, process, repo."""
    what: str
    diff: str = ""
    by: dict[str, Any] | None = None
    """The process that made the change, when the kernel says so: {pid, name}."""
    since: str | None = None

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.kind}\0{self.what}\0{self.diff}".encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def mtime(path: Path) -> str:
    return iso(path.stat().st_mtime)

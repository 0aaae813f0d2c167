"""One thing the drift check found: what, where it shows (a diff), who did it, since when."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import Field

from policies.clock import iso
from policies.record import Record


class Finding(Record):
    """A difference between the live system and what was applied."""

    kind: str = Field(description="What differs: nftables, file, process, repo (and bypass kinds).")
    what: str = Field(description="One line for people: what differs and where.")
    diff: str = Field(default="", description="Where it shows: a unified diff, nft syntax.")
    by: dict[str, Any] | None = Field(
        default=None,
        description="The process that made the change, when the kernel says so: {pid, name}.",
    )
    since: str | None = Field(default=None, description="Since when (UTC, ISO 8601), if known.")

    def __init__(
        self,
        kind: str,
        what: str,
        diff: str = "",
        by: dict[str, Any] | None = None,
        since: str | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "kind": kind,
            "what": what,
            "diff": diff,
            "by": by,
            "since": since,
        }
        super().__init__(**fields)

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.kind}\0{self.what}\0{self.diff}".encode()).hexdigest()[:16]

    def to_doc(self) -> dict[str, Any]:
        """Only what is known: no empty diff, no unknown process."""
        return self.model_dump(mode="json", exclude_defaults=True)


def mtime(path: Path) -> str:
    return iso(path.stat().st_mtime)

"""Errors of incident packs (the whole tree is drawn in `policies.errors`)."""

from __future__ import annotations

from cell.errors import UsageError
from policies.errors import CellError


class IncidentUsage(UsageError):
    """A bad window, no capture for it, no state directory, an --out that exists (exit 2)."""


class PackError(CellError):
    """A tool that writes the pack (ssh-keygen, age, editcap) failed (exit 1)."""

    exit_code = 1

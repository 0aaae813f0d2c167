"""Errors of the capture ring and its windows (see `policies.errors` for the whole tree)."""

from __future__ import annotations

from cell.errors import UsageError
from policies.errors import CellError


class CaptureError(CellError):
    """The capture tool could not start, or a ring file could not be read or written."""

    exit_code = 1


class PcapUsage(UsageError):
    """A bad time, an empty window, no capture where one was asked for (exit 2)."""


class NoCapture(PcapUsage):
    """No ring, or nothing in it covers the window (exit 2). `empty`: there is no ring at all."""

    def __init__(self, message: str, *, empty: bool) -> None:
        super().__init__(message)
        self.empty = empty


class ProbeRefused(UsageError):
    """`cell probe` in place cannot join a VLAN: its link is missing, or its probe address is
    in use on the segment (exit 2)."""

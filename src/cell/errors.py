"""Errors of the appliance layer (the whole tree, with exit codes, is drawn in `policies.errors`)."""

from __future__ import annotations

from policies.errors import CellError


class UsageError(CellError):
    """Bad input on the command line (an unknown endpoint, a malformed port)."""

    exit_code = 2


class ApplyError(CellError):
    """A step of the apply failed; nothing (or the previous state) is in force."""

    exit_code = 1

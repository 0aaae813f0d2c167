"""Errors of the lab (`cell lab up|down|status`)."""

from __future__ import annotations

from policies.errors import CellError


class LabError(CellError):
    """The lab could not be built or removed. `lab_up` cleans up before it raises this."""

    exit_code = 1


class LabNotUp(CellError):
    """`cell lab status` on a site that has no lab: a check that found a problem (exit 3)."""

    exit_code = 3

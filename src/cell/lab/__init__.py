"""The lab: a whole site in network namespaces on one machine (`cell lab up|down|status`).

    lab_up(policy, *, apply=None) -> LabInfo     build (or rebuild) the site's lab; apply the Cell
    lab_down(site_id) -> None                    remove every namespace, link, process and file
    lab_status(site_id) -> LabInfo | None        the running lab, or None
    phone_home_count(site_id) -> int             connections the phone-home server has seen

Modules: `plan` (pure: names, addresses, ports), `topology` (pyroute2), `tls` (openssl PKI),
`wan` (the outside services), `responder` (the small server run in each namespace), `processes`,
`state` (LabInfo and its file), `lab` (up/down/status); its commands are in `cell.cli.lab`.

Exports are loaded lazily: `python -m cell.lab.responder` imports this package, and a responder
must start in milliseconds, without pyroute2 or pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cell.lab.errors import LabError, LabNotUp
    from cell.lab.lab import lab_down, lab_status, lab_up, phone_home_count
    from cell.lab.state import LabInfo

__all__ = [
    "LabError",
    "LabInfo",
    "LabNotUp",
    "lab_down",
    "lab_status",
    "lab_up",
    "phone_home_count",
]

_WHERE = {
    "LabError": "cell.lab.errors",
    "LabNotUp": "cell.lab.errors",
    "LabInfo": "cell.lab.state",
    "lab_up": "cell.lab.lab",
    "lab_down": "cell.lab.lab",
    "lab_status": "cell.lab.lab",
    "phone_home_count": "cell.lab.lab",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'cell.lab' has no attribute {name!r}")

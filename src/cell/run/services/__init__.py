"""The daemon's services, one per module; `all_services` is what `cell run` supervises."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cell.run.service import Service
    from cell.run.site import SiteRef


def all_services(ref: SiteRef) -> list[Service]:
    from cell.run.services.bridge import BridgeService
    from cell.run.services.capture import CaptureService
    from cell.run.services.drift import DriftService
    from cell.run.services.housekeeping import ConfirmService, LogRotateService
    from cell.run.services.probes import ProbeService
    from cell.run.services.store import DnsService, DropService
    from cell.run.services.trust import TrustService

    return [
        TrustService(ref),
        DriftService(ref),
        ProbeService(ref),
        BridgeService(ref),
        DnsService(ref),
        DropService(ref),
        CaptureService(ref),
        ConfirmService(ref),
        LogRotateService(ref),
    ]

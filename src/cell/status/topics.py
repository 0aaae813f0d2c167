"""The status bus's topics and schema names: plain constants, importing nothing, so a process
that only reads the bus (the console's bus reader) starts without the document models."""

from __future__ import annotations

from typing import Final

STATUS_SCHEMA: Final = "cell.status/1"
AVAILABILITY_SCHEMA: Final = "cell.availability/1"
EVENT_SCHEMA: Final = "cell.event/1"

STATUS_TOPIC: Final = "cell/status"
AVAILABILITY_TOPIC: Final = "cell/availability"
CHECK_TOPIC: Final = "cell/check/{name}"
EVENT_TOPIC: Final = "cell/event"
MANIFEST_TOPIC: Final = "evidence/manifests/{id}"
"""Retained: an incident pack's manifest (id, window, digest, findings; never its contents)."""
MANIFEST_SCHEMA: Final = "cell.evidence-manifest/1"
STATUS_FILTER: Final = "cell/#"
"""What a reader of the whole status bus subscribes to (and what `mqtt.yaml` must allow it)."""

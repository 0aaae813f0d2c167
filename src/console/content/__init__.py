"""Each panel's rows from a `View` (pure). One module per panel; `PANELS` is their order, which
is also their key (1-5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from console.content import cams, gitops, health, mqtt, synopsis
from console.view import Row, View

PANELS: Final[tuple[tuple[str, Callable[[View], list[Row]]], ...]] = (
    ("SYNOPSIS", synopsis.rows),
    ("MQTT", mqtt.rows),
    ("CAMS", cams.rows),
    ("GITOPS", gitops.rows),
    ("HEALTH", health.rows),
)
